/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logging: one line per event on stderr, klog-like text by default
 * ("I1125 04:25:24.123456 1234] message key=value") or one JSON object per
 * line.  Levels follow relayd's verbs; verbosity follows kube-proxy's -v.
 */
#ifndef KUPROXY_LOG_H
#define KUPROXY_LOG_H

#include <stdarg.h>

enum log_format {
	LOG_FORMAT_TEXT = 0,
	LOG_FORMAT_JSON,
};

/* Set verbosity (kube-proxy's -v) and output format; callable any time. */
void	log_init(int verbosity, enum log_format format);
int	log_verbosity(void);

/* Errors and warnings; log_warn appends strerror(errno). */
void	log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
/* Informational, always printed. */
void	log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
/* Printed only when the verbosity is at least `level`. */
void	log_v(int level, const char *, ...) __attribute__((format(printf, 2, 3)));
#define log_debug(...)	log_v(4, __VA_ARGS__)
/* For start-up failures and broken invariants only: log and exit(1). */
void	fatal(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));
void	fatalx(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));

/*
 * Rate limiting for errors that can repeat at packet rate: returns 1 when a
 * line may be printed now (at most one per interval_ms per limiter) and
 * counts what it suppressed.
 */
struct log_ratelimit {
	long long	last_ms;
	unsigned long	suppressed;
};
int	log_ratelimit_ok(struct log_ratelimit *, long long interval_ms);

/*
 * Rewrite msg in place (within len, at most 1023 bytes) with every byte
 * that is not printable ASCII as \xNN, never cutting one in half.  For
 * messages that quote what a server or a file sent: a newline there would
 * forge a log line, and bytes that are not UTF-8 would break the JSON
 * log format.
 */
void	log_escape(char *msg, size_t len);

#endif
