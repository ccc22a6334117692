/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Credentials for the Kubernetes API, as kube-proxy finds them: a
 * kubeconfig file (--kubeconfig; current-context or --context), --master
 * overriding the server, or the in-cluster service account.  The bearer
 * token of a tokenFile or of the service account is re-read periodically,
 * since the kubelet rotates it.
 */
#ifndef KUPROXY_KUBECONFIG_H
#define KUPROXY_KUBECONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define KUBE_SA_DIR	"/var/run/secrets/kubernetes.io/serviceaccount"
/* client-go re-reads token files this often (cg:transport/token_source.go). */
#define KUBE_TOKEN_REREAD_MS	60000

struct kube_creds {
	char	*server;		/* "https://host:port", no trailing slash */
	char	*ca_file;		/* PEM file, or NULL */
	char	*ca_data;		/* PEM bytes (decoded -data), or NULL */
	size_t	 ca_data_len;
	bool	 insecure;		/* insecure-skip-tls-verify */
	char	*tls_server_name;	/* name to verify instead of the host */
	char	*client_cert_file, *client_key_file;
	char	*client_cert_data, *client_key_data;	/* PEM bytes */
	size_t	 client_cert_data_len, client_key_data_len;
	char	*token;			/* static token, or NULL */
	char	*token_file;		/* re-read at most every 60 s */
	/* Token cache for token_file. */
	char	*cached_token;
	long long cached_at_ms;
	bool	 token_stale;		/* re-read at the next request (a 401) */
	char	*origin;		/* for messages: the kubeconfig, "in-cluster", "--master" */
};

/*
 * Load a kubeconfig (YAML or JSON) and select context (NULL: current-context).
 * Relative paths resolve against the kubeconfig's directory; *-data fields
 * override paths.  exec plugins, auth-providers and basic auth are refused
 * with an error naming them.  A tokenFile must be readable now.  now_ms
 * stamps the first token read.  Returns 0, or -1 with "FILE: message" in
 * err; c is left cleared on failure.
 */
int		 kubeconfig_load(const char *path, const char *context,
		    struct kube_creds *c, long long now_ms, char *err,
		    size_t errlen);

/*
 * In-cluster: KUBERNETES_SERVICE_HOST/_PORT (IPv6 hosts bracketed) and the
 * service account's token and CA under sa_dir (KUBE_SA_DIR normally).
 * Returns 0, or -1 with err ("not running in a cluster: ...").
 */
int		 kubeconfig_in_cluster(const char *sa_dir, struct kube_creds *c,
		    long long now_ms, char *err, size_t errlen);

/*
 * kube-proxy's choice (k/k cmd/kube-proxy/app/server.go createClient):
 * --kubeconfig FILE if given (--context selecting the context), with
 * --master replacing its server; --master alone (no credentials, system
 * CAs); neither: in-cluster from sa_dir.  Returns 0 or -1 with err.
 */
int		 kubeconfig_resolve(const char *kubeconfig, const char *context,
		    const char *master, const char *sa_dir, struct kube_creds *c,
		    long long now_ms, char *err, size_t errlen);

/*
 * Replace the server with url ("https://h:p", "http://h:p", or "h:p" meaning
 * https), dropping trailing slashes.  Returns 0 or -1 with err.
 */
int		 kube_creds_set_server(struct kube_creds *c, const char *url,
		    char *err, size_t errlen);

/*
 * The bearer token to send now, or NULL for none: the token file's content
 * (trimmed; re-read when older than 60 s; a failed or empty read keeps the
 * old token) falling back to the static token.  The result stays valid
 * until the next call or kube_creds_clear().
 */
const char	*kube_creds_token(struct kube_creds *c, long long now_ms);
/* After a 401: forget the cached token so the next request re-reads it. */
void		 kube_creds_token_invalidate(struct kube_creds *c);
/* Free what c holds and zero it; c may be reused. */
void		 kube_creds_clear(struct kube_creds *c);

#endif
