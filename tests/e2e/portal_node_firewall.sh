#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# NodePorts on a node that limits them, with iptables-legacy and
# iptables-nft ($KPT_IPT_BACKENDS), on e2e_topology's network, where the
# node has two addresses: NODE_IP (outside-facing) and POD_GW_IP (the pod
# bridge).
#
#  1. A node whose filter INPUT drops by default (policy DROP, only
#     RELATED,ESTABLISHED accepted, as Fedora and CentOS ship it), in place
#     before kuproxy starts, in the backend kuproxy uses: NodePort traffic
#     from outside still flows, through KUBE-NODEPORT-NON-LOCAL, whose jump
#     kuproxy puts first in INPUT; other ports of the node stay closed.
#  2. --nodeport-addresses 192.168.77.0/24 (NODE_IP's network): the NodePort
#     answers on NODE_IP from outside, from a pod and from the node itself;
#     on the bridge address and on 127.0.0.1 it is refused (not
#     intercepted: nothing listens there).  The ClusterIP is not affected.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
e2e_init
e2e_topology
e2e_uplink
backends=$(ipt_backends "$NS_NODE")
[ -n "$backends" ] || e2e_skip "no iptables backend works in a namespace"

backend_start "$NS_POD1" pod-1 "$POD1_IP:8080"
backend_start "$NS_POD2" pod-2 "$POD2_IP:8080"
backend_start "$NS_POD3" pod-3 "$POD3_IP:8080"
# A server of the node's own, which the firewall is there to close.
backend_start "$NS_NODE" node-web "$NODE_IP:8080"

file="$T/services.yaml"
{
	yaml_service np 10.96.0.10 80 type=NodePort node_port=30080
	yaml_slice np 8080 "$POD1_IP" "$POD2_IP" "$POD3_IP"
} | yaml_list >"$file"

# firewall BACKEND on|off: the default-deny INPUT chain of the node.
firewall() {
	_ipt="iptables-$1"
	if [ "$2" = on ]; then
		nsx "$NS_NODE" "$_ipt" -A INPUT -m state \
		    --state RELATED,ESTABLISHED -j ACCEPT &&
		    nsx "$NS_NODE" "$_ipt" -P INPUT DROP
	else
		nsx "$NS_NODE" "$_ipt" -P INPUT ACCEPT &&
		    nsx "$NS_NODE" "$_ipt" -D INPUT -m state \
		    --state RELATED,ESTABLISHED -j ACCEPT
	fi || e2e_error "$_ipt: firewall $2"
}

i=0
for backend in $backends; do
	mode=$(relay_mode_for $i)
	KPT_LABEL=$backend
	i=$((i + 1))

	# 1. Default-deny INPUT.
	firewall "$backend" on
	expect_tally "firewall on: the node's own server is closed" \
	    "ERROR:timeout=1" \
	    "$NS_OUT" "$NODE_IP:8080" 1 --timeout 0.5
	KP_IPTABLES_BACKEND=$backend kuproxy_start "$NS_NODE" "$file" "$mode" \
	    --iptables-min-sync-period 200ms \
	    --nodeport-addresses 192.168.77.0/24
	portal_wait "$NS_NODE" "$backend" 'KUBE-NODEPORT-NON-LOCAL .*--dport' \
	    present || fail "$backend: no KUBE-NODEPORT-NON-LOCAL rule"
	first=$(ipt_save "$NS_NODE" "$backend" | grep -m 1 -- '^-A INPUT ')
	case $first in
	*"-j KUBE-NODEPORT-NON-LOCAL") ;;
	*) fail "$backend: first INPUT rule is not kuproxy's jump: $first" ;;
	esac
	expect_tally "firewall on: NodePort from outside" \
	    "pod-1=2 pod-2=2 pod-3=2" \
	    "$NS_OUT" "$NODE_IP:30080" 6
	expect_tally "firewall on: the node's own server still closed" \
	    "ERROR:timeout=1" "$NS_OUT" "$NODE_IP:8080" 1 --timeout 0.5
	firewall "$backend" off

	# 2. --nodeport-addresses.
	portal_rules "$NS_NODE" "$backend" |
	    grep -q -- '-A KUBE-NODEPORT-CONTAINER -d 192.168.77.0/24 ' ||
	    fail "$backend: the NodePort rule is not limited to" \
	    "192.168.77.0/24: $(portal_rules "$NS_NODE" "$backend")"
	expect_tally "NodePort on NODE_IP from outside" \
	    "pod-1=1 pod-2=1 pod-3=1" \
	    "$NS_OUT" "$NODE_IP:30080" 3
	expect_tally "NodePort on NODE_IP from a pod" \
	    "pod-1=1 pod-2=1 pod-3=1" \
	    "$NS_POD1" "$NODE_IP:30080" 3
	expect_tally "NodePort on NODE_IP from the node" \
	    "pod-1=1 pod-2=1 pod-3=1" \
	    "$NS_NODE" "$NODE_IP:30080" 3
	expect_tally "NodePort on the bridge IP, outside the CIDR, from a pod" \
	    "ERROR:refused=1" "$NS_POD1" "$POD_GW_IP:30080"
	expect_tally "NodePort on 127.0.0.1, outside the CIDR, from the node" \
	    "ERROR:refused=1" "$NS_NODE" 127.0.0.1:30080
	expect_tally "ClusterIP from a pod" "pod-1=1 pod-2=1 pod-3=1" \
	    "$NS_POD1" 10.96.0.10:80 3
	kuproxy_stop
done
