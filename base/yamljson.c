/* SPDX-License-Identifier: Apache-2.0 */
/*
 * YAML and JSON text to json-c objects.
 *
 * This module owns turning bytes into a json-c tree: reading a file with a
 * size bound, the JSON fast path through json_tokener, and the YAML path
 * through libyaml's event parser, which builds json-c containers directly
 * on a bounded stack.  It knows nothing of what the documents mean: the
 * decoders (watch/decode.c, conf/) interpret them.
 *
 * Plain YAML scalars are typed by the YAML 1.2 core schema; quoted and block
 * scalars are strings.  Anchors and aliases are refused outright, so a
 * "billion laughs" document cannot expand; nesting is bounded the same way
 * on both paths.  The line each YAML object starts on is kept in the object's
 * userdata, tagged so that it cannot be confused with the userdata json-c
 * itself puts on doubles it parsed (their original text).
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>
#include <yaml.h>

#include "base/yamljson.h"

#define YJ_MAX_DEPTH	64	/* containers nested deeper are refused */
/*
 * Bad JSON is retried as flow-style YAML only up to this size: flow YAML is
 * hand-written and small, and a broken 30 MB kubectl dump should not also
 * cost a slow YAML parse on the event loop.
 */
#define YJ_FLOW_YAML_MAX	(1024 * 1024)

#define YJ_TAG_PREFIX	"tag:yaml.org,2002:"

/* One open container on the YAML path. */
struct yj_level {
	json_object	*obj;
	char		*key;	/* mapping: the key awaiting a value */
};

struct yj_builder {
	struct yj_level	 stack[YJ_MAX_DEPTH];
	int		 depth;
	json_object	*root;		/* the document being built */
	char		*err;
	size_t		 errlen;
};

/*
 * Lines live in the userdata as (line << 1) | 1.  json-c stores a strdup'd
 * string in the userdata of doubles that json_tokener parsed; malloc never
 * returns an odd address, so the low bit tells the two apart.
 */
static void
yj_set_line(json_object *obj, size_t line)
{
	if (obj == NULL || line == 0 || line > INT_MAX)
		return;
	json_object_set_userdata(obj, (void *)(((uintptr_t)line << 1) | 1),
	    NULL);
}

/*
 * The 1-based line a YAML object started on, or 0 when unknown: for JSON
 * null (json-c has no object for it), objects from the JSON fast path and
 * objects made elsewhere.
 */
int
yamljson_line(json_object *obj)
{
	uintptr_t	 v;

	if (obj == NULL)
		return (0);
	v = (uintptr_t)json_object_get_userdata(obj);
	if ((v & 1) == 0)
		return (0);
	return ((int)(v >> 1));
}

static void
yj_fail(struct yj_builder *b, const yaml_mark_t *mark, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
yj_fail(struct yj_builder *b, const yaml_mark_t *mark, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	n = snprintf(b->err, b->errlen, "%zu:%zu: ", mark->line + 1,
	    mark->column + 1);
	if (n < 0 || (size_t)n >= b->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(b->err + n, b->errlen - n, fmt, ap);
	va_end(ap);
}

/* YAML 1.2 core schema, integer forms: decimal, 0o octal, 0x hex. */
static bool
yj_parse_int(const char *s, int64_t *out, bool *overflow)
{
	const char	*digits = s, *p;
	char		*end;
	long long	 v;
	int		 base = 10;

	*overflow = false;
	if (s[0] == '0' && s[1] == 'o') {
		base = 8;
		digits = s + 2;
	} else if (s[0] == '0' && s[1] == 'x') {
		base = 16;
		digits = s + 2;
	} else if (s[0] == '-' || s[0] == '+')
		digits = s + 1;
	if (*digits == '\0')
		return (false);
	for (p = digits; *p != '\0'; p++) {
		if (base == 8 && (*p < '0' || *p > '7'))
			return (false);
		if (base == 10 && (*p < '0' || *p > '9'))
			return (false);
		if (base == 16 && strchr("0123456789abcdefABCDEF", *p) == NULL)
			return (false);
	}
	errno = 0;
	v = strtoll(base == 10 ? s : digits, &end, base);
	if (errno == ERANGE) {
		*overflow = true;
		return (false);
	}
	*out = v;
	return (true);
}

static size_t
yj_count_digits(const char *s)
{
	size_t	 n = 0;

	while (s[n] >= '0' && s[n] <= '9')
		n++;
	return (n);
}

/*
 * YAML 1.2 core schema, floats:
 * [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?, .inf and .nan.
 */
static bool
yj_parse_float(const char *s, double *out)
{
	const char	*p = s, *mag;
	size_t		 whole, frac = 0;

	if (*p == '-' || *p == '+')
		p++;
	mag = p;
	if (strcmp(mag, ".inf") == 0 || strcmp(mag, ".Inf") == 0 ||
	    strcmp(mag, ".INF") == 0) {
		*out = *s == '-' ? -INFINITY : INFINITY;
		return (true);
	}
	if (p == s && (strcmp(s, ".nan") == 0 || strcmp(s, ".NaN") == 0 ||
	    strcmp(s, ".NAN") == 0)) {
		*out = NAN;
		return (true);
	}
	whole = yj_count_digits(p);
	p += whole;
	if (*p == '.') {
		p++;
		frac = yj_count_digits(p);
		p += frac;
		if (whole == 0 && frac == 0)
			return (false);
	} else if (whole == 0)
		return (false);
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '-' || *p == '+')
			p++;
		if (yj_count_digits(p) == 0)
			return (false);
		p += yj_count_digits(p);
	}
	if (*p != '\0')
		return (false);
	*out = strtod(s, NULL);
	return (true);
}

static bool
yj_is_null(const char *s)
{
	return (*s == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
	    strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0);
}

static int
yj_parse_bool(const char *s)
{
	if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 ||
	    strcmp(s, "TRUE") == 0)
		return (1);
	if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 ||
	    strcmp(s, "FALSE") == 0)
		return (0);
	return (-1);
}

/*
 * Type a plain scalar.  Sets *is_null for null (json-c represents it as a
 * NULL object).  Returns NULL on allocation failure as well, so callers
 * check is_null first.
 */
static json_object *
yj_plain_scalar(const char *s, size_t len, bool *is_null)
{
	int64_t	 i;
	double	 d;
	bool	 overflow;
	int	 b;

	*is_null = false;
	if (yj_is_null(s)) {
		*is_null = true;
		return (NULL);
	}
	if ((b = yj_parse_bool(s)) != -1)
		return (json_object_new_boolean(b));
	if (yj_parse_int(s, &i, &overflow))
		return (json_object_new_int64(i));
	/* A decimal too big for int64 is still a number: a double. */
	if (yj_parse_float(s, &d))
		return (json_object_new_double(d));
	return (json_object_new_string_len(s, (int)len));
}

/*
 * A scalar event to an object, honouring the core schema's tags.  Returns 0
 * and the object in *out (NULL for null) or -1 with the builder's error set.
 */
static int
yj_scalar(struct yj_builder *b, const yaml_event_t *ev, json_object **out)
{
	const char	*s = (const char *)ev->data.scalar.value;
	const char	*tag = (const char *)ev->data.scalar.tag;
	size_t		 len = ev->data.scalar.length;
	bool		 is_null;
	int64_t		 i;
	double		 d;
	bool		 overflow;
	int		 v;

	*out = NULL;
	if (len > INT_MAX) {
		yj_fail(b, &ev->start_mark, "scalar too long");
		return (-1);
	}
	if (tag == NULL) {
		if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
			*out = yj_plain_scalar(s, len, &is_null);
		else {
			is_null = false;
			*out = json_object_new_string_len(s, (int)len);
		}
		goto done;
	}
	is_null = false;
	if (strcmp(tag, "!") == 0 || strcmp(tag, YJ_TAG_PREFIX "str") == 0)
		*out = json_object_new_string_len(s, (int)len);
	else if (strcmp(tag, YJ_TAG_PREFIX "null") == 0) {
		if (!yj_is_null(s))
			goto bad_value;
		is_null = true;
	} else if (strcmp(tag, YJ_TAG_PREFIX "bool") == 0) {
		if ((v = yj_parse_bool(s)) == -1)
			goto bad_value;
		*out = json_object_new_boolean(v);
	} else if (strcmp(tag, YJ_TAG_PREFIX "int") == 0) {
		if (!yj_parse_int(s, &i, &overflow))
			goto bad_value;
		*out = json_object_new_int64(i);
	} else if (strcmp(tag, YJ_TAG_PREFIX "float") == 0) {
		if (yj_parse_int(s, &i, &overflow))
			d = (double)i;
		else if (!yj_parse_float(s, &d))
			goto bad_value;
		*out = json_object_new_double(d);
	} else {
		yj_fail(b, &ev->start_mark, "unsupported tag %s", tag);
		return (-1);
	}
 done:
	if (*out == NULL && !is_null) {
		yj_fail(b, &ev->start_mark, "out of memory");
		return (-1);
	}
	yj_set_line(*out, ev->start_mark.line + 1);
	return (0);
 bad_value:
	yj_fail(b, &ev->start_mark, "\"%.40s\" is not a valid %s", s,
	    tag + strlen(YJ_TAG_PREFIX));
	return (-1);
}

/*
 * Attach a finished value (a scalar or a closed container) to its parent,
 * or make it the document's root.  Takes ownership of obj in every case.
 */
static int
yj_attach(struct yj_builder *b, json_object *obj, const yaml_mark_t *mark)
{
	struct yj_level	*top;
	int		 rc;

	if (b->depth == 0) {
		b->root = obj;
		return (0);
	}
	top = &b->stack[b->depth - 1];
	if (json_object_is_type(top->obj, json_type_array)) {
		if (json_object_array_add(top->obj, obj) != 0)
			goto nomem;
		return (0);
	}
	if (top->key == NULL) {
		json_object_put(obj);
		yj_fail(b, mark, "mapping keys must be scalars");
		return (-1);
	}
	if (json_object_object_get_ex(top->obj, top->key, NULL)) {
		json_object_put(obj);
		yj_fail(b, mark, "duplicate key \"%.60s\"", top->key);
		return (-1);
	}
	rc = json_object_object_add(top->obj, top->key, obj);
	free(top->key);
	top->key = NULL;
	if (rc != 0)
		goto nomem;
	return (0);
 nomem:
	json_object_put(obj);
	yj_fail(b, mark, "out of memory");
	return (-1);
}

static int
yj_on_scalar(struct yj_builder *b, const yaml_event_t *ev)
{
	struct yj_level	*top;
	json_object	*obj;

	top = b->depth > 0 ? &b->stack[b->depth - 1] : NULL;
	if (top != NULL && json_object_is_type(top->obj, json_type_object) &&
	    top->key == NULL) {
		/* A key: always text, whatever it looks like ("80": ...). */
		if (strlen((const char *)ev->data.scalar.value) !=
		    ev->data.scalar.length) {
			yj_fail(b, &ev->start_mark, "NUL byte in a key");
			return (-1);
		}
		if ((top->key = strdup((const char *)ev->data.scalar.value)) ==
		    NULL) {
			yj_fail(b, &ev->start_mark, "out of memory");
			return (-1);
		}
		return (0);
	}
	if (yj_scalar(b, ev, &obj) == -1)
		return (-1);
	return (yj_attach(b, obj, &ev->start_mark));
}

static int
yj_open(struct yj_builder *b, const yaml_event_t *ev, bool is_map)
{
	struct yj_level	*top;
	json_object	*obj;

	top = b->depth > 0 ? &b->stack[b->depth - 1] : NULL;
	if (top != NULL && json_object_is_type(top->obj, json_type_object) &&
	    top->key == NULL) {
		yj_fail(b, &ev->start_mark, "mapping keys must be scalars");
		return (-1);
	}
	if (b->depth == YJ_MAX_DEPTH) {
		yj_fail(b, &ev->start_mark, "nested deeper than %d levels",
		    YJ_MAX_DEPTH);
		return (-1);
	}
	obj = is_map ? json_object_new_object() : json_object_new_array();
	if (obj == NULL) {
		yj_fail(b, &ev->start_mark, "out of memory");
		return (-1);
	}
	yj_set_line(obj, ev->start_mark.line + 1);
	b->stack[b->depth].obj = obj;
	b->stack[b->depth].key = NULL;
	b->depth++;
	return (0);
}

static int
yj_close(struct yj_builder *b, const yaml_event_t *ev)
{
	struct yj_level	*top;

	/* libyaml guarantees balanced start/end events. */
	top = &b->stack[--b->depth];
	free(top->key);
	top->key = NULL;
	return (yj_attach(b, top->obj, &ev->start_mark));
}

static void
yj_builder_reset(struct yj_builder *b)
{
	while (b->depth > 0) {
		b->depth--;
		free(b->stack[b->depth].key);
		json_object_put(b->stack[b->depth].obj);
	}
	json_object_put(b->root);
	b->root = NULL;
}

static const char *
yj_anchor(const yaml_event_t *ev)
{
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		return ((const char *)ev->data.scalar.anchor);
	case YAML_SEQUENCE_START_EVENT:
		return ((const char *)ev->data.sequence_start.anchor);
	case YAML_MAPPING_START_EVENT:
		return ((const char *)ev->data.mapping_start.anchor);
	default:
		return (NULL);
	}
}

/* One event.  Returns 1 at the end of the stream, 0 to go on, -1 on error. */
static int
yj_event(struct yj_builder *b, const yaml_event_t *ev, json_object *docs)
{
	const char	*anchor;

	if ((anchor = yj_anchor(ev)) != NULL) {
		yj_fail(b, &ev->start_mark,
		    "anchors are not supported (&%.40s)", anchor);
		return (-1);
	}
	switch (ev->type) {
	case YAML_STREAM_END_EVENT:
		return (1);
	case YAML_ALIAS_EVENT:
		yj_fail(b, &ev->start_mark,
		    "aliases are not supported (*%.40s)",
		    (const char *)ev->data.alias.anchor);
		return (-1);
	case YAML_SCALAR_EVENT:
		return (yj_on_scalar(b, ev));
	case YAML_SEQUENCE_START_EVENT:
		return (yj_open(b, ev, false));
	case YAML_MAPPING_START_EVENT:
		return (yj_open(b, ev, true));
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		return (yj_close(b, ev));
	case YAML_DOCUMENT_END_EVENT:
		/* Empty documents (a lone "---", comments) are left out. */
		if (b->root != NULL &&
		    json_object_array_add(docs, b->root) != 0) {
			yj_fail(b, &ev->start_mark, "out of memory");
			return (-1);
		}
		b->root = NULL;
		return (0);
	default:
		return (0);
	}
}

static void	yj_line_col(const char *, size_t, size_t *, size_t *);

static int
yj_parse_yaml(const char *buf, size_t len, json_object *docs, char *err,
    size_t errlen)
{
	yaml_parser_t		 parser;
	yaml_event_t		 ev;
	yaml_mark_t		 at;
	struct yj_builder	 b;
	int			 rc = 0;

	memset(&b, 0, sizeof(b));
	b.err = err;
	b.errlen = errlen;
	if (!yaml_parser_initialize(&parser)) {
		snprintf(err, errlen, "1:1: out of memory");
		return (-1);
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	while (rc == 0) {
		if (!yaml_parser_parse(&parser, &ev)) {
			at = parser.problem_mark;
			/* A reader error (bad UTF-8) has an offset, no mark. */
			if (parser.error == YAML_READER_ERROR &&
			    parser.problem_offset <= len) {
				yj_line_col(buf, parser.problem_offset,
				    &at.line, &at.column);
				at.line--;
				at.column--;
			}
			yj_fail(&b, &at, "%s%s%s",
			    parser.problem ? parser.problem : "syntax error",
			    parser.context ? " " : "",
			    parser.context ? parser.context : "");
			rc = -1;
			break;
		}
		rc = yj_event(&b, &ev, docs);
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	yj_builder_reset(&b);
	return (rc == 1 ? 0 : -1);
}

/* The 1-based line and column of byte offset off in buf. */
static void
yj_line_col(const char *buf, size_t off, size_t *line, size_t *col)
{
	size_t	 i;

	*line = 1;
	*col = 1;
	for (i = 0; i < off; i++) {
		if (buf[i] == '\n') {
			(*line)++;
			*col = 1;
		} else
			(*col)++;
	}
}

static size_t
yj_skip_space(const char *buf, size_t len, size_t off)
{
	while (off < len && (buf[off] == ' ' || buf[off] == '\t' ||
	    buf[off] == '\n' || buf[off] == '\r'))
		off++;
	return (off);
}

/* A tokener for kuproxy's JSON: strict, bounded depth, texts in a row. */
static json_tokener *
yj_tokener_new(void)
{
	json_tokener	*tok;

	if ((tok = json_tokener_new_ex(YJ_MAX_DEPTH)) != NULL)
		json_tokener_set_flags(tok, JSON_TOKENER_STRICT |
		    JSON_TOKENER_ALLOW_TRAILING_CHARS);
	return (tok);
}

/*
 * The JSON fast path.  Accepts a stream of JSON texts separated by white
 * space (several `kubectl get -o json` outputs concatenated), each a
 * document.
 */
static int
yj_parse_json(const char *buf, size_t len, json_object *docs, char *err,
    size_t errlen)
{
	struct json_tokener	*tok;
	enum json_tokener_error	 jerr;
	json_object		*obj;
	size_t			 off, line, col;

	if (len > INT_MAX) {
		snprintf(err, errlen, "1:1: JSON text larger than %d bytes",
		    INT_MAX);
		return (-1);
	}
	if ((tok = yj_tokener_new()) == NULL) {
		snprintf(err, errlen, "1:1: out of memory");
		return (-1);
	}
	off = yj_skip_space(buf, len, 0);
	while (off < len) {
		json_tokener_reset(tok);
		obj = json_tokener_parse_ex(tok, buf + off, (int)(len - off));
		jerr = json_tokener_get_error(tok);
		if (jerr != json_tokener_success) {
			if (jerr == json_tokener_continue)
				yj_line_col(buf, len, &line, &col);
			else
				yj_line_col(buf, off +
				    json_tokener_get_parse_end(tok), &line,
				    &col);
			snprintf(err, errlen, "%zu:%zu: %s", line, col,
			    jerr == json_tokener_continue ?
			    "unexpected end of input" :
			    json_tokener_error_desc(jerr));
			json_tokener_free(tok);
			return (-1);
		}
		off += json_tokener_get_parse_end(tok);
		if (obj != NULL && json_object_array_add(docs, obj) != 0) {
			json_object_put(obj);
			snprintf(err, errlen, "1:1: out of memory");
			json_tokener_free(tok);
			return (-1);
		}
		off = yj_skip_space(buf, len, off);
	}
	json_tokener_free(tok);
	return (0);
}

/*
 * Parse every document in buf (len bytes) into a new array in *docs, owned
 * by the caller.  JSON-looking input (first non-blank byte '{' or '[') goes
 * through json_tokener first; if that fails, small input is tried as YAML
 * (flow-style YAML looks like JSON too) and the JSON error is reported if
 * YAML fails as well.  Returns 0, or -1 with "LINE:COL: problem" in err.
 */
int
yamljson_parse(const char *buf, size_t len, json_object **docs, char *err,
    size_t errlen)
{
	size_t	 off;
	char	 yaml_err[8];

	*docs = NULL;
	if (errlen > 0)
		err[0] = '\0';
	/* YAML and RFC 8259 readers both allow a UTF-8 byte order mark. */
	off = len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
	if ((*docs = json_object_new_array()) == NULL) {
		snprintf(err, errlen, "1:1: out of memory");
		return (-1);
	}
	off = yj_skip_space(buf, len, off);
	if (off < len && (buf[off] == '{' || buf[off] == '[')) {
		if (yj_parse_json(buf, len, *docs, err, errlen) == 0)
			return (0);
		if (len > YJ_FLOW_YAML_MAX)
			goto fail;
		json_object_put(*docs);
		if ((*docs = json_object_new_array()) == NULL)
			return (-1);
		if (yj_parse_yaml(buf, len, *docs, yaml_err,
		    sizeof(yaml_err)) == 0)
			return (0);
		goto fail;
	}
	if (yj_parse_yaml(buf, len, *docs, err, errlen) == 0)
		return (0);
 fail:
	json_object_put(*docs);
	*docs = NULL;
	return (-1);
}

/* Splitting a JSON list into its items. */

/* Past the string starting at p ('"'), or NULL when it does not end. */
static const char *
yj_skip_string(const char *p, const char *end)
{
	for (p++; p < end; p++) {
		if (*p == '\\') {
			p++;
			continue;
		}
		if (*p == '"')
			return (p + 1);
	}
	return (NULL);
}

/*
 * Past the JSON value at p, looked at only as far as brackets and strings
 * go: json_tokener checks the rest when the value is parsed.  NULL when it
 * does not end or nests deeper than YJ_MAX_DEPTH.
 */
static const char *
yj_skip_value(const char *p, const char *end)
{
	int	 depth = 0;

	if (p >= end)
		return (NULL);
	if (*p == '"')
		return (yj_skip_string(p, end));
	if (*p != '{' && *p != '[') {
		while (p < end && strchr(",]} \t\r\n", *p) == NULL)
			p++;
		return (p);
	}
	while (p < end) {
		switch (*p) {
		case '"':
			if ((p = yj_skip_string(p, end)) == NULL)
				return (NULL);
			continue;
		case '{':
		case '[':
			if (++depth > YJ_MAX_DEPTH)
				return (NULL);
			break;
		case '}':
		case ']':
			if (--depth == 0)
				return (p + 1);
			break;
		}
		p++;
	}
	return (NULL);
}

static const char *
yj_ws(const char *p, const char *end)
{
	return (p + yj_skip_space(p, (size_t)(end - p), 0));
}

/* Record the item spans of the array at p ('['); the end, or NULL. */
static const char *
yj_split_items(const char *p, const char *end, struct yamljson_list *out)
{
	size_t		 cap = 0, ncap;
	const char	*start, **items;
	size_t		*lens;

	p = yj_ws(p + 1, end);
	if (p < end && *p == ']')
		return (p + 1);
	while (p < end) {
		start = p;
		if ((p = yj_skip_value(p, end)) == NULL || p == start)
			return (NULL);
		if (out->n_items == cap) {
			ncap = cap == 0 ? 256 : cap * 2;
			if ((items = reallocarray(out->items, ncap,
			    sizeof(*items))) == NULL)
				return (NULL);
			out->items = items;
			if ((lens = reallocarray(out->item_lens, ncap,
			    sizeof(*lens))) == NULL)
				return (NULL);
			out->item_lens = lens;
			cap = ncap;
		}
		out->items[out->n_items] = start;
		out->item_lens[out->n_items++] = (size_t)(p - start);
		p = yj_ws(p, end);
		if (p < end && *p == ']')
			return (p + 1);
		if (p >= end || *p != ',')
			return (NULL);
		p = yj_ws(p + 1, end);
	}
	return (NULL);
}

/*
 * Find the top-level members of the object at buf; the "items" array's
 * span goes to [*items, *items_end).  0, or -1 when it is not one object.
 */
static int
yj_find_items(const char *p, const char *end, const char **items,
    const char **items_end, struct yamljson_list *out)
{
	const char	*key, *key_end, *val;

	*items = *items_end = NULL;
	if ((p = yj_ws(p, end)) >= end || *p != '{')
		return (-1);
	p = yj_ws(p + 1, end);
	if (p < end && *p == '}')
		return (yj_ws(p + 1, end) == end ? 0 : -1);
	while (p < end) {
		key = p;
		if (*p != '"' || (key_end = yj_skip_string(p, end)) == NULL)
			return (-1);
		if ((p = yj_ws(key_end, end)) >= end || *p != ':')
			return (-1);
		val = p = yj_ws(p + 1, end);
		if (key_end - key == 7 && memcmp(key, "\"items\"", 7) == 0 &&
		    p < end && *p == '[') {
			if (*items != NULL)
				return (-1);	/* which one json-c keeps: ask it */
			*items = p;
			p = yj_split_items(p, end, out);
			*items_end = p;
		} else
			p = yj_skip_value(p, end);
		if (p == NULL || p == val || (p = yj_ws(p, end)) >= end)
			return (-1);
		if (*p == '}')
			return (yj_ws(p + 1, end) == end ? 0 : -1);
		if (*p != ',')
			return (-1);
		p = yj_ws(p + 1, end);
	}
	return (-1);
}

/*
 * Split a JSON list document into its head and item spans; see
 * yamljson.h.  The head is parsed from the text with the items array
 * replaced by "[]".
 */
int
yamljson_split_list(const char *buf, size_t len, struct yamljson_list *out)
{
	const char	*end = buf + len, *items, *items_end;
	char		*head = NULL;
	json_object	*h = NULL, *v;
	size_t		 off, before, after;

	memset(out, 0, sizeof(*out));
	if (len > INT_MAX)
		return (-1);
	off = len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
	if (yj_find_items(buf + off, end, &items, &items_end, out) == -1)
		goto fail;
	if (items == NULL) {
		/* No items key the splitter saw: it must have none at all. */
		if ((h = yamljson_parse_one(buf + off, len - off)) == NULL ||
		    json_object_object_get_ex(h, "items", NULL))
			goto fail;
	} else {
		before = (size_t)(items - (buf + off));
		after = (size_t)(end - items_end);
		if ((head = malloc(before + 2 + after)) == NULL)
			goto fail;
		memcpy(head, buf + off, before);
		memcpy(head + before, "[]", 2);
		memcpy(head + before + 2, items_end, after);
		h = yamljson_parse_one(head, before + 2 + after);
		free(head);
		/* The head's items must be the array that was cut out. */
		if (h == NULL || !json_object_object_get_ex(h, "items", &v) ||
		    !json_object_is_type(v, json_type_array) ||
		    json_object_array_length(v) != 0)
			goto fail;
	}
	if (!json_object_is_type(h, json_type_object))
		goto fail;
	out->head = h;
	return (0);
 fail:
	json_object_put(h);
	yamljson_list_clear(out);
	return (-1);
}

/* Free what yamljson_split_list() made (not the buffer). */
void
yamljson_list_clear(struct yamljson_list *l)
{
	if (l->tok != NULL)
		json_tokener_free(l->tok);
	json_object_put(l->head);
	free(l->items);
	free(l->item_lens);
	memset(l, 0, sizeof(*l));
}

/* Exactly one JSON value from the len bytes at p, with tok; or NULL. */
static json_object *
yj_parse_one(json_tokener *tok, const char *p, size_t len)
{
	json_object	*obj;
	size_t		 used;

	if (len > INT_MAX)
		return (NULL);
	json_tokener_reset(tok);
	obj = json_tokener_parse_ex(tok, p, (int)len);
	used = (size_t)json_tokener_get_parse_end(tok);
	if (json_tokener_get_error(tok) != json_tokener_success ||
	    yj_skip_space(p, len, used) != len) {
		json_object_put(obj);
		obj = NULL;
	}
	return (obj);
}

/*
 * Parse item i of l (strict, as the JSON fast path), reusing one tokener
 * for all the items of l.  Returns a new object, or NULL when the item is
 * not exactly one JSON value (or is null, or memory ran out).
 */
json_object *
yamljson_list_item(struct yamljson_list *l, size_t i)
{
	if (i >= l->n_items ||
	    (l->tok == NULL && (l->tok = yj_tokener_new()) == NULL))
		return (NULL);
	return (yj_parse_one(l->tok, l->items[i], l->item_lens[i]));
}

/*
 * Parse exactly one JSON value (strict, as the JSON fast path) from the
 * len bytes at p, white space around it allowed.  Returns a new object,
 * or NULL when the text is not exactly one value (or is null).
 */
json_object *
yamljson_parse_one(const char *p, size_t len)
{
	json_tokener	*tok;
	json_object	*obj;

	if ((tok = yj_tokener_new()) == NULL)
		return (NULL);
	obj = yj_parse_one(tok, p, len);
	json_tokener_free(tok);
	return (obj);
}

/*
 * Read the file at path into a new NUL-terminated buffer (the caller frees
 * it) and store its length in *len.  Files larger than max_bytes are
 * refused.  Returns NULL with "path: problem" in err and errno set.
 */
char *
yamljson_read_file(const char *path, size_t max_bytes, size_t *len,
    char *err, size_t errlen)
{
	struct stat	 st;
	char		*buf = NULL, *nbuf;
	size_t		 size = 0, cap, ncap;
	ssize_t		 n;
	int		 fd = -1, saved;

	*len = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		goto syserr;
	if (fstat(fd, &st) == -1)
		goto syserr;
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		errno = EINVAL;
		goto fail;
	}
	if ((uintmax_t)st.st_size > max_bytes)
		goto too_big;
	/*
	 * The size may change under us: read to EOF, within the bound.  Room
	 * for one byte more than fstat said lets the EOF read succeed in place.
	 */
	cap = (size_t)st.st_size + 2;
	if (cap < 4096)
		cap = 4096;
	if (cap > max_bytes + 2)
		cap = max_bytes + 2;
	if ((buf = malloc(cap)) == NULL)
		goto syserr;
	for (;;) {
		if (size == cap - 1) {
			if (size > max_bytes)
				goto too_big;
			ncap = cap * 2;
			if (ncap > max_bytes + 2)
				ncap = max_bytes + 2;
			if ((nbuf = realloc(buf, ncap)) == NULL)
				goto syserr;
			buf = nbuf;
			cap = ncap;
		}
		n = read(fd, buf + size, cap - 1 - size);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			goto syserr;
		}
		if (n == 0)
			break;
		size += (size_t)n;
		if (size > max_bytes)
			goto too_big;
	}
	close(fd);
	buf[size] = '\0';
	*len = size;
	return (buf);
 too_big:
	snprintf(err, errlen, "%s: larger than %zu bytes", path, max_bytes);
	errno = EFBIG;
	goto fail;
 syserr:
	saved = errno;
	snprintf(err, errlen, "%s: %s", path, strerror(errno));
	errno = saved;
 fail:
	saved = errno;
	if (fd != -1)
		close(fd);
	free(buf);
	errno = saved;
	return (NULL);
}
