/* SPDX-License-Identifier: Apache-2.0 */
/* The clocks of base/clock.h. */
#include "config.h"

#include <time.h>

#include "base/clock.h"

static long long
to_ms(const struct timespec *ts)
{
	return (long long)ts->tv_sec * 1000 + ts->tv_nsec / 1000000;
}

long long
clock_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return to_ms(&ts);
}

long long
clock_mono_ms_coarse(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return to_ms(&ts);
}

double
clock_wall_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}
