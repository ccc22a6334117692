/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for watch/informer.c without a network: the requests it asks for,
 * list pages and relists (a relist is a replace: what is missing was
 * deleted), the watch stream split at every byte and coalesced, BOOKMARK
 * and ERROR events, undecodable lines, objects that fail to decode, and
 * the back-off sequence on an injected clock and random source.  Then the
 * whole API source (kube_http + source_api) against an in-process HTTP
 * server on the loopback (libevent's evhttp), with chunked watch streams.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/wait.h>

#include <netinet/in.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "base/clock.h"
#include "base/svc.h"
#include "conf/conf.h"
#include "watch/informer.h"
#include "watch/kube_http.h"
#include "watch/kubeconfig.h"
#include "watch/source.h"

struct tctx {
	double	r;		/* what rand01 returns */
	int	changes;	/* on_change calls */
};

static double
fixed_rand(void *arg)
{
	return (((struct tctx *)arg)->r);
}

static void
count_change(struct informer *inf, void *arg)
{
	((struct tctx *)arg)->changes++;
}

static struct informer *
new_informer(enum informer_resource res, struct tctx *t)
{
	struct informer_config	 ic = { res, count_change, fixed_rand, t };
	struct informer		*inf;

	cr_assert_not_null(inf = informer_new(&ic));
	return (inf);
}

static char *
svc_obj(const char *name, const char *ip, int port, const char *rv)
{
	static char	 buf[8][1024];
	static int	 n;
	char		*b = buf[n++ % 8];

	snprintf(b, sizeof(buf[0]),
	    "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"default\","
	    "\"resourceVersion\":\"%s\",\"managedFields\":[{\"manager\":"
	    "\"kubectl\",\"fieldsV1\":{\"f:spec\":{\"f:ports\":{\"k:{\\\"port"
	    "\\\":80}\":{}}}}}]},\"spec\":{\"clusterIP\":\"%s\",\"ports\":"
	    "[{\"name\":\"http\",\"protocol\":\"TCP\",\"port\":%d,"
	    "\"targetPort\":8080}],\"type\":\"ClusterIP\"}}",
	    name, rv, ip, port);
	return (b);
}

static char *
event(const char *type, const char *obj)
{
	static char	 buf[8][1200];
	static int	 n;
	char		*b = buf[n++ % 8];

	snprintf(b, sizeof(buf[0]), "{\"type\":\"%s\",\"object\":%s}\n", type,
	    obj);
	return (b);
}

static char *
list_body(const char *rv, const char *cont, const char *items)
{
	static char	 buf[8192];

	snprintf(buf, sizeof(buf), "{\"kind\":\"ServiceList\",\"apiVersion\":"
	    "\"v1\",\"metadata\":{\"resourceVersion\":\"%s\"%s%s%s},"
	    "\"items\":[%s]}", rv, cont != NULL ? ",\"continue\":\"" : "",
	    cont != NULL ? cont : "", cont != NULL ? "\"" : "", items);
	return (buf);
}

static void
request(struct informer *inf, enum informer_step step, char *path,
    size_t len)
{
	struct informer_request	 req;

	cr_assert_eq(informer_request(inf, step, &req), 0);
	snprintf(path, len, "%s", req.path);
	free(req.path);
}

/* One whole list request answered with status and body. */
static void
do_list(struct informer *inf, long status, const char *body, long long now,
    struct informer_next *next)
{
	struct informer_result	 r = { status, NULL, 0, false };
	char			 path[1024];

	request(inf, INFORMER_LIST, path, sizeof(path));
	informer_begin(inf, INFORMER_LIST, now);
	informer_feed(inf, status, body, strlen(body));
	informer_done(inf, &r, now, next);
}

static void
collect_keys(const char *key, struct svc *svc, struct slice *sl, void *arg)
{
	char	*out = arg;

	strcat(out, key);
	strcat(out, " ");
}

static const char *
keys(struct informer *inf)
{
	static char	 buf[4096];

	buf[0] = '\0';
	informer_walk(inf, collect_keys, buf);
	return (buf);
}

static void
port_of(const char *key, struct svc *svc, struct slice *sl, void *arg)
{
	if (svc != NULL && svc->n_ports > 0)
		*(int *)arg += svc->ports[0].port;
}

static int
sum_ports(struct informer *inf)
{
	int	 sum = 0;

	informer_walk(inf, port_of, &sum);
	return (sum);
}

/* A synced services informer holding web (port 80) and db (5432), RV 100. */
static struct informer *
synced_informer(struct tctx *t)
{
	struct informer		*inf = new_informer(INFORMER_SERVICES, t);
	struct informer_next	 next;
	char			 items[4096];

	snprintf(items, sizeof(items), "%s,%s",
	    svc_obj("web", "10.96.0.10", 80, "90"),
	    svc_obj("db", "10.96.0.11", 5432, "95"));
	do_list(inf, 200, list_body("100", NULL, items), 0, &next);
	cr_assert_eq(next.step, INFORMER_WATCH);
	cr_assert_eq(next.delay_ms, 0);
	return (inf);
}

TestSuite(informer);

Test(informer, first_list_request_is_paged_from_the_watch_cache)
{
	struct tctx		 t = { 0, 0 };
	struct informer		*inf = new_informer(INFORMER_SERVICES, &t);
	struct informer		*sl = new_informer(INFORMER_ENDPOINT_SLICES,
				    &t);
	char			 path[1024];

	request(inf, INFORMER_LIST, path, sizeof(path));
	cr_assert_str_eq(path, "/api/v1/services?limit=500&resourceVersion=0"
	    "&labelSelector=%21service.kubernetes.io%2Fservice-proxy-name"
	    "&fieldSelector=spec.clusterIP%21%3DNone");
	request(sl, INFORMER_LIST, path, sizeof(path));
	cr_assert_str_eq(path, "/apis/discovery.k8s.io/v1/endpointslices?"
	    "limit=500&resourceVersion=0"
	    "&labelSelector=%21service.kubernetes.io%2Fheadless");
	informer_free(inf);
	informer_free(sl);
}

Test(informer, list_then_watch_from_the_list_resource_version)
{
	struct tctx		 t = { 0.5, 0 };
	struct informer		*inf = synced_informer(&t);
	struct informer_request	 req;

	cr_assert(informer_synced(inf));
	cr_assert_eq(informer_count(inf), 2);
	cr_assert_str_eq(keys(inf), "default/db default/web ");
	cr_assert_str_eq(informer_resource_version(inf), "100");
	cr_assert_eq(t.changes, 1);
	cr_assert_eq(informer_request(inf, INFORMER_WATCH, &req), 0);
	/* rand 0.5: 300 + 0.5 * 301 = 450 s, bounded 30 s beyond. */
	cr_assert_str_eq(req.path, "/api/v1/services?watch=1&"
	    "resourceVersion=100&allowWatchBookmarks=true&timeoutSeconds=450"
	    "&labelSelector=%21service.kubernetes.io%2Fservice-proxy-name"
	    "&fieldSelector=spec.clusterIP%21%3DNone");
	cr_assert_eq(req.timeout_ms, 480000);
	cr_assert_eq(req.stall_s, 0);
	free(req.path);
	informer_free(inf);
}

Test(informer, watch_timeout_stays_within_300_to_600_seconds)
{
	struct tctx		 t = { 0, 0 };
	struct informer		*inf = new_informer(INFORMER_SERVICES, &t);
	char			 path[1024];

	request(inf, INFORMER_WATCH, path, sizeof(path));
	cr_assert(strstr(path, "timeoutSeconds=300&") != NULL, "%s", path);
	t.r = 0.9999999;
	request(inf, INFORMER_WATCH, path, sizeof(path));
	cr_assert(strstr(path, "timeoutSeconds=600&") != NULL, "%s", path);
	informer_free(inf);
}

/* The stream every split test feeds: 4 events, last RV 205. */
static void
stream(char *buf, size_t len)
{
	snprintf(buf, len, "%s%s%s%s%s",
	    event("ADDED", svc_obj("cache", "10.96.0.12", 6379, "201")),
	    event("MODIFIED", svc_obj("web", "10.96.0.10", 81, "202")),
	    event("BOOKMARK", "{\"kind\":\"Service\",\"apiVersion\":\"v1\","
	    "\"metadata\":{\"resourceVersion\":\"203\",\"creationTimestamp\":"
	    "null},\"spec\":{},\"status\":{\"loadBalancer\":{}}}"),
	    event("DELETED", svc_obj("db", "10.96.0.11", 5432, "204")),
	    event("BOOKMARK", "{\"metadata\":{\"resourceVersion\":\"205\"}}"));
}

static void
check_stream_applied(struct informer *inf)
{
	cr_assert_str_eq(keys(inf), "default/cache default/web ");
	cr_assert_eq(sum_ports(inf), 6379 + 81);
	cr_assert_str_eq(informer_resource_version(inf), "205");
}

Test(informer, events_split_at_every_byte_position)
{
	char			 s[8192];
	size_t			 len, cut;
	struct tctx		 t = { 0, 0 };
	struct informer		*inf;

	stream(s, sizeof(s));
	len = strlen(s);
	for (cut = 0; cut <= len; cut++) {
		inf = synced_informer(&t);
		informer_begin(inf, INFORMER_WATCH, 0);
		cr_assert_eq(informer_feed(inf, 200, s, cut), 0);
		cr_assert_eq(informer_feed(inf, 200, s + cut, len - cut), 0);
		check_stream_applied(inf);
		informer_free(inf);
	}
}

Test(informer, events_fed_one_byte_at_a_time_and_all_at_once)
{
	char			 s[8192];
	size_t			 len, i;
	struct tctx		 t = { 0, 0 };
	struct informer		*inf;

	stream(s, sizeof(s));
	len = strlen(s);
	inf = synced_informer(&t);
	informer_begin(inf, INFORMER_WATCH, 0);
	for (i = 0; i < len; i++)
		cr_assert_eq(informer_feed(inf, 200, s + i, 1), 0);
	check_stream_applied(inf);
	informer_free(inf);

	t.changes = 0;
	inf = synced_informer(&t);
	informer_begin(inf, INFORMER_WATCH, 0);
	cr_assert_eq(informer_feed(inf, 200, s, len), 0);
	check_stream_applied(inf);
	/* List, ADDED, MODIFIED, DELETED; bookmarks change nothing. */
	cr_assert_eq(t.changes, 4);
	informer_free(inf);
}

Test(informer, bookmark_only_moves_the_resource_version)
{
	struct tctx		 t = { 0, 0 };
	struct informer		*inf = synced_informer(&t);
	const char		*bm = event("BOOKMARK", "{\"kind\":"
				    "\"EndpointSlice\",\"metadata\":{"
				    "\"resourceVersion\":\"999\"},"
				    "\"addressType\":\"\",\"endpoints\":null,"
				    "\"ports\":null}");

	informer_begin(inf, INFORMER_WATCH, 0);
	cr_assert_eq(informer_feed(inf, 200, bm, strlen(bm)), 0);
	cr_assert_str_eq(informer_resource_version(inf), "999");
	cr_assert_eq(informer_count(inf), 2);
	cr_assert_eq(t.changes, 1);
	informer_free(inf);
}

Test(informer, deleted_removes_and_the_stream_end_rewatches_from_last_rv)
{
	struct tctx		 t = { 0, 0 };
	struct informer		*inf = synced_informer(&t);
	struct informer_result	 r = { 200, NULL, 0, false };
	struct informer_next	 next;
	const char		*ev = event("DELETED",
				    svc_obj("web", "10.96.0.10", 80, "150"));
	char			 path[1024];

	informer_begin(inf, INFORMER_WATCH, 0);
	cr_assert_eq(informer_feed(inf, 200, ev, strlen(ev)), 0);
	cr_assert_str_eq(keys(inf), "default/db ");
	/* Ended by the server 5 minutes later: watch again at once. */
	informer_done(inf, &r, 300000, &next);
	cr_assert_eq(next.step, INFORMER_WATCH);
	cr_assert_eq(next.delay_ms, 0);
	request(inf, INFORMER_WATCH, path, sizeof(path));
	cr_assert(strstr(path, "resourceVersion=150&") != NULL, "%s", path);
	informer_free(inf);
}

Test(informer, reset_stream_with_events_rewatches_at_once)
{
	struct tctx		 t = { 0, 0 };
	struct informer		*inf = synced_informer(&t);
	struct informer_result	 r = { 200, "Connection reset by peer", 0, false };
	struct informer_next	 next;
	const char		*ev = event("ADDED",
				    svc_obj("x", "10.96.0.20", 80, "101"));

	informer_begin(inf, INFORMER_WATCH, 1000);
	cr_assert_eq(informer_feed(inf, 200, ev, strlen(ev)), 0);
	/* A torn half event at the end is dropped, not an error. */
	cr_assert_eq(informer_feed(inf, 200, ev, 20), 0);
	informer_done(inf, &r, 1100, &next);
	cr_assert_eq(next.step, INFORMER_WATCH);
	cr_assert_eq(next.delay_ms, 0);
	cr_assert_eq(informer_count(inf), 3);
	informer_free(inf);
}

Test(informer, short_empty_watch_backs_off_and_relists)
{
	struct tctx		 t = { 0, 0 };
	struct informer		*inf = synced_informer(&t);
	struct informer_result	 r = { 200, NULL, 0, false };
	struct informer_next	 next;
	char			 path[1024];

	informer_begin(inf, INFORMER_WATCH, 1000);
	informer_done(inf, &r, 1200, &next);
	cr_assert_eq(next.step, INFORMER_LIST);
	cr_assert_eq(next.delay_ms, 800);
	/* A relist from the last RV: unpaged (with a limit it means Exact). */
	request(inf, INFORMER_LIST, path, sizeof(path));
	cr_assert_str_eq(path, "/api/v1/services?resourceVersion=100"
	    "&labelSelector=%21service.kubernetes.io%2Fservice-proxy-name"
	    "&fieldSelector=spec.clusterIP%21%3DNone");
	/* A quiet one that lasted a second is a normal end. */
	informer_begin(inf, INFORMER_WATCH, 10000);
	informer_done(inf, &r, 11000, &next);
	cr_assert_eq(next.step, INFORMER_WATCH);
	cr_assert_eq(next.delay_ms, 0);
	informer_free(inf);
}

Test(informer, error_410_relists_at_once_then_backs_off_when_repeated)
{
	struct tctx		 t = { 0, 0 };
	struct informer		*inf = synced_informer(&t);
	struct informer_result	 r = { 200, NULL, 0, false };
	struct informer_next	 next;
	const char		*ev = event("ERROR", "{\"kind\":\"Status\","
				    "\"apiVersion\":\"v1\",\"metadata\":{},"
				    "\"status\":\"Failure\",\"message\":"
				    "\"too old resource version: 100 (150)\","
				    "\"reason\":\"Expired\",\"code\":410}");
	const char		*after = event("ADDED",
				    svc_obj("late", "10.96.0.30", 80, "160"));
	char			 both[4096];

	snprintf(both, sizeof(both), "%s%s", ev, after);
	informer_begin(inf, INFORMER_WATCH, 1000);
	cr_assert_eq(informer_feed(inf, 200, both, strlen(both)), -1);
	/* Nothing after the ERROR is applied. */
	cr_assert_eq(informer_count(inf), 2);
	informer_done(inf, &r, 5000, &next);
	cr_assert_eq(next.step, INFORMER_LIST);
	cr_assert_eq(next.delay_ms, 0);

	informer_begin(inf, INFORMER_WATCH, 6000);
	cr_assert_eq(informer_feed(inf, 200, ev, strlen(ev)), -1);
	informer_done(inf, &r, 6100, &next);
	cr_assert_eq(next.step, INFORMER_LIST);
	cr_assert_eq(next.delay_ms, 1600);
	informer_free(inf);
}

Test(informer, error_500_event_backs_off_and_relists)
{
	struct tctx		 t = { 0, 0 };
	struct informer		*inf = synced_informer(&t);
	struct informer_result	 r = { 200, NULL, 0, false };
	struct informer_next	 next;
	const char		*ev = event("ERROR", "{\"kind\":\"Status\","
				    "\"code\":500,\"reason\":\"InternalError\","
				    "\"message\":\"etcd went away\"}");

	informer_begin(inf, INFORMER_WATCH, 0);
	cr_assert_eq(informer_feed(inf, 200, ev, strlen(ev)), -1);
	informer_done(inf, &r, 2000, &next);
	cr_assert_eq(next.step, INFORMER_LIST);
	cr_assert_eq(next.delay_ms, 800);
	informer_free(inf);
}

Test(informer, undecodable_line_ends_the_watch)
{
	struct tctx		 t = { 0, 0 };
	struct informer		*inf = synced_informer(&t);
	struct informer_result	 r = { 200, NULL, 0, false };
	struct informer_next	 next;
	const char		*bad = "{\"type\":\"ADDED\",\"object\":{]}\n";

	informer_begin(inf, INFORMER_WATCH, 0);
	cr_assert_eq(informer_feed(inf, 200, bad, strlen(bad)), -1);
	/* Nothing more is taken once stopped. */
	cr_assert_eq(informer_feed(inf, 200, "\n", 1), -1);
	informer_done(inf, &r, 5000, &next);
	cr_assert_eq(next.step, INFORMER_LIST);
	cr_assert_gt(next.delay_ms, 0);
	cr_assert_eq(informer_count(inf), 2);
	informer_free(inf);
}

Test(informer, invalid_object_is_skipped_and_the_stream_goes_on)
{
	struct tctx		 t = { 0, 0 };
	struct informer		*inf = synced_informer(&t);
	char			 s[4096];

	/* web gets an impossible port: it leaves the cache (logged). */
	snprintf(s, sizeof(s), "%s%s",
	    event("MODIFIED", svc_obj("web", "10.96.0.10", 70000, "120")),
	    event("ADDED", svc_obj("next", "10.96.0.40", 80, "121")));
	informer_begin(inf, INFORMER_WATCH, 0);
	cr_assert_eq(informer_feed(inf, 200, s, strlen(s)), 0);
	cr_assert_str_eq(keys(inf), "default/db default/next ");
	cr_assert_str_eq(informer_resource_version(inf), "121");
	informer_free(inf);
}

Test(informer, oversized_line_ends_the_watch)
{
	struct tctx		 t = { 0, 0 };
	struct informer		*inf = synced_informer(&t);
	static char		 chunk[1024 * 1024];
	size_t			 i;
	int			 rc = 0;

	memset(chunk, ' ', sizeof(chunk));
	chunk[0] = '{';
	informer_begin(inf, INFORMER_WATCH, 0);
	for (i = 0; i < 20 && rc == 0; i++)
		rc = informer_feed(inf, 200, chunk, sizeof(chunk));
	cr_assert_eq(rc, -1);
	cr_assert_leq(i, 17);
	informer_free(inf);
}

Test(informer, relist_replaces_the_cache)
{
	struct tctx		 t = { 0, 0 };
	struct informer		*inf = synced_informer(&t);
	struct informer_next	 next;

	/* db vanished while we were away, web changed, new appeared. */
	do_list(inf, 200, list_body("300", NULL, svc_obj("web", "10.96.0.10",
	    8080, "250")), 10000, &next);
	cr_assert_str_eq(keys(inf), "default/web ");
	cr_assert_eq(sum_ports(inf), 8080);
	cr_assert_str_eq(informer_resource_version(inf), "300");
	cr_assert_eq(t.changes, 2);
	informer_free(inf);
}

Test(informer, paged_list_keeps_the_old_cache_until_the_last_page)
{
	struct tctx		 t = { 0, 0 };
	struct informer		*inf = synced_informer(&t);
	struct informer_result	 r410 = { 410, NULL, 0, false };
	struct informer_next	 next;
	char			 path[1024];
	const char		*st = "{\"kind\":\"Status\",\"apiVersion\":\"v1\","
				    "\"status\":\"Failure\",\"message\":\"too "
				    "old\",\"reason\":\"Expired\",\"code\":410}";

	/* The relist at RV 100 fails: compacted.  List the current state. */
	request(inf, INFORMER_LIST, path, sizeof(path));
	informer_begin(inf, INFORMER_LIST, 0);
	informer_feed(inf, 410, st, strlen(st));
	informer_done(inf, &r410, 0, &next);
	cr_assert_eq(next.step, INFORMER_LIST);
	cr_assert_eq(next.delay_ms, 0);
	request(inf, INFORMER_LIST, path, sizeof(path));
	cr_assert(strncmp(path, "/api/v1/services?limit=500&labelSelector",
	    40) == 0, "%s", path);

	do_list(inf, 200, list_body("400", "tok%1", svc_obj("a", "10.96.0.1",
	    1, "1")), 0, &next);
	cr_assert_eq(next.step, INFORMER_LIST);
	cr_assert_eq(next.delay_ms, 0);
	cr_assert_str_eq(keys(inf), "default/db default/web ");
	request(inf, INFORMER_LIST, path, sizeof(path));
	cr_assert(strstr(path, "?limit=500&continue=tok%251&labelSelector=") !=
	    NULL, "%s", path);
	cr_assert(strstr(path, "resourceVersion") == NULL, "%s", path);

	do_list(inf, 200, list_body("400", NULL, svc_obj("b", "10.96.0.2", 2,
	    "2")), 0, &next);
	cr_assert_eq(next.step, INFORMER_WATCH);
	cr_assert_str_eq(keys(inf), "default/a default/b ");
	cr_assert_str_eq(informer_resource_version(inf), "400");
	informer_free(inf);
}

Test(informer, field_selector_falls_back_when_unsupported)
{
	struct tctx		 t = { 0, 0 };
	struct informer		*inf = new_informer(INFORMER_SERVICES, &t);
	struct informer_next	 next;
	char			 path[1024], items[4096];
	const char		*st = "{\"kind\":\"Status\",\"apiVersion\":\"v1\","
				    "\"status\":\"Failure\",\"message\":\"field "
				    "label not supported: spec.clusterIP\","
				    "\"reason\":\"BadRequest\",\"code\":400}";

	do_list(inf, 400, st, 0, &next);
	cr_assert_eq(next.step, INFORMER_LIST);
	cr_assert_eq(next.delay_ms, 0);
	cr_assert_not(informer_uses_field_selector(inf));
	request(inf, INFORMER_LIST, path, sizeof(path));
	cr_assert(strstr(path, "fieldSelector") == NULL, "%s", path);
	/* Headless services are dropped here instead. */
	snprintf(items, sizeof(items), "%s,%s",
	    svc_obj("web", "10.96.0.10", 80, "1"),
	    svc_obj("headless", "None", 80, "2"));
	do_list(inf, 200, list_body("5", NULL, items), 0, &next);
	cr_assert_str_eq(keys(inf), "default/web ");
	informer_free(inf);
}

Test(informer, failed_lists_back_off_and_honour_retry_after)
{
	struct tctx		 t = { 0, 0 };
	struct informer		*inf = new_informer(INFORMER_SERVICES, &t);
	struct informer_result	 refused = { 0, "Connection refused", 0, false };
	struct informer_result	 busy = { 429, NULL, 7, false };
	struct informer_next	 next;

	informer_begin(inf, INFORMER_LIST, 0);
	informer_done(inf, &refused, 0, &next);
	cr_assert_eq(next.step, INFORMER_LIST);
	cr_assert_eq(next.delay_ms, 800);
	informer_begin(inf, INFORMER_LIST, 800);
	informer_done(inf, &busy, 800, &next);
	cr_assert_eq(next.delay_ms, 7000);
	cr_assert_not(informer_synced(inf));
	informer_free(inf);
}

Test(informer, refused_watch_retries_the_watch_without_relisting)
{
	struct tctx		 t = { 0, 0 };
	struct informer		*inf = synced_informer(&t);
	struct informer_result	 refused = { 0, "Connection refused", 0, false };
	struct informer_result	 forbidden = { 403, NULL, 0, false };
	struct informer_next	 next;

	informer_begin(inf, INFORMER_WATCH, 0);
	informer_done(inf, &refused, 0, &next);
	cr_assert_eq(next.step, INFORMER_WATCH);
	cr_assert_eq(next.delay_ms, 800);
	informer_begin(inf, INFORMER_WATCH, 800);
	informer_done(inf, &forbidden, 800, &next);
	cr_assert_eq(next.step, INFORMER_LIST);
	cr_assert_eq(next.delay_ms, 1600);
	informer_free(inf);
}

Test(informer, list_that_is_not_json_backs_off)
{
	struct tctx		 t = { 0, 0 };
	struct informer		*inf = new_informer(INFORMER_SERVICES, &t);
	struct informer_next	 next;

	do_list(inf, 200, "<html>proxy error</html>", 0, &next);
	cr_assert_eq(next.step, INFORMER_LIST);
	cr_assert_eq(next.delay_ms, 800);
	do_list(inf, 200, "{\"kind\":\"Status\"}", 1000, &next);
	cr_assert_eq(next.delay_ms, 1600);
	cr_assert_not(informer_synced(inf));
	informer_free(inf);
}

Test(informer, managed_fields_are_not_kept)
{
	struct tctx		 t = { 0, 0 };
	struct informer		*inf = synced_informer(&t);
	char			 buf[64] = "";

	informer_walk(inf, collect_keys, buf);
	cr_assert_str_eq(buf, "default/db default/web ");
	informer_free(inf);
}

Test(informer, list_items_split_at_every_byte_with_metadata_after_items)
{
	struct tctx		 t = { 0, 0 };
	struct informer		*inf;
	struct informer_result	 ok = { 200, NULL, 0, false };
	struct informer_next	 next;
	char			 body[4096], path[1024];
	size_t			 len, cut;

	/* JSON has no key order: metadata may follow the items. */
	snprintf(body, sizeof(body), "{\"kind\":\"ServiceList\",\"items\":"
	    "[%s,%s],\"apiVersion\":\"v1\",\"metadata\":{"
	    "\"resourceVersion\":\"100\"}}", svc_obj("web", "10.96.0.10", 80,
	    "90"), svc_obj("db", "10.96.0.11", 5432, "95"));
	len = strlen(body);
	for (cut = 0; cut <= len; cut++) {
		inf = new_informer(INFORMER_SERVICES, &t);
		request(inf, INFORMER_LIST, path, sizeof(path));
		informer_begin(inf, INFORMER_LIST, 0);
		cr_assert_eq(informer_feed(inf, 200, body, cut), 0);
		cr_assert_eq(informer_feed(inf, 200, body + cut, len - cut), 0);
		/* Not in the cache before the list is whole. */
		cr_assert_eq(informer_count(inf), 0);
		informer_done(inf, &ok, 0, &next);
		cr_assert_eq(next.step, INFORMER_WATCH, "cut %zu", cut);
		cr_assert_str_eq(keys(inf), "default/db default/web ");
		cr_assert_eq(sum_ports(inf), 80 + 5432);
		cr_assert_str_eq(informer_resource_version(inf), "100");
		informer_free(inf);
	}
}

Test(informer, truncated_or_bad_list_leaves_the_cache_in_force)
{
	struct tctx		 t = { 0, 0 };
	struct informer		*inf = synced_informer(&t);
	struct informer_next	 next;
	char			 body[8192];
	size_t			 cut;
	const char		*bad[] = {
		"{\"metadata\":{\"resourceVersion\":\"300\"},\"items\":"
		    "[{\"metadata\":{\"name\":\"x\"}},[[[",
		"{\"items\":[]}",			/* no resourceVersion */
		"{\"kind\":\"Status\",\"code\":500}",
	};
	size_t			 i;

	/* The new list has "new" in it, and lacks db: cut at every byte. */
	snprintf(body, sizeof(body), "%s", list_body("300", NULL,
	    svc_obj("new", "10.96.0.12", 81, "299")));
	for (cut = 0; cut + 1 < strlen(body); cut++) {
		char	 part[8192];

		snprintf(part, sizeof(part), "%.*s", (int)cut, body);
		do_list(inf, 200, part, 1000, &next);
		cr_assert_eq(next.step, INFORMER_LIST, "cut %zu", cut);
		cr_assert_gt(next.delay_ms, 0);
		cr_assert_str_eq(keys(inf), "default/db default/web ");
		cr_assert_str_eq(informer_resource_version(inf), "100");
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		do_list(inf, 200, bad[i], 1000, &next);
		cr_assert_eq(next.step, INFORMER_LIST);
		cr_assert_str_eq(keys(inf), "default/db default/web ");
	}
	cr_assert_eq(t.changes, 1);
	informer_free(inf);
}

static void
spec_of(const char *key, struct svc *svc, struct slice *sl, void *arg)
{
	struct svc	**out = arg;

	cr_assert_not_null(svc);
	cr_assert_null(sl);
	out[strcmp(key, "default/db") == 0 ? 0 : 1] = svc;
}

Test(informer, services_are_cached_decoded_and_equal_specs_kept)
{
	struct tctx		 t = { 0, 0 };
	struct informer		*inf = synced_informer(&t);
	struct informer_next	 next;
	struct svc		*before[2], *after[2];
	char			 items[4096];

	informer_walk(inf, spec_of, before);
	cr_assert_str_eq(before[0]->name, "db");
	cr_assert_eq(before[0]->ports[0].port, 5432);
	/* A relist: db unchanged but for its resourceVersion, web changed. */
	snprintf(items, sizeof(items), "%s,%s",
	    svc_obj("web", "10.96.0.10", 8080, "190"),
	    svc_obj("db", "10.96.0.11", 5432, "195"));
	do_list(inf, 200, list_body("200", NULL, items), 0, &next);
	informer_walk(inf, spec_of, after);
	cr_assert_eq(after[0], before[0], "an equal spec is kept");
	cr_assert_neq(after[1], before[1]);
	cr_assert_eq(after[1]->ports[0].port, 8080);
	informer_free(inf);
}

Test(backoff, grows_to_the_cap_with_bounded_jitter_and_resets)
{
	struct backoff	 b = { 0, 0 };
	long long	 want[] = { 800, 1600, 3200, 6400, 12800, 25600, 30000,
			    30000 };
	long long	 d, now = 0;
	size_t		 i;

	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		now += 1000;
		cr_assert_eq(backoff_next(&b, now, 0), want[i], "step %zu", i);
	}
	/* Jitter 1.0: up to twice the base, never more. */
	d = backoff_next(&b, now += 1000, 0.999);
	cr_assert(d >= 30000 && d < 60000, "%lld", d);
	d = backoff_next(&b, now += 1000, 0.5);
	cr_assert_eq(d, 45000);
	cr_assert_not(backoff_quiet(&b, now + BACKOFF_RESET_MS));
	cr_assert(backoff_quiet(&b, now + BACKOFF_RESET_MS + 1));
	cr_assert_eq(backoff_next(&b, now + BACKOFF_RESET_MS + 1, 0), 800);
	cr_assert_eq(backoff_next(&b, now + BACKOFF_RESET_MS + 2, 0.25), 2000);
}

/* ------------------------------------------- loopback: the whole source */

/*
 * A tiny API server on the same event base: lists answer at once, watches
 * stay open (chunked) and get events pushed by the test.
 */
struct fake_api {
	struct event_base	*base;
	struct evhttp		*http;
	int			 port;
	struct evhttp_request	*watch[2];	/* services, slices */
	int			 n_lists[2];
	int			 slice_list_delay_ms;
	int			 big_slices;	/* the slice list: this many */
	size_t			 big_bytes;	/* its size */
	struct event		*ev_tick;
	size_t			 turn_bytes, max_turn_bytes, total_bytes;
	bool			 done;
	struct svctab		*tables[8];
	int			 n_tables;
	int			 want_tables;
	long long		 table_ms[8];
	struct event		*ev_timeout;
};

static struct fake_api	 fa;

static const char *svc_list =
    "{\"kind\":\"ServiceList\",\"apiVersion\":\"v1\",\"metadata\":{"
    "\"resourceVersion\":\"10\"},\"items\":[{\"metadata\":{\"name\":\"web\","
    "\"namespace\":\"default\",\"resourceVersion\":\"5\"},\"spec\":{"
    "\"clusterIP\":\"10.96.0.10\",\"ports\":[{\"name\":\"http\",\"port\":80,"
    "\"protocol\":\"TCP\"}]}}]}";

#define SLICE_OBJ_FMT \
    "{\"kind\":\"EndpointSlice\",\"apiVersion\":\"discovery.k8s.io/v1\"," \
    "\"metadata\":{\"name\":\"web-1\",\"namespace\":\"default\"," \
    "\"resourceVersion\":\"%s\",\"labels\":{\"kubernetes.io/service-name\":" \
    "\"web\"}},\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"http\"," \
    "\"port\":8080,\"protocol\":\"TCP\"}],\"endpoints\":[%s]}"

static void
fa_send_json(struct evhttp_request *req, const char *body)
{
	struct evbuffer	*b = evbuffer_new();

	evbuffer_add(b, body, strlen(body));
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/json");
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}

/*
 * big_slices slices of web, one endpoint and a 4 KiB annotation each,
 * the list's metadata after its items.
 */
static void
fa_big_slice_list(struct evhttp_request *req)
{
	struct evbuffer	*b = evbuffer_new();
	char		 pad[4097];
	int		 i;

	memset(pad, 'p', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	evbuffer_add_printf(b, "{\"kind\":\"EndpointSliceList\",\"items\":[");
	for (i = 0; i < fa.big_slices; i++)
		evbuffer_add_printf(b, "%s{\"metadata\":{\"name\":\"web-%d\","
		    "\"namespace\":\"default\",\"labels\":{"
		    "\"kubernetes.io/service-name\":\"web\"},\"annotations\":"
		    "{\"pad\":\"%s\"}},\"addressType\":\"IPv4\",\"ports\":[{"
		    "\"name\":\"http\",\"port\":8080,\"protocol\":\"TCP\"}],"
		    "\"endpoints\":[{\"addresses\":[\"10.244.%d.%d\"]}]}",
		    i > 0 ? "," : "", i, pad, i / 250, i % 250 + 1);
	evbuffer_add_printf(b, "],\"metadata\":{\"resourceVersion\":\"11\"}}");
	fa.big_bytes = evbuffer_get_length(b);
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}

static void
fa_slice_list(evutil_socket_t fd, short what, void *arg)
{
	struct evhttp_request	*req = arg;
	char			 obj[2048], body[4096];

	if (fa.big_slices > 0) {
		fa_big_slice_list(req);
		return;
	}

	snprintf(obj, sizeof(obj), SLICE_OBJ_FMT, "7",
	    "{\"addresses\":[\"10.244.0.1\"],\"conditions\":{\"ready\":true}}");
	snprintf(body, sizeof(body), "{\"kind\":\"EndpointSliceList\","
	    "\"apiVersion\":\"discovery.k8s.io/v1\",\"metadata\":{"
	    "\"resourceVersion\":\"11\"},\"items\":[%s]}", obj);
	fa_send_json(req, body);
}

static void
fa_watch_closed(struct evhttp_connection *conn, void *arg)
{
	int	 i = (int)(long)arg;

	fa.watch[i] = NULL;
}

static void
fa_handle(struct evhttp_request *req, void *arg)
{
	const char	*uri = evhttp_request_get_uri(req);
	int		 i = strstr(uri, "endpointslices") != NULL ? 1 : 0;
	struct timeval	 tv;

	if (strstr(uri, "watch=1") != NULL) {
		fa.watch[i] = req;
		evhttp_connection_set_closecb(
		    evhttp_request_get_connection(req), fa_watch_closed,
		    (void *)(long)i);
		evhttp_send_reply_start(req, 200, "OK");
		return;
	}
	fa.n_lists[i]++;
	if (i == 0) {
		fa_send_json(req, svc_list);
		return;
	}
	tv.tv_sec = 0;
	tv.tv_usec = fa.slice_list_delay_ms * 1000;
	event_base_once(fa.base, -1, EV_TIMEOUT, fa_slice_list, req, &tv);
}

static void
fa_push(int i, const char *line)
{
	struct evbuffer	*b = evbuffer_new();

	cr_assert_not_null(fa.watch[i], "no watch open");
	evbuffer_add(b, line, strlen(line));
	evhttp_send_reply_chunk(fa.watch[i], b);
	evbuffer_free(b);
}

static void
fa_publish(struct svctab *tab, void *arg)
{
	cr_assert_lt(fa.n_tables, 8);
	fa.table_ms[fa.n_tables] = clock_mono_ms();
	fa.tables[fa.n_tables++] = tab;
	if (fa.n_tables >= fa.want_tables)
		event_base_loopbreak(fa.base);
}

static void
fa_timeout(evutil_socket_t fd, short what, void *arg)
{
	cr_assert_fail("timed out waiting for a table");
}

static void
fa_run_until(int n_tables)
{
	struct timeval	 tv = { 10, 0 };

	fa.want_tables = n_tables;
	evtimer_add(fa.ev_timeout, &tv);
	while (fa.n_tables < n_tables)
		event_base_loop(fa.base, EVLOOP_ONCE);
	evtimer_del(fa.ev_timeout);
}

static void
fa_spin(int ms)
{
	struct timeval	 tv = { 0, ms * 1000 };

	event_base_loopexit(fa.base, &tv);
	event_base_dispatch(fa.base);
}

static struct source_api *
fa_start(struct conf *conf, uint32_t min_sync_ms)
{
	struct evhttp_bound_socket	*bs;
	struct kube_creds		 creds;
	struct source_api		*sa;
	char				 url[64], err[256];

	memset(&fa, 0, sizeof(fa));
	cr_assert_not_null(fa.base = event_base_new());
	cr_assert_not_null(fa.http = evhttp_new(fa.base));
	evhttp_set_gencb(fa.http, fa_handle, NULL);
	cr_assert_not_null(bs = evhttp_bind_socket_with_handle(fa.http,
	    "127.0.0.1", 0));
	{
		struct sockaddr_storage	 ss;
		socklen_t		 sl = sizeof(ss);

		cr_assert_eq(getsockname(evhttp_bound_socket_get_fd(bs),
		    (struct sockaddr *)&ss, &sl), 0);
		fa.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	}
	fa.ev_timeout = evtimer_new(fa.base, fa_timeout, NULL);
	conf_defaults(conf);
	conf->min_sync_period_ms = min_sync_ms;
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", fa.port);
	cr_assert_eq(kubeconfig_resolve(NULL, NULL, url, "/nonexistent",
	    &creds, 0, err, sizeof(err)), 0, "%s", err);
	cr_assert_not_null(sa = source_api_new(fa.base, conf, &creds,
	    fa_publish, NULL, err, sizeof(err)), "%s", err);
	return (sa);
}

static size_t
fa_endpoints(struct svctab *tab)
{
	struct svctab_stats	 st;

	svctab_stats(tab, &st);
	return (st.n_endpoints);
}

Test(informer_loopback, first_table_waits_for_both_lists_then_follows_events,
    .timeout = 20)
{
	struct conf		 conf;
	struct source_api	*sa;
	char			 obj[2048], line[2300];
	int			 i;

	sa = fa_start(&conf, 300);
	fa.slice_list_delay_ms = 300;
	/* The services list is in long before the slices: no table yet. */
	fa_spin(150);
	cr_assert_eq(fa.n_lists[0], 1);
	cr_assert_eq(fa.n_tables, 0);
	cr_assert_eq(source_api_synced(sa), 0);
	fa_run_until(1);
	cr_assert(source_api_synced(sa));
	cr_assert_eq(fa.tables[0]->n_svcs, 1);
	cr_assert_eq(fa_endpoints(fa.tables[0]), 1);

	/* Scale up through the watch, in two chunks split mid-event. */
	while (fa.watch[1] == NULL)
		event_base_loop(fa.base, EVLOOP_ONCE);
	snprintf(obj, sizeof(obj), SLICE_OBJ_FMT, "12",
	    "{\"addresses\":[\"10.244.0.1\"]},{\"addresses\":[\"10.244.0.2\"]}");
	snprintf(line, sizeof(line), "{\"type\":\"MODIFIED\",\"object\":%s}\n",
	    obj);
	fa_push(1, "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{"
	    "\"resourceVersion\":\"11\"}}}\n");
	{
		char	first[64];

		snprintf(first, sizeof(first), "%.40s", line);
		fa_push(1, first);
		fa_push(1, line + 40);
	}
	fa_run_until(2);
	cr_assert_eq(fa_endpoints(fa.tables[1]), 2);

	/* Delete the service: the table follows. */
	fa_push(0, "{\"type\":\"DELETED\",\"object\":{\"metadata\":{"
	    "\"name\":\"web\",\"namespace\":\"default\",\"resourceVersion\":"
	    "\"13\"},\"spec\":{\"clusterIP\":\"10.96.0.10\",\"ports\":[{"
	    "\"port\":80}]}}}\n");
	fa_run_until(3);
	cr_assert_eq(fa.tables[2]->n_svcs, 0);
	/* No table sooner than min_sync_period after the previous one. */
	cr_assert_geq(fa.table_ms[2] - fa.table_ms[1], 290);
	/* Watches only: nothing was listed again. */
	cr_assert_eq(fa.n_lists[0], 1);
	cr_assert_eq(fa.n_lists[1], 1);
	source_api_free(sa);
	conf_clear(&conf);
	for (i = 0; i < fa.n_tables; i++)
		svctab_unref(fa.tables[i]);
	event_free(fa.ev_timeout);
	evhttp_free(fa.http);
	event_base_free(fa.base);
}

/*
 * Once per turn of the loop (a zero timeout that adds itself again): the
 * most body bytes handed over between two turns.
 */
static void
fa_tick(evutil_socket_t fd, short what, void *arg)
{
	struct timeval	 now = { 0, 0 };

	if (fa.turn_bytes > fa.max_turn_bytes)
		fa.max_turn_bytes = fa.turn_bytes;
	fa.turn_bytes = 0;
	evtimer_add(fa.ev_tick, &now);
}

static int
fa_count_data(const char *buf, size_t len, long status, void *arg)
{
	fa.turn_bytes += len;
	fa.total_bytes += len;
	return (0);
}

static void
fa_count_done(const struct kube_http_result *r, void *arg)
{
	cr_assert_null(r->error, "%s", r->error);
	cr_assert_eq(r->status, 200);
	fa.done = true;
}

Test(informer_loopback, large_list_in_slices_makes_one_whole_table,
    .timeout = 30)
{
	struct conf		 conf;
	struct source_api	*sa;

	sa = fa_start(&conf, 0);
	fa.big_slices = 500;
	fa_run_until(1);
	cr_assert_gt(fa.big_bytes, 2u << 20);
	cr_assert_eq(fa.tables[0]->n_svcs, 1);
	cr_assert_eq(fa_endpoints(fa.tables[0]), 500);
	source_api_free(sa);
	conf_clear(&conf);
	svctab_unref(fa.tables[0]);
	event_free(fa.ev_timeout);
	evhttp_free(fa.http);
	event_base_free(fa.base);
}

/*
 * A server in a child process that answers one request with body at once
 * (as fast as the socket takes it), so that the client has far more than
 * a turn's worth ready at every read.  Returns the port; *pid the child.
 */
static int
blast_server(const char *body, size_t len, pid_t *pid)
{
	struct sockaddr_in	 sin;
	socklen_t		 sl = sizeof(sin);
	char			 head[256], req[4096];
	size_t			 off;
	ssize_t			 n;
	int			 fd, c, hl;

	cr_assert_geq(fd = socket(AF_INET, SOCK_STREAM, 0), 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(listen(fd, 1), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	cr_assert_geq(*pid = fork(), 0);
	if (*pid > 0) {
		close(fd);
		return (ntohs(sin.sin_port));
	}
	alarm(20);
	if ((c = accept(fd, NULL, NULL)) == -1)
		_exit(1);
	/* The request: a GET, headers only. */
	for (off = 0; off < sizeof(req) - 1; off += (size_t)n) {
		if ((n = read(c, req + off, sizeof(req) - 1 - off)) <= 0)
			_exit(1);
		req[off + (size_t)n] = '\0';
		if (strstr(req, "\r\n\r\n") != NULL)
			break;
	}
	hl = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Type: "
	    "application/json\r\nContent-Length: %zu\r\n\r\n", len);
	if (write(c, head, (size_t)hl) != hl)
		_exit(1);
	for (off = 0; off < len; off += (size_t)n)
		if ((n = write(c, body + off, len - off)) <= 0)
			_exit(1);
	close(c);
	_exit(0);
}

Test(informer_loopback, a_large_body_is_handed_over_a_slice_per_loop_turn,
    .timeout = 30)
{
	struct kube_creds	 creds;
	struct kube_http	*kh;
	struct kube_http_cb	 cb = { fa_count_data, fa_count_done, NULL };
	struct timeval		 now = { 0, 0 };
	char			 url[64], err[256], *body;
	size_t			 len = 8u << 20;
	pid_t			 pid;
	int			 port, status;

	memset(&fa, 0, sizeof(fa));
	cr_assert_not_null(body = malloc(len));
	/* White space is the cheapest JSON to parse: a gzip bomb's. */
	memset(body, ' ', len);
	port = blast_server(body, len, &pid);
	cr_assert_not_null(fa.base = event_base_new());
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	cr_assert_eq(kubeconfig_resolve(NULL, NULL, url, "/nonexistent",
	    &creds, 0, err, sizeof(err)), 0, "%s", err);
	cr_assert_not_null(kh = kube_http_new(fa.base, &creds, err,
	    sizeof(err)), "%s", err);
	cr_assert_not_null(kube_http_get(kh, "/api/v1/services", 0, 0, &cb,
	    err, sizeof(err)), "%s", err);
	cr_assert_not_null(fa.ev_tick = evtimer_new(fa.base, fa_tick, NULL));
	/* Let the server fill the socket buffers before the first read. */
	usleep(200000);
	evtimer_add(fa.ev_tick, &now);
	while (!fa.done)
		event_base_loop(fa.base, EVLOOP_ONCE);
	cr_assert_eq(fa.total_bytes, len);
	/*
	 * At most 64 KiB and one read of 16 KiB per turn; a window between
	 * two ticks may span parts of two turns.
	 */
	cr_assert_leq(fa.max_turn_bytes, 2 * (64 + 16) * 1024, "%zu bytes "
	    "in one turn", fa.max_turn_bytes);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	kube_http_free(kh);
	kube_creds_clear(&creds);
	event_free(fa.ev_tick);
	event_base_free(fa.base);
	free(body);
}

Test(informer, unauthorized_retries_at_once_only_with_a_new_token)
{
	struct tctx		 t = { 0, 0 };
	struct informer		*inf = synced_informer(&t);
	struct informer_result	 renewed = { 401, NULL, 0, true };
	struct informer_result	 same = { 401, NULL, 0, false };
	struct informer_next	 next;

	informer_begin(inf, INFORMER_WATCH, 0);
	informer_done(inf, &renewed, 0, &next);
	cr_assert_eq(next.step, INFORMER_WATCH);
	cr_assert_eq(next.delay_ms, 0);
	informer_begin(inf, INFORMER_WATCH, 0);
	informer_done(inf, &same, 0, &next);
	cr_assert_eq(next.step, INFORMER_LIST);
	cr_assert_eq(next.delay_ms, 800);
	informer_begin(inf, INFORMER_LIST, 800);
	informer_done(inf, &renewed, 800, &next);
	cr_assert_eq(next.step, INFORMER_LIST);
	cr_assert_eq(next.delay_ms, 0);
	informer_free(inf);
}
