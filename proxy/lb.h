/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Load balancing for one service port: round robin over the usable
 * endpoints in a stable order, ClientIP session affinity with a sliding
 * timeout, and a tried-set so that a retry goes to another endpoint
 * (nginx's tried bitmap).  Pure state, no I/O; time is passed in so that
 * tests control it.
 */
#ifndef KUPROXY_LB_H
#define KUPROXY_LB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/svc.h"

#define LB_MAX_TRIES	4	/* upstream's four dial attempts */

/* An endpoint as a session sees it: an address to connect to. */
struct lb_target {
	struct svc_ip	ip;
	uint16_t	port;
};

/* The endpoints a connection has already tried. */
struct lb_tried {
	struct lb_target	t[LB_MAX_TRIES];
	size_t			n;
};

struct lb;

struct lb	*lb_new(void);
void		 lb_free(struct lb *);

/*
 * Replace the endpoint set with the usable endpoints among eps (ready ones;
 * when none is ready, serving-and-terminating ones) and set the affinity.
 * Affinity entries pointing at endpoints that left are dropped; others stay
 * (upstream's removeStaleAffinity).  The round-robin cursor keeps its place
 * in the new order.  A changed timeout applies at once, to existing entries
 * too.  Returns 0, or -1 on allocation failure (the old set stays).
 */
int		 lb_update(struct lb *, const struct endpoint *eps, size_t n,
		    enum svc_affinity affinity, uint32_t timeout_s);
size_t		 lb_n_endpoints(const struct lb *);

/*
 * Choose an endpoint for a connection from client.  With affinity and an
 * empty tried-set, a live affinity entry wins and is refreshed.  Otherwise
 * the next endpoint in round-robin order that is not in tried (if every one
 * was tried, the next one regardless); with affinity the choice is recorded
 * for the client, so after a failed try the client's affinity moves to the
 * endpoint that answers.  Returns 0 with *out set, or -1 when there is no
 * endpoint.
 */
int		 lb_pick(struct lb *, const struct svc_ip *client,
		    const struct lb_tried *tried, long long now_ms,
		    struct lb_target *out);

/* Drop affinity entries idle for longer than the timeout. */
void		 lb_sweep(struct lb *, long long now_ms);
size_t		 lb_n_affinity(const struct lb *);

void		 lb_tried_add(struct lb_tried *, const struct lb_target *);
bool		 lb_tried_has(const struct lb_tried *,
		    const struct lb_target *);
/* "10.0.0.1:80" or "[fd00::1]:80" */
const char	*lb_target_str(const struct lb_target *, char *, size_t);

#endif
