/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for conf/config_file.c: any bytes as the --config file
 * (a KubeProxyConfiguration, YAML or JSON).  conf_load_file() reads a path,
 * so the input is written to config.yaml in the target's temporary
 * directory.  The conf starts from the defaults, as the daemon's does, and
 * is cleared after.  A failed load must say why and name the file.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "tests/fuzz/fuzz.h"

static void
fuzz_fail(const char *what)
{
	fprintf(stderr, "fuzz_config_file: %s\n", what);
	abort();
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet_log();
	return (0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf	 c;
	const char	*path;
	char		 err[1024];

	path = fuzz_write_file("config.yaml", data, size);
	conf_defaults(&c);
	err[0] = '\0';
	if (conf_load_file(&c, path, err, sizeof(err)) == -1) {
		if (strstr(err, path) == NULL)
			fuzz_fail("an error that does not name the file");
	}
	conf_clear(&c);
	return (0);
}
