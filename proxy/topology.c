/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Endpoint selection by node and zone: the traffic policies' Local and
 * topology hints, as upstream's pkg/proxy/topology.go.  Owns no state;
 * readiness and the terminating fallback stay with the balancer (lb.c),
 * which sees only the endpoints chosen here.
 */
#include "config.h"

#include <string.h>

#include "proxy/topology.h"

/* See topology.h. */
bool
topology_internal_local(const struct svc *svc)
{
	return svc->internal_policy == SVC_POLICY_LOCAL;
}

/* See topology.h. */
bool
topology_external_local(const struct svc *svc)
{
	return (svc->type == SVC_TYPE_NODE_PORT ||
	    svc->type == SVC_TYPE_LOAD_BALANCER) &&
	    svc->external_policy == SVC_POLICY_LOCAL;
}

/* See topology.h. */
bool
topology_needs_external_port(const struct svc *svc,
    const struct svc_port *port)
{
	bool	exposed = port->node_port != 0 || svc->n_external_ips > 0 ||
		    svc->n_ingress_ips > 0;

	return exposed &&
	    (topology_internal_local(svc) || topology_external_local(svc));
}

static bool
topology_is_local(const struct endpoint *ep, const char *node_name)
{
	return ep->node_name != NULL && node_name != NULL &&
	    strcmp(ep->node_name, node_name) == 0;
}

/* Whether the comma-separated list holds zone. */
static bool
topology_hinted_for(const struct endpoint *ep, const char *zone)
{
	const char	*p = ep->hint_zones;
	size_t		 len = strlen(zone);

	while (p != NULL && *p != '\0') {
		const char	*end = strchr(p, ',');
		size_t		 n;

		n = end != NULL ? (size_t)(end - p) : strlen(p);

		if (n == len && strncmp(p, zone, len) == 0)
			return true;
		p = end != NULL ? end + 1 : NULL;
	}
	return false;
}

/*
 * Upstream's canUseTopology: every ready endpoint has hints, the node
 * has a zone, and some ready endpoint is hinted for it.
 */
static bool
topology_use_hints(const struct svc_port *port, const char *zone)
{
	size_t	i;
	bool	for_zone = false;

	if (zone == NULL || *zone == '\0')
		return false;
	for (i = 0; i < port->n_endpoints; i++) {
		const struct endpoint *ep = &port->endpoints[i];

		if (!(ep->flags & EP_F_READY))
			continue;
		if (ep->hint_zones == NULL || *ep->hint_zones == '\0')
			return false;
		if (topology_hinted_for(ep, zone))
			for_zone = true;
	}
	return for_zone;
}

/* See topology.h. */
size_t
topology_select(const struct svc *svc, const struct svc_port *port,
    bool external, const struct topology_node *node, struct endpoint *out)
{
	bool	local = external ? topology_external_local(svc) :
		    topology_internal_local(svc);
	bool	hints = !local && topology_use_hints(port, node->zone);
	size_t	i, n = 0;

	for (i = 0; i < port->n_endpoints; i++) {
		const struct endpoint *ep = &port->endpoints[i];

		if (local && !topology_is_local(ep, node->name))
			continue;
		if (hints && !topology_hinted_for(ep, node->zone))
			continue;
		out[n++] = *ep;
	}
	return n;
}

/* See topology.h. */
size_t
topology_local_ready(const struct svc *svc, const char *node_name)
{
	size_t	i, j, n = 0;

	for (i = 0; i < svc->n_ports; i++)
		for (j = 0; j < svc->ports[i].n_endpoints; j++) {
			const struct endpoint *ep = &svc->ports[i].endpoints[j];

			if ((ep->flags & EP_F_READY) &&
			    topology_is_local(ep, node_name))
				n++;
		}
	return n;
}
