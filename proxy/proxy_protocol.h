/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and
 * 2) that tells a backend who the client was: the first bytes a TCP
 * session sends to an endpoint of a service annotated
 * kuproxy.io/proxy-protocol.  Building a header is pure; finding the
 * address the client connected to asks the client's socket.
 */
#ifndef KUPROXY_PROXY_PROTOCOL_H
#define KUPROXY_PROXY_PROTOCOL_H

#include <sys/types.h>
#include <sys/socket.h>

#include <stddef.h>
#include <stdint.h>

#include "base/svc.h"

/*
 * The longest header built here: v1 "PROXY TCP6 " and two full IPv6
 * addresses and ports (104, the spec's bound), v2 16 + 36 bytes.
 */
#define PROXY_PROTOCOL_MAX	108

/*
 * Write the version's header for a TCP connection from src to dst into
 * buf.  IPv4-mapped IPv6 addresses count as IPv4.  Addresses of different
 * families give v1's "PROXY UNKNOWN" or v2's LOCAL command, which a
 * backend takes as "no client address".  Returns the header's length, or
 * -1 when the buffer is too small or the version or a family is not one
 * the protocol carries.
 */
ssize_t	 proxy_protocol_build(enum svc_proxy_protocol,
	    const struct sockaddr *src, const struct sockaddr *dst,
	    uint8_t *buf, size_t len);

/*
 * The address a client connected to, for the header's destination: the
 * original destination before a REDIRECT (a portal's ClusterIP:port), or
 * the socket's own address when no NAT rule was involved.  0 or -1.
 */
int	 proxy_protocol_orig_dst(int client_fd, struct sockaddr_storage *);

#endif
