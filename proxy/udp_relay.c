/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The UDP data path (kube-proxy's udpProxySocket, fixed).
 *
 * This module owns the socket of each UDP service port, the table of client
 * associations (client address -> connected socket to one endpoint), their
 * expiry, the caps on how many there are, and one shared set of batch
 * buffers.  Which endpoint a new association goes to is the balancer's
 * (lb_pick); ports, rules and the pport itself are the proxier's.
 *
 * Datagram flow: the service socket is read in recvmmsg batches; each
 * datagram goes to its client's association (created on the first one) with
 * send() on the association's connected socket.  Replies are read from that
 * socket in batches and sent to the client from the service socket with
 * sendmmsg, from the very address the client wrote to (IP_PKTINFO), so
 * conntrack's reverse REDIRECT/DNAT makes them come from ClusterIP:port.
 *
 * Expiry without a timer per association: each port keeps its associations
 * in four lists ordered by last activity, by whether they await a reply
 * (the client spoke last) and by whether they are assured (see below).
 * Within a list every association has the same timeout, so the head
 * expires first, and one timer per port armed for the earliest head
 * suffices.  Global lists in the same order serve the total cap.
 *
 * Eviction at a cap is conntrack's early_drop, not plain LRU: an
 * association is assured once its client spoke again after a reply (a
 * proven two-way exchange).  The first to go is the oldest unassured one
 * whose exchange is complete (answered, the client silent since), then the
 * oldest unassured one still awaiting its reply, and only then the oldest
 * assured one.  A flood of one-shot sources thus recycles its own
 * associations and cannot push out a client in mid-exchange or a
 * long-lived one.
 *
 * Departures from upstream, on purpose:
 * - an association awaiting a reply waits UDP_RELAY_REPLY_WAIT_MS even when
 *   --udp-timeout is shorter (upstream's 250 ms lost slower replies,
 *   k/k#14939); after a reply, --udp-timeout of silence ends it;
 * - datagrams are relayed whole up to 64 KiB; upstream truncated silently at
 *   4 KiB.  A datagram that does not fit is dropped and counted;
 * - associations are capped per port and in total, evicting the least
 *   valuable (above); upstream kept one socket and goroutine per client without
 *   bound and panicked on EMFILE.  Here EMFILE drops the datagram;
 * - the service socket gets a large receive buffer, and the datagrams the
 *   kernel drops when it is full anyway are counted (SO_RXQ_OVFL);
 * - optionally (--udp-reject-privileged-sources) datagrams from source
 *   ports below 1024 are dropped, against reflection (HAProxy's
 *   reject-privileged-ports);
 * - an endpoint that refuses (ICMP port unreachable) moves the association
 *   to another endpoint at once, and one that leaves the balancer drops its
 *   associations at once instead of waiting for their timeout.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
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
#include "proxy/udp_relay.h"

#define UDP_BATCH		32	/* datagrams per recvmmsg/sendmmsg */
#define UDP_BUF_SIZE		65536	/* one buffer slot per datagram */
#define UDP_BATCHES_PER_EVENT	8	/* then let other sockets run */
#define UDP_LOG_INTERVAL_MS	10000
/* The service socket's receive buffer: ~2,000 full-MTU datagrams. */
#define UDP_SERVICE_RCVBUF	(4 * 1024 * 1024)

/* Room for one IPv4 or IPv6 packet-info control message. */
union udp_cmsg {
	struct cmsghdr	align;
	unsigned char	buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) +
			    CMSG_SPACE(sizeof(struct in_pktinfo))];
};

/* Room for the packet info and the receive-queue drop count. */
union udp_in_cmsg {
	struct cmsghdr	align;
	unsigned char	buf[sizeof(union udp_cmsg) +
			    CMSG_SPACE(sizeof(uint32_t))];
};

/*
 * The lists an association is on, by value at eviction, least first: see
 * the eviction note at the top.  The index is assured * 2 + waiting.
 */
enum udp_assoc_class {
	UDP_CLASS_DONE = 0,		/* answered, client silent since */
	UDP_CLASS_PENDING,		/* awaiting its first reply */
	UDP_CLASS_ASSURED_IDLE,
	UDP_CLASS_ASSURED_WAITING,
	UDP_N_CLASSES
};

struct udp_assoc {
	RB_ENTRY(udp_assoc)	 ua_node;	/* up_assocs, by client */
	TAILQ_ENTRY(udp_assoc)	 ua_port_lru;	/* up_lists[class] */
	TAILQ_ENTRY(udp_assoc)	 ua_all_lru;	/* udp_all[class] */
	struct udp_port		*ua_port;
	struct sockaddr_storage	 ua_peer;	/* the client */
	socklen_t		 ua_peerlen;
	union udp_cmsg		 ua_cmsg;	/* reply source (IP_PKTINFO) */
	socklen_t		 ua_cmsglen;	/* 0: let routing choose */
	struct lb_target	 ua_target;	/* the endpoint */
	struct lb_tried		 ua_tried;	/* endpoints that refused */
	int			 ua_fd;		/* connected to ua_target */
	sa_family_t		 ua_fd_family;
	struct event		*ua_ev;
	long long		 ua_last_ms;	/* last datagram either way */
	bool			 ua_waiting;	/* client spoke last */
	bool			 ua_assured;	/* spoke again after a reply */
};

RB_HEAD(udp_assoc_tree, udp_assoc);
TAILQ_HEAD(udp_assoc_list, udp_assoc);

struct udp_port {
	struct pport		*up_pp;
	struct relay_env	*up_env;	/* the worker's */
	int			 up_fd;
	struct event		*up_ev;
	struct event		*up_timer;
	long long		 up_timer_due_ms;	/* 0: not armed */
	struct udp_assoc_tree	 up_assocs;
	/* By udp_assoc_class, oldest first; see the notes at the top. */
	struct udp_assoc_list	 up_lists[UDP_N_CLASSES];
	size_t			 up_n_assocs;	/* in up_assocs */
	uint32_t		 up_rxq_drops;	/* kernel's count, last seen */
	struct log_ratelimit	 up_rl_fds;
	struct log_ratelimit	 up_rl_io;
};

/*
 * Batch buffers, shared by every port: one event loop runs one callback at
 * a time, and nothing outlives a callback.
 */
struct udp_batch {
	struct mmsghdr		 in[UDP_BATCH];
	struct iovec		 in_iov[UDP_BATCH];
	struct sockaddr_storage	 in_peer[UDP_BATCH];
	union udp_in_cmsg	 in_cmsg[UDP_BATCH];
	struct mmsghdr		 out[UDP_BATCH];
	struct iovec		 out_iov[UDP_BATCH];
	unsigned char		*buf;		/* UDP_BATCH * UDP_BUF_SIZE */
	size_t			 in_len;	/* iov_len set up; 0: none */
	unsigned int		 in_used;	/* headers the last read filled */
};

/* Each worker's (proxy/worker.h); a batch serves one loop. */
static _Thread_local struct udp_batch	*udp_batch;
static _Thread_local size_t		 udp_batch_users;
/* Set up with the worker's first batch (udp_batch_take()). */
static _Thread_local struct udp_assoc_list udp_all[UDP_N_CLASSES];
static _Thread_local size_t		 udp_n_assocs_here;
/* Over every worker, as the caps count (PPORT_STAT_*). */
static size_t			 udp_n_assocs;
static size_t			 udp_max_datagram = UDP_RELAY_MAX_DATAGRAM;

static void	udp_assoc_readable(evutil_socket_t, short, void *);

static int
udp_peer_cmp(const struct udp_assoc *a, const struct udp_assoc *b)
{
	const struct sockaddr_in *a4, *b4;
	const struct sockaddr_in6 *a6, *b6;
	int c;

	if (a->ua_peer.ss_family != b->ua_peer.ss_family)
		return a->ua_peer.ss_family < b->ua_peer.ss_family ? -1 : 1;
	if (a->ua_peer.ss_family == AF_INET) {
		a4 = (const struct sockaddr_in *)&a->ua_peer;
		b4 = (const struct sockaddr_in *)&b->ua_peer;
		if (a4->sin_port != b4->sin_port)
			return a4->sin_port < b4->sin_port ? -1 : 1;
		return memcmp(&a4->sin_addr, &b4->sin_addr,
		    sizeof(a4->sin_addr));
	}
	a6 = (const struct sockaddr_in6 *)&a->ua_peer;
	b6 = (const struct sockaddr_in6 *)&b->ua_peer;
	if (a6->sin6_port != b6->sin6_port)
		return a6->sin6_port < b6->sin6_port ? -1 : 1;
	if ((c = memcmp(&a6->sin6_addr, &b6->sin6_addr,
	    sizeof(a6->sin6_addr))) != 0)
		return c;
	if (a6->sin6_scope_id != b6->sin6_scope_id)
		return a6->sin6_scope_id < b6->sin6_scope_id ? -1 : 1;
	return 0;
}

KU_RB_GENERATE_STATIC(udp_assoc_tree, udp_assoc, ua_node, udp_peer_cmp)

/* The client's IP as the balancer keys affinity (v4-mapped as IPv4). */
static void
udp_peer_ip(const struct sockaddr_storage *ss, struct svc_ip *ip)
{
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

	memset(ip, 0, sizeof(*ip));
	if (ss->ss_family == AF_INET) {
		ip->family = AF_INET;
		memcpy(ip->addr,
		    &((const struct sockaddr_in *)ss)->sin_addr, 4);
	} else if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
		ip->family = AF_INET;
		memcpy(ip->addr, &s6->sin6_addr.s6_addr[12], 4);
	} else {
		ip->family = AF_INET6;
		memcpy(ip->addr, &s6->sin6_addr, 16);
	}
}

static in_port_t
udp_peer_port(const struct sockaddr_storage *ss)
{
	return ntohs(ss->ss_family == AF_INET ?
	    ((const struct sockaddr_in *)ss)->sin_port :
	    ((const struct sockaddr_in6 *)ss)->sin6_port);
}

static const char *
udp_peer_str(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	struct lb_target t;

	udp_peer_ip(ss, &t.ip);
	t.port = udp_peer_port(ss);
	return lb_target_str(&t, buf, len);
}

static socklen_t
udp_target_sockaddr(const struct lb_target *t, struct sockaddr_storage *ss)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (t->ip.family == AF_INET) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(t->port);
		memcpy(&s4->sin_addr, t->ip.addr, 4);
		return sizeof(*s4);
	}
	s6->sin6_family = AF_INET6;
	s6->sin6_port = htons(t->port);
	memcpy(&s6->sin6_addr, t->ip.addr, 16);
	return sizeof(*s6);
}

static long long
udp_idle_ms(const struct udp_port *up)
{
	return up->up_env->conf->udp_timeout_ms;
}

static long long
udp_reply_wait_ms(const struct udp_port *up)
{
	long long idle = udp_idle_ms(up);

	return idle > UDP_RELAY_REPLY_WAIT_MS ? idle : UDP_RELAY_REPLY_WAIT_MS;
}

static long long
udp_assoc_deadline(const struct udp_assoc *ua)
{
	return ua->ua_last_ms + (ua->ua_waiting ?
	    udp_reply_wait_ms(ua->ua_port) : udp_idle_ms(ua->ua_port));
}

static enum udp_assoc_class
udp_assoc_class(const struct udp_assoc *ua)
{
	return (enum udp_assoc_class)((ua->ua_assured ? 2 : 0) +
	    (ua->ua_waiting ? 1 : 0));
}

/* Put ua at the tail (newest) of its port's and the global class lists. */
static void
udp_assoc_link(struct udp_assoc *ua)
{
	enum udp_assoc_class cl = udp_assoc_class(ua);

	TAILQ_INSERT_TAIL(&ua->ua_port->up_lists[cl], ua, ua_port_lru);
	TAILQ_INSERT_TAIL(&udp_all[cl], ua, ua_all_lru);
}

static void
udp_assoc_unlink(struct udp_assoc *ua)
{
	enum udp_assoc_class cl = udp_assoc_class(ua);

	TAILQ_REMOVE(&ua->ua_port->up_lists[cl], ua, ua_port_lru);
	TAILQ_REMOVE(&udp_all[cl], ua, ua_all_lru);
}

/* Make sure the expiry timer fires no later than due_ms. */
static void
udp_port_arm(struct udp_port *up, long long due_ms, long long now_ms)
{
	struct timeval tv;
	long long delay;

	if (up->up_timer_due_ms != 0 && up->up_timer_due_ms <= due_ms)
		return;
	delay = due_ms > now_ms ? due_ms - now_ms : 0;
	tv.tv_sec = delay / 1000;
	tv.tv_usec = (delay % 1000) * 1000;
	evtimer_add(up->up_timer, &tv);
	up->up_timer_due_ms = due_ms;
}

/*
 * Record a datagram on ua (from the client when waiting, else a reply):
 * it becomes the most recently used of its class, in its port's lists and
 * globally.  A client speaking after a reply makes ua assured.  The timer
 * is only re-armed when the deadline moved: a reply to a waiting
 * association may bring its expiry forward; anything else moves it later,
 * and the timer, finding nothing due, re-arms itself.
 */
static void
udp_assoc_touch(struct udp_assoc *ua, bool waiting, long long now_ms)
{
	bool was_waiting = ua->ua_waiting;

	if (was_waiting == waiting && ua->ua_last_ms == now_ms)
		return;
	udp_assoc_unlink(ua);
	if (waiting && !was_waiting)
		ua->ua_assured = true;
	ua->ua_waiting = waiting;
	ua->ua_last_ms = now_ms;
	udp_assoc_link(ua);
	if (was_waiting && !waiting)
		udp_port_arm(ua->ua_port, udp_assoc_deadline(ua), now_ms);
}

static void
udp_assoc_close_fd(struct udp_assoc *ua)
{
	if (ua->ua_ev != NULL)
		event_free(ua->ua_ev);
	ua->ua_ev = NULL;
	if (ua->ua_fd != -1) {
		close(ua->ua_fd);
		/* A TCP listener starved of descriptors may accept again. */
		listener_fd_released();
	}
	ua->ua_fd = -1;
}

/* The one way an association ends; reason is for the log. */
static void
udp_assoc_close(struct udp_assoc *ua, const char *reason)
{
	struct udp_port	*up = ua->ua_port;
	struct pport	*pp = up->up_pp;
	char		 client[64], target[64];

	if (log_verbosity() >= 4)
		log_debug("%s: client %s: association with %s closed: %s",
		    pp->key, udp_peer_str(&ua->ua_peer, client, sizeof(client)),
		    lb_target_str(&ua->ua_target, target, sizeof(target)),
		    reason);
	RB_REMOVE(udp_assoc_tree, &up->up_assocs, ua);
	udp_assoc_unlink(ua);
	up->up_n_assocs--;
	udp_n_assocs_here--;
	PPORT_STAT_SUB(udp_n_assocs, 1);
	PPORT_STAT_SUB(pp->stats.udp_assoc_active, 1);
	udp_assoc_close_fd(ua);
	free(ua);
}

/*
 * Connect ua's socket to ua->ua_target, opening the socket first when it
 * has none or one of the other family.  A connected UDP socket can be
 * connected again to another peer, so a move keeps the descriptor.
 * Returns 0, or -1 with errno.
 */
static int
udp_assoc_connect(struct udp_assoc *ua)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	int			 fd, saved;

	sslen = udp_target_sockaddr(&ua->ua_target, &ss);
	if (ua->ua_fd != -1 && ua->ua_fd_family != ss.ss_family)
		udp_assoc_close_fd(ua);
	if (ua->ua_fd == -1) {
		fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (fd == -1)
			return -1;
		ua->ua_fd = fd;
		ua->ua_fd_family = ss.ss_family;
		ua->ua_ev = event_new(ua->ua_port->up_env->base, fd,
		    EV_READ | EV_PERSIST, udp_assoc_readable, ua);
		if (ua->ua_ev == NULL || event_add(ua->ua_ev, NULL) == -1) {
			udp_assoc_close_fd(ua);
			errno = ENOMEM;
			return -1;
		}
	}
	if (connect(ua->ua_fd, (struct sockaddr *)&ss, sslen) == -1) {
		saved = errno;
		udp_assoc_close_fd(ua);
		errno = saved;
		return -1;
	}
	return 0;
}

/*
 * The association of lists (a port's or the global ones) to evict first,
 * or NULL when there is none: the oldest of the least valuable class, and
 * of the assured, the least recently used whether waiting or not.
 */
static struct udp_assoc *
udp_evict_candidate(struct udp_assoc_list *lists)
{
	struct udp_assoc *idle, *waiting;

	if (!TAILQ_EMPTY(&lists[UDP_CLASS_DONE]))
		return TAILQ_FIRST(&lists[UDP_CLASS_DONE]);
	if (!TAILQ_EMPTY(&lists[UDP_CLASS_PENDING]))
		return TAILQ_FIRST(&lists[UDP_CLASS_PENDING]);
	idle = TAILQ_FIRST(&lists[UDP_CLASS_ASSURED_IDLE]);
	waiting = TAILQ_FIRST(&lists[UDP_CLASS_ASSURED_WAITING]);
	if (idle == NULL)
		return waiting;
	if (waiting == NULL)
		return idle;
	return idle->ua_last_ms <= waiting->ua_last_ms ? idle : waiting;
}

static void
udp_assoc_evict(struct udp_assoc *ua)
{
	PPORT_STAT_ADD(ua->ua_port->up_pp->stats.udp_assoc_evicted, 1);
	udp_assoc_close(ua, "evicted at the association cap");
}

/*
 * A worker's share of a cap (proxy/worker.h): a worker evicts only its own
 * associations (the others' are not its thread's to touch), and the kernel
 * spreads flows evenly over the workers, so each keeps the least valuable
 * of its own share out, as one loop would of the whole.
 */
static size_t
udp_cap_share(uint32_t cap, unsigned n_workers)
{
	return n_workers < 2 ? cap : (cap + n_workers - 1) / n_workers;
}

/* Evict the least valuable until one more association fits. */
static void
udp_port_make_room(struct udp_port *up)
{
	const struct conf	*conf = up->up_env->conf;
	unsigned		 n = up->up_pp->n_lanes;
	struct udp_assoc	*ua;

	while (conf->udp_max_assoc_per_port != 0 && up->up_n_assocs >=
	    udp_cap_share(conf->udp_max_assoc_per_port, n) &&
	    (ua = udp_evict_candidate(up->up_lists)) != NULL)
		udp_assoc_evict(ua);
	while (conf->udp_max_assoc_total != 0 && udp_n_assocs_here >=
	    udp_cap_share(conf->udp_max_assoc_total, n) &&
	    (ua = udp_evict_candidate(udp_all)) != NULL)
		udp_assoc_evict(ua);
}

/* Remember where the client's datagram was addressed, to reply from there. */
static void
udp_assoc_set_source(struct udp_assoc *ua, struct msghdr *in)
{
	struct cmsghdr		*c, *out;
	struct in_pktinfo	 pi4;
	struct in6_pktinfo	 pi6;

	ua->ua_cmsglen = 0;
	if (in == NULL || (in->msg_flags & MSG_CTRUNC) != 0)
		return;
	for (c = CMSG_FIRSTHDR(in); c != NULL;
	    c = CMSG_NXTHDR(in, c)) {
		out = (struct cmsghdr *)ua->ua_cmsg.buf;
		if (c->cmsg_level == IPPROTO_IP &&
		    c->cmsg_type == IP_PKTINFO) {
			memcpy(&pi4, CMSG_DATA(c), sizeof(pi4));
			/* Send from the header's destination, any interface. */
			pi4.ipi_spec_dst = pi4.ipi_addr;
			pi4.ipi_ifindex = 0;
			out->cmsg_level = IPPROTO_IP;
			out->cmsg_type = IP_PKTINFO;
			out->cmsg_len = CMSG_LEN(sizeof(pi4));
			memcpy(CMSG_DATA(out), &pi4, sizeof(pi4));
			ua->ua_cmsglen = CMSG_SPACE(sizeof(pi4));
			return;
		}
		if (c->cmsg_level == IPPROTO_IPV6 &&
		    c->cmsg_type == IPV6_PKTINFO) {
			memcpy(&pi6, CMSG_DATA(c), sizeof(pi6));
			/* A link-local source needs its interface. */
			if (!IN6_IS_ADDR_LINKLOCAL(&pi6.ipi6_addr))
				pi6.ipi6_ifindex = 0;
			out->cmsg_level = IPPROTO_IPV6;
			out->cmsg_type = IPV6_PKTINFO;
			out->cmsg_len = CMSG_LEN(sizeof(pi6));
			memcpy(CMSG_DATA(out), &pi6, sizeof(pi6));
			ua->ua_cmsglen = CMSG_SPACE(sizeof(pi6));
			return;
		}
	}
}

static void
udp_port_log_fd_error(struct udp_port *up, const char *client)
{
	if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
	    errno == ENOMEM) {
		if (log_ratelimit_ok(&up->up_rl_fds, UDP_LOG_INTERVAL_MS))
			log_warn("%s: client %s: no socket for a new "
			    "association, datagram dropped", up->up_pp->key,
			    client);
	} else if (log_ratelimit_ok(&up->up_rl_io, UDP_LOG_INTERVAL_MS))
		log_warn("%s: client %s: cannot open an association, "
		    "datagram dropped", up->up_pp->key, client);
}

/*
 * A new association for the client at peer, to the endpoint the balancer
 * picks.  Returns it, or NULL when the datagram must be dropped (counted
 * here: no endpoint, or no socket).
 */
static struct udp_assoc *
udp_assoc_open(struct udp_port *up, const struct sockaddr_storage *peer,
    socklen_t peerlen, struct msghdr *in, long long now_ms)
{
	struct pport		*pp = up->up_pp;
	struct udp_assoc	*ua;
	struct svc_ip		 client;
	char			 cbuf[64], tbuf[64];
	int			 saved;

	udp_peer_ip(peer, &client);
	if (lb_n_endpoints(pp->lb) == 0) {
		PPORT_STAT_ADD(pp->stats.no_endpoints, 1);
		return NULL;
	}
	udp_port_make_room(up);
	if ((ua = calloc(1, sizeof(*ua))) == NULL) {
		errno = ENOMEM;
		goto fail;
	}
	ua->ua_port = up;
	ua->ua_fd = -1;
	memcpy(&ua->ua_peer, peer, peerlen);
	ua->ua_peerlen = peerlen;
	if (lb_pick(pp->lb, &client, NULL, now_ms, &ua->ua_target) == -1) {
		free(ua);
		PPORT_STAT_ADD(pp->stats.no_endpoints, 1);
		return NULL;
	}
	if (udp_assoc_connect(ua) == -1)
		goto fail;
	udp_assoc_set_source(ua, in);
	ua->ua_waiting = true;
	ua->ua_last_ms = now_ms;
	RB_INSERT(udp_assoc_tree, &up->up_assocs, ua);
	udp_assoc_link(ua);
	up->up_n_assocs++;
	udp_n_assocs_here++;
	PPORT_STAT_ADD(udp_n_assocs, 1);
	PPORT_STAT_ADD(pp->stats.udp_assoc_active, 1);
	PPORT_STAT_ADD(pp->stats.udp_assoc_total, 1);
	PPORT_STAT_ADD(up->up_env->started, 1);
	/* Expires even if its first datagram cannot be sent. */
	udp_port_arm(up, udp_assoc_deadline(ua), now_ms);
	if (log_verbosity() >= 3)
		log_v(3, "%s: client %s: new association with endpoint %s",
		    pp->key, udp_peer_str(peer, cbuf, sizeof(cbuf)),
		    lb_target_str(&ua->ua_target, tbuf, sizeof(tbuf)));
	return ua;

fail:
	saved = errno;
	PPORT_STAT_ADD(pp->stats.udp_dropped, 1);
	udp_peer_str(peer, cbuf, sizeof(cbuf));
	free(ua);
	errno = saved;
	udp_port_log_fd_error(up, cbuf);
	return NULL;
}

/*
 * ua's endpoint refused (ICMP port unreachable, reported as ECONNREFUSED on
 * the connected socket): move to the next endpoint not tried yet, as a TCP
 * retry would.  Returns 0, or -1 when ua was closed (no endpoint left, or
 * no socket).
 */
static int
udp_assoc_refused(struct udp_assoc *ua, long long now_ms)
{
	struct pport		*pp = ua->ua_port->up_pp;
	struct svc_ip		 client;
	struct lb_target	 next;
	char			 cbuf[64], tbuf[64], nbuf[64];

	PPORT_STAT_ADD(pp->stats.connect_failures, 1);
	/* A full set would stop steering; start over from this failure. */
	if (ua->ua_tried.n == LB_MAX_TRIES)
		ua->ua_tried.n = 0;
	lb_tried_add(&ua->ua_tried, &ua->ua_target);
	udp_peer_ip(&ua->ua_peer, &client);
	if (lb_pick(pp->lb, &client, &ua->ua_tried, now_ms, &next) == -1) {
		udp_assoc_close(ua, "endpoint refused, no endpoint left");
		return -1;
	}
	if (log_verbosity() >= 3)
		log_v(3, "%s: client %s: endpoint %s refused, moving to %s",
		    pp->key, udp_peer_str(&ua->ua_peer, cbuf, sizeof(cbuf)),
		    lb_target_str(&ua->ua_target, tbuf, sizeof(tbuf)),
		    lb_target_str(&next, nbuf, sizeof(nbuf)));
	ua->ua_target = next;
	if (udp_assoc_connect(ua) == -1) {
		udp_assoc_close(ua, "cannot connect to the next endpoint");
		return -1;
	}
	return 0;
}

/* Send one client datagram to ua's endpoint; counts what it drops. */
static void
udp_assoc_forward(struct udp_assoc *ua, const void *buf, size_t len,
    long long now_ms)
{
	struct udp_port	*up = ua->ua_port;
	struct pport	*pp = up->up_pp;
	int		 tries;

	for (tries = 0; tries < 2; tries++) {
		if (send(ua->ua_fd, buf, len, 0) == (ssize_t)len) {
			PPORT_STAT_ADD(pp->stats.bytes_in, len);
			udp_assoc_touch(ua, true, now_ms);
			return;
		}
		if (errno == EINTR)
			continue;
		/* An earlier datagram was refused; this one was not sent. */
		if (errno == ECONNREFUSED && tries == 0) {
			if (udp_assoc_refused(ua, now_ms) == -1)
				break;
			continue;
		}
		if (errno != EAGAIN && errno != ENOBUFS &&
		    log_ratelimit_ok(&up->up_rl_io, UDP_LOG_INTERVAL_MS))
			log_warn("%s: sending a datagram to an endpoint",
			    pp->key);
		break;
	}
	PPORT_STAT_ADD(pp->stats.udp_dropped, 1);
}

/* Send n replies prepared in udp_batch->out to ua's client. */
static void
udp_port_send_replies(struct udp_port *up, struct udp_assoc *ua,
    unsigned int n)
{
	struct pport	*pp = up->up_pp;
	struct mmsghdr	*out = udp_batch->out;
	unsigned int	 done = 0, i;
	int		 sent;

	while (done < n) {
		sent = sendmmsg(up->up_fd, out + done, n - done, MSG_DONTWAIT);
		if (sent > 0) {
			for (i = done; i < done + (unsigned int)sent; i++)
				PPORT_STAT_ADD(pp->stats.bytes_out, out[i].msg_len);
			done += (unsigned int)sent;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EINVAL && ua->ua_cmsglen != 0) {
			/* The client's address is gone; let routing pick. */
			ua->ua_cmsglen = 0;
			for (i = done; i < n; i++) {
				out[i].msg_hdr.msg_control = NULL;
				out[i].msg_hdr.msg_controllen = 0;
			}
			continue;
		}
		if (errno == EAGAIN || errno == ENOBUFS) {
			/* UDP does not queue: what does not fit is lost. */
			PPORT_STAT_ADD(pp->stats.udp_dropped, n - done);
			return;
		}
		if (log_ratelimit_ok(&up->up_rl_io, UDP_LOG_INTERVAL_MS))
			log_warn("%s: sending a reply to a client", pp->key);
		PPORT_STAT_ADD(pp->stats.udp_dropped, 1);
		done++;
	}
}

/*
 * Make the batch's receive headers ready for recvmmsg: buffers, names and
 * control messages.  A read changes only the name and control lengths of
 * the headers it filled, so only those are reset; the whole set is built
 * again when the datagram limit changed.  Endpoint sockets are read with
 * the same headers: their names are ignored and they carry no cmsg.
 */
static void
udp_batch_prepare(void)
{
	struct udp_batch	*b = udp_batch;
	struct msghdr		*h;
	unsigned int		 i, n = b->in_used;

	if (b->in_len != udp_max_datagram) {
		b->in_len = udp_max_datagram;
		n = UDP_BATCH;
		for (i = 0; i < UDP_BATCH; i++) {
			h = &b->in[i].msg_hdr;
			memset(h, 0, sizeof(*h));
			b->in_iov[i].iov_base = b->buf + i * UDP_BUF_SIZE;
			b->in_iov[i].iov_len = udp_max_datagram;
			h->msg_iov = &b->in_iov[i];
			h->msg_iovlen = 1;
			h->msg_name = &b->in_peer[i];
			h->msg_control = b->in_cmsg[i].buf;
		}
	}
	for (i = 0; i < n; i++) {
		h = &b->in[i].msg_hdr;
		h->msg_namelen = sizeof(b->in_peer[i]);
		h->msg_controllen = sizeof(b->in_cmsg[i].buf);
	}
	b->in_used = 0;
}

/* Read up to UDP_BATCH datagrams from fd into the batch; as recvmmsg. */
static int
udp_batch_read(int fd)
{
	int n;

	udp_batch_prepare();
	n = recvmmsg(fd, udp_batch->in, UDP_BATCH, MSG_DONTWAIT, NULL);
	/* On an error the kernel may still have filled the first header. */
	udp_batch->in_used = n > 0 ? (unsigned int)n : 1;
	return n;
}

/* Replies from ua's endpoint: relay them to the client. */
static void
udp_assoc_readable(evutil_socket_t fd, short what, void *arg)
{
	struct udp_assoc	*ua = arg;
	struct udp_port		*up = ua->ua_port;
	struct pport		*pp = up->up_pp;
	struct udp_batch	*b = udp_batch;
	struct msghdr		*h;
	unsigned int		 n_out, i, round;
	int			 n;
	long long		 now_ms = clock_mono_ms();

	(void)what;
	for (round = 0; round < UDP_BATCHES_PER_EVENT; round++) {
		n = udp_batch_read(fd);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == ECONNREFUSED)
				(void)udp_assoc_refused(ua, now_ms);
			else if (errno != EAGAIN && log_ratelimit_ok(
			    &up->up_rl_io, UDP_LOG_INTERVAL_MS))
				log_warn("%s: reading from an endpoint",
				    pp->key);
			/* ua may be gone now. */
			return;
		}
		n_out = 0;
		for (i = 0; i < (unsigned int)n; i++) {
			if (b->in[i].msg_hdr.msg_flags & MSG_TRUNC) {
				PPORT_STAT_ADD(pp->stats.udp_dropped, 1);
				continue;
			}
			h = &b->out[n_out].msg_hdr;
			memset(h, 0, sizeof(*h));
			b->out_iov[n_out].iov_base = b->in_iov[i].iov_base;
			b->out_iov[n_out].iov_len = b->in[i].msg_len;
			h->msg_iov = &b->out_iov[n_out];
			h->msg_iovlen = 1;
			h->msg_name = &ua->ua_peer;
			h->msg_namelen = ua->ua_peerlen;
			if (ua->ua_cmsglen != 0) {
				h->msg_control = ua->ua_cmsg.buf;
				h->msg_controllen = ua->ua_cmsglen;
			}
			n_out++;
		}
		if (n_out > 0) {
			udp_port_send_replies(up, ua, n_out);
			/* The endpoint answers: forget earlier refusals. */
			ua->ua_tried.n = 0;
			udp_assoc_touch(ua, false, now_ms);
		}
		if (n < UDP_BATCH)
			return;
	}
}

/*
 * Whether --udp-reject-privileged-sources drops datagrams from peer: its
 * source port is below 1024, where the services of reflection attacks
 * live (DNS, NTP, chargen...).  A reply to such a source could be aimed
 * at another server and loop between the two.
 */
static bool
udp_source_rejected(const struct udp_port *up,
    const struct sockaddr_storage *peer)
{
	return up->up_env->conf->udp_reject_privileged_sources &&
	    udp_peer_port(peer) < 1024;
}

/* One datagram from a client: to its association, opened if need be. */
static void
udp_port_forward(struct udp_port *up, struct mmsghdr *m, long long now_ms)
{
	struct udp_assoc	 key, *ua;
	struct msghdr		*h = &m->msg_hdr;

	if (h->msg_flags & MSG_TRUNC) {
		PPORT_STAT_ADD(up->up_pp->stats.udp_dropped, 1);
		return;
	}
	memset(&key.ua_peer, 0, sizeof(key.ua_peer));
	if (h->msg_namelen <= sizeof(key.ua_peer))
		memcpy(&key.ua_peer, h->msg_name, h->msg_namelen);
	if ((key.ua_peer.ss_family != AF_INET &&
	    key.ua_peer.ss_family != AF_INET6) ||
	    udp_source_rejected(up, &key.ua_peer)) {
		PPORT_STAT_ADD(up->up_pp->stats.udp_dropped, 1);
		return;
	}
	ua = RB_FIND(udp_assoc_tree, &up->up_assocs, &key);
	if (ua == NULL && (ua = udp_assoc_open(up, &key.ua_peer,
	    h->msg_namelen, h, now_ms)) == NULL)
		return;
	udp_assoc_forward(ua, h->msg_iov[0].iov_base, m->msg_len, now_ms);
}

/*
 * Count the datagrams the kernel dropped for a full receive buffer since
 * the last read: with SO_RXQ_OVFL each datagram carries the socket's
 * cumulative drop count as it was when the datagram was queued, so the
 * last one of a batch has the latest.  None means none dropped yet.
 */
static void
udp_port_count_overflows(struct udp_port *up, struct msghdr *h)
{
	struct cmsghdr	*c;
	uint32_t	 drops;

	if ((h->msg_flags & MSG_CTRUNC) != 0)
		return;
	for (c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR(h, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SO_RXQ_OVFL)
			continue;
		memcpy(&drops, CMSG_DATA(c), sizeof(drops));
		/* Unsigned: the kernel's counter may wrap. */
		PPORT_STAT_ADD(up->up_pp->stats.udp_dropped,
		    drops - up->up_rxq_drops);
		up->up_rxq_drops = drops;
		return;
	}
}

/* Datagrams from clients on the service socket. */
static void
udp_port_readable(evutil_socket_t fd, short what, void *arg)
{
	struct udp_port	*up = arg;
	unsigned int	 i, round;
	int		 n;
	long long	 now_ms;

	(void)what;
	for (round = 0; round < UDP_BATCHES_PER_EVENT; round++) {
		n = udp_batch_read(fd);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && log_ratelimit_ok(&up->up_rl_io,
			    UDP_LOG_INTERVAL_MS))
				log_warn("%s: reading from the service socket",
				    up->up_pp->key);
			return;
		}
		now_ms = clock_mono_ms();
		for (i = 0; i < (unsigned int)n; i++)
			udp_port_forward(up, &udp_batch->in[i], now_ms);
		if (n > 0)
			udp_port_count_overflows(up,
			    &udp_batch->in[n - 1].msg_hdr);
		if (n < UDP_BATCH)
			return;
	}
}

/* Expire what is due at the heads of the lists; arm for the next. */
static void
udp_port_timer(evutil_socket_t fd, short what, void *arg)
{
	struct udp_port		*up = arg;
	struct udp_assoc	*ua;
	long long		 now_ms = clock_mono_ms();
	size_t			 i;

	(void)fd;
	(void)what;
	up->up_timer_due_ms = 0;
	for (i = 0; i < UDP_N_CLASSES; i++) {
		while ((ua = TAILQ_FIRST(&up->up_lists[i])) != NULL &&
		    udp_assoc_deadline(ua) <= now_ms)
			udp_assoc_close(ua, ua->ua_waiting ? "no reply" :
			    "idle");
		if (ua != NULL)
			udp_port_arm(up, udp_assoc_deadline(ua), now_ms);
	}
}

static int
udp_batch_take(void)
{
	size_t i;

	for (i = 0; i < UDP_N_CLASSES; i++)
		if (udp_all[i].tqh_last == NULL)
			TAILQ_INIT(&udp_all[i]);
	if (udp_batch == NULL) {
		if ((udp_batch = calloc(1, sizeof(*udp_batch))) == NULL)
			return -1;
		if ((udp_batch->buf = malloc((size_t)UDP_BATCH *
		    UDP_BUF_SIZE)) == NULL) {
			free(udp_batch);
			udp_batch = NULL;
			return -1;
		}
	}
	udp_batch_users++;
	return 0;
}

static void
udp_batch_release(void)
{
	if (--udp_batch_users > 0)
		return;
	free(udp_batch->buf);
	free(udp_batch);
	udp_batch = NULL;
}

/*
 * A burst of clients must not overflow the service socket while the loop
 * serves other sockets: ask for a large receive buffer, beyond rmem_max
 * when privileged (SO_RCVBUFFORCE), and for the kernel's count of what it
 * dropped anyway (SO_RXQ_OVFL, see udp_port_count_overflows).  Both are
 * best effort.
 */
static void
udp_service_socket_tune(int fd)
{
	int one = 1, size = UDP_SERVICE_RCVBUF;

	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size,
	    sizeof(size)) == -1)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size,
		    sizeof(size));
	(void)setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one));
}

/*
 * Serve the UDP socket fd for pp (see udp_relay.h).  The socket is asked
 * for packet info so that replies leave from the address each client used.
 * Returns the port, or NULL with err and fd closed.
 */
struct udp_port *
udp_port_new(struct pport_lane *lane, int fd, char *err, size_t errlen)
{
	struct pport		*pp = lane->pp;
	struct udp_port		*up;
	struct sockaddr_storage	 ss;
	socklen_t		 sslen = sizeof(ss);
	int			 one = 1;
	size_t			 i;

	if ((up = calloc(1, sizeof(*up))) == NULL) {
		snprintf(err, errlen, "out of memory");
		close(fd);
		return NULL;
	}
	up->up_pp = pp;
	up->up_env = lane->env;
	up->up_fd = fd;
	RB_INIT(&up->up_assocs);
	for (i = 0; i < UDP_N_CLASSES; i++)
		TAILQ_INIT(&up->up_lists[i]);
	if (udp_batch_take() == -1) {
		snprintf(err, errlen, "out of memory for UDP buffers");
		free(up);
		close(fd);
		return NULL;
	}
	if (getsockname(fd, (struct sockaddr *)&ss, &sslen) == -1) {
		snprintf(err, errlen, "getsockname: %s", strerror(errno));
		goto fail;
	}
	/* Without packet info replies still work, from routing's choice. */
	if (ss.ss_family == AF_INET)
		(void)setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
	else
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one,
		    sizeof(one));
	udp_service_socket_tune(fd);
	up->up_ev = event_new(up->up_env->base, fd, EV_READ | EV_PERSIST,
	    udp_port_readable, up);
	up->up_timer = evtimer_new(up->up_env->base, udp_port_timer, up);
	if (up->up_ev == NULL || up->up_timer == NULL ||
	    event_add(up->up_ev, NULL) == -1) {
		snprintf(err, errlen, "cannot create events");
		goto fail;
	}
	return up;

fail:
	udp_port_free(up);
	return NULL;
}

/*
 * Whether the balancer could still pick target: present in the port's
 * endpoints and usable by lb_update()'s rule (ready, or when none is ready,
 * serving and terminating).  The endpoints are sorted by svc_endpoint_cmp().
 */
static bool
udp_target_kept(const struct svc_port *port, bool any_ready,
    const struct lb_target *t)
{
	struct endpoint		 key;
	const struct endpoint	*ep;
	size_t			 lo = 0, hi = port->n_endpoints, mid;
	int			 c;

	memset(&key, 0, sizeof(key));
	key.ip = t->ip;
	key.port = t->port;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		ep = &port->endpoints[mid];
		if ((c = svc_endpoint_cmp(ep, &key)) == 0) {
			if (any_ready)
				return svc_endpoint_usable(ep);
			return (ep->flags & (EP_F_SERVING |
			    EP_F_TERMINATING)) == (EP_F_SERVING |
			    EP_F_TERMINATING);
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/*
 * Drop the associations whose endpoint left (see udp_relay.h).  An
 * association to an endpoint that stays keeps its socket and its timers.
 */
void
udp_port_endpoints_changed(struct udp_port *up)
{
	struct pport		*pp = up->up_pp;
	const struct svc_port	*port = pp->port;
	struct udp_assoc	*ua, *next;
	bool			 any_ready = false, drop_all;
	size_t			 i;

	drop_all = pp->removed || port == NULL || lb_n_endpoints(pp->lb) == 0;
	for (i = 0; !drop_all && i < port->n_endpoints; i++)
		if (svc_endpoint_usable(&port->endpoints[i]))
			any_ready = true;
	RB_FOREACH_SAFE(ua, udp_assoc_tree, &up->up_assocs, next)
		if (drop_all || !udp_target_kept(port, any_ready,
		    &ua->ua_target))
			udp_assoc_close(ua, "endpoint left");
}

/*
 * Close every association, the service socket and the timer; copes with
 * a half-built port.  NULL is fine.
 */
void
udp_port_free(struct udp_port *up)
{
	struct udp_assoc *ua;

	if (up == NULL)
		return;
	while ((ua = RB_ROOT(&up->up_assocs)) != NULL)
		udp_assoc_close(ua, "service port closed");
	if (up->up_ev != NULL)
		event_free(up->up_ev);
	if (up->up_timer != NULL)
		event_free(up->up_timer);
	if (up->up_fd != -1) {
		close(up->up_fd);
		listener_fd_released();
	}
	udp_batch_release();
	free(up);
}

/* Associations open now over every UDP service port. */
size_t
udp_relay_associations(void)
{
	return PPORT_STAT_GET(udp_n_assocs);
}

/*
 * Relay at most len bytes per datagram; 0 restores the default.  For
 * tests: lets a datagram smaller than IP's limit provoke truncation.
 */
void
udp_relay_set_max_datagram(size_t len)
{
	if (len == 0 || len > UDP_RELAY_MAX_DATAGRAM)
		len = UDP_RELAY_MAX_DATAGRAM;
	udp_max_datagram = len;
}
