/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logging to stderr.  Owns the line format (text or JSON) and verbosity; the
 * callers own what they say.  Lines are written with one write(2) each so
 * that lines from concurrent processes in tests never interleave.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"

static int		verbosity;
static enum log_format	format = LOG_FORMAT_TEXT;

void
log_init(int v, enum log_format f)
{
	verbosity = v;
	format = f;
}

int
log_verbosity(void)
{
	return verbosity;
}

/* Append s to buf as the body of a JSON string. */
static size_t
json_escape(char *buf, size_t len, const char *s)
{
	size_t n = 0;

	for (; *s != '\0' && n + 7 < len; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			buf[n++] = '\\';
			buf[n++] = (char)c;
		} else if (c < 0x20) {
			n += (size_t)snprintf(buf + n, len - n, "\\u%04x", c);
		} else
			buf[n++] = (char)c;
	}
	buf[n] = '\0';
	return n;
}

static void
vlog(char level, int errnum, const char *fmt, va_list ap)
{
	char		 msg[2048], line[4400];
	struct timeval	 tv;
	struct tm	 tm;
	int		 n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (errnum != 0) {
		size_t l = strlen(msg);

		snprintf(msg + l, sizeof(msg) - l, ": %s", strerror(errnum));
	}
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);

	if (format == LOG_FORMAT_JSON) {
		char esc[4200];

		json_escape(esc, sizeof(esc), msg);
		n = snprintf(line, sizeof(line),
		    "{\"ts\":%lld.%06ld,\"level\":\"%c\",\"pid\":%d,"
		    "\"msg\":\"%s\"}\n", (long long)tv.tv_sec,
		    (long)tv.tv_usec, level, (int)getpid(), esc);
	} else {
		n = snprintf(line, sizeof(line),
		    "%c%02d%02d %02d:%02d:%02d.%06ld %7d] %s\n", level,
		    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		    tm.tm_sec, (long)tv.tv_usec, (int)getpid(), msg);
	}
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	/* Best effort: there is nowhere to report a failed log write. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

void
log_warn(const char *fmt, ...)
{
	va_list	ap;
	int	saved = errno;

	va_start(ap, fmt);
	vlog('E', saved, fmt, ap);
	va_end(ap);
	errno = saved;
}

void
log_warnx(const char *fmt, ...)
{
	va_list	ap;
	int	saved = errno;

	va_start(ap, fmt);
	vlog('W', 0, fmt, ap);
	va_end(ap);
	errno = saved;
}

void
log_info(const char *fmt, ...)
{
	va_list	ap;
	int	saved = errno;

	va_start(ap, fmt);
	vlog('I', 0, fmt, ap);
	va_end(ap);
	errno = saved;
}

void
log_v(int level, const char *fmt, ...)
{
	va_list	ap;
	int	saved = errno;

	if (verbosity < level)
		return;
	va_start(ap, fmt);
	vlog('I', 0, fmt, ap);
	va_end(ap);
	errno = saved;
}

void
fatal(const char *fmt, ...)
{
	va_list	ap;
	int	saved = errno;

	va_start(ap, fmt);
	vlog('F', saved, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vlog('F', 0, fmt, ap);
	va_end(ap);
	exit(1);
}

int
log_ratelimit_ok(struct log_ratelimit *rl, long long interval_ms)
{
	struct timespec	ts;
	long long	now;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	if (rl->last_ms != 0 && now - rl->last_ms < interval_ms) {
		rl->suppressed++;
		return 0;
	}
	if (rl->suppressed > 0)
		log_warnx("%lu similar messages suppressed", rl->suppressed);
	rl->last_ms = now;
	rl->suppressed = 0;
	return 1;
}

void
log_escape(char *msg, size_t len)
{
	char		 out[1024];
	size_t		 i, n = 0;
	unsigned char	 ch;

	for (i = 0; msg[i] != '\0' && n + 5 < sizeof(out) && n + 5 < len;
	    i++) {
		ch = (unsigned char)msg[i];
		if (ch >= 0x20 && ch < 0x7f)
			out[n++] = (char)ch;
		else
			n += (size_t)snprintf(out + n, sizeof(out) - n,
			    "\\x%02x", ch);
	}
	out[n] = '\0';
	snprintf(msg, len, "%s", out);
}
