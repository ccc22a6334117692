/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One informer per resource (Services, EndpointSlices): the list/watch
 * state machine of client-go's Reflector and the local cache it keeps, with
 * no I/O of its own.  The driver (watch/source_api.c) asks which request to
 * make next, performs it, feeds the body bytes as they arrive and reports
 * how it ended; tests drive it the same way with canned bytes and a fake
 * clock and random source.
 *
 *   informer_start(&next)
 *   loop: wait next.delay_ms; informer_request(next.step, &req);
 *         informer_begin(); informer_feed()...; informer_done(&next)
 */
#ifndef KUPROXY_INFORMER_H
#define KUPROXY_INFORMER_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

struct slice;
struct svc;
struct informer;

enum informer_resource {
	INFORMER_SERVICES = 0,
	INFORMER_ENDPOINT_SLICES,
};

enum informer_step {
	INFORMER_LIST = 0,
	INFORMER_WATCH,
};

/* What to do next, after delay_ms (0: at once). */
struct informer_next {
	enum informer_step	 step;
	long long		 delay_ms;
};

/* A request to make: GET path (URL-encoded query included). */
struct informer_request {
	char	*path;		/* the caller frees it */
	long	 timeout_ms;	/* bound of the whole transfer, 0: none */
	long	 stall_s;	/* end it after this long without bytes, 0: never */
};

/* How a request ended, as the driver saw it. */
struct informer_result {
	long		 status;	/* HTTP status, 0 when no response came */
	const char	*error;		/* transport error, or NULL */
	long		 retry_after_s;	/* Retry-After, 0 when absent */
	bool		 auth_renewed;	/* a 401, and a new token is at hand */
};

struct informer_config {
	enum informer_resource	 resource;
	/* The cache changed (also on a completed relist).  May be NULL. */
	void			(*on_change)(struct informer *, void *arg);
	/* Uniform in [0, 1); NULL: arc4random().  For tests. */
	double			(*rand01)(void *arg);
	void			 *arg;
};

/* Bounds on what the server may send (checklist §12.16). */
#define INFORMER_PAGE_LIMIT		500
#define INFORMER_MAX_PAGE_BYTES		(64u * 1024 * 1024)
#define INFORMER_MAX_UNPAGED_BYTES	(256u * 1024 * 1024)
#define INFORMER_MAX_LINE_BYTES		(16u * 1024 * 1024)
#define INFORMER_MAX_STATUS_BYTES	(1024u * 1024)
#define INFORMER_WATCH_MIN_S		300
#define INFORMER_WATCH_MAX_S		600
#define INFORMER_WATCH_MARGIN_S		30	/* beyond timeoutSeconds */
#define INFORMER_LIST_STALL_S		60
#define INFORMER_LIST_TIMEOUT_MS	(10 * 60 * 1000L)
/* A watch this short without events counts as a failure (client-go). */
#define INFORMER_SHORT_WATCH_MS		1000

/*
 * Exponential back-off as client-go's reflector uses it: 0.8 s, doubling to
 * a 30 s cap, each delay stretched by a random 0-100 % (jitter 1.0), and
 * back to 0.8 s after 2 minutes without a failure.
 */
#define BACKOFF_INITIAL_MS	800
#define BACKOFF_CAP_MS		30000
#define BACKOFF_RESET_MS	120000
#define BACKOFF_MAX_RETRY_AFTER_MS	120000

struct backoff {
	long long	base_ms;	/* 0: no failure yet */
	long long	last_ms;	/* when the last failure was counted */
};

/* Count a failure at now_ms; returns the delay before the retry. */
long long	 backoff_next(struct backoff *, long long now_ms, double r01);
/* No failure counted in the last BACKOFF_RESET_MS. */
bool		 backoff_quiet(const struct backoff *, long long now_ms);

/* A new informer with an empty cache, or NULL on allocation failure. */
struct informer	*informer_new(const struct informer_config *);
void		 informer_free(struct informer *);

/* "services" or "endpointslices", for messages. */
const char	*informer_name(const struct informer *);

/* The first step: a list, at once. */
void		 informer_start(struct informer *, struct informer_next *);

/*
 * The request for step, from the current state (resourceVersion, continue
 * token, selectors).  Returns 0, or -1 on allocation failure.
 */
int		 informer_request(struct informer *, enum informer_step,
		    struct informer_request *);

/* A request for step has started at now_ms: reset the per-request state. */
void		 informer_begin(struct informer *, enum informer_step,
		    long long now_ms);

/*
 * Body bytes of the current request (any split: one byte, many events).
 * status is the response's HTTP status.  Watch events are applied to the
 * cache as their lines complete; list items are decoded as they complete
 * (the work is proportional to len: the driver bounds it per turn of its
 * loop by bounding len).  Returns 0, or -1 when the transfer should end
 * (an ERROR event, an undecodable line, a list body that cannot be a list,
 * a bound exceeded).
 */
int		 informer_feed(struct informer *, long status, const char *buf,
		    size_t len);

/*
 * The current request ended: decide what comes next, log why when it is
 * not the normal course.  now_ms is when it ended.
 */
void		 informer_done(struct informer *, const struct informer_result *,
		    long long now_ms, struct informer_next *);

/* A list has completed at least once. */
bool		 informer_synced(const struct informer *);
/* The last resourceVersion seen (list or event), or "" before any. */
const char	*informer_resource_version(const struct informer *);
/* Objects in the cache. */
size_t		 informer_count(const struct informer *);
/* Whether the Service fieldSelector is still sent (no 400 seen). */
bool		 informer_uses_field_selector(const struct informer *);

/*
 * Call fn for each cached object in namespace/name order, decoded: a
 * Service as its spec (svc, ports without endpoints; slice NULL), an
 * EndpointSlice as slice (svc NULL).  A spec is never changed once cached
 * (a changed Service gets a new one), so it may be kept with svc_ref(); a
 * slice must not be kept beyond the call.  fn must not change the
 * informer.
 */
typedef void	(*informer_walk_cb)(const char *key, struct svc *svc,
		    struct slice *slice, void *arg);
void		 informer_walk(const struct informer *, informer_walk_cb,
		    void *arg);

#endif
