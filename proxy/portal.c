/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Portal execution: choosing the iptables backend (legacy or nft), finding
 * the host IP, and applying portal_render()'s text with one
 * iptables-restore --noflush per family per sync.  Also the jumps into our
 * chains, clean removal and --cleanup, UDP conntrack flushes and the
 * sockets that hold node ports.  The only code in kuproxy that runs a
 * program.
 *
 * Never touches a rule outside our chains except the five jumps into them.
 * Upstream ran one iptables exec per rule and never removed a rule it did
 * not expect (k/k#20479); here each sync is a single transaction that
 * rewrites whole chains, so drift is repaired on every sync.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <bsd/string.h>

#include "base/log.h"
#include "proxy/portal.h"
#include "proxy/portal_exec.h"

/*
 * iptables-legacy takes the xtables lock for a restore; nft has no such
 * lock.  kube-proxy waits up to 5 s (-w 5), which here would stop every
 * relay and accept meanwhile: a sync first checks the lock itself, waits a
 * little for a holder that is quick (another iptables command), and
 * otherwise backs off (portal_lock_busy).  The restore's own wait, 1 s
 * (iptables counts whole seconds; -w 0 waits for ever), then covers only a
 * holder that took the lock between that check and the restore.  The
 * start-up probe, removal and --cleanup still wait 5 s.
 */
#define PORTAL_LOCK_WAIT_S	"5"
#define PORTAL_SYNC_LOCK_WAIT_S	"1"
#define PORTAL_LOCK_CHECK_MS	200	/* the longest a sync waits */
#define PORTAL_LOCK_CHECK_STEP_MS 10
/* A scratch chain for the start-up checks; --cleanup removes it too. */
#define PORTAL_PROBE_CHAIN	"KUPROXY-PROBE"

struct portal {
	enum conf_iptables_backend	 backend;	/* LEGACY, NFT, NONE */
	struct portal_env		 env;
	struct conf_cidr		 nodeport_cidrs[CONF_MAX_CIDRS];
	struct conf_cidr		 external_ip_allow[CONF_MAX_CIDRS];
	bool				 v6_active;	/* IPv6 chains exist */
	bool				 conntrack_warned;
	char				*denied_warned;	/* last warnings */
};

static const char *const portal_our_chains[] = {
	PORTAL_CHAIN_PORTALS_CONTAINER, PORTAL_CHAIN_PORTALS_HOST,
	PORTAL_CHAIN_NODEPORT_CONTAINER, PORTAL_CHAIN_NODEPORT_HOST,
	PORTAL_CHAIN_NODEPORT_NON_LOCAL, PORTAL_PROBE_CHAIN,
};
#define PORTAL_N_OUR_CHAINS \
	(sizeof(portal_our_chains) / sizeof(portal_our_chains[0]))

/* iptables-{legacy,nft}-{restore,save} and their ip6tables twins. */
static const char *
portal_tool(enum conf_iptables_backend backend, int family, bool save)
{
	static const char *const names[2][2][2] = {
		{ { "iptables-legacy-restore", "iptables-legacy-save" },
		  { "ip6tables-legacy-restore", "ip6tables-legacy-save" } },
		{ { "iptables-nft-restore", "iptables-nft-save" },
		  { "ip6tables-nft-restore", "ip6tables-nft-save" } },
	};

	return names[backend == CONF_IPT_NFT][family == AF_INET6][save];
}

static const char *
portal_family_name(int family)
{
	return family == AF_INET6 ? "IPv6" : "IPv4";
}

/*
 * Log a failed restore: the tool's own words, and the input line it
 * names ("iptables-restore: line 7 failed"), which says which rule.
 */
static void
portal_log_failure(const char *tool, struct portal_run *run,
    const char *input)
{
	const char	*p, *end;
	int		 line = 0, n;

	/* legacy: "line 7 failed"; nft: "Error occurred at line: 7". */
	for (p = run->err; input != NULL && line == 0 &&
	    (p = strstr(p, "line")) != NULL; p += 4)
		line = atoi(p + 4 + strspn(p + 4, ": "));
	log_warnx("%s failed (exit %d): %s", tool, run->status,
	    portal_one_line(run->err));
	for (p = input, n = 1; line > 0 && p != NULL && *p != '\0'; n++) {
		end = strchr(p, '\n');
		if (n == line) {
			log_warnx("%s: line %d was: %.*s", tool, line,
			    end != NULL ? (int)(end - p) : (int)strlen(p), p);
			break;
		}
		p = end != NULL ? end + 1 : NULL;
	}
}

/*
 * Run a restore tool on input, waiting at most lock_wait_s seconds for the
 * xtables lock.  Returns 0 or -1 (logged unless quiet; the tool's stderr
 * is copied to err when err is not NULL).
 */
static int
portal_restore_wait(enum conf_iptables_backend backend, int family,
    const char *input, const char *lock_wait_s, bool quiet, char *err,
    size_t errlen)
{
	const char		*tool = portal_tool(backend, family, false);
	const char *const	 argv[] = { tool, "-w", lock_wait_s,
	    "--noflush", NULL };
	struct portal_run	 run;
	int			 rc = 0;

	if (portal_exec(argv, input, &run) == -1) {
		if (err != NULL)
			snprintf(err, errlen, "%s: %s", tool, strerror(errno));
		if (!quiet)
			log_warn("%s", tool);
		portal_run_clear(&run);
		return -1;
	}
	if (run.status != 0) {
		if (err != NULL)
			snprintf(err, errlen, "%s failed: %s", tool,
			    portal_one_line(run.err));
		if (!quiet)
			portal_log_failure(tool, &run, input);
		rc = -1;
	}
	portal_run_clear(&run);
	return rc;
}

/* portal_restore_wait() with iptables' usual 5 s wait for the lock. */
static int
portal_restore(enum conf_iptables_backend backend, int family,
    const char *input, bool quiet, char *err, size_t errlen)
{
	return portal_restore_wait(backend, family, input, PORTAL_LOCK_WAIT_S,
	    quiet, err, errlen);
}

/*
 * Whether another program holds the xtables lock that iptables-legacy-
 * restore would wait for ($XTABLES_LOCKFILE, as iptables reads it, else
 * /run/xtables.lock) for longer than PORTAL_LOCK_CHECK_MS.  A restore
 * started then would block the event loop, and with it every relay and
 * accept, for as long as its -w lets it wait; the caller fails the sync
 * instead and the proxier retries with back-off.  Logs when busy.
 * A lock file that cannot be opened is not busy: iptables creates it, or
 * reports why it cannot.
 */
static bool
portal_lock_busy(enum conf_iptables_backend backend)
{
	const struct timespec	 step = { 0,
	    PORTAL_LOCK_CHECK_STEP_MS * 1000000L };
	const char		*path = portal_xtables_lock_path();
	int			 fd, waited_ms = 0;
	bool			 busy;

	if (backend != CONF_IPT_LEGACY)
		return false;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1)
		return false;
	while ((busy = flock(fd, LOCK_EX | LOCK_NB) == -1 &&
	    errno == EWOULDBLOCK) && waited_ms < PORTAL_LOCK_CHECK_MS) {
		nanosleep(&step, NULL);
		waited_ms += PORTAL_LOCK_CHECK_STEP_MS;
	}
	/* Closing releases the check's own lock before the restore runs. */
	close(fd);
	if (busy)
		log_warnx("iptables-legacy-restore: the xtables lock %s is held "
		    "by another program; backing off instead of waiting", path);
	return busy;
}

/* Run the save tool; 0 with its output in run, or -1 (run cleared). */
static int
portal_save(enum conf_iptables_backend backend, int family,
    struct portal_run *run)
{
	/*
	 * Table by table: without -t, iptables-legacy-save lists the tables
	 * from /proc/net/ip_tables_names, which only root may read, and
	 * kuproxy may run as a user with capabilities only.  mangle holds
	 * kubelet's hint chain for the backend choice and may be absent.
	 */
	static const char *const tables[] = { "nat", "filter", "mangle" };
	struct portal_run	 one;
	char			*out;
	size_t			 i;

	memset(run, 0, sizeof(*run));
	for (i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		const char *const argv[] = { portal_tool(backend, family, true),
		    "-t", tables[i], NULL };

		memset(&one, 0, sizeof(one));
		if (portal_exec(argv, NULL, &one) == -1 || one.status != 0) {
			portal_run_clear(&one);
			if (strcmp(tables[i], "mangle") == 0)
				continue;
			portal_run_clear(run);
			return -1;
		}
		if ((out = realloc(run->out, run->out_len + one.out_len +
		    1)) == NULL) {
			portal_run_clear(&one);
			portal_run_clear(run);
			return -1;
		}
		memcpy(out + run->out_len, one.out, one.out_len + 1);
		run->out = out;
		run->out_len += one.out_len;
		portal_run_clear(&one);
	}
	return 0;
}

/* Reading iptables-save output */

/* The index of name[0..len) in portal_our_chains, or -1. */
static int
portal_our_chain_index(const char *name, size_t len)
{
	size_t	 i;

	for (i = 0; i < PORTAL_N_OUR_CHAINS; i++)
		if (strlen(portal_our_chains[i]) == len &&
		    strncmp(portal_our_chains[i], name, len) == 0)
			return (int)i;
	return -1;
}

static bool
portal_is_jump_source(const char *name, size_t len)
{
	int	 j;

	for (j = 0; j < PORTAL_N_JUMPS; j++)
		if (strlen(portal_jumps[j].from) == len &&
		    strncmp(portal_jumps[j].from, name, len) == 0)
			return true;
	return false;
}

/* The restore commands one iptables-save output calls for, per table. */
struct portal_fix {
	FILE	*nat, *filter;
	char	*nat_text, *filter_text;
	size_t	 nat_len, filter_len;
	bool	 any;
};

static bool
portal_jump_matches(const struct portal_jump *j, const char *table,
    const char *line)
{
	char	 want[512];

	snprintf(want, sizeof(want), "-A %s %s -j %s", j->from, j->args,
	    j->chain);
	return strcmp(table, j->table) == 0 && strcmp(line, want) == 0;
}

/*
 * One "-A" line of table: if it jumps from PREROUTING, OUTPUT or INPUT
 * into one of our chains, keep it when keep_jumps and it is the first
 * exact copy of one of portal_jumps, else delete it.  seen counts the
 * kept copies.
 */
static void
portal_scan_rule(struct portal_fix *fix, const char *table, const char *line,
    bool keep_jumps, unsigned seen[PORTAL_N_JUMPS])
{
	const char	*from = line + 3, *target;
	size_t		 from_len = strcspn(from, " ");
	FILE		*f;
	int		 j;

	if ((target = strstr(line, " -j ")) == NULL)
		return;
	while (strstr(target + 1, " -j ") != NULL)
		target = strstr(target + 1, " -j ");
	target += 4;
	/* Only jumps from the built-in chains we use are ours to fix. */
	if (portal_our_chain_index(target, strlen(target)) == -1 ||
	    !portal_is_jump_source(from, from_len))
		return;
	for (j = 0; keep_jumps && j < PORTAL_N_JUMPS; j++)
		if (portal_jump_matches(&portal_jumps[j], table, line) &&
		    seen[j]++ == 0)
			return;
	f = strcmp(table, "filter") == 0 ? fix->filter : fix->nat;
	fprintf(f, "-D %s\n", line + 3);
	fix->any = true;
}

/*
 * Read iptables-save output and write the repairs: with keep_jumps (a
 * sync), delete stray or duplicated jumps into our chains and add the
 * missing ones; without (removal), delete every jump, then flush and delete
 * each of our chains that exists.
 */
static int
portal_scan(char *save, bool keep_jumps, struct portal_fix *fix)
{
	unsigned	 seen[PORTAL_N_JUMPS] = { 0 };
	unsigned	 chains[2] = { 0, 0 };	/* ours present: nat, filter */
	char		 table[32] = "";
	char		*line, *next;
	size_t		 c;
	int		 j, k;

	memset(fix, 0, sizeof(*fix));
	if ((fix->nat = open_memstream(&fix->nat_text, &fix->nat_len)) ==
	    NULL || (fix->filter = open_memstream(&fix->filter_text,
	    &fix->filter_len)) == NULL)
		return -1;
	for (line = save; line != NULL && *line != '\0'; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		if (line[0] == '*')
			strlcpy(table, line + 1, sizeof(table));
		if (strcmp(table, "nat") != 0 && strcmp(table, "filter") != 0)
			continue;
		if (strncmp(line, "-A ", 3) == 0)
			portal_scan_rule(fix, table, line, keep_jumps, seen);
		else if (line[0] == ':' && (k = portal_our_chain_index(line + 1,
		    strcspn(line + 1, " "))) != -1)
			chains[strcmp(table, "filter") == 0] |= 1u << k;
	}
	/* After the jumps: a chain still referenced cannot be deleted. */
	for (c = 0; !keep_jumps && c < PORTAL_N_OUR_CHAINS; c++) {
		if (chains[0] & (1u << c))
			fprintf(fix->nat, "-F %s\n-X %s\n",
			    portal_our_chains[c], portal_our_chains[c]);
		if (chains[1] & (1u << c))
			fprintf(fix->filter, "-F %s\n-X %s\n",
			    portal_our_chains[c], portal_our_chains[c]);
		if ((chains[0] | chains[1]) & (1u << c))
			fix->any = true;
	}
	for (j = 0; keep_jumps && j < PORTAL_N_JUMPS; j++) {
		if (seen[j] > 0)
			continue;
		fprintf(strcmp(portal_jumps[j].table, "filter") == 0 ?
		    fix->filter : fix->nat, "%s %s %s -j %s\n",
		    portal_jumps[j].first ? "-I" : "-A", portal_jumps[j].from,
		    portal_jumps[j].args, portal_jumps[j].chain);
		fix->any = true;
	}
	return 0;
}

/* Close the streams; the texts stay valid until portal_fix_free(). */
static int
portal_fix_finish(struct portal_fix *fix)
{
	FILE	*f[2] = { fix->nat, fix->filter };
	int	 i, rc = 0;

	for (i = 0; i < 2; i++)
		if (f[i] != NULL && (ferror(f[i]) | fclose(f[i])) != 0)
			rc = -1;
	fix->nat = fix->filter = NULL;
	if (fix->nat_text == NULL || fix->filter_text == NULL)
		rc = -1;
	return rc;
}

static void
portal_fix_free(struct portal_fix *fix)
{
	portal_fix_finish(fix);
	free(fix->nat_text);
	free(fix->filter_text);
	memset(fix, 0, sizeof(*fix));
}

/* Backend choice */

/*
 * Count the rules in one backend's tables, IPv4 and IPv6, and whether
 * kubelet's hint chain is there.  Returns -1 when its IPv4 save fails.
 */
static int
portal_count_rules(enum conf_iptables_backend backend, size_t *n_rules,
    bool *hint)
{
	static const int	 families[] = { AF_INET, AF_INET6 };
	struct portal_run	 run;
	const char		*line;
	size_t			 i;
	int			 rc = -1;

	*n_rules = 0;
	*hint = false;
	for (i = 0; i < 2; i++) {
		if (portal_save(backend, families[i], &run) == -1)
			continue;
		if (families[i] == AF_INET)
			rc = 0;
		for (line = run.out; *line != '\0'; line += strcspn(line,
		    "\n") + (line[strcspn(line, "\n")] != '\0'))
			if (*line == '-')
				(*n_rules)++;
		if (strstr(run.out, ":KUBE-IPTABLES-HINT") != NULL ||
		    strstr(run.out, ":KUBE-KUBELET-CANARY") != NULL)
			*hint = true;
		portal_run_clear(&run);
	}
	return rc;
}

/*
 * iptables-wrappers' rule: use the backend that already holds the node's
 * rules (kubelet's hint chain first, then the rule count), because rules
 * in one are invisible to the other and legacy rules run before nft ones
 * whatever their order.  With nothing to go by, nft when it works.
 */
static enum conf_iptables_backend
portal_choose_backend(char *why, size_t whylen)
{
	size_t	 n_legacy, n_nft;
	bool	 hint_legacy, hint_nft;
	int	 legacy_ok, nft_ok;

	legacy_ok = portal_count_rules(CONF_IPT_LEGACY, &n_legacy,
	    &hint_legacy) == 0;
	nft_ok = portal_count_rules(CONF_IPT_NFT, &n_nft, &hint_nft) == 0;
	if (hint_legacy != hint_nft) {
		snprintf(why, whylen, "kubelet's KUBE-IPTABLES-HINT chain is "
		    "in iptables-%s", hint_legacy ? "legacy" : "nft");
		return hint_legacy ? CONF_IPT_LEGACY : CONF_IPT_NFT;
	}
	if (n_legacy != n_nft) {
		snprintf(why, whylen, "it holds more rules (legacy %zu, "
		    "nft %zu)", n_legacy, n_nft);
		return n_legacy > n_nft ? CONF_IPT_LEGACY : CONF_IPT_NFT;
	}
	if (nft_ok || !legacy_ok) {
		snprintf(why, whylen, "no rules in either backend; "
		    "nftables works");
		return CONF_IPT_NFT;
	}
	snprintf(why, whylen, "no rules in either backend; nftables is "
	    "not available");
	return CONF_IPT_LEGACY;
}

/*
 * Check that restore works and whether the kernel has the physdev match
 * (xt_physdev): a scratch chain with a physdev rule, else without, then
 * deleted.  Returns 0 (p->env.no_physdev set) or -1 with err.
 */
static int
portal_probe(struct portal *p, int family, char *err, size_t errlen)
{
	static const char with_physdev[] = "*nat\n:" PORTAL_PROBE_CHAIN
	    " - [0:0]\n-A " PORTAL_PROBE_CHAIN
	    " -m physdev ! --physdev-is-in -j RETURN\nCOMMIT\n";
	static const char plain[] = "*nat\n:" PORTAL_PROBE_CHAIN
	    " - [0:0]\nCOMMIT\n";
	static const char remove[] = "*nat\n-F " PORTAL_PROBE_CHAIN
	    "\n-X " PORTAL_PROBE_CHAIN "\nCOMMIT\n";
	char	 why[256];

	if (portal_restore(p->backend, family, with_physdev, true, why,
	    sizeof(why)) == 0)
		p->env.no_physdev = false;
	else if (portal_restore(p->backend, family, plain, true, err,
	    errlen) == 0) {
		p->env.no_physdev = true;
		log_warnx("iptables-%s: the physdev match is not available "
		    "(%s): externalIP rules for traffic from outside the node "
		    "are left out; traffic to local externalIPs is still "
		    "intercepted", portal_backend_name(p), why);
	} else
		return -1;
	return portal_restore(p->backend, family, remove, false, err, errlen);
}

/* Host IP */

/* The interface of the IPv4 default route with the lowest metric. */
static int
portal_default_ifname4(char *ifname, size_t len)
{
	FILE		*f;
	char		 line[512], name[IF_NAMESIZE + 1];
	unsigned long	 dst, gw, mask, best = (unsigned long)-1;
	unsigned	 flags, refcnt, use, metric;

	if ((f = fopen("/proc/net/route", "r")) == NULL)
		return -1;
	ifname[0] = '\0';
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "%16s %lx %lx %x %u %u %u %lx", name, &dst,
		    &gw, &flags, &refcnt, &use, &metric, &mask) != 8)
			continue;
		if (dst != 0 || mask != 0 || !(flags & RTF_UP) ||
		    metric >= best)
			continue;
		best = metric;
		strlcpy(ifname, name, len);
	}
	fclose(f);
	return ifname[0] != '\0' ? 0 : -1;
}

/* The interface of an IPv6 default route (not the kernel's one on lo). */
static int
portal_default_ifname6(char *ifname, size_t len)
{
	FILE		*f;
	char		 line[512], dst[33], name[IF_NAMESIZE + 1];
	unsigned	 plen;

	if ((f = fopen("/proc/net/ipv6_route", "r")) == NULL)
		return -1;
	ifname[0] = '\0';
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "%32s %x %*s %*s %*s %*s %*s %*s %*s %16s",
		    dst, &plen, name) != 3)
			continue;
		if (plen == 0 && strspn(dst, "0") == 32 &&
		    strcmp(name, "lo") != 0) {
			strlcpy(ifname, name, len);
			break;
		}
	}
	fclose(f);
	return ifname[0] != '\0' ? 0 : -1;
}

static bool
portal_usable_host_addr(const struct ifaddrs *ifa, int family)
{
	const uint8_t	*a;

	if (ifa->ifa_addr == NULL || ifa->ifa_addr->sa_family != family ||
	    (ifa->ifa_flags & IFF_LOOPBACK) || !(ifa->ifa_flags & IFF_UP))
		return false;
	if (family == AF_INET) {
		a = (const uint8_t *)&((const struct sockaddr_in *)
		    (const void *)ifa->ifa_addr)->sin_addr;
		return a[0] != 127;
	}
	a = ((const struct sockaddr_in6 *)(const void *)ifa->ifa_addr)->
	    sin6_addr.s6_addr;
	/* Link-local and loopback addresses cannot be a DNAT target. */
	return !(a[0] == 0xfe && (a[1] & 0xc0) == 0x80) &&
	    !IN6_IS_ADDR_LOOPBACK((const struct in6_addr *)(const void *)a);
}

/*
 * ChooseHostInterface, as upstream: an address of the interface holding
 * the default route, else the first non-loopback address.  See portal.h.
 */
int
portal_find_host_ip(int family, struct svc_ip *out)
{
	struct ifaddrs		*ifas, *ifa;
	const struct ifaddrs	*found = NULL;
	char			 ifname[IF_NAMESIZE + 1] = "";
	int			 pass;

	memset(out, 0, sizeof(*out));
	if (family == AF_INET)
		portal_default_ifname4(ifname, sizeof(ifname));
	else
		portal_default_ifname6(ifname, sizeof(ifname));
	if (getifaddrs(&ifas) == -1)
		return -1;
	for (pass = ifname[0] != '\0' ? 0 : 1; pass < 2 && found == NULL;
	    pass++)
		for (ifa = ifas; ifa != NULL && found == NULL;
		    ifa = ifa->ifa_next)
			if (portal_usable_host_addr(ifa, family) &&
			    (pass == 1 || strcmp(ifa->ifa_name, ifname) == 0))
				found = ifa;
	if (found != NULL) {
		out->family = (sa_family_t)family;
		if (family == AF_INET)
			memcpy(out->addr, &((const struct sockaddr_in *)
			    (const void *)found->ifa_addr)->sin_addr, 4);
		else
			memcpy(out->addr, &((const struct sockaddr_in6 *)
			    (const void *)found->ifa_addr)->sin6_addr, 16);
	}
	freeifaddrs(ifas);
	return found != NULL ? 0 : -1;
}

static bool
portal_ip_is_any(const struct svc_ip *ip)
{
	static const uint8_t	 zero[16];

	return ip->family == 0 ||
	    memcmp(ip->addr, zero, ip->family == AF_INET ? 4 : 16) == 0;
}

/*
 * Find the DNAT targets for node-local traffic and log when they change.
 * Called at start and on every sync: upstream found the host IP once, so
 * its HOST rules went stale when DHCP moved the address (W13).
 */
static void
portal_find_host_ips(struct portal *p, bool starting)
{
	const struct svc_ip	*b = &p->env.bind_ip;
	char			 s[SVC_IPSTRLEN], was[SVC_IPSTRLEN];
	int			 family;
	struct svc_ip		*host, found;

	if (!portal_ip_is_any(b)) {
		if (starting)
			log_info("portals: node-local traffic goes to "
			    "--bind-address %s", svc_ip_str(b, s, sizeof(s)));
		return;
	}
	/* 0.0.0.0 serves IPv4 only; :: serves both (dual-stack). */
	for (family = AF_INET; family != 0; family = b->family == AF_INET6 &&
	    family == AF_INET ? AF_INET6 : 0) {
		host = family == AF_INET ? &p->env.host_ip : &p->env.host_ip6;
		if (portal_find_host_ip(family, &found) == -1) {
			if (starting || host->family != 0)
				log_warnx("portals: no %s address on a "
				    "non-loopback interface: node-local %s "
				    "portals are disabled",
				    portal_family_name(family),
				    portal_family_name(family));
		} else if (svc_ip_cmp(&found, host) != 0)
			log_info("portals: node-local %s traffic is DNATed to "
			    "host IP %s%s%s", portal_family_name(family),
			    svc_ip_str(&found, s, sizeof(s)),
			    host->family != 0 ? ", was " : "",
			    host->family != 0 ? svc_ip_str(host, was,
			    sizeof(was)) : "");
		*host = found;
	}
}

/* Whether a family's tables hold one of our chains (from an earlier run). */
static bool
portal_has_chains(enum conf_iptables_backend backend, int family)
{
	struct portal_run	 run;
	size_t			 i;
	char			 decl[64];
	bool			 found = false;

	if (portal_save(backend, family, &run) == -1)
		return false;
	for (i = 0; i < PORTAL_N_OUR_CHAINS && !found; i++) {
		snprintf(decl, sizeof(decl), "\n:%s ", portal_our_chains[i]);
		found = strstr(run.out, decl) != NULL;
	}
	portal_run_clear(&run);
	return found;
}

/* The portal object */

/* See portal.h. */
struct portal *
portal_new(const struct conf *conf, char *err, size_t errlen)
{
	struct portal	*p;
	const char	*bind = conf->bind_address;
	char		 why[256] = "set by --iptables-backend";
	size_t		 i;

	if ((p = calloc(1, sizeof(*p))) == NULL) {
		snprintf(err, errlen, "portal: %s", strerror(errno));
		return NULL;
	}
	p->backend = conf->iptables_backend;
	if (p->backend == CONF_IPT_NONE) {
		log_info("iptables backend none: no portal rules, listeners "
		    "only");
		return p;
	}
	if (bind == NULL || *bind == '\0')
		bind = "0.0.0.0";
	if (svc_ip_parse(bind, &p->env.bind_ip) == -1) {
		snprintf(err, errlen, "--bind-address: %s is not an IP address",
		    bind);
		goto fail;
	}
	for (i = 0; i < conf->n_nodeport_cidrs && i < CONF_MAX_CIDRS; i++)
		p->nodeport_cidrs[i] = conf->nodeport_cidrs[i];
	p->env.nodeport_cidrs = p->nodeport_cidrs;
	p->env.n_nodeport_cidrs = i;
	for (i = 0; i < conf->n_external_ip_allow && i < CONF_MAX_CIDRS; i++)
		p->external_ip_allow[i] = conf->external_ip_allow[i];
	p->env.external_ip_allow = p->external_ip_allow;
	p->env.n_external_ip_allow = i;

	if (p->backend == CONF_IPT_AUTO)
		p->backend = portal_choose_backend(why, sizeof(why));
	log_info("iptables backend %s: %s", portal_backend_name(p), why);
	if (portal_probe(p, p->env.bind_ip.family == AF_INET6 &&
	    !portal_ip_is_any(&p->env.bind_ip) ? AF_INET6 : AF_INET, err,
	    errlen) == -1)
		goto fail;
	portal_find_host_ips(p, true);
	p->v6_active = portal_has_chains(p->backend, AF_INET6);
	return p;

fail:
	free(p);
	return NULL;
}

/* See portal.h. */
const char *
portal_backend_name(const struct portal *p)
{
	switch (p->backend) {
	case CONF_IPT_LEGACY:
		return "legacy";
	case CONF_IPT_NFT:
		return "nft";
	case CONF_IPT_NONE:
		return "none";
	case CONF_IPT_AUTO:
		break;
	}
	return "auto";
}

/* See portal.h. */
const struct portal_env *
portal_env(const struct portal *p)
{
	return &p->env;
}

/* See portal.h. */
void
portal_free(struct portal *p)
{
	if (p == NULL)
		return;
	free(p->denied_warned);
	free(p);
}

/* Syncing */

/*
 * Warn about externalIPs outside --external-ip-allow, once per service and
 * IP for as long as the set stays the same, not on every sync.
 */
static void
portal_warn_denied(struct portal *p, const struct portal_port *ports,
    size_t n_ports)
{
	const struct svc	*svc, *prev = NULL;
	char			*text = NULL, *line, *next, s[SVC_IPSTRLEN];
	size_t			 len = 0, i, k;
	FILE			*f;

	if ((f = open_memstream(&text, &len)) == NULL)
		return;
	for (i = 0; i < n_ports; i++) {
		if ((svc = ports[i].svc) == NULL || svc == prev)
			continue;
		prev = svc;
		for (k = 0; k < svc->n_external_ips; k++)
			if (!portal_external_ip_allowed(&p->env,
			    &svc->external_ips[k]))
				fprintf(f, "service %s/%s: externalIP %s is "
				    "outside --external-ip-allow, no portal "
				    "for it (CVE-2020-8554)\n", svc->namespace,
				    svc->name, svc_ip_str(&svc->external_ips[k],
				    s, sizeof(s)));
	}
	if (fclose(f) != 0 || text == NULL) {
		free(text);
		return;
	}
	if (p->denied_warned == NULL || strcmp(text, p->denied_warned) != 0)
		for (line = text; *line != '\0'; line = next) {
			next = strchr(line, '\n') + 1;
			if (p->denied_warned == NULL ||
			    strstr(p->denied_warned, line) == NULL)
				log_warnx("%.*s", (int)(next - line - 1), line);
		}
	free(p->denied_warned);
	p->denied_warned = text;
}

/* One family: save, render with the jump repairs, one restore. */
static int
portal_sync_family(struct portal *p, int family,
    const struct portal_port *ports, size_t n_ports)
{
	struct portal_run	 run;
	struct portal_fix	 fix;
	char			*input = NULL;
	int			 rc = -1;

	memset(&fix, 0, sizeof(fix));
	if (portal_save(p->backend, family, &run) == -1) {
		log_warnx("%s failed: cannot read the current rules",
		    portal_tool(p->backend, family, true));
		return -1;
	}
	if (portal_scan(run.out, true, &fix) == -1 ||
	    portal_fix_finish(&fix) == -1 ||
	    (input = portal_render_with(&p->env, family, ports, n_ports,
	    fix.nat_text, fix.filter_text)) == NULL) {
		log_warn("portals: rendering %s rules",
		    portal_family_name(family));
		goto done;
	}
	rc = portal_restore_wait(p->backend, family, input,
	    PORTAL_SYNC_LOCK_WAIT_S, false, NULL, 0);
	if (rc == 0)
		log_debug("portals: %s rules synced with iptables-%s",
		    portal_family_name(family), portal_backend_name(p));
done:
	free(input);
	portal_fix_free(&fix);
	portal_run_clear(&run);
	return rc;
}

/* Whether the family's rendering holds any rule. */
static bool
portal_family_has_rules(const struct portal *p, int family,
    const struct portal_port *ports, size_t n_ports)
{
	char	*text;
	bool	 any;

	if ((text = portal_render(&p->env, family, ports, n_ports)) == NULL)
		return true;
	any = strstr(text, "\n-A ") != NULL;
	free(text);
	return any;
}

/* See portal.h. */
int
portal_sync(struct portal *p, const struct portal_port *ports,
    size_t n_ports)
{
	int	 rc = 0;

	if (p->backend == CONF_IPT_NONE)
		return 0;
	portal_warn_denied(p, ports, n_ports);
	if (portal_lock_busy(p->backend))
		return -1;
	portal_find_host_ips(p, false);
	if (portal_sync_family(p, AF_INET, ports, n_ports) == -1)
		rc = -1;
	if (p->v6_active || portal_family_has_rules(p, AF_INET6, ports,
	    n_ports)) {
		if (portal_sync_family(p, AF_INET6, ports, n_ports) == -1)
			rc = -1;
		else
			p->v6_active = true;
	}
	return rc;
}

/* Removal */

/*
 * Delete every jump into our chains and the chains themselves from one
 * backend and family.  A backend or family that cannot be read has nothing
 * of ours.  Returns 0, or -1 when the removal itself failed.
 */
static int
portal_remove_family(enum conf_iptables_backend backend, int family)
{
	struct portal_run	 run;
	struct portal_fix	 fix;
	char			*input = NULL;
	size_t			 len = 0;
	FILE			*f;
	int			 rc = 0;

	if (portal_save(backend, family, &run) == -1) {
		log_debug("%s: not usable, nothing to remove",
		    portal_tool(backend, family, true));
		return 0;
	}
	if (portal_scan(run.out, false, &fix) == -1 ||
	    portal_fix_finish(&fix) == -1) {
		rc = -1;
		goto done;
	}
	if (!fix.any)
		goto done;
	if ((f = open_memstream(&input, &len)) == NULL) {
		rc = -1;
		goto done;
	}
	if (fix.nat_len > 0)
		fprintf(f, "*nat\n%sCOMMIT\n", fix.nat_text);
	if (fix.filter_len > 0)
		fprintf(f, "*filter\n%sCOMMIT\n", fix.filter_text);
	if (fclose(f) != 0 || input == NULL)
		rc = -1;
	else
		rc = portal_restore(backend, family, input, false, NULL, 0);
	if (rc == 0)
		log_info("portals: removed kuproxy's %s rules from iptables-%s",
		    portal_family_name(family),
		    backend == CONF_IPT_NFT ? "nft" : "legacy");
done:
	free(input);
	portal_fix_free(&fix);
	portal_run_clear(&run);
	return rc;
}

/* See portal.h. */
int
portal_remove(struct portal *p)
{
	int	 rc = 0;

	if (p->backend == CONF_IPT_NONE)
		return 0;
	if (portal_remove_family(p->backend, AF_INET) == -1)
		rc = -1;
	if (p->v6_active && portal_remove_family(p->backend, AF_INET6) == -1)
		rc = -1;
	if (rc == 0)
		p->v6_active = false;
	return rc;
}

/* See portal.h. */
int
portal_cleanup_all(void)
{
	static const enum conf_iptables_backend backends[] = {
		CONF_IPT_LEGACY, CONF_IPT_NFT,
	};
	size_t	 i;
	int	 rc = 0;

	for (i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
		if (portal_remove_family(backends[i], AF_INET) == -1)
			rc = -1;
		if (portal_remove_family(backends[i], AF_INET6) == -1)
			rc = -1;
	}
	return rc;
}

/* conntrack */

/* See portal.h. */
void
portal_flush_conntrack_udp(struct portal *p, const struct svc_ip *ip,
    uint16_t port)
{
	struct portal_run	 run;
	char			 addr[SVC_IPSTRLEN], port_s[8];
	const char		*argv[12];
	int			 n = 0;

	if (p->backend == CONF_IPT_NONE || ip == NULL || ip->family == 0)
		return;
	svc_ip_str(ip, addr, sizeof(addr));
	argv[n++] = "conntrack";
	argv[n++] = "-D";
	if (ip->family == AF_INET6) {
		argv[n++] = "-f";
		argv[n++] = "ipv6";
	}
	argv[n++] = "-p";
	argv[n++] = "udp";
	argv[n++] = "--orig-dst";
	argv[n++] = addr;
	if (port != 0) {
		snprintf(port_s, sizeof(port_s), "%u", port);
		argv[n++] = "--orig-port-dst";
		argv[n++] = port_s;
	}
	argv[n] = NULL;

	if (portal_exec(argv, NULL, &run) == -1) {
		if (errno == ENOENT && !p->conntrack_warned)
			log_warnx("conntrack is not installed: stale UDP "
			    "conntrack entries are not flushed when services "
			    "change");
		else if (errno != ENOENT)
			log_warn("conntrack -D --orig-dst %s", addr);
		p->conntrack_warned = true;
	} else if (run.status > 1)
		/* 1 means no entry matched, which is fine. */
		log_warnx("conntrack -D --orig-dst %s failed (exit %d): %s",
		    addr, run.status, portal_one_line(run.err));
	else
		log_debug("conntrack: flushed UDP entries to %s%s%s", addr,
		    port != 0 ? " port " : "", port != 0 ? port_s : "");
	portal_run_clear(&run);
}

/* Port claims */

/* Bind a socket of type on family's any address, or on ip.  fd or -1. */
static int
portal_bind(int type, const struct svc_ip *ip, int family, uint16_t port)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t		 slen;
	int			 fd, off = 0, saved;

	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		if (ip != NULL)
			memcpy(&sin->sin_addr, ip->addr, 4);
		slen = sizeof(*sin);
	} else {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		if (ip != NULL)
			memcpy(&sin6->sin6_addr, ip->addr, 16);
		slen = sizeof(*sin6);
	}
	if ((fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) ==
	    -1)
		return -1;
	/*
	 * No SO_REUSEADDR: Linux lets two SO_REUSEADDR sockets share a port
	 * while neither listens, so the claim would not hold against servers
	 * that set it (most do).
	 */
	if ((family == AF_INET6 && ip == NULL && setsockopt(fd, IPPROTO_IPV6,
	    IPV6_V6ONLY, &off, sizeof(off)) == -1) ||
	    bind(fd, (struct sockaddr *)&ss, slen) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

/* See portal.h. */
int
portal_claim_port(enum svc_proto proto, const struct svc_ip *ip,
    uint16_t port)
{
	char	 s[SVC_IPSTRLEN];
	int	 fd, type;
	bool	 any = ip == NULL || ip->family == 0;

	if (proto != SVC_PROTO_TCP && proto != SVC_PROTO_UDP) {
		log_warnx("port claim %u/%s: protocol not supported", port,
		    svc_proto_str(proto));
		return -1;
	}
	type = proto == SVC_PROTO_TCP ? SOCK_STREAM : SOCK_DGRAM;
	if (any) {
		fd = portal_bind(type, NULL, AF_INET6, port);
		/* No IPv6 on this host: IPv4 only, as upstream would. */
		if (fd == -1 && (errno == EAFNOSUPPORT ||
		    errno == EADDRNOTAVAIL))
			fd = portal_bind(type, NULL, AF_INET, port);
		strlcpy(s, "0.0.0.0", sizeof(s));
	} else {
		fd = portal_bind(type, ip, ip->family, port);
		svc_ip_str(ip, s, sizeof(s));
	}
	if (fd == -1) {
		if (errno == EADDRINUSE)
			log_warnx("port conflict: %s%s%s:%u/%s is in use by "
			    "another process", ip != NULL &&
			    ip->family == AF_INET6 ? "[" : "", s, ip != NULL &&
			    ip->family == AF_INET6 ? "]" : "", port,
			    svc_proto_str(proto));
		else
			log_warn("port claim %s:%u/%s", s, port,
			    svc_proto_str(proto));
		return -1;
	}
	return fd;
}
