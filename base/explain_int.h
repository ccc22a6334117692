/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the parts of `kuproxy explain` share, inside base/: the context an
 * explanation is built in, the portals of one service port with the rules
 * found for them, small JSON helpers, and the sentences explain_words.c
 * writes from them.  Not for other modules: explain.h is the interface.
 */
#ifndef KUPROXY_EXPLAIN_INT_H
#define KUPROXY_EXPLAIN_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#include <json-c/json.h>

#include "base/svc.h"
#include "proxy/portal.h"

struct conf;
struct proxier;

/* What an explanation depends on besides the service itself. */
struct explain_ctx {
	const struct conf	*conf;
	struct portal_env	 penv;		/* rules are rendered with it */
	bool			 rules;		/* false: backend none */
	const char		*backend;
	struct proxier		*px;		/* NULL: offline */
	struct svc_ip		*local;		/* the node's addresses */
	size_t			 n_local;
	bool			 br_netfilter;	/* iptables sees bridged pods */
	long long		 now_ms;
};

/* One portal address of a port, with the rules collected for it. */
struct explain_portal {
	enum portal_rule_for	 what;		/* NODE_PORT: the node port */
	struct svc_ip		 ip;		/* family 0: node port */
	bool			 local;		/* an address of this node */
	json_object		*obj;
	json_object		*rules;
	size_t			 n_rules;
};

struct explain_portals {
	struct explain_portal	*v;
	size_t			 n;
};

static inline void
add_str(json_object *o, const char *key, const char *value)
{
	json_object_object_add(o, key, json_object_new_string(value));
}

static inline void
add_int(json_object *o, const char *key, long long value)
{
	json_object_object_add(o, key, json_object_new_int64(value));
}

static inline void
add_bool(json_object *o, const char *key, bool value)
{
	json_object_object_add(o, key, json_object_new_boolean(value));
}

static inline void
add_strf(json_object *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Append a formatted string to array a. */
static inline void
add_strf(json_object *a, const char *fmt, ...)
{
	char	 buf[1024];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	json_object_array_add(a, json_object_new_string(buf));
}

/*
 * The paths of a connection to service port sp, in words, from the rules
 * collected in ps: "pod", "node" and "outside" arrays of sentences and
 * "then", what kuproxy does with the connection (from bal, the balancer
 * object).  proxy_port is the number, or the placeholder.  Returns a new
 * object.
 */
json_object	*explain_words_paths(const struct explain_ctx *,
		    const struct svc *svc, const struct svc_port *sp,
		    const struct explain_portals *ps, json_object *bal,
		    const char *proxy_port);

/*
 * Add to doc why svc is not proxied ("skipped") and the DNS records that
 * stand for it instead ("dns").
 */
void		 explain_words_skipped(const struct svc *svc, json_object *doc);

#endif
