/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Running a program for the portal module (iptables-restore, iptables-save,
 * conntrack) with posix_spawn: input through a pipe, output and error
 * output collected, a deadline, and SIGPIPE kept away from the daemon.
 * portal.c decides what to run and what the result means.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "proxy/portal_exec.h"

extern char **environ;

/* See portal_exec.h. */
void
portal_run_clear(struct portal_run *run)
{
	free(run->out);
	free(run->err);
	memset(run, 0, sizeof(*run));
}

static int
portal_append(char **buf, size_t *len, const char *data, size_t n)
{
	char	*p;

	if ((p = realloc(*buf, *len + n + 1)) == NULL)
		return -1;
	memcpy(p + *len, data, n);
	*len += n;
	p[*len] = '\0';
	*buf = p;
	return 0;
}

/*
 * Start argv[0] (looked up in PATH, then /usr/sbin and /sbin, which a
 * daemon's PATH often lacks) with the given pipe ends as stdin, stdout and
 * stderr.  The child starts with no signal blocked and SIGPIPE at its
 * default, whatever the calling thread blocks (portal_job's thread blocks
 * nearly everything).  Returns 0 or an errno value.
 */
static int
portal_spawn(pid_t *pid, char *const argv[], int in, int out, int err)
{
	static const char *const dirs[] = { "/usr/sbin/", "/sbin/" };
	posix_spawn_file_actions_t	 fa;
	posix_spawnattr_t		 attr;
	sigset_t			 pipe_set, child_mask;
	char				 path[256];
	size_t				 i;
	int				 rc;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in, STDIN_FILENO);
	posix_spawn_file_actions_adddup2(&fa, out, STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&fa, err, STDERR_FILENO);
	posix_spawnattr_init(&attr);
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	sigemptyset(&child_mask);
	posix_spawnattr_setsigmask(&attr, &child_mask);
	posix_spawnattr_setsigdefault(&attr, &pipe_set);
	posix_spawnattr_setflags(&attr,
	    POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

	rc = posix_spawnp(pid, argv[0], &fa, &attr, argv, environ);
	for (i = 0; rc == ENOENT && strchr(argv[0], '/') == NULL &&
	    i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(path, sizeof(path), "%s%s", dirs[i], argv[0]);
		rc = posix_spawn(pid, path, &fa, &attr, argv, environ);
	}
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	return rc;
}

/*
 * Feed input to the child and collect its output until both output pipes
 * close or the deadline passes.  fds: stdin (may be -1), stdout, stderr.
 * Returns 0, or -1 on timeout.
 */
static int
portal_pump(int fds[3], const char *input, struct portal_run *run)
{
	long long	 deadline = clock_mono_ms() + PORTAL_EXEC_TIMEOUT_MS;
	size_t		 off = 0, in_len = input != NULL ? strlen(input) : 0;
	char		 buf[4096];
	struct pollfd	 pfd[3];
	ssize_t		 n;
	int		 i, left;

	while (fds[1] != -1 || fds[2] != -1) {
		if ((left = (int)(deadline - clock_mono_ms())) <= 0)
			return -1;
		for (i = 0; i < 3; i++) {
			pfd[i].fd = fds[i];
			pfd[i].events = i == 0 ? POLLOUT : POLLIN;
			pfd[i].revents = 0;
		}
		if (poll(pfd, 3, left) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (fds[0] != -1 && pfd[0].revents != 0) {
			n = write(fds[0], input + off, in_len - off);
			if (n > 0)
				off += (size_t)n;
			/* EPIPE: the tool quit early; its stderr says why. */
			if ((n == -1 && errno != EAGAIN && errno != EINTR) ||
			    off == in_len) {
				close(fds[0]);
				fds[0] = -1;
			}
		}
		for (i = 1; i < 3; i++) {
			if (fds[i] == -1 || pfd[i].revents == 0)
				continue;
			n = read(fds[i], buf, sizeof(buf));
			if (n == -1 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (n <= 0 || (i == 1 ? portal_append(&run->out,
			    &run->out_len, buf, (size_t)n) :
			    portal_append(&run->err, &run->err_len, buf,
			    (size_t)n)) == -1) {
				close(fds[i]);
				fds[i] = -1;
			}
		}
	}
	return 0;
}

/* See portal_exec.h. */
int
portal_exec(const char *const argv[], const char *input,
    struct portal_run *run)
{
	char		*args[16];
	int		 in[2] = { -1, -1 }, out[2] = { -1, -1 };
	int		 err[2] = { -1, -1 }, fds[3], i, status, rc = -1;
	int		 saved_errno = EIO, spawn_rc;
	sigset_t	 pipe_set, old_mask;
	struct timespec	 zero = { 0, 0 };
	pid_t		 pid;

	memset(run, 0, sizeof(*run));
	run->status = -1;
	memset(args, 0, sizeof(args));
	for (i = 0; argv[i] != NULL && i < 15; i++)
		if ((args[i] = strdup(argv[i])) == NULL)
			goto done;
	if (portal_append(&run->out, &run->out_len, "", 0) == -1 ||
	    portal_append(&run->err, &run->err_len, "", 0) == -1)
		goto done;
	if (pipe2(in, O_CLOEXEC) == -1 || pipe2(out, O_CLOEXEC) == -1 ||
	    pipe2(err, O_CLOEXEC) == -1) {
		saved_errno = errno;
		goto done;
	}

	/*
	 * A tool that exits before reading all its input must not kill us
	 * with SIGPIPE: block it while we write, and swallow it afterwards.
	 * The mask is per thread and so is a write's SIGPIPE, so this holds
	 * on the loop and on portal_job's thread alike.
	 */
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
	spawn_rc = portal_spawn(&pid, args, in[0], out[1], err[1]);
	close(in[0]);
	close(out[1]);
	close(err[1]);
	in[0] = out[1] = err[1] = -1;
	if (spawn_rc != 0) {
		pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
		saved_errno = spawn_rc;
		goto done;
	}
	fds[0] = in[1];
	fds[1] = out[0];
	fds[2] = err[0];
	for (i = 0; i < 3; i++)
		fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
	if (input == NULL || *input == '\0') {
		close(fds[0]);
		fds[0] = -1;
	}
	in[1] = out[0] = err[0] = -1;

	if (portal_pump(fds, input, run) == -1) {
		kill(pid, SIGKILL);
		saved_errno = ETIMEDOUT;
	}
	for (i = 0; i < 3; i++)
		if (fds[i] != -1)
			close(fds[i]);
	while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
		;
	while (sigtimedwait(&pipe_set, NULL, &zero) > 0)
		;
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	if (saved_errno != ETIMEDOUT) {
		run->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		rc = 0;
	}

done:
	for (i = 0; i < 2; i++) {
		if (in[i] != -1)
			close(in[i]);
		if (out[i] != -1)
			close(out[i]);
		if (err[i] != -1)
			close(err[i]);
	}
	for (i = 0; i < 16; i++)
		free(args[i]);
	if (rc == -1)
		errno = saved_errno;
	return rc;
}

/* See portal_exec.h. */
const char *
portal_xtables_lock_path(void)
{
	const char *path = getenv("XTABLES_LOCKFILE");

	return path != NULL && *path != '\0' ? path : "/run/xtables.lock";
}

const char *
portal_one_line(char *s)
{
	size_t	 n = strlen(s);
	char	*p;

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
		s[--n] = '\0';
	for (p = s; *p != '\0'; p++)
		if (*p == '\n')
			*p = ';';
	return n > 0 ? s : "(no error output)";
}
