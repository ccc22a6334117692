/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Health and metrics over HTTP.  Owns the two evhttp servers and the list
 * of metrics; the counters themselves live where the work happens (proxier
 * state, struct pport_stats, per-endpoint stats).  Every request is bounded:
 * GET and HEAD only, small headers, no body, a timeout, so a slow scraper
 * cannot stall the data path that shares this loop.
 *
 * evhttp's timeout is an idle timeout that every byte re-arms, so a client
 * sending a header byte a second (slowloris) would stay for ever, and
 * evhttp has no connection cap.  Each server therefore keeps a list of its
 * connections (a reference on each one's bufferevent, taken in the
 * bufferevent callback evhttp calls at accept): a connection is cut with
 * shutdown(2) ADMIN_DEADLINE_MS after accept, and beyond ADMIN_MAX_CONNS
 * the oldest is cut first, so a new probe from the kubelet still gets in.
 * Cutting only shuts the socket down; evhttp sees EOF and frees its side.
 */
#include "config.h"

#include <sys/socket.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "base/clock.h"
#include "base/admin.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/tree.h"
#include "conf/conf.h"
#include "proxy/epstats.h"
#include "proxy/lb.h"
#include "proxy/listener.h"
#include "proxy/pport.h"
#include "proxy/worker.h"
#include "proxy/proxier.h"
#include "proxy/tcp_relay.h"

#define ADMIN_TIMEOUT_S		10
#define ADMIN_MAX_HEADERS	8192
#define ADMIN_DEADLINE_MS	10000	/* a connection's whole life */
#define ADMIN_MAX_CONNS		64	/* per server; the oldest goes */
#define ADMIN_SWEEP_MS		1000	/* deadline and reaping tick */

/* One connection of an admin server: our reference on its bufferevent. */
struct admin_conn {
	TAILQ_ENTRY(admin_conn)	 entry;		/* oldest first */
	struct bufferevent	*bev;
	long long		 deadline_ms;
	bool			 cut;
};

TAILQ_HEAD(admin_conn_list, admin_conn);

/* The connections of one evhttp server. */
struct admin_guard {
	struct event		*sweep;
	struct admin_conn_list	 conns;
	size_t			 n_conns;	/* not cut yet */
	uint64_t		 n_cut;		/* over the deadline or cap */
};

struct admin {
	const struct conf		*conf;
	struct proxier			*proxier;
	const struct admin_counters	*counters;
	struct evhttp			*healthz;
	struct evhttp			*metrics;
	struct admin_guard		 healthz_guard;
	struct admin_guard		 metrics_guard;
	uint64_t			 healthz_200, healthz_503;
	uint64_t			 livez_200, livez_503;
};

/* Split "IP:PORT" or "[IPv6]:PORT". */
static int
admin_split_address(const char *addr, char *host, size_t hostlen,
    uint16_t *port)
{
	const char	*colon;
	char		*end;
	long		 p;

	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');

		if (close == NULL || close[1] != ':')
			return -1;
		snprintf(host, hostlen, "%.*s", (int)(close - addr - 1),
		    addr + 1);
		colon = close + 1;
	} else {
		if ((colon = strrchr(addr, ':')) == NULL)
			return -1;
		snprintf(host, hostlen, "%.*s", (int)(colon - addr), addr);
	}
	p = strtol(colon + 1, &end, 10);
	if (*end != '\0' || p < 0 || p > 65535)
		return -1;
	*port = (uint16_t)p;
	return 0;
}

/* RFC 3339 with microseconds in UTC, as Go marshals a time.Time. */
static void
rfc3339(double t, char *buf, size_t len)
{
	time_t		secs = (time_t)t;
	struct tm	tm;
	size_t		n;

	gmtime_r(&secs, &tm);
	n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%06dZ",
	    (int)((t - (double)secs) * 1e6) % 1000000);
}

int
admin_healthy(const struct conf *conf, struct proxier *px)
{
	struct proxier_state st;

	proxier_get_state(px, &st);
	return st.queued_age_ms <= 2LL * conf->sync_period_ms;
}

/* /healthz and /livez: kube-proxy's JSON body and status. */
static void
admin_health(struct evhttp_request *req, void *arg, bool livez)
{
	struct admin		*a = arg;
	struct proxier_state	 st;
	struct evbuffer		*body = evbuffer_new();
	char			 last[40], now[40];
	int			 healthy;

	if (body == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	proxier_get_state(a->proxier, &st);
	healthy = admin_healthy(a->conf, a->proxier);
	rfc3339(st.last_sync_time, last, sizeof(last));
	rfc3339(clock_wall_s(), now, sizeof(now));
	if (st.last_sync_time == 0)
		snprintf(last, sizeof(last), "0001-01-01T00:00:00Z");
	evbuffer_add_printf(body, "{\"lastUpdated\": \"%s\",\"currentTime\": "
	    "\"%s\"%s}\n", last, now, livez ? "" : ",\"nodeEligible\": true");
	if (livez)
		(healthy ? a->livez_200++ : a->livez_503++);
	else
		(healthy ? a->healthz_200++ : a->healthz_503++);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/json");
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "X-Content-Type-Options", "nosniff");
	evhttp_send_reply(req, healthy ? HTTP_OK : 503,
	    healthy ? "OK" : "Service Unavailable", body);
	evbuffer_free(body);
}

static void
admin_on_healthz(struct evhttp_request *req, void *arg)
{
	admin_health(req, arg, false);
}

static void
admin_on_livez(struct evhttp_request *req, void *arg)
{
	admin_health(req, arg, true);
}

static void
admin_reply_text(struct evhttp_request *req, const char *content_type,
    struct evbuffer *body)
{
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", content_type);
	evhttp_send_reply(req, HTTP_OK, "OK", body);
}

static void
admin_on_proxy_mode(struct evhttp_request *req, void *arg)
{
	struct evbuffer *body = evbuffer_new();

	if (body == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evbuffer_add_printf(body, "userspace");
	admin_reply_text(req, "text/plain; charset=utf-8", body);
	evbuffer_free(body);
}

static void
admin_on_metrics(struct evhttp_request *req, void *arg)
{
	struct evbuffer *body = evbuffer_new();

	if (body == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	admin_render_metrics(arg, body);
	admin_reply_text(req, "text/plain; version=0.0.4; charset=utf-8",
	    body);
	evbuffer_free(body);
}

static void
admin_on_other(struct evhttp_request *req, void *arg)
{
	evhttp_send_error(req, HTTP_NOTFOUND, NULL);
}

/* Whether evhttp still owns the connection: it clears the callbacks on free. */
static bool
admin_conn_alive(const struct admin_conn *c)
{
	bufferevent_event_cb eventcb = NULL;

	bufferevent_getcb(c->bev, NULL, NULL, &eventcb, NULL);
	return eventcb != NULL;
}

static void
admin_conn_forget(struct admin_guard *g, struct admin_conn *c)
{
	if (!c->cut)
		g->n_conns--;
	TAILQ_REMOVE(&g->conns, c, entry);
	bufferevent_decref(c->bev);
	free(c);
}

/* Shut the socket down: evhttp reads EOF (or fails a write) and frees it. */
static void
admin_conn_cut(struct admin_guard *g, struct admin_conn *c)
{
	evutil_socket_t fd = bufferevent_getfd(c->bev);

	if (c->cut)
		return;
	if (fd != -1)
		shutdown(fd, SHUT_RDWR);
	c->cut = true;
	g->n_conns--;
	g->n_cut++;
}

/* Keep the sweep ticking while any connection is listed. */
static void
admin_guard_arm(struct admin_guard *g)
{
	struct timeval tv = { ADMIN_SWEEP_MS / 1000,
	    ADMIN_SWEEP_MS % 1000 * 1000 };

	if (!TAILQ_EMPTY(&g->conns) && !evtimer_pending(g->sweep, NULL))
		evtimer_add(g->sweep, &tv);
}

/*
 * Drop the connections evhttp has freed (their sockets close now) and cut
 * those past their deadline.  Keeps ticking while any is left.
 */
static void
admin_guard_sweep(struct admin_guard *g)
{
	struct admin_conn *c, *tmp;
	long long now = clock_mono_ms_coarse();

	TAILQ_FOREACH_SAFE(c, &g->conns, entry, tmp) {
		if (!admin_conn_alive(c))
			admin_conn_forget(g, c);
		else if (now >= c->deadline_ms)
			admin_conn_cut(g, c);
	}
	admin_guard_arm(g);
}

static void
admin_guard_tick(evutil_socket_t fd, short what, void *arg)
{
	admin_guard_sweep(arg);
}

/*
 * evhttp's bufferevent callback, called for each accepted connection: make
 * the bufferevent ourselves and keep a reference, to cut the connection at
 * its deadline.  At the cap the oldest connection still open is cut.
 */
static struct bufferevent *
admin_guard_accept(struct event_base *base, void *arg)
{
	struct admin_guard *g = arg;
	struct bufferevent *bev;
	struct admin_conn *c;

	admin_guard_sweep(g);
	if (g->n_conns >= ADMIN_MAX_CONNS)
		TAILQ_FOREACH(c, &g->conns, entry)
			if (!c->cut) {
				admin_conn_cut(g, c);
				break;
			}
	if ((bev = bufferevent_socket_new(base, -1,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL)
		return NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return bev;	/* served, only not guarded */
	bufferevent_incref(bev);
	c->bev = bev;
	c->deadline_ms = clock_mono_ms_coarse() + ADMIN_DEADLINE_MS;
	TAILQ_INSERT_TAIL(&g->conns, c, entry);
	g->n_conns++;
	/* Not a sweep: evhttp sets its callbacks only after we return. */
	admin_guard_arm(g);
	return bev;
}

static int
admin_guard_init(struct admin_guard *g, struct event_base *base,
    struct evhttp *http)
{
	TAILQ_INIT(&g->conns);
	if ((g->sweep = evtimer_new(base, admin_guard_tick, g)) == NULL)
		return -1;
	evhttp_set_bevcb(http, admin_guard_accept, g);
	return 0;
}

/* After evhttp_free(): every connection is gone, drop our references. */
static void
admin_guard_free(struct admin_guard *g)
{
	struct admin_conn *c;

	if (g->sweep == NULL)
		return;
	while ((c = TAILQ_FIRST(&g->conns)) != NULL)
		admin_conn_forget(g, c);
	event_free(g->sweep);
	g->sweep = NULL;
}

static struct evhttp *
admin_listen(struct event_base *base, const char *what, const char *addr,
    char *err, size_t errlen)
{
	struct evhttp	*http;
	char		 host[64];
	uint16_t	 port;

	if (admin_split_address(addr, host, sizeof(host), &port) == -1) {
		snprintf(err, errlen, "%s \"%s\": expected IP:PORT", what, addr);
		return NULL;
	}
	if ((http = evhttp_new(base)) == NULL) {
		snprintf(err, errlen, "%s: out of memory", what);
		return NULL;
	}
	evhttp_set_timeout(http, ADMIN_TIMEOUT_S);
	evhttp_set_max_headers_size(http, ADMIN_MAX_HEADERS);
	evhttp_set_max_body_size(http, 0);
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	if (evhttp_bind_socket(http, host, port) == -1) {
		snprintf(err, errlen, "%s: cannot listen on %s: %s", what, addr,
		    strerror(errno));
		evhttp_free(http);
		return NULL;
	}
	log_info("%s listening on %s", what, addr);
	return http;
}

struct admin *
admin_new(struct event_base *base, const struct conf *conf,
    struct proxier *px, const struct admin_counters *counters, char *err,
    size_t errlen)
{
	struct admin *a;

	if ((a = calloc(1, sizeof(*a))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->conf = conf;
	a->proxier = px;
	a->counters = counters;
	if (conf->healthz_bind_address != NULL) {
		if ((a->healthz = admin_listen(base, "health server",
		    conf->healthz_bind_address, err, errlen)) == NULL)
			goto fail;
		if (admin_guard_init(&a->healthz_guard, base, a->healthz) == -1) {
			snprintf(err, errlen, "health server: out of memory");
			goto fail;
		}
		evhttp_set_cb(a->healthz, "/healthz", admin_on_healthz, a);
		evhttp_set_cb(a->healthz, "/livez", admin_on_livez, a);
		evhttp_set_gencb(a->healthz, admin_on_other, a);
	}
	if (conf->metrics_bind_address != NULL) {
		if ((a->metrics = admin_listen(base, "metrics server",
		    conf->metrics_bind_address, err, errlen)) == NULL)
			goto fail;
		if (admin_guard_init(&a->metrics_guard, base, a->metrics) == -1) {
			snprintf(err, errlen, "metrics server: out of memory");
			goto fail;
		}
		evhttp_set_cb(a->metrics, "/metrics", admin_on_metrics, a);
		evhttp_set_cb(a->metrics, "/proxyMode", admin_on_proxy_mode, a);
		evhttp_set_cb(a->metrics, "/healthz", admin_on_healthz, a);
		evhttp_set_cb(a->metrics, "/livez", admin_on_livez, a);
		evhttp_set_gencb(a->metrics, admin_on_other, a);
	}
	return a;

fail:
	admin_free(a);
	return NULL;
}

void
admin_free(struct admin *a)
{
	if (a == NULL)
		return;
	if (a->healthz != NULL)
		evhttp_free(a->healthz);
	if (a->metrics != NULL)
		evhttp_free(a->metrics);
	admin_guard_free(&a->healthz_guard);
	admin_guard_free(&a->metrics_guard);
	free(a);
}

/* Metrics. */

/* Process metrics, with the names every Prometheus client library uses. */
static void
admin_process_metrics(struct evbuffer *b)
{
	struct rlimit	 rl;
	DIR		*dir;
	struct dirent	*de;
	FILE		*f;
	char		 buf[1024], *p;
	unsigned long	 utime = 0, stime = 0, vsize = 0;
	unsigned long long start = 0;
	long		 rss = 0, ticks = sysconf(_SC_CLK_TCK);
	long		 page = sysconf(_SC_PAGESIZE);
	double		 boot = 0;
	size_t		 fds = 0;

	if ((f = fopen("/proc/self/stat", "r")) != NULL) {
		/* Fields after the command name, which may hold spaces. */
		if (fgets(buf, sizeof(buf), f) != NULL &&
		    (p = strrchr(buf, ')')) != NULL)
			sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
			    "%*u %lu %lu %*d %*d %*d %*d %*d %*d %llu %lu %ld",
			    &utime, &stime, &start, &vsize, &rss);
		fclose(f);
	}
	if ((f = fopen("/proc/stat", "r")) != NULL) {
		while (fgets(buf, sizeof(buf), f) != NULL)
			if (sscanf(buf, "btime %lf", &boot) == 1)
				break;
		fclose(f);
	}
	if ((dir = opendir("/proc/self/fd")) != NULL) {
		while ((de = readdir(dir)) != NULL)
			if (de->d_name[0] != '.')
				fds++;
		closedir(dir);
		fds--;		/* the directory's own descriptor */
	}
	metrics_family(b, "process_cpu_seconds_total", "counter",
	    "Total user and system CPU time spent in seconds.");
	metrics_sample(b, "process_cpu_seconds_total", NULL,
	    (double)(utime + stime) / (double)ticks);
	metrics_family(b, "process_open_fds", "gauge",
	    "Number of open file descriptors.");
	metrics_sample(b, "process_open_fds", NULL, (double)fds);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		metrics_family(b, "process_max_fds", "gauge",
		    "Maximum number of open file descriptors.");
		metrics_sample(b, "process_max_fds", NULL,
		    (double)rl.rlim_cur);
	}
	metrics_family(b, "process_resident_memory_bytes", "gauge",
	    "Resident memory size in bytes.");
	metrics_sample(b, "process_resident_memory_bytes", NULL,
	    (double)rss * (double)page);
	metrics_family(b, "process_virtual_memory_bytes", "gauge",
	    "Virtual memory size in bytes.");
	metrics_sample(b, "process_virtual_memory_bytes", NULL, (double)vsize);
	metrics_family(b, "process_start_time_seconds", "gauge",
	    "Start time of the process since unix epoch in seconds.");
	metrics_sample(b, "process_start_time_seconds", NULL,
	    boot + (double)start / (double)ticks);
}

/* How the kernel shared clients out over the --workers event loops. */
static void
admin_worker_metrics(struct evbuffer *b)
{
	const char	*label[] = { "worker", NULL, NULL };
	char		 index[16];
	unsigned	 i;

	metrics_family(b, "kuproxy_worker_sessions_total", "counter",
	    "TCP connections and UDP associations started, by the worker "
	    "(event loop) that serves them");
	for (i = 0; worker_at(i) != NULL; i++) {
		snprintf(index, sizeof(index), "%u", i);
		label[1] = index;
		metrics_sample(b, "kuproxy_worker_sessions_total", label,
		    (double)PPORT_STAT_GET(worker_env(worker_at(i))->started));
	}
}

/*
 * Clients rejected above the cap, accept pauses, resets passed on and
 * admin connections cut: how the data path and this server held up under
 * abuse.
 */
static void
admin_relay_metrics(struct admin *a, struct evbuffer *b)
{
	const char *cap[] = { "reason", "max_connections", NULL };
	const char *reason[] = { "reason", NULL, NULL };
	const char *dir[] = { "direction", NULL, NULL };
	const char *server[] = { "server", NULL, NULL };
	int r;

	metrics_family(b, "kuproxy_tcp_connections_rejected_total", "counter",
	    "TCP clients reset at once, not served");
	metrics_sample(b, "kuproxy_tcp_connections_rejected_total", cap,
	    (double)tcp_relay_n_rejected());
	metrics_family(b, "kuproxy_accept_errors_total", "counter",
	    "Times accepting paused on TCP service ports, by the error: out "
	    "of descriptors (EMFILE, ENFILE), of memory, or another");
	for (r = 0; r < LISTENER_ERR_MAX; r++) {
		reason[1] = listener_accept_error_name(r);
		metrics_sample(b, "kuproxy_accept_errors_total", reason,
		    (double)listener_n_accept_errors(r));
	}
	metrics_family(b, "kuproxy_tcp_resets_total", "counter",
	    "TCP resets passed on: direction=\"endpoint\", an endpoint reset "
	    "and the client was reset; direction=\"client\", the reverse");
	dir[1] = "endpoint";
	metrics_sample(b, "kuproxy_tcp_resets_total", dir,
	    (double)tcp_relay_n_resets(true));
	dir[1] = "client";
	metrics_sample(b, "kuproxy_tcp_resets_total", dir,
	    (double)tcp_relay_n_resets(false));
	admin_worker_metrics(b);
	metrics_family(b, "kuproxy_admin_connections_cut_total", "counter",
	    "Health and metrics connections cut: open 10 s after accept, or "
	    "the oldest when 64 were open");
	server[1] = "healthz";
	metrics_sample(b, "kuproxy_admin_connections_cut_total", server,
	    (double)a->healthz_guard.n_cut);
	server[1] = "metrics";
	metrics_sample(b, "kuproxy_admin_connections_cut_total", server,
	    (double)a->metrics_guard.n_cut);
}

static void
admin_sync_metrics(struct admin *a, struct evbuffer *b)
{
	struct proxier_state	 st;
	const char		*code200[] = { "code", "200", NULL };
	const char		*code503[] = { "code", "503", NULL };
	const char		*ver[] = { "version", PACKAGE_VERSION, NULL };

	proxier_get_state(a->proxier, &st);
	metrics_family(b, "kuproxy_build_info", "gauge",
	    "A metric with a constant 1 labelled with kuproxy's version.");
	metrics_sample(b, "kuproxy_build_info", ver, 1);
	metrics_family(b, "kubeproxy_sync_proxy_rules_duration_seconds",
	    "histogram", "SyncProxyRules latency in seconds");
	metrics_histogram(b, "kubeproxy_sync_proxy_rules_duration_seconds",
	    st.sync_duration);
	metrics_family(b, "kubeproxy_network_programming_duration_seconds",
	    "histogram", "In Cluster Network Programming Latency in seconds, "
	    "measured from when kuproxy received a change to when its rules "
	    "were in place");
	metrics_histogram(b, "kubeproxy_network_programming_duration_seconds",
	    st.programming_duration);
	metrics_family(b, "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
	    "gauge", "The last time proxy rules were successfully synced");
	metrics_sample(b, "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
	    NULL, st.last_sync_time);
	metrics_family(b,
	    "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds", "gauge",
	    "The last time a sync of proxy rules was queued");
	metrics_sample(b,
	    "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds", NULL,
	    st.last_queued_time);
	metrics_family(b, "kubeproxy_sync_proxy_rules_service_changes_total",
	    "counter", "Cumulative proxy rules Service changes");
	metrics_sample(b, "kubeproxy_sync_proxy_rules_service_changes_total",
	    NULL, (double)st.service_changes_total);
	metrics_family(b, "kubeproxy_sync_proxy_rules_service_changes_pending",
	    "gauge", "Pending proxy rules Service changes");
	metrics_sample(b, "kubeproxy_sync_proxy_rules_service_changes_pending",
	    NULL, (double)st.service_changes_pending);
	metrics_family(b, "kubeproxy_sync_proxy_rules_endpoint_changes_total",
	    "counter", "Cumulative proxy rules Endpoint changes (applied at "
	    "once in userspace mode: none is ever pending)");
	metrics_sample(b, "kubeproxy_sync_proxy_rules_endpoint_changes_total",
	    NULL, (double)st.endpoint_changes_total);
	metrics_family(b,
	    "kubeproxy_sync_proxy_rules_iptables_restore_failures_total",
	    "counter", "Cumulative proxy iptables restore failures");
	metrics_sample(b,
	    "kubeproxy_sync_proxy_rules_iptables_restore_failures_total", NULL,
	    (double)st.restore_failures_total);
	metrics_family(b, "kubeproxy_proxy_healthz_total", "counter",
	    "Cumulative proxy healthz HTTP status");
	metrics_sample(b, "kubeproxy_proxy_healthz_total", code200,
	    (double)a->healthz_200);
	metrics_sample(b, "kubeproxy_proxy_healthz_total", code503,
	    (double)a->healthz_503);
	metrics_family(b, "kubeproxy_proxy_livez_total", "counter",
	    "Cumulative proxy livez HTTP status");
	metrics_sample(b, "kubeproxy_proxy_livez_total", code200,
	    (double)a->livez_200);
	metrics_sample(b, "kubeproxy_proxy_livez_total", code503,
	    (double)a->livez_503);
	if (a->counters != NULL) {
		const char *ok[] = { "result", "success", NULL };
		const char *bad[] = { "result", "failure", NULL };

		metrics_family(b, "kuproxy_config_reloads_total", "counter",
		    "Reloads of the configuration and service file on SIGHUP");
		metrics_sample(b, "kuproxy_config_reloads_total", ok,
		    (double)a->counters->reloads_ok);
		metrics_sample(b, "kuproxy_config_reloads_total", bad,
		    (double)a->counters->reloads_failed);
	}
	admin_relay_metrics(a, b);
}

/* One family of per-service-port samples: which value and how it is named. */
struct port_metric {
	const char	*name;
	const char	*type;
	const char	*help;
	const char	*extra_key, *extra_value;	/* e.g. direction */
	int		 only;		/* a protocol, or ANY_PROTO */
	uint64_t	(*value)(const struct pport *);
};

#define ANY_PROTO	(-1)

static uint64_t
v_active(const struct pport *p)
{
	if (p->proto == SVC_PROTO_UDP)
		return PPORT_STAT_GET(p->stats.udp_assoc_active);
	return PPORT_STAT_GET(p->stats.conns_active);
}

static uint64_t
v_total(const struct pport *p)
{
	return PPORT_STAT_GET(p->stats.conns_total);
}
static uint64_t
v_in(const struct pport *p)
{
	return PPORT_STAT_GET(p->stats.bytes_in);
}
static uint64_t
v_out(const struct pport *p)
{
	return PPORT_STAT_GET(p->stats.bytes_out);
}
static uint64_t
v_noep(const struct pport *p)
{
	return PPORT_STAT_GET(p->stats.no_endpoints);
}
static uint64_t
v_fail(const struct pport *p)
{
	return PPORT_STAT_GET(p->stats.connect_failures);
}
static uint64_t
v_assoc(const struct pport *p)
{
	return PPORT_STAT_GET(p->stats.udp_assoc_active);
}
static uint64_t
v_assoc_total(const struct pport *p)
{
	return PPORT_STAT_GET(p->stats.udp_assoc_total);
}
static uint64_t
v_evicted(const struct pport *p)
{
	return PPORT_STAT_GET(p->stats.udp_assoc_evicted);
}
static uint64_t
v_dropped(const struct pport *p)
{
	return PPORT_STAT_GET(p->stats.udp_dropped);
}

static const struct port_metric port_metrics[] = {
	{ "kuproxy_service_connections_active", "gauge",
	  "Connections (TCP) or associations (UDP) open now", NULL, NULL,
	  ANY_PROTO, v_active },
	{ "kuproxy_service_connections_total", "counter",
	  "Connections accepted (TCP)", NULL, NULL, SVC_PROTO_TCP, v_total },
	{ "kuproxy_service_bytes_total", "counter",
	  "Bytes relayed, by direction", "direction", "to_backend", ANY_PROTO,
	  v_in },
	{ "kuproxy_service_bytes_total", NULL, NULL, "direction", "to_client",
	  ANY_PROTO, v_out },
	{ "kuproxy_service_no_endpoint_rejections_total", "counter",
	  "TCP clients reset because no endpoint took them, UDP datagrams "
	  "dropped for want of an endpoint (a TCP service port without "
	  "endpoints stops listening: the kernel refuses those clients)",
	  NULL, NULL, ANY_PROTO, v_noep },
	{ "kuproxy_service_connect_failures_total", "counter",
	  "Failed attempts to connect to an endpoint (UDP: refusals)", NULL,
	  NULL, ANY_PROTO, v_fail },
	{ "kuproxy_udp_associations_active", "gauge",
	  "UDP client associations open now", NULL, NULL, SVC_PROTO_UDP,
	  v_assoc },
	{ "kuproxy_udp_associations_total", "counter",
	  "UDP client associations created", NULL, NULL, SVC_PROTO_UDP,
	  v_assoc_total },
	{ "kuproxy_udp_associations_evicted_total", "counter",
	  "UDP associations evicted at the cap", NULL, NULL, SVC_PROTO_UDP,
	  v_evicted },
	{ "kuproxy_udp_dropped_total", "counter",
	  "UDP datagrams not relayed", NULL, NULL, SVC_PROTO_UDP, v_dropped },
};

struct metrics_walk {
	struct evbuffer			*b;
	const struct port_metric	*m;
	const struct pport		*pp;
	int				 which;	/* endpoint metric index */
};

static void
pport_labels(const struct pport *pp, const char **labels, char *port,
    size_t portlen)
{
	snprintf(port, portlen, "%s", pp->port->name);
	labels[0] = "namespace";
	labels[1] = pp->svc->namespace;
	labels[2] = "service";
	labels[3] = pp->svc->name;
	labels[4] = "port";
	labels[5] = port;
	labels[6] = "protocol";
	labels[7] = svc_proto_str(pp->proto);
	labels[8] = NULL;
}

static void
admin_port_sample(struct pport *pp, void *arg)
{
	struct metrics_walk	*w = arg;
	const char		*labels[12];
	char			 port[64];

	if (w->m->only != ANY_PROTO && w->m->only != (int)pp->proto)
		return;
	pport_labels(pp, labels, port, sizeof(port));
	if (w->m->extra_key != NULL) {
		labels[8] = w->m->extra_key;
		labels[9] = w->m->extra_value;
		labels[10] = NULL;
	}
	metrics_sample(w->b, w->m->name, labels, (double)w->m->value(pp));
}

static void
admin_endpoint_sample(struct ep_stats *e, void *arg)
{
	static const char *names[] = {
		"kuproxy_endpoint_connections_active",
		"kuproxy_endpoint_connections_total",
		"kuproxy_endpoint_connect_failures_total",
	};
	struct metrics_walk	*w = arg;
	const char		*labels[12];
	char			 port[64], ep[SVC_IPSTRLEN + 8];
	uint64_t		 v[3];

	v[0] = PPORT_STAT_GET(e->active);
	v[1] = PPORT_STAT_GET(e->total);
	v[2] = PPORT_STAT_GET(e->connect_failures);
	pport_labels(w->pp, labels, port, sizeof(port));
	labels[8] = "endpoint";
	labels[9] = lb_target_str(&e->target, ep, sizeof(ep));
	labels[10] = NULL;
	metrics_sample(w->b, names[w->which], labels, (double)v[w->which]);
}

static void
admin_endpoints_of(struct pport *pp, void *arg)
{
	struct metrics_walk *w = arg;

	w->pp = pp;
	ep_stats_foreach(&pp->endpoints, admin_endpoint_sample, w);
}

void
admin_render_metrics(struct admin *a, struct evbuffer *b)
{
	static const char *ep_help[][2] = {
		{ "kuproxy_endpoint_connections_active",
		  "Connections to the endpoint open now" },
		{ "kuproxy_endpoint_connections_total",
		  "Connections made to the endpoint" },
		{ "kuproxy_endpoint_connect_failures_total",
		  "Failed attempts to connect to the endpoint" },
	};
	struct metrics_walk	w = { .b = b };
	size_t			i;

	admin_sync_metrics(a, b);
	for (i = 0; i < sizeof(port_metrics) / sizeof(port_metrics[0]); i++) {
		w.m = &port_metrics[i];
		if (w.m->type != NULL)
			metrics_family(b, w.m->name, w.m->type, w.m->help);
		proxier_foreach(a->proxier, admin_port_sample, &w);
	}
	for (i = 0; i < 3; i++) {
		w.which = (int)i;
		metrics_family(b, ep_help[i][0], i == 0 ? "gauge" : "counter",
		    ep_help[i][1]);
		proxier_foreach(a->proxier, admin_endpoints_of, &w);
	}
	admin_process_metrics(b);
}
