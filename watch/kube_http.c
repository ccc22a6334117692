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
 * gzip, JSON, TLS 1.2 or newer (client-go's minimum).  It also owns the
 * liveness of a transfer: a dead peer (a black-holed connection) is
 * dropped by TCP keepalive and TCP_USER_TIMEOUT within
 * KUBE_HTTP_DEAD_PEER_S, and a live peer that sends nothing by the
 * request's idle bound (stall_s).  And it owns the pace at which body
 * bytes reach the owner: at most KUBE_HTTP_TURN_BYTES per request per turn
 * of the event loop, so that a large list (or a gzip bomb) is taken in
 * slices with the loop serving everything else in between.  Errors name
 * the server and, where the cause is a usual one, say what it probably
 * is.  A 401 makes the
 * credential cache re-read the token file.  What the bytes mean is
 * watch/informer.c's business.
 */
#include "config.h"

#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
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
/*
 * A connection whose peer vanished without a FIN or RST (a black hole: a
 * dead NAT entry, a dropped route) is closed this long after the last
 * thing it received: keepalive probes start after two thirds of it idle,
 * one more follows after the last third, and TCP_USER_TIMEOUT closes the
 * connection when neither is answered (it overrides the probe count, and
 * covers data sent and not acknowledged too).  30 s + 15 s is what Go
 * clients get from their HTTP/2 ping (k/k#95981); without the user timeout
 * Linux would wait for 9 unanswered probes, 30 s + 9 x 15 s.
 */
#define KUBE_HTTP_DEAD_PEER_S		45
/*
 * The tests cannot wait for minutes: these variables shorten (never
 * lengthen or disable) the dead-peer bound and the idle bound (stall_s) of
 * every request that has one.  Seconds; values out of range are ignored
 * with a warning.
 */
#define KUBE_HTTP_ENV_DEAD_PEER		"KUPROXY_TEST_API_DEAD_PEER_S"
#define KUBE_HTTP_ENV_IDLE		"KUPROXY_TEST_API_IDLE_S"
#define KUBE_HTTP_MIN_DEAD_PEER_S	3
#define KUBE_HTTP_MAX_IDLE_CAP_S	600
/*
 * Body bytes handed to the owner per request per turn of the event loop.
 * The owner parses and decodes them at once (a list item costs a few
 * microseconds per hundred bytes), so this bounds the time one turn
 * spends on a transfer to a few milliseconds; beyond it the transfer is
 * paused (CURL_WRITEFUNC_PAUSE) and resumed from a zero timeout, which
 * the loop runs after the I/O that became ready meanwhile.  Bytes libcurl
 * gives back when resumed (the rest of what it had read and inflated) are
 * held here and handed over in the same slices, rather than paused again:
 * libcurl would copy its whole remainder at every pause.
 */
#define KUBE_HTTP_TURN_BYTES		(64u * 1024)

struct kube_http {
	struct event_base	*base;
	struct kube_creds	*creds;
	CURLM			*multi;
	struct event		*timer;
	char			*base_url;	/* scheme://host[:port][/prefix] */
	char			*connect_to;	/* for tls-server-name, or NULL */
	int			 running;
	long			 dead_peer_s;	/* KUBE_HTTP_DEAD_PEER_S, or shorter */
	long			 idle_cap_s;	/* caps stall_s; 0: no cap */
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
	/* The idle bound: no byte for idle_s ends the transfer. */
	struct event		*idle_ev;
	long			 idle_s;
	long long		 last_data_ms;
	/* The per-turn budget: see KUBE_HTTP_TURN_BYTES. */
	struct event		*turn_ev;	/* a zero timeout: the next turn */
	size_t			 turn_bytes;	/* handed over this turn */
	bool			 paused;	/* we returned CURL_WRITEFUNC_PAUSE */
	bool			 resuming;	/* inside curl_easy_pause(CONT) */
	char			*held;		/* bytes libcurl gave back */
	size_t			 held_len, held_off, held_cap;
	bool			 done_held;	/* curl finished; bytes still held */
	CURLcode		 done_code;
	char			 errbuf[CURL_ERROR_SIZE];
	char			 why[CURL_ERROR_SIZE + 512];
};

static void
kube_http_req_free(struct kube_http_req *req)
{
	if (req->idle_ev != NULL)
		event_free(req->idle_ev);
	if (req->turn_ev != NULL)
		event_free(req->turn_ev);
	free(req->held);
	if (req->easy != NULL)
		curl_easy_cleanup(req->easy);
	curl_slist_free_all(req->headers);
	curl_slist_free_all(req->connect_to);
	if (req->token != NULL)
		explicit_bzero(req->token, strlen(req->token));
	free(req->token);
	free(req);
}

/*
 * What probably lies behind a transport error, for the usual causes, or
 * "".  OpenSSL's reason strings are stable enough to sort on; a miss only
 * loses the hint.
 */
static const char *
kube_http_hint(const struct kube_http *kh, CURLcode code, const char *reason)
{
	static char	 buf[512];
	const char	*ca = kh->creds->origin != NULL ? kh->creds->origin :
			    "the configuration";

	if (code == CURLE_PEER_FAILED_VERIFICATION &&
	    (strstr(reason, "issuer") != NULL ||
	    strstr(reason, "self-signed") != NULL ||
	    strstr(reason, "self signed") != NULL)) {
		/* Say where the CA came from: the usual culprit. */
		snprintf(buf, sizeof(buf), " (the server's certificate does "
		    "not verify against the CA of %s)", ca);
		return (buf);
	}
	if (strstr(reason, "wrong version number") != NULL ||
	    strstr(reason, "packet length too long") != NULL)
		return (" (the server does not speak TLS there: plain HTTP "
		    "on an https URL?)");
	if (strstr(reason, "protocol version") != NULL ||
	    strstr(reason, "unsupported protocol") != NULL)
		return (" (the server offers no TLS 1.2 or newer, the oldest "
		    "kuproxy accepts, as client-go)");
	if (strstr(reason, "certificate required") != NULL ||
	    (strstr(reason, "handshake failure") != NULL &&
	    kh->creds->client_cert_file == NULL &&
	    kh->creds->client_cert_data == NULL)) {
		snprintf(buf, sizeof(buf), " (the server wants a client "
		    "certificate%s)", kh->creds->client_cert_file == NULL &&
		    kh->creds->client_cert_data == NULL ? ", and the "
		    "credentials have none" : "");
		return (buf);
	}
	return ("");
}

/*
 * The error of a transfer that failed, into req->why: the server, curl's
 * reason (its error buffer, else the code's text) and a hint.
 */
static const char *
kube_http_describe(struct kube_http_req *req, CURLcode code)
{
	const char	*reason;

	reason = req->errbuf[0] != '\0' ? req->errbuf :
	    curl_easy_strerror(code);
	/* A long server URL may cut the hint short: still readable. */
	if (snprintf(req->why, sizeof(req->why), "%s: %s%s",
	    req->kh->creds->server, reason,
	    kube_http_hint(req->kh, code, reason)) < 0)
		return (reason);
	return (req->why);
}

/*
 * req ended with code (curl's, or CURLE_OPERATION_TIMEDOUT for our idle
 * bound): take it out of the multi handle, tell the owner, free it.
 */
static void
kube_http_finish(struct kube_http *kh, struct kube_http_req *req,
    CURLcode code)
{
	struct kube_http_result	 res;
	curl_off_t		 ra = 0;
	const char		*tok;

	memset(&res, 0, sizeof(res));
	curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &res.status);
	if (curl_easy_getinfo(req->easy, CURLINFO_RETRY_AFTER, &ra) ==
	    CURLE_OK && ra > 0)
		res.retry_after_s = (long)ra;
	res.curl_code = (int)code;
	res.aborted = req->aborted;
	if (code != CURLE_OK)
		res.error = kube_http_describe(req, code);
	curl_multi_remove_handle(kh->multi, req->easy);
	if (res.status == 401) {
		/*
		 * The token was revoked or rotated: re-read it now, so that
		 * the owner can retry at once if it changed.
		 */
		kube_creds_token_invalidate(kh->creds);
		tok = kube_creds_token(kh->creds, clock_mono_ms());
		res.auth_renewed = tok != NULL && (req->token == NULL ||
		    strcmp(tok, req->token) != 0);
	}
	req->cb.on_done(&res, req->cb.arg);
	kube_http_req_free(req);
}

/* Hand every finished transfer to its owner. */
static void
kube_http_check_done(struct kube_http *kh)
{
	struct kube_http_req	*req;
	CURLMsg			*msg;
	char			*priv;
	int			 left;

	while ((msg = curl_multi_info_read(kh->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
		req = (struct kube_http_req *)(void *)priv;
		if (req->held_off < req->held_len) {
			/* The owner gets the end after the bytes before it. */
			req->done_held = true;
			req->done_code = msg->data.result;
			continue;
		}
		kube_http_finish(kh, req, msg->data.result);
	}
}

/*
 * The idle bound of a request: the timer runs from the start and is moved
 * on lazily (write_cb only notes the time), so a busy transfer costs no
 * timer operation per chunk.
 */
static void
kube_http_idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct kube_http_req	*req = arg;
	long long		 left;
	struct timeval		 tv;

	left = req->idle_s * 1000 - (clock_mono_ms() - req->last_data_ms);
	if (left > 0) {
		tv.tv_sec = left / 1000;
		tv.tv_usec = (left % 1000) * 1000;
		evtimer_add(req->idle_ev, &tv);
		return;
	}
	snprintf(req->errbuf, sizeof(req->errbuf), "received nothing for "
	    "%ld s: the connection is up but the server sends nothing",
	    req->idle_s);
	kube_http_finish(req->kh, req, CURLE_OPERATION_TIMEDOUT);
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
 * A test override from the environment variable name: a number of seconds
 * in [min, max], or dflt when it is unset (or unusable: then with a
 * warning).
 */
static long
kube_http_test_bound(const char *name, long min, long max, long dflt)
{
	const char	*v = getenv(name);
	char		*end;
	long		 n;

	if (v == NULL || *v == '\0')
		return (dflt);
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno != 0 || *end != '\0' || n < min || n > max) {
		log_warnx("%s=%s: not a number of seconds from %ld to %ld; "
		    "ignored", name, v, min, max);
		return (dflt);
	}
	log_warnx("%s=%s: a test override, shortening an API liveness bound "
	    "to %ld s", name, v, n);
	return (n);
}

/*
 * CURLOPT_SOCKOPTFUNCTION: TCP_USER_TIMEOUT on every connection to the
 * server, so that a black-holed one is dropped within dead_peer_s (the
 * keepalive times are set through curl).  A failure costs only the bound,
 * never the connection.
 */
static int
kube_http_sockopt_cb(void *arg, curl_socket_t fd, curlsocktype purpose)
{
#ifdef TCP_USER_TIMEOUT
	struct kube_http	*kh = arg;
	unsigned int		 ms = (unsigned int)kh->dead_peer_s * 1000;

	if (purpose == CURLSOCKTYPE_IPCXN && setsockopt(fd, IPPROTO_TCP,
	    TCP_USER_TIMEOUT, &ms, sizeof(ms)) == -1 && errno != ENOPROTOOPT &&
	    errno != EOPNOTSUPP)
		log_debug("API server %s: TCP_USER_TIMEOUT: %s",
		    kh->creds->server, strerror(errno));
#endif
	return (CURL_SOCKOPT_OK);
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
	kh->dead_peer_s = kube_http_test_bound(KUBE_HTTP_ENV_DEAD_PEER,
	    KUBE_HTTP_MIN_DEAD_PEER_S, KUBE_HTTP_DEAD_PEER_S,
	    KUBE_HTTP_DEAD_PEER_S);
	kh->idle_cap_s = kube_http_test_bound(KUBE_HTTP_ENV_IDLE, 1,
	    KUBE_HTTP_MAX_IDLE_CAP_S, 0);
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

	/*
	 * client-go's floor (Go's crypto/tls client default), whatever the
	 * system's OpenSSL configuration would allow.
	 */
	curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
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

/* Hand n body bytes to the owner; -1 when it wants the transfer ended. */
static int
kube_http_deliver(struct kube_http_req *req, const char *ptr, size_t n)
{
	long	 status = 0;

	curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
	/* Bytes handed over are progress, even those held for a while. */
	if (req->idle_ev != NULL)
		req->last_data_ms = clock_mono_ms();
	req->turn_bytes += n;
	if (req->cb.on_data(ptr, n, status, req->cb.arg) == -1) {
		req->aborted = true;
		return (-1);
	}
	return (0);
}

/* The next turn of the loop resets the budget (and resumes, if paused). */
static void
kube_http_next_turn(struct kube_http_req *req)
{
	struct timeval	 now = { 0, 0 };

	if (!evtimer_pending(req->turn_ev, NULL))
		evtimer_add(req->turn_ev, &now);
}

/* No byte held any more: a large buffer (a gzip bomb's) is not kept. */
static void
kube_http_unhold(struct kube_http_req *req)
{
	req->held_off = req->held_len = 0;
	if (req->held_cap > 4 * KUBE_HTTP_TURN_BYTES) {
		free(req->held);
		req->held = NULL;
		req->held_cap = 0;
	}
}

/* Keep bytes libcurl gave back while resuming; -1 (ENOMEM). */
static int
kube_http_hold(struct kube_http_req *req, const char *ptr, size_t n)
{
	size_t	 cap;
	char	*p;

	if (req->held_off > 0 && req->held_off == req->held_len)
		req->held_off = req->held_len = 0;
	if (req->held_len + n > req->held_cap) {
		cap = req->held_cap == 0 ? KUBE_HTTP_TURN_BYTES : req->held_cap;
		while (cap < req->held_len + n)
			cap *= 2;
		if ((p = realloc(req->held, cap)) == NULL)
			return (-1);
		req->held = p;
		req->held_cap = cap;
	}
	memcpy(req->held + req->held_len, ptr, n);
	req->held_len += n;
	return (0);
}

/*
 * CURLOPT_WRITEFUNCTION: hand the bytes over within this turn's budget;
 * beyond it, or while bytes are held, pause until the next turn.
 */
static size_t
kube_http_write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct kube_http_req	*req = arg;
	size_t			 n = size * nmemb;

	if (req->idle_ev != NULL)
		req->last_data_ms = clock_mono_ms();
	if (req->resuming) {
		if (kube_http_hold(req, ptr, n) == -1) {
			snprintf(req->errbuf, sizeof(req->errbuf), "out of "
			    "memory holding %zu bytes of the response",
			    req->held_len + n);
			return (n == 0 ? 1 : 0);
		}
		kube_http_next_turn(req);
		return (n);
	}
	if (req->turn_bytes >= KUBE_HTTP_TURN_BYTES ||
	    req->held_off < req->held_len) {
		req->paused = true;
		kube_http_next_turn(req);
		return (CURL_WRITEFUNC_PAUSE);
	}
	if (kube_http_deliver(req, ptr, n) == -1)
		return (n == 0 ? 1 : 0);	/* anything but n ends it */
	kube_http_next_turn(req);
	return (n);
}

/*
 * A new turn of the loop: a fresh budget for the held bytes first, then,
 * once none are held, the transfer resumed; what libcurl gives back while
 * resuming is held, and handed over within what is left of the budget.
 */
static void
kube_http_turn_cb(evutil_socket_t fd, short what, void *arg)
{
	struct kube_http_req	*req = arg;
	struct kube_http	*kh = req->kh;
	size_t			 n;
	bool			 resumed = false;

	req->turn_bytes = 0;
	for (;;) {
		while (req->held_off < req->held_len &&
		    req->turn_bytes < KUBE_HTTP_TURN_BYTES) {
			n = req->held_len - req->held_off;
			if (n > KUBE_HTTP_TURN_BYTES - req->turn_bytes)
				n = KUBE_HTTP_TURN_BYTES - req->turn_bytes;
			if (kube_http_deliver(req, req->held + req->held_off,
			    n) == -1) {
				kube_http_finish(kh, req, CURLE_WRITE_ERROR);
				return;
			}
			req->held_off += n;
		}
		if (req->held_off < req->held_len) {
			kube_http_next_turn(req);
			break;
		}
		kube_http_unhold(req);
		if (req->done_held) {
			kube_http_finish(kh, req, req->done_code);
			return;
		}
		if (!req->paused)
			break;
		if (req->turn_bytes >= KUBE_HTTP_TURN_BYTES) {
			kube_http_next_turn(req);
			break;
		}
		req->paused = false;
		req->resuming = true;
		curl_easy_pause(req->easy, CURLPAUSE_CONT);
		req->resuming = false;
		resumed = true;
	}
	/* Resuming may have ended the transfer: req may be gone after. */
	if (resumed)
		kube_http_check_done(kh);
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

/* Arm the idle bound of req: stall_s without a byte ends it. */
static int
kube_http_idle_start(struct kube_http_req *req, long stall_s)
{
	struct timeval	 tv = { stall_s, 0 };

	req->idle_s = stall_s;
	req->last_data_ms = clock_mono_ms();
	if ((req->idle_ev = evtimer_new(req->kh->base, kube_http_idle_cb,
	    req)) == NULL || evtimer_add(req->idle_ev, &tv) == -1)
		return (-1);
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
	if ((req->turn_ev = evtimer_new(kh->base, kube_http_turn_cb, req)) ==
	    NULL)
		goto nomem;
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, kube_http_write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
	    (long)CURL_HTTP_VERSION_2TLS);
	curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_USERAGENT, "kuproxy/" PACKAGE_VERSION);
	/* Two thirds idle, then one probe: see KUBE_HTTP_DEAD_PEER_S. */
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, kh->dead_peer_s * 2 / 3);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL,
	    kh->dead_peer_s - kh->dead_peer_s * 2 / 3);
	curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, kube_http_sockopt_cb);
	curl_easy_setopt(e, CURLOPT_SOCKOPTDATA, kh);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
	    (long)KUBE_HTTP_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
	if (kh->idle_cap_s > 0 && stall_s > kh->idle_cap_s)
		stall_s = kh->idle_cap_s;
	if (stall_s > 0 && kube_http_idle_start(req, stall_s) == -1)
		goto nomem;
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
