/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Command-line flags: one table row per flag (name, value kind, default,
 * help, setter and the struct conf member it fills), in the manner of
 * redis's static_configs[] and nginx's directive tables.  The same rows set
 * the defaults, parse argv, generate --help, and apply the config file's
 * fields (config_file.c), so a flag's default, checks and documentation
 * cannot drift apart.  The value syntaxes themselves are in parse.c.
 *
 * Names, defaults and value syntax follow kube-proxy (pflag): "--flag value"
 * and "--flag=value", '_' and '-' interchangeable in names, "-v N", switches
 * that take an optional "=true|false".  This module only parses; it starts
 * nothing and prints nothing but --help.
 */
#include "config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/log.h"
#include "conf/conf.h"
#include "conf/flags.h"
#include "conf/parse.h"

/* The word a flag such as --relay-mode takes, and the enum value it means. */
struct flag_word {
	const char	*word;
	int		 value;
};

struct flag;

/*
 * Sets the member of c that row f describes from value.  Returns 0, or -1
 * with '"VALUE": what was expected' in err (no flag name, see flags.h).
 */
typedef int	 flag_set_fn(struct conf *c, const struct flag *f,
		    const char *value, char *err, size_t errlen);

struct flag {
	const char		*name;		/* without the dashes */
	char			 shorthand;	/* -v, -h; 0 when none */
	const char		*value_name;	/* for --help; NULL: a switch */
	flag_set_fn		*set;
	size_t			 offset;	/* member of struct conf */
	size_t			 count_offset;	/* CIDR lists: their count */
	long			 arg;		/* minimum, or command */
	const struct flag_word	*words;		/* enum flags: the words */
	const char		*default_text;	/* NULL: nothing to apply */
	const char		*help;
};

static flag_set_fn	flag_set_string;
static flag_set_fn	flag_set_bind_address;
static flag_set_fn	flag_set_host_port;
static flag_set_fn	flag_set_duration;
static flag_set_fn	flag_set_uint32;
static flag_set_fn	flag_set_verbosity;
static flag_set_fn	flag_set_enum;
static flag_set_fn	flag_set_port_range;
static flag_set_fn	flag_set_cidrs;
static flag_set_fn	flag_set_command;
static flag_set_fn	flag_set_bool;
static flag_set_fn	flag_set_proxy_mode;

static const struct flag_word iptables_backend_words[] = {
	{ "auto", CONF_IPT_AUTO },
	{ "legacy", CONF_IPT_LEGACY },
	{ "nft", CONF_IPT_NFT },
	{ "none", CONF_IPT_NONE },
	{ NULL, 0 },
};

static const struct flag_word relay_mode_words[] = {
	{ "splice", CONF_RELAY_SPLICE },
	{ "copy", CONF_RELAY_COPY },
	{ NULL, 0 },
};

static const struct flag_word balancer_words[] = {
	{ "round-robin", SVC_BALANCER_ROUND_ROBIN },
	{ "least-connections", SVC_BALANCER_LEAST_CONN },
	{ "maglev", SVC_BALANCER_MAGLEV },
	{ NULL, 0 },
};

static const struct flag_word logging_format_words[] = {
	{ "text", LOG_FORMAT_TEXT },
	{ "json", LOG_FORMAT_JSON },
	{ NULL, 0 },
};

#define M(member)	offsetof(struct conf, member)

/* One row per kind of value; the macros keep each table row on a line. */
#define STRING_FLAG(n, vname, member, def, h)				\
	{ .name = n, .value_name = vname, .set = flag_set_string,	\
	  .offset = M(member), .default_text = def, .help = h }
#define DURATION_FLAG(n, member, min_ms, def, h)			\
	{ .name = n, .value_name = "DURATION", .set = flag_set_duration, \
	  .offset = M(member), .arg = min_ms, .default_text = def, .help = h }
#define UINT32_FLAG(n, member, min, def, h)				\
	{ .name = n, .value_name = "N", .set = flag_set_uint32,	\
	  .offset = M(member), .arg = min, .default_text = def, .help = h }
#define ENUM_FLAG(n, vname, member, w, def, h)				\
	{ .name = n, .value_name = vname, .set = flag_set_enum,	\
	  .offset = M(member), .words = w, .default_text = def, .help = h }
#define HOST_PORT_FLAG(n, member, def, h)				\
	{ .name = n, .value_name = "IP:PORT", .set = flag_set_host_port, \
	  .offset = M(member), .default_text = def, .help = h }
#define CIDRS_FLAG(n, member, count, h)				\
	{ .name = n, .value_name = "CIDRS", .set = flag_set_cidrs,	\
	  .offset = M(member), .count_offset = M(count),		\
	  .default_text = "", .help = h }
#define BOOL_FLAG(n, member, h)					\
	{ .name = n, .set = flag_set_bool, .offset = M(member),		\
	  .default_text = "false", .help = h }
#define COMMAND_FLAG(n, sh, cmd, h)					\
	{ .name = n, .shorthand = sh, .set = flag_set_command,		\
	  .arg = cmd, .help = h }

/*
 * Every flag, in the order --help lists them (alphabetical, as kube-proxy's
 * pflag does).  Defaults are kube-proxy's (v1alpha1/defaults.go) where the
 * setting exists upstream.
 */
static const struct flag flags[] = {
	ENUM_FLAG("balancer", "round-robin|least-connections|maglev",
	    balancer, balancer_words, "round-robin",
	    "How a service port spreads new clients over its endpoints, for "
	    "services without a kuproxy.io/balancer annotation: in turn, to "
	    "the one with the fewest open connections, or by a consistent "
	    "hash of the client IP (Maglev), so that an endpoint change "
	    "moves few clients.  ClientIP affinity applies with each."),
	{ .name = "bind-address", .value_name = "IP",
	  .set = flag_set_bind_address, .offset = M(bind_address),
	  .default_text = "0.0.0.0",
	  .help = "The IP address the per-service proxy sockets listen on "
	  "(0.0.0.0 for every IPv4 interface, :: for every IPv6 one).  "
	  "Localhost is refused, as kube-proxy does." },
	COMMAND_FLAG("cleanup", 0, CONF_CMD_CLEANUP,
	    "Remove every iptables rule and chain kuproxy installs, then "
	    "exit."),
	STRING_FLAG("config", "PATH", config_file, "",
	    "A KubeProxyConfiguration file (YAML or JSON).  Flags given on "
	    "the command line override its fields."),
	DURATION_FLAG("config-sync-period", config_sync_period_ms, 1, "15m",
	    "How often the full list of services and endpoints is fetched "
	    "again from the API server.  Must be greater than 0."),
	STRING_FLAG("context", "NAME", context, "",
	    "The kubeconfig context to use instead of its current-context."),
	CIDRS_FLAG("external-ip-allow", external_ip_allow,
	    n_external_ip_allow,
	    "Comma-separated CIDRs that a service's externalIPs must fall in "
	    "to get portals; other external IPs are logged and skipped.  "
	    "Empty allows every address, as kube-proxy does."),
	HOST_PORT_FLAG("healthz-bind-address", healthz_bind_address,
	    "0.0.0.0:10256",
	    "The IP:PORT of the health check server ([::]:10256 for IPv6).  "
	    "Empty disables it."),
	COMMAND_FLAG("help", 'h', CONF_CMD_HELP,
	    "Print this help and exit."),
	STRING_FLAG("hostname-override", "NAME", hostname_override, "",
	    "The name of this node, if not the host name."),
	ENUM_FLAG("iptables-backend", "auto|legacy|nft|none", iptables_backend,
	    iptables_backend_words, "auto",
	    "Which iptables to run for portal rules; auto detects the one "
	    "the system uses, none installs no rules (listeners only)."),
	DURATION_FLAG("iptables-min-sync-period", min_sync_period_ms, 0, "1s",
	    "The shortest time between two syncs of the portal rules."),
	DURATION_FLAG("iptables-sync-period", sync_period_ms, 1, "30s",
	    "The longest time between two syncs of the portal rules.  Must be "
	    "greater than 0 and not shorter than --iptables-min-sync-period."),
	BOOL_FLAG("json", output_json,
	    "With the status and explain commands: print JSON (a versioned "
	    "document) instead of a table or text."),
	STRING_FLAG("kubeconfig", "PATH", kubeconfig, "",
	    "A kubeconfig file with the API server and credentials.  Without "
	    "it and without --services-file, the in-cluster configuration is "
	    "used."),
	ENUM_FLAG("logging-format", "text|json", logging_format,
	    logging_format_words, "text",
	    "The log line format."),
	STRING_FLAG("master", "URL", master, "",
	    "The API server's address; overrides the one in --kubeconfig."),
	UINT32_FLAG("max-connections", tcp_max_connections, 0, "0",
	    "The most TCP connections relayed at once, over every service "
	    "port (HAProxy's maxconn); a client above it is reset at once "
	    "and counted in kuproxy_tcp_connections_rejected_total.  0 sets "
	    "no cap: running out of descriptors pauses accept instead."),
	HOST_PORT_FLAG("metrics-bind-address", metrics_bind_address,
	    "127.0.0.1:10249",
	    "The IP:PORT of the metrics server ([::]:10249 for IPv6).  Empty "
	    "disables it."),
	CIDRS_FLAG("nodeport-addresses", nodeport_cidrs, n_nodeport_cidrs,
	    "Comma-separated CIDRs of the local addresses NodePorts are "
	    "served on.  Empty means every local address."),
	{ .name = "proxy-mode", .value_name = "userspace",
	  .set = flag_set_proxy_mode, .default_text = "userspace",
	  .help = "Accepted so that kube-proxy command lines keep working; "
	  "kuproxy is always kube-proxy's userspace mode." },
	{ .name = "proxy-port-range", .value_name = "RANGE",
	  .set = flag_set_port_range, .default_text = "",
	  .help = "The local ports proxy sockets may use: BEGIN-END, "
	  "BEGIN+OFFSET or a single port.  Empty, 0 or 0-0 lets the kernel "
	  "pick ephemeral ports." },
	ENUM_FLAG("relay-mode", "splice|copy", relay_mode, relay_mode_words,
	    "splice",
	    "How TCP bytes are moved: splice(2) through pipes without "
	    "copying, or buffered read/write."),
	STRING_FLAG("services-file", "PATH", services_file, "",
	    "Take services and endpoints from this file (kubectl get -o "
	    "json or yaml output) instead of the API server; it is reloaded "
	    "when it changes."),
	DURATION_FLAG("shutdown-grace-period", shutdown_grace_ms, 0, "30s",
	    "On SIGTERM, how long open connections may finish before they "
	    "are closed."),
	STRING_FLAG("status-socket", "PATH", status_socket,
	    "/run/kuproxy/status.sock",
	    "A unix socket that answers status queries.  Empty disables "
	    "it."),
	DURATION_FLAG("tcp-half-close-timeout", tcp_half_close_timeout_ms, 0,
	    "1h",
	    "Close a TCP session this long after one side sent FIN if no "
	    "byte has moved since (what conntrack's tcpCloseWaitTimeout is "
	    "to kube-proxy's other modes); 0 never does."),
	DURATION_FLAG("tcp-idle-timeout", tcp_idle_timeout_ms, 0, "0s",
	    "Close a TCP session after this long without traffic in either "
	    "direction; 0 never does, as kube-proxy."),
	DURATION_FLAG("tcp-keepalive", tcp_keepalive_ms, 0, "0s",
	    "TCP keepalive and TCP_USER_TIMEOUT on client and endpoint "
	    "sockets, so that a peer gone without FIN or RST has both "
	    "sockets closed within about this long (plus one probe "
	    "interval, a sixth of it); 0 leaves the kernel's defaults "
	    "(no keepalive)."),
	UINT32_FLAG("udp-max-associations", udp_max_assoc_per_port, 1,
	    "4096",
	    "The most UDP client associations one service port keeps."),
	UINT32_FLAG("udp-max-associations-total", udp_max_assoc_total, 1,
	    "65536",
	    "The most UDP client associations across all service ports."),
	BOOL_FLAG("udp-reject-privileged-sources",
	    udp_reject_privileged_sources,
	    "Drop UDP datagrams from client source ports below 1024, where "
	    "the servers of reflection attacks (DNS, NTP) answer from: a "
	    "reply could loop between two such servers (HAProxy's "
	    "reject-privileged-ports)."),
	DURATION_FLAG("udp-timeout", udp_timeout_ms, 1, "250ms",
	    "How long an idle UDP association is kept.  Must be greater "
	    "than 0."),
	STRING_FLAG("user", "NAME[:GROUP]", user, "",
	    "Started as root, switch to this user (and its group, or GROUP) "
	    "before serving, keeping only the capabilities the flags need: "
	    "CAP_NET_ADMIN for portal rules, CAP_NET_RAW for "
	    "iptables-legacy, CAP_NET_BIND_SERVICE for ports below 1024."),
	{ .name = "v", .shorthand = 'v', .value_name = "N",
	  .set = flag_set_verbosity, .offset = M(verbosity),
	  .default_text = "0",
	  .help = "Log verbosity, as kube-proxy's -v; 4 and above add debug "
	  "lines." },
	COMMAND_FLAG("version", 0, CONF_CMD_VERSION,
	    "Print the version and exit."),
	UINT32_FLAG("workers", workers, 0, "0",
	    "Event loops relaying connections, each with its own socket on "
	    "every proxy port (SO_REUSEPORT; at most 64).  0 starts one per "
	    "CPU kuproxy may run on; 1 relays on the main loop alone."),
};

#define N_FLAGS	(sizeof(flags) / sizeof(flags[0]))

static void *
flag_member(struct conf *c, const struct flag *f)
{
	return (char *)c + f->offset;
}

/* Go's strconv.ParseBool, which pflag uses for "--switch=VALUE". */
static int
parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "1", "t", "T", "TRUE", "true",
	    "True" };
	static const char *const no[] = { "0", "f", "F", "FALSE", "false",
	    "False" };
	size_t i;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

/* Setters, one per kind of value. */

/* A string member; the empty string stores NULL ("not set"). */
static int
flag_set_string(struct conf *c, const struct flag *f, const char *value,
    char *err, size_t errlen)
{
	char **member = flag_member(c, f);
	char *copy = NULL;

	if (*value != '\0' && (copy = strdup(value)) == NULL) {
		snprintf(err, errlen, "\"%s\": out of memory", value);
		return -1;
	}
	free(*member);
	*member = copy;
	return 0;
}

/*
 * kube-proxy's userspace proxier refuses to listen on localhost
 * (ErrProxyOnLocalhost): portal rules DNAT other hosts' and pods' traffic
 * to the listen address, and the kernel drops packets DNATed to loopback.
 * Like upstream, only 127.0.0.1 and ::1 (and 127.0.0.1 mapped into IPv6)
 * are compared.
 */
static bool
is_proxy_localhost(int family, const uint8_t *addr)
{
	static const uint8_t v4[4] = { 127, 0, 0, 1 };
	static const uint8_t v6[16] = { [15] = 1 };
	static const uint8_t mapped[16] = { [10] = 0xff, [11] = 0xff,
	    [12] = 127, [15] = 1 };

	if (family == AF_INET)
		return memcmp(addr, v4, 4) == 0;
	return memcmp(addr, v6, 16) == 0 || memcmp(addr, mapped, 16) == 0;
}

static int
flag_set_bind_address(struct conf *c, const struct flag *f,
    const char *value, char *err, size_t errlen)
{
	uint8_t	addr[16];
	int	family = AF_INET;

	if (inet_pton(AF_INET, value, addr) != 1) {
		family = AF_INET6;
		if (inet_pton(AF_INET6, value, addr) != 1) {
			snprintf(err, errlen, "\"%s\": expected an IP address "
			    "such as 0.0.0.0 or ::", value);
			return -1;
		}
	}
	if (is_proxy_localhost(family, addr)) {
		snprintf(err, errlen, "\"%s\": cannot proxy on localhost",
		    value);
		return -1;
	}
	return flag_set_string(c, f, value, err, errlen);
}

/*
 * "IP:PORT" with IPv6 in brackets, as Go's net.SplitHostPort and
 * kube-proxy's validation want; empty disables the server (NULL).
 */
static int
flag_set_host_port(struct conf *c, const struct flag *f, const char *value,
    char *err, size_t errlen)
{
	char		 host[INET6_ADDRSTRLEN];
	uint8_t		 addr[16];
	const char	*colon, *h = value;
	size_t		 hlen;
	unsigned long	 port;
	int		 family = AF_INET;

	if (*value == '\0')
		return flag_set_string(c, f, value, err, errlen);
	if ((colon = strrchr(value, ':')) == NULL)
		goto invalid;
	hlen = (size_t)(colon - value);
	if (*value == '[') {
		if (hlen < 2 || value[hlen - 1] != ']')
			goto invalid;
		h = value + 1;
		hlen -= 2;
		family = AF_INET6;
	}
	if (hlen >= sizeof(host))
		goto invalid;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if (inet_pton(family, host, addr) != 1 ||
	    conf_parse_uint(colon + 1, strlen(colon + 1), 65535, &port) == -1)
		goto invalid;
	return flag_set_string(c, f, value, err, errlen);

 invalid:
	snprintf(err, errlen, "\"%s\": expected IP:PORT such as 0.0.0.0:10256 "
	    "or [::]:10256", value);
	return -1;
}

/* A duration of at least f->arg milliseconds (1: "greater than 0"). */
static int
flag_set_duration(struct conf *c, const struct flag *f, const char *value,
    char *err, size_t errlen)
{
	uint32_t ms;

	if (conf_parse_duration_ms(value, &ms, err, errlen) == -1)
		return -1;
	/* The table's minimums are 0 (any) or 1 ms (kube-proxy's "> 0"). */
	if (ms < (uint32_t)f->arg) {
		snprintf(err, errlen, "\"%s\" must be greater than 0", value);
		return -1;
	}
	*(uint32_t *)flag_member(c, f) = ms;
	return 0;
}

static int
flag_set_uint32(struct conf *c, const struct flag *f, const char *value,
    char *err, size_t errlen)
{
	unsigned long n;

	if (conf_parse_uint(value, strlen(value), UINT32_MAX, &n) == -1) {
		snprintf(err, errlen, "\"%s\": expected a whole number from "
		    "%ld to %lu", value, f->arg, (unsigned long)UINT32_MAX);
		return -1;
	}
	if (n < (unsigned long)f->arg) {
		snprintf(err, errlen, "\"%s\" must be at least %ld", value,
		    f->arg);
		return -1;
	}
	*(uint32_t *)flag_member(c, f) = (uint32_t)n;
	return 0;
}

static int
flag_set_verbosity(struct conf *c, const struct flag *f, const char *value,
    char *err, size_t errlen)
{
	unsigned long n;

	if (conf_parse_uint(value, strlen(value), INT_MAX, &n) == -1) {
		snprintf(err, errlen, "\"%s\": expected a verbosity level, a "
		    "whole number from 0", value);
		return -1;
	}
	*(int *)flag_member(c, f) = (int)n;
	return 0;
}

/* One of f->words; the member is an enum, which is int-sized here. */
static int
flag_set_enum(struct conf *c, const struct flag *f, const char *value,
    char *err, size_t errlen)
{
	const struct flag_word	*w;
	size_t			 n;

	for (w = f->words; w->word != NULL; w++) {
		if (strcmp(value, w->word) == 0) {
			*(int *)flag_member(c, f) = w->value;
			return 0;
		}
	}
	n = (size_t)snprintf(err, errlen, "\"%s\": expected one of", value);
	for (w = f->words; w->word != NULL && n < errlen; w++)
		n += (size_t)snprintf(err + n, errlen - n, "%s %s",
		    w == f->words ? "" : (w[1].word == NULL ? " or" : ","),
		    w->word);
	return -1;
}

static int
flag_set_port_range(struct conf *c, const struct flag *f, const char *value,
    char *err, size_t errlen)
{
	return conf_parse_port_range(value, &c->port_range_begin,
	    &c->port_range_end, err, errlen);
}

/*
 * Comma-separated CIDRs replacing the whole list (so that applying the
 * flags twice, as conf_parse_args does, gives the same list).  The error
 * quotes the one CIDR that is wrong.
 */
static int
flag_set_cidrs(struct conf *c, const struct flag *f, const char *value,
    char *err, size_t errlen)
{
	struct conf_cidr	 list[CONF_MAX_CIDRS];
	char			 one[128];
	const char		*p = value, *comma;
	size_t			 n = 0, len;

	while (*p != '\0') {
		comma = strchr(p, ',');
		len = comma != NULL ? (size_t)(comma - p) : strlen(p);
		/* Spaces after commas are forgiven; pflag would keep them. */
		while (len > 0 && isspace((unsigned char)*p)) {
			p++;
			len--;
		}
		while (len > 0 && isspace((unsigned char)p[len - 1]))
			len--;
		if (len >= sizeof(one))
			len = sizeof(one) - 1;
		memcpy(one, p, len);
		one[len] = '\0';
		if (n == CONF_MAX_CIDRS) {
			snprintf(err, errlen, "\"%s\": at most %d CIDRs are "
			    "supported", value, CONF_MAX_CIDRS);
			return -1;
		}
		if (conf_parse_cidr(one, &list[n++], err, errlen) == -1)
			return -1;
		if (comma == NULL)
			break;
		p = comma + 1;
		if (*p == '\0') {
			snprintf(err, errlen, "\"%s\": expected a CIDR after "
			    "the last comma", value);
			return -1;
		}
	}
	memcpy(flag_member(c, f), list, n * sizeof(list[0]));
	*(size_t *)((char *)c + f->count_offset) = n;
	return 0;
}

/* Which command wins when several are given: --help, then --version. */
static int
command_rank(enum conf_command cmd)
{
	switch (cmd) {
	case CONF_CMD_HELP:
		return 3;
	case CONF_CMD_VERSION:
		return 2;
	case CONF_CMD_CLEANUP:
	case CONF_CMD_STATUS:
	case CONF_CMD_EXPLAIN:
		return 1;
	case CONF_CMD_RUN:
		break;
	}
	return 0;
}

static int
flag_set_bool(struct conf *c, const struct flag *f, const char *value,
    char *err, size_t errlen)
{
	bool on;

	if (parse_bool(value, &on) == -1) {
		snprintf(err, errlen, "\"%s\": expected true or false", value);
		return -1;
	}
	*(bool *)((char *)c + f->offset) = on;
	return 0;
}

/* A switch ("true" when given bare); "=false" undoes only its own command. */
static int
flag_set_command(struct conf *c, const struct flag *f, const char *value,
    char *err, size_t errlen)
{
	enum conf_command	 cmd = (enum conf_command)f->arg;
	bool			 on;

	if (parse_bool(value, &on) == -1) {
		snprintf(err, errlen, "\"%s\": expected true or false", value);
		return -1;
	}
	if (on && command_rank(cmd) > command_rank(c->command))
		c->command = cmd;
	else if (!on && c->command == cmd)
		c->command = CONF_CMD_RUN;
	return 0;
}

static int
flag_set_proxy_mode(struct conf *c, const struct flag *f, const char *value,
    char *err, size_t errlen)
{
	if (*value == '\0' || strcmp(value, "userspace") == 0)
		return 0;
	snprintf(err, errlen, "\"%s\": kuproxy only provides kube-proxy's "
	    "userspace mode (leave it empty or set it to userspace)", value);
	return -1;
}

/* The table. */

static const struct flag *
flag_find(const char *name, size_t len)
{
	char	norm[64];
	size_t	i;

	if (len >= sizeof(norm))
		return NULL;
	/* As kube-proxy's WordSepNormalizeFunc: '_' is '-' in names. */
	for (i = 0; i < len; i++)
		norm[i] = name[i] == '_' ? '-' : name[i];
	norm[len] = '\0';
	for (i = 0; i < N_FLAGS; i++)
		if (strcmp(flags[i].name, norm) == 0)
			return &flags[i];
	return NULL;
}

static const struct flag *
flag_find_shorthand(char ch)
{
	size_t i;

	for (i = 0; i < N_FLAGS; i++)
		if (flags[i].shorthand != 0 && flags[i].shorthand == ch)
			return &flags[i];
	return NULL;
}

/*
 * Apply value through row f; on error, err gets "SPELLING: " (the flag as
 * the user wrote it) in front of the setter's message.
 */
static int
flag_apply_row(struct conf *c, const struct flag *f, const char *spelling,
    const char *value, char *err, size_t errlen)
{
	char why[512];

	if (f->set(c, f, value, why, sizeof(why)) == -1) {
		snprintf(err, errlen, "%s: %s", spelling, why);
		return -1;
	}
	return 0;
}

/*
 * Apply one argv element (and the next one when it is the value).  *i is
 * the index of the element, advanced past a value taken from argv.
 */
static int
flags_apply_one(struct conf *c, int argc, char **argv, int *i, char *err,
    size_t errlen)
{
	const struct flag	*f;
	const char		*arg = argv[*i], *value = NULL, *eq;
	char			 spelling[80];

	if (arg[1] == '-') {
		eq = strchr(arg + 2, '=');
		f = flag_find(arg + 2, eq != NULL ? (size_t)(eq - arg - 2) :
		    strlen(arg + 2));
		snprintf(spelling, sizeof(spelling), "%.*s",
		    eq != NULL ? (int)(eq - arg) : (int)strlen(arg), arg);
		if (f == NULL) {
			snprintf(err, errlen, "unknown flag: %s", spelling);
			return -1;
		}
		if (eq != NULL)
			value = eq + 1;
	} else {
		/* pflag shorthands: -v 4, -v=4, -v4, -h. */
		if ((f = flag_find_shorthand(arg[1])) == NULL ||
		    (f->value_name == NULL && arg[2] != '\0' &&
		    arg[2] != '=')) {
			snprintf(err, errlen, "unknown flag: %s%s", arg,
			    strlen(arg) > 2 ? " (long flags take two dashes)" :
			    "");
			return -1;
		}
		snprintf(spelling, sizeof(spelling), "-%c", arg[1]);
		if (arg[2] == '=')
			value = arg + 3;
		else if (arg[2] != '\0')
			value = arg + 2;
	}
	if (value == NULL && f->value_name == NULL)
		value = "true";
	if (value == NULL) {
		if (*i + 1 >= argc) {
			snprintf(err, errlen, "%s: needs a value (%s)",
			    spelling, f->value_name);
			return -1;
		}
		value = argv[++*i];
	}
	return flag_apply_row(c, f, spelling, value, err, errlen);
}

/*
 * The argument of "kuproxy explain": the one word that is not a flag.
 * Applying argv again (after --config) sets the same word again.
 */
static int
flags_explain_target(struct conf *c, const char *arg, bool *seen, char *err,
    size_t errlen)
{
	char	*copy;

	if (*seen) {
		snprintf(err, errlen, "unexpected argument \"%s\": kuproxy "
		    "explain takes one service, [NAMESPACE/]NAME[:PORT]", arg);
		return -1;
	}
	if ((copy = strdup(arg)) == NULL) {
		snprintf(err, errlen, "\"%s\": out of memory", arg);
		return -1;
	}
	free(c->explain_target);
	c->explain_target = copy;
	*seen = true;
	return 0;
}

/*
 * Apply every flag in argv to c, in order.  kuproxy takes no arguments,
 * but for a command word first ("status", "explain") and explain's
 * service.
 */
static int
flags_apply_argv(struct conf *c, int argc, char **argv, char *err,
    size_t errlen)
{
	const char	*arg;
	bool		 explain = false, target_seen = false, dashdash = false;
	int		 i;

	for (i = 1; i < argc; i++) {
		arg = argv[i];

		if (!dashdash && strcmp(arg, "--") == 0) {
			dashdash = true;
			continue;
		}
		if (!dashdash && i == 1 && strcmp(arg, "status") == 0) {
			/* Talk to the running daemon. */
			c->command = CONF_CMD_STATUS;
			continue;
		}
		if (!dashdash && i == 1 && strcmp(arg, "explain") == 0) {
			c->command = CONF_CMD_EXPLAIN;
			explain = true;
			continue;
		}
		if (!dashdash && arg[0] == '-' && arg[1] != '\0') {
			if (flags_apply_one(c, argc, argv, &i, err,
			    errlen) == -1)
				return -1;
			continue;
		}
		if (!explain) {
			snprintf(err, errlen, "unexpected argument \"%s\": "
			    "kuproxy takes only flags (and the command "
			    "\"status\" or \"explain\" first)", arg);
			return -1;
		}
		if (flags_explain_target(c, arg, &target_seen, err,
		    errlen) == -1)
			return -1;
	}
	return 0;
}

/* Checks between settings, once every source has been applied. */
static int
conf_check(const struct conf *c, char *err, size_t errlen)
{
	char sync[32], min_sync[32];

	if (c->sync_period_ms < c->min_sync_period_ms) {
		conf_format_duration(c->sync_period_ms, sync, sizeof(sync));
		conf_format_duration(c->min_sync_period_ms, min_sync,
		    sizeof(min_sync));
		snprintf(err, errlen, "--iptables-sync-period: \"%s\" must not "
		    "be shorter than --iptables-min-sync-period (\"%s\")", sync,
		    min_sync);
		return -1;
	}
	return 0;
}

/*
 * Apply value to c through the flag named flag_name; see flags.h.
 */
int
flags_apply(struct conf *c, const char *flag_name, const char *value,
    char *err, size_t errlen)
{
	const struct flag *f = flag_find(flag_name, strlen(flag_name));

	assert(f != NULL);
	return f->set(c, f, value, err, errlen);
}

/*
 * Fill c with every default, applied through the same rows that parse the
 * flags so that --help and the behaviour agree.  c is overwritten: call
 * conf_clear() first on a conf that owns strings.  A default that does not
 * parse is a bug in the table.
 */
void
conf_defaults(struct conf *c)
{
	char	err[512];
	size_t	i;

	memset(c, 0, sizeof(*c));
	c->command = CONF_CMD_RUN;
	for (i = 0; i < N_FLAGS; i++) {
		if (flags[i].default_text == NULL)
			continue;
		if (flags[i].set(c, &flags[i], flags[i].default_text, err,
		    sizeof(err)) == -1)
			fatalx("default of --%s: %s", flags[i].name, err);
	}
}

/*
 * Free the strings c owns and zero it; conf_defaults() makes it usable
 * again.
 */
void
conf_clear(struct conf *c)
{
	free(c->config_file);
	free(c->services_file);
	free(c->kubeconfig);
	free(c->master);
	free(c->context);
	free(c->bind_address);
	free(c->hostname_override);
	free(c->healthz_bind_address);
	free(c->metrics_bind_address);
	free(c->status_socket);
	free(c->user);
	free(c->explain_target);
	memset(c, 0, sizeof(*c));
}

/*
 * Parse argv into c (prepared by conf_defaults()): the flags, then the
 * --config file if one is named, then the flags again so that they win over
 * the file (kube-proxy's precedence).  --help and --version set c->command
 * and skip the file; --cleanup sets it and still reads the file.  Returns 0,
 * or -1 with one line in err naming the flag or the file:line and field.
 */
int
conf_parse_args(struct conf *c, int argc, char **argv, char *err,
    size_t errlen)
{
	if (flags_apply_argv(c, argc, argv, err, errlen) == -1)
		return -1;
	if (c->command == CONF_CMD_HELP || c->command == CONF_CMD_VERSION)
		return 0;
	if (c->config_file != NULL) {
		if (conf_load_file(c, c->config_file, err, errlen) == -1)
			return -1;
		if (flags_apply_argv(c, argc, argv, err, errlen) == -1)
			return -1;
	}
	return conf_check(c, err, errlen);
}

/* Print one word at *col, first breaking the line if it would pass 79. */
static void
usage_word(FILE *out, const char *word, int len, int indent, int *col)
{
	if (*col > indent && *col + 1 + len >= 80) {
		fputc('\n', out);
		*col = 0;
	}
	if (*col == 0)
		*col = fprintf(out, "%*s", indent, "");
	else
		*col += fprintf(out, " ");
	*col += fprintf(out, "%.*s", len, word);
}

/*
 * Print text, then the unbreakable tail (the default), indented by indent
 * columns and wrapped before column 80.
 */
static void
usage_wrap(FILE *out, const char *text, const char *tail, int indent)
{
	const char	*p = text;
	int		 col = 0;

	while (*p != '\0') {
		int len = (int)strcspn(p, " ");

		usage_word(out, p, len, indent, &col);
		p += len;
		while (*p == ' ')
			p++;
	}
	if (*tail != '\0')
		usage_word(out, tail, (int)strlen(tail), indent, &col);
	fputc('\n', out);
}

/*
 * Write the --help text to out: every flag from the table with its value
 * kind, help and default.
 */
void
conf_usage(FILE *out)
{
	char	tail[128];
	size_t	i;

	fprintf(out, "Usage: kuproxy [flags]\n"
	    "       kuproxy status [--json] [--status-socket PATH]\n"
	    "       kuproxy explain [--json] [--services-file PATH] "
	    "[NAMESPACE/]NAME[:PORT]\n\n"
	    "kuproxy is kube-proxy's userspace mode: it watches services and "
	    "endpoints\n(from the API server or a file), listens on a local "
	    "port per service port,\nand relays each connection to an "
	    "endpoint, with iptables portal rules sending\nservice traffic to "
	    "those ports.\n\n"
	    "kuproxy status asks the running daemon what it serves: every "
	    "service port,\nits portals and proxy port, and its endpoints "
	    "with their connections,\nbytes and failures.\n\n"
	    "kuproxy explain says what becomes of a connection to one "
	    "service: each\nportal address with the iptables rule that "
	    "catches it, the proxy port, the\nbalancer and its endpoints, "
	    "from a pod, from the node and from outside.\nIt asks the "
	    "running daemon, or with --services-file reads that file\n"
	    "without touching the system (the proxy port is then not known)."
	    "\n\nFlags:\n");
	for (i = 0; i < N_FLAGS; i++) {
		const struct flag *f = &flags[i];

		if (f->shorthand != 0)
			fprintf(out, "  -%c, --%s", f->shorthand, f->name);
		else
			fprintf(out, "      --%s", f->name);
		if (f->value_name != NULL)
			fprintf(out, " %s", f->value_name);
		fputc('\n', out);
		if (f->default_text == NULL)
			tail[0] = '\0';
		else
			snprintf(tail, sizeof(tail), "(default: %s)",
			    *f->default_text == '\0' ? "empty" :
			    f->default_text);
		usage_wrap(out, f->help, tail, 8);
	}
}
