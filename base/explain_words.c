/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The words of `kuproxy explain`: the path of a connection from a pod,
 * from the node and from outside, written from the rules explain.c
 * collected (a sentence describes a rule only if it was found), and what
 * stands for a service kuproxy does not proxy (DNS records, a CNAME, the
 * proxy that owns it).  No I/O; the facts come in the context.
 */
#include "config.h"

#include <sys/socket.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/explain.h"
#include "base/explain_int.h"
#include "proxy/lb.h"

/* A rule of p in chain (whose text holds needle, if given), or NULL. */
static const char *
portal_rule_in(const struct explain_portal *p, const char *chain,
    const char *needle)
{
	json_object	*r, *v;
	const char	*line;
	size_t		 i;

	for (i = 0; i < json_object_array_length(p->rules); i++) {
		r = json_object_array_get_idx(p->rules, i);
		if (!json_object_object_get_ex(r, "chain", &v) ||
		    strcmp(json_object_get_string(v), chain) != 0)
			continue;
		json_object_object_get_ex(r, "rule", &v);
		line = json_object_get_string(v);
		if (needle == NULL || strstr(line, needle) != NULL)
			return line;
	}
	return NULL;
}

/* "REDIRECT to proxy port 20000" from "... -j REDIRECT --to-ports 20000". */
static const char *
target_words(const char *line, char *buf, size_t len)
{
	const char	*t = strstr(line, " -j ");

	if (t == NULL)
		snprintf(buf, len, "?");
	else if (strncmp(t, " -j REDIRECT --to-ports ", 24) == 0)
		snprintf(buf, len, "REDIRECT to proxy port %s", t + 24);
	else if (strncmp(t, " -j DNAT --to-destination ", 26) == 0)
		snprintf(buf, len, "DNAT to %s", t + 26);
	else
		snprintf(buf, len, "%s", t + 4);
	return buf;
}

/* The paths, in words. */

/*
 * Where a connection from each place goes: one sentence per portal
 * address, derived from the rules that were found for it.
 */
static void
paths_cluster_ip(const struct explain_portal *p, const char *addr,
    json_object *pod, json_object *node, json_object *out)
{
	const char	*c, *h;
	char		 w[256];
	bool		 lb = p->what == PORTAL_FOR_INGRESS_IP;

	c = portal_rule_in(p, PORTAL_CHAIN_PORTALS_CONTAINER, NULL);
	h = portal_rule_in(p, PORTAL_CHAIN_PORTALS_HOST, NULL);
	if (c != NULL)
		add_strf(pod, "to %s: nat PREROUTING -> %s: %s%s", addr,
		    PORTAL_CHAIN_PORTALS_CONTAINER, target_words(c, w,
		    sizeof(w)), lb ? " (short-circuited: it never reaches "
		    "the load balancer)" : "");
	else
		add_strf(pod, "to %s: no rule; routed as any address", addr);
	if (h != NULL)
		add_strf(node, "to %s: nat OUTPUT -> %s: %s%s", addr,
		    PORTAL_CHAIN_PORTALS_HOST, target_words(h, w, sizeof(w)),
		    lb ? " (short-circuited)" : "");
	else
		add_strf(node, "to %s: no rule (no host IP to DNAT the "
		    "node's own traffic to); routed as any address", addr);
	if (c == NULL)
		add_strf(out, "to %s: no rule", addr);
	else if (lb)
		add_strf(out, "to %s, as a load balancer that keeps the "
		    "destination sends it to this node: nat PREROUTING -> "
		    "%s: %s", addr, PORTAL_CHAIN_PORTALS_CONTAINER,
		    target_words(c, w, sizeof(w)));
	else
		add_strf(out, "to %s: cluster IPs are not meant to be "
		    "reached from outside, but a packet a router sends to "
		    "this node is caught as a pod's: nat PREROUTING -> %s",
		    addr, PORTAL_CHAIN_PORTALS_CONTAINER);
}

static void
paths_external_ip(const struct explain_ctx *ctx,
    const struct explain_portal *p, const char *addr, json_object *pod,
    json_object *node, json_object *out)
{
	const char	*phys, *local, *h;
	char		 w[256];

	phys = portal_rule_in(p, PORTAL_CHAIN_PORTALS_CONTAINER, "physdev");
	local = portal_rule_in(p, PORTAL_CHAIN_PORTALS_CONTAINER, "addrtype");
	h = portal_rule_in(p, PORTAL_CHAIN_PORTALS_HOST, NULL);
	if (phys == NULL && local == NULL) {
		add_strf(pod, "to %s: no rule; routed as any address", addr);
		add_strf(node, "to %s: no rule; routed as any address", addr);
		add_strf(out, "to %s: no rule; routed as any address", addr);
		return;
	}
	if (p->local && local != NULL)
		add_strf(pod, "to %s (an address of this node): nat "
		    "PREROUTING -> %s, the --dst-type LOCAL rule: %s", addr,
		    PORTAL_CHAIN_PORTALS_CONTAINER,
		    target_words(local, w, sizeof(w)));
	else if (phys != NULL && !ctx->br_netfilter)
		add_strf(pod, "to %s: nat PREROUTING -> %s, the rule for "
		    "packets not from a bridge port (br_netfilter is off, so "
		    "iptables sees no bridge): %s", addr,
		    PORTAL_CHAIN_PORTALS_CONTAINER,
		    target_words(phys, w, sizeof(w)));
	else
		add_strf(pod, "to %s: not intercepted: it is not an address "
		    "of this node and a bridged pod's packet is left out "
		    "(-m physdev ! --physdev-is-in, as upstream); it leaves "
		    "the node by its route", addr);
	if (p->local && h != NULL)
		add_strf(node, "to %s (an address of this node): nat OUTPUT "
		    "-> %s: %s", addr, PORTAL_CHAIN_PORTALS_HOST,
		    target_words(h, w, sizeof(w)));
	else
		add_strf(node, "to %s: not intercepted: the node's own "
		    "traffic is caught only for an address of this node; it "
		    "leaves the node by its route", addr);
	if (phys != NULL)
		add_strf(out, "to %s, routed to this node: nat PREROUTING -> "
		    "%s, the rule for packets not from a bridge port: %s",
		    addr, PORTAL_CHAIN_PORTALS_CONTAINER,
		    target_words(phys, w, sizeof(w)));
	else if (p->local)
		add_strf(out, "to %s (an address of this node): nat "
		    "PREROUTING -> %s, the --dst-type LOCAL rule: %s", addr,
		    PORTAL_CHAIN_PORTALS_CONTAINER,
		    target_words(local, w, sizeof(w)));
	else
		add_strf(out, "to %s: not intercepted: without the physdev "
		    "match only an address of this node is caught", addr);
}

static void
paths_node_port(const struct explain_portal *p, json_object *pod,
    json_object *node, json_object *out)
{
	const char	*c, *h, *acc;
	json_object	*addrs, *a;
	char		 w[256], list[512] = "";
	size_t		 i, n = 0;
	int64_t		 port = 0;

	if (json_object_object_get_ex(p->obj, "nodePort", &a))
		port = json_object_get_int64(a);
	if (json_object_object_get_ex(p->obj, "addresses", &addrs))
		for (i = 0; i < json_object_array_length(addrs); i++) {
			const char *s = json_object_get_string(
			    json_object_array_get_idx(addrs, i));

			if (strncmp(s, "127.", 4) == 0 || strcmp(s, "::1") == 0)
				continue;
			n += (size_t)snprintf(list + n, n < sizeof(list) ?
			    sizeof(list) - n : 0, "%s%s:%lld", n > 0 ? ", " :
			    "", s, (long long)port);
			if (n >= sizeof(list))
				break;
		}
	c = portal_rule_in(p, PORTAL_CHAIN_NODEPORT_CONTAINER, NULL);
	h = portal_rule_in(p, PORTAL_CHAIN_NODEPORT_HOST, NULL);
	acc = portal_rule_in(p, PORTAL_CHAIN_NODEPORT_NON_LOCAL, NULL);
	if (c != NULL) {
		add_strf(pod, "to a node address, port %lld (%s): nat "
		    "PREROUTING -> %s (local destinations): %s",
		    (long long)port, list, PORTAL_CHAIN_NODEPORT_CONTAINER,
		    target_words(c, w, sizeof(w)));
		add_strf(out, "to a node address, port %lld (%s): nat "
		    "PREROUTING -> %s: %s%s", (long long)port, list,
		    PORTAL_CHAIN_NODEPORT_CONTAINER,
		    target_words(c, w, sizeof(w)), acc != NULL ?
		    "; then filter INPUT -> " PORTAL_CHAIN_NODEPORT_NON_LOCAL
		    " lets the proxy port in on a node whose INPUT drops by "
		    "default" : "");
	} else {
		add_strf(pod, "to node port %lld: no rule", (long long)port);
		add_strf(out, "to node port %lld: no rule", (long long)port);
	}
	if (h != NULL)
		add_strf(node, "to any node address, port %lld, 127.0.0.1 "
		    "included: nat OUTPUT -> %s: %s", (long long)port,
		    PORTAL_CHAIN_NODEPORT_HOST, target_words(h, w, sizeof(w)));
	else
		add_strf(node, "to node port %lld: no rule for the node's "
		    "own traffic", (long long)port);
}

/* What kuproxy does once it has the connection. */
static void
paths_then(const struct svc *svc, const struct svc_port *sp,
    json_object *bal, const char *proxy_port, json_object *paths)
{
	json_object	*v;
	const char	*next = NULL;
	char		 aff[128] = "";
	char		 buf[1024];

	if (json_object_object_get_ex(bal, "nextEndpoint", &v) &&
	    json_object_is_type(v, json_type_string))
		next = json_object_get_string(v);
	if (next == NULL) {
		add_str(paths, "then", "no endpoint is usable, so the proxy "
		    "port does not listen: a connection is refused at once");
		return;
	}
	if (svc->affinity == SVC_AFFINITY_CLIENT_IP)
		snprintf(aff, sizeof(aff), "; a client IP seen within %us "
		    "goes back to its endpoint (ClientIP affinity)",
		    svc->affinity_timeout_s != 0 ? svc->affinity_timeout_s :
		    SVC_AFFINITY_DEFAULT_S);
	if (sp->proto == SVC_PROTO_UDP)
		snprintf(buf, sizeof(buf), "kuproxy receives the datagram "
		    "on proxy port %s and relays the client's datagrams, "
		    "from a socket of its own, to one endpoint: the next by "
		    "round robin is %s%s; the association lasts until "
		    "--udp-timeout of silence; the endpoint sees the node as "
		    "the client", proxy_port, next, aff);
	else
		snprintf(buf, sizeof(buf), "kuproxy accepts the connection "
		    "on proxy port %s and opens its own to an endpoint: the "
		    "next by round robin is %s%s; one that refuses or does "
		    "not answer is replaced by the next (up to %d tries); the "
		    "endpoint sees the node as the client, not the original "
		    "source", proxy_port, next, aff, LB_MAX_TRIES);
	add_str(paths, "then", buf);
}

/* See explain_int.h. */
json_object *
explain_words_paths(const struct explain_ctx *ctx, const struct svc *svc,
    const struct svc_port *sp, const struct explain_portals *ps,
    json_object *bal, const char *proxy_port)
{
	json_object	*paths = json_object_new_object();
	json_object	*pod = json_object_new_array();
	json_object	*node = json_object_new_array();
	json_object	*out = json_object_new_array();
	json_object	*a;
	size_t		 i;

	for (i = 0; ctx->rules && i < ps->n; i++) {
		const struct explain_portal *p = &ps->v[i];
		const char *addr = "";

		if (json_object_object_get_ex(p->obj, "address", &a))
			addr = json_object_get_string(a);
		switch (p->what) {
		case PORTAL_FOR_CLUSTER_IP:
		case PORTAL_FOR_INGRESS_IP:
			paths_cluster_ip(p, addr, pod, node, out);
			break;
		case PORTAL_FOR_EXTERNAL_IP:
			paths_external_ip(ctx, p, addr, pod, node, out);
			break;
		case PORTAL_FOR_NODE_PORT:
		case PORTAL_FOR_NODE_PORT_ACCEPT:
			paths_node_port(p, pod, node, out);
			break;
		}
	}
	if (!ctx->rules) {
		add_strf(pod, "no portal rules (--iptables-backend none): "
		    "connect to proxy port %s on a node address", proxy_port);
		add_strf(node, "no portal rules: connect to proxy port %s",
		    proxy_port);
		add_strf(out, "no portal rules: connect to proxy port %s on "
		    "a node address", proxy_port);
	}
	if (sp->node_port == 0 && svc->n_external_ips == 0 &&
	    svc->n_ingress_ips == 0)
		add_strf(out, "%s", "(a ClusterIP service has no portal "
		    "meant for "
		    "outside the cluster)");
	json_object_object_add(paths, "pod", pod);
	json_object_object_add(paths, "node", node);
	json_object_object_add(paths, "outside", out);
	paths_then(svc, sp, bal, proxy_port, paths);
	return paths;
}

/* Services kuproxy does not proxy. */

/* "10-244-1-11" (or "fd00--1" for IPv6), as cluster DNS names pods. */
static void
dns_dashed(const struct svc_ip *ip, char *buf, size_t len)
{
	char	*p;

	svc_ip_str(ip, buf, len);
	for (p = buf; *p != '\0'; p++)
		if (*p == '.' || *p == ':')
			*p = '-';
}

static void
dns_add(json_object *a, const char *name, const char *type, const char *data)
{
	json_object	*o = json_object_new_object();

	add_str(o, "name", name);
	add_str(o, "type", type);
	add_str(o, "data", data);
	json_object_array_add(a, o);
}

/*
 * A headless service's records (the DNS specification for Kubernetes):
 * the service name has an A/AAAA record per ready endpoint, each endpoint
 * a name under the service (its hostname when the pod sets one; its dashed
 * IP otherwise, as CoreDNS), each named port an SRV record per endpoint,
 * and every pod IP its pod record.
 */
static json_object *
dns_headless(const struct svc *svc)
{
	json_object	*a = json_object_new_array();
	char		 svcname[600], name[900], ip[SVC_IPSTRLEN];
	char		 dashed[SVC_IPSTRLEN], data[1100];
	size_t		 i, j, k;
	bool		 dup;

	snprintf(svcname, sizeof(svcname), "%s.%s.svc.%s", svc->name,
	    svc->namespace, EXPLAIN_CLUSTER_DOMAIN);
	for (i = 0; i < svc->n_ports; i++)
		for (j = 0; j < svc->ports[i].n_endpoints; j++) {
			const struct endpoint *ep = &svc->ports[i].endpoints[j];

			if (!(ep->flags & EP_F_READY))
				continue;
			/* One set of address records per IP, over ports. */
			dup = false;
			for (k = 0; k < i && !dup; k++) {
				size_t m;

				for (m = 0; m < svc->ports[k].n_endpoints; m++)
					if (svc_ip_cmp(&svc->ports[k].
					    endpoints[m].ip, &ep->ip) == 0 &&
					    (svc->ports[k].endpoints[m].flags &
					    EP_F_READY))
						dup = true;
			}
			for (k = 0; k < j && !dup; k++)
				dup = svc_ip_cmp(&svc->ports[i].endpoints[k].ip,
				    &ep->ip) == 0;
			svc_ip_str(&ep->ip, ip, sizeof(ip));
			dns_dashed(&ep->ip, dashed, sizeof(dashed));
			if (!dup) {
				const char *t = ep->ip.family == AF_INET6 ?
				    "AAAA" : "A";

				dns_add(a, svcname, t, ip);
				snprintf(name, sizeof(name), "%s.%s", dashed,
				    svcname);
				dns_add(a, name, t, ip);
				snprintf(name, sizeof(name), "%s.%s.pod.%s",
				    dashed, svc->namespace,
				    EXPLAIN_CLUSTER_DOMAIN);
				dns_add(a, name, t, ip);
			}
			if (svc->ports[i].name[0] == '\0')
				continue;
			snprintf(name, sizeof(name), "_%s._%s.%s",
			    svc->ports[i].name, svc->ports[i].proto ==
			    SVC_PROTO_UDP ? "udp" : svc->ports[i].proto ==
			    SVC_PROTO_SCTP ? "sctp" : "tcp", svcname);
			snprintf(data, sizeof(data), "port %u, target %s.%s",
			    ep->port, dashed, svcname);
			dns_add(a, name, "SRV", data);
		}
	return a;
}

/* See explain_int.h. */
void
explain_words_skipped(const struct svc *svc, json_object *doc)
{
	json_object	*o = json_object_new_object();
	json_object	*dns = json_object_new_array();
	char		 name[600], buf[1024], ip[SVC_IPSTRLEN];

	snprintf(name, sizeof(name), "%s.%s.svc.%s", svc->name,
	    svc->namespace, EXPLAIN_CLUSTER_DOMAIN);
	switch (svc->skip) {
	case SVC_SKIP_HEADLESS:
		add_str(o, "reason", "headless");
		add_str(o, "explanation", "a headless service (clusterIP "
		    "None) has no portal and no proxy port: clients look its "
		    "name up in the cluster DNS and connect to the pods' own "
		    "addresses; kuproxy is not in the path");
		json_object_put(dns);
		dns = dns_headless(svc);
		break;
	case SVC_SKIP_EXTERNAL_NAME:
		add_str(o, "reason", "externalName");
		snprintf(buf, sizeof(buf), "an ExternalName service is a DNS "
		    "alias: the cluster DNS answers %s with a CNAME to %s; "
		    "there is no portal and no proxy port, clients connect to "
		    "what that name resolves to, on the port they dial", name,
		    svc->external_name != NULL ? svc->external_name : "?");
		add_str(o, "explanation", buf);
		dns_add(dns, name, "CNAME", svc->external_name != NULL ?
		    svc->external_name : "");
		break;
	case SVC_SKIP_PROXY_NAME:
		add_str(o, "reason", "serviceProxyName");
		add_str(o, "proxyName", svc->proxy_name);
		snprintf(buf, sizeof(buf), "labelled "
		    "service.kubernetes.io/service-proxy-name=%s: %s%s%s "
		    "owns it; kuproxy, as kube-proxy, opens no proxy port and "
		    "installs no rule for it%s%s%s", svc->proxy_name,
		    svc->proxy_name[0] != '\0' ? "the proxy named \"" :
		    "another proxy", svc->proxy_name, svc->proxy_name[0] !=
		    '\0' ? "\"" : "", svc->n_cluster_ips > 0 ? ", so here "
		    "its cluster IP " : "", svc->n_cluster_ips > 0 ?
		    svc_ip_str(&svc->cluster_ips[0], ip, sizeof(ip)) : "",
		    svc->n_cluster_ips > 0 ? " is routed as any address" : "");
		add_str(o, "explanation", buf);
		break;
	case SVC_SKIP_NONE:
		add_str(o, "reason", "noClusterIP");
		add_str(o, "explanation", "the service has no cluster IP: "
		    "nothing to proxy");
		break;
	}
	json_object_object_add(doc, "skipped", o);
	json_object_object_add(doc, "dns", dns);
}
