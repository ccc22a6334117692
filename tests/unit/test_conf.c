/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests of the configuration module: defaults, every flag form, the value
 * parsers (durations, port ranges, CIDRs), the messages for bad values, and
 * KubeProxyConfiguration files in YAML and JSON (tests/data/conf/).
 */
#include "config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "conf/conf.h"

#define CONF_DATA	TEST_DATA_DIR "/conf"
#define N(a)		(sizeof(a) / sizeof((a)[0]))

static char	err[1024];

/* conf_defaults(), then conf_parse_args() on a NULL-terminated argv. */
static int
parse_argv(struct conf *c, char **argv)
{
	int argc = 0;

	while (argv[argc] != NULL)
		argc++;
	conf_defaults(c);
	err[0] = '\0';
	return conf_parse_args(c, argc, argv, err, sizeof(err));
}

#define PARSE(c, ...)	\
	parse_argv(c, (char *[]){ "kuproxy", __VA_ARGS__, NULL })

/* Write text to a fresh file of this test process; returns its path. */
static char *
write_temp(const char *name, const char *text)
{
	char	*path;
	FILE	*f;

	cr_assert(asprintf(&path, "/tmp/kuproxy-test-conf-%d-%s", (int)getpid(),
	    name) > 0);
	cr_assert_not_null(f = fopen(path, "w"));
	fputs(text, f);
	fclose(f);
	return path;
}

/* Run fn(arg) with fd 2 going to a file; returns what was written, owned. */
static char *
capture_stderr(int (*fn)(void *), void *arg, int *rc)
{
	char	 path[64], *out;
	FILE	*f;
	long	 len;
	int	 fd, saved;

	snprintf(path, sizeof(path), "/tmp/kuproxy-test-conf-%d.stderr",
	    (int)getpid());
	cr_assert((fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600)) >= 0);
	saved = dup(2);
	dup2(fd, 2);
	*rc = fn(arg);
	dup2(saved, 2);
	close(saved);
	close(fd);
	cr_assert_not_null(f = fopen(path, "r"));
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	cr_assert_not_null(out = calloc(1, (size_t)len + 1));
	cr_assert_eq(fread(out, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	unlink(path);
	return out;
}

static size_t
count_lines(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		n += *s == '\n';
	return n;
}

/* Defaults. */

Test(conf, defaults_are_kube_proxys)
{
	struct conf c;

	conf_defaults(&c);
	cr_assert_eq(c.command, CONF_CMD_RUN);
	cr_assert_null(c.config_file);
	cr_assert_null(c.services_file);
	cr_assert_null(c.kubeconfig);
	cr_assert_null(c.master);
	cr_assert_null(c.context);
	cr_assert_str_eq(c.bind_address, "0.0.0.0");
	cr_assert_eq(c.port_range_begin, 0);
	cr_assert_eq(c.port_range_end, 0);
	cr_assert_null(c.hostname_override);
	cr_assert_eq(c.n_nodeport_cidrs, 0);
	cr_assert_eq(c.n_external_ip_allow, 0);
	cr_assert_eq(c.iptables_backend, CONF_IPT_AUTO);
	cr_assert_eq(c.sync_period_ms, 30000);
	cr_assert_eq(c.min_sync_period_ms, 1000);
	cr_assert_eq(c.config_sync_period_ms, 15 * 60 * 1000);
	cr_assert_eq(c.udp_timeout_ms, 250);
	cr_assert_eq(c.udp_max_assoc_per_port, 4096);
	cr_assert_eq(c.udp_max_assoc_total, 65536);
	cr_assert_eq(c.tcp_idle_timeout_ms, 0);
	cr_assert_eq(c.relay_mode, CONF_RELAY_SPLICE);
	cr_assert_str_eq(c.healthz_bind_address, "0.0.0.0:10256");
	cr_assert_str_eq(c.metrics_bind_address, "127.0.0.1:10249");
	cr_assert_str_eq(c.status_socket, "/run/kuproxy/status.sock");
	cr_assert_eq(c.shutdown_grace_ms, 30000);
	cr_assert_eq(c.verbosity, 0);
	cr_assert_eq(c.logging_format, LOG_FORMAT_TEXT);
	conf_clear(&c);
	cr_assert_null(c.bind_address);
}

Test(conf, no_flags_gives_the_defaults)
{
	struct conf c, d;

	cr_assert_eq(parse_argv(&c, (char *[]){ "kuproxy", NULL }), 0);
	conf_defaults(&d);
	cr_assert_eq(c.sync_period_ms, d.sync_period_ms);
	cr_assert_str_eq(c.bind_address, d.bind_address);
	conf_clear(&c);
	conf_clear(&d);
}

Test(conf, help_lists_every_flag_with_its_default)
{
	static const char *const expect[] = {
		"--config PATH", "--bind-address IP", "(default: 0.0.0.0)",
		"--proxy-port-range RANGE", "--hostname-override NAME",
		"--nodeport-addresses CIDRS", "-v, --v N", "--kubeconfig PATH",
		"--master URL", "--cleanup\n", "--udp-timeout DURATION",
		"(default: 250ms)", "--iptables-sync-period DURATION",
		"(default: 30s)", "--iptables-min-sync-period DURATION",
		"(default: 1s)", "--config-sync-period DURATION",
		"(default: 15m)", "--healthz-bind-address IP:PORT",
		"(default: 0.0.0.0:10256)", "--metrics-bind-address IP:PORT",
		"(default: 127.0.0.1:10249)", "--logging-format text|json",
		"(default: text)", "-h, --help\n", "--version\n",
		"--services-file PATH",
		"--iptables-backend auto|legacy|nft|none", "(default: auto)",
		"--context NAME", "--external-ip-allow CIDRS",
		"--udp-max-associations N", "(default: 4096)",
		"--udp-max-associations-total N", "(default: 65536)",
		"--tcp-idle-timeout DURATION", "(default: 0s)",
		"--relay-mode splice|copy", "(default: splice)",
		"--status-socket PATH", "(default: /run/kuproxy/status.sock)",
		"--shutdown-grace-period DURATION", "--proxy-mode userspace",
	};
	char	*text = NULL;
	size_t	 len = 0, i;
	FILE	*out;

	cr_assert_not_null(out = open_memstream(&text, &len));
	conf_usage(out);
	fclose(out);
	for (i = 0; i < N(expect); i++)
		cr_assert_not_null(strstr(text, expect[i]), "missing %s",
		    expect[i]);
	for (i = 0; text[i] != '\0'; i += strcspn(text + i, "\n") + 1)
		cr_assert_leq(strcspn(text + i, "\n"), 80,
		    "line too long: %.80s", text + i);
	free(text);
}

/* Flag forms. */

Test(conf, flag_value_as_next_argument_or_after_equals)
{
	struct conf c;

	cr_assert_eq(PARSE(&c, "--udp-timeout", "1s"), 0, "%s", err);
	cr_assert_eq(c.udp_timeout_ms, 1000);
	conf_clear(&c);
	cr_assert_eq(PARSE(&c, "--udp-timeout=2s"), 0, "%s", err);
	cr_assert_eq(c.udp_timeout_ms, 2000);
	conf_clear(&c);
	/* The last one wins, as in pflag. */
	cr_assert_eq(PARSE(&c, "--udp-timeout=2s", "--udp-timeout", "3s"), 0);
	cr_assert_eq(c.udp_timeout_ms, 3000);
	conf_clear(&c);
	/* A value that looks like a flag is still the value. */
	cr_assert_eq(PARSE(&c, "--hostname-override", "-v"), 0, "%s", err);
	cr_assert_str_eq(c.hostname_override, "-v");
	conf_clear(&c);
}

Test(conf, underscore_spelling_is_the_same_flag)
{
	struct conf c;

	cr_assert_eq(PARSE(&c, "--bind_address=10.1.2.3"), 0, "%s", err);
	cr_assert_str_eq(c.bind_address, "10.1.2.3");
	conf_clear(&c);
}

Test(conf, verbosity_in_every_form)
{
	static const char *const forms[][2] = {
		{ "-v", "3" }, { "--v", "3" }, { "-v=3", NULL },
		{ "--v=3", NULL }, { "-v3", NULL },
	};
	struct conf	c;
	size_t		i;

	for (i = 0; i < N(forms); i++) {
		char *argv[] = { "kuproxy", (char *)(uintptr_t)forms[i][0],
		    (char *)(uintptr_t)forms[i][1], NULL };

		cr_assert_eq(parse_argv(&c, argv), 0, "%s: %s", forms[i][0],
		    err);
		cr_assert_eq(c.verbosity, 3, "%s", forms[i][0]);
		conf_clear(&c);
	}
}

Test(conf, commands)
{
	struct conf c;

	cr_assert_eq(PARSE(&c, "--cleanup"), 0);
	cr_assert_eq(c.command, CONF_CMD_CLEANUP);
	conf_clear(&c);
	cr_assert_eq(PARSE(&c, "--cleanup=true"), 0);
	cr_assert_eq(c.command, CONF_CMD_CLEANUP);
	conf_clear(&c);
	cr_assert_eq(PARSE(&c, "--cleanup", "--cleanup=false"), 0);
	cr_assert_eq(c.command, CONF_CMD_RUN);
	conf_clear(&c);
	cr_assert_eq(PARSE(&c, "-h"), 0);
	cr_assert_eq(c.command, CONF_CMD_HELP);
	conf_clear(&c);
	cr_assert_eq(PARSE(&c, "--version", "--help", "--cleanup"), 0);
	cr_assert_eq(c.command, CONF_CMD_HELP);
	conf_clear(&c);
	cr_assert_eq(PARSE(&c, "--cleanup", "--version"), 0);
	cr_assert_eq(c.command, CONF_CMD_VERSION);
	conf_clear(&c);
	/* --help answers even when the config file would not load. */
	cr_assert_eq(PARSE(&c, "--config", "/nonexistent/kuproxy.yaml",
	    "--help"), 0, "%s", err);
	cr_assert_eq(c.command, CONF_CMD_HELP);
	conf_clear(&c);
}

Test(conf, every_flag_sets_its_field)
{
	struct conf c;

	cr_assert_eq(PARSE(&c,
	    "--services-file", "/etc/kuproxy/services.yaml",
	    "--kubeconfig=/root/.kube/config", "--master", "https://10.0.0.1",
	    "--context", "kind-kind", "--bind-address", "::",
	    "--proxy-port-range", "30000-30010", "--hostname-override=node-7",
	    "--nodeport-addresses", "10.0.0.0/8, 192.168.0.0/16",
	    "--external-ip-allow=203.0.113.0/24",
	    "--iptables-backend", "legacy", "--iptables-sync-period=45s",
	    "--iptables-min-sync-period", "500ms",
	    "--config-sync-period", "1h", "--udp-timeout", "1.5s",
	    "--udp-max-associations", "10", "--udp-max-associations-total",
	    "100", "--tcp-idle-timeout", "1m30s", "--relay-mode", "copy",
	    "--healthz-bind-address", "[::]:10256",
	    "--metrics-bind-address=", "--status-socket", "/tmp/s.sock",
	    "--shutdown-grace-period", "0s", "--logging-format", "json",
	    "--proxy-mode", "userspace", "--v", "5"), 0, "%s", err);
	cr_assert_str_eq(c.services_file, "/etc/kuproxy/services.yaml");
	cr_assert_str_eq(c.kubeconfig, "/root/.kube/config");
	cr_assert_str_eq(c.master, "https://10.0.0.1");
	cr_assert_str_eq(c.context, "kind-kind");
	cr_assert_str_eq(c.bind_address, "::");
	cr_assert_eq(c.port_range_begin, 30000);
	cr_assert_eq(c.port_range_end, 30010);
	cr_assert_str_eq(c.hostname_override, "node-7");
	cr_assert_eq(c.n_nodeport_cidrs, 2);
	cr_assert_eq(c.nodeport_cidrs[1].prefix_len, 16);
	cr_assert_eq(c.n_external_ip_allow, 1);
	cr_assert_eq(c.iptables_backend, CONF_IPT_LEGACY);
	cr_assert_eq(c.sync_period_ms, 45000);
	cr_assert_eq(c.min_sync_period_ms, 500);
	cr_assert_eq(c.config_sync_period_ms, 3600000);
	cr_assert_eq(c.udp_timeout_ms, 1500);
	cr_assert_eq(c.udp_max_assoc_per_port, 10);
	cr_assert_eq(c.udp_max_assoc_total, 100);
	cr_assert_eq(c.tcp_idle_timeout_ms, 90000);
	cr_assert_eq(c.relay_mode, CONF_RELAY_COPY);
	cr_assert_str_eq(c.healthz_bind_address, "[::]:10256");
	cr_assert_null(c.metrics_bind_address, "empty disables");
	cr_assert_str_eq(c.status_socket, "/tmp/s.sock");
	cr_assert_eq(c.shutdown_grace_ms, 0);
	cr_assert_eq(c.logging_format, LOG_FORMAT_JSON);
	cr_assert_eq(c.verbosity, 5);
	conf_clear(&c);
}

Test(conf, empty_port_range_and_cidr_lists_reset_to_defaults)
{
	struct conf c;

	cr_assert_eq(PARSE(&c, "--proxy-port-range=30000",
	    "--proxy-port-range=", "--nodeport-addresses=10.0.0.0/8",
	    "--nodeport-addresses="), 0, "%s", err);
	cr_assert_eq(c.port_range_begin, 0);
	cr_assert_eq(c.port_range_end, 0);
	cr_assert_eq(c.n_nodeport_cidrs, 0);
	conf_clear(&c);
}

/* Bad flags: one line naming the flag and the value. */

Test(conf, bad_values_name_the_flag_and_the_value)
{
	static const struct {
		const char	*arg;
		const char	*flag;
		const char	*value;
		const char	*why;
	} bad[] = {
		{ "--udp-timeout=0s", "--udp-timeout", "\"0s\"",
		    "must be greater than 0" },
		{ "--udp-timeout=250", "--udp-timeout", "\"250\"",
		    "needs a unit" },
		{ "--iptables-sync-period=0", "--iptables-sync-period", "\"0\"",
		    "must be greater than 0" },
		{ "--config-sync-period=1d", "--config-sync-period", "\"1d\"",
		    "unknown unit \"d\"" },
		{ "--shutdown-grace-period=-5s", "--shutdown-grace-period",
		    "\"-5s\"", "must not be negative" },
		{ "--tcp-idle-timeout=soon", "--tcp-idle-timeout", "\"soon\"",
		    "expected a duration such as 30s" },
		{ "--proxy-port-range=70000-80000", "--proxy-port-range",
		    "\"70000-80000\"", "expected BEGIN-END or BEGIN+OFFSET "
		    "with ports 1-65535" },
		{ "--proxy-port-range=200-100", "--proxy-port-range",
		    "\"200-100\"", "end port 100 is below begin port 200" },
		{ "--bind-address=127.0.0.1", "--bind-address", "\"127.0.0.1\"",
		    "cannot proxy on localhost" },
		{ "--bind-address=::1", "--bind-address", "\"::1\"",
		    "cannot proxy on localhost" },
		{ "--bind-address=eth0", "--bind-address", "\"eth0\"",
		    "expected an IP address" },
		{ "--nodeport-addresses=10.0.0.0/8,10.1.0.0",
		    "--nodeport-addresses", "\"10.1.0.0\"",
		    "a /prefix length is needed" },
		{ "--external-ip-allow=fd00::/129", "--external-ip-allow",
		    "\"fd00::/129\"", "expected a CIDR" },
		{ "--healthz-bind-address=0.0.0.0", "--healthz-bind-address",
		    "\"0.0.0.0\"", "expected IP:PORT" },
		{ "--metrics-bind-address=::1:10249", "--metrics-bind-address",
		    "\"::1:10249\"", "expected IP:PORT" },
		{ "--iptables-backend=firewalld", "--iptables-backend",
		    "\"firewalld\"",
		    "expected one of auto, legacy, nft or none" },
		{ "--relay-mode=sendfile", "--relay-mode", "\"sendfile\"",
		    "expected one of splice or copy" },
		{ "--logging-format=xml", "--logging-format", "\"xml\"",
		    "expected one of text or json" },
		{ "--udp-max-associations=0", "--udp-max-associations", "\"0\"",
		    "must be at least 1" },
		{ "--udp-max-associations-total=-1",
		    "--udp-max-associations-total", "\"-1\"",
		    "expected a whole number" },
		{ "--v=high", "--v", "\"high\"", "expected a verbosity level" },
		{ "-v=-2", "-v", "\"-2\"", "expected a verbosity level" },
		{ "--cleanup=maybe", "--cleanup", "\"maybe\"",
		    "expected true or false" },
		{ "--proxy-mode=iptables", "--proxy-mode", "\"iptables\"",
		    "userspace" },
	};
	struct conf	c;
	size_t		i;

	for (i = 0; i < N(bad); i++) {
		cr_assert_eq(PARSE(&c, (char *)(uintptr_t)bad[i].arg), -1,
		    "%s accepted", bad[i].arg);
		cr_assert_eq(strncmp(err, bad[i].flag, strlen(bad[i].flag)), 0,
		    "%s: %s", bad[i].arg, err);
		cr_assert_not_null(strstr(err, bad[i].value), "%s: %s",
		    bad[i].arg, err);
		cr_assert_not_null(strstr(err, bad[i].why), "%s: %s",
		    bad[i].arg, err);
		cr_assert_null(strchr(err, '\n'), "one line: %s", err);
		conf_clear(&c);
	}
}

Test(conf, exact_messages_of_the_issue)
{
	struct conf c;

	cr_assert_eq(PARSE(&c, "--udp-timeout", "0s"), -1);
	cr_assert_str_eq(err, "--udp-timeout: \"0s\" must be greater than 0");
	conf_clear(&c);
	cr_assert_eq(PARSE(&c, "--proxy-port-range", "70000-80000"), -1);
	cr_assert_str_eq(err, "--proxy-port-range: \"70000-80000\": expected "
	    "BEGIN-END or BEGIN+OFFSET with ports 1-65535");
	conf_clear(&c);
}

Test(conf, unknown_flags_missing_values_and_arguments)
{
	struct conf c;

	cr_assert_eq(PARSE(&c, "--proxy-mdoe=userspace"), -1);
	cr_assert_str_eq(err, "unknown flag: --proxy-mdoe");
	conf_clear(&c);
	cr_assert_eq(PARSE(&c, "-x"), -1);
	cr_assert_str_eq(err, "unknown flag: -x");
	conf_clear(&c);
	cr_assert_eq(PARSE(&c, "-bind-address=0.0.0.0"), -1);
	cr_assert_not_null(strstr(err, "-bind-address"), "%s", err);
	cr_assert_not_null(strstr(err, "two dashes"), "%s", err);
	conf_clear(&c);
	cr_assert_eq(PARSE(&c, "--udp-timeout"), -1);
	cr_assert_str_eq(err, "--udp-timeout: needs a value (DURATION)");
	conf_clear(&c);
	cr_assert_eq(PARSE(&c, "--v", "2", "serve"), -1);
	cr_assert_not_null(strstr(err, "\"serve\""), "%s", err);
	conf_clear(&c);
	cr_assert_eq(PARSE(&c, "--", "--v"), -1);
	cr_assert_not_null(strstr(err, "\"--v\""), "%s", err);
	conf_clear(&c);
	cr_assert_eq(PARSE(&c, "-v", "1", "--"), 0, "%s", err);
	conf_clear(&c);
}

Test(conf, sync_period_not_below_min_sync_period)
{
	struct conf c;

	cr_assert_eq(PARSE(&c, "--iptables-sync-period=1s",
	    "--iptables-min-sync-period=1m"), -1);
	cr_assert_str_eq(err, "--iptables-sync-period: \"1s\" must not be "
	    "shorter than --iptables-min-sync-period (\"1m0s\")");
	conf_clear(&c);
	cr_assert_eq(PARSE(&c, "--iptables-sync-period=1s",
	    "--iptables-min-sync-period=1s"), 0);
	conf_clear(&c);
}

/* Durations. */

Test(conf, durations_in_go_syntax)
{
	static const struct {
		const char	*s;
		uint32_t	 ms;
	} good[] = {
		{ "250ms", 250 }, { "1s", 1000 }, { "1m30s", 90000 },
		{ "2h", 7200000 }, { "1.5s", 1500 }, { ".5s", 500 },
		{ "1.s", 1000 }, { "0", 0 }, { "0s", 0 }, { "+3s", 3000 },
		{ "-0", 0 }, { "15m0s", 900000 }, { "2h45m", 9900000 },
		{ "1h1m1s1ms", 3661001 }, { "1000us", 1 },
		{ "1000\xc2\xb5s", 1 },
		{ "1000\xce\xbcs", 1 }, { "1500000ns", 2 }, { "1ns", 1 },
		{ "0.0001s", 1 }, { "1193h", 4294800000U },
	};
	static const struct {
		const char	*s;
		const char	*why;
	} bad[] = {
		{ "", "expected a duration" },
		{ "30", "a number needs a unit" },
		{ "1.5", "a number needs a unit" },
		{ "1m30", "a number needs a unit" },
		{ "5sec", "unknown unit \"sec\"" },
		{ "1d", "unknown unit \"d\"" },
		{ "s", "expected a duration" },
		{ ".s", "expected a duration" },
		{ "-1s", "must not be negative" },
		{ "1e3s", "unknown unit \"e\"" },
		{ " 1s", "expected a duration" },
		{ "1s ", "unknown unit \"s \"" },
		{ "1194h", "too long" },
		{ "99999999999999999999h", "too long" },
		{ "2562048h", "too long" },
	};
	char		msg[256];
	uint32_t	ms;
	size_t		i;

	for (i = 0; i < N(good); i++) {
		ms = 12345;
		cr_assert_eq(conf_parse_duration_ms(good[i].s, &ms, msg,
		    sizeof(msg)), 0, "%s: %s", good[i].s, msg);
		cr_assert_eq(ms, good[i].ms, "%s: %u", good[i].s, ms);
	}
	for (i = 0; i < N(bad); i++) {
		cr_assert_eq(conf_parse_duration_ms(bad[i].s, &ms, msg,
		    sizeof(msg)), -1, "%s accepted", bad[i].s);
		cr_assert_not_null(strstr(msg, bad[i].why), "%s: %s",
		    bad[i].s, msg);
	}
}

/* Port ranges. */

Test(conf, port_ranges_as_kube_proxy_takes_them)
{
	static const struct {
		const char	*s;
		uint16_t	 begin, end;
	} good[] = {
		{ "", 0, 0 }, { "0", 0, 0 }, { "0-0", 0, 0 }, { "0+0", 0, 0 },
		{ "30000-30100", 30000, 30100 }, { "30000+100", 30000, 30100 },
		{ "30000", 30000, 30000 }, { "1-65535", 1, 65535 },
		{ " 40000-40009 ", 40000, 40009 }, { "65535+0", 65535, 65535 },
	};
	static const char *const bad[] = {
		"0-100", "70000", "1-65536", "65000+1000", "a-b", "30000-",
		"-30000", "+5", "30000-30100-30200", "30000 - 30100", "0x10",
		"30000+-1", "1,2",
	};
	char		msg[256];
	uint16_t	b, e;
	size_t		i;

	for (i = 0; i < N(good); i++) {
		b = e = 7;
		cr_assert_eq(conf_parse_port_range(good[i].s, &b, &e, msg,
		    sizeof(msg)), 0, "\"%s\": %s", good[i].s, msg);
		cr_assert_eq(b, good[i].begin, "\"%s\"", good[i].s);
		cr_assert_eq(e, good[i].end, "\"%s\"", good[i].s);
	}
	for (i = 0; i < N(bad); i++) {
		cr_assert_eq(conf_parse_port_range(bad[i], &b, &e, msg,
		    sizeof(msg)), -1, "\"%s\" accepted", bad[i]);
		cr_assert_not_null(strstr(msg, bad[i]), "%s", msg);
	}
	cr_assert_eq(conf_parse_port_range("100-99", &b, &e, msg,
	    sizeof(msg)), -1);
	cr_assert_str_eq(msg,
	    "\"100-99\": end port 99 is below begin port 100");
}

/* CIDRs. */

static void
assert_cidr(const char *s, int family, const char *network, int prefix_len)
{
	struct conf_cidr	c;
	uint8_t			want[16] = { 0 };
	char			msg[256];

	cr_assert_eq(conf_parse_cidr(s, &c, msg, sizeof(msg)), 0, "%s: %s",
	    s, msg);
	cr_assert_eq(c.family, family, "%s", s);
	cr_assert_eq(c.prefix_len, prefix_len, "%s", s);
	cr_assert_eq(inet_pton(family, network, want), 1);
	cr_assert_eq(memcmp(c.addr, want, sizeof(want)), 0, "%s", s);
}

Test(conf, cidrs_v4_and_v6)
{
	static const char *const bad[] = {
		"", "10.0.0.0", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1",
		"10.0.0/8", "010.0.0.0/8", "fd00::/129", "fd00::", "fd00:::/64",
		"10.0.0.0/8/8", "10.0.0.0/ 8", "host/24", "/24",
		"10.0.0.0/0x8",
	};
	struct conf_cidr	c;
	char			msg[256];
	size_t			i;

	assert_cidr("10.0.0.0/8", AF_INET, "10.0.0.0", 8);
	assert_cidr("0.0.0.0/0", AF_INET, "0.0.0.0", 0);
	assert_cidr("192.168.1.7/32", AF_INET, "192.168.1.7", 32);
	/* Host bits set mean the network, as net.ParseCIDR. */
	assert_cidr("10.0.0.1/24", AF_INET, "10.0.0.0", 24);
	assert_cidr("172.16.255.255/12", AF_INET, "172.16.0.0", 12);
	assert_cidr("fd00::/64", AF_INET6, "fd00::", 64);
	assert_cidr("fd00::1:2:3:4/64", AF_INET6, "fd00::", 64);
	assert_cidr("2001:db8:abcd:12ff::/57", AF_INET6, "2001:db8:abcd:1280::",
	    57);
	assert_cidr("::/0", AF_INET6, "::", 0);
	assert_cidr("::1/128", AF_INET6, "::1", 128);
	for (i = 0; i < N(bad); i++) {
		cr_assert_eq(conf_parse_cidr(bad[i], &c, msg, sizeof(msg)), -1,
		    "\"%s\" accepted", bad[i]);
		cr_assert_not_null(strstr(msg, "expected a CIDR"), "%s", msg);
	}
}

static bool
cidr_has(const char *cidr, const char *ip)
{
	struct conf_cidr	c;
	uint8_t			addr[16];
	char			msg[256];
	int			family = strchr(ip, ':') ? AF_INET6 : AF_INET;

	cr_assert_eq(conf_parse_cidr(cidr, &c, msg, sizeof(msg)), 0);
	cr_assert_eq(inet_pton(family, ip, addr), 1);
	return conf_cidr_contains(&c, family, addr);
}

Test(conf, cidr_contains)
{
	cr_assert(cidr_has("10.0.0.0/8", "10.255.1.2"));
	cr_assert(!cidr_has("10.0.0.0/8", "11.0.0.1"));
	cr_assert(cidr_has("192.168.4.0/22", "192.168.7.255"));
	cr_assert(!cidr_has("192.168.4.0/22", "192.168.8.0"));
	cr_assert(!cidr_has("192.168.4.0/22", "192.168.3.255"));
	cr_assert(cidr_has("0.0.0.0/0", "203.0.113.9"));
	cr_assert(cidr_has("1.2.3.4/32", "1.2.3.4"));
	cr_assert(!cidr_has("1.2.3.4/32", "1.2.3.5"));
	cr_assert(cidr_has("fd00::/64", "fd00::1"));
	cr_assert(!cidr_has("fd00::/64", "fd00:0:0:1::1"));
	cr_assert(cidr_has("2001:db8::/33", "2001:db8:7fff::1"));
	cr_assert(!cidr_has("2001:db8::/33", "2001:db8:8000::1"));
	cr_assert(cidr_has("::/0", "::1"));
	/* Families never mix, not even 0/0 and ::/0. */
	cr_assert(!cidr_has("0.0.0.0/0", "::ffff:10.0.0.1"));
	cr_assert(!cidr_has("::/0", "10.0.0.1"));
}

Test(conf, at_most_max_cidrs)
{
	char		list[1024];
	struct conf	c;
	size_t		n = 0;
	int		i;

	for (i = 0; i <= CONF_MAX_CIDRS; i++)
		n += (size_t)snprintf(list + n, sizeof(list) - n,
		    "%s10.%d.0.0/16", i > 0 ? "," : "", i);
	cr_assert_eq(PARSE(&c, "--nodeport-addresses", list), -1);
	cr_assert_not_null(strstr(err, "at most 16"), "%s", err);
	conf_clear(&c);
}

/* Config files. */

static int
load_into(struct conf *c, const char *path)
{
	conf_defaults(c);
	err[0] = '\0';
	return conf_load_file(c, path, err, sizeof(err));
}

struct load_job {
	struct conf	*conf;
	const char	*path;
};

static int
load_job_run(void *arg)
{
	struct load_job *job = arg;

	return load_into(job->conf, job->path);
}

/* Load path and return what was logged; *rc is conf_load_file's. */
static char *
load_logged(struct conf *c, const char *path, int *rc)
{
	struct load_job job = { c, path };

	return capture_stderr(load_job_run, &job, rc);
}

static void
assert_userspace_config(const struct conf *c)
{
	cr_assert_str_eq(c->bind_address, "10.0.0.5");
	cr_assert_eq(c->port_range_begin, 30000);
	cr_assert_eq(c->port_range_end, 30100);
	cr_assert_str_eq(c->hostname_override, "node-1");
	cr_assert_eq(c->n_nodeport_cidrs, 2);
	cr_assert_eq(c->nodeport_cidrs[0].family, AF_INET);
	cr_assert_eq(c->nodeport_cidrs[0].prefix_len, 8);
	cr_assert_eq(c->nodeport_cidrs[1].family, AF_INET6);
	cr_assert_eq(c->nodeport_cidrs[1].prefix_len, 64);
	cr_assert_eq(c->udp_timeout_ms, 1000);
	cr_assert_eq(c->config_sync_period_ms, 600000);
	cr_assert_str_eq(c->healthz_bind_address, "0.0.0.0:10266");
	cr_assert_str_eq(c->metrics_bind_address, "[::1]:10259");
	cr_assert_str_eq(c->kubeconfig, "/var/lib/kube-proxy/kubeconfig.conf");
	cr_assert_eq(c->sync_period_ms, 60000);
	cr_assert_eq(c->min_sync_period_ms, 2000);
	cr_assert_eq(c->logging_format, LOG_FORMAT_JSON);
	cr_assert_eq(c->verbosity, 2);
	cr_assert_eq(c->iptables_backend, CONF_IPT_NFT);
	cr_assert_eq(c->n_external_ip_allow, 1);
	cr_assert_eq(c->external_ip_allow[0].prefix_len, 24);
	cr_assert_eq(c->udp_max_assoc_per_port, 1024);
	cr_assert_eq(c->udp_max_assoc_total, 8192);
	cr_assert_eq(c->tcp_idle_timeout_ms, 3600000);
	cr_assert_eq(c->relay_mode, CONF_RELAY_COPY);
	cr_assert_eq(c->shutdown_grace_ms, 10000);
	cr_assert_str_eq(c->status_socket, "/run/kuproxy/node-1.sock");
	cr_assert_eq(c->tcp_max_connections, 5000);
	cr_assert_eq(c->tcp_keepalive_ms, 120000);
	cr_assert_eq(c->tcp_half_close_timeout_ms, 600000);
	cr_assert(c->udp_reject_privileged_sources);
}

Test(conf, config_file_yaml)
{
	struct conf	 c;
	char		*logged;
	int		 rc;

	logged = load_logged(&c, CONF_DATA "/userspace.yaml", &rc);
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert_str_eq(logged, "", "no warnings expected: %s", logged);
	assert_userspace_config(&c);
	free(logged);
	conf_clear(&c);
}

Test(conf, config_file_json)
{
	struct conf c;

	cr_assert_eq(load_into(&c, CONF_DATA "/userspace.json"), 0, "%s", err);
	assert_userspace_config(&c);
	conf_clear(&c);
}

Test(conf, kubeadm_default_config_keeps_defaults_without_warnings)
{
	struct conf	 c, d;
	char		*logged;
	int		 rc;

	logged = load_logged(&c, CONF_DATA "/kubeadm-default.yaml", &rc);
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert_str_eq(logged, "", "no warnings expected: %s", logged);
	conf_defaults(&d);
	cr_assert_str_eq(c.kubeconfig, "/var/lib/kube-proxy/kubeconfig.conf");
	cr_assert_str_eq(c.bind_address, d.bind_address);
	cr_assert_str_eq(c.healthz_bind_address, d.healthz_bind_address);
	cr_assert_str_eq(c.metrics_bind_address, d.metrics_bind_address);
	cr_assert_eq(c.sync_period_ms, d.sync_period_ms);
	cr_assert_eq(c.min_sync_period_ms, d.min_sync_period_ms);
	cr_assert_eq(c.config_sync_period_ms, d.config_sync_period_ms);
	cr_assert_eq(c.udp_timeout_ms, d.udp_timeout_ms);
	cr_assert_eq(c.n_nodeport_cidrs, 0);
	free(logged);
	conf_clear(&c);
	conf_clear(&d);
}

Test(conf, kubeadm_init_file_with_several_documents)
{
	struct conf	 c;
	char		*logged;
	int		 rc;

	logged = load_logged(&c, CONF_DATA "/kubeadm-init.yaml", &rc);
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert_str_eq(c.kubeconfig, "/etc/kubernetes/kube-proxy.conf");
	cr_assert_eq(c.port_range_begin, 40000);
	cr_assert_eq(c.port_range_end, 40099);
	cr_assert_not_null(strstr(logged, "kubeadm-init.yaml:21: clusterCIDR: "
	    "accepted but has no effect in kuproxy"), "%s", logged);
	cr_assert_eq(count_lines(logged), 1, "%s", logged);
	free(logged);
	conf_clear(&c);
}

Test(conf, ignored_fields_warn_once_each_and_load)
{
	static const char *const expect[] = {
		"ignored-fields.yaml:3: clusterCIDR: accepted but has no "
		"effect in kuproxy",
		"ignored-fields.yaml:5: conntrack.maxPerCore: accepted",
		"ignored-fields.yaml:6: conntrack.min: accepted",
		"ignored-fields.yaml:7: conntrack.tcpCloseWaitTimeout: "
		"accepted",
		"ignored-fields.yaml:8: conntrack.tcpEstablishedTimeout: "
		"accepted",
		"ignored-fields.yaml:10: iptables.masqueradeAll: accepted",
		"ignored-fields.yaml:11: iptables.masqueradeBit: accepted",
		"ignored-fields.yaml:13: oomScoreAdj: accepted",
		"ignored-fields.yaml:15: featureGates.SomeGate: accepted",
	};
	struct conf	 c;
	char		*logged;
	size_t		 i;
	int		 rc;

	logged = load_logged(&c, CONF_DATA "/ignored-fields.yaml", &rc);
	cr_assert_eq(rc, 0, "%s", err);
	for (i = 0; i < N(expect); i++)
		cr_assert_not_null(strstr(logged, expect[i]),
		    "missing %s in\n%s", expect[i], logged);
	cr_assert_eq(count_lines(logged), N(expect), "%s", logged);
	cr_assert_eq(c.sync_period_ms, 30000);
	free(logged);
	conf_clear(&c);
}

/* A small config in a temp file; returns conf_load_file's result. */
static int
load_text(struct conf *c, const char *text, char **path)
{
	*path = write_temp("kube-proxy.yaml", text);
	return load_into(c, *path);
}

#define KPC_HEAD	"apiVersion: kubeproxy.config.k8s.io/v1alpha1\n" \
			"kind: KubeProxyConfiguration\n"

/* err must be exactly "PATH" followed by suffix. */
static void
assert_err_at(const char *path, const char *suffix)
{
	char want[1024];

	snprintf(want, sizeof(want), "%s%s", path, suffix);
	cr_assert_str_eq(err, want);
}

Test(conf, config_errors_name_file_line_and_field)
{
	static const struct {
		const char	*text;
		const char	*suffix;
	} bad[] = {
		{ KPC_HEAD "iptables:\n  syncPeriod: 30s\n  syncPerod: 1m\n",
		    ":5: unknown field \"iptables.syncPerod\"" },
		{ KPC_HEAD "bindAddres: 10.0.0.1\n",
		    ":3: unknown field \"bindAddres\"" },
		{ KPC_HEAD "kuproxy:\n  relayMode: copy\n  turbo: true\n",
		    ":5: unknown field \"kuproxy.turbo\"" },
		{ KPC_HEAD "iptables:\n  syncPeriod: 30\n",
		    ":4: iptables.syncPeriod: expected a duration such as 30s, "
		    "got 30" },
		{ KPC_HEAD "iptables:\n  syncPeriod: 30x\n",
		    ":4: iptables.syncPeriod: \"30x\": expected a duration "
		    "such as 30s; unknown unit \"x\" (use ns, us, ms, s, m or "
		    "h)" },
		{ KPC_HEAD "udpIdleTimeout: \"250\"\n",
		    ":3: udpIdleTimeout: \"250\": expected a duration such as "
		    "30s; a number needs a unit (ns, us, ms, s, m or h)" },
		{ KPC_HEAD "mode: iptables\n",
		    ":3: mode: \"iptables\" is not supported: kuproxy only "
		    "provides kube-proxy's userspace mode (leave mode empty or "
		    "set it to \"userspace\")" },
		{ KPC_HEAD "bindAddress: 127.0.0.1\n",
		    ":3: bindAddress: \"127.0.0.1\": cannot proxy on "
		    "localhost" },
		{ KPC_HEAD "portRange: 30000\n",
		    ":3: portRange: expected a string, got 30000 (quote it)" },
		{ KPC_HEAD "portRange: 70000-80000\n",
		    ":3: portRange: \"70000-80000\": expected BEGIN-END or "
		    "BEGIN+OFFSET with ports 1-65535" },
		{ KPC_HEAD "nodePortAddresses: 10.0.0.0/8\n",
		    ":3: nodePortAddresses: expected a list of CIDRs, got "
		    "\"10.0.0.0/8\"" },
		{ KPC_HEAD "nodePortAddresses:\n- 10.0.0.0/8\n- 10.1.0.0\n",
		    ":5: nodePortAddresses: \"10.1.0.0\": expected a CIDR such "
		    "as 10.0.0.0/8 or fd00::/64 (a /prefix length is needed)" },
		{ KPC_HEAD "logging:\n  verbosity: high\n",
		    ":4: logging.verbosity: expected a whole number, got "
		    "\"high\"" },
		{ KPC_HEAD "iptables: 30s\n",
		    ":3: iptables: expected a mapping of fields, got \"30s\"" },
		{ "apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
		    "kind: KubeletConfiguration\n",
		    ":2: kind: expected KubeProxyConfiguration, got "
		    "\"KubeletConfiguration\"" },
		{ "apiVersion: kubeproxy.config.k8s.io/v1alpha2\n"
		    "kind: KubeProxyConfiguration\n",
		    ":1: apiVersion: expected "
		    "kubeproxy.config.k8s.io/v1alpha1, got "
		    "\"kubeproxy.config.k8s.io/v1alpha2\"" },
		{ "kind: KubeProxyConfiguration\nbindAddress: 0.0.0.0\n",
		    ":1: apiVersion: missing; expected "
		    "kubeproxy.config.k8s.io/v1alpha1" },
		{ "", ": no KubeProxyConfiguration in the file (it is empty)" },
		{ "- 1\n- 2\n",
		    ":1: expected a KubeProxyConfiguration mapping" },
		{ KPC_HEAD "bindAddress: [\n", ":4:1: did not find expected "
		    "node content" },
		{ KPC_HEAD "kuproxy:\n  udpRejectPrivilegedSources: \"yes\"\n",
		    ":4: kuproxy.udpRejectPrivilegedSources: expected true or "
		    "false, got \"yes\"" },
	};
	struct conf	 c;
	char		*path;
	size_t		 i;

	for (i = 0; i < N(bad); i++) {
		cr_assert_eq(load_text(&c, bad[i].text, &path), -1,
		    "accepted:\n%s", bad[i].text);
		if (strstr(bad[i].suffix, "did not find") != NULL)
			cr_assert_eq(strncmp(err, path, strlen(path)), 0, "%s",
			    err);
		else
			assert_err_at(path, bad[i].suffix);
		unlink(path);
		free(path);
		conf_clear(&c);
	}
}

Test(conf, config_file_that_cannot_be_read)
{
	struct conf c;

	cr_assert_eq(PARSE(&c, "--config", "/nonexistent/kube-proxy.yaml"),
	    -1);
	cr_assert_not_null(strstr(err, "/nonexistent/kube-proxy.yaml"), "%s",
	    err);
	conf_clear(&c);
}

Test(conf, json_config_errors_name_the_file_and_field)
{
	struct conf	 c;
	char		*path;

	path = write_temp("kube-proxy.json", "{\"apiVersion\": "
	    "\"kubeproxy.config.k8s.io/v1alpha1\", \"kind\": "
	    "\"KubeProxyConfiguration\", \"iptables\": {\"syncPeriod\": 30}}");
	cr_assert_eq(load_into(&c, path), -1);
	cr_assert_not_null(strstr(err, path), "%s", err);
	cr_assert_not_null(strstr(err, "iptables.syncPeriod: expected a "
	    "duration such as 30s, got 30"), "%s", err);
	unlink(path);
	free(path);
	conf_clear(&c);
}

Test(conf, flags_override_the_file)
{
	struct conf	 c;
	char		*conf_arg;

	cr_assert(asprintf(&conf_arg, "--config=%s", CONF_DATA
	    "/userspace.yaml") > 0);
	/* Flags both before and after --config win over the file. */
	cr_assert_eq(PARSE(&c, "--udp-timeout", "5s", conf_arg,
	    "--bind-address", "10.9.8.7", "--nodeport-addresses=",
	    "--logging-format=text", "-v", "0", "--relay-mode=splice",
	    "--iptables-min-sync-period=1s"), 0, "%s", err);
	cr_assert_eq(c.udp_timeout_ms, 5000);
	cr_assert_str_eq(c.bind_address, "10.9.8.7");
	cr_assert_eq(c.n_nodeport_cidrs, 0);
	cr_assert_eq(c.logging_format, LOG_FORMAT_TEXT);
	cr_assert_eq(c.verbosity, 0);
	cr_assert_eq(c.relay_mode, CONF_RELAY_SPLICE);
	cr_assert_eq(c.min_sync_period_ms, 1000);
	/* What no flag named comes from the file. */
	cr_assert_eq(c.sync_period_ms, 60000);
	cr_assert_str_eq(c.hostname_override, "node-1");
	cr_assert_eq(c.iptables_backend, CONF_IPT_NFT);
	cr_assert_str_eq(c.config_file, CONF_DATA "/userspace.yaml");
	free(conf_arg);
	conf_clear(&c);
}

Test(conf, file_values_are_checked_together_with_flags)
{
	struct conf	 c;
	char		*path, *conf_arg;

	path = write_temp("min-sync.yaml", KPC_HEAD
	    "iptables:\n  minSyncPeriod: 1m\n");
	cr_assert(asprintf(&conf_arg, "--config=%s", path) > 0);
	cr_assert_eq(PARSE(&c, conf_arg), -1);
	cr_assert_not_null(strstr(err, "must not be shorter than "
	    "--iptables-min-sync-period"), "%s", err);
	conf_clear(&c);
	cr_assert_eq(PARSE(&c, conf_arg, "--iptables-min-sync-period=2s"), 0,
	    "%s", err);
	conf_clear(&c);
	unlink(path);
	free(path);
	free(conf_arg);
}
