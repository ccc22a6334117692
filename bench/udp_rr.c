/* SPDX-License-Identifier: Apache-2.0 */
/*
 * UDP request/reply load for the benchmark suite: an echo backend and a
 * client that keeps one request in flight on each of several sockets.
 *
 * This program owns the UDP scenario's traffic and its latency figures.
 * Each client socket is its own source port, so a proxy sees one client
 * association per socket, as it would for several pods.  A request that
 * gets no reply within UDP_RR_LOSS_MS is counted lost and sent again.  The
 * client prints one JSON object; starting proxies and pinning is
 * bench/run's job.  Both modes stop by themselves after their time limit.
 *
 *   udp_rr echo ADDR PORT SECONDS
 *   udp_rr client ADDR PORT FLOWS SECONDS PAYLOAD_BYTES
 */
#include <sys/types.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define UDP_RR_MAX_FLOWS	256
#define UDP_RR_HIST_US		200000	/* latencies above go to the last bucket */
#define UDP_RR_LOSS_MS		200
#define UDP_RR_MAX_PAYLOAD	1400

struct udp_rr_flow {
	int		fd;
	uint64_t	seq;
	uint64_t	sent_ns;
};

static uint32_t	udp_rr_hist[UDP_RR_HIST_US + 1];

static uint64_t
udp_rr_now_ns(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int
udp_rr_sockaddr(const char *addr, const char *port, struct sockaddr_in *sin)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)atoi(port));
	if (inet_pton(AF_INET, addr, &sin->sin_addr) != 1) {
		fprintf(stderr, "udp_rr: %s: not an IPv4 address\n", addr);
		return -1;
	}
	return 0;
}

/* Echo every datagram back to its sender until the deadline. */
static int
udp_rr_echo(const struct sockaddr_in *sin, int seconds)
{
	struct sockaddr_storage	 peer;
	socklen_t		 plen;
	char			 buf[65536];
	uint64_t		 deadline;
	struct pollfd		 pfd;
	ssize_t			 n;
	int			 fd, one = 1;

	if ((fd = socket(AF_INET, SOCK_DGRAM, 0)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(fd, (const struct sockaddr *)sin, sizeof(*sin)) == -1) {
		perror("udp_rr: echo socket");
		return 1;
	}
	deadline = udp_rr_now_ns() + (uint64_t)seconds * 1000000000ull;
	pfd.fd = fd;
	pfd.events = POLLIN;
	while (udp_rr_now_ns() < deadline) {
		if (poll(&pfd, 1, 500) <= 0)
			continue;
		for (;;) {
			plen = sizeof(peer);
			n = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT,
			    (struct sockaddr *)&peer, &plen);
			if (n < 0)
				break;
			(void)sendto(fd, buf, (size_t)n, 0,
			    (struct sockaddr *)&peer, plen);
		}
	}
	close(fd);
	return 0;
}

static int
udp_rr_send(struct udp_rr_flow *f, char *buf, size_t len)
{
	f->seq++;
	memcpy(buf, &f->seq, sizeof(f->seq));
	f->sent_ns = udp_rr_now_ns();
	if (send(f->fd, buf, len, 0) == -1 && errno != ECONNREFUSED)
		return -1;
	return 0;
}

/* The latency under which `pct` percent of replies came, in microseconds. */
static unsigned long
udp_rr_percentile(uint64_t total, double pct)
{
	uint64_t	want, seen = 0;
	unsigned long	us;

	want = (uint64_t)((double)total * pct / 100.0);
	if (want == 0)
		want = 1;
	for (us = 0; us <= UDP_RR_HIST_US; us++) {
		seen += udp_rr_hist[us];
		if (seen >= want)
			return us;
	}
	return UDP_RR_HIST_US;
}

static int
udp_rr_client(const struct sockaddr_in *sin, int n_flows, int seconds,
    size_t payload)
{
	struct udp_rr_flow	 flows[UDP_RR_MAX_FLOWS];
	struct pollfd		 pfds[UDP_RR_MAX_FLOWS];
	char			 buf[UDP_RR_MAX_PAYLOAD], rbuf[65536];
	uint64_t		 start, deadline, now, done = 0, lost = 0, lat;
	uint64_t		 seq;
	ssize_t			 n;
	int			 i;

	memset(buf, 'q', sizeof(buf));
	for (i = 0; i < n_flows; i++) {
		flows[i].seq = 0;
		if ((flows[i].fd = socket(AF_INET, SOCK_DGRAM, 0)) == -1 ||
		    connect(flows[i].fd, (const struct sockaddr *)sin,
		    sizeof(*sin)) == -1) {
			perror("udp_rr: client socket");
			return 1;
		}
		pfds[i].fd = flows[i].fd;
		pfds[i].events = POLLIN;
		if (udp_rr_send(&flows[i], buf, payload) == -1) {
			perror("udp_rr: send");
			return 1;
		}
	}
	start = udp_rr_now_ns();
	deadline = start + (uint64_t)seconds * 1000000000ull;
	while ((now = udp_rr_now_ns()) < deadline) {
		if (poll(pfds, (nfds_t)n_flows, 50) < 0 && errno != EINTR)
			break;
		now = udp_rr_now_ns();
		for (i = 0; i < n_flows; i++) {
			if (pfds[i].revents & POLLIN) {
				n = recv(flows[i].fd, rbuf, sizeof(rbuf),
				    MSG_DONTWAIT);
				if (n < (ssize_t)sizeof(seq))
					continue;
				memcpy(&seq, rbuf, sizeof(seq));
				if (seq != flows[i].seq)
					continue;	/* a late reply */
				lat = (now - flows[i].sent_ns) / 1000;
				udp_rr_hist[lat > UDP_RR_HIST_US ?
				    UDP_RR_HIST_US : lat]++;
				done++;
				(void)udp_rr_send(&flows[i], buf, payload);
			} else if (now - flows[i].sent_ns >
			    UDP_RR_LOSS_MS * 1000000ull) {
				lost++;
				(void)udp_rr_send(&flows[i], buf, payload);
			}
		}
	}
	now = udp_rr_now_ns();
	printf("{\"requests\": %llu, \"lost\": %llu, \"seconds\": %.3f, "
	    "\"rate\": %.1f, \"p50_us\": %lu, \"p99_us\": %lu}\n",
	    (unsigned long long)done, (unsigned long long)lost,
	    (double)(now - start) / 1e9,
	    (double)done / ((double)(now - start) / 1e9),
	    udp_rr_percentile(done, 50), udp_rr_percentile(done, 99));
	return 0;
}

int
main(int argc, char *argv[])
{
	struct sockaddr_in	sin;
	int			flows;
	long			payload;

	if (argc == 5 && strcmp(argv[1], "echo") == 0) {
		if (udp_rr_sockaddr(argv[2], argv[3], &sin) == -1)
			return 2;
		return udp_rr_echo(&sin, atoi(argv[4]));
	}
	if (argc == 7 && strcmp(argv[1], "client") == 0) {
		if (udp_rr_sockaddr(argv[2], argv[3], &sin) == -1)
			return 2;
		flows = atoi(argv[4]);
		payload = atol(argv[6]);
		if (flows < 1 || flows > UDP_RR_MAX_FLOWS ||
		    payload < (long)sizeof(uint64_t) ||
		    payload > UDP_RR_MAX_PAYLOAD) {
			fprintf(stderr, "udp_rr: flows 1-%d, payload 8-%d\n",
			    UDP_RR_MAX_FLOWS, UDP_RR_MAX_PAYLOAD);
			return 2;
		}
		return udp_rr_client(&sin, flows, atoi(argv[5]),
		    (size_t)payload);
	}
	fprintf(stderr, "usage: udp_rr echo ADDR PORT SECONDS\n"
	    "       udp_rr client ADDR PORT FLOWS SECONDS PAYLOAD_BYTES\n");
	return 2;
}
