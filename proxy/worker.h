/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Data-path workers (--workers N): N event loops, each with its own socket
 * per service port (SO_REUSEPORT, so the kernel spreads connections and
 * UDP flows over them), its own sessions, splice pipes and spare
 * descriptor.  Worker 0 is the daemon's main loop, which also runs the
 * control plane; workers 1..N-1 are threads.  With --workers 1 there is no
 * thread at all.
 *
 * The control loop changes what a worker holds (opens, pauses and closes
 * its sockets) only through worker_run(), which runs a function on the
 * worker's own loop and waits for it: every object of a worker is touched
 * by that worker's thread alone.  What the workers of one service port
 * share (its balancer, counters and endpoint counters) locks or counts
 * atomically; see lb.c, epstats.c and pport.h.
 */
#ifndef KUPROXY_WORKER_H
#define KUPROXY_WORKER_H

#include <stdbool.h>

struct conf;
struct event_base;
struct relay_env;
struct worker;

/* The most workers kuproxy starts: more would only add lock traffic. */
#define WORKER_MAX	64

/*
 * Start n workers (1..WORKER_MAX), worker 0 on main_base (the caller's
 * loop).  libevent's pthread locking must be on (evthread_use_pthreads())
 * before main_base was created when n > 1.  0, or -1 with err.
 */
int		 workers_start(struct event_base *main_base,
		    const struct conf *conf, unsigned n, char *err,
		    size_t errlen);
/*
 * Stop every worker thread (closing what sessions remain, on their own
 * threads) and free every worker.  Safe when none was started.
 */
void		 workers_stop(void);
/* Close every session of every worker now (the end of a drain). */
void		 workers_close_sessions(void);
/* Workers started: 1 when workers_start() has not run. */
unsigned	 workers_count(void);
/* Worker i, 0 <= i < workers_count(); NULL when none was started. */
struct worker	*worker_at(unsigned i);
/* The worker's loop and what its sessions share. */
struct relay_env *worker_env(struct worker *);
unsigned	 worker_index(const struct worker *);
/*
 * Run fn(arg) on w's loop and return once it has returned; at once when
 * w is the caller's, or NULL (no worker started: tests, shutdown).
 */
void		 worker_run(struct worker *w, void (*fn)(void *), void *arg);
/*
 * Run fn(arg) on the caller while every other worker waits between two
 * callbacks: for changing what workers read without locks (the
 * configuration on SIGHUP).
 */
void		 workers_quiesce(void (*fn)(void *), void *arg);
/* Run fn(w, arg) on every worker's loop in turn. */
void		 workers_run_each(void (*fn)(struct worker *, void *),
		    void *arg);
/*
 * A new event loop as every worker needs it: the relay registers each
 * socket once, edge-triggered, and learns of a peer's FIN from EV_CLOSED,
 * so a level-triggered backend (poll, select, or epoll disabled with
 * EVENT_NOEPOLL) would spin on readable sockets.  NULL if the system has
 * no such backend.
 */
struct event_base *worker_base_new(void);
/* The default for --workers: the CPUs this process may run on. */
unsigned	 workers_default(void);

#endif
