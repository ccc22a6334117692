# SPDX-License-Identifier: Apache-2.0
#
# Helpers for the data-plane fault tests (tests/e2e/fault_dp_*.sh), sourced
# after lib.sh.  lib.sh keeps the life cycle (temp dir, namespaces, trap,
# kuproxy itself); this file adds what every fault case checks afterwards:
# kuproxy is alive, still serves a healthy service, and holds no more
# descriptors than before the fault.  faultkit.py provides the misbehaving
# peers.
#
# The building blocks:
#   fault_init                   e2e_init plus faultkit.py and curl
#   faultkit NS ARGS...          run faultkit.py in NS, bounded in time
#   fault_bg NAME NS ARGS...     a faultkit.py process in the background
#   fd_count PID socket|pipe|all descriptors of a process, by kind
#   fd_baseline                  remember kuproxy's sockets and pipes now
#   fd_back_to_baseline [S]      wait until its sockets are back to that
#   cpu_ticks PID                user+system clock ticks used so far
#   metric SELECTOR              a sample of the kuproxy in $NS_NODE
#   still_healthy WHAT ADDR:PORT kuproxy alive, a probe service answers,
#                                descriptors back at the baseline
#   rss_kb PID                   a process's resident memory, in KiB
#   rss_bounded WHAT BEFORE AFTER KIB   fail if RSS grew by KIB or more
#                                (not under ASan, whose quarantine keeps
#                                freed memory resident, nor valgrind)
# Scratch variables are _f-prefixed globals (POSIX sh has no local).

fault_init() {
	e2e_init
	command -v curl >/dev/null 2>&1 ||
	    e2e_error "missing curl (packaging/install-deps installs it)"
	FAULTKIT="$KUPROXY_SRCDIR/tests/e2e/faultkit.py"
	[ -r "$FAULTKIT" ] || e2e_error "no $FAULTKIT"
}

# faultkit NS ARGS...: run faultkit.py in NS, at most KPT_CLIENT_TIMEOUT
# seconds (default 30).
faultkit() {
	_fns=$1
	shift
	timeout "${KPT_CLIENT_TIMEOUT:-30}" ip netns exec "$_fns" \
	    "$KPT_PYTHON" "$FAULTKIT" "$@"
}

# fault_bg NAME NS ARGS...: faultkit.py ARGS in NS in the background, output
# in $T/NAME.log, pid in LAST_PID (killed by the EXIT trap).
fault_bg() {
	_fname=$1
	_fns=$2
	shift 2
	e2e_bg "$_fname" "$_fns" "$KPT_PYTHON" "$FAULTKIT" "$@"
}

# fd_count PID socket|pipe|all: how many of PID's descriptors are sockets,
# pipes, or any.
fd_count() {
	case $2 in
	all) ls "/proc/$1/fd" 2>/dev/null | wc -l ;;
	*) ls -l "/proc/$1/fd" 2>/dev/null | grep -c " -> $2:" ;;
	esac
}

# fd_baseline: remember the current kuproxy's sockets and pipes.  Idle
# pipes stay in the splice pool (at most 64, two descriptors each), so only
# sockets must come back exactly.
fd_baseline() {
	FD_BASE_SOCKETS=$(fd_count "$KP_PID" socket)
	FD_BASE_PIPES=$(fd_count "$KP_PID" pipe)
}

# fd_back_to_baseline [SECONDS]: wait (default 5 s) until kuproxy holds as
# many sockets as at fd_baseline and at most 128 more pipe ends (the pool's
# idle pipes).  Returns 1 on timeout; FD_NOW says what it held last.
fd_back_to_baseline() {
	_fdeadline=$(($(now_ms) + ${1:-5} * 1000))
	while :; do
		_fs=$(fd_count "$KP_PID" socket)
		_fp=$(fd_count "$KP_PID" pipe)
		FD_NOW="$_fs sockets, $_fp pipe ends"
		FD_NOW="$FD_NOW (baseline $FD_BASE_SOCKETS, $FD_BASE_PIPES)"
		[ "$_fs" = "$FD_BASE_SOCKETS" ] &&
		    [ "$_fp" -le $((FD_BASE_PIPES + 128)) ] && return 0
		[ "$(now_ms)" -lt "$_fdeadline" ] || return 1
		sleep 0.05
	done
}

# cpu_ticks PID: utime + stime of PID, in clock ticks.
cpu_ticks() {
	awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

# metric SELECTOR: the sum of the samples of the kuproxy in $NS_NODE whose
# line starts with SELECTOR (a family name, or a name and its first labels
# up to a comma or brace), e.g. 'kuproxy_udp_dropped_total{namespace="x"'.
# Prints nothing when there is none.
metric() {
	timeout 5 ip netns exec "$NS_NODE" curl -s --max-time 3 \
	    "http://127.0.0.1:10249/metrics" >"$T/metric.page" 2>/dev/null
	awk -v sel="$1" 'index($0, sel) == 1 { s += $NF; n++ }
	    END { if (n) printf "%.0f\n", s }' "$T/metric.page"
}

# still_healthy WHAT ADDR:PORT: after a fault, kuproxy is alive, a healthy
# service at ADDR:PORT (a tcpkit hello backend behind it) answers three
# connections from $NS_NODE, and kuproxy's descriptors are back at the
# baseline within 5 s.
still_healthy() {
	kuproxy_alive || fail "$1: kuproxy died"
	client "$NS_NODE" --connect "$2" --count 3 --timeout 3 \
	    >"$T/healthy.out" 2>&1 ||
	    fail "$1: the healthy service failed afterwards:" \
	    "$(cat "$T/healthy.out")"
	fd_back_to_baseline 5 ||
	    fail "$1: kuproxy's descriptors are not back at the baseline: $FD_NOW"
	ok "$1: kuproxy alive, the healthy service answers, $FD_NOW"
}

rss_kb() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# rss_bounded WHAT BEFORE AFTER KIB: fail unless RSS (KiB) grew by less than
# KIB.  An AddressSanitizer build keeps freed memory in quarantine, so there
# the growth is only reported.
rss_bounded() {
	if grep -qa __asan_init "$KUPROXY_BIN" 2>/dev/null; then
		echo "NOTE: $1: RSS $2 -> $3 KiB, not checked under ASan" >&2
		return 0
	fi
	# memcheck's RSS is mostly its own shadow memory.
	if [ "${KPT_VALGRIND:-0}" = 1 ]; then
		echo "NOTE: $1: RSS $2 -> $3 KiB, not checked under valgrind" >&2
		return 0
	fi
	[ $(($3 - $2)) -lt "$4" ] ||
	    fail "$1: RSS grew from $2 to $3 KiB (bound: $4 KiB)"
}
