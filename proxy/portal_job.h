/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Rule syncs off the event loop.  A portal job is one portal_sync() and the
 * UDP conntrack flushes that follow it, with its own deep copy of every
 * service port it renders, so that the proxier may apply new tables (and
 * free the old ones) while the job runs.  A job runner runs at most one job
 * at a time on a thread of its own and reports its completion on the event
 * loop, through an eventfd read by an event (libevent's own locking is not
 * needed).  The proxier decides when to sync and what a result means; this
 * module only carries the work to the thread and the result back.
 *
 * While a job runs, the struct portal it was given belongs to the job's
 * thread: the loop must call nothing in portal.c on it except
 * portal_backend_name() and reads of what portal_new() set in
 * portal_env() (see portal.h).
 */
#ifndef KUPROXY_PORTAL_JOB_H
#define KUPROXY_PORTAL_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/svc.h"
#include "proxy/portal.h"

struct event_base;
struct portal_job;
struct portal_job_runner;

/*
 * A job that syncs the rules to ports (n_ports may be 0: no rules).  Each
 * port's svc and svc_port are copied, with what the rendering reads (names,
 * addresses, protocol, ports), so the job holds no pointer into the
 * caller's table.  Returns NULL on allocation failure (errno ENOMEM).
 * Free it with portal_job_free().
 */
struct portal_job *portal_job_new(const struct portal_port *ports,
		    size_t n_ports);

/*
 * After a successful sync, the job deletes the UDP conntrack entries to
 * ip (and port, when non-zero): see portal_flush_conntrack_udp().
 * 0, or -1 on allocation failure.
 */
int		 portal_job_add_flush(struct portal_job *,
		    const struct svc_ip *ip, uint16_t port);
/* Give to dst every flush src holds (src's failed sync owed them).  0 or -1. */
int		 portal_job_take_flushes(struct portal_job *dst,
		    const struct portal_job *src);
/* The copied ports, as portal_sync() will see them. */
const struct portal_port *portal_job_ports(const struct portal_job *,
		    size_t *n_ports);
size_t		 portal_job_n_flushes(const struct portal_job *);

/*
 * Run the job here and now: portal_sync() on its ports, then, when that
 * succeeded, its conntrack flushes.  Blocks for as long as the tools run.
 * The runner calls it on its thread; a caller without a runner (start-up,
 * the none backend) calls it on the loop.
 */
void		 portal_job_run(struct portal_job *, struct portal *);
/* After portal_job_run(): portal_sync()'s 0 or -1. */
int		 portal_job_result(const struct portal_job *);
/* After portal_job_run(): how long portal_sync() took, in ms. */
long long	 portal_job_sync_ms(const struct portal_job *);
void		 portal_job_free(struct portal_job *);

/*
 * Called on the loop when the runner's job is done; the job is the
 * callback's to free.
 */
typedef void	(*portal_job_done_cb)(struct portal_job *, void *arg);

/*
 * A runner on base whose completions go to done(job, arg).  Returns NULL
 * with err (no eventfd, no event).
 */
struct portal_job_runner *portal_job_runner_new(struct event_base *base,
		    portal_job_done_cb done, void *arg, char *err,
		    size_t errlen);

/*
 * Start job on p on the runner's thread.  Returns 0 (the job is the
 * runner's until done() gets it), or -1 with errno EBUSY when a job runs
 * already, or pthread_create's error (the job stays the caller's).
 */
int		 portal_job_runner_start(struct portal_job_runner *,
		    struct portal *p, struct portal_job *job);
/* Whether a job was started and done() has not had it yet. */
bool		 portal_job_runner_busy(const struct portal_job_runner *);

/*
 * Wait for the running job to finish (blocking the loop: shutdown only)
 * and return it instead of passing it to done(); NULL when none runs.
 * The caller frees it.
 */
struct portal_job *portal_job_runner_wait(struct portal_job_runner *);

/* Wait for and free a running job, then free the runner (NULL is fine). */
void		 portal_job_runner_free(struct portal_job_runner *);

#endif
