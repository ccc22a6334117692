/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Health check node ports (spec.healthCheckNodePort): for each
 * LoadBalancer service with externalTrafficPolicy Local, an HTTP server on
 * that port that tells a cloud load balancer whether this node has ready
 * endpoints of the service, as upstream's pkg/proxy/healthcheck does:
 * 200 with the count when it has, 503 when not.
 */
#ifndef KUPROXY_HEALTHCHECK_H
#define KUPROXY_HEALTHCHECK_H

#include <stdbool.h>

struct conf;
struct event_base;
struct svctab;
struct healthcheck;

/*
 * Servers on base, none yet, to listen on conf's --nodeport-addresses
 * (the node's addresses inside them; all when unset), as upstream's;
 * healthy(arg) says whether the proxy itself is healthy (upstream's
 * serviceProxyHealthy: false turns every answer into 503).  NULL on
 * allocation failure.
 */
struct healthcheck	*healthcheck_new(struct event_base *,
			    const struct conf *, bool (*healthy)(void *),
			    void *arg);
/*
 * Serve exactly the health check node ports of tab's services, counting
 * the ready endpoints whose nodeName is node_name.  A port that cannot be
 * bound is logged and tried again at the next call.
 */
void			 healthcheck_sync(struct healthcheck *,
			    const struct svctab *tab, const char *node_name);
/* Close every server. */
void			 healthcheck_free(struct healthcheck *);

#endif
