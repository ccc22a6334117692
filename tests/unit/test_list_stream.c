/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for watch/list_stream.c: list bodies cut at every byte, items with
 * strings that hold brackets, commas and escaped quotes, nested arrays, a
 * nested "items" that is not the list's, metadata before and after the
 * items, and the failures: truncated bodies, bodies that are not lists or
 * not JSON, and each bound (depth, one item, the other members, the body).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <json-c/json.h>

#include "watch/list_stream.h"

/* What the items were, as compact JSON separated by "|". */
struct seen {
	char	 text[8192];
	size_t	 n;
};

static void
collect(json_object *item, void *arg)
{
	struct seen	*s = arg;
	const char	*j = item != NULL ? json_object_to_json_string_ext(item,
			    JSON_C_TO_STRING_PLAIN) : "NULL";

	if (s->n++ > 0)
		strncat(s->text, "|", sizeof(s->text) - strlen(s->text) - 1);
	strncat(s->text, j, sizeof(s->text) - strlen(s->text) - 1);
	json_object_put(item);
}

static const struct list_stream_limits default_limits = {
	64u << 20, 16u << 20, 1u << 20, 64
};

static struct list_stream *
new_stream(const struct list_stream_limits *lim, struct seen *s)
{
	struct list_stream	*ls;

	memset(s, 0, sizeof(*s));
	cr_assert_not_null(ls = list_stream_new(lim != NULL ? lim :
	    &default_limits, collect, s));
	return (ls);
}

static const char *
rv_of(struct list_stream *ls)
{
	json_object	*rv;

	if (list_stream_metadata(ls) == NULL ||
	    !json_object_object_get_ex(list_stream_metadata(ls),
	    "resourceVersion", &rv))
		return ("");
	return (json_object_get_string(rv));
}

/* Items that a splitter which did not follow JSON would cut wrongly. */
static const char *tricky =
    "{\"kind\":\"List\",\"apiVersion\":\"v1\",\"items\": [\n"
    " {\"metadata\":{\"name\":\"a]},{[\"},\"note\":\"say \\\"]}\\\" now\"},\n"
    " {\"metadata\":{\"name\":\"b\\\\\"},\"x\":[[1,[2,[]]],{},\"\\u005d\"]},"
    "12,\"s,]\",true,null,\n"
    " {\"items\":[{\"not\":\"the list's\"}]}\n"
    "], \"metadata\" : {\"resourceVersion\":\"7\",\"continue\":\"c]\"}}\n";

static const char *tricky_items =
    "{\"metadata\":{\"name\":\"a]},{[\"},\"note\":\"say \\\"]}\\\" now\"}|"
    "{\"metadata\":{\"name\":\"b\\\\\"},\"x\":[[1,[2,[]]],{},\"]\"]}|"
    "12|\"s,]\"|true|NULL|{\"items\":[{\"not\":\"the list's\"}]}";

static void
check_tricky(struct list_stream *ls, struct seen *s)
{
	cr_assert_eq(list_stream_finish(ls), LIST_STREAM_OK, "%s",
	    list_stream_error(ls));
	cr_assert_eq(s->n, 7);
	cr_assert_eq(list_stream_n_items(ls), 7);
	cr_assert_str_eq(s->text, tricky_items);
	cr_assert_str_eq(rv_of(ls), "7");
}

TestSuite(list_stream);

Test(list_stream, items_split_at_every_byte_boundary)
{
	struct list_stream	*ls;
	struct seen		 s;
	size_t			 len = strlen(tricky), cut;

	for (cut = 0; cut <= len; cut++) {
		ls = new_stream(NULL, &s);
		cr_assert_eq(list_stream_feed(ls, tricky, cut), LIST_STREAM_OK,
		    "cut %zu: %s", cut, list_stream_error(ls));
		cr_assert_eq(list_stream_feed(ls, tricky + cut, len - cut),
		    LIST_STREAM_OK, "cut %zu: %s", cut, list_stream_error(ls));
		check_tricky(ls, &s);
		list_stream_free(ls);
	}
}

Test(list_stream, items_fed_one_byte_at_a_time_arrive_as_completed)
{
	struct list_stream	*ls;
	struct seen		 s;
	size_t			 len = strlen(tricky), i;
	const char		*first_end = strstr(tricky, "now\\\"\"}") + 6;

	ls = new_stream(NULL, &s);
	for (i = 0; i < len; i++) {
		cr_assert_eq(list_stream_feed(ls, tricky + i, 1),
		    LIST_STREAM_OK, "byte %zu: %s", i, list_stream_error(ls));
		/* The first item is handed over with its last byte. */
		if (tricky + i + 1 == first_end)
			cr_assert_eq(s.n, 1, "byte %zu", i);
		if (tricky + i + 1 < first_end)
			cr_assert_eq(s.n, 0, "byte %zu", i);
	}
	check_tricky(ls, &s);
	list_stream_free(ls);
}

Test(list_stream, metadata_before_or_after_items)
{
	const char		*bodies[] = {
		"{\"metadata\":{\"resourceVersion\":\"5\"},\"items\":[{\"a\":1}]}",
		"{\"items\":[{\"a\":1}],\"metadata\":{\"resourceVersion\":\"5\"}}",
		"{\"kind\":\"X\",\"items\":[{\"a\":1}],\"apiVersion\":\"v1\","
		    "\"metadata\":{\"resourceVersion\":\"5\"},\"z\":[[]]}",
	};
	struct list_stream	*ls;
	struct seen		 s;
	size_t			 i;

	for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		ls = new_stream(NULL, &s);
		cr_assert_eq(list_stream_feed(ls, bodies[i], strlen(bodies[i])),
		    LIST_STREAM_OK);
		cr_assert_eq(list_stream_finish(ls), LIST_STREAM_OK, "%s",
		    list_stream_error(ls));
		cr_assert_str_eq(s.text, "{\"a\":1}");
		cr_assert_str_eq(rv_of(ls), "5");
		list_stream_free(ls);
	}
}

Test(list_stream, empty_and_null_items_are_an_empty_list)
{
	const char		*bodies[] = {
		"{\"metadata\":{},\"items\":[]}",
		"{\"metadata\":{},\"items\":null}",
		"  {\"items\" : [ ] }  \r\n",
	};
	struct list_stream	*ls;
	struct seen		 s;
	size_t			 i;

	for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		ls = new_stream(NULL, &s);
		cr_assert_eq(list_stream_feed(ls, bodies[i], strlen(bodies[i])),
		    LIST_STREAM_OK);
		cr_assert_eq(list_stream_finish(ls), LIST_STREAM_OK, "%s: %s",
		    bodies[i], list_stream_error(ls));
		cr_assert_eq(s.n, 0);
		list_stream_free(ls);
	}
}

Test(list_stream, every_truncated_body_fails)
{
	struct list_stream	*ls;
	struct seen		 s;
	size_t			 len = strlen(tricky), cut;

	/* The last byte is a newline after the document: not a truncation. */
	for (cut = 0; cut < len - 1; cut++) {
		ls = new_stream(NULL, &s);
		cr_assert_eq(list_stream_feed(ls, tricky, cut), LIST_STREAM_OK);
		cr_assert_eq(list_stream_finish(ls), LIST_STREAM_BAD, "cut %zu",
		    cut);
		cr_assert(strstr(list_stream_error(ls), cut == 0 ?
		    "empty body" : "ends inside the JSON document") != NULL,
		    "cut %zu: %s", cut, list_stream_error(ls));
		list_stream_free(ls);
	}
}

static enum list_stream_status
run(const char *body, const struct list_stream_limits *lim, char *err,
    size_t errlen)
{
	struct list_stream	*ls;
	struct seen		 s;
	enum list_stream_status	 st;

	ls = new_stream(lim, &s);
	if ((st = list_stream_feed(ls, body, strlen(body))) == LIST_STREAM_OK)
		st = list_stream_finish(ls);
	snprintf(err, errlen, "%s", list_stream_error(ls));
	/* A failure sticks. */
	if (st != LIST_STREAM_OK)
		cr_assert_eq(list_stream_feed(ls, "{", 1), st);
	list_stream_free(ls);
	return (st);
}

Test(list_stream, bodies_that_are_not_lists)
{
	const char	*not_list[] = {
		"[]", "{\"kind\":\"Status\",\"code\":500}", "{\"items\":{}}",
		"{\"items\":\"[]\"}", "\"items\"", "null",
	};
	const char	*bad[][2] = {
		{ "<!DOCTYPE html>", "not JSON: unexpected character at byte 0" },
		{ "{\"items\":[]} x", "data after the JSON document at byte 13" },
		{ "{\"items\":[]}{}", "data after the JSON document at byte 12" },
		{ "{\"items\":[1 2]}", "not JSON: unexpected character at byte 12" },
		{ "{\"items\":[{\"a\":}]}", "not JSON: " },
		{ "{\"items\":[],\"items\":[]}", "\"items\" twice" },
		{ "{items:[]}", "not JSON: unexpected character at byte 1" },
	};
	char		 err[256];
	size_t		 i;

	for (i = 0; i < sizeof(not_list) / sizeof(not_list[0]); i++) {
		cr_assert_eq(run(not_list[i], NULL, err, sizeof(err)),
		    LIST_STREAM_NOT_LIST, "%s: %s", not_list[i], err);
		cr_assert_str_eq(err, "the response is not a list");
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(run(bad[i][0], NULL, err, sizeof(err)),
		    LIST_STREAM_BAD, "%s: %s", bad[i][0], err);
		cr_assert(strstr(err, bad[i][1]) != NULL, "%s: %s", bad[i][0],
		    err);
	}
}

/* {"items":[ ITEM ]} with ITEM nested depth arrays deep. */
static char *
deep_body(int depth)
{
	char	*b = malloc((size_t)depth * 2 + 32);
	int	 i;

	cr_assert_not_null(b);
	strcpy(b, "{\"items\":[");
	for (i = 0; i < depth; i++)
		strcat(b, "[");
	for (i = 0; i < depth; i++)
		strcat(b, "]");
	strcat(b, "]}");
	return (b);
}

Test(list_stream, depth_counts_the_list_object_and_items_array)
{
	char	 err[256], *ok = deep_body(62), *deep = deep_body(63);

	/* 64 levels: the list object, items, 62 inside the item. */
	cr_assert_eq(run(ok, NULL, err, sizeof(err)), LIST_STREAM_OK, "%s",
	    err);
	cr_assert_eq(run(deep, NULL, err, sizeof(err)), LIST_STREAM_BAD);
	cr_assert(strstr(err, "not JSON: nesting too deep at byte") != NULL,
	    "%s", err);
	free(ok);
	free(deep);
}

Test(list_stream, bounds_on_an_item_the_other_members_and_the_body)
{
	struct list_stream_limits	 lim = { 200, 20, 40, 64 };
	char				 err[256];

	/* {"name":"0123456"} is 18 bytes; 21 with "789". */
	cr_assert_eq(run("{\"items\":[{\"name\":\"0123456\"},{\"name\":"
	    "\"01234567\"}]}", &lim, err, sizeof(err)), LIST_STREAM_OK, "%s",
	    err);
	cr_assert_eq(run("{\"items\":[{\"name\":\"0123456789\"}]}", &lim, err,
	    sizeof(err)), LIST_STREAM_BAD);
	cr_assert_str_eq(err, "an item larger than 20 bytes");
	cr_assert_eq(run("{\"items\":[],\"metadata\":{\"x\":\""
	    "0123456789012345678901234567890123456789\"}}", &lim, err,
	    sizeof(err)), LIST_STREAM_BAD);
	cr_assert(strstr(err, "other than items larger than 40 bytes") !=
	    NULL, "%s", err);
	lim.max_bytes = 30;
	cr_assert_eq(run("{\"items\":[{\"a\":1},{\"b\":2},{\"c\":3}]}", &lim,
	    err, sizeof(err)), LIST_STREAM_BAD);
	cr_assert_str_eq(err, "response larger than 30 bytes");
}

Test(list_stream, white_space_before_the_list_counts_toward_the_body_bound)
{
	struct list_stream_limits	 lim = { 1u << 20, 64, 64, 64 };
	struct list_stream		*ls;
	struct seen			 s;
	char				 spaces[4096];
	size_t				 fed = 0;
	enum list_stream_status		 st = LIST_STREAM_OK;

	memset(spaces, ' ', sizeof(spaces));
	ls = new_stream(&lim, &s);
	while (st == LIST_STREAM_OK && fed < (2u << 20)) {
		st = list_stream_feed(ls, spaces, sizeof(spaces));
		fed += sizeof(spaces);
	}
	cr_assert_eq(st, LIST_STREAM_BAD);
	cr_assert_eq(fed, (1u << 20) + sizeof(spaces));
	cr_assert_str_eq(list_stream_error(ls), "response larger than 1048576 "
	    "bytes");
	list_stream_free(ls);
}
