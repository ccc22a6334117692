/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Least privilege: which capabilities a configuration needs, the start-up
 * check that they are there, and --user, which drops root for a plain user
 * keeping only those capabilities (libcap-ng).
 *
 * kuproxy keeps opening sockets and running iptables for as long as it
 * runs (services come and go), so root cannot be dropped "after set-up":
 * what stays is CAP_NET_ADMIN for the portal rules (in the ambient set, so
 * the iptables-restore and conntrack children inherit it), CAP_NET_RAW for
 * iptables-legacy (libiptc opens a raw socket), and CAP_NET_BIND_SERVICE
 * for ports below 1024 (the proxy port range, the health and metrics
 * servers, and node ports and local external-IP ports claimed while
 * portals are on).  Everything else goes, the bounding set included.
 */
#ifndef KUPROXY_PRIVDROP_H
#define KUPROXY_PRIVDROP_H

#include <stddef.h>
#include <sys/types.h>

struct conf;

/* The capabilities kuproxy may use, as bits. */
#define PRIVDROP_NET_ADMIN	0x1u	/* CAP_NET_ADMIN */
#define PRIVDROP_NET_RAW	0x2u	/* CAP_NET_RAW */
#define PRIVDROP_NET_BIND	0x4u	/* CAP_NET_BIND_SERVICE */
#define PRIVDROP_N_CAPS		3

struct privdrop_needs {
	unsigned	required;	/* start-up fails without these */
	unsigned	kept;		/* required, and what may be needed */
	unsigned	ambient;	/* of kept: for the iptables children */
	/* Why each required one is needed, by bit index, for messages. */
	char		why[PRIVDROP_N_CAPS][128];
};

/*
 * What conf needs (pure, no system calls).  NET_ADMIN is required unless
 * --iptables-backend none; NET_RAW is required with legacy and kept with
 * auto (which may pick legacy); NET_BIND_SERVICE is required when a
 * configured port is below 1024 and kept whenever portals are on, since
 * node ports and external-IP ports are claimed as services change.
 */
void		 privdrop_needs(const struct conf *,
		    struct privdrop_needs *);

/* "CAP_NET_ADMIN" etc. for one PRIVDROP_* bit; "?" for anything else. */
const char	*privdrop_cap_name(unsigned bit);

/*
 * Resolve --user's "NAME[:GROUP]" (names or numbers; the group defaults to
 * the user's own).  Returns 0, or -1 with "--user SPEC: what is wrong" in
 * err.
 */
int		 privdrop_lookup_user(const char *spec, uid_t *uid,
		    gid_t *gid, char *err, size_t errlen);

/*
 * Start-up, before anything that needs a capability: with --user (started
 * as root) prepare what the user must reach (the status socket's directory
 * when it is missing, the iptables-legacy lock file), switch to the user
 * with supplementary groups and the bounding set cleared, keeping only
 * what privdrop_needs() keeps.  Then, for any non-root process: check that
 * every required capability is permitted, trim the sets to what is kept,
 * raise the ambient ones for the iptables children, and set no_new_privs.
 * For root without --user: check the effective and bounding sets.
 * Returns 0, or -1 with a message in err that names the missing
 * capability and what needs it (the caller exits 1; nothing has been
 * installed yet).
 */
int		 privdrop_setup(const struct conf *, char *err,
		    size_t errlen);

#endif
