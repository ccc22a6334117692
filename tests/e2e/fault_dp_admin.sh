#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# The health and metrics servers under exposure and slow clients (fault
# matrix row 25).  kuproxy runs in the node namespace with its defaults:
# metrics on 127.0.0.1:10249, health on 0.0.0.0:10256.
#  1. ss shows the metrics server bound to 127.0.0.1 only and the health
#     server to every address; from another namespace (outside, routed to
#     the node) the metrics port refuses and /healthz answers 200.
#  2. 40 slowloris clients against /healthz (from outside) and 40 against
#     /metrics (on the node), each sending one header byte per second:
#     meanwhile 32 MiB go through a service byte-exact (the time is
#     reported next to a run without the attack, never asserted) and a
#     normal /healthz request answers 200.  evhttp's own timeout is an
#     idle one that each byte re-arms; kuproxy cuts every admin connection
#     10 s after accept, so every slow client is cut within 13 s, and
#     kuproxy_admin_connections_cut_total counts them.
# Afterwards kuproxy is alive, a healthy service answers, and its sockets
# are back at the baseline.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/faultlib.sh"
fault_init
e2e_topology
set -- $KPT_RELAY_MODES
mode=$1

backend_start "$NS_NODE" echo-0 127.0.0.11:8080 echo
backend_start "$NS_NODE" probe-0 127.0.0.12:8080
{
	yaml_service blob 10.96.10.1 80
	yaml_slice blob 8080 127.0.0.11
	yaml_service probe 10.96.10.2 80
	yaml_slice probe 8080 127.0.0.12
} | yaml_list >"$T/services.yaml"

kuproxy_start "$NS_NODE" "$T/services.yaml" "$mode"
kuproxy_port blob default/blob:http/TCP
kuproxy_port probe default/probe:http/TCP
e2e_wait_listen "$NS_NODE" 127.0.0.1:10249 5 ||
    fail "the metrics server is not listening on 127.0.0.1:10249"
fd_baseline

# healthz_from NS HOST: the status code of GET /healthz, "000" if refused.
healthz_from() {
	nsx "$1" curl -s -o /dev/null --max-time 3 -w '%{http_code}' \
	    "http://$2:10256/healthz" 2>/dev/null
	return 0
}

# ------------------------------------------------------------ 1. exposure
listen=$(nsx "$NS_NODE" ss -Hltn | awk '{ print $4 }')
echo "$listen" | grep -qx '127.0.0.1:10249' ||
    fail "metrics not on 127.0.0.1:10249: $listen"
[ "$(echo "$listen" | grep -c ':10249$')" = 1 ] ||
    fail "the metrics port is bound more than once: $listen"
echo "$listen" | grep -Eqx '(0\.0\.0\.0|\*):10256' ||
    fail "healthz not on every address: $listen"
client "$NS_OUT" --connect "$NODE_IP:10249" --timeout 2 >"$T/far.out" 2>&1
[ "$(distinct "$T/far.out")" = ERROR:refused ] ||
    fail "the metrics port from outside: want a refusal, got:" \
    "$(cat "$T/far.out")"
code=$(healthz_from "$NS_OUT" "$NODE_IP")
[ "$code" = 200 ] || fail "/healthz from outside answered $code"
ok "metrics bound to 127.0.0.1:10249 only (refused from outside)," \
    "/healthz on every address (200 from outside)"

# ----------------------------------------------------- 2. slow clients
echo_run() {
	KPT_CLIENT_TIMEOUT=60 client "$NS_NODE" --connect "127.0.0.1:$blob" \
	    --mode echo --bytes 33554432 --timeout 30 >"$T/$1.out" 2>&1 ||
	    fail "$1: $(cat "$T/$1.out")"
	# "- sent N SHA received M SHA SECONDS"
	set -- "$1" $(cat "$T/$1.out")
	[ "$4" = 33554432 ] && [ "$4" = "$7" ] && [ "$5" = "$8" ] ||
	    fail "$1: the echo differs: $(cat "$T/$1.out")"
	ECHO_SECS=$9
}
echo_run quiet
quiet_secs=$ECHO_SECS

fault_bg slow-healthz "$NS_OUT" slow-http --connect "$NODE_IP:10256" \
    --count 40 --seconds 13
slow1=$LAST_PID
fault_bg slow-metrics "$NS_NODE" slow-http --connect 127.0.0.1:10249 \
    --count 40 --seconds 13
slow2=$LAST_PID
sleep 1
held=$(fd_count "$KP_PID" socket)
echo_run attacked
code=$(healthz_from "$NS_OUT" "$NODE_IP")
[ "$code" = 200 ] || fail "/healthz during the attack answered $code"
ok "during 80 slow HTTP clients ($((held - FD_BASE_SOCKETS)) sockets" \
    "held): 32 MiB echoed byte-exact in $ECHO_SECS s (without them:" \
    "$quiet_secs s); /healthz 200"
wait "$slow1" "$slow2"
for what in healthz metrics; do
	# closed C open O
	set -- $(cat "$T/slow-$what.log")
	[ "$1" = closed ] || fail "slow /$what clients: $(cat "$T/slow-$what.log")"
	if [ "$4" = 0 ]; then
		ok "all $2 slow /$what clients were cut within 13 s"
		n=$(metric "kuproxy_admin_connections_cut_total{server=\"$what\"}")
		[ "${n:-0}" -ge "$2" ] ||
		    fail "kuproxy counted ${n:-no} /$what connections cut, want $2"
	else
		fail "row 25: $4 of 40 slow /$what clients sending a header" \
		    "byte a second were still connected after 13 s (admin.c" \
		    "cuts a connection 10 s after accept)"
	fi
done
still_healthy "slow HTTP clients" "127.0.0.1:$probe"
kuproxy_stop
