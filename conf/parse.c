/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The syntaxes of configuration values, as kube-proxy accepts them: Go
 * durations (time.ParseDuration), proxy port ranges (utilnet.PortRange),
 * CIDRs (net.ParseCIDR) and plain decimal numbers.  Pure functions with no
 * state; the flag table (flags.c) decides which setting takes which.
 * Messages quote the value and say what was expected; the caller adds the
 * flag or the file:line and field.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "conf/conf.h"
#include "conf/parse.h"

#define DURATION_EXAMPLE	"expected a duration such as 30s"
#define CIDR_EXAMPLE		\
	"expected a CIDR such as 10.0.0.0/8 or fd00::/64"
#define PORT_RANGE_EXPECTED	\
	"expected BEGIN-END or BEGIN+OFFSET with ports 1-65535"

/*
 * The nanoseconds in one of Go's duration units (time.ParseDuration), or 0
 * for an unknown unit.  Go also takes the micro sign in both spellings.
 */
static uint64_t
duration_unit_ns(const char *unit, size_t len)
{
	static const struct {
		const char	*name;
		uint64_t	 ns;
	} units[] = {
		{ "ns", 1 },
		{ "us", 1000 },
		{ "\xc2\xb5s", 1000 },		/* U+00B5 MICRO SIGN */
		{ "\xce\xbcs", 1000 },		/* U+03BC GREEK SMALL MU */
		{ "ms", 1000 * 1000 },
		{ "s", 1000 * 1000 * 1000 },
		{ "m", 60ULL * 1000 * 1000 * 1000 },
		{ "h", 3600ULL * 1000 * 1000 * 1000 },
	};
	size_t i;

	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strlen(units[i].name) == len &&
		    memcmp(units[i].name, unit, len) == 0)
			return units[i].ns;
	return 0;
}

/*
 * Parse s as Go's time.ParseDuration does ("250ms", "1m30s", "1.5s", "2h";
 * a sign; "0" alone needs no unit) into milliseconds, rounding a sub-
 * millisecond rest up so that a non-zero duration never becomes 0.  Unlike
 * Go, a bare number other than 0 gets a message saying a unit is needed
 * (kube-proxy's own error for "30" is just "missing unit"), and negative
 * durations are refused: no setting here can use one.  Returns 0, or -1
 * with '"S": reason' in err.
 */
int
conf_parse_duration_ms(const char *s, uint32_t *ms, char *err, size_t errlen)
{
	const uint64_t	 max_ns = UINT64_C(1) << 63;	/* Go's limit */
	const char	*p = s;
	uint64_t	 total = 0, ms64;
	bool		 negative = false;

	if (*p == '-' || *p == '+')
		negative = *p++ == '-';
	if (strcmp(p, "0") == 0) {
		*ms = 0;
		return 0;
	}
	if (*p == '\0')
		goto invalid;
	while (*p != '\0') {
		uint64_t	 v = 0, frac = 0, unit;
		double		 scale = 1;
		bool		 digits = false, overflow = false;
		const char	*u;

		for (; isdigit((unsigned char)*p); p++, digits = true) {
			if (v > (max_ns - 9) / 10) {
				overflow = true;
				continue;
			}
			v = v * 10 + (uint64_t)(*p - '0');
		}
		if (*p == '.') {
			/* Digits past what fits lose precision, as in Go. */
			for (p++; isdigit((unsigned char)*p); p++,
			    digits = true) {
				if (frac > (max_ns - 9) / 10)
					continue;
				frac = frac * 10 + (uint64_t)(*p - '0');
				scale *= 10;
			}
		}
		if (!digits)
			goto invalid;
		for (u = p; *p != '\0' && *p != '.' &&
		    !isdigit((unsigned char)*p); p++)
			;
		if (p == u) {
			snprintf(err, errlen, "\"%s\": " DURATION_EXAMPLE
			    "; a number needs a unit (ns, us, ms, s, m or h)",
			    s);
			return -1;
		}
		if ((unit = duration_unit_ns(u, (size_t)(p - u))) == 0) {
			snprintf(err, errlen, "\"%s\": " DURATION_EXAMPLE
			    "; unknown unit \"%.*s\" (use ns, us, ms, s, m or "
			    "h)", s, (int)(p - u), u);
			return -1;
		}
		if (overflow || v > max_ns / unit)
			goto too_long;
		v *= unit;
		if (frac > 0)
			v += (uint64_t)((double)frac * ((double)unit / scale));
		if (v > max_ns - total)
			goto too_long;
		total += v;
	}
	if (negative && total > 0) {
		snprintf(err, errlen, "\"%s\" must not be negative", s);
		return -1;
	}
	ms64 = total / 1000000 + (total % 1000000 != 0);
	if (ms64 > UINT32_MAX)
		goto too_long;
	*ms = (uint32_t)ms64;
	return 0;

 invalid:
	snprintf(err, errlen, "\"%s\": " DURATION_EXAMPLE, s);
	return -1;
 too_long:
	snprintf(err, errlen, "\"%s\" is too long (at most 1193h)", s);
	return -1;
}

/*
 * Format ms as Go's Duration.String() would ("250ms", "1.5s", "15m0s") into
 * buf, for messages that show a setting kuproxy holds.
 */
void
conf_format_duration(uint32_t ms, char *buf, size_t len)
{
	uint32_t h = ms / 3600000, m = ms / 60000 % 60;
	uint32_t s = ms / 1000 % 60, frac = ms % 1000;
	char	 sec[16];

	if (ms < 1000) {
		snprintf(buf, len, ms == 0 ? "0s" : "%ums", ms);
		return;
	}
	if (frac == 0)
		snprintf(sec, sizeof(sec), "%us", s);
	else if (frac % 100 == 0)
		snprintf(sec, sizeof(sec), "%u.%01us", s, frac / 100);
	else if (frac % 10 == 0)
		snprintf(sec, sizeof(sec), "%u.%02us", s, frac / 10);
	else
		snprintf(sec, sizeof(sec), "%u.%03us", s, frac);
	if (h > 0)
		snprintf(buf, len, "%uh%um%s", h, m, sec);
	else if (m > 0)
		snprintf(buf, len, "%um%s", m, sec);
	else
		snprintf(buf, len, "%s", sec);
}

/*
 * Parse the len bytes at s as a decimal number of digits only, at most max,
 * into *out.  strtoul alone would take signs, spaces and hex prefixes that
 * kube-proxy refuses.  Returns 0, or -1 without a message.
 */
int
conf_parse_uint(const char *s, size_t len, unsigned long max,
    unsigned long *out)
{
	unsigned long v = 0;
	size_t i;

	if (len == 0)
		return -1;
	for (i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		if (v > (max - (unsigned long)(s[i] - '0')) / 10)
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	*out = v;
	return 0;
}

/*
 * Parse a proxy port range as kube-proxy's utilnet.PortRange does:
 * "BEGIN-END", "BEGIN+OFFSET" (END = BEGIN + OFFSET) or a single port, with
 * surrounding spaces ignored.  Empty, "0", "0-0" and "0+0" give 0/0, which
 * means kernel-chosen ephemeral ports.  Any other port must be 1-65535.
 * Returns 0 with *begin and *end (inclusive), or -1 with '"S": reason'.
 */
int
conf_parse_port_range(const char *s, uint16_t *begin, uint16_t *end,
    char *err, size_t errlen)
{
	const char	*p = s, *sep;
	size_t		 len;
	unsigned long	 lo, hi;

	while (isspace((unsigned char)*p))
		p++;
	len = strlen(p);
	while (len > 0 && isspace((unsigned char)p[len - 1]))
		len--;
	if (len == 0) {
		*begin = *end = 0;
		return 0;
	}
	sep = memchr(p, '-', len);
	if (sep == NULL)
		sep = memchr(p, '+', len);
	if (sep == NULL) {
		if (conf_parse_uint(p, len, 65535, &lo) == -1)
			goto invalid;
		hi = lo;
	} else {
		if (conf_parse_uint(p, (size_t)(sep - p), 65535, &lo) == -1 ||
		    conf_parse_uint(sep + 1, len - (size_t)(sep + 1 - p), 65535,
		    &hi) == -1)
			goto invalid;
		if (*sep == '+')
			hi += lo;
	}
	if (lo == 0 && hi == 0) {
		*begin = *end = 0;
		return 0;
	}
	if (lo == 0 || hi > 65535)
		goto invalid;
	if (hi < lo) {
		snprintf(err, errlen, "\"%s\": end port %lu is below begin "
		    "port %lu", s, hi, lo);
		return -1;
	}
	*begin = (uint16_t)lo;
	*end = (uint16_t)hi;
	return 0;

 invalid:
	snprintf(err, errlen, "\"%s\": " PORT_RANGE_EXPECTED, s);
	return -1;
}

/*
 * Parse an IPv4 or IPv6 CIDR.  As Go's net.ParseCIDR (which kube-proxy
 * uses), host bits may be set: "10.0.0.1/24" is the network 10.0.0.0/24.
 * Returns 0 with *out filled, or -1 with '"S": reason' in err.
 */
int
conf_parse_cidr(const char *s, struct conf_cidr *out, char *err,
    size_t errlen)
{
	char		 addr[INET6_ADDRSTRLEN];
	const char	*slash = strchr(s, '/');
	unsigned long	 len;
	int		 bits, i;

	memset(out, 0, sizeof(*out));
	if (slash == NULL || (size_t)(slash - s) >= sizeof(addr)) {
		snprintf(err, errlen, "\"%s\": " CIDR_EXAMPLE "%s", s,
		    slash == NULL ? " (a /prefix length is needed)" : "");
		return -1;
	}
	memcpy(addr, s, (size_t)(slash - s));
	addr[slash - s] = '\0';
	if (inet_pton(AF_INET, addr, out->addr) == 1) {
		out->family = AF_INET;
		bits = 32;
	} else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
		out->family = AF_INET6;
		bits = 128;
	} else
		goto invalid;
	if (conf_parse_uint(slash + 1, strlen(slash + 1), (unsigned long)bits,
	    &len) == -1)
		goto invalid;
	out->prefix_len = (int)len;
	for (i = 0; i < bits / 8; i++) {
		int keep = out->prefix_len - i * 8;

		if (keep <= 0)
			out->addr[i] = 0;
		else if (keep < 8)
			out->addr[i] &= (uint8_t)(0xff << (8 - keep));
	}
	return 0;

 invalid:
	memset(out, 0, sizeof(*out));
	snprintf(err, errlen, "\"%s\": " CIDR_EXAMPLE, s);
	return -1;
}

/*
 * Whether addr (4 bytes for AF_INET, 16 for AF_INET6) lies in cidr.  An
 * address of the other family is never inside.
 */
bool
conf_cidr_contains(const struct conf_cidr *cidr, int family,
    const uint8_t *addr)
{
	int whole = cidr->prefix_len / 8, rest = cidr->prefix_len % 8;

	if (family != cidr->family)
		return false;
	if (memcmp(cidr->addr, addr, (size_t)whole) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((cidr->addr[whole] ^ addr[whole]) &
	    (uint8_t)(0xff << (8 - rest))) == 0;
}
