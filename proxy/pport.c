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
	assert(pp->refcnt > 0);
	pp->refcnt++;
	return pp;
}

/*
 * Drop a reference; the last one frees the balancer, the svc reference and
 * pp.  The proxier closes the listener or UDP socket (and sets it to NULL)
 * when it removes the port, before dropping its own reference, so that the
 * port stops accepting while sessions drain; a listener still set here is
 * closed too.  NULL is fine.
 */
void
pport_unref(struct pport *pp)
{
	if (pp == NULL)
		return;
	assert(pp->refcnt > 0);
	if (--pp->refcnt > 0)
		return;
	/* UDP associations hold references: the socket went first. */
	assert(pp->udp == NULL);
	listener_free(pp->listener);
	ep_stats_clear(&pp->endpoints);
	lb_free(pp->lb);
	svc_unref(pp->svc);
	free(pp);
}
