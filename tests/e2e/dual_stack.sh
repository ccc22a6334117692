#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Dual-stack services through kuproxy's portal rules (iptables-legacy), on
# the pod/node/outside network (e2e_topology) with IPv6 addresses added:
#
#   pods fd00:244::11..13/64 -- br0 fd00:244::1 [node] vout fd00:77::1
#       -- fd00:77::2 outside
#
# kuproxy runs with --bind-address :: and --workers 2, so every proxy port
# is one dual-stack socket per worker, serving both families, and the
# workers share one balancer.
#
#  - A dual-stack Service (clusterIPs 10.96.0.20 and fd00:96::20, an IPv4
#    and an IPv6 EndpointSlice): a pod dialling the IPv4 ClusterIP lands on
#    IPv4 endpoints only, the IPv6 ClusterIP on IPv6 endpoints only, evenly
#    (each family keeps its own rotation), as upstream's kernel modes do.
#  - Its NodePort on the node's IPv6 address from outside, and from the
#    node itself to its IPv6 ClusterIP (DNAT to the node's IPv6 host IP).
#  - An IPv6-only Service with a TCP and a UDP port: both work from a pod.
#  - ip6tables-save holds the KUBE-PORTALS rules for the IPv6 addresses,
#    `kuproxy explain` shows both families;
#    after kill -9, `kuproxy --cleanup` removes kuproxy's rules from both
#    families.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
e2e_init
e2e_topology
e2e_uplink 10.96.0.0/12
command -v ip6tables-legacy-restore >/dev/null 2>&1 ||
    e2e_skip "no ip6tables-legacy-restore"
printf '*nat\nCOMMIT\n' | nsx "$NS_NODE" ip6tables-legacy-restore --noflush \
    >/dev/null 2>&1 || e2e_skip "ip6tables-legacy does not work here"

# IPv6 beside the IPv4 network; nodad: addresses usable at once.
V6_GW=fd00:244::1
V6_NODE=fd00:77::1
V6_OUT=fd00:77::2
{
	nsx "$NS_NODE" sysctl -qw net.ipv6.conf.all.forwarding=1 &&
	ip -n "$NS_NODE" -6 addr add "$V6_GW/64" dev br0 nodad &&
	ip -n "$NS_NODE" -6 addr add "$V6_NODE/64" dev vout nodad &&
	ip -n "$NS_NODE" -6 route add default via "$V6_OUT" &&
	ip -n "$NS_OUT" -6 addr add "$V6_OUT/64" dev eth0 nodad &&
	ip -n "$NS_OUT" -6 route add default via "$V6_NODE"
} || e2e_error "IPv6 on the node and outside"
for n in 1 2 3; do
	eval "ns=\$NS_POD$n"
	{
		ip -n "$ns" -6 addr add "fd00:244::1$n/64" dev eth0 nodad &&
		ip -n "$ns" -6 route add default via "$V6_GW"
	} || e2e_error "IPv6 on pod$n"
done

# Names tell the family: v4-1, v4-2 answer on IPv4; v6-2, v6-3 on IPv6.
backend_start "$NS_POD1" v4-1 "$POD1_IP:8080"
backend_start "$NS_POD2" v4-2 "$POD2_IP:8080"
backend_start "$NS_POD2" v6-2 "[fd00:244::12]:8080"
backend_start "$NS_POD3" v6-3 "[fd00:244::13]:8080"
e2e_bg udp-echo "$NS_POD3" "$KPT_PYTHON" \
    "$KUPROXY_SRCDIR/tests/e2e/udpkit.py" echo --listen "[fd00:244::13]:5353"
_deadline=$(($(now_ms) + 10000))
until nsx "$NS_POD3" ss -Hlun | grep -qF "[fd00:244::13]:5353"; do
	[ "$(now_ms)" -lt "$_deadline" ] || e2e_error "udp echo did not bind"
	sleep 0.05
done

# expect6 WHAT WANT NS IPV6 PORT COUNT: as expect_tally, over IPv6
# (tcpkit.py's client is IPv4 only): COUNT connections with socat, each
# reading a backend's name until EOF.
expect6() {
	_what=$1 _want=$2 _ns=$3 _ip=$4 _port=$5 _n=$6
	: >"$T/ask6.out"
	while [ "$_n" -gt 0 ]; do
		_name=$(timeout 3 ip netns exec "$_ns" socat -u \
		    "TCP6:[$_ip]:$_port,connect-timeout=2" STDOUT 2>&1 |
		    tr -d '\r' | head -n 1)
		echo "- ${_name:-ERROR:empty}" >>"$T/ask6.out"
		_n=$((_n - 1))
	done
	_got=$(tally "$T/ask6.out")
	[ "$_got" = "$_want" ] ||
	    fail "$_what ([$_ip]:$_port): got '$_got', want '$_want'"
	ok "$_what: $_got"
}

# slice NAME SERVICE FAMILY PROTO PORT ADDRESS...
slice() {
	_n=$1 _svc=$2 _fam=$3 _proto=$4 _port=$5
	shift 5
	echo "- addressType: $_fam"
	echo "  apiVersion: discovery.k8s.io/v1"
	echo "  kind: EndpointSlice"
	echo "  metadata:"
	echo "    labels:"
	echo "      kubernetes.io/service-name: $_svc"
	echo "    name: $_n"
	echo "    namespace: default"
	echo "  ports:"
	echo "  - name: p-$(echo "$_proto" | tr 'A-Z' 'a-z')"
	echo "    port: $_port"
	echo "    protocol: $_proto"
	echo "  endpoints:"
	for _a in "$@"; do
		echo "  - addresses: [\"$_a\"]"
		echo "    conditions: {ready: true, serving: true, terminating: false}"
	done
}

file="$T/services.yaml"
{
	cat <<YAML
- apiVersion: v1
  kind: Service
  metadata: {name: dual, namespace: default}
  spec:
    type: NodePort
    clusterIP: 10.96.0.20
    clusterIPs: [10.96.0.20, "fd00:96::20"]
    ipFamilies: [IPv4, IPv6]
    ipFamilyPolicy: RequireDualStack
    ports:
    - {name: p-tcp, port: 80, protocol: TCP, targetPort: 8080, nodePort: 30080}
- apiVersion: v1
  kind: Service
  metadata: {name: v6only, namespace: default}
  spec:
    clusterIP: "fd00:96::21"
    clusterIPs: ["fd00:96::21"]
    ipFamilies: [IPv6]
    ipFamilyPolicy: SingleStack
    ports:
    - {name: p-tcp, port: 80, protocol: TCP, targetPort: 8080}
    - {name: p-udp, port: 53, protocol: UDP, targetPort: 5353}
YAML
	slice dual-v4 dual IPv4 TCP 8080 "$POD1_IP" "$POD2_IP"
	slice dual-v6 dual IPv6 TCP 8080 fd00:244::12 fd00:244::13
	slice v6only-tcp v6only IPv6 TCP 8080 fd00:244::13
	slice v6only-udp v6only IPv6 UDP 5353 fd00:244::13
} | yaml_list >"$file"

KP_IPTABLES_BACKEND=legacy
kuproxy_start "$NS_NODE" "$file" "$(relay_mode_for 0)" --bind-address :: \
    --workers 2
kuproxy_port p default/dual:p-tcp/TCP
kuproxy_port p default/v6only:p-udp/UDP
v6_rules() {
	ipt_save "$NS_NODE" legacy 6 | grep -F KUBE- |
	    sed 's/ \[[0-9]*:[0-9]*\]$//'
}
_deadline=$(($(now_ms) + 10000))
until v6_rules | grep -q 'fd00:96::21/128 .*-p udp'; do
	[ "$(now_ms)" -lt "$_deadline" ] || fail "no IPv6 portals within 10 s"
	kuproxy_alive || fail "kuproxy exited"
	sleep 0.05
done
portal_wait "$NS_NODE" legacy 10.96.0.20/32 present 10 ||
    fail "no IPv4 portals within 10 s"

# 1. Each cluster IP is served by its own family's endpoints.
expect_tally "IPv4 ClusterIP from a pod" "v4-1=2 v4-2=2" \
    "$NS_POD1" 10.96.0.20:80 4
expect6 "IPv6 ClusterIP from a pod" "v6-2=2 v6-3=2" \
    "$NS_POD1" fd00:96::20 80 4
expect6 "IPv6 ClusterIP from the node" "v6-2=1 v6-3=1" \
    "$NS_NODE" fd00:96::20 80 2
expect6 "IPv6 NodePort from outside" "v6-2=1 v6-3=1" \
    "$NS_OUT" "$V6_NODE" 30080 2
expect_tally "IPv4 NodePort from outside" "v4-1=1 v4-2=1" \
    "$NS_OUT" "$NODE_IP:30080" 2

# 2. The IPv6-only service, TCP and UDP.
expect6 "IPv6-only ClusterIP from a pod" "v6-3=2" \
    "$NS_POD2" fd00:96::21 80 2
nsx "$NS_POD1" timeout 10 "$KPT_PYTHON" \
    "$KUPROXY_SRCDIR/tests/e2e/udpkit.py" send --to "[fd00:96::21]:53" \
    --size 1200 --timeout 3 >"$T/udp.out" 2>&1 ||
    fail "UDP to the IPv6 ClusterIP: $(cat "$T/udp.out")"
ok "UDP over IPv6: $(cat "$T/udp.out")"

# 3. The IPv6 rules, and --cleanup of both families.
rules=$(v6_rules)
for want in '-d fd00:96::20/128 .*--dport 80 ' \
    '-d fd00:96::21/128 .*-p udp .*--dport 53 ' 'dport 30080'; do
	echo "$rules" | grep -q -- "$want" ||
	    fail "ip6tables-save has no rule matching /$want/: $rules"
done
ok "ip6tables-save holds the IPv6 portals"
"$KUPROXY_BIN" explain --status-socket "$KP_STATUS_SOCKET" default/dual \
    >"$T/explain.txt" 2>&1 || fail "explain: $(cat "$T/explain.txt")"
for want in fd00:96::20 fd00:244::13 10.96.0.20 "$POD1_IP"; do
	grep -qF "$want" "$T/explain.txt" ||
	    fail "explain does not show $want: $(cat "$T/explain.txt")"
done
ok "explain shows both families' cluster IPs and endpoints"
kuproxy_alive || fail "kuproxy died"
kuproxy_kill
v6_rules | grep -q KUBE-PORTALS || fail "rules gone before --cleanup"
nsx "$NS_NODE" "$KUPROXY_BIN" --cleanup >"$T/cleanup.log" 2>&1 ||
    fail "kuproxy --cleanup failed: $(cat "$T/cleanup.log")"
left=$(portal_all_rules "$NS_NODE")
[ -z "$left" ] || fail "--cleanup left rules behind: $left"
ok "--cleanup removed the rules of both families"
exit 0
