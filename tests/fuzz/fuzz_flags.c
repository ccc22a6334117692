/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for conf/flags.c: the input is a command line, one argument
 * per line (argv[0] is "kuproxy"), parsed with conf_parse_args() over the
 * defaults as main() does.  A --config value "@config" becomes the path
 * of a valid KubeProxyConfiguration in the target's temporary directory,
 * so that the file reader and the second pass of flags over the file are
 * reached.  Any other --config value becomes a path that does not exist:
 * the target reads no file of the machine it runs on (some block, as
 * /proc/kmsg does).  A failed parse must say why.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "tests/fuzz/fuzz.h"

#define FUZZ_MAX_ARGS	64

static const char fuzz_config_text[] =
    "apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
    "kind: KubeProxyConfiguration\n"
    "mode: userspace\n"
    "bindAddress: 10.0.0.5\n"
    "portRange: 30000-30100\n"
    "nodePortAddresses: [10.0.0.0/8, fd00::/64]\n"
    "udpIdleTimeout: 1s\n"
    "iptables:\n"
    "  syncPeriod: 1m\n"
    "  minSyncPeriod: 2s\n"
    "logging:\n"
    "  format: json\n"
    "  verbosity: 2\n"
    "kuproxy:\n"
    "  iptablesBackend: nft\n"
    "  tcpIdleTimeout: 1h\n";

static const char	*fuzz_config_path;
static char		 fuzz_missing_path[4096];
static char		 fuzz_config_arg[4096 + 16];

static void
fuzz_fail(const char *what)
{
	fprintf(stderr, "fuzz_flags: %s\n", what);
	abort();
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet_log();
	fuzz_config_path = fuzz_write_file("config.yaml", fuzz_config_text,
	    sizeof(fuzz_config_text) - 1);
	snprintf(fuzz_missing_path, sizeof(fuzz_missing_path),
	    "%s/missing.yaml", fuzz_tmpdir());
	return (0);
}

/* The value a --config of the input may name: ours, or none at all. */
static char *
fuzz_config_value(const char *v)
{
	if (strcmp(v, "@config") == 0)
		return ((char *)(uintptr_t)fuzz_config_path);
	if (*v == '\0')
		return ((char *)(uintptr_t)v);
	return (fuzz_missing_path);
}

/* Point every --config of argv at a file of ours. */
static void
fuzz_confine_config(int argc, char **argv)
{
	int	 i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			argv[i + 1] = fuzz_config_value(argv[i + 1]);
		else if (strncmp(argv[i], "--config=", 9) == 0) {
			snprintf(fuzz_config_arg, sizeof(fuzz_config_arg),
			    "--config=%s", fuzz_config_value(argv[i] + 9));
			argv[i] = fuzz_config_arg;
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf	 c;
	char		*copy, *p, *nl, *argv[FUZZ_MAX_ARGS + 1];
	char		 err[1024];
	int		 argc = 0;

	/* One allocation of the input's size, so ASan sees overreads. */
	if ((copy = malloc(size + 1)) == NULL)
		return (0);
	memcpy(copy, data, size);
	copy[size] = '\0';
	argv[argc++] = (char *)(uintptr_t)"kuproxy";
	/* A final newline ends the last argument; it does not add one. */
	for (p = copy; argc < FUZZ_MAX_ARGS && p < copy + size; p = nl + 1) {
		if ((nl = memchr(p, '\n', (size_t)(copy + size - p))) == NULL)
			nl = copy + size;
		*nl = '\0';
		argv[argc++] = p;
	}
	argv[argc] = NULL;
	fuzz_confine_config(argc, argv);

	conf_defaults(&c);
	err[0] = '\0';
	if (conf_parse_args(&c, argc, argv, err, sizeof(err)) == -1 &&
	    err[0] == '\0')
		fuzz_fail("failed without a message");
	conf_clear(&c);
	free(copy);
	return (0);
}
