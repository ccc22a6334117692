/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The proxier applies each new service table: it diffs it against the
 * current one, opens and closes listeners, updates balancers, and (through
 * portal.c) rewrites the iptables rules, in a safe order: a listener opens
 * before a rule points at it, and a rule goes before its listener closes.
 */
#ifndef KUPROXY_PROXIER_H
#define KUPROXY_PROXIER_H

#include <stddef.h>

struct conf;
struct event_base;
struct svctab;
struct pport;

struct proxier;

/* Returns NULL with err on failure (e.g. no usable iptables backend). */
struct proxier	*proxier_new(struct event_base *, const struct conf *,
		    char *err, size_t errlen);
/* Apply a new table; takes over the caller's reference. */
void		 proxier_apply(struct proxier *, struct svctab *);
/* The table in force, or NULL before the first one (no reference taken). */
const struct svctab *proxier_table(const struct proxier *);
/* Visit every live service port, in key order. */
void		 proxier_foreach(struct proxier *,
		    void (*fn)(struct pport *, void *), void *arg);
/* Stop accepting and remove rules (shutdown); sessions go on. */
void		 proxier_stop(struct proxier *);
void		 proxier_free(struct proxier *);

#endif
