/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The informer: list and watch one resource the way client-go's Reflector
 * does (cg:tools/cache/reflector.go), and the cache of what the server
 * holds.
 *
 * This module owns the protocol decisions (which resourceVersion a list or
 * watch starts from, paging, when to relist, when to back off and for how
 * long), the parsing of list bodies and watch streams with bounds on every
 * byte the server sends, and the cache keyed by namespace/name.  It does no
 * I/O and reads no clock: watch/source_api.c performs the requests it asks
 * for and feeds it bytes, and tests do the same with canned input.  Turning
 * the cache into a service table is source_api.c's job; knowing the shape
 * of a Service or an EndpointSlice is watch/decode.c's; finding the items
 * of a list body as its bytes arrive is watch/list_stream.c's.
 *
 * The cache holds objects decoded (struct svc specs, struct slice), never
 * their JSON.  Every object is decoded once, when it arrives, so that an
 * object kuproxy cannot use is logged once, naming it, and left out of the
 * cache; the stream goes on.  A list's items are decoded one by one as
 * their bytes come in, into a cache of their own that replaces the old one
 * only when the whole list (every page) is in.
 */
#include "config.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "base/log.h"
#include "base/svc.h"
#include "base/tree.h"
#include "watch/decode.h"
#include "watch/informer.h"
#include "watch/list_stream.h"

/* Objects failing to decode in one list: this many are logged by name. */
#define INF_MAX_LIST_ERRORS	20
#define INF_JSON_DEPTH		64

#define SVC_LABEL_SELECTOR	"!service.kubernetes.io/service-proxy-name"
#define SVC_FIELD_SELECTOR	"spec.clusterIP!=None"
#define SLICE_LABEL_SELECTOR	"!service.kubernetes.io/headless"

struct inf_entry {
	RB_ENTRY(inf_entry)	 link;
	char			*key;		/* "namespace/name" */
	struct svc		*svc;		/* Services: a spec, our ref */
	struct slice		*slice;		/* EndpointSlices */
};

RB_HEAD(inf_tree, inf_entry);

static int
inf_entry_cmp(struct inf_entry *a, struct inf_entry *b)
{
	return (strcmp(a->key, b->key));
}

KU_RB_GENERATE_STATIC(inf_tree, inf_entry, link, inf_entry_cmp)

/* Where the next list starts (reflector.go relistResourceVersion). */
enum inf_list_mode {
	INF_LIST_FIRST = 0,	/* resourceVersion=0: the watch cache, one page */
	INF_LIST_LAST,		/* resourceVersion=<last>: not older, unpaged */
	INF_LIST_UNSET,		/* no resourceVersion: a quorum read, paged */
};

/* Why a watch stream was cut short by us or by an ERROR event. */
enum inf_stop {
	INF_STOP_NONE = 0,
	INF_STOP_ERROR_EVENT,	/* stop_code, stop_msg */
	INF_STOP_BAD_LINE,	/* stop_msg */
	INF_STOP_TOO_LONG,
};

struct informer {
	struct informer_config	 cfg;
	const char		*name;
	const char		*path;
	const char		*label_selector;
	const char		*field_selector;	/* NULL: none */
	bool			 use_field_selector;

	struct inf_tree		 cache;
	size_t			 n_cache;
	struct inf_tree		 pending;	/* a list being received */
	size_t			 n_pending;
	bool			 synced;
	char			*rv;		/* last resourceVersion, or NULL */

	enum inf_list_mode	 list_mode;
	char			*continue_token;
	char			*list_rv;
	unsigned int		 list_pages;
	size_t			 list_errors;
	long long		 list_started_ms;

	/* The request in progress. */
	enum informer_step	 step;
	long long		 started_ms;
	int			 watch_timeout_s;
	/* A list page (status 200), parsed as it arrives. */
	struct list_stream	*list;
	/* A whole-body JSON document: an error Status. */
	json_tokener		*tok;
	json_object		*body;
	size_t			 body_bytes, body_max;
	bool			 body_bad;
	char			 body_err[160];
	/* The watch stream, split into lines. */
	char			*line;
	size_t			 line_len, line_cap;
	size_t			 events;
	enum inf_stop		 stop;
	long			 stop_code;
	bool			 stop_too_large;
	char			 stop_msg[512];

	struct backoff		 backoff;
	/* 410s on their own: see inf_expired_delay(). */
	struct backoff		 expired;
};

/* ------------------------------------------------------------------ backoff */

/*
 * Count a failure at now_ms and return the delay before the retry: the base
 * doubles from BACKOFF_INITIAL_MS to BACKOFF_CAP_MS and is stretched by
 * r01 (0-100 %), as client-go's wait.Backoff with jitter 1.0 does, so a
 * delay at the cap lies in [30 s, 60 s).  A failure after BACKOFF_RESET_MS
 * of quiet starts again at the initial delay.
 */
long long
backoff_next(struct backoff *b, long long now_ms, double r01)
{
	if (backoff_quiet(b, now_ms))
		b->base_ms = BACKOFF_INITIAL_MS;
	else if ((b->base_ms *= 2) > BACKOFF_CAP_MS)
		b->base_ms = BACKOFF_CAP_MS;
	b->last_ms = now_ms;
	if (r01 < 0 || r01 >= 1)
		r01 = 0;
	return (b->base_ms + (long long)(r01 * (double)b->base_ms));
}

/* True when no failure was counted in the last BACKOFF_RESET_MS. */
bool
backoff_quiet(const struct backoff *b, long long now_ms)
{
	return (b->base_ms == 0 || now_ms - b->last_ms > BACKOFF_RESET_MS);
}

/* -------------------------------------------------------------- the cache */

static void
inf_entry_free(struct inf_entry *e)
{
	if (e == NULL)
		return;
	svc_unref(e->svc);
	slice_free(e->slice);
	free(e->key);
	free(e);
}

static void
inf_tree_clear(struct inf_tree *t, size_t *n)
{
	struct inf_entry	*e, *next;

	for (e = RB_MIN(inf_tree, t); e != NULL; e = next) {
		next = RB_NEXT(inf_tree, t, e);
		RB_REMOVE(inf_tree, t, e);
		inf_entry_free(e);
	}
	*n = 0;
}

static bool
inf_tree_remove(struct inf_tree *t, size_t *n, const char *key)
{
	struct inf_entry	 find, *e;

	find.key = (char *)(uintptr_t)key;
	if ((e = RB_FIND(inf_tree, t, &find)) == NULL)
		return (false);
	RB_REMOVE(inf_tree, t, e);
	inf_entry_free(e);
	(*n)--;
	return (true);
}

static const char *
inf_str(json_object *obj, const char *key)
{
	json_object	*v;

	if (obj == NULL || !json_object_object_get_ex(obj, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return (NULL);
	return (json_object_get_string(v));
}

static json_object *
inf_meta(json_object *obj)
{
	json_object	*m;

	if (!json_object_is_type(obj, json_type_object) ||
	    !json_object_object_get_ex(obj, "metadata", &m) ||
	    !json_object_is_type(m, json_type_object))
		return (NULL);
	return (m);
}

/* "ns/name" of obj into buf; -1 when the metadata lacks either. */
static int
inf_key(json_object *obj, char *buf, size_t len)
{
	json_object	*m = inf_meta(obj);
	const char	*ns = inf_str(m, "namespace"), *name = inf_str(m, "name");
	int		 n;

	if (ns == NULL || name == NULL || *ns == '\0' || *name == '\0')
		return (-1);
	n = snprintf(buf, len, "%s/%s", ns, name);
	return (n < 0 || (size_t)n >= len ? -1 : 0);
}

/*
 * kube-proxy's field selector drops headless services on the server; when
 * the server cannot do that, do it here.
 */
static bool
inf_filtered_out(struct informer *inf, json_object *obj)
{
	json_object	*spec;
	const char	*ip;

	if (inf->cfg.resource != INFORMER_SERVICES || inf->use_field_selector)
		return (false);
	if (!json_object_object_get_ex(obj, "spec", &spec))
		return (false);
	ip = inf_str(spec, "clusterIP");
	return (ip != NULL && strcmp(ip, "None") == 0);
}

/*
 * The spec to cache for a Service just decoded: the cached one when it is
 * equal (a relist, a change to fields kuproxy does not use), so that the
 * table build finds the same object and joins nothing again.  Takes svc
 * over; returns a reference.
 */
static struct svc *
inf_same_spec(struct informer *inf, const char *key, struct svc *svc)
{
	struct inf_entry	 find, *e;

	find.key = (char *)(uintptr_t)key;
	if ((e = RB_FIND(inf_tree, &inf->cache, &find)) == NULL ||
	    e->svc == NULL || !svc_equal(e->svc, svc))
		return (svc);
	svc_unref(svc);
	return (svc_ref(e->svc));
}

/*
 * Decode obj and put it into t under its key, replacing what was there.
 * An object that does not decode is logged (when log_it) and removed from
 * t: kuproxy treats what it cannot use as absent.  Returns 1 when t
 * changed, 0 when not, -1 when obj was rejected.
 */
static int
inf_store(struct informer *inf, struct inf_tree *t, size_t *n,
    json_object *obj, bool log_it)
{
	struct inf_entry	 find, *e;
	struct svc		*svc = NULL;
	struct slice		*sl = NULL;
	char			 key[SVC_KEYLEN], err[1024];

	if (inf_key(obj, key, sizeof(key)) == -1) {
		if (log_it)
			log_warnx("%s: object without metadata.namespace and "
			    "metadata.name skipped", inf->name);
		return (-1);
	}
	if (inf_filtered_out(inf, obj))
		return (inf_tree_remove(t, n, key) ? 1 : 0);
	if (inf->cfg.resource == INFORMER_SERVICES) {
		if ((svc = decode_service(obj, err, sizeof(err))) == NULL)
			goto bad;
		svc = inf_same_spec(inf, key, svc);
	} else if ((sl = decode_endpoint_slice(obj, err, sizeof(err))) ==
	    NULL)
		goto bad;

	find.key = key;
	if ((e = RB_FIND(inf_tree, t, &find)) == NULL) {
		if ((e = calloc(1, sizeof(*e))) == NULL ||
		    (e->key = strdup(key)) == NULL) {
			free(e);
			svc_unref(svc);
			slice_free(sl);
			log_warnx("%s: %s: out of memory", inf->name, key);
			return (-1);
		}
		RB_INSERT(inf_tree, t, e);
		(*n)++;
	}
	svc_unref(e->svc);
	slice_free(e->slice);
	e->svc = svc;
	e->slice = sl;
	return (1);
 bad:
	if (log_it)
		log_warnx("%s: %s; skipped", inf->name, err);
	inf_tree_remove(t, n, key);
	return (-1);
}

static void
inf_changed(struct informer *inf)
{
	if (inf->cfg.on_change != NULL)
		inf->cfg.on_change(inf, inf->cfg.arg);
}

static void
inf_set_str(char **dst, const char *s)
{
	char	*copy = NULL;

	/* On allocation failure the old value stays: still a valid RV. */
	if (s != NULL && (copy = strdup(s)) == NULL)
		return;
	free(*dst);
	*dst = copy;
}

/* ---------------------------------------------------------------- lifecycle */

/* A new informer for cfg->resource; NULL on allocation failure. */
struct informer *
informer_new(const struct informer_config *cfg)
{
	struct informer	*inf;

	if ((inf = calloc(1, sizeof(*inf))) == NULL)
		return (NULL);
	inf->cfg = *cfg;
	RB_INIT(&inf->cache);
	RB_INIT(&inf->pending);
	if (cfg->resource == INFORMER_SERVICES) {
		inf->name = "services";
		inf->path = "/api/v1/services";
		inf->label_selector = SVC_LABEL_SELECTOR;
		inf->field_selector = SVC_FIELD_SELECTOR;
		inf->use_field_selector = true;
	} else {
		inf->name = "endpointslices";
		inf->path = "/apis/discovery.k8s.io/v1/endpointslices";
		inf->label_selector = SLICE_LABEL_SELECTOR;
	}
	return (inf);
}

static void
inf_body_reset(struct informer *inf)
{
	list_stream_free(inf->list);
	inf->list = NULL;
	if (inf->tok != NULL)
		json_tokener_free(inf->tok);
	inf->tok = NULL;
	json_object_put(inf->body);
	inf->body = NULL;
	inf->body_bytes = 0;
	inf->body_bad = false;
	inf->body_err[0] = '\0';
}

/* Free inf and its cache (NULL is fine). */
void
informer_free(struct informer *inf)
{
	if (inf == NULL)
		return;
	inf_tree_clear(&inf->cache, &inf->n_cache);
	inf_tree_clear(&inf->pending, &inf->n_pending);
	inf_body_reset(inf);
	free(inf->line);
	free(inf->rv);
	free(inf->continue_token);
	free(inf->list_rv);
	free(inf);
}

/* "services" or "endpointslices". */
const char *
informer_name(const struct informer *inf)
{
	return (inf->name);
}

/* The first step is a list, at once. */
void
informer_start(struct informer *inf, struct informer_next *next)
{
	next->step = INFORMER_LIST;
	next->delay_ms = 0;
}

/* ----------------------------------------------------------------- requests */

static double
inf_rand(struct informer *inf)
{
	if (inf->cfg.rand01 != NULL)
		return (inf->cfg.rand01(inf->cfg.arg));
	return ((double)arc4random() / 4294967296.0);
}

/* Append "&name=escaped(value)" (or "?..." first) to *q. */
static int
inf_query_add(char **q, const char *name, const char *value)
{
	char	*esc, *nq;
	int	 rc;

	if ((esc = curl_easy_escape(NULL, value, 0)) == NULL)
		return (-1);
	rc = asprintf(&nq, "%s%s%s=%s", *q, strchr(*q, '?') ? "&" : "?",
	    name, esc);
	curl_free(esc);
	if (rc == -1)
		return (-1);
	free(*q);
	*q = nq;
	return (0);
}

static int
inf_query_selectors(struct informer *inf, char **q)
{
	if (inf_query_add(q, "labelSelector", inf->label_selector) == -1)
		return (-1);
	if (inf->field_selector != NULL && inf->use_field_selector &&
	    inf_query_add(q, "fieldSelector", inf->field_selector) == -1)
		return (-1);
	return (0);
}

/*
 * A list: paged with resourceVersion=0 the first time (the watch cache
 * ignores limit then and answers in one page), unpaged with the last
 * resourceVersion on a relist (with a limit, a resourceVersion would mean
 * "exactly", which fails once compacted; reflector.go switches paging off),
 * and paged without resourceVersion after a 410.  Continue pages carry the
 * token, the same limit and selectors, and nothing else.
 */
static int
inf_list_query(struct informer *inf, char **q, bool *paged)
{
	char	 limit[16];

	snprintf(limit, sizeof(limit), "%d", INFORMER_PAGE_LIMIT);
	*paged = true;
	if (inf->continue_token != NULL)
		return (inf_query_add(q, "limit", limit) == -1 ||
		    inf_query_add(q, "continue", inf->continue_token) == -1 ?
		    -1 : 0);
	switch (inf->list_mode) {
	case INF_LIST_FIRST:
		/*
		 * The watch cache ignores limit for resourceVersion=0 and
		 * answers with everything in one page: bound it as unpaged.
		 */
		*paged = false;
		if (inf_query_add(q, "limit", limit) == -1 ||
		    inf_query_add(q, "resourceVersion", "0") == -1)
			return (-1);
		break;
	case INF_LIST_LAST:
		if (inf->rv == NULL || *inf->rv == '\0') {
			inf->list_mode = INF_LIST_FIRST;
			return (inf_list_query(inf, q, paged));
		}
		*paged = false;
		if (inf_query_add(q, "resourceVersion", inf->rv) == -1)
			return (-1);
		break;
	case INF_LIST_UNSET:
		if (inf_query_add(q, "limit", limit) == -1)
			return (-1);
		break;
	}
	return (0);
}

/*
 * The request for step; see informer.h.  A watch starts from the last
 * resourceVersion, asks for bookmarks and ends itself after a random 300-600
 * s; its transfer is bounded a margin beyond that, since a black-holed
 * connection would otherwise hang forever.
 */
int
informer_request(struct informer *inf, enum informer_step step,
    struct informer_request *req)
{
	char	*q, num[16];
	bool	 paged = true;

	memset(req, 0, sizeof(*req));
	if ((q = strdup(inf->path)) == NULL)
		return (-1);
	if (step == INFORMER_LIST) {
		if (inf_list_query(inf, &q, &paged) == -1 ||
		    inf_query_selectors(inf, &q) == -1)
			goto fail;
		inf->body_max = paged ? INFORMER_MAX_PAGE_BYTES :
		    INFORMER_MAX_UNPAGED_BYTES;
		req->timeout_ms = INFORMER_LIST_TIMEOUT_MS;
		req->stall_s = INFORMER_LIST_STALL_S;
	} else {
		inf->watch_timeout_s = INFORMER_WATCH_MIN_S + (int)(inf_rand(inf)
		    * (INFORMER_WATCH_MAX_S - INFORMER_WATCH_MIN_S + 1));
		if (inf->watch_timeout_s > INFORMER_WATCH_MAX_S)
			inf->watch_timeout_s = INFORMER_WATCH_MAX_S;
		snprintf(num, sizeof(num), "%d", inf->watch_timeout_s);
		if (inf_query_add(&q, "watch", "1") == -1 ||
		    inf_query_add(&q, "resourceVersion",
		    inf->rv != NULL ? inf->rv : "0") == -1 ||
		    inf_query_add(&q, "allowWatchBookmarks", "true") == -1 ||
		    inf_query_add(&q, "timeoutSeconds", num) == -1 ||
		    inf_query_selectors(inf, &q) == -1)
			goto fail;
		inf->body_max = INFORMER_MAX_STATUS_BYTES;
		req->timeout_ms = (inf->watch_timeout_s +
		    INFORMER_WATCH_MARGIN_S) * 1000L;
		req->stall_s = 0;
	}
	req->path = q;
	return (0);
 fail:
	free(q);
	return (-1);
}

/* A request for step starts at now_ms. */
void
informer_begin(struct informer *inf, enum informer_step step,
    long long now_ms)
{
	inf->step = step;
	inf->started_ms = now_ms;
	inf_body_reset(inf);
	inf->line_len = 0;
	inf->events = 0;
	inf->stop = INF_STOP_NONE;
	inf->stop_code = 0;
	inf->stop_too_large = false;
	inf->stop_msg[0] = '\0';
	if (step == INFORMER_LIST && inf->continue_token == NULL) {
		inf_tree_clear(&inf->pending, &inf->n_pending);
		inf->list_pages = 0;
		inf->list_errors = 0;
		inf->list_started_ms = now_ms;
	}
	if (step == INFORMER_WATCH)
		inf->body_max = INFORMER_MAX_STATUS_BYTES;
}

/* ------------------------------------------------------------ body parsing */

static bool
inf_all_space(const char *buf, size_t len)
{
	size_t	 i;

	for (i = 0; i < len; i++)
		if (buf[i] != ' ' && buf[i] != '\n' && buf[i] != '\r' &&
		    buf[i] != '\t')
			return (false);
	return (true);
}

/*
 * One JSON document across any number of reads, through json-c's
 * incremental tokener, within body_max bytes.
 */
static void
inf_body_feed(struct informer *inf, const char *buf, size_t len)
{
	enum json_tokener_error	 jerr;
	json_object		*obj;
	size_t			 n, used;

	if (inf->body_bad)
		return;
	if (inf->body_bytes + len > inf->body_max) {
		inf->body_bad = true;
		snprintf(inf->body_err, sizeof(inf->body_err),
		    "response larger than %zu bytes", inf->body_max);
		return;
	}
	inf->body_bytes += len;
	while (len > 0) {
		if (inf->body != NULL) {
			if (!inf_all_space(buf, len)) {
				inf->body_bad = true;
				snprintf(inf->body_err, sizeof(inf->body_err),
				    "data after the JSON document");
			}
			return;
		}
		if (inf->tok == NULL &&
		    (inf->tok = json_tokener_new_ex(INF_JSON_DEPTH)) == NULL) {
			inf->body_bad = true;
			snprintf(inf->body_err, sizeof(inf->body_err),
			    "out of memory");
			return;
		}
		n = len > INT32_MAX ? INT32_MAX : len;
		obj = json_tokener_parse_ex(inf->tok, buf, (int)n);
		jerr = json_tokener_get_error(inf->tok);
		if (obj == NULL && jerr == json_tokener_continue)
			return;
		if (obj == NULL) {
			inf->body_bad = true;
			snprintf(inf->body_err, sizeof(inf->body_err),
			    "not JSON: %s at byte %zu",
			    json_tokener_error_desc(jerr), inf->body_bytes -
			    len + json_tokener_get_parse_end(inf->tok));
			return;
		}
		inf->body = obj;
		used = json_tokener_get_parse_end(inf->tok);
		buf += used;
		len -= used;
	}
}

/* The end of the body: a document without a closing newline completes. */
static json_object *
inf_body_finish(struct informer *inf)
{
	if (inf->body == NULL && !inf->body_bad && inf->tok != NULL) {
		/* A bare number or literal needs an end; objects do not. */
		inf_body_feed(inf, " ", 1);
	}
	return (inf->body_bad ? NULL : inf->body);
}

/* ----------------------------------------------------------- watch events */

static void
inf_note_rv(struct informer *inf, json_object *obj)
{
	const char	*rv = inf_str(inf_meta(obj), "resourceVersion");

	if (rv != NULL && *rv != '\0')
		inf_set_str(&inf->rv, rv);
}

/* A Status object's code, message and whether it is "too large RV". */
static long
inf_status(json_object *st, char *msg, size_t msglen, bool *too_large)
{
	json_object	*v, *details, *causes, *c;
	const char	*m = inf_str(st, "message"), *reason;
	long		 code = 0;
	size_t		 i, n;

	*too_large = false;
	if (st != NULL && json_object_object_get_ex(st, "code", &v) &&
	    json_object_is_type(v, json_type_int))
		code = (long)json_object_get_int64(v);
	reason = inf_str(st, "reason");
	snprintf(msg, msglen, "%s%s%s", reason != NULL ? reason : "",
	    reason != NULL && m != NULL ? ": " : "", m != NULL ? m : "");
	log_escape(msg, msglen);
	if (m != NULL && strstr(m, "Too large resource version") != NULL)
		*too_large = true;
	if (st != NULL && json_object_object_get_ex(st, "details", &details) &&
	    json_object_object_get_ex(details, "causes", &causes) &&
	    json_object_is_type(causes, json_type_array)) {
		n = json_object_array_length(causes);
		for (i = 0; i < n; i++) {
			c = json_object_array_get_idx(causes, i);
			if ((reason = inf_str(c, "reason")) != NULL &&
			    strcmp(reason, "ResourceVersionTooLarge") == 0)
				*too_large = true;
		}
	}
	return (code);
}

static int
inf_stop_bad(struct informer *inf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
inf_stop_bad(struct informer *inf, const char *fmt, ...)
{
	va_list	 ap;

	inf->stop = INF_STOP_BAD_LINE;
	va_start(ap, fmt);
	vsnprintf(inf->stop_msg, sizeof(inf->stop_msg), fmt, ap);
	va_end(ap);
	log_escape(inf->stop_msg, sizeof(inf->stop_msg));
	return (-1);
}

/* Apply one event line (NUL-terminated).  Returns -1 to end the watch. */
static int
inf_event(struct informer *inf, const char *line, size_t len)
{
	json_tokener	*tok;
	json_object	*ev, *obj;
	const char	*type;
	char		 key[SVC_KEYLEN];
	size_t		 end;
	int		 rc = 0;

	if (inf_all_space(line, len))
		return (0);
	if ((tok = json_tokener_new_ex(INF_JSON_DEPTH)) == NULL)
		return (inf_stop_bad(inf, "out of memory"));
	ev = json_tokener_parse_ex(tok, line, (int)len);
	end = json_tokener_get_parse_end(tok);
	if (ev == NULL) {
		rc = inf_stop_bad(inf, "undecodable event: %s",
		    json_tokener_error_desc(json_tokener_get_error(tok)));
		json_tokener_free(tok);
		return (rc);
	}
	json_tokener_free(tok);
	if (!inf_all_space(line + end, len - end)) {
		json_object_put(ev);
		return (inf_stop_bad(inf, "undecodable event: data after "
		    "the JSON object"));
	}
	type = inf_str(ev, "type");
	if (!json_object_object_get_ex(ev, "object", &obj) ||
	    !json_object_is_type(obj, json_type_object) || type == NULL) {
		json_object_put(ev);
		return (inf_stop_bad(inf, "event without type or object"));
	}
	inf->events++;
	if (strcmp(type, "ADDED") == 0 || strcmp(type, "MODIFIED") == 0) {
		inf_note_rv(inf, obj);
		if (inf_store(inf, &inf->cache, &inf->n_cache, obj, true) != 0)
			inf_changed(inf);
	} else if (strcmp(type, "DELETED") == 0) {
		inf_note_rv(inf, obj);
		if (inf_key(obj, key, sizeof(key)) == 0 &&
		    inf_tree_remove(&inf->cache, &inf->n_cache, key))
			inf_changed(inf);
	} else if (strcmp(type, "BOOKMARK") == 0) {
		/* A zero object of the kind: only its resourceVersion counts. */
		inf_note_rv(inf, obj);
	} else if (strcmp(type, "ERROR") == 0) {
		inf->stop = INF_STOP_ERROR_EVENT;
		inf->stop_code = inf_status(obj, inf->stop_msg,
		    sizeof(inf->stop_msg), &inf->stop_too_large);
		rc = -1;
	} else
		rc = inf_stop_bad(inf, "unknown event type \"%.40s\"", type);
	json_object_put(ev);
	return (rc);
}

/*
 * Stream bytes: append to the line buffer and apply every complete line.
 * Chunk boundaries are not event boundaries: a line may take many calls
 * and one call may hold many lines.
 */
static int
inf_watch_feed(struct informer *inf, const char *buf, size_t len)
{
	size_t	 start, i, ncap;
	char	*p;

	if (inf->line_len + len > INFORMER_MAX_LINE_BYTES + 1 &&
	    memchr(buf, '\n', len) == NULL) {
		inf->stop = INF_STOP_TOO_LONG;
		return (-1);
	}
	if (inf->line_len + len + 1 > inf->line_cap) {
		ncap = inf->line_cap == 0 ? 16384 : inf->line_cap;
		while (ncap < inf->line_len + len + 1)
			ncap *= 2;
		if ((p = realloc(inf->line, ncap)) == NULL)
			return (inf_stop_bad(inf, "out of memory"));
		inf->line = p;
		inf->line_cap = ncap;
	}
	memcpy(inf->line + inf->line_len, buf, len);
	/* Only the new bytes can hold a newline we have not seen. */
	i = inf->line_len;
	inf->line_len += len;
	start = 0;
	for (; i < inf->line_len; i++) {
		if (inf->line[i] != '\n')
			continue;
		if (i - start > INFORMER_MAX_LINE_BYTES) {
			inf->stop = INF_STOP_TOO_LONG;
			return (-1);
		}
		inf->line[i] = '\0';
		if (inf_event(inf, inf->line + start, i - start) == -1)
			return (-1);
		start = i + 1;
	}
	if (inf->line_len - start > INFORMER_MAX_LINE_BYTES) {
		inf->stop = INF_STOP_TOO_LONG;
		return (-1);
	}
	if (start > 0) {
		memmove(inf->line, inf->line + start, inf->line_len - start);
		inf->line_len -= start;
	}
	return (0);
}

/* ------------------------------------------------------------- list pages */

/* An item of the list page being received: into pending, decoded. */
static void
inf_list_item(json_object *item, void *arg)
{
	struct informer	*inf = arg;

	if (inf_store(inf, &inf->pending, &inf->n_pending, item,
	    inf->list_errors < INF_MAX_LIST_ERRORS) == -1)
		inf->list_errors++;
	json_object_put(item);
}

/*
 * List page bytes: items are decoded as they complete, so that neither
 * the text nor a tree of the whole page is ever held.
 */
static int
inf_list_feed(struct informer *inf, const char *buf, size_t len)
{
	struct list_stream_limits	 lim;

	if (inf->list == NULL) {
		lim.max_bytes = inf->body_max;
		/* An item is bounded as a watch event is. */
		lim.max_item_bytes = INFORMER_MAX_LINE_BYTES;
		lim.max_other_bytes = INFORMER_MAX_STATUS_BYTES;
		lim.max_depth = INF_JSON_DEPTH;
		if ((inf->list = list_stream_new(&lim, inf_list_item,
		    inf)) == NULL) {
			inf->body_bad = true;
			snprintf(inf->body_err, sizeof(inf->body_err),
			    "out of memory");
			return (-1);
		}
	}
	return (list_stream_feed(inf->list, buf, len) == LIST_STREAM_OK ? 0 :
	    -1);
}

/* Body bytes of the current request; see informer.h. */
int
informer_feed(struct informer *inf, long status, const char *buf, size_t len)
{
	if (inf->stop != INF_STOP_NONE)
		return (-1);
	if (inf->step == INFORMER_WATCH && status == 200)
		return (inf_watch_feed(inf, buf, len));
	if (inf->step == INFORMER_LIST && status == 200)
		return (inf->body_bad ? -1 : inf_list_feed(inf, buf, len));
	/* An error Status: one small document. */
	inf_body_feed(inf, buf, len);
	return (0);
}

/* ---------------------------------------------------------------- outcomes */

static void
inf_next(struct informer_next *next, enum informer_step step, long long delay)
{
	next->step = step;
	next->delay_ms = delay;
}

/* Back off for a failure, honouring Retry-After (bounded) when given. */
static long long
inf_backoff(struct informer *inf, const struct informer_result *r,
    long long now_ms)
{
	long long	 delay = backoff_next(&inf->backoff, now_ms,
			    inf_rand(inf));
	long long	 ra;

	if (r != NULL && r->retry_after_s > 0 &&
	    (r->status == 429 || r->status == 503)) {
		/* Bound before scaling: the server picks the number. */
		if (r->retry_after_s > BACKOFF_MAX_RETRY_AFTER_MS / 1000)
			ra = BACKOFF_MAX_RETRY_AFTER_MS;
		else
			ra = r->retry_after_s * 1000LL;
		if (ra > delay)
			delay = ra;
	}
	return (delay);
}

/*
 * The delay before the relist a 410 (the watch's resourceVersion was
 * compacted away) asks for: none, unless 410s come one after another, when
 * they back off on their own schedule, so that a server that keeps sending
 * them cannot make us spin.  Other failures do not delay it: after an
 * outage, the 410 from a server that is back (with a newer history) is the
 * first sign of it, and the relist is what brings the table up to date.
 */
static long long
inf_expired_delay(struct informer *inf, long long now_ms)
{
	if (backoff_quiet(&inf->expired, now_ms)) {
		backoff_next(&inf->expired, now_ms, 0);
		return (0);
	}
	return (backoff_next(&inf->expired, now_ms, inf_rand(inf)));
}

/* What went wrong with a request, in one phrase, for the log. */
static void
inf_describe(struct informer *inf, const struct informer_result *r,
    char *buf, size_t len, long *code, bool *too_large)
{
	char		 msg[512];
	json_object	*st;

	*code = r->status;
	*too_large = false;
	if (r->status == 0) {
		snprintf(buf, len, "%s", r->error != NULL ? r->error :
		    "no response");
		return;
	}
	st = inf_body_finish(inf);
	msg[0] = '\0';
	if (st != NULL && json_object_is_type(st, json_type_object) &&
	    inf_str(st, "kind") != NULL &&
	    strcmp(inf_str(st, "kind"), "Status") == 0)
		inf_status(st, msg, sizeof(msg), too_large);
	snprintf(buf, len, "HTTP %ld%s%s%s%s", r->status,
	    msg[0] != '\0' ? " " : "", msg,
	    r->error != NULL ? "; " : "", r->error != NULL ? r->error : "");
}

/*
 * A 401 after which the token file holds another token (rotated, and the
 * old one revoked): the same request again at once, with the new token.
 * Only a changed token skips the back-off, so a server that refuses every
 * token cannot make us spin.
 */
static bool
inf_auth_renewed(struct informer *inf, const struct informer_result *r,
    const char *what, struct informer_next *next)
{
	if (r->status != 401 || !r->auth_renewed)
		return (false);
	log_info("%s: %s: 401 Unauthorized; the token file holds a new token, "
	    "retrying with it", inf->name, what);
	inf_next(next, inf->step, 0);
	return (true);
}

static void
inf_list_failed(struct informer *inf, const struct informer_result *r,
    long long now_ms, struct informer_next *next, const char *why)
{
	char		 desc[768];
	long		 code = 0;
	bool		 too_large = false;
	bool		 continuing = inf->continue_token != NULL;
	long long	 delay;

	inf_set_str(&inf->continue_token, NULL);
	inf_tree_clear(&inf->pending, &inf->n_pending);
	if (why != NULL)
		snprintf(desc, sizeof(desc), "%s", why);
	else
		inf_describe(inf, r, desc, sizeof(desc), &code, &too_large);
	if (why == NULL && (code == 410 || (code == 504 && too_large)) &&
	    (inf->list_mode != INF_LIST_UNSET || continuing)) {
		/*
		 * The resourceVersion or continue token is gone (compacted)
		 * or not reached yet: read the current state instead.
		 */
		log_info("%s: list: %s; listing again without a "
		    "resourceVersion", inf->name, desc);
		inf->list_mode = INF_LIST_UNSET;
		inf_next(next, INFORMER_LIST, 0);
		return;
	}
	if (why == NULL && code == 400 && inf->use_field_selector &&
	    strstr(desc, "field label not supported") != NULL) {
		log_warnx("%s: the API server does not support fieldSelector "
		    "%s (%s); filtering headless services here", inf->name,
		    inf->field_selector, desc);
		inf->use_field_selector = false;
		inf_next(next, INFORMER_LIST, 0);
		return;
	}
	if (why == NULL && inf_auth_renewed(inf, r, "list", next))
		return;
	delay = inf_backoff(inf, r, now_ms);
	log_warnx("%s: list failed: %s; retrying in %.1f s%s", inf->name, desc,
	    (double)delay / 1000, inf->synced ? "; the last table stays in "
	    "force" : "");
	inf_next(next, INFORMER_LIST, delay);
}

/*
 * The end of a list page whose items are in pending: check the whole body
 * was a list and take its resourceVersion and continue token.  Returns -1
 * with why when it was not.
 */
static int
inf_list_page(struct informer *inf, char *why, size_t whylen)
{
	enum list_stream_status	 st;
	json_object		*meta;
	const char		*cont, *rv;

	if (inf->list == NULL) {
		snprintf(why, whylen, "bad response: %s", inf->body_bad ?
		    inf->body_err : "empty body");
		return (-1);
	}
	if ((st = list_stream_finish(inf->list)) != LIST_STREAM_OK) {
		snprintf(why, whylen, "%s%s", st == LIST_STREAM_BAD ?
		    "bad response: " : "", list_stream_error(inf->list));
		return (-1);
	}
	meta = list_stream_metadata(inf->list);
	rv = inf_str(meta, "resourceVersion");
	if (rv == NULL || *rv == '\0') {
		snprintf(why, whylen, "the list has no "
		    "metadata.resourceVersion");
		return (-1);
	}
	inf_set_str(&inf->list_rv, rv);
	cont = inf_str(meta, "continue");
	inf_set_str(&inf->continue_token, cont != NULL && *cont != '\0' ?
	    cont : NULL);
	inf->list_pages++;
	log_v(2, "%s: list page %u: %zu items, %zu so far%s", inf->name,
	    inf->list_pages, list_stream_n_items(inf->list), inf->n_pending,
	    inf->continue_token != NULL ? ", more to come" : "");
	return (0);
}

static void
inf_list_done(struct informer *inf, const struct informer_result *r,
    long long now_ms, struct informer_next *next)
{
	struct inf_tree	 t;
	size_t		 n;
	char		 why[256];

	/* A body we gave up on (it is not a list, a bound) says why. */
	if (r->status == 200 && (inf->body_bad || (inf->list != NULL &&
	    list_stream_error(inf->list)[0] != '\0'))) {
		inf_list_page(inf, why, sizeof(why));
		inf_list_failed(inf, r, now_ms, next, why);
		return;
	}
	if (r->status != 200 || r->error != NULL) {
		inf_list_failed(inf, r, now_ms, next, NULL);
		return;
	}
	if (inf_list_page(inf, why, sizeof(why)) == -1) {
		inf_list_failed(inf, r, now_ms, next, why);
		return;
	}
	inf_body_reset(inf);
	if (inf->continue_token != NULL) {
		inf_next(next, INFORMER_LIST, 0);
		return;
	}
	/* Replace: whatever the new list lacks has been deleted. */
	t = inf->cache;
	n = inf->n_cache;
	inf->cache = inf->pending;
	inf->n_cache = inf->n_pending;
	inf->pending = t;
	inf->n_pending = n;
	inf_tree_clear(&inf->pending, &inf->n_pending);
	inf_set_str(&inf->rv, inf->list_rv);
	inf->list_mode = INF_LIST_LAST;
	if (inf->list_errors > INF_MAX_LIST_ERRORS)
		log_warnx("%s: %zu more objects skipped", inf->name,
		    inf->list_errors - INF_MAX_LIST_ERRORS);
	log_info("%s: listed %zu objects (%zu skipped) in %u page%s, %lld ms, "
	    "resourceVersion %s", inf->name, inf->n_cache, inf->list_errors,
	    inf->list_pages, inf->list_pages == 1 ? "" : "s",
	    now_ms - inf->list_started_ms, inf->rv);
	inf->synced = true;
	inf_changed(inf);
	inf_next(next, INFORMER_WATCH, 0);
}

/* A 200 watch stream ended: by an ERROR event, by us, or by the server. */
static void
inf_stream_ended(struct informer *inf, const struct informer_result *r,
    long long now_ms, struct informer_next *next)
{
	long long	 ran = now_ms - inf->started_ms, delay;
	const char	*rv = inf->rv != NULL ? inf->rv : "";

	switch (inf->stop) {
	case INF_STOP_ERROR_EVENT:
		if (inf->stop_code == 410) {
			/*
			 * The resourceVersion was compacted away.  Relist
			 * with it (not older than: served from the watch
			 * cache).
			 */
			delay = inf_expired_delay(inf, now_ms);
			log_info("%s: watch from resourceVersion %s expired "
			    "(410 %s); relisting in %.1f s", inf->name, rv,
			    inf->stop_msg, (double)delay / 1000);
			inf_next(next, INFORMER_LIST, delay);
			return;
		}
		if (inf->stop_code == 504 && inf->stop_too_large)
			inf->list_mode = INF_LIST_UNSET;
		delay = inf_backoff(inf, NULL, now_ms);
		log_warnx("%s: watch error %ld %s; relisting in %.1f s",
		    inf->name, inf->stop_code, inf->stop_msg,
		    (double)delay / 1000);
		inf_next(next, INFORMER_LIST, delay);
		return;
	case INF_STOP_BAD_LINE:
	case INF_STOP_TOO_LONG:
		delay = inf_backoff(inf, NULL, now_ms);
		log_warnx("%s: watch stream: %s; relisting in %.1f s",
		    inf->name, inf->stop == INF_STOP_TOO_LONG ?
		    "an event longer than the bound" : inf->stop_msg,
		    (double)delay / 1000);
		inf_next(next, INFORMER_LIST, delay);
		return;
	case INF_STOP_NONE:
		break;
	}
	/* A last event without its newline (a server that omits it). */
	if (inf->line_len > 0 && r->error == NULL) {
		inf->line[inf->line_len] = '\0';
		if (inf_event(inf, inf->line, inf->line_len) == -1)
			log_v(2, "%s: incomplete last event ignored",
			    inf->name);
		inf->line_len = 0;
	}
	if (inf->events > 0 || ran >= INFORMER_SHORT_WATCH_MS) {
		/*
		 * The normal end (timeoutSeconds), or a broken stream (a
		 * reset, a dead peer, a stall): no relist, since the
		 * resourceVersion is still good.  Only the broken one is
		 * worth a warning.
		 */
		if (r->error != NULL)
			log_warnx("%s: watch broken after %lld ms and %zu "
			    "events: %s; watching again from resourceVersion "
			    "%s", inf->name, ran, inf->events, r->error, rv);
		else
			log_v(2, "%s: watch ended after %lld ms and %zu "
			    "events; watching again from resourceVersion %s",
			    inf->name, ran, inf->events, rv);
		inf_next(next, INFORMER_WATCH, 0);
		return;
	}
	delay = inf_backoff(inf, NULL, now_ms);
	log_warnx("%s: watch ended after %lld ms without events%s%s; "
	    "relisting in %.1f s", inf->name, ran, r->error != NULL ? ": " :
	    "", r->error != NULL ? r->error : "", (double)delay / 1000);
	inf_next(next, INFORMER_LIST, delay);
}

static void
inf_watch_done(struct informer *inf, const struct informer_result *r,
    long long now_ms, struct informer_next *next)
{
	char		 desc[768];
	long		 code;
	bool		 too_large;
	long long	 delay;

	if (r->status == 200) {
		inf_stream_ended(inf, r, now_ms, next);
		return;
	}
	inf_describe(inf, r, desc, sizeof(desc), &code, &too_large);
	if (code == 0 || code == 429) {
		/*
		 * Nothing reached the server, or it asks us to slow down:
		 * back off and watch again from where we are, no relist
		 * (reflector.go isWatchErrorRetriable).
		 */
		delay = inf_backoff(inf, r, now_ms);
		log_warnx("%s: watch: %s; retrying in %.1f s", inf->name, desc,
		    (double)delay / 1000);
		inf_next(next, INFORMER_WATCH, delay);
		return;
	}
	if (code == 410) {
		delay = inf_expired_delay(inf, now_ms);
		log_info("%s: watch: %s; relisting in %.1f s", inf->name, desc,
		    (double)delay / 1000);
		inf_next(next, INFORMER_LIST, delay);
		return;
	}
	if (inf_auth_renewed(inf, r, "watch", next))
		return;
	if (code == 504 && too_large)
		inf->list_mode = INF_LIST_UNSET;
	delay = inf_backoff(inf, r, now_ms);
	log_warnx("%s: watch failed: %s; relisting in %.1f s", inf->name, desc,
	    (double)delay / 1000);
	inf_next(next, INFORMER_LIST, delay);
}

/* The current request ended; see informer.h. */
void
informer_done(struct informer *inf, const struct informer_result *r,
    long long now_ms, struct informer_next *next)
{
	if (inf->step == INFORMER_LIST)
		inf_list_done(inf, r, now_ms, next);
	else
		inf_watch_done(inf, r, now_ms, next);
	inf_body_reset(inf);
	inf->line_len = 0;
}

/* ------------------------------------------------------------------ queries */

/* Whether a list has completed once. */
bool
informer_synced(const struct informer *inf)
{
	return (inf->synced);
}

/* The last resourceVersion seen, or "". */
const char *
informer_resource_version(const struct informer *inf)
{
	return (inf->rv != NULL ? inf->rv : "");
}

/* How many objects the cache holds. */
size_t
informer_count(const struct informer *inf)
{
	return (inf->n_cache);
}

/* Whether the Service fieldSelector is still sent. */
bool
informer_uses_field_selector(const struct informer *inf)
{
	return (inf->use_field_selector);
}

/* Call fn for each cached object in key order; see informer.h. */
void
informer_walk(const struct informer *inf, informer_walk_cb fn, void *arg)
{
	struct inf_entry	*e;
	struct inf_tree		*t = (struct inf_tree *)(uintptr_t)&inf->cache;

	RB_FOREACH(e, inf_tree, t)
		fn(e->key, e->svc, e->slice, arg);
}
