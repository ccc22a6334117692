/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for watch/decode.c: every Service and EndpointSlice field kuproxy
 * reads, the API server's defaults, each refused input and the message that
 * names its object and field, and decode_document() over the list shapes
 * kubectl and the API server print (tests/data/).
 */
#include "config.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <json-c/json.h>

#include "base/svc.h"
#include "base/yamljson.h"
#include "watch/decode.h"

#define MAX_SEEN	64

/* A decode_sink that keeps what it is given. */
struct seen {
	struct svc	*svcs[MAX_SEEN];
	size_t		 n_svcs;
	struct slice	*slices[MAX_SEEN];
	size_t		 n_slices;
	char		 errors[MAX_SEEN][512];
	size_t		 n_errors;
};

static void
seen_service(struct svc *s, void *arg)
{
	struct seen *sn = arg;

	cr_assert_lt(sn->n_svcs, MAX_SEEN);
	sn->svcs[sn->n_svcs++] = s;
}

static void
seen_slice(struct slice *sl, void *arg)
{
	struct seen *sn = arg;

	cr_assert_lt(sn->n_slices, MAX_SEEN);
	sn->slices[sn->n_slices++] = sl;
}

static void
seen_error(const char *msg, void *arg)
{
	struct seen *sn = arg;

	cr_assert_lt(sn->n_errors, MAX_SEEN);
	snprintf(sn->errors[sn->n_errors++], sizeof(sn->errors[0]), "%s", msg);
}

static void
seen_free(struct seen *sn)
{
	size_t	 i;

	for (i = 0; i < sn->n_svcs; i++)
		svc_unref(sn->svcs[i]);
	for (i = 0; i < sn->n_slices; i++)
		slice_free(sn->slices[i]);
	free(sn);
}

/* The one document of a YAML text, owned by the caller. */
static json_object *
doc_of(const char *text)
{
	json_object	*docs, *doc;
	char		 err[256];

	cr_assert_eq(yamljson_parse(text, strlen(text), &docs, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert_eq(json_object_array_length(docs), 1);
	doc = json_object_get(json_object_array_get_idx(docs, 0));
	json_object_put(docs);
	return (doc);
}

static struct svc *
service_ok(const char *text)
{
	json_object	*doc = doc_of(text);
	struct svc	*s;
	char		 err[512];

	s = decode_service(doc, err, sizeof(err));
	cr_assert_not_null(s, "decode failed: %s", err);
	json_object_put(doc);
	return (s);
}

static void
service_fails(const char *text, const char *want)
{
	json_object	*doc = doc_of(text);
	char		 err[512] = "";

	cr_assert_null(decode_service(doc, err, sizeof(err)),
	    "decoded, expected \"%s\"", want);
	cr_assert_str_eq(err, want);
	json_object_put(doc);
}

static struct slice *
slice_ok(const char *text)
{
	json_object	*doc = doc_of(text);
	struct slice	*sl;
	char		 err[512];

	sl = decode_endpoint_slice(doc, err, sizeof(err));
	cr_assert_not_null(sl, "decode failed: %s", err);
	json_object_put(doc);
	return (sl);
}

static void
slice_fails(const char *text, const char *want)
{
	json_object	*doc = doc_of(text);
	char		 err[512] = "";

	cr_assert_null(decode_endpoint_slice(doc, err, sizeof(err)),
	    "decoded, expected \"%s\"", want);
	cr_assert_str_eq(err, want);
	json_object_put(doc);
}

static const char *
ip_str(const struct svc_ip *ip)
{
	static char	 buf[4][SVC_IPSTRLEN];
	static int	 next;

	next = (next + 1) % 4;
	return (svc_ip_str(ip, buf[next], sizeof(buf[next])));
}

#define SVC_HEAD	"kind: Service\napiVersion: v1\n" \
			"metadata: {name: web, namespace: default}\n"

Test(decode, service_defaults)
{
	struct svc *s = service_ok("kind: Service\nmetadata: {name: web}\n"
	    "spec:\n  clusterIP: 10.96.0.5\n  ports:\n  - port: 80\n");

	cr_assert_str_eq(s->namespace, "default");
	cr_assert_str_eq(s->name, "web");
	cr_assert_eq(s->type, SVC_TYPE_CLUSTER_IP);
	cr_assert_eq(s->skip, SVC_SKIP_NONE);
	cr_assert_eq(s->n_cluster_ips, 1);
	cr_assert_str_eq(ip_str(&s->cluster_ips[0]), "10.96.0.5");
	cr_assert_eq(s->affinity, SVC_AFFINITY_NONE);
	cr_assert_eq(s->internal_policy, SVC_POLICY_CLUSTER);
	cr_assert_eq(s->external_policy, SVC_POLICY_CLUSTER);
	cr_assert_eq(s->health_check_node_port, 0);
	cr_assert_null(s->balancer);
	cr_assert_null(s->proxy_protocol);
	cr_assert_eq(s->proxy_protocol_version, SVC_PROXY_PROTOCOL_NONE);
	cr_assert_null(s->proxy_name);
	cr_assert_null(s->external_name);
	cr_assert_eq(s->n_external_ips, 0);
	cr_assert_eq(s->n_ingress_ips, 0);
	cr_assert_eq(s->n_ports, 1);
	cr_assert_str_eq(s->ports[0].name, "");
	cr_assert_eq(s->ports[0].proto, SVC_PROTO_TCP);
	cr_assert_eq(s->ports[0].port, 80);
	cr_assert_eq(s->ports[0].node_port, 0);
	cr_assert_eq(s->ports[0].n_endpoints, 0);
	cr_assert(svc_is_proxied(s));
	svc_unref(s);
}

Test(decode, service_every_field)
{
	struct svc *s = service_ok(
	    "kind: Service\napiVersion: v1\n"
	    "metadata:\n  name: checkout\n  namespace: shop\n"
	    "  labels: {app: checkout}\n"
	    "  annotations:\n    kuproxy.io/balancer: least-conn\n"
	    "    kuproxy.io/proxy-protocol: v2\n"
	    "spec:\n  type: LoadBalancer\n  clusterIP: 10.96.100.2\n"
	    "  clusterIPs: [10.96.100.2, 'fd00::2']\n"
	    "  externalIPs: [192.0.2.10, 2001:db8::10]\n"
	    "  sessionAffinity: ClientIP\n"
	    "  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}\n"
	    "  internalTrafficPolicy: Local\n  externalTrafficPolicy: Local\n"
	    "  healthCheckNodePort: 32000\n"
	    "  ports:\n"
	    "  - {name: https, port: 443, targetPort: 8443, nodePort: 31443}\n"
	    "  - {name: dns, port: 53, protocol: UDP, targetPort: dns, "
	    "nodePort: 31053}\n"
	    "  - {name: assoc, port: 3868, protocol: SCTP}\n"
	    "status:\n  loadBalancer:\n    ingress:\n"
	    "    - {ip: 203.0.113.7, ipMode: VIP}\n"
	    "    - {hostname: lb.example.com}\n"
	    "    - {ip: 203.0.113.8, ipMode: Proxy}\n"
	    "    - {ip: 203.0.113.9}\n");

	cr_assert_str_eq(s->namespace, "shop");
	cr_assert_str_eq(s->name, "checkout");
	cr_assert_eq(s->type, SVC_TYPE_LOAD_BALANCER);
	cr_assert_str_eq(s->balancer, "least-conn");
	cr_assert_str_eq(s->proxy_protocol, "v2");
	cr_assert_eq(s->proxy_protocol_version, SVC_PROXY_PROTOCOL_V2);
	cr_assert_eq(s->n_cluster_ips, 2);
	cr_assert_eq(s->cluster_ips[0].family, AF_INET);
	cr_assert_str_eq(ip_str(&s->cluster_ips[1]), "fd00::2");
	cr_assert_eq(s->n_external_ips, 2);
	cr_assert_str_eq(ip_str(&s->external_ips[0]), "192.0.2.10");
	cr_assert_str_eq(ip_str(&s->external_ips[1]), "2001:db8::10");
	/* Hostname-only and ipMode Proxy entries give nothing to capture. */
	cr_assert_eq(s->n_ingress_ips, 2);
	cr_assert_str_eq(ip_str(&s->ingress_ips[0]), "203.0.113.7");
	cr_assert_str_eq(ip_str(&s->ingress_ips[1]), "203.0.113.9");
	cr_assert_eq(s->affinity, SVC_AFFINITY_CLIENT_IP);
	cr_assert_eq(s->affinity_timeout_s, 600);
	cr_assert_eq(s->internal_policy, SVC_POLICY_LOCAL);
	cr_assert_eq(s->external_policy, SVC_POLICY_LOCAL);
	cr_assert_eq(s->health_check_node_port, 32000);
	cr_assert_eq(s->n_ports, 3);
	cr_assert_str_eq(s->ports[0].name, "https");
	cr_assert_eq(s->ports[0].port, 443);
	cr_assert_eq(s->ports[0].node_port, 31443);
	cr_assert_eq(s->ports[1].proto, SVC_PROTO_UDP);
	cr_assert_eq(s->ports[1].node_port, 31053);
	cr_assert_eq(s->ports[2].proto, SVC_PROTO_SCTP);
	cr_assert_eq(s->skip, SVC_SKIP_NONE);
	svc_unref(s);
}

Test(decode, client_ip_affinity_defaults_to_10800_seconds)
{
	struct svc *s = service_ok(SVC_HEAD "spec:\n  clusterIP: 10.96.0.5\n"
	    "  sessionAffinity: ClientIP\n  ports: [{port: 80}]\n");

	cr_assert_eq(s->affinity, SVC_AFFINITY_CLIENT_IP);
	cr_assert_eq(s->affinity_timeout_s, SVC_AFFINITY_DEFAULT_S);
	svc_unref(s);
}

static struct svc *
service_annotated(const char *proxy_protocol)
{
	char text[512];

	snprintf(text, sizeof(text), "kind: Service\napiVersion: v1\n"
	    "metadata:\n  name: web\n  namespace: default\n"
	    "  annotations: {kuproxy.io/proxy-protocol: '%s'}\n"
	    "spec:\n  clusterIP: 10.96.0.5\n  ports: [{port: 80}]\n",
	    proxy_protocol);
	return (service_ok(text));
}

Test(decode, proxy_protocol_annotation)
{
	struct svc *s;

	s = service_annotated("v1");
	cr_assert_eq(s->proxy_protocol_version, SVC_PROXY_PROTOCOL_V1);
	svc_unref(s);
	s = service_annotated("v2");
	cr_assert_eq(s->proxy_protocol_version, SVC_PROXY_PROTOCOL_V2);
	svc_unref(s);
}

/* A backend expecting a header refuses clients: safer than a stray one. */
Test(decode, unknown_proxy_protocol_is_kept_but_sends_no_header)
{
	struct svc *s = service_annotated("v3");

	cr_assert_str_eq(s->proxy_protocol, "v3");
	cr_assert_eq(s->proxy_protocol_version, SVC_PROXY_PROTOCOL_NONE);
	cr_assert(svc_is_proxied(s));
	svc_unref(s);
}

Test(decode, proxy_protocol_change_makes_a_different_service)
{
	struct svc *a = service_annotated("v1"), *b = service_annotated("v2");
	struct svc *c = service_annotated("v1");

	cr_assert_not(svc_equal(a, b));
	cr_assert(svc_equal(a, c));
	svc_unref(a);
	svc_unref(b);
	svc_unref(c);
}

Test(decode, headless_services_are_skipped)
{
	static const char *specs[] = {
		"spec:\n  clusterIP: None\n  ports: [{port: 80}]\n",
		"spec:\n  clusterIP: ''\n  ports: [{port: 80}]\n",
		"spec:\n  clusterIPs: [None]\n  ports: [{port: 80}]\n",
		"spec:\n  ports: [{port: 80}]\n",
	};
	char	 text[512];
	size_t	 i;

	for (i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		struct svc *s;

		snprintf(text, sizeof(text), "%s%s", SVC_HEAD, specs[i]);
		s = service_ok(text);
		cr_assert_eq(s->skip, SVC_SKIP_HEADLESS, "%s", specs[i]);
		cr_assert_eq(s->n_cluster_ips, 0);
		cr_assert(!svc_is_proxied(s));
		svc_unref(s);
	}
}

Test(decode, external_name_services_are_skipped)
{
	struct svc *s = service_ok(SVC_HEAD "spec:\n  type: ExternalName\n"
	    "  externalName: db.example.com\n");

	cr_assert_eq(s->type, SVC_TYPE_EXTERNAL_NAME);
	cr_assert_eq(s->skip, SVC_SKIP_EXTERNAL_NAME);
	cr_assert_str_eq(s->external_name, "db.example.com");
	cr_assert_eq(s->n_ports, 0);
	svc_unref(s);
}

Test(decode, service_proxy_name_label_hands_the_service_to_another_proxy)
{
	struct svc *s = service_ok("kind: Service\nmetadata:\n  name: web\n"
	    "  labels:\n    service.kubernetes.io/service-proxy-name: my-proxy\n"
	    "spec:\n  clusterIP: 10.96.0.5\n  ports: [{port: 80}]\n");

	cr_assert_eq(s->skip, SVC_SKIP_PROXY_NAME);
	cr_assert_str_eq(s->proxy_name, "my-proxy");
	svc_unref(s);
	s = service_ok("kind: Service\nmetadata:\n  name: web\n"
	    "  labels:\n    service.kubernetes.io/service-proxy-name: ''\n"
	    "spec:\n  clusterIP: 10.96.0.5\n  ports: [{port: 80}]\n");
	cr_assert_eq(s->skip, SVC_SKIP_PROXY_NAME);
	cr_assert_str_eq(s->proxy_name, "");
	svc_unref(s);
}

Test(decode, null_fields_mean_absent)
{
	struct svc *s = service_ok(SVC_HEAD "spec:\n  clusterIP: 10.96.0.5\n"
	    "  type: null\n  externalIPs: null\n  sessionAffinity: null\n"
	    "  ports:\n  - {name: null, port: 80, protocol: null, "
	    "nodePort: null}\nstatus: {loadBalancer: {ingress: null}}\n");

	cr_assert_eq(s->type, SVC_TYPE_CLUSTER_IP);
	cr_assert_str_eq(s->ports[0].name, "");
	cr_assert_eq(s->ports[0].proto, SVC_PROTO_TCP);
	svc_unref(s);
}

/* Each bad input, and the message that must name its object and field. */
static const struct {
	const char	*spec;
	const char	*msg;
} bad_services[] = {
	{ "spec: {clusterIP: 10.96.0.5, ports: [{port: '80'}]}",
	  "default/web: spec.ports[0].port: must be an integer, not a string" },
	{ "spec: {clusterIP: 10.96.0.5, ports: [{port: 0}]}",
	  "default/web: spec.ports[0].port: 0 is out of range 1-65535" },
	{ "spec: {clusterIP: 10.96.0.5, ports: [{port: 65536}]}",
	  "default/web: spec.ports[0].port: 65536 is out of range 1-65535" },
	{ "spec: {clusterIP: 10.96.0.5, ports: [{name: a, port: 80}, "
	  "{name: b, port: 70000}]}",
	  "default/web: spec.ports[1].port: 70000 is out of range 1-65535" },
	{ "spec: {clusterIP: 10.96.0.5, ports: [{port: 80.5}]}",
	  "default/web: spec.ports[0].port: must be an integer, not a number "
	  "with a fraction" },
	{ "spec: {clusterIP: 10.96.0.5, ports: [{name: http}]}",
	  "default/web: spec.ports[0].port: required" },
	{ "spec: {clusterIP: 10.96.0.5, ports: [{port: 80, protocol: HTTP}]}",
	  "default/web: spec.ports[0].protocol: \"HTTP\" is not TCP, UDP or "
	  "SCTP" },
	{ "spec: {clusterIP: 10.96.0.5, ports: [{port: 80, nodePort: 30080}]}",
	  "default/web: spec.ports[0].nodePort: may only be set when spec.type "
	  "is NodePort or LoadBalancer" },
	{ "spec: {type: NodePort, clusterIP: 10.96.0.5, ports: [{port: 80, "
	  "nodePort: 70000}]}",
	  "default/web: spec.ports[0].nodePort: 70000 is out of range 0-65535" },
	{ "spec: {clusterIP: 10.96.0.5, ports: [{name: http, port: 80}, "
	  "{name: http, port: 8080}]}",
	  "default/web: spec.ports[1].name: \"http\" duplicates spec.ports[0]" },
	{ "spec: {clusterIP: 10.96.0.5, ports: [{name: a, port: 80}, "
	  "{name: b, port: 80}]}",
	  "default/web: spec.ports[1]: 80/TCP duplicates spec.ports[0]" },
	{ "spec: {clusterIP: 10.96.0.5, ports: [{port: 80}, {port: 443}]}",
	  "default/web: spec.ports[0].name: required when a service has more "
	  "than one port" },
	{ "spec: {clusterIP: 10.96.0.5, ports: [{name: HTTP, port: 80}]}",
	  "default/web: spec.ports[0].name: \"HTTP\" is not a DNS label" },
	{ "spec: {clusterIP: 10.96.0.5, ports: {port: 80}}",
	  "default/web: spec.ports: must be a list, not an object" },
	{ "spec: {clusterIP: 10.96.0.5, ports: [80]}",
	  "default/web: spec.ports[0]: must be an object, not an integer" },
	{ "spec: {clusterIP: 10.96.300.1}",
	  "default/web: spec.clusterIP: \"10.96.300.1\" is not a valid IP "
	  "address" },
	{ "spec: {clusterIP: 10.96.0.5, clusterIPs: [10.96.0.6]}",
	  "default/web: spec.clusterIPs[0]: \"10.96.0.6\" must match "
	  "spec.clusterIP \"10.96.0.5\"" },
	{ "spec: {clusterIPs: [10.96.0.5, 10.96.0.6]}",
	  "default/web: spec.clusterIPs: two addresses of the same family" },
	{ "spec: {clusterIPs: [10.96.0.5, 'fd00::5', 10.96.0.6]}",
	  "default/web: spec.clusterIPs: at most 2 addresses, not 3" },
	{ "spec: {clusterIPs: [10.96.0.5, 'fd00::zz']}",
	  "default/web: spec.clusterIPs[1]: \"fd00::zz\" is not a valid IP "
	  "address" },
	{ "spec: {clusterIP: 10.96.0.5, externalIPs: [192.0.2.1, example.com]}",
	  "default/web: spec.externalIPs[1]: \"example.com\" is not a valid IP "
	  "address" },
	{ "spec: {clusterIP: 10.96.0.5, externalIPs: 192.0.2.1}",
	  "default/web: spec.externalIPs: must be a list, not a string" },
	{ "spec: {clusterIP: 10.96.0.5}\nstatus: {loadBalancer: {ingress: "
	  "[{ip: 203.0.113.300}]}}",
	  "default/web: status.loadBalancer.ingress[0].ip: \"203.0.113.300\" "
	  "is not a valid IP address" },
	{ "spec: {clusterIP: 10.96.0.5, sessionAffinity: Sticky}",
	  "default/web: spec.sessionAffinity: \"Sticky\" is not None or "
	  "ClientIP" },
	{ "spec: {clusterIP: 10.96.0.5, sessionAffinity: ClientIP, "
	  "sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}}",
	  "default/web: spec.sessionAffinityConfig.clientIP.timeoutSeconds: 0 "
	  "is out of range 1-86400" },
	{ "spec: {clusterIP: 10.96.0.5, sessionAffinity: ClientIP, "
	  "sessionAffinityConfig: {clientIP: {timeoutSeconds: 86401}}}",
	  "default/web: spec.sessionAffinityConfig.clientIP.timeoutSeconds: "
	  "86401 is out of range 1-86400" },
	{ "spec: {clusterIP: 10.96.0.5, type: Magic}",
	  "default/web: spec.type: \"Magic\" is not ClusterIP, NodePort, "
	  "LoadBalancer or ExternalName" },
	{ "spec: {clusterIP: 10.96.0.5, externalTrafficPolicy: Global}",
	  "default/web: spec.externalTrafficPolicy: \"Global\" is not Cluster "
	  "or Local" },
	{ "spec: {clusterIP: 10.96.0.5, internalTrafficPolicy: 1}",
	  "default/web: spec.internalTrafficPolicy: must be a string, not an "
	  "integer" },
	{ "spec: {clusterIP: 10.96.0.5, healthCheckNodePort: -1}",
	  "default/web: spec.healthCheckNodePort: -1 is out of range 0-65535" },
	{ "spec: [1]",
	  "default/web: spec: must be an object, not a list" },
	{ "status: {}",
	  "default/web: spec: required" },
};

Test(decode, bad_services_name_object_and_field)
{
	char	 text[1024];
	size_t	 i;

	for (i = 0; i < sizeof(bad_services) / sizeof(bad_services[0]); i++) {
		snprintf(text, sizeof(text), "%s%s\n", SVC_HEAD,
		    bad_services[i].spec);
		service_fails(text, bad_services[i].msg);
	}
}

Test(decode, bad_service_metadata)
{
	service_fails("kind: Service\nspec: {}\n",
	    "Service: metadata: required");
	service_fails("kind: Service\nmetadata: {namespace: x}\nspec: {}\n",
	    "Service: metadata.name: required");
	service_fails("kind: Service\nmetadata: []\nspec: {}\n",
	    "Service: metadata: must be an object, not a list");
	service_fails("kind: Service\nmetadata: {name: Web_1}\nspec: {}\n",
	    "Service: metadata.name: \"Web_1\" is not a DNS label");
	service_fails("kind: Service\nmetadata: {name: web, namespace: 'a b'}\n"
	    "spec: {}\n",
	    "Service: metadata.namespace: \"a b\" is not a DNS label");
	service_fails("kind: Service\nmetadata: {name: web, labels: [a]}\n"
	    "spec: {}\n",
	    "default/web: metadata.labels: must be an object, not a list");
	service_fails("kind: Service\nmetadata: {name: web, annotations: "
	    "{kuproxy.io/balancer: 3}}\nspec: {}\n",
	    "default/web: metadata.annotations.kuproxy.io/balancer: must be a "
	    "string, not an integer");
	service_fails("[1, 2]\n", "Service: must be an object, not a list");
}

Test(decode, slice_every_field)
{
	struct slice *sl = slice_ok(
	    "kind: EndpointSlice\napiVersion: discovery.k8s.io/v1\n"
	    "metadata:\n  name: web-abc12\n  namespace: shop\n"
	    "  labels: {kubernetes.io/service-name: web}\n"
	    "addressType: IPv4\n"
	    "ports:\n- {name: http, port: 8080, protocol: TCP}\n"
	    "- {port: 53, protocol: UDP}\n- {name: null, port: null}\n"
	    "endpoints:\n"
	    "- addresses: [10.244.1.1, 10.244.1.2]\n"
	    "  conditions: {ready: true, serving: true, terminating: false}\n"
	    "  nodeName: node-a\n  zone: zone-a\n"
	    "  hints: {forZones: [{name: zone-a}, {name: zone-b}]}\n"
	    "- addresses: [10.244.2.1]\n"
	    "  conditions: {ready: false, serving: true, terminating: true}\n"
	    "- addresses: [10.244.3.1]\n  conditions: {}\n"
	    "- addresses: [10.244.4.1]\n  conditions: {ready: false}\n"
	    "- addresses: [10.244.5.1]\n");

	cr_assert_str_eq(sl->namespace, "shop");
	cr_assert_str_eq(sl->name, "web-abc12");
	cr_assert_str_eq(sl->service_name, "web");
	cr_assert_eq(sl->family, AF_INET);
	cr_assert_eq(sl->n_ports, 3);
	cr_assert_str_eq(sl->ports[0].name, "http");
	cr_assert_eq(sl->ports[0].port, 8080);
	cr_assert_str_eq(sl->ports[1].name, "");
	cr_assert_eq(sl->ports[1].proto, SVC_PROTO_UDP);
	cr_assert_str_eq(sl->ports[2].name, "");
	cr_assert_eq(sl->ports[2].proto, SVC_PROTO_TCP);
	cr_assert_eq(sl->ports[2].port, 0);
	cr_assert_eq(sl->n_endpoints, 5);
	/* Only addresses[0], as kube-proxy. */
	cr_assert_str_eq(ip_str(&sl->endpoints[0].ip), "10.244.1.1");
	cr_assert_eq(sl->endpoints[0].port, 0);
	cr_assert_eq(sl->endpoints[0].flags, EP_F_READY | EP_F_SERVING);
	cr_assert_str_eq(sl->endpoints[0].node_name, "node-a");
	cr_assert_str_eq(sl->endpoints[0].zone, "zone-a");
	cr_assert_str_eq(sl->endpoints[0].hint_zones, "zone-a,zone-b");
	cr_assert_eq(sl->endpoints[1].flags, EP_F_SERVING | EP_F_TERMINATING);
	cr_assert_null(sl->endpoints[1].node_name);
	cr_assert_null(sl->endpoints[1].hint_zones);
	/* nil conditions: ready, serving, not terminating. */
	cr_assert_eq(sl->endpoints[2].flags, EP_F_READY | EP_F_SERVING);
	cr_assert_eq(sl->endpoints[3].flags, EP_F_SERVING);
	cr_assert_eq(sl->endpoints[4].flags, EP_F_READY | EP_F_SERVING);
	slice_free(sl);
}

Test(decode, slice_null_lists_are_empty)
{
	struct slice *sl = slice_ok("kind: EndpointSlice\n"
	    "metadata: {name: web-x, labels: {kubernetes.io/service-name: web}}\n"
	    "addressType: IPv6\nendpoints: null\nports: null\n");

	cr_assert_str_eq(sl->namespace, "default");
	cr_assert_eq(sl->family, AF_INET6);
	cr_assert_eq(sl->n_ports, 0);
	cr_assert_eq(sl->n_endpoints, 0);
	slice_free(sl);
}

Test(decode, fqdn_slices_are_empty)
{
	struct slice *sl = slice_ok("kind: EndpointSlice\n"
	    "metadata: {name: legacy-fqdn, labels: "
	    "{kubernetes.io/service-name: legacy}}\naddressType: FQDN\n"
	    "ports: [{port: 80}]\nendpoints: [{addresses: [db.example.com]}]\n");

	cr_assert_eq(sl->family, AF_UNSPEC);
	cr_assert_eq(sl->n_ports, 0);
	cr_assert_eq(sl->n_endpoints, 0);
	cr_assert_str_eq(sl->service_name, "legacy");
	slice_free(sl);
}

Test(decode, slice_without_service_name_label_decodes)
{
	struct slice *sl = slice_ok("kind: EndpointSlice\n"
	    "metadata: {name: manual, namespace: default}\naddressType: IPv4\n"
	    "ports: [{port: 9000}]\nendpoints: [{addresses: [10.0.0.1]}]\n");

	cr_assert_null(sl->service_name);
	cr_assert_eq(sl->n_endpoints, 1);
	slice_free(sl);
}

#define SLICE_HEAD	"kind: EndpointSlice\nmetadata: {name: web-abc, " \
			"labels: {kubernetes.io/service-name: web}}\n"

Test(decode, bad_slices_name_object_and_field)
{
	slice_fails(SLICE_HEAD "ports: []\n",
	    "default/web-abc: addressType: required");
	slice_fails(SLICE_HEAD "addressType: IPv5\n",
	    "default/web-abc: addressType: \"IPv5\" is not IPv4, IPv6 or FQDN");
	slice_fails(SLICE_HEAD "addressType: IPv4\n"
	    "endpoints: [{addresses: [10.244.1.999]}]\n",
	    "default/web-abc: endpoints[0].addresses[0]: \"10.244.1.999\" is "
	    "not a valid IP address");
	slice_fails(SLICE_HEAD "addressType: IPv4\n"
	    "endpoints: [{addresses: ['fd00::1']}]\n",
	    "default/web-abc: endpoints[0].addresses[0]: \"fd00::1\" does not "
	    "match addressType IPv4");
	slice_fails(SLICE_HEAD "addressType: IPv4\nendpoints: [{}]\n",
	    "default/web-abc: endpoints[0].addresses: required");
	slice_fails(SLICE_HEAD "addressType: IPv4\n"
	    "endpoints: [{addresses: [10.0.0.1], conditions: {ready: 'yes'}}]\n",
	    "default/web-abc: endpoints[0].conditions.ready: must be a boolean, "
	    "not a string");
	slice_fails(SLICE_HEAD "addressType: IPv4\nports: [{port: 0}]\n",
	    "default/web-abc: ports[0].port: 0 is out of range 1-65535");
	slice_fails(SLICE_HEAD "addressType: IPv4\nports: [{port: '8080'}]\n",
	    "default/web-abc: ports[0].port: must be an integer, not a string");
	slice_fails(SLICE_HEAD "addressType: IPv4\nports: [{port: 1, "
	    "protocol: tcp}]\n",
	    "default/web-abc: ports[0].protocol: \"tcp\" is not TCP, UDP or "
	    "SCTP");
	slice_fails(SLICE_HEAD "addressType: IPv4\nendpoints: "
	    "[{addresses: [10.0.0.1], nodeName: 7}]\n",
	    "default/web-abc: endpoints[0].nodeName: must be a string, not an "
	    "integer");
	slice_fails("kind: EndpointSlice\nmetadata: {name: web-abc, labels: "
	    "{kubernetes.io/service-name: 'Web!'}}\naddressType: IPv4\n",
	    "default/web-abc: metadata.labels.kubernetes.io/service-name: "
	    "\"Web!\" is not a DNS label");
}

Test(decode, kind_of_checks_kind_and_api_version)
{
	static const struct {
		const char		*text;
		const char		*list_kind;
		enum decode_kind	 want;
	} cases[] = {
		{ "{kind: Service, apiVersion: v1}", NULL, DECODE_SERVICE },
		{ "{kind: Service}", NULL, DECODE_SERVICE },
		{ "{kind: Service, apiVersion: serving.knative.dev/v1}", NULL,
		  DECODE_OTHER },
		{ "{kind: EndpointSlice, apiVersion: discovery.k8s.io/v1}", NULL,
		  DECODE_ENDPOINT_SLICE },
		{ "{kind: EndpointSlice, apiVersion: discovery.k8s.io/v1beta1}",
		  NULL, DECODE_ENDPOINT_SLICE },
		{ "{kind: Endpoints, apiVersion: v1}", NULL, DECODE_OTHER },
		{ "{kind: Pod, apiVersion: v1}", NULL, DECODE_OTHER },
		{ "{metadata: {}}", "ServiceList", DECODE_SERVICE },
		{ "{metadata: {}}", "EndpointSliceList", DECODE_ENDPOINT_SLICE },
		{ "{metadata: {}}", "PodList", DECODE_OTHER },
		{ "{metadata: {}}", "List", DECODE_OTHER },
		{ "{metadata: {}}", NULL, DECODE_OTHER },
		{ "{kind: Pod}", "ServiceList", DECODE_OTHER },
	};
	size_t	 i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_object *doc = doc_of(cases[i].text);

		cr_assert_eq(decode_kind_of(doc, cases[i].list_kind),
		    cases[i].want, "%s in %s", cases[i].text,
		    cases[i].list_kind ? cases[i].list_kind : "nothing");
		json_object_put(doc);
	}
}

/* Decode every document of a file into a new seen; returns the failures. */
static int
decode_file(const char *name, struct seen **out)
{
	char		 path[512], *buf, err[512];
	size_t		 len, i;
	json_object	*docs;
	struct seen	*sn = calloc(1, sizeof(*sn));
	struct decode_sink sink = { seen_service, seen_slice, seen_error, sn };
	int		 failed = 0, rc;

	snprintf(path, sizeof(path), "%s/%s", TEST_DATA_DIR, name);
	buf = yamljson_read_file(path, 1 << 24, &len, err, sizeof(err));
	cr_assert_not_null(buf, "%s", err);
	cr_assert_eq(yamljson_parse(buf, len, &docs, err, sizeof(err)), 0,
	    "%s: %s", name, err);
	free(buf);
	for (i = 0; i < json_object_array_length(docs); i++) {
		rc = decode_document(json_object_array_get_idx(docs, i), name,
		    &sink, err, sizeof(err));
		cr_assert_neq(rc, -1, "%s", err);
		failed += rc;
	}
	json_object_put(docs);
	*out = sn;
	return (failed);
}

static struct svc *
seen_find(struct seen *sn, const char *ns, const char *name)
{
	size_t	 i;

	for (i = 0; i < sn->n_svcs; i++)
		if (strcmp(sn->svcs[i]->namespace, ns) == 0 &&
		    strcmp(sn->svcs[i]->name, name) == 0)
			return (sn->svcs[i]);
	cr_assert_fail("no service %s/%s", ns, name);
	return (NULL);
}

static void
check_kubectl_fixture(struct seen *sn)
{
	struct svc	*s;

	cr_assert_eq(sn->n_errors, 0, "%s", sn->errors[0]);
	cr_assert_eq(sn->n_svcs, 10);
	cr_assert_eq(sn->n_slices, 14);
	cr_assert_eq(seen_find(sn, "default", "web-headless")->skip,
	    SVC_SKIP_HEADLESS);
	cr_assert_eq(seen_find(sn, "default", "db-external")->skip,
	    SVC_SKIP_EXTERNAL_NAME);
	cr_assert_eq(seen_find(sn, "default", "other-proxy")->skip,
	    SVC_SKIP_PROXY_NAME);
	s = seen_find(sn, "default", "web");
	cr_assert_eq(s->affinity_timeout_s, 600);
	cr_assert_eq(s->n_external_ips, 1);
	cr_assert_str_eq(s->balancer, "round-robin");
	s = seen_find(sn, "shop", "checkout");
	cr_assert_eq(s->n_ingress_ips, 1);
	cr_assert_eq(s->health_check_node_port, 32000);
	cr_assert_str_eq(s->proxy_protocol, "v2");
	cr_assert_eq(seen_find(sn, "shop", "frontend")->ports[0].node_port,
	    30080);
	cr_assert_eq(seen_find(sn, "default", "dual")->n_cluster_ips, 2);
	cr_assert_eq(seen_find(sn, "kube-system", "kube-dns")->n_ports, 3);
}

Test(decode, kubectl_json_list)
{
	struct seen	*sn;

	cr_assert_eq(decode_file("services-list.json", &sn), 0);
	check_kubectl_fixture(sn);
	seen_free(sn);
}

Test(decode, kubectl_yaml_list)
{
	struct seen	*sn;

	cr_assert_eq(decode_file("services-list.yaml", &sn), 0);
	check_kubectl_fixture(sn);
	seen_free(sn);
}

Test(decode, api_server_lists_without_item_kinds)
{
	struct seen	*sn;

	cr_assert_eq(decode_file("servicelist.json", &sn), 0);
	cr_assert_eq(sn->n_svcs, 10);
	cr_assert_eq(sn->n_slices, 0);
	seen_free(sn);
	cr_assert_eq(decode_file("endpointslicelist.json", &sn), 0);
	cr_assert_eq(sn->n_svcs, 0);
	cr_assert_eq(sn->n_slices, 14);
	seen_free(sn);
}

Test(decode, multi_document_yaml)
{
	struct seen	*sn;
	struct svc	*s;

	cr_assert_eq(decode_file("services-multidoc.yaml", &sn), 0);
	cr_assert_eq(sn->n_svcs, 2);
	cr_assert_eq(sn->n_slices, 2);
	s = seen_find(sn, "default", "udp-echo");
	cr_assert_eq(s->type, SVC_TYPE_NODE_PORT);
	cr_assert_eq(s->ports[0].proto, SVC_PROTO_UDP);
	cr_assert_eq(s->external_policy, SVC_POLICY_LOCAL);
	cr_assert_str_eq(seen_find(sn, "prod", "api")->balancer, "least-conn");
	cr_assert_str_eq(sn->slices[0]->endpoints[0].hint_zones,
	    "eu-west-1a,eu-west-1b");
	seen_free(sn);
}

Test(decode, the_kubectl_fixture_builds_the_expected_table)
{
	struct seen	*sn;
	struct svctab	*t;
	struct svc	*s;
	struct svctab_stats st;

	cr_assert_eq(decode_file("services-list.json", &sn), 0);
	t = svctab_build(sn->svcs, sn->n_svcs, sn->slices, sn->n_slices, NULL);
	sn->n_svcs = 0;
	cr_assert_not_null(t);
	svctab_stats(t, &st);
	cr_assert_eq(st.n_services, 10);
	cr_assert_eq(st.n_proxied, 7);
	s = svctab_find(t, "kube-system", "kube-dns");
	cr_assert_not_null(s);
	/* 10.244.0.3 is in both slices: once per port. */
	cr_assert_eq(s->ports[0].n_endpoints, 3);
	s = svctab_find(t, "default", "web");
	/* Four pods, one of them in two slices, one terminating. */
	cr_assert_eq(s->ports[0].n_endpoints, 4);
	cr_assert_eq(s->ports[0].endpoints[0].port, 8080);
	s = svctab_find(t, "shop", "legacy");
	cr_assert_eq(s->ports[0].n_endpoints, 0);
	svctab_unref(t);
	seen_free(sn);
}

/* A bad fixture: how many objects fail and the first message. */
static const struct {
	const char	*file;
	const char	*msg;
} bad_files[] = {
	{ "bad-services/port-string.json", "bad-services/port-string.json: "
	  "default/web: spec.ports[0].port: must be an integer, not a string" },
	{ "bad-services/port-zero.yaml", "bad-services/port-zero.yaml:10: "
	  "default/web: spec.ports[0].port: 0 is out of range 1-65535" },
	{ "bad-services/port-65536.yaml", "bad-services/port-65536.yaml:10: "
	  "default/web: spec.ports[0].port: 65536 is out of range 1-65535" },
	{ "bad-services/bad-cluster-ip.yaml", "bad-services/bad-cluster-ip.yaml"
	  ":7: default/web: spec.clusterIP: \"10.96.300.1\" is not a valid IP "
	  "address" },
	{ "bad-services/bad-endpoint-ip.yaml",
	  "bad-services/bad-endpoint-ip.yaml:14: default/web-abc12: "
	  "endpoints[0].addresses[0]: \"10.244.1.999\" is not a valid IP "
	  "address" },
	{ "bad-services/duplicate-ports.yaml",
	  "bad-services/duplicate-ports.yaml:11: default/web: spec.ports[1]."
	  "name: \"http\" duplicates spec.ports[0]" },
	{ "bad-services/unnamed-ports.yaml",
	  "bad-services/unnamed-ports.yaml:9: default/web: spec.ports[0].name: "
	  "required when a service has more than one port" },
	{ "bad-services/mixed-good-bad.yaml",
	  "bad-services/mixed-good-bad.yaml:23: default/bad: spec.ports[0]."
	  "port: 70000 is out of range 1-65535" },
};

Test(decode, bad_fixtures_fail_with_file_line_object_and_field)
{
	struct seen	*sn;
	size_t		 i;

	for (i = 0; i < sizeof(bad_files) / sizeof(bad_files[0]); i++) {
		cr_assert_eq(decode_file(bad_files[i].file, &sn), 1, "%s",
		    bad_files[i].file);
		cr_assert_eq(sn->n_errors, 1);
		cr_assert_str_eq(sn->errors[0], bad_files[i].msg);
		seen_free(sn);
	}
}

static int
decode_text(const char *text, struct seen **out, char *err, size_t errlen)
{
	json_object	*doc = doc_of(text);
	struct seen	*sn = calloc(1, sizeof(*sn));
	struct decode_sink sink = { seen_service, seen_slice, seen_error, sn };
	int		 rc;

	rc = decode_document(doc, NULL, &sink, err, errlen);
	json_object_put(doc);
	*out = sn;
	return (rc);
}

Test(decode, document_counts_failures_and_keeps_going)
{
	struct seen	*sn;
	char		 err[512];

	cr_assert_eq(decode_text("kind: List\nitems:\n"
	    "- {kind: Service, metadata: {name: a}, spec: {clusterIP: 10.0.0.1}}\n"
	    "- {kind: Service, metadata: {name: b}, spec: {clusterIP: bad}}\n"
	    "- {kind: Pod, metadata: {name: p}}\n"
	    "- {metadata: {name: nokind}}\n"
	    "- 42\n"
	    "- {kind: EndpointSlice, metadata: {name: s}, addressType: IPv4}\n"
	    "- {kind: Service, metadata: {name: c}, spec: {ports: [{port: 0}]}}\n",
	    &sn, err, sizeof(err)), 4);
	cr_assert_eq(sn->n_svcs, 1);
	cr_assert_eq(sn->n_slices, 1);
	cr_assert_eq(sn->n_errors, 4);
	cr_assert_str_eq(sn->errors[0], "items[1]: default/b: spec.clusterIP: "
	    "\"bad\" is not a valid IP address");
	cr_assert_str_eq(sn->errors[1], "items[3]: kind: required in the "
	    "items of a List");
	cr_assert_str_eq(sn->errors[2], "items[4]: must be an object");
	cr_assert_str_eq(sn->errors[3], "items[6]: default/c: spec.ports[0]."
	    "port: 0 is out of range 1-65535");
	seen_free(sn);
}

Test(decode, document_that_is_no_object_or_list_is_refused)
{
	struct seen	*sn;
	char		 err[512];

	cr_assert_eq(decode_text("just text\n", &sn, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "document is not a Kubernetes object or list "
	    "(no kind)");
	seen_free(sn);
	cr_assert_eq(decode_text("{metadata: {name: x}}\n", &sn, err,
	    sizeof(err)), -1);
	seen_free(sn);
}

Test(decode, array_documents_hold_objects_and_lists)
{
	struct seen	*sn;
	char		 err[512];

	cr_assert_eq(decode_text("- {kind: Service, metadata: {name: a}, "
	    "spec: {clusterIP: 10.0.0.1}}\n"
	    "- {kind: ServiceList, items: [{metadata: {name: b}, spec: {}}]}\n"
	    "- {kind: EndpointSliceList, items: [{metadata: {name: s}, "
	    "addressType: FQDN}]}\n"
	    "- {no: kind}\n", &sn, err, sizeof(err)), 1);
	cr_assert_eq(sn->n_svcs, 2);
	cr_assert_eq(sn->n_slices, 1);
	cr_assert_str_eq(sn->errors[0], "[3]: element is not a Kubernetes "
	    "object or list (no kind)");
	seen_free(sn);
}

Test(decode, empty_and_null_lists_decode_to_nothing)
{
	struct seen	*sn;
	char		 err[512];

	cr_assert_eq(decode_text("{kind: List, items: []}\n", &sn, err,
	    sizeof(err)), 0);
	seen_free(sn);
	cr_assert_eq(decode_text("{kind: ServiceList, items: null}\n", &sn, err,
	    sizeof(err)), 0);
	cr_assert_eq(sn->n_svcs, 0);
	seen_free(sn);
}

/* A service annotated kuproxy.io/balancer: value (NULL: no annotation). */
static struct svc *
service_balanced(const char *value)
{
	char text[512];

	if (value == NULL)
		return service_ok("kind: Service\napiVersion: v1\n"
		    "metadata: {name: web, namespace: default}\n"
		    "spec: {clusterIP: 10.96.0.5, ports: [{port: 80}]}\n");
	snprintf(text, sizeof(text), "kind: Service\napiVersion: v1\n"
	    "metadata: {name: web, namespace: default, annotations: "
	    "{kuproxy.io/balancer: %s}}\n"
	    "spec: {clusterIP: 10.96.0.5, ports: [{port: 80}]}\n", value);
	return service_ok(text);
}

Test(decode, balancer_annotation_values)
{
	static const struct {
		const char		*value;
		enum svc_balancer	 want;
	} cases[] = {
		{ NULL, SVC_BALANCER_DEFAULT },
		{ "round-robin", SVC_BALANCER_ROUND_ROBIN },
		{ "least-connections", SVC_BALANCER_LEAST_CONN },
		{ "maglev", SVC_BALANCER_MAGLEV },
		/* Unknown: logged, and --balancer applies. */
		{ "random", SVC_BALANCER_DEFAULT },
		{ "\"\"", SVC_BALANCER_DEFAULT },
	};
	struct svc *s;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		s = service_balanced(cases[i].value);
		cr_assert_eq(s->balancer_kind, cases[i].want, "%s",
		    cases[i].value != NULL ? cases[i].value : "(none)");
		cr_assert(svc_is_proxied(s));
		svc_unref(s);
	}
}

Test(decode, balancer_change_makes_services_differ)
{
	struct svc *a = service_balanced("maglev");
	struct svc *b = service_balanced("least-connections");
	struct svc *c = service_balanced("maglev");

	cr_assert_not(svc_equal(a, b));
	cr_assert(svc_equal(a, c));
	cr_assert_str_eq(svc_balancer_str(a->balancer_kind), "maglev");
	svc_unref(a);
	svc_unref(b);
	svc_unref(c);
}
