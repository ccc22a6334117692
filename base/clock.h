/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Clocks.  Every age, timeout and interval runs on the monotonic clock, so
 * that a step of the wall clock changes nothing; the wall clock is only for
 * timestamps shown to people (healthz, metrics, status).
 */
#ifndef KUPROXY_CLOCK_H
#define KUPROXY_CLOCK_H

/* Monotonic milliseconds. */
long long	clock_mono_ms(void);
/* The same at the kernel's tick resolution, cheaper: for per-packet use. */
long long	clock_mono_ms_coarse(void);
/* Wall-clock seconds since the epoch, for display. */
double		clock_wall_s(void);

#endif
