/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The operator's HTTP endpoints, served by libevent's evhttp on the main
 * loop: the health server (--healthz-bind-address: /healthz, /livez) and
 * the metrics server (--metrics-bind-address: /metrics, /proxyMode,
 * /healthz), with kube-proxy's paths, JSON shape and semantics.
 */
#ifndef KUPROXY_ADMIN_H
#define KUPROXY_ADMIN_H

#include <stddef.h>
#include <stdint.h>

struct conf;
struct event_base;
struct evbuffer;
struct proxier;

/* Counters kept by main that the metrics show. */
struct admin_counters {
	uint64_t	reloads_ok;
	uint64_t	reloads_failed;
};

struct admin;

/*
 * Bind the servers whose addresses are set (NULL disables one).  Returns
 * NULL with err when an address cannot be bound.
 */
struct admin	*admin_new(struct event_base *, const struct conf *,
		    struct proxier *, const struct admin_counters *,
		    char *err, size_t errlen);
void		 admin_free(struct admin *);

/* The whole /metrics page. */
void		 admin_render_metrics(struct admin *, struct evbuffer *);

/*
 * kube-proxy's health rule: healthy unless a change has waited unapplied
 * for longer than twice the sync period.  An unreachable API server alone
 * does not make kuproxy unhealthy: nothing is queued then.
 */
int		 admin_healthy(const struct conf *, struct proxier *);

#endif
