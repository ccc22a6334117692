/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Proxy ports: binding a socket on a port from --proxy-port-range (or an
 * ephemeral one), and the TCP listening socket of one service port with
 * accept, pause and resume.
 *
 * Two kinds of pause: listener_pause() for a service port with no endpoints
 * keeps the port bound but stops listening, so the kernel refuses new
 * connections (RST, the client sees ECONNREFUSED at once, as HAProxy pauses
 * a proxy); running out of descriptors stops polling for a short while
 * instead of spinning (relayd's accept pause).
 *
 * Accepted sockets inherit TCP options from the listening socket on Linux
 * (TCP_NODELAY, SO_KEEPALIVE and its timers, TCP_USER_TIMEOUT), so they are
 * set there once rather than on every accepted socket.
 */
#ifndef KUPROXY_LISTENER_H
#define KUPROXY_LISTENER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/svc.h"

struct event_base;

/*
 * Bind a socket of proto (TCP or UDP, non-blocking, close-on-exec) on
 * bind_addr and a port from [begin, end], starting at a random offset and
 * wrapping, as upstream's allocator did; begin == 0 means an ephemeral port.
 * preferred, when non-zero and inside the range (any port when begin == 0),
 * is tried first (a port kept across restarts).  Ports held by our own
 * listeners, paused ones included, are never handed out.  Returns the fd
 * with *port set, or -1 with err.
 */
int		 listener_bind(enum svc_proto proto, const char *bind_addr,
		    uint16_t begin, uint16_t end, uint16_t preferred,
		    uint16_t *port, char *err, size_t errlen);

/*
 * With on, every proxy-port socket bound from now on has SO_REUSEPORT, so
 * that listener_bind_again() can give each worker its own (worker.h); a
 * port is only taken when no other program's socket holds it.
 */
void		 listener_set_reuseport(bool on);

/*
 * One more socket of proto on bind_addr and port, which a socket from
 * listener_bind() holds, for another worker.  Needs
 * listener_set_reuseport(true).  Returns the fd, or -1 with err.
 */
int		 listener_bind_again(enum svc_proto proto,
		    const char *bind_addr, uint16_t port, char *err,
		    size_t errlen);

/* Called with each accepted, non-blocking, close-on-exec client socket. */
typedef void (*listener_accept_cb)(int fd, const struct sockaddr *peer,
		    socklen_t peerlen, void *arg);

struct listener;

/*
 * Listen on a TCP socket from listener_bind() (taking it over) and call cb
 * for each accepted connection, which comes with TCP_NODELAY set.  Returns
 * NULL with err on failure (fd closed).
 */
struct listener	*listener_new(struct event_base *, int fd, const char *what,
		    listener_accept_cb cb, void *arg, char *err, size_t errlen);
uint16_t	 listener_port(const struct listener *);
/* Refuse new connections (RST) while keeping the port; idempotent. */
void		 listener_pause(struct listener *);
void		 listener_resume(struct listener *);
int		 listener_is_paused(const struct listener *);
/*
 * Accept is paused for descriptor or memory exhaustion (it resumes on a
 * timer or at listener_fd_released()); how many times that happened.
 */
int		 listener_is_starved(const struct listener *);
unsigned long	 listener_n_starved(const struct listener *);
/*
 * Make the listening socket carry --tcp-keepalive keepalive_ms (0: off) for
 * the sockets it accepts, if it does not already.  Returns whether a socket
 * accepted now has it: false for those that were queued before a change,
 * until accept() has emptied the queue once; the caller sets those itself
 * with listener_sock_keepalive().
 */
bool		 listener_keepalive_inherited(struct listener *,
		    uint32_t keepalive_ms);

/*
 * Set TCP keepalive on a TCP socket so that a peer gone without FIN or RST
 * is noticed within about keepalive_ms: SO_KEEPALIVE, the first probe after
 * half of it, then probes every sixth (at least 1 s each), and
 * TCP_USER_TIMEOUT keepalive_ms, which also bounds how long sent bytes may
 * stay unacknowledged.  keepalive_ms 0 turns all of it off.  Returns 0, or
 * -1 with errno.
 */
int		 listener_sock_keepalive(int fd, uint32_t keepalive_ms);

/* Close the socket; connections already accepted are not affected. */
void		 listener_free(struct listener *);

/*
 * Accepting stops for a while after EMFILE/ENFILE; every listener is woken
 * early when a descriptor is freed.  tcp_relay calls this on each close.
 */
void		 listener_fd_released(void);

/*
 * The descriptor reserve (relayd's, nginx's): the listeners hold one spare
 * descriptor and accept only while they hold it, so a client they accept
 * always has a descriptor left for its endpoint.  When socket() for an
 * endpoint fails with EMFILE or ENFILE (error), the caller gives the spare
 * up with this and tries again; every listener pauses accepting (clients
 * wait in the backlog, they are not reset) until the spare can be taken
 * back.  Returns 0 when a descriptor was freed, -1 when there was none.
 */
int		 listener_fd_reserve_use(int error);

/* Why accepting paused, for kuproxy_accept_errors_total{reason}. */
enum listener_accept_error {
	LISTENER_ERR_EMFILE = 0,
	LISTENER_ERR_ENFILE,
	LISTENER_ERR_ENOMEM,	/* ENOMEM, ENOBUFS */
	LISTENER_ERR_OTHER,
	LISTENER_ERR_MAX
};
/* Pauses for that reason since start, over every listener. */
uint64_t	 listener_n_accept_errors(enum listener_accept_error);
/* "EMFILE", "ENFILE", "ENOMEM", "other". */
const char	*listener_accept_error_name(enum listener_accept_error);

#endif
