#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# The TCP relay's limits, reliability matrix rows 3, 5 and 6c: a client in
# its own namespace talks to kuproxy on the node over a veth.
#  - row 3: --max-connections 20 and 40 clients: 20 served and held, 20
#    reset at once and counted in kuproxy_tcp_connections_rejected_total;
#    a client reading 1 KiB/s from a backend that sends as fast as it can
#    grows kuproxy's RSS by less than 1 MiB (backpressure, not buffering).
#  - row 5: --tcp-keepalive 2s; two clients (one receiving a stream, one
#    idle) vanish without FIN or RST (iptables -j DROP on their output);
#    kuproxy closes both sockets of both sessions within the bound and the
#    backends see a reset.
#  - row 6c: --tcp-half-close-timeout 2s; the client sends and half-closes,
#    the backend never answers: the session is closed after the timeout.
# After each case kuproxy is alive, still serves a healthy service, and its
# sockets and pipes are back at their baseline.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/faultlib.sh"
e2e_init
KIT="$KUPROXY_SRCDIR/tests/e2e/fault_tcp_kit.py"
command -v curl >/dev/null 2>&1 ||
    e2e_error "missing curl (packaging/install-deps installs it)"
e2e_netns node
e2e_netns cli
NODE=10.78.0.1
ip -n "$NS_NODE" link add vcli type veth peer name eth0 netns "$NS_CLI" &&
    ip -n "$NS_NODE" addr add "$NODE/24" dev vcli &&
    ip -n "$NS_NODE" link set vcli up &&
    ip -n "$NS_CLI" addr add 10.78.0.2/24 dev eth0 &&
    ip -n "$NS_CLI" link set eth0 up || e2e_error "veth to $NS_CLI"

kit_bg() {
	_name=$1
	shift
	e2e_bg "$_name" "$NS_NODE" "$KPT_PYTHON" "$KIT" serve "$@"
}
backend_start "$NS_NODE" hello-0 127.0.0.11:8080 hello
backend_start "$NS_NODE" echo-0 127.0.0.12:8080 echo
kit_bg stream-0 --listen 127.0.0.13:8080 --mode stream
kit_bg quiet-0 --listen 127.0.0.14:8080 --mode quiet
kit_bg mute-0 --listen 127.0.0.15:8080 --mode mute --hold 15
for ip in 13 14 15; do
	e2e_wait_listen "$NS_NODE" "127.0.0.$ip:8080" 10 ||
	    e2e_error "backend on 127.0.0.$ip did not listen"
done

{
	n=0
	for svc in hello echo stream quiet mute; do
		n=$((n + 1))
		yaml_service "$svc" "10.96.7.$n" 80
		yaml_slice "$svc" 8080 "127.0.0.$((10 + n))"
	done
} | yaml_list >"$T/services.yaml"

kit() {
	timeout 30 ip netns exec "$NS_CLI" "$KPT_PYTHON" "$KIT" "$@"
}

# healthy WHAT: kuproxy alive, the hello service answers, sockets and pipes
# back at the baseline within 5 s (no session, no splice pipe left).
healthy() {
	kuproxy_alive || fail "$mode: $1: kuproxy died"
	_got=$(ask "$NS_CLI" "$NODE:$hello")
	[ "$_got" = "hello-0=1" ] ||
	    fail "$mode: $1: the healthy service answered '$_got'"
	_deadline=$(($(now_ms) + 5000))
	until [ "$(fd_count "$KP_PID" socket)" = "$base_sockets" ] &&
	    [ "$(fd_count "$KP_PID" pipe)" = "$base_pipes" ]; do
		[ "$(now_ms)" -lt "$_deadline" ] ||
		    fail "$mode: $1: $(fd_count "$KP_PID" socket) sockets and" \
		    "$(fd_count "$KP_PID" pipe) pipes," \
		    "not $base_sockets and $base_pipes"
		sleep 0.05
	done
	ok "$mode: $1: kuproxy alive, serving, descriptors at the baseline"
}

METRICS=10249	# faultlib.sh's metric reads it there
first=1
# One worker: the descriptor checks compare with a baseline of one pipe
# pool, and each worker keeps its own (workers.sh covers --workers).
for mode in $KPT_RELAY_MODES; do
	kuproxy_start "$NS_NODE" "$T/services.yaml" "$mode" --workers 1 \
	    --max-connections 20 --tcp-keepalive 2s \
	    --tcp-half-close-timeout 2s \
	    --metrics-bind-address "127.0.0.1:$METRICS" \
	    --healthz-bind-address ""
	for svc in hello echo stream quiet mute; do
		kuproxy_port "$svc" "default/$svc:http/TCP"
	done
	ask "$NS_CLI" "$NODE:$hello" >/dev/null
	base_sockets=$(fd_count "$KP_PID" socket)
	base_pipes=$(fd_count "$KP_PID" pipe)

	# Row 3: the cap.
	rm -f "$T/go"
	kit hold-many --connect "$NODE:$echo" --count 40 --go-file "$T/go" \
	    --hold 20 >"$T/many.out" 2>&1 &
	many=$!
	deadline=$(($(now_ms) + 20000))
	until grep -q '^ok' "$T/many.out"; do
		[ "$(now_ms)" -lt "$deadline" ] ||
		    fail "$mode: 40 clients: $(cat "$T/many.out")"
		sleep 0.05
	done
	set -- $(cat "$T/many.out")
	[ "$2" = 20 ] && [ "$4" = 20 ] ||
	    fail "$mode: --max-connections 20, 40 clients: $(cat "$T/many.out")"
	[ "$6" -lt 1000 ] ||
	    fail "$mode: a client over the cap waited $6 ms for its reset"
	rejected=$(metric 'kuproxy_tcp_connections_rejected_total{reason="max_connections"}')
	[ "$rejected" = 20 ] ||
	    fail "$mode: kuproxy_tcp_connections_rejected_total is '$rejected', not 20"
	ok "$mode: 20 of 40 clients served, 20 reset within $6 ms and counted"
	touch "$T/go"
	wait "$many"
	healthy "connection cap"

	# Row 3: a slow reader on a fast backend.
	rss0=$(rss_kb "$KP_PID")
	out=$(kit slow-read --connect "$NODE:$stream" --rate 1024 --seconds 5)
	rss1=$(rss_kb "$KP_PID")
	case $out in
	"read "*) ;;
	*) fail "$mode: slow reader: $out" ;;
	esac
	rss_bounded "$mode: slow reader" "$rss0" "$rss1" 1024
	ok "$mode: slow reader ($out): RSS $rss0 -> $rss1 KiB"
	healthy "slow reader"

	# Row 6c: half-closed, then silent.
	out=$(kit half-close --connect "$NODE:$mute")
	set -- $out
	[ "$3" = eof ] && [ "$5" -ge 1500 ] && [ "$5" -lt 6000 ] ||
	    fail "$mode: half-closed session, --tcp-half-close-timeout 2s: $out"
	ok "$mode: half-closed and silent: $out"
	healthy "half-close timeout"

	# Row 5: peers that vanish, once (keepalive is the kernel's, the same
	# in both relay modes); the client namespace is lost afterwards.
	if [ "$first" = 1 ] && nsx "$NS_CLI" iptables -L OUTPUT >/dev/null 2>&1
	then
		streamed=$(grep -c "stream ended" "$T/stream-0.log")
		quieted=$(grep -c "quiet ended" "$T/quiet-0.log")
		kit vanish --connect "$NODE:$stream" --ready-file "$T/v1" \
		    --hold 15 >/dev/null 2>&1 &
		v1=$!
		kit vanish --connect "$NODE:$quiet" --ready-file "$T/v2" \
		    --hold 15 >/dev/null 2>&1 &
		v2=$!
		deadline=$(($(now_ms) + 10000))
		until [ -e "$T/v1" ] && [ -e "$T/v2" ]; do
			[ "$(now_ms)" -lt "$deadline" ] ||
			    fail "$mode: vanishing clients did not connect"
			sleep 0.05
		done
		nsx "$NS_CLI" iptables -A OUTPUT -j DROP ||
		    e2e_error "iptables in $NS_CLI"
		t0=$(now_ms)
		until [ "$(grep -c "stream ended" "$T/stream-0.log")" -gt "$streamed" ] &&
		    [ "$(grep -c "quiet ended" "$T/quiet-0.log")" -gt "$quieted" ]; do
			[ "$(now_ms)" -lt $((t0 + 8000)) ] ||
			    fail "$mode: vanished clients: backends not closed" \
			    "8 s after the drop"
			sleep 0.05
		done
		took=$(($(now_ms) - t0))
		s=$(tail -n 1 "$T/stream-0.log")
		q=$(tail -n 1 "$T/quiet-0.log")
		case "$s/$q" in
		"stream ended: E"*"/quiet ended: ECONNRESET") ;;
		*) fail "$mode: vanished clients: '$s', '$q'" ;;
		esac
		ok "$mode: vanished clients (streaming and idle) closed in" \
		    "$took ms with --tcp-keepalive 2s; backends reset"
		kill "$v1" "$v2" 2>/dev/null
		wait "$v1" "$v2" 2>/dev/null
		nsx "$NS_CLI" iptables -F OUTPUT
		healthy "vanished clients"
	elif [ "$first" = 1 ]; then
		echo "SKIP (part): no iptables in $NS_CLI: row 5 not run"
	fi
	first=0
	kuproxy_stop
done
