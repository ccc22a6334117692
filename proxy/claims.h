/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Port claims: what kube-proxy's userspace mode called "holding the port
 * open".  A service port's nodePort, and its port on every externalIP or
 * load-balancer IP that is one of this node's addresses, are reserved by a
 * bound socket, so no other program can take them while the portal rules
 * send their traffic to kuproxy.  A claim another program already holds is
 * reported and retried at each sync; its rules are left out meanwhile.
 */
#ifndef KUPROXY_CLAIMS_H
#define KUPROXY_CLAIMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/svc.h"

struct ip_claim {
	struct svc_ip	ip;
	int		fd;		/* -1: another program holds it */
};

/* The claims of one service port. */
struct claim_set {
	uint16_t	 node_port;	/* claimed, or 0 */
	int		 node_fd;
	struct ip_claim	*ips;		/* local external and ingress IPs */
	size_t		 n_ips;
};

/* This node's addresses, from getifaddrs(); 0 or -1 (logged). */
int	claims_local_addresses(struct svc_ip **out, size_t *n);

void	claim_set_init(struct claim_set *);
/*
 * Hold what key's port needs now: its node port (when node_port is set)
 * and its port on every address of ips[] that is local.  Claims no longer
 * needed are released; ones already held are kept.  Conflicts are logged
 * once per claim.
 */
void	claim_set_update(struct claim_set *, const char *key,
	    enum svc_proto proto, uint16_t node_port, uint16_t port,
	    const struct svc_ip *ips, size_t n_ips,
	    const struct svc_ip *local, size_t n_local);
/* Whether ip is local and another program holds ip:port. */
bool	claim_set_lost_ip(const struct claim_set *, const struct svc_ip *ip);
/* Release everything. */
void	claim_set_release(struct claim_set *);

#endif
