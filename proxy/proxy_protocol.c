/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PROXY protocol headers, versions 1 (text) and 2 (binary), as HAProxy's
 * doc/proxy-protocol.txt defines them, for the client address a backend
 * of a kuproxy.io/proxy-protocol service receives.  tcp_relay.c sends the
 * header; this module only builds it, and finds the destination the
 * client dialled.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "proxy/proxy_protocol.h"

/* <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h>. */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST		80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST	80
#endif

#define PP2_SIGNATURE		"\r\n\r\n\0\r\nQUIT\n"
#define PP2_SIGNATURE_LEN	12
#define PP2_HEADER_LEN		16	/* signature, ver_cmd, fam, len */
#define PP2_VERSION_PROXY	0x21	/* version 2, PROXY command */
#define PP2_VERSION_LOCAL	0x20	/* version 2, LOCAL command */
#define PP2_TCP4		0x11	/* AF_INET, STREAM */
#define PP2_TCP6		0x21	/* AF_INET6, STREAM */
#define PP2_UNSPEC		0x00

/* One end of the connection, IPv4-mapped IPv6 turned into IPv4. */
struct pp_end {
	int		 family;	/* AF_INET, AF_INET6, or 0 */
	uint8_t		 addr[16];	/* network order */
	uint16_t	 port;		/* network order */
};

static void
pp_end_from(const struct sockaddr *sa, struct pp_end *e)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

	memset(e, 0, sizeof(*e));
	if (sa->sa_family == AF_INET) {
		e->family = AF_INET;
		memcpy(e->addr, &sin->sin_addr, 4);
		e->port = sin->sin_port;
	} else if (sa->sa_family == AF_INET6 &&
	    IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
		e->family = AF_INET;
		memcpy(e->addr, &sin6->sin6_addr.s6_addr[12], 4);
		e->port = sin6->sin6_port;
	} else if (sa->sa_family == AF_INET6) {
		e->family = AF_INET6;
		memcpy(e->addr, &sin6->sin6_addr, 16);
		e->port = sin6->sin6_port;
	}
}

static ssize_t
pp_build_v1(const struct pp_end *src, const struct pp_end *dst,
    uint8_t *buf, size_t len)
{
	char text[PROXY_PROTOCOL_MAX + 1];
	char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
	int n;

	if (src->family != dst->family)
		n = snprintf(text, sizeof(text), "PROXY UNKNOWN\r\n");
	else {
		inet_ntop(src->family, src->addr, s, sizeof(s));
		inet_ntop(dst->family, dst->addr, d, sizeof(d));
		n = snprintf(text, sizeof(text), "PROXY %s %s %s %u %u\r\n",
		    src->family == AF_INET ? "TCP4" : "TCP6", s, d,
		    ntohs(src->port), ntohs(dst->port));
	}
	if (n < 0 || (size_t)n >= sizeof(text) || (size_t)n > len)
		return -1;
	memcpy(buf, text, (size_t)n);
	return n;
}

static ssize_t
pp_build_v2(const struct pp_end *src, const struct pp_end *dst,
    uint8_t *buf, size_t len)
{
	size_t alen, addrs;
	uint8_t *p;

	if (src->family != dst->family)
		alen = 0;
	else
		alen = src->family == AF_INET ? 4 : 16;
	addrs = alen == 0 ? 0 : 2 * alen + 4;
	if (len < PP2_HEADER_LEN + addrs)
		return -1;
	memcpy(buf, PP2_SIGNATURE, PP2_SIGNATURE_LEN);
	buf[12] = alen == 0 ? PP2_VERSION_LOCAL : PP2_VERSION_PROXY;
	buf[13] = alen == 0 ? PP2_UNSPEC : alen == 4 ? PP2_TCP4 : PP2_TCP6;
	buf[14] = (uint8_t)(addrs >> 8);
	buf[15] = (uint8_t)addrs;
	p = buf + PP2_HEADER_LEN;
	if (alen != 0) {
		memcpy(p, src->addr, alen);
		memcpy(p + alen, dst->addr, alen);
		memcpy(p + 2 * alen, &src->port, 2);
		memcpy(p + 2 * alen + 2, &dst->port, 2);
	}
	return (ssize_t)(PP2_HEADER_LEN + addrs);
}

/* See proxy_protocol.h. */
ssize_t
proxy_protocol_build(enum svc_proxy_protocol version,
    const struct sockaddr *src, const struct sockaddr *dst, uint8_t *buf,
    size_t len)
{
	struct pp_end s, d;

	pp_end_from(src, &s);
	pp_end_from(dst, &d);
	if (s.family == 0 || d.family == 0)
		return -1;
	switch (version) {
	case SVC_PROXY_PROTOCOL_V1:
		return pp_build_v1(&s, &d, buf, len);
	case SVC_PROXY_PROTOCOL_V2:
		return pp_build_v2(&s, &d, buf, len);
	case SVC_PROXY_PROTOCOL_NONE:
		break;
	}
	return -1;
}

/*
 * See proxy_protocol.h.  Conntrack answers SO_ORIGINAL_DST for every
 * tracked connection, NATed or not; without conntrack (no portal rules,
 * --iptables-backend none) the client dialled the socket's own address.
 */
int
proxy_protocol_orig_dst(int client_fd, struct sockaddr_storage *ss)
{
	socklen_t len = sizeof(*ss);

	memset(ss, 0, sizeof(*ss));
	if (getsockname(client_fd, (struct sockaddr *)ss, &len) == -1)
		return -1;
	len = sizeof(*ss);
	if (ss->ss_family == AF_INET)
		(void)getsockopt(client_fd, SOL_IP, SO_ORIGINAL_DST, ss, &len);
	else if (ss->ss_family == AF_INET6)
		(void)getsockopt(client_fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST,
		    ss, &len);
	return 0;
}
