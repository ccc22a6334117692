/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests of the portal module: the exact iptables-restore text for each kind
 * of portal (pure), and, as root, the real thing with iptables-legacy and
 * iptables-nft inside a network namespace of the test's own (each Criterion
 * test is a process of its own; unshare(CLONE_NEWNET) gives it an empty
 * netns, so the host's rules are never touched), plus port claims and
 * portal jobs (the copy a sync renders, and the runner that keeps a sync
 * off the event loop).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <event2/event.h>

#include "base/svc.h"
#include "conf/conf.h"
#include "proxy/portal.h"
#include "proxy/portal_job.h"

/* Building services */

static struct svc_ip
ip(const char *s)
{
	struct svc_ip	 a;

	cr_assert_eq(svc_ip_parse(s, &a), 0, "bad test address %s", s);
	return a;
}

static struct conf_cidr
cidr(const char *s)
{
	struct conf_cidr	 c;
	char			 addr[64], *slash;

	memset(&c, 0, sizeof(c));
	strcpy(addr, s);
	slash = strchr(addr, '/');
	cr_assert_not_null(slash);
	*slash = '\0';
	c.prefix_len = atoi(slash + 1);
	c.family = strchr(addr, ':') != NULL ? AF_INET6 : AF_INET;
	cr_assert_eq(inet_pton(c.family, addr, c.addr), 1);
	return c;
}

static struct svc *
mk_svc(const char *ns, const char *name, enum svc_type type,
    const char *cluster_ip)
{
	struct svc	*s = svc_new();

	cr_assert_not_null(s);
	s->namespace = strdup(ns);
	s->name = strdup(name);
	s->type = type;
	s->cluster_ips[0] = ip(cluster_ip);
	s->n_cluster_ips = 1;
	return s;
}

static struct svc_port *
add_port(struct svc *s, const char *name, enum svc_proto proto,
    uint16_t port, uint16_t node_port)
{
	struct svc_port	*p;

	s->ports = realloc(s->ports, (s->n_ports + 1) * sizeof(*s->ports));
	cr_assert_not_null(s->ports);
	p = &s->ports[s->n_ports++];
	memset(p, 0, sizeof(*p));
	p->name = strdup(name);
	p->proto = proto;
	p->port = port;
	p->node_port = node_port;
	return p;
}

static void
add_ip(struct svc_ip **ips, size_t *n, const char *s)
{
	*ips = realloc(*ips, (*n + 1) * sizeof(**ips));
	cr_assert_not_null(*ips);
	(*ips)[(*n)++] = ip(s);
}

/* The usual environment: bound to 0.0.0.0, host IP 10.0.0.5. */
static struct portal_env
env_any(void)
{
	struct portal_env	 e;

	memset(&e, 0, sizeof(e));
	e.bind_ip = ip("0.0.0.0");
	e.host_ip = ip("10.0.0.5");
	return e;
}

static char *
render1(const struct portal_env *e, int family, const struct svc *s,
    const uint16_t *proxy_ports)
{
	struct portal_port	 pp[8];
	size_t			 i;
	char			*text;

	memset(pp, 0, sizeof(pp));
	for (i = 0; i < s->n_ports && i < 8; i++) {
		pp[i].svc = s;
		pp[i].port = &s->ports[i];
		pp[i].proxy_port = proxy_ports[i];
	}
	text = portal_render(e, family, pp, s->n_ports);
	cr_assert_not_null(text);
	return text;
}

#define NAT_HEAD \
	"*nat\n" \
	":KUBE-NODEPORT-CONTAINER - [0:0]\n" \
	":KUBE-NODEPORT-HOST - [0:0]\n" \
	":KUBE-PORTALS-CONTAINER - [0:0]\n" \
	":KUBE-PORTALS-HOST - [0:0]\n"
#define FILTER_HEAD \
	"COMMIT\n" \
	"*filter\n" \
	":KUBE-NODEPORT-NON-LOCAL - [0:0]\n"
#define EMPTY_RENDER NAT_HEAD FILTER_HEAD "COMMIT\n"

static void
expect_text(const char *got, const char *want)
{
	cr_assert_str_eq(got, want, "rendered:\n%s\nwanted:\n%s", got, want);
}

/* Rendering */

Test(portal, cluster_ip_redirects_pods_and_dnats_the_node)
{
	struct svc		*s = mk_svc("default", "web",
	    SVC_TYPE_CLUSTER_IP, "10.96.0.10");
	struct portal_env	 e = env_any();
	uint16_t		 pp[] = { 20001 };
	char			*text;

	add_port(s, "http", SVC_PROTO_TCP, 80, 0);
	text = render1(&e, AF_INET, s, pp);
	expect_text(text, NAT_HEAD
	    "-A KUBE-PORTALS-CONTAINER -d 10.96.0.10/32 -p tcp -m comment "
	    "--comment \"default/web:http\" -m tcp --dport 80 -j REDIRECT "
	    "--to-ports 20001\n"
	    "-A KUBE-PORTALS-HOST -d 10.96.0.10/32 -p tcp -m comment "
	    "--comment \"default/web:http\" -m tcp --dport 80 -j DNAT "
	    "--to-destination 10.0.0.5:20001\n"
	    FILTER_HEAD "COMMIT\n");
	free(text);
	svc_unref(s);
}

Test(portal, unnamed_port_comment_is_namespace_and_name)
{
	struct svc		*s = mk_svc("default", "web",
	    SVC_TYPE_CLUSTER_IP, "10.96.0.10");
	struct portal_env	 e = env_any();
	uint16_t		 pp[] = { 20001 };
	char			*text;

	add_port(s, "", SVC_PROTO_TCP, 80, 0);
	text = render1(&e, AF_INET, s, pp);
	cr_assert_not_null(strstr(text, "--comment \"default/web\" -m tcp"));
	free(text);
	svc_unref(s);
}

Test(portal, node_port_without_nodeport_addresses_has_no_destination)
{
	struct svc		*s = mk_svc("default", "web",
	    SVC_TYPE_NODE_PORT, "10.96.0.10");
	struct portal_env	 e = env_any();
	uint16_t		 pp[] = { 20001 };
	char			*text;

	add_port(s, "http", SVC_PROTO_TCP, 80, 30080);
	text = render1(&e, AF_INET, s, pp);
	expect_text(text, NAT_HEAD
	    "-A KUBE-NODEPORT-CONTAINER -p tcp -m comment --comment "
	    "\"default/web:http\" -m tcp --dport 30080 -j REDIRECT "
	    "--to-ports 20001\n"
	    "-A KUBE-NODEPORT-HOST -p tcp -m comment --comment "
	    "\"default/web:http\" -m tcp --dport 30080 -j DNAT "
	    "--to-destination 10.0.0.5:20001\n"
	    "-A KUBE-PORTALS-CONTAINER -d 10.96.0.10/32 -p tcp -m comment "
	    "--comment \"default/web:http\" -m tcp --dport 80 -j REDIRECT "
	    "--to-ports 20001\n"
	    "-A KUBE-PORTALS-HOST -d 10.96.0.10/32 -p tcp -m comment "
	    "--comment \"default/web:http\" -m tcp --dport 80 -j DNAT "
	    "--to-destination 10.0.0.5:20001\n"
	    FILTER_HEAD
	    "-A KUBE-NODEPORT-NON-LOCAL -p tcp -m comment --comment "
	    "\"default/web:http\" -m tcp --dport 20001 -m state --state NEW "
	    "-j ACCEPT\n"
	    "COMMIT\n");
	free(text);
	svc_unref(s);
}

Test(portal, node_port_gets_one_rule_per_nodeport_address_of_the_family)
{
	struct svc		*s = mk_svc("default", "web",
	    SVC_TYPE_NODE_PORT, "10.96.0.10");
	struct portal_env	 e = env_any();
	struct conf_cidr	 cidrs[3];
	uint16_t		 pp[] = { 20001 };
	char			*text;

	/* Host bits are cleared, as iptables-save prints the prefix. */
	cidrs[0] = cidr("10.1.2.3/8");
	cidrs[1] = cidr("2001:db8::/64");
	cidrs[2] = cidr("192.168.7.0/24");
	e.nodeport_cidrs = cidrs;
	e.n_nodeport_cidrs = 3;
	add_port(s, "dns", SVC_PROTO_UDP, 53, 30053);
	text = render1(&e, AF_INET, s, pp);
	expect_text(text, NAT_HEAD
	    "-A KUBE-NODEPORT-CONTAINER -d 10.0.0.0/8 -p udp -m comment "
	    "--comment \"default/web:dns\" -m udp --dport 30053 -j REDIRECT "
	    "--to-ports 20001\n"
	    "-A KUBE-NODEPORT-CONTAINER -d 192.168.7.0/24 -p udp -m comment "
	    "--comment \"default/web:dns\" -m udp --dport 30053 -j REDIRECT "
	    "--to-ports 20001\n"
	    "-A KUBE-NODEPORT-HOST -d 10.0.0.0/8 -p udp -m comment "
	    "--comment \"default/web:dns\" -m udp --dport 30053 -j DNAT "
	    "--to-destination 10.0.0.5:20001\n"
	    "-A KUBE-NODEPORT-HOST -d 192.168.7.0/24 -p udp -m comment "
	    "--comment \"default/web:dns\" -m udp --dport 30053 -j DNAT "
	    "--to-destination 10.0.0.5:20001\n"
	    "-A KUBE-PORTALS-CONTAINER -d 10.96.0.10/32 -p udp -m comment "
	    "--comment \"default/web:dns\" -m udp --dport 53 -j REDIRECT "
	    "--to-ports 20001\n"
	    "-A KUBE-PORTALS-HOST -d 10.96.0.10/32 -p udp -m comment "
	    "--comment \"default/web:dns\" -m udp --dport 53 -j DNAT "
	    "--to-destination 10.0.0.5:20001\n"
	    FILTER_HEAD
	    "-A KUBE-NODEPORT-NON-LOCAL -p udp -m comment --comment "
	    "\"default/web:dns\" -m udp --dport 20001 -m state --state NEW "
	    "-j ACCEPT\n"
	    "COMMIT\n");
	free(text);
	svc_unref(s);
}

Test(portal, node_port_with_only_other_family_addresses_gets_no_rule)
{
	struct svc		*s = mk_svc("default", "web",
	    SVC_TYPE_NODE_PORT, "10.96.0.10");
	struct portal_env	 e = env_any();
	struct conf_cidr	 c = cidr("2001:db8::/64");
	uint16_t		 pp[] = { 20001 };
	char			*text;

	e.nodeport_cidrs = &c;
	e.n_nodeport_cidrs = 1;
	add_port(s, "http", SVC_PROTO_TCP, 80, 30080);
	text = render1(&e, AF_INET, s, pp);
	cr_assert_null(strstr(text, "-A KUBE-NODEPORT"));
	cr_assert_not_null(strstr(text, "-A KUBE-PORTALS-CONTAINER"));
	free(text);
	svc_unref(s);
}

Test(portal, load_balancer_ingress_ip_gets_the_cluster_ip_pair)
{
	struct svc		*s = mk_svc("shop", "front",
	    SVC_TYPE_LOAD_BALANCER, "10.96.0.20");
	struct portal_env	 e = env_any();
	uint16_t		 pp[] = { 20002 };
	char			*text;

	add_port(s, "https", SVC_PROTO_TCP, 443, 31443);
	add_ip(&s->ingress_ips, &s->n_ingress_ips, "203.0.113.7");
	text = render1(&e, AF_INET, s, pp);
	expect_text(text, NAT_HEAD
	    "-A KUBE-NODEPORT-CONTAINER -p tcp -m comment --comment "
	    "\"shop/front:https\" -m tcp --dport 31443 -j REDIRECT "
	    "--to-ports 20002\n"
	    "-A KUBE-NODEPORT-HOST -p tcp -m comment --comment "
	    "\"shop/front:https\" -m tcp --dport 31443 -j DNAT "
	    "--to-destination 10.0.0.5:20002\n"
	    "-A KUBE-PORTALS-CONTAINER -d 10.96.0.20/32 -p tcp -m comment "
	    "--comment \"shop/front:https\" -m tcp --dport 443 -j REDIRECT "
	    "--to-ports 20002\n"
	    "-A KUBE-PORTALS-CONTAINER -d 203.0.113.7/32 -p tcp -m comment "
	    "--comment \"shop/front:https\" -m tcp --dport 443 -j REDIRECT "
	    "--to-ports 20002\n"
	    "-A KUBE-PORTALS-HOST -d 10.96.0.20/32 -p tcp -m comment "
	    "--comment \"shop/front:https\" -m tcp --dport 443 -j DNAT "
	    "--to-destination 10.0.0.5:20002\n"
	    "-A KUBE-PORTALS-HOST -d 203.0.113.7/32 -p tcp -m comment "
	    "--comment \"shop/front:https\" -m tcp --dport 443 -j DNAT "
	    "--to-destination 10.0.0.5:20002\n"
	    FILTER_HEAD
	    "-A KUBE-NODEPORT-NON-LOCAL -p tcp -m comment --comment "
	    "\"shop/front:https\" -m tcp --dport 20002 -m state --state NEW "
	    "-j ACCEPT\n"
	    "COMMIT\n");
	free(text);
	svc_unref(s);
}

/*
 * An ingress entry with only a hostname never becomes an ingress IP (the
 * decoder drops it), so the service renders as a NodePort does.
 */
Test(portal, load_balancer_without_ingress_ip_has_no_ingress_rules)
{
	struct svc		*lb = mk_svc("shop", "front",
	    SVC_TYPE_LOAD_BALANCER, "10.96.0.20");
	struct svc		*np = mk_svc("shop", "front",
	    SVC_TYPE_NODE_PORT, "10.96.0.20");
	struct portal_env	 e = env_any();
	uint16_t		 pp[] = { 20002 };
	char			*a, *b;

	add_port(lb, "https", SVC_PROTO_TCP, 443, 31443);
	add_port(np, "https", SVC_PROTO_TCP, 443, 31443);
	a = render1(&e, AF_INET, lb, pp);
	b = render1(&e, AF_INET, np, pp);
	expect_text(a, b);
	free(a);
	free(b);
	svc_unref(lb);
	svc_unref(np);
}

Test(portal, external_ip_gets_upstreams_three_rules_only_when_allowed)
{
	struct svc		*s = mk_svc("default", "web",
	    SVC_TYPE_CLUSTER_IP, "10.96.0.10");
	struct portal_env	 e = env_any();
	struct conf_cidr	 allow = cidr("198.51.100.0/24");
	uint16_t		 pp[] = { 20001 };
	char			*text;

	e.external_ip_allow = &allow;
	e.n_external_ip_allow = 1;
	add_port(s, "http", SVC_PROTO_TCP, 80, 0);
	add_ip(&s->external_ips, &s->n_external_ips, "192.0.2.1");
	add_ip(&s->external_ips, &s->n_external_ips, "198.51.100.9");
	cr_assert(portal_external_ip_allowed(&e, &s->external_ips[1]));
	cr_assert_not(portal_external_ip_allowed(&e, &s->external_ips[0]));
	text = render1(&e, AF_INET, s, pp);
	expect_text(text, NAT_HEAD
	    "-A KUBE-PORTALS-CONTAINER -d 10.96.0.10/32 -p tcp -m comment "
	    "--comment \"default/web:http\" -m tcp --dport 80 -j REDIRECT "
	    "--to-ports 20001\n"
	    "-A KUBE-PORTALS-CONTAINER -d 198.51.100.9/32 -p tcp -m comment "
	    "--comment \"default/web:http\" -m tcp --dport 80 -m physdev ! "
	    "--physdev-is-in -j REDIRECT --to-ports 20001\n"
	    "-A KUBE-PORTALS-CONTAINER -d 198.51.100.9/32 -p tcp -m comment "
	    "--comment \"default/web:http\" -m tcp --dport 80 -m addrtype "
	    "--dst-type LOCAL -j REDIRECT --to-ports 20001\n"
	    "-A KUBE-PORTALS-HOST -d 10.96.0.10/32 -p tcp -m comment "
	    "--comment \"default/web:http\" -m tcp --dport 80 -j DNAT "
	    "--to-destination 10.0.0.5:20001\n"
	    "-A KUBE-PORTALS-HOST -d 198.51.100.9/32 -p tcp -m comment "
	    "--comment \"default/web:http\" -m tcp --dport 80 -m addrtype "
	    "--dst-type LOCAL -j DNAT --to-destination 10.0.0.5:20001\n"
	    FILTER_HEAD "COMMIT\n");
	cr_assert_null(strstr(text, "192.0.2.1"));
	free(text);

	/* An empty allow list allows every address, as kube-proxy did. */
	e.n_external_ip_allow = 0;
	text = render1(&e, AF_INET, s, pp);
	cr_assert_not_null(strstr(text, "-d 192.0.2.1/32"));
	free(text);
	svc_unref(s);
}

Test(portal, external_ip_without_physdev_keeps_the_local_rules)
{
	struct svc		*s = mk_svc("default", "web",
	    SVC_TYPE_CLUSTER_IP, "10.96.0.10");
	struct portal_env	 e = env_any();
	uint16_t		 pp[] = { 20001 };
	char			*text;

	e.no_physdev = true;
	add_port(s, "http", SVC_PROTO_TCP, 80, 0);
	add_ip(&s->external_ips, &s->n_external_ips, "198.51.100.9");
	text = render1(&e, AF_INET, s, pp);
	cr_assert_null(strstr(text, "physdev"));
	cr_assert_not_null(strstr(text, "-A KUBE-PORTALS-CONTAINER -d "
	    "198.51.100.9/32 -p tcp -m comment --comment \"default/web:http\" "
	    "-m tcp --dport 80 -m addrtype --dst-type LOCAL -j REDIRECT "
	    "--to-ports 20001\n"));
	free(text);
	svc_unref(s);
}

Test(portal, specific_bind_ip_dnats_pods_and_node_to_it)
{
	struct svc		*s = mk_svc("default", "web",
	    SVC_TYPE_NODE_PORT, "10.96.0.10");
	struct portal_env	 e = env_any();
	uint16_t		 pp[] = { 20001 };
	char			*text;

	e.bind_ip = ip("10.0.0.7");
	add_port(s, "http", SVC_PROTO_TCP, 80, 30080);
	text = render1(&e, AF_INET, s, pp);
	expect_text(text, NAT_HEAD
	    "-A KUBE-NODEPORT-CONTAINER -p tcp -m comment --comment "
	    "\"default/web:http\" -m tcp --dport 30080 -j DNAT "
	    "--to-destination 10.0.0.7:20001\n"
	    "-A KUBE-NODEPORT-HOST -p tcp -m comment --comment "
	    "\"default/web:http\" -m tcp --dport 30080 -j DNAT "
	    "--to-destination 10.0.0.7:20001\n"
	    "-A KUBE-PORTALS-CONTAINER -d 10.96.0.10/32 -p tcp -m comment "
	    "--comment \"default/web:http\" -m tcp --dport 80 -j DNAT "
	    "--to-destination 10.0.0.7:20001\n"
	    "-A KUBE-PORTALS-HOST -d 10.96.0.10/32 -p tcp -m comment "
	    "--comment \"default/web:http\" -m tcp --dport 80 -j DNAT "
	    "--to-destination 10.0.0.7:20001\n"
	    FILTER_HEAD
	    "-A KUBE-NODEPORT-NON-LOCAL -p tcp -m comment --comment "
	    "\"default/web:http\" -m tcp --dport 20001 -m state --state NEW "
	    "-j ACCEPT\n"
	    "COMMIT\n");
	free(text);

	/* The other family has no listener, so it gets no rule. */
	text = render1(&e, AF_INET6, s, pp);
	expect_text(text, EMPTY_RENDER);
	free(text);
	svc_unref(s);
}

Test(portal, multi_port_udp_and_tcp_each_get_their_proxy_port)
{
	struct svc		*s = mk_svc("kube-system", "kube-dns",
	    SVC_TYPE_CLUSTER_IP, "10.96.0.10");
	struct portal_env	 e = env_any();
	uint16_t		 pp[] = { 52726, 52727 };
	char			*text;

	add_port(s, "dns", SVC_PROTO_UDP, 53, 0);
	add_port(s, "dns-tcp", SVC_PROTO_TCP, 53, 0);
	text = render1(&e, AF_INET, s, pp);
	expect_text(text, NAT_HEAD
	    "-A KUBE-PORTALS-CONTAINER -d 10.96.0.10/32 -p udp -m comment "
	    "--comment \"kube-system/kube-dns:dns\" -m udp --dport 53 "
	    "-j REDIRECT --to-ports 52726\n"
	    "-A KUBE-PORTALS-CONTAINER -d 10.96.0.10/32 -p tcp -m comment "
	    "--comment \"kube-system/kube-dns:dns-tcp\" -m tcp --dport 53 "
	    "-j REDIRECT --to-ports 52727\n"
	    "-A KUBE-PORTALS-HOST -d 10.96.0.10/32 -p udp -m comment "
	    "--comment \"kube-system/kube-dns:dns\" -m udp --dport 53 "
	    "-j DNAT --to-destination 10.0.0.5:52726\n"
	    "-A KUBE-PORTALS-HOST -d 10.96.0.10/32 -p tcp -m comment "
	    "--comment \"kube-system/kube-dns:dns-tcp\" -m tcp --dport 53 "
	    "-j DNAT --to-destination 10.0.0.5:52727\n"
	    FILTER_HEAD "COMMIT\n");
	free(text);
	svc_unref(s);
}

Test(portal, unproxied_sctp_and_portless_ports_get_no_rules)
{
	struct svc		*headless = mk_svc("default", "db",
	    SVC_TYPE_CLUSTER_IP, "10.96.0.30");
	struct svc		*s = mk_svc("default", "web",
	    SVC_TYPE_CLUSTER_IP, "10.96.0.10");
	struct portal_env	 e = env_any();
	struct portal_port	 pp[3];
	char			*text;

	headless->skip = SVC_SKIP_HEADLESS;
	add_port(headless, "pg", SVC_PROTO_TCP, 5432, 0);
	add_port(s, "sig", SVC_PROTO_SCTP, 3868, 0);
	add_port(s, "http", SVC_PROTO_TCP, 80, 0);
	pp[0] = (struct portal_port){ .svc = headless,
	    .port = &headless->ports[0], .proxy_port = 20001 };
	pp[1] = (struct portal_port){ .svc = s,
	    .port = &s->ports[0], .proxy_port = 20002 };
	pp[2] = (struct portal_port){ .svc = s,
	    .port = &s->ports[1], .proxy_port = 0 };
	text = portal_render(&e, AF_INET, pp, 3);
	cr_assert_not_null(text);
	expect_text(text, EMPTY_RENDER);
	free(text);
	svc_unref(headless);
	svc_unref(s);
}

Test(portal, no_host_ip_means_no_host_rules)
{
	struct svc		*s = mk_svc("default", "web",
	    SVC_TYPE_NODE_PORT, "10.96.0.10");
	struct portal_env	 e = env_any();
	uint16_t		 pp[] = { 20001 };
	char			*text;

	memset(&e.host_ip, 0, sizeof(e.host_ip));
	add_port(s, "http", SVC_PROTO_TCP, 80, 30080);
	text = render1(&e, AF_INET, s, pp);
	cr_assert_null(strstr(text, "-A KUBE-PORTALS-HOST"));
	cr_assert_null(strstr(text, "-A KUBE-NODEPORT-HOST"));
	cr_assert_not_null(strstr(text, "-A KUBE-PORTALS-CONTAINER"));
	cr_assert_not_null(strstr(text, "-A KUBE-NODEPORT-CONTAINER"));
	free(text);
	svc_unref(s);
}

Test(portal, dual_stack_renders_each_family_with_its_own_addresses)
{
	struct svc		*s = mk_svc("default", "web",
	    SVC_TYPE_CLUSTER_IP, "10.96.0.10");
	struct portal_env	 e = env_any();
	uint16_t		 pp[] = { 20001 };
	char			*v4, *v6;

	s->cluster_ips[1] = ip("fd00:96::10");
	s->n_cluster_ips = 2;
	add_ip(&s->external_ips, &s->n_external_ips, "2001:db8::9");
	add_port(s, "http", SVC_PROTO_TCP, 80, 0);

	/* 0.0.0.0 listeners take IPv4 only. */
	v6 = render1(&e, AF_INET6, s, pp);
	expect_text(v6, EMPTY_RENDER);
	free(v6);

	e.bind_ip = ip("::");
	e.host_ip6 = ip("2001:db8::5");
	v4 = render1(&e, AF_INET, s, pp);
	v6 = render1(&e, AF_INET6, s, pp);
	cr_assert_null(strstr(v4, "fd00"));
	cr_assert_null(strstr(v4, "2001:db8"));
	cr_assert_not_null(strstr(v4, "-d 10.96.0.10/32"));
	cr_assert_null(strstr(v6, "10.96.0.10"));
	expect_text(v6, NAT_HEAD
	    "-A KUBE-PORTALS-CONTAINER -d fd00:96::10/128 -p tcp -m comment "
	    "--comment \"default/web:http\" -m tcp --dport 80 -j REDIRECT "
	    "--to-ports 20001\n"
	    "-A KUBE-PORTALS-CONTAINER -d 2001:db8::9/128 -p tcp -m comment "
	    "--comment \"default/web:http\" -m tcp --dport 80 -m physdev ! "
	    "--physdev-is-in -j REDIRECT --to-ports 20001\n"
	    "-A KUBE-PORTALS-CONTAINER -d 2001:db8::9/128 -p tcp -m comment "
	    "--comment \"default/web:http\" -m tcp --dport 80 -m addrtype "
	    "--dst-type LOCAL -j REDIRECT --to-ports 20001\n"
	    "-A KUBE-PORTALS-HOST -d fd00:96::10/128 -p tcp -m comment "
	    "--comment \"default/web:http\" -m tcp --dport 80 -j DNAT "
	    "--to-destination [2001:db8::5]:20001\n"
	    "-A KUBE-PORTALS-HOST -d 2001:db8::9/128 -p tcp -m comment "
	    "--comment \"default/web:http\" -m tcp --dport 80 -m addrtype "
	    "--dst-type LOCAL -j DNAT --to-destination [2001:db8::5]:20001\n"
	    FILTER_HEAD "COMMIT\n");
	free(v4);
	free(v6);
	svc_unref(s);
}

Test(portal, comment_cannot_break_the_restore_input)
{
	struct svc		*s = mk_svc("default", "we\"b",
	    SVC_TYPE_CLUSTER_IP, "10.96.0.10");
	struct portal_env	 e = env_any();
	uint16_t		 pp[] = { 20001 };
	char			*text;

	add_port(s, "a b\n-X", SVC_PROTO_TCP, 80, 0);
	text = render1(&e, AF_INET, s, pp);
	cr_assert_not_null(strstr(text, "--comment \"default/we_b:a_b_-X\""));
	free(text);
	svc_unref(s);
}

Test(portal, jumps_are_upstreams)
{
	char	 line[512];

	snprintf(line, sizeof(line), "-A %s %s -j %s", portal_jumps[0].from,
	    portal_jumps[0].args, portal_jumps[0].chain);
	cr_assert_str_eq(line, "-A PREROUTING -m comment --comment \"handle "
	    "ClusterIPs; NOTE: this must be before the NodePort rules\" "
	    "-j KUBE-PORTALS-CONTAINER");
	cr_assert(portal_jumps[0].first);
	snprintf(line, sizeof(line), "-A %s %s -j %s", portal_jumps[3].from,
	    portal_jumps[3].args, portal_jumps[3].chain);
	cr_assert_str_eq(line, "-A OUTPUT -m addrtype --dst-type LOCAL -m "
	    "comment --comment \"handle service NodePorts; NOTE: this must be "
	    "the last rule in the chain\" -j KUBE-NODEPORT-HOST");
	cr_assert_not(portal_jumps[3].first);
	cr_assert_str_eq(portal_jumps[4].table, "filter");
	cr_assert_str_eq(portal_jumps[4].from, "INPUT");
}

/* Port claims (no root needed) */

static uint16_t
bound_port(int fd)
{
	struct sockaddr_storage	 ss;
	socklen_t		 len = sizeof(ss);

	cr_assert_eq(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	return ntohs(ss.ss_family == AF_INET6 ?
	    ((struct sockaddr_in6 *)&ss)->sin6_port :
	    ((struct sockaddr_in *)&ss)->sin_port);
}

/* Try to bind as a typical server would (SO_REUSEADDR); 0 or errno. */
static int
try_bind(int family, int type, const char *addr, uint16_t port)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	int			 fd, one = 1, rc = 0;

	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		inet_pton(AF_INET, addr, &sin->sin_addr);
	} else {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		inet_pton(AF_INET6, addr, &sin6->sin6_addr);
	}
	fd = socket(family, type, 0);
	cr_assert_geq(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, family == AF_INET ?
	    sizeof(*sin) : sizeof(*sin6)) == -1)
		rc = errno;
	else if (type == SOCK_STREAM && listen(fd, 1) == -1)
		rc = errno;
	close(fd);
	return rc;
}

Test(portal, claim_port_blocks_other_binds_and_releases_on_close)
{
	int		 types[] = { SOCK_STREAM, SOCK_DGRAM }, fd, i;
	enum svc_proto	 protos[] = { SVC_PROTO_TCP, SVC_PROTO_UDP };
	uint16_t	 port;

	for (i = 0; i < 2; i++) {
		fd = portal_claim_port(protos[i], NULL, 0);
		cr_assert_geq(fd, 0);
		port = bound_port(fd);
		cr_assert_eq(try_bind(AF_INET, types[i], "0.0.0.0", port),
		    EADDRINUSE);
		cr_assert_eq(try_bind(AF_INET, types[i], "127.0.0.1", port),
		    EADDRINUSE);
		cr_assert_eq(try_bind(AF_INET6, types[i], "::", port),
		    EADDRINUSE);
		/* A second claim by ourselves fails the same way. */
		cr_assert_eq(portal_claim_port(protos[i], NULL, port), -1);
		close(fd);
		cr_assert_eq(try_bind(AF_INET, types[i], "0.0.0.0", port), 0);
	}
}

Test(portal, claim_port_on_one_address)
{
	struct svc_ip	 lo = ip("127.0.0.1");
	int		 fd;
	uint16_t	 port;

	fd = portal_claim_port(SVC_PROTO_TCP, &lo, 0);
	cr_assert_geq(fd, 0);
	port = bound_port(fd);
	cr_assert_eq(try_bind(AF_INET, SOCK_STREAM, "127.0.0.1", port),
	    EADDRINUSE);
	cr_assert_eq(try_bind(AF_INET, SOCK_STREAM, "0.0.0.0", port),
	    EADDRINUSE);
	close(fd);
	cr_assert_eq(portal_claim_port(SVC_PROTO_SCTP, &lo, port), -1);
}

/* The real kernel, in a network namespace of this test's own */

static char	 stub_dir[64];
static char	*saved_path;

/* Enter a fresh netns (skip without root), with lo and a "node" address. */
static void
netns_enter(void)
{
	char	 lock[64];

	if (geteuid() != 0)
		cr_skip_test("needs root for a network namespace");
	if (unshare(CLONE_NEWNET) == -1)
		cr_skip_test("unshare(CLONE_NEWNET): %s", strerror(errno));
	/* Our own xtables lock: never wait for (or block) the host's. */
	snprintf(lock, sizeof(lock), "/tmp/portal-test-%d.lock", (int)getpid());
	setenv("XTABLES_LOCKFILE", lock, 1);
	cr_assert_eq(system("ip link set lo up"), 0);
	/* A node address behind a default route, when dummy links exist. */
	if (system("ip link add kp0 type veth peer name kp1 && "
	    "ip addr add 10.0.0.5/24 dev kp0 && ip link set kp1 up && "
	    "ip link set kp0 up && ip route add default via 10.0.0.1") != 0)
		cr_log_info("no veth link: node-local portals untested");
}

/* Runs after each real-kernel test, passed or not (.fini). */
static void
netns_leave(void)
{
	char	 path[128];

	if (getenv("XTABLES_LOCKFILE") != NULL)
		unlink(getenv("XTABLES_LOCKFILE"));
	if (stub_dir[0] != '\0') {
		snprintf(path, sizeof(path), "rm -rf %s", stub_dir);
		system(path);
	}
}

static bool
backend_usable(const char *backend)
{
	char	 cmd[128];

	snprintf(cmd, sizeof(cmd), "iptables-%s -t nat -L -n >/dev/null 2>&1",
	    backend);
	return system(cmd) == 0;
}

/* Run a shell command in our netns and return its output (malloc'd). */
static char *
capture(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
capture(const char *fmt, ...)
{
	char	 cmd[512], shell[600], buf[4096], *out = NULL;
	size_t	 len = 0, n;
	FILE	*p, *o;
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	o = open_memstream(&out, &len);
	/* iptables-nft-save warns on stderr about legacy tables: not ours. */
	snprintf(shell, sizeof(shell), "{ %s; } 2>/dev/null", cmd);
	p = popen(shell, "r");
	cr_assert_not_null(p);
	while ((n = fread(buf, 1, sizeof(buf), p)) > 0)
		fwrite(buf, 1, n, o);
	pclose(p);
	fclose(o);
	return out;
}

/* The "-A KUBE-" lines of a text, in order. */
static char *
our_rules(const char *text)
{
	char		*out = NULL;
	size_t		 len = 0;
	const char	*line, *end;
	FILE		*o = open_memstream(&out, &len);

	for (line = text; *line != '\0'; line = end + (*end != '\0')) {
		end = line + strcspn(line, "\n");
		if (strncmp(line, "-A KUBE-", 8) == 0)
			fprintf(o, "%.*s\n", (int)(end - line), line);
	}
	fclose(o);
	return out;
}

static int
count_lines(const char *text, const char *line)
{
	const char	*p;
	size_t		 len = strlen(line);
	int		 n = 0;

	for (p = text; (p = strstr(p, line)) != NULL; p += len)
		if ((p == text || p[-1] == '\n') && p[len] == '\n')
			n++;
	return n;
}

/* What iptables-save shows of our chains equals what we rendered. */
static void
expect_kernel_rules(struct portal *p, const char *backend,
    const struct portal_port *ports, size_t n)
{
	char	*text, *saved, *want, *got;

	text = portal_render(portal_env(p), AF_INET, ports, n);
	saved = capture("iptables-%s-save -t nat; iptables-%s-save -t filter",
	    backend, backend);
	want = our_rules(text);
	got = our_rules(saved);
	cr_assert_str_eq(got, want, "iptables-save:\n%s\nrendered:\n%s", got,
	    want);
	free(text);
	free(saved);
	free(want);
	free(got);
}

/* Each of our jumps exactly once. */
static void
expect_jumps_once(const char *backend)
{
	char	*saved, line[512];
	int	 j;

	saved = capture("iptables-%s-save", backend);
	for (j = 0; j < PORTAL_N_JUMPS; j++) {
		snprintf(line, sizeof(line), "-A %s %s -j %s",
		    portal_jumps[j].from, portal_jumps[j].args,
		    portal_jumps[j].chain);
		cr_assert_eq(count_lines(saved, line), 1, "%s: %d times in\n%s",
		    line, count_lines(saved, line), saved);
	}
	free(saved);
}

static struct portal *
new_portal(enum conf_iptables_backend backend)
{
	struct conf	 c;
	struct portal	*p;
	char		 err[512] = "";

	memset(&c, 0, sizeof(c));
	c.bind_address = (char *)"0.0.0.0";
	c.iptables_backend = backend;
	p = portal_new(&c, err, sizeof(err));
	cr_assert_not_null(p, "portal_new: %s", err);
	return p;
}

/* Listen on 0.0.0.0:port, as a proxy port's listener would. */
static int
listen_any(uint16_t port)
{
	struct sockaddr_in	 sin;
	int			 fd, one = 1;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(listen(fd, 8), 0);
	return fd;
}

/* Connect from this node to addr:port; true when the listener accepts. */
static bool
reaches(int listen_fd, const char *addr, uint16_t port)
{
	struct sockaddr_in	 sin;
	struct timeval		 tv = { 2, 0 };
	int			 fd, conn;
	bool			 ok;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	inet_pton(AF_INET, addr, &sin.sin_addr);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(listen_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ok = connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
	    (conn = accept(listen_fd, NULL, NULL)) >= 0;
	if (ok)
		close(conn);
	close(fd);
	return ok;
}

#define FOREIGN_RULE "-A PREROUTING -p tcp -m tcp --dport 9 -j ACCEPT"

static void
sync_replace_remove(const char *backend, enum conf_iptables_backend b)
{
	struct svc		*web, *dns;
	struct portal_port	 ports[3];
	struct portal		*p;
	char			*saved;
	int			 lfd;

	netns_enter();
	if (!backend_usable(backend))
		cr_skip_test("iptables-%s does not work here", backend);
	saved = capture("iptables-%s -t nat -A PREROUTING -p tcp --dport 9 "
	    "-j ACCEPT && echo ok", backend);
	cr_assert_str_eq(saved, "ok\n");
	free(saved);

	web = mk_svc("default", "web", SVC_TYPE_NODE_PORT, "10.96.0.10");
	add_port(web, "http", SVC_PROTO_TCP, 80, 30080);
	add_ip(&web->external_ips, &web->n_external_ips, "198.51.100.9");
	dns = mk_svc("kube-system", "kube-dns", SVC_TYPE_CLUSTER_IP,
	    "10.96.0.53");
	add_port(dns, "dns", SVC_PROTO_UDP, 53, 0);
	ports[0] = (struct portal_port){ .svc = web,
	    .port = &web->ports[0], .proxy_port = 20001 };
	ports[1] = (struct portal_port){ .svc = dns,
	    .port = &dns->ports[0], .proxy_port = 20002 };

	p = new_portal(b);
	cr_assert_str_eq(portal_backend_name(p), backend);
	cr_assert_eq(portal_sync(p, ports, 2), 0);
	expect_kernel_rules(p, backend, ports, 2);
	expect_jumps_once(backend);

	/* Node-local traffic to the ClusterIP and the NodePort arrives. */
	if (portal_env(p)->host_ip.family == AF_INET) {
		lfd = listen_any(20001);
		cr_assert(reaches(lfd, "10.96.0.10", 80));
		cr_assert(reaches(lfd, "10.0.0.5", 30080));
		close(lfd);
	}

	/* A changed proxy port and a service fewer: replaced, not added. */
	ports[0].proxy_port = 20011;
	cr_assert_eq(portal_sync(p, ports, 1), 0);
	expect_kernel_rules(p, backend, ports, 1);
	expect_jumps_once(backend);

	/* Drift: a lost jump and a doubled one are both repaired. */
	saved = capture("iptables-%s -t nat -D OUTPUT %s -j %s && "
	    "iptables-%s -t nat -I PREROUTING %s -j %s && echo ok", backend,
	    portal_jumps[1].args, portal_jumps[1].chain, backend,
	    portal_jumps[0].args, portal_jumps[0].chain);
	cr_assert_str_eq(saved, "ok\n");
	free(saved);
	cr_assert_eq(portal_sync(p, ports, 1), 0);
	expect_jumps_once(backend);
	expect_kernel_rules(p, backend, ports, 1);

	saved = capture("iptables-%s-save -t nat", backend);
	cr_assert_eq(count_lines(saved, FOREIGN_RULE), 1, "%s", saved);
	free(saved);

	cr_assert_eq(portal_remove(p), 0);
	saved = capture("iptables-%s-save", backend);
	cr_assert_null(strstr(saved, "KUBE-"), "%s", saved);
	cr_assert_eq(count_lines(saved, FOREIGN_RULE), 1, "%s", saved);
	free(saved);

	/* --cleanup after a sync, twice. */
	cr_assert_eq(portal_sync(p, ports, 2), 0);
	cr_assert_eq(portal_cleanup_all(), 0);
	cr_assert_eq(portal_cleanup_all(), 0);
	saved = capture("iptables-%s-save", backend);
	cr_assert_null(strstr(saved, "KUBE-"), "%s", saved);
	cr_assert_null(strstr(saved, "KUPROXY-"), "%s", saved);
	cr_assert_eq(count_lines(saved, FOREIGN_RULE), 1, "%s", saved);
	free(saved);

	portal_free(p);
	svc_unref(web);
	svc_unref(dns);
}

Test(portal, legacy_sync_replaces_rules_and_remove_leaves_nothing,
    .timeout = 60, .fini = netns_leave)
{
	sync_replace_remove("legacy", CONF_IPT_LEGACY);
}

Test(portal, nft_sync_replaces_rules_and_remove_leaves_nothing,
    .timeout = 60, .fini = netns_leave)
{
	sync_replace_remove("nft", CONF_IPT_NFT);
}

Test(portal, auto_backend_follows_existing_rules, .timeout = 60,
    .fini = netns_leave)
{
	struct portal	*p;

	netns_enter();
	if (!backend_usable("legacy") || !backend_usable("nft"))
		cr_skip_test("needs both iptables backends");
	/* Nothing anywhere: nft. */
	p = new_portal(CONF_IPT_AUTO);
	cr_assert_str_eq(portal_backend_name(p), "nft");
	portal_free(p);
	/* Rules in legacy: legacy, or they would run before ours. */
	cr_assert_eq(system("iptables-legacy -A INPUT -p tcp --dport 22 "
	    "-j ACCEPT && iptables-legacy -A INPUT -p tcp --dport 23 "
	    "-j ACCEPT"), 0);
	p = new_portal(CONF_IPT_AUTO);
	cr_assert_str_eq(portal_backend_name(p), "legacy");
	portal_free(p);
}

static void
unstub_restore(void)
{
	setenv("PATH", saved_path, 1);
}

/* A restore tool first on PATH that passes through to the real one. */
static void
stub_restore(const char *backend, const char *script_body)
{
	char	 path[128], newpath[4096];
	FILE	*f;

	snprintf(stub_dir, sizeof(stub_dir), "/tmp/portal-stub-%d",
	    (int)getpid());
	mkdir(stub_dir, 0700);
	snprintf(path, sizeof(path), "%s/iptables-%s-restore", stub_dir,
	    backend);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f, "#!/bin/sh\ninput=$(cat)\n%s\nprintf '%%s\\n' \"$input\" | "
	    "/usr/sbin/iptables-%s-restore \"$@\"\n", script_body, backend);
	fclose(f);
	chmod(path, 0755);
	saved_path = strdup(getenv("PATH") != NULL ? getenv("PATH") :
	    "/usr/sbin:/usr/bin");
	snprintf(newpath, sizeof(newpath), "%s:%s", stub_dir, saved_path);
	setenv("PATH", newpath, 1);
}

Test(portal, missing_physdev_drops_only_that_rule, .timeout = 60,
    .fini = netns_leave)
{
	struct svc		*web;
	struct portal_port	 port;
	struct portal		*p;
	char			*saved;

	netns_enter();
	if (!backend_usable("nft"))
		cr_skip_test("iptables-nft does not work here");
	stub_restore("nft", "case \"$input\" in *physdev*) "
	    "echo \"iptables-nft-restore: line 3 failed\" >&2; exit 1;; esac");
	p = new_portal(CONF_IPT_NFT);
	cr_assert(portal_env(p)->no_physdev);

	web = mk_svc("default", "web", SVC_TYPE_CLUSTER_IP, "10.96.0.10");
	add_port(web, "http", SVC_PROTO_TCP, 80, 0);
	add_ip(&web->external_ips, &web->n_external_ips, "198.51.100.9");
	port = (struct portal_port){ .svc = web,
	    .port = &web->ports[0], .proxy_port = 20001 };
	cr_assert_eq(portal_sync(p, &port, 1), 0);
	saved = capture("iptables-nft-save -t nat");
	cr_assert_null(strstr(saved, "physdev"));
	cr_assert_not_null(strstr(saved, "-d 198.51.100.9/32 -p tcp -m comment "
	    "--comment \"default/web:http\" -m tcp --dport 80 -m addrtype "
	    "--dst-type LOCAL -j REDIRECT --to-ports 20001"), "%s", saved);
	free(saved);
	unstub_restore();
	cr_assert_eq(portal_cleanup_all(), 0);
	portal_free(p);
	svc_unref(web);
}

Test(portal, failed_restore_returns_error_and_keeps_previous_rules,
    .timeout = 60, .fini = netns_leave)
{
	struct svc		*web;
	struct portal_port	 port;
	struct portal		*p;

	netns_enter();
	if (!backend_usable("nft"))
		cr_skip_test("iptables-nft does not work here");
	web = mk_svc("default", "web", SVC_TYPE_CLUSTER_IP, "10.96.0.10");
	add_port(web, "http", SVC_PROTO_TCP, 80, 0);
	port = (struct portal_port){ .svc = web,
	    .port = &web->ports[0], .proxy_port = 20001 };
	p = new_portal(CONF_IPT_NFT);
	cr_assert_eq(portal_sync(p, &port, 1), 0);

	stub_restore("nft", "echo 'iptables-nft-restore: line 2 failed' >&2; "
	    "exit 1");
	port.proxy_port = 20002;
	cr_assert_eq(portal_sync(p, &port, 1), -1);
	port.proxy_port = 20001;
	expect_kernel_rules(p, "nft", &port, 1);
	unstub_restore();
	cr_assert_eq(portal_cleanup_all(), 0);
	portal_free(p);
	svc_unref(web);
}

Test(portal, conntrack_flush_tolerates_no_entries, .timeout = 60,
    .fini = netns_leave)
{
	struct portal	*p;
	struct svc_ip	 a = ip("10.96.0.53"), b = ip("fd00::53");

	netns_enter();
	if (!backend_usable("nft"))
		cr_skip_test("iptables-nft does not work here");
	p = new_portal(CONF_IPT_NFT);
	portal_flush_conntrack_udp(p, &a, 53);
	portal_flush_conntrack_udp(p, &a, 0);
	portal_flush_conntrack_udp(p, &b, 53);
	portal_free(p);
}

Test(portal, ipv6_rules_go_to_ip6tables_and_are_removed, .timeout = 60,
    .fini = netns_leave)
{
	static const char *const backends[] = { "legacy", "nft" };
	struct svc		*web;
	struct portal_port	 port;
	struct portal		*p;
	struct conf		 c;
	char			 err[512], *saved, *text, *want, *got;
	size_t			 i;

	netns_enter();
	web = mk_svc("default", "web", SVC_TYPE_NODE_PORT, "10.96.0.10");
	web->cluster_ips[1] = ip("fd00:96::10");
	web->n_cluster_ips = 2;
	add_port(web, "http", SVC_PROTO_TCP, 80, 30080);
	port = (struct portal_port){ .svc = web,
	    .port = &web->ports[0], .proxy_port = 20001 };
	for (i = 0; i < 2; i++) {
		if (!backend_usable(backends[i]))
			continue;
		memset(&c, 0, sizeof(c));
		c.bind_address = (char *)"::";
		c.iptables_backend = i == 0 ? CONF_IPT_LEGACY : CONF_IPT_NFT;
		p = portal_new(&c, err, sizeof(err));
		cr_assert_not_null(p, "%s", err);
		cr_assert_eq(portal_sync(p, &port, 1), 0);
		text = portal_render(portal_env(p), AF_INET6, &port, 1);
		saved = capture("ip6tables-%s-save -t nat; "
		    "ip6tables-%s-save -t filter", backends[i], backends[i]);
		want = our_rules(text);
		got = our_rules(saved);
		cr_assert_not_null(strstr(want, "-d fd00:96::10/128"));
		cr_assert_str_eq(got, want, "%s", saved);
		free(text);
		free(saved);
		free(want);
		free(got);

		cr_assert_eq(portal_remove(p), 0);
		saved = capture("ip6tables-%s-save; iptables-%s-save",
		    backends[i], backends[i]);
		cr_assert_null(strstr(saved, "KUBE-"), "%s", saved);
		free(saved);
		portal_free(p);
	}
	svc_unref(web);
}

Test(portal, backend_none_is_a_no_op)
{
	struct portal	*p = new_portal(CONF_IPT_NONE);

	cr_assert_str_eq(portal_backend_name(p), "none");
	cr_assert_eq(portal_sync(p, NULL, 0), 0);
	cr_assert_eq(portal_remove(p), 0);
	portal_free(p);
}

/* Portal jobs */

Test(portal, job_renders_its_own_copy_of_the_ports)
{
	struct portal_env		 e4 = env_any(), e6 = env_any();
	struct portal_port		 ports[2];
	const struct portal_port	*jp;
	struct portal_job		*job;
	struct svc			*web;
	char				*want4, *want6, *got;
	size_t				 n;

	e6.bind_ip = ip("::");
	e6.host_ip6 = ip("fd00::5");
	web = mk_svc("default", "web", SVC_TYPE_LOAD_BALANCER, "10.96.0.10");
	web->cluster_ips[1] = ip("fd00:96::10");
	web->n_cluster_ips = 2;
	add_port(web, "http", SVC_PROTO_TCP, 80, 30080);
	add_port(web, "dns", SVC_PROTO_UDP, 53, 0);
	add_ip(&web->external_ips, &web->n_external_ips, "198.51.100.9");
	add_ip(&web->ingress_ips, &web->n_ingress_ips, "203.0.113.7");
	ports[0] = (struct portal_port){ .svc = web,
	    .port = &web->ports[0], .proxy_port = 20001 };
	ports[1] = (struct portal_port){ .svc = web,
	    .port = &web->ports[1], .proxy_port = 20002 };
	want4 = portal_render(&e4, AF_INET, ports, 2);
	want6 = portal_render(&e6, AF_INET6, ports, 2);
	cr_assert_not_null(strstr(want4, "203.0.113.7"));
	cr_assert_not_null(strstr(want6, "fd00:96::10"));

	job = portal_job_new(ports, 2);
	cr_assert_not_null(job);
	/* The table moves on while the job runs: nothing of it is left. */
	svc_unref(web);
	jp = portal_job_ports(job, &n);
	cr_assert_eq(n, 2);
	got = portal_render(&e4, AF_INET, jp, n);
	expect_text(got, want4);
	free(got);
	got = portal_render(&e6, AF_INET6, jp, n);
	expect_text(got, want6);
	free(got);
	free(want4);
	free(want6);
	portal_job_free(job);
}

Test(portal, job_without_ports_renders_empty_chains)
{
	struct portal_env		 e = env_any();
	const struct portal_port	*jp;
	struct portal_job		*job = portal_job_new(NULL, 0);
	char				*got;
	size_t				 n;

	cr_assert_not_null(job);
	jp = portal_job_ports(job, &n);
	cr_assert_eq(n, 0);
	got = portal_render(&e, AF_INET, jp, n);
	expect_text(got, EMPTY_RENDER);
	free(got);
	portal_job_free(job);
}

Test(portal, failed_job_hands_its_flushes_to_the_next)
{
	struct portal_job	*failed, *next;
	struct portal		*p = new_portal(CONF_IPT_NONE);
	struct svc_ip		 a = ip("10.96.0.53"), b = ip("fd00::53");

	failed = portal_job_new(NULL, 0);
	next = portal_job_new(NULL, 0);
	cr_assert_not_null(failed);
	cr_assert_not_null(next);
	/* Not run yet: no success to report. */
	cr_assert_eq(portal_job_result(failed), -1);
	cr_assert_eq(portal_job_add_flush(failed, &a, 53), 0);
	cr_assert_eq(portal_job_add_flush(failed, &b, 0), 0);
	cr_assert_eq(portal_job_add_flush(next, &a, 5353), 0);
	cr_assert_eq(portal_job_take_flushes(next, failed), 0);
	cr_assert_eq(portal_job_n_flushes(next), 3);
	cr_assert_eq(portal_job_n_flushes(failed), 2);
	portal_job_free(failed);
	/* The none backend syncs (and flushes) nothing, and succeeds. */
	portal_job_run(next, p);
	cr_assert_eq(portal_job_result(next), 0);
	portal_job_free(next);
	portal_free(p);
}

/* What the runner tests see of the loop and of the runner's callback. */
struct runner_watch {
	struct event_base	*base;
	struct portal_job	*done;
	int			 n_done;
	int			 ticks;	/* loop timer runs so far */
	int			 ticks_at_done;
};

static void
runner_watch_done(struct portal_job *job, void *arg)
{
	struct runner_watch	*w = arg;

	w->done = job;
	w->n_done++;
	w->ticks_at_done = w->ticks;
	event_base_loopbreak(w->base);
}

static void
runner_watch_tick(evutil_socket_t fd, short events, void *arg)
{
	struct runner_watch	*w = arg;

	w->ticks++;
}

static void
runner_watch_give_up(evutil_socket_t fd, short events, void *arg)
{
	struct runner_watch	*w = arg;

	event_base_loopbreak(w->base);
}

/*
 * A sync whose restore sleeps 1 s runs on the runner's thread: the loop
 * keeps running its 50 ms timer meanwhile, a second job is refused while
 * the first runs, and the result arrives through the loop with the rules
 * in the kernel.  runner_wait() takes a running job without the callback;
 * freeing the runner waits for one.
 */
static void
runner_one_at_a_time(const char *backend, enum conf_iptables_backend b)
{
	struct timeval		 tick = { 0, 50000 }, limit = { 20, 0 };
	struct runner_watch	 w;
	struct portal_job_runner *r;
	struct portal_port	 port;
	struct portal_job	*job, *other, *other2;
	const struct portal_port *jp;
	struct portal		*p;
	struct event		*tick_ev, *limit_ev;
	struct svc		*web;
	char			 err[256] = "";
	size_t			 n;

	netns_enter();
	if (!backend_usable(backend))
		cr_skip_test("iptables-%s does not work here", backend);
	p = new_portal(b);
	stub_restore(backend, "sleep 1");
	web = mk_svc("default", "web", SVC_TYPE_CLUSTER_IP, "10.96.0.10");
	add_port(web, "http", SVC_PROTO_TCP, 80, 0);
	port = (struct portal_port){ .svc = web,
	    .port = &web->ports[0], .proxy_port = 20001 };

	memset(&w, 0, sizeof(w));
	w.base = event_base_new();
	cr_assert_not_null(w.base);
	r = portal_job_runner_new(w.base, runner_watch_done, &w, err,
	    sizeof(err));
	cr_assert_not_null(r, "%s", err);
	tick_ev = event_new(w.base, -1, EV_PERSIST, runner_watch_tick, &w);
	limit_ev = evtimer_new(w.base, runner_watch_give_up, &w);
	event_add(tick_ev, &tick);
	evtimer_add(limit_ev, &limit);

	job = portal_job_new(&port, 1);
	other = portal_job_new(NULL, 0);
	cr_assert_not_null(job);
	cr_assert_not_null(other);
	cr_assert(!portal_job_runner_busy(r));
	cr_assert_eq(portal_job_runner_start(r, p, job), 0);
	cr_assert(portal_job_runner_busy(r));
	errno = 0;
	cr_assert_eq(portal_job_runner_start(r, p, other), -1);
	cr_assert_eq(errno, EBUSY);
	/* The caller's table may go: the job has its copy. */
	svc_unref(web);

	event_base_dispatch(w.base);
	cr_assert_eq(w.n_done, 1, "no result within 20 s");
	cr_assert_eq(w.done, job);
	cr_assert_eq(portal_job_result(job), 0);
	cr_assert_geq(portal_job_sync_ms(job), 1000);
	cr_assert(!portal_job_runner_busy(r));
	/* A loop blocked by the sync would have run its timer once at most. */
	cr_assert_geq(w.ticks_at_done, 3, "the loop ran %d ticks during a "
	    "sync of %lld ms", w.ticks_at_done, portal_job_sync_ms(job));
	jp = portal_job_ports(job, &n);
	expect_kernel_rules(p, backend, jp, n);

	/* Taken back at shutdown: the callback never sees it. */
	cr_assert_eq(portal_job_runner_start(r, p, other), 0);
	cr_assert_eq(portal_job_runner_wait(r), other);
	cr_assert_eq(portal_job_result(other), 0);
	cr_assert_null(portal_job_runner_wait(r));
	event_base_loop(w.base, EVLOOP_NONBLOCK);
	cr_assert_eq(w.n_done, 1);
	expect_kernel_rules(p, backend, NULL, 0);

	/* Freed while a job (a copy of the first) runs: it waits for it. */
	other2 = portal_job_new(jp, n);
	cr_assert_not_null(other2);
	cr_assert_eq(portal_job_runner_start(r, p, other2), 0);
	portal_job_runner_free(r);
	expect_kernel_rules(p, backend, jp, n);

	portal_job_free(job);
	portal_job_free(other);
	event_free(tick_ev);
	event_free(limit_ev);
	event_base_free(w.base);
	unstub_restore();
	cr_assert_eq(portal_cleanup_all(), 0);
	portal_free(p);
}

Test(portal, legacy_runner_syncs_off_the_loop_one_at_a_time, .timeout = 60,
    .fini = netns_leave)
{
	runner_one_at_a_time("legacy", CONF_IPT_LEGACY);
}

Test(portal, nft_runner_syncs_off_the_loop_one_at_a_time, .timeout = 60,
    .fini = netns_leave)
{
	runner_one_at_a_time("nft", CONF_IPT_NFT);
}
