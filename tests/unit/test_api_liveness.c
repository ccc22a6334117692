/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for how the API client notices a dead or silent server and how it
 * comes back: the idle bound of watch/kube_http.c against a loopback server
 * that sends a response's headers and then nothing (the error names the
 * server and says so), and watch/informer.c's relist after a 410, which an
 * outage's back-off must not delay while repeated 410s still back off.
 */
#include "config.h"

#include <sys/socket.h>

#include <netinet/in.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <event2/event.h>
#include <event2/http.h>

#include "base/clock.h"
#include "watch/informer.h"
#include "watch/kube_http.h"
#include "watch/kubeconfig.h"

/* ------------------------------------------------ the idle bound (kube_http) */

struct silent {
	struct event_base	*base;
	struct evhttp		*http;
	int			 port;
	bool			 done;
	long			 status;
	char			 error[1024];
	long long		 done_ms;
};

static struct silent	 sl;

/* Every request: 200 with chunked encoding, then silence. */
static void
silent_handle(struct evhttp_request *req, void *arg)
{
	evhttp_send_reply_start(req, 200, "OK");
}

static int
silent_data(const char *buf, size_t len, long status, void *arg)
{
	return (0);
}

static void
silent_done(const struct kube_http_result *r, void *arg)
{
	sl.done = true;
	sl.status = r->status;
	snprintf(sl.error, sizeof(sl.error), "%s", r->error != NULL ?
	    r->error : "");
	sl.done_ms = clock_mono_ms();
	event_base_loopbreak(sl.base);
}

static void
silent_start(struct kube_creds *creds)
{
	struct evhttp_bound_socket	*bs;
	struct sockaddr_storage		 ss;
	socklen_t			 len = sizeof(ss);
	char				 url[64], err[256];

	memset(&sl, 0, sizeof(sl));
	cr_assert_not_null(sl.base = event_base_new());
	cr_assert_not_null(sl.http = evhttp_new(sl.base));
	evhttp_set_gencb(sl.http, silent_handle, NULL);
	cr_assert_not_null(bs = evhttp_bind_socket_with_handle(sl.http,
	    "127.0.0.1", 0));
	cr_assert_eq(getsockname(evhttp_bound_socket_get_fd(bs),
	    (struct sockaddr *)&ss, &len), 0);
	sl.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", sl.port);
	cr_assert_eq(kubeconfig_resolve(NULL, NULL, url, "/nonexistent",
	    creds, 0, err, sizeof(err)), 0, "%s", err);
}

Test(kube_http, idle_bound_ends_a_transfer_after_headers_and_silence,
    .timeout = 15)
{
	struct kube_http_cb	 cb = { silent_data, silent_done, NULL };
	struct kube_creds	 creds;
	struct kube_http	*kh;
	struct kube_http_req	*req;
	char			 err[256], want[128];
	long long		 t0;

	silent_start(&creds);
	cr_assert_not_null(kh = kube_http_new(sl.base, &creds, err,
	    sizeof(err)), "%s", err);
	t0 = clock_mono_ms();
	cr_assert_not_null(req = kube_http_get(kh, "/api/v1/services?watch=1",
	    60000, 1, &cb, err, sizeof(err)), "%s", err);
	while (!sl.done)
		event_base_loop(sl.base, EVLOOP_ONCE);
	cr_assert_eq(sl.status, 200);
	snprintf(want, sizeof(want), "http://127.0.0.1:%d: received nothing "
	    "for 1 s", sl.port);
	cr_assert(strstr(sl.error, want) != NULL, "error: %s", sl.error);
	cr_assert_geq(sl.done_ms - t0, 1000);
	cr_assert_lt(sl.done_ms - t0, 3000);
	kube_http_free(kh);
	kube_creds_clear(&creds);
	evhttp_free(sl.http);
	event_base_free(sl.base);
}

/* ---------------------------------------------- relists after a 410 (informer) */

static double
zero(void *arg)
{
	return (0);
}

static const char svc_list[] =
    "{\"kind\":\"ServiceList\",\"apiVersion\":\"v1\",\"metadata\":{"
    "\"resourceVersion\":\"100\"},\"items\":[]}";

static const char expired[] =
    "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":"
    "\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"too old "
    "resource version: 100 (2000)\",\"reason\":\"Expired\",\"code\":410}}\n";

/* An informer that has listed (at 0 ms) and is about to watch. */
static struct informer *
listed_informer(void)
{
	struct informer_config	 ic = { INFORMER_SERVICES, NULL, zero, NULL };
	struct informer_result	 ok = { 200, NULL, 0, false };
	struct informer_request	 req;
	struct informer_next	 next;
	struct informer		*inf;

	cr_assert_not_null(inf = informer_new(&ic));
	cr_assert_eq(informer_request(inf, INFORMER_LIST, &req), 0);
	free(req.path);
	informer_begin(inf, INFORMER_LIST, 0);
	cr_assert_eq(informer_feed(inf, 200, svc_list, strlen(svc_list)), 0);
	informer_done(inf, &ok, 0, &next);
	cr_assert_eq(next.step, INFORMER_WATCH);
	return (inf);
}

/* The driver asks for a watch before it starts one. */
static void
watch_request(struct informer *inf)
{
	struct informer_request	 req;

	cr_assert_eq(informer_request(inf, INFORMER_WATCH, &req), 0);
	free(req.path);
}

Test(informer, relist_after_an_outage_is_not_delayed_by_its_back_off)
{
	struct informer		*inf = listed_informer();
	struct informer_result	 refused = { 0, "Connection refused", 0,
				    false };
	struct informer_result	 stream = { 200, NULL, 0, false };
	struct informer_result	 gone = { 410, NULL, 0, false };
	struct informer_next	 next;
	long long		 now = 1000;
	int			 i;

	/* Ten failed watches: the back-off reaches its cap. */
	for (i = 0; i < 10; i++) {
		watch_request(inf);
		informer_begin(inf, INFORMER_WATCH, now);
		informer_done(inf, &refused, now, &next);
		cr_assert_eq(next.step, INFORMER_WATCH);
		now += next.delay_ms;
	}
	cr_assert_eq(next.delay_ms, BACKOFF_CAP_MS);
	/* The server is back, with a newer history: relist at once. */
	watch_request(inf);
	informer_begin(inf, INFORMER_WATCH, now);
	cr_assert_eq(informer_feed(inf, 200, expired, strlen(expired)), -1);
	informer_done(inf, &stream, now + 50, &next);
	cr_assert_eq(next.step, INFORMER_LIST);
	cr_assert_eq(next.delay_ms, 0);
	/* A 410 again at once: now it backs off, on its own schedule. */
	watch_request(inf);
	informer_begin(inf, INFORMER_WATCH, now + 100);
	informer_done(inf, &gone, now + 100, &next);
	cr_assert_eq(next.step, INFORMER_LIST);
	cr_assert_eq(next.delay_ms, 1600);
	informer_free(inf);
}
