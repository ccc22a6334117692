/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The status view: the document the daemon builds from the proxier's live
 * state, the unix-socket server that hands it out (one document per
 * connection, then close), and the client that prints it.  The document
 * is the contract between the two, versioned by formatVersion.
 *
 * A client asks with one line: "status", or "explain NAMESPACE/NAME:PORT"
 * (base/explain.c builds that answer).  A client that sends nothing and
 * waits, as kuproxy status did before requests existed, gets the status
 * after STATUS_REQUEST_WAIT_MS or at its end of file.
 */
#include "config.h"

#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "base/explain.h"
#include "base/log.h"
#include "base/status.h"
#include "conf/conf.h"
#include "proxy/epstats.h"
#include "proxy/lb.h"
#include "proxy/pport.h"
#include "proxy/proxier.h"

#define STATUS_MAX_BYTES	(64 << 20)
#define STATUS_REQUEST_MAX	1024	/* one request line */
#define STATUS_REQUEST_WAIT_MS	500

struct status_server {
	struct evconnlistener	*listener;
	struct proxier		*proxier;
	const struct conf	*conf;
	char			*path;
};

/* The document. */

static json_object *
ip_array(const struct svc_ip *ips, size_t n, uint16_t port)
{
	json_object	*a = json_object_new_array();
	char		 ip[SVC_IPSTRLEN], buf[SVC_IPSTRLEN + 8];
	size_t		 i;

	for (i = 0; i < n; i++) {
		svc_ip_str(&ips[i], ip, sizeof(ip));
		snprintf(buf, sizeof(buf), ips[i].family == AF_INET6 ?
		    "[%s]:%u" : "%s:%u", ip, port);
		json_object_array_add(a, json_object_new_string(buf));
	}
	return a;
}

/* A counter the workers add to (pport.h), as a JSON integer. */
static int64_t
stat_i64(const uint64_t *v)
{
	return (int64_t)PPORT_STAT_GET(*v);
}

static json_object *
endpoint_object(struct pport *pp, const struct endpoint *spec,
    const struct ep_stats *e)
{
	json_object	*o = json_object_new_object();
	char		 buf[SVC_IPSTRLEN + 8];

	lb_target_str(&e->target, buf, sizeof(buf));
	json_object_object_add(o, "address", json_object_new_string(buf));
	json_object_object_add(o, "inTable", json_object_new_boolean(spec !=
	    NULL));
	json_object_object_add(o, "ready", json_object_new_boolean(spec !=
	    NULL && (spec->flags & EP_F_READY)));
	json_object_object_add(o, "serving", json_object_new_boolean(spec !=
	    NULL && (spec->flags & EP_F_SERVING)));
	json_object_object_add(o, "terminating", json_object_new_boolean(
	    spec != NULL && (spec->flags & EP_F_TERMINATING)));
	json_object_object_add(o, "activeConnections",
	    json_object_new_int64(stat_i64(&e->active)));
	json_object_object_add(o, "totalConnections",
	    json_object_new_int64(stat_i64(&e->total)));
	json_object_object_add(o, "bytesToEndpoint",
	    json_object_new_int64(stat_i64(&e->bytes_in)));
	json_object_object_add(o, "bytesToClient",
	    json_object_new_int64(stat_i64(&e->bytes_out)));
	json_object_object_add(o, "connectFailures",
	    json_object_new_int64(stat_i64(&e->connect_failures)));
	return o;
}

struct ep_walk {
	struct pport	*pp;
	json_object	*array;
};

/* Endpoints that left the table but still have sessions. */
static void
departed_endpoint(struct ep_stats *e, void *arg)
{
	struct ep_walk	*w = arg;
	size_t		 i;

	for (i = 0; i < w->pp->port->n_endpoints; i++) {
		const struct endpoint *ep = &w->pp->port->endpoints[i];

		if (svc_ip_cmp(&ep->ip, &e->target.ip) == 0 &&
		    ep->port == e->target.port)
			return;
	}
	if (PPORT_STAT_GET(e->active) > 0)
		json_object_array_add(w->array, endpoint_object(w->pp, NULL,
		    e));
}

static json_object *
pport_object(struct pport *pp)
{
	const struct svc	*s = pp->svc;
	const struct svc_port	*port = pp->port;
	json_object		*o = json_object_new_object();
	json_object		*eps = json_object_new_array();
	struct ep_walk		 w = { pp, eps };
	size_t			 i;

	json_object_object_add(o, "key", json_object_new_string(pp->key));
	json_object_object_add(o, "namespace",
	    json_object_new_string(s->namespace));
	json_object_object_add(o, "name", json_object_new_string(s->name));
	json_object_object_add(o, "port", json_object_new_string(port->name));
	json_object_object_add(o, "protocol",
	    json_object_new_string(svc_proto_str(pp->proto)));
	json_object_object_add(o, "type",
	    json_object_new_string(svc_type_str(s->type)));
	json_object_object_add(o, "proxyPort",
	    json_object_new_int(pp->proxy_port));
	json_object_object_add(o, "clusterIPs", ip_array(s->cluster_ips,
	    s->n_cluster_ips, port->port));
	json_object_object_add(o, "nodePort",
	    json_object_new_int(port->node_port));
	json_object_object_add(o, "externalIPs", ip_array(s->external_ips,
	    s->n_external_ips, port->port));
	json_object_object_add(o, "ingressIPs", ip_array(s->ingress_ips,
	    s->n_ingress_ips, port->port));
	json_object_object_add(o, "sessionAffinity", json_object_new_string(
	    s->affinity == SVC_AFFINITY_CLIENT_IP ? "ClientIP" : "None"));
	if (s->affinity == SVC_AFFINITY_CLIENT_IP) {
		json_object_object_add(o, "affinityTimeoutSeconds",
		    json_object_new_int64(s->affinity_timeout_s));
		json_object_object_add(o, "stickyClients",
		    json_object_new_int64((int64_t)lb_n_affinity(pp->lb)));
	}
	json_object_object_add(o, "usableEndpoints",
	    json_object_new_int64((int64_t)lb_n_endpoints(pp->lb)));
	json_object_object_add(o, "activeConnections", json_object_new_int64(
	    pp->proto == SVC_PROTO_UDP ? stat_i64(&pp->stats.udp_assoc_active) :
	    stat_i64(&pp->stats.conns_active)));
	json_object_object_add(o, "totalConnections", json_object_new_int64(
	    pp->proto == SVC_PROTO_UDP ? stat_i64(&pp->stats.udp_assoc_total) :
	    stat_i64(&pp->stats.conns_total)));
	json_object_object_add(o, "bytesToEndpoints",
	    json_object_new_int64(stat_i64(&pp->stats.bytes_in)));
	json_object_object_add(o, "bytesToClients",
	    json_object_new_int64(stat_i64(&pp->stats.bytes_out)));
	json_object_object_add(o, "connectFailures",
	    json_object_new_int64(stat_i64(&pp->stats.connect_failures)));
	json_object_object_add(o, "noEndpointRejections",
	    json_object_new_int64(stat_i64(&pp->stats.no_endpoints)));
	if (pp->proto == SVC_PROTO_UDP) {
		json_object_object_add(o, "udpAssociationsEvicted",
		    json_object_new_int64(stat_i64(
		    &pp->stats.udp_assoc_evicted)));
		json_object_object_add(o, "udpDropped",
		    json_object_new_int64(stat_i64(&pp->stats.udp_dropped)));
	}
	/* Endpoints in table order, with their counters (zero if unused). */
	for (i = 0; i < port->n_endpoints; i++) {
		const struct endpoint	*ep = &port->endpoints[i];
		struct lb_target	 t = { ep->ip, ep->port };
		struct ep_stats		*e = ep_stats_find(&pp->endpoints, &t);
		struct ep_stats		 zero;

		if (e == NULL) {
			memset(&zero, 0, sizeof(zero));
			zero.target = t;
			e = &zero;
		}
		json_object_array_add(eps, endpoint_object(pp, ep, e));
	}
	ep_stats_foreach(&pp->endpoints, departed_endpoint, &w);
	json_object_object_add(o, "endpoints", eps);
	return o;
}

static void
add_pport(struct pport *pp, void *arg)
{
	json_object_array_add(arg, pport_object(pp));
}

json_object *
status_document(struct proxier *px, const struct conf *conf)
{
	struct proxier_state	 st;
	json_object		*doc = json_object_new_object();
	json_object		*ports = json_object_new_array();

	proxier_get_state(px, &st);
	json_object_object_add(doc, "formatVersion",
	    json_object_new_int(STATUS_FORMAT_VERSION));
	json_object_object_add(doc, "version",
	    json_object_new_string(PACKAGE_VERSION));
	json_object_object_add(doc, "iptablesBackend",
	    json_object_new_string(st.backend));
	json_object_object_add(doc, "lastSyncTime",
	    json_object_new_double(st.last_sync_time));
	json_object_object_add(doc, "currentTime",
	    json_object_new_double((double)time(NULL)));
	json_object_object_add(doc, "pendingServiceChanges",
	    json_object_new_int64((int64_t)st.service_changes_pending));
	json_object_object_add(doc, "iptablesRestoreFailures",
	    json_object_new_int64((int64_t)st.restore_failures_total));
	json_object_object_add(doc, "bindAddress",
	    json_object_new_string(conf->bind_address));
	proxier_foreach(px, add_pport, ports);
	json_object_object_add(doc, "servicePorts", ports);
	return doc;
}

/* The server. */

static void
status_written(struct bufferevent *bev, void *arg)
{
	bufferevent_free(bev);
}

/* A client that went away before its answer was written. */
static void
status_gone(struct bufferevent *bev, short what, void *arg)
{
	bufferevent_free(bev);
}

/* Answer one request (NULL: none came) and close once it is written. */
static void
status_answer(struct bufferevent *bev, struct status_server *srv,
    const char *request)
{
	json_object	*doc;
	const char	*text;

	if (request == NULL || strcmp(request, "status") == 0)
		doc = status_document(srv->proxier, srv->conf);
	else if (strncmp(request, "explain ", 8) == 0)
		doc = explain_daemon(srv->proxier, srv->conf, request + 8);
	else {
		doc = json_object_new_object();
		json_object_object_add(doc, "error", json_object_new_string(
		    "unknown request (this kuproxy knows status and "
		    "explain)"));
	}
	if (doc == NULL) {
		bufferevent_free(bev);
		return;
	}
	text = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE);
	bufferevent_disable(bev, EV_READ);
	bufferevent_setcb(bev, NULL, status_written, status_gone, srv);
	bufferevent_write(bev, text, strlen(text));
	bufferevent_write(bev, "\n", 1);
	json_object_put(doc);
}

static void
status_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer	*in = bufferevent_get_input(bev);
	char		*line;

	if ((line = evbuffer_readln(in, NULL, EVBUFFER_EOL_CRLF)) != NULL) {
		status_answer(bev, arg, line);
		free(line);
	} else if (evbuffer_get_length(in) > STATUS_REQUEST_MAX)
		bufferevent_free(bev);
}

/*
 * End of file or silence before a whole request line: what came is the
 * request, nothing is "status".  An error closes.
 */
static void
status_event(struct bufferevent *bev, short what, void *arg)
{
	char	 line[STATUS_REQUEST_MAX + 1];
	int	 len;

	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_TIMEOUT))) {
		bufferevent_free(bev);
		return;
	}
	len = evbuffer_remove(bufferevent_get_input(bev), line,
	    STATUS_REQUEST_MAX);
	line[len > 0 ? len : 0] = '\0';
	status_answer(bev, arg, len > 0 ? line : NULL);
}

static void
status_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct status_server	*srv = arg;
	struct bufferevent	*bev;
	struct timeval		 wait = { 0, STATUS_REQUEST_WAIT_MS * 1000 };

	bev = bufferevent_socket_new(evconnlistener_get_base(l), fd,
	    BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		close(fd);
		return;
	}
	bufferevent_setcb(bev, status_read, NULL, status_event, srv);
	bufferevent_set_timeouts(bev, &wait, NULL);
	bufferevent_enable(bev, EV_READ);
}

static int
status_sockaddr(const char *path, struct sockaddr_un *sun, char *err,
    size_t errlen)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path)) {
		snprintf(err, errlen, "status socket path \"%s\" is too long",
		    path);
		return -1;
	}
	strcpy(sun->sun_path, path);
	return 0;
}

struct status_server *
status_server_new(struct event_base *base, const char *path,
    struct proxier *px, const struct conf *conf, char *err, size_t errlen)
{
	struct status_server	*srv;
	struct sockaddr_un	 sun;
	char			*dir;
	mode_t			 old;

	if (status_sockaddr(path, &sun, err, errlen) == -1)
		return NULL;
	if ((srv = calloc(1, sizeof(*srv))) == NULL ||
	    (srv->path = strdup(path)) == NULL ||
	    (dir = strdup(path)) == NULL) {
		snprintf(err, errlen, "out of memory");
		if (srv != NULL)
			free(srv->path);
		free(srv);
		return NULL;
	}
	srv->proxier = px;
	srv->conf = conf;
	if (mkdir(dirname(dir), 0700) == -1 && errno != EEXIST)
		log_warn("status socket: cannot create %s", dir);
	free(dir);
	/* A socket left by a previous run that crashed. */
	unlink(path);
	old = umask(0177);
	srv->listener = evconnlistener_new_bind(base, status_accept, srv,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
	    (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (srv->listener == NULL) {
		snprintf(err, errlen, "status socket %s: %s", path,
		    strerror(errno));
		status_server_free(srv);
		return NULL;
	}
	chmod(path, 0600);
	return srv;
}

void
status_server_free(struct status_server *srv)
{
	if (srv == NULL)
		return;
	if (srv->listener != NULL) {
		evconnlistener_free(srv->listener);
		unlink(srv->path);
	}
	free(srv->path);
	free(srv);
}

/* The client. */

/* Send the request line and our end of file. */
static int
status_send(int fd, const char *request)
{
	size_t	 len = strlen(request), off = 0;
	ssize_t	 n;

	while (off < len) {
		n = write(fd, request + off, len - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -1;
		off += (size_t)n;
	}
	if (write(fd, "\n", 1) != 1)
		return -1;
	return shutdown(fd, SHUT_WR);
}

/* See status.h. */
json_object *
status_ask(const char *path, const char *request, char *err, size_t errlen)
{
	struct sockaddr_un	 sun;
	json_object		*doc;
	char			*buf = NULL, *nbuf;
	size_t			 len = 0, cap = 0;
	ssize_t			 n;
	int			 fd;

	if (status_sockaddr(path, &sun, err, errlen) == -1)
		return NULL;
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		snprintf(err, errlen, "cannot reach kuproxy at %s: %s (is it "
		    "running? see --status-socket)", path, strerror(errno));
		if (fd != -1)
			close(fd);
		return NULL;
	}
	if (status_send(fd, request) == -1) {
		snprintf(err, errlen, "writing to %s: %s", path,
		    strerror(errno));
		goto fail;
	}
	for (;;) {
		if (len + 4096 + 1 > cap) {
			cap = cap == 0 ? 65536 : cap * 2;
			if (cap > STATUS_MAX_BYTES ||
			    (nbuf = realloc(buf, cap)) == NULL) {
				snprintf(err, errlen, "status answer too large");
				goto fail;
			}
			buf = nbuf;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(err, errlen, "reading from %s: %s", path,
			    strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	if ((doc = json_tokener_parse(buf)) == NULL)
		snprintf(err, errlen, "kuproxy at %s sent no valid JSON", path);
	free(buf);
	return doc;

fail:
	close(fd);
	free(buf);
	return NULL;
}

static const char *
jstr(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return "";
	return json_object_get_string(v);
}

static long long
jint(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return 0;
	return (long long)json_object_get_int64(v);
}

/* "10.96.0.10:80 203.0.113.7:80 node:30080" */
static void
portals_text(json_object *sp, char *buf, size_t len)
{
	static const char *lists[] = { "clusterIPs", "externalIPs",
	    "ingressIPs" };
	json_object	*a;
	size_t		 i, j, n = 0;

	buf[0] = '\0';
	for (i = 0; i < 3; i++) {
		if (!json_object_object_get_ex(sp, lists[i], &a))
			continue;
		for (j = 0; j < json_object_array_length(a) && n < len; j++)
			n += (size_t)snprintf(buf + n, len - n, "%s%s",
			    n > 0 ? " " : "", json_object_get_string(
			    json_object_array_get_idx(a, j)));
	}
	if (jint(sp, "nodePort") != 0 && n < len)
		snprintf(buf + n, len - n, "%snodePort:%lld", n > 0 ? " " : "",
		    jint(sp, "nodePort"));
}

void
status_print_table(json_object *doc, FILE *out)
{
	json_object	*ports, *sp, *eps, *ep;
	char		 portals[512], affinity[64];
	double		 last = 0, now = 0;
	json_object	*v;
	size_t		 i, j;

	if (json_object_object_get_ex(doc, "lastSyncTime", &v))
		last = json_object_get_double(v);
	if (json_object_object_get_ex(doc, "currentTime", &v))
		now = json_object_get_double(v);
	fprintf(out, "kuproxy %s, iptables backend %s, ", jstr(doc, "version"),
	    jstr(doc, "iptablesBackend"));
	if (last > 0)
		fprintf(out, "rules synced %.0fs ago", now - last);
	else
		fprintf(out, "rules never synced");
	fprintf(out, ", %lld service changes pending, %lld restore "
	    "failures\n", jint(doc, "pendingServiceChanges"),
	    jint(doc, "iptablesRestoreFailures"));
	fprintf(out, "Prot ServicePort  Portals  ProxyPort  Affinity\n");
	fprintf(out, "  -> %-36s %-5s %10s %10s %14s %14s %8s\n", "Endpoint",
	    "Ready", "ActiveConn", "TotalConn", "BytesToEp", "BytesToClient",
	    "Failures");
	if (!json_object_object_get_ex(doc, "servicePorts", &ports))
		return;
	for (i = 0; i < json_object_array_length(ports); i++) {
		sp = json_object_array_get_idx(ports, i);
		portals_text(sp, portals, sizeof(portals));
		if (strcmp(jstr(sp, "sessionAffinity"), "ClientIP") == 0)
			snprintf(affinity, sizeof(affinity), "ClientIP(%llds, "
			    "%lld clients)", jint(sp, "affinityTimeoutSeconds"),
			    jint(sp, "stickyClients"));
		else
			snprintf(affinity, sizeof(affinity), "None");
		fprintf(out, "%-4s %s/%s%s%s  %s  proxy port %lld  affinity "
		    "%s\n", jstr(sp, "protocol"), jstr(sp, "namespace"),
		    jstr(sp, "name"), jstr(sp, "port")[0] != '\0' ? ":" : "",
		    jstr(sp, "port"), portals[0] != '\0' ? portals :
		    "(no portal)", jint(sp, "proxyPort"), affinity);
		if (!json_object_object_get_ex(sp, "endpoints", &eps) ||
		    json_object_array_length(eps) == 0) {
			fprintf(out, "  -> (no endpoints)\n");
			continue;
		}
		for (j = 0; j < json_object_array_length(eps); j++) {
			json_object *ready;

			ep = json_object_array_get_idx(eps, j);
			json_object_object_get_ex(ep, "ready", &ready);
			fprintf(out, "  -> %-36s %-5s %10lld %10lld %14lld "
			    "%14lld %8lld\n", jstr(ep, "address"),
			    json_object_get_boolean(ready) ? "yes" : "no",
			    jint(ep, "activeConnections"),
			    jint(ep, "totalConnections"),
			    jint(ep, "bytesToEndpoint"),
			    jint(ep, "bytesToClient"),
			    jint(ep, "connectFailures"));
		}
	}
}

int
status_client(const char *path, bool json)
{
	json_object	*doc;
	char		 err[512];

	if ((doc = status_ask(path, "status", err, sizeof(err))) == NULL) {
		fprintf(stderr, "kuproxy status: %s\n", err);
		return 1;
	}
	if (json)
		printf("%s\n", json_object_to_json_string_ext(doc,
		    JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
		    JSON_C_TO_STRING_NOSLASHESCAPE));
	else
		status_print_table(doc, stdout);
	json_object_put(doc);
	return 0;
}
