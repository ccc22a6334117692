/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The proxier: applies each published service table.  It owns the map from
 * service port key to runtime state (struct pport), opens and closes
 * listeners, feeds balancers, and decides when portal rules are rewritten.
 *
 * Order of a change (relayd's pfe transactions, upstream's openPortal):
 * new listeners open first, balancers update at once (endpoint changes
 * never wait for, or cause, an iptables run), the rules are rewritten in one
 * portal_sync(), and only after a successful sync do removed listeners
 * close, so a rule never points at a port that another service could take.
 * Rule syncs are rate-limited to one per iptables.minSyncPeriod and repeated
 * every iptables.syncPeriod to repair rules changed behind our back.
 * After the first, a sync runs on a thread of its own (portal_job.c) with a
 * copy of the ports, one at a time, so relays never wait for iptables:
 * changes made meanwhile get one more sync after it, and only the ports
 * removed before it started close when it succeeds.
 */
#include "config.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bsd/string.h>

#include <event2/event.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/tree.h"
#include "base/svc.h"
#include "conf/conf.h"
#include "proxy/claims.h"
#include "proxy/healthcheck.h"
#include "proxy/lb.h"
#include "proxy/listener.h"
#include "proxy/portal.h"
#include "proxy/portal_job.h"
#include "proxy/pport.h"
#include "proxy/proxier.h"
#include "proxy/tcp_relay.h"
#include "proxy/topology.h"
#include "proxy/udp_relay.h"
#include "proxy/lanes.h"
#include "proxy/worker.h"

#define PROXIER_RETRY_MIN_MS	1000
/*
 * A table change this large (ports added, removed or changed) follows a
 * big list or file read whose parse trees were just freed: give that heap
 * back to the system instead of keeping it as RSS.
 */
#define PROXIER_TRIM_CHANGES	256

/* A live service port in the proxier's map. */
struct pport_node {
	RB_ENTRY(pport_node)	 entry;
	struct pport		*pp;
	struct claim_set	 claims;	/* node port, local addresses */
	bool			 flush_conntrack; /* UDP: after the next sync */
	/*
	 * Traffic from outside, when a traffic policy gives it endpoints of
	 * its own (topology_needs_external_port()): its own proxy port and
	 * balancer; NULL: it shares pp.  ext_drop: the rules drop it.
	 */
	struct pport		*ext;
	bool			 ext_drop;
};

static int
pport_node_cmp(struct pport_node *a, struct pport_node *b)
{
	return strcmp(a->pp->key, b->pp->key);
}

RB_HEAD(pport_tree, pport_node);
KU_RB_GENERATE_STATIC(pport_tree, pport_node, entry, pport_node_cmp)

struct proxier {
	struct event_base	*base;
	const struct conf	*conf;
	struct svctab		*tab;
	struct pport_tree	 ports;
	/* Removed ports whose listeners wait for the next rule sync. */
	struct pport		**closing;
	size_t			 n_closing;
	struct portal		*portal;
	struct healthcheck	*healthcheck;
	char			 node_name[256];	/* this node's */
	struct event		*sync_timer;
	bool			 rules_dirty;
	bool			 stopped;
	long long		 last_sync_ms;	/* monotonic; 0 = never */
	long long		 retry_ms;	/* back-off after a failed sync */
	/*
	 * Syncs after the first run on sync_runner's thread (NULL: on the
	 * loop), one at a time.  The running one was built when
	 * closing[0..job_n_closing) were already removed, so its success
	 * lets them close.  failed_job holds the conntrack flushes a failed
	 * sync still owes.
	 */
	struct portal_job_runner *sync_runner;
	struct portal_job	*failed_job;
	size_t			 job_n_closing;
	long long		 job_queued_ms;	/* queued_ms at its start */
	uint64_t		 job_changes;	/* pending changes it covers */
	bool			 first_sync_done;
	bool			 sync_runner_failed;
	/* Health and metrics. */
	long long		 queued_ms;	/* monotonic; 0: nothing waits */
	double			 queued_wall;	/* the last change queued */
	double			 last_sync_wall;
	uint64_t		 service_changes, endpoint_changes;
	uint64_t		 service_changes_pending;
	uint64_t		 restore_failures;
	bool			 synced;
	size_t			 diff_counts[4];	/* this apply's, by kind */
	struct histogram	 sync_duration;
	struct histogram	 programming_duration;
};

/* A change waits for the next rule sync (kube-proxy's QueuedUpdate). */
static void
proxier_queue(struct proxier *px)
{
	px->rules_dirty = true;
	px->queued_wall = clock_wall_s();
	if (px->queued_ms == 0)
		px->queued_ms = clock_mono_ms();
}

/*
 * Point pp at a new spec and give its balancer the endpoints that serve
 * its traffic (external: from outside; topology_select()) and the
 * algorithm: the service's kuproxy.io/balancer, else --balancer.
 */
static void
pport_set_spec(const struct proxier *px, struct pport *pp, struct svc *svc,
    const struct svc_port *port, bool external)
{
	const struct conf	*conf = px->conf;
	struct svc		*old = pp->svc;
	enum svc_balancer	 kind = svc->balancer_kind !=
				    SVC_BALANCER_DEFAULT ? svc->balancer_kind :
				    conf->balancer;
	/* No source reads this node's zone yet: hints stay unused. */
	struct topology_node	 node = { px->node_name, NULL };
	struct endpoint		*eps;
	size_t			 n_eps;

	pp->svc = svc_ref(svc);
	pp->port = port;
	__atomic_store_n(&pp->proxy_protocol, (int)svc->proxy_protocol_version,
	    __ATOMIC_RELAXED);
	svc_unref(old);
	eps = calloc(port->n_endpoints + 1, sizeof(*eps));
	n_eps = eps != NULL ? topology_select(svc, port, external, &node,
	    eps) : 0;
	if (eps == NULL || lb_update(pp->lb, eps, n_eps,
	    svc->affinity, svc->affinity_timeout_s) == -1)
		log_warnx("%s: out of memory updating endpoints; the previous "
		    "set stays", pp->key);
	free(eps);
	if (lb_set_balancer(pp->lb, kind) == -1)
		log_warnx("%s: out of memory for the %s balancer; the previous "
		    "one stays", pp->key, svc_balancer_str(kind));
	lanes_update(pp);
}

/*
 * Hold n's node port (upstream's claimNodePort).  Called before every rule
 * sync, so a port that was taken is tried again each time, as upstream
 * did; a port already held is left alone, a changed one is swapped.
 */
/*
 * Claim what n's port exposes on this node: its node port and its port on
 * the local ones among its (allowed) external and load-balancer IPs.
 */
static void
proxier_claim(struct proxier *px, struct pport_node *n,
    const struct svc_ip *local, size_t n_local)
{
	const struct svc	*s = n->pp->svc;
	const struct svc_port	*port = n->pp->port;
	const struct portal_env	*env = portal_env(px->portal);
	struct svc_ip		*ips;
	size_t			 i, n_ips = 0;

	if (px->conf->iptables_backend == CONF_IPT_NONE)
		return;
	ips = calloc(s->n_external_ips + s->n_ingress_ips + 1, sizeof(*ips));
	if (ips == NULL)
		return;
	for (i = 0; i < s->n_external_ips; i++)
		if (portal_external_ip_allowed(env, &s->external_ips[i]))
			ips[n_ips++] = s->external_ips[i];
	for (i = 0; i < s->n_ingress_ips; i++)
		ips[n_ips++] = s->ingress_ips[i];
	claim_set_update(&n->claims, n->pp->key, port->proto, port->node_port,
	    port->port, ips, n_ips, local, n_local);
	free(ips);
}

/*
 * A removed pp stops taking clients at once and closes after the next
 * rule sync, when no rule points at its proxy port any more.
 */
static void
proxier_close_after_sync(struct proxier *px, struct pport *pp)
{
	struct pport	**v;

	pp->removed = true;
	/* New clients of a removed service get no endpoint. */
	lb_update(pp->lb, NULL, 0, SVC_AFFINITY_NONE, 0);
	lanes_update(pp);
	v = reallocarray(px->closing, px->n_closing + 1, sizeof(*v));
	if (v == NULL) {
		lanes_close(pp);
		log_info("%s: closed", pp->key);
		pport_unref(pp);
		return;
	}
	px->closing = v;
	px->closing[px->n_closing++] = pp;
	proxier_queue(px);
}

/*
 * The proxy port for traffic from outside of base's service port, with
 * the endpoints its traffic policy gives that traffic; NULL if it cannot
 * be opened.
 */
static struct pport *
proxier_open_external(struct proxier *px, const struct pport *base,
    struct svc *svc, const struct svc_port *port)
{
	struct pport	*pp;
	char		 err[256];
	int		 fd;

	if ((pp = calloc(1, sizeof(*pp))) == NULL)
		goto nomem;
	pp->refcnt = 1;
	if ((pp->lb = lb_new()) == NULL || lanes_init(pp) == -1)
		goto nomem;
	pp->proto = port->proto;
	strlcpy(pp->key, base->key, sizeof(pp->key));
	strlcat(pp->key, " (external)", sizeof(pp->key));
	strlcpy(pp->display, base->display, sizeof(pp->display));
	pport_set_spec(px, pp, svc, port, true);
	fd = listener_bind(port->proto, px->conf->bind_address,
	    px->conf->port_range_begin, px->conf->port_range_end, 0,
	    &pp->proxy_port, err, sizeof(err));
	if (fd == -1 || lanes_open(pp, px->conf->bind_address, fd, err,
	    sizeof(err)) == -1) {
		log_warnx("%s: cannot open a proxy port: %s; external traffic "
		    "shares the internal one", pp->key, err);
		goto fail;
	}
	log_info("%s: listening on proxy port %u", pp->key, pp->proxy_port);
	return pp;

nomem:
	log_warnx("%s: out of memory adding the external proxy port",
	    base->key);
fail:
	if (pp != NULL) {
		lanes_close(pp);
		pport_unref(pp);
	}
	return NULL;
}

/*
 * Give n's traffic from outside a proxy port of its own while a traffic
 * policy gives it other endpoints than internal traffic, or let it share
 * n's port again; ext_drop says that externalTrafficPolicy Local has no
 * endpoint on this node.  A change in either is a change of rules.
 *
 * Why a second port: REDIRECT leaves the relay only the proxy port to
 * tell internal from external traffic by, and "none" means two things:
 * internal clients are refused (the paused listener), external ones
 * dropped (a filter rule on the external port only).
 */
static void
proxier_set_external(struct proxier *px, struct pport_node *n,
    struct svc *svc, const struct svc_port *port)
{
	bool	drop;

	if (!topology_needs_external_port(svc, port)) {
		if (n->ext != NULL) {
			proxier_close_after_sync(px, n->ext);
			n->ext = NULL;
			n->ext_drop = false;
		}
		return;
	}
	if (n->ext != NULL)
		pport_set_spec(px, n->ext, svc, port, true);
	else if ((n->ext = proxier_open_external(px, n->pp, svc,
	    port)) != NULL)
		proxier_queue(px);
	drop = n->ext != NULL && topology_external_local(svc) &&
	    lb_n_endpoints(n->ext->lb) == 0;
	if (drop != n->ext_drop) {
		n->ext_drop = drop;
		proxier_queue(px);
	}
}

static void
proxier_add(struct proxier *px, struct svc *svc, const struct svc_port *port)
{
	struct pport_node	*n = NULL;
	struct pport		*pp = NULL;
	char			 err[256];
	int			 fd;

	if (port->proto == SVC_PROTO_SCTP) {
		char key[SVC_KEYLEN];

		/* Upstream: "SCTP is not supported for user space proxy". */
		log_warnx("%s: SCTP is not supported by this proxy; port "
		    "skipped", svc_port_key(svc, port, key, sizeof(key)));
		return;
	}
	if ((pp = calloc(1, sizeof(*pp))) == NULL ||
	    (n = calloc(1, sizeof(*n))) == NULL ||
	    (pp->lb = lb_new()) == NULL || lanes_init(pp) == -1) {
		log_warnx("%s/%s: out of memory adding a service port",
		    svc->namespace, svc->name);
		goto fail;
	}
	pp->refcnt = 1;
	pp->proto = port->proto;
	svc_port_key(svc, port, pp->key, sizeof(pp->key));
	svc_port_display(svc, port, pp->display, sizeof(pp->display));
	n->pp = pp;
	claim_set_init(&n->claims);

	/* The spec first: a UDP port reads it as soon as it opens. */
	pport_set_spec(px, pp, svc, port, false);
	fd = listener_bind(port->proto, px->conf->bind_address,
	    px->conf->port_range_begin, px->conf->port_range_end, 0,
	    &pp->proxy_port, err, sizeof(err));
	if (fd == -1 || lanes_open(pp, px->conf->bind_address, fd, err,
	    sizeof(err)) == -1) {
		/* Upstream never retried this; the next table change does. */
		log_warnx("%s: cannot open a proxy port: %s", pp->key, err);
		goto fail;
	}
	RB_INSERT(pport_tree, &px->ports, n);
	log_info("%s: listening on proxy port %u", pp->key, pp->proxy_port);
	proxier_set_external(px, n, svc, port);
	n->flush_conntrack = pp->proto == SVC_PROTO_UDP;
	proxier_queue(px);
	return;

fail:
	if (pp != NULL) {
		lanes_close(pp);
		pport_unref(pp);
	}
	free(n);
}

static struct pport_node *
proxier_find(struct proxier *px, const struct svc *svc,
    const struct svc_port *port)
{
	struct pport		key_pp;
	struct pport_node	key_node;

	svc_port_key(svc, port, key_pp.key, sizeof(key_pp.key));
	key_node.pp = &key_pp;
	return RB_FIND(pport_tree, &px->ports, &key_node);
}

static void
proxier_remove(struct proxier *px, struct pport_node *n)
{
	struct pport	*pp = n->pp, *ext = n->ext;

	RB_REMOVE(pport_tree, &px->ports, n);
	claim_set_release(&n->claims);
	free(n);
	if (ext != NULL)
		proxier_close_after_sync(px, ext);
	proxier_close_after_sync(px, pp);
}

/* Close the listeners of removed ports, now that no rule points at them. */
static void
proxier_close_removed(struct proxier *px)
{
	size_t i;

	for (i = 0; i < px->n_closing; i++) {
		struct pport *pp = px->closing[i];

		lanes_close(pp);
		log_info("%s: closed", pp->key);
		pport_unref(pp);
	}
	free(px->closing);
	px->closing = NULL;
	px->n_closing = 0;
}

static void
proxier_diff_cb(const struct svc_diff_entry *e, void *arg)
{
	struct proxier		*px = arg;
	struct pport_node	*n;

	px->diff_counts[e->kind]++;
	if (e->kind == SVC_DIFF_ENDPOINTS)
		px->endpoint_changes++;
	else {
		px->service_changes++;
		px->service_changes_pending++;
	}
	switch (e->kind) {
	case SVC_DIFF_ADDED:
		proxier_add(px, e->new_svc, e->new_port);
		break;
	case SVC_DIFF_REMOVED:
		if ((n = proxier_find(px, e->old_svc, e->old_port)) != NULL)
			proxier_remove(px, n);
		break;
	case SVC_DIFF_CHANGED:
	case SVC_DIFF_ENDPOINTS:
		if ((n = proxier_find(px, e->old_svc, e->old_port)) == NULL) {
			/* It failed to open before: try again. */
			proxier_add(px, e->new_svc, e->new_port);
			break;
		}
		/*
		 * UDP clients may hold conntrack entries that lead to the old
		 * portal.  An endpoint change needs no flush: the portal and
		 * the proxy port stay, so the entries stay right.
		 */
		if (n->pp->proto == SVC_PROTO_UDP &&
		    e->kind == SVC_DIFF_CHANGED)
			n->flush_conntrack = true;
		pport_set_spec(px, n->pp, e->new_svc, e->new_port, false);
		proxier_set_external(px, n, e->new_svc, e->new_port);
		if (e->kind == SVC_DIFF_CHANGED)
			proxier_queue(px);
		log_v(2, "%s: %s, %zu endpoints", n->pp->key,
		    e->kind == SVC_DIFF_CHANGED ? "changed" :
		    "endpoints changed", lb_n_endpoints(n->pp->lb));
		break;
	}
}

/* Keep the addresses whose claim another program holds out of ips. */
static struct svc_ip *
proxier_claimed_ips(const struct claim_set *cs, const struct svc_ip *ips,
    size_t n, size_t *n_out)
{
	struct svc_ip	*v;
	size_t		 i;

	*n_out = 0;
	if ((v = calloc(n + 1, sizeof(*v))) == NULL)
		return NULL;
	for (i = 0; i < n; i++)
		if (!claim_set_lost_ip(cs, &ips[i]))
			v[(*n_out)++] = ips[i];
	return v;
}

/*
 * What to render for n: its spec, or a copy without what another program
 * holds.  Copies are shallow except for the address lists, which the
 * caller frees.
 */
static void
proxier_render_spec(struct proxier *px, struct pport_node *n,
    struct svc *svc_copy,
    struct svc_port *port_copy, struct portal_port *out)
{
	const struct svc	*s = n->pp->svc;
	const struct svc_port	*port = n->pp->port;

	out->svc = s;
	out->port = port;
	out->proxy_port = n->pp->proxy_port;
	out->external_proxy_port = n->ext != NULL ? n->ext->proxy_port : 0;
	out->external_drop = n->ext != NULL && n->ext_drop;
	if (port->node_port != 0 && n->claims.node_port != port->node_port &&
	    px->conf->iptables_backend != CONF_IPT_NONE) {
		log_warnx("%s: node port %u is not ours; no NodePort rules for "
		    "it until it is free", n->pp->key, port->node_port);
		*port_copy = *port;
		port_copy->node_port = 0;
		out->port = port_copy;
	}
	*svc_copy = *s;
	svc_copy->external_ips = proxier_claimed_ips(&n->claims,
	    s->external_ips, s->n_external_ips, &svc_copy->n_external_ips);
	svc_copy->ingress_ips = proxier_claimed_ips(&n->claims,
	    s->ingress_ips, s->n_ingress_ips, &svc_copy->n_ingress_ips);
	if (svc_copy->external_ips != NULL && svc_copy->ingress_ips != NULL)
		out->svc = svc_copy;
}

/*
 * A job that writes the rules for every live port, or NULL (out of
 * memory).  The job holds copies: the table may change while it runs.
 *
 * What another program holds (a node port, a local external or ingress
 * IP's port) gets no rules, as upstream (B11): its traffic stays with that
 * program instead of being taken from it, and the rules follow once a
 * later sync can claim it.
 */
static struct portal_job *
proxier_sync_rules(struct proxier *px)
{
	struct portal_port	*v = NULL;
	struct svc_port		*ports = NULL;
	struct svc		*svcs = NULL;
	struct svc_ip		*local = NULL;
	struct pport_node	*n;
	struct portal_job	*job = NULL;
	size_t			 count = 0, i, n_local = 0;

	RB_FOREACH(n, pport_tree, &px->ports)
		count++;
	if (count > 0 && ((v = calloc(count, sizeof(*v))) == NULL ||
	    (ports = calloc(count, sizeof(*ports))) == NULL ||
	    (svcs = calloc(count, sizeof(*svcs))) == NULL))
		goto out;
	if (px->conf->iptables_backend != CONF_IPT_NONE)
		claims_local_addresses(&local, &n_local);
	i = 0;
	RB_FOREACH(n, pport_tree, &px->ports) {
		proxier_claim(px, n, local, n_local);
		proxier_render_spec(px, n, &svcs[i], &ports[i], &v[i]);
		i++;
	}
	job = portal_job_new(v, count);
out:
	for (i = 0; svcs != NULL && i < count; i++) {
		free(svcs[i].external_ips);
		free(svcs[i].ingress_ips);
	}
	free(svcs);
	free(ports);
	free(v);
	free(local);
	return job;
}

/*
 * Give job the UDP conntrack flushes of ports whose portals or endpoints
 * changed, and those a failed sync still owes: a client that keeps its
 * source port would otherwise keep hitting what the old entry says
 * (upstream flushed on deletion only).  The job flushes once its rules
 * are in.
 */
static void
proxier_flush_conntrack(struct proxier *px, struct portal_job *job)
{
	struct pport_node	*n;
	size_t			 i;
	int			 rc = 0;

	if (px->failed_job != NULL) {
		rc = portal_job_take_flushes(job, px->failed_job);
		portal_job_free(px->failed_job);
		px->failed_job = NULL;
	}
	RB_FOREACH(n, pport_tree, &px->ports) {
		const struct svc	*s = n->pp->svc;
		uint16_t		 port = n->pp->port->port;

		if (!n->flush_conntrack)
			continue;
		n->flush_conntrack = false;
		if (px->conf->iptables_backend == CONF_IPT_NONE)
			continue;
		for (i = 0; i < s->n_cluster_ips; i++)
			rc |= portal_job_add_flush(job, &s->cluster_ips[i],
			    port);
		for (i = 0; i < s->n_external_ips; i++)
			rc |= portal_job_add_flush(job, &s->external_ips[i],
			    port);
		for (i = 0; i < s->n_ingress_ips; i++)
			rc |= portal_job_add_flush(job, &s->ingress_ips[i],
			    port);
	}
	if (rc != 0)
		log_warnx("out of memory: some UDP conntrack entries will not "
		    "be flushed");
}

static void
proxier_schedule(struct proxier *px, long long delay_ms)
{
	struct timeval tv;

	tv.tv_sec = delay_ms / 1000;
	tv.tv_usec = (delay_ms % 1000) * 1000;
	evtimer_add(px->sync_timer, &tv);
}

/*
 * Close the removed ports that the finished sync's rules no longer reach
 * (those removed before it started); the others wait for the next one.
 */
static void
proxier_close_synced(struct proxier *px)
{
	size_t	 i, n = px->job_n_closing;

	for (i = 0; i < n; i++) {
		struct pport *pp = px->closing[i];

		lanes_close(pp);
		log_info("%s: closed", pp->key);
		pport_unref(pp);
	}
	px->job_n_closing = 0;
	if (n == 0)
		return;
	px->n_closing -= n;
	memmove(px->closing, px->closing + n,
	    px->n_closing * sizeof(*px->closing));
	if (px->n_closing == 0) {
		free(px->closing);
		px->closing = NULL;
	}
}

static void	proxier_maybe_sync(struct proxier *);

/*
 * A sync ended (job NULL: it could not be built): count it, back off after
 * a failure, else close what its rules no longer reach, and start the sync
 * that changes made meanwhile wait for.  Takes job.
 */
static void
proxier_sync_done(struct proxier *px, struct portal_job *job)
{
	struct pport_node	*n;
	long long		 now = clock_mono_ms();
	int			 rc = job != NULL ? portal_job_result(job) : -1;

	px->first_sync_done = true;
	histogram_observe(&px->sync_duration,
	    (job != NULL ? portal_job_sync_ms(job) : 0) / 1000.0);
	if (rc == -1) {
		px->restore_failures++;
		px->retry_ms = px->retry_ms == 0 ? PROXIER_RETRY_MIN_MS :
		    px->retry_ms * 2;
		if (px->retry_ms > px->conf->sync_period_ms)
			px->retry_ms = px->conf->sync_period_ms;
		log_warnx("portal sync failed; retrying in %lld ms",
		    px->retry_ms);
		/* What it carried waits again, its flushes with it. */
		px->rules_dirty = true;
		px->job_n_closing = 0;
		portal_job_free(px->failed_job);
		px->failed_job = job;
		proxier_schedule(px, px->retry_ms);
		return;
	}
	portal_job_free(job);
	px->retry_ms = 0;
	px->synced = true;
	px->last_sync_wall = clock_wall_s();
	if (px->job_queued_ms != 0)
		histogram_observe(&px->programming_duration,
		    (now - px->job_queued_ms) / 1000.0);
	/*
	 * A change queued while the job ran is not in its rules.  When an
	 * older one was, queued_ms still says that one's time: the new one
	 * came after the job started, which is the closest we know.
	 */
	if (!px->rules_dirty)
		px->queued_ms = 0;
	else if (px->job_queued_ms != 0)
		px->queued_ms = px->last_sync_ms;
	px->service_changes_pending -= px->job_changes <
	    px->service_changes_pending ? px->job_changes :
	    px->service_changes_pending;
	proxier_close_synced(px);
	RB_FOREACH(n, pport_tree, &px->ports) {
		lb_sweep(n->pp->lb, now);
		ep_stats_prune(&n->pp->endpoints, n->pp->port);
	}
	if (px->rules_dirty || px->n_closing > 0)
		proxier_maybe_sync(px);
	else
		proxier_schedule(px, px->conf->sync_period_ms);
}

/* The runner's completion, on the loop. */
static void
proxier_sync_job_done(struct portal_job *job, void *arg)
{
	proxier_sync_done(arg, job);
}

/*
 * Whether this sync may run off the loop: not the first (the daemon says
 * READY once the first table's rules are in, and --cleanup and shutdown
 * remove rules synchronously elsewhere), not with the none backend
 * (nothing to wait for), and only with a runner, made here the first time.
 */
static bool
proxier_sync_async(struct proxier *px)
{
	char	 err[256];

	if (!px->first_sync_done ||
	    px->conf->iptables_backend == CONF_IPT_NONE)
		return false;
	if (px->sync_runner == NULL && !px->sync_runner_failed &&
	    (px->sync_runner = portal_job_runner_new(px->base,
	    proxier_sync_job_done, px, err, sizeof(err))) == NULL) {
		px->sync_runner_failed = true;
		log_warnx("%s; rule syncs run on the event loop", err);
	}
	return px->sync_runner != NULL;
}

/* Start a sync of every live port now, off the loop when it may. */
static void
proxier_start_sync(struct proxier *px, long long now)
{
	struct portal_job	*job;

	evtimer_del(px->sync_timer);
	px->last_sync_ms = now;
	if ((job = proxier_sync_rules(px)) == NULL) {
		log_warnx("portal sync: out of memory copying the service "
		    "ports");
		proxier_sync_done(px, NULL);
		return;
	}
	proxier_flush_conntrack(px, job);
	px->job_n_closing = px->n_closing;
	px->job_queued_ms = px->queued_ms;
	px->job_changes = px->service_changes_pending;
	px->rules_dirty = false;
	if (proxier_sync_async(px)) {
		if (portal_job_runner_start(px->sync_runner, px->portal,
		    job) == 0)
			return;
		log_warn("portal sync: cannot start its thread; syncing on "
		    "the event loop");
	}
	portal_job_run(job, px->portal);
	proxier_sync_done(px, job);
}

/*
 * Sync now if the last sync is older than minSyncPeriod, else arm the
 * timer for when it will be.  While a sync runs, nothing: its end starts
 * one more when changes came meanwhile (however many, one sync).
 * Removed listeners close after a good sync.
 */
static void
proxier_maybe_sync(struct proxier *px)
{
	long long		 now = clock_mono_ms(), due;

	if (px->stopped)
		return;
	if (px->sync_runner != NULL && portal_job_runner_busy(px->sync_runner))
		return;
	due = px->last_sync_ms + px->conf->min_sync_period_ms;
	if (px->retry_ms > 0)
		due = px->last_sync_ms + px->retry_ms;
	if (px->last_sync_ms != 0 && now < due &&
	    px->conf->iptables_backend != CONF_IPT_NONE) {
		proxier_schedule(px, due - now);
		return;
	}
	proxier_start_sync(px, now);
}

static void
proxier_sync_timer(evutil_socket_t fd, short events, void *arg)
{
	struct proxier *px = arg;

	/* A running sync repairs the rules as well as a periodic one. */
	if (px->sync_runner != NULL && portal_job_runner_busy(px->sync_runner))
		return;
	/* A periodic sync repairs rules even when nothing changed. */
	px->last_sync_ms = 0;
	proxier_maybe_sync(px);
}

/*
 * This node's name, which Local traffic policies compare endpoints'
 * nodeName with: --hostname-override, else the host name, lower-cased and
 * trimmed as upstream's GetHostname.
 */
static void
proxier_set_node_name(struct proxier *px)
{
	const char	*o = px->conf->hostname_override;
	char		*p, *start = px->node_name;
	size_t		 len;

	if (o != NULL && *o != '\0')
		strlcpy(px->node_name, o, sizeof(px->node_name));
	else if (gethostname(px->node_name, sizeof(px->node_name) - 1) == -1)
		px->node_name[0] = '\0';
	px->node_name[sizeof(px->node_name) - 1] = '\0';
	while (*start == ' ' || *start == '\t' || *start == '\n')
		start++;
	memmove(px->node_name, start, strlen(start) + 1);
	len = strlen(px->node_name);
	while (len > 0 && strchr(" \t\n", px->node_name[len - 1]) != NULL)
		px->node_name[--len] = '\0';
	for (p = px->node_name; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
}

/* Upstream's serviceProxyHealthy: the rules have been written. */
static bool
proxier_healthy(void *arg)
{
	const struct proxier *px = arg;

	return px->synced;
}

struct proxier *
proxier_new(struct event_base *base, const struct conf *conf, char *err,
    size_t errlen)
{
	struct proxier *px;

	if ((px = calloc(1, sizeof(*px))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	RB_INIT(&px->ports);
	/* kube-proxy's buckets: 1 ms doubling (15), 0.25 s doubling-ish (5 min). */
	histogram_init_exponential(&px->sync_duration, 0.001, 2, 15);
	histogram_init_exponential(&px->programming_duration, 0.25, 2, 11);
	px->base = base;
	px->conf = conf;
	if (worker_at(0) == NULL) {
		snprintf(err, errlen, "no worker to serve connections");
		goto fail;
	}
	listener_set_reuseport(workers_count() > 1);
	if ((px->sync_timer = evtimer_new(base, proxier_sync_timer,
	    px)) == NULL) {
		snprintf(err, errlen, "cannot create the sync timer");
		goto fail;
	}
	if ((px->portal = portal_new(conf, err, errlen)) == NULL)
		goto fail;
	proxier_set_node_name(px);
	if ((px->healthcheck = healthcheck_new(base, conf, proxier_healthy,
	    px)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	return px;

fail:
	proxier_free(px);
	return NULL;
}

void
proxier_apply(struct proxier *px, struct svctab *tab)
{
	struct svctab_stats	st;
	long long		t0 = clock_mono_ms();
	size_t			n_changes;

	if (px->stopped) {
		svctab_unref(tab);
		return;
	}
	memset(px->diff_counts, 0, sizeof(px->diff_counts));
	n_changes = svctab_diff(px->tab, tab, proxier_diff_cb, px);
	lanes_flush();
	svctab_unref(px->tab);
	px->tab = tab;
	healthcheck_sync(px->healthcheck, tab, px->node_name);
	svctab_stats(tab, &st);
	log_info("service table applied: %zu services (%zu proxied), "
	    "%zu ports, %zu endpoints; ports added=%zu removed=%zu "
	    "changed=%zu endpoints-changed=%zu", st.n_services, st.n_proxied,
	    st.n_ports, st.n_endpoints, px->diff_counts[SVC_DIFF_ADDED],
	    px->diff_counts[SVC_DIFF_REMOVED], px->diff_counts[SVC_DIFF_CHANGED],
	    px->diff_counts[SVC_DIFF_ENDPOINTS]);
	if (px->rules_dirty || px->n_closing > 0 || px->last_sync_ms == 0)
		proxier_maybe_sync(px);
	if (n_changes - px->diff_counts[SVC_DIFF_ENDPOINTS] >=
	    PROXIER_TRIM_CHANGES)
		malloc_trim(0);
	log_v(2, "service table: %zu port changes applied in %lld ms",
	    n_changes, clock_mono_ms() - t0);
}

void
proxier_get_state(const struct proxier *px, struct proxier_state *st)
{
	memset(st, 0, sizeof(*st));
	st->last_sync_time = px->last_sync_wall;
	st->last_queued_time = px->queued_wall;
	st->queued_age_ms = px->queued_ms != 0 ? clock_mono_ms() - px->queued_ms : 0;
	st->service_changes_total = px->service_changes;
	st->endpoint_changes_total = px->endpoint_changes;
	st->service_changes_pending = px->service_changes_pending;
	st->restore_failures_total = px->restore_failures;
	st->synced = px->synced;
	st->backend = portal_backend_name(px->portal);
	st->sync_duration = &px->sync_duration;
	st->programming_duration = &px->programming_duration;
}

const struct svctab *
proxier_table(const struct proxier *px)
{
	return px->tab;
}

const struct portal_env *
proxier_portal_env(const struct proxier *px)
{
	return portal_env(px->portal);
}

int
proxier_port_spec(struct proxier *px, const char *key, struct svc *svc_copy,
    struct svc_port *port_copy, struct portal_port *out)
{
	struct pport		key_pp;
	struct pport_node	key_node, *n;

	snprintf(key_pp.key, sizeof(key_pp.key), "%s", key);
	key_node.pp = &key_pp;
	if ((n = RB_FIND(pport_tree, &px->ports, &key_node)) == NULL)
		return -1;
	memset(svc_copy, 0, sizeof(*svc_copy));
	proxier_render_spec(px, n, svc_copy, port_copy, out);
	return 0;
}

void
proxier_foreach(struct proxier *px, void (*fn)(struct pport *, void *),
    void *arg)
{
	struct pport_node *n;

	RB_FOREACH(n, pport_tree, &px->ports)
		fn(n->pp, arg);
}

void
proxier_resync(struct proxier *px)
{
	proxier_queue(px);
	proxier_maybe_sync(px);
}

void
proxier_stop(struct proxier *px)
{
	struct pport_node *n;

	if (px->stopped)
		return;
	px->stopped = true;
	evtimer_del(px->sync_timer);
	/* A running sync would write its rules after the removal below. */
	if (px->sync_runner != NULL)
		portal_job_free(portal_job_runner_wait(px->sync_runner));
	px->job_n_closing = 0;
	/* Rules first, so no new client is sent to a closed port. */
	if (portal_remove(px->portal) == -1)
		log_warnx("could not remove every rule; run kuproxy --cleanup");
	RB_FOREACH(n, pport_tree, &px->ports) {
		lanes_close(n->pp);
		if (n->ext != NULL)
			lanes_close(n->ext);
	}
	proxier_close_removed(px);
	healthcheck_sync(px->healthcheck, NULL, px->node_name);
}

void
proxier_free(struct proxier *px)
{
	struct pport_node *n, *next;

	if (px == NULL)
		return;
	/* First: a running sync uses the portal. */
	portal_job_runner_free(px->sync_runner);
	portal_job_free(px->failed_job);
	proxier_close_removed(px);
	RB_FOREACH_SAFE(n, pport_tree, &px->ports, next) {
		RB_REMOVE(pport_tree, &px->ports, n);
		lanes_close(n->pp);
		claim_set_release(&n->claims);
		pport_unref(n->pp);
		if (n->ext != NULL) {
			lanes_close(n->ext);
			pport_unref(n->ext);
		}
		free(n);
	}
	if (px->sync_timer != NULL)
		event_free(px->sync_timer);
	portal_free(px->portal);
	healthcheck_free(px->healthcheck);
	svctab_unref(px->tab);
	free(px);
}
