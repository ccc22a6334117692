/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy/proxy_protocol.c: PROXY protocol v1 and v2 headers, byte for byte
 * as HAProxy's proxy-protocol.txt spells them.
 */
#include "config.h"

#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "proxy/proxy_protocol.h"

static struct sockaddr_storage
sa(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
	} else {
		cr_assert_eq(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
	}
	return ss;
}

static ssize_t
build(enum svc_proxy_protocol v, const char *src, uint16_t sport,
    const char *dst, uint16_t dport, uint8_t *buf, size_t len)
{
	struct sockaddr_storage s = sa(src, sport), d = sa(dst, dport);

	return proxy_protocol_build(v, (struct sockaddr *)&s,
	    (struct sockaddr *)&d, buf, len);
}

static const uint8_t signature[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

Test(proxy_protocol, v1_ipv4)
{
	const char *want = "PROXY TCP4 10.0.0.7 10.96.0.10 51234 80\r\n";
	uint8_t buf[PROXY_PROTOCOL_MAX];
	ssize_t n;

	n = build(SVC_PROXY_PROTOCOL_V1, "10.0.0.7", 51234, "10.96.0.10", 80,
	    buf, sizeof(buf));
	cr_assert_eq(n, (ssize_t)strlen(want));
	cr_assert_arr_eq(buf, want, (size_t)n);
}

Test(proxy_protocol, v1_ipv6)
{
	const char *want = "PROXY TCP6 fd00::7 fd00:96::a 1 65535\r\n";
	uint8_t buf[PROXY_PROTOCOL_MAX];
	ssize_t n;

	n = build(SVC_PROXY_PROTOCOL_V1, "fd00::7", 1, "fd00:96::a", 65535,
	    buf, sizeof(buf));
	cr_assert_eq(n, (ssize_t)strlen(want));
	cr_assert_arr_eq(buf, want, (size_t)n);
}

Test(proxy_protocol, v1_longest_fits)
{
	const char *a = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe";
	uint8_t buf[PROXY_PROTOCOL_MAX];

	/* The spec's bound: 104 bytes with CRLF. */
	cr_assert_eq(build(SVC_PROXY_PROTOCOL_V1, a, 65535, a, 65535, buf,
	    sizeof(buf)), 104);
}

Test(proxy_protocol, v1_mapped_is_ipv4)
{
	const char *want = "PROXY TCP4 192.0.2.1 192.0.2.2 1000 2000\r\n";
	uint8_t buf[PROXY_PROTOCOL_MAX];
	ssize_t n;

	n = build(SVC_PROXY_PROTOCOL_V1, "::ffff:192.0.2.1", 1000,
	    "192.0.2.2", 2000, buf, sizeof(buf));
	cr_assert_eq(n, (ssize_t)strlen(want));
	cr_assert_arr_eq(buf, want, (size_t)n);
}

Test(proxy_protocol, v1_mixed_families_unknown)
{
	uint8_t buf[PROXY_PROTOCOL_MAX];
	ssize_t n;

	n = build(SVC_PROXY_PROTOCOL_V1, "192.0.2.1", 1, "fd00::1", 2, buf,
	    sizeof(buf));
	cr_assert_eq(n, 15);
	cr_assert_arr_eq(buf, "PROXY UNKNOWN\r\n", 15);
}

Test(proxy_protocol, v2_ipv4)
{
	const uint8_t tail[] = {
		0x21, 0x11, 0x00, 0x0c,
		10, 0, 0, 7,  10, 96, 0, 10,
		0xc8, 0x22,  0x00, 0x50,	/* 51234, 80 */
	};
	uint8_t buf[PROXY_PROTOCOL_MAX];
	ssize_t n;

	n = build(SVC_PROXY_PROTOCOL_V2, "10.0.0.7", 51234, "10.96.0.10", 80,
	    buf, sizeof(buf));
	cr_assert_eq(n, 28);
	cr_assert_arr_eq(buf, signature, 12);
	cr_assert_arr_eq(buf + 12, tail, sizeof(tail));
}

Test(proxy_protocol, v2_ipv6)
{
	uint8_t want[16 + 36];
	uint8_t buf[PROXY_PROTOCOL_MAX];
	ssize_t n;

	memcpy(want, signature, 12);
	want[12] = 0x21;
	want[13] = 0x21;
	want[14] = 0x00;
	want[15] = 36;
	inet_pton(AF_INET6, "fd00::7", want + 16);
	inet_pton(AF_INET6, "fd00:96::a", want + 32);
	want[48] = 0x00; want[49] = 0x01;	/* 1 */
	want[50] = 0x01; want[51] = 0xbb;	/* 443 */
	n = build(SVC_PROXY_PROTOCOL_V2, "fd00::7", 1, "fd00:96::a", 443,
	    buf, sizeof(buf));
	cr_assert_eq(n, (ssize_t)sizeof(want));
	cr_assert_arr_eq(buf, want, sizeof(want));
}

Test(proxy_protocol, v2_mixed_families_local)
{
	uint8_t buf[PROXY_PROTOCOL_MAX];
	ssize_t n;

	n = build(SVC_PROXY_PROTOCOL_V2, "192.0.2.1", 1, "fd00::1", 2, buf,
	    sizeof(buf));
	cr_assert_eq(n, 16);
	cr_assert_arr_eq(buf, signature, 12);
	cr_assert_eq(buf[12], 0x20);
	cr_assert_eq(buf[13], 0x00);
	cr_assert_eq(buf[14], 0);
	cr_assert_eq(buf[15], 0);
}

Test(proxy_protocol, buffer_too_small)
{
	uint8_t buf[PROXY_PROTOCOL_MAX];

	cr_assert_eq(build(SVC_PROXY_PROTOCOL_V1, "10.0.0.7", 51234,
	    "10.96.0.10", 80, buf, 20), -1);
	cr_assert_eq(build(SVC_PROXY_PROTOCOL_V2, "10.0.0.7", 51234,
	    "10.96.0.10", 80, buf, 27), -1);
	cr_assert_eq(build(SVC_PROXY_PROTOCOL_V2, "10.0.0.7", 51234,
	    "10.96.0.10", 80, buf, 28), 28);
}

Test(proxy_protocol, none_or_bad_family)
{
	struct sockaddr_storage s = sa("10.0.0.7", 1), d = sa("10.0.0.8", 2);
	uint8_t buf[PROXY_PROTOCOL_MAX];

	cr_assert_eq(proxy_protocol_build(SVC_PROXY_PROTOCOL_NONE,
	    (struct sockaddr *)&s, (struct sockaddr *)&d, buf, sizeof(buf)),
	    -1);
	d.ss_family = AF_UNIX;
	cr_assert_eq(proxy_protocol_build(SVC_PROXY_PROTOCOL_V1,
	    (struct sockaddr *)&s, (struct sockaddr *)&d, buf, sizeof(buf)),
	    -1);
}

Test(proxy_protocol, orig_dst_without_nat_is_local_address)
{
	struct sockaddr_storage local, got;
	struct sockaddr_in *sin = (struct sockaddr_in *)&local;
	socklen_t len = sizeof(local);
	int lfd, cfd, afd;

	memset(&local, 0, sizeof(local));
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_neq(lfd = socket(AF_INET, SOCK_STREAM, 0), -1);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&local, sizeof(*sin)), 0);
	cr_assert_eq(listen(lfd, 1), 0);
	cr_assert_eq(getsockname(lfd, (struct sockaddr *)&local, &len), 0);
	cr_assert_neq(cfd = socket(AF_INET, SOCK_STREAM, 0), -1);
	cr_assert_eq(connect(cfd, (struct sockaddr *)&local, len), 0);
	cr_assert_neq(afd = accept(lfd, NULL, NULL), -1);
	cr_assert_eq(proxy_protocol_orig_dst(afd, &got), 0);
	cr_assert_eq(got.ss_family, AF_INET);
	cr_assert_eq(((struct sockaddr_in *)&got)->sin_port, sin->sin_port);
	cr_assert_eq(((struct sockaddr_in *)&got)->sin_addr.s_addr,
	    htonl(INADDR_LOOPBACK));
	close(afd);
	close(cfd);
	close(lfd);
}
