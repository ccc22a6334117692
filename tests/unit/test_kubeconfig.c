/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for watch/kubeconfig.c: kubeconfig files (YAML and JSON) from
 * tests/data/kubeconfig, context selection, relative paths, *-data fields,
 * --master, the errors for what is refused, token files re-read on an
 * injected clock, and the in-cluster configuration from a temporary
 * service account directory and environment variables.
 */
#include "config.h"

#include <sys/stat.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "watch/kubeconfig.h"

#define KC_DIR	TEST_DATA_DIR "/kubeconfig"

static char	 tmpdir[64];
static char	 err[1024];

static void
make_tmpdir(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/kuproxy-kc-%d-XXXXXX",
	    (int)getpid());
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void
rm_tmpdir(void)
{
	char	 cmd[128];

	if (tmpdir[0] == '\0')
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	cr_assert_eq(system(cmd), 0);
}

static void
write_file(const char *dir, const char *name, const char *text)
{
	char	 path[PATH_MAX], tmp[PATH_MAX];
	FILE	*f;

	/* Replace atomically, as the kubelet's symlink swap does. */
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
	cr_assert_not_null(f = fopen(tmp, "w"));
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
	cr_assert_eq(rename(tmp, path), 0);
}

static char *
real(const char *rel)
{
	static char	 buf[PATH_MAX];
	char		 p[PATH_MAX];

	snprintf(p, sizeof(p), "%s/%s", KC_DIR, rel);
	cr_assert_not_null(realpath(p, buf), "%s", p);
	return (buf);
}

TestSuite(kubeconfig, .fini = rm_tmpdir);

Test(kubeconfig, current_context_with_files_relative_to_the_kubeconfig)
{
	struct kube_creds	 c;

	/* From another directory: paths must not depend on the cwd. */
	cr_assert_eq(chdir("/"), 0);
	cr_assert_eq(kubeconfig_load(KC_DIR "/full.yaml", NULL, &c, 0, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.server, "https://127.0.0.1:6443");
	cr_assert_str_eq(c.ca_file, real("certs/ca.crt"));
	cr_assert_null(c.ca_data);
	cr_assert_str_eq(c.tls_server_name, "kubernetes.default.svc");
	cr_assert_str_eq(c.client_cert_file, real("certs/client.crt"));
	cr_assert_str_eq(c.client_key_file, real("certs/client.key"));
	cr_assert_not(c.insecure);
	cr_assert_str_eq(kube_creds_token(&c, 0), "static-token-abc");
	cr_assert_str_eq(c.origin, KC_DIR "/full.yaml");
	kube_creds_clear(&c);
}

Test(kubeconfig, relative_kubeconfig_path_resolves_against_its_directory)
{
	struct kube_creds	 c;

	cr_assert_eq(chdir(TEST_DATA_DIR), 0);
	cr_assert_eq(kubeconfig_load("kubeconfig/full.yaml", NULL, &c, 0, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.ca_file, real("certs/ca.crt"));
	kube_creds_clear(&c);
}

Test(kubeconfig, context_flag_selects_inline_data_and_token_file)
{
	struct kube_creds	 c;
	const char		*pem = "-----BEGIN CERTIFICATE-----\n"
				    "ZGF0YSBjYQ==\n-----END CERTIFICATE-----\n";

	cr_assert_eq(kubeconfig_load(KC_DIR "/full.yaml", "inline", &c, 0, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.server, "https://[fd00::1]:8443");
	/* -data wins over a path, even one that does not exist. */
	cr_assert_null(c.ca_file);
	cr_assert_eq(c.ca_data_len, strlen(pem));
	cr_assert_str_eq(c.ca_data, pem);
	cr_assert_str_eq(c.client_cert_data, pem);
	cr_assert_str_eq(c.client_key_data, pem);
	cr_assert_null(c.client_cert_file);
	cr_assert_null(c.token);
	cr_assert_str_eq(c.token_file, real("certs/token"));
	cr_assert_str_eq(kube_creds_token(&c, 0), "file-token-1");
	kube_creds_clear(&c);
}

Test(kubeconfig, json_kubeconfig)
{
	struct kube_creds	 c;

	cr_assert_eq(kubeconfig_load(KC_DIR "/full.json", NULL, &c, 0, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.server, "https://api.example:443");
	cr_assert_not_null(c.ca_data);
	cr_assert_str_eq(kube_creds_token(&c, 0), "json-token");
	kube_creds_clear(&c);
}

Test(kubeconfig, unknown_context_is_an_error)
{
	struct kube_creds	 c;

	cr_assert_eq(kubeconfig_load(KC_DIR "/full.yaml", "nope", &c, 0, err,
	    sizeof(err)), -1);
	cr_assert(strstr(err, "full.yaml: contexts: no entry named "
	    "\"nope\"") != NULL, "%s", err);
	cr_assert_null(c.server);
}

Test(kubeconfig, missing_file_is_an_error)
{
	struct kube_creds	 c;

	cr_assert_eq(kubeconfig_load(KC_DIR "/absent.yaml", NULL, &c, 0, err,
	    sizeof(err)), -1);
	cr_assert(strstr(err, "absent.yaml") != NULL, "%s", err);
	cr_assert(strstr(err, "No such file") != NULL, "%s", err);
}

Test(kubeconfig, insecure_together_with_a_ca_is_refused)
{
	struct kube_creds	 c;

	cr_assert_eq(kubeconfig_load(KC_DIR "/insecure-with-ca.yaml", NULL, &c,
	    0, err, sizeof(err)), -1);
	cr_assert(strstr(err, "root certificates file with the insecure "
	    "flag is not allowed") != NULL, "%s", err);
}

Test(kubeconfig, exec_plugin_is_refused_by_name)
{
	struct kube_creds	 c;

	cr_assert_eq(kubeconfig_load(KC_DIR "/exec.yaml", NULL, &c, 0, err,
	    sizeof(err)), -1);
	cr_assert(strstr(err, "users[aws].user.exec: exec credential plugins "
	    "are not supported") != NULL, "%s", err);
}

Test(kubeconfig, auth_provider_is_refused_by_name)
{
	struct kube_creds	 c;

	cr_assert_eq(kubeconfig_load(KC_DIR "/auth-provider.yaml", NULL, &c, 0,
	    err, sizeof(err)), -1);
	cr_assert(strstr(err, "users[gcp].user.auth-provider") != NULL, "%s",
	    err);
}

Test(kubeconfig, basic_auth_is_refused)
{
	struct kube_creds	 c;

	cr_assert_eq(kubeconfig_load(KC_DIR "/basic-auth.yaml", NULL, &c, 0,
	    err, sizeof(err)), -1);
	cr_assert(strstr(err, "basic authentication") != NULL, "%s", err);
}

Test(kubeconfig, client_certificate_without_key_is_refused)
{
	struct kube_creds	 c;

	cr_assert_eq(kubeconfig_load(KC_DIR "/cert-without-key.yaml", NULL, &c,
	    0, err, sizeof(err)), -1);
	cr_assert(strstr(err, "must be given together") != NULL, "%s", err);
}

Test(kubeconfig, master_overrides_the_kubeconfig_server)
{
	struct kube_creds	 c;

	cr_assert_eq(kubeconfig_resolve(KC_DIR "/full.yaml", NULL,
	    "https://10.0.0.1:443/", "/nonexistent", &c, 0, err, sizeof(err)),
	    0, "%s", err);
	cr_assert_str_eq(c.server, "https://10.0.0.1:443");
	cr_assert_str_eq(c.ca_file, real("certs/ca.crt"));
	cr_assert_str_eq(c.token, "static-token-abc");
	kube_creds_clear(&c);
}

Test(kubeconfig, master_alone_has_no_credentials)
{
	struct kube_creds	 c;

	cr_assert_eq(kubeconfig_resolve(NULL, NULL, "apiserver:6443",
	    "/nonexistent", &c, 0, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.server, "https://apiserver:6443");
	cr_assert_null(c.ca_file);
	cr_assert_null(kube_creds_token(&c, 0));
	kube_creds_clear(&c);
}

Test(kubeconfig, master_with_another_scheme_is_refused)
{
	struct kube_creds	 c;

	cr_assert_eq(kubeconfig_resolve(NULL, NULL, "ftp://x", "/nonexistent",
	    &c, 0, err, sizeof(err)), -1);
	cr_assert(strstr(err, "--master ftp://x") != NULL, "%s", err);
}

/* A kubeconfig in tmpdir with a tokenFile (and a static token). */
static void
write_token_kubeconfig(const char *token_line)
{
	char	 text[1024];

	snprintf(text, sizeof(text),
	    "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
	    "clusters: [{name: c, cluster: {server: https://h:1}}]\n"
	    "users: [{name: u, user: {tokenFile: token%s}}]\n"
	    "contexts: [{name: c, context: {cluster: c, user: u}}]\n",
	    token_line);
	write_file(tmpdir, "config", text);
}

Test(kubeconfig, token_file_is_reread_every_minute_and_after_a_401)
{
	struct kube_creds	 c;
	char			 path[PATH_MAX];

	make_tmpdir();
	write_file(tmpdir, "token", "  one\n");
	write_token_kubeconfig(", token: static");
	snprintf(path, sizeof(path), "%s/config", tmpdir);
	cr_assert_eq(kubeconfig_load(path, NULL, &c, 1000, err, sizeof(err)),
	    0, "%s", err);
	/* The file wins over the static token; whitespace is trimmed. */
	cr_assert_str_eq(kube_creds_token(&c, 1000), "one");

	write_file(tmpdir, "token", "two\n");
	cr_assert_str_eq(kube_creds_token(&c, 30000), "one");
	cr_assert_str_eq(kube_creds_token(&c, 60999), "one");
	cr_assert_str_eq(kube_creds_token(&c, 61000), "two");

	/* An empty or vanished file keeps the token we have. */
	write_file(tmpdir, "token", "\n");
	cr_assert_str_eq(kube_creds_token(&c, 121000), "two");
	snprintf(path, sizeof(path), "%s/token", tmpdir);
	cr_assert_eq(unlink(path), 0);
	cr_assert_str_eq(kube_creds_token(&c, 181000), "two");

	/* After a 401 the next request re-reads at once. */
	write_file(tmpdir, "token", "three");
	cr_assert_str_eq(kube_creds_token(&c, 181001), "two");
	kube_creds_token_invalidate(&c);
	cr_assert_str_eq(kube_creds_token(&c, 181002), "three");
	kube_creds_clear(&c);
}

Test(kubeconfig, unreadable_token_file_at_start_is_an_error)
{
	struct kube_creds	 c;
	char			 path[PATH_MAX];

	make_tmpdir();
	write_token_kubeconfig("");
	snprintf(path, sizeof(path), "%s/config", tmpdir);
	cr_assert_eq(kubeconfig_load(path, NULL, &c, 0, err, sizeof(err)), -1);
	cr_assert(strstr(err, "tokenFile") != NULL, "%s", err);
}

Test(kubeconfig, token_with_control_characters_is_refused)
{
	struct kube_creds	 c;
	char			 path[PATH_MAX];

	make_tmpdir();
	write_file(tmpdir, "token", "a\r\nX-Evil: 1\n");
	write_token_kubeconfig("");
	snprintf(path, sizeof(path), "%s/config", tmpdir);
	cr_assert_eq(kubeconfig_load(path, NULL, &c, 0, err, sizeof(err)), -1);
	cr_assert(strstr(err, "control characters") != NULL, "%s", err);
}

static void
make_sa_dir(void)
{
	make_tmpdir();
	write_file(tmpdir, "token", "sa-token-1\n");
	write_file(tmpdir, "ca.crt", "-----BEGIN CERTIFICATE-----\n");
	write_file(tmpdir, "namespace", "kube-system");
}

Test(kubeconfig, in_cluster_from_environment_and_service_account)
{
	struct kube_creds	 c;
	char			 ca[PATH_MAX];

	make_sa_dir();
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	cr_assert_eq(kubeconfig_in_cluster(tmpdir, &c, 0, err, sizeof(err)),
	    0, "%s", err);
	cr_assert_str_eq(c.server, "https://10.96.0.1:443");
	snprintf(ca, sizeof(ca), "%s/ca.crt", tmpdir);
	cr_assert_str_eq(c.ca_file, ca);
	cr_assert_str_eq(kube_creds_token(&c, 0), "sa-token-1");

	/* The kubelet rotates the token: seen within a minute. */
	write_file(tmpdir, "token", "sa-token-2\n");
	cr_assert_str_eq(kube_creds_token(&c, 59999), "sa-token-1");
	cr_assert_str_eq(kube_creds_token(&c, 60000), "sa-token-2");
	kube_creds_clear(&c);
}

Test(kubeconfig, in_cluster_ipv6_host_is_bracketed)
{
	struct kube_creds	 c;

	make_sa_dir();
	setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
	cr_assert_eq(kubeconfig_in_cluster(tmpdir, &c, 0, err, sizeof(err)),
	    0, "%s", err);
	cr_assert_str_eq(c.server, "https://[fd00:10:96::1]:6443");
	kube_creds_clear(&c);
}

Test(kubeconfig, in_cluster_without_environment_is_an_error)
{
	struct kube_creds	 c;

	make_sa_dir();
	unsetenv("KUBERNETES_SERVICE_HOST");
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	cr_assert_eq(kubeconfig_in_cluster(tmpdir, &c, 0, err, sizeof(err)),
	    -1);
	cr_assert(strstr(err, "not running in a cluster") != NULL, "%s", err);
}

Test(kubeconfig, in_cluster_without_token_is_an_error)
{
	struct kube_creds	 c;
	char			 path[PATH_MAX];

	make_sa_dir();
	snprintf(path, sizeof(path), "%s/token", tmpdir);
	cr_assert_eq(unlink(path), 0);
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	cr_assert_eq(kubeconfig_in_cluster(tmpdir, &c, 0, err, sizeof(err)),
	    -1);
	cr_assert(strstr(err, "service account token") != NULL, "%s", err);
}

Test(kubeconfig, resolve_without_kubeconfig_or_master_is_in_cluster)
{
	struct kube_creds	 c;

	make_sa_dir();
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	cr_assert_eq(kubeconfig_resolve(NULL, NULL, NULL, tmpdir, &c, 0, err,
	    sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.server, "https://10.96.0.1:443");
	cr_assert_str_eq(c.origin, "in-cluster");
	kube_creds_clear(&c);
}
