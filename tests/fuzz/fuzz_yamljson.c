/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for base/yamljson.c: any bytes as a YAML or JSON file.
 *
 * Besides "no crash, no leak", it checks what the module promises: a
 * parsed tree holds no container nested deeper than the bound, every line
 * yamljson_line() reports lies within the input, and the tree printed as
 * JSON parses back to an equal tree (when the printed text is valid JSON:
 * json-c prints NaN and infinities, which JSON cannot hold).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "base/yamljson.h"
#include "tests/fuzz/fuzz.h"

/* yamljson.c refuses deeper nesting; docs array is one more level. */
#define FUZZ_MAX_DEPTH	(64 + 1)

static void
fuzz_fail(const char *what)
{
	fprintf(stderr, "fuzz_yamljson: %s\n", what);
	abort();
}

/* Walk obj: depth bound, line numbers within the input's line count. */
static void
fuzz_walk(json_object *obj, int depth, int max_line)
{
	struct json_object_iterator	 it, end;
	size_t				 i, n;

	if (depth > FUZZ_MAX_DEPTH)
		fuzz_fail("tree deeper than the bound");
	if (yamljson_line(obj) < 0 || yamljson_line(obj) > max_line)
		fuzz_fail("line number outside the input");
	switch (json_object_get_type(obj)) {
	case json_type_array:
		n = json_object_array_length(obj);
		for (i = 0; i < n; i++)
			fuzz_walk(json_object_array_get_idx(obj, i), depth + 1,
			    max_line);
		break;
	case json_type_object:
		it = json_object_iter_begin(obj);
		end = json_object_iter_end(obj);
		while (!json_object_iter_equal(&it, &end)) {
			fuzz_walk(json_object_iter_peek_value(&it), depth + 1,
			    max_line);
			json_object_iter_next(&it);
		}
		break;
	default:
		break;
	}
}

static int
fuzz_count_lines(const uint8_t *data, size_t size)
{
	size_t	 i;
	int	 n = 1;

	/* libyaml also breaks lines at \r, \x85, \u2028 and \u2029. */
	for (i = 0; i < size; i++)
		if (data[i] == '\n' || data[i] == '\r' || data[i] == 0x85 ||
		    data[i] == 0xe2)
			n++;
	return (n);
}

/* Print docs as JSON, parse that again, compare. */
static void
fuzz_round_trip(json_object *docs)
{
	json_object	*again;
	const char	*text;
	size_t		 len;
	char		 err[256];

	text = json_object_to_json_string_length(docs,
	    JSON_C_TO_STRING_PLAIN, &len);
	if (text == NULL)
		fuzz_fail("could not print the tree");
	if (yamljson_parse(text, len, &again, err, sizeof(err)) == -1)
		return;
	if (json_object_array_length(again) != 1 ||
	    !json_object_equal(json_object_array_get_idx(again, 0), docs)) {
		/* NaN is not equal to itself; that is not a finding. */
		if (strstr(text, "NaN") == NULL)
			fuzz_fail("the printed tree parses to another tree");
	}
	json_object_put(again);
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
	json_object	*docs;
	char		 err[256];

	if (yamljson_parse((const char *)data, size, &docs, err,
	    sizeof(err)) == -1) {
		if (docs != NULL)
			fuzz_fail("failed but returned documents");
		if (err[0] == '\0')
			fuzz_fail("failed without a message");
		return (0);
	}
	if (!json_object_is_type(docs, json_type_array))
		fuzz_fail("documents are not an array");
	fuzz_walk(docs, 0, fuzz_count_lines(data, size));
	fuzz_round_trip(docs);
	json_object_put(docs);
	return (0);
}
