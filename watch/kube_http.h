/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GET requests to the Kubernetes API server over libcurl's multi interface,
 * driven by a libevent base (curl's docs/examples/hiperfifo.c pattern): no
 * blocking call, no thread.  Body bytes are handed over as they arrive, so
 * a watch stream is consumed while it is open.
 */
#ifndef KUPROXY_KUBE_HTTP_H
#define KUPROXY_KUBE_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct kube_creds;
struct kube_http;
struct kube_http_req;

/* How a request ended. */
struct kube_http_result {
	long		 status;	/* HTTP status; 0 when none came */
	int		 curl_code;	/* CURLcode; 0 (CURLE_OK) for success */
	const char	*error;		/* NULL when the transfer completed */
	long		 retry_after_s;	/* Retry-After, 0 when absent */
	bool		 aborted;	/* on_data asked to stop */
	/* A 401, and the credentials now hold a token other than the one sent. */
	bool		 auth_renewed;
};

struct kube_http_cb {
	/*
	 * Body bytes (gzip already undone); status is the response's.
	 * Return 0 to go on, -1 to end the transfer (on_done follows, with
	 * aborted set).  Must not call kube_http_*.
	 */
	int	(*on_data)(const char *buf, size_t len, long status, void *arg);
	/* Called once, from the event loop; the request is gone afterwards. */
	void	(*on_done)(const struct kube_http_result *, void *arg);
	void	 *arg;
};

/*
 * A client for the server in creds, which must outlive it (the token cache
 * in it is updated).  Returns NULL with err (a bad server URL, curl could
 * not be set up).
 */
struct kube_http *kube_http_new(struct event_base *base,
			struct kube_creds *creds, char *err, size_t errlen);
void		 kube_http_free(struct kube_http *);

/*
 * Start GET server+path_query (path and query already URL-encoded).
 * timeout_ms bounds the whole transfer (0: none); stall_s ends a transfer
 * that receives nothing for that long (0: never; a watch, quiet between
 * bookmarks, gets a longer bound than a list).  Returns the request, or NULL with err; the callbacks are only
 * ever called from the event loop, never from here.
 */
struct kube_http_req *kube_http_get(struct kube_http *, const char *path_query,
			long timeout_ms, long stall_s,
			const struct kube_http_cb *cb, char *err, size_t errlen);

/* Stop a request without calling its callbacks.  Not from on_data. */
void		 kube_http_cancel(struct kube_http_req *);

#endif
