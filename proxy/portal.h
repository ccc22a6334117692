/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Service portals: every iptables rule kuproxy owns, in kube-proxy
 * userspace mode's chains, written with one iptables-restore --noflush run
 * per sync that rewrites only kuproxy's own chains.  The only module that
 * runs iptables (and conntrack).
 *
 * nat:    PREROUTING -> KUBE-PORTALS-CONTAINER (first),
 *         KUBE-NODEPORT-CONTAINER (last, -m addrtype --dst-type LOCAL);
 *         OUTPUT -> KUBE-PORTALS-HOST (first), KUBE-NODEPORT-HOST (last,
 *         dst-type LOCAL).
 * filter: INPUT -> KUBE-NODEPORT-NON-LOCAL (first): accept new connections to
 *         proxy ports on hosts whose INPUT rejects by default.
 *
 * portal_render.c turns service ports into restore input (pure);
 * portal.c picks the backend and runs the tools; portal_job.c runs
 * portal_sync() off the event loop.
 *
 * A struct portal has no lock.  portal_sync(), portal_flush_conntrack_udp()
 * and portal_remove() change what it keeps between calls (host IPs, whether
 * IPv6 chains exist, warnings given), so one thread at a time may call
 * them; while a portal_job runs, that is the job's thread.  What
 * portal_new() set and nothing changes afterwards (the backend, bind_ip,
 * the CIDR lists, no_physdev) may be read from any thread.
 */
#ifndef KUPROXY_PORTAL_H
#define KUPROXY_PORTAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"
#include "base/svc.h"

/* One service port to expose: its spec and the proxy port behind it. */
struct portal_port {
	const struct svc	*svc;
	const struct svc_port	*port;
	uint16_t		 proxy_port;
	/*
	 * Where traffic from outside (node port, externalIPs, load-balancer
	 * IPs) goes when a traffic policy gives it other endpoints: 0 means
	 * proxy_port.  external_drop: no endpoint serves it here, so it is
	 * dropped (filter INPUT), as kube-proxy drops it, not refused.
	 */
	uint16_t		 external_proxy_port;
	bool			 external_drop;
};

/*
 * What the rules depend on besides the table.
 *
 * bind_ip decides which families get rules: 0.0.0.0 (or family 0) serves
 * IPv4 only, :: serves both (dual-stack listeners), a specific address only
 * its own family.  With an any address pods are REDIRECTed and node-local
 * traffic is DNATed to host_ip/host_ip6; with a specific one both are
 * DNATed to bind_ip.
 */
struct portal_env {
	/* DNAT targets for node-local traffic; family 0: none, no HOST rules */
	struct svc_ip		 host_ip;	/* IPv4 */
	struct svc_ip		 host_ip6;	/* IPv6 */
	struct svc_ip		 bind_ip;	/* 0.0.0.0, ::: REDIRECT pods */
	const struct conf_cidr	*nodeport_cidrs;	/* empty: all local */
	size_t			 n_nodeport_cidrs;
	const struct conf_cidr	*external_ip_allow;	/* empty: all allowed */
	size_t			 n_external_ip_allow;
	bool			 no_physdev;	/* no xt_physdev match */
};

/* Chain names, as upstream's userspace proxier named them. */
#define PORTAL_CHAIN_PORTALS_CONTAINER	"KUBE-PORTALS-CONTAINER"
#define PORTAL_CHAIN_PORTALS_HOST	"KUBE-PORTALS-HOST"
#define PORTAL_CHAIN_NODEPORT_CONTAINER	"KUBE-NODEPORT-CONTAINER"
#define PORTAL_CHAIN_NODEPORT_HOST	"KUBE-NODEPORT-HOST"
#define PORTAL_CHAIN_NODEPORT_NON_LOCAL	"KUBE-NODEPORT-NON-LOCAL"

/* A jump from a built-in chain into one of ours. */
struct portal_jump {
	const char	*table;		/* "nat" or "filter" */
	const char	*from;		/* built-in chain */
	const char	*chain;		/* ours */
	const char	*args;		/* matches, as iptables-save prints */
	bool		 first;		/* inserted first (-I), else -A */
};

#define PORTAL_N_JUMPS	5
extern const struct portal_jump portal_jumps[PORTAL_N_JUMPS];

/*
 * Render the iptables-restore input for one address family (AF_INET or
 * AF_INET6) that makes kuproxy's chains hold exactly the rules for ports.
 * Rules are grouped by chain in the order iptables-save lists the chains,
 * so the "-A" lines compare equal to iptables-save output.  The jumps into
 * the chains are not part of it (portal_sync keeps those).
 * Pure: no I/O.  Returns a malloc'd NUL-terminated string, or NULL.
 */
char		*portal_render(const struct portal_env *, int family,
		    const struct portal_port *ports, size_t n_ports);

/*
 * portal_render() with extra lines (each ending in a newline, or NULL)
 * placed just before each table's COMMIT: portal_sync's jump repairs.
 */
char		*portal_render_with(const struct portal_env *, int family,
		    const struct portal_port *ports, size_t n_ports,
		    const char *nat_extra, const char *filter_extra);

/* Which portal of a service port a rule serves. */
enum portal_rule_for {
	PORTAL_FOR_CLUSTER_IP = 0,
	PORTAL_FOR_EXTERNAL_IP,
	PORTAL_FOR_INGRESS_IP,		/* status.loadBalancer.ingress[].ip */
	PORTAL_FOR_NODE_PORT,
	PORTAL_FOR_NODE_PORT_ACCEPT,	/* filter: the proxy port let in */
};

/* One rule as portal_render() writes it, for explaining it. */
struct portal_rule {
	enum portal_rule_for	 what;
	const struct svc_ip	*ip;	/* the portal's; NULL: the node port */
	const char		*table;	/* "nat" or "filter" */
	const char		*chain;	/* one of ours */
	const char		*line;	/* "-A CHAIN ...", no newline */
};

typedef void	(*portal_rule_cb)(const struct portal_rule *, void *arg);

/*
 * Call cb, in render order, for each rule that portal_render() would write
 * for the one service port pp in family: the very lines, so that what is
 * explained is what is installed.  When proxy_port_text is not NULL it is
 * written where the proxy port goes (pp->proxy_port may then be 0): a
 * placeholder for a port not assigned yet.  Pure.  Returns the number of
 * rules.
 */
size_t		 portal_render_port_rules(const struct portal_env *,
		    int family, const struct portal_port *pp,
		    const char *proxy_port_text, portal_rule_cb cb, void *arg);

/*
 * Whether externalIP ip may get portals: it lies inside one of
 * env->external_ip_allow, or that list is empty (CVE-2020-8554).
 */
bool		 portal_external_ip_allowed(const struct portal_env *,
		    const struct svc_ip *ip);

struct portal;

/*
 * Choose the iptables backend (conf->iptables_backend; auto picks the one
 * that already holds rules, legacy where nftables is missing, and logs the
 * choice), find the host IP, and check that iptables-restore runs (and
 * whether the physdev match loads).  Touches no rule outside a scratch
 * chain it deletes again; existing portal rules stay until the first
 * portal_sync replaces them.  Returns NULL with err when no backend works.
 * With CONF_IPT_NONE every call below is a no-op that succeeds.
 */
struct portal	*portal_new(const struct conf *, char *err, size_t errlen);
/* "legacy", "nft" or "none". */
const char	*portal_backend_name(const struct portal *);
/* The environment the rules are rendered with (host IPs, bind IP...). */
const struct portal_env *portal_env(const struct portal *);

/*
 * The host IP of family (AF_INET or AF_INET6) that node-local traffic is
 * DNATed to, found as portal_new() finds it (upstream's
 * ChooseHostInterface): an address of the default route's interface, else
 * the first usable non-loopback one.  Reads the routing table and the
 * interfaces only.  Returns 0 with *out set, or -1 (out zeroed).
 */
int		 portal_find_host_ip(int family, struct svc_ip *out);

/*
 * Make the kernel's rules match ports: one iptables-save to find the jumps,
 * then one iptables-restore --noflush per family that rewrites our chains and
 * repairs the jumps (each exactly once) in the same transaction.  IPv6 runs
 * only once the IPv6 render has rules (or our IPv6 chains exist).  Listeners
 * must already be open on the proxy ports.  Returns 0, or -1 after logging
 * the tool's error output (the caller retries with back-off; the previous
 * rules stay in force).
 */
int		 portal_sync(struct portal *, const struct portal_port *ports,
		    size_t n_ports);

/*
 * Delete UDP conntrack entries whose original destination is ip (and port,
 * when non-zero), so that clients stop being NATed to a proxy port that is
 * gone.  Runs conntrack(8); its absence is logged once.
 */
void		 portal_flush_conntrack_udp(struct portal *,
		    const struct svc_ip *ip, uint16_t port);

/* Remove every rule and chain of ours (clean exit).  0 or -1. */
int		 portal_remove(struct portal *);
/* Free p (NULL is fine); leaves the rules in place. */
void		 portal_free(struct portal *);

/*
 * --cleanup: remove kuproxy's jumps and chains from iptables-legacy and
 * iptables-nft, IPv4 and IPv6, whatever is installed; "not found" is fine.
 * Returns 0, or -1 when something that exists could not be removed.
 */
int		 portal_cleanup_all(void);

/*
 * Hold a bound socket on a node port (and on local external/ingress IPs) so
 * no other process can take it.  ip NULL or family 0 means every address
 * (dual-stack [::], else 0.0.0.0).  The socket is bound without
 * SO_REUSEADDR and never listens: with SO_REUSEADDR Linux would let any
 * other SO_REUSEADDR socket bind (and listen on) the same port.  Returns an
 * fd, or -1 (logged: port conflict).  Closing the fd releases it.
 */
int		 portal_claim_port(enum svc_proto proto,
		    const struct svc_ip *ip, uint16_t port);

#endif
