/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for watch/source_file.c against a real file in a private temporary
 * directory and a real event base: the first table comes from the loop, an
 * editor-style replace (write a temporary file, rename it over) publishes a
 * new table within a second, a malformed or deleted file publishes nothing,
 * and source_file_reload() reads synchronously.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/time.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <event2/event.h>

#include "base/svc.h"
#include "watch/source.h"

#define MAX_TABLES	16

struct fixture {
	char			 dir[64];
	char			 path[128];
	struct event_base	*base;
	struct event		*ev_timeout;
	struct source_file	*sf;
	struct svctab		*tables[MAX_TABLES];
	size_t			 n_tables;
	size_t			 want_tables;	/* break the loop at this count */
};

static struct fixture	 fx;

static const char *web_v1 =
    "apiVersion: v1\nkind: List\nitems:\n"
    "- apiVersion: v1\n  kind: Service\n"
    "  metadata: {name: web, namespace: default}\n"
    "  spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 80}]}\n"
    "- apiVersion: v1\n  kind: Service\n"
    "  metadata: {name: db, namespace: default}\n"
    "  spec: {clusterIP: 10.96.0.11, ports: [{port: 5432}]}\n"
    "- apiVersion: discovery.k8s.io/v1\n  kind: EndpointSlice\n"
    "  metadata: {name: web-1, namespace: default, labels: "
    "{kubernetes.io/service-name: web}}\n"
    "  addressType: IPv4\n  ports: [{name: http, port: 8080}]\n"
    "  endpoints: [{addresses: [10.244.0.1]}]\n";

/* web gets a second endpoint; db is unchanged. */
static const char *web_v2 =
    "{\"kind\": \"List\", \"items\": [\n"
    " {\"kind\": \"Service\", \"apiVersion\": \"v1\", \"metadata\": "
    "{\"name\": \"web\", \"namespace\": \"default\"}, \"spec\": "
    "{\"clusterIP\": \"10.96.0.10\", \"ports\": [{\"name\": \"http\", "
    "\"port\": 80}]}},\n"
    " {\"kind\": \"Service\", \"apiVersion\": \"v1\", \"metadata\": "
    "{\"name\": \"db\", \"namespace\": \"default\"}, \"spec\": "
    "{\"clusterIP\": \"10.96.0.11\", \"ports\": [{\"port\": 5432}]}},\n"
    " {\"kind\": \"EndpointSlice\", \"apiVersion\": \"discovery.k8s.io/v1\", "
    "\"metadata\": {\"name\": \"web-1\", \"namespace\": \"default\", "
    "\"labels\": {\"kubernetes.io/service-name\": \"web\"}}, "
    "\"addressType\": \"IPv4\", \"ports\": [{\"name\": \"http\", "
    "\"port\": 8080}], \"endpoints\": [{\"addresses\": [\"10.244.0.1\"]}, "
    "{\"addresses\": [\"10.244.0.2\"]}]}\n]}\n";

static const char *malformed =
    "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
    "spec: {clusterIP: 10.96.0.10, ports: [{port: 70000}]}\n";

static void
on_publish(struct svctab *tab, void *arg)
{
	struct fixture *f = arg;

	cr_assert_lt(f->n_tables, MAX_TABLES);
	f->tables[f->n_tables++] = tab;
	if (f->n_tables >= f->want_tables)
		event_base_loopbreak(f->base);
}

static void
on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct fixture *f = arg;

	event_base_loopbreak(f->base);
}

/* Run the loop until `count` tables were published in all, or timeout_ms. */
static long
run_until(size_t count, long timeout_ms)
{
	struct timeval	 tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	struct timespec	 t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	fx.want_tables = count;
	if (fx.n_tables < count) {
		evtimer_add(fx.ev_timeout, &tv);
		event_base_dispatch(fx.base);
		evtimer_del(fx.ev_timeout);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return ((t1.tv_sec - t0.tv_sec) * 1000 +
	    (t1.tv_nsec - t0.tv_nsec) / 1000000);
}

static void
write_in_place(const char *content)
{
	FILE	*f = fopen(fx.path, "w");

	cr_assert_not_null(f);
	fputs(content, f);
	cr_assert_eq(fclose(f), 0);
}

/* What editors and `kubectl ... > tmp && mv tmp file` do. */
static void
replace_by_rename(const char *content)
{
	char	 tmp[160];
	FILE	*f;

	snprintf(tmp, sizeof(tmp), "%s/.services.yaml.swp", fx.dir);
	f = fopen(tmp, "w");
	cr_assert_not_null(f);
	fputs(content, f);
	cr_assert_eq(fclose(f), 0);
	cr_assert_eq(rename(tmp, fx.path), 0);
}

static void
setup(void)
{
	memset(&fx, 0, sizeof(fx));
	snprintf(fx.dir, sizeof(fx.dir), "/tmp/test_source_file.XXXXXX");
	cr_assert_not_null(mkdtemp(fx.dir));
	snprintf(fx.path, sizeof(fx.path), "%s/services.yaml", fx.dir);
	fx.base = event_base_new();
	cr_assert_not_null(fx.base);
	fx.ev_timeout = evtimer_new(fx.base, on_timeout, &fx);
}

static void
teardown(void)
{
	DIR		*d;
	struct dirent	*de;
	char		 p[512];
	size_t		 i;

	source_file_free(fx.sf);
	for (i = 0; i < fx.n_tables; i++)
		svctab_unref(fx.tables[i]);
	event_free(fx.ev_timeout);
	event_base_free(fx.base);
	if ((d = opendir(fx.dir)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			snprintf(p, sizeof(p), "%s/%s", fx.dir, de->d_name);
			unlink(p);
		}
		closedir(d);
	}
	rmdir(fx.dir);
}

static void
start(void)
{
	char	 err[256];

	fx.sf = source_file_new(fx.base, fx.path, on_publish, &fx, err,
	    sizeof(err));
	cr_assert_not_null(fx.sf, "%s", err);
}

static size_t
n_endpoints_of_web(const struct svctab *t)
{
	struct svc *s = svctab_find(t, "default", "web");

	cr_assert_not_null(s);
	return (s->ports[0].n_endpoints);
}

TestSuite(source_file, .init = setup, .fini = teardown, .timeout = 10);

Test(source_file, first_table_is_published_from_the_loop)
{
	write_in_place(web_v1);
	start();
	/* Never from inside source_file_new(). */
	cr_assert_eq(fx.n_tables, 0);
	run_until(1, 2000);
	cr_assert_eq(fx.n_tables, 1);
	cr_assert_eq(fx.tables[0]->n_svcs, 2);
	cr_assert_eq(n_endpoints_of_web(fx.tables[0]), 1);
}

Test(source_file, replace_by_rename_publishes_within_a_second)
{
	long	 ms;

	write_in_place(web_v1);
	start();
	run_until(1, 2000);
	cr_assert_eq(fx.n_tables, 1);
	replace_by_rename(web_v2);
	ms = run_until(2, 2000);
	cr_assert_eq(fx.n_tables, 2);
	cr_assert_lt(ms, 1000, "took %ld ms", ms);
	cr_assert_eq(n_endpoints_of_web(fx.tables[1]), 2);
	/* The unchanged service is shared with the previous table. */
	cr_assert_eq(svctab_find(fx.tables[0], "default", "db"),
	    svctab_find(fx.tables[1], "default", "db"));
	cr_assert_neq(svctab_find(fx.tables[0], "default", "web"),
	    svctab_find(fx.tables[1], "default", "web"));
}

Test(source_file, in_place_edit_publishes)
{
	write_in_place(web_v1);
	start();
	run_until(1, 2000);
	write_in_place(web_v2);
	run_until(2, 2000);
	cr_assert_eq(fx.n_tables, 2);
	cr_assert_eq(n_endpoints_of_web(fx.tables[1]), 2);
}

Test(source_file, malformed_edit_publishes_nothing)
{
	write_in_place(web_v1);
	start();
	run_until(1, 2000);
	replace_by_rename(malformed);
	run_until(2, 600);
	cr_assert_eq(fx.n_tables, 1);
	replace_by_rename("{\"kind\": \"List\", \"items\": [");
	run_until(2, 600);
	cr_assert_eq(fx.n_tables, 1);
	/* Fixing the file brings it back. */
	replace_by_rename(web_v2);
	run_until(2, 2000);
	cr_assert_eq(fx.n_tables, 2);
}

Test(source_file, a_burst_of_writes_is_read_once)
{
	int	 i;

	write_in_place(web_v1);
	start();
	run_until(1, 2000);
	for (i = 0; i < 5; i++)
		write_in_place(i % 2 ? web_v1 : web_v2);
	run_until(3, 600);
	cr_assert_eq(fx.n_tables, 2);
	cr_assert_eq(n_endpoints_of_web(fx.tables[1]), 2);
}

Test(source_file, file_created_later_is_picked_up)
{
	start();
	run_until(1, 300);
	cr_assert_eq(fx.n_tables, 0);
	replace_by_rename(web_v1);
	run_until(1, 2000);
	cr_assert_eq(fx.n_tables, 1);
}

Test(source_file, deleted_file_keeps_the_last_table)
{
	write_in_place(web_v1);
	start();
	run_until(1, 2000);
	cr_assert_eq(unlink(fx.path), 0);
	run_until(2, 400);
	cr_assert_eq(fx.n_tables, 1);
	cr_assert_eq(source_file_reload(fx.sf), -1);
	write_in_place(web_v2);
	run_until(2, 2000);
	cr_assert_eq(fx.n_tables, 2);
}

Test(source_file, reload_reads_synchronously)
{
	write_in_place(web_v1);
	start();
	/* Before the loop ran: reload does the first reading itself. */
	cr_assert_eq(source_file_reload(fx.sf), 0);
	cr_assert_eq(fx.n_tables, 1);
	/* Unchanged: accepted, nothing new to publish. */
	cr_assert_eq(source_file_reload(fx.sf), 0);
	cr_assert_eq(fx.n_tables, 1);
	write_in_place(malformed);
	cr_assert_eq(source_file_reload(fx.sf), -1);
	cr_assert_eq(fx.n_tables, 1);
	write_in_place(web_v2);
	cr_assert_eq(source_file_reload(fx.sf), 0);
	cr_assert_eq(fx.n_tables, 2);
	/* The events those writes caused find nothing new. */
	run_until(3, 400);
	cr_assert_eq(fx.n_tables, 2);
}

Test(source_file, missing_directory_is_an_error)
{
	char	 err[256], path[160];

	snprintf(path, sizeof(path), "%s/nope/services.yaml", fx.dir);
	fx.sf = source_file_new(fx.base, path, on_publish, &fx, err,
	    sizeof(err));
	cr_assert_null(fx.sf);
	cr_assert(strstr(err, "nope") != NULL, "%s", err);
}

Test(source_file, relative_path_survives_chdir)
{
	char	 cwd[512];

	write_in_place(web_v1);
	cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
	cr_assert_eq(chdir(fx.dir), 0);
	snprintf(fx.path, sizeof(fx.path), "services.yaml");
	start();
	cr_assert_eq(chdir("/"), 0);
	run_until(1, 2000);
	cr_assert_eq(fx.n_tables, 1);
	snprintf(fx.path, sizeof(fx.path), "%s/services.yaml", fx.dir);
	replace_by_rename(web_v2);
	run_until(2, 2000);
	cr_assert_eq(fx.n_tables, 2);
	cr_assert_eq(chdir(cwd), 0);
}

/* kubectl's JSON for n services, each with one slice of three endpoints. */
static void
write_big_json(size_t n)
{
	FILE	*f = fopen(fx.path, "w");
	size_t	 i;

	cr_assert_not_null(f);
	fputs("{\n    \"apiVersion\": \"v1\",\n    \"items\": [\n", f);
	for (i = 0; i < n; i++) {
		fprintf(f, "        {\"apiVersion\": \"v1\", \"kind\": "
		    "\"Service\", \"metadata\": {\"name\": \"svc-%zu\", "
		    "\"namespace\": \"ns-%zu\", \"uid\": \"6f1c0001-3a52-4d0b-"
		    "9c7e-%012zx\", \"resourceVersion\": \"%zu\", \"labels\": "
		    "{\"app\": \"svc-%zu\"}, \"managedFields\": [{\"apiVersion\": "
		    "\"v1\", \"fieldsType\": \"FieldsV1\", \"fieldsV1\": "
		    "{\"f:spec\": {\"f:ports\": {\"k:{\\\"port\\\":80,"
		    "\\\"protocol\\\":\\\"TCP\\\"}\": {\".\": {}, \"f:name\": {}, "
		    "\"f:port\": {}}}}}, \"manager\": \"kubectl\", \"operation\": "
		    "\"Update\"}]}, \"spec\": {\"clusterIP\": \"10.%zu.%zu.%zu\", "
		    "\"clusterIPs\": [\"10.%zu.%zu.%zu\"], \"ports\": [{\"name\": "
		    "\"http\", \"port\": 80, \"protocol\": \"TCP\", "
		    "\"targetPort\": 8080}], \"sessionAffinity\": \"None\", "
		    "\"type\": \"ClusterIP\"}, \"status\": {\"loadBalancer\": "
		    "{}}},\n", i, i % 50, i, i, i, 96 + i / 65536,
		    (i / 256) % 256, i % 256, 96 + i / 65536, (i / 256) % 256,
		    i % 256);
		fprintf(f, "        {\"apiVersion\": \"discovery.k8s.io/v1\", "
		    "\"kind\": \"EndpointSlice\", \"addressType\": \"IPv4\", "
		    "\"metadata\": {\"name\": \"svc-%zu-abcde\", \"namespace\": "
		    "\"ns-%zu\", \"labels\": {\"kubernetes.io/service-name\": "
		    "\"svc-%zu\"}}, \"ports\": [{\"name\": \"http\", \"port\": "
		    "8080, \"protocol\": \"TCP\"}], \"endpoints\": ["
		    "{\"addresses\": [\"10.244.%zu.1\"], \"conditions\": "
		    "{\"ready\": true}, \"nodeName\": \"node-1\"}, "
		    "{\"addresses\": [\"10.244.%zu.2\"], \"conditions\": "
		    "{\"ready\": true}, \"nodeName\": \"node-2\"}, "
		    "{\"addresses\": [\"10.244.%zu.3\"], \"conditions\": "
		    "{\"ready\": false}, \"nodeName\": \"node-3\"}]}%s\n", i,
		    i % 50, i, i % 256, i % 256, i % 256, i + 1 < n ? "," : "");
	}
	fputs("    ],\n    \"kind\": \"List\",\n    \"metadata\": "
	    "{\"resourceVersion\": \"\"}\n}\n", f);
	cr_assert_eq(fclose(f), 0);
}

/*
 * A large file loads whole.  How fast is for the benchmarks to show: a
 * timed assertion here would only fail on a busy machine.
 */
Test(source_file, ten_thousand_services_load, .timeout = 120)
{
	write_big_json(10000);
	start();
	cr_assert_eq(source_file_reload(fx.sf), 0);
	cr_assert_eq(fx.n_tables, 1);
	cr_assert_eq(fx.tables[0]->n_svcs, 10000);
}

/*
 * A JSON list read again shares every service whose items did not change
 * with the last table; an edited slice gives a new svc for its service
 * only; a bad item is still refused whole, and the good reading after it
 * still shares what it can.
 */
Test(source_file, json_list_change_shares_unchanged_services)
{
	const char	*cut = ", {\"addresses\": [\"10.244.0.2\"]}", *at;
	struct svc	*web1, *db1;
	char		*bad;

	write_in_place(web_v2);
	start();
	cr_assert_eq(source_file_reload(fx.sf), 0);
	cr_assert_eq(fx.n_tables, 1);
	db1 = svctab_find(fx.tables[0], "default", "db");
	web1 = svctab_find(fx.tables[0], "default", "web");
	cr_assert_not_null(db1);

	/* web's slice loses its second endpoint. */
	bad = strdup(web_v2);
	cr_assert_not_null(bad);
	at = strstr(bad, cut);
	cr_assert_not_null(at);
	memmove(bad + (at - bad), at + strlen(cut), strlen(at + strlen(cut)) +
	    1);
	write_in_place(bad);
	cr_assert_eq(source_file_reload(fx.sf), 0);
	cr_assert_eq(fx.n_tables, 2);
	cr_assert_eq(svctab_find(fx.tables[1], "default", "db"), db1,
	    "db's items did not change: the same object");
	cr_assert_neq(svctab_find(fx.tables[1], "default", "web"), web1);
	cr_assert_eq(n_endpoints_of_web(fx.tables[1]), 1);
	free(bad);

	/* A port out of range in one item: refused, nothing published. */
	write_in_place("{\"kind\": \"List\", \"items\": [{\"kind\": "
	    "\"Service\", \"apiVersion\": \"v1\", \"metadata\": {\"name\": "
	    "\"db\", \"namespace\": \"default\"}, \"spec\": {\"clusterIP\": "
	    "\"10.96.0.11\", \"ports\": [{\"port\": 70000}]}}]}");
	cr_assert_eq(source_file_reload(fx.sf), -1);
	cr_assert_eq(fx.n_tables, 2);

	/* Back to v2: db is still the same object; web is rejoined. */
	write_in_place(web_v2);
	cr_assert_eq(source_file_reload(fx.sf), 0);
	cr_assert_eq(fx.n_tables, 3);
	cr_assert_eq(svctab_find(fx.tables[2], "default", "db"), db1);
	cr_assert_eq(n_endpoints_of_web(fx.tables[2]), 2);
}

/* The same items in a ServiceList: items without kind are Services. */
Test(source_file, json_service_list_items_take_the_list_kind)
{
	write_in_place("{\"kind\": \"ServiceList\", \"apiVersion\": \"v1\", "
	    "\"items\": [{\"metadata\": {\"name\": \"web\", \"namespace\": "
	    "\"default\"}, \"spec\": {\"clusterIP\": \"10.96.0.10\", "
	    "\"ports\": [{\"name\": \"http\", \"port\": 80}]}}]}");
	start();
	cr_assert_eq(source_file_reload(fx.sf), 0);
	cr_assert_eq(fx.tables[0]->n_svcs, 1);
	/* The same item in a generic List lacks the kind it needs there. */
	write_in_place("{\"kind\": \"List\", \"apiVersion\": \"v1\", "
	    "\"items\": [{\"metadata\": {\"name\": \"web\", \"namespace\": "
	    "\"default\"}, \"spec\": {\"clusterIP\": \"10.96.0.10\", "
	    "\"ports\": [{\"name\": \"http\", \"port\": 80}]}}]}");
	cr_assert_eq(source_file_reload(fx.sf), -1);
	cr_assert_eq(fx.n_tables, 1);
}
