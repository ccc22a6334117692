/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A Kubernetes list body ({"metadata": {...}, "items": [...], ...}) parsed
 * as its bytes arrive: each item is handed over as a json-c object as soon
 * as its last byte is in, so that no tree of the whole body is ever built
 * and the text is never held whole.  The list's other members may come
 * before or after "items" (JSON objects have no order); of them only
 * "metadata" is kept.  Pure: no I/O, no globals, fuzzable.
 *
 *   ls = list_stream_new(&limits, on_item, arg);
 *   list_stream_feed(ls, buf, len)...;  list_stream_finish(ls);
 *   list_stream_metadata(ls); list_stream_free(ls);
 */
#ifndef KUPROXY_LIST_STREAM_H
#define KUPROXY_LIST_STREAM_H

#include <stddef.h>

#include <json-c/json.h>

struct list_stream;

/* Bounds on what the body may hold. */
struct list_stream_limits {
	size_t	max_bytes;		/* the whole body */
	size_t	max_item_bytes;		/* one item's text */
	size_t	max_other_bytes;	/* everything but the items, together */
	int	max_depth;		/* nesting, counting the list object */
};

/* How a body turned out, from list_stream_feed() and list_stream_finish(). */
enum list_stream_status {
	LIST_STREAM_OK = 0,
	LIST_STREAM_BAD = -1,		/* not JSON, or a bound exceeded */
	LIST_STREAM_NOT_LIST = -2,	/* JSON, but not a list object */
};

/*
 * Called with every item in order; the callee owns the object (NULL for a
 * JSON null item).
 */
typedef void	(*list_stream_item_cb)(json_object *item, void *arg);

/* A parser for one body, or NULL (ENOMEM).  limits is copied. */
struct list_stream *list_stream_new(const struct list_stream_limits *,
		    list_stream_item_cb on_item, void *arg);
/* Free ls (NULL is fine). */
void		 list_stream_free(struct list_stream *);

/*
 * The next len bytes of the body (any split).  Items completed by them are
 * handed to on_item before this returns.  Returns LIST_STREAM_OK, or the
 * failure (see list_stream_error()) once the body cannot be a list; every
 * later call returns the same failure and does nothing.
 */
enum list_stream_status list_stream_feed(struct list_stream *,
		    const char *buf, size_t len);
/*
 * The body ended.  Returns LIST_STREAM_OK when it was one whole JSON
 * object whose "items" was an array (or null), else the failure.
 */
enum list_stream_status list_stream_finish(struct list_stream *);

/* What is wrong with the body, e.g. "not JSON: ... at byte 12"; "" if OK. */
const char	*list_stream_error(const struct list_stream *);
/* The list's "metadata" object once seen (borrowed), or NULL. */
json_object	*list_stream_metadata(const struct list_stream *);
/* Items handed over so far. */
size_t		 list_stream_n_items(const struct list_stream *);
/* Body bytes taken so far. */
size_t		 list_stream_bytes(const struct list_stream *);

#endif
