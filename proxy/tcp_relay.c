/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TCP sessions: one accepted client, one endpoint, the bytes between them.
 *
 * This module owns each session from accept to close: choosing an endpoint
 * (lb.c), connecting without blocking and moving on to the next endpoint on
 * refusal or timeout (upstream's TryConnectEndpoints, without its blocking
 * accept loop, k/k#47122), relaying both directions, passing half-close on,
 * turning a reset on one side into a reset on the other, the idle timeout,
 * and the per-port counters.  Accepting is listener.c's; which ports exist
 * is the proxier's.
 *
 * A session is two flows, client to backend and backend to client.  Each
 * flow reads from its source only when nothing of its own is waiting to be
 * written, and waits for its destination to drain otherwise (backpressure).
 * In splice mode the bytes go source -> pipe -> destination and never enter
 * user memory; in copy mode through a buffer.  Either way a flow holds its
 * pipe or buffer only while bytes are in it, so an idle session costs two
 * sockets and this struct.
 *
 * Unlike upstream, which closed both sockets when either direction ended
 * (k/k#18524), EOF is forwarded with shutdown(SHUT_WR) and the session ends
 * when both directions have ended; the idle timeout bounds half-open
 * sessions.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/tree.h"
#include "proxy/lb.h"
#include "proxy/listener.h"
#include "proxy/pport.h"
#include "proxy/tcp_relay.h"

#define TCP_RELAY_BUFSIZE	(64 * 1024)	/* copy mode, per direction */
#define TCP_RELAY_ROUNDS	8	/* read+write rounds per wakeup */
#define TCP_RELAY_LOG_EVERY_MS	5000

/* Upstream's dial timeouts, one per attempt (proxysocket.go). */
static const int tcp_connect_timeout_ms[LB_MAX_TRIES] = {
	250, 500, 1000, 2000
};

enum tcp_side {
	TCP_CLIENT = 0,
	TCP_BACKEND,
};

/* One direction: bytes read from side i, written to the other side. */
struct tcp_flow {
	int		 pipe[2];	/* splice: held while pending > 0 */
	char		*buf;		/* copy: held only while pending > 0 */
	size_t		 off;		/* copy: first byte not yet written */
	size_t		 pending;	/* read, not yet written */
	bool		 eof;		/* the source sent FIN */
	bool		 shut;		/* FIN passed on to the destination */
	uint64_t	 bytes;		/* written to the destination */
};

struct tcp_session {
	TAILQ_ENTRY(tcp_session) entry;
	struct pport		*pp;
	int			 fd[2];		/* by enum tcp_side */
	struct event		*ev_read[2];
	struct event		*ev_write[2];
	struct event		*ev_connect;	/* connected, or timed out */
	struct event		*ev_idle;
	struct tcp_flow		 flow[2];	/* flow[i] reads from fd[i] */
	bool			 splice;
	struct svc_ip		 client_ip;
	char			 client_str[SVC_IPSTRLEN + 8];
	char			 target_str[SVC_IPSTRLEN + 8];
	struct lb_tried		 tried;
	struct lb_target	 target;
	struct ep_stats		*ep;		/* the endpoint's counters */
	uint64_t		 ep_bytes[2];	/* flow bytes already counted there */
	bool			 connected;	/* to s->target */
	int			 attempts;
	long long		 last_active_ms;
};

TAILQ_HEAD(tcp_session_list, tcp_session);

static struct tcp_session_list	sessions = TAILQ_HEAD_INITIALIZER(sessions);
static size_t			n_sessions;
static size_t			n_buffers;
static struct log_ratelimit	socket_log;

static void	tcp_session_connect_next(struct tcp_session *);

static void
tcp_set_nodelay(int fd)
{
	int one = 1;

	/* Interactive protocols must not wait on Nagle twice (W3). */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Close so that the peer gets RST rather than FIN. */
static void
tcp_close_reset(int fd)
{
	struct linger lg = { 1, 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static void
tcp_peer_to_ip(const struct sockaddr *sa, socklen_t len, struct svc_ip *ip,
    char *str, size_t strlen)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
	struct lb_target t;

	memset(&t, 0, sizeof(t));
	if (sa != NULL && sa->sa_family == AF_INET && len >= sizeof(*sin)) {
		t.ip.family = AF_INET;
		memcpy(t.ip.addr, &sin->sin_addr, 4);
		t.port = ntohs(sin->sin_port);
	} else if (sa != NULL && sa->sa_family == AF_INET6 &&
	    len >= sizeof(*sin6)) {
		/* A v4 client on a dual-stack socket is a v4 client. */
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			t.ip.family = AF_INET;
			memcpy(t.ip.addr, &sin6->sin6_addr.s6_addr[12], 4);
		} else {
			t.ip.family = AF_INET6;
			memcpy(t.ip.addr, &sin6->sin6_addr, 16);
		}
		t.port = ntohs(sin6->sin6_port);
	}
	*ip = t.ip;
	if (t.ip.family == 0)
		snprintf(str, strlen, "unknown");
	else
		lb_target_str(&t, str, strlen);
}

static void
tcp_event_want(struct event *ev, bool want)
{
	bool pending = event_pending(ev, EV_READ | EV_WRITE, NULL);

	if (want && !pending)
		event_add(ev, NULL);
	else if (!want && pending)
		event_del(ev);
}

static void
tcp_flow_release(struct tcp_session *s, struct tcp_flow *f)
{
	if (f->pipe[0] != -1)
		pipe_pool_put(s->pp->env->pipes, f->pipe, f->pending == 0);
	if (f->buf != NULL) {
		free(f->buf);
		f->buf = NULL;
		n_buffers--;
	}
	f->off = 0;
}

/*
 * The one way a session ends: log why, free pipes, buffers and events,
 * close both sockets (with RST when reset), wake starved listeners, update
 * the counters and drop the pport reference.  s is gone afterwards.
 */
/* Add the bytes moved since the last call to the endpoint's counters. */
static void
tcp_session_report_bytes(struct tcp_session *s)
{
	if (s->ep == NULL)
		return;
	s->ep->bytes_in += s->flow[TCP_CLIENT].bytes - s->ep_bytes[TCP_CLIENT];
	s->ep->bytes_out += s->flow[TCP_BACKEND].bytes -
	    s->ep_bytes[TCP_BACKEND];
	s->ep_bytes[TCP_CLIENT] = s->flow[TCP_CLIENT].bytes;
	s->ep_bytes[TCP_BACKEND] = s->flow[TCP_BACKEND].bytes;
}

static void
tcp_session_close(struct tcp_session *s, const char *reason, bool reset)
{
	struct pport *pp = s->pp;
	int i;

	log_v(reset ? 3 : 4, "service %s: client %s: endpoint %s: closed%s: "
	    "%s (%llu bytes in, %llu bytes out)", pp->display, s->client_str,
	    s->target_str, reset ? " with reset" : "", reason,
	    (unsigned long long)s->flow[TCP_CLIENT].bytes,
	    (unsigned long long)s->flow[TCP_BACKEND].bytes);
	for (i = 0; i < 2; i++) {
		if (s->ev_read[i] != NULL)
			event_free(s->ev_read[i]);
		if (s->ev_write[i] != NULL)
			event_free(s->ev_write[i]);
		tcp_flow_release(s, &s->flow[i]);
		if (s->fd[i] == -1)
			continue;
		if (reset)
			tcp_close_reset(s->fd[i]);
		else
			close(s->fd[i]);
	}
	if (s->ev_connect != NULL)
		event_free(s->ev_connect);
	if (s->ev_idle != NULL)
		event_free(s->ev_idle);
	if (s->ep != NULL && s->connected) {
		tcp_session_report_bytes(s);
		s->ep->active--;
	}
	ep_stats_put(s->ep);
	TAILQ_REMOVE(&sessions, s, entry);
	n_sessions--;
	pp->stats.conns_active--;
	free(s);
	pport_unref(pp);
	listener_fd_released();
}

/* Take a pipe (splice) or a buffer (copy, or no pipe to be had). */
static int
tcp_flow_hold(struct tcp_session *s, struct tcp_flow *f)
{
	if (f->pipe[0] != -1 || f->buf != NULL)
		return 0;
	if (s->splice && pipe_pool_get(s->pp->env->pipes, f->pipe) == 0)
		return 0;
	if ((f->buf = malloc(TCP_RELAY_BUFSIZE)) == NULL)
		return -1;
	n_buffers++;
	f->off = 0;
	return 0;
}

/*
 * Read what the source has into the flow.  Returns the bytes read, 0 at
 * EOF, or -1 with errno (EAGAIN: nothing now).
 */
static ssize_t
tcp_flow_fill(struct tcp_session *s, struct tcp_flow *f, int src)
{
	ssize_t n;

	if (tcp_flow_hold(s, f) == -1) {
		errno = ENOMEM;
		return -1;
	}
	if (f->pipe[0] != -1) {
		n = splice(src, NULL, f->pipe[1], NULL,
		    pipe_pool_pipe_size(s->pp->env->pipes),
		    SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
		if (n == -1 && (errno == EINVAL || errno == ENOSYS)) {
			/* This socket pair cannot splice: copy from now on. */
			log_v(2, "service %s: client %s: splice: %s, copying "
			    "instead", s->pp->display, s->client_str,
			    strerror(errno));
			s->splice = false;
			pipe_pool_put(s->pp->env->pipes, f->pipe, true);
			return tcp_flow_fill(s, f, src);
		}
	} else {
		n = recv(src, f->buf, TCP_RELAY_BUFSIZE, 0);
		f->off = 0;
	}
	if (n > 0)
		f->pending = (size_t)n;
	return n;
}

/*
 * Write pending bytes to the destination.  Returns 0 (perhaps some left:
 * the destination is full) or -1 with errno.
 */
static int
tcp_flow_flush(struct tcp_session *s, struct tcp_flow *f, int dst,
    uint64_t *counter)
{
	ssize_t n;

	while (f->pending > 0) {
		if (f->pipe[0] != -1)
			n = splice(f->pipe[0], NULL, dst, NULL, f->pending,
			    SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
		else
			n = send(dst, f->buf + f->off, f->pending,
			    MSG_NOSIGNAL);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return errno == EAGAIN ? 0 : -1;
		if (f->buf != NULL)
			f->off += (size_t)n;
		f->pending -= (size_t)n;
		f->bytes += (uint64_t)n;
		*counter += (uint64_t)n;
		s->last_active_ms = clock_mono_ms_coarse();
	}
	return 0;
}

static const char *
tcp_side_name(int side)
{
	return side == TCP_CLIENT ? "client" : "endpoint";
}

/* Poll the source only when the flow is empty, the destination when not. */
static void
tcp_flow_interest(struct tcp_session *s, int i)
{
	struct tcp_flow *f = &s->flow[i];

	tcp_event_want(s->ev_read[i], !f->eof && f->pending == 0);
	tcp_event_want(s->ev_write[!i], f->pending > 0);
}

/*
 * Move what flow i can move now.  Returns 0, or -1 when the session was
 * closed (s is gone).
 */
static int
tcp_flow_pump(struct tcp_session *s, int i)
{
	struct tcp_flow *f = &s->flow[i];
	uint64_t *counter = i == TCP_CLIENT ? &s->pp->stats.bytes_in :
	    &s->pp->stats.bytes_out;
	char reason[128];
	ssize_t n;
	int round;

	for (round = 0; round < TCP_RELAY_ROUNDS; round++) {
		if (tcp_flow_flush(s, f, s->fd[!i], counter) == -1) {
			snprintf(reason, sizeof(reason), "writing to %s: %s",
			    tcp_side_name(!i), strerror(errno));
			tcp_session_close(s, reason, true);
			return -1;
		}
		if (f->pending > 0 || f->eof)
			break;
		n = tcp_flow_fill(s, f, s->fd[i]);
		if (n == 0) {
			f->eof = true;
			s->last_active_ms = clock_mono_ms_coarse();
			break;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			break;
		if (n == -1) {
			snprintf(reason, sizeof(reason), "reading from %s: %s",
			    tcp_side_name(i), strerror(errno));
			tcp_session_close(s, reason, true);
			return -1;
		}
		s->last_active_ms = clock_mono_ms_coarse();
	}

	if (f->pending == 0)
		tcp_flow_release(s, f);
	if (f->eof && f->pending == 0 && !f->shut) {
		/* The source is done and all of it delivered: pass FIN on. */
		f->shut = true;
		shutdown(s->fd[!i], SHUT_WR);
		log_debug("service %s: client %s: %s closed its side",
		    s->pp->display, s->client_str, tcp_side_name(i));
	}
	if (s->flow[0].shut && s->flow[1].shut) {
		tcp_session_close(s, "both sides closed", false);
		return -1;
	}
	tcp_session_report_bytes(s);
	tcp_flow_interest(s, i);
	return 0;
}

static void
tcp_client_readable(evutil_socket_t fd, short what, void *arg)
{
	tcp_flow_pump(arg, TCP_CLIENT);
}

static void
tcp_backend_readable(evutil_socket_t fd, short what, void *arg)
{
	tcp_flow_pump(arg, TCP_BACKEND);
}

static void
tcp_client_writable(evutil_socket_t fd, short what, void *arg)
{
	tcp_flow_pump(arg, TCP_BACKEND);
}

static void
tcp_backend_writable(evutil_socket_t fd, short what, void *arg)
{
	tcp_flow_pump(arg, TCP_CLIENT);
}

static void
tcp_idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tcp_session *s = arg;
	long long timeout = s->pp->env->conf->tcp_idle_timeout_ms;
	long long idle = clock_mono_ms_coarse() - s->last_active_ms;
	struct timeval tv;
	char reason[64];

	if (idle >= timeout) {
		snprintf(reason, sizeof(reason), "idle for %lld ms", idle);
		tcp_session_close(s, reason, false);
		return;
	}
	/* Activity since the timer was set: sleep for the rest only. */
	tv.tv_sec = (timeout - idle) / 1000;
	tv.tv_usec = (timeout - idle) % 1000 * 1000;
	evtimer_add(s->ev_idle, &tv);
}

static void
tcp_session_relay(struct tcp_session *s)
{
	struct event_base *base = s->pp->env->base;
	uint32_t idle_ms = s->pp->env->conf->tcp_idle_timeout_ms;
	struct timeval tv;

	s->last_active_ms = clock_mono_ms_coarse();
	s->ev_read[TCP_CLIENT] = event_new(base, s->fd[TCP_CLIENT],
	    EV_READ | EV_PERSIST, tcp_client_readable, s);
	s->ev_read[TCP_BACKEND] = event_new(base, s->fd[TCP_BACKEND],
	    EV_READ | EV_PERSIST, tcp_backend_readable, s);
	s->ev_write[TCP_CLIENT] = event_new(base, s->fd[TCP_CLIENT],
	    EV_WRITE | EV_PERSIST, tcp_client_writable, s);
	s->ev_write[TCP_BACKEND] = event_new(base, s->fd[TCP_BACKEND],
	    EV_WRITE | EV_PERSIST, tcp_backend_writable, s);
	if (idle_ms > 0)
		s->ev_idle = evtimer_new(base, tcp_idle_cb, s);
	if (s->ev_read[0] == NULL || s->ev_read[1] == NULL ||
	    s->ev_write[0] == NULL || s->ev_write[1] == NULL ||
	    (idle_ms > 0 && s->ev_idle == NULL)) {
		tcp_session_close(s, "out of memory for events", true);
		return;
	}
	tcp_flow_interest(s, TCP_CLIENT);
	tcp_flow_interest(s, TCP_BACKEND);
	if (idle_ms > 0) {
		tv.tv_sec = idle_ms / 1000;
		tv.tv_usec = idle_ms % 1000 * 1000;
		evtimer_add(s->ev_idle, &tv);
	}
}

static void
tcp_session_count_failure(struct tcp_session *s, const char *why)
{
	s->pp->stats.connect_failures++;
	if (s->ep != NULL) {
		s->ep->connect_failures++;
		ep_stats_put(s->ep);
		s->ep = NULL;
	}
	log_v(2, "service %s: client %s: endpoint %s: %s, trying next",
	    s->pp->display, s->client_str, s->target_str, why);
}

/* This endpoint did not take the connection; try the next one. */
static void
tcp_session_connect_failed(struct tcp_session *s, const char *why)
{
	tcp_session_count_failure(s, why);
	if (s->ev_connect != NULL) {
		event_free(s->ev_connect);
		s->ev_connect = NULL;
	}
	close(s->fd[TCP_BACKEND]);
	s->fd[TCP_BACKEND] = -1;
	tcp_session_connect_next(s);
}

static void
tcp_connect_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tcp_session *s = arg;
	socklen_t len = sizeof(int);
	char why[64];
	int error = 0;

	if (what & EV_TIMEOUT) {
		snprintf(why, sizeof(why), "no answer within %d ms",
		    tcp_connect_timeout_ms[s->attempts - 1]);
		tcp_session_connect_failed(s, why);
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == -1)
		error = errno;
	if (error != 0) {
		tcp_session_connect_failed(s, strerror(error));
		return;
	}
	event_free(s->ev_connect);
	s->ev_connect = NULL;
	s->connected = true;
	if (s->ep != NULL) {
		s->ep->active++;
		s->ep->total++;
	}
	log_debug("service %s: client %s: connected to endpoint %s",
	    s->pp->display, s->client_str, s->target_str);
	tcp_session_relay(s);
}

/*
 * Start a non-blocking connect to s->target.  Returns 0 when it is under
 * way (tcp_connect_cb follows), -1 with errno when it failed at once; a
 * failure to create a socket also sets *local.
 */
static int
tcp_session_dial(struct tcp_session *s, int timeout_ms, bool *local)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	struct timeval tv = { timeout_ms / 1000, timeout_ms % 1000 * 1000 };
	socklen_t sslen;
	int fd, saved;

	memset(&ss, 0, sizeof(ss));
	if (s->target.ip.family == AF_INET) {
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, s->target.ip.addr, 4);
		sin->sin_port = htons(s->target.port);
		sslen = sizeof(*sin);
	} else {
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, s->target.ip.addr, 16);
		sin6->sin6_port = htons(s->target.port);
		sslen = sizeof(*sin6);
	}
	*local = false;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1) {
		*local = true;
		return -1;
	}
	tcp_set_nodelay(fd);
	if (connect(fd, (struct sockaddr *)&ss, sslen) == -1 &&
	    errno != EINPROGRESS) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	/* Even a connect that completed at once reports through the event. */
	s->fd[TCP_BACKEND] = fd;
	s->ev_connect = event_new(s->pp->env->base, fd, EV_WRITE,
	    tcp_connect_cb, s);
	if (s->ev_connect == NULL || event_add(s->ev_connect, &tv) == -1) {
		*local = true;
		errno = ENOMEM;
		return -1;
	}
	return 0;
}

/*
 * Dial the next endpoint: up to LB_MAX_TRIES attempts, each to an endpoint
 * not tried yet when there is one.  With no endpoint, or after the last
 * attempt, the client is reset: it sees a refusal, not an empty reply.
 */
static void
tcp_session_connect_next(struct tcp_session *s)
{
	struct pport *pp = s->pp;
	bool local;
	char reason[128];
	int timeout_ms;

	for (;;) {
		if (s->attempts == LB_MAX_TRIES) {
			pp->stats.no_endpoints++;
			log_v(2, "service %s: client %s: no endpoint answered "
			    "after %d attempts", pp->display, s->client_str,
			    s->attempts);
			tcp_session_close(s, "no endpoint answered", true);
			return;
		}
		if (lb_pick(pp->lb, &s->client_ip, &s->tried, clock_mono_ms_coarse(),
		    &s->target) == -1) {
			pp->stats.no_endpoints++;
			log_v(2, "service %s: client %s: no endpoints",
			    pp->display, s->client_str);
			tcp_session_close(s, "no endpoints", true);
			return;
		}
		lb_tried_add(&s->tried, &s->target);
		lb_target_str(&s->target, s->target_str, sizeof(s->target_str));
		/* Without memory for counters the session still goes on. */
		s->ep = ep_stats_get(&pp->endpoints, &s->target);
		timeout_ms = tcp_connect_timeout_ms[s->attempts++];
		if (tcp_session_dial(s, timeout_ms, &local) == 0)
			return;
		if (local) {
			/* Out of fds or memory: another endpoint won't help. */
			snprintf(reason, sizeof(reason), "connecting to %s: %s",
			    s->target_str, strerror(errno));
			if (log_ratelimit_ok(&socket_log,
			    TCP_RELAY_LOG_EVERY_MS))
				log_warnx("service %s: client %s: %s",
				    pp->display, s->client_str, reason);
			tcp_session_close(s, reason, true);
			return;
		}
		tcp_session_count_failure(s, strerror(errno));
	}
}

/*
 * Serve client_fd, a non-blocking socket accepted on pp's listener: take a
 * reference on pp, pick and connect to an endpoint, then relay.  Never
 * blocks; every later step runs from pp->env->base.  The session owns
 * client_fd from here on, even on failure.
 */
void
tcp_relay_start(struct pport *pp, int client_fd, const struct sockaddr *peer,
    socklen_t peerlen)
{
	struct tcp_session *s;
	int i;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		tcp_close_reset(client_fd);
		listener_fd_released();
		return;
	}
	s->pp = pport_ref(pp);
	s->fd[TCP_CLIENT] = client_fd;
	s->fd[TCP_BACKEND] = -1;
	for (i = 0; i < 2; i++)
		s->flow[i].pipe[0] = s->flow[i].pipe[1] = -1;
	s->splice = pp->env->conf->relay_mode == CONF_RELAY_SPLICE &&
	    pp->env->pipes != NULL;
	snprintf(s->target_str, sizeof(s->target_str), "none");
	tcp_peer_to_ip(peer, peerlen, &s->client_ip, s->client_str,
	    sizeof(s->client_str));
	tcp_set_nodelay(client_fd);
	TAILQ_INSERT_TAIL(&sessions, s, entry);
	n_sessions++;
	pp->stats.conns_active++;
	pp->stats.conns_total++;
	tcp_session_connect_next(s);
}

/* listener_accept_cb for a TCP pport: arg is the pport. */
void
tcp_relay_accept(int client_fd, const struct sockaddr *peer,
    socklen_t peerlen, void *arg)
{
	tcp_relay_start(arg, client_fd, peer, peerlen);
}

/* Sessions open now, connecting or relaying, over every service port. */
size_t
tcp_relay_active(void)
{
	return n_sessions;
}

/* Copy buffers held now by every session. */
size_t
tcp_relay_n_buffers(void)
{
	return n_buffers;
}

/*
 * Close every session now, with FIN (the end of a shutdown grace period).
 * Each drops its pport reference, so pports already removed by the proxier
 * are freed here.
 */
void
tcp_relay_close_all(void)
{
	struct tcp_session *s;

	while ((s = TAILQ_FIRST(&sessions)) != NULL)
		tcp_session_close(s, "shutting down", false);
}
