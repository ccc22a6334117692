#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# make check: every fuzz target's seed corpus through its replay program
# (tests/fuzz/replay.c), with LeakSanitizer on in a sanitizer build, so
# that a crash, sanitizer report or leak any corpus input ever caused fails
# the build.  Run from the build directory, as make check does.
set -u

status=0
for t in yamljson decode watch_stream kubeconfig config_file flags; do
	prog=./tests/fuzz/replay_$t
	if [ ! -x "$prog" ]; then
		echo "replay: $prog was not built"
		exit 99
	fi
	# The last detect_leaks wins over make check's detect_leaks=0.
	if ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=1" "$prog" \
	    >"tests/fuzz/replay_$t.out" 2>&1; then
		tail -n 1 "tests/fuzz/replay_$t.out"
	else
		echo "replay: $t FAILED; its output:"
		cat "tests/fuzz/replay_$t.out"
		status=1
	fi
	rm -f "tests/fuzz/replay_$t.out"
done
exit $status
