#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# DNS through a ClusterIP: three pods run dnsmasq, each answering who.test
# with its own address, behind service default/dns (10.96.0.10) with port
# 53 over UDP and over TCP, as cluster DNS is.  The client is dig, in the
# outside namespace, routed through the node where kuproxy's portal sends
# 10.96.0.10:53 to its proxy ports.
#  1. Six fresh clients (each dig has its own source port, so its own
#     association) are served 2/2/2 in a fixed rotation.
#  2. The same service address answers over TCP (dig +tcp) in the same
#     rotation, and UDP keeps working beside it.
# The TCP half depends on the relay mode, so the whole runs in each of
# $KPT_RELAY_MODES.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/dnslib.sh"
dns_init
e2e_topology

CLUSTER_IP=10.96.0.10
dnsmasq_start "$NS_POD1" pod-1 "$POD1_IP"
dnsmasq_start "$NS_POD2" pod-2 "$POD2_IP"
dnsmasq_start "$NS_POD3" pod-3 "$POD3_IP"

{
	udp_service dns "$CLUSTER_IP" dns:UDP:53:53 dns-tcp:TCP:53:53
	udp_slice dns "dns:UDP:53 dns-tcp:TCP:53" "$POD1_IP" "$POD2_IP" \
	    "$POD3_IP"
} | udp_list >"$T/services.yaml"

# rotation_check WHAT FILE: FILE holds six answers; each pod twice, and
# answer i and i+3 from the same pod.
rotation_check() {
	_what=$1
	for _ip in "$POD1_IP" "$POD2_IP" "$POD3_IP"; do
		_n=$(grep -cxF "$_ip" "$2")
		[ "$_n" = 2 ] || fail "$mode: $_what: $_ip answered $_n of 6, want 2:" \
		    "$(tr '\n' ' ' <"$2")"
	done
	set -- $(cat "$2")
	[ "$1" = "$4" ] && [ "$2" = "$5" ] && [ "$3" = "$6" ] ||
	    fail "$mode: $_what: not a rotation: $*"
}

for mode in $KPT_RELAY_MODES; do
	KPT_UDP_MODE=$mode kuproxy_start_portals "$T/services.yaml"
	kuproxy_port udp default/dns:dns/UDP
	kuproxy_port tcp default/dns:dns-tcp/TCP
	portal_wait_synced "$CLUSTER_IP" 53

	# 1. Fresh clients over UDP.
	: >"$T/udp-$mode.out"
	for i in 1 2 3 4 5 6; do
		who "$NS_OUT" "$CLUSTER_IP" >>"$T/udp-$mode.out"
	done
	rotation_check "UDP" "$T/udp-$mode.out"
	n_assoc=$(grep -c \
	    "default/dns:dns/UDP: client $OUT_IP:[0-9]*: new association" \
	    "$KP_LOG")
	[ "$n_assoc" = 6 ] ||
	    fail "$mode: 6 fresh clients made $n_assoc associations, want 6"
	ok "$mode: 6 fresh UDP clients of $CLUSTER_IP:53, 2/2/2 in rotation" \
	    "($(tr '\n' ' ' <"$T/udp-$mode.out" | sed 's/ $//'))"

	# 2. TCP on the same address and port number, then UDP again.
	: >"$T/tcp-$mode.out"
	for i in 1 2 3 4 5 6; do
		who "$NS_OUT" "$CLUSTER_IP" +tcp >>"$T/tcp-$mode.out"
	done
	rotation_check "TCP" "$T/tcp-$mode.out"
	got=$(who "$NS_OUT" "$CLUSTER_IP")
	case $got in
	"$POD1_IP" | "$POD2_IP" | "$POD3_IP") ;;
	*) fail "$mode: UDP after the TCP queries: $got" ;;
	esac
	ok "$mode: dig +tcp to $CLUSTER_IP:53 answered 2/2/2 in rotation" \
	    "($(tr '\n' ' ' <"$T/tcp-$mode.out" | sed 's/ $//')); UDP still" \
	    "answers ($got)"

	kuproxy_stop
done
