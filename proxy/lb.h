/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Load balancing for one service port: round robin over the usable
 * endpoints in a stable order, least connections or Maglev hashing of
 * the client IP (lb_set_balancer), ClientIP session affinity with a sliding
 * timeout, a tried-set so that a retry goes to another endpoint (nginx's
 * tried bitmap), and a passive health check: an endpoint that just refused
 * or timed out is passed over for a short back-off (nginx's max_fails /
 * fail_timeout, HAProxy's observe layer4) while another one is usable.
 * Pure state, no I/O; time is passed in so that tests control it.
 */
#ifndef KUPROXY_LB_H
#define KUPROXY_LB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/svc.h"

#define LB_MAX_TRIES	4	/* upstream's four dial attempts */
#define LB_BACKOFF_MS	2000	/* first back-off after a failure */
#define LB_BACKOFF_MAX_MS 30000	/* doubling stops here */

/* How a dial to an endpoint ended, for the passive health check. */
enum lb_result {
	LB_CONNECTED = 0,
	LB_REFUSED,		/* or any error the endpoint answered with */
	LB_TIMED_OUT,		/* no answer: a black hole */
};

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
 * Choose the algorithm (SVC_BALANCER_DEFAULT means round robin: the caller
 * resolves --balancer).  Changing it keeps endpoints, health, session
 * counts and affinity.  Returns 0, or -1 when the Maglev table could not
 * be allocated (picks then go round robin until the next lb_update()).
 */
int		 lb_set_balancer(struct lb *, enum svc_balancer);
/* The algorithm in use; never SVC_BALANCER_DEFAULT. */
enum svc_balancer lb_balancer(const struct lb *);

/*
 * Choose an endpoint for a connection from client.  With affinity and an
 * empty tried-set, a live affinity entry wins and is refreshed, unless its
 * endpoint is backing off after a failure.  Otherwise the algorithm's
 * choice among endpoints neither in tried nor backing off: round robin's
 * next; least connections' one with the fewest sessions (the next in
 * round-robin order among equals); Maglev's table entry for the client's
 * address, or the first entry after it that qualifies (round robin without
 * a client address).  When none qualifies, the next one not in tried; if
 * every one was tried, the next one regardless.  With
 * affinity the choice is recorded for the client, so after a failed try the
 * client's affinity moves to the endpoint that answers.  Returns 0 with
 * *out set, or -1 when there is no endpoint.
 */
int		 lb_pick(struct lb *, const struct svc_ip *client,
		    const struct lb_tried *tried, long long now_ms,
		    struct lb_target *out);

/*
 * Report how a dial to t ended at now_ms.  A failure puts t in back-off
 * (LB_BACKOFF_MS, doubling on each further failure up to LB_BACKOFF_MAX_MS);
 * a connection clears its back-off and its timeout count.  An endpoint not
 * in the set is ignored.  The state survives lb_update() for endpoints that
 * stay.  A connection also counts as a session to t until lb_release().
 */
void		 lb_report(struct lb *, const struct lb_target *t,
		    enum lb_result, long long now_ms);
/*
 * A session that lb_report() counted as connected to t ended (least
 * connections counts them).  An endpoint not in the set is ignored.
 */
void		 lb_release(struct lb *, const struct lb_target *t);
/* Sessions to t connected and not yet released (0 for an unknown one). */
unsigned	 lb_n_active(const struct lb *, const struct lb_target *t);
/*
 * How many dials to t in a row timed out (0 for an unknown endpoint): the
 * caller's dial timeout may grow with it, so that an endpoint that never
 * timed out gets the first step whatever attempt it comes in.
 */
unsigned	 lb_n_timeouts(const struct lb *, const struct lb_target *t);
/* Whether t is backing off after a failure at now_ms. */
bool		 lb_backing_off(const struct lb *, const struct lb_target *t,
		    long long now_ms);

/* Drop affinity entries idle for longer than the timeout. */
void		 lb_sweep(struct lb *, long long now_ms);
size_t		 lb_n_affinity(const struct lb *);

/*
 * Read-only views, for explaining a balancer (kuproxy explain); none of
 * them moves the cursor or refreshes an affinity entry.
 *
 * lb_peek_next: the endpoint the next client without a live affinity entry
 * would get at now_ms (round robin or least connections, passing over
 * endpoints backing off; with Maglev, which depends on the client, the
 * round-robin one).
 * Returns 0 with *out set, or -1 when there is no endpoint.
 */
int		 lb_peek_next(const struct lb *, long long now_ms,
		    struct lb_target *out);
/* Whether t is one of the endpoints lb_pick() chooses from. */
bool		 lb_uses(const struct lb *, const struct lb_target *t);

/* A client's affinity, as lb_sticky_clients() reports it. */
struct lb_sticky {
	struct svc_ip		client;
	struct lb_target	target;
	long long		idle_ms;	/* since its last connection */
};

/*
 * Copy up to max live affinity entries (idle for less than the timeout at
 * now_ms), in client address order, into out.  Returns how many entries
 * are live, which may be more than max.  Changes nothing (the tree walk
 * wants a mutable head).
 */
size_t		 lb_sticky_clients(struct lb *, long long now_ms,
		    struct lb_sticky *out, size_t max);

void		 lb_tried_add(struct lb_tried *, const struct lb_target *);
bool		 lb_tried_has(const struct lb_tried *,
		    const struct lb_target *);
/* "10.0.0.1:80" or "[fd00::1]:80" */
const char	*lb_target_str(const struct lb_target *, char *, size_t);

#endif
