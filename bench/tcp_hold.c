/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Idle TCP connections for the benchmark suite: a backend that accepts and
 * echoes, and a client that opens N connections, proves each one reaches
 * the backend with a one-byte round trip, then holds them all open.
 *
 * This program owns the idle scenario's connections.  The client prints
 * "ready N" once every connection has made its round trip, holds them for
 * the given time while bench/run measures the proxy, and closes them.
 * Both modes stop by themselves after their time limit.
 *
 *   tcp_hold server ADDR PORT SECONDS
 *   tcp_hold client ADDR PORT N HOLD_SECONDS
 */
#define _GNU_SOURCE
#include <sys/types.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TCP_HOLD_MAX		200000
#define TCP_HOLD_RECV_TIMEOUT_S	10

static int
tcp_hold_sockaddr(const char *addr, const char *port, struct sockaddr_in *sin)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)atoi(port));
	if (inet_pton(AF_INET, addr, &sin->sin_addr) != 1) {
		fprintf(stderr, "tcp_hold: %s: not an IPv4 address\n", addr);
		return -1;
	}
	return 0;
}

static time_t
tcp_hold_now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* Raise the descriptor limit to the hard limit: N connections need N fds. */
static void
tcp_hold_raise_nofile(void)
{
	struct rlimit	rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Accept, echo what arrives, close what the peer closes; until deadline. */
static int
tcp_hold_server(const struct sockaddr_in *sin, int seconds)
{
	struct epoll_event	 ev, evs[256];
	char			 buf[4096];
	time_t			 deadline;
	ssize_t			 n;
	int			 lfd, ep, fd, i, k, one = 1;

	if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)) == -1 ||
	    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(lfd, (const struct sockaddr *)sin, sizeof(*sin)) == -1 ||
	    listen(lfd, 4096) == -1 || (ep = epoll_create1(0)) == -1) {
		perror("tcp_hold: server socket");
		return 1;
	}
	ev.events = EPOLLIN;
	ev.data.fd = lfd;
	(void)epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	deadline = tcp_hold_now() + seconds;
	while (tcp_hold_now() < deadline) {
		k = epoll_wait(ep, evs, 256, 500);
		for (i = 0; i < k; i++) {
			if (evs[i].data.fd == lfd) {
				while ((fd = accept4(lfd, NULL, NULL,
				    SOCK_NONBLOCK)) != -1) {
					ev.events = EPOLLIN;
					ev.data.fd = fd;
					(void)epoll_ctl(ep, EPOLL_CTL_ADD, fd,
					    &ev);
				}
				continue;
			}
			fd = evs[i].data.fd;
			n = read(fd, buf, sizeof(buf));
			if (n > 0)
				(void)write(fd, buf, (size_t)n);
			else if (n == 0 || errno != EAGAIN)
				close(fd);
		}
	}
	return 0;
}

static int
tcp_hold_client(const struct sockaddr_in *sin, int n, int hold_seconds)
{
	struct timeval	 tv = { TCP_HOLD_RECV_TIMEOUT_S, 0 };
	int		*fds;
	char		 c = 'x';
	int		 i;

	if ((fds = calloc((size_t)n, sizeof(*fds))) == NULL) {
		perror("tcp_hold: calloc");
		return 1;
	}
	/* Connect all first: a proxy dials its backends meanwhile. */
	for (i = 0; i < n; i++) {
		if ((fds[i] = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
		    setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv,
		    sizeof(tv)) == -1 ||
		    connect(fds[i], (const struct sockaddr *)sin,
		    sizeof(*sin)) == -1) {
			fprintf(stderr, "tcp_hold: connection %d: %s\n", i,
			    strerror(errno));
			return 1;
		}
	}
	for (i = 0; i < n; i++) {
		if (write(fds[i], &c, 1) != 1) {
			fprintf(stderr, "tcp_hold: write %d: %s\n", i,
			    strerror(errno));
			return 1;
		}
	}
	for (i = 0; i < n; i++) {
		if (read(fds[i], &c, 1) != 1) {
			fprintf(stderr, "tcp_hold: no echo on connection %d\n",
			    i);
			return 1;
		}
	}
	printf("ready %d\n", n);
	fflush(stdout);
	sleep((unsigned)hold_seconds);
	for (i = 0; i < n; i++)
		close(fds[i]);
	free(fds);
	return 0;
}

int
main(int argc, char *argv[])
{
	struct sockaddr_in	sin;
	int			n;

	tcp_hold_raise_nofile();
	if (argc == 5 && strcmp(argv[1], "server") == 0) {
		if (tcp_hold_sockaddr(argv[2], argv[3], &sin) == -1)
			return 2;
		return tcp_hold_server(&sin, atoi(argv[4]));
	}
	if (argc == 6 && strcmp(argv[1], "client") == 0) {
		if (tcp_hold_sockaddr(argv[2], argv[3], &sin) == -1)
			return 2;
		n = atoi(argv[4]);
		if (n < 1 || n > TCP_HOLD_MAX) {
			fprintf(stderr, "tcp_hold: N must be 1-%d\n",
			    TCP_HOLD_MAX);
			return 2;
		}
		return tcp_hold_client(&sin, n, atoi(argv[5]));
	}
	fprintf(stderr, "usage: tcp_hold server ADDR PORT SECONDS\n"
	    "       tcp_hold client ADDR PORT N HOLD_SECONDS\n");
	return 2;
}
