/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kuproxy explain, offline: each service type from a services file, the
 * rules it lists compared with what the renderer installs, the text
 * printed from the same document, the target syntax and the command line.
 * Nothing here needs a daemon; the bind address is a fixed IP so that no
 * host IP is looked up and the rules do not depend on this machine.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bsd/string.h>

#include <criterion/criterion.h>

#include "base/explain.h"
#include "base/svc.h"
#include "base/yamljson.h"
#include "conf/conf.h"
#include "proxy/portal.h"
#include "watch/decode.h"

#define BIND	"10.0.0.5"

static const char services[] =
    "apiVersion: v1\n"
    "kind: List\n"
    "items:\n"
    "- apiVersion: v1\n"
    "  kind: Service\n"
    "  metadata: {name: plain, namespace: default}\n"
    "  spec:\n"
    "    clusterIP: 10.96.0.10\n"
    "    ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080}]\n"
    "- apiVersion: v1\n"
    "  kind: Service\n"
    "  metadata: {name: np, namespace: shop}\n"
    "  spec:\n"
    "    clusterIP: 10.96.0.11\n"
    "    type: NodePort\n"
    "    ports:\n"
    "    - {name: http, port: 80, protocol: TCP, nodePort: 30080}\n"
    "    - {name: dns, port: 53, protocol: UDP, nodePort: 30053}\n"
    "- apiVersion: v1\n"
    "  kind: Service\n"
    "  metadata: {name: lb, namespace: default}\n"
    "  spec:\n"
    "    clusterIP: 10.96.0.12\n"
    "    type: LoadBalancer\n"
    "    externalIPs: [198.51.100.5, 192.0.2.99]\n"
    "    ports: [{name: http, port: 80, protocol: TCP, nodePort: 30081}]\n"
    "  status:\n"
    "    loadBalancer: {ingress: [{ip: 203.0.113.7}]}\n"
    "- apiVersion: v1\n"
    "  kind: Service\n"
    "  metadata: {name: sticky, namespace: default}\n"
    "  spec:\n"
    "    clusterIP: 10.96.0.13\n"
    "    sessionAffinity: ClientIP\n"
    "    sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}\n"
    "    ports: [{name: http, port: 80, protocol: TCP}]\n"
    "- apiVersion: v1\n"
    "  kind: Service\n"
    "  metadata: {name: db, namespace: default}\n"
    "  spec:\n"
    "    clusterIP: None\n"
    "    ports: [{name: pg, port: 5432, protocol: TCP}]\n"
    "- apiVersion: v1\n"
    "  kind: Service\n"
    "  metadata: {name: docs, namespace: default}\n"
    "  spec: {type: ExternalName, externalName: docs.example.com}\n"
    "- apiVersion: v1\n"
    "  kind: Service\n"
    "  metadata:\n"
    "    name: foreign\n"
    "    namespace: default\n"
    "    labels: {service.kubernetes.io/service-proxy-name: other}\n"
    "  spec:\n"
    "    clusterIP: 10.96.0.18\n"
    "    ports: [{name: http, port: 80, protocol: TCP}]\n"
    "- addressType: IPv4\n"
    "  apiVersion: discovery.k8s.io/v1\n"
    "  kind: EndpointSlice\n"
    "  metadata:\n"
    "    labels: {kubernetes.io/service-name: plain}\n"
    "    name: plain-1\n"
    "    namespace: default\n"
    "  endpoints:\n"
    "  - {addresses: [10.244.1.12], conditions: {ready: true}}\n"
    "  - {addresses: [10.244.1.11], conditions: {ready: true}}\n"
    "  - {addresses: [10.244.1.13], conditions: {ready: false}}\n"
    "  ports: [{name: http, port: 8080, protocol: TCP}]\n"
    "- addressType: IPv4\n"
    "  apiVersion: discovery.k8s.io/v1\n"
    "  kind: EndpointSlice\n"
    "  metadata:\n"
    "    labels: {kubernetes.io/service-name: db}\n"
    "    name: db-1\n"
    "    namespace: default\n"
    "  endpoints:\n"
    "  - {addresses: [10.244.1.11], conditions: {ready: true}}\n"
    "  ports: [{name: pg, port: 5432, protocol: TCP}]\n"
    "- addressType: IPv4\n"
    "  apiVersion: discovery.k8s.io/v1\n"
    "  kind: EndpointSlice\n"
    "  metadata:\n"
    "    labels: {kubernetes.io/service-name: np}\n"
    "    name: np-1\n"
    "    namespace: shop\n"
    "  endpoints:\n"
    "  - {addresses: [10.244.1.21], conditions: {ready: true}}\n"
    "  ports:\n"
    "  - {name: dns, port: 53, protocol: UDP}\n"
    "  - {name: http, port: 8080, protocol: TCP}\n";

static char	 path[64];

static void
write_services(void)
{
	FILE	*f;
	int	 fd;

	snprintf(path, sizeof(path), "/tmp/test_explain.%d.XXXXXX", getpid());
	fd = mkstemp(path);
	cr_assert_neq(fd, -1);
	f = fdopen(fd, "w");
	cr_assert_not_null(f);
	fputs(services, f);
	fclose(f);
}

static void
remove_services(void)
{
	unlink(path);
}

TestSuite(explain, .init = write_services, .fini = remove_services);

/* Parse "kuproxy explain --services-file PATH --bind-address BIND ARGS". */
static void
parse(struct conf *c, const char *target, const char *extra1,
    const char *extra2)
{
	static char	 args[10][256];
	const char	*words[10];
	char		*argv[10];
	char		 err[512];
	int		 argc = 0, i;

	words[argc++] = "kuproxy";
	words[argc++] = "explain";
	words[argc++] = "--services-file";
	words[argc++] = path;
	words[argc++] = "--bind-address";
	words[argc++] = BIND;
	if (extra1 != NULL)
		words[argc++] = extra1;
	if (extra2 != NULL)
		words[argc++] = extra2;
	words[argc++] = target;
	for (i = 0; i < argc; i++) {
		strlcpy(args[i], words[i], sizeof(args[i]));
		argv[i] = args[i];
	}
	argv[argc] = NULL;
	conf_defaults(c);
	cr_assert_eq(conf_parse_args(c, argc, argv, err, sizeof(err)), 0,
	    "%s", err);
	cr_assert_eq(c->command, CONF_CMD_EXPLAIN);
	cr_assert_str_eq(c->explain_target, target);
}

static json_object *
explain(const char *target, const char *extra1, const char *extra2)
{
	struct conf	 c;
	json_object	*doc;
	char		 err[512];

	parse(&c, target, extra1, extra2);
	doc = explain_file(&c, c.explain_target, err, sizeof(err));
	cr_assert_not_null(doc, "%s", err);
	conf_clear(&c);
	return doc;
}

static json_object *
get(json_object *o, const char *key)
{
	json_object	*v = NULL;

	cr_assert(json_object_object_get_ex(o, key, &v), "no \"%s\" in %s",
	    key, json_object_to_json_string(o));
	return v;
}

static const char *
str(json_object *o, const char *key)
{
	return json_object_get_string(get(o, key));
}

static json_object *
idx(json_object *a, size_t i)
{
	cr_assert(i < json_object_array_length(a), "no [%zu] in %s", i,
	    json_object_to_json_string(a));
	return json_object_array_get_idx(a, i);
}

static json_object *
port0(json_object *doc)
{
	return idx(get(doc, "ports"), 0);
}

/* The rule lines of one portal, "\n"-joined. */
static void
rules_text(json_object *portal, char *buf, size_t len)
{
	json_object	*rules = get(portal, "rules");
	size_t		 i, n = 0;

	buf[0] = '\0';
	for (i = 0; i < json_object_array_length(rules) && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s\n",
		    str(idx(rules, i), "rule"));
}

Test(explain, cluster_ip_rules_balancer_and_paths)
{
	json_object	*doc = explain("plain", NULL, NULL);
	json_object	*p = port0(doc), *portal, *bal, *eps, *paths;
	char		 rules[4096];

	cr_assert_str_eq(str(doc, "source"), "file");
	cr_assert_str_eq(str(doc, "type"), "ClusterIP");
	cr_assert_str_eq(str(p, "key"), "default/plain:http/TCP");
	cr_assert(json_object_is_type(get(p, "proxyPort"), json_type_null));
	portal = idx(get(p, "portals"), 0);
	cr_assert_str_eq(str(portal, "kind"), "clusterIP");
	cr_assert_str_eq(str(portal, "address"), "10.96.0.10:80");
	rules_text(portal, rules, sizeof(rules));
	cr_assert_str_eq(rules,
	    "-A KUBE-PORTALS-CONTAINER -d 10.96.0.10/32 -p tcp -m comment "
	    "--comment \"default/plain:http\" -m tcp --dport 80 -j DNAT "
	    "--to-destination " BIND ":<proxy-port>\n"
	    "-A KUBE-PORTALS-HOST -d 10.96.0.10/32 -p tcp -m comment "
	    "--comment \"default/plain:http\" -m tcp --dport 80 -j DNAT "
	    "--to-destination " BIND ":<proxy-port>\n");
	cr_assert_str_eq(str(idx(get(portal, "rules"), 0), "hook"),
	    "PREROUTING");
	cr_assert_str_eq(str(idx(get(portal, "rules"), 1), "hook"), "OUTPUT");

	/* A starting kuproxy's balancer: the first ready one in order. */
	bal = get(p, "balancer");
	cr_assert_str_eq(str(bal, "nextEndpoint"), "10.244.1.11:8080");
	cr_assert_eq(json_object_get_int(get(bal, "usableEndpoints")), 2);
	cr_assert_str_eq(str(bal, "sessionAffinity"), "None");
	eps = get(p, "endpoints");
	cr_assert_eq(json_object_array_length(eps), 3);
	cr_assert_str_eq(str(idx(eps, 2), "address"), "10.244.1.13:8080");
	cr_assert_not(json_object_get_boolean(get(idx(eps, 2), "ready")));
	cr_assert_not(json_object_get_boolean(get(idx(eps, 2), "used")));
	cr_assert(json_object_get_boolean(get(idx(eps, 0), "used")));

	paths = get(p, "paths");
	cr_assert_not_null(strstr(json_object_to_json_string(get(paths,
	    "pod")), "KUBE-PORTALS-CONTAINER"));
	cr_assert_not_null(strstr(json_object_to_json_string(get(paths,
	    "node")), "KUBE-PORTALS-HOST"));
	cr_assert_not_null(strstr(str(paths, "then"), "10.244.1.11:8080"));
	json_object_put(doc);
}

Test(explain, node_port_rules_with_the_filter_accept)
{
	json_object	*doc = explain("shop/np:dns", NULL, NULL);
	json_object	*p, *portals, *np;
	char		 rules[4096];

	/* The port filter left only the UDP port. */
	cr_assert_eq(json_object_array_length(get(doc, "ports")), 1);
	p = port0(doc);
	cr_assert_str_eq(str(p, "protocol"), "UDP");
	portals = get(p, "portals");
	cr_assert_eq(json_object_array_length(portals), 2);
	np = idx(portals, 1);
	cr_assert_str_eq(str(np, "kind"), "nodePort");
	cr_assert_eq(json_object_get_int(get(np, "nodePort")), 30053);
	rules_text(np, rules, sizeof(rules));
	cr_assert_str_eq(rules,
	    "-A KUBE-NODEPORT-CONTAINER -p udp -m comment --comment "
	    "\"shop/np:dns\" -m udp --dport 30053 -j DNAT --to-destination "
	    BIND ":<proxy-port>\n"
	    "-A KUBE-NODEPORT-HOST -p udp -m comment --comment "
	    "\"shop/np:dns\" -m udp --dport 30053 -j DNAT --to-destination "
	    BIND ":<proxy-port>\n"
	    "-A KUBE-NODEPORT-NON-LOCAL -p udp -m comment --comment "
	    "\"shop/np:dns\" -m udp --dport <proxy-port> -m state --state "
	    "NEW -j ACCEPT\n");
	cr_assert_str_eq(str(idx(get(np, "rules"), 2), "table"), "filter");
	cr_assert_str_eq(str(idx(get(np, "rules"), 2), "hook"), "INPUT");
	cr_assert_not_null(strstr(str(get(p, "paths"), "then"),
	    "--udp-timeout"));
	json_object_put(doc);

	/* By number, and both ports when none is named. */
	doc = explain("shop/np:80", NULL, NULL);
	cr_assert_str_eq(str(port0(doc), "name"), "http");
	json_object_put(doc);
	doc = explain("shop/np", NULL, NULL);
	cr_assert_eq(json_object_array_length(get(doc, "ports")), 2);
	json_object_put(doc);
}

Test(explain, load_balancer_ingress_and_external_ips)
{
	json_object	*doc = explain("lb", "--external-ip-allow",
			    "198.51.100.0/24");
	json_object	*portals = get(port0(doc), "portals");
	json_object	*ext, *denied, *ingress;
	char		 rules[4096];

	/* Upstream's order: cluster IP, external IPs, ingress, node port. */
	cr_assert_eq(json_object_array_length(portals), 5);
	ext = idx(portals, 1);
	denied = idx(portals, 2);
	ingress = idx(portals, 3);
	cr_assert_str_eq(str(ext, "kind"), "externalIP");
	cr_assert_str_eq(str(ext, "address"), "198.51.100.5:80");
	rules_text(ext, rules, sizeof(rules));
	cr_assert_not_null(strstr(rules, "-d 198.51.100.5/32 -p tcp -m "
	    "comment --comment \"default/lb:http\" -m tcp --dport 80 -m "
	    "physdev ! --physdev-is-in -j DNAT"));
	cr_assert_eq(json_object_array_length(get(ext, "rules")), 3);
	cr_assert_str_eq(str(denied, "address"), "192.0.2.99:80");
	cr_assert_eq(json_object_array_length(get(denied, "rules")), 0);
	cr_assert_str_eq(str(denied, "note"),
	    "no rules: outside --external-ip-allow");
	cr_assert_str_eq(str(ingress, "kind"), "loadBalancerIngress");
	cr_assert_str_eq(str(ingress, "address"), "203.0.113.7:80");
	cr_assert_eq(json_object_array_length(get(ingress, "rules")), 2);
	cr_assert_not_null(strstr(json_object_to_json_string(get(get(port0(doc),
	    "paths"), "outside")), "203.0.113.7:80"));
	json_object_put(doc);
}

Test(explain, client_ip_affinity)
{
	json_object	*doc = explain("default/sticky:http", NULL, NULL);
	json_object	*bal = get(port0(doc), "balancer");

	cr_assert_str_eq(str(bal, "sessionAffinity"), "ClientIP");
	cr_assert_eq(json_object_get_int(get(bal, "affinityTimeoutSeconds")),
	    600);
	cr_assert_eq(json_object_get_int(get(bal, "nStickyClients")), 0);
	/* No endpoints: nothing next, and the port refuses. */
	cr_assert(json_object_is_type(get(bal, "nextEndpoint"),
	    json_type_null));
	cr_assert_not_null(strstr(str(get(port0(doc), "paths"), "then"),
	    "refused at once"));
	json_object_put(doc);
}

Test(explain, headless_names_its_pods_in_dns)
{
	json_object	*doc = explain("db", NULL, NULL);
	const char	*dns;

	cr_assert_not(json_object_get_boolean(get(doc, "proxied")));
	cr_assert_str_eq(str(get(doc, "skipped"), "reason"), "headless");
	dns = json_object_to_json_string(get(doc, "dns"));
	cr_assert_not_null(strstr(dns, "\"db.default.svc.cluster.local\""));
	cr_assert_not_null(strstr(dns,
	    "\"10-244-1-11.default.pod.cluster.local\""));
	cr_assert_not_null(strstr(dns,
	    "\"_pg._tcp.db.default.svc.cluster.local\""));
	cr_assert_not(json_object_get_boolean(get(port0(doc), "served")));
	json_object_put(doc);
}

Test(explain, external_name_is_a_cname)
{
	json_object	*doc = explain("docs", NULL, NULL);
	json_object	*rec = idx(get(doc, "dns"), 0);

	cr_assert_str_eq(str(get(doc, "skipped"), "reason"), "externalName");
	cr_assert_str_eq(str(rec, "name"), "docs.default.svc.cluster.local");
	cr_assert_str_eq(str(rec, "type"), "CNAME");
	cr_assert_str_eq(str(rec, "data"), "docs.example.com");
	json_object_put(doc);
}

Test(explain, service_proxy_name_names_the_owner)
{
	json_object	*doc = explain("default/foreign", NULL, NULL);
	json_object	*sk = get(doc, "skipped");

	cr_assert_str_eq(str(sk, "reason"), "serviceProxyName");
	cr_assert_str_eq(str(sk, "proxyName"), "other");
	cr_assert_not_null(strstr(str(sk, "explanation"),
	    "the proxy named \"other\" owns it"));
	cr_assert_not(json_object_get_boolean(get(port0(doc), "served")));
	json_object_put(doc);
}

Test(explain, unknown_service_or_port_is_an_error_exit_1)
{
	struct conf	 c;
	json_object	*doc = explain("nope", NULL, NULL);

	cr_assert_not_null(strstr(str(doc, "error"),
	    "no service default/nope"));
	json_object_put(doc);
	doc = explain("plain:https", NULL, NULL);
	cr_assert_not_null(strstr(str(doc, "error"),
	    "has no port \"https\" (its ports: http 80/TCP)"));
	json_object_put(doc);

	parse(&c, "default/nope", NULL, NULL);
	cr_assert_eq(explain_client(&c), 1);
	conf_clear(&c);
	parse(&c, "a/b/c", NULL, NULL);
	cr_assert_eq(explain_client(&c), 2);
	conf_clear(&c);
}

static void
table_add_svc(struct svc *svc, void *arg)
{
	cr_assert_eq(svctab_builder_add_svc(arg, svc), 0);
}

static void
table_add_slice(struct slice *sl, void *arg)
{
	cr_assert_eq(svctab_builder_add_slice(arg, sl), 0);
}

static void
table_error(const char *msg, void *arg)
{
	cr_assert_fail("%s", msg);
}

/* The test's services file as a table, decoded here independently. */
static struct svctab *
table(void)
{
	struct svctab_builder	 b;
	struct decode_sink	 sink = { table_add_svc, table_add_slice,
				    table_error, &b };
	struct svctab		*tab;
	json_object		*docs;
	char			 err[512];

	memset(&b, 0, sizeof(b));
	b.owns_slices = true;
	cr_assert_eq(yamljson_parse(services, strlen(services), &docs, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert_eq(decode_document(json_object_array_get_idx(docs, 0),
	    "test", &sink, err, sizeof(err)), 0, "%s", err);
	json_object_put(docs);
	tab = svctab_builder_build(&b, NULL);
	svctab_builder_clear(&b);
	cr_assert_not_null(tab);
	return tab;
}

static int
line_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sort the "\n"-terminated lines of buf in place (order is by portal). */
static void
sort_lines(char *buf, size_t len)
{
	char	*lines[64], copy[8192], *line, *save;
	size_t	 n = 0, i, used = 0;

	strlcpy(copy, buf, sizeof(copy));
	for (line = strtok_r(copy, "\n", &save); line != NULL && n < 64;
	    line = strtok_r(NULL, "\n", &save))
		lines[n++] = line;
	qsort(lines, n, sizeof(lines[0]), line_cmp);
	buf[0] = '\0';
	for (i = 0; i < n; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s\n",
		    lines[i]);
}

/*
 * Every rule explain lists for a service port, with the placeholder
 * replaced by a proxy port, is a line portal_render() writes for that
 * port, and the other way round: explain cannot drift from what is
 * installed.
 */
static void
check_against_renderer(const char *ns, const char *name, const char *allow)
{
	char			 target[128], listed[8192] = "";
	char			 rendered[8192] = "", *text, *line, *p;
	json_object		*doc, *portals;
	struct svctab		*tab = table();
	const struct svc	*svc = svctab_find(tab, ns, name);
	struct portal_env	 env;
	struct portal_port	 pp;
	struct conf_cidr	 cidr;
	size_t			 i, n = 0, m = 0;

	cr_assert_not_null(svc);
	snprintf(target, sizeof(target), "%s/%s", ns, name);
	doc = explain(target, allow != NULL ? "--external-ip-allow" : NULL,
	    allow);
	portals = get(port0(doc), "portals");
	for (i = 0; i < json_object_array_length(portals); i++) {
		char r[4096];

		rules_text(idx(portals, i), r, sizeof(r));
		n += (size_t)snprintf(listed + n, sizeof(listed) - n, "%s", r);
	}
	while ((p = strstr(listed, EXPLAIN_PROXY_PORT_TEXT)) != NULL) {
		memcpy(p, "20000", 5);
		memmove(p + 5, p + strlen(EXPLAIN_PROXY_PORT_TEXT),
		    strlen(p + strlen(EXPLAIN_PROXY_PORT_TEXT)) + 1);
	}

	memset(&env, 0, sizeof(env));
	cr_assert_eq(svc_ip_parse(BIND, &env.bind_ip), 0);
	if (allow != NULL) {
		char err[128];

		cr_assert_eq(conf_parse_cidr(allow, &cidr, err, sizeof(err)),
		    0);
		env.external_ip_allow = &cidr;
		env.n_external_ip_allow = 1;
	}
	memset(&pp, 0, sizeof(pp));
	pp.svc = svc;
	pp.port = &svc->ports[0];
	pp.proxy_port = 20000;
	text = portal_render(&env, AF_INET, &pp, 1);
	cr_assert_not_null(text);
	for (line = strtok(text, "\n"); line != NULL;
	    line = strtok(NULL, "\n"))
		if (strncmp(line, "-A ", 3) == 0)
			m += (size_t)snprintf(rendered + m,
			    sizeof(rendered) - m, "%s\n", line);
	sort_lines(listed, sizeof(listed));
	sort_lines(rendered, sizeof(rendered));
	cr_assert_str_eq(listed, rendered);
	cr_assert_gt(m, 0);
	free(text);
	svctab_unref(tab);
	json_object_put(doc);
}

Test(explain, rules_are_the_renderers_for_every_type)
{
	check_against_renderer("default", "plain", NULL);
	check_against_renderer("shop", "np", NULL);
	check_against_renderer("default", "lb", NULL);
	check_against_renderer("default", "lb", "198.51.100.0/24");
	check_against_renderer("default", "sticky", NULL);
}

/* The text is printed from the document: each rule and path appears. */
Test(explain, text_says_what_the_json_says)
{
	json_object	*doc = explain("lb", NULL, NULL);
	json_object	*portals = get(port0(doc), "portals");
	json_object	*paths = get(port0(doc), "paths");
	char		*text = NULL;
	size_t		 len = 0, i, j;
	FILE		*f = open_memstream(&text, &len);
	static const char *places[] = { "pod", "node", "outside" };

	cr_assert_not_null(f);
	explain_print_text(doc, f);
	fclose(f);
	for (i = 0; i < json_object_array_length(portals); i++) {
		json_object *rules = get(idx(portals, i), "rules");

		for (j = 0; j < json_object_array_length(rules); j++)
			cr_assert_not_null(strstr(text, str(idx(rules, j),
			    "rule")), "missing from the text:\n%s", text);
	}
	for (i = 0; i < 3; i++) {
		json_object *a = get(paths, places[i]);

		for (j = 0; j < json_object_array_length(a); j++)
			cr_assert_not_null(strstr(text, json_object_get_string(
			    idx(a, j))));
	}
	cr_assert_not_null(strstr(text, "proxy port <proxy-port> (assigned "
	    "when kuproxy runs)"));
	free(text);
	json_object_put(doc);
}

Test(explain, target_syntax)
{
	struct explain_target	 t;
	char			 err[256];

	cr_assert_eq(explain_parse_target("web", &t, err, sizeof(err)), 0);
	cr_assert_str_eq(t.namespace, "default");
	cr_assert_str_eq(t.name, "web");
	cr_assert_str_eq(t.port, "");
	cr_assert_eq(explain_parse_target("kube-system/kube-dns:dns-tcp", &t,
	    err, sizeof(err)), 0);
	cr_assert_str_eq(t.namespace, "kube-system");
	cr_assert_str_eq(t.name, "kube-dns");
	cr_assert_str_eq(t.port, "dns-tcp");
	cr_assert_eq(explain_parse_target("web:8080", &t, err, sizeof(err)),
	    0);
	cr_assert_str_eq(t.port, "8080");
	cr_assert_eq(explain_parse_target("a/b/c", &t, err, sizeof(err)), -1);
	cr_assert_eq(explain_parse_target("/web", &t, err, sizeof(err)), -1);
	cr_assert_eq(explain_parse_target("web:", &t, err, sizeof(err)), -1);
	cr_assert_eq(explain_parse_target("", &t, err, sizeof(err)), -1);
	cr_assert_eq(explain_parse_target("we b", &t, err, sizeof(err)), -1);
}

Test(explain, command_line)
{
	struct conf	 c;
	char		 err[256];
	char		*two[] = { "kuproxy", "explain", "a", "b", NULL };
	char		*late[] = { "kuproxy", "--json", "explain", "web",
			    NULL };
	char		*dash[] = { "kuproxy", "explain", "--json", "--",
			    "web", NULL };

	conf_defaults(&c);
	cr_assert_eq(conf_parse_args(&c, 4, two, err, sizeof(err)), -1);
	cr_assert_not_null(strstr(err, "takes one service"), "%s", err);
	conf_clear(&c);
	/* The command word comes first, as with status. */
	conf_defaults(&c);
	cr_assert_eq(conf_parse_args(&c, 4, late, err, sizeof(err)), -1);
	conf_clear(&c);
	conf_defaults(&c);
	cr_assert_eq(conf_parse_args(&c, 5, dash, err, sizeof(err)), 0, "%s",
	    err);
	cr_assert(c.output_json);
	cr_assert_str_eq(c.explain_target, "web");
	conf_clear(&c);
}
