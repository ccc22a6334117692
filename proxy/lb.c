/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Load balancing for one service port (kube-proxy's roundrobin.go, fixed,
 * plus least connections and Maglev hashing).
 *
 * This module owns the list of usable endpoints of one service port in the
 * table's sorted order, the round-robin cursor, the ClientIP affinity map,
 * the Maglev lookup table, and the health of each endpoint as dials
 * reported it (lb_report): how long it is passed over, how many of its
 * dials in a row timed out, and how many sessions it holds (connected and
 * not yet released with lb_release).  It does no I/O and reads no clock: the caller passes the time, so
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
 *   another endpoint is usable;
 * - upstream's userspace mode knew no IPv6; with endpoints of both families
 *   (a dual-stack service), a client goes to an endpoint of its own family,
 *   the family of the cluster IP it dialled, as the kernel modes do, and
 *   each family keeps its own round-robin cursor.
 *
 * Maglev (Eisenbud et al., NSDI 2016): each endpoint fills the slots of a
 * table of prime size M in the order of its own permutation (offset and
 * skip from two hashes of its address), taking turns, so that every
 * endpoint holds M/N slots (give or take one) and removing one endpoint
 * hands over mostly its own slots.  A client goes to table[hash(IP) % M].
 * M is the smallest of a few primes that is at least 100 times the number
 * of endpoints (251 up to two endpoints, 65537 from 410 on), which keeps
 * the table small for small services and the imbalance near 1 %.
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

#define LB_MAGLEV_SLOTS_PER_ENDPOINT	100

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
	unsigned	 active;	/* sessions connected, not released */
};

struct lb {
	struct lb_target	*targets;	/* usable, in table order */
	struct lb_health	*health;	/* by index in targets */
	size_t			 n_targets;
	size_t			 next;		/* index of the next RR pick */
	struct lb_target	 last;		/* last RR pick, for updates */
	bool			 have_last;
	/*
	 * IPv4 targets sort first.  With both families, next and last are
	 * the IPv4 rotation's and these the IPv6 one's.
	 */
	size_t			 n_v4;
	size_t			 next_v6;
	struct lb_target	 last_v6;
	bool			 have_last_v6;
	enum svc_affinity	 affinity;
	uint32_t		 timeout_s;
	enum svc_balancer	 balancer;	/* never DEFAULT */
	uint32_t		*maglev;	/* indexes in targets, or NULL */
	size_t			 maglev_size;	/* a prime, 0 without table */
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
	lb->balancer = SVC_BALANCER_ROUND_ROBIN;
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
	free(lb->maglev);
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
lb_cursor_after_update(const struct lb *lb, const struct lb_target *last,
    bool have_last)
{
	ssize_t found;
	size_t i;

	if (!have_last || lb->n_targets == 0)
		return 0;
	if ((found = lb_find(lb, last)) >= 0)
		return ((size_t)found + 1) % lb->n_targets;
	for (i = 0; i < lb->n_targets; i++)
		if (lb_target_cmp(&lb->targets[i], last) > 0)
			return i;
	return 0;
}

/* A 64-bit hash of n bytes (FNV-1a, then a finaliser to spread the bits). */
static uint64_t
lb_hash(const void *p, size_t n, uint64_t seed)
{
	const uint8_t	*b = p;
	uint64_t	 h = 0xcbf29ce484222325ULL ^ seed;
	size_t		 i;

	for (i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

static uint64_t
lb_target_hash(const struct lb_target *t, uint64_t seed)
{
	uint8_t	 key[18];

	memcpy(key, t->ip.addr, 16);
	key[16] = t->port >> 8;
	key[17] = t->port & 0xff;
	return lb_hash(key, t->ip.family == AF_INET6 ? 18 : sizeof(key),
	    seed ^ t->ip.family);
}

/* The Maglev table size for n endpoints: a prime about 100 n or more. */
static size_t
lb_maglev_size(size_t n)
{
	static const size_t primes[] = { 251, 509, 1021, 2039, 4099, 8191,
	    16381, 32749, 65537 };
	size_t i;

	for (i = 0; i < sizeof(primes) / sizeof(primes[0]) - 1; i++)
		if (primes[i] >= n * LB_MAGLEV_SLOTS_PER_ENDPOINT)
			break;
	return primes[i];
}

/*
 * Build the Maglev table for the current targets (the paper's
 * populate): endpoints take turns, each claiming the next free slot in
 * its permutation offset, offset + skip, offset + 2 skip ... (mod M).
 * When endpoints only left (kept, of the same size, maps each slot to its
 * endpoint's new index or UINT32_MAX), the slots of those that stay are
 * kept and only the freed ones are handed out: no client of a remaining
 * endpoint moves.  Without Maglev, or without endpoints, there is no
 * table.  Returns 0, or -1 on allocation failure (the table is then gone:
 * picks fall back to round robin).
 */
static int
lb_maglev_build(struct lb *lb, const uint32_t *kept, size_t kept_size)
{
	uint32_t	*table = NULL;
	size_t		*offset = NULL, *skip = NULL, *next = NULL;
	size_t		 m, i, filled = 0, slot;
	int		 ret = -1;

	free(lb->maglev);
	lb->maglev = NULL;
	lb->maglev_size = 0;
	if (lb->balancer != SVC_BALANCER_MAGLEV || lb->n_targets == 0)
		return 0;
	/* A table only shrinks in a full build: removals keep its size. */
	m = kept != NULL ? kept_size : lb_maglev_size(lb->n_targets);
	if ((table = malloc(m * sizeof(*table))) == NULL ||
	    (offset = calloc(lb->n_targets, sizeof(*offset))) == NULL ||
	    (skip = calloc(lb->n_targets, sizeof(*skip))) == NULL ||
	    (next = calloc(lb->n_targets, sizeof(*next))) == NULL)
		goto out;
	for (i = 0; i < lb->n_targets; i++) {
		offset[i] = lb_target_hash(&lb->targets[i], 0x6d61676c) % m;
		skip[i] = lb_target_hash(&lb->targets[i], 0x736b6970) %
		    (m - 1) + 1;
	}
	for (slot = 0; slot < m; slot++) {
		table[slot] = kept != NULL ? kept[slot] : UINT32_MAX;
		if (table[slot] != UINT32_MAX)
			filled++;
	}
	while (filled < m) {
		for (i = 0; i < lb->n_targets && filled < m; i++) {
			do {
				slot = (offset[i] + next[i] * skip[i]) % m;
				next[i]++;
			} while (table[slot] != UINT32_MAX);
			table[slot] = (uint32_t)i;
			filled++;
		}
	}
	lb->maglev = table;
	lb->maglev_size = m;
	table = NULL;
	ret = 0;
out:
	free(table);
	free(offset);
	free(skip);
	free(next);
	return ret;
}

/*
 * The current Maglev table renumbered for the new targets, when the
 * change only removes endpoints (the table keeps its size, larger than
 * fewer endpoints need); else NULL (a full build: Maglev's own
 * disruption, a little more than minimal).  Freed slots are UINT32_MAX.
 */
static uint32_t *
lb_maglev_kept(const struct lb *lb, const struct lb_target *targets,
    size_t n_targets)
{
	uint32_t	*kept;
	ssize_t		 j;
	size_t		 i;

	if (lb->maglev == NULL || n_targets == 0)
		return NULL;
	for (i = 0; i < n_targets; i++)
		if (lb_find(lb, &targets[i]) < 0)
			return NULL;	/* an endpoint joined */
	if ((kept = malloc(lb->maglev_size * sizeof(*kept))) == NULL)
		return NULL;
	for (i = 0; i < lb->maglev_size; i++) {
		j = lb_find_in(targets, n_targets,
		    &lb->targets[lb->maglev[i]]);
		kept[i] = j >= 0 ? (uint32_t)j : UINT32_MAX;
	}
	return kept;
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
	uint32_t *kept;
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

	kept = lb_maglev_kept(lb, targets, n_targets);
	free(lb->targets);
	free(lb->health);
	lb->targets = targets;
	lb->health = health;
	lb->n_targets = n_targets;
	for (lb->n_v4 = 0; lb->n_v4 < n_targets &&
	    targets[lb->n_v4].ip.family == AF_INET; lb->n_v4++)
		;
	lb->next = lb_cursor_after_update(lb, &lb->last, lb->have_last);
	lb->next_v6 = lb_cursor_after_update(lb, &lb->last_v6,
	    lb->have_last_v6);
	lb->affinity = affinity;
	lb->timeout_s = timeout_s != 0 ? timeout_s : SVC_AFFINITY_DEFAULT_S;
	(void)lb_maglev_build(lb, kept, lb->maglev_size);
	free(kept);

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
 * The family a client's endpoint must have: its own when the set holds
 * endpoints of both families, else 0 (any).  A client of the other family
 * than every endpoint still gets one: a proxy can cross families.
 */
static sa_family_t
lb_family_wanted(const struct lb *lb, const struct svc_ip *client)
{
	if (client == NULL || lb->n_v4 == 0 || lb->n_v4 == lb->n_targets)
		return 0;
	return client->family == AF_INET || client->family == AF_INET6 ?
	    client->family : 0;
}

static bool
lb_index_of_family(const struct lb *lb, size_t i, sa_family_t want)
{
	return want == 0 || lb->targets[i].ip.family == want;
}

/* Where want's rotation goes on. */
static size_t
lb_cursor(const struct lb *lb, sa_family_t want)
{
	return want == AF_INET6 ? lb->next_v6 : lb->next;
}

/*
 * The next endpoint of family want in rotation, preferring one neither
 * tried nor backing off, then one not tried, then the next.  With every
 * endpoint healthy and nothing tried (the usual case) this is the cursor,
 * at no cost.
 */
static size_t
lb_next_usable(const struct lb *lb, const struct lb_tried *tried,
    sa_family_t want, long long now_ms)
{
	size_t k, i, untried = lb->n_targets, first = lb->n_targets;
	size_t start = lb_cursor(lb, want);
	bool was_tried;

	for (k = 0; k < lb->n_targets; k++) {
		i = (start + k) % lb->n_targets;
		if (!lb_index_of_family(lb, i, want))
			continue;
		if (first == lb->n_targets)
			first = i;
		was_tried = tried != NULL && lb_tried_has(tried,
		    &lb->targets[i]);
		if (was_tried)
			continue;
		if (!lb_index_down(lb, i, now_ms))
			return i;
		if (untried == lb->n_targets)
			untried = i;
	}
	if (untried != lb->n_targets)
		return untried;
	return first != lb->n_targets ? first : start;
}

/*
 * Least connections: the endpoint neither tried nor backing off with the
 * fewest sessions, the first in rotation order among equals so that ties
 * spread; n_targets when every endpoint is tried or backing off.
 */
static size_t
lb_least_loaded(const struct lb *lb, const struct lb_tried *tried,
    sa_family_t want, long long now_ms)
{
	size_t k, i, best = lb->n_targets;

	for (k = 0; k < lb->n_targets; k++) {
		i = (lb_cursor(lb, want) + k) % lb->n_targets;
		if (!lb_index_of_family(lb, i, want) ||
		    (tried != NULL && lb_tried_has(tried, &lb->targets[i])) ||
		    lb_index_down(lb, i, now_ms))
			continue;
		if (best == lb->n_targets ||
		    lb->health[i].active < lb->health[best].active)
			best = i;
	}
	return best;
}

/*
 * Maglev: the client's slot, or the first slot after it whose endpoint is
 * neither tried nor backing off, else the first whose endpoint is not
 * tried, else the client's own; only slots of endpoints of family want.
 * n_targets without a table.
 */
static size_t
lb_maglev_lookup(const struct lb *lb, const struct svc_ip *client,
    const struct lb_tried *tried, sa_family_t want, long long now_ms)
{
	size_t	 k, slot, i, untried = lb->n_targets, first = lb->n_targets;

	if (lb->maglev == NULL || client == NULL || client->family == 0)
		return lb->n_targets;
	slot = lb_hash(client->addr, client->family == AF_INET6 ? 16 : 4,
	    client->family) % lb->maglev_size;
	for (k = 0; k < lb->maglev_size; k++) {
		i = lb->maglev[(slot + k) % lb->maglev_size];
		if (!lb_index_of_family(lb, i, want))
			continue;
		if (first == lb->n_targets)
			first = i;
		if (tried != NULL && lb_tried_has(tried, &lb->targets[i]))
			continue;
		if (!lb_index_down(lb, i, now_ms))
			return i;
		if (untried == lb->n_targets)
			untried = i;
	}
	return untried != lb->n_targets ? untried : first;
}

/* The algorithm's choice for a client without a live affinity entry. */
static size_t
lb_choose(const struct lb *lb, const struct svc_ip *client,
    const struct lb_tried *tried, long long now_ms)
{
	sa_family_t want = lb_family_wanted(lb, client);
	size_t i = lb->n_targets;

	if (lb->balancer == SVC_BALANCER_LEAST_CONN)
		i = lb_least_loaded(lb, tried, want, now_ms);
	else if (lb->balancer == SVC_BALANCER_MAGLEV)
		i = lb_maglev_lookup(lb, client, tried, want, now_ms);
	return i != lb->n_targets ? i :
	    lb_next_usable(lb, tried, want, now_ms);
}

/* Move want's rotation past the pick at index i. */
static void
lb_advance(struct lb *lb, sa_family_t want, size_t i)
{
	if (want == AF_INET6) {
		lb->last_v6 = lb->targets[i];
		lb->have_last_v6 = true;
		lb->next_v6 = (i + 1) % lb->n_targets;
		return;
	}
	lb->last = lb->targets[i];
	lb->have_last = true;
	lb->next = (i + 1) % lb->n_targets;
}

/*
 * Choose an endpoint for a connection from client (which may be NULL when
 * the peer address is unknown; affinity is then not used).  With affinity
 * and no endpoint tried yet, a live entry wins and its window slides,
 * unless its endpoint is backing off.  Otherwise the balancer's choice
 * (lb_choose; for round robin the next endpoint in rotation neither tried
 * nor backing off, else the next one not tried, else the next one); with
 * affinity, the choice is recorded, so after a
 * failed try the client moves to the endpoint that answers (upstream's
 * sessionAffinityReset).  With endpoints of both families, only those of
 * the client's family count (lb_family_wanted).  Returns 0 with *out set,
 * or -1 with no endpoint.
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
		    !lb_backing_off_locked(lb, &a->target, now_ms) &&
		    (lb_family_wanted(lb, client) == 0 ||
		    a->target.ip.family == client->family)) {
			a->last_used_ms = now_ms;
			*out = a->target;
			return 0;
		}
	}

	i = lb_choose(lb, client, tried, now_ms);
	*out = lb->targets[i];
	lb_advance(lb, lb_family_wanted(lb, client), i);
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
		h->down_until_ms = 0;
		h->backoff_ms = 0;
		h->timeouts = 0;
		h->active++;
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

/* A session to t that lb_report() counted as connected ended. */
static void
lb_release_locked(struct lb *lb, const struct lb_target *t)
{
	ssize_t i;

	/* One that left and came back starts again from 0. */
	if ((i = lb_find(lb, t)) >= 0 && lb->health[i].active > 0)
		lb->health[i].active--;
}

/* Sessions to t connected and not yet released; 0 for an unknown one. */
static unsigned
lb_n_active_locked(const struct lb *lb, const struct lb_target *t)
{
	ssize_t i;

	if ((i = lb_find(lb, t)) < 0)
		return 0;
	return lb->health[i].active;
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
void
lb_release(struct lb *lb, const struct lb_target *t)
{
	lb_lock(lb);
	lb_release_locked(lb, t);
	lb_unlock(lb);
}

/* See lb.h; under the balancer's lock. */
unsigned
lb_n_active(const struct lb *lb, const struct lb_target *t)
{
	unsigned	 ret;

	lb_lock(lb);
	ret = lb_n_active_locked(lb, t);
	lb_unlock(lb);
	return ret;
}

/* See lb.h; under the balancer's lock. */
int
lb_set_balancer(struct lb *lb, enum svc_balancer balancer)
{
	int	 ret = 0;

	if (balancer == SVC_BALANCER_DEFAULT)
		balancer = SVC_BALANCER_ROUND_ROBIN;
	lb_lock(lb);
	if (lb->balancer != balancer) {
		lb->balancer = balancer;
		ret = lb_maglev_build(lb, NULL, 0);
	}
	lb_unlock(lb);
	return ret;
}

/* See lb.h; under the balancer's lock. */
enum svc_balancer
lb_balancer(const struct lb *lb)
{
	enum svc_balancer	 ret;

	lb_lock(lb);
	ret = lb->balancer;
	lb_unlock(lb);
	return ret;
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
		*out = lb->targets[lb_choose(lb, NULL, NULL, now_ms)];
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
