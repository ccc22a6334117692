/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Prometheus text format: escaping, families, samples and histograms.
 * Owns only the syntax; which metrics exist is admin.c's business.
 */
#include "config.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "base/metrics.h"

void
histogram_init_exponential(struct histogram *h, double start, double factor,
    size_t n)
{
	size_t i;

	memset(h, 0, sizeof(*h));
	if (n > HISTOGRAM_MAX_BUCKETS)
		n = HISTOGRAM_MAX_BUCKETS;
	for (i = 0; i < n; i++) {
		h->bounds[i] = start;
		start *= factor;
	}
	h->n_bounds = n;
}

void
histogram_observe(struct histogram *h, double v)
{
	size_t i;

	for (i = 0; i < h->n_bounds; i++)
		if (v <= h->bounds[i]) {
			h->counts[i]++;
			break;
		}
	h->count++;
	h->sum += v;
}

/* Escape s for a label value (quote) or for HELP text (no quote). */
static const char *
escape(const char *s, bool quote, char *buf, size_t len)
{
	size_t n = 0;

	for (; *s != '\0' && n + 3 < len; s++) {
		if (*s == '\\' || (quote && *s == '"')) {
			buf[n++] = '\\';
			buf[n++] = *s;
		} else if (*s == '\n') {
			buf[n++] = '\\';
			buf[n++] = 'n';
		} else
			buf[n++] = *s;
	}
	buf[n] = '\0';
	return buf;
}

const char *
metrics_escape_label(const char *value, char *buf, size_t len)
{
	return escape(value, true, buf, len);
}

void
metrics_family(struct evbuffer *b, const char *name, const char *type,
    const char *help)
{
	char esc[512];

	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name,
	    escape(help, false, esc, sizeof(esc)), name, type);
}

static void
add_value(struct evbuffer *b, double v)
{
	if (isinf(v))
		evbuffer_add_printf(b, v > 0 ? "+Inf\n" : "-Inf\n");
	else if (v > -1e15 && v < 1e15 && v == (double)(long long)v)
		evbuffer_add_printf(b, "%lld\n", (long long)v);
	else
		evbuffer_add_printf(b, "%.17g\n", v);
}

void
metrics_sample(struct evbuffer *b, const char *name,
    const char *const *labels, double value)
{
	char	esc[1024];
	size_t	i;

	evbuffer_add_printf(b, "%s", name);
	for (i = 0; labels != NULL && labels[i] != NULL; i += 2)
		evbuffer_add_printf(b, "%s%s=\"%s\"", i == 0 ? "{" : ",",
		    labels[i], metrics_escape_label(labels[i + 1], esc,
		    sizeof(esc)));
	if (labels != NULL && labels[0] != NULL)
		evbuffer_add_printf(b, "}");
	evbuffer_add_printf(b, " ");
	add_value(b, value);
}

void
metrics_histogram(struct evbuffer *b, const char *name,
    const struct histogram *h)
{
	char		 bucket[256], le[32];
	const char	*labels[3] = { "le", le, NULL };
	uint64_t	 cumulative = 0;
	size_t		 i;

	snprintf(bucket, sizeof(bucket), "%s_bucket", name);
	for (i = 0; i < h->n_bounds; i++) {
		cumulative += h->counts[i];
		snprintf(le, sizeof(le), "%g", h->bounds[i]);
		metrics_sample(b, bucket, labels, (double)cumulative);
	}
	snprintf(le, sizeof(le), "+Inf");
	metrics_sample(b, bucket, labels, (double)h->count);
	snprintf(bucket, sizeof(bucket), "%s_sum", name);
	metrics_sample(b, bucket, NULL, h->sum);
	snprintf(bucket, sizeof(bucket), "%s_count", name);
	metrics_sample(b, bucket, NULL, (double)h->count);
}
