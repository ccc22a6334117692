/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Decoded services by JSON object, for a source that keeps Services as
 * json-c objects (the API informer's cache) and builds tables from them
 * again and again: each object is decoded once, while it stays the same
 * object, instead of at every table.
 */
#ifndef KUPROXY_SVC_CACHE_H
#define KUPROXY_SVC_CACHE_H

#include <stddef.h>

#include <json-c/json.h>

struct svc;
struct svc_cache;

/* An empty cache, or NULL (ENOMEM). */
struct svc_cache *svc_cache_new(void);
/* Free the cache and drop what it holds (NULL is fine). */
void		 svc_cache_free(struct svc_cache *);

/*
 * The decoded Service of obj: the one decoded before when obj is the same
 * object (the cache holds a reference on it, so its address cannot be
 * reused by another), else decoded now.  The result is the cache's; it
 * stays valid until the svc_cache_sweep() after the next walk that does
 * not ask for obj, and callers that keep it take their own reference.
 * Returns NULL with err when obj does not decode or memory ran out.
 */
struct svc	*svc_cache_get(struct svc_cache *, json_object *obj,
		    char *err, size_t errlen);
/*
 * End a walk: drop every entry not asked for since the previous sweep.
 * Returns -1 when the cache could not be compacted (ENOMEM; it stays as
 * it was, only larger), else 0.
 */
int		 svc_cache_sweep(struct svc_cache *);

#endif
