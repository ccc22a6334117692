/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Portal jobs and their runner: a rule sync that owns a copy of everything
 * it renders, run on a thread of its own so that iptables-save,
 * iptables-restore and conntrack (100-300 ms each sync, seconds with a slow
 * binary) never stop the relays on the event loop.  One job at a time;
 * each job gets a fresh thread, created with the asynchronous signals
 * blocked (they stay the loop's) and joined on the loop once it has
 * written to the eventfd, so pthread_create() and pthread_join() order
 * every access to the job and to the portal: no lock is needed.  What to
 * sync and what a result means is the proxier's.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "base/clock.h"
#include "proxy/portal_job.h"

/* One UDP conntrack flush owed after the sync. */
struct portal_flush {
	struct svc_ip	 ip;
	uint16_t	 port;
};

struct portal_job {
	/* ports[i] points into svcs[i] and svc_ports[i], copies of ours */
	struct portal_port	*ports;
	struct svc		*svcs;
	struct svc_port		*svc_ports;
	size_t			 n_ports;
	struct portal_flush	*flushes;
	size_t			 n_flushes;
	int			 result;
	long long		 sync_ms;
};

struct portal_job_runner {
	struct event		*done_ev;	/* reads efd */
	int			 efd;
	pthread_t		 thread;
	bool			 busy;		/* started, not joined */
	struct portal_job	*job;		/* the running one */
	struct portal		*portal;
	portal_job_done_cb	 done;
	void			*arg;
};

/* Jobs */

static void *
portal_job_memdup(const void *p, size_t n, size_t size)
{
	void	*q;

	if (n == 0)
		return NULL;
	if ((q = calloc(n, size)) != NULL)
		memcpy(q, p, n * size);
	return q;
}

/* What portal_render() reads of a service, and nothing it does not. */
static int
portal_job_copy_svc(struct svc *dst, const struct svc *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->refcnt = 1;
	dst->type = src->type;
	dst->skip = src->skip;
	memcpy(dst->cluster_ips, src->cluster_ips, sizeof(dst->cluster_ips));
	dst->n_cluster_ips = src->n_cluster_ips;
	dst->affinity = src->affinity;
	dst->affinity_timeout_s = src->affinity_timeout_s;
	dst->internal_policy = src->internal_policy;
	dst->external_policy = src->external_policy;
	dst->health_check_node_port = src->health_check_node_port;
	if ((dst->namespace = strdup(src->namespace)) == NULL ||
	    (dst->name = strdup(src->name)) == NULL)
		return -1;
	dst->external_ips = portal_job_memdup(src->external_ips,
	    src->n_external_ips, sizeof(*src->external_ips));
	dst->ingress_ips = portal_job_memdup(src->ingress_ips,
	    src->n_ingress_ips, sizeof(*src->ingress_ips));
	if ((src->n_external_ips > 0 && dst->external_ips == NULL) ||
	    (src->n_ingress_ips > 0 && dst->ingress_ips == NULL))
		return -1;
	dst->n_external_ips = src->n_external_ips;
	dst->n_ingress_ips = src->n_ingress_ips;
	return 0;
}

static void
portal_job_clear_svc(struct svc *s)
{
	free(s->namespace);
	free(s->name);
	free(s->external_ips);
	free(s->ingress_ips);
}

/* See portal_job.h. */
struct portal_job *
portal_job_new(const struct portal_port *ports, size_t n_ports)
{
	struct portal_job	*job;
	size_t			 i;

	if ((job = calloc(1, sizeof(*job))) == NULL)
		return NULL;
	job->result = -1;
	if (n_ports == 0)
		return job;
	if ((job->ports = calloc(n_ports, sizeof(*job->ports))) == NULL ||
	    (job->svcs = calloc(n_ports, sizeof(*job->svcs))) == NULL ||
	    (job->svc_ports = calloc(n_ports, sizeof(*job->svc_ports))) ==
	    NULL)
		goto fail;
	for (i = 0; i < n_ports; i++) {
		/* Counted first: a half-copied svc is freed with the rest. */
		job->n_ports++;
		job->ports[i].proxy_port = ports[i].proxy_port;
		job->ports[i].external_proxy_port =
		    ports[i].external_proxy_port;
		job->ports[i].external_drop = ports[i].external_drop;
		if (ports[i].svc != NULL) {
			if (portal_job_copy_svc(&job->svcs[i], ports[i].svc) ==
			    -1)
				goto fail;
			job->ports[i].svc = &job->svcs[i];
		}
		if (ports[i].port != NULL) {
			job->svc_ports[i].proto = ports[i].port->proto;
			job->svc_ports[i].port = ports[i].port->port;
			job->svc_ports[i].node_port = ports[i].port->node_port;
			if ((job->svc_ports[i].name =
			    strdup(ports[i].port->name)) == NULL)
				goto fail;
			job->ports[i].port = &job->svc_ports[i];
		}
	}
	return job;

fail:
	portal_job_free(job);
	errno = ENOMEM;
	return NULL;
}

/* See portal_job.h. */
int
portal_job_add_flush(struct portal_job *job, const struct svc_ip *ip,
    uint16_t port)
{
	struct portal_flush	*v;

	v = reallocarray(job->flushes, job->n_flushes + 1, sizeof(*v));
	if (v == NULL)
		return -1;
	job->flushes = v;
	v[job->n_flushes].ip = *ip;
	v[job->n_flushes].port = port;
	job->n_flushes++;
	return 0;
}

/* See portal_job.h. */
int
portal_job_take_flushes(struct portal_job *dst, const struct portal_job *src)
{
	size_t	 i;

	for (i = 0; i < src->n_flushes; i++)
		if (portal_job_add_flush(dst, &src->flushes[i].ip,
		    src->flushes[i].port) == -1)
			return -1;
	return 0;
}

/* See portal_job.h. */
const struct portal_port *
portal_job_ports(const struct portal_job *job, size_t *n_ports)
{
	*n_ports = job->n_ports;
	return job->ports;
}

/* See portal_job.h. */
size_t
portal_job_n_flushes(const struct portal_job *job)
{
	return job->n_flushes;
}

/* See portal_job.h. */
void
portal_job_run(struct portal_job *job, struct portal *p)
{
	long long	 t0 = clock_mono_ms();
	size_t		 i;

	job->result = portal_sync(p, job->ports, job->n_ports);
	job->sync_ms = clock_mono_ms() - t0;
	/* Only once the new rules are in: an earlier flush is undone. */
	for (i = 0; job->result == 0 && i < job->n_flushes; i++)
		portal_flush_conntrack_udp(p, &job->flushes[i].ip,
		    job->flushes[i].port);
}

/* See portal_job.h. */
int
portal_job_result(const struct portal_job *job)
{
	return job->result;
}

/* See portal_job.h. */
long long
portal_job_sync_ms(const struct portal_job *job)
{
	return job->sync_ms;
}

/* See portal_job.h. */
void
portal_job_free(struct portal_job *job)
{
	size_t	 i;

	if (job == NULL)
		return;
	for (i = 0; i < job->n_ports; i++) {
		portal_job_clear_svc(&job->svcs[i]);
		free(job->svc_ports[i].name);
	}
	free(job->ports);
	free(job->svcs);
	free(job->svc_ports);
	free(job->flushes);
	free(job);
}

/* The runner */

static void *
portal_job_thread(void *arg)
{
	struct portal_job_runner	*r = arg;
	uint64_t			 one = 1;

	portal_job_run(r->job, r->portal);
	/* Only a wake-up: pthread_join() is what publishes the result. */
	while (write(r->efd, &one, sizeof(one)) == -1 && errno == EINTR)
		;
	return NULL;
}

/* Read the thread's wake-up; whether there was one. */
static bool
portal_job_runner_drain(struct portal_job_runner *r)
{
	uint64_t	 n;
	ssize_t		 got;

	while ((got = read(r->efd, &n, sizeof(n))) == -1 && errno == EINTR)
		;
	return got == (ssize_t)sizeof(n);
}

/* Join the finished (or finishing) thread; returns its job. */
static struct portal_job *
portal_job_runner_join(struct portal_job_runner *r)
{
	struct portal_job	*job = r->job;

	pthread_join(r->thread, NULL);
	r->busy = false;
	r->job = NULL;
	r->portal = NULL;
	return job;
}

static void
portal_job_runner_ready(evutil_socket_t fd, short events, void *arg)
{
	struct portal_job_runner	*r = arg;

	/*
	 * Only the running thread writes, as its last act, and
	 * portal_job_runner_wait() drains what its job wrote: a wake-up is
	 * this job's end, so the join below does not wait.  No wake-up: the
	 * event was already due when portal_job_runner_wait() took the job.
	 */
	if (!portal_job_runner_drain(r) || !r->busy)
		return;
	r->done(portal_job_runner_join(r), r->arg);
}

/* See portal_job.h. */
struct portal_job_runner *
portal_job_runner_new(struct event_base *base, portal_job_done_cb done,
    void *arg, char *err, size_t errlen)
{
	struct portal_job_runner	*r;

	if ((r = calloc(1, sizeof(*r))) == NULL) {
		snprintf(err, errlen, "rule sync runner: %s", strerror(errno));
		return NULL;
	}
	r->done = done;
	r->arg = arg;
	if ((r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1) {
		snprintf(err, errlen, "rule sync runner: eventfd: %s",
		    strerror(errno));
		free(r);
		return NULL;
	}
	if ((r->done_ev = event_new(base, r->efd, EV_READ | EV_PERSIST,
	    portal_job_runner_ready, r)) == NULL ||
	    event_add(r->done_ev, NULL) == -1) {
		snprintf(err, errlen, "rule sync runner: cannot add its event");
		portal_job_runner_free(r);
		return NULL;
	}
	return r;
}

/* See portal_job.h. */
int
portal_job_runner_start(struct portal_job_runner *r, struct portal *p,
    struct portal_job *job)
{
	static const int	 faults[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL,
	    SIGTRAP, SIGABRT, SIGSYS };
	sigset_t		 block, saved;
	size_t			 i;
	int			 rc;

	if (r->busy) {
		errno = EBUSY;
		return -1;
	}
	r->job = job;
	r->portal = p;
	/*
	 * The thread inherits this mask: SIGTERM, SIGHUP, SIGINT... stay with
	 * the loop's signal events.  Faults stay deliverable, so that a crash
	 * on the thread is reported (sanitizers) rather than a silent kill.
	 */
	sigfillset(&block);
	for (i = 0; i < sizeof(faults) / sizeof(faults[0]); i++)
		sigdelset(&block, faults[i]);
	pthread_sigmask(SIG_SETMASK, &block, &saved);
	rc = pthread_create(&r->thread, NULL, portal_job_thread, r);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (rc != 0) {
		r->job = NULL;
		r->portal = NULL;
		errno = rc;
		return -1;
	}
	r->busy = true;
	return 0;
}

/* See portal_job.h. */
bool
portal_job_runner_busy(const struct portal_job_runner *r)
{
	return r->busy;
}

/* See portal_job.h. */
struct portal_job *
portal_job_runner_wait(struct portal_job_runner *r)
{
	struct portal_job	*job;

	if (!r->busy)
		return NULL;
	job = portal_job_runner_join(r);
	/* The thread's wake-up is moot now. */
	portal_job_runner_drain(r);
	return job;
}

/* See portal_job.h. */
void
portal_job_runner_free(struct portal_job_runner *r)
{
	if (r == NULL)
		return;
	portal_job_free(portal_job_runner_wait(r));
	if (r->done_ev != NULL)
		event_free(r->done_ev);
	close(r->efd);
	free(r);
}
