#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# A representative part of the end-to-end suite with every kuproxy under
# valgrind's memcheck (reliability matrix row 27): TCP (1 GiB each way,
# round robin, half-close, retries, live edits; splice and copy), UDP (DNS,
# endpoint edits, 64 KiB datagrams), portals (iptables-legacy and -nft),
# the Kubernetes API source (TLS, watches, relists, token rotation) and the
# operator interfaces (SIGHUP, health, metrics, kuproxy status).  The pass
# criterion is zero memcheck errors and zero definite or indirect leaks in
# every kuproxy process, and every test passing as usual (tests/e2e/lib.sh:
# KPT_VALGRIND=1).
#
# usage: tests/valgrind-e2e.sh [--builddir DIR] [-j N] [TEST...]
#   --builddir DIR  an out-of-tree build without sanitizers (default
#                   $KUPROXY_BUILD_DIR/valgrind, else _build/valgrind);
#                   configured and built first when it has no kuproxy
#   -j N            tests run at once (default 2)
#   TEST            e2e test names (tcp_round_robin ...) instead of the
#                   default set
# Needs root (as the e2e tests do) and valgrind.  Logs: DIR/valgrind-e2e/
# (TEST.log per test, TEST/kuproxy-PID.log per kuproxy process).  Prints a
# table and a one-line verdict; exits 0 only if everything was clean.
set -u

srcdir=$(cd "$(dirname "$0")/.." && pwd)
builddir=${KUPROXY_BUILD_DIR:-$srcdir/_build}/valgrind
jobs=2
# Each test's own waits are multiplied by this (lib.sh); memcheck makes
# kuproxy about 20 times slower, but the tests mostly wait on clients.
: "${KPT_TIME_SCALE:=3}"
# A test that takes longer than this is stopped and counts as failed.
test_timeout_s=600
# Every e2e test that runs kuproxy through $KUPROXY_BIN, the longest
# first, but those that measure kuproxy's speed, which memcheck divides by
# about 20 (fault_dp_udp's flood, fault_cp_api_objects' and
# fault_cp_api_bodies' memory and probe bounds: they run under ASan), and
# fault_cp_clock (libfaketime and valgrind do not mix).  The tests that
# copy the binary (packaging_sandbox, fault_privilege, fault_dp_fds) and
# the demo's run their own.
default_tests="api_source fault_cp_api_tls fault_cp_api_net fault_cp_api_down
    fault_cp_iptables fault_tcp_limits explain fault_dp_streams fault_dp_admin
    portal_lifecycle ops_sigterm tcp_bulk portal_async_sync fault_dp_backends
    fault_cp_api_token tcp_affinity fault_cp_file portal_paths portal_node_firewall
    udp_association_timeout udp_dns udp_endpoints_edit udp_large_datagram
    tcp_round_robin tcp_not_ready tcp_half_close tcp_retry tcp_live_edit
    ops_sighup ops_sdnotify ops_metrics ops_healthz workers"

# One test, run by xargs: OUT/TEST.log, OUT/TEST.rc, OUT/TEST.secs.
if [ "${1:-}" = --run-one ]; then
	out=$2 name=$3
	t0=$(date +%s)
	KPT_VALGRIND=1 KPT_VALGRIND_DIR=$out KPT_TIME_SCALE=$KPT_TIME_SCALE \
	    timeout "$test_timeout_s" sh "$srcdir/tests/e2e/$name.sh" \
	    >"$out/$name.log" 2>&1
	echo $? >"$out/$name.rc"
	echo $(($(date +%s) - t0)) >"$out/$name.secs"
	exit 0
fi

tests=""
while [ $# -gt 0 ]; do
	case $1 in
	--builddir) builddir=$2; shift 2 ;;
	-j) jobs=$2; shift 2 ;;
	-*) echo "usage: $0 [--builddir DIR] [-j N] [TEST...]" >&2; exit 2 ;;
	*) tests="$tests ${1%.sh}"; shift ;;
	esac
done
[ -n "$tests" ] || tests=$default_tests

if [ "$(id -u)" != 0 ]; then
	echo "valgrind-e2e: needs root, as the e2e tests do" >&2
	exit 77
fi
command -v valgrind >/dev/null 2>&1 || {
	echo "valgrind-e2e: no valgrind (packaging/install-deps installs it)" >&2
	exit 1
}

# The build: valgrind cannot run an ASan binary.
mkdir -p "$builddir" && builddir=$(cd "$builddir" && pwd) || exit 1
if [ ! -x "$builddir/kuproxy" ]; then
	[ -x "$srcdir/configure" ] || {
		echo "valgrind-e2e: run autoreconf -fi in $srcdir first" >&2
		exit 1
	}
	echo "valgrind-e2e: building in $builddir"
	(cd "$builddir" && { [ -f Makefile ] || "$srcdir/configure" -q; } &&
	    make -j"$jobs" kuproxy >/dev/null) || exit 1
fi
if grep -q '^SAN_CFLAGS = .*-fsanitize' "$builddir/Makefile" 2>/dev/null; then
	echo "valgrind-e2e: $builddir is a sanitizer build; give another" >&2
	exit 1
fi

out=$builddir/valgrind-e2e
rm -rf "$out"
mkdir -p "$out" || exit 1
export KUPROXY_BIN="$builddir/kuproxy" KUPROXY_SRCDIR="$srcdir" KPT_TIME_SCALE
started=$(date +%s)
echo "valgrind-e2e: $(echo "$tests" | wc -w) tests, $jobs at a time," \
    "logs in $out"
# shellcheck disable=SC2086 # one test name per word
printf '%s\n' $tests | xargs -P "$jobs" -I{} sh "$0" --run-one "$out" {}

# log_sum TEST ERE: the sum of the first number after ERE in TEST's logs.
log_sum() {
	cat "$out/$1"/kuproxy-*.log 2>/dev/null |
	    sed -n "s/.*$2 *\([0-9,]*\).*/\1/p" | tr -d , |
	    awk '{ n += $1 } END { print n + 0 }'
}

failed=no
printf '%-22s %-6s %5s %9s %7s %11s %10s\n' test result secs processes \
    errors "lost bytes" unfinished
for name in $tests; do
	rc=$(cat "$out/$name.rc" 2>/dev/null || echo 99)
	case $rc in
	0) result=PASS ;;
	77) result=SKIP ;;
	*) result=FAIL; failed=yes ;;
	esac
	# Complete reports end with an ERROR SUMMARY; a log without one
	# is a process killed on purpose (kill -9 tests, the EXIT trap).
	done_n=$(grep -l 'ERROR SUMMARY' "$out/$name"/kuproxy-*.log \
	    2>/dev/null | wc -l)
	all_n=$(grep -l '== Command:' "$out/$name"/kuproxy-*.log \
	    2>/dev/null | wc -l)
	errors=$(log_sum "$name" 'ERROR SUMMARY:')
	lost=$(($(log_sum "$name" 'definitely lost:') +
	    $(log_sum "$name" 'indirectly lost:')))
	[ "$errors" = 0 ] && [ "$lost" = 0 ] || failed=yes
	printf '%-22s %-6s %5s %9s %7s %11s %10s\n' "$name" "$result" \
	    "$(cat "$out/$name.secs" 2>/dev/null)" "$done_n" "$errors" "$lost" \
	    "$((all_n - done_n))"
	if [ "$result" = FAIL ]; then
		echo "---- $out/$name.log (last 30 lines)"
		tail -n 30 "$out/$name.log"
	fi
done
verdict=PASS
[ "$failed" = no ] || verdict=FAIL
echo "valgrind-e2e: $verdict in $(($(date +%s) - started))s"
[ "$failed" = no ]
