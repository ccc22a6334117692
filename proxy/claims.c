/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Holding node ports and local service addresses with bound sockets
 * (portal_claim_port() makes the sockets).  Owns which claims a service
 * port holds and reconciles them with what its spec asks for.
 */
#include "config.h"

#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "proxy/claims.h"
#include "proxy/portal.h"

int
claims_local_addresses(struct svc_ip **out, size_t *n)
{
	struct ifaddrs	*ifa, *p;
	struct svc_ip	*v;
	size_t		 count = 0;

	*out = NULL;
	*n = 0;
	if (getifaddrs(&ifa) == -1) {
		log_warn("cannot list the node's addresses");
		return -1;
	}
	for (p = ifa; p != NULL; p = p->ifa_next)
		count++;
	if ((v = calloc(count + 1, sizeof(*v))) == NULL) {
		freeifaddrs(ifa);
		return -1;
	}
	for (p = ifa; p != NULL; p = p->ifa_next) {
		if (p->ifa_addr == NULL)
			continue;
		if (p->ifa_addr->sa_family == AF_INET) {
			v[*n].family = AF_INET;
			memcpy(v[*n].addr, &((struct sockaddr_in *)
			    (void *)p->ifa_addr)->sin_addr, 4);
			(*n)++;
		} else if (p->ifa_addr->sa_family == AF_INET6) {
			v[*n].family = AF_INET6;
			memcpy(v[*n].addr, &((struct sockaddr_in6 *)
			    (void *)p->ifa_addr)->sin6_addr, 16);
			(*n)++;
		}
	}
	freeifaddrs(ifa);
	*out = v;
	return 0;
}

void
claim_set_init(struct claim_set *cs)
{
	memset(cs, 0, sizeof(*cs));
	cs->node_fd = -1;
}

static bool
ip_in(const struct svc_ip *ip, const struct svc_ip *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (svc_ip_cmp(ip, &v[i]) == 0)
			return true;
	return false;
}

static bool
claim_in(const struct ip_claim *v, size_t n, const struct svc_ip *ip)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (svc_ip_cmp(&v[i].ip, ip) == 0)
			return true;
	return false;
}

static struct ip_claim *
claim_find(const struct claim_set *cs, const struct svc_ip *ip)
{
	size_t i;

	for (i = 0; i < cs->n_ips; i++)
		if (svc_ip_cmp(&cs->ips[i].ip, ip) == 0)
			return &cs->ips[i];
	return NULL;
}

static void
claim_node_port(struct claim_set *cs, enum svc_proto proto,
    uint16_t node_port)
{
	if (cs->node_port == node_port && cs->node_fd != -1)
		return;
	if (cs->node_fd != -1)
		close(cs->node_fd);
	cs->node_fd = -1;
	cs->node_port = 0;
	if (node_port == 0)
		return;
	if ((cs->node_fd = portal_claim_port(proto, NULL, node_port)) != -1)
		cs->node_port = node_port;
}

void
claim_set_update(struct claim_set *cs, const char *key, enum svc_proto proto,
    uint16_t node_port, uint16_t port, const struct svc_ip *ips,
    size_t n_ips, const struct svc_ip *local, size_t n_local)
{
	struct ip_claim	*v;
	size_t		 i, n = 0;

	claim_node_port(cs, proto, node_port);
	if ((v = calloc(n_ips + 1, sizeof(*v))) == NULL)
		return;
	for (i = 0; i < n_ips; i++) {
		struct ip_claim *old;

		if (!ip_in(&ips[i], local, n_local) || claim_in(v, n, &ips[i]))
			continue;
		v[n].ip = ips[i];
		v[n].fd = -1;
		if ((old = claim_find(cs, &ips[i])) != NULL && old->fd != -1) {
			v[n].fd = old->fd;
			old->fd = -1;
		} else if ((v[n].fd = portal_claim_port(proto, &ips[i],
		    port)) == -1) {
			char ip[SVC_IPSTRLEN];

			log_warnx("%s: %s:%u is held by another program; no "
			    "portal for that address until it is free", key,
			    svc_ip_str(&ips[i], ip, sizeof(ip)), port);
		}
		n++;
	}
	for (i = 0; i < cs->n_ips; i++)
		if (cs->ips[i].fd != -1)
			close(cs->ips[i].fd);
	free(cs->ips);
	cs->ips = v;
	cs->n_ips = n;
}

bool
claim_set_lost_ip(const struct claim_set *cs, const struct svc_ip *ip)
{
	const struct ip_claim *c = claim_find(cs, ip);

	return c != NULL && c->fd == -1;
}

void
claim_set_release(struct claim_set *cs)
{
	size_t i;

	if (cs->node_fd != -1)
		close(cs->node_fd);
	for (i = 0; i < cs->n_ips; i++)
		if (cs->ips[i].fd != -1)
			close(cs->ips[i].fd);
	free(cs->ips);
	claim_set_init(cs);
}
