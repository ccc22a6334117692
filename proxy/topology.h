/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which endpoints of a service port serve which traffic on this node:
 * internalTrafficPolicy and externalTrafficPolicy Local keep the endpoints
 * on this node (EndpointSlice endpoints[].nodeName), and topology hints
 * (hints.forZones) keep those meant for this node's zone, as upstream's
 * pkg/proxy/topology.go CategorizeEndpoints.  Pure: the proxier asks, and
 * hands the answer to the balancers and the health check node ports.
 */
#ifndef KUPROXY_TOPOLOGY_H
#define KUPROXY_TOPOLOGY_H

#include <stdbool.h>
#include <stddef.h>

#include "base/svc.h"

/* Where this node is: its name (never NULL) and zone (NULL: unknown). */
struct topology_node {
	const char	*name;
	const char	*zone;
};

/* Traffic to the clusterIP keeps to this node's endpoints. */
bool	topology_internal_local(const struct svc *);
/*
 * Traffic from outside (node port, externalIPs, load-balancer IPs) keeps
 * to this node's endpoints: externalTrafficPolicy Local on a NodePort or
 * LoadBalancer service (upstream's ExternalPolicyLocal).
 */
bool	topology_external_local(const struct svc *);
/*
 * Whether the port needs a proxy port of its own for external traffic:
 * it is reachable from outside and either policy is Local.  Both Local
 * could share one set of endpoints, but not one answer when there is
 * none: internal traffic is refused there, external traffic dropped.
 */
bool	topology_needs_external_port(const struct svc *,
	    const struct svc_port *);
/*
 * The endpoints of port that serve internal (external false) or external
 * traffic, copied shallowly into out (room for port->n_endpoints): with a
 * Local policy those whose nodeName is node->name; else, when every ready
 * endpoint has zone hints and one is for node->zone, those hinted for it;
 * else all.  Readiness is left to the balancer.  Returns how many.
 */
size_t	topology_select(const struct svc *, const struct svc_port *port,
	    bool external, const struct topology_node *node,
	    struct endpoint *out);
/*
 * The ready endpoints on this node, over every port of svc, as upstream's
 * health check node port counts them (LocalReadyEndpoints).
 */
size_t	topology_local_ready(const struct svc *, const char *node_name);

#endif
