/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The lanes of lanes.h.  Everything here runs on the control loop (worker
 * 0) except lane_sync() and lane_close(), which run on the lane's worker.
 */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/log.h"
#include "proxy/lanes.h"
#include "proxy/lb.h"
#include "proxy/listener.h"
#include "proxy/pport.h"
#include "proxy/tcp_relay.h"
#include "proxy/udp_relay.h"
#include "proxy/worker.h"

/* Ports with changes for workers 1..N-1, each holding a reference. */
static struct pport	**queue;
static size_t		  n_queued, queue_cap;

/* See lanes.h. */
int
lanes_init(struct pport *pp)
{
	unsigned i, n = workers_count();

	if (worker_at(0) == NULL ||
	    (pp->lanes = calloc(n, sizeof(*pp->lanes))) == NULL)
		return -1;
	pp->n_lanes = n;
	for (i = 0; i < n; i++) {
		pp->lanes[i].pp = pp;
		pp->lanes[i].env = worker_env(worker_at(i));
		pp->lanes[i].pending_fd = -1;
	}
	return 0;
}

/* Serve fd on the lane's worker (the caller).  0, or -1 with err. */
static int
lane_serve(struct pport_lane *lane, int fd, char *err, size_t errlen)
{
	if (lane->pp->proto == SVC_PROTO_TCP)
		lane->listener = listener_new(lane->env->base, fd,
		    lane->pp->key, tcp_relay_accept, lane, err, errlen);
	else
		lane->udp = udp_port_new(lane, fd, err, errlen);
	return lane->listener != NULL || lane->udp != NULL ? 0 : -1;
}

/* Bring the lane in line with its port, on the lane's worker. */
static void
lane_sync(struct pport_lane *lane)
{
	struct pport	*pp = lane->pp;
	char		 err[256];
	int		 fd = lane->pending_fd;

	if (fd != -1) {
		lane->pending_fd = -1;
		if (lane_serve(lane, fd, err, sizeof(err)) == -1)
			log_warnx("%s: a worker cannot serve port %u: %s; the "
			    "others do", pp->key, pp->proxy_port, err);
	}
	if (lane->listener != NULL) {
		if (lb_n_endpoints(pp->lb) == 0) {
			if (!listener_is_paused(lane->listener) &&
			    lane == pp->lanes)
				log_v(2, "%s: no endpoints, refusing "
				    "connections", pp->key);
			listener_pause(lane->listener);
		} else
			listener_resume(lane->listener);
	}
	if (lane->udp != NULL)
		udp_port_endpoints_changed(lane->udp);
}

static void
lane_sync_cb(void *arg)
{
	lane_sync(arg);
}

static void
lanes_queue(struct pport *pp)
{
	struct pport	**v;
	unsigned	  i;

	if (pp->n_lanes < 2 || pp->lanes_queued)
		return;
	if (n_queued == queue_cap) {
		v = reallocarray(queue, queue_cap ? queue_cap * 2 : 64,
		    sizeof(*v));
		if (v == NULL) {
			/* Rather than lose the change: one wake-up each. */
			for (i = 1; i < pp->n_lanes; i++)
				worker_run(worker_at(i), lane_sync_cb,
				    &pp->lanes[i]);
			return;
		}
		queue = v;
		queue_cap = queue_cap ? queue_cap * 2 : 64;
	}
	pp->lanes_queued = true;
	queue[n_queued++] = pport_ref(pp);
}

/* See lanes.h. */
int
lanes_open(struct pport *pp, const char *bind_addr, int fd, char *err,
    size_t errlen)
{
	unsigned i;

	if (lane_serve(&pp->lanes[0], fd, err, errlen) == -1)
		return -1;
	for (i = 1; i < pp->n_lanes; i++) {
		pp->lanes[i].pending_fd = listener_bind_again(pp->proto,
		    bind_addr, pp->proxy_port, err, errlen);
		if (pp->lanes[i].pending_fd == -1)
			log_warnx("%s: worker %u: %s; the others serve it",
			    pp->key, i, err);
	}
	lanes_update(pp);
	return 0;
}

/* See lanes.h. */
void
lanes_update(struct pport *pp)
{
	if (pp->n_lanes == 0)
		return;
	lane_sync(&pp->lanes[0]);
	lanes_queue(pp);
}

static void
lanes_flush_worker(void *arg)
{
	unsigned	i = *(unsigned *)arg;
	size_t		k;

	for (k = 0; k < n_queued; k++)
		if (i < queue[k]->n_lanes)
			lane_sync(&queue[k]->lanes[i]);
}

/* See lanes.h. */
void
lanes_flush(void)
{
	unsigned	i;
	size_t		k;

	if (n_queued == 0)
		return;
	for (i = 1; i < workers_count(); i++)
		worker_run(worker_at(i), lanes_flush_worker, &i);
	for (k = 0; k < n_queued; k++) {
		queue[k]->lanes_queued = false;
		pport_unref(queue[k]);
	}
	n_queued = 0;
}

static void
lane_close(void *arg)
{
	struct pport_lane *lane = arg;

	listener_free(lane->listener);
	lane->listener = NULL;
	udp_port_free(lane->udp);
	lane->udp = NULL;
	if (lane->pending_fd != -1) {
		close(lane->pending_fd);
		lane->pending_fd = -1;
	}
}

/* See lanes.h. */
void
lanes_close(struct pport *pp)
{
	unsigned i;

	for (i = 0; i < pp->n_lanes; i++)
		worker_run(worker_at(i), lane_close, &pp->lanes[i]);
}
