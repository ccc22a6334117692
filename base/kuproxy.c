/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kuproxy: the Kubernetes userspace service proxy.
 *
 * main() wires the pieces on one libevent loop: flags and config file
 * (conf/) → a source of service tables (watch/) → the proxier (proxy/),
 * which opens listeners, balances, relays and writes the portal rules.
 * Signals: SIGHUP re-reads the service file; SIGTERM/SIGINT stop
 * accepting, remove the rules, let open connections finish for the grace
 * period, then exit 0; a second SIGTERM/SIGINT exits at once.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <event2/event.h>

#include "base/log.h"
#include "base/svc.h"
#include "conf/conf.h"
#include "proxy/portal.h"
#include "proxy/proxier.h"
#include "proxy/tcp_relay.h"
#include "watch/source.h"

#define DRAIN_POLL_MS	100

struct daemon {
	struct conf		 conf;
	struct event_base	*base;
	struct proxier		*proxier;
	struct source_file	*source;
	struct event		*ev_hup, *ev_term, *ev_int, *drain_timer;
	long long		 drain_left_ms;
	bool			 stopping;
};

/*
 * Raise the soft descriptor limit to the hard one: every proxied
 * connection costs two sockets.  Upstream set 64000 and failed to start
 * when it could not; a lower limit is only worth a warning.
 */
static void
raise_nofile_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_warn("cannot raise the open files limit");
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		log_v(1, "open files limit: %llu",
		    (unsigned long long)rl.rlim_cur);
}

static void
daemon_publish(struct svctab *tab, void *arg)
{
	struct daemon *d = arg;

	proxier_apply(d->proxier, tab);
}

static void
daemon_on_hup(evutil_socket_t sig, short events, void *arg)
{
	struct daemon *d = arg;

	log_info("SIGHUP: re-reading the service file");
	if (d->source != NULL && source_file_reload(d->source) == -1)
		log_warnx("SIGHUP: the service file was not applied; the "
		    "previous table stays in force");
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
		tcp_relay_close_all();
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
		tcp_relay_close_all();
		event_base_loopbreak(d->base);
		return;
	}
	d->stopping = true;
	log_info("signal %d: stopping; %zu connections may finish within "
	    "%u ms", (int)sig, tcp_relay_active(), d->conf.shutdown_grace_ms);
	source_file_free(d->source);
	d->source = NULL;
	proxier_stop(d->proxier);
	d->drain_left_ms = d->conf.shutdown_grace_ms;
	daemon_drain_tick(-1, 0, d);
}

static int
daemon_run(struct daemon *d)
{
	char err[512];

	raise_nofile_limit();
	/* Writes to a peer that has gone must fail with EPIPE, not kill us. */
	signal(SIGPIPE, SIG_IGN);

	if ((d->base = event_base_new()) == NULL)
		fatalx("cannot create the event loop");
	if (d->conf.services_file == NULL) {
		log_warnx("no source of services: give --services-file PATH");
		return 2;
	}
	if ((d->proxier = proxier_new(d->base, &d->conf, err,
	    sizeof(err))) == NULL) {
		log_warnx("%s", err);
		return 1;
	}
	if ((d->source = source_file_new(d->base, d->conf.services_file,
	    daemon_publish, d, err, sizeof(err))) == NULL) {
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

	log_info("kuproxy %s starting: services file %s, bind address %s",
	    PACKAGE_VERSION, d->conf.services_file, d->conf.bind_address);
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
	if (d->proxier != NULL) {
		proxier_stop(d->proxier);
		proxier_free(d->proxier);
	}
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
	case CONF_CMD_RUN:
		rc = daemon_run(&d);
		break;
	}
	daemon_free(&d);
	return rc;
}
