/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kubernetes Service and EndpointSlice objects (json-c trees, as json_tokener
 * or yamljson produce them) to struct svc and struct slice.
 *
 * This module owns the Kubernetes JSON shape and the validation the API
 * server would have done where it is cheap, so that a hand-written service
 * file cannot put into the table what a cluster never would: out-of-range
 * ports, bad addresses, duplicate or unnamed ports, names that are not DNS
 * labels (names end up in log lines and iptables comments).  It leaves
 * joining slices to services to base/svc.c (svctab_build(),
 * svctab_memo_build()) and all I/O to the sources.
 *
 * Every message names the object and the field:
 *   "default/web: spec.ports[0].port: 70000 is out of range 1-65535".
 * decode_document() prefixes the source ("services.yaml:12: ...").
 */
#include "config.h"

#include <sys/socket.h>

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bsd/string.h>
#include <json-c/json.h>

#include "base/log.h"
#include "base/svc.h"
#include "base/yamljson.h"
#include "watch/decode.h"

#define DECODE_ERRLEN		512
#define DECODE_LABEL_MAX	63	/* DNS-1123 label */
#define DECODE_SUBDOMAIN_MAX	253	/* DNS-1123 subdomain */
#define DECODE_TEXT_MAX		1024	/* free-form values kept */

#define LABEL_PROXY_NAME	"service.kubernetes.io/service-proxy-name"
#define LABEL_SERVICE_NAME	"kubernetes.io/service-name"
#define ANNOT_BALANCER		"kuproxy.io/balancer"
#define ANNOT_PROXY_PROTOCOL	"kuproxy.io/proxy-protocol"

/* What one decode call knows about the object it is working on. */
struct dctx {
	/* "ns/name", or the kind until the name is known */
	char		 label[DECODE_SUBDOMAIN_MAX * 2 + 2];
	int		 obj_line;	/* where the object starts, or 0 */
	int		 line;		/* where the error is, or 0 */
	char		*err;
	size_t		 errlen;
};

static void
dctx_init(struct dctx *c, json_object *obj, const char *what, char *err,
    size_t errlen)
{
	c->obj_line = yamljson_line(obj);
	c->line = 0;
	c->err = err;
	c->errlen = errlen;
	snprintf(c->label, sizeof(c->label), "%s", what);
}

/*
 * Record an error: "label: " then the message.  near is the offending value
 * or, for a missing one, its parent; its line locates the error.
 */
static int
dfail(struct dctx *c, json_object *near, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
dfail(struct dctx *c, json_object *near, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	c->line = yamljson_line(near);
	if (c->line == 0)
		c->line = c->obj_line;
	n = snprintf(c->err, c->errlen, "%s: ", c->label);
	if (n >= 0 && (size_t)n < c->errlen) {
		va_start(ap, fmt);
		vsnprintf(c->err + n, c->errlen - n, fmt, ap);
		va_end(ap);
	}
	log_escape(c->err, c->errlen);
	return (-1);
}

static const char *
dtype_name(json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_null:
		return ("null");
	case json_type_boolean:
		return ("a boolean");
	case json_type_double:
		return ("a number with a fraction");
	case json_type_int:
		return ("an integer");
	case json_type_object:
		return ("an object");
	case json_type_array:
		return ("a list");
	case json_type_string:
		return ("a string");
	}
	return ("unknown");
}

/*
 * Look up parent.key and check its type.  Missing and null both give
 * *out = NULL and 0 (Kubernetes treats them alike); a value of another type
 * is an error naming path.key.
 */
static int
dget(struct dctx *c, json_object *parent, const char *path, const char *key,
    json_type want, json_object **out)
{
	json_object	*v = NULL;
	const char	*dot = *path != '\0' ? "." : "";

	*out = NULL;
	if (parent == NULL || !json_object_object_get_ex(parent, key, &v) ||
	    v == NULL)
		return (0);
	if (!json_object_is_type(v, want)) {
		const char *what = want == json_type_string ? "a string" :
		    want == json_type_int ? "an integer" :
		    want == json_type_boolean ? "a boolean" :
		    want == json_type_array ? "a list" : "an object";
		return (dfail(c, v, "%s%s%s: must be %s, not %s", path, dot,
		    key, what, dtype_name(v)));
	}
	*out = v;
	return (0);
}

static int
dget_string(struct dctx *c, json_object *parent, const char *path,
    const char *key, const char **out)
{
	json_object	*v;

	*out = NULL;
	if (dget(c, parent, path, key, json_type_string, &v) == -1)
		return (-1);
	if (v != NULL)
		*out = json_object_get_string(v);
	return (0);
}

/* An integer within [min, max]; *present false when missing or null. */
static int
dget_int(struct dctx *c, json_object *parent, const char *path,
    const char *key, int64_t min, int64_t max, int64_t *out, bool *present)
{
	json_object	*v;
	const char	*dot = *path != '\0' ? "." : "";

	*present = false;
	*out = 0;
	if (dget(c, parent, path, key, json_type_int, &v) == -1)
		return (-1);
	if (v == NULL)
		return (0);
	*out = json_object_get_int64(v);
	if (*out < min || *out > max)
		return (dfail(c, v, "%s%s%s: %lld is out of range %lld-%lld",
		    path, dot, key, (long long)*out, (long long)min,
		    (long long)max));
	*present = true;
	return (0);
}

/* A boolean; *out is -1 when missing or null. */
static int
dget_bool(struct dctx *c, json_object *parent, const char *path,
    const char *key, int *out)
{
	json_object	*v;

	*out = -1;
	if (dget(c, parent, path, key, json_type_boolean, &v) == -1)
		return (-1);
	if (v != NULL)
		*out = json_object_get_boolean(v);
	return (0);
}

/* A DNS-1123 label: what the API server requires of these names. */
static bool
dns_label_ok(const char *s)
{
	size_t	 i, n = strlen(s);

	if (n == 0 || n > DECODE_LABEL_MAX)
		return (false);
	for (i = 0; i < n; i++) {
		if ((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= '0' && s[i] <= '9'))
			continue;
		if (s[i] == '-' && i != 0 && i != n - 1)
			continue;
		return (false);
	}
	return (true);
}

/* A DNS-1123 subdomain: dot-separated labels, at most 253 bytes. */
static bool
dns_subdomain_ok(const char *s)
{
	char	 part[DECODE_SUBDOMAIN_MAX + 1];
	char	*p, *dot;
	size_t	 n = strlen(s);

	if (n == 0 || n > DECODE_SUBDOMAIN_MAX)
		return (false);
	memcpy(part, s, n + 1);
	for (p = part; p != NULL; p = dot) {
		if ((dot = strchr(p, '.')) != NULL)
			*dot++ = '\0';
		if (!dns_label_ok(p))
			return (false);
	}
	return (true);
}

/* Values kept for logs and the balancer: no control bytes, bounded. */
static bool
text_ok(const char *s)
{
	size_t	 n;

	for (n = 0; s[n] != '\0'; n++)
		if ((unsigned char)s[n] < 0x20 || s[n] == 0x7f)
			return (false);
	return (n <= DECODE_TEXT_MAX);
}

static int
dstrdup(struct dctx *c, const char *s, char **out)
{
	if (s == NULL) {
		*out = NULL;
		return (0);
	}
	if ((*out = strdup(s)) == NULL)
		return (dfail(c, NULL, "out of memory"));
	return (0);
}

/* An optional free-form string field, copied when present. */
static int
dget_text(struct dctx *c, json_object *parent, const char *path,
    const char *key, char **out)
{
	const char	*s;

	*out = NULL;
	if (dget_string(c, parent, path, key, &s) == -1)
		return (-1);
	if (s != NULL && !text_ok(s))
		return (dfail(c, parent, "%s.%s: contains control characters "
		    "or is longer than %d bytes", path, key, DECODE_TEXT_MAX));
	return (dstrdup(c, s, out));
}

/*
 * metadata.namespace and metadata.name, checked and copied; the label for
 * messages becomes "ns/name".  Also hands back labels and annotations.
 */
static int
decode_meta(struct dctx *c, json_object *obj, bool name_is_label,
    char **ns_out, char **name_out, json_object **labels,
    json_object **annotations)
{
	json_object	*meta;
	const char	*ns, *name;

	if (dget(c, obj, "", "metadata", json_type_object, &meta) == -1)
		return (-1);
	if (meta == NULL)
		return (dfail(c, obj, "metadata: required"));
	if (dget_string(c, meta, "metadata", "namespace", &ns) == -1 ||
	    dget_string(c, meta, "metadata", "name", &name) == -1)
		return (-1);
	if (ns == NULL || *ns == '\0')
		ns = "default";
	if (name == NULL || *name == '\0')
		return (dfail(c, meta, "metadata.name: required"));
	if (!dns_label_ok(ns))
		return (dfail(c, meta, "metadata.namespace: \"%.80s\" is not "
		    "a DNS label", ns));
	if (name_is_label ? !dns_label_ok(name) : !dns_subdomain_ok(name))
		return (dfail(c, meta, "metadata.name: \"%.80s\" is not a DNS "
		    "%s", name, name_is_label ? "label" : "subdomain"));
	snprintf(c->label, sizeof(c->label), "%s/%s", ns, name);
	if (dget(c, meta, "metadata", "labels", json_type_object, labels) ==
	    -1 || dget(c, meta, "metadata", "annotations", json_type_object,
	    annotations) == -1)
		return (-1);
	if (dstrdup(c, ns, ns_out) == -1 || dstrdup(c, name, name_out) == -1)
		return (-1);
	return (0);
}

/* An address field: required to be a valid IPv4 or IPv6 address. */
static int
dparse_ip(struct dctx *c, json_object *v, const char *path,
    struct svc_ip *ip)
{
	if (!json_object_is_type(v, json_type_string))
		return (dfail(c, v, "%s: must be a string, not %s", path,
		    dtype_name(v)));
	if (svc_ip_parse(json_object_get_string(v), ip) == -1)
		return (dfail(c, v, "%s: \"%.60s\" is not a valid IP address",
		    path, json_object_get_string(v)));
	return (0);
}

/* A list of addresses (externalIPs) into a new array. */
static int
dparse_ip_list(struct dctx *c, json_object *list, const char *path,
    struct svc_ip **out, size_t *n_out)
{
	char	 elem[64];
	size_t	 i, n;

	*out = NULL;
	*n_out = 0;
	if (list == NULL || (n = json_object_array_length(list)) == 0)
		return (0);
	if ((*out = calloc(n, sizeof(**out))) == NULL)
		return (dfail(c, NULL, "out of memory"));
	for (i = 0; i < n; i++) {
		snprintf(elem, sizeof(elem), "%s[%zu]", path, i);
		if (dparse_ip(c, json_object_array_get_idx(list, i), elem,
		    &(*out)[i]) == -1)
			return (-1);
		*n_out = i + 1;
	}
	return (0);
}

/*
 * spec.clusterIP and spec.clusterIPs.  clusterIPs wins when both are set (it
 * is the newer field; the API server keeps clusterIPs[0] == clusterIP).
 * "None" or "" means headless: no addresses.
 */
static int
decode_cluster_ips(struct dctx *c, json_object *spec, struct svc *svc,
    bool *headless)
{
	json_object	*ips, *v;
	const char	*primary, *first;
	size_t		 i, n;

	*headless = false;
	if (dget_string(c, spec, "spec", "clusterIP", &primary) == -1 ||
	    dget(c, spec, "spec", "clusterIPs", json_type_array, &ips) == -1)
		return (-1);
	n = ips != NULL ? json_object_array_length(ips) : 0;
	if (n > 2)
		return (dfail(c, ips, "spec.clusterIPs: at most 2 addresses, "
		    "not %zu", n));
	if (n > 0) {
		v = json_object_array_get_idx(ips, 0);
		if (!json_object_is_type(v, json_type_string))
			return (dfail(c, v, "spec.clusterIPs[0]: must be a "
			    "string, not %s", dtype_name(v)));
		first = json_object_get_string(v);
		if (primary != NULL && *primary != '\0' &&
		    strcmp(primary, first) != 0)
			return (dfail(c, v, "spec.clusterIPs[0]: \"%.60s\" "
			    "must match spec.clusterIP \"%.60s\"", first,
			    primary));
	} else
		first = primary;
	if (first == NULL || *first == '\0' || strcmp(first, "None") == 0) {
		*headless = true;
		return (0);
	}
	if (n == 0)
		return (dparse_ip(c, json_object_object_get(spec, "clusterIP"),
		    "spec.clusterIP", &svc->cluster_ips[svc->n_cluster_ips++]));
	for (i = 0; i < n; i++) {
		char path[32];

		snprintf(path, sizeof(path), "spec.clusterIPs[%zu]", i);
		v = json_object_array_get_idx(ips, i);
		if (dparse_ip(c, v, path, &svc->cluster_ips[i]) == -1)
			return (-1);
		svc->n_cluster_ips = i + 1;
	}
	if (n == 2 && svc->cluster_ips[0].family == svc->cluster_ips[1].family)
		return (dfail(c, ips, "spec.clusterIPs: two addresses of the "
		    "same family"));
	return (0);
}

/*
 * status.loadBalancer.ingress[].ip.  Hostname-only entries (AWS ELB) give
 * nothing to capture; entries with ipMode Proxy are left to the load
 * balancer (KEP-1860), as kube-proxy does.
 */
static int
decode_ingress(struct dctx *c, json_object *obj, struct svc *svc)
{
	json_object	*status, *lb, *ingress, *entry, *ipv;
	const char	*mode;
	char		 path[64];
	size_t		 i, n;

	if (dget(c, obj, "", "status", json_type_object, &status) == -1 ||
	    dget(c, status, "status", "loadBalancer", json_type_object, &lb) ==
	    -1 || dget(c, lb, "status.loadBalancer", "ingress", json_type_array,
	    &ingress) == -1)
		return (-1);
	if (ingress == NULL || (n = json_object_array_length(ingress)) == 0)
		return (0);
	if ((svc->ingress_ips = calloc(n, sizeof(*svc->ingress_ips))) == NULL)
		return (dfail(c, NULL, "out of memory"));
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "status.loadBalancer.ingress[%zu]",
		    i);
		entry = json_object_array_get_idx(ingress, i);
		if (!json_object_is_type(entry, json_type_object))
			return (dfail(c, entry, "%s: must be an object, not %s",
			    path, dtype_name(entry)));
		if (dget(c, entry, path, "ip", json_type_string, &ipv) == -1 ||
		    dget_string(c, entry, path, "ipMode", &mode) == -1)
			return (-1);
		if (ipv == NULL || *json_object_get_string(ipv) == '\0')
			continue;
		if (mode != NULL && strcmp(mode, "Proxy") == 0)
			continue;
		strlcat(path, ".ip", sizeof(path));
		if (dparse_ip(c, ipv, path,
		    &svc->ingress_ips[svc->n_ingress_ips]) == -1)
			return (-1);
		svc->n_ingress_ips++;
	}
	return (0);
}

static int
decode_affinity(struct dctx *c, json_object *spec, struct svc *svc)
{
	json_object	*cfg, *cip;
	const char	*s;
	int64_t		 timeout;
	bool		 present;

	if (dget_string(c, spec, "spec", "sessionAffinity", &s) == -1)
		return (-1);
	if (s == NULL || strcmp(s, "None") == 0) {
		/* A leftover sessionAffinityConfig means nothing here. */
		svc->affinity = SVC_AFFINITY_NONE;
		svc->affinity_timeout_s = 0;
		return (0);
	}
	if (strcmp(s, "ClientIP") != 0)
		return (dfail(c, json_object_object_get(spec,
		    "sessionAffinity"), "spec.sessionAffinity: \"%.40s\" is "
		    "not None or ClientIP", s));
	svc->affinity = SVC_AFFINITY_CLIENT_IP;
	if (dget(c, spec, "spec", "sessionAffinityConfig", json_type_object,
	    &cfg) == -1 || dget(c, cfg, "spec.sessionAffinityConfig",
	    "clientIP", json_type_object, &cip) == -1 ||
	    dget_int(c, cip, "spec.sessionAffinityConfig.clientIP",
	    "timeoutSeconds", 1, SVC_AFFINITY_MAX_S, &timeout, &present) == -1)
		return (-1);
	svc->affinity_timeout_s = present ? (uint32_t)timeout :
	    SVC_AFFINITY_DEFAULT_S;
	return (0);
}

static int
decode_policy(struct dctx *c, json_object *spec, const char *key,
    enum svc_traffic_policy *out)
{
	const char	*s;

	*out = SVC_POLICY_CLUSTER;
	if (dget_string(c, spec, "spec", key, &s) == -1)
		return (-1);
	if (s == NULL || strcmp(s, "Cluster") == 0)
		return (0);
	if (strcmp(s, "Local") == 0) {
		*out = SVC_POLICY_LOCAL;
		return (0);
	}
	return (dfail(c, json_object_object_get(spec, key),
	    "spec.%s: \"%.40s\" is not Cluster or Local", key, s));
}

static int
decode_type(struct dctx *c, json_object *spec, struct svc *svc)
{
	static const struct {
		const char	*name;
		enum svc_type	 type;
	} types[] = {
		{ "ClusterIP", SVC_TYPE_CLUSTER_IP },
		{ "NodePort", SVC_TYPE_NODE_PORT },
		{ "LoadBalancer", SVC_TYPE_LOAD_BALANCER },
		{ "ExternalName", SVC_TYPE_EXTERNAL_NAME },
	};
	const char	*s;
	size_t		 i;

	svc->type = SVC_TYPE_CLUSTER_IP;
	if (dget_string(c, spec, "spec", "type", &s) == -1)
		return (-1);
	if (s == NULL)
		return (0);
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		if (strcmp(s, types[i].name) == 0) {
			svc->type = types[i].type;
			return (0);
		}
	}
	return (dfail(c, json_object_object_get(spec, "type"), "spec.type: "
	    "\"%.40s\" is not ClusterIP, NodePort, LoadBalancer or "
	    "ExternalName", s));
}

/* "protocol" of a service or slice port: TCP when missing. */
static int
decode_proto(struct dctx *c, json_object *port, const char *path,
    enum svc_proto *out)
{
	const char	*s;

	*out = SVC_PROTO_TCP;
	if (dget_string(c, port, path, "protocol", &s) == -1)
		return (-1);
	if (s != NULL && svc_proto_parse(s, out) == -1)
		return (dfail(c, json_object_object_get(port, "protocol"),
		    "%s.protocol: \"%.40s\" is not TCP, UDP or SCTP", path, s));
	return (0);
}

/* "name" of a service or slice port: "" when missing, else a DNS label. */
static int
decode_port_name(struct dctx *c, json_object *port, const char *path,
    char **out)
{
	const char	*s;

	if (dget_string(c, port, path, "name", &s) == -1)
		return (-1);
	if (s == NULL)
		s = "";
	if (*s != '\0' && !dns_label_ok(s))
		return (dfail(c, json_object_object_get(port, "name"),
		    "%s.name: \"%.80s\" is not a DNS label", path, s));
	return (dstrdup(c, s, out));
}

static int
decode_service_port(struct dctx *c, json_object *pv, size_t idx,
    const struct svc *svc, struct svc_port *sp)
{
	char	 path[32];
	int64_t	 v;
	bool	 present;

	snprintf(path, sizeof(path), "spec.ports[%zu]", idx);
	if (!json_object_is_type(pv, json_type_object))
		return (dfail(c, pv, "%s: must be an object, not %s", path,
		    dtype_name(pv)));
	if (decode_port_name(c, pv, path, &sp->name) == -1 ||
	    decode_proto(c, pv, path, &sp->proto) == -1)
		return (-1);
	if (dget_int(c, pv, path, "port", 1, 65535, &v, &present) == -1)
		return (-1);
	if (!present)
		return (dfail(c, pv, "%s.port: required", path));
	sp->port = (uint16_t)v;
	/* targetPort is not ours: the slices carry the resolved numbers. */
	if (dget_int(c, pv, path, "nodePort", 0, 65535, &v, &present) == -1)
		return (-1);
	sp->node_port = (uint16_t)v;
	if (sp->node_port != 0 && svc->type != SVC_TYPE_NODE_PORT &&
	    svc->type != SVC_TYPE_LOAD_BALANCER)
		return (dfail(c, json_object_object_get(pv, "nodePort"),
		    "%s.nodePort: may only be set when spec.type is NodePort "
		    "or LoadBalancer", path));
	return (0);
}

/*
 * spec.ports[], checked as the API server does: names unique (and required
 * when there is more than one port), (port, protocol) unique.
 */
static int
decode_service_ports(struct dctx *c, json_object *spec, struct svc *svc)
{
	json_object	*ports;
	struct svc_port	*a, *b;
	size_t		 i, j, n;

	if (dget(c, spec, "spec", "ports", json_type_array, &ports) == -1)
		return (-1);
	if (ports == NULL || (n = json_object_array_length(ports)) == 0)
		return (0);
	if ((svc->ports = calloc(n, sizeof(*svc->ports))) == NULL)
		return (dfail(c, NULL, "out of memory"));
	svc->n_ports = n;
	for (i = 0; i < n; i++) {
		json_object *pv = json_object_array_get_idx(ports, i);

		if (decode_service_port(c, pv, i, svc, &svc->ports[i]) == -1)
			return (-1);
		a = &svc->ports[i];
		if (n > 1 && *a->name == '\0')
			return (dfail(c, pv, "spec.ports[%zu].name: required "
			    "when a service has more than one port", i));
		for (j = 0; j < i; j++) {
			b = &svc->ports[j];
			if (strcmp(a->name, b->name) == 0)
				return (dfail(c, pv, "spec.ports[%zu].name: "
				    "\"%s\" duplicates spec.ports[%zu]", i,
				    a->name, j));
			if (a->port == b->port && a->proto == b->proto)
				return (dfail(c, pv, "spec.ports[%zu]: %u/%s "
				    "duplicates spec.ports[%zu]", i, a->port,
				    svc_proto_str(a->proto), j));
		}
	}
	return (0);
}

/*
 * The kuproxy.io/balancer annotation's algorithm.  An unknown name is not
 * worth refusing the service for: it is logged and --balancer applies.
 */
static void
decode_balancer(struct svc *svc)
{
	svc->balancer_kind = SVC_BALANCER_DEFAULT;
	if (svc->balancer == NULL ||
	    svc_balancer_parse(svc->balancer, &svc->balancer_kind) == 0)
		return;
	log_warnx("%s/%s: unknown %s \"%s\" (expected round-robin, "
	    "least-connections or maglev); using the default balancer",
	    svc->namespace, svc->name, ANNOT_BALANCER, svc->balancer);
}

static int
decode_service_meta(struct dctx *c, json_object *obj, struct svc *svc)
{
	json_object	*labels, *annotations, *v;

	if (decode_meta(c, obj, true, &svc->namespace, &svc->name, &labels,
	    &annotations) == -1)
		return (-1);
	/* Any value, even "", hands the service to another proxy. */
	if (labels != NULL && json_object_object_get_ex(labels,
	    LABEL_PROXY_NAME, &v)) {
		if (dget_text(c, labels, "metadata.labels", LABEL_PROXY_NAME,
		    &svc->proxy_name) == -1)
			return (-1);
		if (svc->proxy_name == NULL && dstrdup(c, "",
		    &svc->proxy_name) == -1)
			return (-1);
	}
	if (dget_text(c, annotations, "metadata.annotations", ANNOT_BALANCER,
	    &svc->balancer) == -1 || dget_text(c, annotations,
	    "metadata.annotations", ANNOT_PROXY_PROTOCOL,
	    &svc->proxy_protocol) == -1)
		return (-1);
	decode_balancer(svc);
	return (0);
}

static int
decode_service_spec(struct dctx *c, json_object *obj, struct svc *svc,
    bool *headless)
{
	json_object	*spec, *list;
	int64_t		 v;
	bool		 present;

	if (dget(c, obj, "", "spec", json_type_object, &spec) == -1)
		return (-1);
	if (spec == NULL)
		return (dfail(c, obj, "spec: required"));
	if (decode_type(c, spec, svc) == -1)
		return (-1);
	if (svc->type == SVC_TYPE_EXTERNAL_NAME && dget_text(c, spec, "spec",
	    "externalName", &svc->external_name) == -1)
		return (-1);
	if (decode_cluster_ips(c, spec, svc, headless) == -1)
		return (-1);
	if (dget(c, spec, "spec", "externalIPs", json_type_array, &list) ==
	    -1 || dparse_ip_list(c, list, "spec.externalIPs",
	    &svc->external_ips, &svc->n_external_ips) == -1)
		return (-1);
	if (decode_affinity(c, spec, svc) == -1 ||
	    decode_policy(c, spec, "internalTrafficPolicy",
	    &svc->internal_policy) == -1 ||
	    decode_policy(c, spec, "externalTrafficPolicy",
	    &svc->external_policy) == -1)
		return (-1);
	if (dget_int(c, spec, "spec", "healthCheckNodePort", 0, 65535, &v,
	    &present) == -1)
		return (-1);
	svc->health_check_node_port = (uint16_t)v;
	return (decode_service_ports(c, spec, svc));
}

/*
 * The kuproxy.io/proxy-protocol annotation, once the ports are known.  An
 * unknown value is logged and no header is sent: a backend that expects
 * one refuses the connection (a visible error, pointing at the
 * annotation), while a header sent to a backend that does not expect one
 * would be taken as the client's first bytes.  The header is TCP's only.
 */
static void
decode_proxy_protocol(struct svc *svc)
{
	size_t	 i;

	svc->proxy_protocol_version = SVC_PROXY_PROTOCOL_NONE;
	if (svc->proxy_protocol == NULL)
		return;
	if (strcmp(svc->proxy_protocol, "v1") == 0)
		svc->proxy_protocol_version = SVC_PROXY_PROTOCOL_V1;
	else if (strcmp(svc->proxy_protocol, "v2") == 0)
		svc->proxy_protocol_version = SVC_PROXY_PROTOCOL_V2;
	else {
		log_warnx("%s/%s: unknown %s \"%s\" (expected v1 or v2); "
		    "sending no PROXY header", svc->namespace, svc->name,
		    ANNOT_PROXY_PROTOCOL, svc->proxy_protocol);
		return;
	}
	for (i = 0; i < svc->n_ports; i++)
		if (svc->ports[i].proto != SVC_PROTO_TCP) {
			log_warnx("%s/%s: %s applies to TCP ports only; "
			    "port %u/%s gets no header", svc->namespace,
			    svc->name, ANNOT_PROXY_PROTOCOL,
			    svc->ports[i].port,
			    svc_proto_str(svc->ports[i].proto));
			break;
		}
}

static struct svc *
decode_service_ctx(struct dctx *c, json_object *obj)
{
	struct svc	*svc;
	bool		 headless = false;

	if (!json_object_is_type(obj, json_type_object)) {
		dfail(c, obj, "must be an object, not %s", dtype_name(obj));
		return (NULL);
	}
	if ((svc = svc_new()) == NULL) {
		dfail(c, NULL, "out of memory");
		return (NULL);
	}
	if (decode_service_meta(c, obj, svc) == -1 ||
	    decode_service_spec(c, obj, svc, &headless) == -1 ||
	    decode_ingress(c, obj, svc) == -1)
		goto fail;
	decode_proxy_protocol(svc);
	/*
	 * kube-proxy's ShouldSkipService tests the cluster IP first; we name
	 * ExternalName first because an ExternalName service usually has no
	 * cluster IP and "external name" is the more useful reason to log.
	 * service-proxy-name never reaches upstream's proxier (an informer
	 * filter), so it comes before both.
	 */
	if (svc->proxy_name != NULL)
		svc->skip = SVC_SKIP_PROXY_NAME;
	else if (svc->type == SVC_TYPE_EXTERNAL_NAME)
		svc->skip = SVC_SKIP_EXTERNAL_NAME;
	else if (headless)
		svc->skip = SVC_SKIP_HEADLESS;
	else
		svc->skip = SVC_SKIP_NONE;
	return (svc);
 fail:
	svc_unref(svc);
	return (NULL);
}

/*
 * Decode a core/v1 Service.  Returns a new svc with one reference and ports
 * without endpoints, or NULL with "ns/name: field: problem" in err.
 */
struct svc *
decode_service(json_object *obj, char *err, size_t errlen)
{
	struct dctx	 c;

	dctx_init(&c, obj, "Service", err, errlen);
	return (decode_service_ctx(&c, obj));
}

static int
decode_slice_ports(struct dctx *c, json_object *obj, struct slice *sl)
{
	json_object	*ports, *pv;
	struct slice_port *sp;
	char		 path[32];
	size_t		 i, n;
	int64_t		 v;
	bool		 present;

	if (dget(c, obj, "", "ports", json_type_array, &ports) == -1)
		return (-1);
	if (ports == NULL || (n = json_object_array_length(ports)) == 0)
		return (0);
	if ((sl->ports = calloc(n, sizeof(*sl->ports))) == NULL)
		return (dfail(c, NULL, "out of memory"));
	sl->n_ports = n;
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "ports[%zu]", i);
		pv = json_object_array_get_idx(ports, i);
		sp = &sl->ports[i];
		if (!json_object_is_type(pv, json_type_object))
			return (dfail(c, pv, "%s: must be an object, not %s",
			    path, dtype_name(pv)));
		if (decode_port_name(c, pv, path, &sp->name) == -1 ||
		    decode_proto(c, pv, path, &sp->proto) == -1)
			return (-1);
		/* A null port is legal: such a port is unusable (0). */
		if (dget_int(c, pv, path, "port", 1, 65535, &v, &present) == -1)
			return (-1);
		sp->port = (uint16_t)v;
	}
	return (0);
}

/* hints.forZones[].name, comma-joined; NULL when there are none. */
static int
decode_hint_zones(struct dctx *c, json_object *ev, const char *path,
    char **out)
{
	json_object	*hints, *zones, *zv;
	const char	*name;
	char		 zpath[96];
	size_t		 i, n, len = 0;

	*out = NULL;
	snprintf(zpath, sizeof(zpath), "%s.hints", path);
	if (dget(c, ev, path, "hints", json_type_object, &hints) == -1 ||
	    dget(c, hints, zpath, "forZones", json_type_array, &zones) == -1)
		return (-1);
	if (zones == NULL || (n = json_object_array_length(zones)) == 0)
		return (0);
	for (i = 0; i < n; i++) {
		snprintf(zpath, sizeof(zpath), "%s.hints.forZones[%zu]", path,
		    i);
		zv = json_object_array_get_idx(zones, i);
		if (!json_object_is_type(zv, json_type_object))
			return (dfail(c, zv, "%s: must be an object, not %s",
			    zpath, dtype_name(zv)));
		if (dget_string(c, zv, zpath, "name", &name) == -1)
			return (-1);
		if (name == NULL || *name == '\0' || !text_ok(name) ||
		    strchr(name, ',') != NULL)
			return (dfail(c, zv, "%s.name: required, without "
			    "commas or control characters", zpath));
		len += strlen(name) + 1;
	}
	if ((*out = calloc(1, len)) == NULL)
		return (dfail(c, NULL, "out of memory"));
	for (i = 0; i < n; i++) {
		zv = json_object_array_get_idx(zones, i);
		if (i > 0)
			strlcat(*out, ",", len);
		strlcat(*out, json_object_get_string(json_object_object_get(zv,
		    "name")), len);
	}
	return (0);
}

/*
 * endpoints[i]: addresses[0] only, as kube-proxy does; conditions with the
 * API's nil meanings: ready nil = true, serving nil = true (the
 * discovery/v1 field documentation and kube-proxy's endpointslicecache),
 * terminating nil = false.
 */
static int
decode_slice_endpoint(struct dctx *c, json_object *ev, size_t idx,
    sa_family_t family, struct endpoint *ep)
{
	json_object	*addrs, *cond;
	char		 path[32], apath[48];
	int		 ready, serving, terminating;

	snprintf(path, sizeof(path), "endpoints[%zu]", idx);
	if (!json_object_is_type(ev, json_type_object))
		return (dfail(c, ev, "%s: must be an object, not %s", path,
		    dtype_name(ev)));
	if (dget(c, ev, path, "addresses", json_type_array, &addrs) == -1)
		return (-1);
	if (addrs == NULL || json_object_array_length(addrs) == 0)
		return (dfail(c, ev, "%s.addresses: required", path));
	snprintf(apath, sizeof(apath), "%s.addresses[0]", path);
	if (dparse_ip(c, json_object_array_get_idx(addrs, 0), apath,
	    &ep->ip) == -1)
		return (-1);
	if (ep->ip.family != family)
		return (dfail(c, json_object_array_get_idx(addrs, 0),
		    "%s: \"%.60s\" does not match addressType %s", apath,
		    json_object_get_string(json_object_array_get_idx(addrs, 0)),
		    family == AF_INET ? "IPv4" : "IPv6"));
	snprintf(apath, sizeof(apath), "%s.conditions", path);
	if (dget(c, ev, path, "conditions", json_type_object, &cond) == -1 ||
	    dget_bool(c, cond, apath, "ready", &ready) == -1 ||
	    dget_bool(c, cond, apath, "serving", &serving) == -1 ||
	    dget_bool(c, cond, apath, "terminating", &terminating) == -1)
		return (-1);
	ep->flags = 0;
	if (ready != 0)
		ep->flags |= EP_F_READY;
	if (serving != 0)
		ep->flags |= EP_F_SERVING;
	if (terminating == 1)
		ep->flags |= EP_F_TERMINATING;
	if (dget_text(c, ev, path, "nodeName", &ep->node_name) == -1 ||
	    dget_text(c, ev, path, "zone", &ep->zone) == -1 ||
	    decode_hint_zones(c, ev, path, &ep->hint_zones) == -1)
		return (-1);
	return (0);
}

static int
decode_slice_endpoints(struct dctx *c, json_object *obj, struct slice *sl)
{
	json_object	*eps;
	size_t		 i, n;

	if (dget(c, obj, "", "endpoints", json_type_array, &eps) == -1)
		return (-1);
	if (eps == NULL || (n = json_object_array_length(eps)) == 0)
		return (0);
	if ((sl->endpoints = calloc(n, sizeof(*sl->endpoints))) == NULL)
		return (dfail(c, NULL, "out of memory"));
	sl->n_endpoints = n;
	for (i = 0; i < n; i++)
		if (decode_slice_endpoint(c, json_object_array_get_idx(eps, i),
		    i, sl->family, &sl->endpoints[i]) == -1)
			return (-1);
	return (0);
}

static struct slice *
decode_endpoint_slice_ctx(struct dctx *c, json_object *obj)
{
	struct slice	*sl;
	json_object	*labels, *annotations, *v;
	const char	*type, *svcname;

	if (!json_object_is_type(obj, json_type_object)) {
		dfail(c, obj, "must be an object, not %s", dtype_name(obj));
		return (NULL);
	}
	if ((sl = slice_new()) == NULL) {
		dfail(c, NULL, "out of memory");
		return (NULL);
	}
	if (decode_meta(c, obj, false, &sl->namespace, &sl->name, &labels,
	    &annotations) == -1)
		goto fail;
	if (dget_string(c, labels, "metadata.labels", LABEL_SERVICE_NAME,
	    &svcname) == -1)
		goto fail;
	/* A service name that is no DNS label can never be joined. */
	if (svcname != NULL && !dns_label_ok(svcname)) {
		dfail(c, labels, "metadata.labels." LABEL_SERVICE_NAME
		    ": \"%.80s\" is not a DNS label", svcname);
		goto fail;
	}
	if (dstrdup(c, svcname, &sl->service_name) == -1)
		goto fail;
	if (dget_string(c, obj, "", "addressType", &type) == -1)
		goto fail;
	if (type == NULL) {
		dfail(c, obj, "addressType: required");
		goto fail;
	}
	if (strcmp(type, "IPv4") == 0)
		sl->family = AF_INET;
	else if (strcmp(type, "IPv6") == 0)
		sl->family = AF_INET6;
	else if (strcmp(type, "FQDN") == 0) {
		/* Deprecated and ignored by kube-proxy: nothing to proxy. */
		sl->family = AF_UNSPEC;
		return (sl);
	} else {
		v = json_object_object_get(obj, "addressType");
		dfail(c, v, "addressType: \"%.40s\" is not IPv4, IPv6 or FQDN",
		    type);
		goto fail;
	}
	if (decode_slice_ports(c, obj, sl) == -1 ||
	    decode_slice_endpoints(c, obj, sl) == -1)
		goto fail;
	return (sl);
 fail:
	slice_free(sl);
	return (NULL);
}

/*
 * Decode a discovery.k8s.io/v1 EndpointSlice.  Returns a new slice (the
 * caller frees it with slice_free()) or NULL with a message in err.  An
 * FQDN slice comes back with family AF_UNSPEC and no ports or endpoints.
 */
struct slice *
decode_endpoint_slice(json_object *obj, char *err, size_t errlen)
{
	struct dctx	 c;

	dctx_init(&c, obj, "EndpointSlice", err, errlen);
	return (decode_endpoint_slice_ctx(&c, obj));
}

static const char *
dstr_field(json_object *obj, const char *key)
{
	json_object	*v;

	if (!json_object_object_get_ex(obj, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return (NULL);
	return (json_object_get_string(v));
}

/*
 * The kind of obj: its own "kind", else the list's kind without "List"
 * (ServiceList items carry no kind).  The apiVersion is checked when
 * present, so that a Knative "Service" (serving.knative.dev) is not taken
 * for a core one.
 */
enum decode_kind
decode_kind_of(json_object *obj, const char *list_kind)
{
	const char	*kind, *api;
	size_t		 n;

	if (!json_object_is_type(obj, json_type_object))
		return (DECODE_OTHER);
	kind = dstr_field(obj, "kind");
	api = dstr_field(obj, "apiVersion");
	if (kind == NULL && list_kind != NULL) {
		n = strlen(list_kind);
		if (n > 4 && strcmp(list_kind + n - 4, "List") == 0) {
			if (strncmp(list_kind, "Service", n - 4) == 0 &&
			    n - 4 == strlen("Service"))
				kind = "Service";
			else if (strncmp(list_kind, "EndpointSlice", n - 4) ==
			    0 && n - 4 == strlen("EndpointSlice"))
				kind = "EndpointSlice";
		}
	}
	if (kind == NULL)
		return (DECODE_OTHER);
	if (strcmp(kind, "Service") == 0 && (api == NULL ||
	    strcmp(api, "v1") == 0))
		return (DECODE_SERVICE);
	if (strcmp(kind, "EndpointSlice") == 0 && (api == NULL ||
	    strcmp(api, "discovery.k8s.io/v1") == 0 ||
	    strcmp(api, "discovery.k8s.io/v1beta1") == 0))
		return (DECODE_ENDPOINT_SLICE);
	return (DECODE_OTHER);
}

/* Where we are in a document, for messages. */
struct dwhere {
	const char		*source;	/* file name, or NULL */
	const char		*path;	/* "items[3]", "[2]" or "" */
	const struct decode_sink *sink;
};

static void
dreport(const struct dwhere *w, int line, const char *msg)
{
	char	 buf[DECODE_ERRLEN + 512];
	char	 at[32] = "";

	if (line > 0)
		snprintf(at, sizeof(at), ":%d", line);
	if (w->source != NULL && line > 0)
		snprintf(buf, sizeof(buf), "%s%s: %s", w->source, at, msg);
	else if (w->source != NULL && *w->path != '\0')
		snprintf(buf, sizeof(buf), "%s: %s: %s", w->source, w->path,
		    msg);
	else if (w->source != NULL)
		snprintf(buf, sizeof(buf), "%s: %s", w->source, msg);
	else if (*w->path != '\0')
		snprintf(buf, sizeof(buf), "%s: %s", w->path, msg);
	else
		snprintf(buf, sizeof(buf), "%s", msg);
	if (w->sink->on_error != NULL)
		w->sink->on_error(buf, w->sink->arg);
}

/* One object of a known kind.  Returns 1 when it failed, else 0. */
static int
decode_object(const struct dwhere *w, json_object *obj, enum decode_kind kind)
{
	const struct decode_sink *sink = w->sink;
	char		 msg[DECODE_ERRLEN];
	struct dctx	 c;
	struct svc	*svc;
	struct slice	*sl;

	switch (kind) {
	case DECODE_SERVICE:
		dctx_init(&c, obj, "Service", msg, sizeof(msg));
		if ((svc = decode_service_ctx(&c, obj)) == NULL)
			break;
		if (sink->on_service != NULL)
			sink->on_service(svc, sink->arg);
		else
			svc_unref(svc);
		return (0);
	case DECODE_ENDPOINT_SLICE:
		dctx_init(&c, obj, "EndpointSlice", msg, sizeof(msg));
		if ((sl = decode_endpoint_slice_ctx(&c, obj)) == NULL)
			break;
		if (sink->on_slice != NULL)
			sink->on_slice(sl, sink->arg);
		else
			slice_free(sl);
		return (0);
	case DECODE_OTHER:
		return (0);
	}
	dreport(w, c.line, msg);
	return (1);
}

/* A List, ServiceList or EndpointSliceList.  Returns the failure count. */
static int
decode_list(const struct dwhere *w, json_object *list, const char *kind)
{
	struct dwhere	 iw = *w;
	json_object	*items, *item;
	char		 path[96];
	size_t		 i, n;
	int		 failed = 0;
	bool		 generic = strcmp(kind, "List") == 0;

	if (!json_object_object_get_ex(list, "items", &items) || items == NULL)
		return (0);
	if (!json_object_is_type(items, json_type_array)) {
		dreport(w, yamljson_line(items), "items: must be a list");
		return (1);
	}
	n = json_object_array_length(items);
	iw.path = path;
	for (i = 0; i < n; i++) {
		item = json_object_array_get_idx(items, i);
		snprintf(path, sizeof(path), "%s%sitems[%zu]", w->path,
		    *w->path != '\0' ? "." : "", i);
		if (!json_object_is_type(item, json_type_object)) {
			dreport(&iw, yamljson_line(item), "must be an object");
			failed++;
			continue;
		}
		if (generic && dstr_field(item, "kind") == NULL) {
			dreport(&iw, yamljson_line(item), "kind: required in "
			    "the items of a List");
			failed++;
			continue;
		}
		failed += decode_object(&iw, item, decode_kind_of(item, kind));
	}
	return (failed);
}

/* An object or list at the top of a document or in a top-level array. */
static int
decode_top(const struct dwhere *w, json_object *obj, char *err,
    size_t errlen)
{
	const char	*kind;
	size_t		 n;

	if (!json_object_is_type(obj, json_type_object) ||
	    (kind = dstr_field(obj, "kind")) == NULL) {
		snprintf(err, errlen, "%s%s%s%s%s is not a Kubernetes object "
		    "or list (no kind)", w->source != NULL ? w->source : "",
		    w->source != NULL ? ": " : "", w->path,
		    *w->path != '\0' ? ": " : "",
		    *w->path != '\0' ? "element" : "document");
		return (-1);
	}
	n = strlen(kind);
	if (n >= 4 && strcmp(kind + n - 4, "List") == 0)
		return (decode_list(w, obj, kind));
	return (decode_object(w, obj, decode_kind_of(obj, NULL)));
}

/*
 * Decode a document: one object, a List (mixed kinds, as `kubectl get
 * services,endpointslices -o json` prints), a ServiceList or
 * EndpointSliceList (items without kind), or an array of those.  Decoded
 * objects and per-object errors go to sink; `where` (a file name, may be
 * NULL) prefixes messages, with ":LINE" when the document came from YAML.
 * Kinds other than Service and EndpointSlice are skipped; so is an element
 * of a top-level array that has no kind, counted as failed.  Returns the
 * number of objects that failed, or -1 with err set when the document
 * itself is not a Kubernetes object or list.
 */
int
decode_document(json_object *doc, const char *where,
    const struct decode_sink *sink, char *err, size_t errlen)
{
	struct dwhere	 w = { where, "", sink };
	char		 path[32];
	size_t		 i, n;
	int		 rc, failed = 0;

	if (errlen > 0)
		err[0] = '\0';
	if (!json_object_is_type(doc, json_type_array))
		return (decode_top(&w, doc, err, errlen));
	n = json_object_array_length(doc);
	w.path = path;
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "[%zu]", i);
		/* In an array, a stray element is one failed object. */
		if ((rc = decode_top(&w, json_object_array_get_idx(doc, i), err,
		    errlen)) == -1) {
			if (sink->on_error != NULL)
				sink->on_error(err, sink->arg);
			err[0] = '\0';
			rc = 1;
		}
		failed += rc;
	}
	return (failed);
}
