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
 * A change costs about what changed, not what the file holds.  A JSON list
 * (what `kubectl get -o json` prints) is split into its items without
 * building the whole tree; each item's text is hashed, and an item whose
 * text was in the last good reading reuses the object decoded from it then,
 * so only new or edited items are parsed and decoded.  The table is built
 * with a memo (base/svc.c) that joins only the services whose spec or
 * slices changed.  Anything else (YAML, a lone object, a bad item) takes
 * the plain path: parse the whole file, decode every object, report what
 * is wrong object by object.
 *
 * Decoding is watch/decode.c's job; joining slices to services and the
 * table itself belong to base/svc.c.
 */
#include "config.h"

#include <sys/inotify.h>
#include <sys/time.h>

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <json-c/json.h>

#include "base/clock.h"
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
/* After a reading this large, hand the freed heap back to the system. */
#define SOURCE_FILE_TRIM_BYTES	(1024 * 1024)

#define SOURCE_FILE_EVENTS	(IN_CLOSE_WRITE | IN_MOVED_TO | \
	IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_MODIFY | IN_ATTRIB | \
	IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

/*
 * One item of a JSON list, found again by the hash of its text (and of the
 * list's kind, which decides what an item without kind is).  A collision
 * of both 64-bit halves between two different texts is what would make a
 * reading reuse the wrong object: about 2^-128 per pair, far below the odds
 * of the file itself being corrupted on disk.
 */
struct sf_item {
	uint64_t		 hash[2];
	bool			 full;		/* the slot is taken */
	bool			 used;		/* by the reading in progress */
	enum decode_kind	 kind;
	struct svc		*svc;		/* DECODE_SERVICE: the spec */
	struct slice		*slice;		/* DECODE_ENDPOINT_SLICE */
};

/* Items by hash: open addressing, linear probing, never more than half full. */
struct sf_cache {
	struct sf_item	*slots;
	size_t		 cap;		/* a power of two, or 0 */
	size_t		 n;
};

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
	struct svctab_memo	*memo;		/* what current was joined from */
	struct sf_cache		 items;		/* the last good JSON list */
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

/* The item cache. */

static uint64_t
sf_mix(uint64_t h)
{
	/* splitmix64's finalizer. */
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 31;
	return (h);
}

/*
 * Two 64-bit hashes of p[0..len) continuing from h: a word at a time, each
 * half with its own multiplier and rotation, so that the halves do not
 * collide together.  Not cryptographic: the file is the operator's.
 */
static void
sf_hash(const char *p, size_t len, uint64_t h[2])
{
	uint64_t	 w, a = h[0] ^ len, b = h[1] + len;

	for (; len >= 8; p += 8, len -= 8) {
		memcpy(&w, p, 8);
		a = ((a ^ w) * 0x9e3779b97f4a7c15ULL);
		a = (a << 31) | (a >> 33);
		b = ((b + w) * 0xc2b2ae3d27d4eb4fULL);
		b = (b << 27) | (b >> 37);
	}
	w = 0;
	memcpy(&w, p, len);
	a = sf_mix(a ^ w ^ 0xd6e8feb86659fd93ULL);
	b = sf_mix(b + w + 0xa0761d6478bd642fULL);
	h[0] = a;
	h[1] = b ^ (a >> 1);
}

static void
sf_item_clear(struct sf_item *it)
{
	svc_unref(it->svc);
	slice_free(it->slice);
	memset(it, 0, sizeof(*it));
}

static void
sf_cache_clear(struct sf_cache *c)
{
	size_t i;

	for (i = 0; i < c->cap; i++)
		if (c->slots[i].full)
			sf_item_clear(&c->slots[i]);
	free(c->slots);
	memset(c, 0, sizeof(*c));
}

/* An empty cache with room for n items; -1 (ENOMEM). */
static int
sf_cache_init(struct sf_cache *c, size_t n)
{
	size_t cap = 16;

	memset(c, 0, sizeof(*c));
	while (cap < 2 * n)
		cap *= 2;
	if ((c->slots = calloc(cap, sizeof(*c->slots))) == NULL)
		return (-1);
	c->cap = cap;
	return (0);
}

/* The slot for hash h: the item, or the empty slot where it would go. */
static struct sf_item *
sf_cache_slot(struct sf_cache *c, const uint64_t h[2])
{
	size_t i;

	if (c->cap == 0)
		return (NULL);
	for (i = h[0] & (c->cap - 1);; i = (i + 1) & (c->cap - 1))
		if (!c->slots[i].full || (c->slots[i].hash[0] == h[0] &&
		    c->slots[i].hash[1] == h[1]))
			return (&c->slots[i]);
}

static struct sf_item *
sf_cache_find(struct sf_cache *c, const uint64_t h[2])
{
	struct sf_item *it = sf_cache_slot(c, h);

	return (it != NULL && it->full ? it : NULL);
}

/* Move it into c (which has room). */
static void
sf_cache_move(struct sf_cache *c, struct sf_item *it)
{
	struct sf_item *slot = sf_cache_slot(c, it->hash);

	*slot = *it;
	slot->used = false;
	c->n++;
	memset(it, 0, sizeof(*it));
}

/* What one reading of a JSON list collects: borrowed pointers. */
struct sf_list_reading {
	struct svc	**specs;
	size_t		  n_specs;
	struct slice	**slices;
	size_t		  n_slices;
	size_t		  n_decoded;	/* items parsed and decoded anew */
};

/*
 * Decode item i of l into it, as decode.c does with the items of a
 * list of kind list_kind.  -1 when the item is not an object, lacks the
 * kind a generic List needs, or fails to decode: the plain path then
 * reports it.
 */
static int
sf_decode_item(struct yamljson_list *l, size_t i, const char *list_kind,
    struct sf_item *it)
{
	json_object	*obj, *kind;
	char		 err[1024];
	int		 rc = -1;

	if ((obj = yamljson_list_item(l, i)) == NULL)
		return (-1);
	if (!json_object_is_type(obj, json_type_object))
		goto out;
	if (strcmp(list_kind, "List") == 0 &&
	    (!json_object_object_get_ex(obj, "kind", &kind) ||
	    !json_object_is_type(kind, json_type_string)))
		goto out;
	it->kind = decode_kind_of(obj, list_kind);
	if (it->kind == DECODE_SERVICE &&
	    (it->svc = decode_service(obj, err, sizeof(err))) == NULL)
		goto out;
	if (it->kind == DECODE_ENDPOINT_SLICE &&
	    (it->slice = decode_endpoint_slice(obj, err, sizeof(err))) == NULL)
		goto out;
	rc = 0;
 out:
	json_object_put(obj);
	return (rc);
}

/*
 * Find or decode every item of l into fresh (new items) and r (pointers to
 * the objects of every item, from sf->items or fresh, in file order).
 * Returns 0, or -1 when the plain path must take over.
 */
static int
sf_read_items(struct source_file *sf, struct yamljson_list *l,
    const char *list_kind, struct sf_cache *fresh, struct sf_list_reading *r)
{
	struct sf_item	*it, *slot;
	uint64_t	 seed[2] = { 0x243f6a8885a308d3ULL, 0x13198a2e03707344ULL };
	uint64_t	 h[2];
	size_t		 i;

	sf_hash(list_kind, strlen(list_kind), seed);
	if (sf_cache_init(fresh, l->n_items) == -1 ||
	    (l->n_items > 0 &&
	    ((r->specs = calloc(l->n_items, sizeof(*r->specs))) == NULL ||
	    (r->slices = calloc(l->n_items, sizeof(*r->slices))) == NULL)))
		return (-1);
	for (i = 0; i < l->n_items; i++) {
		h[0] = seed[0];
		h[1] = seed[1];
		sf_hash(l->items[i], l->item_lens[i], h);
		if ((it = sf_cache_find(&sf->items, h)) != NULL)
			it->used = true;
		else if ((it = sf_cache_find(fresh, h)) == NULL) {
			slot = sf_cache_slot(fresh, h);
			if (sf_decode_item(l, i, list_kind, slot) == -1) {
				sf_item_clear(slot);
				return (-1);
			}
			slot->hash[0] = h[0];
			slot->hash[1] = h[1];
			slot->full = true;
			fresh->n++;
			r->n_decoded++;
			it = slot;
		}
		if (it->svc != NULL)
			r->specs[r->n_specs++] = it->svc;
		if (it->slice != NULL)
			r->slices[r->n_slices++] = it->slice;
	}
	return (0);
}

/* The reading was accepted: fresh plus the items reused is the new cache. */
static void
sf_keep_items(struct source_file *sf, struct sf_cache *fresh)
{
	size_t i;

	for (i = 0; i < sf->items.cap; i++) {
		struct sf_item *it = &sf->items.slots[i];

		if (it->full && it->used)
			sf_cache_move(fresh, it);
	}
	sf_cache_clear(&sf->items);
	sf->items = *fresh;
	memset(fresh, 0, sizeof(*fresh));
}

/* The reading failed or went the plain way: the cache is as it was. */
static void
sf_forget_reading(struct source_file *sf, struct sf_cache *fresh)
{
	size_t i;

	sf_cache_clear(fresh);
	for (i = 0; i < sf->items.cap; i++)
		sf->items.slots[i].used = false;
}

/*
 * The fast path: buf is a JSON list.  Returns the new table (one
 * reference), or NULL with *plain set when the plain path must read the
 * file instead, or NULL without it on allocation failure.
 */
static struct svctab *
sf_load_list(struct source_file *sf, const char *buf, size_t len,
    bool *plain, size_t *n_items, size_t *n_decoded)
{
	struct yamljson_list	 l;
	struct sf_list_reading	 r;
	struct sf_cache		 fresh;
	struct svctab		*tab = NULL;
	json_object		*kind;
	const char		*list_kind;
	size_t			 n;

	*plain = true;
	memset(&r, 0, sizeof(r));
	memset(&fresh, 0, sizeof(fresh));
	if (yamljson_split_list(buf, len, &l) == -1)
		return (NULL);
	/* A lone object with an "items" field is not a list. */
	if (!json_object_object_get_ex(l.head, "kind", &kind) ||
	    !json_object_is_type(kind, json_type_string) ||
	    (n = strlen(list_kind = json_object_get_string(kind))) < 4 ||
	    strcmp(list_kind + n - 4, "List") != 0)
		goto out;
	if (sf_read_items(sf, &l, list_kind, &fresh, &r) == -1)
		goto out;
	*plain = false;
	*n_items = l.n_items;
	*n_decoded = r.n_decoded;
	if ((tab = svctab_memo_build(sf->memo, r.specs, r.n_specs, r.slices,
	    r.n_slices)) == NULL)
		goto out;
	sf_keep_items(sf, &fresh);
 out:
	if (tab == NULL)
		sf_forget_reading(sf, &fresh);
	free(r.specs);
	free(r.slices);
	yamljson_list_clear(&l);
	return (tab);
}

/*
 * The plain path: parse the whole file, decode every object, and report
 * every bad one.  Returns the new table, or NULL when the file was bad
 * (logged).
 */
static struct svctab *
sf_load_plain(struct source_file *sf, const char *buf, size_t len)
{
	struct source_file_batch	 b;
	struct svctab			*tab = NULL;
	json_object			*docs = NULL;
	char				 err[1024];

	memset(&b, 0, sizeof(b));
	b.path = sf->path;
	b.build.owns_slices = true;
	if (yamljson_parse(buf, len, &docs, err, sizeof(err)) == -1) {
		log_warnx("service file %s:%s; the last table stays in force",
		    sf->path, err);
		return (NULL);
	}
	if (source_file_decode(sf, docs, &b) == -1) {
		log_warnx("service file %s: %zu object%s rejected; the last "
		    "table stays in force", sf->path, b.n_errors,
		    b.n_errors == 1 ? "" : "s");
		goto out;
	}
	/* Free the tree first: the build should not add to its peak. */
	json_object_put(docs);
	docs = NULL;
	tab = svctab_memo_build(sf->memo, b.build.svcs, b.build.n_svcs,
	    b.build.slices, b.build.n_slices);
	if (tab == NULL)
		log_warnx("service file %s: out of memory building the table",
		    sf->path);
	else
		/* Decoded afresh: the item cache no longer says what is in force. */
		sf_cache_clear(&sf->items);
 out:
	svctab_builder_clear(&b.build);
	json_object_put(docs);
	return (tab);
}

/*
 * Read, parse, decode, build and publish.  Returns 0 when the file was
 * accepted (a table was published, or it equals the current one), -1 when
 * nothing changed because the file was bad or missing.
 */
static int
source_file_load(struct source_file *sf)
{
	struct svctab	*tab;
	char		*buf, err[1024];
	size_t		 len, n_items = 0, n_decoded = 0;
	long long	 t0 = clock_mono_ms();
	bool		 plain;

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
	tab = sf_load_list(sf, buf, len, &plain, &n_items, &n_decoded);
	if (tab == NULL && !plain)
		log_warnx("service file %s: out of memory building the table; "
		    "the last table stays in force", sf->path);
	else if (tab == NULL)
		tab = sf_load_plain(sf, buf, len);
	free(buf);
	if (len >= SOURCE_FILE_TRIM_BYTES)
		malloc_trim(0);
	if (tab == NULL)
		return (-1);
	if (plain)
		log_v(2, "service file %s: read whole in %lld ms, %zu "
		    "services joined", sf->path, clock_mono_ms() - t0,
		    svctab_memo_n_joined(sf->memo));
	else
		log_v(2, "service file %s: read in %lld ms, %zu of %zu items "
		    "decoded, %zu services joined", sf->path,
		    clock_mono_ms() - t0, n_decoded, n_items,
		    svctab_memo_n_joined(sf->memo));
	if (svctab_same(sf->current, tab)) {
		log_debug("service file %s: unchanged", sf->path);
		svctab_unref(tab);
		return (0);
	}
	source_file_publish(sf, tab);
	return (0);
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
	if ((sf->memo = svctab_memo_new()) == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto fail;
	}
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
	svctab_memo_free(sf->memo);
	sf_cache_clear(&sf->items);
	free(sf->path);
	free(sf->dir);
	free(sf);
}
