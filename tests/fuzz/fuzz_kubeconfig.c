/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for watch/kubeconfig.c: any bytes as a kubeconfig file.
 *
 * kubeconfig_load() reads a path, so the input is written to
 * kubeconfig.yaml in the target's temporary directory, next to the files
 * the test kubeconfigs name (certs/ca.crt, certs/client.crt,
 * certs/client.key, certs/token).  Leading comment lines choose the
 * arguments, and stay valid YAML:
 *   #context=NAME   --context NAME (else current-context)
 *   #master=URL     --master URL, through kubeconfig_resolve()
 * A loaded config is then asked for its token now and a minute later (the
 * token file re-read), after a 401, and cleared.  Inputs naming the
 * files of the machine that block on read (/proc/kmsg, trace_pipe) are
 * skipped: a tokenFile is read wherever it points.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "watch/kubeconfig.h"

#define FUZZ_ARG_MAX	256

static const char fuzz_pem[] =
    "-----BEGIN CERTIFICATE-----\nZmFrZSBjYQ==\n-----END CERTIFICATE-----\n";

static void
fuzz_fail(const char *what)
{
	fprintf(stderr, "fuzz_kubeconfig: %s\n", what);
	abort();
}

/*
 * If the line at *p starts with prefix, copy the rest of the line to out
 * and move *p past it.  Returns whether it did.
 */
static int
fuzz_take_arg(const char **p, const char *end, const char *prefix,
    char *out)
{
	size_t		 plen = strlen(prefix), n;
	const char	*nl;

	if ((size_t)(end - *p) < plen || memcmp(*p, prefix, plen) != 0)
		return (0);
	if ((nl = memchr(*p, '\n', (size_t)(end - *p))) == NULL)
		nl = end;
	n = (size_t)(nl - *p) - plen;
	if (n >= FUZZ_ARG_MAX)
		n = FUZZ_ARG_MAX - 1;
	memcpy(out, *p + plen, n);
	out[n] = '\0';
	*p = nl < end ? nl + 1 : end;
	return (1);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char token[] = "file-token-1\n";

	fuzz_quiet_log();
	fuzz_write_file("certs/ca.crt", fuzz_pem, sizeof(fuzz_pem) - 1);
	fuzz_write_file("certs/client.crt", fuzz_pem, sizeof(fuzz_pem) - 1);
	fuzz_write_file("certs/client.key", fuzz_pem, sizeof(fuzz_pem) - 1);
	fuzz_write_file("certs/token", token, sizeof(token) - 1);
	return (0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kube_creds	 c;
	const char		*p = (const char *)data, *end = p + size;
	const char		*path, *t;
	char			 context[FUZZ_ARG_MAX] = "";
	char			 master[FUZZ_ARG_MAX] = "";
	char			 err[1024];
	long long		 now_ms = 5000;
	int			 rc;

	if (memmem(data, size, "kmsg", 4) != NULL ||
	    memmem(data, size, "pipe", 4) != NULL)
		return (0);
	while (fuzz_take_arg(&p, end, "#context=", context) ||
	    fuzz_take_arg(&p, end, "#master=", master))
		;
	path = fuzz_write_file("kubeconfig.yaml", data, size);
	err[0] = '\0';
	if (master[0] != '\0')
		rc = kubeconfig_resolve(path, context, master, fuzz_tmpdir(),
		    &c, now_ms, err, sizeof(err));
	else
		rc = kubeconfig_load(path, context[0] != '\0' ? context : NULL,
		    &c, now_ms, err, sizeof(err));
	if (rc == -1) {
		if (err[0] == '\0')
			fuzz_fail("failed without a message");
		if (c.server != NULL || c.token != NULL || c.origin != NULL)
			fuzz_fail("failed but left credentials behind");
		return (0);
	}
	if (c.server == NULL || strncmp(c.server, "http", 4) != 0)
		fuzz_fail("loaded without an http(s) server");
	if (c.origin == NULL)
		fuzz_fail("loaded without an origin");
	t = kube_creds_token(&c, now_ms);
	if (c.token_file != NULL && t == NULL)
		fuzz_fail("a token file but no token");
	kube_creds_token(&c, now_ms + KUBE_TOKEN_REREAD_MS);
	kube_creds_token_invalidate(&c);
	kube_creds_token(&c, now_ms + KUBE_TOKEN_REREAD_MS + 1);
	kube_creds_clear(&c);
	return (0);
}
