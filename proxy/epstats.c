/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-endpoint counters of one service port, kept in a tree by endpoint
 * address.  Entries outlive an endpoint's removal while a session still
 * uses them, so a long transfer to a departed endpoint is counted to the
 * end; the proxier prunes them at each sync.
 */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/svc.h"
#include "proxy/epstats.h"

static int
ep_stats_cmp(const struct ep_stats *a, const struct ep_stats *b)
{
	int c;

	if ((c = svc_ip_cmp(&a->target.ip, &b->target.ip)) != 0)
		return c;
	return a->target.port < b->target.port ? -1 :
	    a->target.port > b->target.port;
}

KU_RB_GENERATE_STATIC(ep_stats_tree, ep_stats, entry, ep_stats_cmp)

/*
 * The workers of a port share its tree (proxy/worker.h): one lock for
 * every tree guards their shape and the users counts; sessions add to
 * the counters with atomics.  Taken once per session start and end.
 */
static pthread_mutex_t	ep_lock = PTHREAD_MUTEX_INITIALIZER;

static struct ep_stats *
ep_stats_find_locked(struct ep_stats_tree *tree, const struct lb_target *t)
{
	struct ep_stats key;

	key.target = *t;
	return RB_FIND(ep_stats_tree, tree, &key);
}

struct ep_stats *
ep_stats_find(struct ep_stats_tree *tree, const struct lb_target *t)
{
	struct ep_stats *e;

	pthread_mutex_lock(&ep_lock);
	e = ep_stats_find_locked(tree, t);
	pthread_mutex_unlock(&ep_lock);
	return e;
}

struct ep_stats *
ep_stats_get(struct ep_stats_tree *tree, const struct lb_target *t)
{
	struct ep_stats *e;

	pthread_mutex_lock(&ep_lock);
	if ((e = ep_stats_find_locked(tree, t)) == NULL &&
	    (e = calloc(1, sizeof(*e))) != NULL) {
		e->target = *t;
		RB_INSERT(ep_stats_tree, tree, e);
	}
	if (e != NULL)
		e->users++;
	pthread_mutex_unlock(&ep_lock);
	return e;
}

void
ep_stats_put(struct ep_stats *e)
{
	if (e == NULL)
		return;
	pthread_mutex_lock(&ep_lock);
	if (e->users > 0)
		e->users--;
	pthread_mutex_unlock(&ep_lock);
}

static bool
ep_in_spec(const struct svc_port *port, const struct lb_target *t)
{
	size_t i;

	for (i = 0; port != NULL && i < port->n_endpoints; i++)
		if (svc_ip_cmp(&port->endpoints[i].ip, &t->ip) == 0 &&
		    port->endpoints[i].port == t->port)
			return true;
	return false;
}

void
ep_stats_prune(struct ep_stats_tree *tree, const struct svc_port *port)
{
	struct ep_stats *e, *next;

	pthread_mutex_lock(&ep_lock);
	RB_FOREACH_SAFE(e, ep_stats_tree, tree, next) {
		if (e->users == 0 && !ep_in_spec(port, &e->target)) {
			RB_REMOVE(ep_stats_tree, tree, e);
			free(e);
		}
	}
	pthread_mutex_unlock(&ep_lock);
}

void
ep_stats_foreach(struct ep_stats_tree *tree,
    void (*fn)(struct ep_stats *, void *), void *arg)
{
	struct ep_stats *e;

	pthread_mutex_lock(&ep_lock);
	RB_FOREACH(e, ep_stats_tree, tree)
		fn(e, arg);
	pthread_mutex_unlock(&ep_lock);
}

void
ep_stats_clear(struct ep_stats_tree *tree)
{
	struct ep_stats *e, *next;

	pthread_mutex_lock(&ep_lock);
	RB_FOREACH_SAFE(e, ep_stats_tree, tree, next) {
		RB_REMOVE(ep_stats_tree, tree, e);
		free(e);
	}
	pthread_mutex_unlock(&ep_lock);
}
