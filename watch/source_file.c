/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The service file source: a local file holding what `kubectl get
 * services,endpointslices -A -o json|yaml` prints (or ServiceLists,
 * EndpointSliceLists, multi-document YAML), turned into service tables.
 *
 * This module owns reading the file at the right moments and the policy of
 * what a bad file does: nothing.  The file is read once from the event loop
 * after start, again after it changes, and on source_file_reload() (SIGHUP).
 * A file that cannot be read or parsed, or in which any object fails to
 * decode, is logged object by object and publishes no table, so the last
 * good one stays in force.  Changes are seen through inotify on the file's
 * directory, because editors and `kubectl ... > tmp && mv tmp file` replace
 * the file rather than write it, and Kubernetes ConfigMap volumes swap a
 * "..data" symlink next to it.  Events are debounced so that a file still
 * being written is read once, when quiet.
 *
 * Decoding is watch/decode.c's job; joining slices to services and the
 * table itself belong to base/svc.c.
 */
#include "config.h"

#include <sys/inotify.h>
#include <sys/time.h>

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <json-c/json.h>

#include "base/log.h"
#include "base/svc.h"
#include "base/yamljson.h"
#include "watch/decode.h"
#include "watch/source.h"

#define SOURCE_FILE_MAX_BYTES	(256u * 1024 * 1024)
/* Read once events have been quiet this long, but never wait longer. */
#define SOURCE_FILE_QUIET_MS	75
#define SOURCE_FILE_MAX_WAIT_MS	500
#define SOURCE_FILE_MAX_ERRORS	20	/* logged per reading */

#define SOURCE_FILE_EVENTS	(IN_CLOSE_WRITE | IN_MOVED_TO | \
	IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_MODIFY | IN_ATTRIB | \
	IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

struct source_file {
	struct event_base	*base;
	char			*path;	/* absolute: dir/name */
	char			*dir;
	const char		*name;	/* last component of path */
	source_publish_cb	 cb;
	void			*arg;
	int			 inotify_fd;
	struct event		*ev_inotify;
	struct event		*ev_read;	/* debounce; the first too */
	bool			 read_pending;
	struct timeval		 pending_since;	/* a burst's first event */
	struct svctab		*current;	/* last published, our ref */
};

/* What one reading collects before anything is published. */
struct source_file_batch {
	const char		*path;
	struct svctab_builder	 build;		/* owns its slices */
	size_t			 n_errors;	/* failed objects, allocations */
};

static void
batch_on_service(struct svc *svc, void *arg)
{
	struct source_file_batch *b = arg;

	if (svctab_builder_add_svc(&b->build, svc) == -1) {
		log_warnx("service file %s: out of memory", b->path);
		b->n_errors++;
	}
}

static void
batch_on_slice(struct slice *sl, void *arg)
{
	struct source_file_batch *b = arg;

	if (svctab_builder_add_slice(&b->build, sl) == -1) {
		log_warnx("service file %s: out of memory", b->path);
		b->n_errors++;
	}
}

static void
batch_on_error(const char *msg, void *arg)
{
	struct source_file_batch *b = arg;

	/* A file of 10,000 bad objects should not flood the log. */
	if (b->n_errors++ < SOURCE_FILE_MAX_ERRORS)
		log_warnx("%s", msg);
}

/* Decode every document into b.  Returns 0 when all objects were good. */
static int
source_file_decode(struct source_file *sf, json_object *docs,
    struct source_file_batch *b)
{
	struct decode_sink	 sink = { batch_on_service, batch_on_slice,
				    batch_on_error, b };
	char			 err[1024];
	size_t			 i, n;
	int			 rc;

	n = json_object_array_length(docs);
	for (i = 0; i < n; i++) {
		rc = decode_document(json_object_array_get_idx(docs, i),
		    sf->path, &sink, err, sizeof(err));
		if (rc == -1) {
			batch_on_error(err, b);
			continue;
		}
	}
	if (b->n_errors > SOURCE_FILE_MAX_ERRORS)
		log_warnx("service file %s: %zu more errors not shown",
		    sf->path, b->n_errors - SOURCE_FILE_MAX_ERRORS);
	return (b->n_errors == 0 ? 0 : -1);
}

static void
source_file_publish(struct source_file *sf, struct svctab *tab)
{
	struct svctab_stats	 st;

	svctab_stats(tab, &st);
	log_info("service file %s: %zu services, %zu proxied, %zu ports, "
	    "%zu endpoints", sf->path, st.n_services, st.n_proxied,
	    st.n_ports, st.n_endpoints);
	svctab_unref(sf->current);
	sf->current = svctab_ref(tab);
	sf->cb(tab, sf->arg);
}

/*
 * Read, parse, decode, build and publish.  Returns 0 when the file was
 * accepted (a table was published, or it equals the current one), -1 when
 * nothing changed because the file was bad or missing.
 */
static int
source_file_load(struct source_file *sf)
{
	struct source_file_batch	 b;
	struct svctab			*tab;
	json_object			*docs = NULL;
	char				*buf, err[1024];
	size_t				 len;

	memset(&b, 0, sizeof(b));
	b.path = sf->path;
	b.build.owns_slices = true;
	if ((buf = yamljson_read_file(sf->path, SOURCE_FILE_MAX_BYTES, &len,
	    err, sizeof(err))) == NULL) {
		if (errno == ENOENT)
			log_warnx("service file %s: missing; the last table "
			    "stays in force", sf->path);
		else
			log_warnx("service file %s; the last table stays in "
			    "force", err);
		return (-1);
	}
	if (yamljson_parse(buf, len, &docs, err, sizeof(err)) == -1) {
		log_warnx("service file %s:%s; the last table stays in force",
		    sf->path, err);
		free(buf);
		return (-1);
	}
	free(buf);
	if (source_file_decode(sf, docs, &b) == -1) {
		log_warnx("service file %s: %zu object%s rejected; the last "
		    "table stays in force", sf->path, b.n_errors,
		    b.n_errors == 1 ? "" : "s");
		goto fail;
	}
	tab = svctab_builder_build(&b.build, sf->current);
	if (tab == NULL) {
		log_warnx("service file %s: out of memory building the table",
		    sf->path);
		goto fail;
	}
	svctab_builder_clear(&b.build);
	json_object_put(docs);
	if (svctab_same(sf->current, tab)) {
		log_debug("service file %s: unchanged", sf->path);
		svctab_unref(tab);
		return (0);
	}
	source_file_publish(sf, tab);
	return (0);
 fail:
	svctab_builder_clear(&b.build);
	json_object_put(docs);
	return (-1);
}

static void
source_file_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct source_file	*sf = arg;

	sf->read_pending = false;
	source_file_load(sf);
}

/*
 * Something happened to the file: read it once events have been quiet for
 * SOURCE_FILE_QUIET_MS, but no later than SOURCE_FILE_MAX_WAIT_MS after the
 * first, so that a file rewritten continuously still gets read.
 */
static void
source_file_schedule(struct source_file *sf)
{
	struct timeval	 now, waited;
	struct timeval	 quiet = { 0, SOURCE_FILE_QUIET_MS * 1000 };

	event_base_gettimeofday_cached(sf->base, &now);
	if (!sf->read_pending) {
		sf->read_pending = true;
		sf->pending_since = now;
	}
	timersub(&now, &sf->pending_since, &waited);
	if (waited.tv_sec * 1000 + waited.tv_usec / 1000 <
	    SOURCE_FILE_MAX_WAIT_MS || !evtimer_pending(sf->ev_read, NULL))
		evtimer_add(sf->ev_read, &quiet);
}

/* Does an event on this directory entry concern our file? */
static bool
source_file_concerns(struct source_file *sf, const struct inotify_event *ie)
{
	if (ie->len == 0)
		return (false);
	if (strcmp(ie->name, sf->name) == 0)
		return (true);
	/* ConfigMap and Secret volumes swap the "..data" symlink. */
	return (strncmp(ie->name, "..", 2) == 0);
}

static void
source_file_inotify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct source_file		*sf = arg;
	char				 buf[8192]
	    __attribute__((aligned(__alignof__(struct inotify_event))));
	const struct inotify_event	*ie;
	ssize_t				 n;
	char				*p;
	bool				 relevant = false;

	for (;;) {
		if ((n = read(sf->inotify_fd, buf, sizeof(buf))) == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				log_warn("service file %s: inotify read",
				    sf->path);
			break;
		}
		if (n == 0)
			break;
		for (p = buf; p < buf + n; p += sizeof(*ie) + ie->len) {
			ie = (const struct inotify_event *)p;
			if (ie->mask & IN_Q_OVERFLOW)
				relevant = true;
			else if (ie->mask & (IN_DELETE_SELF | IN_MOVE_SELF))
				log_warnx("service file %s: directory %s was "
				    "removed or moved; changes are no longer "
				    "seen until a restart", sf->path, sf->dir);
			else if (source_file_concerns(sf, ie))
				relevant = true;
		}
	}
	if (relevant)
		source_file_schedule(sf);
}

/* dir and name of path, with dir made absolute so a chdir cannot break it. */
static int
source_file_split(struct source_file *sf, const char *path, char *err,
    size_t errlen)
{
	const char	*slash = strrchr(path, '/');
	char		*dir, resolved[PATH_MAX];
	const char	*name = slash != NULL ? slash + 1 : path;

	if (*name == '\0' || strcmp(name, ".") == 0 ||
	    strcmp(name, "..") == 0) {
		snprintf(err, errlen, "%s: not a file name", path);
		return (-1);
	}
	if (slash == NULL)
		dir = strdup(".");
	else if (slash == path)
		dir = strdup("/");
	else
		dir = strndup(path, (size_t)(slash - path));
	if (dir == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		return (-1);
	}
	if (realpath(dir, resolved) == NULL) {
		snprintf(err, errlen, "%s: directory %s: %s", path, dir,
		    strerror(errno));
		free(dir);
		return (-1);
	}
	free(dir);
	if ((sf->dir = strdup(resolved)) == NULL ||
	    asprintf(&sf->path, "%s%s%s", resolved,
	    strcmp(resolved, "/") == 0 ? "" : "/", name) == -1) {
		sf->path = NULL;
		snprintf(err, errlen, "%s: out of memory", path);
		return (-1);
	}
	sf->name = strrchr(sf->path, '/') + 1;
	return (0);
}

/*
 * Start watching the service file at path on base.  The first reading
 * happens from the loop, right after it starts running; every accepted
 * reading calls cb with a new table (cb takes the reference).  The file
 * need not exist yet, but its directory must.  Returns NULL with a message
 * in err when the directory cannot be watched.  Free with
 * source_file_free().
 */
struct source_file *
source_file_new(struct event_base *base, const char *path,
    source_publish_cb cb, void *arg, char *err, size_t errlen)
{
	struct source_file	*sf;
	struct timeval		 now = { 0, 0 };

	if ((sf = calloc(1, sizeof(*sf))) == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		return (NULL);
	}
	sf->base = base;
	sf->cb = cb;
	sf->arg = arg;
	sf->inotify_fd = -1;
	if (source_file_split(sf, path, err, errlen) == -1)
		goto fail;
	if ((sf->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) == -1) {
		snprintf(err, errlen, "%s: inotify: %s", sf->path,
		    strerror(errno));
		goto fail;
	}
	if (inotify_add_watch(sf->inotify_fd, sf->dir, SOURCE_FILE_EVENTS) ==
	    -1) {
		snprintf(err, errlen, "%s: cannot watch %s: %s", sf->path,
		    sf->dir, strerror(errno));
		goto fail;
	}
	if ((sf->ev_inotify = event_new(base, sf->inotify_fd,
	    EV_READ | EV_PERSIST, source_file_inotify_cb, sf)) == NULL ||
	    (sf->ev_read = evtimer_new(base, source_file_read_cb, sf)) ==
	    NULL || event_add(sf->ev_inotify, NULL) == -1) {
		snprintf(err, errlen, "%s: cannot set up events", sf->path);
		goto fail;
	}
	/* The first reading: from the loop, never from inside _new(). */
	sf->read_pending = true;
	event_base_gettimeofday_cached(base, &sf->pending_since);
	evtimer_add(sf->ev_read, &now);
	return (sf);
 fail:
	source_file_free(sf);
	return (NULL);
}

/*
 * Read the file now (SIGHUP), dropping any reading that was pending.
 * Returns 0 when the file was accepted: a table was published, or the file
 * gives the table already in force.  Returns -1 when the file was missing
 * or bad; the last table stays in force then.
 */
int
source_file_reload(struct source_file *sf)
{
	evtimer_del(sf->ev_read);
	sf->read_pending = false;
	return (source_file_load(sf));
}

/*
 * Stop watching and free sf (NULL is fine).  Tables already published are
 * the callee's and stay valid.
 */
void
source_file_free(struct source_file *sf)
{
	if (sf == NULL)
		return;
	if (sf->ev_read != NULL)
		event_free(sf->ev_read);
	if (sf->ev_inotify != NULL)
		event_free(sf->ev_inotify);
	if (sf->inotify_fd != -1)
		close(sf->inotify_fd);
	svctab_unref(sf->current);
	free(sf->path);
	free(sf->dir);
	free(sf);
}
