/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The corpus as a regression test, without a fuzz engine: feed every file
 * of a target's corpus to its LLVMFuzzerTestOneInput() once, as Envoy runs
 * its fuzz corpora under the normal test driver.  Built with the normal
 * compiler, once per target, for `make check`.
 *
 *   replay_<target>              every file in FUZZ_CORPUS_DIR/FUZZ_TARGET
 *   replay_<target> PATH...      these files, or every file in these
 *                                directories (a crash file from run.sh)
 *
 * A crash, a sanitizer report or a leak fails the run; the name of the
 * input being run is printed first, so the log says which one it was.
 */
#include "config.h"

#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/yamljson.h"
#include "tests/fuzz/fuzz.h"

#ifndef FUZZ_CORPUS_DIR
#error "FUZZ_CORPUS_DIR must name the corpus directory"
#endif
#ifndef FUZZ_TARGET
#error "FUZZ_TARGET must name the target"
#endif

/* Inputs up to this size; the corpora hold nothing near it. */
#define REPLAY_MAX_BYTES	(64u * 1024 * 1024)

static int
replay_file(const char *path)
{
	char	*buf, err[1024];
	size_t	 len;

	if ((buf = yamljson_read_file(path, REPLAY_MAX_BYTES, &len, err,
	    sizeof(err))) == NULL) {
		fprintf(stderr, "replay: %s\n", err);
		return (-1);
	}
	printf("replay: %s (%zu bytes)\n", path, len);
	fflush(stdout);
	LLVMFuzzerTestOneInput((const uint8_t *)buf, len);
	free(buf);
	return (0);
}

static int
replay_name_cmp(const void *a, const void *b)
{
	return (strcmp(*(char *const *)a, *(char *const *)b));
}

/* Every regular file in dir, in name order.  Returns the count or -1. */
static int
replay_dir(const char *dir)
{
	DIR		*d;
	struct dirent	*de;
	char		**names = NULL, **nn, path[4096];
	size_t		 n = 0, cap = 0, i;
	int		 rc = 0;

	if ((d = opendir(dir)) == NULL) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return (-1);
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap == 0 ? 64 : cap * 2;
			if ((nn = realloc(names, cap * sizeof(*names))) ==
			    NULL) {
				rc = -1;
				break;
			}
			names = nn;
		}
		if ((names[n] = strdup(de->d_name)) == NULL) {
			rc = -1;
			break;
		}
		n++;
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof(*names), replay_name_cmp);
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (rc == 0 && replay_file(path) == -1)
			rc = -1;
		free(names[i]);
	}
	free(names);
	if (rc == -1)
		return (-1);
	if (n == 0) {
		fprintf(stderr, "replay: %s: no inputs\n", dir);
		return (-1);
	}
	return ((int)n);
}

static int
replay_path(const char *path)
{
	struct stat	 st;

	if (stat(path, &st) == -1) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return (-1);
	}
	if (S_ISDIR(st.st_mode))
		return (replay_dir(path));
	return (replay_file(path) == -1 ? -1 : 1);
}

int
main(int argc, char **argv)
{
	int	 i, n, total = 0;

	LLVMFuzzerInitialize(&argc, &argv);
	if (argc < 2) {
		if ((total = replay_path(FUZZ_CORPUS_DIR "/" FUZZ_TARGET)) ==
		    -1)
			return (1);
	}
	for (i = 1; i < argc; i++) {
		if ((n = replay_path(argv[i])) == -1)
			return (1);
		total += n;
	}
	printf("replay: %s: %d inputs, no crash\n", FUZZ_TARGET, total);
	return (0);
}
