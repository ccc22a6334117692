/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Proxy ports and TCP listeners.
 *
 * This module owns the proxy-port allocator (a random start in the range and
 * a linear scan, as upstream's port_allocator.go), the listening socket of
 * each TCP service port, and the two ways of not accepting:
 *
 * - listener_pause(), for a service port with no endpoints: shutdown(SHUT_RD)
 *   takes a Linux listening socket out of LISTEN while it keeps its port, so
 *   the kernel answers new SYNs with RST and clients get ECONNREFUSED at once
 *   (HAProxy's pause) instead of upstream's accept-then-close "empty reply";
 *   listen() again resumes.
 * - starvation, when accept() runs out of descriptors or memory: the listener
 *   stops polling and retries on a timer or as soon as a session closes
 *   (relayd's relay_accept pause), so we neither spin nor exit, where
 *   upstream panicked.  A client needs two descriptors, so accept() alone
 *   would take the last one and leave the endpoint's socket() to fail and
 *   the client to be reset; the listeners therefore hold one spare
 *   descriptor (relayd's and nginx's reserve) and accept only while they
 *   hold it.  The session that meets EMFILE at socket() spends the spare
 *   (listener_fd_reserve_use) and every listener starves until it can be
 *   taken back: clients wait in the backlog instead of being reset.
 *
 * The TCP options accepted sockets need are set on the listening socket,
 * which Linux copies into every socket it accepts: TCP_NODELAY always, and
 * the keepalive settings tcp_relay asks for.
 *
 * With --workers N every worker has its own socket on each proxy port
 * (SO_REUSEPORT: the kernel spreads connections and flows over them) and
 * its own listeners, starved list and spare descriptor, which only its
 * thread touches; the port allocator runs on the control loop alone.
 *
 * What to do with an accepted socket is the caller's (tcp_relay).  UDP
 * sockets get their port here and are served by udp_relay.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "base/log.h"
#include "base/tree.h"
#include "proxy/listener.h"

#define LISTENER_ACCEPT_BATCH	64	/* accepts per wakeup, for fairness */
#define LISTENER_STARVED_MS	250	/* retry accept after fd exhaustion */
#define LISTENER_LOG_EVERY_MS	5000	/* one exhaustion line per interval */

struct listener {
	LIST_ENTRY(listener)	 entry;		/* every listener */
	LIST_ENTRY(listener)	 starved_entry;	/* when starved */
	struct event_base	*base;
	int			 fd;
	uint16_t		 port;
	char			 what[SVC_KEYLEN];
	listener_accept_cb	 cb;
	void			*arg;
	struct event		*ev_accept;
	struct event		*ev_retry;
	bool			 paused;	/* no endpoints: unlistened */
	bool			 starved;	/* out of fds: not polling */
	unsigned long		 n_starved;
	uint32_t		 keepalive_ms;	/* accepted sockets inherit */
	bool			 queue_stale;	/* queued before keepalive_ms */
};

LIST_HEAD(listener_list, listener);

/* Each worker's (proxy/worker.h). */
static _Thread_local struct listener_list listeners =
    LIST_HEAD_INITIALIZER(listeners);
static _Thread_local struct listener_list starved =
    LIST_HEAD_INITIALIZER(starved);
/* The spare descriptor: accepting waits while it cannot be held. */
static _Thread_local int	reserve_fd = -1;
/*
 * How many of our listeners hold each port: a bind try is O(1), not O(n).
 * Written by workers opening and closing their listeners, one worker at a
 * time (worker_run()), read by the allocator on the control loop.
 */
static uint16_t			held_ports[65536];
static uint64_t			accept_errors[LISTENER_ERR_MAX];
/* One exhaustion line per interval over every worker. */
static struct log_ratelimit	starved_log;
static pthread_mutex_t		starved_log_lock = PTHREAD_MUTEX_INITIALIZER;
/* Proxy ports are bound with SO_REUSEPORT, for more than one worker. */
static bool			reuseport;

static const char *const accept_error_names[LISTENER_ERR_MAX] = {
	"EMFILE", "ENFILE", "ENOMEM", "other"
};

static int
listener_sockaddr(const char *bind_addr, uint16_t port,
    struct sockaddr_storage *ss, socklen_t *sslen)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (bind_addr == NULL || *bind_addr == '\0')
		bind_addr = "0.0.0.0";
	if (inet_pton(AF_INET, bind_addr, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*sslen = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, bind_addr, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*sslen = sizeof(*sin6);
		return 0;
	}
	return -1;
}

static void
listener_sockaddr_set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

static int
listener_socket(enum svc_proto proto, int family)
{
	int type = proto == SVC_PROTO_UDP ? SOCK_DGRAM : SOCK_STREAM;
	int fd, one = 1, zero = 0;

	fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	/*
	 * TCP: a proxy port must be reusable right after a restart even with
	 * connections in TIME_WAIT on it.
	 */
	if (proto == SVC_PROTO_TCP && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR,
	    &one, sizeof(one)) == -1) {
		close(fd);
		return -1;
	}
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one,
	    sizeof(one)) == -1) {
		close(fd);
		return -1;
	}
	/*
	 * --bind-address :: means both families (the portals send IPv4
	 * traffic here too): not left to net.ipv6.bindv6only.
	 */
	if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY,
	    &zero, sizeof(zero)) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * A paused listener is out of LISTEN, and with SO_REUSEADDR on both sides
 * Linux would let another socket bind its port; never hand out a port one
 * of our listeners holds.
 */
static bool
listener_port_held(uint16_t port)
{
	return __atomic_load_n(&held_ports[port], __ATOMIC_RELAXED) > 0;
}

static void
listener_hold_port(uint16_t port, int n)
{
	__atomic_fetch_add(&held_ports[port], n, __ATOMIC_RELAXED);
}

static uint16_t
listener_sock_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return 0;
}

/*
 * An ephemeral TCP port.  A socket bound to port 0 gives its port back when
 * it leaves LISTEN (Linux only keeps ports that were asked for by number),
 * so a pause would lose it: let the kernel choose on a probe socket, then
 * bind the real one to that port by number while the probe still holds it.
 */
static int
listener_bind_ephemeral(enum svc_proto proto, struct sockaddr_storage *ss,
    socklen_t sslen, uint16_t *port)
{
	int probe, fd, saved;

	if ((probe = listener_socket(proto, ss->ss_family)) == -1)
		return -1;
	listener_sockaddr_set_port(ss, 0);
	if (bind(probe, (struct sockaddr *)ss, sslen) == -1 ||
	    (*port = listener_sock_port(probe)) == 0)
		goto fail;
	if (proto != SVC_PROTO_TCP) {
		/* UDP sockets do not pause: the probe is the socket. */
		return probe;
	}
	if ((fd = listener_socket(proto, ss->ss_family)) == -1)
		goto fail;
	listener_sockaddr_set_port(ss, *port);
	if (bind(fd, (struct sockaddr *)ss, sslen) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		goto fail;
	}
	close(probe);
	return fd;
fail:
	saved = errno;
	close(probe);
	errno = saved;
	return -1;
}

/*
 * Whether a socket without SO_REUSEPORT can bind ss: a socket of another
 * program with SO_REUSEPORT and our user ID would otherwise let ours join
 * its group and share its traffic.
 */
static bool
listener_port_free(enum svc_proto proto, struct sockaddr_storage *ss,
    socklen_t sslen)
{
	int type = proto == SVC_PROTO_UDP ? SOCK_DGRAM : SOCK_STREAM;
	int probe, saved, rc, one = 1;

	if ((probe = socket(ss->ss_family, type | SOCK_CLOEXEC, 0)) == -1)
		return false;
	/* As the real socket: TIME_WAIT connections do not count. */
	if (proto == SVC_PROTO_TCP)
		(void)setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one,
		    sizeof(one));
	rc = bind(probe, (struct sockaddr *)ss, sslen);
	saved = errno;
	close(probe);
	errno = saved;
	return rc == 0;
}

static int
listener_try_port(enum svc_proto proto, int fd, struct sockaddr_storage *ss,
    socklen_t sslen, uint16_t port)
{
	if (listener_port_held(port)) {
		errno = EADDRINUSE;
		return -1;
	}
	listener_sockaddr_set_port(ss, port);
	if (reuseport && !listener_port_free(proto, ss, sslen))
		return -1;
	return bind(fd, (struct sockaddr *)ss, sslen);
}

/*
 * Bind a non-blocking, close-on-exec socket of proto on bind_addr (NULL or
 * "" means 0.0.0.0) and a port from [begin, end].  preferred, when inside
 * the range, is tried first; then the scan starts at a random offset and
 * wraps, skipping ports in use.  begin == 0 means an ephemeral port, or
 * preferred when that is non-zero and free.
 * Returns the fd (the caller owns it) with *port set, or -1 with a message
 * in err.
 */
int
listener_bind(enum svc_proto proto, const char *bind_addr, uint16_t begin,
    uint16_t end, uint16_t preferred, uint16_t *port, char *err,
    size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	uint32_t n, offset, i;
	uint16_t p;
	int fd;

	if (proto != SVC_PROTO_TCP && proto != SVC_PROTO_UDP) {
		snprintf(err, errlen, "%s is not supported by a proxy port",
		    svc_proto_str(proto));
		return -1;
	}
	if (listener_sockaddr(bind_addr, 0, &ss, &sslen) == -1) {
		snprintf(err, errlen, "bind address %s: not an IP address",
		    bind_addr);
		return -1;
	}
	if (begin == 0 && preferred != 0) {
		/* A port kept from before a restart, if it is still free. */
		if ((fd = listener_socket(proto, ss.ss_family)) != -1 &&
		    listener_try_port(proto, fd, &ss, sslen, preferred) == 0) {
			*port = preferred;
			return fd;
		}
		if (fd != -1)
			close(fd);
	}
	if (begin == 0) {
		fd = listener_bind_ephemeral(proto, &ss, sslen, port);
		if (fd == -1)
			snprintf(err, errlen, "bind %s port 0: %s",
			    bind_addr ? bind_addr : "0.0.0.0", strerror(errno));
		return fd;
	}
	if (end < begin) {
		snprintf(err, errlen, "port range %u-%u is empty", begin, end);
		return -1;
	}
	if ((fd = listener_socket(proto, ss.ss_family)) == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}

	/* A failed bind leaves the socket unbound: the same fd tries again. */
	if (preferred >= begin && preferred <= end &&
	    listener_try_port(proto, fd, &ss, sslen, preferred) == 0) {
		*port = preferred;
		return fd;
	}
	n = (uint32_t)end - begin + 1;
	offset = arc4random_uniform(n);
	for (i = 0; i < n; i++) {
		p = (uint16_t)(begin + (offset + i) % n);
		if (p == preferred)
			continue;
		if (listener_try_port(proto, fd, &ss, sslen, p) == 0) {
			*port = p;
			return fd;
		}
		if (errno != EADDRINUSE && errno != EACCES)
			break;
	}
	snprintf(err, errlen, "no free port in %u-%u on %s: %s", begin, end,
	    bind_addr ? bind_addr : "0.0.0.0",
	    errno == EADDRINUSE ? "every port is in use" : strerror(errno));
	close(fd);
	return -1;
}

/* See listener.h. */
void
listener_set_reuseport(bool on)
{
	reuseport = on;
}

/* See listener.h. */
int
listener_bind_again(enum svc_proto proto, const char *bind_addr,
    uint16_t port, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	int fd;

	if (!reuseport) {
		snprintf(err, errlen, "port %u: a second socket needs "
		    "SO_REUSEPORT", port);
		return -1;
	}
	if (listener_sockaddr(bind_addr, port, &ss, &sslen) == -1) {
		snprintf(err, errlen, "bind address %s: not an IP address",
		    bind_addr);
		return -1;
	}
	if ((fd = listener_socket(proto, ss.ss_family)) == -1 ||
	    bind(fd, (struct sockaddr *)&ss, sslen) == -1) {
		snprintf(err, errlen, "another socket on port %u: %s", port,
		    strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	return fd;
}

static enum listener_accept_error
listener_error_kind(int error)
{
	switch (error) {
	case EMFILE:
		return LISTENER_ERR_EMFILE;
	case ENFILE:
		return LISTENER_ERR_ENFILE;
	case ENOMEM:
	case ENOBUFS:
		return LISTENER_ERR_ENOMEM;
	default:
		return LISTENER_ERR_OTHER;
	}
}

/* Hold the spare descriptor if it is not held: 0, or -1 with errno. */
static int
listener_reserve_take(void)
{
	if (reserve_fd != -1)
		return 0;
	reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return reserve_fd == -1 ? -1 : 0;
}

/* Count one pause of accepting, for kuproxy_accept_errors_total. */
static void
listener_count_error(int error)
{
	__atomic_fetch_add(&accept_errors[listener_error_kind(error)], 1,
	    __ATOMIC_RELAXED);
}

/* Stop polling after fd exhaustion; a timer or a closed session resumes. */
static void
listener_starve(struct listener *l, int error)
{
	struct timeval	tv = { 0, LISTENER_STARVED_MS * 1000 };
	unsigned long	suppressed;
	bool		say;

	pthread_mutex_lock(&starved_log_lock);
	say = log_ratelimit_ok(&starved_log, LISTENER_LOG_EVERY_MS);
	suppressed = starved_log.suppressed;
	pthread_mutex_unlock(&starved_log_lock);
	if (say)
		log_warnx("%s: accept: %s; pausing accept for %d ms or until "
		    "a connection closes (%lu such lines suppressed)", l->what,
		    strerror(error), LISTENER_STARVED_MS, suppressed);
	l->n_starved++;
	if (l->starved)
		return;
	l->starved = true;
	event_del(l->ev_accept);
	LIST_INSERT_HEAD(&starved, l, starved_entry);
	evtimer_add(l->ev_retry, &tv);
}

static void
listener_unstarve(struct listener *l)
{
	struct timeval tv = { 0, LISTENER_STARVED_MS * 1000 };

	if (!l->starved)
		return;
	/* Still no spare descriptor: wait for the next close or the timer. */
	if (listener_reserve_take() == -1) {
		evtimer_add(l->ev_retry, &tv);
		return;
	}
	l->starved = false;
	LIST_REMOVE(l, starved_entry);
	evtimer_del(l->ev_retry);
	if (!l->paused)
		event_add(l->ev_accept, NULL);
}

static void
listener_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	listener_unstarve(arg);
}

/*
 * Sort accept errors as HAProxy's sock_accept_conn does: an aborted or
 * interrupted accept is retried at once, exhaustion pauses; anything else
 * is unexpected and also pauses, rather than spin on a broken socket.
 */
static void
listener_readable_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct listener *l = arg;
	struct sockaddr_storage ss;
	socklen_t sslen;
	int i, fd;

	if (listener_reserve_take() == -1) {
		listener_count_error(errno);
		listener_starve(l, errno);
		return;
	}
	for (i = 0; i < LISTENER_ACCEPT_BATCH && !l->paused && !l->starved;
	    i++) {
		sslen = sizeof(ss);
		fd = accept4(l->fd, (struct sockaddr *)&ss, &sslen,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd != -1) {
			l->cb(fd, (struct sockaddr *)&ss, sslen, l->arg);
			continue;
		}
		switch (errno) {
		case EAGAIN:
			/* What connects from now on inherits our options. */
			l->queue_stale = false;
			return;
		case EINTR:
		case ECONNABORTED:
			continue;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			listener_count_error(errno);
			listener_starve(l, errno);
			return;
		default:
			log_warn("%s: accept", l->what);
			listener_count_error(errno);
			listener_starve(l, errno);
			return;
		}
	}
}

/*
 * Listen on fd, a TCP socket from listener_bind() (taken over even on
 * failure), and call cb with every accepted client socket.  what names the
 * service port in log lines.  cb must not free the listener.  Returns the
 * listener, or NULL with err (fd closed).
 */
struct listener *
listener_new(struct event_base *base, int fd, const char *what,
    listener_accept_cb cb, void *arg, char *err, size_t errlen)
{
	struct listener *l;
	int one = 1;

	if ((l = calloc(1, sizeof(*l))) == NULL) {
		snprintf(err, errlen, "%s: out of memory", what);
		close(fd);
		return NULL;
	}
	l->base = base;
	l->fd = fd;
	l->cb = cb;
	l->arg = arg;
	snprintf(l->what, sizeof(l->what), "%s", what);
	if ((l->port = listener_sock_port(fd)) == 0) {
		snprintf(err, errlen, "%s: socket is not bound", what);
		goto fail;
	}
	/* Before listen(): every socket accepted from it inherits it. */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1)
		log_warn("%s: TCP_NODELAY on port %u", what, l->port);
	if (listen(fd, SOMAXCONN) == -1) {
		snprintf(err, errlen, "%s: listen on port %u: %s", what,
		    l->port, strerror(errno));
		goto fail;
	}
	l->ev_accept = event_new(base, fd, EV_READ | EV_PERSIST,
	    listener_readable_cb, l);
	l->ev_retry = evtimer_new(base, listener_retry_cb, l);
	if (l->ev_accept == NULL || l->ev_retry == NULL ||
	    event_add(l->ev_accept, NULL) == -1) {
		snprintf(err, errlen, "%s: cannot set up accept events", what);
		goto fail;
	}
	LIST_INSERT_HEAD(&listeners, l, entry);
	listener_hold_port(l->port, 1);
	/* Failing here is no failure: accepting waits until it is taken. */
	(void)listener_reserve_take();
	return l;
fail:
	if (l->ev_accept != NULL)
		event_free(l->ev_accept);
	if (l->ev_retry != NULL)
		event_free(l->ev_retry);
	close(fd);
	free(l);
	return NULL;
}

/* The port the listener is bound to. */
uint16_t
listener_port(const struct listener *l)
{
	return l->port;
}

/*
 * Refuse new connections with RST while keeping the port bound; clients
 * waiting in the accept queue are reset too.  Idempotent.
 */
void
listener_pause(struct listener *l)
{
	if (l->paused)
		return;
	l->paused = true;
	event_del(l->ev_accept);
	if (shutdown(l->fd, SHUT_RD) == -1)
		log_warn("%s: pausing port %u", l->what, l->port);
}

/*
 * Listen again after listener_pause().  When listen() fails (another
 * process took the port meanwhile) the listener stays paused and the
 * failure is logged.  Idempotent.
 */
void
listener_resume(struct listener *l)
{
	if (!l->paused)
		return;
	if (listen(l->fd, SOMAXCONN) == -1) {
		log_warn("%s: resuming port %u", l->what, l->port);
		return;
	}
	l->paused = false;
	if (!l->starved)
		event_add(l->ev_accept, NULL);
}

/* Whether listener_pause() is in force. */
int
listener_is_paused(const struct listener *l)
{
	return l->paused;
}

/* Whether accept is paused for descriptor exhaustion. */
int
listener_is_starved(const struct listener *l)
{
	return l->starved;
}

/* How many times accept ran out of descriptors or memory. */
unsigned long
listener_n_starved(const struct listener *l)
{
	return l->n_starved;
}

/*
 * Keepalive on fd: probes start after half of keepalive_ms and come every
 * sixth of it, and TCP_USER_TIMEOUT ends the connection keepalive_ms after
 * the peer last acknowledged anything, probes included; so a vanished peer
 * is found within about keepalive_ms plus one probe interval, idle or not.
 * 0 turns keepalive and the user timeout off.
 */
int
listener_sock_keepalive(int fd, uint32_t keepalive_ms)
{
	int on = keepalive_ms != 0;
	int idle_s = (int)(keepalive_ms / 2000);
	int intvl_s = (int)(keepalive_ms / 6000);
	int cnt = 3;
	unsigned int user_timeout = keepalive_ms;

	if (idle_s < 1)
		idle_s = 1;
	if (intvl_s < 1)
		intvl_s = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)) == -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout,
	    sizeof(user_timeout)) == -1)
		return -1;
	if (!on)
		return 0;
	if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s,
	    sizeof(idle_s)) == -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl_s,
	    sizeof(intvl_s)) == -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)) == -1)
		return -1;
	return 0;
}

/*
 * Give the listening socket keepalive_ms for the sockets it accepts.
 * Sockets already in the accept queue were copied from the listening
 * socket before the change; they are stale until accept() next finds the
 * queue empty.  Returns whether a socket accepted now inherited the value.
 */
bool
listener_keepalive_inherited(struct listener *l, uint32_t keepalive_ms)
{
	if (l->keepalive_ms == keepalive_ms)
		return !l->queue_stale;
	if (listener_sock_keepalive(l->fd, keepalive_ms) == -1) {
		/* Each accepted socket then gets its own. */
		log_v(2, "%s: keepalive on port %u: %s", l->what, l->port,
		    strerror(errno));
		return false;
	}
	l->keepalive_ms = keepalive_ms;
	l->queue_stale = true;
	return false;
}

/* Close the listening socket and free l; NULL is fine. */
void
listener_free(struct listener *l)
{
	if (l == NULL)
		return;
	if (l->starved)
		LIST_REMOVE(l, starved_entry);
	LIST_REMOVE(l, entry);
	listener_hold_port(l->port, -1);
	event_free(l->ev_accept);
	event_free(l->ev_retry);
	close(l->fd);
	free(l);
}

/*
 * A descriptor was freed: every listener starved of descriptors polls
 * again now instead of waiting for its timer.  Cheap when none is starved,
 * so each session close can call it.
 */
void
listener_fd_released(void)
{
	struct listener *l;

	/* Without the spare back, the listeners' timers try again later. */
	if (LIST_EMPTY(&starved) || listener_reserve_take() == -1)
		return;
	while ((l = LIST_FIRST(&starved)) != NULL)
		listener_unstarve(l);
}

/*
 * Give the spare descriptor up for a client's endpoint socket after error
 * (EMFILE, ENFILE): every listener stops accepting until it is back.
 * Returns 0 when a descriptor was freed, -1 when there was no spare.
 */
int
listener_fd_reserve_use(int error)
{
	struct listener *l;

	if (reserve_fd == -1)
		return -1;
	close(reserve_fd);
	reserve_fd = -1;
	listener_count_error(error);
	LIST_FOREACH(l, &listeners, entry)
		if (!l->paused)
			listener_starve(l, error);
	return 0;
}

/* Accept pauses for reason, over every listener, since start. */
uint64_t
listener_n_accept_errors(enum listener_accept_error reason)
{
	return reason < LISTENER_ERR_MAX ? __atomic_load_n(
	    &accept_errors[reason], __ATOMIC_RELAXED) : 0;
}

/* The reason's label value in kuproxy_accept_errors_total. */
const char *
listener_accept_error_name(enum listener_accept_error reason)
{
	return reason < LISTENER_ERR_MAX ? accept_error_names[reason] :
	    "other";
}
