/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libcurl's multi interface on a libevent base, for the Kubernetes API.
 *
 * This module owns the transport: one CURLM whose sockets and timer are
 * libevent events (curl docs/examples/hiperfifo.c), and one easy handle per
 * GET with kube-proxy's client settings: TLS verified against the
 * kubeconfig's CA (file or in-memory blob), a client certificate and key
 * (file or blob), tls-server-name through CURLOPT_CONNECT_TO, a bearer
 * token taken fresh from the credential cache for every request, HTTP/2
 * when the server offers it (both watches then share one connection),
 * gzip, JSON, TCP keepalive.  A 401 makes the credential cache re-read the
 * token file.  What the bytes mean is watch/informer.c's business.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "base/clock.h"
#include "base/log.h"
#include "watch/kube_http.h"
#include "watch/kubeconfig.h"

#define KUBE_HTTP_CONNECT_TIMEOUT_MS	10000
#define KUBE_HTTP_KEEPIDLE_S		30
#define KUBE_HTTP_KEEPINTVL_S		15

struct kube_http {
	struct event_base	*base;
	struct kube_creds	*creds;
	CURLM			*multi;
	struct event		*timer;
	char			*base_url;	/* scheme://host[:port][/prefix] */
	char			*connect_to;	/* for tls-server-name, or NULL */
	int			 running;
};

/* libevent's view of one socket curl uses. */
struct kube_http_sock {
	struct kube_http	*kh;
	curl_socket_t		 fd;
	struct event		*ev;
};

struct kube_http_req {
	struct kube_http	*kh;
	CURL			*easy;
	struct curl_slist	*headers;
	struct curl_slist	*connect_to;
	struct kube_http_cb	 cb;
	char			*token;		/* the one sent, or NULL */
	bool			 aborted;
	char			 errbuf[CURL_ERROR_SIZE];
};

static void
kube_http_req_free(struct kube_http_req *req)
{
	if (req->easy != NULL)
		curl_easy_cleanup(req->easy);
	curl_slist_free_all(req->headers);
	curl_slist_free_all(req->connect_to);
	if (req->token != NULL)
		explicit_bzero(req->token, strlen(req->token));
	free(req->token);
	free(req);
}

/* Hand every finished transfer to its owner. */
static void
kube_http_check_done(struct kube_http *kh)
{
	struct kube_http_result	 res;
	struct kube_http_req	*req;
	CURLMsg			*msg;
	CURLcode		 code;
	curl_off_t		 ra = 0;
	const char		*tok;
	char			*priv;
	int			 left;

	while ((msg = curl_multi_info_read(kh->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		code = msg->data.result;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
		req = (struct kube_http_req *)(void *)priv;
		memset(&res, 0, sizeof(res));
		curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE,
		    &res.status);
		if (curl_easy_getinfo(req->easy, CURLINFO_RETRY_AFTER, &ra) ==
		    CURLE_OK && ra > 0)
			res.retry_after_s = (long)ra;
		res.curl_code = (int)code;
		res.aborted = req->aborted;
		if (code != CURLE_OK)
			res.error = req->errbuf[0] != '\0' ? req->errbuf :
			    curl_easy_strerror(code);
		if (code == CURLE_PEER_FAILED_VERIFICATION) {
			/* Say where the CA came from: the usual culprit. */
			snprintf(req->errbuf + strlen(req->errbuf),
			    sizeof(req->errbuf) - strlen(req->errbuf),
			    " (the server's certificate does not verify "
			    "against the CA of %s)", kh->creds->origin != NULL ?
			    kh->creds->origin : "the configuration");
			res.error = req->errbuf;
		}
		curl_multi_remove_handle(kh->multi, req->easy);
		if (res.status == 401) {
			/*
			 * The token was revoked or rotated: re-read it now, so
			 * that the owner can retry at once if it changed.
			 */
			kube_creds_token_invalidate(kh->creds);
			tok = kube_creds_token(kh->creds, clock_mono_ms());
			res.auth_renewed = tok != NULL && (req->token == NULL ||
			    strcmp(tok, req->token) != 0);
		}
		req->cb.on_done(&res, req->cb.arg);
		kube_http_req_free(req);
	}
}

static void
kube_http_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct kube_http	*kh = arg;
	int			 action;

	action = (what & EV_READ ? CURL_CSELECT_IN : 0) |
	    (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
	curl_multi_socket_action(kh->multi, fd, action, &kh->running);
	kube_http_check_done(kh);
}

static void
kube_http_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct kube_http	*kh = arg;

	curl_multi_socket_action(kh->multi, CURL_SOCKET_TIMEOUT, 0,
	    &kh->running);
	kube_http_check_done(kh);
}

/* CURLMOPT_TIMERFUNCTION: curl wants to be called after timeout_ms. */
static int
kube_http_set_timer(CURLM *multi, long timeout_ms, void *arg)
{
	struct kube_http	*kh = arg;
	struct timeval		 tv;

	if (timeout_ms < 0) {
		evtimer_del(kh->timer);
		return (0);
	}
	/* 0 too goes through the loop: curl must not be re-entered here. */
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	return (evtimer_add(kh->timer, &tv) == 0 ? 0 : -1);
}

/* CURLMOPT_SOCKETFUNCTION: watch s for what curl asks, or stop. */
static int
kube_http_set_sock(CURL *easy, curl_socket_t s, int what, void *arg,
    void *sockp)
{
	struct kube_http	*kh = arg;
	struct kube_http_sock	*ks = sockp;
	short			 kind;

	if (what == CURL_POLL_REMOVE) {
		if (ks != NULL) {
			event_free(ks->ev);
			free(ks);
		}
		curl_multi_assign(kh->multi, s, NULL);
		return (0);
	}
	kind = EV_PERSIST | (what & CURL_POLL_IN ? EV_READ : 0) |
	    (what & CURL_POLL_OUT ? EV_WRITE : 0);
	if (ks == NULL) {
		if ((ks = calloc(1, sizeof(*ks))) == NULL)
			return (-1);
		ks->kh = kh;
		ks->fd = s;
		curl_multi_assign(kh->multi, s, ks);
	} else if (ks->ev != NULL) {
		event_free(ks->ev);
		ks->ev = NULL;
	}
	if ((ks->ev = event_new(kh->base, s, kind, kube_http_event_cb, kh)) ==
	    NULL || event_add(ks->ev, NULL) == -1)
		return (-1);
	return (0);
}

/*
 * The base URL, and for tls-server-name a CONNECT_TO entry: the URL names
 * the server by that name (so that it is what TLS sends and verifies) while
 * the connection goes to the real host and port.
 */
static int
kube_http_parse_server(struct kube_http *kh, char *err, size_t errlen)
{
	struct kube_creds	*c = kh->creds;
	CURLU			*u;
	char			*host = NULL, *port = NULL, *url = NULL;
	size_t			 n;
	int			 rc = -1;

	if ((u = curl_url()) == NULL) {
		snprintf(err, errlen, "out of memory");
		return (-1);
	}
	if (curl_url_set(u, CURLUPART_URL, c->server, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) !=
	    CURLUE_OK) {
		snprintf(err, errlen, "server %s: not a valid URL", c->server);
		goto out;
	}
	if (c->tls_server_name != NULL) {
		if (asprintf(&kh->connect_to, "%s:%s:%s:%s",
		    c->tls_server_name, port, host, port) == -1) {
			kh->connect_to = NULL;
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		if (curl_url_set(u, CURLUPART_HOST, c->tls_server_name, 0) !=
		    CURLUE_OK || curl_url_set(u, CURLUPART_PORT, port, 0) !=
		    CURLUE_OK) {
			snprintf(err, errlen, "tls-server-name %s: not a host "
			    "name", c->tls_server_name);
			goto out;
		}
	}
	if (curl_url_get(u, CURLUPART_URL, &url, 0) != CURLUE_OK ||
	    (kh->base_url = strdup(url)) == NULL) {
		snprintf(err, errlen, "server %s: not a valid URL", c->server);
		goto out;
	}
	/* Paths are appended whole: drop the slash curl normalises to. */
	for (n = strlen(kh->base_url); n > 0 && kh->base_url[n - 1] == '/';
	    n--)
		kh->base_url[n - 1] = '\0';
	rc = 0;
 out:
	curl_free(host);
	curl_free(port);
	curl_free(url);
	curl_url_cleanup(u);
	return (rc);
}

/*
 * A client for creds->server on base.  Returns NULL with err when the URL
 * is bad or curl cannot be set up.  creds must outlive the client.
 */
struct kube_http *
kube_http_new(struct event_base *base, struct kube_creds *creds, char *err,
    size_t errlen)
{
	struct kube_http	*kh;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, errlen, "libcurl initialisation failed");
		return (NULL);
	}
	if ((kh = calloc(1, sizeof(*kh))) == NULL) {
		curl_global_cleanup();
		snprintf(err, errlen, "out of memory");
		return (NULL);
	}
	kh->base = base;
	kh->creds = creds;
	if (kube_http_parse_server(kh, err, errlen) == -1)
		goto fail;
	if ((kh->multi = curl_multi_init()) == NULL ||
	    (kh->timer = evtimer_new(base, kube_http_timer_cb, kh)) == NULL) {
		snprintf(err, errlen, "cannot set up libcurl on the event "
		    "loop");
		goto fail;
	}
	curl_multi_setopt(kh->multi, CURLMOPT_SOCKETFUNCTION,
	    kube_http_set_sock);
	curl_multi_setopt(kh->multi, CURLMOPT_SOCKETDATA, kh);
	curl_multi_setopt(kh->multi, CURLMOPT_TIMERFUNCTION,
	    kube_http_set_timer);
	curl_multi_setopt(kh->multi, CURLMOPT_TIMERDATA, kh);
	curl_multi_setopt(kh->multi, CURLMOPT_PIPELINING,
	    (long)CURLPIPE_MULTIPLEX);
	if (creds->insecure)
		log_warnx("API server %s: insecure-skip-tls-verify is set in "
		    "%s: the server's certificate is NOT verified",
		    creds->server, creds->origin != NULL ? creds->origin :
		    "the kubeconfig");
	if (strncmp(kh->base_url, "http://", 7) == 0)
		log_warnx("API server %s: plain HTTP, no TLS", creds->server);
	return (kh);
 fail:
	kube_http_free(kh);
	return (NULL);
}

/*
 * Free the client: every request still running is dropped without
 * callbacks (the owner has cancelled its own first, normally).
 */
void
kube_http_free(struct kube_http *kh)
{
	if (kh == NULL)
		return;
	if (kh->multi != NULL)
		curl_multi_cleanup(kh->multi);
	if (kh->timer != NULL)
		event_free(kh->timer);
	free(kh->base_url);
	free(kh->connect_to);
	free(kh);
	curl_global_cleanup();
}

static int
kube_http_blob(CURL *easy, CURLoption opt, char *data, size_t len)
{
	struct curl_blob	 blob = { data, len, CURL_BLOB_COPY };

	return (curl_easy_setopt(easy, opt, &blob) == CURLE_OK ? 0 : -1);
}

/* TLS: verification always on unless the kubeconfig says otherwise. */
static int
kube_http_tls(struct kube_http_req *req, struct kube_creds *c)
{
	CURL	*e = req->easy;
	int	 bad = 0;

	if (c->insecure) {
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	} else {
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	}
	if (c->ca_data != NULL)
		bad |= kube_http_blob(e, CURLOPT_CAINFO_BLOB, c->ca_data,
		    c->ca_data_len);
	else if (c->ca_file != NULL)
		bad |= curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file) !=
		    CURLE_OK;
	if (c->client_cert_data != NULL) {
		bad |= kube_http_blob(e, CURLOPT_SSLCERT_BLOB,
		    c->client_cert_data, c->client_cert_data_len);
		curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
	} else if (c->client_cert_file != NULL)
		bad |= curl_easy_setopt(e, CURLOPT_SSLCERT,
		    c->client_cert_file) != CURLE_OK;
	if (c->client_key_data != NULL) {
		bad |= kube_http_blob(e, CURLOPT_SSLKEY_BLOB,
		    c->client_key_data, c->client_key_data_len);
		curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
	} else if (c->client_key_file != NULL)
		bad |= curl_easy_setopt(e, CURLOPT_SSLKEY,
		    c->client_key_file) != CURLE_OK;
	if (req->kh->connect_to != NULL) {
		if ((req->connect_to = curl_slist_append(NULL,
		    req->kh->connect_to)) == NULL)
			return (-1);
		curl_easy_setopt(e, CURLOPT_CONNECT_TO, req->connect_to);
	}
	return (bad ? -1 : 0);
}

static size_t
kube_http_write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct kube_http_req	*req = arg;
	size_t			 n = size * nmemb;
	long			 status = 0;

	curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
	if (req->cb.on_data(ptr, n, status, req->cb.arg) == -1) {
		req->aborted = true;
		return (n == 0 ? 1 : 0);	/* anything but n ends it */
	}
	return (n);
}

static int
kube_http_headers(struct kube_http_req *req, const char *token)
{
	struct curl_slist	*h;
	char			*auth;

	if ((h = curl_slist_append(NULL, "Accept: application/json")) == NULL)
		return (-1);
	req->headers = h;
	if (token != NULL) {
		if ((req->token = strdup(token)) == NULL)
			return (-1);
		if (asprintf(&auth, "Authorization: Bearer %s", token) == -1)
			return (-1);
		h = curl_slist_append(req->headers, auth);
		explicit_bzero(auth, strlen(auth));
		free(auth);
		if (h == NULL)
			return (-1);
		req->headers = h;
	}
	curl_easy_setopt(req->easy, CURLOPT_HTTPHEADER, req->headers);
	return (0);
}

/*
 * Start GET base_url + path_query; see kube_http.h.  Returns the request,
 * or NULL with err.
 */
struct kube_http_req *
kube_http_get(struct kube_http *kh, const char *path_query, long timeout_ms,
    long stall_s, const struct kube_http_cb *cb, char *err, size_t errlen)
{
	struct kube_http_req	*req;
	CURL			*e;
	char			*url = NULL;

	if ((req = calloc(1, sizeof(*req))) == NULL)
		goto nomem;
	req->kh = kh;
	req->cb = *cb;
	if ((req->easy = e = curl_easy_init()) == NULL ||
	    asprintf(&url, "%s%s", kh->base_url, path_query) == -1) {
		url = NULL;
		goto nomem;
	}
	curl_easy_setopt(e, CURLOPT_URL, url);
	free(url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)(void *)req);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->errbuf);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, kube_http_write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
	    (long)CURL_HTTP_VERSION_2TLS);
	curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_USERAGENT, "kuproxy/" PACKAGE_VERSION);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, (long)KUBE_HTTP_KEEPIDLE_S);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL,
	    (long)KUBE_HTTP_KEEPINTVL_S);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
	    (long)KUBE_HTTP_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
	if (stall_s > 0) {
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, stall_s);
	}
	if (kube_http_tls(req, kh->creds) == -1) {
		snprintf(err, errlen, "cannot set up TLS (libcurl too old for "
		    "in-memory certificates?)");
		goto fail;
	}
	if (kube_http_headers(req,
	    kube_creds_token(kh->creds, clock_mono_ms())) == -1)
		goto nomem;
	if (curl_multi_add_handle(kh->multi, e) != CURLM_OK) {
		snprintf(err, errlen, "cannot start the request");
		goto fail;
	}
	return (req);
 nomem:
	snprintf(err, errlen, "out of memory");
 fail:
	if (req != NULL)
		kube_http_req_free(req);
	return (NULL);
}

/* Stop req at once; no callback follows.  Not from inside on_data. */
void
kube_http_cancel(struct kube_http_req *req)
{
	if (req == NULL)
		return;
	curl_multi_remove_handle(req->kh->multi, req->easy);
	kube_http_req_free(req);
}
