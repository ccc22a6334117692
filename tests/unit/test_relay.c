/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for the TCP data path: listener.c, tcp_relay.c and pipe_pool.c on
 * 127.0.0.1 with real sockets and a real event base.  The relay runs in the
 * test's main thread (event_base_loop in short slices until a condition
 * holds or a deadline passes); clients and backends are small blocking
 * threads, so nothing but the relay touches the event base.  Every port is
 * chosen by the kernel, so tests may run in parallel.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <event2/event.h>

#include "conf/conf.h"
#include "proxy/lb.h"
#include "proxy/listener.h"
#include "proxy/pport.h"
#include "proxy/tcp_relay.h"

#define MiB	(1024 * 1024)

/* ---- the relay under test ---- */

struct harness {
	struct event_base	*base;
	struct conf		 conf;
	struct relay_env	 env;
	struct pport		*pp;
	uint16_t		 port;
};

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
harness_init(struct harness *h, enum conf_relay_mode mode,
    uint32_t idle_timeout_ms)
{
	char err[256];
	int fd;

	/* splice(2) to a reset socket raises SIGPIPE; kuproxy ignores it. */
	signal(SIGPIPE, SIG_IGN);
	memset(h, 0, sizeof(*h));
	cr_assert_not_null(h->base = event_base_new());
	h->conf.relay_mode = mode;
	h->conf.tcp_idle_timeout_ms = idle_timeout_ms;
	h->env.base = h->base;
	h->env.conf = &h->conf;
	if (mode == CONF_RELAY_SPLICE)
		cr_assert_not_null(h->env.pipes = pipe_pool_new(0, 4));

	cr_assert_not_null(h->pp = calloc(1, sizeof(*h->pp)));
	h->pp->refcnt = 1;
	snprintf(h->pp->key, sizeof(h->pp->key), "test/relay:http/TCP");
	snprintf(h->pp->display, sizeof(h->pp->display), "test/relay:http");
	h->pp->proto = SVC_PROTO_TCP;
	cr_assert_not_null(h->pp->lanes = calloc(1, sizeof(*h->pp->lanes)));
	h->pp->n_lanes = 1;
	h->pp->lanes[0].pp = h->pp;
	h->pp->lanes[0].env = &h->env;
	cr_assert_not_null(h->pp->lb = lb_new());

	fd = listener_bind(SVC_PROTO_TCP, "127.0.0.1", 0, 0, 0, &h->port,
	    err, sizeof(err));
	cr_assert_neq(fd, -1, "%s", err);
	h->pp->lanes[0].listener = listener_new(h->base, fd, h->pp->display,
	    tcp_relay_accept, &h->pp->lanes[0], err, sizeof(err));
	cr_assert_not_null(h->pp->lanes[0].listener, "%s", err);
	h->pp->proxy_port = h->port;
}

static void
harness_free(struct harness *h)
{
	tcp_relay_close_all();
	cr_assert_eq(h->pp->refcnt, 1, "sessions left references behind");
	listener_free(h->pp->lanes[0].listener);
	h->pp->lanes[0].listener = NULL;
	pport_unref(h->pp);
	pipe_pool_free(h->env.pipes);
	event_base_free(h->base);
}

/* Run the loop in 5 ms slices until done() or the deadline. */
static bool
run_until(struct harness *h, bool (*done)(void *), void *arg, int timeout_ms)
{
	struct timeval slice = { 0, 5000 };
	long long deadline = now_ms() + timeout_ms;

	while (!(done != NULL && done(arg))) {
		if (now_ms() >= deadline)
			return false;
		event_base_loopexit(h->base, &slice);
		event_base_dispatch(h->base);
	}
	return true;
}

static bool
no_sessions(void *arg)
{
	return tcp_relay_active() == 0;
}

static bool
no_sessions_but_one(void *arg)
{
	return tcp_relay_active() == 1;
}

static void
set_endpoints(struct harness *h, const char *const *ips,
    const uint16_t *ports, size_t n)
{
	struct endpoint eps[8];
	size_t i;

	memset(eps, 0, sizeof(eps));
	for (i = 0; i < n; i++) {
		cr_assert_eq(svc_ip_parse(ips[i], &eps[i].ip), 0);
		eps[i].port = ports[i];
		eps[i].flags = EP_F_READY | EP_F_SERVING;
	}
	cr_assert_eq(lb_update(h->pp->lb, eps, n, SVC_AFFINITY_NONE, 0), 0);
}

static void
set_endpoint(struct harness *h, uint16_t port)
{
	const char *ip = "127.0.0.1";

	set_endpoints(h, &ip, &port, 1);
}

/* ---- data that notices reordering, loss and duplication ---- */

static uint8_t
pattern(uint64_t i, unsigned seed)
{
	uint64_t x = i * 0x9e3779b97f4a7c15ULL + seed;

	return (uint8_t)(x >> 29 ^ i >> 12);
}

static void
pattern_fill(uint8_t *buf, size_t len, uint64_t off, unsigned seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = pattern(off + i, seed);
}

static bool
pattern_check(const uint8_t *buf, size_t len, uint64_t off, unsigned seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (buf[i] != pattern(off + i, seed))
			return false;
	return true;
}

/* ---- backends: blocking threads, one per connection ---- */

enum backend_kind {
	BACKEND_ECHO = 0,	/* echo until EOF, then close */
	BACKEND_AFTER_EOF,	/* read to EOF, then send reply_len bytes */
	BACKEND_RESET,		/* read something, then reset */
	BACKEND_WATCH,		/* read until an error, remember it */
	BACKEND_SILENT,		/* read to EOF, then hold the socket, mute */
};

struct backend {
	int		 lfd;
	uint16_t	 port;
	enum backend_kind kind;
	size_t		 reply_len;
	atomic_int	 n_conns;
	atomic_size_t	 received;
	atomic_int	 received_ok;	/* AFTER_EOF: the pattern was intact */
	atomic_int	 last_error;	/* WATCH: errno of the failed read */
	atomic_int	 finished;	/* connections fully served */
};

struct backend_conn {
	struct backend	*b;
	int		 fd;
};

static void
close_with_reset(int fd)
{
	struct linger lg = { 1, 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static bool
send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		if ((n = send(fd, p, len, MSG_NOSIGNAL)) == -1) {
			if (errno == EINTR)
				continue;
			return false;
		}
		p += n;
		len -= (size_t)n;
	}
	return true;
}

static void
backend_serve_after_eof(struct backend *b, int fd)
{
	static __thread uint8_t buf[256 * 1024];
	uint64_t off = 0;
	bool ok = true;
	size_t chunk;
	ssize_t n;

	while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) {
		ok = ok && pattern_check(buf, (size_t)n, off, 1);
		off += (uint64_t)n;
	}
	b->received += off;
	b->received_ok = ok && n == 0;
	for (off = 0; off < b->reply_len; off += chunk) {
		chunk = b->reply_len - off < sizeof(buf) ?
		    b->reply_len - off : sizeof(buf);
		pattern_fill(buf, chunk, off, 2);
		if (!send_all(fd, buf, chunk))
			break;
	}
	close(fd);
}

static void *
backend_conn_main(void *arg)
{
	struct backend_conn *c = arg;
	struct backend *b = c->b;
	int fd = c->fd;
	char buf[16384];
	ssize_t n;

	free(c);
	switch (b->kind) {
	case BACKEND_ECHO:
		while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) {
			b->received += (size_t)n;
			if (!send_all(fd, buf, (size_t)n))
				break;
		}
		close(fd);
		break;
	case BACKEND_AFTER_EOF:
		backend_serve_after_eof(b, fd);
		break;
	case BACKEND_RESET:
		if ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
			b->received += (size_t)n;
		close_with_reset(fd);
		break;
	case BACKEND_WATCH:
		while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
			b->received += (size_t)n;
		b->last_error = n == 0 ? 0 : errno;
		close(fd);
		break;
	case BACKEND_SILENT:
		while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
			b->received += (size_t)n;
		sleep(5);
		close(fd);
		break;
	}
	b->finished++;
	return NULL;
}

static void *
backend_main(void *arg)
{
	struct backend *b = arg;
	struct backend_conn *c;
	pthread_t th;
	int fd;

	for (;;) {
		if ((fd = accept(b->lfd, NULL, NULL)) == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL;
		}
		b->n_conns++;
		c = malloc(sizeof(*c));
		c->b = b;
		c->fd = fd;
		pthread_create(&th, NULL, backend_conn_main, c);
		pthread_detach(th);
	}
}

/* A listening TCP socket on ip and a kernel-chosen port. */
static int
tcp_listen_on(const char *ip, int backlog, uint16_t *port)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	inet_pton(AF_INET, ip, &sin.sin_addr);
	cr_assert_neq(fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), -1);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0,
	    "bind %s: %s", ip, strerror(errno));
	if (backlog >= 0)
		cr_assert_eq(listen(fd, backlog), 0);
	getsockname(fd, (struct sockaddr *)&sin, &len);
	*port = ntohs(sin.sin_port);
	return fd;
}

static struct backend *
backend_start(const char *ip, enum backend_kind kind, size_t reply_len)
{
	struct backend *b;
	pthread_t th;

	cr_assert_not_null(b = calloc(1, sizeof(*b)));
	b->kind = kind;
	b->reply_len = reply_len;
	b->lfd = tcp_listen_on(ip, 64, &b->port);
	pthread_create(&th, NULL, backend_main, b);
	pthread_detach(th);
	return b;
}

/* ---- clients ---- */

static int
client_connect(uint16_t port)
{
	struct sockaddr_in sin;
	int fd;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_neq(fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), -1);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1) {
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

/*
 * A client in a thread: send send_len pattern bytes (seed 1), optionally
 * half-close, then read until EOF or an error, checking the reply against
 * seed reply_seed.
 */
struct client {
	uint16_t	port;
	size_t		send_len;
	bool		shut_wr;
	unsigned	reply_seed;
	/* results */
	int		connect_error;
	int		send_error;	/* the reset may come before we send */
	size_t		got;
	bool		reply_ok;
	bool		eof;
	int		read_error;
	atomic_int	done;
};

static void *
client_main(void *arg)
{
	static __thread uint8_t buf[256 * 1024];
	struct client *c = arg;
	size_t off, chunk;
	ssize_t n;
	int fd;

	if ((fd = client_connect(c->port)) == -1) {
		c->connect_error = errno;
		c->done = 1;
		return NULL;
	}
	for (off = 0; off < c->send_len; off += chunk) {
		chunk = c->send_len - off < sizeof(buf) ? c->send_len - off :
		    sizeof(buf);
		pattern_fill(buf, chunk, off, 1);
		if (!send_all(fd, buf, chunk)) {
			c->send_error = errno;
			break;
		}
	}
	if (c->shut_wr)
		shutdown(fd, SHUT_WR);
	c->reply_ok = true;
	while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) {
		c->reply_ok = c->reply_ok &&
		    pattern_check(buf, (size_t)n, c->got, c->reply_seed);
		c->got += (size_t)n;
	}
	c->eof = n == 0;
	c->read_error = n == -1 ? errno : 0;
	close(fd);
	c->done = 1;
	return NULL;
}

static bool
client_done(void *arg)
{
	struct client *c = arg;

	return c->done != 0;
}

/* Whether the client saw a reset, while sending or while reading. */
static bool
client_was_reset(const struct client *c)
{
	return c->send_error == ECONNRESET || c->read_error == ECONNRESET;
}

static void
client_run(struct harness *h, struct client *c, int timeout_ms)
{
	pthread_t th;

	c->port = h->port;
	pthread_create(&th, NULL, client_main, c);
	cr_assert(run_until(h, client_done, c, timeout_ms),
	    "client not done after %d ms", timeout_ms);
	pthread_join(th, NULL);
}

/* ---- round trip, half-close, bulk ---- */

static void
check_round_trip(enum conf_relay_mode mode)
{
	struct harness h;
	struct backend *b;
	struct client c = { .send_len = 1000, .shut_wr = true,
	    .reply_seed = 1 };

	harness_init(&h, mode, 0);
	b = backend_start("127.0.0.1", BACKEND_ECHO, 0);
	set_endpoint(&h, b->port);
	client_run(&h, &c, 5000);
	cr_assert_eq(c.connect_error, 0);
	cr_assert(c.eof, "no EOF: %s", strerror(c.read_error));
	cr_assert_eq(c.got, 1000);
	cr_assert(c.reply_ok);
	cr_assert(run_until(&h, no_sessions, NULL, 2000));
	cr_assert_eq(h.pp->stats.conns_total, 1);
	cr_assert_eq(h.pp->stats.conns_active, 0);
	cr_assert_eq(h.pp->stats.bytes_in, 1000);
	cr_assert_eq(h.pp->stats.bytes_out, 1000);
	cr_assert_eq(h.pp->stats.connect_failures, 0);
	harness_free(&h);
}

Test(relay, round_trip_splice, .timeout = 20)
{
	check_round_trip(CONF_RELAY_SPLICE);
}

Test(relay, round_trip_copy, .timeout = 20)
{
	check_round_trip(CONF_RELAY_COPY);
}

/* nginx-tests stream_proxy_half_close.t: the reply comes after our FIN. */
static void
check_half_close(enum conf_relay_mode mode, size_t up, size_t down)
{
	struct harness h;
	struct backend *b;
	struct client c = { .send_len = up, .shut_wr = true,
	    .reply_seed = 2 };

	harness_init(&h, mode, 0);
	b = backend_start("127.0.0.1", BACKEND_AFTER_EOF, down);
	set_endpoint(&h, b->port);
	client_run(&h, &c, 25000);
	cr_assert_eq(c.connect_error, 0);
	cr_assert(c.eof, "no EOF: %s", strerror(c.read_error));
	cr_assert_eq(b->received, up, "backend got %zu of %zu",
	    (size_t)b->received, up);
	cr_assert(b->received_ok, "client to backend bytes differ");
	cr_assert_eq(c.got, down, "client got %zu of %zu", c.got, down);
	cr_assert(c.reply_ok, "backend to client bytes differ");
	cr_assert(run_until(&h, no_sessions, NULL, 2000));
	cr_assert_eq(h.pp->stats.bytes_in, up);
	cr_assert_eq(h.pp->stats.bytes_out, down);
	if (h.env.pipes != NULL)
		cr_assert_eq(pipe_pool_n_busy(h.env.pipes), 0);
	cr_assert_eq(tcp_relay_n_buffers(), 0);
	harness_free(&h);
}

/*
 * Bulk bytes are spliced, not copied: only the first read of each burst
 * goes through user memory.  How many bursts there are depends on how the
 * kernel schedules both ends, so the bound is the e2e test's (row 9): 5 %.
 */
Test(relay, bulk_transfer_is_spliced_not_copied, .timeout = 60)
{
	struct harness h;
	struct backend *b;
	struct client c = { .send_len = 64 * MiB, .shut_wr = true,
	    .reply_seed = 2 };
	uint64_t copied = tcp_relay_bytes_copied();

	harness_init(&h, CONF_RELAY_SPLICE, 0);
	b = backend_start("127.0.0.1", BACKEND_AFTER_EOF, 64 * MiB);
	set_endpoint(&h, b->port);
	client_run(&h, &c, 50000);
	cr_assert(c.eof && c.got == 64 * MiB && c.reply_ok);
	copied = tcp_relay_bytes_copied() - copied;
	cr_assert_lt(copied, 128 * MiB / 20, "%llu of 128 MiB were copied",
	    (unsigned long long)copied);
	cr_assert_geq(pipe_pool_n_idle(h.env.pipes), 1,
	    "no pipe went back to the pool");
	cr_assert_eq(pipe_pool_n_busy(h.env.pipes), 0);
	harness_free(&h);
}

Test(relay, half_close_reply_after_eof_splice, .timeout = 20)
{
	check_half_close(CONF_RELAY_SPLICE, 5000, 70000);
}

Test(relay, half_close_reply_after_eof_copy, .timeout = 20)
{
	check_half_close(CONF_RELAY_COPY, 5000, 70000);
}

Test(relay, large_transfer_splice, .timeout = 60)
{
	check_half_close(CONF_RELAY_SPLICE, 64 * MiB, 64 * MiB);
}

Test(relay, large_transfer_copy, .timeout = 60)
{
	check_half_close(CONF_RELAY_COPY, 64 * MiB, 64 * MiB);
}

/* ---- resets ---- */

static void
check_backend_reset(enum conf_relay_mode mode)
{
	struct harness h;
	struct backend *b;
	struct client c = { .send_len = 10, .reply_seed = 1 };

	harness_init(&h, mode, 0);
	b = backend_start("127.0.0.1", BACKEND_RESET, 0);
	set_endpoint(&h, b->port);
	client_run(&h, &c, 5000);
	cr_assert_eq(c.connect_error, 0);
	cr_assert_not(c.eof, "the client saw a clean EOF");
	cr_assert_eq(c.read_error, ECONNRESET, "read error %s",
	    strerror(c.read_error));
	cr_assert(run_until(&h, no_sessions, NULL, 2000));
	cr_assert_eq(tcp_relay_n_resets(true), 1, "resets from the endpoint");
	cr_assert_eq(tcp_relay_n_resets(false), 0);
	harness_free(&h);
}

Test(relay, backend_reset_resets_client_splice, .timeout = 20)
{
	check_backend_reset(CONF_RELAY_SPLICE);
}

Test(relay, backend_reset_resets_client_copy, .timeout = 20)
{
	check_backend_reset(CONF_RELAY_COPY);
}

static bool
backend_finished(void *arg)
{
	struct backend *b = arg;

	return b->finished > 0;
}

static bool
backend_received(void *arg)
{
	struct backend *b = arg;

	return b->received > 0;
}

Test(relay, client_reset_resets_backend, .timeout = 20)
{
	struct harness h;
	struct backend *b;
	int fd;

	harness_init(&h, CONF_RELAY_SPLICE, 0);
	b = backend_start("127.0.0.1", BACKEND_WATCH, 0);
	set_endpoint(&h, b->port);
	cr_assert_neq(fd = client_connect(h.port), -1);
	cr_assert(send_all(fd, "x", 1));
	cr_assert(run_until(&h, backend_received, b, 5000));
	close_with_reset(fd);
	cr_assert(run_until(&h, backend_finished, b, 5000));
	cr_assert_eq(b->last_error, ECONNRESET, "backend read: %s",
	    strerror(b->last_error));
	cr_assert(run_until(&h, no_sessions, NULL, 2000));
	cr_assert_eq(tcp_relay_n_resets(false), 1, "resets from the client");
	cr_assert_eq(tcp_relay_n_resets(true), 0);
	harness_free(&h);
}

/* A clean end is not a reset: both sides get FIN after all the data. */
Test(relay, clean_close_is_not_a_reset, .timeout = 20)
{
	struct harness h;
	struct backend *b;
	struct client c = { .send_len = 100, .shut_wr = true,
	    .reply_seed = 1 };

	harness_init(&h, CONF_RELAY_SPLICE, 0);
	b = backend_start("127.0.0.1", BACKEND_WATCH, 0);
	set_endpoint(&h, b->port);
	client_run(&h, &c, 5000);
	cr_assert(c.eof);
	cr_assert_eq(c.read_error, 0);
	cr_assert(run_until(&h, backend_finished, b, 5000));
	cr_assert_eq(b->last_error, 0, "backend read: %s",
	    strerror(b->last_error));
	cr_assert_eq(b->received, 100);
	harness_free(&h);
}

/* ---- choosing and connecting ---- */

Test(relay, refused_endpoint_is_skipped, .timeout = 20)
{
	struct harness h;
	struct backend *b;
	const char *ips[2] = { "127.0.0.1", "127.0.0.2" };
	uint16_t ports[2];
	int dead, i;

	harness_init(&h, CONF_RELAY_SPLICE, 0);
	/* Bound but not listening: connecting to it gets RST. */
	dead = tcp_listen_on("127.0.0.1", -1, &ports[0]);
	b = backend_start("127.0.0.2", BACKEND_ECHO, 0);
	ports[1] = b->port;
	set_endpoints(&h, ips, ports, 2);
	for (i = 0; i < 2; i++) {
		struct client c = { .send_len = 100, .shut_wr = true,
		    .reply_seed = 1 };

		client_run(&h, &c, 5000);
		cr_assert(c.eof && c.got == 100 && c.reply_ok,
		    "connection %d failed", i);
	}
	/*
	 * The rotation puts the dead endpoint first both times, but after
	 * its refusal it backs off: the second connection skips it.
	 */
	cr_assert_eq(h.pp->stats.connect_failures, 1);
	cr_assert_eq(b->n_conns, 2);
	close(dead);
	harness_free(&h);
}

Test(relay, silent_endpoint_times_out_then_next, .timeout = 20)
{
	struct harness h;
	struct backend *b;
	const char *ips[2] = { "127.0.0.1", "127.0.0.2" };
	uint16_t ports[2];
	struct client c = { .send_len = 100, .shut_wr = true,
	    .reply_seed = 1 };
	int silent, filler[2], i;
	long long t0;

	harness_init(&h, CONF_RELAY_COPY, 0);
	/*
	 * A listener with a full accept queue drops SYNs: from outside it
	 * looks like a black hole.
	 */
	silent = tcp_listen_on("127.0.0.1", 0, &ports[0]);
	for (i = 0; i < 2; i++) {
		struct sockaddr_in sin = { .sin_family = AF_INET,
		    .sin_port = htons(ports[0]) };

		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		filler[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		connect(filler[i], (struct sockaddr *)&sin, sizeof(sin));
	}
	usleep(50000);
	b = backend_start("127.0.0.2", BACKEND_ECHO, 0);
	ports[1] = b->port;
	set_endpoints(&h, ips, ports, 2);
	t0 = now_ms();
	client_run(&h, &c, 5000);
	cr_assert(c.eof && c.got == 100 && c.reply_ok);
	cr_assert_eq(h.pp->stats.connect_failures, 1);
	cr_assert_geq(now_ms() - t0, 240, "the first try waits 250 ms");
	cr_assert_lt(now_ms() - t0, 1500);
	close(silent);
	close(filler[0]);
	close(filler[1]);
	harness_free(&h);
}

/*
 * Refused, black hole, live, in rotation order: the black hole met on the
 * second attempt costs the first dial step (it never timed out before), not
 * the second; the next connection skips both while they back off.
 */
Test(relay, black_hole_after_refusal_costs_the_first_step, .timeout = 20)
{
	struct harness h;
	struct backend *b;
	const char *ips[3] = { "127.0.0.1", "127.0.0.2", "127.0.0.3" };
	uint16_t ports[3];
	struct client c = { .send_len = 100, .shut_wr = true,
	    .reply_seed = 1 };
	struct client c2 = { .send_len = 100, .shut_wr = true,
	    .reply_seed = 1 };
	int dead, silent, filler[2], i;
	long long t0, took;

	harness_init(&h, CONF_RELAY_COPY, 0);
	dead = tcp_listen_on(ips[0], -1, &ports[0]);
	silent = tcp_listen_on(ips[1], 0, &ports[1]);
	for (i = 0; i < 2; i++) {
		struct sockaddr_in sin = { .sin_family = AF_INET,
		    .sin_port = htons(ports[1]) };

		inet_pton(AF_INET, ips[1], &sin.sin_addr);
		filler[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		connect(filler[i], (struct sockaddr *)&sin, sizeof(sin));
	}
	usleep(50000);
	b = backend_start(ips[2], BACKEND_ECHO, 0);
	ports[2] = b->port;
	set_endpoints(&h, ips, ports, 3);
	t0 = now_ms();
	client_run(&h, &c, 5000);
	took = now_ms() - t0;
	cr_assert(c.eof && c.got == 100 && c.reply_ok);
	cr_assert_eq(h.pp->stats.connect_failures, 2);
	cr_assert_geq(took, 240, "the black hole was not met: %lld ms", took);
	cr_assert_lt(took, 450, "the black hole cost %lld ms, not 250", took);

	t0 = now_ms();
	client_run(&h, &c2, 5000);
	took = now_ms() - t0;
	cr_assert(c2.eof && c2.got == 100 && c2.reply_ok);
	cr_assert_eq(h.pp->stats.connect_failures, 2, "a dead one was retried");
	cr_assert_lt(took, 200, "backing-off endpoints cost %lld ms", took);
	cr_assert_eq(b->n_conns, 2);
	close(dead);
	close(silent);
	close(filler[0]);
	close(filler[1]);
	harness_free(&h);
}

Test(relay, every_endpoint_refusing_resets_client, .timeout = 20)
{
	struct harness h;
	const char *ips[2] = { "127.0.0.1", "127.0.0.2" };
	uint16_t ports[2];
	struct client c = { .send_len = 1, .reply_seed = 1 };
	int dead[2];

	harness_init(&h, CONF_RELAY_SPLICE, 0);
	dead[0] = tcp_listen_on(ips[0], -1, &ports[0]);
	dead[1] = tcp_listen_on(ips[1], -1, &ports[1]);
	set_endpoints(&h, ips, ports, 2);
	client_run(&h, &c, 5000);
	cr_assert(client_was_reset(&c), "send: %s, read: %s",
	    strerror(c.send_error), strerror(c.read_error));
	cr_assert_eq(h.pp->stats.connect_failures, LB_MAX_TRIES);
	cr_assert_eq(h.pp->stats.no_endpoints, 1);
	close(dead[0]);
	close(dead[1]);
	harness_free(&h);
}

/* Accepted before the proxier paused the port: reset, not an empty reply. */
Test(relay, no_endpoint_resets_an_accepted_client, .timeout = 20)
{
	struct harness h;
	struct client c = { .send_len = 1, .reply_seed = 1 };

	harness_init(&h, CONF_RELAY_SPLICE, 0);
	client_run(&h, &c, 5000);
	cr_assert_eq(c.connect_error, 0);
	cr_assert(client_was_reset(&c), "send: %s, read: %s",
	    strerror(c.send_error), strerror(c.read_error));
	cr_assert_eq(h.pp->stats.no_endpoints, 1);
	cr_assert_eq(h.pp->stats.conns_active, 0);
	harness_free(&h);
}

Test(relay, paused_listener_refuses_at_once_and_resumes, .timeout = 20)
{
	struct harness h;
	struct backend *b;
	struct client c = { .send_len = 10, .shut_wr = true, .reply_seed = 1 };
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	long long t0;
	int fd;

	harness_init(&h, CONF_RELAY_SPLICE, 0);
	listener_pause(h.pp->lanes[0].listener);
	listener_pause(h.pp->lanes[0].listener);
	cr_assert(listener_is_paused(h.pp->lanes[0].listener));

	t0 = now_ms();
	cr_assert_eq(fd = client_connect(h.port), -1);
	cr_assert_eq(errno, ECONNREFUSED, "connect: %s", strerror(errno));
	cr_assert_lt(now_ms() - t0, 100, "the refusal was not immediate");

	/* The port stays ours while paused, even though it was ephemeral. */
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(h.port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_neq(fd = socket(AF_INET, SOCK_STREAM, 0), -1);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), -1,
	    "another socket could bind the paused port");
	cr_assert_eq(errno, EADDRINUSE);
	close(fd);
	cr_assert_eq(listener_port(h.pp->lanes[0].listener), h.port);

	b = backend_start("127.0.0.1", BACKEND_ECHO, 0);
	set_endpoint(&h, b->port);
	listener_resume(h.pp->lanes[0].listener);
	listener_resume(h.pp->lanes[0].listener);
	cr_assert_not(listener_is_paused(h.pp->lanes[0].listener));
	client_run(&h, &c, 5000);
	cr_assert(c.eof && c.got == 10 && c.reply_ok);

	/* And once more: pause after traffic, resume, still the same port. */
	listener_pause(h.pp->lanes[0].listener);
	cr_assert_eq(client_connect(h.port), -1);
	cr_assert_eq(errno, ECONNREFUSED);
	listener_resume(h.pp->lanes[0].listener);
	cr_assert_neq(fd = client_connect(h.port), -1);
	memset(&sin, 0, sizeof(sin));
	getpeername(fd, (struct sockaddr *)&sin, &len);
	cr_assert_eq(ntohs(sin.sin_port), h.port);
	close(fd);
	cr_assert(run_until(&h, no_sessions, NULL, 2000));
	harness_free(&h);
}

/* ---- resources: idle sessions, idle timeout, descriptor exhaustion ---- */

struct idle_client {
	int	fd;
	char	buf[8];
	size_t	got;
};

static bool
idle_client_got_reply(void *arg)
{
	struct idle_client *ic = arg;
	ssize_t n;

	n = recv(ic->fd, ic->buf + ic->got, sizeof(ic->buf) - ic->got,
	    MSG_DONTWAIT);
	if (n > 0)
		ic->got += (size_t)n;
	return ic->got >= 4;
}

static void
check_idle_holds_nothing(enum conf_relay_mode mode)
{
	struct harness h;
	struct backend *b;
	struct idle_client ic = { .fd = -1 };

	harness_init(&h, mode, 0);
	b = backend_start("127.0.0.1", BACKEND_ECHO, 0);
	set_endpoint(&h, b->port);
	cr_assert_neq(ic.fd = client_connect(h.port), -1);
	cr_assert(send_all(ic.fd, "ping", 4));
	cr_assert(run_until(&h, idle_client_got_reply, &ic, 5000));
	cr_assert_eq(memcmp(ic.buf, "ping", 4), 0);
	run_until(&h, NULL, NULL, 50);

	cr_assert_eq(tcp_relay_active(), 1);
	cr_assert_eq(tcp_relay_n_buffers(), 0,
	    "an idle session holds a buffer");
	if (h.env.pipes != NULL) {
		cr_assert_eq(pipe_pool_n_busy(h.env.pipes), 0,
		    "an idle session holds a pipe");
		/* Four bytes are read and written, never spliced. */
		cr_assert_eq(pipe_pool_n_idle(h.env.pipes), 0,
		    "a small exchange took a pipe");
	}
	close(ic.fd);
	cr_assert(run_until(&h, no_sessions, NULL, 2000));
	harness_free(&h);
}

Test(relay, idle_session_holds_no_pipe, .timeout = 20)
{
	check_idle_holds_nothing(CONF_RELAY_SPLICE);
}

Test(relay, idle_session_holds_no_buffer, .timeout = 20)
{
	check_idle_holds_nothing(CONF_RELAY_COPY);
}

Test(relay, pipe_pool_reuses_and_bounds_idle_pipes)
{
	struct pipe_pool *pool;
	int p[3][2], i;

	cr_assert_not_null(pool = pipe_pool_new(0, 2));
	cr_assert_geq(pipe_pool_pipe_size(pool), 64 * 1024);
	for (i = 0; i < 3; i++)
		cr_assert_eq(pipe_pool_get(pool, p[i]), 0);
	cr_assert_eq(pipe_pool_n_busy(pool), 3);
	for (i = 0; i < 3; i++)
		pipe_pool_put(pool, p[i], true);
	cr_assert_eq(p[0][0], -1);
	cr_assert_eq(pipe_pool_n_busy(pool), 0);
	cr_assert_eq(pipe_pool_n_idle(pool), 2, "only max_idle are kept");
	cr_assert_eq(pipe_pool_get(pool, p[0]), 0);
	cr_assert_eq(pipe_pool_n_idle(pool), 1, "an idle pipe was reused");
	/* A pipe that may hold bytes is closed, not pooled. */
	pipe_pool_put(pool, p[0], false);
	cr_assert_eq(pipe_pool_n_idle(pool), 1);
	pipe_pool_free(pool);
}

Test(relay, pipe_size_above_the_limit_falls_back, .timeout = 10)
{
	struct pipe_pool *pool;
	int p[2];

	/* Far above any pipe-max-size; even root gets ENOMEM or EPERM. */
	cr_assert_not_null(pool = pipe_pool_new((size_t)1 << 30, 1));
	cr_assert_eq(pipe_pool_get(pool, p), 0);
	cr_assert_lt(pipe_pool_pipe_size(pool), (size_t)1 << 30);
	cr_assert_geq(pipe_pool_pipe_size(pool), 4096);
	pipe_pool_put(pool, p, true);
	pipe_pool_free(pool);
}

static bool
client_saw_eof(void *arg)
{
	struct idle_client *ic = arg;
	char c;

	return recv(ic->fd, &c, 1, MSG_DONTWAIT) == 0;
}

Test(relay, idle_timeout_closes_session, .timeout = 20)
{
	struct harness h;
	struct backend *b;
	struct idle_client ic = { .fd = -1 };
	long long t0;

	harness_init(&h, CONF_RELAY_SPLICE, 300);
	b = backend_start("127.0.0.1", BACKEND_ECHO, 0);
	set_endpoint(&h, b->port);
	cr_assert_neq(ic.fd = client_connect(h.port), -1);
	cr_assert(send_all(ic.fd, "ping", 4));
	cr_assert(run_until(&h, idle_client_got_reply, &ic, 5000));
	t0 = now_ms();
	cr_assert(run_until(&h, client_saw_eof, &ic, 3000),
	    "the idle session was not closed");
	cr_assert_geq(now_ms() - t0, 250);
	cr_assert_eq(tcp_relay_active(), 0);
	close(ic.fd);
	harness_free(&h);
}

Test(relay, close_all_ends_every_session, .timeout = 20)
{
	struct harness h;
	struct backend *b;
	struct idle_client ic[3];
	int i;

	harness_init(&h, CONF_RELAY_SPLICE, 0);
	b = backend_start("127.0.0.1", BACKEND_ECHO, 0);
	set_endpoint(&h, b->port);
	for (i = 0; i < 3; i++) {
		memset(&ic[i], 0, sizeof(ic[i]));
		cr_assert_neq(ic[i].fd = client_connect(h.port), -1);
		cr_assert(send_all(ic[i].fd, "ping", 4));
		cr_assert(run_until(&h, idle_client_got_reply, &ic[i], 5000));
	}
	cr_assert_eq(tcp_relay_active(), 3);
	cr_assert_eq(h.pp->refcnt, 4, "each session holds a reference");
	tcp_relay_close_all();
	cr_assert_eq(tcp_relay_active(), 0);
	cr_assert_eq(h.pp->stats.conns_active, 0);
	cr_assert_eq(h.pp->refcnt, 1);
	for (i = 0; i < 3; i++) {
		cr_assert(client_saw_eof(&ic[i]));
		close(ic[i].fd);
	}
	harness_free(&h);
}

/* A removed port lives until its last session closes. */
Test(relay, removed_port_outlives_its_sessions, .timeout = 20)
{
	struct harness h;
	struct backend *b;
	struct idle_client ic = { .fd = -1 };
	struct pport *pp;

	harness_init(&h, CONF_RELAY_SPLICE, 0);
	b = backend_start("127.0.0.1", BACKEND_ECHO, 0);
	set_endpoint(&h, b->port);
	cr_assert_neq(ic.fd = client_connect(h.port), -1);
	cr_assert(send_all(ic.fd, "ping", 4));
	cr_assert(run_until(&h, idle_client_got_reply, &ic, 5000));

	/* What the proxier does on removal. */
	pp = h.pp;
	listener_free(pp->lanes[0].listener);
	pp->lanes[0].listener = NULL;
	pp->removed = true;
	pport_unref(pp);
	cr_assert_eq(tcp_relay_active(), 1);
	cr_assert_eq(client_connect(h.port), -1, "the port still accepts");

	/* The session still works, then frees the pport (ASan would tell). */
	cr_assert(send_all(ic.fd, "pong", 4));
	ic.got = 0;
	cr_assert(run_until(&h, idle_client_got_reply, &ic, 5000));
	cr_assert_eq(memcmp(ic.buf, "pong", 4), 0);
	close(ic.fd);
	cr_assert(run_until(&h, no_sessions, NULL, 2000));
	pipe_pool_free(h.env.pipes);
	event_base_free(h.base);
}

/* EMFILE: accept pauses without spinning, and resumes. */

struct accepted {
	int	fds[16];
	int	n;
	int	want;		/* for accepted_enough() */
};

static void
accept_store(int fd, const struct sockaddr *peer, socklen_t len, void *arg)
{
	struct accepted *a = arg;

	a->fds[a->n++] = fd;
}

static double
cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	    (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int
highest_open_fd(void)
{
	struct dirent *de;
	DIR *d;
	int fd, max = 0;

	cr_assert_not_null(d = opendir("/proc/self/fd"));
	while ((de = readdir(d)) != NULL)
		if ((fd = atoi(de->d_name)) > max)
			max = fd;
	closedir(d);
	return max;
}

static bool
accepted_enough(void *arg)
{
	struct accepted *a = arg;

	return a->n >= a->want;
}

Test(relay, emfile_pauses_accept_and_recovers, .timeout = 20)
{
	struct event_base *base;
	struct harness h;
	struct listener *l;
	struct accepted a = { .n = 0 };
	struct rlimit saved, low;
	int clients[4], filler[64], n_filler = 0, fd, i, n_starved;
	char err[256];
	uint16_t port;
	double cpu;

	cr_assert_not_null(base = event_base_new());
	memset(&h, 0, sizeof(h));
	h.base = base;
	fd = listener_bind(SVC_PROTO_TCP, "127.0.0.1", 0, 0, 0, &port, err,
	    sizeof(err));
	cr_assert_neq(fd, -1, "%s", err);
	l = listener_new(base, fd, "test/emfile", accept_store, &a, err,
	    sizeof(err));
	cr_assert_not_null(l, "%s", err);
	/* Connections complete in the kernel's queue, waiting for accept. */
	for (i = 0; i < 4; i++)
		cr_assert_neq(clients[i] = client_connect(port), -1);

	/* No descriptor left: cap the table just above the highest fd. */
	getrlimit(RLIMIT_NOFILE, &saved);
	low = saved;
	low.rlim_cur = (rlim_t)highest_open_fd() + 1 + 8;
	if (setrlimit(RLIMIT_NOFILE, &low) == -1)
		cr_skip_test("cannot lower RLIMIT_NOFILE (valgrind?): %s",
		    strerror(errno));
	while (n_filler < 64 && (fd = dup(0)) != -1)
		filler[n_filler++] = fd;

	cpu = cpu_seconds();
	run_until(&h, NULL, NULL, 600);
	cpu = cpu_seconds() - cpu;
	n_starved = (int)listener_n_starved(l);
	/* Two free slots: the early wake-up accepts two, then starves again. */
	close(filler[--n_filler]);
	close(filler[--n_filler]);
	listener_fd_released();
	run_until(&h, NULL, NULL, 30);
	i = a.n;

	/* Give the descriptors back: the retry timer picks up the rest. */
	while (n_filler > 0)
		close(filler[--n_filler]);
	setrlimit(RLIMIT_NOFILE, &saved);
	a.want = 4;
	cr_assert(run_until(&h, accepted_enough, &a, 2000), "accepted %d of 4",
	    a.n);

	cr_assert_geq(n_starved, 1, "accept never hit EMFILE");
	cr_assert_leq(n_starved, 6, "accept retried %d times in 600 ms",
	    n_starved);
	cr_assert_lt(cpu, 0.2, "the loop spun: %.3f s of CPU", cpu);
	cr_assert_eq(i, 2, "the early wake-up accepted %d", i);
	cr_assert_not(listener_is_starved(l));

	for (i = 0; i < a.n; i++)
		close(a.fds[i]);
	for (i = 0; i < 4; i++)
		close(clients[i]);
	listener_free(l);
	event_base_free(base);
}

/* ---- proxy ports ---- */

Test(relay, bind_uses_the_range_and_the_preferred_port)
{
	char err[256];
	uint16_t probe, port, begin;
	int fd, fds[3], i;

	/* A free window: around an ephemeral port, then scan it. */
	fd = listener_bind(SVC_PROTO_TCP, "127.0.0.1", 0, 0, 0, &probe, err,
	    sizeof(err));
	cr_assert_neq(fd, -1, "%s", err);
	close(fd);
	begin = probe;

	fds[0] = listener_bind(SVC_PROTO_TCP, "127.0.0.1", begin, begin + 2,
	    begin + 1, &port, err, sizeof(err));
	cr_assert_neq(fds[0], -1, "%s", err);
	cr_assert_eq(port, begin + 1, "the preferred port comes first");
	cr_assert_eq(listen(fds[0], 1), 0);
	for (i = 1; i < 3; i++) {
		fds[i] = listener_bind(SVC_PROTO_TCP, "127.0.0.1", begin,
		    begin + 2, begin + 1, &port, err, sizeof(err));
		if (fds[i] == -1)
			break;
		cr_assert(port >= begin && port <= begin + 2 &&
		    port != begin + 1);
		cr_assert_eq(listen(fds[i], 1), 0);
	}
	if (i == 3) {
		fd = listener_bind(SVC_PROTO_TCP, "127.0.0.1", begin,
		    begin + 2, 0, &port, err, sizeof(err));
		cr_assert_eq(fd, -1, "a fourth port in a range of three");
		cr_assert(strstr(err, "no free port") != NULL, "%s", err);
	}
	while (--i >= 0)
		close(fds[i]);
}

Test(relay, ephemeral_bind_keeps_a_free_preferred_port)
{
	char err[256];
	uint16_t want, port;
	int fd, held;

	fd = listener_bind(SVC_PROTO_TCP, "127.0.0.1", 0, 0, 0, &want, err,
	    sizeof(err));
	cr_assert_neq(fd, -1, "%s", err);
	close(fd);
	fd = listener_bind(SVC_PROTO_TCP, "127.0.0.1", 0, 0, want, &port, err,
	    sizeof(err));
	cr_assert_neq(fd, -1, "%s", err);
	cr_assert_eq(port, want);
	cr_assert_eq(listen(fd, 1), 0);
	/* Taken now: another ephemeral port instead of a failure. */
	held = listener_bind(SVC_PROTO_TCP, "127.0.0.1", 0, 0, want, &port,
	    err, sizeof(err));
	cr_assert_neq(held, -1, "%s", err);
	cr_assert_neq(port, want);
	close(held);
	close(fd);
}

Test(relay, paused_port_is_not_handed_out_again)
{
	struct event_base *base;
	struct listener *l;
	struct accepted a = { .n = 0 };
	char err[256];
	uint16_t port, other;
	int fd;

	cr_assert_not_null(base = event_base_new());
	fd = listener_bind(SVC_PROTO_TCP, "127.0.0.1", 0, 0, 0, &port, err,
	    sizeof(err));
	cr_assert_neq(fd, -1, "%s", err);
	cr_assert_not_null(l = listener_new(base, fd, "test/held",
	    accept_store, &a, err, sizeof(err)));
	listener_pause(l);
	fd = listener_bind(SVC_PROTO_TCP, "127.0.0.1", port, port, port,
	    &other, err, sizeof(err));
	cr_assert_eq(fd, -1, "the paused port %u was handed out", port);
	listener_resume(l);
	cr_assert_not(listener_is_paused(l));
	listener_free(l);
	event_base_free(base);
}

Test(relay, bind_rejects_bad_input)
{
	char err[256];
	uint16_t port;

	cr_assert_eq(listener_bind(SVC_PROTO_TCP, "not-an-ip", 0, 0, 0, &port,
	    err, sizeof(err)), -1);
	cr_assert(strstr(err, "not-an-ip") != NULL, "%s", err);
	cr_assert_eq(listener_bind(SVC_PROTO_SCTP, "127.0.0.1", 0, 0, 0, &port,
	    err, sizeof(err)), -1);
	cr_assert_eq(listener_bind(SVC_PROTO_TCP, "127.0.0.1", 20, 10, 0,
	    &port, err, sizeof(err)), -1);
}

Test(relay, udp_port_binds)
{
	char err[256];
	uint16_t port;
	int fd;

	fd = listener_bind(SVC_PROTO_UDP, "127.0.0.1", 0, 0, 0, &port, err,
	    sizeof(err));
	cr_assert_neq(fd, -1, "%s", err);
	cr_assert_neq(port, 0);
	close(fd);
}

/* ---- limits: connection cap, half-close timeout, keepalive ---- */

Test(relay, max_connections_resets_the_excess_at_once, .timeout = 20)
{
	struct harness h;
	struct backend *b;
	struct idle_client ic[2];
	uint64_t rejected = tcp_relay_n_rejected();
	struct client over = { .send_len = 1, .reply_seed = 1 };
	struct client after = { .send_len = 4, .shut_wr = true,
	    .reply_seed = 1 };
	int i;

	harness_init(&h, CONF_RELAY_SPLICE, 0);
	h.conf.tcp_max_connections = 2;
	b = backend_start("127.0.0.1", BACKEND_ECHO, 0);
	set_endpoint(&h, b->port);
	for (i = 0; i < 2; i++) {
		memset(&ic[i], 0, sizeof(ic[i]));
		cr_assert_neq(ic[i].fd = client_connect(h.port), -1);
		cr_assert(send_all(ic[i].fd, "ping", 4));
		cr_assert(run_until(&h, idle_client_got_reply, &ic[i], 5000));
	}
	client_run(&h, &over, 2000);
	cr_assert(client_was_reset(&over), "the third client was served: "
	    "send %s, read %s", strerror(over.send_error),
	    strerror(over.read_error));
	cr_assert_eq(tcp_relay_n_rejected() - rejected, 1);
	cr_assert_eq(tcp_relay_active(), 2);
	cr_assert_eq(h.pp->stats.conns_total, 2, "a rejected client counted "
	    "as a connection");
	cr_assert_eq(b->n_conns, 2, "a rejected client reached the backend");

	/* Below the cap again: served. */
	close(ic[0].fd);
	cr_assert(run_until(&h, no_sessions_but_one, NULL, 2000));
	client_run(&h, &after, 5000);
	cr_assert(after.eof && after.got == 4 && after.reply_ok);
	close(ic[1].fd);
	cr_assert(run_until(&h, no_sessions, NULL, 2000));
	harness_free(&h);
}

static bool
client_done_or_eof(void *arg)
{
	struct idle_client *ic = arg;
	char c;
	ssize_t n;

	n = recv(ic->fd, &c, 1, MSG_DONTWAIT);
	return n == 0 || (n == -1 && errno != EAGAIN);
}

static void
check_half_close_timeout(enum conf_relay_mode mode)
{
	struct harness h;
	struct backend *b;
	struct idle_client ic = { .fd = -1 };
	long long t0, waited;

	harness_init(&h, mode, 0);
	h.conf.tcp_half_close_timeout_ms = 300;
	b = backend_start("127.0.0.1", BACKEND_SILENT, 0);
	set_endpoint(&h, b->port);
	cr_assert_neq(ic.fd = client_connect(h.port), -1);
	cr_assert(send_all(ic.fd, "request", 7));
	shutdown(ic.fd, SHUT_WR);
	cr_assert(run_until(&h, backend_received, b, 5000));
	t0 = now_ms();
	/* The backend never answers nor closes; the relay gives up. */
	cr_assert(run_until(&h, client_done_or_eof, &ic, 3000),
	    "the half-closed session was not closed");
	waited = now_ms() - t0;
	cr_assert_geq(waited, 200, "closed after %lld ms", waited);
	cr_assert_eq(tcp_relay_active(), 0);
	cr_assert_eq(tcp_relay_n_buffers(), 0);
	if (h.env.pipes != NULL)
		cr_assert_eq(pipe_pool_n_busy(h.env.pipes), 0);
	close(ic.fd);
	harness_free(&h);
}

Test(relay, half_close_timeout_closes_silent_session_splice, .timeout = 20)
{
	check_half_close_timeout(CONF_RELAY_SPLICE);
}

Test(relay, half_close_timeout_closes_silent_session_copy, .timeout = 20)
{
	check_half_close_timeout(CONF_RELAY_COPY);
}

/* An open session is not half-closed: the half-close timer leaves it be. */
Test(relay, half_close_timeout_spares_open_sessions, .timeout = 20)
{
	struct harness h;
	struct backend *b;
	struct idle_client ic = { .fd = -1 };

	harness_init(&h, CONF_RELAY_SPLICE, 0);
	h.conf.tcp_half_close_timeout_ms = 100;
	b = backend_start("127.0.0.1", BACKEND_ECHO, 0);
	set_endpoint(&h, b->port);
	cr_assert_neq(ic.fd = client_connect(h.port), -1);
	cr_assert(send_all(ic.fd, "ping", 4));
	cr_assert(run_until(&h, idle_client_got_reply, &ic, 5000));
	run_until(&h, NULL, NULL, 400);
	cr_assert_eq(tcp_relay_active(), 1);
	close(ic.fd);
	cr_assert(run_until(&h, no_sessions, NULL, 2000));
	harness_free(&h);
}

static int
sockopt_int(int fd, int level, int name)
{
	socklen_t len = sizeof(int);
	int v = -1;

	cr_assert_eq(getsockopt(fd, level, name, &v, &len), 0);
	return v;
}

/* Accepted sockets carry TCP_NODELAY and keepalive from the listener. */
Test(relay, accepted_sockets_inherit_nodelay_and_keepalive, .timeout = 20)
{
	struct event_base *base;
	struct harness h;
	struct listener *l;
	struct accepted a = { .n = 0 };
	char err[256];
	uint16_t port;
	int fd, client[2];

	cr_assert_not_null(base = event_base_new());
	memset(&h, 0, sizeof(h));
	h.base = base;
	fd = listener_bind(SVC_PROTO_TCP, "127.0.0.1", 0, 0, 0, &port, err,
	    sizeof(err));
	cr_assert_neq(fd, -1, "%s", err);
	cr_assert_not_null(l = listener_new(base, fd, "test/keepalive",
	    accept_store, &a, err, sizeof(err)), "%s", err);
	cr_assert(listener_keepalive_inherited(l, 0), "nothing to inherit");
	/* Queued before the change: those must be set one by one. */
	cr_assert_neq(client[0] = client_connect(port), -1);
	cr_assert_not(listener_keepalive_inherited(l, 12000));
	cr_assert_not(listener_keepalive_inherited(l, 12000),
	    "stale until the queue has been emptied");
	a.want = 1;
	cr_assert(run_until(&h, accepted_enough, &a, 2000));
	cr_assert(listener_keepalive_inherited(l, 12000));
	cr_assert_neq(client[1] = client_connect(port), -1);
	a.want = 2;
	cr_assert(run_until(&h, accepted_enough, &a, 2000));

	fd = a.fds[1];
	cr_assert_eq(sockopt_int(fd, IPPROTO_TCP, TCP_NODELAY), 1);
	cr_assert_eq(sockopt_int(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
	cr_assert_eq(sockopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), 6);
	cr_assert_eq(sockopt_int(fd, IPPROTO_TCP, TCP_KEEPINTVL), 2);
	cr_assert_eq(sockopt_int(fd, IPPROTO_TCP, TCP_KEEPCNT), 3);
	cr_assert_eq(sockopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 12000);
	cr_assert_eq(sockopt_int(a.fds[0], IPPROTO_TCP, TCP_NODELAY), 1);

	/* Off again: no keepalive, no user timeout. */
	cr_assert_eq(listener_sock_keepalive(fd, 0), 0);
	cr_assert_eq(sockopt_int(fd, SOL_SOCKET, SO_KEEPALIVE), 0);
	cr_assert_eq(sockopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 0);
	/* Short bounds still probe every second at least. */
	cr_assert_eq(listener_sock_keepalive(fd, 1500), 0);
	cr_assert_eq(sockopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), 1);
	cr_assert_eq(sockopt_int(fd, IPPROTO_TCP, TCP_KEEPINTVL), 1);

	close(a.fds[0]);
	close(a.fds[1]);
	close(client[0]);
	close(client[1]);
	listener_free(l);
	event_base_free(base);
}

/* ---- both directions at once ---- */

struct duplex {
	uint16_t	port;
	size_t		len;
	int		fd;
	size_t		got;
	bool		ok;
	atomic_int	done;
};

static void *
duplex_sender(void *arg)
{
	static __thread uint8_t buf[100 * 1000];
	struct duplex *d = arg;
	size_t off, chunk;

	for (off = 0; off < d->len; off += chunk) {
		chunk = d->len - off < sizeof(buf) ? d->len - off :
		    sizeof(buf);
		pattern_fill(buf, chunk, off, 1);
		if (!send_all(d->fd, buf, chunk))
			break;
	}
	shutdown(d->fd, SHUT_WR);
	return NULL;
}

static void *
duplex_main(void *arg)
{
	static __thread uint8_t buf[70 * 1000];
	struct duplex *d = arg;
	pthread_t th;
	ssize_t n;

	d->ok = true;
	if ((d->fd = client_connect(d->port)) == -1) {
		d->ok = false;
		d->done = 1;
		return NULL;
	}
	pthread_create(&th, NULL, duplex_sender, d);
	while ((n = recv(d->fd, buf, sizeof(buf), 0)) > 0) {
		d->ok = d->ok && pattern_check(buf, (size_t)n, d->got, 1);
		d->got += (size_t)n;
	}
	pthread_join(th, NULL);
	close(d->fd);
	d->done = 1;
	return NULL;
}

static bool
duplex_done(void *arg)
{
	struct duplex *d = arg;

	return d->done != 0;
}

/*
 * An echo with both directions busy at once: each flow's unsent bytes
 * must survive the other flow's reads (nothing is shared between flows).
 */
static void
check_echo_both_ways(enum conf_relay_mode mode)
{
	struct harness h;
	struct backend *b;
	struct duplex d = { .len = 48 * MiB + 12345 };
	pthread_t th;

	harness_init(&h, mode, 0);
	b = backend_start("127.0.0.1", BACKEND_ECHO, 0);
	set_endpoint(&h, b->port);
	d.port = h.port;
	pthread_create(&th, NULL, duplex_main, &d);
	cr_assert(run_until(&h, duplex_done, &d, 50000), "echo not done");
	pthread_join(th, NULL);
	cr_assert_eq(d.got, d.len, "got %zu of %zu", d.got, d.len);
	cr_assert(d.ok, "the echo differs");
	cr_assert(run_until(&h, no_sessions, NULL, 2000));
	cr_assert_eq(tcp_relay_n_buffers(), 0);
	harness_free(&h);
}

Test(relay, echo_both_ways_at_once_splice, .timeout = 60)
{
	check_echo_both_ways(CONF_RELAY_SPLICE);
}

Test(relay, echo_both_ways_at_once_copy, .timeout = 60)
{
	check_echo_both_ways(CONF_RELAY_COPY);
}
