/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers shared by the fuzz targets: quiet logging, and a private
 * temporary directory for the parsers that read files (kubeconfig, the
 * KubeProxyConfiguration file).  Every file a target writes stays in that
 * directory, which is removed at exit.  Nothing here parses anything.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "tests/fuzz/fuzz.h"

#define FUZZ_MAX_FILES	16

struct fuzz_file {
	char	*name;
	char	 path[PATH_MAX];
};

static char		 fuzz_dir[PATH_MAX];
static struct fuzz_file	 fuzz_files[FUZZ_MAX_FILES];
static size_t		 fuzz_n_files;
static char		*fuzz_subdirs[FUZZ_MAX_FILES];
static size_t		 fuzz_n_subdirs;

static void
fuzz_die(const char *what)
{
	fprintf(stderr, "fuzz: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* dir/name into buf, which holds PATH_MAX bytes. */
static void
fuzz_join(char *buf, const char *dir, const char *name)
{
	int	 n = snprintf(buf, PATH_MAX, "%s/%s", dir, name);

	if (n < 0 || n >= PATH_MAX) {
		errno = ENAMETOOLONG;
		fuzz_die(name);
	}
}

void
fuzz_quiet_log(void)
{
	log_init(-1, LOG_FORMAT_TEXT);
}

/* Remove what fuzz_write_file() made, then the directory itself. */
static void
fuzz_cleanup(void)
{
	char	 path[PATH_MAX];
	size_t	 i;

	for (i = 0; i < fuzz_n_files; i++) {
		unlink(fuzz_files[i].path);
		free(fuzz_files[i].name);
	}
	for (i = fuzz_n_subdirs; i > 0; i--) {
		fuzz_join(path, fuzz_dir, fuzz_subdirs[i - 1]);
		rmdir(path);
		free(fuzz_subdirs[i - 1]);
	}
	fuzz_n_files = fuzz_n_subdirs = 0;
	rmdir(fuzz_dir);
}

const char *
fuzz_tmpdir(void)
{
	const char	*base;

	if (fuzz_dir[0] != '\0')
		return (fuzz_dir);
	if ((base = getenv("TMPDIR")) == NULL || *base == '\0')
		base = "/tmp";
	snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/kuproxy-fuzz.XXXXXX", base);
	if (mkdtemp(fuzz_dir) == NULL)
		fuzz_die(fuzz_dir);
	atexit(fuzz_cleanup);
	return (fuzz_dir);
}

/* Make the directory part of name, once. */
static void
fuzz_make_subdir(const char *name)
{
	const char	*slash = strchr(name, '/');
	char		 path[PATH_MAX];
	size_t		 i, n;

	if (slash == NULL)
		return;
	n = (size_t)(slash - name);
	for (i = 0; i < fuzz_n_subdirs; i++)
		if (strlen(fuzz_subdirs[i]) == n &&
		    strncmp(fuzz_subdirs[i], name, n) == 0)
			return;
	if (fuzz_n_subdirs == FUZZ_MAX_FILES)
		fuzz_die("too many directories");
	if ((fuzz_subdirs[fuzz_n_subdirs] = strndup(name, n)) == NULL)
		fuzz_die("strndup");
	fuzz_join(path, fuzz_tmpdir(), fuzz_subdirs[fuzz_n_subdirs]);
	fuzz_n_subdirs++;
	if (mkdir(path, 0700) == -1 && errno != EEXIST)
		fuzz_die(path);
}

/* The slot for name, made on first use. */
static struct fuzz_file *
fuzz_file_slot(const char *name)
{
	struct fuzz_file	*f;
	size_t			 i;

	for (i = 0; i < fuzz_n_files; i++)
		if (strcmp(fuzz_files[i].name, name) == 0)
			return (&fuzz_files[i]);
	if (fuzz_n_files == FUZZ_MAX_FILES)
		fuzz_die("too many files");
	fuzz_make_subdir(name);
	f = &fuzz_files[fuzz_n_files];
	if ((f->name = strdup(name)) == NULL)
		fuzz_die("strdup");
	fuzz_join(f->path, fuzz_tmpdir(), name);
	fuzz_n_files++;
	return (f);
}

const char *
fuzz_write_file(const char *name, const void *data, size_t len)
{
	struct fuzz_file	*f = fuzz_file_slot(name);
	const char		*p = data;
	ssize_t			 n;
	int			 fd;

	if ((fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0600)) == -1)
		fuzz_die(f->path);
	while (len > 0) {
		if ((n = write(fd, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			fuzz_die(f->path);
		}
		p += n;
		len -= (size_t)n;
	}
	if (close(fd) == -1)
		fuzz_die(f->path);
	return (f->path);
}
