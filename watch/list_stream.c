/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A list body parsed incrementally, item by item.
 *
 * This module owns the top level of a list body: the list object's
 * members, found by a small state machine that only ever looks at white
 * space and the punctuation between members and between items.  Every
 * JSON value (a member's key, a member's value, an item) is parsed by
 * json-c's incremental tokener, fed the value's bytes as they arrive, so
 * strings, escapes, nesting and numbers are json-c's business, exactly as
 * they were when the whole body went through one tokener; the tokener says
 * where each value ends.  Items are handed to the caller one by one and
 * not kept; of the other members only "metadata" is kept, whether it comes
 * before or after "items".  What the items mean is the caller's business
 * (watch/informer.c).
 */
#include "config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "watch/list_stream.h"

enum ls_state {
	LS_START = 0,		/* before the list object */
	LS_MEMBER_FIRST,	/* after "{": a key or "}" */
	LS_MEMBER,		/* after ",": a key (or "}": json-c allows it) */
	LS_KEY,			/* in a key, through the tokener */
	LS_COLON,
	LS_VALUE,		/* before a member's value */
	LS_VALUE_TOK,		/* in a member's value, through the tokener */
	LS_AFTER_VALUE,		/* "," or "}" */
	LS_ITEMS_FIRST,		/* after "items": [ : an item or "]" */
	LS_ITEMS_NEXT,		/* after an item: "," or "]" */
	LS_ITEMS_COMMA,		/* after ",": an item (or "]", as json-c) */
	LS_ITEM,		/* in an item, through the tokener */
	LS_END,			/* after the list object: white space only */
	LS_FAILED,
};

struct list_stream {
	struct list_stream_limits	 lim;
	list_stream_item_cb		 on_item;
	void				*arg;
	enum ls_state			 state;
	enum list_stream_status		 status;
	json_tokener			*item_tok;	/* items: two levels down */
	json_tokener			*value_tok;	/* keys, other values */
	bool				 tok_busy;	/* a value is under way */
	size_t				 bytes;		/* taken so far */
	size_t				 item_bytes;	/* of the current item */
	size_t				 other_bytes;	/* outside the items */
	size_t				 n_items;
	bool				 key_is_items;
	bool				 key_is_metadata;
	bool				 items_seen;
	json_object			*metadata;
	char				 err[160];
};

/* A parser for one body; see list_stream.h. */
struct list_stream *
list_stream_new(const struct list_stream_limits *lim,
    list_stream_item_cb on_item, void *arg)
{
	struct list_stream	*ls;
	int			 depth = lim->max_depth;

	if ((ls = calloc(1, sizeof(*ls))) == NULL)
		return (NULL);
	ls->lim = *lim;
	ls->on_item = on_item;
	ls->arg = arg;
	/* The list object and the items array are two of the levels. */
	if (depth < 3)
		depth = 3;
	if ((ls->item_tok = json_tokener_new_ex(depth - 2)) == NULL ||
	    (ls->value_tok = json_tokener_new_ex(depth - 1)) == NULL) {
		list_stream_free(ls);
		return (NULL);
	}
	return (ls);
}

/* Free ls; NULL is fine. */
void
list_stream_free(struct list_stream *ls)
{
	if (ls == NULL)
		return;
	if (ls->item_tok != NULL)
		json_tokener_free(ls->item_tok);
	if (ls->value_tok != NULL)
		json_tokener_free(ls->value_tok);
	json_object_put(ls->metadata);
	free(ls);
}

static enum list_stream_status
ls_fail(struct list_stream *ls, enum list_stream_status st, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));

static enum list_stream_status
ls_fail(struct list_stream *ls, enum list_stream_status st, const char *fmt,
    ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(ls->err, sizeof(ls->err), fmt, ap);
	va_end(ap);
	ls->state = LS_FAILED;
	ls->status = st;
	return (st);
}

static bool
ls_space(char c)
{
	return (c == ' ' || c == '\n' || c == '\r' || c == '\t');
}

/* A value that is not an object would still be JSON: say "not a list". */
static bool
ls_json_start(char c)
{
	return (c == '[' || c == '"' || c == '-' || (c >= '0' && c <= '9') ||
	    c == 't' || c == 'f' || c == 'n');
}

static enum list_stream_status
ls_unexpected(struct list_stream *ls, size_t at)
{
	return (ls_fail(ls, LIST_STREAM_BAD, "not JSON: %s at byte %zu",
	    json_tokener_error_desc(json_tokener_error_parse_unexpected), at));
}

/* A member's value is complete: keep what the list needs of it. */
static enum list_stream_status
ls_member_value(struct list_stream *ls, json_object *v)
{
	if (ls->key_is_items) {
		/* items: null is an empty list (an unset Go slice). */
		if (v != NULL) {
			json_object_put(v);
			return (ls_fail(ls, LIST_STREAM_NOT_LIST, "the response "
			    "is not a list"));
		}
		ls->items_seen = true;
		return (LIST_STREAM_OK);
	}
	if (ls->key_is_metadata && json_object_is_type(v, json_type_object)) {
		json_object_put(ls->metadata);
		ls->metadata = v;
		return (LIST_STREAM_OK);
	}
	json_object_put(v);
	return (LIST_STREAM_OK);
}

/* A member's key is complete. */
static void
ls_member_key(struct list_stream *ls, json_object *k)
{
	const char	*s = json_object_get_string(k);

	ls->key_is_items = json_object_is_type(k, json_type_string) &&
	    strcmp(s, "items") == 0;
	ls->key_is_metadata = json_object_is_type(k, json_type_string) &&
	    strcmp(s, "metadata") == 0;
	json_object_put(k);
}

/*
 * Feed buf[0..len) to the tokener of the value under way (at body offset
 * at).  Sets *used to the bytes it took and *done (with *v, which may be
 * NULL for JSON null) when the value is complete.  *count is the value's
 * byte count so far, kept within max.
 */
static enum list_stream_status
ls_tok_feed(struct list_stream *ls, json_tokener *tok, const char *buf,
    size_t len, size_t at, size_t *count, size_t max, const char *what,
    size_t *used, bool *done, json_object **v)
{
	enum json_tokener_error	 jerr;
	size_t			 n = len;

	*done = false;
	*v = NULL;
	if (!ls->tok_busy) {
		json_tokener_reset(tok);
		ls->tok_busy = true;
	}
	/* Never more than the bound lets through, however large the read. */
	if (n - 1 > max - *count)
		n = max - *count + 1;
	if (n > INT32_MAX)
		n = INT32_MAX;
	*v = json_tokener_parse_ex(tok, buf, (int)n);
	jerr = json_tokener_get_error(tok);
	if (jerr == json_tokener_continue) {
		*used = n;
		*count += n;
		if (*count > max)
			return (ls_fail(ls, LIST_STREAM_BAD, "%s larger than "
			    "%zu bytes", what, max));
		return (LIST_STREAM_OK);
	}
	if (jerr != json_tokener_success) {
		json_object_put(*v);
		*v = NULL;
		return (ls_fail(ls, LIST_STREAM_BAD, "not JSON: %s at byte %zu",
		    json_tokener_error_desc(jerr), at +
		    json_tokener_get_parse_end(tok)));
	}
	*used = json_tokener_get_parse_end(tok);
	*count += *used;
	ls->tok_busy = false;
	*done = true;
	if (*count > max) {
		json_object_put(*v);
		*v = NULL;
		return (ls_fail(ls, LIST_STREAM_BAD, "%s larger than %zu bytes",
		    what, max));
	}
	return (LIST_STREAM_OK);
}

/* An item or a member's key or value, fed through its tokener. */
static enum list_stream_status
ls_value_bytes(struct list_stream *ls, const char *buf, size_t len,
    size_t at, size_t *used)
{
	enum list_stream_status	 st;
	json_object		*v;
	bool			 done;

	if (ls->state == LS_ITEM) {
		st = ls_tok_feed(ls, ls->item_tok, buf, len, at,
		    &ls->item_bytes, ls->lim.max_item_bytes, "an item", used,
		    &done, &v);
		if (st != LIST_STREAM_OK || !done)
			return (st);
		ls->n_items++;
		ls->state = LS_ITEMS_NEXT;
		ls->on_item(v, ls->arg);
		return (LIST_STREAM_OK);
	}
	st = ls_tok_feed(ls, ls->value_tok, buf, len, at, &ls->other_bytes,
	    ls->lim.max_other_bytes, "the list's members other than items",
	    used, &done, &v);
	if (st != LIST_STREAM_OK || !done)
		return (st);
	if (ls->state == LS_KEY) {
		ls_member_key(ls, v);
		ls->state = LS_COLON;
		return (LIST_STREAM_OK);
	}
	ls->state = LS_AFTER_VALUE;
	return (ls_member_value(ls, v));
}

/*
 * One byte of punctuation (c, at body offset at) between values; a byte
 * that starts a value changes the state and is left for the tokener
 * (*used 0).
 */
static enum list_stream_status
ls_punct(struct list_stream *ls, char c, size_t at, size_t *used)
{
	*used = 1;
	switch (ls->state) {
	case LS_START:
		if (c == '{') {
			ls->state = LS_MEMBER_FIRST;
			return (LIST_STREAM_OK);
		}
		if (ls_json_start(c))
			return (ls_fail(ls, LIST_STREAM_NOT_LIST, "the response "
			    "is not a list"));
		return (ls_unexpected(ls, at));
	case LS_MEMBER_FIRST:
	case LS_MEMBER:
		if (c == '}') {
			ls->state = LS_END;
			return (LIST_STREAM_OK);
		}
		if (c != '"')
			return (ls_unexpected(ls, at));
		ls->state = LS_KEY;
		*used = 0;
		return (LIST_STREAM_OK);
	case LS_COLON:
		if (c != ':')
			return (ls_unexpected(ls, at));
		ls->state = LS_VALUE;
		return (LIST_STREAM_OK);
	case LS_VALUE:
		if (ls->key_is_items && c == '[') {
			if (ls->items_seen)
				return (ls_fail(ls, LIST_STREAM_BAD, "\"items\" "
				    "twice in the list"));
			ls->items_seen = true;
			ls->state = LS_ITEMS_FIRST;
			return (LIST_STREAM_OK);
		}
		ls->state = LS_VALUE_TOK;
		*used = 0;
		return (LIST_STREAM_OK);
	case LS_AFTER_VALUE:
		if (c == ',')
			ls->state = LS_MEMBER;
		else if (c == '}')
			ls->state = LS_END;
		else
			return (ls_unexpected(ls, at));
		return (LIST_STREAM_OK);
	case LS_ITEMS_FIRST:
	case LS_ITEMS_COMMA:
		if (c == ']') {
			ls->state = LS_AFTER_VALUE;
			return (LIST_STREAM_OK);
		}
		ls->state = LS_ITEM;
		ls->item_bytes = 0;
		*used = 0;
		return (LIST_STREAM_OK);
	case LS_ITEMS_NEXT:
		if (c == ',')
			ls->state = LS_ITEMS_COMMA;
		else if (c == ']')
			ls->state = LS_AFTER_VALUE;
		else
			return (ls_unexpected(ls, at));
		return (LIST_STREAM_OK);
	case LS_END:
		return (ls_fail(ls, LIST_STREAM_BAD, "data after the JSON "
		    "document at byte %zu", at));
	case LS_KEY:
	case LS_VALUE_TOK:
	case LS_ITEM:
	case LS_FAILED:
		break;
	}
	return (ls_fail(ls, LIST_STREAM_BAD, "internal error: state %d",
	    (int)ls->state));
}

/* The next bytes of the body; see list_stream.h. */
enum list_stream_status
list_stream_feed(struct list_stream *ls, const char *buf, size_t len)
{
	enum list_stream_status	 st;
	size_t			 off = 0, used, start = ls->bytes;
	bool			 in_items;

	if (ls->state == LS_FAILED)
		return (ls->status);
	if (len > ls->lim.max_bytes - ls->bytes)
		return (ls_fail(ls, LIST_STREAM_BAD, "response larger than "
		    "%zu bytes", ls->lim.max_bytes));
	ls->bytes += len;
	while (off < len) {
		if (ls->state == LS_KEY || ls->state == LS_VALUE_TOK ||
		    ls->state == LS_ITEM) {
			st = ls_value_bytes(ls, buf + off, len - off,
			    start + off, &used);
		} else if (ls_space(buf[off])) {
			used = 1;
			st = LIST_STREAM_OK;
		} else {
			in_items = ls->state >= LS_ITEMS_FIRST &&
			    ls->state <= LS_ITEMS_COMMA;
			st = ls_punct(ls, buf[off], start + off, &used);
			/* Punctuation outside items counts as other bytes. */
			if (!in_items && used > 0 && ++ls->other_bytes >
			    ls->lim.max_other_bytes && st == LIST_STREAM_OK)
				st = ls_fail(ls, LIST_STREAM_BAD, "the list's "
				    "members other than items larger than %zu "
				    "bytes", ls->lim.max_other_bytes);
		}
		if (st != LIST_STREAM_OK)
			return (st);
		off += used;
	}
	return (LIST_STREAM_OK);
}

/* The body ended; see list_stream.h. */
enum list_stream_status
list_stream_finish(struct list_stream *ls)
{
	if (ls->state == LS_FAILED)
		return (ls->status);
	if (ls->state == LS_START)
		return (ls_fail(ls, LIST_STREAM_BAD, "empty body"));
	if (ls->state != LS_END)
		return (ls_fail(ls, LIST_STREAM_BAD, "the body ends inside the "
		    "JSON document, after %zu bytes", ls->bytes));
	if (!ls->items_seen)
		return (ls_fail(ls, LIST_STREAM_NOT_LIST, "the response is not "
		    "a list"));
	return (LIST_STREAM_OK);
}

/* What is wrong with the body, or "". */
const char *
list_stream_error(const struct list_stream *ls)
{
	return (ls->err);
}

/* The list's metadata object (borrowed), or NULL. */
json_object *
list_stream_metadata(const struct list_stream *ls)
{
	return (ls->metadata);
}

/* Items handed over so far. */
size_t
list_stream_n_items(const struct list_stream *ls)
{
	return (ls->n_items);
}

/* Body bytes taken so far. */
size_t
list_stream_bytes(const struct list_stream *ls)
{
	return (ls->bytes);
}
