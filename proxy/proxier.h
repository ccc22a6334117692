/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The proxier applies each new service table: it diffs it against the
 * current one, opens and closes listeners, updates balancers, and (through
 * portal.c) rewrites the iptables rules, in a safe order: a listener opens
 * before a rule points at it, and a rule goes before its listener closes.
 */
#ifndef KUPROXY_PROXIER_H
#define KUPROXY_PROXIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/metrics.h"

struct conf;
struct event_base;
struct svctab;
struct pport;

struct proxier;

/* Returns NULL with err on failure (e.g. no usable iptables backend). */
struct proxier	*proxier_new(struct event_base *, const struct conf *,
		    char *err, size_t errlen);
/* Apply a new table; takes over the caller's reference. */
void		 proxier_apply(struct proxier *, struct svctab *);
/* The table in force, or NULL before the first one (no reference taken). */
const struct svctab *proxier_table(const struct proxier *);
/* The portal settings the rules are rendered with, probes included. */
const struct portal_env *proxier_portal_env(const struct proxier *);
/*
 * What the rules of the live service port key are rendered from: its spec
 * less what another program holds (a node port, a local IP's port), as
 * the next sync writes it.  *out points into svc_copy and port_copy; free
 * svc_copy->external_ips and ->ingress_ips.  0, or -1 when key is not
 * live.
 */
struct svc;
struct svc_port;
struct portal_port;
int		 proxier_port_spec(struct proxier *, const char *key,
		    struct svc *svc_copy, struct svc_port *port_copy,
		    struct portal_port *out);
/* Visit every live service port, in key order. */
void		 proxier_foreach(struct proxier *,
		    void (*fn)(struct pport *, void *), void *arg);
/*
 * What health checks and metrics need (kube-proxy's names in comments).
 * Times are wall-clock seconds for display, 0 when never.
 */
struct proxier_state {
	double			 last_sync_time;	/* ..._last_timestamp_seconds */
	double			 last_queued_time;	/* ..._last_queued_timestamp_seconds */
	long long		 queued_age_ms;		/* oldest unapplied change; 0: none */
	uint64_t		 service_changes_total;
	uint64_t		 endpoint_changes_total;
	uint64_t		 service_changes_pending;
	uint64_t		 restore_failures_total;
	bool			 synced;		/* a table was applied and synced */
	const char		*backend;		/* "legacy", "nft", "none" */
	const struct histogram	*sync_duration;		/* seconds */
	const struct histogram	*programming_duration;	/* seconds */
};
void		 proxier_get_state(const struct proxier *, struct proxier_state *);

/* Rewrite the rules at the next chance (the configuration changed). */
void		 proxier_resync(struct proxier *);

/* Stop accepting and remove rules (shutdown); sessions go on. */
void		 proxier_stop(struct proxier *);
void		 proxier_free(struct proxier *);

#endif
