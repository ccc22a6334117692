/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for base/metrics.c: the Prometheus text format 0.0.4 as
 * kuproxy writes it.  Label values escape backslash, double quote and
 * newline; HELP text escapes backslash and newline only; histograms are
 * cumulative with a +Inf bucket, _sum and _count.  The exact lines are the
 * ones the "Exposition formats" document gives.  Pure: an evbuffer, no I/O.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <event2/buffer.h>

#include "base/metrics.h"

/* The buffer's text, NUL-terminated; the caller frees it. */
static char *
text_of(struct evbuffer *b)
{
	size_t	 len = evbuffer_get_length(b);
	char	*s = malloc(len + 1);

	cr_assert_not_null(s);
	evbuffer_copyout(b, s, len);
	s[len] = '\0';
	return s;
}

Test(metrics, label_values_escape_backslash_quote_and_newline)
{
	struct evbuffer	*b = evbuffer_new();
	const char	*labels[] = { "service", "we\"b\\x\ny", "port", "http",
			    NULL };
	char		*s;

	metrics_sample(b, "kuproxy_service_connections_total", labels, 5);
	s = text_of(b);
	cr_assert_str_eq(s, "kuproxy_service_connections_total"
	    "{service=\"we\\\"b\\\\x\\ny\",port=\"http\"} 5\n");
	free(s);
	evbuffer_free(b);
}

Test(metrics, help_escapes_backslash_and_newline_but_not_quotes)
{
	struct evbuffer	*b = evbuffer_new();
	char		*s;

	metrics_family(b, "x_total", "counter", "a \"quoted\" C:\\path\nnext");
	s = text_of(b);
	cr_assert_str_eq(s, "# HELP x_total a \"quoted\" C:\\\\path\\nnext\n"
	    "# TYPE x_total counter\n");
	free(s);
	evbuffer_free(b);
}

Test(metrics, sample_without_labels_and_integer_values)
{
	struct evbuffer	*b = evbuffer_new();
	char		*s;

	metrics_sample(b, "process_open_fds", NULL, 12);
	metrics_sample(b, "big_total", NULL, 1e15 + 2);
	metrics_sample(b, "ratio", NULL, 0.5);
	s = text_of(b);
	cr_assert_str_eq(s, "process_open_fds 12\nbig_total 1000000000000002\n"
	    "ratio 0.5\n");
	free(s);
	evbuffer_free(b);
}

Test(metrics, escape_never_splits_an_escape_at_the_buffer_end)
{
	char buf[6];

	/* Room for two escapes and the NUL, not for half of a third. */
	cr_assert_str_eq(metrics_escape_label("\"\"\"", buf, sizeof(buf)),
	    "\\\"\\\"");
	cr_assert_str_eq(metrics_escape_label("plain", buf, sizeof(buf)),
	    "pla");
}

Test(metrics, histogram_is_cumulative_with_inf_sum_and_count)
{
	struct evbuffer		*b = evbuffer_new();
	struct histogram	 h;
	char			*s;

	histogram_init_exponential(&h, 0.25, 2, 3);	/* 0.25 0.5 1 */
	histogram_observe(&h, 0.125);
	histogram_observe(&h, 0.375);
	histogram_observe(&h, 0.375);
	histogram_observe(&h, 7);
	metrics_histogram(b, "d_seconds", &h);
	s = text_of(b);
	cr_assert_str_eq(s,
	    "d_seconds_bucket{le=\"0.25\"} 1\n"
	    "d_seconds_bucket{le=\"0.5\"} 3\n"
	    "d_seconds_bucket{le=\"1\"} 3\n"
	    "d_seconds_bucket{le=\"+Inf\"} 4\n"
	    "d_seconds_sum 7.875\n"
	    "d_seconds_count 4\n");
	free(s);
	evbuffer_free(b);
}
