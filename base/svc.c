/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The service table model: addresses, services, slices and snapshots, the
 * builder that joins EndpointSlices to service ports the way kube-proxy's
 * endpoint slice cache does, and the diff the proxier applies.  Pure data:
 * no I/O and no knowledge of JSON (that is watch/decode.c).
 */
#include "config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/log.h"
#include "base/svc.h"

/* Addresses. */

int
svc_ip_parse(const char *s, struct svc_ip *ip)
{
	memset(ip, 0, sizeof(*ip));
	if (s == NULL)
		return -1;
	if (inet_pton(AF_INET, s, ip->addr) == 1) {
		ip->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, ip->addr) == 1) {
		ip->family = AF_INET6;
		return 0;
	}
	memset(ip, 0, sizeof(*ip));
	return -1;
}

const char *
svc_ip_str(const struct svc_ip *ip, char *buf, size_t len)
{
	if (ip->family == 0 || inet_ntop(ip->family, ip->addr, buf,
	    (socklen_t)len) == NULL)
		snprintf(buf, len, "none");
	return buf;
}

static size_t
svc_ip_len(const struct svc_ip *ip)
{
	return ip->family == AF_INET ? 4 : ip->family == AF_INET6 ? 16 : 0;
}

int
svc_ip_cmp(const struct svc_ip *a, const struct svc_ip *b)
{
	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	return memcmp(a->addr, b->addr, svc_ip_len(a));
}

const char *
svc_proto_str(enum svc_proto p)
{
	switch (p) {
	case SVC_PROTO_TCP:
		return "TCP";
	case SVC_PROTO_UDP:
		return "UDP";
	case SVC_PROTO_SCTP:
		return "SCTP";
	}
	return "?";
}

int
svc_proto_parse(const char *s, enum svc_proto *p)
{
	if (strcmp(s, "TCP") == 0)
		*p = SVC_PROTO_TCP;
	else if (strcmp(s, "UDP") == 0)
		*p = SVC_PROTO_UDP;
	else if (strcmp(s, "SCTP") == 0)
		*p = SVC_PROTO_SCTP;
	else
		return -1;
	return 0;
}

const char *
svc_type_str(enum svc_type t)
{
	switch (t) {
	case SVC_TYPE_CLUSTER_IP:
		return "ClusterIP";
	case SVC_TYPE_NODE_PORT:
		return "NodePort";
	case SVC_TYPE_LOAD_BALANCER:
		return "LoadBalancer";
	case SVC_TYPE_EXTERNAL_NAME:
		return "ExternalName";
	}
	return "?";
}

static const char *const svc_balancer_names[] = {
	[SVC_BALANCER_DEFAULT] = "default",
	[SVC_BALANCER_ROUND_ROBIN] = "round-robin",
	[SVC_BALANCER_LEAST_CONN] = "least-connections",
	[SVC_BALANCER_MAGLEV] = "maglev",
};

/* The annotation's spelling of b. */
const char *
svc_balancer_str(enum svc_balancer b)
{
	if ((size_t)b >= sizeof(svc_balancer_names) /
	    sizeof(svc_balancer_names[0]))
		return "?";
	return svc_balancer_names[b];
}

/* A balancer name, as the annotation and --balancer spell it. */
int
svc_balancer_parse(const char *s, enum svc_balancer *out)
{
	size_t i;

	for (i = SVC_BALANCER_ROUND_ROBIN; i < sizeof(svc_balancer_names) /
	    sizeof(svc_balancer_names[0]); i++) {
		if (strcmp(s, svc_balancer_names[i]) == 0) {
			*out = (enum svc_balancer)i;
			return 0;
		}
	}
	return -1;
}

/* Services. */

struct svc *
svc_new(void)
{
	struct svc *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->refcnt = 1;
	s->affinity_timeout_s = SVC_AFFINITY_DEFAULT_S;
	return s;
}

struct svc *
svc_ref(struct svc *s)
{
	assert(__atomic_load_n(&s->refcnt, __ATOMIC_RELAXED) > 0);
	/* Atomic: a worker's last session may drop a spec's last reference. */
	__atomic_fetch_add(&s->refcnt, 1, __ATOMIC_RELAXED);
	return s;
}

void
svc_endpoint_clear(struct endpoint *ep)
{
	free(ep->node_name);
	free(ep->zone);
	free(ep->hint_zones);
	ep->node_name = ep->zone = ep->hint_zones = NULL;
}

static void
svc_port_clear(struct svc_port *p)
{
	size_t i;

	for (i = 0; i < p->n_endpoints; i++)
		svc_endpoint_clear(&p->endpoints[i]);
	free(p->endpoints);
	free(p->name);
	p->endpoints = NULL;
	p->name = NULL;
	p->n_endpoints = 0;
}

void
svc_unref(struct svc *s)
{
	size_t i;

	if (s == NULL)
		return;
	assert(__atomic_load_n(&s->refcnt, __ATOMIC_RELAXED) > 0);
	if (__atomic_sub_fetch(&s->refcnt, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	for (i = 0; i < s->n_ports; i++)
		svc_port_clear(&s->ports[i]);
	free(s->ports);
	free(s->external_ips);
	free(s->ingress_ips);
	free(s->namespace);
	free(s->name);
	free(s->external_name);
	free(s->proxy_name);
	free(s->balancer);
	free(s->proxy_protocol);
	free(s);
}

bool
svc_is_proxied(const struct svc *s)
{
	return s->skip == SVC_SKIP_NONE && s->n_cluster_ips > 0;
}

const char *
svc_port_key(const struct svc *s, const struct svc_port *p, char *buf,
    size_t len)
{
	snprintf(buf, len, "%s/%s%s%s/%s", s->namespace, s->name,
	    p->name[0] != '\0' ? ":" : "", p->name, svc_proto_str(p->proto));
	return buf;
}

const char *
svc_port_display(const struct svc *s, const struct svc_port *p, char *buf,
    size_t len)
{
	snprintf(buf, len, "%s/%s%s%s", s->namespace, s->name,
	    p->name[0] != '\0' ? ":" : "", p->name);
	return buf;
}

int
svc_endpoint_cmp(const struct endpoint *a, const struct endpoint *b)
{
	int c;

	if ((c = svc_ip_cmp(&a->ip, &b->ip)) != 0)
		return c;
	return a->port < b->port ? -1 : a->port > b->port;
}

bool
svc_endpoint_usable(const struct endpoint *ep)
{
	return (ep->flags & EP_F_READY) != 0;
}

struct slice *
slice_new(void)
{
	/* One event loop: a plain counter; 2^64 slices never wrap. */
	static uint64_t	 next_serial;
	struct slice	*sl;

	if ((sl = calloc(1, sizeof(*sl))) != NULL)
		sl->serial = ++next_serial;
	return sl;
}

void
slice_free(struct slice *sl)
{
	size_t i;

	if (sl == NULL)
		return;
	for (i = 0; i < sl->n_ports; i++)
		free(sl->ports[i].name);
	for (i = 0; i < sl->n_endpoints; i++)
		svc_endpoint_clear(&sl->endpoints[i]);
	free(sl->ports);
	free(sl->endpoints);
	free(sl->namespace);
	free(sl->name);
	free(sl->service_name);
	free(sl);
}

/* Tables. */

struct svctab *
svctab_ref(struct svctab *t)
{
	assert(t->refcnt > 0);
	t->refcnt++;
	return t;
}

void
svctab_unref(struct svctab *t)
{
	size_t i;

	if (t == NULL)
		return;
	assert(t->refcnt > 0);
	if (--t->refcnt > 0)
		return;
	for (i = 0; i < t->n_svcs; i++)
		svc_unref(t->svcs[i]);
	free(t->svcs);
	free(t);
}

static int
svc_name_cmp(const char *ns_a, const char *name_a, const char *ns_b,
    const char *name_b)
{
	int c;

	if ((c = strcmp(ns_a, ns_b)) != 0)
		return c;
	return strcmp(name_a, name_b);
}

static int
svc_ptr_cmp(const void *a, const void *b)
{
	const struct svc *sa = *(struct svc *const *)a;
	const struct svc *sb = *(struct svc *const *)b;

	return svc_name_cmp(sa->namespace, sa->name, sb->namespace, sb->name);
}

struct svc *
svctab_find(const struct svctab *t, const char *ns, const char *name)
{
	size_t lo = 0, hi;

	if (t == NULL)
		return NULL;
	hi = t->n_svcs;
	while (lo < hi) {
		size_t	 mid = lo + (hi - lo) / 2;
		int	 c = svc_name_cmp(ns, name, t->svcs[mid]->namespace,
			    t->svcs[mid]->name);

		if (c == 0)
			return t->svcs[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Building: join slices to service ports. */

static int
slice_ptr_cmp(const void *a, const void *b)
{
	const struct slice *x = *(struct slice *const *)a;
	const struct slice *y = *(struct slice *const *)b;
	int c;

	if ((c = strcmp(x->namespace, y->namespace)) != 0)
		return c;
	return strcmp(x->service_name, y->service_name);
}

static int
endpoint_qsort_cmp(const void *a, const void *b)
{
	const struct endpoint *x = a, *y = b;
	int c;

	if ((c = svc_endpoint_cmp(x, y)) != 0)
		return c;
	/* Among duplicates, the ready copy sorts first and is kept. */
	return (int)(y->flags & EP_F_READY) - (int)(x->flags & EP_F_READY);
}

static char *
strdup_or_null(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

static int
endpoint_copy(struct endpoint *dst, const struct endpoint *src, uint16_t port)
{
	*dst = *src;
	dst->port = port;
	dst->node_name = strdup_or_null(src->node_name);
	dst->zone = strdup_or_null(src->zone);
	dst->hint_zones = strdup_or_null(src->hint_zones);
	if ((src->node_name != NULL && dst->node_name == NULL) ||
	    (src->zone != NULL && dst->zone == NULL) ||
	    (src->hint_zones != NULL && dst->hint_zones == NULL)) {
		svc_endpoint_clear(dst);
		return -1;
	}
	return 0;
}

/*
 * Fill p's endpoints from the slices of its service (slices[0..n) all
 * belong to it): a slice port of the same name and protocol gives the
 * endpoint port, as kube-proxy matches ServicePortName to EndpointPort.
 */
static int
svc_port_join(struct svc_port *p, struct slice *const *slices, size_t n)
{
	size_t i, j, k, total = 0, out;

	for (i = 0; i < n; i++)
		total += slices[i]->n_endpoints;
	if (total == 0)
		return 0;
	if ((p->endpoints = calloc(total, sizeof(*p->endpoints))) == NULL)
		return -1;
	for (i = 0; i < n; i++) {
		const struct slice *sl = slices[i];

		for (j = 0; j < sl->n_ports; j++) {
			const struct slice_port *sp = &sl->ports[j];

			if (sp->proto != p->proto || sp->port == 0 ||
			    strcmp(sp->name, p->name) != 0)
				continue;
			for (k = 0; k < sl->n_endpoints; k++) {
				if (endpoint_copy(&p->endpoints[p->n_endpoints],
				    &sl->endpoints[k], sp->port) == -1)
					return -1;
				p->n_endpoints++;
			}
			break;
		}
	}
	qsort(p->endpoints, p->n_endpoints, sizeof(*p->endpoints),
	    endpoint_qsort_cmp);
	/* De-duplicate: an endpoint may appear in two slices mid-rollout. */
	for (i = 0, out = 0; i < p->n_endpoints; i++) {
		if (out > 0 && svc_endpoint_cmp(&p->endpoints[out - 1],
		    &p->endpoints[i]) == 0) {
			svc_endpoint_clear(&p->endpoints[i]);
			continue;
		}
		p->endpoints[out++] = p->endpoints[i];
	}
	p->n_endpoints = out;
	return 0;
}

static bool
str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static bool
ips_equal(const struct svc_ip *a, size_t na, const struct svc_ip *b,
    size_t nb)
{
	size_t i;

	if (na != nb)
		return false;
	for (i = 0; i < na; i++)
		if (svc_ip_cmp(&a[i], &b[i]) != 0)
			return false;
	return true;
}

static bool
endpoint_equal(const struct endpoint *a, const struct endpoint *b)
{
	return svc_endpoint_cmp(a, b) == 0 && a->flags == b->flags &&
	    str_eq(a->node_name, b->node_name) && str_eq(a->zone, b->zone) &&
	    str_eq(a->hint_zones, b->hint_zones);
}

static bool
endpoints_equal(const struct svc_port *a, const struct svc_port *b)
{
	size_t i;

	if (a->n_endpoints != b->n_endpoints)
		return false;
	for (i = 0; i < a->n_endpoints; i++)
		if (!endpoint_equal(&a->endpoints[i], &b->endpoints[i]))
			return false;
	return true;
}

/* Everything about a service that decides its portals and balancing. */
static bool
svc_spec_equal(const struct svc *a, const struct svc *b)
{
	return str_eq(a->namespace, b->namespace) && str_eq(a->name, b->name) &&
	    a->type == b->type && a->skip == b->skip &&
	    str_eq(a->external_name, b->external_name) &&
	    str_eq(a->proxy_name, b->proxy_name) &&
	    ips_equal(a->cluster_ips, a->n_cluster_ips, b->cluster_ips,
	    b->n_cluster_ips) &&
	    ips_equal(a->external_ips, a->n_external_ips, b->external_ips,
	    b->n_external_ips) &&
	    ips_equal(a->ingress_ips, a->n_ingress_ips, b->ingress_ips,
	    b->n_ingress_ips) &&
	    a->affinity == b->affinity &&
	    a->affinity_timeout_s == b->affinity_timeout_s &&
	    a->internal_policy == b->internal_policy &&
	    a->external_policy == b->external_policy &&
	    a->health_check_node_port == b->health_check_node_port &&
	    str_eq(a->balancer, b->balancer) &&
	    a->balancer_kind == b->balancer_kind &&
	    str_eq(a->proxy_protocol, b->proxy_protocol) &&
	    a->proxy_protocol_version == b->proxy_protocol_version;
}

static bool
svc_port_spec_equal(const struct svc_port *a, const struct svc_port *b)
{
	return str_eq(a->name, b->name) && a->proto == b->proto &&
	    a->port == b->port && a->node_port == b->node_port;
}

bool
svc_equal(const struct svc *a, const struct svc *b)
{
	size_t i;

	if (a == b)
		return true;
	if (!svc_spec_equal(a, b) || a->n_ports != b->n_ports)
		return false;
	for (i = 0; i < a->n_ports; i++)
		if (!svc_port_spec_equal(&a->ports[i], &b->ports[i]) ||
		    !endpoints_equal(&a->ports[i], &b->ports[i]))
			return false;
	return true;
}

/* The slices of ns/name in the sorted array, as [*first, *first + count). */
static size_t
slices_of(struct slice *const *sorted, size_t n, const char *ns,
    const char *name, size_t *first)
{
	size_t lo = 0, hi = n, count = 0;

	while (lo < hi) {
		size_t	mid = lo + (hi - lo) / 2;
		int	c = svc_name_cmp(sorted[mid]->namespace,
			    sorted[mid]->service_name, ns, name);

		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*first = lo;
	while (lo + count < n && svc_name_cmp(sorted[lo + count]->namespace,
	    sorted[lo + count]->service_name, ns, name) == 0)
		count++;
	return count;
}

/* A service and its position in the input, for a stable sort. */
struct svc_seq {
	struct svc	*svc;
	size_t		 seq;
};

static int
svc_seq_cmp(const void *a, const void *b)
{
	const struct svc_seq *x = a, *y = b;
	int c;

	if ((c = svc_ptr_cmp(&x->svc, &y->svc)) != 0)
		return c;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * Sort svcs by name, keeping the later of each duplicated name (dropping
 * the other's reference when unref is set); *n becomes the count kept.
 * Sources usually hand them over sorted already, which costs one pass.
 */
static int
svcs_sort_dedup(struct svc **svcs, size_t *n, bool unref)
{
	struct svc_seq	*v;
	size_t		 i, out = 0;
	bool		 sorted = true;

	for (i = 1; i < *n && sorted; i++)
		sorted = svc_ptr_cmp(&svcs[i - 1], &svcs[i]) < 0;
	if (sorted)
		return 0;
	if ((v = calloc(*n, sizeof(*v))) == NULL)
		return -1;
	for (i = 0; i < *n; i++) {
		v[i].svc = svcs[i];
		v[i].seq = i;
	}
	qsort(v, *n, sizeof(*v), svc_seq_cmp);
	for (i = 0; i < *n; i++) {
		if (i + 1 < *n && svc_ptr_cmp(&v[i].svc, &v[i + 1].svc) == 0) {
			log_warnx("service %s/%s: defined twice, the later "
			    "definition wins", v[i].svc->namespace,
			    v[i].svc->name);
			if (unref)
				svc_unref(v[i].svc);
			continue;
		}
		svcs[out++] = v[i].svc;
	}
	*n = out;
	free(v);
	return 0;
}

struct svctab *
svctab_build(struct svc **svcs, size_t n_svcs, struct slice *const *slices,
    size_t n_slices, const struct svctab *prev)
{
	struct svctab	 *t = NULL;
	struct slice	**sorted = NULL;
	size_t		  i, j, n_sorted = 0;

	/* The table owns the services from here on, even on failure. */
	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (n_svcs > 0 && (t->svcs = calloc(n_svcs, sizeof(*t->svcs))) == NULL)) {
		for (i = 0; i < n_svcs; i++)
			svc_unref(svcs[i]);
		free(t);
		return NULL;
	}
	t->refcnt = 1;
	for (i = 0; i < n_svcs; i++)
		t->svcs[i] = svcs[i];
	t->n_svcs = n_svcs;

	/* Slices without a service name belong to no service: left out. */
	if (n_slices > 0 &&
	    (sorted = calloc(n_slices, sizeof(*sorted))) == NULL)
		goto fail;
	for (i = 0; i < n_slices; i++)
		if (slices[i]->service_name != NULL &&
		    slices[i]->namespace != NULL)
			sorted[n_sorted++] = slices[i];
	if (n_sorted > 0)
		qsort(sorted, n_sorted, sizeof(*sorted), slice_ptr_cmp);

	for (i = 0; i < t->n_svcs; i++) {
		struct svc	*s = t->svcs[i];
		size_t		 first, count;

		count = slices_of(sorted, n_sorted, s->namespace, s->name,
		    &first);
		for (j = 0; j < s->n_ports; j++) {
			assert(s->ports[j].n_endpoints == 0);
			if (svc_port_join(&s->ports[j], count > 0 ?
			    sorted + first : NULL, count) == -1)
				goto fail;
		}
	}

	/* Sort; of two services with one name the later one wins. */
	if (svcs_sort_dedup(t->svcs, &t->n_svcs, true) == -1)
		goto fail;

	/* Keep the identity of unchanged services. */
	for (i = 0; prev != NULL && i < t->n_svcs; i++) {
		struct svc *old = svctab_find(prev, t->svcs[i]->namespace,
		    t->svcs[i]->name);

		if (old != NULL && svc_equal(old, t->svcs[i])) {
			svc_unref(t->svcs[i]);
			t->svcs[i] = svc_ref(old);
		}
	}
	free(sorted);
	return t;

fail:
	free(sorted);
	svctab_unref(t);
	return NULL;
}

/* Builder. */

static int
builder_grow(void **arr, size_t *cap, size_t n, size_t elem)
{
	void	*p;
	size_t	 ncap;

	if (n < *cap)
		return 0;
	ncap = *cap == 0 ? 64 : *cap * 2;
	if ((p = reallocarray(*arr, ncap, elem)) == NULL)
		return -1;
	*arr = p;
	*cap = ncap;
	return 0;
}

int
svctab_builder_add_svc(struct svctab_builder *b, struct svc *s)
{
	if (builder_grow((void **)&b->svcs, &b->cap_svcs, b->n_svcs,
	    sizeof(*b->svcs)) == -1) {
		svc_unref(s);
		return -1;
	}
	b->svcs[b->n_svcs++] = s;
	return 0;
}

int
svctab_builder_add_slice(struct svctab_builder *b, struct slice *sl)
{
	if (builder_grow((void **)&b->slices, &b->cap_slices, b->n_slices,
	    sizeof(*b->slices)) == -1) {
		if (b->owns_slices)
			slice_free(sl);
		return -1;
	}
	b->slices[b->n_slices++] = sl;
	return 0;
}

struct svctab *
svctab_builder_build(struct svctab_builder *b, const struct svctab *prev)
{
	struct svctab *t;

	t = svctab_build(b->svcs, b->n_svcs, b->slices, b->n_slices, prev);
	b->n_svcs = 0;
	return t;
}

void
svctab_builder_clear(struct svctab_builder *b)
{
	size_t i;

	for (i = 0; i < b->n_svcs; i++)
		svc_unref(b->svcs[i]);
	for (i = 0; b->owns_slices && i < b->n_slices; i++)
		slice_free(b->slices[i]);
	free(b->svcs);
	free(b->slices);
	b->svcs = NULL;
	b->slices = NULL;
	b->n_svcs = b->cap_svcs = b->n_slices = b->cap_slices = 0;
}

bool
svctab_same(const struct svctab *a, const struct svctab *b)
{
	size_t i;

	if (a == NULL || b == NULL || a->n_svcs != b->n_svcs)
		return false;
	for (i = 0; i < a->n_svcs; i++)
		if (a->svcs[i] != b->svcs[i] &&
		    !svc_equal(a->svcs[i], b->svcs[i]))
			return false;
	return true;
}

/* Incremental building. */

/* What one service of the last memo build was made from. */
struct memo_entry {
	struct svc	*spec;		/* a reference */
	struct svc	*built;		/* a reference */
	size_t		 first;		/* its slice serials in memo->serials */
	size_t		 n_serials;
};

struct svctab_memo {
	struct memo_entry	*entries;	/* sorted by namespace/name */
	size_t			 n_entries;
	uint64_t		*serials;
	size_t			 n_serials;
	size_t			 n_joined;
};

struct svctab_memo *
svctab_memo_new(void)
{
	return calloc(1, sizeof(struct svctab_memo));
}

static void
memo_entries_free(struct memo_entry *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		svc_unref(v[i].spec);
		svc_unref(v[i].built);
	}
	free(v);
}

void
svctab_memo_free(struct svctab_memo *m)
{
	if (m == NULL)
		return;
	memo_entries_free(m->entries, m->n_entries);
	free(m->serials);
	free(m);
}

size_t
svctab_memo_n_joined(const struct svctab_memo *m)
{
	return m->n_joined;
}

static int
ips_copy(struct svc_ip **dst, const struct svc_ip *src, size_t n)
{
	*dst = NULL;
	if (n == 0)
		return 0;
	if ((*dst = reallocarray(NULL, n, sizeof(**dst))) == NULL)
		return -1;
	memcpy(*dst, src, n * sizeof(**dst));
	return 0;
}

/* A deep copy of spec's service and ports, without endpoints. */
static struct svc *
svc_copy_spec(const struct svc *spec)
{
	struct svc	*s;
	size_t		 i;

	if ((s = svc_new()) == NULL)
		return NULL;
	*s = *spec;
	s->refcnt = 1;
	s->namespace = s->name = s->external_name = s->proxy_name = NULL;
	s->balancer = s->proxy_protocol = NULL;
	s->external_ips = s->ingress_ips = NULL;
	s->ports = NULL;
	s->n_ports = 0;
	if ((s->namespace = strdup_or_null(spec->namespace)) == NULL ||
	    (s->name = strdup_or_null(spec->name)) == NULL ||
	    (spec->external_name != NULL && (s->external_name =
	    strdup(spec->external_name)) == NULL) ||
	    (spec->proxy_name != NULL && (s->proxy_name =
	    strdup(spec->proxy_name)) == NULL) ||
	    (spec->balancer != NULL && (s->balancer =
	    strdup(spec->balancer)) == NULL) ||
	    (spec->proxy_protocol != NULL && (s->proxy_protocol =
	    strdup(spec->proxy_protocol)) == NULL) ||
	    ips_copy(&s->external_ips, spec->external_ips,
	    spec->n_external_ips) == -1 ||
	    ips_copy(&s->ingress_ips, spec->ingress_ips,
	    spec->n_ingress_ips) == -1)
		goto fail;
	if (spec->n_ports > 0 && (s->ports = calloc(spec->n_ports,
	    sizeof(*s->ports))) == NULL)
		goto fail;
	for (i = 0; i < spec->n_ports; i++) {
		s->ports[i] = spec->ports[i];
		s->ports[i].endpoints = NULL;
		s->ports[i].n_endpoints = 0;
		if ((s->ports[i].name = strdup(spec->ports[i].name)) == NULL)
			goto fail;
		s->n_ports++;
	}
	return s;
fail:
	svc_unref(s);
	return NULL;
}

/* A new svc: spec's copy with endpoints joined from slices[0..n). */
static struct svc *
svc_join(const struct svc *spec, struct slice *const *slices, size_t n)
{
	struct svc	*s;
	size_t		 i;

	if ((s = svc_copy_spec(spec)) == NULL)
		return NULL;
	for (i = 0; i < s->n_ports; i++)
		if (svc_port_join(&s->ports[i], n > 0 ? slices : NULL,
		    n) == -1) {
			svc_unref(s);
			return NULL;
		}
	return s;
}

/* Slices sorted by namespace, service name, then serial. */
static int
slice_serial_cmp(const void *a, const void *b)
{
	const struct slice *x = *(struct slice *const *)a;
	const struct slice *y = *(struct slice *const *)b;
	int c;

	if ((c = slice_ptr_cmp(a, b)) != 0)
		return c;
	return x->serial < y->serial ? -1 : x->serial > y->serial;
}

/*
 * The specs by name, the later of two with one name kept, into *out (a
 * new array of n_out borrowed pointers).
 */
static int
memo_sort_specs(struct svc *const *specs, size_t n, struct svc ***out,
    size_t *n_out)
{
	struct svc **r;

	*out = NULL;
	*n_out = 0;
	if (n == 0)
		return 0;
	if ((r = calloc(n, sizeof(*r))) == NULL)
		return -1;
	memcpy(r, specs, n * sizeof(*r));
	if (svcs_sort_dedup(r, &n, false) == -1) {
		free(r);
		return -1;
	}
	*out = r;
	*n_out = n;
	return 0;
}

/* The slices that name a service, sorted by slice_serial_cmp(). */
static int
memo_sort_slices(struct slice *const *slices, size_t n, struct slice ***out,
    size_t *n_out)
{
	struct slice	**r;
	size_t		  i, o = 0;
	bool		  sorted = true;

	*out = NULL;
	*n_out = 0;
	if (n == 0)
		return 0;
	if ((r = calloc(n, sizeof(*r))) == NULL)
		return -1;
	for (i = 0; i < n; i++)
		if (slices[i]->service_name != NULL &&
		    slices[i]->namespace != NULL) {
			r[o] = slices[i];
			if (o > 0 && slice_serial_cmp(&r[o - 1], &r[o]) > 0)
				sorted = false;
			o++;
		}
	if (!sorted)
		qsort(r, o, sizeof(*r), slice_serial_cmp);
	*out = r;
	*n_out = o;
	return 0;
}

/* Whether e was built from these very slices. */
static bool
memo_same_slices(const struct svctab_memo *m, const struct memo_entry *e,
    struct slice *const *slices, size_t n)
{
	size_t i;

	if (e->n_serials != n)
		return false;
	for (i = 0; i < n; i++)
		if (m->serials[e->first + i] != slices[i]->serial)
			return false;
	return true;
}

/*
 * The joined svc for spec and its slices: the previous one when its inputs
 * are the same or the join gives an equal result, else the new join.
 * Returns a new reference, or NULL (ENOMEM).
 */
static struct svc *
memo_join(struct svctab_memo *m, const struct memo_entry *old,
    struct svc *spec, struct slice *const *slices, size_t n)
{
	struct svc *s;

	/* Specs carry no endpoints: svc_equal() compares just the spec. */
	if (old != NULL && svc_equal(old->spec, spec) &&
	    memo_same_slices(m, old, slices, n))
		return svc_ref(old->built);
	if ((s = svc_join(spec, slices, n)) == NULL)
		return NULL;
	m->n_joined++;
	if (old != NULL && svc_equal(old->built, s)) {
		svc_unref(s);
		return svc_ref(old->built);
	}
	return s;
}

struct svctab *
svctab_memo_build(struct svctab_memo *m, struct svc *const *specs,
    size_t n_specs, struct slice *const *slices, size_t n_slices)
{
	struct svctab		 *t = NULL;
	struct svc		**sv = NULL;
	struct slice		**sl = NULL;
	struct memo_entry	 *ne = NULL;
	uint64_t		 *serials = NULL;
	size_t			  n_sv, n_sl, i, j = 0, k = 0, n_ser = 0;
	size_t			  n_joined_before = m->n_joined;

	if (memo_sort_specs(specs, n_specs, &sv, &n_sv) == -1 ||
	    memo_sort_slices(slices, n_slices, &sl, &n_sl) == -1 ||
	    (t = calloc(1, sizeof(*t))) == NULL ||
	    (n_sv > 0 && ((t->svcs = calloc(n_sv, sizeof(*t->svcs))) ==
	    NULL || (ne = calloc(n_sv, sizeof(*ne))) == NULL)) ||
	    (n_sl > 0 && (serials = calloc(n_sl, sizeof(*serials))) == NULL))
		goto fail;
	t->refcnt = 1;
	m->n_joined = 0;
	/* A merge walk over specs, slices and the memo, all sorted alike. */
	for (i = 0; i < n_sv; i++) {
		struct svc		*spec = sv[i];
		const struct memo_entry	*old = NULL;
		size_t			 first, count = 0, c;
		int			 cmp = 0;

		while (j < n_sl && svc_name_cmp(sl[j]->namespace,
		    sl[j]->service_name, spec->namespace, spec->name) < 0)
			j++;
		first = j;
		while (j < n_sl && svc_name_cmp(sl[j]->namespace,
		    sl[j]->service_name, spec->namespace, spec->name) == 0) {
			j++;
			count++;
		}
		while (k < m->n_entries && (cmp = svc_ptr_cmp(
		    &m->entries[k].spec, &spec)) < 0)
			k++;
		if (k < m->n_entries && cmp == 0)
			old = &m->entries[k];
		for (c = 0; c < spec->n_ports; c++)
			assert(spec->ports[c].n_endpoints == 0);
		ne[i].built = memo_join(m, old, spec, sl + first, count);
		if (ne[i].built == NULL)
			goto fail;
		ne[i].spec = svc_ref(spec);
		ne[i].first = n_ser;
		ne[i].n_serials = count;
		for (c = 0; c < count; c++)
			serials[n_ser++] = sl[first + c]->serial;
		t->svcs[i] = svc_ref(ne[i].built);
		t->n_svcs++;
	}
	memo_entries_free(m->entries, m->n_entries);
	free(m->serials);
	m->entries = ne;
	m->n_entries = n_sv;
	m->serials = serials;
	m->n_serials = n_ser;
	free(sv);
	free(sl);
	return t;

fail:
	/* Entries not filled are zeroed: svc_unref(NULL) is fine. */
	memo_entries_free(ne, n_sv);
	free(serials);
	free(sv);
	free(sl);
	svctab_unref(t);
	m->n_joined = n_joined_before;
	return NULL;
}

/* Diff. */

static const struct svc_port *
svc_find_port(const struct svc *s, const struct svc_port *like)
{
	size_t i;

	for (i = 0; i < s->n_ports; i++)
		if (s->ports[i].proto == like->proto &&
		    strcmp(s->ports[i].name, like->name) == 0)
			return &s->ports[i];
	return NULL;
}

/* Whether a port's portals or balancing settings differ (not endpoints). */
static bool
svc_port_portals_equal(const struct svc *a, const struct svc_port *pa,
    const struct svc *b, const struct svc_port *pb)
{
	return svc_spec_equal(a, b) && svc_port_spec_equal(pa, pb);
}

static size_t
diff_one(struct svc *old, struct svc *new, svc_diff_cb cb,
    void *arg)
{
	struct svc_diff_entry	e;
	size_t			i, calls = 0;

	if (old != NULL && !svc_is_proxied(old))
		old = NULL;
	if (new != NULL && !svc_is_proxied(new))
		new = NULL;
	if (old == new)
		return 0;

	/* Ports of the old service: removed, changed or endpoints only. */
	for (i = 0; old != NULL && i < old->n_ports; i++) {
		const struct svc_port *op = &old->ports[i];
		const struct svc_port *np = new ? svc_find_port(new, op) : NULL;

		memset(&e, 0, sizeof(e));
		e.old_svc = old;
		e.old_port = op;
		e.new_svc = np != NULL ? new : NULL;
		e.new_port = np;
		if (np == NULL)
			e.kind = SVC_DIFF_REMOVED;
		else if (!svc_port_portals_equal(old, op, new, np))
			e.kind = SVC_DIFF_CHANGED;
		else if (!endpoints_equal(op, np))
			e.kind = SVC_DIFF_ENDPOINTS;
		else
			continue;
		cb(&e, arg);
		calls++;
	}
	/* Ports only the new service has. */
	for (i = 0; new != NULL && i < new->n_ports; i++) {
		const struct svc_port *np = &new->ports[i];

		if (old != NULL && svc_find_port(old, np) != NULL)
			continue;
		memset(&e, 0, sizeof(e));
		e.kind = SVC_DIFF_ADDED;
		e.new_svc = new;
		e.new_port = np;
		cb(&e, arg);
		calls++;
	}
	return calls;
}

size_t
svctab_diff(const struct svctab *old, const struct svctab *new,
    svc_diff_cb cb, void *arg)
{
	size_t	i = 0, j = 0, calls = 0;
	size_t	n_old = old != NULL ? old->n_svcs : 0;
	size_t	n_new = new != NULL ? new->n_svcs : 0;

	/* A merge walk over two sorted arrays. */
	while (i < n_old || j < n_new) {
		struct svc *a = i < n_old ? old->svcs[i] : NULL;
		struct svc *b = j < n_new ? new->svcs[j] : NULL;
		int c;

		if (a == NULL)
			c = 1;
		else if (b == NULL)
			c = -1;
		else
			c = svc_ptr_cmp(&a, &b);
		if (c < 0) {
			calls += diff_one(a, NULL, cb, arg);
			i++;
		} else if (c > 0) {
			calls += diff_one(NULL, b, cb, arg);
			j++;
		} else {
			calls += diff_one(a, b, cb, arg);
			i++;
			j++;
		}
	}
	return calls;
}

void
svctab_stats(const struct svctab *t, struct svctab_stats *st)
{
	size_t i, j;

	memset(st, 0, sizeof(*st));
	if (t == NULL)
		return;
	st->n_services = t->n_svcs;
	for (i = 0; i < t->n_svcs; i++) {
		const struct svc *s = t->svcs[i];

		if (!svc_is_proxied(s))
			continue;
		st->n_proxied++;
		st->n_ports += s->n_ports;
		for (j = 0; j < s->n_ports; j++)
			st->n_endpoints += s->ports[j].n_endpoints;
	}
}
