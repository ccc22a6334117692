/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TCP sessions: one accepted client, one endpoint, the bytes between them.
 *
 * This module owns each session from accept to close: the connection cap,
 * choosing an endpoint (lb.c), connecting without blocking and moving on to
 * the next endpoint on refusal or timeout (upstream's TryConnectEndpoints,
 * without its blocking accept loop, k/k#47122), relaying both directions,
 * passing half-close on, turning a reset on one side into a reset on the
 * other, TCP keepalive, the idle and half-close timeouts, and the per-port
 * counters.  Accepting is listener.c's; which ports exist is the proxier's.
 *
 * A session is two flows, client to backend and backend to client.  Each
 * flow reads from its source only when nothing of its own is waiting to be
 * written, and waits for its destination to drain otherwise (backpressure:
 * a slow reader makes the kernel close the sender's window, nothing piles
 * up here).  Small reads go through one buffer shared by every session and
 * are written out at once; a flow whose reads fill that buffer moves on to
 * splice(2), source -> pipe -> destination, so bulk bytes never enter user
 * memory (HAProxy's splice-auto).  A flow holds a pipe, or a buffer for a
 * partial write, only while bytes are in it, so an idle session costs two
 * sockets and this struct.
 *
 * Each socket has one edge-triggered event, registered once (nginx's
 * model): the session remembers which sockets may be read or written and
 * stops a read early when the kernel said all there was, so a request and
 * its answer cost a read and a write each, with no epoll_ctl.
 *
 * Unlike upstream, which closed both sockets when either direction ended
 * (k/k#18524), EOF is forwarded with shutdown(SHUT_WR) and the session ends
 * when both directions have ended; --tcp-half-close-timeout bounds how long
 * a half-closed session may stay silent, --tcp-idle-timeout any session.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/tree.h"
#include "proxy/lb.h"
#include "proxy/listener.h"
#include "proxy/pport.h"
#include "proxy/proxy_protocol.h"
#include "proxy/tcp_relay.h"

#define TCP_RELAY_BUFSIZE	(64 * 1024)	/* one read in copy mode */
#define TCP_RELAY_SPLICE_MIN	(16 * 1024)	/* full reads of this: splice */
#define TCP_RELAY_ROUNDS	8	/* read+write rounds per wakeup */
#define TCP_RELAY_LOG_EVERY_MS	5000

/*
 * Upstream's dial timeouts (proxysocket.go), there one per attempt, so a
 * black hole met after a refusal cost the second step.  Here a step is
 * climbed only by timing out: the step is the smaller of the timeouts this
 * connection has met and those in a row of the endpoint (lb_n_timeouts).
 * A refusal costs no step, an endpoint never slow before gets the first,
 * and retrying a slow endpoint still waits longer each time, as upstream
 * meant; a connection never waits longer in all than the four steps.
 */
static const uint32_t tcp_connect_timeout_ms[LB_MAX_TRIES] = {
	250, 500, 1000, 2000
};

enum tcp_side {
	TCP_CLIENT = 0,
	TCP_BACKEND,
};

/* What the kernel last told us about a socket (edge-triggered). */
#define TCP_IO_READ	0x01	/* bytes or EOF may be waiting */
#define TCP_IO_WRITE	0x02	/* the send buffer may take more */
#define TCP_IO_RDHUP	0x04	/* the peer's FIN has arrived */

/* One direction: bytes read from side i, written to the other side. */
struct tcp_flow {
	int		 pipe[2];	/* splice: held while pending > 0 */
	char		*buf;		/* the shared buffer, or our own */
	uint32_t	 off;		/* buf: first byte not yet written */
	uint32_t	 pending;	/* read, not yet written */
	bool		 eof;		/* the source sent FIN */
	bool		 shut;		/* FIN passed on to the destination */
	bool		 bulk;		/* reads fill the buffer: splice them */
	uint64_t	 bytes;		/* written to the destination */
};

struct tcp_session {
	TAILQ_ENTRY(tcp_session) entry;
	struct pport		*pp;
	struct relay_env	*env;		/* the worker's that accepted it */
	struct event		 ev[2];		/* by enum tcp_side */
	int			 fd[2];
	uint8_t			 io[2];		/* TCP_IO_* by side */
	bool			 splice;
	bool			 connected;	/* to s->target */
	uint8_t			 attempts;
	uint8_t			 n_timeouts;	/* dials of ours that timed out */
	uint32_t		 dial_ms;	/* the dial's timeout */
	uint32_t		 timeout_ms;	/* the timer in force; 0 none */
	struct tcp_flow		 flow[2];	/* flow[i] reads from fd[i] */
	struct lb_target	 client;	/* for affinity and logs */
	struct lb_target	 target;
	struct lb_tried		 tried;
	struct ep_stats		*ep;		/* the endpoint's counters */
	uint64_t		 ep_bytes[2];	/* flow bytes already counted there */
	long long		 last_active_ms;
};

TAILQ_HEAD(tcp_session_list, tcp_session);

/* Each worker's sessions (proxy/worker.h); set up by its first session. */
static _Thread_local struct tcp_session_list sessions;
static _Thread_local struct log_ratelimit socket_log;
static _Thread_local struct log_ratelimit reject_log;
/*
 * Where every small read lands.  The bytes are written out before the
 * next read, so one buffer per event loop serves all its sessions; what a
 * destination cannot take at once moves to a buffer of the flow's own.
 */
static _Thread_local char	scratch[TCP_RELAY_BUFSIZE];
/* Over every worker: updated with relaxed atomics (RELAY_COUNT). */
static size_t			n_sessions;
static size_t			n_buffers;
static uint64_t			n_rejected;
static uint64_t			n_resets[2];	/* by the side that reset */
static uint64_t			bytes_copied;

static void	tcp_session_connect_next(struct tcp_session *);
static void	tcp_client_cb(evutil_socket_t, short, void *);
static void	tcp_backend_cb(evutil_socket_t, short, void *);

/* Close so that the peer gets RST rather than FIN. */
static void
tcp_close_reset(int fd)
{
	struct linger lg = { 1, 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static void
tcp_set_nodelay(int fd)
{
	int one = 1;

	/* Interactive protocols must not wait on Nagle twice (W3). */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void
tcp_peer_to_target(const struct sockaddr *sa, socklen_t len,
    struct lb_target *t)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

	memset(t, 0, sizeof(*t));
	if (sa != NULL && sa->sa_family == AF_INET && len >= sizeof(*sin)) {
		t->ip.family = AF_INET;
		memcpy(t->ip.addr, &sin->sin_addr, 4);
		t->port = ntohs(sin->sin_port);
	} else if (sa != NULL && sa->sa_family == AF_INET6 &&
	    len >= sizeof(*sin6)) {
		/* A v4 client on a dual-stack socket is a v4 client. */
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			t->ip.family = AF_INET;
			memcpy(t->ip.addr, &sin6->sin6_addr.s6_addr[12], 4);
		} else {
			t->ip.family = AF_INET6;
			memcpy(t->ip.addr, &sin6->sin6_addr, 16);
		}
		t->port = ntohs(sin6->sin6_port);
	}
}

/* "10.0.0.1:80", or `none` when t holds no address. */
static const char *
tcp_target_str(const struct lb_target *t, const char *none, char *buf,
    size_t len)
{
	if (t->ip.family == 0)
		return none;
	return lb_target_str(t, buf, len);
}

/*
 * Log a line about s at verbosity level, prefixed with the service port,
 * the client and (with_endpoint) the endpoint.  The addresses are formatted
 * only when the line is written: sessions keep no strings.
 */
static void __attribute__((format(printf, 4, 5)))
tcp_session_log(const struct tcp_session *s, int level, bool with_endpoint,
    const char *fmt, ...)
{
	char client[SVC_IPSTRLEN + 8], target[SVC_IPSTRLEN + 8], msg[256];
	va_list ap;

	if (log_verbosity() < level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (with_endpoint)
		log_v(level, "service %s: client %s: endpoint %s: %s",
		    s->pp->display, tcp_target_str(&s->client, "unknown",
		    client, sizeof(client)), tcp_target_str(&s->target, "none",
		    target, sizeof(target)), msg);
	else
		log_v(level, "service %s: client %s: %s", s->pp->display,
		    tcp_target_str(&s->client, "unknown", client,
		    sizeof(client)), msg);
}

static const char *
tcp_side_name(int side)
{
	return side == TCP_CLIENT ? "client" : "endpoint";
}

/* Forget the flow's buffer, freeing it unless it is the shared one. */
static void
tcp_flow_drop_buf(struct tcp_flow *f)
{
	if (f->buf != NULL && f->buf != scratch) {
		free(f->buf);
		PPORT_STAT_SUB(n_buffers, 1);
	}
	f->buf = NULL;
	f->off = 0;
}

static void
tcp_flow_release(struct tcp_session *s, struct tcp_flow *f)
{
	if (f->pipe[0] != -1)
		pipe_pool_put(s->env->pipes, f->pipe, f->pending == 0);
	tcp_flow_drop_buf(f);
}

/* Add the bytes moved since the last call to the endpoint's counters. */
static void
tcp_session_report_bytes(struct tcp_session *s)
{
	if (s->ep == NULL)
		return;
	PPORT_STAT_ADD(s->ep->bytes_in,
	    s->flow[TCP_CLIENT].bytes - s->ep_bytes[TCP_CLIENT]);
	PPORT_STAT_ADD(s->ep->bytes_out, s->flow[TCP_BACKEND].bytes -
	    s->ep_bytes[TCP_BACKEND]);
	s->ep_bytes[TCP_CLIENT] = s->flow[TCP_CLIENT].bytes;
	s->ep_bytes[TCP_BACKEND] = s->flow[TCP_BACKEND].bytes;
}

/* Stop watching side's socket; events never outlive their socket. */
static void
tcp_session_unwatch(struct tcp_session *s, int side)
{
	if (event_initialized(&s->ev[side]))
		event_del(&s->ev[side]);
	memset(&s->ev[side], 0, sizeof(s->ev[side]));
}

/*
 * The one way a session ends: log why, free pipes and buffers, stop the
 * events, close both sockets (with RST when reset), wake starved listeners,
 * update the counters and drop the pport reference.  s is gone afterwards.
 */
static void
tcp_session_close(struct tcp_session *s, const char *reason, bool reset)
{
	struct pport *pp = s->pp;
	int i;

	tcp_session_log(s, reset ? 3 : 4, true, "closed%s: %s (%llu bytes "
	    "in, %llu bytes out)", reset ? " with reset" : "", reason,
	    (unsigned long long)s->flow[TCP_CLIENT].bytes,
	    (unsigned long long)s->flow[TCP_BACKEND].bytes);
	for (i = 0; i < 2; i++) {
		tcp_session_unwatch(s, i);
		tcp_flow_release(s, &s->flow[i]);
		if (s->fd[i] == -1)
			continue;
		if (reset)
			tcp_close_reset(s->fd[i]);
		else
			close(s->fd[i]);
	}
	if (s->connected)
		lb_release(pp->lb, &s->target);
	if (s->ep != NULL && s->connected) {
		tcp_session_report_bytes(s);
		PPORT_STAT_SUB(s->ep->active, 1);
	}
	ep_stats_put(s->ep);
	TAILQ_REMOVE(&sessions, s, entry);
	PPORT_STAT_SUB(n_sessions, 1);
	PPORT_STAT_SUB(pp->stats.conns_active, 1);
	free(s);
	pport_unref(pp);
	listener_fd_released();
}

/* ---- timers: idle and half-close, on the client socket's event ---- */

/*
 * The timeout that applies now: --tcp-idle-timeout, or the shorter
 * --tcp-half-close-timeout once one direction has ended.  0: none.
 */
static uint32_t
tcp_session_timeout_ms(const struct tcp_session *s)
{
	const struct conf *c = s->env->conf;
	uint32_t t = c->tcp_idle_timeout_ms;
	uint32_t half = c->tcp_half_close_timeout_ms;

	if ((s->flow[0].shut || s->flow[1].shut) && half != 0 &&
	    (t == 0 || half < t))
		t = half;
	return t;
}

static void
tcp_ms_to_tv(long long ms, struct timeval *tv)
{
	tv->tv_sec = ms / 1000;
	tv->tv_usec = ms % 1000 * 1000;
}

/*
 * Put the timer in step with the session's state.  It rides on the client
 * socket's event (a persistent event re-arms its timeout on activity), so
 * a session costs no timer of its own, and changing it is no system call.
 */
static void
tcp_session_timer_update(struct tcp_session *s)
{
	uint32_t t = tcp_session_timeout_ms(s);
	struct timeval tv;

	if (t == s->timeout_ms)
		return;
	s->timeout_ms = t;
	s->last_active_ms = clock_mono_ms_coarse();
	if (t == 0) {
		event_remove_timer(&s->ev[TCP_CLIENT]);
		return;
	}
	tcp_ms_to_tv(t, &tv);
	event_add(&s->ev[TCP_CLIENT], &tv);
}

static void
tcp_session_timer_fired(struct tcp_session *s)
{
	long long idle = clock_mono_ms_coarse() - s->last_active_ms;
	struct timeval tv;
	char reason[80];

	if (s->timeout_ms == 0)
		return;
	if (idle >= s->timeout_ms) {
		snprintf(reason, sizeof(reason), "%s for %lld ms",
		    s->flow[0].shut || s->flow[1].shut ?
		    "half-closed and silent" : "idle", idle);
		tcp_session_close(s, reason, false);
		return;
	}
	/* Activity since the timer was set: sleep for the rest only. */
	tcp_ms_to_tv(s->timeout_ms - idle, &tv);
	event_add(&s->ev[TCP_CLIENT], &tv);
}

/* ---- moving bytes ---- */

/* Take a pipe for a splice read; 0, or -1 when none is to be had. */
static int
tcp_flow_take_pipe(struct tcp_session *s, struct tcp_flow *f)
{
	if (f->pipe[0] != -1)
		return 0;
	return pipe_pool_get(s->env->pipes, f->pipe);
}

/*
 * Read what the source has into the pipe.  Returns the bytes read, 0 at
 * EOF, or -1 with errno; -2 when this socket pair cannot splice (the
 * session copies from now on).
 */
static ssize_t
tcp_flow_splice_in(struct tcp_session *s, struct tcp_flow *f, int side)
{
	ssize_t n;

	n = splice(s->fd[side], NULL, f->pipe[1], NULL,
	    pipe_pool_pipe_size(s->env->pipes),
	    SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
	if (n == -1 && (errno == EINVAL || errno == ENOSYS)) {
		tcp_session_log(s, 2, false, "splice: %s, copying instead",
		    strerror(errno));
		s->splice = false;
		pipe_pool_put(s->env->pipes, f->pipe, true);
		return -2;
	}
	if (n == -1 && errno == EAGAIN)
		s->io[side] &= ~TCP_IO_READ;
	if (n > 0) {
		f->pending = (uint32_t)n;
		/* A small read: the burst is over, try plain reads again. */
		if (n < TCP_RELAY_SPLICE_MIN)
			f->bulk = false;
	}
	return n;
}

/*
 * Read into the shared buffer.  Returns the bytes read, 0 at EOF, or -1
 * with errno.  A read that fills the buffer makes a splicing session splice
 * the flow's next reads.
 */
static ssize_t
tcp_flow_recv(struct tcp_session *s, struct tcp_flow *f, int side)
{
	size_t want = s->splice ? TCP_RELAY_SPLICE_MIN : TCP_RELAY_BUFSIZE;
	ssize_t n;

	n = recv(s->fd[side], scratch, want, 0);
	if (n == -1) {
		if (errno == EAGAIN)
			s->io[side] &= ~TCP_IO_READ;
		return -1;
	}
	/*
	 * A short read of a stream socket took all it had (epoll(7)), so the
	 * next bytes will raise an edge: no read that would say EAGAIN.  Not
	 * so when a FIN is known to be waiting (EPOLLRDHUP), nor after our
	 * own shutdown, when the peer's FIN comes as EPOLLHUP without it.
	 */
	if (n > 0 && (size_t)n < want && !(s->io[side] & TCP_IO_RDHUP) &&
	    !s->flow[!side].shut)
		s->io[side] &= ~TCP_IO_READ;
	if (n > 0) {
		f->buf = scratch;
		f->off = 0;
		f->pending = (uint32_t)n;
		if ((size_t)n == want && s->splice)
			f->bulk = true;
	}
	return n;
}

/*
 * Read what the source has; see tcp_flow_recv() for the results.  The flow
 * is empty: a buffer of its own that drained goes first.
 */
static ssize_t
tcp_flow_fill(struct tcp_session *s, struct tcp_flow *f, int side)
{
	ssize_t n;

	tcp_flow_drop_buf(f);
	if (s->splice && f->bulk && tcp_flow_take_pipe(s, f) == 0 &&
	    (n = tcp_flow_splice_in(s, f, side)) != -2)
		return n;
	return tcp_flow_recv(s, f, side);
}

/*
 * What the destination did not take from the shared buffer moves to a
 * buffer of the flow's own, before any other read can overwrite it.
 * Returns 0, or -1 (ENOMEM).
 */
static int
tcp_flow_keep(struct tcp_flow *f)
{
	char *own;

	if (f->buf != scratch || f->pending == 0)
		return 0;
	if ((own = malloc(f->pending)) == NULL) {
		errno = ENOMEM;
		return -1;
	}
	memcpy(own, scratch + f->off, f->pending);
	f->buf = own;
	f->off = 0;
	PPORT_STAT_ADD(n_buffers, 1);
	return 0;
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
		if (f->buf != NULL)
			n = send(s->fd[dst], f->buf + f->off, f->pending,
			    MSG_NOSIGNAL);
		else
			n = splice(f->pipe[0], NULL, s->fd[dst], NULL,
			    f->pending, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN) {
			s->io[dst] &= ~TCP_IO_WRITE;
			break;
		}
		if (n == -1)
			return -1;
		if (f->buf != NULL) {
			f->off += (uint32_t)n;
			PPORT_STAT_ADD(bytes_copied, (uint64_t)n);
		}
		f->pending -= (uint32_t)n;
		f->bytes += (uint64_t)n;
		PPORT_STAT_ADD(*counter, (uint64_t)n);
	}
	return 0;
}

/* Whether flow i could move bytes now without news from the kernel. */
static bool
tcp_flow_can_move(const struct tcp_session *s, int i)
{
	const struct tcp_flow *f = &s->flow[i];

	if (f->pending > 0)
		return (s->io[!i] & TCP_IO_WRITE) != 0;
	return !f->eof && (s->io[i] & TCP_IO_READ) != 0;
}

/* The source is done and all of it delivered: pass FIN on. */
static void
tcp_flow_pass_fin(struct tcp_session *s, int i)
{
	s->flow[i].shut = true;
	tcp_session_log(s, 4, false, "%s closed its side", tcp_side_name(i));
	/*
	 * When the other direction has ended too, the session closes next
	 * and close() sends this FIN: the socket has nothing left to read.
	 */
	if (!s->flow[!i].shut)
		shutdown(s->fd[!i], SHUT_WR);
	tcp_session_timer_update(s);
}

/*
 * Side reset its connection (error is what reading from or writing to it
 * said): the session passes the reset on to the other side.
 */
static void
tcp_count_reset(int side, int error)
{
	if (error == ECONNRESET || error == EPIPE)
		PPORT_STAT_ADD(n_resets[side], 1);
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
	uint64_t before = f->bytes;
	bool eof_before = f->eof;
	char reason[128];
	ssize_t n;
	int round;

	for (round = 0; round < TCP_RELAY_ROUNDS; round++) {
		if (f->pending > 0) {
			if (!(s->io[!i] & TCP_IO_WRITE))
				break;
			if (tcp_flow_flush(s, f, !i, counter) == -1) {
				tcp_count_reset(!i, errno);
				snprintf(reason, sizeof(reason), "writing to "
				    "%s: %s", tcp_side_name(!i),
				    strerror(errno));
				tcp_session_close(s, reason, true);
				return -1;
			}
			if (f->pending > 0)
				break;
		}
		if (f->eof || !(s->io[i] & TCP_IO_READ))
			break;
		n = tcp_flow_fill(s, f, i);
		if (n == 0)
			f->eof = true;
		else if (n == -1 && errno != EAGAIN && errno != EINTR) {
			tcp_count_reset(i, errno);
			snprintf(reason, sizeof(reason), "reading from %s: %s",
			    tcp_side_name(i), strerror(errno));
			tcp_session_close(s, reason, true);
			return -1;
		}
	}
	/* The shared buffer is the next read's: keep what is left of ours. */
	if (tcp_flow_keep(f) == -1) {
		tcp_session_close(s, "out of memory for a buffer", true);
		return -1;
	}
	/*
	 * Stopped for fairness with work left: the kernel will not say so
	 * again (edge-triggered), so come back on the next loop pass.
	 */
	if (round == TCP_RELAY_ROUNDS && tcp_flow_can_move(s, i))
		event_active(&s->ev[i], EV_READ, 0);

	if (f->pending == 0)
		tcp_flow_release(s, f);
	if (s->timeout_ms != 0 && (f->bytes != before || f->eof != eof_before))
		s->last_active_ms = clock_mono_ms_coarse();
	if (f->eof && f->pending == 0 && !f->shut)
		tcp_flow_pass_fin(s, i);
	if (s->flow[0].shut && s->flow[1].shut) {
		tcp_session_close(s, "both sides closed", false);
		return -1;
	}
	if (f->bytes != before)
		tcp_session_report_bytes(s);
	return 0;
}

/*
 * The kernel reported what on side's socket: remember it, then move bytes
 * towards that side first (it may have room now), then away from it.
 */
static void
tcp_session_io(struct tcp_session *s, int side, short what)
{
	if (what & EV_READ)
		s->io[side] |= TCP_IO_READ;
	if (what & EV_WRITE)
		s->io[side] |= TCP_IO_WRITE;
	if (what & EV_CLOSED)
		s->io[side] |= TCP_IO_READ | TCP_IO_RDHUP;
	if (tcp_flow_pump(s, !side) == -1)
		return;
	tcp_flow_pump(s, side);
}

static void
tcp_client_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tcp_session *s = arg;

	if (what & EV_TIMEOUT) {
		tcp_session_timer_fired(s);
		return;
	}
	tcp_session_io(s, TCP_CLIENT, what);
}

/*
 * Both sockets are up: watch the client's (the backend's is watched since
 * the dial) and move whatever is already waiting.
 */
/*
 * Watch one side's socket for good: one edge-triggered event, with a
 * timeout unless timeout_ms is 0.  Returns -1 (the event left cleared) when
 * it cannot be added.
 */
static int
tcp_session_watch(struct tcp_session *s, int side, event_callback_fn cb,
    uint32_t timeout_ms)
{
	struct event	*ev = &s->ev[side];
	struct timeval	 tv;

	event_assign(ev, s->env->base, s->fd[side],
	    EV_READ | EV_WRITE | EV_CLOSED | EV_ET | EV_PERSIST, cb, s);
	tcp_ms_to_tv(timeout_ms, &tv);
	if (event_add(ev, timeout_ms != 0 ? &tv : NULL) == -1) {
		memset(ev, 0, sizeof(*ev));
		return -1;
	}
	return 0;
}

/*
 * A kuproxy.io/proxy-protocol service: send the PROXY header now, before
 * any byte of the client's and even if the client waits for the server to
 * speak first.  What a fresh socket does not take waits in the client
 * flow's own buffer, written before the client's first read.  0, or -1
 * with the reason.
 */
static int
tcp_session_send_proxy_header(struct tcp_session *s, const char **why)
{
	enum svc_proxy_protocol version;
	struct tcp_flow *f = &s->flow[TCP_CLIENT];
	struct sockaddr_storage peer, dst;
	socklen_t peerlen = sizeof(peer);
	uint8_t hdr[PROXY_PROTOCOL_MAX];
	ssize_t len, n;

	/* Not pp->svc: the control loop swaps it while workers run. */
	version = (enum svc_proxy_protocol)PPORT_STAT_GET(
	    s->pp->proxy_protocol);
	if (version == SVC_PROXY_PROTOCOL_NONE ||
	    s->pp->proto != SVC_PROTO_TCP)
		return 0;
	*why = "no client address for the PROXY header";
	if (getpeername(s->fd[TCP_CLIENT], (struct sockaddr *)&peer,
	    &peerlen) == -1 || proxy_protocol_orig_dst(s->fd[TCP_CLIENT],
	    &dst) == -1 || (len = proxy_protocol_build(version,
	    (struct sockaddr *)&peer, (struct sockaddr *)&dst, hdr,
	    sizeof(hdr))) == -1)
		return -1;
	*why = "cannot send the PROXY header";
	while ((n = send(s->fd[TCP_BACKEND], hdr, (size_t)len,
	    MSG_NOSIGNAL)) == -1 && errno == EINTR)
		;
	if (n == -1 && errno != EAGAIN)
		return -1;
	if (n == len)
		return 0;
	if (n == -1)
		n = 0;
	if ((f->buf = malloc((size_t)(len - n))) == NULL)
		return -1;
	memcpy(f->buf, hdr + n, (size_t)(len - n));
	f->off = 0;
	f->pending = (uint32_t)(len - n);
	PPORT_STAT_ADD(n_buffers, 1);
	s->io[TCP_BACKEND] &= ~TCP_IO_WRITE;
	return 0;
}

static void
tcp_session_relay(struct tcp_session *s)
{
	const char *why;

	/* Fresh sockets have room to write; reads wait for the kernel. */
	s->io[TCP_CLIENT] |= TCP_IO_WRITE;
	s->io[TCP_BACKEND] |= TCP_IO_WRITE;
	if (tcp_session_send_proxy_header(s, &why) == -1) {
		tcp_session_close(s, why, true);
		return;
	}
	s->timeout_ms = tcp_session_timeout_ms(s);
	s->last_active_ms = clock_mono_ms_coarse();
	if (tcp_session_watch(s, TCP_CLIENT, tcp_client_cb,
	    s->timeout_ms) == -1) {
		tcp_session_close(s, "cannot watch the client socket", true);
		return;
	}
	if (s->io[TCP_BACKEND] & TCP_IO_READ)
		tcp_session_io(s, TCP_BACKEND, 0);
}

/* ---- connecting ---- */

/* Tell the balancer how the endpoint failed, and count it. */
static void
tcp_session_count_failure(struct tcp_session *s, enum lb_result result,
    const char *why)
{
	lb_report(s->pp->lb, &s->target, result, clock_mono_ms_coarse());
	PPORT_STAT_ADD(s->pp->stats.connect_failures, 1);
	if (s->ep != NULL) {
		PPORT_STAT_ADD(s->ep->connect_failures, 1);
		ep_stats_put(s->ep);
		s->ep = NULL;
	}
	tcp_session_log(s, 2, true, "%s, trying next", why);
}

/*
 * This endpoint did not take the connection (result says how): tell the
 * balancer, which passes it over for a while, and try the next one.
 */
static void
tcp_session_connect_failed(struct tcp_session *s, enum lb_result result,
    const char *why)
{
	tcp_session_count_failure(s, result, why);
	tcp_session_unwatch(s, TCP_BACKEND);
	close(s->fd[TCP_BACKEND]);
	s->fd[TCP_BACKEND] = -1;
	s->io[TCP_BACKEND] = 0;
	tcp_session_connect_next(s);
}

/*
 * The dial finished or timed out.  A socket that reports only "writable"
 * is connected: a refusal always comes with EPOLLERR, which libevent turns
 * into read and write, so SO_ERROR is asked only then.
 */
static void
tcp_session_connect_done(struct tcp_session *s, short what)
{
	socklen_t len = sizeof(int);
	char why[64];
	int error = 0;

	if (what & EV_TIMEOUT) {
		snprintf(why, sizeof(why), "no answer within %u ms",
		    s->dial_ms);
		s->n_timeouts++;
		tcp_session_connect_failed(s, LB_TIMED_OUT, why);
		return;
	}
	if ((what & (EV_READ | EV_CLOSED)) &&
	    getsockopt(s->fd[TCP_BACKEND], SOL_SOCKET, SO_ERROR, &error,
	    &len) == -1)
		error = errno;
	if (error != 0) {
		tcp_session_connect_failed(s, LB_REFUSED, strerror(error));
		return;
	}
	event_remove_timer(&s->ev[TCP_BACKEND]);
	s->connected = true;
	lb_report(s->pp->lb, &s->target, LB_CONNECTED, clock_mono_ms_coarse());
	if (s->ep != NULL) {
		PPORT_STAT_ADD(s->ep->active, 1);
		PPORT_STAT_ADD(s->ep->total, 1);
	}
	tcp_session_log(s, 4, true, "connected");
	if (what & EV_READ)
		s->io[TCP_BACKEND] |= TCP_IO_READ;
	if (what & EV_CLOSED)
		s->io[TCP_BACKEND] |= TCP_IO_READ | TCP_IO_RDHUP;
	tcp_session_relay(s);
}

static void
tcp_backend_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tcp_session *s = arg;

	if (!s->connected)
		tcp_session_connect_done(s, what);
	else
		tcp_session_io(s, TCP_BACKEND, what);
}

/*
 * Start a non-blocking connect to s->target and watch the socket for good:
 * the event that reports the connect carries the relay afterwards.
 * Returns 0 when it is under way (tcp_backend_cb follows), -1 with errno
 * when it failed at once; a failure to create a socket also sets *local.
 */
static int
tcp_session_dial(struct tcp_session *s, uint32_t timeout_ms, bool *local)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	uint32_t keepalive_ms = s->env->conf->tcp_keepalive_ms;
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
	/*
	 * The client took the last descriptor: the listeners' reserve is
	 * for exactly this, and they stop accepting until it is back.
	 */
	if (fd == -1 && (errno == EMFILE || errno == ENFILE) &&
	    listener_fd_reserve_use(errno) == 0)
		fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
	if (fd == -1) {
		*local = true;
		return -1;
	}
	tcp_set_nodelay(fd);
	if (keepalive_ms != 0)
		listener_sock_keepalive(fd, keepalive_ms);
	if (connect(fd, (struct sockaddr *)&ss, sslen) == -1 &&
	    errno != EINPROGRESS) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	/* Even a connect that completed at once reports through the event. */
	s->fd[TCP_BACKEND] = fd;
	if (tcp_session_watch(s, TCP_BACKEND, tcp_backend_cb,
	    timeout_ms) == -1) {
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
	char target[SVC_IPSTRLEN + 8], client[SVC_IPSTRLEN + 8];
	char reason[128];
	uint32_t step;
	bool local;

	for (;;) {
		if (s->attempts == LB_MAX_TRIES) {
			PPORT_STAT_ADD(pp->stats.no_endpoints, 1);
			tcp_session_log(s, 2, false, "no endpoint answered "
			    "after %d attempts", s->attempts);
			tcp_session_close(s, "no endpoint answered", true);
			return;
		}
		if (lb_pick(pp->lb, &s->client.ip, &s->tried,
		    clock_mono_ms_coarse(), &s->target) == -1) {
			PPORT_STAT_ADD(pp->stats.no_endpoints, 1);
			tcp_session_log(s, 2, false, "no endpoints");
			tcp_session_close(s, "no endpoints", true);
			return;
		}
		lb_tried_add(&s->tried, &s->target);
		/* Without memory for counters the session still goes on. */
		s->ep = ep_stats_get(&pp->endpoints, &s->target);
		step = lb_n_timeouts(pp->lb, &s->target);
		if (step > s->n_timeouts)
			step = s->n_timeouts;
		/* step <= n_timeouts < attempts + 1 <= LB_MAX_TRIES */
		s->dial_ms = tcp_connect_timeout_ms[step];
		s->attempts++;
		if (tcp_session_dial(s, s->dial_ms, &local) == 0)
			return;
		if (local) {
			/* Out of fds or memory: another endpoint won't help. */
			snprintf(reason, sizeof(reason), "connecting to %s: %s",
			    lb_target_str(&s->target, target, sizeof(target)),
			    strerror(errno));
			if (log_ratelimit_ok(&socket_log,
			    TCP_RELAY_LOG_EVERY_MS))
				log_warnx("service %s: client %s: %s",
				    pp->display, tcp_target_str(&s->client,
				    "unknown", client, sizeof(client)), reason);
			tcp_session_close(s, reason, true);
			return;
		}
		tcp_session_count_failure(s, LB_REFUSED, strerror(errno));
	}
}

/* ---- accepting ---- */

/* Above --max-connections: reset the client at once and count it. */
static void
tcp_relay_reject(struct pport *pp, int client_fd)
{
	PPORT_STAT_ADD(n_rejected, 1);
	if (log_ratelimit_ok(&reject_log, TCP_RELAY_LOG_EVERY_MS))
		log_warnx("service %s: %zu connections open, the most "
		    "--max-connections allows: resetting new clients (%lu "
		    "such lines suppressed)", pp->display,
		    PPORT_STAT_GET(n_sessions),
		    reject_log.suppressed);
	tcp_close_reset(client_fd);
	listener_fd_released();
}

/*
 * The socket options a client socket needs.  Accepted sockets inherit
 * TCP_NODELAY and the keepalive settings from the listening socket on
 * Linux, so they are set there once; only a socket queued before a change
 * of --tcp-keepalive (SIGHUP) gets its own.
 */
static void
tcp_relay_client_sockopts(struct pport_lane *lane, int client_fd)
{
	uint32_t keepalive_ms = lane->env->conf->tcp_keepalive_ms;

	if (!listener_keepalive_inherited(lane->listener, keepalive_ms))
		listener_sock_keepalive(client_fd, keepalive_ms);
}

/*
 * Serve client_fd, a non-blocking socket accepted on the lane's listener:
 * take a reference on its pport, pick and connect to an endpoint, then
 * relay.  Never blocks; every later step runs from the lane's event loop.
 * The session owns client_fd from here on, even on failure.  Above
 * --max-connections (over every worker) the client is reset at once
 * instead.
 */
void
tcp_relay_start(struct pport_lane *lane, int client_fd,
    const struct sockaddr *peer, socklen_t peerlen)
{
	struct pport *pp = lane->pp;
	uint32_t max = lane->env->conf->tcp_max_connections;
	struct tcp_session *s;
	int i;

	if (PPORT_STAT_ADD(n_sessions, 1) >= max && max != 0) {
		PPORT_STAT_SUB(n_sessions, 1);
		tcp_relay_reject(pp, client_fd);
		return;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		PPORT_STAT_SUB(n_sessions, 1);
		tcp_close_reset(client_fd);
		listener_fd_released();
		return;
	}
	s->pp = pport_ref(pp);
	s->env = lane->env;
	s->fd[TCP_CLIENT] = client_fd;
	s->fd[TCP_BACKEND] = -1;
	for (i = 0; i < 2; i++)
		s->flow[i].pipe[0] = s->flow[i].pipe[1] = -1;
	s->splice = s->env->conf->relay_mode == CONF_RELAY_SPLICE &&
	    s->env->pipes != NULL;
	tcp_peer_to_target(peer, peerlen, &s->client);
	tcp_relay_client_sockopts(lane, client_fd);
	if (sessions.tqh_last == NULL)
		TAILQ_INIT(&sessions);
	TAILQ_INSERT_TAIL(&sessions, s, entry);
	PPORT_STAT_ADD(pp->stats.conns_active, 1);
	PPORT_STAT_ADD(pp->stats.conns_total, 1);
	PPORT_STAT_ADD(s->env->started, 1);
	tcp_session_connect_next(s);
}

/* listener_accept_cb for a TCP pport's lane: arg is the lane. */
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
	return PPORT_STAT_GET(n_sessions);
}

/* Buffers held now for partial writes, over every session. */
size_t
tcp_relay_n_buffers(void)
{
	return PPORT_STAT_GET(n_buffers);
}

/* Clients reset because --max-connections sessions were open. */
uint64_t
tcp_relay_n_rejected(void)
{
	return PPORT_STAT_GET(n_rejected);
}

/* Resets passed on, by the side that sent them. */
uint64_t
tcp_relay_n_resets(bool from_endpoint)
{
	return PPORT_STAT_GET(n_resets[from_endpoint ? TCP_BACKEND :
	    TCP_CLIENT]);
}

/* Bytes relayed through user memory rather than spliced, since start. */
uint64_t
tcp_relay_bytes_copied(void)
{
	return PPORT_STAT_GET(bytes_copied);
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
