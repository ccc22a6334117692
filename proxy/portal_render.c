/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Portal rendering: the iptables-restore text that makes kuproxy's five
 * chains hold exactly the portals of a set of service ports.  Pure: no I/O,
 * so the unit tests compare its output byte for byte and portal.c only has
 * to feed it to the tool.
 *
 * Rule shapes are kube-proxy userspace mode's (pkg/proxy/userspace/
 * proxier.go iptables*Args), with the arguments in the order iptables-save
 * prints them, so rendered lines compare equal to iptables-save output.
 * Departures from upstream: externalIPs outside --external-ip-allow get no
 * rule (CVE-2020-8554), --nodeport-addresses is honoured (upstream ignored
 * it in this mode), and a dual-stack table gets a rendering per family.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bsd/string.h>

#include "proxy/portal.h"

/* Our chains, in the order iptables-save lists them (by name, per table). */
enum render_chain {
	RC_NODEPORT_CONTAINER = 0,
	RC_NODEPORT_HOST,
	RC_PORTALS_CONTAINER,
	RC_PORTALS_HOST,
	RC_NODEPORT_NON_LOCAL,
	RC_N
};

static const char *const render_chain_names[RC_N] = {
	PORTAL_CHAIN_NODEPORT_CONTAINER,
	PORTAL_CHAIN_NODEPORT_HOST,
	PORTAL_CHAIN_PORTALS_CONTAINER,
	PORTAL_CHAIN_PORTALS_HOST,
	PORTAL_CHAIN_NODEPORT_NON_LOCAL,
};

#define JUMP_PORTALS_COMMENT \
	"-m comment --comment \"handle ClusterIPs; " \
	"NOTE: this must be before the NodePort rules\""
#define JUMP_NODEPORTS_ARGS \
	"-m addrtype --dst-type LOCAL -m comment --comment \"handle service " \
	"NodePorts; NOTE: this must be the last rule in the chain\""

/* Upstream's iptablesInit, jump for jump. */
const struct portal_jump portal_jumps[PORTAL_N_JUMPS] = {
	{ "nat", "PREROUTING", PORTAL_CHAIN_PORTALS_CONTAINER,
	    JUMP_PORTALS_COMMENT, true },
	{ "nat", "OUTPUT", PORTAL_CHAIN_PORTALS_HOST,
	    JUMP_PORTALS_COMMENT, true },
	{ "nat", "PREROUTING", PORTAL_CHAIN_NODEPORT_CONTAINER,
	    JUMP_NODEPORTS_ARGS, false },
	{ "nat", "OUTPUT", PORTAL_CHAIN_NODEPORT_HOST,
	    JUMP_NODEPORTS_ARGS, false },
	{ "filter", "INPUT", PORTAL_CHAIN_NODEPORT_NON_LOCAL,
	    "-m comment --comment \"Ensure that non-local NodePort traffic "
	    "can flow\"", true },
};

/* iptables' comment match holds at most 255 characters. */
#define RENDER_COMMENTLEN	256
/* "-j DNAT --to-destination [v6]:port" */
#define RENDER_TARGETLEN	(SVC_IPSTRLEN + 48)
/* The longest rule: two addresses, the comment, matches and a target. */
#define RENDER_LINELEN		(RENDER_COMMENTLEN + RENDER_TARGETLEN + 256)
/* A proxy port given as text (a placeholder) is cut to this. */
#define RENDER_PORTTEXTLEN	24

/*
 * One rendering in progress: a text stream per chain (NULL when only
 * the callback wants the rules), and who the rules written now are for.
 */
struct render {
	const struct portal_env	*env;
	int			 family;
	FILE			*chain[RC_N];
	char			*text[RC_N];
	size_t			 len[RC_N];
	portal_rule_cb		 cb;		/* NULL: none */
	void			*cb_arg;
	const char		*proxy_port_text; /* NULL: the number */
	enum portal_rule_for	 what;
	const struct svc_ip	*what_ip;
	size_t			 n_rules;
};

/* What one service port's rules share. */
struct render_port {
	const char	*proto;		/* "tcp" or "udp" */
	uint16_t	 port;		/* the service port */
	char		 comment[RENDER_COMMENTLEN];
	char		 container_target[RENDER_TARGETLEN];
	char		 host_target[RENDER_TARGETLEN];	/* "": no host rules */
};

static bool
render_ip_is_any(const struct svc_ip *ip)
{
	static const uint8_t zero[16];

	if (ip->family == 0)
		return true;
	return memcmp(ip->addr, zero,
	    ip->family == AF_INET ? 4 : 16) == 0;
}

/*
 * Whether listeners bound to env->bind_ip receive traffic of this family:
 * 0.0.0.0 is IPv4 only, :: is dual-stack, a specific address is its own
 * family only.  A portal towards a listener that cannot take the packet
 * would only turn a working path into a refused one.
 */
static bool
render_family_served(const struct portal_env *env, int family)
{
	const struct svc_ip *b = &env->bind_ip;

	if (b->family == 0)
		return family == AF_INET;
	if (b->family == AF_INET6 && render_ip_is_any(b))
		return true;
	return b->family == family;
}

static void
render_ip(const struct svc_ip *ip, char *buf, size_t len)
{
	if (inet_ntop(ip->family, ip->addr, buf, len) == NULL)
		strlcpy(buf, "?", len);
}

/* "-d" argument for one address: ip/32 or ip/128. */
static void
render_host_prefix(const struct svc_ip *ip, char *buf, size_t len)
{
	char	 s[SVC_IPSTRLEN];

	render_ip(ip, s, sizeof(s));
	snprintf(buf, len, "%s/%d", s, ip->family == AF_INET ? 32 : 128);
}

/* A CIDR with its host bits cleared, as iptables-save prints it. */
static void
render_cidr(const struct conf_cidr *c, char *buf, size_t len)
{
	uint8_t	 addr[16];
	char	 s[SVC_IPSTRLEN];
	int	 bits = c->family == AF_INET ? 32 : 128;
	int	 plen = c->prefix_len, i;

	if (plen < 0 || plen > bits)
		plen = bits;
	memcpy(addr, c->addr, sizeof(addr));
	for (i = 0; i < bits / 8; i++) {
		if (plen >= (i + 1) * 8)
			continue;
		if (plen <= i * 8)
			addr[i] = 0;
		else
			addr[i] &= (uint8_t)(0xff << (8 - (plen - i * 8)));
	}
	if (inet_ntop(c->family, addr, s, sizeof(s)) == NULL)
		strlcpy(s, "?", sizeof(s));
	snprintf(buf, len, "%s/%d", s, plen);
}

/* "-j DNAT --to-destination ip:port", with brackets around IPv6. */
static void
render_dnat(const struct svc_ip *ip, const char *port, char *buf, size_t len)
{
	char	 s[SVC_IPSTRLEN];

	render_ip(ip, s, sizeof(s));
	if (ip->family == AF_INET6)
		snprintf(buf, len, "-j DNAT --to-destination [%s]:%s", s, port);
	else
		snprintf(buf, len, "-j DNAT --to-destination %s:%s", s, port);
}

/*
 * Service port names are DNS labels, so this keeps them as they are; it
 * only guards the restore input against a quote or newline from a source
 * that does not validate (a hand-written services file).
 */
static void
render_comment(const struct svc *svc, const struct svc_port *sp, char *buf,
    size_t len)
{
	char	 display[SVC_KEYLEN];
	size_t	 i;

	svc_port_display(svc, sp, display, sizeof(display));
	strlcpy(buf, display, len);
	for (i = 0; buf[i] != '\0'; i++) {
		unsigned char c = (unsigned char)buf[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr("._-/:", c) != NULL))
			buf[i] = '_';
	}
}

/*
 * Append one rule to a chain, arguments in iptables-save's order:
 * -d, -p, comment, protocol match and --dport, extra matches, target.
 * dport_text, when not NULL, stands for dport (a placeholder proxy port).
 */
static void
render_rule_text(struct render *r, enum render_chain chain, const char *dst,
    const struct render_port *rp, uint16_t dport, const char *dport_text,
    const char *extra, const char *target)
{
	struct portal_rule	 rule;
	char			 line[RENDER_LINELEN], port[RENDER_PORTTEXTLEN];
	size_t			 n;

	if (dport_text == NULL)
		snprintf(port, sizeof(port), "%u", dport);
	else
		strlcpy(port, dport_text, sizeof(port));
	n = (size_t)snprintf(line, sizeof(line), "-A %s",
	    render_chain_names[chain]);
	if (dst != NULL && n < sizeof(line))
		n += (size_t)snprintf(line + n, sizeof(line) - n, " -d %s",
		    dst);
	if (n < sizeof(line))
		n += (size_t)snprintf(line + n, sizeof(line) - n,
		    " -p %s -m comment --comment \"%s\" -m %s --dport %s",
		    rp->proto, rp->comment, rp->proto, port);
	if (extra != NULL && n < sizeof(line))
		n += (size_t)snprintf(line + n, sizeof(line) - n, " %s",
		    extra);
	if (n < sizeof(line))
		snprintf(line + n, sizeof(line) - n, " %s", target);
	r->n_rules++;
	if (r->chain[chain] != NULL)
		fprintf(r->chain[chain], "%s\n", line);
	if (r->cb == NULL)
		return;
	rule.what = r->what;
	rule.ip = r->what_ip;
	rule.table = chain == RC_NODEPORT_NON_LOCAL ? "filter" : "nat";
	rule.chain = render_chain_names[chain];
	rule.line = line;
	r->cb(&rule, r->cb_arg);
}

static void
render_rule(struct render *r, enum render_chain chain, const char *dst,
    const struct render_port *rp, uint16_t dport, const char *extra,
    const char *target)
{
	render_rule_text(r, chain, dst, rp, dport, NULL, extra, target);
}

/* ClusterIP or LoadBalancer ingress IP: one rule for pods, one for the node. */
static void
render_portal_ip(struct render *r, const struct render_port *rp,
    const struct svc_ip *ip)
{
	char	 dst[SVC_IPSTRLEN + 8];

	render_host_prefix(ip, dst, sizeof(dst));
	render_rule(r, RC_PORTALS_CONTAINER, dst, rp, rp->port, NULL,
	    rp->container_target);
	if (rp->host_target[0] != '\0')
		render_rule(r, RC_PORTALS_HOST, dst, rp, rp->port, NULL,
		    rp->host_target);
}

/*
 * externalIP (upstream's isExternal): traffic that did not come from a
 * bridge port, i.e. from outside, and any traffic while the IP is local to
 * this node.  Pods on a bridge talking to a non-local external IP are not
 * intercepted and leave the node, as upstream.
 */
static void
render_external_ip(struct render *r, const struct render_port *rp,
    const struct svc_ip *ip)
{
	char	 dst[SVC_IPSTRLEN + 8];

	render_host_prefix(ip, dst, sizeof(dst));
	if (!r->env->no_physdev)
		render_rule(r, RC_PORTALS_CONTAINER, dst, rp, rp->port,
		    "-m physdev ! --physdev-is-in", rp->container_target);
	render_rule(r, RC_PORTALS_CONTAINER, dst, rp, rp->port,
	    "-m addrtype --dst-type LOCAL", rp->container_target);
	if (rp->host_target[0] != '\0')
		render_rule(r, RC_PORTALS_HOST, dst, rp, rp->port,
		    "-m addrtype --dst-type LOCAL", rp->host_target);
}

/*
 * NodePort: no -d (the jump's dst-type LOCAL limits it to this node's
 * addresses), or one rule per --nodeport-addresses CIDR of this family.
 * Returns whether any rule was written.
 */
static bool
render_node_port(struct render *r, const struct render_port *rp,
    uint16_t node_port)
{
	const struct portal_env	*env = r->env;
	char			 dst[SVC_IPSTRLEN + 8];
	size_t			 i;
	bool			 any = false;

	if (env->n_nodeport_cidrs == 0) {
		render_rule(r, RC_NODEPORT_CONTAINER, NULL, rp, node_port, NULL,
		    rp->container_target);
		if (rp->host_target[0] != '\0')
			render_rule(r, RC_NODEPORT_HOST, NULL, rp, node_port,
			    NULL, rp->host_target);
		return true;
	}
	for (i = 0; i < env->n_nodeport_cidrs; i++) {
		if (env->nodeport_cidrs[i].family != r->family)
			continue;
		render_cidr(&env->nodeport_cidrs[i], dst, sizeof(dst));
		render_rule(r, RC_NODEPORT_CONTAINER, dst, rp, node_port, NULL,
		    rp->container_target);
		if (rp->host_target[0] != '\0')
			render_rule(r, RC_NODEPORT_HOST, dst, rp, node_port,
			    NULL, rp->host_target);
		any = true;
	}
	return any;
}

/* Whether a portal_port can have rules at all (the proxier filters too). */
static bool
render_port_usable(const struct render *r, const struct portal_port *pp)
{
	if (pp->svc == NULL || pp->port == NULL ||
	    (pp->proxy_port == 0 && r->proxy_port_text == NULL))
		return false;
	if (!svc_is_proxied(pp->svc))
		return false;
	/* SCTP has no listener in userspace mode, as upstream. */
	return pp->port->proto == SVC_PROTO_TCP ||
	    pp->port->proto == SVC_PROTO_UDP;
}

/* The targets: REDIRECT or DNAT to bind_ip for pods, DNAT for the node. */
static void
render_targets(const struct render *r, const char *proxy_port,
    struct render_port *rp)
{
	const struct portal_env	*env = r->env;
	const struct svc_ip	*host;

	if (render_ip_is_any(&env->bind_ip)) {
		snprintf(rp->container_target, sizeof(rp->container_target),
		    "-j REDIRECT --to-ports %s", proxy_port);
		host = r->family == AF_INET ? &env->host_ip : &env->host_ip6;
	} else {
		render_dnat(&env->bind_ip, proxy_port, rp->container_target,
		    sizeof(rp->container_target));
		host = &env->bind_ip;
	}
	/*
	 * Node-local traffic is DNATed to a real host address: REDIRECT in
	 * OUTPUT and DNAT to 127.0.0.1 both make replies come from the wrong
	 * address (upstream B5), and route_localnet is not ours to set.
	 */
	rp->host_target[0] = '\0';
	if (host->family == r->family && !render_ip_is_any(host))
		render_dnat(host, proxy_port, rp->host_target,
		    sizeof(rp->host_target));
}

/* Say who the rules written next are for (the callback's view). */
static void
render_for(struct render *r, enum portal_rule_for what,
    const struct svc_ip *ip)
{
	r->what = what;
	r->what_ip = ip;
}

static void
render_port(struct render *r, const struct portal_port *pp)
{
	const struct svc	*svc = pp->svc;
	const struct svc_port	*sp = pp->port;
	struct render_port	 rp, rp_ext;
	char			 proxy_port[RENDER_PORTTEXTLEN];
	uint16_t		 ext_port;
	size_t			 i;

	if (!render_port_usable(r, pp))
		return;
	memset(&rp, 0, sizeof(rp));
	rp.proto = sp->proto == SVC_PROTO_TCP ? "tcp" : "udp";
	rp.port = sp->port;
	render_comment(svc, sp, rp.comment, sizeof(rp.comment));
	if (r->proxy_port_text != NULL)
		strlcpy(proxy_port, r->proxy_port_text, sizeof(proxy_port));
	else
		snprintf(proxy_port, sizeof(proxy_port), "%u", pp->proxy_port);
	render_targets(r, proxy_port, &rp);
	/* Traffic from outside may have a proxy port of its own. */
	rp_ext = rp;
	ext_port = pp->external_proxy_port != 0 ? pp->external_proxy_port :
	    pp->proxy_port;
	if (pp->external_proxy_port != 0 && r->proxy_port_text == NULL) {
		snprintf(proxy_port, sizeof(proxy_port), "%u", ext_port);
		render_targets(r, proxy_port, &rp_ext);
	}

	/* Upstream's openPortal order: clusterIP, externalIPs, LB ingress. */
	for (i = 0; i < svc->n_cluster_ips && i < 2; i++)
		if (svc->cluster_ips[i].family == r->family) {
			render_for(r, PORTAL_FOR_CLUSTER_IP,
			    &svc->cluster_ips[i]);
			render_portal_ip(r, &rp, &svc->cluster_ips[i]);
		}
	for (i = 0; i < svc->n_external_ips; i++)
		if (svc->external_ips[i].family == r->family &&
		    portal_external_ip_allowed(r->env,
		    &svc->external_ips[i])) {
			render_for(r, PORTAL_FOR_EXTERNAL_IP,
			    &svc->external_ips[i]);
			render_external_ip(r, &rp_ext, &svc->external_ips[i]);
		}
	for (i = 0; i < svc->n_ingress_ips; i++)
		if (svc->ingress_ips[i].family == r->family) {
			render_for(r, PORTAL_FOR_INGRESS_IP,
			    &svc->ingress_ips[i]);
			render_portal_ip(r, &rp_ext, &svc->ingress_ips[i]);
		}

	/*
	 * externalTrafficPolicy Local without a local endpoint: kube-proxy
	 * drops such traffic, so a client times out instead of being reset.
	 * Filter INPUT sees the external proxy port after NAT, and only
	 * external traffic is sent there.
	 */
	if (pp->external_drop && pp->external_proxy_port != 0) {
		render_for(r, PORTAL_FOR_NODE_PORT_ACCEPT, NULL);
		render_rule_text(r, RC_NODEPORT_NON_LOCAL, NULL, &rp_ext,
		    ext_port, r->proxy_port_text, NULL, "-j DROP");
	}

	/*
	 * Filter INPUT sees the port after NAT, so default-deny hosts need
	 * the proxy port opened; as upstream, only for NodePorts, so that a
	 * ClusterIP-only proxy port stays closed to the outside.
	 */
	render_for(r, PORTAL_FOR_NODE_PORT, NULL);
	if (sp->node_port == 0 ||
	    !render_node_port(r, &rp_ext, sp->node_port) || pp->external_drop)
		return;
	render_for(r, PORTAL_FOR_NODE_PORT_ACCEPT, NULL);
	render_rule_text(r, RC_NODEPORT_NON_LOCAL, NULL, &rp_ext, ext_port,
	    r->proxy_port_text, "-m state --state NEW", "-j ACCEPT");
}

static void
render_close(struct render *r)
{
	int	 i;

	for (i = 0; i < RC_N; i++) {
		if (r->chain[i] != NULL)
			fclose(r->chain[i]);
		r->chain[i] = NULL;
		free(r->text[i]);
		r->text[i] = NULL;
	}
}

/* Close the chain streams; -1 if any failed to allocate. */
static int
render_finish_chains(struct render *r)
{
	int	 i, rc = 0;

	for (i = 0; i < RC_N; i++) {
		if (ferror(r->chain[i]))
			rc = -1;
		if (fclose(r->chain[i]) != 0)
			rc = -1;
		r->chain[i] = NULL;
	}
	return rc;
}

static void
render_table(FILE *out, const struct render *r, enum render_chain first,
    enum render_chain last, const char *table, const char *extra)
{
	int	 i;

	fprintf(out, "*%s\n", table);
	for (i = first; i <= (int)last; i++)
		fprintf(out, ":%s - [0:0]\n", render_chain_names[i]);
	for (i = first; i <= (int)last; i++)
		fwrite(r->text[i], 1, r->len[i], out);
	if (extra != NULL)
		fputs(extra, out);
	fputs("COMMIT\n", out);
}

/*
 * Declaring a chain in restore input with --noflush flushes that chain and
 * nothing else, so the whole text replaces our chains atomically and never
 * touches a rule outside them.
 */
char *
portal_render_with(const struct portal_env *env, int family,
    const struct portal_port *ports, size_t n_ports, const char *nat_extra,
    const char *filter_extra)
{
	struct render	 r;
	FILE		*out = NULL;
	char		*text = NULL;
	size_t		 len = 0, i;
	int		 c;

	memset(&r, 0, sizeof(r));
	r.env = env;
	r.family = family;
	for (c = 0; c < RC_N; c++)
		if ((r.chain[c] = open_memstream(&r.text[c], &r.len[c])) ==
		    NULL)
			goto fail;
	if (render_family_served(env, family))
		for (i = 0; i < n_ports; i++)
			render_port(&r, &ports[i]);
	if (render_finish_chains(&r) == -1)
		goto fail;

	if ((out = open_memstream(&text, &len)) == NULL)
		goto fail;
	render_table(out, &r, RC_NODEPORT_CONTAINER, RC_PORTALS_HOST, "nat",
	    nat_extra);
	render_table(out, &r, RC_NODEPORT_NON_LOCAL, RC_NODEPORT_NON_LOCAL,
	    "filter", filter_extra);
	if (ferror(out)) {
		fclose(out);
		out = NULL;
		goto fail;
	}
	if (fclose(out) != 0) {
		out = NULL;
		goto fail;
	}
	render_close(&r);
	return text;

fail:
	if (out != NULL)
		fclose(out);
	free(text);
	render_close(&r);
	return NULL;
}

/* See portal.h. */
char *
portal_render(const struct portal_env *env, int family,
    const struct portal_port *ports, size_t n_ports)
{
	return portal_render_with(env, family, ports, n_ports, NULL, NULL);
}

/* See portal.h. */
size_t
portal_render_port_rules(const struct portal_env *env, int family,
    const struct portal_port *pp, const char *proxy_port_text,
    portal_rule_cb cb, void *arg)
{
	struct render	 r;

	memset(&r, 0, sizeof(r));
	r.env = env;
	r.family = family;
	r.cb = cb;
	r.cb_arg = arg;
	r.proxy_port_text = proxy_port_text;
	if (render_family_served(env, family))
		render_port(&r, pp);
	return r.n_rules;
}

/* See portal.h. */
bool
portal_external_ip_allowed(const struct portal_env *env,
    const struct svc_ip *ip)
{
	size_t	 i;

	if (env->n_external_ip_allow == 0)
		return true;
	for (i = 0; i < env->n_external_ip_allow; i++)
		if (conf_cidr_contains(&env->external_ip_allow[i], ip->family,
		    ip->addr))
			return true;
	return false;
}
