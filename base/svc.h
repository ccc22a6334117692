/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The service table: what kuproxy proxies, as one immutable snapshot.
 *
 * Sources (watch/) decode Kubernetes objects into struct svc (a Service with
 * its ports) and struct slice (an EndpointSlice), hand them to a builder that
 * joins endpoints to service ports the way kube-proxy does, and publish the
 * resulting struct svctab.  The proxier (proxy/) compares consecutive tables
 * with svctab_diff() and applies the difference.  Nothing here does I/O.
 *
 * A published table and every svc in it are immutable.  Services are
 * reference counted so that consecutive tables share unchanged services.
 */
#ifndef KUPROXY_SVC_H
#define KUPROXY_SVC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define SVC_IPSTRLEN		46	/* INET6_ADDRSTRLEN */
#define SVC_KEYLEN		320	/* "ns/name:port/PROTO" fits */
#define SVC_AFFINITY_DEFAULT_S	10800	/* kube-proxy's ClientIP default */
#define SVC_AFFINITY_MAX_S	86400	/* API server's validation limit */

enum svc_proto {
	SVC_PROTO_TCP = 0,
	SVC_PROTO_UDP,
	SVC_PROTO_SCTP,
};

enum svc_type {
	SVC_TYPE_CLUSTER_IP = 0,
	SVC_TYPE_NODE_PORT,
	SVC_TYPE_LOAD_BALANCER,
	SVC_TYPE_EXTERNAL_NAME,
};

enum svc_affinity {
	SVC_AFFINITY_NONE = 0,
	SVC_AFFINITY_CLIENT_IP,
};

/*
 * How a service port spreads new clients over its endpoints (the
 * kuproxy.io/balancer annotation); DEFAULT means --balancer's choice.
 */
enum svc_balancer {
	SVC_BALANCER_DEFAULT = 0,
	SVC_BALANCER_ROUND_ROBIN,
	SVC_BALANCER_LEAST_CONN,
	SVC_BALANCER_MAGLEV,
};

/* Why a service is in the table but not proxied (kube-proxy's ShouldSkipService). */
enum svc_skip {
	SVC_SKIP_NONE = 0,
	SVC_SKIP_HEADLESS,		/* clusterIP None or empty */
	SVC_SKIP_EXTERNAL_NAME,		/* type ExternalName */
	SVC_SKIP_PROXY_NAME,		/* service.kubernetes.io/service-proxy-name */
};

enum svc_traffic_policy {
	SVC_POLICY_CLUSTER = 0,
	SVC_POLICY_LOCAL,
};

/* The PROXY protocol header sent to endpoints (kuproxy.io/proxy-protocol). */
enum svc_proxy_protocol {
	SVC_PROXY_PROTOCOL_NONE = 0,
	SVC_PROXY_PROTOCOL_V1,		/* text */
	SVC_PROXY_PROTOCOL_V2,		/* binary */
};

/* An IPv4 or IPv6 address; family 0 means "none". */
struct svc_ip {
	sa_family_t	family;		/* AF_INET, AF_INET6 or 0 */
	uint8_t		addr[16];	/* network order; 4 bytes used for v4 */
};

#define EP_F_READY		0x01
#define EP_F_SERVING		0x02
#define EP_F_TERMINATING	0x04

/* One backend address of one service port. */
struct endpoint {
	struct svc_ip	 ip;
	uint16_t	 port;
	uint8_t		 flags;		/* EP_F_* */
	char		*node_name;	/* NULL when unknown */
	char		*zone;		/* NULL when unknown */
	char		*hint_zones;	/* comma-separated hints.forZones, or NULL */
};

struct svc_port {
	char		*name;		/* "" when the port is unnamed */
	enum svc_proto	 proto;
	uint16_t	 port;		/* the service port */
	uint16_t	 node_port;	/* 0 when none */
	struct endpoint	*endpoints;	/* sorted by svc_endpoint_cmp(), unique */
	size_t		 n_endpoints;
};

struct svc {
	int			 refcnt;
	char			*namespace;
	char			*name;
	enum svc_type		 type;
	enum svc_skip		 skip;		/* != NONE: in the table, not proxied */
	char			*external_name;	/* ExternalName target, or NULL */
	char			*proxy_name;	/* the service-proxy-name label, or NULL */
	struct svc_ip		 cluster_ips[2];	/* clusterIPs, primary first */
	size_t			 n_cluster_ips;
	struct svc_ip		*external_ips;
	size_t			 n_external_ips;
	struct svc_ip		*ingress_ips;	/* status.loadBalancer.ingress[].ip */
	size_t			 n_ingress_ips;
	enum svc_affinity	 affinity;
	uint32_t		 affinity_timeout_s;
	enum svc_traffic_policy	 internal_policy;
	enum svc_traffic_policy	 external_policy;
	uint16_t		 health_check_node_port;
	char			*balancer;	/* kuproxy.io/balancer annotation, or NULL */
	enum svc_balancer	 balancer_kind;	/* balancer, decoded */
	char			*proxy_protocol; /* kuproxy.io/proxy-protocol, or NULL */
	enum svc_proxy_protocol	 proxy_protocol_version; /* decoded; TCP only */
	struct svc_port		*ports;
	size_t			 n_ports;
};

/* A decoded EndpointSlice (discovery.k8s.io/v1), before joining. */
struct slice_port {
	char		*name;		/* "" when unnamed */
	enum svc_proto	 proto;
	uint16_t	 port;		/* 0 when unset: such a port is unusable */
};

struct slice {
	char			*namespace;
	char			*name;
	char			*service_name;	/* kubernetes.io/service-name, or NULL */
	sa_family_t		 family;	/* AF_INET or AF_INET6 */
	struct slice_port	*ports;
	size_t			 n_ports;
	struct endpoint		*endpoints;	/* port is 0 here: ports come from ports[] */
	size_t			 n_endpoints;
	uint64_t		 serial;	/* set by slice_new(), never reused */
};

/* The snapshot: services sorted by namespace/name. */
struct svctab {
	int		  refcnt;
	struct svc	**svcs;
	size_t		  n_svcs;
};

/* Addresses. */
int		 svc_ip_parse(const char *, struct svc_ip *);	/* 0 or -1 */
const char	*svc_ip_str(const struct svc_ip *, char *, size_t);
int		 svc_ip_cmp(const struct svc_ip *, const struct svc_ip *);
const char	*svc_proto_str(enum svc_proto);			/* "TCP" ... */
int		 svc_proto_parse(const char *, enum svc_proto *);
const char	*svc_type_str(enum svc_type);
/* "round-robin", "least-connections", "maglev" (DEFAULT: "default"). */
const char	*svc_balancer_str(enum svc_balancer);
/* One of those names (not "default") to its value: 0, or -1 if unknown. */
int		 svc_balancer_parse(const char *, enum svc_balancer *);

/* Services and slices. */
struct svc	*svc_new(void);
struct svc	*svc_ref(struct svc *);
void		 svc_unref(struct svc *);
bool		 svc_is_proxied(const struct svc *);
/* "ns/name:portname/TCP" (":portname" left out when the name is empty). */
const char	*svc_port_key(const struct svc *, const struct svc_port *,
		    char *, size_t);
/* "ns/name:portname" as upstream's rule comments print it. */
const char	*svc_port_display(const struct svc *, const struct svc_port *,
		    char *, size_t);
int		 svc_endpoint_cmp(const struct endpoint *, const struct endpoint *);
bool		 svc_endpoint_usable(const struct endpoint *);
void		 svc_endpoint_clear(struct endpoint *);
struct slice	*slice_new(void);
void		 slice_free(struct slice *);

/* Tables. */
struct svctab	*svctab_ref(struct svctab *);
void		 svctab_unref(struct svctab *);
struct svc	*svctab_find(const struct svctab *, const char *ns, const char *name);

/*
 * Build a table from decoded services and slices: endpoints are joined to
 * each service port from the slices labelled with the service's name, by port
 * name and protocol, merged across slices and de-duplicated (a ready copy wins
 * over a not-ready one).  Takes ownership of every svc (its ports must not have
 * endpoints yet) and of nothing else; slices stay the caller's.  When `prev` is
 * given, a service equal to the one in `prev` is replaced by a reference to the
 * old object, so unchanged services keep their identity.  Duplicated
 * namespace/name: the later one wins, with a warning in the log.
 * Returns a table with one reference, or NULL on allocation failure.
 */
struct svctab	*svctab_build(struct svc **svcs, size_t n_svcs,
		    struct slice *const *slices, size_t n_slices,
		    const struct svctab *prev);

/*
 * Collects what a source decoded, then builds a table from it with
 * svctab_build().  Services are the builder's until built; slices are the
 * builder's only when owns_slices is set (a source that keeps its own
 * slices, like the API cache, lends them).
 */
struct svctab_builder {
	struct svc	**svcs;
	size_t		  n_svcs, cap_svcs;
	struct slice	**slices;
	size_t		  n_slices, cap_slices;
	bool		  owns_slices;
};

/* Add a service (taken over; freed on failure).  0 or -1 (ENOMEM). */
int		 svctab_builder_add_svc(struct svctab_builder *, struct svc *);
/* Add a slice (taken over if owns_slices; freed then on failure).  0 or -1. */
int		 svctab_builder_add_slice(struct svctab_builder *, struct slice *);
/*
 * svctab_build() over what was added.  The services go to the table (or are
 * freed if it fails); slices stay until svctab_builder_clear().
 */
struct svctab	*svctab_builder_build(struct svctab_builder *,
		    const struct svctab *prev);
/* Free what the builder still holds; it can be used again. */
void		 svctab_builder_clear(struct svctab_builder *);

/*
 * Incremental building, for sources that keep their decoded objects between
 * tables (the file source's per-item cache, the API source's informers).
 * The memo remembers, for each service of the last table it built, which
 * spec object and which slices (by serial) its joined svc came from; the
 * next build joins again only the services whose spec or slices changed
 * and shares every other one, by reference, with the previous table.
 */
struct svctab_memo;

/* An empty memo (the first build joins everything), or NULL (ENOMEM). */
struct svctab_memo *svctab_memo_new(void);
/* Drop what the memo holds (NULL is fine); built tables stay valid. */
void		 svctab_memo_free(struct svctab_memo *);
/*
 * Build a table from decoded services (specs: ports without endpoints) and
 * slices, with svctab_build()'s join and its rule for duplicated names (the
 * later one wins, with a warning).  Neither specs nor slices are taken
 * over or changed: the memo takes a reference on each spec it used, and a
 * spec must not change once passed (decode a new one instead); slices are
 * only read during the call and remembered by serial.  A service joined
 * again with the same result keeps the identity of its previous svc.
 * Returns a table with one reference, or NULL on allocation failure (the
 * memo is then as it was).
 */
struct svctab	*svctab_memo_build(struct svctab_memo *,
		    struct svc *const *specs, size_t n_specs,
		    struct slice *const *slices, size_t n_slices);
/* How many services the last svctab_memo_build() joined anew. */
size_t		 svctab_memo_n_joined(const struct svctab_memo *);

/* Same services, by identity (svctab_build keeps it) or by value. */
bool		 svctab_same(const struct svctab *, const struct svctab *);

/* Deep equality of two services (identity, spec and endpoints). */
bool		 svc_equal(const struct svc *, const struct svc *);

/*
 * The difference between two tables, per proxied service port, as the
 * proxier needs it: a port whose portals (addresses, node port, protocol,
 * affinity) change is SVC_DIFF_CHANGED; one whose only change is in its
 * endpoints is SVC_DIFF_ENDPOINTS.  Unproxied services count as absent.
 */
enum svc_diff_kind {
	SVC_DIFF_ADDED = 0,
	SVC_DIFF_REMOVED,
	SVC_DIFF_CHANGED,
	SVC_DIFF_ENDPOINTS,
};

struct svc_diff_entry {
	enum svc_diff_kind	 kind;
	struct svc		*old_svc;	/* NULL for ADDED */
	const struct svc_port	*old_port;
	struct svc		*new_svc;	/* NULL for REMOVED */
	const struct svc_port	*new_port;
};

typedef void (*svc_diff_cb)(const struct svc_diff_entry *, void *arg);

/*
 * Call cb for each service port that differs between old and new (either
 * may be NULL, meaning empty), in key order.  Returns the number of calls.
 */
size_t		 svctab_diff(const struct svctab *old, const struct svctab *new,
		    svc_diff_cb cb, void *arg);

/* Summary counts, for the one log line per table change. */
struct svctab_stats {
	size_t	n_services, n_proxied, n_ports, n_endpoints;
};
void		 svctab_stats(const struct svctab *, struct svctab_stats *);

#endif
