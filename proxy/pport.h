/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The runtime state of one proxied service port ("pport"): its listener and
 * proxy port, its balancer and its counters.  The table snapshot says what
 * the port should be; this says what it is doing.  Owned by the proxier and
 * reference counted: every session holds a reference, so a removed service
 * port lives on (unlistened) until its last session closes.
 */
#ifndef KUPROXY_PPORT_H
#define KUPROXY_PPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "conf/conf.h"
#include "base/svc.h"
#include "proxy/epstats.h"
#include "proxy/lb.h"

struct event_base;
struct listener;
struct pipe_pool;
struct udp_port;

/* What every session of one worker's service ports shares. */
struct relay_env {
	struct event_base	*base;
	const struct conf	*conf;
	struct pipe_pool	*pipes;		/* NULL in copy mode */
	/* TCP sessions and UDP associations started here (PPORT_STAT_*). */
	uint64_t		 started;
};

struct pport_stats {
	uint64_t	conns_active;
	uint64_t	conns_total;
	uint64_t	bytes_in;		/* client to backend */
	uint64_t	bytes_out;		/* backend to client */
	uint64_t	connect_failures;
	uint64_t	no_endpoints;		/* clients refused: no endpoint */
	uint64_t	udp_assoc_active;	/* UDP associations now */
	uint64_t	udp_assoc_total;
	uint64_t	udp_assoc_evicted;	/* dropped at the cap */
	uint64_t	udp_dropped;		/* datagrams not relayed */
};

/*
 * One worker's share of a service port: its socket on that worker's loop
 * (see proxy/worker.h).  Only that worker touches it.
 */
struct pport_lane {
	struct pport		*pp;
	struct relay_env	*env;		/* the worker's */
	struct listener		*listener;	/* TCP; NULL once closed */
	struct udp_port		*udp;		/* UDP; NULL once closed */
	int			 pending_fd;	/* to serve at lanes_flush() */
};

/*
 * Counters every worker of the port adds to: relaxed atomics, since a
 * reader only wants each value whole, never two values consistent.
 */
#define PPORT_STAT_ADD(var, n)	__atomic_fetch_add(&(var), (n), __ATOMIC_RELAXED)
#define PPORT_STAT_SUB(var, n)	__atomic_fetch_sub(&(var), (n), __ATOMIC_RELAXED)
#define PPORT_STAT_GET(var)	__atomic_load_n(&(var), __ATOMIC_RELAXED)

/*
 * Workers share a pport: its balancer locks (lb.c), its counters are
 * atomic, its endpoint counters lock (epstats.c), its reference count is
 * atomic.  svc, port and removed change on the control loop only, while
 * no worker runs anything that reads them (worker_run()).
 */
struct pport {
	int			 refcnt;
	char			 key[SVC_KEYLEN];	/* ns/name:port/TCP */
	char			 display[SVC_KEYLEN];	/* ns/name:port */
	enum svc_proto		 proto;
	struct svc		*svc;		/* current spec (a reference) */
	const struct svc_port	*port;		/* inside svc */
	struct lb		*lb;
	struct pport_lane	*lanes;		/* one per worker (lanes.h) */
	unsigned		 n_lanes;
	bool			 lanes_queued;	/* lanes.c's, control loop */
	uint16_t		 proxy_port;
	/*
	 * svc->proxy_protocol_version, copied for the workers, which must
	 * not read svc (PPORT_STAT_GET; an enum svc_proxy_protocol).
	 */
	int			 proxy_protocol;
	bool			 removed;	/* gone from the table */
	struct pport_stats	 stats;
	struct ep_stats_tree	 endpoints;	/* per-endpoint counters */
};

struct pport	*pport_ref(struct pport *);
/* Drop a reference; the last one frees the balancer and the svc reference. */
void		 pport_unref(struct pport *);

#endif
