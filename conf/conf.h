/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kuproxy's configuration: command-line flags (kube-proxy's names and
 * defaults) and the KubeProxyConfiguration file (YAML or JSON).  Flags
 * override the file.  This module only parses and validates; it starts
 * nothing.
 */
#ifndef KUPROXY_CONF_H
#define KUPROXY_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/log.h"
#include "base/svc.h"

#define CONF_MAX_CIDRS	16

enum conf_iptables_backend {
	CONF_IPT_AUTO = 0,
	CONF_IPT_LEGACY,
	CONF_IPT_NFT,
	CONF_IPT_NONE,		/* listeners only, no rules */
};

enum conf_relay_mode {
	CONF_RELAY_SPLICE = 0,	/* zero-copy through pipes */
	CONF_RELAY_COPY,	/* buffered read/write */
};

enum conf_command {
	CONF_CMD_RUN = 0,	/* the daemon */
	CONF_CMD_CLEANUP,	/* --cleanup */
	CONF_CMD_HELP,
	CONF_CMD_VERSION,
	CONF_CMD_STATUS,	/* kuproxy status: ask the running daemon */
	CONF_CMD_EXPLAIN,	/* kuproxy explain: one service, in words */
};

/* An IPv4 or IPv6 prefix, e.g. from --nodeport-addresses. */
struct conf_cidr {
	int	family;		/* AF_INET or AF_INET6 */
	uint8_t	addr[16];
	int	prefix_len;
};

struct conf {
	enum conf_command	 command;

	/* --config FILE */
	char			*config_file;
	/* --services-file PATH */
	char			*services_file;
	/* --kubeconfig, --master, --context (kuproxy's own) */
	char			*kubeconfig;
	char			*master;
	char			*context;

	/* --bind-address (default 0.0.0.0) */
	char			*bind_address;
	/* --proxy-port-range: 0/0 means ephemeral ports */
	uint16_t		 port_range_begin;
	uint16_t		 port_range_end;
	/* --hostname-override */
	char			*hostname_override;
	/* --nodeport-addresses: empty means every local address */
	struct conf_cidr	 nodeport_cidrs[CONF_MAX_CIDRS];
	size_t			 n_nodeport_cidrs;
	/* --external-ip-allow: empty means every address (kube-proxy's behaviour) */
	struct conf_cidr	 external_ip_allow[CONF_MAX_CIDRS];
	size_t			 n_external_ip_allow;

	/* --iptables-backend */
	enum conf_iptables_backend iptables_backend;
	/* --iptables-sync-period (30s), --iptables-min-sync-period (1s) */
	uint32_t		 sync_period_ms;
	uint32_t		 min_sync_period_ms;
	/* --config-sync-period (15m) */
	uint32_t		 config_sync_period_ms;

	/* --udp-timeout (250ms) */
	uint32_t		 udp_timeout_ms;
	/* --udp-max-associations (per service port), --udp-max-associations-total */
	uint32_t		 udp_max_assoc_per_port;
	uint32_t		 udp_max_assoc_total;
	/* --udp-reject-privileged-sources: drop client source ports < 1024 */
	bool			 udp_reject_privileged_sources;

	/* --tcp-idle-timeout: 0 (off, as upstream) */
	uint32_t		 tcp_idle_timeout_ms;
	/* --tcp-half-close-timeout (1h, as conntrack's tcpCloseWaitTimeout) */
	uint32_t		 tcp_half_close_timeout_ms;
	/* --tcp-keepalive: 0 (off: the kernel's defaults) */
	uint32_t		 tcp_keepalive_ms;
	/* --max-connections: TCP sessions at once, 0 unlimited */
	uint32_t		 tcp_max_connections;
	/* --workers: data-path event loops, 0 one per CPU */
	uint32_t		 workers;
	/* --relay-mode splice|copy */
	enum conf_relay_mode	 relay_mode;
	/* --balancer: for services without kuproxy.io/balancer */
	enum svc_balancer	 balancer;

	/* --healthz-bind-address (0.0.0.0:10256), --metrics-bind-address (127.0.0.1:10249) */
	char			*healthz_bind_address;
	char			*metrics_bind_address;
	/* --status-socket PATH */
	char			*status_socket;
	/* --shutdown-grace-period (30s) */
	uint32_t		 shutdown_grace_ms;
	/*
	 * --user NAME[:GROUP]: switch to it at start-up, before any socket or
	 * rule, keeping only the capabilities the flags need (privdrop.c)
	 */
	char			*user;

	/* --json: machine-readable output of a command such as status */
	bool			 output_json;
	/* kuproxy explain [NAMESPACE/]NAME[:PORT]: the service to explain */
	char			*explain_target;

	/* -v / --v, --logging-format */
	int			 verbosity;
	enum log_format		 logging_format;
};

/* Fill c with every default. */
void	conf_defaults(struct conf *c);

/*
 * Parse argv (flags, then --config FILE if one was named, then flags again so
 * that they override the file) into c, which conf_defaults() prepared.
 * Returns 0, or -1 with a one-line message in err naming the flag or the
 * file:line and field and saying what was expected (the caller exits 2).
 * Warnings about accepted-but-unused config fields go to the log.
 */
int	conf_parse_args(struct conf *c, int argc, char **argv,
	    char *err, size_t errlen);

/*
 * Load a KubeProxyConfiguration file (YAML or JSON) into c.  Returns 0, or
 * -1 with "FILE:LINE: field: message" in err.
 */
int	conf_load_file(struct conf *c, const char *path, char *err, size_t errlen);

/* Write --help text (every flag with its default) to the stream. */
void	conf_usage(FILE *out);

/* Free the strings c owns; c may be reused after conf_defaults(). */
void	conf_clear(struct conf *c);

/* Parsers shared with tests and other modules; 0 or -1 with err. */
int	conf_parse_duration_ms(const char *s, uint32_t *ms, char *err, size_t errlen);
int	conf_parse_port_range(const char *s, uint16_t *begin, uint16_t *end,
	    char *err, size_t errlen);
int	conf_parse_cidr(const char *s, struct conf_cidr *out, char *err, size_t errlen);
bool	conf_cidr_contains(const struct conf_cidr *, int family, const uint8_t *addr);

#endif
