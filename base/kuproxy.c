/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kuproxy: the Kubernetes userspace service proxy.
 *
 * main() wires the pieces on one libevent loop: flags and config file
 * (conf/) → a source of service tables (watch/) → the proxier (proxy/),
 * which opens listeners, balances, relays and writes the portal rules.
 * Around them: the health and metrics servers (admin.c), the status
 * socket (status.c) and systemd's readiness protocol (sdnotify.c).
 * Signals: SIGHUP re-reads the configuration and the service file without
 * dropping connections; SIGTERM/SIGINT stop accepting, remove the rules,
 * let open connections finish for the grace period, then exit 0; a second
 * SIGTERM/SIGINT exits at once.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "base/clock.h"
#include "base/admin.h"
#include "base/explain.h"
#include "base/log.h"
#include "base/privdrop.h"
#include "base/sdnotify.h"
#include "base/status.h"
#include "base/svc.h"
#include "conf/conf.h"
#include "proxy/portal.h"
#include "proxy/proxier.h"
#include "proxy/tcp_relay.h"
#include "proxy/worker.h"
#include "watch/kube_http.h"
#include "watch/kubeconfig.h"
#include "watch/source.h"

#define DRAIN_POLL_MS	100

struct daemon {
	int			 argc;
	char			**argv;
	struct conf		 conf;
	struct event_base	*base;
	struct proxier		*proxier;
	struct source_file	*source;
	struct source_api	*api;
	struct admin		*admin;
	struct admin_counters	 counters;
	struct status_server	*status;
	struct event		*ev_hup, *ev_term, *ev_int, *drain_timer;
	long long		 drain_left_ms;
	bool			 stopping;
	bool			 ready;		/* told systemd */
};

/*
 * The most descriptors we ask for, however high the hard limit: HAProxy's
 * fd-hard-limit default.  A hard limit of "unlimited" or a billion would
 * otherwise make libevent and the kernel size tables for nothing.
 */
#define NOFILE_CAP		1048576ULL
/* A relayed connection holds its client and its backend socket. */
#define NOFILE_PER_CONN		2ULL

/*
 * Raise the soft descriptor limit to min(hard, NOFILE_CAP) (never lower
 * it, except an unlimited one) and log how many connections that leaves room for.  Upstream set
 * 64000 and failed to start when it could not; a lower limit is only worth
 * a warning, since running out of descriptors costs connections, never the
 * process (listener.c, tcp_relay.c).
 * Splicing sessions also hold a pipe (two descriptors) per direction while
 * bytes are in flight, so the capacity logged is for idle connections.
 */
static void
raise_nofile_limit(void)
{
	struct rlimit	rl;
	rlim_t		want;
	char		hard[32];

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		log_warn("getrlimit(RLIMIT_NOFILE)");
		return;
	}
	want = rl.rlim_max;
	if (want == RLIM_INFINITY || want > NOFILE_CAP)
		want = NOFILE_CAP;
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur < want) {
		rl.rlim_cur = want;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_warn("cannot raise the open files limit to %llu",
			    (unsigned long long)want);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	if (rl.rlim_max == RLIM_INFINITY)
		snprintf(hard, sizeof(hard), "unlimited");
	else
		snprintf(hard, sizeof(hard), "%llu",
		    (unsigned long long)rl.rlim_max);
	log_info("open files limit %llu (hard %s): room for about %llu "
	    "connections at %llu descriptors each",
	    (unsigned long long)rl.rlim_cur, hard,
	    (unsigned long long)(rl.rlim_cur / NOFILE_PER_CONN),
	    NOFILE_PER_CONN);
	if (rl.rlim_cur < 4096)
		log_warnx("open files limit %llu is low: raise the hard limit "
		    "(LimitNOFILE=, ulimit -Hn) to serve more connections",
		    (unsigned long long)rl.rlim_cur);
}

static void
daemon_publish(struct svctab *tab, void *arg)
{
	struct daemon		*d = arg;
	struct svctab_stats	 st;

	svctab_stats(tab, &st);
	proxier_apply(d->proxier, tab);
	sd_notifyf("%sSTATUS=serving %zu service ports, %zu endpoints",
	    d->ready ? "" : "READY=1\n", st.n_ports, st.n_endpoints);
	d->ready = true;
}

/*
 * Settings a running daemon can take from a reloaded configuration; the
 * others (addresses, ports, backend, sources) need a restart.
 */
/* The settings the workers read, while they wait (workers_quiesce()). */
static void
daemon_take_relay_conf(void *arg)
{
	struct conf	*c = ((struct conf **)arg)[0];
	struct conf	*n = ((struct conf **)arg)[1];

	c->verbosity = n->verbosity;
	c->logging_format = n->logging_format;
	log_init(c->verbosity, c->logging_format);
	c->udp_timeout_ms = n->udp_timeout_ms;
	c->udp_max_assoc_per_port = n->udp_max_assoc_per_port;
	c->udp_max_assoc_total = n->udp_max_assoc_total;
	c->tcp_idle_timeout_ms = n->tcp_idle_timeout_ms;
}

static void
daemon_take_conf(struct daemon *d, struct conf *n)
{
	struct conf	*c = &d->conf;
	struct conf	*both[2] = { c, n };
	bool		 rules = false;

	if (strcmp(n->bind_address, c->bind_address) != 0 ||
	    n->port_range_begin != c->port_range_begin ||
	    n->port_range_end != c->port_range_end ||
	    n->iptables_backend != c->iptables_backend ||
	    n->relay_mode != c->relay_mode)
		log_warnx("SIGHUP: bind address, proxy port range, iptables "
		    "backend and relay mode take effect at the next restart");
	workers_quiesce(daemon_take_relay_conf, both);
	c->sync_period_ms = n->sync_period_ms;
	c->min_sync_period_ms = n->min_sync_period_ms;
	c->shutdown_grace_ms = n->shutdown_grace_ms;
	if (n->n_nodeport_cidrs != c->n_nodeport_cidrs ||
	    memcmp(n->nodeport_cidrs, c->nodeport_cidrs,
	    sizeof(c->nodeport_cidrs)) != 0 ||
	    n->n_external_ip_allow != c->n_external_ip_allow ||
	    memcmp(n->external_ip_allow, c->external_ip_allow,
	    sizeof(c->external_ip_allow)) != 0)
		rules = true;
	memcpy(c->nodeport_cidrs, n->nodeport_cidrs, sizeof(c->nodeport_cidrs));
	c->n_nodeport_cidrs = n->n_nodeport_cidrs;
	memcpy(c->external_ip_allow, n->external_ip_allow,
	    sizeof(c->external_ip_allow));
	c->n_external_ip_allow = n->n_external_ip_allow;
	if (rules)
		proxier_resync(d->proxier);
}

static void
daemon_on_hup(evutil_socket_t sig, short events, void *arg)
{
	struct daemon	*d = arg;
	struct conf	 n;
	struct timespec	 ts;
	char		 err[512];
	int		 ok = 1;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	/* systemd's notify-reload wants the time the reload started. */
	sd_notifyf("RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000 +
	    (unsigned long long)ts.tv_nsec / 1000);
	log_info("SIGHUP: re-reading the configuration and the service file");
	conf_defaults(&n);
	if (conf_parse_args(&n, d->argc, d->argv, err, sizeof(err)) == -1) {
		log_warnx("SIGHUP: %s; the previous configuration stays in "
		    "force", err);
		ok = 0;
	} else
		daemon_take_conf(d, &n);
	conf_clear(&n);
	if (d->source != NULL && source_file_reload(d->source) == -1) {
		log_warnx("SIGHUP: the service file was not applied; the "
		    "previous table stays in force");
		ok = 0;
	}
	if (ok)
		d->counters.reloads_ok++;
	else
		d->counters.reloads_failed++;
	sd_notify_send("READY=1");
}

static void
daemon_drain_tick(evutil_socket_t fd, short events, void *arg)
{
	struct daemon	*d = arg;
	struct timeval	 tv = { 0, DRAIN_POLL_MS * 1000 };
	size_t		 active = tcp_relay_active();

	if (active == 0) {
		log_info("all connections closed; exiting");
		event_base_loopexit(d->base, NULL);
		return;
	}
	if (d->drain_left_ms <= 0) {
		log_info("shutdown grace period over; closing %zu "
		    "connections", active);
		workers_close_sessions();
		event_base_loopexit(d->base, NULL);
		return;
	}
	d->drain_left_ms -= DRAIN_POLL_MS;
	evtimer_add(d->drain_timer, &tv);
}

static void
daemon_on_term(evutil_socket_t sig, short events, void *arg)
{
	struct daemon *d = arg;

	if (d->stopping) {
		log_info("signal %d again: exiting now", (int)sig);
		workers_close_sessions();
		event_base_loopbreak(d->base);
		return;
	}
	d->stopping = true;
	sd_notify_send("STOPPING=1");
	source_file_free(d->source);
	d->source = NULL;
	source_api_free(d->api);
	d->api = NULL;
	proxier_stop(d->proxier);
	/* Only now: from this line on, a new client is refused. */
	log_info("signal %d: stopping; %zu connections may finish within "
	    "%u ms", (int)sig, tcp_relay_active(), d->conf.shutdown_grace_ms);
	d->drain_left_ms = d->conf.shutdown_grace_ms;
	daemon_drain_tick(-1, 0, d);
}

/*
 * The Kubernetes API source is used when there is no --services-file and
 * there is somewhere to find a server: --kubeconfig, --master, or the
 * in-cluster environment (kube-proxy's createClient order).
 */
static bool
daemon_wants_api_source(const struct daemon *d)
{
	const char	*host = getenv("KUBERNETES_SERVICE_HOST");

	return (d->conf.services_file == NULL &&
	    (d->conf.kubeconfig != NULL || d->conf.master != NULL ||
	    (host != NULL && *host != '\0')));
}

/* Credentials, then list+watch on the loop.  Returns 0 or -1 (logged). */
static int
daemon_start_api_source(struct daemon *d)
{
	struct kube_creds	 creds;
	char			 err[1024];

	if (kubeconfig_resolve(d->conf.kubeconfig, d->conf.context,
	    d->conf.master, KUBE_SA_DIR, &creds, clock_mono_ms(), err,
	    sizeof(err)) == -1) {
		log_warnx("%s", err);
		return (-1);
	}
	if ((d->api = source_api_new(d->base, &d->conf, &creds,
	    daemon_publish, d, err, sizeof(err))) == NULL) {
		log_warnx("API source: %s", err);
		return (-1);
	}
	return (0);
}

static int
daemon_run(struct daemon *d)
{
	char		err[512];
	unsigned	n_workers = d->conf.workers != 0 ? d->conf.workers :
			    workers_default();

	raise_nofile_limit();
	/* Writes to a peer that has gone must fail with EPIPE, not kill us. */
	signal(SIGPIPE, SIG_IGN);

	/* One loop needs no locks: only workers pay for them. */
	if (n_workers > 1 && evthread_use_pthreads() == -1)
		fatalx("cannot set up libevent's locking for --workers");
	if ((d->base = worker_base_new()) == NULL)
		fatalx("cannot create the event loop: this libevent has no "
		    "edge-triggered backend (epoll)");
	if (d->conf.services_file == NULL && !daemon_wants_api_source(d)) {
		log_warnx("no source of services: give --services-file PATH, "
		    "--kubeconfig FILE or --master URL");
		return 2;
	}
	/*
	 * Before the first iptables run: --user drops root here (keeping
	 * only the capabilities the flags need, for the sockets and rules
	 * to come), and a missing capability stops us before any rule.
	 */
	if (privdrop_setup(&d->conf, err, sizeof(err)) == -1) {
		log_warnx("%s", err);
		return 1;
	}
	/* After dropping root: threads inherit what is left. */
	if (workers_start(d->base, &d->conf, n_workers, err,
	    sizeof(err)) == -1) {
		log_warnx("%s", err);
		return 1;
	}
	if ((d->proxier = proxier_new(d->base, &d->conf, err,
	    sizeof(err))) == NULL) {
		log_warnx("%s", err);
		return 1;
	}
	if ((d->admin = admin_new(d->base, &d->conf, d->proxier, &d->counters,
	    err, sizeof(err))) == NULL) {
		log_warnx("%s", err);
		return 1;
	}
	/* The status view is a convenience: kuproxy serves without it. */
	if (d->conf.status_socket != NULL && (d->status = status_server_new(
	    d->base, d->conf.status_socket, d->proxier, &d->conf, err,
	    sizeof(err))) == NULL)
		log_warnx("%s; kuproxy status will not work", err);
	if (daemon_wants_api_source(d)) {
		if (daemon_start_api_source(d) == -1)
			return 1;
	} else if ((d->source = source_file_new(d->base,
	    d->conf.services_file, daemon_publish, d, err,
	    sizeof(err))) == NULL) {
		log_warnx("%s", err);
		return 1;
	}
	d->ev_hup = evsignal_new(d->base, SIGHUP, daemon_on_hup, d);
	d->ev_term = evsignal_new(d->base, SIGTERM, daemon_on_term, d);
	d->ev_int = evsignal_new(d->base, SIGINT, daemon_on_term, d);
	d->drain_timer = evtimer_new(d->base, daemon_drain_tick, d);
	if (d->ev_hup == NULL || d->ev_term == NULL || d->ev_int == NULL ||
	    d->drain_timer == NULL || evsignal_add(d->ev_hup, NULL) == -1 ||
	    evsignal_add(d->ev_term, NULL) == -1 ||
	    evsignal_add(d->ev_int, NULL) == -1)
		fatalx("cannot set up signal handling");

	log_info("kuproxy %s starting: %s%s, bind address %s",
	    PACKAGE_VERSION, d->api != NULL ? "Kubernetes API source" :
	    "services file ", d->api != NULL ? "" : d->conf.services_file,
	    d->conf.bind_address);
	event_base_dispatch(d->base);
	return 0;
}

static void
daemon_free(struct daemon *d)
{
	if (d->ev_hup != NULL)
		event_free(d->ev_hup);
	if (d->ev_term != NULL)
		event_free(d->ev_term);
	if (d->ev_int != NULL)
		event_free(d->ev_int);
	if (d->drain_timer != NULL)
		event_free(d->drain_timer);
	source_file_free(d->source);
	source_api_free(d->api);
	status_server_free(d->status);
	admin_free(d->admin);
	/* Sockets close on their workers, then the workers stop. */
	if (d->proxier != NULL)
		proxier_stop(d->proxier);
	workers_stop();
	proxier_free(d->proxier);
	if (d->base != NULL)
		event_base_free(d->base);
	conf_clear(&d->conf);
}

int
main(int argc, char **argv)
{
	struct daemon	d;
	char		err[512];
	int		rc = 0;

	memset(&d, 0, sizeof(d));
	d.argc = argc;
	d.argv = argv;
	conf_defaults(&d.conf);
	if (conf_parse_args(&d.conf, argc, argv, err, sizeof(err)) == -1) {
		fprintf(stderr, "kuproxy: %s\n", err);
		fprintf(stderr, "Run 'kuproxy --help' for the flags.\n");
		conf_clear(&d.conf);
		return 2;
	}
	log_init(d.conf.verbosity, d.conf.logging_format);

	switch (d.conf.command) {
	case CONF_CMD_HELP:
		conf_usage(stdout);
		break;
	case CONF_CMD_VERSION:
		printf("kuproxy %s\n", PACKAGE_VERSION);
		break;
	case CONF_CMD_CLEANUP:
		rc = portal_cleanup_all() == 0 ? 0 : 1;
		break;
	case CONF_CMD_STATUS:
		if (d.conf.status_socket == NULL) {
			fprintf(stderr, "kuproxy status: --status-socket is "
			    "empty\n");
			rc = 2;
		} else
			rc = status_client(d.conf.status_socket,
			    d.conf.output_json);
		break;
	case CONF_CMD_EXPLAIN:
		rc = explain_client(&d.conf);
		break;
	case CONF_CMD_RUN:
		rc = daemon_run(&d);
		break;
	}
	daemon_free(&d);
	return rc;
}
