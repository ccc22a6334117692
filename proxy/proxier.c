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
 */
#include "config.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/tree.h"
#include "base/svc.h"
#include "conf/conf.h"
#include "proxy/claims.h"
#include "proxy/lb.h"
#include "proxy/listener.h"
#include "proxy/portal.h"
#include "proxy/pport.h"
#include "proxy/proxier.h"
#include "proxy/tcp_relay.h"
#include "proxy/udp_relay.h"

#define PROXIER_RETRY_MIN_MS	1000
/* Large pipes cut splice's CPU per byte several times over 64 KiB ones. */
#define PROXIER_PIPE_SIZE	(1 << 20)
#define PROXIER_IDLE_PIPES	64
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
	struct relay_env	 env;
	struct svctab		*tab;
	struct pport_tree	 ports;
	/* Removed ports whose listeners wait for the next rule sync. */
	struct pport		**closing;
	size_t			 n_closing;
	struct portal		*portal;
	struct event		*sync_timer;
	bool			 rules_dirty;
	bool			 stopped;
	long long		 last_sync_ms;	/* monotonic; 0 = never */
	long long		 retry_ms;	/* back-off after a failed sync */
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

/* Pause or resume the listener so that no endpoint means a refusal. */
static void
pport_update_listener(struct pport *pp)
{
	if (pp->listener == NULL)
		return;
	if (lb_n_endpoints(pp->lb) == 0) {
		if (!listener_is_paused(pp->listener))
			log_v(2, "%s: no endpoints, refusing connections",
			    pp->key);
		listener_pause(pp->listener);
	} else
		listener_resume(pp->listener);
}

/* Point pp at a new spec and give its balancer the endpoints. */
static void
pport_set_spec(struct pport *pp, struct svc *svc, const struct svc_port *port)
{
	struct svc *old = pp->svc;

	pp->svc = svc_ref(svc);
	pp->port = port;
	svc_unref(old);
	if (lb_update(pp->lb, port->endpoints, port->n_endpoints,
	    svc->affinity, svc->affinity_timeout_s) == -1)
		log_warnx("%s: out of memory updating endpoints; the previous "
		    "set stays", pp->key);
	pport_update_listener(pp);
	if (pp->udp != NULL)
		udp_port_endpoints_changed(pp->udp);
}

/* Close pp's socket; its sessions and associations finish on their own. */
static void
pport_close_socket(struct pport *pp)
{
	listener_free(pp->listener);
	pp->listener = NULL;
	udp_port_free(pp->udp);
	pp->udp = NULL;
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
	    (pp->lb = lb_new()) == NULL) {
		log_warnx("%s/%s: out of memory adding a service port",
		    svc->namespace, svc->name);
		goto fail;
	}
	pp->refcnt = 1;
	pp->proto = port->proto;
	pp->env = &px->env;
	svc_port_key(svc, port, pp->key, sizeof(pp->key));
	svc_port_display(svc, port, pp->display, sizeof(pp->display));
	n->pp = pp;
	claim_set_init(&n->claims);

	/* The spec first: a UDP port reads it as soon as it opens. */
	pport_set_spec(pp, svc, port);
	fd = listener_bind(port->proto, px->conf->bind_address,
	    px->conf->port_range_begin, px->conf->port_range_end, 0,
	    &pp->proxy_port, err, sizeof(err));
	if (fd != -1 && port->proto == SVC_PROTO_TCP)
		pp->listener = listener_new(px->base, fd, pp->key,
		    tcp_relay_accept, pp, err, sizeof(err));
	else if (fd != -1)
		pp->udp = udp_port_new(pp, fd, err, sizeof(err));
	if (pp->listener == NULL && pp->udp == NULL) {
		/* Upstream never retried this; the next table change does. */
		log_warnx("%s: cannot open a proxy port: %s", pp->key, err);
		goto fail;
	}
	pport_update_listener(pp);
	RB_INSERT(pport_tree, &px->ports, n);
	log_info("%s: listening on proxy port %u", pp->key, pp->proxy_port);
	n->flush_conntrack = pp->proto == SVC_PROTO_UDP;
	proxier_queue(px);
	return;

fail:
	if (pp != NULL) {
		pport_close_socket(pp);
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
	struct pport	*pp = n->pp;
	struct pport	**v;

	RB_REMOVE(pport_tree, &px->ports, n);
	claim_set_release(&n->claims);
	free(n);
	pp->removed = true;
	/* New clients of a removed service get no endpoint. */
	lb_update(pp->lb, NULL, 0, SVC_AFFINITY_NONE, 0);
	pport_update_listener(pp);
	if (pp->udp != NULL)
		udp_port_endpoints_changed(pp->udp);
	v = reallocarray(px->closing, px->n_closing + 1, sizeof(*v));
	if (v == NULL) {
		pport_close_socket(pp);
		log_info("%s: closed", pp->key);
		pport_unref(pp);
		return;
	}
	px->closing = v;
	px->closing[px->n_closing++] = pp;
	proxier_queue(px);
}

/* Close the listeners of removed ports, now that no rule points at them. */
static void
proxier_close_removed(struct proxier *px)
{
	size_t i;

	for (i = 0; i < px->n_closing; i++) {
		struct pport *pp = px->closing[i];

		pport_close_socket(pp);
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
		pport_set_spec(n->pp, e->new_svc, e->new_port);
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
 * Write the rules for every live port.  0 or -1.
 *
 * What another program holds (a node port, a local external or ingress
 * IP's port) gets no rules, as upstream (B11): its traffic stays with that
 * program instead of being taken from it, and the rules follow once a
 * later sync can claim it.
 */
static int
proxier_sync_rules(struct proxier *px)
{
	struct portal_port	*v = NULL;
	struct svc_port		*ports = NULL;
	struct svc		*svcs = NULL;
	struct svc_ip		*local = NULL;
	struct pport_node	*n;
	size_t			 count = 0, i, n_local = 0;
	int			 rc = -1;

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
	rc = portal_sync(px->portal, v, count);
out:
	for (i = 0; svcs != NULL && i < count; i++) {
		free(svcs[i].external_ips);
		free(svcs[i].ingress_ips);
	}
	free(svcs);
	free(ports);
	free(v);
	free(local);
	return rc;
}

/*
 * Delete the UDP conntrack entries of ports whose portals or endpoints
 * changed: a client that keeps its source port would otherwise keep
 * hitting what the old entry says (upstream flushed on deletion only).
 */
static void
proxier_flush_conntrack(struct proxier *px)
{
	struct pport_node	*n;
	size_t			 i;

	RB_FOREACH(n, pport_tree, &px->ports) {
		const struct svc	*s = n->pp->svc;
		uint16_t		 port = n->pp->port->port;

		if (!n->flush_conntrack)
			continue;
		n->flush_conntrack = false;
		if (px->conf->iptables_backend == CONF_IPT_NONE)
			continue;
		for (i = 0; i < s->n_cluster_ips; i++)
			portal_flush_conntrack_udp(px->portal,
			    &s->cluster_ips[i], port);
		for (i = 0; i < s->n_external_ips; i++)
			portal_flush_conntrack_udp(px->portal,
			    &s->external_ips[i], port);
		for (i = 0; i < s->n_ingress_ips; i++)
			portal_flush_conntrack_udp(px->portal,
			    &s->ingress_ips[i], port);
	}
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
 * Sync now if the last sync is older than minSyncPeriod, else arm the
 * timer for when it will be.  Removed listeners close after a good sync.
 */
static void
proxier_maybe_sync(struct proxier *px)
{
	struct pport_node	*n;
	long long		 now = clock_mono_ms(), due;
	int			 rc;

	if (px->stopped)
		return;
	due = px->last_sync_ms + px->conf->min_sync_period_ms;
	if (px->retry_ms > 0)
		due = px->last_sync_ms + px->retry_ms;
	if (px->last_sync_ms != 0 && now < due &&
	    px->conf->iptables_backend != CONF_IPT_NONE) {
		proxier_schedule(px, due - now);
		return;
	}
	px->last_sync_ms = now;
	rc = proxier_sync_rules(px);
	histogram_observe(&px->sync_duration, (clock_mono_ms() - now) / 1000.0);
	if (rc == -1) {
		px->restore_failures++;
		px->retry_ms = px->retry_ms == 0 ? PROXIER_RETRY_MIN_MS :
		    px->retry_ms * 2;
		if (px->retry_ms > px->conf->sync_period_ms)
			px->retry_ms = px->conf->sync_period_ms;
		log_warnx("portal sync failed; retrying in %lld ms",
		    px->retry_ms);
		proxier_schedule(px, px->retry_ms);
		return;
	}
	px->retry_ms = 0;
	px->rules_dirty = false;
	px->synced = true;
	px->last_sync_wall = clock_wall_s();
	if (px->queued_ms != 0)
		histogram_observe(&px->programming_duration,
		    (clock_mono_ms() - px->queued_ms) / 1000.0);
	px->queued_ms = 0;
	px->service_changes_pending = 0;
	proxier_close_removed(px);
	proxier_flush_conntrack(px);
	RB_FOREACH(n, pport_tree, &px->ports) {
		lb_sweep(n->pp->lb, now);
		ep_stats_prune(&n->pp->endpoints, n->pp->port);
	}
	proxier_schedule(px, px->conf->sync_period_ms);
}

static void
proxier_sync_timer(evutil_socket_t fd, short events, void *arg)
{
	struct proxier *px = arg;

	/* A periodic sync repairs rules even when nothing changed. */
	px->last_sync_ms = 0;
	proxier_maybe_sync(px);
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
	px->env.base = base;
	px->env.conf = conf;
	if (conf->relay_mode == CONF_RELAY_SPLICE &&
	    (px->env.pipes = pipe_pool_new(PROXIER_PIPE_SIZE, PROXIER_IDLE_PIPES)) == NULL) {
		snprintf(err, errlen, "cannot create the splice pipe pool");
		goto fail;
	}
	if ((px->sync_timer = evtimer_new(base, proxier_sync_timer,
	    px)) == NULL) {
		snprintf(err, errlen, "cannot create the sync timer");
		goto fail;
	}
	if ((px->portal = portal_new(conf, err, errlen)) == NULL)
		goto fail;
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
	svctab_unref(px->tab);
	px->tab = tab;
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
	/* Rules first, so no new client is sent to a closed port. */
	if (portal_remove(px->portal) == -1)
		log_warnx("could not remove every rule; run kuproxy --cleanup");
	RB_FOREACH(n, pport_tree, &px->ports)
		pport_close_socket(n->pp);
	proxier_close_removed(px);
}

void
proxier_free(struct proxier *px)
{
	struct pport_node *n, *next;

	if (px == NULL)
		return;
	proxier_close_removed(px);
	RB_FOREACH_SAFE(n, pport_tree, &px->ports, next) {
		RB_REMOVE(pport_tree, &px->ports, n);
		pport_close_socket(n->pp);
		claim_set_release(&n->claims);
		pport_unref(n->pp);
		free(n);
	}
	if (px->sync_timer != NULL)
		event_free(px->sync_timer);
	portal_free(px->portal);
	if (px->env.pipes != NULL)
		pipe_pool_free(px->env.pipes);
	svctab_unref(px->tab);
	free(px);
}
