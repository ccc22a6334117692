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

/* What every session of every service port shares. */
struct relay_env {
	struct event_base	*base;
	const struct conf	*conf;
	struct pipe_pool	*pipes;		/* NULL in copy mode */
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

struct pport {
	int			 refcnt;
	char			 key[SVC_KEYLEN];	/* ns/name:port/TCP */
	char			 display[SVC_KEYLEN];	/* ns/name:port */
	enum svc_proto		 proto;
	struct svc		*svc;		/* current spec (a reference) */
	const struct svc_port	*port;		/* inside svc */
	struct lb		*lb;
	struct listener		*listener;	/* TCP; NULL once removed */
	struct udp_port		*udp;		/* UDP; NULL once removed */
	uint16_t		 proxy_port;
	bool			 removed;	/* gone from the table */
	struct pport_stats	 stats;
	struct ep_stats_tree	 endpoints;	/* per-endpoint counters */
	struct relay_env	*env;
};

struct pport	*pport_ref(struct pport *);
/* Drop a reference; the last one frees the balancer and the svc reference. */
void		 pport_unref(struct pport *);

#endif
