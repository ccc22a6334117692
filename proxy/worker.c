/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The data-path workers of worker.h: their threads, loops and relay
 * environments, and worker_run(), the one way in from the control loop.
 */
#include "config.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "base/log.h"
#include "conf/conf.h"
#include "proxy/pport.h"
#include "proxy/tcp_relay.h"
#include "proxy/worker.h"

/* Large pipes cut splice's CPU per byte several times over 64 KiB ones. */
#define WORKER_PIPE_SIZE	(1 << 20)
#define WORKER_IDLE_PIPES	64

struct worker {
	unsigned		 index;
	bool			 threaded;
	pthread_t		 thread;
	struct event_base	*base;
	struct relay_env	 env;
};

/* A function to run on a worker's loop, and the caller waiting for it. */
struct worker_call {
	void			(*fn)(void *);
	void			*arg;
	pthread_mutex_t		 lock;
	pthread_cond_t		 done_cv;
	bool			 done;
};

static struct worker	*workers[WORKER_MAX];
static unsigned		 n_workers;

/* See worker.h. */
unsigned
workers_default(void)
{
	cpu_set_t	set;
	int		n;

	if (sched_getaffinity(0, sizeof(set), &set) == -1 ||
	    (n = CPU_COUNT(&set)) < 1)
		return 1;
	return n > WORKER_MAX ? WORKER_MAX : (unsigned)n;
}

static void
worker_free(struct worker *w)
{
	if (w == NULL)
		return;
	if (w->env.pipes != NULL)
		pipe_pool_free(w->env.pipes);
	if (w->threaded && w->base != NULL)
		event_base_free(w->base);
	free(w);
}

/* See worker.h. */
struct event_base *
worker_base_new(void)
{
	struct event_config	*cfg;
	struct event_base	*base;

	if ((cfg = event_config_new()) == NULL)
		return NULL;
	event_config_require_features(cfg, EV_FEATURE_ET |
	    EV_FEATURE_EARLY_CLOSE);
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	return base;
}

static struct worker *
worker_new(unsigned index, struct event_base *base, const struct conf *conf,
    char *err, size_t errlen)
{
	struct worker *w;

	if ((w = calloc(1, sizeof(*w))) == NULL) {
		snprintf(err, errlen, "worker %u: out of memory", index);
		return NULL;
	}
	w->index = index;
	w->threaded = base == NULL;
	if (base == NULL && (base = worker_base_new()) == NULL) {
		snprintf(err, errlen, "worker %u: cannot create its event "
		    "loop", index);
		goto fail;
	}
	w->base = base;
	w->env.base = base;
	w->env.conf = conf;
	if (conf->relay_mode == CONF_RELAY_SPLICE && (w->env.pipes =
	    pipe_pool_new(WORKER_PIPE_SIZE, WORKER_IDLE_PIPES)) == NULL) {
		snprintf(err, errlen, "worker %u: cannot create its splice "
		    "pipe pool", index);
		goto fail;
	}
	return w;
fail:
	worker_free(w);
	return NULL;
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;

	event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

/*
 * Start w's thread with every signal blocked: signals are the main loop's
 * (libevent's signal events live there).
 */
static int
worker_spawn(struct worker *w, char *err, size_t errlen)
{
	sigset_t	all, old;
	int		rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&w->thread, NULL, worker_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		snprintf(err, errlen, "worker %u: cannot start its thread: %s",
		    w->index, strerror(rc));
		w->threaded = false;	/* nothing to join */
		return -1;
	}
	return 0;
}

/* See worker.h. */
int
workers_start(struct event_base *main_base, const struct conf *conf,
    unsigned n, char *err, size_t errlen)
{
	unsigned i;

	if (n < 1 || n > WORKER_MAX) {
		snprintf(err, errlen, "--workers %u: not in 1..%d", n,
		    WORKER_MAX);
		return -1;
	}
	for (i = 0; i < n; i++) {
		if ((workers[i] = worker_new(i, i == 0 ? main_base : NULL,
		    conf, err, errlen)) == NULL)
			goto fail;
		n_workers = i + 1;
		if (i > 0 && worker_spawn(workers[i], err, errlen) == -1)
			goto fail;
	}
	if (n > 1)
		log_info("%u workers: one event loop each, sockets shared "
		    "out by the kernel (SO_REUSEPORT)", n);
	return 0;
fail:
	workers_stop();
	return -1;
}

static void
worker_close_sessions(struct worker *w, void *arg)
{
	tcp_relay_close_all();
}

/* See worker.h. */
void
workers_close_sessions(void)
{
	workers_run_each(worker_close_sessions, NULL);
}

/* See worker.h. */
void
workers_stop(void)
{
	unsigned i;

	workers_close_sessions();
	for (i = 0; i < n_workers; i++) {
		struct worker *w = workers[i];

		if (w->threaded) {
			event_base_loopexit(w->base, NULL);
			pthread_join(w->thread, NULL);
		}
		worker_free(w);
		workers[i] = NULL;
	}
	n_workers = 0;
}

/* See worker.h. */
unsigned
workers_count(void)
{
	return n_workers == 0 ? 1 : n_workers;
}

/* See worker.h. */
struct worker *
worker_at(unsigned i)
{
	return i < n_workers ? workers[i] : NULL;
}

/* See worker.h. */
struct relay_env *
worker_env(struct worker *w)
{
	return &w->env;
}

/* See worker.h. */
unsigned
worker_index(const struct worker *w)
{
	return w->index;
}

static void
worker_call_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker_call *c = arg;

	c->fn(c->arg);
	pthread_mutex_lock(&c->lock);
	c->done = true;
	pthread_cond_signal(&c->done_cv);
	pthread_mutex_unlock(&c->lock);
}

/* See worker.h. */
void
worker_run(struct worker *w, void (*fn)(void *), void *arg)
{
	struct worker_call c;

	if (w == NULL || !w->threaded ||
	    pthread_equal(pthread_self(), w->thread)) {
		fn(arg);
		return;
	}
	memset(&c, 0, sizeof(c));
	c.fn = fn;
	c.arg = arg;
	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.done_cv, NULL);
	/* With no timeout the callback is made active at once. */
	if (event_base_once(w->base, -1, EV_TIMEOUT, worker_call_cb, &c,
	    NULL) == -1)
		fatalx("worker %u: cannot queue a call", w->index);
	pthread_mutex_lock(&c.lock);
	while (!c.done)
		pthread_cond_wait(&c.done_cv, &c.lock);
	pthread_mutex_unlock(&c.lock);
	pthread_cond_destroy(&c.done_cv);
	pthread_mutex_destroy(&c.lock);
}

struct worker_each {
	void		(*fn)(struct worker *, void *);
	struct worker	*w;
	void		*arg;
};

static void
worker_each_cb(void *arg)
{
	struct worker_each *e = arg;

	e->fn(e->w, e->arg);
}

/* Where the threaded workers wait while the control loop changes things. */
struct worker_park {
	pthread_mutex_t		 lock;
	pthread_cond_t		 cv;
	unsigned		 parked;
	bool			 release;
};

static void
worker_park_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker_park *p = arg;

	pthread_mutex_lock(&p->lock);
	p->parked++;
	pthread_cond_broadcast(&p->cv);
	while (!p->release)
		pthread_cond_wait(&p->cv, &p->lock);
	p->parked--;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->lock);
}

/* See worker.h. */
void
workers_quiesce(void (*fn)(void *), void *arg)
{
	struct worker_park	p;
	unsigned		i, n = 0;

	memset(&p, 0, sizeof(p));
	pthread_mutex_init(&p.lock, NULL);
	pthread_cond_init(&p.cv, NULL);
	for (i = 0; i < n_workers; i++)
		if (workers[i]->threaded && event_base_once(workers[i]->base,
		    -1, EV_TIMEOUT, worker_park_cb, &p, NULL) == 0)
			n++;
	pthread_mutex_lock(&p.lock);
	while (p.parked < n)
		pthread_cond_wait(&p.cv, &p.lock);
	fn(arg);
	p.release = true;
	pthread_cond_broadcast(&p.cv);
	while (p.parked > 0)
		pthread_cond_wait(&p.cv, &p.lock);
	pthread_mutex_unlock(&p.lock);
	pthread_cond_destroy(&p.cv);
	pthread_mutex_destroy(&p.lock);
}

/* See worker.h. */
void
workers_run_each(void (*fn)(struct worker *, void *), void *arg)
{
	struct worker_each	e;
	unsigned		i;

	for (i = 0; i < n_workers; i++) {
		e.fn = fn;
		e.w = workers[i];
		e.arg = arg;
		worker_run(workers[i], worker_each_cb, &e);
	}
}
