/* SPDX-License-Identifier: Apache-2.0 */
/*
 * YAML (and JSON, which is YAML) text to json-c objects, through libyaml.
 * Used by the service file, the config file and kubeconfig readers so that
 * one JSON-shaped decoder serves every format.  Plain scalars are typed as
 * YAML 1.2's core schema does (null, true/false, integers, floats); quoted
 * scalars are strings.  Anchors and aliases are refused (alias bombs).  Each
 * produced object carries the 1-based line it started on, for messages.
 */
#ifndef KUPROXY_YAMLJSON_H
#define KUPROXY_YAMLJSON_H

#include <stddef.h>

#include <json-c/json.h>

/*
 * Parse every document in buf (len bytes).  On success returns 0 and stores
 * a json array of the documents (empty documents left out) in *docs, owned by
 * the caller.  On failure returns -1 with "LINE:COL: problem" in err.  Input
 * starting with '{' or '[' is parsed with json-c directly (faster for large
 * files); its objects then carry no line numbers.
 */
int	yamljson_parse(const char *buf, size_t len, json_object **docs,
	    char *err, size_t errlen);

/*
 * A JSON document holding one object with an "items" array (what `kubectl
 * get -o json` prints for several objects), split without building its
 * whole tree, so that a reader can parse, and skip, item by item.
 */
struct yamljson_list {
	json_object	*head;		/* the document, its items left empty */
	const char	**items;	/* each item's text inside the buffer */
	size_t		 *item_lens;
	size_t		  n_items;
	json_tokener	 *tok;		/* reused for every item */
};

/*
 * Split buf (len bytes, one JSON object after an optional byte order mark
 * and white space) into the list's head and the spans of its items; the
 * spans point into buf.  Returns 0, or -1 when buf is not such a document
 * or is not well-formed where the splitter looks; the caller then parses it
 * whole with yamljson_parse() to get the right message.  Free with
 * yamljson_list_clear().
 */
int	yamljson_split_list(const char *buf, size_t len,
	    struct yamljson_list *out);
void	yamljson_list_clear(struct yamljson_list *);

/* Parse item i of l: a new object, or NULL when it is not valid JSON. */
json_object *yamljson_list_item(struct yamljson_list *l, size_t i);

/* Parse exactly one JSON value from p (len bytes), or NULL. */
json_object *yamljson_parse_one(const char *p, size_t len);

/* The line an object started on, or 0 when unknown. */
int	yamljson_line(json_object *obj);

/* Read a whole file into a NUL-terminated buffer (max_bytes bound); NULL + err. */
char	*yamljson_read_file(const char *path, size_t max_bytes, size_t *len,
	    char *err, size_t errlen);

#endif
