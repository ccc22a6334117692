/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Health check node ports: one evhttp server per port on the control loop,
 * answering any GET with the service's local endpoint count in upstream's
 * body and headers.  The servers only read what healthcheck_sync() last
 * stored; the proxier calls it with each table.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "base/log.h"
#include "base/svc.h"
#include "conf/conf.h"
#include "proxy/claims.h"
#include "proxy/healthcheck.h"
#include "proxy/topology.h"

#define HEALTHCHECK_TIMEOUT_S		5
#define HEALTHCHECK_MAX_HEADERS		8192

struct hc_server {
	uint16_t	 port;
	char		*namespace;
	char		*name;
	size_t		 n_local;
	struct evhttp	*http;
	struct healthcheck *hc;
};

struct healthcheck {
	struct event_base	*base;
	const struct conf	*conf;
	bool			(*healthy)(void *);
	void			*healthy_arg;
	struct hc_server	**servers;
	size_t			 n_servers;
};

static void
hc_server_free(struct hc_server *s)
{
	if (s == NULL)
		return;
	if (s->http != NULL)
		evhttp_free(s->http);
	free(s->namespace);
	free(s->name);
	free(s);
}

/* Upstream's hcHandler.ServeHTTP, body and headers alike. */
static void
hc_on_request(struct evhttp_request *req, void *arg)
{
	struct hc_server	*s = arg;
	struct evkeyvalq	*h = evhttp_request_get_output_headers(req);
	struct evbuffer		*body = evbuffer_new();
	bool			 healthy;
	char			 weight[32];

	healthy = s->hc->healthy(s->hc->healthy_arg);
	snprintf(weight, sizeof(weight), "%zu", s->n_local);
	evhttp_add_header(h, "Content-Type", "application/json");
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(h, "X-Load-Balancing-Endpoint-Weight", weight);
	if (body == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evbuffer_add_printf(body, "{\n\t\"service\": {\n\t\t\"namespace\": "
	    "\"%s\",\n\t\t\"name\": \"%s\"\n\t},\n\t\"localEndpoints\": %zu,\n"
	    "\t\"serviceProxyHealthy\": %s\n}",
	    s->namespace != NULL ? s->namespace : "",
	    s->name != NULL ? s->name : "", s->n_local,
	    healthy ? "true" : "false");
	if (s->n_local > 0 && healthy)
		evhttp_send_reply(req, HTTP_OK, "OK", body);
	else
		evhttp_send_reply(req, 503, "Service Unavailable", body);
	evbuffer_free(body);
}

/*
 * Listen on port at every address of this node inside --nodeport-addresses,
 * or on all addresses when it is unset.  0 when at least one works.
 */
static int
hc_bind(const struct healthcheck *hc, struct evhttp *http, uint16_t port)
{
	struct svc_ip	*local = NULL;
	size_t		 i, j, n_local = 0;
	char		 addr[SVC_IPSTRLEN];
	int		 rc = -1;

	if (hc->conf->n_nodeport_cidrs == 0)
		return evhttp_bind_socket(http, "0.0.0.0", port);
	if (claims_local_addresses(&local, &n_local) == -1)
		return -1;
	for (i = 0; i < n_local; i++)
		for (j = 0; j < hc->conf->n_nodeport_cidrs; j++) {
			if (!conf_cidr_contains(&hc->conf->nodeport_cidrs[j],
			    local[i].family, local[i].addr))
				continue;
			svc_ip_str(&local[i], addr, sizeof(addr));
			if (evhttp_bind_socket(http, addr, port) == 0)
				rc = 0;
			break;
		}
	free(local);
	return rc;
}

static struct hc_server *
hc_server_open(struct healthcheck *hc, uint16_t port)
{
	struct hc_server *s;

	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->http = evhttp_new(hc->base)) == NULL) {
		log_warnx("health check node port %u: out of memory", port);
		hc_server_free(s);
		return NULL;
	}
	s->hc = hc;
	s->port = port;
	evhttp_set_timeout(s->http, HEALTHCHECK_TIMEOUT_S);
	evhttp_set_max_headers_size(s->http, HEALTHCHECK_MAX_HEADERS);
	evhttp_set_max_body_size(s->http, 0);
	evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_gencb(s->http, hc_on_request, s);
	if (hc_bind(hc, s->http, port) == -1) {
		log_warn("health check node port %u: cannot listen", port);
		hc_server_free(s);
		return NULL;
	}
	log_info("health check node port %u: listening", port);
	return s;
}

/* See healthcheck.h. */
struct healthcheck *
healthcheck_new(struct event_base *base, const struct conf *conf,
    bool (*healthy)(void *), void *arg)
{
	struct healthcheck *hc;

	if ((hc = calloc(1, sizeof(*hc))) == NULL)
		return NULL;
	hc->base = base;
	hc->conf = conf;
	hc->healthy = healthy;
	hc->healthy_arg = arg;
	return hc;
}

/* The service that owns port in tab, or NULL. */
static const struct svc *
hc_wanted(const struct svctab *tab, uint16_t port)
{
	size_t i;

	for (i = 0; tab != NULL && i < tab->n_svcs; i++) {
		const struct svc *svc = tab->svcs[i];

		if (svc->type == SVC_TYPE_LOAD_BALANCER &&
		    svc_is_proxied(svc) && topology_external_local(svc) &&
		    svc->health_check_node_port == port)
			return svc;
	}
	return NULL;
}

static struct hc_server *
hc_find(struct healthcheck *hc, uint16_t port)
{
	size_t i;

	for (i = 0; i < hc->n_servers; i++)
		if (hc->servers[i]->port == port)
			return hc->servers[i];
	return NULL;
}

/* Point s at svc; false when out of memory. */
static bool
hc_server_set(struct hc_server *s, const struct svc *svc, size_t n_local)
{
	char *ns = strdup(svc->namespace), *name = strdup(svc->name);

	if (ns == NULL || name == NULL) {
		free(ns);
		free(name);
		return false;
	}
	free(s->namespace);
	free(s->name);
	s->namespace = ns;
	s->name = name;
	s->n_local = n_local;
	return true;
}

/* See healthcheck.h. */
void
healthcheck_sync(struct healthcheck *hc, const struct svctab *tab,
    const char *node_name)
{
	struct hc_server	**v, *s;
	size_t			  i, kept = 0;

	/* Close the servers of ports no service wants any more. */
	for (i = 0; i < hc->n_servers; i++) {
		s = hc->servers[i];
		if (hc_wanted(tab, s->port) == NULL) {
			log_info("health check node port %u: closed", s->port);
			hc_server_free(s);
		} else
			hc->servers[kept++] = s;
	}
	hc->n_servers = kept;
	for (i = 0; tab != NULL && i < tab->n_svcs; i++) {
		const struct svc	*svc = tab->svcs[i];
		uint16_t		 port = svc->health_check_node_port;

		if (port == 0 || hc_wanted(tab, port) != svc)
			continue;
		if ((s = hc_find(hc, port)) == NULL) {
			v = reallocarray(hc->servers, hc->n_servers + 1,
			    sizeof(*v));
			if (v == NULL)
				continue;
			hc->servers = v;
			if ((s = hc_server_open(hc, port)) == NULL)
				continue;
			hc->servers[hc->n_servers++] = s;
		}
		if (!hc_server_set(s, svc, topology_local_ready(svc,
		    node_name)))
			log_warnx("health check node port %u: out of memory; "
			    "the previous answer stays", port);
	}
}

/* See healthcheck.h. */
void
healthcheck_free(struct healthcheck *hc)
{
	size_t i;

	if (hc == NULL)
		return;
	for (i = 0; i < hc->n_servers; i++)
		hc_server_free(hc->servers[i]);
	free(hc->servers);
	free(hc);
}
