/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reference counting of proxied service ports.  The proxier creates a
 * pport with one reference and fills it; every session takes another.
 * This file only decides when a pport dies and what dies with it.
 */
#include "config.h"

#include <assert.h>
#include <stdlib.h>

#include "proxy/lb.h"
#include "proxy/listener.h"
#include "proxy/pport.h"

/* Take a reference on pp; returns pp. */
struct pport *
pport_ref(struct pport *pp)
{
	assert(__atomic_load_n(&pp->refcnt, __ATOMIC_RELAXED) > 0);
	__atomic_fetch_add(&pp->refcnt, 1, __ATOMIC_RELAXED);
	return pp;
}

/*
 * Drop a reference; the last one frees the balancer, the svc reference and
 * pp.  The proxier closes each lane's listener or UDP socket (on the lane's
 * worker, setting it to NULL) when it removes the port, before dropping its
 * own reference, so that the port stops accepting while sessions drain.
 * NULL is fine.
 */
void
pport_unref(struct pport *pp)
{
	unsigned i;

	if (pp == NULL)
		return;
	assert(__atomic_load_n(&pp->refcnt, __ATOMIC_RELAXED) > 0);
	/* Atomic: sessions of every worker hold references (worker.h). */
	if (__atomic_sub_fetch(&pp->refcnt, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	/* The proxier closed every lane's socket before its last reference. */
	for (i = 0; i < pp->n_lanes; i++)
		assert(pp->lanes[i].listener == NULL &&
		    pp->lanes[i].udp == NULL);
	free(pp->lanes);
	ep_stats_clear(&pp->endpoints);
	lb_free(pp->lb);
	svc_unref(pp->svc);
	free(pp);
}
