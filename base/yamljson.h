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

/* The line an object started on, or 0 when unknown. */
int	yamljson_line(json_object *obj);

/* Read a whole file into a NUL-terminated buffer (max_bytes bound); NULL + err. */
char	*yamljson_read_file(const char *path, size_t max_bytes, size_t *len,
	    char *err, size_t errlen);

#endif
