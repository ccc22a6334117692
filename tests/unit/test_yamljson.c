/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for base/yamljson.c: YAML 1.2 core-schema typing, multi-document
 * streams, refused anchors and aliases, line numbers, the JSON fast path and
 * its line:col errors, the nesting bound and the file reader's size bound.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <json-c/json.h>

#include "base/yamljson.h"

static json_object *
parse_ok(const char *text)
{
	json_object	*docs = NULL;
	char		 err[256];

	cr_assert_eq(yamljson_parse(text, strlen(text), &docs, err,
	    sizeof(err)), 0, "parse failed: %s", err);
	cr_assert_not_null(docs);
	return (docs);
}

static void
parse_fails(const char *text, const char *want)
{
	json_object	*docs = NULL;
	char		 err[256];

	cr_assert_eq(yamljson_parse(text, strlen(text), &docs, err,
	    sizeof(err)), -1, "parse of %s succeeded", text);
	cr_assert_null(docs);
	cr_assert(strstr(err, want) != NULL, "error \"%s\" lacks \"%s\"", err,
	    want);
}

/* The first document's value of key. */
static json_object *
first_doc_get(json_object *docs, const char *key)
{
	json_object	*doc, *v = NULL;

	doc = json_object_array_get_idx(docs, 0);
	cr_assert(json_object_is_type(doc, json_type_object));
	cr_assert(json_object_object_get_ex(doc, key, &v), "no key %s", key);
	return (v);
}

Test(yamljson, plain_scalars_typed_by_core_schema)
{
	json_object *d = parse_ok(
	    "n1: null\nn2: ~\nn3:\nn4: NULL\n"
	    "b1: true\nb2: False\nb3: TRUE\n"
	    "i1: 42\ni2: -7\ni3: 0o17\ni4: 0x1F\ni5: +3\n"
	    "f1: 1.5\nf2: -2e3\nf3: .5\nf4: .inf\nf5: .nan\n"
	    "s1: yes\ns2: 1.2.3\ns3: 0x\ns4: hello world\ns5: 10.96.0.1\n");

	cr_assert_null(first_doc_get(d, "n1"));
	cr_assert_null(first_doc_get(d, "n2"));
	cr_assert_null(first_doc_get(d, "n3"));
	cr_assert_null(first_doc_get(d, "n4"));
	cr_assert(json_object_is_type(first_doc_get(d, "b1"), json_type_boolean));
	cr_assert(json_object_get_boolean(first_doc_get(d, "b1")));
	cr_assert(!json_object_get_boolean(first_doc_get(d, "b2")));
	cr_assert(json_object_get_boolean(first_doc_get(d, "b3")));
	cr_assert_eq(json_object_get_int64(first_doc_get(d, "i1")), 42);
	cr_assert_eq(json_object_get_int64(first_doc_get(d, "i2")), -7);
	cr_assert_eq(json_object_get_int64(first_doc_get(d, "i3")), 15);
	cr_assert_eq(json_object_get_int64(first_doc_get(d, "i4")), 31);
	cr_assert_eq(json_object_get_int64(first_doc_get(d, "i5")), 3);
	cr_assert(json_object_is_type(first_doc_get(d, "i1"), json_type_int));
	cr_assert(json_object_is_type(first_doc_get(d, "f1"), json_type_double));
	cr_assert_float_eq(json_object_get_double(first_doc_get(d, "f1")), 1.5,
	    1e-9);
	cr_assert_float_eq(json_object_get_double(first_doc_get(d, "f2")),
	    -2000.0, 1e-9);
	cr_assert_float_eq(json_object_get_double(first_doc_get(d, "f3")), 0.5,
	    1e-9);
	cr_assert(isinf(json_object_get_double(first_doc_get(d, "f4"))));
	cr_assert(isnan(json_object_get_double(first_doc_get(d, "f5"))));
	/* YAML 1.1's yes/no are plain strings in 1.2. */
	cr_assert_str_eq(json_object_get_string(first_doc_get(d, "s1")), "yes");
	cr_assert_str_eq(json_object_get_string(first_doc_get(d, "s2")), "1.2.3");
	cr_assert_str_eq(json_object_get_string(first_doc_get(d, "s3")), "0x");
	cr_assert_str_eq(json_object_get_string(first_doc_get(d, "s5")),
	    "10.96.0.1");
	json_object_put(d);
}

Test(yamljson, quoted_and_block_scalars_are_strings)
{
	json_object *d = parse_ok("a: \"80\"\nb: 'true'\nc: \"\"\n"
	    "d: |\n  80\ne: >\n  null\n");

	cr_assert(json_object_is_type(first_doc_get(d, "a"), json_type_string));
	cr_assert_str_eq(json_object_get_string(first_doc_get(d, "a")), "80");
	cr_assert_str_eq(json_object_get_string(first_doc_get(d, "b")), "true");
	cr_assert(json_object_is_type(first_doc_get(d, "c"), json_type_string));
	cr_assert_str_eq(json_object_get_string(first_doc_get(d, "c")), "");
	cr_assert_str_eq(json_object_get_string(first_doc_get(d, "d")), "80\n");
	cr_assert_str_eq(json_object_get_string(first_doc_get(d, "e")),
	    "null\n");
	json_object_put(d);
}

Test(yamljson, core_schema_tags_are_honoured)
{
	json_object *d = parse_ok("a: !!str 80\nb: !!int \"42\"\n"
	    "c: !!float 3\nd: !!bool \"true\"\ne: !!null ''\nf: ! 12\n");

	cr_assert(json_object_is_type(first_doc_get(d, "a"), json_type_string));
	cr_assert_eq(json_object_get_int64(first_doc_get(d, "b")), 42);
	cr_assert(json_object_is_type(first_doc_get(d, "c"), json_type_double));
	cr_assert(json_object_get_boolean(first_doc_get(d, "d")));
	cr_assert_null(first_doc_get(d, "e"));
	cr_assert(json_object_is_type(first_doc_get(d, "f"), json_type_string));
	json_object_put(d);
	parse_fails("a: !!int abc\n", "1:4: \"abc\" is not a valid int");
	parse_fails("a: !custom x\n", "unsupported tag !custom");
}

Test(yamljson, big_decimal_becomes_double)
{
	json_object *d = parse_ok("a: 123456789012345678901234567890\n");

	cr_assert(json_object_is_type(first_doc_get(d, "a"), json_type_double));
	json_object_put(d);
}

Test(yamljson, multi_document_stream_is_an_array_without_empty_documents)
{
	json_object *d = parse_ok("---\na: 1\n---\n# nothing\n---\n- x\n...\n"
	    "---\nb: 2\n");

	cr_assert_eq(json_object_array_length(d), 3);
	cr_assert(json_object_is_type(json_object_array_get_idx(d, 1),
	    json_type_array));
	json_object_put(d);

	d = parse_ok("# only a comment\n");
	cr_assert_eq(json_object_array_length(d), 0);
	json_object_put(d);
	d = parse_ok("");
	cr_assert_eq(json_object_array_length(d), 0);
	json_object_put(d);
}

Test(yamljson, aliases_and_anchors_are_refused)
{
	parse_fails("a: &x [1, 2]\nb: *x\n", "1:4: anchors are not supported");
	parse_fails("a: *x\n", "");
	/* A billion-laughs document fails at once instead of expanding. */
	parse_fails("a: &a [\"lol\",\"lol\"]\nb: &b [*a,*a,*a,*a,*a]\n"
	    "c: &c [*b,*b,*b,*b,*b]\n", "anchors are not supported");
}

Test(yamljson, duplicate_and_complex_keys_are_refused)
{
	parse_fails("a: 1\nb: 2\na: 3\n", "3:4: duplicate key \"a\"");
	parse_fails("? [1, 2]\n: x\n", "mapping keys must be scalars");
}

Test(yamljson, keys_are_strings_whatever_they_look_like)
{
	json_object *d = parse_ok("80: http\ntrue: yes\n~: n\n");

	cr_assert_str_eq(json_object_get_string(first_doc_get(d, "80")), "http");
	cr_assert_not_null(first_doc_get(d, "true"));
	cr_assert_not_null(first_doc_get(d, "~"));
	json_object_put(d);
}

Test(yamljson, line_numbers_for_every_type)
{
	json_object *d = parse_ok("# comment\nmeta:\n  name: web\nspec:\n"
	    "  ports:\n  - port: 80\n    ok: true\n    f: 1.5\n");
	json_object *meta = first_doc_get(d, "meta");
	json_object *spec = first_doc_get(d, "spec");
	json_object *ports, *p0;

	cr_assert_eq(yamljson_line(json_object_array_get_idx(d, 0)), 2);
	cr_assert_eq(yamljson_line(meta), 3);
	cr_assert_eq(yamljson_line(json_object_object_get(meta, "name")), 3);
	ports = json_object_object_get(spec, "ports");
	cr_assert_eq(yamljson_line(ports), 6);
	p0 = json_object_array_get_idx(ports, 0);
	cr_assert_eq(yamljson_line(p0), 6);
	cr_assert_eq(yamljson_line(json_object_object_get(p0, "port")), 6);
	cr_assert_eq(yamljson_line(json_object_object_get(p0, "ok")), 7);
	cr_assert_eq(yamljson_line(json_object_object_get(p0, "f")), 8);
	cr_assert_eq(yamljson_line(NULL), 0);

	/* Lines survive reference counting and do not disturb serialization. */
	json_object_get(p0);
	json_object_put(d);
	cr_assert_eq(yamljson_line(p0), 6);
	cr_assert_str_eq(json_object_to_json_string_ext(p0,
	    JSON_C_TO_STRING_PLAIN), "{\"port\":80,\"ok\":true,\"f\":1.5}");
	json_object_put(p0);
}

Test(yamljson, json_fast_path_parses_and_carries_no_lines)
{
	json_object *d = parse_ok("  \n{\"a\": [1, 2.50, \"x\", null, true]}\n");
	json_object *a = first_doc_get(d, "a");

	cr_assert_eq(json_object_array_length(a), 5);
	cr_assert_eq(yamljson_line(a), 0);
	/* json-c keeps its own text in the userdata of doubles it parsed. */
	cr_assert_eq(yamljson_line(json_object_array_get_idx(a, 1)), 0);
	cr_assert_str_eq(json_object_to_json_string_ext(a,
	    JSON_C_TO_STRING_PLAIN), "[1,2.50,\"x\",null,true]");
	json_object_put(d);

	d = parse_ok("{\"a\":1}\n{\"b\":2}\n[3]");
	cr_assert_eq(json_object_array_length(d), 3);
	json_object_put(d);
}

Test(yamljson, json_errors_report_line_and_column)
{
	parse_fails("{\n  \"a\": 1,\n  \"b\": ]\n}\n", "3:8: ");
	parse_fails("{\n  \"a\": [1, 2\n", "3:1: unexpected end of input");
	parse_fails("[1, 2] garbage", "1:8: ");
}

Test(yamljson, flow_yaml_that_looks_like_json_still_parses)
{
	json_object *d = parse_ok("{a: 1, b: [x, y]}\n");

	cr_assert_eq(json_object_get_int64(first_doc_get(d, "a")), 1);
	json_object_put(d);
}

Test(yamljson, yaml_syntax_errors_report_line_and_column)
{
	parse_fails("a: 1\nb: [1, 2\nc: 3\n", "");
	parse_fails("a: 1\n b: 2\n", "2:");
}

static char *
nested(const char *open, const char *close, int depth)
{
	size_t	 n = strlen(open) * depth + strlen(close) * depth + 1;
	char	*s = calloc(1, n);
	int	 i;

	for (i = 0; i < depth; i++)
		strcat(s, open);
	for (i = 0; i < depth; i++)
		strcat(s, close);
	return (s);
}

Test(yamljson, nesting_is_bounded)
{
	char		*ok = nested("[", "]", 60), *deep = nested("[", "]", 200);
	char		*yaml_deep = nested("- ", "", 100);
	json_object	*d;

	d = parse_ok(ok);
	json_object_put(d);
	parse_fails(deep, "");
	/* "- - - ... " as YAML is a sequence nested 100 levels deep. */
	parse_fails(yaml_deep, "nested deeper than 64 levels");
	free(ok);
	free(deep);
	free(yaml_deep);
}

static char *
tmp_file(const char *content)
{
	char	*path;
	FILE	*f;

	cr_assert_neq(asprintf(&path, "/tmp/test_yamljson.%d.%ld", getpid(),
	    random()), -1);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(content, f);
	fclose(f);
	return (path);
}

Test(yamljson, read_file_is_bounded)
{
	char	*path = tmp_file("0123456789"), *buf, err[256];
	size_t	 len;

	buf = yamljson_read_file(path, 10, &len, err, sizeof(err));
	cr_assert_not_null(buf, "%s", err);
	cr_assert_eq(len, 10);
	cr_assert_str_eq(buf, "0123456789");
	free(buf);
	buf = yamljson_read_file(path, 9, &len, err, sizeof(err));
	cr_assert_null(buf);
	cr_assert(strstr(err, "larger than 9 bytes") != NULL, "%s", err);
	unlink(path);
	buf = yamljson_read_file(path, 9, &len, err, sizeof(err));
	cr_assert_null(buf);
	cr_assert_eq(errno, ENOENT);
	cr_assert(strstr(err, path) != NULL);
	free(path);
	buf = yamljson_read_file("/tmp", 100, &len, err, sizeof(err));
	cr_assert_null(buf);
	cr_assert(strstr(err, "not a regular file") != NULL, "%s", err);
}

Test(yamljson, kubectl_fixtures_parse_both_ways)
{
	char		*buf, err[256];
	size_t		 len;
	json_object	*dj, *dy;

	buf = yamljson_read_file(TEST_DATA_DIR "/services-list.json", 1 << 24,
	    &len, err, sizeof(err));
	cr_assert_not_null(buf, "%s", err);
	cr_assert_eq(yamljson_parse(buf, len, &dj, err, sizeof(err)), 0, "%s",
	    err);
	free(buf);
	buf = yamljson_read_file(TEST_DATA_DIR "/services-list.yaml", 1 << 24,
	    &len, err, sizeof(err));
	cr_assert_not_null(buf, "%s", err);
	cr_assert_eq(yamljson_parse(buf, len, &dy, err, sizeof(err)), 0, "%s",
	    err);
	free(buf);
	/* The same objects, whichever path they took. */
	cr_assert(json_object_equal(dj, dy));
	json_object_put(dj);
	json_object_put(dy);
}

/* A large JSON list takes json-c's path whole; speed is the benchmarks'. */
Test(yamljson, big_json_file_parses_whole)
{
	size_t		 cap = 16 << 20, len = 0, i;
	char		*buf = malloc(cap), err[256];
	json_object	*docs, *items;

	cr_assert_not_null(buf);
	len += snprintf(buf + len, cap - len, "{\"kind\":\"List\",\"items\":[");
	for (i = 0; i < 20000; i++)
		len += snprintf(buf + len, cap - len, "%s{\"kind\":\"Service\","
		    "\"metadata\":{\"name\":\"svc-%zu\",\"namespace\":\"ns\","
		    "\"labels\":{\"app\":\"a%zu\"}},\"spec\":{\"clusterIP\":"
		    "\"10.%zu.%zu.1\",\"ports\":[{\"name\":\"http\",\"port\":80,"
		    "\"targetPort\":8080,\"protocol\":\"TCP\"}]}}", i ? "," : "",
		    i, i, i / 256, i % 256);
	len += snprintf(buf + len, cap - len, "]}");
	cr_assert_eq(yamljson_parse(buf, len, &docs, err, sizeof(err)), 0);
	cr_assert_eq(json_object_array_length(docs), 1);
	cr_assert(json_object_object_get_ex(json_object_array_get_idx(docs, 0),
	    "items", &items));
	cr_assert_eq(json_object_array_length(items), 20000);
	json_object_put(docs);
	free(buf);
}

/* Splitting a JSON list into its items. */

Test(yamljson, split_list_gives_head_and_item_spans)
{
	const char		*text = "\xef\xbb\xbf { \"kind\": \"List\", "
				    "\"items\": [ {\"a\": \"x]}\\\"\"} ,\n"
				    "[1, {\"b\": 2}], \"s\" ],"
				    " \"metadata\": {\"rv\": \"1\"} }\n";
	struct yamljson_list	 l;
	json_object		*o, *v;

	cr_assert_eq(yamljson_split_list(text, strlen(text), &l), 0);
	cr_assert_eq(l.n_items, 3);
	cr_assert_eq(l.item_lens[0], strlen("{\"a\": \"x]}\\\"\"}"));
	cr_assert_eq(strncmp(l.items[1], "[1, {\"b\": 2}]", l.item_lens[1]),
	    0);
	cr_assert_eq(strncmp(l.items[2], "\"s\"", l.item_lens[2]), 0);
	cr_assert(json_object_object_get_ex(l.head, "metadata", NULL));
	cr_assert(json_object_object_get_ex(l.head, "items", &v));
	cr_assert_eq(json_object_array_length(v), 0, "items cut out");
	o = yamljson_list_item(&l, 0);
	cr_assert_not_null(o);
	cr_assert(json_object_object_get_ex(o, "a", &v));
	cr_assert_str_eq(json_object_get_string(v), "x]}\"");
	json_object_put(o);
	yamljson_list_clear(&l);
}

Test(yamljson, split_list_without_items_and_empty_items)
{
	struct yamljson_list	 l;
	const char		*none = "{\"kind\": \"List\"}";
	const char		*empty = "{\"items\": [ ], \"kind\": \"List\"}";

	cr_assert_eq(yamljson_split_list(none, strlen(none), &l), 0);
	cr_assert_eq(l.n_items, 0);
	yamljson_list_clear(&l);
	cr_assert_eq(yamljson_split_list(empty, strlen(empty), &l), 0);
	cr_assert_eq(l.n_items, 0);
	yamljson_list_clear(&l);
}

Test(yamljson, split_list_refuses_what_the_plain_parser_must_judge)
{
	static const char	*bad[] = {
		"[{\"kind\": \"List\"}]",			/* not an object */
		"kind: List\nitems: []\n",			/* YAML */
		"{\"items\": [{\"a\": 1}, ]}",			/* trailing comma */
		"{\"items\": [{\"a\": 1}}",			/* unclosed */
		"{\"items\": [], \"items\": []}",		/* twice */
		"{\"items\": [1]} {\"items\": []}",		/* two texts */
		"{\"it\\u0065ms\": [1], \"kind\": \"List\"}",	/* escaped key */
		"{\"items\": [{\"a\": \"unterminated}]}",
	};
	struct yamljson_list	 l;
	size_t			 i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(yamljson_split_list(bad[i], strlen(bad[i]), &l),
		    -1, "%s", bad[i]);
		cr_assert_eq(l.n_items, 0);
		cr_assert_null(l.head);
	}
}

Test(yamljson, list_item_that_is_not_valid_json_is_null)
{
	const char		*text = "{\"items\": [{\"a\": tru}, {\"b\": 1}]}";
	struct yamljson_list	 l;
	json_object		*o;

	cr_assert_eq(yamljson_split_list(text, strlen(text), &l), 0);
	cr_assert_eq(l.n_items, 2);
	cr_assert_null(yamljson_list_item(&l, 0));
	o = yamljson_list_item(&l, 1);
	cr_assert_not_null(o, "the tokener is reset between items");
	json_object_put(o);
	cr_assert_null(yamljson_list_item(&l, 2));
	yamljson_list_clear(&l);
}
