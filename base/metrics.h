/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Writing the Prometheus text exposition format (0.0.4) into an evbuffer,
 * and the histograms kube-proxy's metrics use.  Hand-written because no C
 * client library is in Debian; the format is small and stable.
 */
#ifndef KUPROXY_METRICS_H
#define KUPROXY_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define HISTOGRAM_MAX_BUCKETS	20

struct histogram {
	double		bounds[HISTOGRAM_MAX_BUCKETS];	/* upper bounds, ascending */
	size_t		n_bounds;
	uint64_t	counts[HISTOGRAM_MAX_BUCKETS];	/* not cumulative */
	uint64_t	count;
	double		sum;
};

/* Buckets start, start*factor, ... (n of them), as Prometheus' ExponentialBuckets. */
void	histogram_init_exponential(struct histogram *, double start,
	    double factor, size_t n);
void	histogram_observe(struct histogram *, double value);

/* "# HELP" and "# TYPE" lines of a family; help is escaped. */
void	metrics_family(struct evbuffer *, const char *name, const char *type,
	    const char *help);
/*
 * One sample: name{k1="v1",...} value.  labels is a NULL-terminated list of
 * key, value pairs (values escaped); NULL for none.
 */
void	metrics_sample(struct evbuffer *, const char *name,
	    const char *const *labels, double value);
/* A whole histogram family's samples (cumulative buckets, +Inf, sum, count). */
void	metrics_histogram(struct evbuffer *, const char *name,
	    const struct histogram *);
/* Escape a label value into buf ('\\', '"', newline). */
const char *metrics_escape_label(const char *value, char *buf, size_t len);

#endif
