/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Counters per endpoint of one service port, for the status view and the
 * metrics: connections now and in all, bytes each way, failed connects.
 * An entry is created when a session first picks the endpoint and lives
 * while the endpoint is in the table or a session still uses it.
 */
#ifndef KUPROXY_EPSTATS_H
#define KUPROXY_EPSTATS_H

#include <stdint.h>

#include "base/tree.h"
#include "proxy/lb.h"

struct ep_stats {
	RB_ENTRY(ep_stats)	 entry;
	struct lb_target	 target;
	unsigned		 users;		/* sessions holding it */
	uint64_t		 active;	/* connections or associations */
	uint64_t		 total;
	uint64_t		 bytes_in;	/* client to endpoint */
	uint64_t		 bytes_out;	/* endpoint to client */
	uint64_t		 connect_failures;
};

RB_HEAD(ep_stats_tree, ep_stats);

/* Find or create the entry for t and count one more user; NULL on ENOMEM. */
struct ep_stats	*ep_stats_get(struct ep_stats_tree *, const struct lb_target *t);
/* A user is done with the entry. */
void		 ep_stats_put(struct ep_stats *);
/* The entry for t, or NULL; no user counted. */
struct ep_stats	*ep_stats_find(struct ep_stats_tree *, const struct lb_target *t);
/* Drop unused entries of endpoints that are no longer in port's spec. */
void		 ep_stats_prune(struct ep_stats_tree *, const struct svc_port *port);
/* Visit every entry in address order; fn must not call ep_stats_*. */
void		 ep_stats_foreach(struct ep_stats_tree *,
		    void (*fn)(struct ep_stats *, void *), void *arg);
/* Free every entry (the pport is going away, so no session uses them). */
void		 ep_stats_clear(struct ep_stats_tree *);

#endif
