/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests of least privilege (base/privdrop.c): which capabilities each
 * configuration needs and keeps, --user's NAME[:GROUP] lookup, and, as
 * root, the drop itself and the missing-capability error.  Criterion runs
 * every test in a process of its own, so a test may give up root for good.
 */
#include "config.h"

#include <cap-ng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "base/privdrop.h"
#include "conf/conf.h"

static char	err[1024];

/* conf_defaults(), then conf_parse_args() on a NULL-terminated argv. */
static void
parse_argv(struct conf *c, char **argv)
{
	int argc = 0;

	while (argv[argc] != NULL)
		argc++;
	conf_defaults(c);
	cr_assert_eq(conf_parse_args(c, argc, argv, err, sizeof(err)), 0,
	    "%s", err);
}

#define PARSE(c, ...)	\
	parse_argv(c, (char *[]){ "kuproxy", "--services-file", "x.yaml", \
	    __VA_ARGS__, NULL })

/* The value of "Key:" in /proc/self/status, e.g. "CapEff"; owned. */
static char *
proc_status(const char *key)
{
	char	 line[256], *v = NULL;
	size_t	 klen = strlen(key);
	FILE	*f;

	cr_assert_not_null(f = fopen("/proc/self/status", "r"));
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, key, klen) != 0 || line[klen] != ':')
			continue;
		v = strdup(line + klen + 1 + strspn(line + klen + 1, " \t"));
		v[strcspn(v, "\n")] = '\0';
		break;
	}
	fclose(f);
	cr_assert_not_null(v, "no %s in /proc/self/status", key);
	return v;
}

Test(privdrop, defaults_need_net_admin_and_keep_raw_for_auto)
{
	struct conf		c;
	struct privdrop_needs	n;

	PARSE(&c, "-v", "0");
	privdrop_needs(&c, &n);
	cr_assert_eq(n.required, PRIVDROP_NET_ADMIN);
	cr_assert_eq(n.kept, PRIVDROP_NET_ADMIN | PRIVDROP_NET_RAW |
	    PRIVDROP_NET_BIND);
	cr_assert_eq(n.ambient, PRIVDROP_NET_ADMIN | PRIVDROP_NET_RAW);
	cr_assert(strstr(n.why[0], "--iptables-backend auto") != NULL,
	    "%s", n.why[0]);
	conf_clear(&c);
}

Test(privdrop, legacy_requires_net_raw)
{
	struct conf		c;
	struct privdrop_needs	n;

	PARSE(&c, "--iptables-backend", "legacy");
	privdrop_needs(&c, &n);
	cr_assert_eq(n.required, PRIVDROP_NET_ADMIN | PRIVDROP_NET_RAW);
	cr_assert(strstr(n.why[1], "raw socket") != NULL, "%s", n.why[1]);
	conf_clear(&c);
}

Test(privdrop, nft_needs_no_net_raw)
{
	struct conf		c;
	struct privdrop_needs	n;

	PARSE(&c, "--iptables-backend", "nft");
	privdrop_needs(&c, &n);
	cr_assert_eq(n.required, PRIVDROP_NET_ADMIN);
	cr_assert_eq(n.kept, PRIVDROP_NET_ADMIN | PRIVDROP_NET_BIND);
	cr_assert_eq(n.ambient, PRIVDROP_NET_ADMIN);
	conf_clear(&c);
}

Test(privdrop, no_rules_and_high_ports_need_nothing)
{
	struct conf		c;
	struct privdrop_needs	n;

	PARSE(&c, "--iptables-backend", "none", "--proxy-port-range",
	    "20000-20099");
	privdrop_needs(&c, &n);
	cr_assert_eq(n.required, 0);
	cr_assert_eq(n.kept, 0);
	cr_assert_eq(n.ambient, 0);
	conf_clear(&c);
}

Test(privdrop, low_ports_require_net_bind_service)
{
	static char *cases[][3] = {
		{ "--proxy-port-range", "80-90", "port 80" },
		{ "--healthz-bind-address", "0.0.0.0:256", "port 256" },
		{ "--metrics-bind-address", "[::1]:1023", "port 1023" },
	};
	struct conf		c;
	struct privdrop_needs	n;
	size_t			i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		PARSE(&c, "--iptables-backend", "none", cases[i][0],
		    cases[i][1]);
		privdrop_needs(&c, &n);
		cr_assert_eq(n.required, PRIVDROP_NET_BIND, "%s", cases[i][0]);
		cr_assert_eq(n.ambient, 0);
		cr_assert(strstr(n.why[2], cases[i][0]) != NULL &&
		    strstr(n.why[2], cases[i][2]) != NULL, "%s", n.why[2]);
		conf_clear(&c);
	}
	/* Port 0 is ephemeral, never privileged. */
	PARSE(&c, "--iptables-backend", "none", "--healthz-bind-address",
	    "0.0.0.0:0");
	privdrop_needs(&c, &n);
	cr_assert_eq(n.required, 0);
	conf_clear(&c);
}

Test(privdrop, cap_names)
{
	cr_assert_str_eq(privdrop_cap_name(PRIVDROP_NET_ADMIN),
	    "CAP_NET_ADMIN");
	cr_assert_str_eq(privdrop_cap_name(PRIVDROP_NET_RAW), "CAP_NET_RAW");
	cr_assert_str_eq(privdrop_cap_name(PRIVDROP_NET_BIND),
	    "CAP_NET_BIND_SERVICE");
	cr_assert_str_eq(privdrop_cap_name(0x80), "?");
}

Test(privdrop, lookup_user_names_and_numbers)
{
	uid_t uid;
	gid_t gid;

	cr_assert_eq(privdrop_lookup_user("root", &uid, &gid, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert(uid == 0 && gid == 0);
	cr_assert_eq(privdrop_lookup_user("0", &uid, &gid, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert(uid == 0 && gid == 0);
	/* A uid without a passwd entry needs its group spelled out. */
	cr_assert_eq(privdrop_lookup_user("4242424:4242", &uid, &gid, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert(uid == 4242424 && gid == 4242);
	cr_assert_eq(privdrop_lookup_user("4242424", &uid, &gid, err,
	    sizeof(err)), -1);
	cr_assert(strstr(err, "UID:GID") != NULL, "%s", err);
	cr_assert_eq(privdrop_lookup_user("root:0", &uid, &gid, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert(uid == 0 && gid == 0);
}

Test(privdrop, lookup_user_errors_name_the_input)
{
	static const char *const bad[][2] = {
		{ "", "expected NAME[:GROUP]" },
		{ ":root", "expected NAME[:GROUP]" },
		{ "root:", "expected NAME[:GROUP]" },
		{ "no-such-user-kuproxy", "no such user" },
		{ "root:no-such-group-kuproxy", "no such group" },
	};
	uid_t	uid;
	gid_t	gid;
	size_t	i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(privdrop_lookup_user(bad[i][0], &uid, &gid, err,
		    sizeof(err)), -1, "%s", bad[i][0]);
		cr_assert(strstr(err, bad[i][1]) != NULL &&
		    strstr(err, "--user") != NULL, "%s: %s", bad[i][0], err);
	}
}

Test(privdrop, root_user_is_refused)
{
	struct conf c;

	PARSE(&c, "--iptables-backend", "none", "--user", "root");
	cr_assert_eq(privdrop_setup(&c, err, sizeof(err)), -1);
	cr_assert(strstr(err, "is root") != NULL, "%s", err);
	conf_clear(&c);
}

Test(privdrop, user_keeps_only_what_nft_needs)
{
	struct conf	 c;
	char		*v;

	if (geteuid() != 0)
		cr_skip_test("needs root to switch users");
	PARSE(&c, "--iptables-backend", "nft", "--status-socket", "",
	    "--user", "nobody");
	cr_assert_eq(privdrop_setup(&c, err, sizeof(err)), 0, "%s", err);
	cr_assert_neq(geteuid(), 0);
	cr_assert_neq(getuid(), 0);
	/* CAP_NET_ADMIN (12) and CAP_NET_BIND_SERVICE (10); 12 ambient. */
	cr_assert_str_eq(v = proc_status("CapEff"), "0000000000001400");
	free(v);
	cr_assert_str_eq(v = proc_status("CapPrm"), "0000000000001400");
	free(v);
	cr_assert_str_eq(v = proc_status("CapAmb"), "0000000000001000");
	free(v);
	cr_assert_str_eq(v = proc_status("CapBnd"), "0000000000000000");
	free(v);
	cr_assert_str_eq(v = proc_status("NoNewPrivs"), "1");
	free(v);
	cr_assert_str_eq(v = proc_status("Groups"), "");
	free(v);
	conf_clear(&c);
}

Test(privdrop, missing_net_admin_is_named)
{
	struct conf c;

	if (geteuid() != 0)
		cr_skip_test("needs root to make a user without capabilities");
	/* A uid with nothing: what setpriv without --ambient-caps gives. */
	capng_clear(CAPNG_SELECT_BOTH);
	cr_assert_eq(capng_change_id(65534, 65534, CAPNG_DROP_SUPP_GRP), 0);
	PARSE(&c, "--iptables-backend", "nft");
	cr_assert_eq(privdrop_setup(&c, err, sizeof(err)), -1);
	cr_assert(strstr(err, "missing capability CAP_NET_ADMIN") != NULL &&
	    strstr(err, "--iptables-backend nft") != NULL, "%s", err);
	conf_clear(&c);
}

Test(privdrop, user_without_rules_keeps_nothing)
{
	struct conf	 c;
	char		*v;

	if (geteuid() != 0)
		cr_skip_test("needs root to switch users");
	PARSE(&c, "--iptables-backend", "none", "--status-socket", "",
	    "--user", "nobody:nogroup");
	cr_assert_eq(privdrop_setup(&c, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(v = proc_status("CapEff"), "0000000000000000");
	free(v);
	cr_assert_str_eq(v = proc_status("CapAmb"), "0000000000000000");
	free(v);
	conf_clear(&c);
}
