/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kubernetes API source: Services and EndpointSlices, listed and
 * watched as kube-proxy's informers do, turned into service tables.
 *
 * This module owns running the two informers (watch/informer.c) over HTTP
 * (watch/kube_http.c) on the daemon's event loop, and the publishing
 * policy: no table until both lists are in (kube-proxy waits for HasSynced
 * on both, so that it never starts with services but no endpoints), then
 * at most one table per --iptables-min-sync-period, coalescing the changes
 * in between.  An unreachable server publishes nothing, so the last table
 * stays in force.  Each table is built from the caches with
 * svctab_memo_build(), which joins again only the services whose Service
 * or slices changed and shares the others with the previous table; the
 * informers cache both decoded, so nothing is decoded here.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/svc.h"
#include "conf/conf.h"
#include "watch/informer.h"
#include "watch/kube_http.h"
#include "watch/kubeconfig.h"
#include "watch/source.h"

#define SA_N_RESOURCES	2
/*
 * A watch that receives nothing for this long is presumed stuck (the
 * connection is up, the server sends nothing: a hung apiserver, a proxy
 * that holds the stream) and is ended; the informer watches again from its
 * resourceVersion, without a relist.  kube-apiserver's watch cache sends a
 * BOOKMARK about every minute to a watch that allows them (cacher
 * bookmarkFrequency), so two of them missed is the bound.  A server that
 * sends no bookmarks (they are optional) costs one extra watch request per
 * resource every two minutes, nothing more.  client-go has no such bound
 * and kube-proxy no flag for it: a constant, with a test override in
 * watch/kube_http.c.  A black-holed connection is noticed sooner, by
 * kube_http's dead-peer bound.
 */
#define SA_WATCH_IDLE_S	120

struct sa_resource {
	struct source_api	*sa;
	struct informer		*inf;
	struct kube_http_req	*req;
	enum informer_step	 step;
	struct event		*ev_next;	/* the next request, delayed */
	bool			 unreachable;	/* waiting: the server was not */
};

struct source_api {
	struct event_base	*base;
	struct kube_creds	 creds;
	struct kube_http	*http;
	struct sa_resource	 res[SA_N_RESOURCES];
	source_publish_cb	 cb;
	void			*arg;
	uint32_t		 min_sync_ms;
	struct event		*ev_publish;
	bool			 publish_pending;
	long long		 last_publish_ms;
	struct svctab		*current;	/* last published, our ref */
	struct svctab_memo	*memo;		/* what current was joined from */
};

/*
 * What one table build collects: references to the informer's Service
 * specs, its slices borrowed.  svctab_memo_build() joins again only
 * the services whose spec or slices changed since the last table.
 */
struct sa_batch {
	struct source_api	*sa;
	struct svctab_builder	 build;
	bool			 failed;
};

static void	sa_run(struct sa_resource *);

static void
sa_collect_service(const char *key, struct svc *svc, struct slice *sl,
    void *arg)
{
	struct sa_batch	*b = arg;

	if (svc == NULL)
		return;
	if (svctab_builder_add_svc(&b->build, svc_ref(svc)) == -1)
		b->failed = true;
}

static void
sa_collect_slice(const char *key, struct svc *svc, struct slice *sl,
    void *arg)
{
	struct sa_batch	*b = arg;

	if (sl == NULL)
		return;
	if (svctab_builder_add_slice(&b->build, sl) == -1)
		b->failed = true;
}

/* Build a table from both caches and publish it if it differs. */
static void
sa_publish(struct source_api *sa)
{
	struct sa_batch		 b;
	struct svctab		*tab;
	struct svctab_stats	 st;

	memset(&b, 0, sizeof(b));
	b.sa = sa;
	informer_walk(sa->res[INFORMER_SERVICES].inf, sa_collect_service, &b);
	informer_walk(sa->res[INFORMER_ENDPOINT_SLICES].inf, sa_collect_slice,
	    &b);
	if (b.failed) {
		log_warnx("api: out of memory building the service table; "
		    "the last table stays in force");
		goto out;
	}
	tab = svctab_memo_build(sa->memo, b.build.svcs, b.build.n_svcs,
	    b.build.slices, b.build.n_slices);
	if (tab == NULL) {
		log_warnx("api: out of memory building the service table; "
		    "the last table stays in force");
		goto out;
	}
	sa->last_publish_ms = clock_mono_ms();
	if (svctab_same(sa->current, tab)) {
		log_debug("api: service table unchanged");
		svctab_unref(tab);
		goto out;
	}
	svctab_stats(tab, &st);
	log_info("api: %zu services, %zu proxied, %zu ports, %zu endpoints",
	    st.n_services, st.n_proxied, st.n_ports, st.n_endpoints);
	svctab_unref(sa->current);
	sa->current = svctab_ref(tab);
	sa->cb(tab, sa->arg);
 out:
	svctab_builder_clear(&b.build);
}

static void
sa_publish_cb(evutil_socket_t fd, short what, void *arg)
{
	struct source_api	*sa = arg;

	sa->publish_pending = false;
	sa_publish(sa);
}

static bool
sa_synced(const struct source_api *sa)
{
	return (informer_synced(sa->res[INFORMER_SERVICES].inf) &&
	    informer_synced(sa->res[INFORMER_ENDPOINT_SLICES].inf));
}

/*
 * A cache changed: publish from the loop, the first table at once and
 * later ones no sooner than min_sync_ms after the previous, so that a burst
 * of events makes one table.
 */
static void
sa_on_change(struct informer *inf, void *arg)
{
	struct source_api	*sa = arg;
	struct timeval		 tv;
	long long		 wait = 0, since;

	if (!sa_synced(sa) || sa->publish_pending)
		return;
	if (sa->current != NULL) {
		since = clock_mono_ms() - sa->last_publish_ms;
		if (since < (long long)sa->min_sync_ms)
			wait = (long long)sa->min_sync_ms - since;
	}
	tv.tv_sec = wait / 1000;
	tv.tv_usec = (wait % 1000) * 1000;
	sa->publish_pending = true;
	evtimer_add(sa->ev_publish, &tv);
}

static void
sa_schedule(struct sa_resource *r, const struct informer_next *next)
{
	struct timeval	 tv;

	r->step = next->step;
	tv.tv_sec = next->delay_ms / 1000;
	tv.tv_usec = (next->delay_ms % 1000) * 1000;
	evtimer_add(r->ev_next, &tv);
}

/*
 * The server answered a request: a resource that waits because it could
 * not reach the server retries now, rather than at the end of a back-off
 * that grew through the outage (its informer's back-off state stays as it
 * is).  The two informers reach the same server: once one is through, so
 * is the other, and a change in its resource is applied at once.
 */
static void
sa_server_answers(struct source_api *sa)
{
	struct informer_next	 now;
	size_t			 i;

	for (i = 0; i < SA_N_RESOURCES; i++) {
		if (!sa->res[i].unreachable || sa->res[i].req != NULL)
			continue;
		sa->res[i].unreachable = false;
		log_v(2, "%s: the API server answers again; retrying now",
		    informer_name(sa->res[i].inf));
		now.step = sa->res[i].step;
		now.delay_ms = 0;
		sa_schedule(&sa->res[i], &now);
	}
}

static int
sa_on_data(const char *buf, size_t len, long status, void *arg)
{
	struct sa_resource	*r = arg;

	return (informer_feed(r->inf, status, buf, len));
}

static void
sa_on_done(const struct kube_http_result *hr, void *arg)
{
	struct sa_resource	*r = arg;
	struct informer_result	 ir;
	struct informer_next	 next;

	r->req = NULL;
	memset(&ir, 0, sizeof(ir));
	ir.status = hr->status;
	ir.error = hr->aborted ? NULL : hr->error;
	ir.retry_after_s = hr->retry_after_s;
	ir.auth_renewed = hr->auth_renewed;
	informer_done(r->inf, &ir, clock_mono_ms(), &next);
	r->unreachable = hr->status == 0 && next.delay_ms > 0;
	sa_schedule(r, &next);
	/*
	 * A whole answer (not a stream cut short, not a server in trouble,
	 * 5xx or 429): the server is back.
	 */
	if (ir.error == NULL && hr->status >= 200 && hr->status < 500 &&
	    hr->status != 429)
		sa_server_answers(r->sa);
}

/* Make the request the informer asks for. */
static void
sa_run(struct sa_resource *r)
{
	struct kube_http_cb	 cb = { sa_on_data, sa_on_done, r };
	struct informer_request	 req;
	struct informer_result	 ir;
	struct informer_next	 next;
	char			 err[256];

	memset(&ir, 0, sizeof(ir));
	if (informer_request(r->inf, r->step, &req) == -1) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	if (r->step == INFORMER_WATCH && req.stall_s == 0)
		req.stall_s = SA_WATCH_IDLE_S;
	log_v(3, "%s: GET %s", informer_name(r->inf), req.path);
	informer_begin(r->inf, r->step, clock_mono_ms());
	r->req = kube_http_get(r->sa->http, req.path, req.timeout_ms,
	    req.stall_s, &cb, err, sizeof(err));
	free(req.path);
	if (r->req != NULL)
		return;
 fail:
	/* Treated as a request that reached nothing: back off, try again. */
	ir.error = err;
	informer_begin(r->inf, r->step, clock_mono_ms());
	informer_done(r->inf, &ir, clock_mono_ms(), &next);
	sa_schedule(r, &next);
}

static void
sa_next_cb(evutil_socket_t fd, short what, void *arg)
{
	sa_run(arg);
}

/*
 * Start listing and watching on base; see source.h.  creds is taken over
 * (cleared) whether or not this succeeds.  Returns NULL with err.
 */
struct source_api *
source_api_new(struct event_base *base, const struct conf *conf,
    struct kube_creds *creds, source_publish_cb cb, void *arg, char *err,
    size_t errlen)
{
	struct source_api	*sa;
	struct informer_config	 ic;
	struct informer_next	 next;
	size_t			 i;

	if ((sa = calloc(1, sizeof(*sa))) == NULL) {
		kube_creds_clear(creds);
		snprintf(err, errlen, "out of memory");
		return (NULL);
	}
	sa->creds = *creds;
	memset(creds, 0, sizeof(*creds));
	sa->base = base;
	sa->cb = cb;
	sa->arg = arg;
	sa->min_sync_ms = conf->min_sync_period_ms;
	if ((sa->http = kube_http_new(base, &sa->creds, err, errlen)) == NULL)
		goto fail;
	if ((sa->ev_publish = evtimer_new(base, sa_publish_cb, sa)) == NULL ||
	    (sa->memo = svctab_memo_new()) == NULL)
		goto nomem;
	for (i = 0; i < SA_N_RESOURCES; i++) {
		memset(&ic, 0, sizeof(ic));
		ic.resource = i == 0 ? INFORMER_SERVICES :
		    INFORMER_ENDPOINT_SLICES;
		ic.on_change = sa_on_change;
		ic.arg = sa;
		sa->res[i].sa = sa;
		if ((sa->res[i].inf = informer_new(&ic)) == NULL ||
		    (sa->res[i].ev_next = evtimer_new(base, sa_next_cb,
		    &sa->res[i])) == NULL)
			goto nomem;
		/* The first requests go out from the loop. */
		informer_start(sa->res[i].inf, &next);
		sa_schedule(&sa->res[i], &next);
	}
	log_info("api: watching services and endpointslices at %s (%s)",
	    sa->creds.server, sa->creds.origin != NULL ? sa->creds.origin :
	    "?");
	return (sa);
 nomem:
	snprintf(err, errlen, "out of memory");
 fail:
	source_api_free(sa);
	return (NULL);
}

/* Stop every request and free sa (NULL is fine). */
void
source_api_free(struct source_api *sa)
{
	size_t	 i;

	if (sa == NULL)
		return;
	for (i = 0; i < SA_N_RESOURCES; i++) {
		kube_http_cancel(sa->res[i].req);
		if (sa->res[i].ev_next != NULL)
			event_free(sa->res[i].ev_next);
		informer_free(sa->res[i].inf);
	}
	if (sa->ev_publish != NULL)
		event_free(sa->ev_publish);
	kube_http_free(sa->http);
	svctab_unref(sa->current);
	svctab_memo_free(sa->memo);
	kube_creds_clear(&sa->creds);
	free(sa);
}

/* Whether both lists have completed once. */
int
source_api_synced(const struct source_api *sa)
{
	return (sa != NULL && sa_synced(sa));
}
