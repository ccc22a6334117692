/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `kuproxy status`: the running daemon answers on a unix socket (mode 0600,
 * so only its owner may ask) with one JSON document describing every
 * service port, its portals and proxy port, and its endpoints with their
 * counters; the command prints it as a table in the manner of `ipvsadm -Ln`,
 * or as is with --json.  The same socket answers `kuproxy explain`
 * (base/explain.h).
 */
#ifndef KUPROXY_STATUS_H
#define KUPROXY_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <json-c/json.h>

struct conf;
struct event_base;
struct proxier;

#define STATUS_FORMAT_VERSION	1

/* The document (formatVersion 1); the caller owns it. */
json_object	*status_document(struct proxier *, const struct conf *);

struct status_server;

/*
 * Listen on path (its directory is created 0700 if missing; a stale socket
 * is replaced).  Returns NULL with err.
 */
struct status_server *status_server_new(struct event_base *, const char *path,
		    struct proxier *, const struct conf *, char *err,
		    size_t errlen);
void		 status_server_free(struct status_server *);

/*
 * The client: ask the daemon at path and print its answer on stdout, as a
 * table or as JSON.  Returns the process exit status (0, or 1 with a message
 * on stderr).
 */
int		 status_client(const char *path, bool json);

/*
 * Send one request line ("status", "explain NS/NAME:PORT") to the daemon
 * at path and return the JSON document it answers (the caller's), or NULL
 * with a message in err when it cannot be reached or answers no JSON.
 */
json_object	*status_ask(const char *path, const char *request, char *err,
		    size_t errlen);

/* Print a status document as the table (separate for tests). */
void		 status_print_table(json_object *doc, FILE *out);

#endif
