/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for base/svc.c: addresses, the slice join, and the diff. */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "base/svc.h"

/* Builders for compact fixtures. */

static struct svc *
mk_svc(const char *ns, const char *name, const char *cluster_ip)
{
	struct svc *s = svc_new();

	cr_assert_not_null(s);
	s->namespace = strdup(ns);
	s->name = strdup(name);
	if (cluster_ip != NULL) {
		cr_assert_eq(svc_ip_parse(cluster_ip, &s->cluster_ips[0]), 0);
		s->n_cluster_ips = 1;
	} else
		s->skip = SVC_SKIP_HEADLESS;
	return s;
}

static void
add_port(struct svc *s, const char *name, enum svc_proto proto,
    uint16_t port, uint16_t node_port)
{
	struct svc_port *p;

	s->ports = reallocarray(s->ports, s->n_ports + 1, sizeof(*s->ports));
	cr_assert_not_null(s->ports);
	p = &s->ports[s->n_ports++];
	memset(p, 0, sizeof(*p));
	p->name = strdup(name);
	p->proto = proto;
	p->port = port;
	p->node_port = node_port;
}

static struct slice *
mk_slice(const char *ns, const char *name, const char *svc_name)
{
	struct slice *sl = slice_new();

	cr_assert_not_null(sl);
	sl->namespace = strdup(ns);
	sl->name = strdup(name);
	sl->service_name = svc_name ? strdup(svc_name) : NULL;
	sl->family = AF_INET;
	return sl;
}

static void
slice_port(struct slice *sl, const char *name, enum svc_proto proto,
    uint16_t port)
{
	struct slice_port *p;

	sl->ports = reallocarray(sl->ports, sl->n_ports + 1, sizeof(*sl->ports));
	cr_assert_not_null(sl->ports);
	p = &sl->ports[sl->n_ports++];
	p->name = strdup(name);
	p->proto = proto;
	p->port = port;
}

static void
slice_ep(struct slice *sl, const char *ip, uint8_t flags)
{
	struct endpoint *ep;

	sl->endpoints = reallocarray(sl->endpoints, sl->n_endpoints + 1,
	    sizeof(*sl->endpoints));
	cr_assert_not_null(sl->endpoints);
	ep = &sl->endpoints[sl->n_endpoints++];
	memset(ep, 0, sizeof(*ep));
	cr_assert_eq(svc_ip_parse(ip, &ep->ip), 0);
	ep->flags = flags;
}

static const char *
ep_str(const struct endpoint *ep, char *buf, size_t len)
{
	char ip[SVC_IPSTRLEN];

	snprintf(buf, len, "%s:%u", svc_ip_str(&ep->ip, ip, sizeof(ip)),
	    ep->port);
	return buf;
}

#define READY	(EP_F_READY | EP_F_SERVING)

/* Addresses and names. */

Test(svc, ip_parse_and_format)
{
	struct svc_ip	ip;
	char		buf[SVC_IPSTRLEN];

	cr_assert_eq(svc_ip_parse("10.96.0.10", &ip), 0);
	cr_assert_eq(ip.family, AF_INET);
	cr_assert_str_eq(svc_ip_str(&ip, buf, sizeof(buf)), "10.96.0.10");
	cr_assert_eq(svc_ip_parse("fd00::a", &ip), 0);
	cr_assert_eq(ip.family, AF_INET6);
	cr_assert_str_eq(svc_ip_str(&ip, buf, sizeof(buf)), "fd00::a");
	cr_assert_eq(svc_ip_parse("10.96.0.300", &ip), -1);
	cr_assert_eq(svc_ip_parse("None", &ip), -1);
	cr_assert_eq(svc_ip_parse("", &ip), -1);
	cr_assert_eq(ip.family, 0);
}

Test(svc, port_key_and_display)
{
	struct svc	*s = mk_svc("default", "web", "10.96.0.10");
	char		 buf[SVC_KEYLEN];

	add_port(s, "http", SVC_PROTO_TCP, 80, 0);
	add_port(s, "", SVC_PROTO_UDP, 53, 0);
	cr_assert_str_eq(svc_port_key(s, &s->ports[0], buf, sizeof(buf)),
	    "default/web:http/TCP");
	cr_assert_str_eq(svc_port_display(s, &s->ports[0], buf, sizeof(buf)),
	    "default/web:http");
	cr_assert_str_eq(svc_port_key(s, &s->ports[1], buf, sizeof(buf)),
	    "default/web/UDP");
	svc_unref(s);
}

Test(svc, headless_and_skipped_are_not_proxied)
{
	struct svc *s = mk_svc("default", "db", NULL);

	cr_assert_not(svc_is_proxied(s));
	s->skip = SVC_SKIP_NONE;
	cr_assert_not(svc_is_proxied(s), "no cluster IP: nothing to proxy");
	svc_unref(s);
	s = mk_svc("default", "web", "10.96.0.10");
	cr_assert(svc_is_proxied(s));
	s->skip = SVC_SKIP_PROXY_NAME;
	cr_assert_not(svc_is_proxied(s));
	svc_unref(s);
}

/* The join. */

Test(svc, build_joins_slices_by_port_name_and_protocol)
{
	struct svc	*s = mk_svc("default", "web", "10.96.0.10");
	struct slice	*a = mk_slice("default", "web-abc", "web");
	struct slice	*other = mk_slice("default", "api-xyz", "api");
	struct slice	*slices[2] = { a, other };
	struct svctab	*t;
	struct svc	*got;
	char		 buf[64];

	add_port(s, "http", SVC_PROTO_TCP, 80, 0);
	add_port(s, "metrics", SVC_PROTO_TCP, 9090, 0);
	slice_port(a, "http", SVC_PROTO_TCP, 8080);
	slice_port(a, "metrics", SVC_PROTO_TCP, 9100);
	slice_port(a, "http", SVC_PROTO_UDP, 9999);
	slice_ep(a, "10.244.1.3", READY);
	slice_ep(a, "10.244.1.2", READY);
	slice_port(other, "http", SVC_PROTO_TCP, 7000);
	slice_ep(other, "10.244.9.9", READY);

	t = svctab_build(&s, 1, slices, 2, NULL);
	cr_assert_not_null(t);
	got = svctab_find(t, "default", "web");
	cr_assert_not_null(got);
	cr_assert_eq(got->ports[0].n_endpoints, 2);
	/* Sorted, and each port takes the target port of its own name. */
	cr_assert_str_eq(ep_str(&got->ports[0].endpoints[0], buf, sizeof(buf)),
	    "10.244.1.2:8080");
	cr_assert_str_eq(ep_str(&got->ports[0].endpoints[1], buf, sizeof(buf)),
	    "10.244.1.3:8080");
	cr_assert_eq(got->ports[1].n_endpoints, 2);
	cr_assert_eq(got->ports[1].endpoints[0].port, 9100);
	svctab_unref(t);
	slice_free(a);
	slice_free(other);
}

Test(svc, build_merges_and_deduplicates_slices_ready_copy_wins)
{
	struct svc	*s = mk_svc("prod", "web", "10.96.0.10");
	struct slice	*a = mk_slice("prod", "web-1", "web");
	struct slice	*b = mk_slice("prod", "web-2", "web");
	struct slice	*slices[2] = { a, b };
	struct svctab	*t;
	struct svc_port	*p;

	add_port(s, "", SVC_PROTO_TCP, 80, 0);
	slice_port(a, "", SVC_PROTO_TCP, 8080);
	slice_port(b, "", SVC_PROTO_TCP, 8080);
	slice_ep(a, "10.244.1.2", 0);		/* not ready in one slice */
	slice_ep(a, "10.244.1.4", READY);
	slice_ep(b, "10.244.1.2", READY);	/* ready in the other */
	slice_ep(b, "10.244.1.3", 0);

	t = svctab_build(&s, 1, slices, 2, NULL);
	cr_assert_not_null(t);
	p = &t->svcs[0]->ports[0];
	cr_assert_eq(p->n_endpoints, 3);
	cr_assert(svc_endpoint_usable(&p->endpoints[0]), "ready copy kept");
	cr_assert_not(svc_endpoint_usable(&p->endpoints[1]));
	cr_assert(svc_endpoint_usable(&p->endpoints[2]));
	svctab_unref(t);
	slice_free(a);
	slice_free(b);
}

Test(svc, build_ignores_slices_of_other_namespaces_and_unlabelled)
{
	struct svc	*s = mk_svc("a", "web", "10.96.0.10");
	struct slice	*wrong_ns = mk_slice("b", "web-1", "web");
	struct slice	*unlabelled = mk_slice("a", "web-2", NULL);
	struct slice	*slices[2] = { wrong_ns, unlabelled };
	struct svctab	*t;

	add_port(s, "", SVC_PROTO_TCP, 80, 0);
	slice_port(wrong_ns, "", SVC_PROTO_TCP, 8080);
	slice_ep(wrong_ns, "10.244.1.2", READY);
	slice_port(unlabelled, "", SVC_PROTO_TCP, 8080);
	slice_ep(unlabelled, "10.244.1.3", READY);
	t = svctab_build(&s, 1, slices, 2, NULL);
	cr_assert_not_null(t);
	cr_assert_eq(t->svcs[0]->ports[0].n_endpoints, 0);
	svctab_unref(t);
	slice_free(wrong_ns);
	slice_free(unlabelled);
}

Test(svc, build_sorts_services_and_later_duplicate_wins)
{
	struct svc	*v[3];
	struct svctab	*t;

	v[0] = mk_svc("default", "web", "10.96.0.10");
	v[1] = mk_svc("default", "api", "10.96.0.11");
	v[2] = mk_svc("default", "web", "10.96.0.12");
	t = svctab_build(v, 3, NULL, 0, NULL);
	cr_assert_not_null(t);
	cr_assert_eq(t->n_svcs, 2);
	cr_assert_str_eq(t->svcs[0]->name, "api");
	cr_assert_str_eq(t->svcs[1]->name, "web");
	cr_assert_eq(t->svcs[1]->cluster_ips[0].addr[3], 12);
	cr_assert_null(svctab_find(t, "default", "nope"));
	svctab_unref(t);
}

Test(svc, build_keeps_identity_of_unchanged_services)
{
	struct svc	*v[2];
	struct svctab	*t1, *t2;

	v[0] = mk_svc("default", "web", "10.96.0.10");
	v[1] = mk_svc("default", "api", "10.96.0.11");
	add_port(v[0], "http", SVC_PROTO_TCP, 80, 0);
	add_port(v[1], "http", SVC_PROTO_TCP, 80, 0);
	t1 = svctab_build(v, 2, NULL, 0, NULL);
	v[0] = mk_svc("default", "web", "10.96.0.10");
	v[1] = mk_svc("default", "api", "10.96.0.11");
	add_port(v[0], "http", SVC_PROTO_TCP, 80, 0);
	add_port(v[1], "http", SVC_PROTO_TCP, 81, 0);
	t2 = svctab_build(v, 2, NULL, 0, t1);
	cr_assert_eq(svctab_find(t2, "default", "web"),
	    svctab_find(t1, "default", "web"), "unchanged: same object");
	cr_assert_neq(svctab_find(t2, "default", "api"),
	    svctab_find(t1, "default", "api"));
	svctab_unref(t1);
	/* The shared service outlives the first table. */
	cr_assert_str_eq(svctab_find(t2, "default", "web")->name, "web");
	svctab_unref(t2);
}

/* The diff. */

struct diff_log {
	char	lines[16][SVC_KEYLEN + 16];
	size_t	n;
};

static void
record(const struct svc_diff_entry *e, void *arg)
{
	static const char *kinds[] = { "added", "removed", "changed",
	    "endpoints" };
	struct diff_log	*log = arg;
	char		 key[SVC_KEYLEN];

	cr_assert_lt(log->n, 16);
	if (e->new_svc != NULL)
		svc_port_key(e->new_svc, e->new_port, key, sizeof(key));
	else
		svc_port_key(e->old_svc, e->old_port, key, sizeof(key));
	snprintf(log->lines[log->n++], sizeof(log->lines[0]), "%s %s",
	    kinds[e->kind], key);
}

static struct svctab *
table_of(struct svc *web, struct svc *api, struct slice *sl)
{
	struct svc	*v[2];
	size_t		 n = 0;

	if (web != NULL)
		v[n++] = web;
	if (api != NULL)
		v[n++] = api;
	return svctab_build(v, n, &sl, sl ? 1 : 0, NULL);
}

Test(svc, diff_reports_added_removed_changed_and_endpoint_changes)
{
	struct svc	*web, *api;
	struct slice	*sl = mk_slice("default", "web-1", "web");
	struct svctab	*t1, *t2;
	struct diff_log	 log = { .n = 0 };

	slice_port(sl, "http", SVC_PROTO_TCP, 8080);
	slice_ep(sl, "10.244.1.2", READY);
	web = mk_svc("default", "web", "10.96.0.10");
	add_port(web, "http", SVC_PROTO_TCP, 80, 0);
	add_port(web, "admin", SVC_PROTO_TCP, 8443, 0);
	api = mk_svc("default", "api", "10.96.0.11");
	add_port(api, "http", SVC_PROTO_TCP, 80, 0);
	t1 = table_of(web, api, NULL);

	/* web gains an endpoint, loses "admin", gains "dns"; api is gone. */
	web = mk_svc("default", "web", "10.96.0.10");
	add_port(web, "http", SVC_PROTO_TCP, 80, 0);
	add_port(web, "dns", SVC_PROTO_UDP, 53, 0);
	t2 = table_of(web, NULL, sl);

	cr_assert_eq(svctab_diff(t1, t2, record, &log), 4);
	cr_assert_str_eq(log.lines[0], "removed default/api:http/TCP");
	cr_assert_str_eq(log.lines[1], "endpoints default/web:http/TCP");
	cr_assert_str_eq(log.lines[2], "removed default/web:admin/TCP");
	cr_assert_str_eq(log.lines[3], "added default/web:dns/UDP");
	svctab_unref(t1);
	svctab_unref(t2);
	slice_free(sl);
}

Test(svc, diff_port_or_address_change_is_a_portal_change)
{
	struct svc	*a = mk_svc("default", "web", "10.96.0.10");
	struct svc	*b = mk_svc("default", "web", "10.96.0.10");
	struct svctab	*t1, *t2;
	struct diff_log	 log = { .n = 0 };

	add_port(a, "http", SVC_PROTO_TCP, 80, 0);
	add_port(b, "http", SVC_PROTO_TCP, 8080, 30080);
	t1 = table_of(a, NULL, NULL);
	t2 = table_of(b, NULL, NULL);
	cr_assert_eq(svctab_diff(t1, t2, record, &log), 1);
	cr_assert_str_eq(log.lines[0], "changed default/web:http/TCP");
	svctab_unref(t1);
	svctab_unref(t2);
}

Test(svc, diff_affinity_timeout_change_is_a_change)
{
	struct svc	*a = mk_svc("default", "web", "10.96.0.10");
	struct svc	*b = mk_svc("default", "web", "10.96.0.10");
	struct svctab	*t1, *t2;
	struct diff_log	 log = { .n = 0 };

	add_port(a, "", SVC_PROTO_TCP, 80, 0);
	add_port(b, "", SVC_PROTO_TCP, 80, 0);
	a->affinity = b->affinity = SVC_AFFINITY_CLIENT_IP;
	b->affinity_timeout_s = 60;	/* upstream ignored this: k/k#107398 */
	t1 = table_of(a, NULL, NULL);
	t2 = table_of(b, NULL, NULL);
	cr_assert_eq(svctab_diff(t1, t2, record, &log), 1);
	cr_assert_str_eq(log.lines[0], "changed default/web/TCP");
	svctab_unref(t1);
	svctab_unref(t2);
}

Test(svc, diff_of_equal_tables_is_empty_and_skipped_services_are_absent)
{
	struct svc	*a = mk_svc("default", "web", "10.96.0.10");
	struct svc	*b = mk_svc("default", "web", "10.96.0.10");
	struct svc	*headless = mk_svc("default", "db", NULL);
	struct svctab	*t1, *t2, *t3;
	struct diff_log	 log = { .n = 0 };

	add_port(a, "", SVC_PROTO_TCP, 80, 0);
	add_port(b, "", SVC_PROTO_TCP, 80, 0);
	add_port(headless, "", SVC_PROTO_TCP, 5432, 0);
	t1 = table_of(a, NULL, NULL);
	t2 = table_of(b, headless, NULL);
	cr_assert_eq(svctab_diff(t1, t2, record, &log), 0);
	/* From nothing: only the proxied service's port appears. */
	cr_assert_eq(svctab_diff(NULL, t2, record, &log), 1);
	cr_assert_str_eq(log.lines[0], "added default/web/TCP");
	t3 = svctab_build(NULL, 0, NULL, 0, NULL);
	cr_assert_eq(svctab_diff(t2, t3, record, &log), 1);
	cr_assert_str_eq(log.lines[1], "removed default/web/TCP");
	svctab_unref(t1);
	svctab_unref(t2);
	svctab_unref(t3);
}

Test(svc, stats_count_proxied_ports_and_endpoints)
{
	struct svc		*web = mk_svc("default", "web", "10.96.0.10");
	struct svc		*db = mk_svc("default", "db", NULL);
	struct slice		*sl = mk_slice("default", "web-1", "web");
	struct svctab		*t;
	struct svctab_stats	 st;

	add_port(web, "", SVC_PROTO_TCP, 80, 0);
	slice_port(sl, "", SVC_PROTO_TCP, 8080);
	slice_ep(sl, "10.244.1.2", READY);
	slice_ep(sl, "10.244.1.3", READY);
	t = table_of(web, db, sl);
	svctab_stats(t, &st);
	cr_assert_eq(st.n_services, 2);
	cr_assert_eq(st.n_proxied, 1);
	cr_assert_eq(st.n_ports, 1);
	cr_assert_eq(st.n_endpoints, 2);
	svctab_unref(t);
	slice_free(sl);
}

Test(svc, builder_collects_and_builds_and_same_table_compares_by_value)
{
	struct svctab_builder	 b = { .owns_slices = true };
	struct slice		*sl = mk_slice("default", "web-1", "web");
	struct svc		*web = mk_svc("default", "web", "10.96.0.10");
	struct svctab		*t1, *t2;

	add_port(web, "", SVC_PROTO_TCP, 80, 0);
	slice_port(sl, "", SVC_PROTO_TCP, 8080);
	slice_ep(sl, "10.244.1.2", READY);
	cr_assert_eq(svctab_builder_add_svc(&b, web), 0);
	cr_assert_eq(svctab_builder_add_slice(&b, sl), 0);
	t1 = svctab_builder_build(&b, NULL);
	cr_assert_not_null(t1);
	cr_assert_eq(t1->svcs[0]->ports[0].n_endpoints, 1);
	svctab_builder_clear(&b);	/* frees the slice it owns */

	web = mk_svc("default", "web", "10.96.0.10");
	add_port(web, "", SVC_PROTO_TCP, 80, 0);
	t2 = table_of(web, NULL, NULL);
	cr_assert_not(svctab_same(t1, t2), "the endpoints differ");
	cr_assert(svctab_same(t1, t1));
	cr_assert_not(svctab_same(NULL, t1));
	svctab_unref(t1);
	svctab_unref(t2);
}

/* Incremental building. */

/* Service NAME in default with CLUSTER-IP and one TCP port "http" 80. */
static struct svc *
mk_web(const char *name, const char *cluster_ip)
{
	struct svc *s = mk_svc("default", name, cluster_ip);

	add_port(s, "http", SVC_PROTO_TCP, 80, 0);
	return s;
}

static struct slice *
mk_web_slice(const char *name, const char *svc_name, const char *ip)
{
	struct slice *sl = mk_slice("default", name, svc_name);

	slice_port(sl, "http", SVC_PROTO_TCP, 8080);
	slice_ep(sl, ip, READY);
	return sl;
}

Test(svc, memo_build_joins_like_build_and_leaves_inputs_alone)
{
	struct svctab_memo	*m = svctab_memo_new();
	struct svc		*specs[2];
	struct slice		*sl[2];
	struct svctab		*t;
	char			 buf[64];

	specs[0] = mk_web("web", "10.96.0.10");
	specs[1] = mk_web("api", "10.96.0.11");
	sl[0] = mk_web_slice("web-1", "web", "10.244.1.2");
	sl[1] = mk_web_slice("web-2", "web", "10.244.1.1");
	t = svctab_memo_build(m, specs, 2, sl, 2);
	cr_assert_not_null(t);
	cr_assert_eq(t->n_svcs, 2);
	cr_assert_str_eq(t->svcs[0]->name, "api", "sorted by name");
	cr_assert_eq(t->svcs[0]->ports[0].n_endpoints, 0);
	cr_assert_eq(t->svcs[1]->ports[0].n_endpoints, 2);
	cr_assert_str_eq(ep_str(&t->svcs[1]->ports[0].endpoints[0], buf,
	    sizeof(buf)), "10.244.1.1:8080");
	cr_assert_eq(specs[1]->ports[0].n_endpoints, 0, "spec not joined");
	cr_assert_neq(t->svcs[1], specs[0], "the table has its own copy");
	cr_assert_eq(svctab_memo_n_joined(m), 2);
	svctab_unref(t);
	svctab_memo_free(m);
	svc_unref(specs[0]);
	svc_unref(specs[1]);
	slice_free(sl[0]);
	slice_free(sl[1]);
}

Test(svc, memo_rejoins_only_the_service_whose_slice_changed)
{
	struct svctab_memo	*m = svctab_memo_new();
	struct svc		*specs[3];
	struct slice		*sl[3], *moved;
	struct svctab		*t1, *t2;

	specs[0] = mk_web("a", "10.96.0.10");
	specs[1] = mk_web("b", "10.96.0.11");
	specs[2] = mk_web("c", "10.96.0.12");
	sl[0] = mk_web_slice("a-1", "a", "10.244.1.1");
	sl[1] = mk_web_slice("b-1", "b", "10.244.2.1");
	sl[2] = mk_web_slice("c-1", "c", "10.244.3.1");
	t1 = svctab_memo_build(m, specs, 3, sl, 3);
	cr_assert_eq(svctab_memo_n_joined(m), 3);

	/* b's slice is replaced by a new object (a new serial). */
	moved = mk_web_slice("b-1", "b", "10.244.2.9");
	slice_free(sl[1]);
	sl[1] = moved;
	t2 = svctab_memo_build(m, specs, 3, sl, 3);
	cr_assert_eq(svctab_memo_n_joined(m), 1, "only b joined again");
	cr_assert_eq(t2->svcs[0], t1->svcs[0], "a shared");
	cr_assert_eq(t2->svcs[2], t1->svcs[2], "c shared");
	cr_assert_neq(t2->svcs[1], t1->svcs[1]);
	cr_assert_eq(t2->svcs[1]->ports[0].endpoints[0].ip.addr[3], 9);
	svctab_unref(t1);
	svctab_unref(t2);

	/* Nothing changed: nothing joined, the same objects. */
	t1 = svctab_memo_build(m, specs, 3, sl, 3);
	t2 = svctab_memo_build(m, specs, 3, sl, 3);
	cr_assert_eq(svctab_memo_n_joined(m), 0);
	cr_assert(svctab_same(t1, t2));
	cr_assert_eq(t1->svcs[1], t2->svcs[1]);
	svctab_unref(t1);
	svctab_unref(t2);
	svctab_memo_free(m);
	for (size_t i = 0; i < 3; i++) {
		svc_unref(specs[i]);
		slice_free(sl[i]);
	}
}

Test(svc, memo_equal_new_spec_or_equal_join_keeps_identity)
{
	struct svctab_memo	*m = svctab_memo_new();
	struct svc		*spec = mk_web("web", "10.96.0.10"), *again;
	struct slice		*sl = mk_web_slice("web-1", "web", "10.244.1.1");
	struct slice		*same;
	struct svctab		*t1, *t2;

	t1 = svctab_memo_build(m, &spec, 1, &sl, 1);
	/* A freshly decoded but equal spec: no join at all. */
	again = mk_web("web", "10.96.0.10");
	t2 = svctab_memo_build(m, &again, 1, &sl, 1);
	cr_assert_eq(svctab_memo_n_joined(m), 0);
	cr_assert_eq(t2->svcs[0], t1->svcs[0]);
	svctab_unref(t2);
	/* A new slice object with the same content: joined, same result. */
	same = mk_web_slice("web-1", "web", "10.244.1.1");
	t2 = svctab_memo_build(m, &again, 1, &same, 1);
	cr_assert_eq(svctab_memo_n_joined(m), 1);
	cr_assert_eq(t2->svcs[0], t1->svcs[0], "equal join keeps identity");
	svctab_unref(t1);
	svctab_unref(t2);
	svctab_memo_free(m);
	svc_unref(spec);
	svc_unref(again);
	slice_free(sl);
	slice_free(same);
}

Test(svc, memo_adds_removes_and_later_duplicate_wins)
{
	struct svctab_memo	*m = svctab_memo_new();
	struct svc		*specs[4];
	struct svctab		*t;

	specs[0] = mk_web("b", "10.96.0.11");
	specs[1] = mk_web("a", "10.96.0.10");
	t = svctab_memo_build(m, specs, 2, NULL, 0);
	cr_assert_eq(t->n_svcs, 2);
	cr_assert_str_eq(t->svcs[0]->name, "a");
	svctab_unref(t);

	/* b removed, c added, and a given twice: the later one wins. */
	specs[2] = mk_web("a", "10.96.0.20");
	specs[3] = mk_web("c", "10.96.0.12");
	t = svctab_memo_build(m, (struct svc *[]){ specs[2], specs[3],
	    specs[1] }, 3, NULL, 0);
	cr_assert_eq(t->n_svcs, 2);
	cr_assert_str_eq(t->svcs[0]->name, "a");
	cr_assert_eq(t->svcs[0]->cluster_ips[0].addr[3], 10, "later wins");
	cr_assert_str_eq(t->svcs[1]->name, "c");
	svctab_unref(t);

	t = svctab_memo_build(m, NULL, 0, NULL, 0);
	cr_assert_eq(t->n_svcs, 0);
	svctab_unref(t);
	svctab_memo_free(m);
	for (size_t i = 0; i < 4; i++)
		svc_unref(specs[i]);
}

Test(svc, memo_diff_after_endpoint_change_is_one_endpoint_entry)
{
	struct svctab_memo	*m = svctab_memo_new();
	struct svc		*spec = mk_web("web", "10.96.0.10");
	struct slice		*sl = mk_web_slice("web-1", "web", "10.244.1.1");
	struct slice		*sl2 = mk_web_slice("web-1", "web", "10.244.1.2");
	struct svctab		*t1, *t2;
	struct diff_log		 log = { .n = 0 };

	t1 = svctab_memo_build(m, &spec, 1, &sl, 1);
	t2 = svctab_memo_build(m, &spec, 1, &sl2, 1);
	cr_assert_eq(svctab_diff(t1, t2, record, &log), 1);
	cr_assert_str_eq(log.lines[0], "endpoints default/web:http/TCP");
	svctab_unref(t1);
	svctab_unref(t2);
	svctab_memo_free(m);
	svc_unref(spec);
	slice_free(sl);
	slice_free(sl2);
}
