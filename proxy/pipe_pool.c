/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A pool of pipes for splice(2).
 *
 * This module owns idle pipes and the size they are given.  A session takes
 * a pipe only while bytes sit in it and gives it back drained, so the number
 * of pipes follows the data in flight, not the number of sessions (HAProxy's
 * pipe pool does the same).  Pipes are enlarged with F_SETPIPE_SZ so that one
 * splice moves a large chunk; when the kernel refuses the size (an
 * unprivileged process above /proc/sys/fs/pipe-max-size, or the per-user
 * pipe budget), we settle for what it allows.  Sessions and splicing are
 * tcp_relay's.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "proxy/tcp_relay.h"

#define PIPE_POOL_DEFAULT_SIZE	(1024 * 1024)
#define PIPE_MAX_SIZE_FILE	"/proc/sys/fs/pipe-max-size"

struct pipe_pool {
	size_t	  pipe_size;	/* what new pipes are asked to hold */
	size_t	  max_idle;
	int	(*idle)[2];
	size_t	  n_idle;
	size_t	  n_busy;	/* handed out, not yet back */
};

/*
 * Create a pool whose pipes hold pipe_size bytes (0: 1 MiB) and which keeps
 * at most max_idle drained pipes.  Returns NULL on allocation failure.
 */
struct pipe_pool *
pipe_pool_new(size_t pipe_size, size_t max_idle)
{
	struct pipe_pool *pool;

	if ((pool = calloc(1, sizeof(*pool))) == NULL)
		return NULL;
	if (max_idle > 0 &&
	    (pool->idle = calloc(max_idle, sizeof(*pool->idle))) == NULL) {
		free(pool);
		return NULL;
	}
	pool->pipe_size = pipe_size != 0 ? pipe_size : PIPE_POOL_DEFAULT_SIZE;
	pool->max_idle = max_idle;
	return pool;
}

/* Close every idle pipe and free the pool; pipes handed out stay open. */
void
pipe_pool_free(struct pipe_pool *pool)
{
	size_t i;

	if (pool == NULL)
		return;
	for (i = 0; i < pool->n_idle; i++) {
		close(pool->idle[i][0]);
		close(pool->idle[i][1]);
	}
	free(pool->idle);
	free(pool);
}

static size_t
pipe_max_size(void)
{
	unsigned long max = 0;
	FILE *f;

	if ((f = fopen(PIPE_MAX_SIZE_FILE, "re")) == NULL)
		return 0;
	if (fscanf(f, "%lu", &max) != 1)
		max = 0;
	fclose(f);
	return max;
}

/*
 * Grow a new pipe to the pool's size, or to the system maximum when that
 * is lower, or leave it as it is; remember what worked so that later pipes
 * do not retry a refused size.
 */
static void
pipe_pool_enlarge(struct pipe_pool *pool, int fd)
{
	size_t max;
	int got;

	if (fcntl(fd, F_SETPIPE_SZ, (int)pool->pipe_size) != -1)
		return;
	max = pipe_max_size();
	if (max != 0 && max < pool->pipe_size &&
	    fcntl(fd, F_SETPIPE_SZ, (int)max) != -1) {
		log_v(2, "splice pipes: %zu bytes refused, using %zu",
		    pool->pipe_size, max);
		pool->pipe_size = max;
		return;
	}
	if ((got = fcntl(fd, F_GETPIPE_SZ)) > 0) {
		log_v(2, "splice pipes: %zu bytes refused (%s), using %d",
		    pool->pipe_size, strerror(errno), got);
		pool->pipe_size = (size_t)got;
	}
}

/*
 * Hand out an empty non-blocking pipe in fds ([0] to read, [1] to write),
 * from the idle ones or new.  Returns 0, or -1 with errno (EMFILE...).
 * Give it back with pipe_pool_put().
 */
int
pipe_pool_get(struct pipe_pool *pool, int fds[2])
{
	if (pool->n_idle > 0) {
		pool->n_idle--;
		fds[0] = pool->idle[pool->n_idle][0];
		fds[1] = pool->idle[pool->n_idle][1];
		pool->n_busy++;
		return 0;
	}
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == -1)
		return -1;
	pipe_pool_enlarge(pool, fds[1]);
	pool->n_busy++;
	return 0;
}

/*
 * Take back a pipe from pipe_pool_get() and set fds to -1.  A drained pipe
 * is kept when there is room; one that may still hold bytes (a session that
 * ended mid-transfer) is closed, since its contents belong to nobody.
 */
void
pipe_pool_put(struct pipe_pool *pool, int fds[2], bool drained)
{
	if (fds[0] == -1)
		return;
	pool->n_busy--;
	if (drained && pool->n_idle < pool->max_idle) {
		pool->idle[pool->n_idle][0] = fds[0];
		pool->idle[pool->n_idle][1] = fds[1];
		pool->n_idle++;
	} else {
		close(fds[0]);
		close(fds[1]);
	}
	fds[0] = fds[1] = -1;
}

/* What one pipe holds, in bytes: the most one splice moves. */
size_t
pipe_pool_pipe_size(const struct pipe_pool *pool)
{
	return pool->pipe_size;
}

/* Pipes handed out and not yet back (each holds bytes in flight). */
size_t
pipe_pool_n_busy(const struct pipe_pool *pool)
{
	return pool->n_busy;
}

/* Drained pipes kept for reuse. */
size_t
pipe_pool_n_idle(const struct pipe_pool *pool)
{
	return pool->n_idle;
}
