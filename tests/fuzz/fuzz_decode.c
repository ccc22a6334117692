/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for watch/decode.c, fed the way the service file source
 * feeds it: bytes through yamljson_parse(), every document through
 * decode_document(), the decoded services and slices into a table
 * (svctab_build(), which joins endpoints to ports).
 *
 * Checks beyond "no crash, no leak": decoding the same documents twice and
 * building the second table over the first gives an equal table
 * (svctab_same()) and an empty difference, and the difference from nothing
 * lists every proxied port once.  Those are what keep an unchanged file
 * from restarting listeners.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include <json-c/json.h>

#include "base/svc.h"
#include "base/yamljson.h"
#include "tests/fuzz/fuzz.h"
#include "watch/decode.h"

struct fuzz_batch {
	struct svctab_builder	 build;
	size_t			 n_errors;
};

static void
fuzz_fail(const char *what)
{
	fprintf(stderr, "fuzz_decode: %s\n", what);
	abort();
}

static void
fuzz_on_service(struct svc *svc, void *arg)
{
	struct fuzz_batch	*b = arg;

	if (svc == NULL || svc->refcnt != 1)
		fuzz_fail("a decoded service without exactly one reference");
	if (svctab_builder_add_svc(&b->build, svc) == -1)
		b->n_errors++;
}

static void
fuzz_on_slice(struct slice *sl, void *arg)
{
	struct fuzz_batch	*b = arg;

	if (svctab_builder_add_slice(&b->build, sl) == -1)
		b->n_errors++;
}

static void
fuzz_on_error(const char *msg, void *arg)
{
	struct fuzz_batch	*b = arg;

	if (msg == NULL || msg[0] == '\0')
		fuzz_fail("an error without a message");
	b->n_errors++;
}

/* Decode every document into a table built over prev. */
static struct svctab *
fuzz_build(json_object *docs, const struct svctab *prev, size_t *n_errors)
{
	struct fuzz_batch	 b = { .build = { .owns_slices = true } };
	struct decode_sink	 sink = { fuzz_on_service, fuzz_on_slice,
				    fuzz_on_error, &b };
	struct svctab		*tab;
	char			 err[1024];
	size_t			 i, n;

	n = json_object_array_length(docs);
	for (i = 0; i < n; i++) {
		err[0] = 'x';
		if (decode_document(json_object_array_get_idx(docs, i),
		    "fuzz.yaml", &sink, err, sizeof(err)) == -1) {
			if (err[0] == '\0')
				fuzz_fail("a failed document without a "
				    "message");
			b.n_errors++;
		}
	}
	tab = svctab_builder_build(&b.build, prev);
	svctab_builder_clear(&b.build);
	if (tab == NULL)
		fuzz_fail("svctab_build failed");
	*n_errors = b.n_errors;
	return (tab);
}

static void
fuzz_count_diff(const struct svc_diff_entry *d, void *arg)
{
	size_t	*n = arg;

	if (d->kind != SVC_DIFF_ADDED || d->old_svc != NULL ||
	    d->new_svc == NULL || d->new_port == NULL)
		fuzz_fail("diff from nothing holds something but additions");
	(*n)++;
}

static void
fuzz_no_diff(const struct svc_diff_entry *d, void *arg)
{
	fuzz_fail("the same documents built a different table");
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
	json_object		*docs;
	struct svctab		*first, *second;
	struct svctab_stats	 st;
	char			 err[256];
	size_t			 n_err1, n_err2, n_added = 0;

	if (yamljson_parse((const char *)data, size, &docs, err,
	    sizeof(err)) == -1)
		return (0);
	first = fuzz_build(docs, NULL, &n_err1);
	second = fuzz_build(docs, first, &n_err2);
	if (n_err1 != n_err2)
		fuzz_fail("the same documents failed differently");
	if (!svctab_same(first, second))
		fuzz_fail("the same documents built a different table");
	if (svctab_diff(first, second, fuzz_no_diff, NULL) != 0)
		fuzz_fail("a difference between equal tables");
	svctab_diff(NULL, first, fuzz_count_diff, &n_added);
	svctab_stats(first, &st);
	if (n_added != st.n_ports)
		fuzz_fail("diff from nothing does not list every port once");
	svctab_unref(second);
	svctab_unref(first);
	json_object_put(docs);
	return (0);
}
