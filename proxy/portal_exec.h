/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Running the iptables and conntrack tools for portal.c: a program with
 * its input on a pipe, its output and error output collected, a deadline,
 * and no SIGPIPE; and where iptables keeps its lock (privdrop.c opens it
 * to the dropped user).
 */
#ifndef KUPROXY_PORTAL_EXEC_H
#define KUPROXY_PORTAL_EXEC_H

#include <stddef.h>

/* Bounds a stuck tool; iptables itself waits at most 5 s for the lock. */
#define PORTAL_EXEC_TIMEOUT_MS	30000

/* What a program run left behind. */
struct portal_run {
	int	 status;	/* exit status, or -1 when killed by a signal */
	char	*out;		/* stdout, NUL-terminated */
	size_t	 out_len;
	char	*err;		/* stderr, NUL-terminated */
	size_t	 err_len;
};

/*
 * Run argv (at most 15 words; argv[0] looked up in PATH, then /usr/sbin
 * and /sbin, which a daemon's PATH often lacks) with input (NULL: none) on
 * stdin, and collect stdout and stderr.  Blocks until the program exits or
 * PORTAL_EXEC_TIMEOUT_MS passes (then it is killed).  Returns 0 when the
 * program ran and exited (run->status holds its exit status; run->out and
 * run->err are non-NULL), or -1 with errno set: ENOENT when it is not
 * installed, ETIMEDOUT when it was killed.  Free run with
 * portal_run_clear() either way.  Keeps no state: any thread may call it
 * (portal_job's does), and the program starts with no signal blocked
 * whatever the calling thread blocks.
 */
int		 portal_exec(const char *const argv[], const char *input,
		    struct portal_run *run);
void		 portal_run_clear(struct portal_run *run);

/*
 * The file iptables-legacy flock()s: $XTABLES_LOCKFILE when set and not
 * empty, else iptables' default /run/xtables.lock.
 */
const char	*portal_xtables_lock_path(void);

/* Trim s in place to one log-friendly line ("(no error output)" if empty). */
const char	*portal_one_line(char *s);

#endif
