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
 *   upstream panicked.
 *
 * What to do with an accepted socket is the caller's (tcp_relay).  UDP
 * sockets get their port here and are served by udp_relay.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>
#include <errno.h>
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
};

LIST_HEAD(listener_list, listener);

static struct listener_list	listeners = LIST_HEAD_INITIALIZER(listeners);
static struct listener_list	starved = LIST_HEAD_INITIALIZER(starved);
static struct log_ratelimit	starved_log;

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
	int fd, one = 1;

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
	struct listener *l;

	LIST_FOREACH(l, &listeners, entry)
		if (l->port == port)
			return true;
	return false;
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

static int
listener_try_port(int fd, struct sockaddr_storage *ss, socklen_t sslen,
    uint16_t port)
{
	if (listener_port_held(port)) {
		errno = EADDRINUSE;
		return -1;
	}
	listener_sockaddr_set_port(ss, port);
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
		    listener_try_port(fd, &ss, sslen, preferred) == 0) {
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
	    listener_try_port(fd, &ss, sslen, preferred) == 0) {
		*port = preferred;
		return fd;
	}
	n = (uint32_t)end - begin + 1;
	offset = arc4random_uniform(n);
	for (i = 0; i < n; i++) {
		p = (uint16_t)(begin + (offset + i) % n);
		if (p == preferred)
			continue;
		if (listener_try_port(fd, &ss, sslen, p) == 0) {
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

/* Stop polling after fd exhaustion; a timer or a closed session resumes. */
static void
listener_starve(struct listener *l, int error)
{
	struct timeval tv = { 0, LISTENER_STARVED_MS * 1000 };

	if (log_ratelimit_ok(&starved_log, LISTENER_LOG_EVERY_MS))
		log_warnx("%s: accept: %s; pausing accept for %d ms or until "
		    "a connection closes (%lu such lines suppressed)", l->what,
		    strerror(error), LISTENER_STARVED_MS,
		    starved_log.suppressed);
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
	if (!l->starved)
		return;
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
			return;
		case EINTR:
		case ECONNABORTED:
			continue;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			listener_starve(l, errno);
			return;
		default:
			log_warn("%s: accept", l->what);
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

/* Close the listening socket and free l; NULL is fine. */
void
listener_free(struct listener *l)
{
	if (l == NULL)
		return;
	if (l->starved)
		LIST_REMOVE(l, starved_entry);
	LIST_REMOVE(l, entry);
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

	while ((l = LIST_FIRST(&starved)) != NULL)
		listener_unstarve(l);
}
