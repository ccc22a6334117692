/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for proxy/topology.c (which endpoints serve internal and
 * external traffic under Local traffic policies and topology hints, and
 * the local endpoint count of health check node ports) and for the rules
 * portal_render() writes for a port whose external traffic has a proxy
 * port of its own or is dropped.  Pure: no sockets.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "proxy/portal.h"
#include "proxy/topology.h"

#define READY	(EP_F_READY | EP_F_SERVING)

static struct svc_ip
ip(const char *s)
{
	struct svc_ip	 a;

	memset(&a, 0, sizeof(a));
	a.family = AF_INET;
	cr_assert_eq(inet_pton(AF_INET, s, a.addr), 1);
	return a;
}

/* A NodePort service default/web, port 80 (node port 30080). */
static struct svc *
web(enum svc_traffic_policy internal, enum svc_traffic_policy external)
{
	struct svc	*s = svc_new();

	cr_assert_not_null(s);
	s->namespace = strdup("default");
	s->name = strdup("web");
	s->type = SVC_TYPE_NODE_PORT;
	s->cluster_ips[0] = ip("10.96.0.10");
	s->n_cluster_ips = 1;
	s->internal_policy = internal;
	s->external_policy = external;
	s->ports = calloc(1, sizeof(*s->ports));
	cr_assert_not_null(s->ports);
	s->n_ports = 1;
	s->ports[0].name = strdup("http");
	s->ports[0].port = 80;
	s->ports[0].node_port = 30080;
	return s;
}

static void
add_ep(struct svc *s, const char *addr, uint8_t flags, const char *node,
    const char *hints)
{
	struct svc_port	*p = &s->ports[0];
	struct endpoint	*e;

	p->endpoints = realloc(p->endpoints,
	    (p->n_endpoints + 1) * sizeof(*p->endpoints));
	cr_assert_not_null(p->endpoints);
	e = &p->endpoints[p->n_endpoints++];
	memset(e, 0, sizeof(*e));
	e->ip = ip(addr);
	e->port = 8080;
	e->flags = flags;
	e->node_name = node != NULL ? strdup(node) : NULL;
	e->hint_zones = hints != NULL ? strdup(hints) : NULL;
}

/* The selected endpoints' addresses, space-separated. */
static const char *
selected(const struct svc *s, bool external, const char *node,
    const char *zone)
{
	static char		 buf[256];
	struct topology_node	 tn = { node, zone };
	struct endpoint		 out[8];
	char			 a[SVC_IPSTRLEN];
	size_t			 i, n;

	cr_assert_leq(s->ports[0].n_endpoints, 8);
	n = topology_select(s, &s->ports[0], external, &tn, out);
	buf[0] = '\0';
	for (i = 0; i < n; i++) {
		if (i > 0)
			strcat(buf, " ");
		strcat(buf, svc_ip_str(&out[i].ip, a, sizeof(a)));
	}
	return buf;
}

Test(topology, cluster_policies_keep_every_endpoint)
{
	struct svc *s = web(SVC_POLICY_CLUSTER, SVC_POLICY_CLUSTER);

	add_ep(s, "10.1.0.1", READY, "node-a", NULL);
	add_ep(s, "10.1.0.2", READY, "node-b", NULL);
	cr_assert_str_eq(selected(s, false, "node-a", NULL),
	    "10.1.0.1 10.1.0.2");
	cr_assert_str_eq(selected(s, true, "node-a", NULL),
	    "10.1.0.1 10.1.0.2");
	cr_assert_not(topology_needs_external_port(s, &s->ports[0]));
	svc_unref(s);
}

Test(topology, internal_local_keeps_this_nodes_endpoints)
{
	struct svc *s = web(SVC_POLICY_LOCAL, SVC_POLICY_CLUSTER);

	add_ep(s, "10.1.0.1", READY, "node-a", NULL);
	add_ep(s, "10.1.0.2", READY, "node-b", NULL);
	add_ep(s, "10.1.0.3", READY, NULL, NULL);
	cr_assert_str_eq(selected(s, false, "node-a", NULL), "10.1.0.1");
	cr_assert_str_eq(selected(s, true, "node-a", NULL),
	    "10.1.0.1 10.1.0.2 10.1.0.3");
	cr_assert_str_eq(selected(s, false, "node-c", NULL), "");
	cr_assert(topology_needs_external_port(s, &s->ports[0]));
	svc_unref(s);
}

Test(topology, external_local_keeps_this_nodes_endpoints)
{
	struct svc *s = web(SVC_POLICY_CLUSTER, SVC_POLICY_LOCAL);

	add_ep(s, "10.1.0.1", READY, "node-a", NULL);
	add_ep(s, "10.1.0.2", READY, "node-b", NULL);
	cr_assert_str_eq(selected(s, false, "node-b", NULL),
	    "10.1.0.1 10.1.0.2");
	cr_assert_str_eq(selected(s, true, "node-b", NULL), "10.1.0.2");
	cr_assert(topology_needs_external_port(s, &s->ports[0]));
	svc_unref(s);
}

Test(topology, external_policy_needs_an_external_type)
{
	struct svc *s = web(SVC_POLICY_CLUSTER, SVC_POLICY_LOCAL);

	/* ClusterIP with an externalIP: not ExternalPolicyLocal upstream. */
	s->type = SVC_TYPE_CLUSTER_IP;
	s->ports[0].node_port = 0;
	s->external_ips = calloc(1, sizeof(*s->external_ips));
	s->external_ips[0] = ip("198.51.100.9");
	s->n_external_ips = 1;
	add_ep(s, "10.1.0.2", READY, "node-b", NULL);
	cr_assert_not(topology_external_local(s));
	cr_assert_str_eq(selected(s, true, "node-a", NULL), "10.1.0.2");
	cr_assert_not(topology_needs_external_port(s, &s->ports[0]));
	svc_unref(s);
}

Test(topology, internal_local_without_external_exposure_shares_one_port)
{
	struct svc *s = web(SVC_POLICY_LOCAL, SVC_POLICY_CLUSTER);

	s->type = SVC_TYPE_CLUSTER_IP;
	s->ports[0].node_port = 0;
	cr_assert_not(topology_needs_external_port(s, &s->ports[0]));
	svc_unref(s);
}

Test(topology, hints_for_this_zone_are_honoured)
{
	struct svc *s = web(SVC_POLICY_CLUSTER, SVC_POLICY_CLUSTER);

	add_ep(s, "10.1.0.1", READY, "node-a", "zone-a");
	add_ep(s, "10.1.0.2", READY, "node-b", "zone-b,zone-c");
	add_ep(s, "10.1.0.3", READY, "node-c", "zone-c");
	cr_assert_str_eq(selected(s, false, "node-a", "zone-c"),
	    "10.1.0.2 10.1.0.3");
	cr_assert_str_eq(selected(s, true, "node-a", "zone-a"), "10.1.0.1");
	svc_unref(s);
}

Test(topology, hints_need_every_ready_endpoint_hinted)
{
	struct svc *s = web(SVC_POLICY_CLUSTER, SVC_POLICY_CLUSTER);

	add_ep(s, "10.1.0.1", READY, "node-a", "zone-a");
	add_ep(s, "10.1.0.2", READY, "node-b", NULL);
	/* A not-ready endpoint without hints does not count. */
	add_ep(s, "10.1.0.3", EP_F_SERVING | EP_F_TERMINATING, "node-c",
	    NULL);
	cr_assert_str_eq(selected(s, false, "node-a", "zone-a"),
	    "10.1.0.1 10.1.0.2 10.1.0.3");
	svc_unref(s);
}

Test(topology, hints_need_a_zone_and_an_endpoint_for_it)
{
	struct svc *s = web(SVC_POLICY_CLUSTER, SVC_POLICY_CLUSTER);

	add_ep(s, "10.1.0.1", READY, "node-a", "zone-a");
	add_ep(s, "10.1.0.2", READY, "node-b", "zone-b");
	add_ep(s, "10.1.0.3", EP_F_SERVING | EP_F_TERMINATING, "node-c",
	    NULL);
	cr_assert_str_eq(selected(s, false, "node-a", NULL),
	    "10.1.0.1 10.1.0.2 10.1.0.3");
	cr_assert_str_eq(selected(s, false, "node-a", "zone-x"),
	    "10.1.0.1 10.1.0.2 10.1.0.3");
	cr_assert_str_eq(selected(s, false, "node-a", "zone-b"), "10.1.0.2");
	svc_unref(s);
}

Test(topology, local_policy_ignores_hints)
{
	struct svc *s = web(SVC_POLICY_LOCAL, SVC_POLICY_CLUSTER);

	add_ep(s, "10.1.0.1", READY, "node-a", "zone-b");
	add_ep(s, "10.1.0.2", READY, "node-b", "zone-a");
	cr_assert_str_eq(selected(s, false, "node-a", "zone-a"), "10.1.0.1");
	svc_unref(s);
}

Test(topology, local_ready_counts_ready_local_endpoints)
{
	struct svc *s = web(SVC_POLICY_CLUSTER, SVC_POLICY_LOCAL);

	add_ep(s, "10.1.0.1", READY, "node-a", NULL);
	add_ep(s, "10.1.0.2", READY, "node-a", NULL);
	add_ep(s, "10.1.0.3", EP_F_SERVING | EP_F_TERMINATING, "node-a",
	    NULL);
	add_ep(s, "10.1.0.4", READY, "node-b", NULL);
	cr_assert_eq(topology_local_ready(s, "node-a"), 2);
	cr_assert_eq(topology_local_ready(s, "node-b"), 1);
	cr_assert_eq(topology_local_ready(s, "node-c"), 0);
	svc_unref(s);
}

/* Rendering */

static char *
render_web(const struct svc *s, uint16_t ext_port, bool drop)
{
	struct portal_env	 e;
	struct portal_port	 pp;
	char			*text;

	memset(&e, 0, sizeof(e));
	e.bind_ip = ip("0.0.0.0");
	e.host_ip = ip("10.0.0.5");
	memset(&pp, 0, sizeof(pp));
	pp.svc = s;
	pp.port = &s->ports[0];
	pp.proxy_port = 20001;
	pp.external_proxy_port = ext_port;
	pp.external_drop = drop;
	text = portal_render(&e, AF_INET, &pp, 1);
	cr_assert_not_null(text);
	return text;
}

Test(topology_render, external_traffic_goes_to_its_own_port)
{
	struct svc	*s = web(SVC_POLICY_CLUSTER, SVC_POLICY_LOCAL);
	char		*t = render_web(s, 20002, false);

	cr_assert_not_null(strstr(t, "-A KUBE-PORTALS-CONTAINER -d "
	    "10.96.0.10/32 -p tcp -m comment --comment \"default/web:http\" "
	    "-m tcp --dport 80 -j REDIRECT --to-ports 20001\n"), "%s", t);
	cr_assert_not_null(strstr(t, "-A KUBE-NODEPORT-CONTAINER -p tcp -m "
	    "comment --comment \"default/web:http\" -m tcp --dport 30080 -j "
	    "REDIRECT --to-ports 20002\n"), "%s", t);
	cr_assert_not_null(strstr(t, "-A KUBE-NODEPORT-HOST -p tcp -m "
	    "comment --comment \"default/web:http\" -m tcp --dport 30080 -j "
	    "DNAT --to-destination 10.0.0.5:20002\n"), "%s", t);
	cr_assert_not_null(strstr(t, "-A KUBE-NODEPORT-NON-LOCAL -p tcp -m "
	    "comment --comment \"default/web:http\" -m tcp --dport 20002 -m "
	    "state --state NEW -j ACCEPT\n"), "%s", t);
	cr_assert_null(strstr(t, "DROP"), "%s", t);
	free(t);
	svc_unref(s);
}

Test(topology_render, no_local_endpoint_drops_external_traffic)
{
	struct svc	*s = web(SVC_POLICY_CLUSTER, SVC_POLICY_LOCAL);
	char		*t = render_web(s, 20002, true);

	cr_assert_not_null(strstr(t, "-A KUBE-NODEPORT-NON-LOCAL -p tcp -m "
	    "comment --comment \"default/web:http\" -m tcp --dport 20002 -j "
	    "DROP\n"), "%s", t);
	cr_assert_null(strstr(t, "ACCEPT"), "%s", t);
	/* The clusterIP keeps its own port, which no rule drops. */
	cr_assert_not_null(strstr(t, "--dport 80 -j REDIRECT --to-ports "
	    "20001\n"), "%s", t);
	free(t);
	svc_unref(s);
}

Test(topology_render, shared_port_renders_as_before)
{
	struct svc	*s = web(SVC_POLICY_CLUSTER, SVC_POLICY_CLUSTER);
	char		*t = render_web(s, 0, false);

	cr_assert_not_null(strstr(t, "--dport 30080 -j REDIRECT --to-ports "
	    "20001\n"), "%s", t);
	cr_assert_null(strstr(t, "20002"), "%s", t);
	free(t);
	svc_unref(s);
}
