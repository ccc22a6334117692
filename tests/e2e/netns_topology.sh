#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Smoke test of the harness's namespace network (e2e_topology), which the
# portal tests and the demo build on: the outside namespace reaches a pod
# only by being routed through the node, and pods reach each other over the
# node's bridge.  kuproxy is not involved.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
e2e_init
command -v ping >/dev/null 2>&1 || e2e_error "missing ping (iputils-ping)"
command -v curl >/dev/null 2>&1 || e2e_error "missing curl"

e2e_topology
nginx_start "$NS_POD1" pod-1 "$POD1_IP:8080"
backend_start "$NS_POD2" pod-2 "$POD2_IP:8080" hello

nsx "$NS_OUT" timeout 5 ping -c 1 -W 2 "$POD3_IP" >"$T/ping.out" 2>&1 ||
    fail "outside cannot ping pod-3 through the node: $(cat "$T/ping.out")"
ok "outside pings pod-3 ($POD3_IP) through the node"

got=$(nsx "$NS_OUT" timeout 5 curl -sS --max-time 3 "http://$POD1_IP:8080/" 2>&1)
[ "$got" = "pod-1 ($POD1_IP:8080)" ] ||
    fail "curl from outside to pod-1: got '$got'"
ok "outside curls pod-1: $got"

client "$NS_POD3" --connect "$POD2_IP:8080" >"$T/pod3.out" ||
    fail "pod-3 cannot reach pod-2: $(cat "$T/pod3.out")"
[ "$(count pod-2 "$T/pod3.out")" = 1 ] || fail "pod-3 to pod-2: $(cat "$T/pod3.out")"
ok "pod-3 reaches pod-2 over the bridge"

# The node is the only way between the two networks: without forwarding
# the outside must not reach the pods.
nsx "$NS_NODE" sysctl -qw net.ipv4.ip_forward=0
if nsx "$NS_OUT" timeout 3 ping -c 1 -W 1 "$POD3_IP" >/dev/null 2>&1; then
	fail "outside reached a pod with forwarding off in the node"
fi
ok "with ip_forward=0 in the node, the outside cannot reach the pods"
