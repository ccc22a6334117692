/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for watch/informer.c: the responses an API server might send
 * to the requests the informer asks for, cut into reads of any size.
 *
 * Input layout (readable, so that seeds can be written by hand):
 *   byte 0     bit 0: EndpointSlices (else Services)
 *   byte 1     read size: bodies are fed in reads of this many bytes
 *              (0: each at once)
 *   the rest   responses separated by NUL bytes, at most FUZZ_MAX_ROUNDS.
 *              Each answers the request the informer asked for last (a
 *              list, a list's next page, a watch).  A response may start
 *              with one line "@" followed by words: a three-digit HTTP
 *              status (default 200), "cut" (ended by a transport error),
 *              "renewed" (a 401 after which a new token is at hand),
 *              "ra=N" (Retry-After: N seconds), "quick" (ended within a
 *              second of its start).  The rest is the body.
 *
 * After each response the informer decides what comes next and builds that
 * request's path; the cache is walked at the end.  Checks: delays are not
 * negative, paths are absolute, informer_count() matches the walk, and the
 * walk is in strictly increasing key order with one object per entry.
 */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "base/svc.h"
#include "tests/fuzz/fuzz.h"
#include "watch/informer.h"

#define MODE_SLICES	0x01
#define FUZZ_MAX_ROUNDS	16

/* How one response ends, from its "@" line. */
struct fuzz_response {
	long	 status;
	bool	 cut;
	bool	 renewed;
	long	 retry_after_s;
	bool	 quick;
};

struct fuzz_walk {
	char	 last[SVC_KEYLEN + 1];
	size_t	 n;
};

static void
fuzz_fail(const char *what)
{
	fprintf(stderr, "fuzz_watch_stream: %s\n", what);
	abort();
}

static double
fuzz_rand(void *arg)
{
	return (0.5);
}

static void
fuzz_on_change(struct informer *inf, void *arg)
{
	size_t	*changes = arg;

	(*changes)++;
}

static void
fuzz_walk_cb(const char *key, struct svc *svc, struct slice *sl, void *arg)
{
	struct fuzz_walk	*w = arg;

	if (w->n > 0 && strcmp(w->last, key) >= 0)
		fuzz_fail("the cache walk is not in key order");
	if ((svc == NULL) == (sl == NULL))
		fuzz_fail("a cache entry without exactly one object");
	snprintf(w->last, sizeof(w->last), "%s", key);
	w->n++;
}

/*
 * Read the "@" line at the start of *body into r, if there is one, and
 * move *body past it.
 */
static void
fuzz_response_line(const char **body, size_t *len, struct fuzz_response *r)
{
	const char	*start = *body, *stop = *body + *len, *nl;
	char		 line[128], *word, *save;
	size_t		 n;

	memset(r, 0, sizeof(*r));
	r->status = 200;
	if (*len == 0 || *start != '@')
		return;
	if ((nl = memchr(start, '\n', *len)) == NULL)
		nl = stop;
	n = (size_t)(nl - start) - 1;
	if (n >= sizeof(line))
		n = sizeof(line) - 1;
	memcpy(line, start + 1, n);
	line[n] = '\0';
	*body = nl < stop ? nl + 1 : stop;
	*len = (size_t)(stop - *body);
	for (word = strtok_r(line, " ", &save); word != NULL;
	    word = strtok_r(NULL, " ", &save)) {
		if (strlen(word) == 3 && strspn(word, "0123456789") == 3)
			r->status = strtol(word, NULL, 10);
		else if (strcmp(word, "cut") == 0)
			r->cut = true;
		else if (strcmp(word, "renewed") == 0)
			r->renewed = true;
		else if (strcmp(word, "quick") == 0)
			r->quick = true;
		else if (strncmp(word, "ra=", 3) == 0)
			r->retry_after_s = strtol(word + 3, NULL, 10);
	}
}

/* Build the request the informer wants next, as the driver would. */
static void
fuzz_request(struct informer *inf, const struct informer_next *next)
{
	struct informer_request	 req;

	if (next->delay_ms < 0)
		fuzz_fail("a negative delay");
	if (informer_request(inf, next->step, &req) == -1)
		fuzz_fail("informer_request failed");
	if (req.path == NULL || req.path[0] != '/')
		fuzz_fail("a request path that is not absolute");
	free(req.path);
}

/* One round: the request next asks for, its response, what comes next. */
static void
fuzz_round(struct informer *inf, const char *body, size_t len, size_t chunk,
    long long *now_ms, struct informer_next *next)
{
	struct fuzz_response	 resp;
	struct informer_result	 r;
	size_t			 off, n;

	fuzz_response_line(&body, &len, &resp);
	fuzz_request(inf, next);
	*now_ms += next->delay_ms;
	informer_begin(inf, next->step, *now_ms);
	for (off = 0; off < len; off += n) {
		n = chunk == 0 || len - off < chunk ? len - off : chunk;
		if (informer_feed(inf, resp.status, body + off, n) == -1)
			break;
	}
	*now_ms += resp.quick ? 200 : 1500;
	memset(&r, 0, sizeof(r));
	r.status = resp.status;
	r.error = resp.cut ? "Connection reset by peer" : NULL;
	r.retry_after_s = resp.retry_after_s;
	r.auth_renewed = resp.renewed;
	informer_done(inf, &r, *now_ms, next);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet_log();
	return (0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct informer_config	 cfg = { 0 };
	struct informer		*inf;
	struct informer_next	 next;
	struct fuzz_walk	 w = { .n = 0 };
	const char		*body, *end, *nul;
	size_t			 chunk, changes = 0;
	long long		 now_ms = 1000000;
	int			 round;

	if (size < 2)
		return (0);
	chunk = data[1];
	body = (const char *)data + 2;
	end = (const char *)data + size;

	cfg.resource = data[0] & MODE_SLICES ? INFORMER_ENDPOINT_SLICES :
	    INFORMER_SERVICES;
	cfg.on_change = fuzz_on_change;
	cfg.rand01 = fuzz_rand;
	cfg.arg = &changes;
	if ((inf = informer_new(&cfg)) == NULL)
		fuzz_fail("informer_new failed");
	informer_start(inf, &next);
	for (round = 0; round < FUZZ_MAX_ROUNDS; round++) {
		if ((nul = memchr(body, '\0', (size_t)(end - body))) == NULL)
			nul = end;
		fuzz_round(inf, body, (size_t)(nul - body), chunk, &now_ms,
		    &next);
		if (nul == end)
			break;
		body = nul + 1;
	}
	fuzz_request(inf, &next);

	informer_walk(inf, fuzz_walk_cb, &w);
	if (w.n != informer_count(inf))
		fuzz_fail("informer_count disagrees with the walk");
	if (informer_resource_version(inf) == NULL)
		fuzz_fail("a NULL resourceVersion");
	informer_free(inf);
	return (0);
}
