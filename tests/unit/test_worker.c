/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy/worker.c: worker threads, worker_run() and workers_quiesce().
 */
#include "config.h"

#include <dirent.h>
#include <pthread.h>
#include <string.h>

#include <criterion/criterion.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "conf/conf.h"
#include "proxy/pport.h"
#include "proxy/worker.h"

static struct event_base	*main_base;
static struct conf		 conf;

static void
setup(void)
{
	cr_assert_eq(evthread_use_pthreads(), 0);
	cr_assert_not_null(main_base = worker_base_new());
	conf_defaults(&conf);
}

static void
teardown(void)
{
	workers_stop();
	event_base_free(main_base);
	conf_clear(&conf);
}

TestSuite(worker, .init = setup, .fini = teardown);

/* Threads of this process now. */
static int
n_threads(void)
{
	DIR		*d;
	struct dirent	*e;
	int		 n = 0;

	cr_assert_not_null(d = opendir("/proc/self/task"));
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

struct where {
	pthread_t	thread;
	int		calls;
};

static void
note_thread(void *arg)
{
	struct where *w = arg;

	w->thread = pthread_self();
	w->calls++;
}

Test(worker, run_executes_on_the_worker_thread_and_waits)
{
	struct where	w[3];
	char		err[256];
	unsigned	i;
	int		before = n_threads();

	cr_assert_eq(workers_start(main_base, &conf, 3, err, sizeof(err)), 0,
	    "%s", err);
	cr_assert_eq(workers_count(), 3);
	cr_assert_eq(n_threads(), before + 2, "worker 0 is the caller's");
	memset(w, 0, sizeof(w));
	for (i = 0; i < 3; i++) {
		cr_assert_eq(worker_index(worker_at(i)), i);
		worker_run(worker_at(i), note_thread, &w[i]);
		/* Returned: the call has run. */
		cr_assert_eq(w[i].calls, 1);
	}
	cr_assert(pthread_equal(w[0].thread, pthread_self()));
	cr_assert_not(pthread_equal(w[1].thread, pthread_self()));
	cr_assert_not(pthread_equal(w[2].thread, pthread_self()));
	cr_assert_not(pthread_equal(w[1].thread, w[2].thread));
	cr_assert_eq(worker_env(worker_at(2))->conf, &conf);
	cr_assert_neq(worker_env(worker_at(1))->base,
	    worker_env(worker_at(2))->base);
	workers_stop();
	cr_assert_eq(n_threads(), before, "workers_stop joined every thread");
	cr_assert_null(worker_at(0));
	cr_assert_eq(workers_count(), 1);
}

static void
visit(struct worker *w, void *arg)
{
	unsigned *order = arg;

	order[worker_index(w)] = ++order[3];
}

Test(worker, run_each_visits_every_worker_in_order)
{
	unsigned	order[4] = { 0 };
	char		err[256];

	cr_assert_eq(workers_start(main_base, &conf, 3, err, sizeof(err)), 0);
	workers_run_each(visit, order);
	cr_assert_eq(order[0], 1);
	cr_assert_eq(order[1], 2);
	cr_assert_eq(order[2], 3);
}

/* A timer on a worker that counts its firings, every millisecond. */
struct ticker {
	struct event	*ev;
	unsigned long	 ticks;
};

static void
tick(evutil_socket_t fd, short what, void *arg)
{
	struct ticker *t = arg;

	__atomic_fetch_add(&t->ticks, 1, __ATOMIC_RELAXED);
}

static void
ticker_start(void *arg)
{
	struct ticker	*t = arg;
	struct timeval	 ms = { 0, 1000 };

	t->ev = event_new(worker_env(worker_at(1))->base, -1, EV_PERSIST,
	    tick, t);
	event_add(t->ev, &ms);
}

static void
ticker_stop(void *arg)
{
	struct ticker *t = arg;

	event_free(t->ev);
}

struct frozen {
	struct ticker	*t;
	unsigned long	 at_start, at_end;
};

static void
while_quiet(void *arg)
{
	struct frozen		*f = arg;
	struct timespec		 pause = { 0, 30 * 1000 * 1000 };

	f->at_start = __atomic_load_n(&f->t->ticks, __ATOMIC_RELAXED);
	nanosleep(&pause, NULL);
	f->at_end = __atomic_load_n(&f->t->ticks, __ATOMIC_RELAXED);
}

Test(worker, quiesce_holds_every_worker_between_callbacks)
{
	struct ticker		t = { 0 };
	struct frozen		f = { .t = &t };
	struct timespec		pause = { 0, 30 * 1000 * 1000 };
	char			err[256];
	unsigned long		before;

	cr_assert_eq(workers_start(main_base, &conf, 2, err, sizeof(err)), 0);
	worker_run(worker_at(1), ticker_start, &t);
	nanosleep(&pause, NULL);
	cr_assert_gt(t.ticks, 0, "the ticker runs on worker 1");
	workers_quiesce(while_quiet, &f);
	cr_assert_eq(f.at_start, f.at_end, "worker 1 ran %lu ticks while "
	    "quiesced", f.at_end - f.at_start);
	before = __atomic_load_n(&t.ticks, __ATOMIC_RELAXED);
	nanosleep(&pause, NULL);
	cr_assert_gt(__atomic_load_n(&t.ticks, __ATOMIC_RELAXED), before,
	    "worker 1 runs again after the quiesce");
	worker_run(worker_at(1), ticker_stop, &t);
}

Test(worker, counts_outside_one_to_the_maximum_are_refused)
{
	char err[256];

	cr_assert_eq(workers_start(main_base, &conf, 0, err, sizeof(err)), -1);
	cr_assert(strstr(err, "--workers 0") != NULL, "%s", err);
	cr_assert_eq(workers_start(main_base, &conf, WORKER_MAX + 1, err,
	    sizeof(err)), -1);
	cr_assert(strstr(err, "not in 1..64") != NULL, "%s", err);
	cr_assert_geq(workers_default(), 1);
}

Test(worker, run_without_workers_calls_at_once)
{
	struct where w = { 0 };

	worker_run(NULL, note_thread, &w);
	cr_assert_eq(w.calls, 1);
	cr_assert(pthread_equal(w.thread, pthread_self()));
}
