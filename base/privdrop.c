/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Least privilege (see privdrop.h): what the flags need, --user, and the
 * start-up check.  Owns the process's uid, gids and capability sets after
 * start-up; leaves binding, rules and files to their modules, except for
 * making the two paths a --user must reach usable before root is gone:
 * the status socket's directory (created for the user when missing, as
 * systemd's RuntimeDirectory= would) and iptables-legacy's lock file
 * (readable by the user's group, as the unit's ExecStartPre= does).
 */
#include "config.h"

#include <sys/prctl.h>
#include <sys/stat.h>

#include <cap-ng.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/privdrop.h"
#include "conf/conf.h"
#include "proxy/portal_exec.h"

static const struct {
	unsigned	 bit;
	unsigned	 cap;
	const char	*name;
} privdrop_caps[PRIVDROP_N_CAPS] = {
	{ PRIVDROP_NET_ADMIN, CAP_NET_ADMIN, "CAP_NET_ADMIN" },
	{ PRIVDROP_NET_RAW, CAP_NET_RAW, "CAP_NET_RAW" },
	{ PRIVDROP_NET_BIND, CAP_NET_BIND_SERVICE, "CAP_NET_BIND_SERVICE" },
};

const char *
privdrop_cap_name(unsigned bit)
{
	size_t i;

	for (i = 0; i < PRIVDROP_N_CAPS; i++)
		if (privdrop_caps[i].bit == bit)
			return privdrop_caps[i].name;
	return "?";
}

static const char *
privdrop_backend_word(enum conf_iptables_backend b)
{
	switch (b) {
	case CONF_IPT_AUTO:
		return "auto";
	case CONF_IPT_LEGACY:
		return "legacy";
	case CONF_IPT_NFT:
		return "nft";
	case CONF_IPT_NONE:
		return "none";
	}
	return "?";
}

/* The port of a checked "IP:PORT" or "[IPv6]:PORT"; 0 for NULL. */
static unsigned long
privdrop_addr_port(const char *hostport)
{
	const char *colon;

	if (hostport == NULL || (colon = strrchr(hostport, ':')) == NULL)
		return 0;
	return strtoul(colon + 1, NULL, 10);
}

/* Port 0 asks the kernel for an ephemeral port, never a privileged one. */
static bool
privdrop_privileged_port(unsigned long port)
{
	return port > 0 && port < 1024;
}

void
privdrop_needs(const struct conf *c, struct privdrop_needs *n)
{
	const char	*backend = privdrop_backend_word(c->iptables_backend);
	unsigned long	 healthz, metrics;
	char		*bind_why = n->why[2];
	size_t		 len = sizeof(n->why[2]);

	memset(n, 0, sizeof(*n));
	healthz = privdrop_addr_port(c->healthz_bind_address);
	metrics = privdrop_addr_port(c->metrics_bind_address);
	if (c->iptables_backend != CONF_IPT_NONE) {
		n->required |= PRIVDROP_NET_ADMIN;
		n->ambient |= PRIVDROP_NET_ADMIN;
		/*
		 * Node ports, and the service ports of local external and
		 * load-balancer IPs, are claimed as services arrive: any of
		 * them may be below 1024 (a Service with externalIPs on
		 * port 80), and a claim that fails leaves that address
		 * without portals.
		 */
		n->kept |= PRIVDROP_NET_ADMIN | PRIVDROP_NET_BIND;
		snprintf(n->why[0], sizeof(n->why[0]), "--iptables-backend "
		    "%s needs it to write the portal rules", backend);
	}
	if (c->iptables_backend == CONF_IPT_LEGACY ||
	    c->iptables_backend == CONF_IPT_AUTO) {
		n->kept |= PRIVDROP_NET_RAW;
		n->ambient |= PRIVDROP_NET_RAW;
	}
	if (c->iptables_backend == CONF_IPT_LEGACY) {
		n->required |= PRIVDROP_NET_RAW;
		snprintf(n->why[1], sizeof(n->why[1]), "--iptables-backend "
		    "legacy needs it (iptables-legacy opens a raw socket)");
	}
	if (privdrop_privileged_port(c->port_range_begin))
		snprintf(bind_why, len, "--proxy-port-range needs it for "
		    "port %u", (unsigned)c->port_range_begin);
	else if (privdrop_privileged_port(healthz))
		snprintf(bind_why, len, "--healthz-bind-address needs it "
		    "for port %lu", healthz);
	else if (privdrop_privileged_port(metrics))
		snprintf(bind_why, len, "--metrics-bind-address needs it "
		    "for port %lu", metrics);
	if (*bind_why != '\0') {
		n->required |= PRIVDROP_NET_BIND;
		n->kept |= PRIVDROP_NET_BIND;
	}
}

/* A whole decimal number (uids and gids given as numbers). */
static int
privdrop_number(const char *s, unsigned long *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	*out = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || *out > (unsigned long)INT32_MAX)
		return -1;
	return 0;
}

int
privdrop_lookup_user(const char *spec, uid_t *uid, gid_t *gid, char *err,
    size_t errlen)
{
	const char	*colon = strchr(spec, ':');
	size_t		 len = colon != NULL ? (size_t)(colon - spec) :
			    strlen(spec);
	struct passwd	*pw;
	struct group	*gr;
	unsigned long	 n;
	char		 name[256];
	bool		 numeric;

	if (len == 0 || len >= sizeof(name) ||
	    (colon != NULL && colon[1] == '\0')) {
		snprintf(err, errlen, "--user \"%s\": expected NAME[:GROUP]",
		    spec);
		return -1;
	}
	memcpy(name, spec, len);
	name[len] = '\0';
	numeric = privdrop_number(name, &n) == 0;
	if ((pw = getpwnam(name)) == NULL && numeric)
		pw = getpwuid((uid_t)n);
	if (pw != NULL) {
		*uid = pw->pw_uid;
		*gid = pw->pw_gid;
	} else if (numeric && colon != NULL)
		*uid = (uid_t)n;	/* no passwd entry, but a group */
	else {
		snprintf(err, errlen, "--user \"%s\": no such user%s", spec,
		    numeric ? " (give UID:GID for a "
		    "uid without a passwd entry)" : "");
		return -1;
	}
	if (colon == NULL)
		return 0;
	if ((gr = getgrnam(colon + 1)) != NULL)
		*gid = gr->gr_gid;
	else if (privdrop_number(colon + 1, &n) == 0)
		*gid = (gid_t)n;
	else {
		snprintf(err, errlen, "--user \"%s\": no such group \"%s\"",
		    spec, colon + 1);
		return -1;
	}
	return 0;
}

/*
 * status.c creates the socket's directory itself, but a user cannot
 * create one in /run: make it now, the user's own, when it is missing.
 * An existing directory is left alone (it may be /tmp); if the user
 * cannot write there, status.c says that kuproxy status will not work.
 */
static void
privdrop_prepare_status_dir(const char *path, uid_t uid, gid_t gid)
{
	char *copy, *dir;

	if (path == NULL || (copy = strdup(path)) == NULL)
		return;
	dir = dirname(copy);
	if (mkdir(dir, 0700) == 0 && chown(dir, uid, gid) == -1)
		log_warn("%s: cannot give the status socket's directory to "
		    "uid %u", dir, (unsigned)uid);
	free(copy);
}

static bool
privdrop_readable_by(const struct stat *st, uid_t uid, gid_t gid)
{
	return (st->st_uid == uid && (st->st_mode & S_IRUSR)) ||
	    (st->st_gid == gid && (st->st_mode & S_IRGRP)) ||
	    (st->st_mode & S_IROTH);
}

/*
 * iptables-legacy flock()s its lock file (XTABLES_LOCKFILE, by default
 * /run/xtables.lock), which it creates 0600 root, and a user without
 * CAP_DAC_OVERRIDE cannot open that.  As the unit's ExecStartPre= does,
 * give the user's group read access, which is all flock() needs, when the
 * file still has root's group; any other arrangement is left alone.
 */
static void
privdrop_prepare_xtables_lock(uid_t uid, gid_t gid)
{
	const char	*path = portal_xtables_lock_path();
	struct stat	 st;
	int		 fd;

	fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd == -1) {
		log_warn("%s: cannot open iptables' lock file", path);
		return;
	}
	if (fstat(fd, &st) == 0 && !privdrop_readable_by(&st, uid, gid)) {
		if (st.st_gid != 0)
			log_warnx("%s: uid %u cannot read iptables' lock file, "
			    "so iptables-legacy will fail", path,
			    (unsigned)uid);
		else if (fchown(fd, (uid_t)-1, gid) == -1 ||
		    fchmod(fd, (st.st_mode & 07777) | S_IRGRP) == -1)
			log_warn("%s: cannot let gid %u read iptables' lock "
			    "file", path, (unsigned)gid);
		else
			log_info("%s: gid %u may read iptables' lock file now, "
			    "as iptables-legacy needs", path, (unsigned)gid);
	}
	close(fd);
}

/* Load libcap-ng's view of the kept (and ambient) capabilities. */
static void
privdrop_stage(unsigned kept, unsigned ambient)
{
	size_t i;

	for (i = 0; i < PRIVDROP_N_CAPS; i++) {
		if (kept & privdrop_caps[i].bit)
			capng_update(CAPNG_ADD, CAPNG_EFFECTIVE |
			    CAPNG_PERMITTED, privdrop_caps[i].cap);
		if (kept & ambient & privdrop_caps[i].bit)
			capng_update(CAPNG_ADD, CAPNG_INHERITABLE |
			    CAPNG_AMBIENT, privdrop_caps[i].cap);
	}
}

/* --user: become the user with only n->kept.  0, or -1 with err. */
static int
privdrop_switch_user(const struct conf *c, const struct privdrop_needs *n,
    char *err, size_t errlen)
{
	uid_t	uid;
	gid_t	gid;
	int	rc;

	if (privdrop_lookup_user(c->user, &uid, &gid, err, errlen) == -1)
		return -1;
	if (uid == 0) {
		snprintf(err, errlen, "--user \"%s\" is root: name an "
		    "unprivileged user", c->user);
		return -1;
	}
	if (geteuid() != 0) {
		if (geteuid() == uid && getegid() == gid)
			return 0;	/* already that user */
		snprintf(err, errlen, "--user \"%s\": kuproxy must start as "
		    "root to switch users (it runs as uid %u)", c->user,
		    (unsigned)geteuid());
		return -1;
	}
	privdrop_prepare_status_dir(c->status_socket, uid, gid);
	if (n->kept & PRIVDROP_NET_RAW)
		privdrop_prepare_xtables_lock(uid, gid);
	capng_clear(CAPNG_SELECT_ALL);
	privdrop_stage(n->kept, n->ambient);
	if ((rc = capng_change_id((int)uid, (int)gid,
	    CAPNG_DROP_SUPP_GRP | CAPNG_CLEAR_BOUNDING)) != 0) {
		snprintf(err, errlen, "--user \"%s\": cannot switch to uid %u "
		    "gid %u (libcap-ng step %d): %s", c->user, (unsigned)uid,
		    (unsigned)gid, rc, strerror(errno));
		return -1;
	}
	log_info("switched to user %s: uid %u, gid %u, no supplementary "
	    "groups, empty capability bounding set", c->user, (unsigned)uid,
	    (unsigned)gid);
	return 0;
}

static void
privdrop_missing(const struct privdrop_needs *n, size_t i, bool root,
    char *err, size_t errlen)
{
	if (root)
		snprintf(err, errlen, "missing capability %s: %s; kuproxy "
		    "runs as root without it (a container without %s?)",
		    privdrop_caps[i].name, n->why[i], privdrop_caps[i].name);
	else
		snprintf(err, errlen, "missing capability %s: %s; grant it "
		    "to uid %u (systemd AmbientCapabilities=, setpriv "
		    "--ambient-caps) or start kuproxy as root with --user",
		    privdrop_caps[i].name, n->why[i], (unsigned)geteuid());
}

/* "CAP_NET_ADMIN CAP_NET_RAW" for a set of bits; "none" when empty. */
static void
privdrop_names(unsigned bits, char *buf, size_t len)
{
	size_t	i, used = 0;
	int	w;

	snprintf(buf, len, "none");
	for (i = 0; i < PRIVDROP_N_CAPS; i++) {
		if ((bits & privdrop_caps[i].bit) == 0 || used >= len)
			continue;
		w = snprintf(buf + used, len - used, "%s%s", used > 0 ? " " :
		    "", privdrop_caps[i].name);
		if (w > 0)
			used += (size_t)w;
	}
}

/*
 * A non-root process: keep exactly what is kept and permitted, with the
 * ambient ones raised so that iptables-restore inherits them across
 * execve (file capabilities on kuproxy alone would not reach it), and no
 * way back up through a set-uid program.
 */
static int
privdrop_trim(const struct privdrop_needs *n, unsigned have, char *err,
    size_t errlen)
{
	char	names[128];
	size_t	i;

	capng_clear(CAPNG_SELECT_CAPS);
	capng_clear(CAPNG_SELECT_AMBIENT);
	privdrop_stage(n->kept & have, n->ambient);
	if (capng_apply(CAPNG_SELECT_CAPS) != 0) {
		snprintf(err, errlen, "cannot reduce the capability sets: %s",
		    strerror(errno));
		return -1;
	}
	if (capng_apply(CAPNG_SELECT_AMBIENT) != 0) {
		for (i = 0; i < PRIVDROP_N_CAPS; i++)
			if (n->required & n->ambient & privdrop_caps[i].bit)
				break;
		snprintf(err, errlen, "cannot raise %s into the ambient set, "
		    "which the iptables programs kuproxy runs need: %s",
		    i < PRIVDROP_N_CAPS ? privdrop_caps[i].name :
		    "capabilities", strerror(errno));
		return -1;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		log_warn("cannot set no_new_privs");
	privdrop_names(n->kept & have, names, sizeof(names));
	log_info("running as uid %u, gid %u with capabilities: %s",
	    (unsigned)geteuid(), (unsigned)getegid(), names);
	if (n->kept & ~have & PRIVDROP_NET_RAW)
		log_info("without CAP_NET_RAW, iptables-legacy cannot work: "
		    "--iptables-backend auto fails on a node whose rules are "
		    "in iptables-legacy");
	if (n->kept & ~have & PRIVDROP_NET_BIND)
		log_info("without CAP_NET_BIND_SERVICE, node ports and local "
		    "external-IP ports below 1024 cannot be claimed");
	return 0;
}

/* Every required capability is there; then trim (non-root).  0 or -1. */
static int
privdrop_check(const struct privdrop_needs *n, char *err, size_t errlen)
{
	bool		root = geteuid() == 0;
	unsigned	have = 0;
	size_t		i;

	if (capng_get_caps_process() != 0) {
		snprintf(err, errlen, "cannot read the process's capabilities: "
		    "%s", strerror(errno));
		return -1;
	}
	for (i = 0; i < PRIVDROP_N_CAPS; i++) {
		unsigned cap = privdrop_caps[i].cap, bit = privdrop_caps[i].bit;
		int ok;

		/* Root's children get the bounding set, others the ambient. */
		if (root)
			ok = capng_have_capability(CAPNG_EFFECTIVE, cap) &&
			    ((n->ambient & bit) == 0 ||
			    capng_have_capability(CAPNG_BOUNDING_SET, cap));
		else
			ok = capng_have_capability(CAPNG_PERMITTED, cap);
		if (ok)
			have |= bit;
		else if (n->required & bit) {
			privdrop_missing(n, i, root, err, errlen);
			return -1;
		}
	}
	return root ? 0 : privdrop_trim(n, have, err, errlen);
}

int
privdrop_setup(const struct conf *c, char *err, size_t errlen)
{
	struct privdrop_needs n;

	privdrop_needs(c, &n);
	if (c->user != NULL && privdrop_switch_user(c, &n, err, errlen) == -1)
		return -1;
	return privdrop_check(&n, err, errlen);
}
