#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# run-suite.sh PROGRAM [ARGS...]: run one Criterion suite for make check.
#
# Criterion's runner is multithreaded (nanomsg) and forks a child per test.
# Under AddressSanitizer (gcc 12's libasan has no fork handler), a child
# forked while another runner thread holds the allocator's lock waits for
# it for ever, inside Criterion, before the test starts.  So a suite that
# runs longer than SUITE_LIMIT_S (each takes seconds, under ASan too) is
# stopped and run once more; a hang of
# kuproxy's own code hangs the second run too, and fails.  LeakSanitizer
# is off: the runner leaks in its parent, and a leak in a test's child does
# not fail the test.
SUITE_LIMIT_S=${KPT_SUITE_LIMIT_S:-120}
ASAN_OPTIONS=detect_leaks=0
export ASAN_OPTIONS

timeout -k 10 "$SUITE_LIMIT_S" "$@"
rc=$?
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
	echo "run-suite: $1 still ran after $SUITE_LIMIT_S s (a Criterion" \
	    "child stuck after fork?); running it once more"
	timeout -k 10 "$SUITE_LIMIT_S" "$@"
	rc=$?
fi
exit "$rc"
