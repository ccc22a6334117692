#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# SIGTERM drains: kuproxy stops accepting and removes its rules at once,
# lets open connections finish within --shutdown-grace-period, then exits 0.
#  1. A 200 MiB echo transfer (OPS_DRAIN_BYTES) is held mid-way: the backend
#     is stopped (SIGSTOP) so that buffers fill and nothing can finish.
#     SIGTERM: a new client is refused at once, the portal rules are gone
#     (legacy backend, when it works here), kuproxy keeps running.  The
#     backend resumes: the transfer completes byte-exact both ways (sha256)
#     and kuproxy exits 0 right after it.
#  2. --shutdown-grace-period 1s and a connection that never ends: kuproxy
#     exits 0 between 0.9 s and 2.5 s after SIGTERM, and the connection is
#     closed (the client's next ping fails).
#  3. A second SIGTERM during the drain exits 0 at once (under 1 s).
# The drain is the relay's, so this runs in every mode of KPT_RELAY_MODES.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/opslib.sh"
ops_init
e2e_netns node
: "${OPS_DRAIN_BYTES:=209715200}"

# Rules are checked where the legacy backend works in a namespace.
rules=no
if nsx "$NS_NODE" iptables-legacy-restore </dev/null >/dev/null 2>&1 &&
    command -v iptables-legacy-save >/dev/null 2>&1; then
	KP_IPTABLES_BACKEND=legacy
	rules=yes
fi
rules_for() {	# ADDRESS-PREFIX: how many nat rules send it somewhere
	nsx "$NS_NODE" iptables-legacy-save -t nat | grep -cF -- "-d $1"
}

has_rules() {
	[ "$(rules_for "$1")" -gt 0 ]
}

backend_start "$NS_NODE" bulk-0 127.0.0.21:8080 echo
backend=$LAST_PID

file="$T/services.yaml"
{
	ops_service bulk 5000 10.96.8.1
	ops_slice bulk TCP 127.0.0.21
} | ops_list >"$file"
SEL='namespace="default",service="bulk",port="tcp",protocol="TCP"'

transfer_stalled() {
	metrics_fetch progress &&
	    metrics_is progress "kuproxy_service_connections_active{$SEL}" 1 &&
	    ! metrics_is progress \
	    "kuproxy_service_bytes_total{$SEL,direction=\"to_backend\"}" 0
}

# hold_open NAME: a tcpkit hold client to bulk, waiting on $T/go-NAME.
hold_open() {
	rm -f "$T/go-$1"
	e2e_bg "hold-$1" "$NS_NODE" timeout 60 "$KPT_PYTHON" "$TCPKIT" client \
	    --connect "127.0.0.1:$bulk" --mode hold --go-file "$T/go-$1" \
	    --timeout 30
	HOLD_PID=$LAST_PID
	wait_until 5 grep -q "ping first" "$T/hold-$1.log" ||
	    fail "$mode: no echo on bulk: $(cat "$T/hold-$1.log")"
}

for mode in $KPT_RELAY_MODES; do
	# 1. A long transfer completes through the drain.
	kuproxy_start "$NS_NODE" "$file" "$mode"
	kuproxy_port bulk default/bulk:tcp/TCP
	if [ "$rules" = yes ]; then
		wait_until 5 has_rules 10.96.8.1/32 ||
		    fail "$mode: no portal rule for bulk"
	fi
	kill -STOP "$backend"
	e2e_bg "bulk-$mode" "$NS_NODE" timeout 60 "$KPT_PYTHON" "$TCPKIT" \
	    client --connect "127.0.0.1:$bulk" --mode echo \
	    --bytes "$OPS_DRAIN_BYTES" --timeout 30
	transfer=$LAST_PID
	if ! wait_until 5 transfer_stalled; then
		kill -CONT "$backend"
		fail "$mode: the transfer did not start"
	fi
	kuproxy_mark
	kill -TERM "$KP_PID"
	kuproxy_wait_log "stopping; 1 connections may finish" 2 ||
	    fail "$mode: no stopping line after SIGTERM"
	client "$NS_NODE" --connect "127.0.0.1:$bulk" --show-ms >"$T/late.out"
	late=$(cut -d' ' -f2- "$T/late.out")
	case $late in
	"ERROR:refused "*) ;;
	*) fail "$mode: a new client during the drain got: $late" ;;
	esac
	if [ "$rules" = yes ]; then
		[ "$(rules_for 10.96.8.)" = 0 ] || fail "$mode: rules left" \
		    "during the drain: $(nsx "$NS_NODE" iptables-legacy-save -t nat)"
	fi
	sleep 0.3
	kuproxy_alive || fail "$mode: kuproxy exited with a transfer open"
	kill -CONT "$backend"
	wait_until 60 sh -c "! kill -0 $transfer 2>/dev/null" ||
	    fail "$mode: the transfer did not finish within 60 s"
	t_done=$(now_ms)
	wait "$transfer" || fail "$mode: transfer: $(cat "$T/bulk-$mode.log")"
	set -- $(cat "$T/bulk-$mode.log")
	# "- sent N SHA received M SHA SECONDS"
	[ "$3" = "$OPS_DRAIN_BYTES" ] && [ "$6" = "$OPS_DRAIN_BYTES" ] &&
	    [ "$4" = "$7" ] ||
	    fail "$mode: transfer not byte-exact: $(cat "$T/bulk-$mode.log")"
	kuproxy_wait_exit 3 ||
	    fail "$mode: kuproxy still runs 3 s after the last connection"
	[ "$KP_EXIT" = 0 ] || fail "$mode: kuproxy exited $KP_EXIT after draining"
	kuproxy_log_since | grep -q "all connections closed; exiting" ||
	    fail "$mode: no 'all connections closed' line"
	ok "$mode: SIGTERM mid-transfer: a new client refused in" \
	    "${late#ERROR:refused }, rules removed (checked: $rules);" \
	    "$OPS_DRAIN_BYTES bytes echoed byte-exact (sha256" \
	    "$(echo "$4" | cut -c1-12)...); exit 0" \
	    "$((KP_EXIT_MS - t_done)) ms after it finished"

	# 2. The grace period ends a connection that never would.
	kuproxy_start "$NS_NODE" "$file" "$mode" --shutdown-grace-period 1s
	kuproxy_port bulk default/bulk:tcp/TCP
	hold_open grace
	hold=$HOLD_PID
	t0=$(now_ms)
	kill -TERM "$KP_PID"
	kuproxy_wait_exit 5 || fail "$mode: kuproxy still runs 5 s after" \
	    "SIGTERM with a 1 s grace period"
	took=$((KP_EXIT_MS - t0))
	[ "$KP_EXIT" = 0 ] || fail "$mode: kuproxy exited $KP_EXIT"
	[ "$took" -ge 900 ] && [ "$took" -le 2500 ] ||
	    fail "$mode: kuproxy exited $took ms after SIGTERM (grace 1 s)"
	grep -q "shutdown grace period over; closing 1 connections" "$KP_LOG" ||
	    fail "$mode: no 'grace period over' line"
	touch "$T/go-grace"
	wait_until 10 sh -c "! kill -0 $hold 2>/dev/null" ||
	    fail "$mode: the held client hangs"
	wait "$hold" && fail "$mode: the held connection survived the grace" \
	    "period: $(cat "$T/hold-grace.log")"
	ok "$mode: grace period 1 s: exit 0 after $took ms, the open" \
	    "connection closed ($(tail -n 1 "$T/hold-grace.log" |
	    cut -d' ' -f2))"

	# 3. A second SIGTERM does not wait.
	kuproxy_start "$NS_NODE" "$file" "$mode"
	kuproxy_port bulk default/bulk:tcp/TCP
	hold_open again
	kill -TERM "$KP_PID"
	sleep 0.3
	kuproxy_alive || fail "$mode: kuproxy did not wait for the connection"
	t0=$(now_ms)
	kill -TERM "$KP_PID"
	kuproxy_wait_exit 5 || fail "$mode: still running after a second SIGTERM"
	took=$((KP_EXIT_MS - t0))
	[ "$KP_EXIT" = 0 ] || fail "$mode: kuproxy exited $KP_EXIT"
	[ "$took" -lt 1000 ] ||
	    fail "$mode: $took ms from the second SIGTERM to the exit"
	touch "$T/go-again"
	ok "$mode: a second SIGTERM exits 0 in $took ms"
done
