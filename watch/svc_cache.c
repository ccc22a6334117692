/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Decoded services keyed by the address of their JSON object.
 *
 * This module owns one small hash table (open addressing, linear probing,
 * at most half full) from json_object pointer to the struct svc that
 * watch/decode.c made of it, and the mark-and-sweep that drops entries a
 * walk no longer asked for.  It holds a reference on every object it
 * keys by, so an address always means the same, unchanged object: the
 * informer replaces an updated Service with a new object rather than
 * changing it.
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/svc.h"
#include "watch/decode.h"
#include "watch/svc_cache.h"

struct svc_cache_entry {
	json_object	*obj;		/* a reference; NULL: the slot is free */
	struct svc	*svc;		/* a reference */
	bool		 seen;		/* asked for since the last sweep */
};

struct svc_cache {
	struct svc_cache_entry	*slots;
	size_t			 cap;	/* a power of two, or 0 */
	size_t			 n;
};

/* A new, empty cache; NULL (ENOMEM). */
struct svc_cache *
svc_cache_new(void)
{
	return calloc(1, sizeof(struct svc_cache));
}

static void
svc_cache_slots_free(struct svc_cache_entry *v, size_t cap)
{
	size_t i;

	for (i = 0; i < cap; i++)
		if (v[i].obj != NULL) {
			json_object_put(v[i].obj);
			svc_unref(v[i].svc);
		}
	free(v);
}

/* Free c and everything it holds; NULL is fine. */
void
svc_cache_free(struct svc_cache *c)
{
	if (c == NULL)
		return;
	svc_cache_slots_free(c->slots, c->cap);
	free(c);
}

static size_t
svc_cache_index(const json_object *obj, size_t cap)
{
	uint64_t h = (uint64_t)(uintptr_t)obj;

	/* Fibonacci hashing: allocations are aligned, their low bits alike. */
	h *= 0x9e3779b97f4a7c15ULL;
	return (size_t)(h >> 32) & (cap - 1);
}

/* The slot of obj in v, or the free slot where it would go. */
static struct svc_cache_entry *
svc_cache_slot(struct svc_cache_entry *v, size_t cap, const json_object *obj)
{
	size_t i;

	for (i = svc_cache_index(obj, cap);; i = (i + 1) & (cap - 1))
		if (v[i].obj == NULL || v[i].obj == obj)
			return &v[i];
}

/* Room for n entries, the table at most half full; -1 (ENOMEM). */
static int
svc_cache_reserve(struct svc_cache *c, size_t n)
{
	struct svc_cache_entry	*v, *slot;
	size_t			 cap = 64, i;

	while (cap < 2 * n)
		cap *= 2;
	if (cap == c->cap)
		return 0;
	if ((v = calloc(cap, sizeof(*v))) == NULL)
		return -1;
	for (i = 0; i < c->cap; i++)
		if (c->slots[i].obj != NULL) {
			slot = svc_cache_slot(v, cap, c->slots[i].obj);
			*slot = c->slots[i];
		}
	free(c->slots);
	c->slots = v;
	c->cap = cap;
	return 0;
}

/* See svc_cache.h. */
struct svc *
svc_cache_get(struct svc_cache *c, json_object *obj, char *err,
    size_t errlen)
{
	struct svc_cache_entry	*e;
	struct svc		*svc;

	if (c->cap > 0) {
		e = svc_cache_slot(c->slots, c->cap, obj);
		if (e->obj == obj) {
			e->seen = true;
			return e->svc;
		}
	}
	if ((svc = decode_service(obj, err, errlen)) == NULL)
		return NULL;
	if (2 * (c->n + 1) > c->cap && svc_cache_reserve(c, c->n + 1) == -1) {
		snprintf(err, errlen, "out of memory");
		svc_unref(svc);
		return NULL;
	}
	e = svc_cache_slot(c->slots, c->cap, obj);
	e->obj = json_object_get(obj);
	e->svc = svc;
	e->seen = true;
	c->n++;
	return svc;
}

/* See svc_cache.h. */
int
svc_cache_sweep(struct svc_cache *c)
{
	struct svc_cache_entry	*old = c->slots, *v;
	size_t			 old_cap = c->cap, cap = 64, i, live = 0;

	for (i = 0; i < old_cap; i++)
		if (old[i].obj != NULL && old[i].seen)
			live++;
	if (live < c->n) {
		/* Rebuild: linear probing has no cheap deletion. */
		while (cap < 2 * live)
			cap *= 2;
		if ((v = calloc(cap, sizeof(*v))) == NULL) {
			for (i = 0; i < old_cap; i++)
				old[i].seen = false;
			return -1;
		}
		for (i = 0; i < old_cap; i++) {
			if (old[i].obj == NULL)
				continue;
			if (old[i].seen)
				*svc_cache_slot(v, cap, old[i].obj) = old[i];
			else {
				json_object_put(old[i].obj);
				svc_unref(old[i].svc);
			}
		}
		free(old);
		c->slots = v;
		c->cap = cap;
		c->n = live;
	}
	for (i = 0; i < c->cap; i++)
		c->slots[i].seen = false;
	return 0;
}
