/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kubernetes JSON objects to the neutral types of base/svc.h.  The only
 * module that knows the shape of Service and EndpointSlice objects.  Pure:
 * no I/O, no globals, fuzzable.
 *
 * Every function that can fail takes err/errlen and writes one message that
 * names the object and the field, e.g.
 *   "default/web: spec.ports[0].port: 70000 is out of range 1-65535".
 */
#ifndef KUPROXY_DECODE_H
#define KUPROXY_DECODE_H

#include <stddef.h>

#include <json-c/json.h>

struct svc;
struct slice;

enum decode_kind {
	DECODE_SERVICE = 0,
	DECODE_ENDPOINT_SLICE,
	DECODE_OTHER,		/* a kind kuproxy does not use: ignored */
};

/* The kind of an object (from "kind", or from a list's kind for its items). */
enum decode_kind decode_kind_of(json_object *obj, const char *list_kind);

/*
 * A core/v1 Service.  Returns a new svc (refcnt 1, ports without endpoints)
 * or NULL with err.  Services kube-proxy skips (headless, ExternalName,
 * service-proxy-name) decode fine, with svc->skip set.  SCTP ports are kept
 * (the proxier skips them with a warning).
 */
struct svc	*decode_service(json_object *obj, char *err, size_t errlen);

/* A discovery.k8s.io/v1 EndpointSlice.  FQDN slices are returned empty. */
struct slice	*decode_endpoint_slice(json_object *obj, char *err, size_t errlen);

/*
 * Where decoded objects go.  Each callback takes ownership of the object.
 * on_error is called once per object that failed to decode, with the message;
 * decoding goes on with the next object.
 */
struct decode_sink {
	void	(*on_service)(struct svc *, void *arg);
	void	(*on_slice)(struct slice *, void *arg);
	void	(*on_error)(const char *msg, void *arg);
	void	 *arg;
};

/*
 * Decode a document: a single object, a List/ServiceList/EndpointSliceList
 * (items[]), or an array of those.  `where` prefixes messages (a file name).
 * Returns the number of objects that failed (0 = all good), or -1 when the
 * document itself is not a Kubernetes object or list (message in err).
 */
int		 decode_document(json_object *doc, const char *where,
		    const struct decode_sink *sink, char *err, size_t errlen);

#endif
