/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kubernetes API credentials: the kubeconfig file, --master, the in-cluster
 * service account, and the bearer token cache.
 *
 * This module owns finding out where the API server is and how to prove
 * who we are, the way client-go does it for kube-proxy
 * (cg:tools/clientcmd, cg:rest/config.go InClusterConfig,
 * cg:transport/token_source.go): the context, its cluster and user, paths
 * relative to the kubeconfig's directory, *-data fields over paths, and a
 * token file re-read at most once a minute (the kubelet rotates projected
 * service account tokens).  It does no network I/O; watch/kube_http.c hands
 * these fields to libcurl.  Credential plugins (exec, auth-provider) and
 * basic auth are refused with an error that names them.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "base/log.h"
#include "base/yamljson.h"
#include "watch/kubeconfig.h"

#define KUBECONFIG_MAX_BYTES	(16u * 1024 * 1024)
#define KUBE_TOKEN_MAX_BYTES	(64u * 1024)

/* What one kubeconfig_load() call is working on, for messages. */
struct kc_ctx {
	const char	*path;		/* the kubeconfig, as given */
	char		 dir[PATH_MAX];	/* its directory, absolute */
	char		*err;
	size_t		 errlen;
};

static int
kc_fail(struct kc_ctx *k, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* "FILE: message" into err; returns -1. */
static int
kc_fail(struct kc_ctx *k, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	n = snprintf(k->err, k->errlen, "%s: ", k->path);
	if (n >= 0 && (size_t)n < k->errlen) {
		va_start(ap, fmt);
		vsnprintf(k->err + n, k->errlen - n, fmt, ap);
		va_end(ap);
	}
	return (-1);
}

/*
 * A string field of obj: absent or null gives NULL.  Integers are taken as
 * their text, since a YAML plain scalar such as `token: 12345` reads as one.
 */
static int
kc_str(struct kc_ctx *k, json_object *obj, const char *where, const char *key,
    const char **out)
{
	json_object	*v;

	*out = NULL;
	if (!json_object_object_get_ex(obj, key, &v) || v == NULL)
		return (0);
	if (json_object_is_type(v, json_type_string) ||
	    json_object_is_type(v, json_type_int)) {
		*out = json_object_get_string(v);
		return (0);
	}
	return (kc_fail(k, "%s.%s: must be a string", where, key));
}

static int
kc_bool(struct kc_ctx *k, json_object *obj, const char *where, const char *key,
    bool *out)
{
	json_object	*v;
	const char	*s;

	*out = false;
	if (!json_object_object_get_ex(obj, key, &v) || v == NULL)
		return (0);
	if (json_object_is_type(v, json_type_boolean)) {
		*out = json_object_get_boolean(v);
		return (0);
	}
	/* A quoted "true" is what some generators write. */
	if (json_object_is_type(v, json_type_string)) {
		s = json_object_get_string(v);
		if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0) {
			*out = s[0] == 't';
			return (0);
		}
	}
	return (kc_fail(k, "%s.%s: must be true or false", where, key));
}

static int
kc_b64_value(int ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return (ch - 'A');
	if (ch >= 'a' && ch <= 'z')
		return (ch - 'a' + 26);
	if (ch >= '0' && ch <= '9')
		return (ch - '0' + 52);
	if (ch == '+')
		return (62);
	if (ch == '/')
		return (63);
	return (-1);
}

/*
 * Standard base64 (whitespace ignored, padding optional) to a new
 * NUL-terminated buffer.  Returns 0, or -1 on a character outside the
 * alphabet or allocation failure.
 */
static int
kc_base64_decode(const char *in, char **out, size_t *outlen)
{
	size_t		 n = strlen(in), o = 0;
	unsigned int	 acc = 0;
	int		 bits = 0, v;
	char		*buf;
	bool		 pad = false;

	if ((buf = malloc(n / 4 * 3 + 4)) == NULL)
		return (-1);
	for (; *in != '\0'; in++) {
		if (isspace((unsigned char)*in))
			continue;
		if (*in == '=') {
			pad = true;
			continue;
		}
		if (pad || (v = kc_b64_value((unsigned char)*in)) == -1) {
			free(buf);
			return (-1);
		}
		acc = (acc << 6) | (unsigned int)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	buf[o] = '\0';
	*out = buf;
	*outlen = o;
	return (0);
}

/* A path from the kubeconfig, made absolute against its directory. */
static int
kc_path(struct kc_ctx *k, const char *where, const char *p, char **out)
{
	if (*p == '\0')
		return (0);
	if (p[0] == '/')
		*out = strdup(p);
	else if (asprintf(out, "%s/%s", k->dir, p) == -1)
		*out = NULL;
	if (*out == NULL)
		return (kc_fail(k, "out of memory"));
	if (access(*out, R_OK) == -1)
		return (kc_fail(k, "%s: %s: %s", where, *out, strerror(errno)));
	return (0);
}

/* A `X` / `X-data` pair: data (base64) wins over the file, as in client-go. */
static int
kc_file_or_data(struct kc_ctx *k, json_object *obj, const char *where,
    const char *key, char **file, char **data, size_t *datalen)
{
	char		 dkey[64];
	const char	*p, *d;

	snprintf(dkey, sizeof(dkey), "%s-data", key);
	if (kc_str(k, obj, where, key, &p) == -1 ||
	    kc_str(k, obj, where, dkey, &d) == -1)
		return (-1);
	if (d != NULL && *d != '\0') {
		if (kc_base64_decode(d, data, datalen) == -1)
			return (kc_fail(k, "%s.%s: not valid base64", where,
			    dkey));
		if (*datalen == 0)
			return (kc_fail(k, "%s.%s: empty", where, dkey));
		return (0);
	}
	if (p != NULL) {
		char	w[128];

		snprintf(w, sizeof(w), "%s.%s", where, key);
		return (kc_path(k, w, p, file));
	}
	return (0);
}

/* The entry of list (clusters, users, contexts) called name. */
static int
kc_find_named(struct kc_ctx *k, json_object *root, const char *list,
    const char *name, const char *inner, json_object **out)
{
	json_object	*arr, *e, *v, *n;
	size_t		 i, len;

	*out = NULL;
	if (!json_object_object_get_ex(root, list, &arr) || arr == NULL)
		return (kc_fail(k, "no %s", list));
	if (!json_object_is_type(arr, json_type_array))
		return (kc_fail(k, "%s: must be a list", list));
	len = json_object_array_length(arr);
	for (i = 0; i < len; i++) {
		e = json_object_array_get_idx(arr, i);
		if (!json_object_is_type(e, json_type_object) ||
		    !json_object_object_get_ex(e, "name", &n) ||
		    !json_object_is_type(n, json_type_string) ||
		    strcmp(json_object_get_string(n), name) != 0)
			continue;
		if (!json_object_object_get_ex(e, inner, &v) ||
		    !json_object_is_type(v, json_type_object))
			return (kc_fail(k, "%s[%s].%s: missing or not a "
			    "mapping", list, name, inner));
		*out = v;
		return (0);
	}
	return (kc_fail(k, "%s: no entry named \"%s\"", list, name));
}

static int
kc_load_cluster(struct kc_ctx *k, json_object *cl, const char *where,
    struct kube_creds *c)
{
	const char	*server, *sni;

	if (kc_str(k, cl, where, "server", &server) == -1 ||
	    kc_str(k, cl, where, "tls-server-name", &sni) == -1 ||
	    kc_bool(k, cl, where, "insecure-skip-tls-verify",
	    &c->insecure) == -1 ||
	    kc_file_or_data(k, cl, where, "certificate-authority",
	    &c->ca_file, &c->ca_data, &c->ca_data_len) == -1)
		return (-1);
	if (server == NULL || *server == '\0')
		return (kc_fail(k, "%s.server: required", where));
	if (kube_creds_set_server(c, server, k->err, k->errlen) == -1) {
		char	msg[512];

		snprintf(msg, sizeof(msg), "%s", k->err);
		return (kc_fail(k, "%s.server: %s", where, msg));
	}
	/* cg:transport/transport.go refuses this combination too. */
	if (c->insecure && (c->ca_file != NULL || c->ca_data != NULL))
		return (kc_fail(k, "%s: specifying a root certificates file "
		    "with the insecure flag is not allowed", where));
	if (sni != NULL && *sni != '\0' &&
	    (c->tls_server_name = strdup(sni)) == NULL)
		return (kc_fail(k, "out of memory"));
	return (0);
}

/* A token goes into an HTTP header: no control characters. */
static bool
kc_token_ok(const char *t)
{
	for (; *t != '\0'; t++)
		if ((unsigned char)*t < 0x20 || *t == 0x7f)
			return (false);
	return (true);
}

/* Read, trim and check a token file.  Returns a new string or NULL + err. */
static char *
kc_read_token(const char *path, char *err, size_t errlen)
{
	char	*buf, *s, *e;
	size_t	 len;

	if ((buf = yamljson_read_file(path, KUBE_TOKEN_MAX_BYTES, &len, err,
	    errlen)) == NULL)
		return (NULL);
	for (s = buf; *s != '\0' && isspace((unsigned char)*s); s++)
		;
	for (e = s + strlen(s); e > s && isspace((unsigned char)e[-1]); e--)
		;
	*e = '\0';
	if (*s == '\0') {
		snprintf(err, errlen, "%s: empty token", path);
		free(buf);
		return (NULL);
	}
	memmove(buf, s, (size_t)(e - s) + 1);
	if (!kc_token_ok(buf)) {
		snprintf(err, errlen, "%s: the token contains control "
		    "characters", path);
		free(buf);
		return (NULL);
	}
	return (buf);
}

static int
kc_load_user(struct kc_ctx *k, json_object *u, const char *where,
    struct kube_creds *c, long long now_ms)
{
	const char	*token, *tfile, *user, *pass;
	json_object	*v;
	char		 msg[512];

	if (json_object_object_get_ex(u, "exec", &v) && v != NULL)
		return (kc_fail(k, "%s.exec: exec credential plugins are not "
		    "supported; give the user a token, tokenFile or client "
		    "certificate", where));
	if (json_object_object_get_ex(u, "auth-provider", &v) && v != NULL)
		return (kc_fail(k, "%s.auth-provider: auth-provider plugins "
		    "are not supported; give the user a token, tokenFile or "
		    "client certificate", where));
	if (kc_str(k, u, where, "username", &user) == -1 ||
	    kc_str(k, u, where, "password", &pass) == -1)
		return (-1);
	if (user != NULL || pass != NULL)
		return (kc_fail(k, "%s: basic authentication (username/"
		    "password) is not supported", where));
	if (kc_str(k, u, where, "token", &token) == -1 ||
	    kc_str(k, u, where, "tokenFile", &tfile) == -1 ||
	    kc_file_or_data(k, u, where, "client-certificate",
	    &c->client_cert_file, &c->client_cert_data,
	    &c->client_cert_data_len) == -1 ||
	    kc_file_or_data(k, u, where, "client-key", &c->client_key_file,
	    &c->client_key_data, &c->client_key_data_len) == -1)
		return (-1);
	if ((c->client_cert_file != NULL || c->client_cert_data != NULL) !=
	    (c->client_key_file != NULL || c->client_key_data != NULL))
		return (kc_fail(k, "%s: client-certificate and client-key "
		    "must be given together", where));
	if (token != NULL && !kc_token_ok(token))
		return (kc_fail(k, "%s.token: contains control characters",
		    where));
	if (token != NULL && *token != '\0' &&
	    (c->token = strdup(token)) == NULL)
		return (kc_fail(k, "out of memory"));
	if (tfile != NULL && *tfile != '\0') {
		snprintf(msg, sizeof(msg), "%s.tokenFile", where);
		if (kc_path(k, msg, tfile, &c->token_file) == -1)
			return (-1);
		/* client-go reads it once at start and fails if it cannot. */
		if ((c->cached_token = kc_read_token(c->token_file, msg,
		    sizeof(msg))) == NULL)
			return (kc_fail(k, "%s.tokenFile: %s", where, msg));
		c->cached_at_ms = now_ms;
	}
	return (0);
}

/* The absolute directory of path, for relative paths inside it. */
static int
kc_set_dir(struct kc_ctx *k)
{
	const char	*slash = strrchr(k->path, '/');
	char		 dir[PATH_MAX];

	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == k->path)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - k->path),
		    k->path);
	if (realpath(dir, k->dir) == NULL)
		return (kc_fail(k, "directory %s: %s", dir, strerror(errno)));
	return (0);
}

/*
 * Load the kubeconfig at path, using context (or current-context), into c.
 * See kubeconfig.h for the rules.  Returns 0, or -1 with "FILE: problem"
 * in err and c cleared.
 */
int
kubeconfig_load(const char *path, const char *context, struct kube_creds *c,
    long long now_ms, char *err, size_t errlen)
{
	struct kc_ctx	 k = { .path = path, .err = err, .errlen = errlen };
	json_object	*docs = NULL, *root, *ctx, *cl, *u;
	const char	*cur, *clname, *uname;
	char		*buf, where[256], msg[512];
	size_t		 len;

	memset(c, 0, sizeof(*c));
	if ((buf = yamljson_read_file(path, KUBECONFIG_MAX_BYTES, &len, msg,
	    sizeof(msg))) == NULL) {
		snprintf(err, errlen, "kubeconfig %s", msg);
		return (-1);
	}
	if (yamljson_parse(buf, len, &docs, msg, sizeof(msg)) == -1) {
		free(buf);
		kc_fail(&k, "%s", msg);
		return (-1);
	}
	free(buf);
	if (kc_set_dir(&k) == -1)
		goto fail;
	if (json_object_array_length(docs) != 1 ||
	    !json_object_is_type(root = json_object_array_get_idx(docs, 0),
	    json_type_object)) {
		kc_fail(&k, "not a kubeconfig (expected one mapping)");
		goto fail;
	}
	if (context == NULL || *context == '\0') {
		if (kc_str(&k, root, "", "current-context", &cur) == -1)
			goto fail;
		if (cur == NULL || *cur == '\0') {
			kc_fail(&k, "no current-context; give --context");
			goto fail;
		}
		context = cur;
	}
	if (kc_find_named(&k, root, "contexts", context, "context", &ctx) ==
	    -1)
		goto fail;
	snprintf(where, sizeof(where), "contexts[%s].context", context);
	if (kc_str(&k, ctx, where, "cluster", &clname) == -1 ||
	    kc_str(&k, ctx, where, "user", &uname) == -1)
		goto fail;
	if (clname == NULL) {
		kc_fail(&k, "%s.cluster: required", where);
		goto fail;
	}
	if (kc_find_named(&k, root, "clusters", clname, "cluster", &cl) == -1)
		goto fail;
	snprintf(where, sizeof(where), "clusters[%s].cluster", clname);
	if (kc_load_cluster(&k, cl, where, c) == -1)
		goto fail;
	/* A context without a user is anonymous (client-go allows it). */
	if (uname != NULL && *uname != '\0') {
		if (kc_find_named(&k, root, "users", uname, "user", &u) == -1)
			goto fail;
		snprintf(where, sizeof(where), "users[%s].user", uname);
		if (kc_load_user(&k, u, where, c, now_ms) == -1)
			goto fail;
	}
	if ((c->origin = strdup(path)) == NULL) {
		kc_fail(&k, "out of memory");
		goto fail;
	}
	json_object_put(docs);
	return (0);
 fail:
	json_object_put(docs);
	kube_creds_clear(c);
	return (-1);
}

/*
 * Replace c->server with url.  "host:port" without a scheme means https,
 * as in client-go.  Returns 0 or -1 with err.
 */
int
kube_creds_set_server(struct kube_creds *c, const char *url, char *err,
    size_t errlen)
{
	char	*s;
	size_t	 n;

	if (strstr(url, "://") == NULL) {
		if (asprintf(&s, "https://%s", url) == -1)
			s = NULL;
	} else if (strncmp(url, "https://", 8) == 0 ||
	    strncmp(url, "http://", 7) == 0)
		s = strdup(url);
	else {
		snprintf(err, errlen, "%s: only https:// and http:// servers "
		    "are supported", url);
		return (-1);
	}
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return (-1);
	}
	for (n = strlen(s); n > 0 && s[n - 1] == '/'; n--)
		s[n - 1] = '\0';
	if (strlen(s) <= strlen("https://") && strncmp(s, "https", 5) == 0) {
		snprintf(err, errlen, "%s: no host", url);
		free(s);
		return (-1);
	}
	free(c->server);
	c->server = s;
	return (0);
}

/*
 * The in-cluster configuration: see kubeconfig.h.  Returns 0, or -1 with
 * err and c cleared.
 */
int
kubeconfig_in_cluster(const char *sa_dir, struct kube_creds *c,
    long long now_ms, char *err, size_t errlen)
{
	const char	*host = getenv("KUBERNETES_SERVICE_HOST");
	const char	*port = getenv("KUBERNETES_SERVICE_PORT");
	char		 msg[512], *ca = NULL;
	int		 rc;

	memset(c, 0, sizeof(*c));
	if (host == NULL || *host == '\0' || port == NULL || *port == '\0') {
		snprintf(err, errlen, "not running in a cluster: "
		    "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must "
		    "be set (or give --kubeconfig or --master)");
		return (-1);
	}
	/* net.JoinHostPort: an IPv6 literal needs brackets in a URL. */
	if (strchr(host, ':') != NULL && host[0] != '[')
		rc = asprintf(&c->server, "https://[%s]:%s", host, port);
	else
		rc = asprintf(&c->server, "https://%s:%s", host, port);
	if (rc == -1)
		c->server = NULL;
	if (asprintf(&c->token_file, "%s/token", sa_dir) == -1)
		c->token_file = NULL;
	if (asprintf(&ca, "%s/ca.crt", sa_dir) == -1)
		ca = NULL;
	c->origin = strdup("in-cluster");
	if (c->server == NULL || c->token_file == NULL || ca == NULL ||
	    c->origin == NULL) {
		snprintf(err, errlen, "in-cluster: out of memory");
		goto fail;
	}
	if ((c->cached_token = kc_read_token(c->token_file, msg,
	    sizeof(msg))) == NULL) {
		snprintf(err, errlen, "in-cluster: service account token %s",
		    msg);
		goto fail;
	}
	c->cached_at_ms = now_ms;
	/*
	 * client-go only logs an unreadable CA and goes on with the system
	 * roots; verification stays on either way.
	 */
	if (access(ca, R_OK) == 0) {
		c->ca_file = ca;
		ca = NULL;
	} else
		log_warn("in-cluster: cannot read %s; verifying the API "
		    "server against the system CAs", ca);
	free(ca);
	return (0);
 fail:
	free(ca);
	kube_creds_clear(c);
	return (-1);
}

/*
 * kube-proxy's order of sources; see kubeconfig.h.  Returns 0 or -1 with
 * err.
 */
int
kubeconfig_resolve(const char *kubeconfig, const char *context,
    const char *master, const char *sa_dir, struct kube_creds *c,
    long long now_ms, char *err, size_t errlen)
{
	char	msg[512];

	if (kubeconfig != NULL && *kubeconfig != '\0') {
		if (kubeconfig_load(kubeconfig, context, c, now_ms, err,
		    errlen) == -1)
			return (-1);
	} else if (master != NULL && *master != '\0') {
		memset(c, 0, sizeof(*c));
		if ((c->origin = strdup("--master")) == NULL) {
			snprintf(err, errlen, "out of memory");
			return (-1);
		}
	} else
		return (kubeconfig_in_cluster(sa_dir, c, now_ms, err, errlen));
	if (master != NULL && *master != '\0' &&
	    kube_creds_set_server(c, master, msg, sizeof(msg)) == -1) {
		snprintf(err, errlen, "--master %s", msg);
		kube_creds_clear(c);
		return (-1);
	}
	return (0);
}

/*
 * The token to send now; see kubeconfig.h.  A token file is re-read when
 * the cached copy is KUBE_TOKEN_REREAD_MS old or after a 401; a read that
 * fails or finds the file empty keeps the token we had.
 */
const char *
kube_creds_token(struct kube_creds *c, long long now_ms)
{
	char	*t, msg[512];

	if (c->token_file == NULL)
		return (c->token);
	if (c->cached_token == NULL || c->token_stale ||
	    now_ms - c->cached_at_ms >= KUBE_TOKEN_REREAD_MS) {
		c->cached_at_ms = now_ms;
		c->token_stale = false;
		if ((t = kc_read_token(c->token_file, msg, sizeof(msg))) !=
		    NULL) {
			if (c->cached_token == NULL ||
			    strcmp(c->cached_token, t) != 0)
				log_v(2, "token file %s: new token read",
				    c->token_file);
			free(c->cached_token);
			c->cached_token = t;
		} else
			log_warnx("token file %s; keeping the previous token",
			    msg);
	}
	return (c->cached_token != NULL ? c->cached_token : c->token);
}

/*
 * After a 401: the next kube_creds_token() re-reads the token file.  The
 * cached token stays as the fallback should the read fail.
 */
void
kube_creds_token_invalidate(struct kube_creds *c)
{
	c->token_stale = true;
}

/* Free everything c holds and zero it (c may be half built). */
void
kube_creds_clear(struct kube_creds *c)
{
	free(c->server);
	free(c->ca_file);
	free(c->ca_data);
	free(c->tls_server_name);
	free(c->client_cert_file);
	free(c->client_key_file);
	if (c->client_key_data != NULL)
		explicit_bzero(c->client_key_data, c->client_key_data_len);
	free(c->client_cert_data);
	free(c->client_key_data);
	if (c->token != NULL)
		explicit_bzero(c->token, strlen(c->token));
	if (c->cached_token != NULL)
		explicit_bzero(c->cached_token, strlen(c->cached_token));
	free(c->token);
	free(c->token_file);
	free(c->cached_token);
	free(c->origin);
	memset(c, 0, sizeof(*c));
}
