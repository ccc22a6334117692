/* SPDX-License-Identifier: Apache-2.0 */
/*
 * UDP service ports: one socket per service port, and per client address
 * an association with its own connected socket towards one endpoint, so
 * that replies go back to the right client, sent from the service socket
 * (conntrack then rewrites their source to the service address).
 * Associations expire after --udp-timeout of silence, are capped per port
 * and in total (unassured associations go before assured ones, oldest
 * first: conntrack's early drop, see udp_relay.c), and are dropped at once
 * when their endpoint leaves.  Datagrams are relayed whole, up to 65507
 * bytes over IPv4 (65527 over IPv6), in recvmmsg/sendmmsg batches.
 */
#ifndef KUPROXY_UDP_RELAY_H
#define KUPROXY_UDP_RELAY_H

#include <stddef.h>

/* The largest datagram relayed; anything the kernel truncates is dropped. */
#define UDP_RELAY_MAX_DATAGRAM	65535

/*
 * An association whose client spoke last (a reply is due) lives at least
 * this long after that datagram, even when --udp-timeout is shorter:
 * upstream's 250 ms lost every slower reply (k/k#14939).  5 s is the
 * resolver's own wait (glibc RES_TIMEOUT).  Once the backend has answered,
 * --udp-timeout alone applies.
 */
#define UDP_RELAY_REPLY_WAIT_MS	5000

struct pport_lane;
struct udp_port;

/*
 * Serve the UDP socket fd (from listener_bind(), taken over) for the
 * lane's pport on the lane's event loop (the caller's), whose balancer
 * says where new associations go.  Keeps a pointer to the pport without a
 * reference: the proxier frees the udp_port before the pport goes.  Reads
 * pp->lb, pp->port, pp->removed and the lane's env (base and conf) and
 * writes pp->stats.  Returns NULL with err (fd closed).
 */
struct udp_port	*udp_port_new(struct pport_lane *lane, int fd, char *err,
		    size_t errlen);

/*
 * The balancer's endpoints changed (call after lb_update() and after
 * pp->port points at the new spec): drop associations whose endpoint the
 * balancer would no longer pick, at once.  A removed port (pp->removed) or
 * one without endpoints drops every association.
 */
void		 udp_port_endpoints_changed(struct udp_port *);

/* Close the socket and every association; NULL is fine. */
void		 udp_port_free(struct udp_port *);

/* Associations over every port and worker (for the cap and for status). */
size_t		 udp_relay_associations(void);

/*
 * For tests: relay datagrams of at most len bytes (0 restores
 * UDP_RELAY_MAX_DATAGRAM), so that truncation can be provoked.
 */
void		 udp_relay_set_max_datagram(size_t len);

#endif
