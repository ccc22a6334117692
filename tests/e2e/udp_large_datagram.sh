#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Datagrams are relayed whole, up to IPv4's largest UDP payload.  Service
# default/echo (10.96.0.20, UDP port 7 to targetPort 7007) has three pods
# running a udpkit.py echo backend.  The client in the outside namespace
# sends one datagram of random bytes and checks the sha256 of what comes
# back (upstream kube-proxy cut datagrams at 4 KiB without a word):
#  1. 61440 bytes (60 KiB) and 65507 bytes (the IPv4 maximum) through the
#     ClusterIP portal, each from a fresh client, each arriving intact at
#     the backend and back at the client; every link is a 1500-byte MTU
#     veth, so these cross it as IP fragments;
#  2. the same sizes sent straight to the node's proxy port, no NAT.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/dnslib.sh"
dns_init
e2e_topology

CLUSTER_IP=10.96.0.20
udp_echo_start "$NS_POD1" pod-1 "$POD1_IP:7007"
udp_echo_start "$NS_POD2" pod-2 "$POD2_IP:7007"
udp_echo_start "$NS_POD3" pod-3 "$POD3_IP:7007"

{
	udp_service echo "$CLUSTER_IP" echo:UDP:7:7007
	udp_slice echo "echo:UDP:7007" "$POD1_IP" "$POD2_IP" "$POD3_IP"
} | udp_list >"$T/services.yaml"

kuproxy_start_portals "$T/services.yaml"
kuproxy_port echo default/echo:echo/UDP
portal_wait_synced "$CLUSTER_IP" 7

# send_check WHAT ADDR:PORT SIZE: one datagram of SIZE random bytes must
# come back identical, and one echo backend must log it whole.
sent_bytes=0
send_check() {
	_out="$T/send-$3-$(echo "$2" | tr ':.' '__').out"
	_seen=$(cat "$T"/echo-pod-*.log | grep -c " $3 bytes\$")
	timeout 10 ip netns exec "$NS_OUT" "$KPT_PYTHON" "$UDPKIT" send \
	    --to "$2" --size "$3" --timeout 3 >"$_out" 2>&1 ||
	    fail "$1: $3 bytes to $2: $(cat "$_out")"
	set -- "$1" "$2" "$3" $(cat "$_out")
	# sent N SHA received M SHA
	[ "$4" = sent ] && [ "$5" = "$3" ] && [ "$8" = "$3" ] &&
	    [ "$6" = "$9" ] ||
	    fail "$1: $3 bytes to $2 came back as: $(cat "$_out")"
	[ "$(cat "$T"/echo-pod-*.log | grep -c " $3 bytes\$")" = $((_seen + 1)) ] ||
	    fail "$1: no echo backend received the $3 bytes whole"
	sent_bytes=$((sent_bytes + $3))
	ok "$1: $3 bytes to $2 came back intact (sha256 $(echo "$6" |
	    cut -c1-16)...)"
}

for size in 61440 65507; do
	send_check "ClusterIP" "$CLUSTER_IP:7" "$size"
done
for size in 61440 65507; do
	send_check "proxy port" "$NODE_IP:$echo" "$size"
done

# kuproxy's own account: nothing dropped, every byte each way.
dropped=$(udp_metric kuproxy_udp_dropped_total echo)
to_backend=$(udp_metric kuproxy_service_bytes_total echo to_backend)
to_client=$(udp_metric kuproxy_service_bytes_total echo to_client)
[ "$dropped" = 0 ] || fail "kuproxy counted $dropped datagrams dropped"
[ "$to_backend" = "$sent_bytes" ] && [ "$to_client" = "$sent_bytes" ] ||
    fail "kuproxy counted $to_backend bytes to backends and $to_client to" \
    "clients, want $sent_bytes each way"
ok "kuproxy's metrics: $sent_bytes bytes each way, no datagram dropped"

kuproxy_stop
