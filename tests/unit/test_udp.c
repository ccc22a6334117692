/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for proxy/udp_relay.c with real sockets on 127.0.0.x and a
 * real event loop: UDP echo endpoints that answer "NAME:payload" (or the
 * bare payload), client sockets, and a service port built by hand around a
 * balancer.  Every wait is bounded; every port is ephemeral.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <event2/event.h>

#include "conf/conf.h"
#include "proxy/lb.h"
#include "proxy/listener.h"
#include "proxy/pport.h"
#include "proxy/udp_relay.h"

#define MAX_ECHO	4
#define MAX_SVC		2
#define BIG		65536

enum echo_mode {
	ECHO_TAGGED = 0,	/* "NAME:" + payload */
	ECHO_RAW,		/* payload */
};

struct echo {
	char		 name[8];
	int		 fd;
	struct event	*ev;
	struct svc_ip	 ip;
	uint16_t	 port;
	enum echo_mode	 mode;
	int		 delay_ms;	/* answer this late */
	int		 n_received;
};

/* One service port: the pport, its balancer, its relay and address. */
struct svcport {
	struct pport		 pp;
	struct pport_lane	 lane;
	struct svc_port		 port;
	struct endpoint		 eps[MAX_ECHO + 1];
	struct udp_port		*up;
	int			 fd;		/* the service socket */
	struct sockaddr_in	 addr;
};

struct fx {
	struct event_base	*base;
	struct conf		 conf;
	struct relay_env	 env;
	struct echo		 echo[MAX_ECHO];
	size_t			 n_echo;
	struct svcport		 svc[MAX_SVC];
	size_t			 n_svc;
};

static struct fx	fx;
static unsigned char	rxbuf[BIG], txbuf[BIG];

struct late_reply {
	int			 fd;
	struct sockaddr_in	 to;
	size_t			 len;
	unsigned char		 data[];
};

static void
late_reply_cb(evutil_socket_t fd, short what, void *arg)
{
	struct late_reply *lr = arg;

	(void)fd;
	(void)what;
	(void)sendto(lr->fd, lr->data, lr->len, 0,
	    (struct sockaddr *)&lr->to, sizeof(lr->to));
	free(lr);
}

static void
echo_cb(evutil_socket_t fd, short what, void *arg)
{
	struct echo		*e = arg;
	struct sockaddr_in	 from;
	socklen_t		 fromlen = sizeof(from);
	struct late_reply	*lr;
	struct timeval		 tv;
	size_t			 off = 0;
	ssize_t			 n;

	(void)what;
	n = recvfrom(fd, rxbuf, sizeof(rxbuf), MSG_DONTWAIT,
	    (struct sockaddr *)&from, &fromlen);
	if (n < 0)
		return;
	e->n_received++;
	if (e->mode == ECHO_TAGGED)
		off = (size_t)snprintf((char *)txbuf, sizeof(txbuf), "%s:",
		    e->name);
	memcpy(txbuf + off, rxbuf, (size_t)n);
	if (e->delay_ms == 0) {
		(void)sendto(fd, txbuf, off + (size_t)n, 0,
		    (struct sockaddr *)&from, fromlen);
		return;
	}
	cr_assert_not_null(lr = malloc(sizeof(*lr) + off + (size_t)n));
	lr->fd = fd;
	lr->to = from;
	lr->len = off + (size_t)n;
	memcpy(lr->data, txbuf, lr->len);
	tv.tv_sec = e->delay_ms / 1000;
	tv.tv_usec = (e->delay_ms % 1000) * 1000;
	cr_assert_eq(event_base_once(fx.base, -1, EV_TIMEOUT, late_reply_cb,
	    lr, &tv), 0);
}

static void
set_bufs(int fd)
{
	int size = 1 << 20;

	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
}

static uint16_t
bound_port(int fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	return ntohs(sin.sin_port);
}

/* An echo endpoint named name on 127.0.0.(2 + index). */
static struct echo *
echo_add(const char *name, enum echo_mode mode)
{
	struct echo		*e = &fx.echo[fx.n_echo];
	struct sockaddr_in	 sin;
	char			 ip[32];

	cr_assert_lt(fx.n_echo, MAX_ECHO);
	snprintf(ip, sizeof(ip), "127.0.0.%zu", fx.n_echo + 2);
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->mode = mode;
	cr_assert_eq(svc_ip_parse(ip, &e->ip), 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	inet_pton(AF_INET, ip, &sin.sin_addr);
	cr_assert_geq(e->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0),
	    0);
	set_bufs(e->fd);
	cr_assert_eq(bind(e->fd, (struct sockaddr *)&sin, sizeof(sin)), 0,
	    "bind %s: %s", ip, strerror(errno));
	e->port = bound_port(e->fd);
	e->ev = event_new(fx.base, e->fd, EV_READ | EV_PERSIST, echo_cb, e);
	cr_assert_not_null(e->ev);
	event_add(e->ev, NULL);
	fx.n_echo++;
	return e;
}

static struct endpoint
endpoint_of(const struct svc_ip *ip, uint16_t port)
{
	struct endpoint ep;

	memset(&ep, 0, sizeof(ep));
	ep.ip = *ip;
	ep.port = port;
	ep.flags = EP_F_READY | EP_F_SERVING;
	return ep;
}

static int
endpoint_qsort_cmp(const void *a, const void *b)
{
	return svc_endpoint_cmp(a, b);
}

/*
 * Give service s the endpoints eps (as the proxier would: new spec, then
 * lb_update, then udp_port_endpoints_changed).
 */
static void
svc_set_endpoints(struct svcport *s, const struct endpoint *eps, size_t n,
    enum svc_affinity affinity)
{
	cr_assert_leq(n, MAX_ECHO + 1);
	if (n > 0)
		memcpy(s->eps, eps, n * sizeof(*eps));
	qsort(s->eps, n, sizeof(*eps), endpoint_qsort_cmp);
	s->port.endpoints = s->eps;
	s->port.n_endpoints = n;
	s->pp.port = &s->port;
	cr_assert_eq(lb_update(s->pp.lb, s->eps, n, affinity, 0), 0);
	if (s->up != NULL)
		udp_port_endpoints_changed(s->up);
}

/* Endpoints: the echo servers named in `which` ("AB" = first two). */
static void
svc_use_echoes(struct svcport *s, const char *which)
{
	struct endpoint eps[MAX_ECHO];
	size_t i, n = 0;

	for (i = 0; i < fx.n_echo; i++)
		if (strchr(which, fx.echo[i].name[0]) != NULL)
			eps[n++] = endpoint_of(&fx.echo[i].ip,
			    fx.echo[i].port);
	svc_set_endpoints(s, eps, n, SVC_AFFINITY_NONE);
}

/*
 * A service port bound on bind_addr that clients reach at dst_addr (as
 * after a REDIRECT).
 */
static struct svcport *
svc_add_on(const char *bind_addr, const char *dst_addr)
{
	struct svcport	*s = &fx.svc[fx.n_svc];
	char		 err[256];
	uint16_t	 port;
	int		 fd;

	cr_assert_lt(fx.n_svc, MAX_SVC);
	snprintf(s->pp.key, sizeof(s->pp.key), "test/udp%zu:dns/UDP",
	    fx.n_svc);
	snprintf(s->pp.display, sizeof(s->pp.display), "test/udp%zu:dns",
	    fx.n_svc);
	s->pp.refcnt = 1;
	s->pp.proto = SVC_PROTO_UDP;
	s->lane.pp = &s->pp;
	s->lane.env = &fx.env;
	s->pp.lanes = &s->lane;
	s->pp.n_lanes = 1;
	s->port.proto = SVC_PROTO_UDP;
	s->port.port = 53;
	s->pp.port = &s->port;
	cr_assert_not_null(s->pp.lb = lb_new());
	fd = listener_bind(SVC_PROTO_UDP, bind_addr, 0, 0, 0, &port, err,
	    sizeof(err));
	cr_assert_geq(fd, 0, "listener_bind: %s", err);
	s->fd = fd;
	s->up = udp_port_new(&s->lane, fd, err, sizeof(err));
	cr_assert_not_null(s->up, "udp_port_new: %s", err);
	s->lane.udp = s->up;
	s->pp.proxy_port = port;
	memset(&s->addr, 0, sizeof(s->addr));
	s->addr.sin_family = AF_INET;
	s->addr.sin_port = htons(port);
	cr_assert_eq(inet_pton(AF_INET, dst_addr, &s->addr.sin_addr), 1);
	fx.n_svc++;
	return s;
}

static struct svcport *
svc_add(void)
{
	return svc_add_on("127.0.0.1", "127.0.0.1");
}

static void
setup(void)
{
	memset(&fx, 0, sizeof(fx));
	cr_assert_not_null(fx.base = event_base_new());
	conf_defaults(&fx.conf);
	fx.env.base = fx.base;
	fx.env.conf = &fx.conf;
	udp_relay_set_max_datagram(0);
}

static void
teardown(void)
{
	size_t i;

	for (i = 0; i < fx.n_svc; i++) {
		udp_port_free(fx.svc[i].up);
		lb_free(fx.svc[i].pp.lb);
	}
	cr_expect_eq(udp_relay_associations(), 0);
	for (i = 0; i < fx.n_echo; i++) {
		event_free(fx.echo[i].ev);
		close(fx.echo[i].fd);
	}
	event_base_free(fx.base);
	conf_clear(&fx.conf);
}

TestSuite(udp, .init = setup, .fini = teardown, .timeout = 20);

static int
client_new(void)
{
	int fd;

	fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	set_bufs(fd);
	return fd;
}

static void
loopbreak_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

/* Run the loop for ms milliseconds. */
static void
run_for(int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_base_loopexit(fx.base, &tv);
	event_base_dispatch(fx.base);
}

/*
 * Run the loop until cfd has a datagram or timeout_ms pass; read it into
 * buf.  A reply must come from the service address.  Returns its length,
 * or -1 when none came.
 */
static ssize_t
await_reply(struct svcport *s, int cfd, void *buf, size_t cap, int timeout_ms)
{
	struct timeval		 tv = { timeout_ms / 1000,
				    (timeout_ms % 1000) * 1000 };
	struct sockaddr_in	 from;
	socklen_t		 fromlen = sizeof(from);
	struct event		*ev;
	ssize_t			 n;

	ev = event_new(fx.base, cfd, EV_READ, loopbreak_cb, fx.base);
	cr_assert_not_null(ev);
	event_add(ev, &tv);
	event_base_dispatch(fx.base);
	event_free(ev);
	n = recvfrom(cfd, buf, cap, MSG_DONTWAIT, (struct sockaddr *)&from,
	    &fromlen);
	if (n < 0)
		return -1;
	cr_assert_eq(from.sin_addr.s_addr, s->addr.sin_addr.s_addr,
	    "reply not from the service address");
	cr_assert_eq(from.sin_port, s->addr.sin_port,
	    "reply not from the service port");
	return n;
}

static void
send_to(struct svcport *s, int cfd, const void *data, size_t len)
{
	cr_assert_eq(sendto(cfd, data, len, 0, (struct sockaddr *)&s->addr,
	    sizeof(s->addr)), (ssize_t)len, "sendto: %s", strerror(errno));
}

/*
 * Send text from cfd and return the name of the echo that answered, or
 * "" when nothing came back within timeout_ms.
 */
static const char *
ask(struct svcport *s, int cfd, const char *text, int timeout_ms)
{
	static char	name[16];
	char		reply[256], *colon;
	ssize_t		n;

	send_to(s, cfd, text, strlen(text));
	n = await_reply(s, cfd, reply, sizeof(reply) - 1, timeout_ms);
	if (n < 0)
		return "";
	reply[n] = '\0';
	cr_assert_not_null(colon = strchr(reply, ':'), "reply %s", reply);
	cr_assert_str_eq(colon + 1, text, "payload changed");
	*colon = '\0';
	cr_assert_lt(strlen(reply), sizeof(name), "name %s", reply);
	memcpy(name, reply, strlen(reply) + 1);
	return name;
}

static int
count_fds(void)
{
	DIR		*d;
	struct dirent	*de;
	int		 n = 0;

	cr_assert_not_null(d = opendir("/proc/self/fd"));
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

Test(udp, new_clients_are_spread_round_robin)
{
	struct svcport	*s;
	int		 count[3] = { 0, 0, 0 }, c;
	size_t		 i;
	const char	*name;

	echo_add("A", ECHO_TAGGED);
	echo_add("B", ECHO_TAGGED);
	echo_add("C", ECHO_TAGGED);
	s = svc_add();
	svc_use_echoes(s, "ABC");
	for (i = 0; i < 6; i++) {
		c = client_new();
		name = ask(s, c, "hello", 2000);
		cr_assert_str_neq(name, "", "client %zu got no reply", i);
		count[name[0] - 'A']++;
		close(c);
	}
	cr_assert(count[0] == 2 && count[1] == 2 && count[2] == 2,
	    "spread %d/%d/%d", count[0], count[1], count[2]);
	cr_assert_eq(s->pp.stats.udp_assoc_active, 6);
	cr_assert_eq(s->pp.stats.udp_assoc_total, 6);
	cr_assert_eq(udp_relay_associations(), 6);
	cr_assert_eq(s->pp.stats.bytes_in, 6 * 5);
	cr_assert_eq(s->pp.stats.bytes_out, 6 * 7);
}

Test(udp, replies_leave_from_the_address_the_client_used)
{
	struct svcport		*s;
	struct sockaddr_in	 sin;
	int			 c;

	echo_add("A", ECHO_TAGGED);
	/* Routing alone would answer 127.0.0.1 from 127.0.0.1. */
	s = svc_add_on("0.0.0.0", "127.0.0.9");
	svc_use_echoes(s, "A");
	c = client_new();
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(c, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_str_eq(ask(s, c, "where", 1000), "A");
	close(c);
}

Test(udp, client_stays_on_its_endpoint_until_the_timeout)
{
	struct svcport	*s;
	char		 first[16];
	int		 c, i;

	fx.conf.udp_timeout_ms = 300;
	echo_add("A", ECHO_TAGGED);
	echo_add("B", ECHO_TAGGED);
	echo_add("C", ECHO_TAGGED);
	s = svc_add();
	svc_use_echoes(s, "ABC");
	c = client_new();
	snprintf(first, sizeof(first), "%s", ask(s, c, "q0", 1000));
	cr_assert_str_eq(first, "A");
	for (i = 1; i < 5; i++) {
		run_for(50);
		cr_assert_str_eq(ask(s, c, "again", 1000), first,
		    "query %d moved", i);
	}
	cr_assert_eq(s->pp.stats.udp_assoc_total, 1);
	run_for(600);
	cr_assert_eq(s->pp.stats.udp_assoc_active, 0, "not expired");
	cr_assert_str_eq(ask(s, c, "later", 1000), "B");
	cr_assert_eq(s->pp.stats.udp_assoc_total, 2);
	close(c);
}

Test(udp, client_ip_affinity_is_honoured)
{
	struct svcport	*s;
	struct endpoint	 eps[3];
	char		 first[16];
	int		 c, i;

	echo_add("A", ECHO_TAGGED);
	echo_add("B", ECHO_TAGGED);
	echo_add("C", ECHO_TAGGED);
	s = svc_add();
	for (i = 0; i < 3; i++)
		eps[i] = endpoint_of(&fx.echo[i].ip, fx.echo[i].port);
	svc_set_endpoints(s, eps, 3, SVC_AFFINITY_CLIENT_IP);
	first[0] = '\0';
	for (i = 0; i < 4; i++) {
		/* A new source port each time: a new association. */
		c = client_new();
		if (i == 0)
			snprintf(first, sizeof(first), "%s",
			    ask(s, c, "x", 1000));
		else
			cr_assert_str_eq(ask(s, c, "x", 1000), first);
		close(c);
	}
	cr_assert_eq(s->pp.stats.udp_assoc_total, 4);
}

static void
fill_pattern(unsigned char *p, size_t len, unsigned int seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = (unsigned char)((i * 31 + seed) ^ (i >> 8));
}

Test(udp, large_datagrams_arrive_intact_both_ways)
{
	static unsigned char	 out[BIG], in[BIG];
	const size_t		 sizes[] = { 61440, 65507 };
	struct svcport		*s;
	uint64_t		 total = 0;
	size_t			 i;
	ssize_t			 n;
	int			 c;

	echo_add("R", ECHO_RAW);
	s = svc_add();
	svc_use_echoes(s, "R");
	c = client_new();
	for (i = 0; i < 2; i++) {
		fill_pattern(out, sizes[i], (unsigned int)i + 7);
		send_to(s, c, out, sizes[i]);
		n = await_reply(s, c, in, sizeof(in), 2000);
		cr_assert_eq(n, (ssize_t)sizes[i], "size %zu came back as %zd",
		    sizes[i], n);
		cr_assert_eq(memcmp(in, out, sizes[i]), 0, "bytes changed");
		total += sizes[i];
	}
	cr_assert_eq(s->pp.stats.bytes_in, total);
	cr_assert_eq(s->pp.stats.bytes_out, total);
	cr_assert_eq(s->pp.stats.udp_dropped, 0);
	close(c);
}

Test(udp, truncated_datagrams_are_dropped_and_counted)
{
	static unsigned char	 out[2000], in[BIG];
	struct svcport		*s;
	int			 c;

	udp_relay_set_max_datagram(1000);
	echo_add("A", ECHO_TAGGED);
	s = svc_add();
	svc_use_echoes(s, "A");
	c = client_new();

	/* Client to endpoint: 1001 bytes do not fit. */
	memset(out, 'x', sizeof(out));
	send_to(s, c, out, 1001);
	cr_assert_eq(await_reply(s, c, in, sizeof(in), 200), -1);
	cr_assert_eq(s->pp.stats.udp_dropped, 1);
	cr_assert_eq(fx.echo[0].n_received, 0);

	/* Endpoint to client: 999 bytes grow to 1001 with the tag. */
	send_to(s, c, out, 999);
	cr_assert_eq(await_reply(s, c, in, sizeof(in), 200), -1);
	cr_assert_eq(fx.echo[0].n_received, 1);
	cr_assert_eq(s->pp.stats.udp_dropped, 2);

	/* Exactly the limit both ways is relayed. */
	send_to(s, c, out, 998);
	cr_assert_eq(await_reply(s, c, in, sizeof(in), 1000), 1000);
	cr_assert_eq(s->pp.stats.udp_dropped, 2);
	close(c);
}

Test(udp, endpoint_removal_drops_its_associations_at_once)
{
	struct svcport	*s;
	int		 c1, c2;

	echo_add("A", ECHO_TAGGED);
	echo_add("B", ECHO_TAGGED);
	s = svc_add();
	svc_use_echoes(s, "AB");
	c1 = client_new();
	c2 = client_new();
	cr_assert_str_eq(ask(s, c1, "one", 1000), "A");
	cr_assert_str_eq(ask(s, c2, "two", 1000), "B");
	cr_assert_eq(s->pp.stats.udp_assoc_active, 2);

	svc_use_echoes(s, "B");
	/* No loop turn in between: the change itself closed it. */
	cr_assert_eq(s->pp.stats.udp_assoc_active, 1);
	cr_assert_eq(udp_relay_associations(), 1);
	cr_assert_str_eq(ask(s, c1, "one", 1000), "B");
	cr_assert_str_eq(ask(s, c2, "two", 1000), "B");
	cr_assert_eq(s->pp.stats.udp_assoc_total, 3, "c2 kept its association");

	svc_set_endpoints(s, NULL, 0, SVC_AFFINITY_NONE);
	cr_assert_eq(s->pp.stats.udp_assoc_active, 0);
	close(c1);
	close(c2);
}

Test(udp, no_endpoints_drops_and_counts)
{
	struct svcport	*s;
	char		 buf[64];
	int		 c;

	s = svc_add();
	svc_set_endpoints(s, NULL, 0, SVC_AFFINITY_NONE);
	c = client_new();
	send_to(s, c, "q", 1);
	cr_assert_eq(await_reply(s, c, buf, sizeof(buf), 150), -1);
	cr_assert_eq(s->pp.stats.no_endpoints, 1);
	cr_assert_eq(s->pp.stats.udp_assoc_total, 0);
	close(c);
}

Test(udp, port_cap_evicts_the_least_recently_used)
{
	struct svcport	*s;
	int		 c1, c2, c3;

	fx.conf.udp_max_assoc_per_port = 2;
	echo_add("A", ECHO_TAGGED);
	s = svc_add();
	svc_use_echoes(s, "A");
	c1 = client_new();
	c2 = client_new();
	c3 = client_new();
	cr_assert_str_eq(ask(s, c1, "1", 1000), "A");
	cr_assert_str_eq(ask(s, c2, "2", 1000), "A");
	cr_assert_str_eq(ask(s, c3, "3", 1000), "A");	/* evicts c1 */
	cr_assert_eq(s->pp.stats.udp_assoc_active, 2);
	cr_assert_eq(s->pp.stats.udp_assoc_evicted, 1);

	cr_assert_str_eq(ask(s, c2, "2", 1000), "A");	/* kept, now newest */
	cr_assert_eq(s->pp.stats.udp_assoc_total, 3);
	cr_assert_str_eq(ask(s, c1, "1", 1000), "A");	/* new; evicts c3 */
	cr_assert_eq(s->pp.stats.udp_assoc_total, 4);
	cr_assert_eq(s->pp.stats.udp_assoc_evicted, 2);
	cr_assert_str_eq(ask(s, c2, "2", 1000), "A");	/* still kept */
	cr_assert_eq(s->pp.stats.udp_assoc_total, 4);
	cr_assert_str_eq(ask(s, c3, "3", 1000), "A");	/* was evicted */
	cr_assert_eq(s->pp.stats.udp_assoc_total, 5);
	cr_assert_eq(s->pp.stats.udp_assoc_active, 2);
	close(c1);
	close(c2);
	close(c3);
}

/* Send text from cfd without waiting, and run the loop for ms. */
static void
send_only(struct svcport *s, int cfd, const char *text, int ms)
{
	send_to(s, cfd, text, strlen(text));
	run_for(ms);
}

Test(udp, one_shot_flood_cannot_evict_an_assured_client)
{
	struct svcport	*s;
	int		 steady, c;
	uint64_t	 made;
	size_t		 i;

	fx.conf.udp_max_assoc_per_port = 3;
	echo_add("A", ECHO_TAGGED);
	s = svc_add();
	svc_use_echoes(s, "A");
	steady = client_new();
	cr_assert_str_eq(ask(s, steady, "s", 1000), "A");
	cr_assert_str_eq(ask(s, steady, "s", 1000), "A");	/* assured */
	for (i = 0; i < 20; i++) {
		c = client_new();
		cr_assert_str_eq(ask(s, c, "x", 1000), "A");
		close(c);
	}
	cr_assert_eq(s->pp.stats.udp_assoc_evicted, 18);
	made = s->pp.stats.udp_assoc_total;
	cr_assert_str_eq(ask(s, steady, "s", 1000), "A");
	cr_assert_eq(s->pp.stats.udp_assoc_total, made,
	    "the assured client's association was evicted");
	close(steady);
}

Test(udp, eviction_takes_answered_one_shots_before_pending_ones)
{
	struct svcport	*s;
	struct echo	*e;
	int		 done, pending, n1, n2;
	char		 buf[64];

	fx.conf.udp_max_assoc_per_port = 2;
	fx.conf.udp_timeout_ms = 5000;	/* nothing expires meanwhile */
	e = echo_add("A", ECHO_TAGGED);
	s = svc_add();
	svc_use_echoes(s, "A");
	done = client_new();
	cr_assert_str_eq(ask(s, done, "d", 1000), "A");
	e->delay_ms = 300;
	pending = client_new();
	send_only(s, pending, "p", 30);
	n1 = client_new();
	send_only(s, n1, "1", 30);	/* at the cap: evicts done */
	cr_assert_eq(s->pp.stats.udp_assoc_evicted, 1);
	/* pending's reply still comes: its association was kept. */
	cr_assert_geq(await_reply(s, pending, buf, sizeof(buf), 1000), 0);
	cr_assert_geq(await_reply(s, n1, buf, sizeof(buf), 1000), 0);
	/* Both answered once now: the older one goes first. */
	n2 = client_new();
	send_only(s, n2, "2", 30);
	cr_assert_eq(s->pp.stats.udp_assoc_evicted, 2);
	cr_assert_geq(await_reply(s, n2, buf, sizeof(buf), 1000), 0);
	e->delay_ms = 0;
	cr_assert_str_eq(ask(s, n1, "1", 1000), "A");
	cr_assert_eq(s->pp.stats.udp_assoc_total, 4, "n1 was kept");
	close(done);
	close(pending);
	close(n1);
	close(n2);
}

/* A UDP socket bound to 127.0.0.1 on a port below 1024, or -1. */
static int
client_new_privileged(void)
{
	struct sockaddr_in	sin;
	int			fd, port;

	fd = client_new();
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (port = 1023; port > 600; port--) {
		sin.sin_port = htons((uint16_t)port);
		if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0)
			return fd;
	}
	close(fd);
	return -1;
}

Test(udp, privileged_sources_are_dropped_when_asked)
{
	struct svcport	*s;
	int		 priv, c;
	char		 buf[64];

	echo_add("A", ECHO_TAGGED);
	s = svc_add();
	svc_use_echoes(s, "A");
	if ((priv = client_new_privileged()) == -1)
		cr_skip_test("cannot bind a port below 1024 here");
	cr_assert_str_eq(ask(s, priv, "off", 1000), "A",
	    "the option is off by default");
	fx.conf.udp_reject_privileged_sources = true;
	close(priv);
	cr_assert_neq(priv = client_new_privileged(), -1);
	send_to(s, priv, "on", 2);
	cr_assert_eq(await_reply(s, priv, buf, sizeof(buf), 200), -1);
	cr_assert_eq(s->pp.stats.udp_dropped, 1);
	cr_assert_eq(s->pp.stats.udp_assoc_total, 1);
	c = client_new();
	cr_assert_str_eq(ask(s, c, "high", 1000), "A");
	close(priv);
	close(c);
}

Test(udp, receive_buffer_overflows_are_counted)
{
	struct svcport	*s;
	struct echo	*e;
	int		 c, small = 4096, i, sent = 200;
	char		 payload[1000];

	e = echo_add("A", ECHO_RAW);
	s = svc_add();
	svc_use_echoes(s, "A");
	cr_assert_eq(setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &small,
	    sizeof(small)), 0);
	c = client_new();
	memset(payload, 'x', sizeof(payload));
	/* Without the loop running the service socket overflows. */
	for (i = 0; i < sent; i++)
		send_to(s, c, payload, sizeof(payload));
	run_for(100);
	/* The next datagram carries the kernel's count. */
	send_only(s, c, "last", 100);
	cr_assert_lt(e->n_received, sent);
	cr_assert_eq(s->pp.stats.udp_dropped + (uint64_t)e->n_received,
	    (uint64_t)sent + 1, "dropped %llu, relayed %d of %d",
	    (unsigned long long)s->pp.stats.udp_dropped, e->n_received,
	    sent + 1);
	close(c);
}

Test(udp, total_cap_evicts_across_ports)
{
	struct svcport	*s1, *s2;
	int		 c1, c2, c3;

	fx.conf.udp_max_assoc_total = 2;
	echo_add("A", ECHO_TAGGED);
	s1 = svc_add();
	s2 = svc_add();
	svc_use_echoes(s1, "A");
	svc_use_echoes(s2, "A");
	c1 = client_new();
	c2 = client_new();
	c3 = client_new();
	cr_assert_str_eq(ask(s1, c1, "1", 1000), "A");
	cr_assert_str_eq(ask(s2, c2, "2", 1000), "A");
	cr_assert_str_eq(ask(s2, c3, "3", 1000), "A");
	cr_assert_eq(udp_relay_associations(), 2);
	cr_assert_eq(s1->pp.stats.udp_assoc_evicted, 1, "s1's was oldest");
	cr_assert_eq(s1->pp.stats.udp_assoc_active, 0);
	cr_assert_eq(s2->pp.stats.udp_assoc_active, 2);
	close(c1);
	close(c2);
	close(c3);
}

Test(udp, refused_endpoint_moves_the_association_on)
{
	struct svcport		*s;
	struct endpoint		 eps[2];
	struct sockaddr_in	 sin;
	struct svc_ip		 lo;
	char			 buf[64];
	uint16_t		 dead_port;
	int			 c, probe;

	echo_add("A", ECHO_TAGGED);
	s = svc_add();
	/* A port nobody listens on, on an address that sorts first. */
	probe = client_new();
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(probe, (struct sockaddr *)&sin, sizeof(sin)), 0);
	dead_port = bound_port(probe);
	close(probe);
	cr_assert_eq(svc_ip_parse("127.0.0.1", &lo), 0);
	eps[0] = endpoint_of(&lo, dead_port);
	eps[1] = endpoint_of(&fx.echo[0].ip, fx.echo[0].port);
	svc_set_endpoints(s, eps, 2, SVC_AFFINITY_NONE);

	c = client_new();
	send_to(s, c, "lost", 4);
	cr_assert_eq(await_reply(s, c, buf, sizeof(buf), 300), -1);
	cr_assert_eq(s->pp.stats.connect_failures, 1);
	cr_assert_str_eq(ask(s, c, "found", 1000), "A");
	cr_assert_eq(s->pp.stats.udp_assoc_total, 1, "the same association");
	cr_assert_eq(s->pp.stats.udp_assoc_active, 1);
	close(c);
}

Test(udp, slow_reply_outlives_the_idle_timeout)
{
	struct svcport	*s;
	struct echo	*e;
	int		 c;

	fx.conf.udp_timeout_ms = 100;
	e = echo_add("S", ECHO_TAGGED);
	e->delay_ms = 400;
	s = svc_add();
	svc_use_echoes(s, "S");
	c = client_new();
	cr_assert_str_eq(ask(s, c, "slow", 2000), "S",
	    "a reply 4 idle timeouts late was lost");
	/* Answered: now the idle timeout alone applies. */
	run_for(300);
	cr_assert_eq(s->pp.stats.udp_assoc_active, 0);
	close(c);
}

Test(udp, expiry_frees_descriptors)
{
	struct svcport	*s;
	int		 c[5], before, i;

	fx.conf.udp_timeout_ms = 100;
	echo_add("A", ECHO_TAGGED);
	echo_add("B", ECHO_TAGGED);
	s = svc_add();
	svc_use_echoes(s, "AB");
	for (i = 0; i < 5; i++)
		c[i] = client_new();
	before = count_fds();
	for (i = 0; i < 5; i++)
		cr_assert_str_neq(ask(s, c[i], "x", 1000), "");
	cr_assert_eq(count_fds(), before + 5);
	run_for(400);
	cr_assert_eq(s->pp.stats.udp_assoc_active, 0);
	cr_assert_eq(udp_relay_associations(), 0);
	cr_assert_eq(count_fds(), before);
	for (i = 0; i < 5; i++)
		close(c[i]);
}

static double
cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

Test(udp, descriptor_exhaustion_drops_without_spinning)
{
	struct svcport	*s;
	struct rlimit	 saved, low;
	char		 buf[64];
	int		 c, fillers[64], n_fillers = 0, fd, i;
	double		 cpu;

	echo_add("A", ECHO_TAGGED);
	s = svc_add();
	svc_use_echoes(s, "A");
	c = client_new();

	/* No descriptor left: cap at the next one and fill any holes. */
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &saved), 0);
	fd = dup(0);
	cr_assert_geq(fd, 0);
	close(fd);
	low = saved;
	low.rlim_cur = (rlim_t)fd + 1;
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
	while (n_fillers < 64 && (fd = dup(0)) != -1)
		fillers[n_fillers++] = fd;
	cr_assert_eq(errno, EMFILE);

	cpu = cpu_seconds();
	send_to(s, c, "q", 1);
	cr_assert_eq(await_reply(s, c, buf, sizeof(buf), 200), -1);
	cr_assert_lt(cpu_seconds() - cpu, 0.1, "the loop spun");
	cr_assert_eq(s->pp.stats.udp_dropped, 1);
	cr_assert_eq(s->pp.stats.udp_assoc_active, 0);

	for (i = 0; i < n_fillers; i++)
		close(fillers[i]);
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &saved), 0);
	cr_assert_str_eq(ask(s, c, "q", 1000), "A");
	close(c);
}

Test(udp, burst_is_relayed_whole_and_in_order)
{
	struct svcport	*s;
	char		 msg[32], reply[64];
	ssize_t		 n;
	int		 c, i;

	echo_add("A", ECHO_TAGGED);
	s = svc_add();
	svc_use_echoes(s, "A");
	c = client_new();
	/* More than one batch waits on the service socket at once. */
	for (i = 0; i < 100; i++) {
		snprintf(msg, sizeof(msg), "m%03d", i);
		send_to(s, c, msg, strlen(msg));
	}
	for (i = 0; i < 100; i++) {
		n = await_reply(s, c, reply, sizeof(reply) - 1, 1000);
		cr_assert_eq(n, 6, "reply %d: %zd bytes", i, n);
		reply[n] = '\0';
		snprintf(msg, sizeof(msg), "A:m%03d", i);
		cr_assert_str_eq(reply, msg);
	}
	cr_assert_eq(s->pp.stats.udp_assoc_total, 1);
	cr_assert_eq(s->pp.stats.udp_dropped, 0);
	close(c);
}
