/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The explanation of one service as a JSON document (see explain.h), and
 * the `kuproxy explain` command that asks the daemon for it or builds it
 * from a services file.
 *
 * This module owns the words, not the facts: rules come from
 * portal_render_port_rules() (the renderer portal_sync() installs), the
 * host IP from portal_find_host_ip(), the balancer's choices from lb.c's
 * read-only views (offline: from a fresh balancer fed the same endpoints,
 * as a starting kuproxy would), the service from the decoder and the
 * table builder.  The sentences about paths are derived from the rules
 * found (explain_words.c), so a rule that is not there is never
 * described.  Text output is explain_print.c's, from the same document.
 *
 * In the daemon the rules are rendered with the proxier's own portal
 * settings and each port's spec less what another program holds
 * (proxier_port_spec()), exactly as the next sync writes them.  Offline
 * the portal environment is rebuilt from the configuration as
 * portal_new() builds it, and what explain cannot know from there it
 * says: the proxy port (a placeholder), the backend auto would choose,
 * whether the kernel has the physdev match (assumed, as on every kernel
 * with bridge netfilter) and which node ports another program holds.
 */
#include "config.h"

#include <sys/socket.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bsd/string.h>

#include "base/clock.h"
#include "base/explain.h"
#include "base/explain_int.h"
#include "base/status.h"
#include "base/svc.h"
#include "base/yamljson.h"
#include "conf/conf.h"
#include "proxy/claims.h"
#include "proxy/lb.h"
#include "proxy/portal.h"
#include "proxy/pport.h"
#include "proxy/proxier.h"
#include "watch/decode.h"

#define EXPLAIN_FILE_MAX_BYTES	(256u * 1024 * 1024)
#define EXPLAIN_MAX_STICKY	32	/* sticky clients listed per port */
#define EXPLAIN_BRNF_SYSCTL	"/proc/sys/net/bridge/bridge-nf-call-iptables"

static json_object *
error_document(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* {"formatVersion": 1, "error": "..."}: the answer for a failed request. */
static json_object *
error_document(const char *fmt, ...)
{
	json_object	*doc = json_object_new_object();
	char		 buf[1024];
	va_list		 ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	add_int(doc, "formatVersion", EXPLAIN_FORMAT_VERSION);
	add_str(doc, "error", buf);
	return doc;
}

/* "10.0.0.1:80" or "[fd00::1]:80" */
static const char *
addr_port(const struct svc_ip *ip, uint16_t port, char *buf, size_t len)
{
	struct lb_target	 t = { *ip, port };

	return lb_target_str(&t, buf, len);
}

/* The target. */

static bool
target_word_ok(const char *s, bool port)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' &&
		    (port || (*s != '.' && *s != '_')))
			return false;
	return true;
}

/* See explain.h. */
int
explain_parse_target(const char *s, struct explain_target *t, char *err,
    size_t errlen)
{
	const char	*slash, *colon, *name;
	size_t		 len;

	memset(t, 0, sizeof(*t));
	if (s == NULL || *s == '\0') {
		snprintf(err, errlen, "which service? give "
		    "[NAMESPACE/]NAME[:PORT]");
		return -1;
	}
	slash = strchr(s, '/');
	name = slash != NULL ? slash + 1 : s;
	if (slash != NULL) {
		len = (size_t)(slash - s);
		if (len >= sizeof(t->namespace))
			goto bad;
		memcpy(t->namespace, s, len);
	} else
		strlcpy(t->namespace, "default", sizeof(t->namespace));
	colon = strchr(name, ':');
	len = colon != NULL ? (size_t)(colon - name) : strlen(name);
	if (len >= sizeof(t->name))
		goto bad;
	memcpy(t->name, name, len);
	if (colon != NULL && strlcpy(t->port, colon + 1, sizeof(t->port)) >=
	    sizeof(t->port))
		goto bad;
	if (!target_word_ok(t->namespace, false) ||
	    !target_word_ok(t->name, false) ||
	    (colon != NULL && !target_word_ok(t->port, true)))
		goto bad;
	return 0;
bad:
	snprintf(err, errlen, "\"%.200s\": expected [NAMESPACE/]NAME[:PORT], "
	    "e.g. default/web:http or web:80", s);
	return -1;
}

/* The port filter: a name, or a number matching the service port. */
static bool
target_port_matches(const struct explain_target *t, const struct svc_port *p)
{
	char	 num[8];

	if (t->port[0] == '\0')
		return true;
	snprintf(num, sizeof(num), "%u", p->port);
	return strcmp(t->port, p->name) == 0 || strcmp(t->port, num) == 0;
}

/* The context. */

static bool
ip_is_any(const struct svc_ip *ip)
{
	static const uint8_t	 zero[16];

	return ip->family == 0 ||
	    memcmp(ip->addr, zero, ip->family == AF_INET ? 4 : 16) == 0;
}

/*
 * The portal environment as portal_new() builds it from conf: bind IP,
 * CIDR lists, and the host IPs an any-address bind DNATs node-local
 * traffic to (0.0.0.0: IPv4; ::, both).  The physdev match is assumed
 * present: only the daemon's probe can tell (explain.h).
 */
static int
ctx_portal_env(struct explain_ctx *ctx, char *err, size_t errlen)
{
	const struct conf	*c = ctx->conf;
	const char		*bind = c->bind_address;
	struct portal_env	*e = &ctx->penv;

	memset(e, 0, sizeof(*e));
	if (bind == NULL || *bind == '\0')
		bind = "0.0.0.0";
	if (svc_ip_parse(bind, &e->bind_ip) == -1) {
		snprintf(err, errlen, "--bind-address: %s is not an IP address",
		    bind);
		return -1;
	}
	e->nodeport_cidrs = c->nodeport_cidrs;
	e->n_nodeport_cidrs = c->n_nodeport_cidrs;
	e->external_ip_allow = c->external_ip_allow;
	e->n_external_ip_allow = c->n_external_ip_allow;
	if (ip_is_any(&e->bind_ip)) {
		portal_find_host_ip(AF_INET, &e->host_ip);
		if (e->bind_ip.family == AF_INET6)
			portal_find_host_ip(AF_INET6, &e->host_ip6);
	}
	return 0;
}

/* Whether bridged pod packets go through iptables (br_netfilter). */
static bool
ctx_br_netfilter(void)
{
	FILE	*f;
	int	 c = '0';

	if ((f = fopen(EXPLAIN_BRNF_SYSCTL, "r")) == NULL)
		return false;
	c = fgetc(f);
	fclose(f);
	return c == '1';
}

static int
ctx_init(struct explain_ctx *ctx, const struct conf *conf, struct proxier *px,
    char *err, size_t errlen)
{
	struct proxier_state	 st;

	memset(ctx, 0, sizeof(*ctx));
	ctx->conf = conf;
	ctx->px = px;
	if (ctx_portal_env(ctx, err, errlen) == -1)
		return -1;
	if (px != NULL) {
		/* The daemon's own, with what its probes found. */
		ctx->penv = *proxier_portal_env(px);
		proxier_get_state(px, &st);
		ctx->backend = st.backend;
	} else
		ctx->backend = conf->iptables_backend == CONF_IPT_LEGACY ?
		    "legacy" : conf->iptables_backend == CONF_IPT_NFT ? "nft" :
		    conf->iptables_backend == CONF_IPT_NONE ? "none" : "auto";
	ctx->rules = strcmp(ctx->backend, "none") != 0;
	claims_local_addresses(&ctx->local, &ctx->n_local);
	ctx->br_netfilter = ctx_br_netfilter();
	ctx->now_ms = clock_mono_ms();
	return 0;
}

static void
ctx_clear(struct explain_ctx *ctx)
{
	free(ctx->local);
	ctx->local = NULL;
}

static bool
ctx_is_local(const struct explain_ctx *ctx, const struct svc_ip *ip)
{
	size_t	 i;

	for (i = 0; i < ctx->n_local; i++)
		if (svc_ip_cmp(&ctx->local[i], ip) == 0)
			return true;
	return false;
}

/* Whether listeners on the bind address take this family (as rendering). */
static bool
ctx_family_served(const struct explain_ctx *ctx, int family)
{
	const struct svc_ip	*b = &ctx->penv.bind_ip;

	if (b->family == AF_INET6 && ip_is_any(b))
		return true;
	return b->family == family;
}

/* Rules. */

static const char *
kind_name(enum portal_rule_for what)
{
	switch (what) {
	case PORTAL_FOR_CLUSTER_IP:
		return "clusterIP";
	case PORTAL_FOR_EXTERNAL_IP:
		return "externalIP";
	case PORTAL_FOR_INGRESS_IP:
		return "loadBalancerIngress";
	case PORTAL_FOR_NODE_PORT:
	case PORTAL_FOR_NODE_PORT_ACCEPT:
		break;
	}
	return "nodePort";
}

/* The jump into chain (portal_jumps), or NULL. */
static const struct portal_jump *
jump_into(const char *chain)
{
	size_t	 i;

	for (i = 0; i < PORTAL_N_JUMPS; i++)
		if (strcmp(portal_jumps[i].chain, chain) == 0)
			return &portal_jumps[i];
	return NULL;
}

static const char *
hook_catches(const char *hook)
{
	if (strcmp(hook, "PREROUTING") == 0)
		return "packets from pods and from outside";
	if (strcmp(hook, "OUTPUT") == 0)
		return "packets from the node itself";
	return "packets to the proxy port, after NAT";
}

/* portal_rule_cb: file the rule under its portal. */
static void
collect_rule(const struct portal_rule *r, void *arg)
{
	struct explain_portals		*ps = arg;
	const struct portal_jump	*j = jump_into(r->chain);
	enum portal_rule_for		 what = r->what;
	json_object			*o;
	char				 jump[512];
	size_t				 i;

	if (what == PORTAL_FOR_NODE_PORT_ACCEPT)
		what = PORTAL_FOR_NODE_PORT;
	for (i = 0; i < ps->n; i++) {
		if (ps->v[i].what != what)
			continue;
		if (what == PORTAL_FOR_NODE_PORT || (r->ip != NULL &&
		    svc_ip_cmp(r->ip, &ps->v[i].ip) == 0))
			break;
	}
	if (i == ps->n)
		return;
	o = json_object_new_object();
	add_str(o, "table", r->table);
	add_str(o, "chain", r->chain);
	if (j != NULL) {
		add_str(o, "hook", j->from);
		snprintf(jump, sizeof(jump), "-A %s %s -j %s", j->from, j->args,
		    j->chain);
		add_str(o, "jump", jump);
		add_str(o, "catches", hook_catches(j->from));
	}
	add_str(o, "rule", r->line);
	json_object_array_add(ps->v[i].rules, o);
	ps->v[i].n_rules++;
}

/* Portals. */

static struct explain_portal *
portal_add(struct explain_portals *ps, enum portal_rule_for what,
    const struct svc_ip *ip, const struct svc_port *sp,
    const struct explain_ctx *ctx)
{
	struct explain_portal	*p = &ps->v[ps->n++];
	char			 s[SVC_IPSTRLEN + 8];

	memset(p, 0, sizeof(*p));
	p->what = what;
	p->obj = json_object_new_object();
	p->rules = json_object_new_array();
	add_str(p->obj, "kind", kind_name(what));
	if (ip != NULL) {
		p->ip = *ip;
		p->local = ctx_is_local(ctx, ip);
		add_str(p->obj, "ip", svc_ip_str(ip, s, sizeof(s)));
		add_str(p->obj, "address", addr_port(ip, sp->port, s,
		    sizeof(s)));
		add_bool(p->obj, "nodeLocal", p->local);
	} else
		add_int(p->obj, "nodePort", sp->node_port);
	return p;
}

/*
 * The node addresses a node port answers on: this node's addresses of a
 * family with listeners, inside --nodeport-addresses when given.
 */
static json_object *
node_port_addresses(const struct explain_ctx *ctx)
{
	json_object	*a = json_object_new_array();
	char		 s[SVC_IPSTRLEN];
	size_t		 i, j;
	bool		 in;

	for (i = 0; i < ctx->n_local; i++) {
		const struct svc_ip *ip = &ctx->local[i];

		if (!ctx_family_served(ctx, ip->family))
			continue;
		/* Link-local IPv6 addresses need a zone: not useful here. */
		if (ip->family == AF_INET6 && ip->addr[0] == 0xfe &&
		    (ip->addr[1] & 0xc0) == 0x80)
			continue;
		in = ctx->penv.n_nodeport_cidrs == 0;
		for (j = 0; j < ctx->penv.n_nodeport_cidrs && !in; j++)
			in = conf_cidr_contains(&ctx->penv.nodeport_cidrs[j],
			    ip->family, ip->addr);
		if (in)
			json_object_array_add(a, json_object_new_string(
			    svc_ip_str(ip, s, sizeof(s))));
	}
	return a;
}

/* Why an address has no rules, when the spec alone says so. */
static void
portal_note(const struct explain_ctx *ctx, struct explain_portal *p)
{
	if (!ctx->rules)
		add_str(p->obj, "note", "no rules: --iptables-backend none");
	else if (p->ip.family != 0 && !ctx_family_served(ctx, p->ip.family))
		add_str(p->obj, "note", "no rules: the bind address serves "
		    "the other address family only");
	else if (p->what == PORTAL_FOR_EXTERNAL_IP &&
	    !portal_external_ip_allowed(&ctx->penv, &p->ip))
		add_str(p->obj, "note",
		    "no rules: outside --external-ip-allow");
	else if (p->what == PORTAL_FOR_CLUSTER_IP ||
	    p->what == PORTAL_FOR_INGRESS_IP || p->n_rules > 0)
		return;
	else if (p->what == PORTAL_FOR_NODE_PORT)
		add_str(p->obj, "note", "no rules: no --nodeport-addresses "
		    "CIDR of a served address family");
	else
		add_str(p->obj, "note", "no rules");
}

/* Balancer and endpoints. */

/* The algorithm's name in the JSON document. */
static const char *
explain_balancer_name(enum svc_balancer b)
{
	switch (b) {
	case SVC_BALANCER_LEAST_CONN:
		return "leastConnections";
	case SVC_BALANCER_MAGLEV:
		return "maglev";
	case SVC_BALANCER_DEFAULT:
	case SVC_BALANCER_ROUND_ROBIN:
		break;
	}
	return "roundRobin";
}

static json_object *
balancer_object(const struct explain_ctx *ctx, const struct svc *svc,
    struct lb *lb)
{
	json_object		*o = json_object_new_object();
	json_object		*a;
	struct lb_sticky	 sticky[EXPLAIN_MAX_STICKY];
	struct lb_target	 next;
	char			 s[SVC_IPSTRLEN + 8];
	size_t			 n, i;

	add_str(o, "algorithm", explain_balancer_name(lb_balancer(lb)));
	add_int(o, "usableEndpoints", (long long)lb_n_endpoints(lb));
	if (lb_peek_next(lb, ctx->now_ms, &next) == 0)
		add_str(o, "nextEndpoint", lb_target_str(&next, s, sizeof(s)));
	else
		json_object_object_add(o, "nextEndpoint", NULL);
	add_str(o, "sessionAffinity", svc->affinity ==
	    SVC_AFFINITY_CLIENT_IP ? "ClientIP" : "None");
	if (svc->affinity != SVC_AFFINITY_CLIENT_IP)
		return o;
	add_int(o, "affinityTimeoutSeconds", svc->affinity_timeout_s != 0 ?
	    svc->affinity_timeout_s : SVC_AFFINITY_DEFAULT_S);
	n = lb_sticky_clients(lb, ctx->now_ms, sticky, EXPLAIN_MAX_STICKY);
	add_int(o, "nStickyClients", (long long)n);
	a = json_object_new_array();
	for (i = 0; i < n && i < EXPLAIN_MAX_STICKY; i++) {
		json_object *c = json_object_new_object();

		add_str(c, "client", svc_ip_str(&sticky[i].client, s,
		    sizeof(s)));
		add_str(c, "endpoint", lb_target_str(&sticky[i].target, s,
		    sizeof(s)));
		add_int(c, "idleSeconds", sticky[i].idle_ms / 1000);
		json_object_array_add(a, c);
	}
	json_object_object_add(o, "stickyClients", a);
	return o;
}

static json_object *
endpoints_array(const struct explain_ctx *ctx, const struct svc_port *sp,
    struct lb *lb, bool live)
{
	json_object	*a = json_object_new_array();
	char		 s[SVC_IPSTRLEN + 8];
	size_t		 i;

	for (i = 0; i < sp->n_endpoints; i++) {
		const struct endpoint	*ep = &sp->endpoints[i];
		struct lb_target	 t = { ep->ip, ep->port };
		json_object		*o = json_object_new_object();

		add_str(o, "address", lb_target_str(&t, s, sizeof(s)));
		add_bool(o, "ready", ep->flags & EP_F_READY);
		add_bool(o, "serving", ep->flags & EP_F_SERVING);
		add_bool(o, "terminating", ep->flags & EP_F_TERMINATING);
		if (lb != NULL)
			add_bool(o, "used", lb_uses(lb, &t));
		if (live)
			add_bool(o, "backingOff", lb_backing_off(lb, &t,
			    ctx->now_ms));
		if (ep->node_name != NULL)
			add_str(o, "nodeName", ep->node_name);
		if (ep->zone != NULL)
			add_str(o, "zone", ep->zone);
		json_object_array_add(a, o);
	}
	return a;
}

/* One service port. */

struct pport_find {
	const char	*key;
	struct pport	*found;
};

static void
pport_match(struct pport *pp, void *arg)
{
	struct pport_find	*f = arg;

	if (!pp->removed && strcmp(pp->key, f->key) == 0)
		f->found = pp;
}

/* Why a port has no proxy port, or NULL when it should have one. */
static const char *
port_unserved_reason(const struct explain_ctx *ctx, const struct svc_port *sp,
    const struct pport *pp)
{
	if (sp->proto == SVC_PROTO_SCTP)
		return "SCTP is not supported in userspace mode (as "
		    "upstream): no proxy port, no rule";
	if (ctx->px != NULL && pp == NULL)
		return "kuproxy has no proxy port for it: opening one failed "
		    "(see its log); the next table change tries again";
	return NULL;
}

static void
port_portals(const struct explain_ctx *ctx, const struct svc *svc,
    const struct svc_port *sp, struct explain_portals *ps)
{
	struct explain_portal	*p;
	size_t			 i;

	for (i = 0; i < svc->n_cluster_ips && i < 2; i++)
		portal_add(ps, PORTAL_FOR_CLUSTER_IP, &svc->cluster_ips[i], sp,
		    ctx);
	for (i = 0; i < svc->n_external_ips; i++)
		portal_add(ps, PORTAL_FOR_EXTERNAL_IP, &svc->external_ips[i],
		    sp, ctx);
	for (i = 0; i < svc->n_ingress_ips; i++)
		portal_add(ps, PORTAL_FOR_INGRESS_IP, &svc->ingress_ips[i], sp,
		    ctx);
	if (sp->node_port != 0) {
		p = portal_add(ps, PORTAL_FOR_NODE_PORT, NULL, sp, ctx);
		json_object_object_add(p->obj, "addresses",
		    node_port_addresses(ctx));
	}
}

static json_object *
port_object(const struct explain_ctx *ctx, const struct svc *svc,
    const struct svc_port *sp)
{
	json_object		*o = json_object_new_object();
	json_object		*portals = json_object_new_array();
	json_object		*bal;
	struct explain_portals	 ps;
	struct portal_port	 pport;
	struct svc		 held_svc;
	struct svc_port		 held_port;
	bool			 held = false;
	struct pport_find	 find;
	struct lb		*lb = NULL, *own_lb = NULL;
	const char		*unserved;
	char			 key[SVC_KEYLEN], proxy_port[32];
	size_t			 i;

	svc_port_key(svc, sp, key, sizeof(key));
	find.key = key;
	find.found = NULL;
	if (ctx->px != NULL)
		proxier_foreach(ctx->px, pport_match, &find);
	add_str(o, "key", key);
	add_str(o, "name", sp->name);
	add_str(o, "protocol", svc_proto_str(sp->proto));
	add_int(o, "port", sp->port);
	add_int(o, "nodePort", sp->node_port);
	unserved = port_unserved_reason(ctx, sp, find.found);
	add_bool(o, "served", unserved == NULL);
	if (unserved != NULL)
		add_str(o, "notServed", unserved);
	if (find.found != NULL) {
		add_int(o, "proxyPort", find.found->proxy_port);
		snprintf(proxy_port, sizeof(proxy_port), "%u",
		    find.found->proxy_port);
		lb = find.found->lb;
	} else {
		json_object_object_add(o, "proxyPort", NULL);
		strlcpy(proxy_port, EXPLAIN_PROXY_PORT_TEXT,
		    sizeof(proxy_port));
		/* A fresh balancer: what a starting kuproxy would choose. */
		if ((own_lb = lb_new()) != NULL && lb_update(own_lb,
		    sp->endpoints, sp->n_endpoints, svc->affinity,
		    svc->affinity_timeout_s) == 0 && unserved == NULL)
			lb = own_lb;
		if (lb == own_lb && own_lb != NULL)
			(void)lb_set_balancer(own_lb, svc->balancer_kind);
	}

	ps.n = 0;
	ps.v = calloc(svc->n_cluster_ips + svc->n_external_ips +
	    svc->n_ingress_ips + 1, sizeof(*ps.v));
	if (ps.v != NULL && unserved == NULL) {
		port_portals(ctx, svc, sp, &ps);
		memset(&pport, 0, sizeof(pport));
		pport.svc = svc;
		pport.port = sp;
		pport.proxy_port = find.found != NULL ?
		    find.found->proxy_port : 0;
		/* Live: less what another program holds, as the daemon. */
		if (find.found != NULL && proxier_port_spec(ctx->px, key,
		    &held_svc, &held_port, &pport) == 0)
			held = true;
		for (i = 0; ctx->rules && i < 2; i++)
			portal_render_port_rules(&ctx->penv,
			    i == 0 ? AF_INET : AF_INET6, &pport,
			    find.found != NULL ? NULL : EXPLAIN_PROXY_PORT_TEXT,
			    collect_rule, &ps);
	}
	for (i = 0; i < ps.n; i++) {
		portal_note(ctx, &ps.v[i]);
		json_object_object_add(ps.v[i].obj, "rules",
		    json_object_get(ps.v[i].rules));
		json_object_array_add(portals, ps.v[i].obj);
	}
	json_object_object_add(o, "portals", portals);
	if (unserved == NULL && lb != NULL) {
		bal = balancer_object(ctx, svc, lb);
		json_object_object_add(o, "balancer", bal);
		json_object_object_add(o, "endpoints", endpoints_array(ctx, sp,
		    lb, find.found != NULL));
		json_object_object_add(o, "paths", explain_words_paths(ctx,
		    svc, sp, &ps, bal, proxy_port));
	} else
		json_object_object_add(o, "endpoints", endpoints_array(ctx, sp,
		    NULL, false));
	for (i = 0; i < ps.n; i++)
		json_object_put(ps.v[i].rules);
	free(ps.v);
	lb_free(own_lb);
	if (held) {
		free(held_svc.external_ips);
		free(held_svc.ingress_ips);
	}
	return o;
}

/* The document. */

static json_object *
ip_strings(const struct svc_ip *ips, size_t n)
{
	json_object	*a = json_object_new_array();
	char		 s[SVC_IPSTRLEN];
	size_t		 i;

	for (i = 0; i < n; i++)
		json_object_array_add(a, json_object_new_string(
		    svc_ip_str(&ips[i], s, sizeof(s))));
	return a;
}

static void
document_head(const struct explain_ctx *ctx, json_object *doc)
{
	const struct portal_env	*e = &ctx->penv;
	char			 s[SVC_IPSTRLEN];

	add_int(doc, "formatVersion", EXPLAIN_FORMAT_VERSION);
	add_str(doc, "source", ctx->px != NULL ? "daemon" : "file");
	if (ctx->px == NULL && ctx->conf->services_file != NULL)
		add_str(doc, "servicesFile", ctx->conf->services_file);
	add_str(doc, "iptablesBackend", ctx->backend);
	add_str(doc, "bindAddress", svc_ip_str(&e->bind_ip, s, sizeof(s)));
	if (e->host_ip.family != 0)
		add_str(doc, "hostIP", svc_ip_str(&e->host_ip, s, sizeof(s)));
	if (e->host_ip6.family != 0)
		add_str(doc, "hostIPv6", svc_ip_str(&e->host_ip6, s,
		    sizeof(s)));
	add_str(doc, "clusterDomain", EXPLAIN_CLUSTER_DOMAIN);
}

static void
document_notes(const struct explain_ctx *ctx, const struct svc *svc,
    json_object *doc)
{
	json_object		*notes = json_object_new_array();
	struct proxier_state	 st;

	if (ctx->px == NULL && svc_is_proxied(svc)) {
		if (ctx->conf->port_range_begin != 0)
			add_strf(notes, "the proxy port is assigned when "
			    "kuproxy runs, from --proxy-port-range %u-%u: the "
			    "rules show %s", ctx->conf->port_range_begin,
			    ctx->conf->port_range_end,
			    EXPLAIN_PROXY_PORT_TEXT);
		else
			add_strf(notes, "the proxy port is assigned when "
			    "kuproxy runs (an ephemeral port): the rules show "
			    "%s", EXPLAIN_PROXY_PORT_TEXT);
		if (strcmp(ctx->backend, "auto") == 0)
			add_strf(notes, "%s", "--iptables-backend auto: "
			    "kuproxy "
			    "chooses legacy or nft at start; the rules are "
			    "the same in both");
	}
	if (svc->n_external_ips > 0 && ctx->rules && ctx->px == NULL)
		add_strf(notes, "%s", "externalIP rules assume the physdev "
		    "match is "
		    "available; a kuproxy that found it missing logged so at "
		    "start and has only the --dst-type LOCAL rules");
	if (ctx->px == NULL && (svc->n_external_ips > 0 ||
	    svc->n_ingress_ips > 0 ||
	    (svc->n_ports > 0 && svc->ports[0].node_port != 0)))
		add_strf(notes, "%s", "a node port or a local externalIP or "
		    "load-balancer IP port that another program holds gets "
		    "no rule until it is free (logged as a port conflict)");
	if (ctx->px != NULL) {
		proxier_get_state(ctx->px, &st);
		if (st.service_changes_pending > 0)
			add_strf(notes, "%llu service changes wait for the "
			    "next rule sync: the rules installed may still be "
			    "the previous ones", (unsigned long long)
			    st.service_changes_pending);
	}
	json_object_object_add(doc, "notes", notes);
}

/* The ports of svc that the target names, as "http 80/TCP, ..." text. */
static void
ports_list(const struct svc *svc, char *buf, size_t len)
{
	size_t	 i, n = 0;

	buf[0] = '\0';
	for (i = 0; i < svc->n_ports && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%s%s%u/%s",
		    i > 0 ? ", " : "", svc->ports[i].name,
		    svc->ports[i].name[0] != '\0' ? " " : "",
		    svc->ports[i].port, svc_proto_str(svc->ports[i].proto));
	if (svc->n_ports == 0)
		strlcpy(buf, "none", len);
}

/* The document for target in tab, or an error document. */
static json_object *
explain_document(const struct explain_ctx *ctx, const struct svctab *tab,
    const char *target_text)
{
	struct explain_target	 t;
	const struct svc	*svc;
	json_object		*doc, *ports;
	char			 err[512], list[512];
	size_t			 i;

	if (explain_parse_target(target_text, &t, err, sizeof(err)) == -1)
		return error_document("%s", err);
	if (tab == NULL)
		return error_document("kuproxy has no service table yet");
	if ((svc = svctab_find(tab, t.namespace, t.name)) == NULL)
		return error_document("no service %s/%s among the %zu that "
		    "kuproxy knows%s", t.namespace, t.name, tab->n_svcs,
		    ctx->px != NULL && ctx->conf->services_file == NULL ?
		    " (from the API server, services labelled "
		    "service.kubernetes.io/service-proxy-name are not listed)" :
		    "");
	doc = json_object_new_object();
	document_head(ctx, doc);
	add_str(doc, "namespace", svc->namespace);
	add_str(doc, "name", svc->name);
	add_str(doc, "type", svc_type_str(svc->type));
	json_object_object_add(doc, "clusterIPs", ip_strings(svc->cluster_ips,
	    svc->n_cluster_ips));
	add_bool(doc, "proxied", svc_is_proxied(svc));
	ports = json_object_new_array();
	for (i = 0; i < svc->n_ports; i++) {
		if (!target_port_matches(&t, &svc->ports[i]))
			continue;
		if (svc_is_proxied(svc))
			json_object_array_add(ports, port_object(ctx, svc,
			    &svc->ports[i]));
		else {
			json_object *o = json_object_new_object();
			char key[SVC_KEYLEN];

			add_str(o, "key", svc_port_key(svc, &svc->ports[i], key,
			    sizeof(key)));
			add_str(o, "name", svc->ports[i].name);
			add_str(o, "protocol", svc_proto_str(
			    svc->ports[i].proto));
			add_int(o, "port", svc->ports[i].port);
			add_bool(o, "served", false);
			json_object_object_add(o, "endpoints", endpoints_array(
			    ctx, &svc->ports[i], NULL, false));
			json_object_array_add(ports, o);
		}
	}
	if (t.port[0] != '\0' && json_object_array_length(ports) == 0) {
		json_object_put(ports);
		json_object_put(doc);
		ports_list(svc, list, sizeof(list));
		return error_document("service %s/%s has no port \"%s\" "
		    "(its ports: %s)", t.namespace, t.name, t.port, list);
	}
	json_object_object_add(doc, "ports", ports);
	if (!svc_is_proxied(svc))
		explain_words_skipped(svc, doc);
	document_notes(ctx, svc, doc);
	return doc;
}

/* See explain.h. */
json_object *
explain_daemon(struct proxier *px, const struct conf *conf,
    const char *target)
{
	struct explain_ctx	 ctx;
	json_object		*doc;
	char			 err[512];

	if (ctx_init(&ctx, conf, px, err, sizeof(err)) == -1)
		return error_document("%s", err);
	doc = explain_document(&ctx, proxier_table(px), target);
	ctx_clear(&ctx);
	return doc;
}

/* Offline: the services file. */

struct file_batch {
	struct svctab_builder	 build;
	char			 first_error[512];
	size_t			 n_errors;
};

static void
batch_service(struct svc *svc, void *arg)
{
	struct file_batch	*b = arg;

	if (svctab_builder_add_svc(&b->build, svc) == -1)
		b->n_errors++;
}

static void
batch_slice(struct slice *sl, void *arg)
{
	struct file_batch	*b = arg;

	if (svctab_builder_add_slice(&b->build, sl) == -1)
		b->n_errors++;
}

static void
batch_error(const char *msg, void *arg)
{
	struct file_batch	*b = arg;

	if (b->n_errors++ == 0)
		strlcpy(b->first_error, msg, sizeof(b->first_error));
}

/*
 * The table a kuproxy would build from path, or NULL with err: the same
 * reader, decoder and builder, and the same rule that one bad object
 * rejects the file.
 */
static struct svctab *
file_table(const char *path, char *err, size_t errlen)
{
	struct decode_sink	 sink = { batch_service, batch_slice,
				    batch_error, NULL };
	struct file_batch	 b;
	struct svctab		*tab = NULL;
	json_object		*docs = NULL;
	char			*buf, why[512];
	size_t			 len, i;

	memset(&b, 0, sizeof(b));
	b.build.owns_slices = true;
	sink.arg = &b;
	if ((buf = yamljson_read_file(path, EXPLAIN_FILE_MAX_BYTES, &len, why,
	    sizeof(why))) == NULL) {
		snprintf(err, errlen, "services file %s", why);
		return NULL;
	}
	if (yamljson_parse(buf, len, &docs, why, sizeof(why)) == -1) {
		snprintf(err, errlen, "services file %s:%s", path, why);
		goto out;
	}
	for (i = 0; i < json_object_array_length(docs); i++)
		if (decode_document(json_object_array_get_idx(docs, i), path,
		    &sink, why, sizeof(why)) == -1)
			batch_error(why, &b);
	if (b.n_errors > 0) {
		snprintf(err, errlen, "%s%s (kuproxy would reject the file: "
		    "%zu bad object%s)", b.first_error[0] != '\0' ?
		    b.first_error : "out of memory", "", b.n_errors,
		    b.n_errors == 1 ? "" : "s");
		goto out;
	}
	if ((tab = svctab_builder_build(&b.build, NULL)) == NULL)
		snprintf(err, errlen, "out of memory building the table");
out:
	svctab_builder_clear(&b.build);
	json_object_put(docs);
	free(buf);
	return tab;
}

/* See explain.h. */
json_object *
explain_file(const struct conf *conf, const char *target, char *err,
    size_t errlen)
{
	struct explain_ctx	 ctx;
	struct svctab		*tab;
	json_object		*doc;

	if ((tab = file_table(conf->services_file, err, errlen)) == NULL)
		return NULL;
	if (ctx_init(&ctx, conf, NULL, err, errlen) == -1) {
		svctab_unref(tab);
		return NULL;
	}
	doc = explain_document(&ctx, tab, target);
	ctx_clear(&ctx);
	svctab_unref(tab);
	return doc;
}

/* The command. */

/* See explain.h. */
int
explain_client(const struct conf *conf)
{
	struct explain_target	 t;
	json_object		*doc, *v;
	char			 err[1024], request[1024];
	int			 rc = 0;

	if (explain_parse_target(conf->explain_target, &t, err,
	    sizeof(err)) == -1) {
		fprintf(stderr, "kuproxy explain: %s\n", err);
		return 2;
	}
	if (conf->services_file != NULL)
		doc = explain_file(conf, conf->explain_target, err,
		    sizeof(err));
	else if (conf->status_socket == NULL) {
		fprintf(stderr, "kuproxy explain: --status-socket is empty "
		    "and there is no --services-file\n");
		return 2;
	} else {
		snprintf(request, sizeof(request), "explain %s",
		    conf->explain_target);
		doc = status_ask(conf->status_socket, request, err,
		    sizeof(err));
	}
	if (doc == NULL) {
		fprintf(stderr, "kuproxy explain: %s\n", err);
		return 1;
	}
	if (json_object_object_get_ex(doc, "error", &v)) {
		fprintf(stderr, "kuproxy explain: %s\n",
		    json_object_get_string(v));
		rc = 1;
	} else if (conf->output_json)
		printf("%s\n", json_object_to_json_string_ext(doc,
		    JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
		    JSON_C_TO_STRING_NOSLASHESCAPE));
	else
		explain_print_text(doc, stdout);
	json_object_put(doc);
	return rc;
}
