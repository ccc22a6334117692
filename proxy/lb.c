/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Load balancing for one service port (kube-proxy's roundrobin.go, fixed).
 *
 * This module owns the list of usable endpoints of one service port in the
 * table's sorted order, the round-robin cursor, and the ClientIP affinity
 * map, and the health of each endpoint as dials reported it (lb_report):
 * how long it is passed over, and how many of its dials in a row timed
 * out.  It does no I/O and reads no clock: the caller passes the time, so
 * tests control it.  Connecting, retrying and counting are tcp_relay's.
 *
 * Departures from upstream, on purpose:
 * - upstream shuffled the list and reset the cursor on every change; we keep
 *   the sorted order and carry the cursor over, so a change to one endpoint
 *   does not disturb the rotation of the others;
 * - upstream ignored a custom affinity timeout and changes to it (k/k#107398);
 *   we apply the timeout given with each update, to old entries too;
 * - upstream used only ready endpoints; when none is ready we fall back to
 *   serving-and-terminating ones, as the kernel modes do;
 * - upstream retried a dead endpoint on every connection that round robin
 *   sent there; an endpoint that failed is passed over for a back-off that
 *   doubles while it keeps failing (nginx's fail_timeout), as long as
 *   another endpoint is usable.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/tree.h"
#include "proxy/lb.h"

/* A client's affinity: where it goes and when it last went there. */
struct lb_affinity {
	RB_ENTRY(lb_affinity)	 entry;
	struct svc_ip		 client;
	struct lb_target	 target;
	long long		 last_used_ms;
};

RB_HEAD(lb_affinity_tree, lb_affinity);

/* What dials told us about one endpoint. */
struct lb_health {
	long long	 down_until_ms;	/* passed over before this */
	uint32_t	 backoff_ms;	/* the last back-off; 0 healthy */
	unsigned	 timeouts;	/* dials in a row that timed out */
};

struct lb {
	struct lb_target	*targets;	/* usable, in table order */
	struct lb_health	*health;	/* by index in targets */
	size_t			 n_targets;
	size_t			 next;		/* index of the next RR pick */
	struct lb_target	 last;		/* last RR pick, for updates */
	bool			 have_last;
	enum svc_affinity	 affinity;
	uint32_t		 timeout_s;
	struct lb_affinity_tree	 clients;
	size_t			 n_clients;
	/*
	 * Every worker picks from the same balancer (proxy/worker.h), so
	 * round robin and affinity hold over all of them.  Through a
	 * pointer, so that readers of a const balancer can take it.
	 */
	pthread_mutex_t		*lock;
	pthread_mutex_t		 lock_store;
};

static bool	lb_backing_off_locked(const struct lb *, const struct lb_target *,
		    long long);

static void
lb_lock(const struct lb *lb)
{
	pthread_mutex_lock(lb->lock);
}

static void
lb_unlock(const struct lb *lb)
{
	pthread_mutex_unlock(lb->lock);
}

static int
lb_affinity_cmp(const struct lb_affinity *a, const struct lb_affinity *b)
{
	return svc_ip_cmp(&a->client, &b->client);
}

KU_RB_GENERATE_STATIC(lb_affinity_tree, lb_affinity, entry, lb_affinity_cmp)

static int
lb_target_cmp(const struct lb_target *a, const struct lb_target *b)
{
	int c;

	if ((c = svc_ip_cmp(&a->ip, &b->ip)) != 0)
		return c;
	return a->port < b->port ? -1 : a->port > b->port;
}

static bool
lb_target_eq(const struct lb_target *a, const struct lb_target *b)
{
	return lb_target_cmp(a, b) == 0;
}

/*
 * Create an empty balancer: no endpoints, no affinity.  Returns NULL on
 * allocation failure; the caller frees it with lb_free().
 */
struct lb *
lb_new(void)
{
	struct lb *lb;

	if ((lb = calloc(1, sizeof(*lb))) == NULL)
		return NULL;
	RB_INIT(&lb->clients);
	lb->timeout_s = SVC_AFFINITY_DEFAULT_S;
	lb->lock = &lb->lock_store;
	pthread_mutex_init(lb->lock, NULL);
	return lb;
}

static void
lb_affinity_remove(struct lb *lb, struct lb_affinity *a)
{
	RB_REMOVE(lb_affinity_tree, &lb->clients, a);
	lb->n_clients--;
	free(a);
}

static void
lb_affinity_clear(struct lb *lb)
{
	struct lb_affinity *a, *tmp;

	RB_FOREACH_SAFE(a, lb_affinity_tree, &lb->clients, tmp)
		lb_affinity_remove(lb, a);
}

/* Free the balancer and every affinity entry; NULL is fine. */
void
lb_free(struct lb *lb)
{
	if (lb == NULL)
		return;
	lb_affinity_clear(lb);
	free(lb->targets);
	free(lb->health);
	pthread_mutex_destroy(lb->lock);
	free(lb);
}

static bool
lb_endpoint_fallback(const struct endpoint *ep)
{
	return (ep->flags & (EP_F_SERVING | EP_F_TERMINATING)) ==
	    (EP_F_SERVING | EP_F_TERMINATING);
}

static bool
lb_endpoint_valid(const struct endpoint *ep)
{
	return ep->port != 0 &&
	    (ep->ip.family == AF_INET || ep->ip.family == AF_INET6);
}

/*
 * The index of t, or -1.  The table sorts endpoints with svc_endpoint_cmp(),
 * which orders them as lb_target_cmp() does, so a binary search works and
 * an update with many affinity entries stays cheap.
 */
static ssize_t
lb_find_in(const struct lb_target *targets, size_t n,
    const struct lb_target *t)
{
	size_t lo = 0, hi = n, mid;
	int c;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if ((c = lb_target_cmp(&targets[mid], t)) == 0)
			return (ssize_t)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static ssize_t
lb_find(const struct lb *lb, const struct lb_target *t)
{
	return lb_find_in(lb->targets, lb->n_targets, t);
}

/*
 * Where the rotation continues in the new list: after the last pick if it
 * is still there, else at the first endpoint that sorts after it (the one
 * that would have followed it), else at the start.
 */
static size_t
lb_cursor_after_update(const struct lb *lb)
{
	ssize_t found;
	size_t i;

	if (!lb->have_last || lb->n_targets == 0)
		return 0;
	if ((found = lb_find(lb, &lb->last)) >= 0)
		return ((size_t)found + 1) % lb->n_targets;
	for (i = 0; i < lb->n_targets; i++)
		if (lb_target_cmp(&lb->targets[i], &lb->last) > 0)
			return i;
	return 0;
}

/*
 * Replace the endpoint set with the usable endpoints among eps, which come
 * in the table's sorted order: ready ones, or when none is ready, those
 * both serving and terminating.  Affinity entries for endpoints that left
 * are dropped, the others stay; with affinity off, every entry goes.  The
 * round-robin cursor continues after the last pick.  timeout_s 0 means the
 * default.  Returns 0, or -1 on allocation failure (the old set stays).
 */
static int
lb_update_locked(struct lb *lb, const struct endpoint *eps, size_t n,
    enum svc_affinity affinity, uint32_t timeout_s)
{
	struct lb_target *targets = NULL;
	struct lb_health *health = NULL;
	struct lb_affinity *a, *tmp;
	size_t i, n_ready = 0, n_targets = 0;
	ssize_t old;
	bool fallback;

	for (i = 0; i < n; i++)
		if (lb_endpoint_valid(&eps[i]) && svc_endpoint_usable(&eps[i]))
			n_ready++;
	fallback = n_ready == 0;
	if (n > 0 && ((targets = calloc(n, sizeof(*targets))) == NULL ||
	    (health = calloc(n, sizeof(*health))) == NULL)) {
		free(targets);
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (!lb_endpoint_valid(&eps[i]))
			continue;
		if (fallback ? !lb_endpoint_fallback(&eps[i]) :
		    !svc_endpoint_usable(&eps[i]))
			continue;
		targets[n_targets].ip = eps[i].ip;
		targets[n_targets].port = eps[i].port;
		/* An endpoint that stays keeps what its dials told us. */
		if ((old = lb_find_in(lb->targets, lb->n_targets,
		    &targets[n_targets])) >= 0)
			health[n_targets] = lb->health[old];
		n_targets++;
	}

	free(lb->targets);
	free(lb->health);
	lb->targets = targets;
	lb->health = health;
	lb->n_targets = n_targets;
	lb->next = lb_cursor_after_update(lb);
	lb->affinity = affinity;
	lb->timeout_s = timeout_s != 0 ? timeout_s : SVC_AFFINITY_DEFAULT_S;

	if (affinity == SVC_AFFINITY_NONE) {
		lb_affinity_clear(lb);
		return 0;
	}
	RB_FOREACH_SAFE(a, lb_affinity_tree, &lb->clients, tmp)
		if (lb_find(lb, &a->target) < 0)
			lb_affinity_remove(lb, a);
	return 0;
}

/* The number of endpoints lb_pick() chooses from. */
static size_t
lb_n_endpoints_locked(const struct lb *lb)
{
	return lb->n_targets;
}

static bool
lb_affinity_live(const struct lb *lb, const struct lb_affinity *a,
    long long now_ms)
{
	return now_ms - a->last_used_ms < (long long)lb->timeout_s * 1000;
}

/* Remember (or move) client's affinity; without memory, just forget it. */
static void
lb_affinity_record(struct lb *lb, const struct svc_ip *client,
    const struct lb_target *t, long long now_ms)
{
	struct lb_affinity key, *a;

	memset(&key, 0, sizeof(key));
	key.client = *client;
	if ((a = RB_FIND(lb_affinity_tree, &lb->clients, &key)) == NULL) {
		if ((a = calloc(1, sizeof(*a))) == NULL)
			return;
		a->client = *client;
		RB_INSERT(lb_affinity_tree, &lb->clients, a);
		lb->n_clients++;
	}
	a->target = *t;
	a->last_used_ms = now_ms;
}

static bool
lb_index_down(const struct lb *lb, size_t i, long long now_ms)
{
	return lb->health[i].backoff_ms != 0 &&
	    now_ms < lb->health[i].down_until_ms;
}

/*
 * The next endpoint in rotation, preferring one neither tried nor backing
 * off, then one not tried, then the next.  With every endpoint healthy and
 * nothing tried (the usual case) this is the cursor, at no cost.
 */
static size_t
lb_next_usable(const struct lb *lb, const struct lb_tried *tried,
    long long now_ms)
{
	size_t k, i, untried = lb->n_targets;
	bool was_tried;

	for (k = 0; k < lb->n_targets; k++) {
		i = (lb->next + k) % lb->n_targets;
		was_tried = tried != NULL && lb_tried_has(tried,
		    &lb->targets[i]);
		if (was_tried)
			continue;
		if (!lb_index_down(lb, i, now_ms))
			return i;
		if (untried == lb->n_targets)
			untried = i;
	}
	return untried != lb->n_targets ? untried : lb->next;
}

/*
 * Choose an endpoint for a connection from client (which may be NULL when
 * the peer address is unknown; affinity is then not used).  With affinity
 * and no endpoint tried yet, a live entry wins and its window slides,
 * unless its endpoint is backing off.  Otherwise the next endpoint in
 * rotation neither tried nor backing off, else the next one not tried,
 * else the next one; with affinity, the choice is recorded, so after a
 * failed try the client moves to the endpoint that answers (upstream's
 * sessionAffinityReset).  Returns 0 with *out set, or -1 with no endpoint.
 */
static int
lb_pick_locked(struct lb *lb, const struct svc_ip *client,
    const struct lb_tried *tried, long long now_ms, struct lb_target *out)
{
	struct lb_affinity key, *a;
	bool sticky;
	size_t i;

	if (lb->n_targets == 0)
		return -1;
	sticky = lb->affinity == SVC_AFFINITY_CLIENT_IP && client != NULL &&
	    client->family != 0;

	if (sticky && (tried == NULL || tried->n == 0)) {
		memset(&key, 0, sizeof(key));
		key.client = *client;
		a = RB_FIND(lb_affinity_tree, &lb->clients, &key);
		if (a != NULL && lb_affinity_live(lb, a, now_ms) &&
		    !lb_backing_off_locked(lb, &a->target, now_ms)) {
			a->last_used_ms = now_ms;
			*out = a->target;
			return 0;
		}
	}

	i = lb_next_usable(lb, tried, now_ms);
	*out = lb->targets[i];
	lb->last = lb->targets[i];
	lb->have_last = true;
	lb->next = (i + 1) % lb->n_targets;
	if (sticky)
		lb_affinity_record(lb, client, out, now_ms);
	return 0;
}

/*
 * Record how a dial to t ended: a failure starts or doubles t's back-off and
 * a timeout also counts towards longer dial steps; a connection makes t
 * healthy again.  Endpoints not in the set are ignored.
 */
static void
lb_report_locked(struct lb *lb, const struct lb_target *t,
    enum lb_result result, long long now_ms)
{
	struct lb_health *h;
	ssize_t i;

	if ((i = lb_find(lb, t)) < 0)
		return;
	h = &lb->health[i];
	if (result == LB_CONNECTED) {
		memset(h, 0, sizeof(*h));
		return;
	}
	if (result == LB_TIMED_OUT)
		h->timeouts++;
	if (h->backoff_ms == 0)
		h->backoff_ms = LB_BACKOFF_MS;
	else if (h->backoff_ms < LB_BACKOFF_MAX_MS / 2)
		h->backoff_ms *= 2;
	else
		h->backoff_ms = LB_BACKOFF_MAX_MS;
	h->down_until_ms = now_ms + h->backoff_ms;
}

/* Dials to t in a row that timed out; 0 for an endpoint not in the set. */
static unsigned
lb_n_timeouts_locked(const struct lb *lb, const struct lb_target *t)
{
	ssize_t i;

	if ((i = lb_find(lb, t)) < 0)
		return 0;
	return lb->health[i].timeouts;
}

/* Whether t failed lately and is passed over until its back-off ends. */
static bool
lb_backing_off_locked(const struct lb *lb, const struct lb_target *t,
    long long now_ms)
{
	ssize_t i;

	if ((i = lb_find(lb, t)) < 0)
		return false;
	return lb_index_down(lb, (size_t)i, now_ms);
}

/*
 * Drop affinity entries idle for the timeout or longer (upstream's
 * CleanupStaleStickySessions); the proxier calls this on each sync.
 */
static void
lb_sweep_locked(struct lb *lb, long long now_ms)
{
	struct lb_affinity *a, *tmp;

	RB_FOREACH_SAFE(a, lb_affinity_tree, &lb->clients, tmp)
		if (!lb_affinity_live(lb, a, now_ms))
			lb_affinity_remove(lb, a);
}

/* The number of clients with an affinity entry (live or not yet swept). */
static size_t
lb_n_affinity_locked(const struct lb *lb)
{
	return lb->n_clients;
}

/* Add t to the tried-set; beyond LB_MAX_TRIES entries it is not recorded. */
void
lb_tried_add(struct lb_tried *tried, const struct lb_target *t)
{
	if (tried->n < LB_MAX_TRIES)
		tried->t[tried->n++] = *t;
}

/* Whether t is in the tried-set. */
bool
lb_tried_has(const struct lb_tried *tried, const struct lb_target *t)
{
	size_t i;

	for (i = 0; i < tried->n; i++)
		if (lb_target_eq(&tried->t[i], t))
			return true;
	return false;
}

/*
 * Format t as "10.0.0.1:80" or "[fd00::1]:80" into buf; returns buf.
 */
const char *
lb_target_str(const struct lb_target *t, char *buf, size_t len)
{
	char ip[SVC_IPSTRLEN];

	svc_ip_str(&t->ip, ip, sizeof(ip));
	if (t->ip.family == AF_INET6)
		snprintf(buf, len, "[%s]:%u", ip, t->port);
	else
		snprintf(buf, len, "%s:%u", ip, t->port);
	return buf;
}

/* See lb.h; under the balancer's lock. */
int
lb_update(struct lb *lb, const struct endpoint *eps, size_t n,
    enum svc_affinity affinity, uint32_t timeout_s)
{
	int	 ret;

	lb_lock(lb);
	ret = lb_update_locked(lb, eps, n, affinity, timeout_s);
	lb_unlock(lb);
	return ret;
}

/* See lb.h; under the balancer's lock. */
size_t
lb_n_endpoints(const struct lb *lb)
{
	size_t	 ret;

	lb_lock(lb);
	ret = lb_n_endpoints_locked(lb);
	lb_unlock(lb);
	return ret;
}

/* See lb.h; under the balancer's lock. */
int
lb_pick(struct lb *lb, const struct svc_ip *client,
    const struct lb_tried *tried, long long now_ms, struct lb_target *out)
{
	int	 ret;

	lb_lock(lb);
	ret = lb_pick_locked(lb, client, tried, now_ms, out);
	lb_unlock(lb);
	return ret;
}

/* See lb.h; under the balancer's lock. */
void
lb_report(struct lb *lb, const struct lb_target *t, enum lb_result result,
    long long now_ms)
{
	lb_lock(lb);
	lb_report_locked(lb, t, result, now_ms);
	lb_unlock(lb);
}

/* See lb.h; under the balancer's lock. */
unsigned
lb_n_timeouts(const struct lb *lb, const struct lb_target *t)
{
	unsigned	 ret;

	lb_lock(lb);
	ret = lb_n_timeouts_locked(lb, t);
	lb_unlock(lb);
	return ret;
}

/* See lb.h; under the balancer's lock. */
bool
lb_backing_off(const struct lb *lb, const struct lb_target *t,
    long long now_ms)
{
	bool	 ret;

	lb_lock(lb);
	ret = lb_backing_off_locked(lb, t, now_ms);
	lb_unlock(lb);
	return ret;
}

/* See lb.h; under the balancer's lock. */
void
lb_sweep(struct lb *lb, long long now_ms)
{
	lb_lock(lb);
	lb_sweep_locked(lb, now_ms);
	lb_unlock(lb);
}

/* See lb.h; under the balancer's lock. */
size_t
lb_n_affinity(const struct lb *lb)
{
	size_t	 ret;

	lb_lock(lb);
	ret = lb_n_affinity_locked(lb);
	lb_unlock(lb);
	return ret;
}

/* See lb.h; under the balancer's lock. */
int
lb_peek_next(const struct lb *lb, long long now_ms, struct lb_target *out)
{
	int	 ret = -1;

	lb_lock(lb);
	if (lb->n_targets > 0) {
		*out = lb->targets[lb_next_usable(lb, NULL, now_ms)];
		ret = 0;
	}
	lb_unlock(lb);
	return ret;
}

/* See lb.h; under the balancer's lock. */
bool
lb_uses(const struct lb *lb, const struct lb_target *t)
{
	bool	 ret;

	lb_lock(lb);
	ret = lb_find(lb, t) >= 0;
	lb_unlock(lb);
	return ret;
}

/* See lb.h; under the balancer's lock. */
size_t
lb_sticky_clients(struct lb *lb, long long now_ms,
    struct lb_sticky *out, size_t max)
{
	struct lb_affinity	*a;
	size_t			 n = 0;

	lb_lock(lb);
	RB_FOREACH(a, lb_affinity_tree, &lb->clients) {
		if (!lb_affinity_live(lb, a, now_ms))
			continue;
		if (n < max) {
			out[n].client = a->client;
			out[n].target = a->target;
			out[n].idle_ms = now_ms - a->last_used_ms;
		}
		n++;
	}
	lb_unlock(lb);
	return n;
}
