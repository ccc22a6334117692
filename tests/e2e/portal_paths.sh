#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Every way into a service through kuproxy's portal rules, on the
# pod/node/outside network (e2e_topology), once with iptables-legacy and
# once with iptables-nft ($KPT_IPT_BACKENDS), one kuproxy per backend.
# Clients connect to service addresses, never to proxy ports; pods answer
# with their names.
#
#  - ClusterIP from the node (OUTPUT, DNAT to the host IP) and from a pod
#    (PREROUTING, REDIRECT): 6 connections, exactly 2 per endpoint.
#  - NodePort from outside, from the node (its own address and 127.0.0.1:
#    DNAT from OUTPUT to the host IP works for a 127.0.0.1 destination,
#    since both ends are local) and from a pod to the node's bridge address.
#  - LoadBalancer ingress IP from outside, from a pod and from the node
#    (short-circuited, it never reaches the load balancer); its nodePort
#    from outside, as the load balancer would send it.
#  - externalIP routed via the node from outside.  A non-local externalIP
#    is not intercepted for the node's own traffic, nor for a bridged pod
#    when br_netfilter hands bridged packets to iptables (physdev
#    --physdev-is-in, upstream's rule): they go out the uplink.
#  - --external-ip-allow: an externalIP outside it gets no rule and a
#    warning naming it; an allowed node-local externalIP serves the node,
#    pods and outside.
#  - ClientIP affinity, a not-ready endpoint never used, no endpoints
#    refused at once, a dead endpoint skipped unnoticed.
#  - Headless and ExternalName services: no listener, no rule; nor for a
#    service labelled for another proxy, an SCTP port (one warning) or a
#    hostname-only ingress.  Two ports of a service balance separately.
#  - NodePort 30080 is held: a server cannot listen on it.  A nodePort
#    already taken by another process is logged and gets no rule (its
#    traffic stays with that process, as upstream); the ClusterIP still
#    works; once the port is free, a periodic sync takes it over.
#  - SIGTERM removes every rule.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
e2e_init
e2e_topology
# 10.96.0.0/12 (service IPs) and 198.51.100.6 are "out there": whatever
# the node does not intercept reaches the uplink, which answers "uplink".
e2e_uplink 10.96.0.0/12 198.51.100.6/32
uplink_start 80
backends=$(ipt_backends "$NS_NODE")
[ -n "$backends" ] || e2e_skip "no iptables backend works in a namespace"

# Node-local addresses: an externalIP on the node itself, and one that
# --external-ip-allow leaves out (so that, not intercepted, it is refused
# by the node at once instead of vanishing).
LOCAL_EXT_IP=198.51.100.9
DENIED_EXT_IP=192.0.2.99
nsx "$NS_NODE" ip addr add "$LOCAL_EXT_IP/32" dev lo &&
    nsx "$NS_NODE" ip addr add "$DENIED_EXT_IP/32" dev lo ||
    e2e_error "addresses on the node's lo"

backend_start "$NS_POD1" pod-1 "$POD1_IP:8080"
backend_start "$NS_POD2" pod-2 "$POD2_IP:8080"
backend_start "$NS_POD3" pod-3 "$POD3_IP:8080"
# Port 8090 is served by pod-1 and pod-3 only: pod-2 refuses it.
for n in 1 3; do
	eval "ns=\$NS_POD$n ip=\$POD${n}_IP"
	e2e_bg "backend-pod-$n-8090" "$ns" "$KPT_PYTHON" "$TCPKIT" serve \
	    --listen "$ip:8090" --name "pod-$n"
	e2e_wait_listen "$ns" "$ip:8090" 10 || e2e_error "pod-$n on 8090"
done

LB_IP=203.0.113.7
EXT_IP=198.51.100.5
EXT_IP_AWAY=198.51.100.6
file="$T/services.yaml"
{
	yaml_service web 10.96.0.10 80 type=LoadBalancer node_port=30080 \
	    external_ips=$EXT_IP,$EXT_IP_AWAY lb_ip=$LB_IP
	yaml_slice web 8080 "$POD1_IP" "$POD2_IP" "$POD3_IP"
	yaml_service sticky 10.96.0.11 80 affinity=ClientIP
	yaml_slice sticky 8080 "$POD1_IP" "$POD2_IP" "$POD3_IP"
	yaml_service partial 10.96.0.12 80
	yaml_slice partial 8080 "$POD1_IP" "$POD2_IP:notready" "$POD3_IP"
	yaml_service empty 10.96.0.13 80
	yaml_service flaky 10.96.0.14 80 target=8090
	yaml_slice flaky 8090 "$POD1_IP" "$POD2_IP" "$POD3_IP"
	yaml_service clash 10.96.0.15 80 type=NodePort node_port=30099
	yaml_slice clash 8080 "$POD3_IP"
	yaml_service guarded 10.96.0.16 80 \
	    external_ips=$LOCAL_EXT_IP,$DENIED_EXT_IP
	yaml_slice guarded 8080 "$POD1_IP"
	yaml_service db None 5432
	yaml_slice db 8080 "$POD1_IP"
	yaml_service docs - 0 type=ExternalName external_name=docs.example.com
	# Two TCP ports and an SCTP one; a service for another proxy; an
	# ingress with a hostname only.
	cat <<YAML
- apiVersion: v1
  kind: Service
  metadata:
    name: multi
    namespace: default
  spec:
    clusterIP: 10.96.0.17
    ports:
    - {name: http, port: 80, protocol: TCP, targetPort: 8080}
    - {name: metrics, port: 9090, protocol: TCP, targetPort: 8090}
    - {name: signal, port: 5000, protocol: SCTP, targetPort: 5000}
    type: ClusterIP
- addressType: IPv4
  apiVersion: discovery.k8s.io/v1
  endpoints:
  - addresses: [$POD1_IP]
    conditions: {ready: true}
  - addresses: [$POD3_IP]
    conditions: {ready: true}
  kind: EndpointSlice
  metadata:
    labels: {kubernetes.io/service-name: multi}
    name: multi-e2e01
    namespace: default
  ports:
  - {name: http, port: 8080, protocol: TCP}
  - {name: metrics, port: 8090, protocol: TCP}
  - {name: signal, port: 5000, protocol: SCTP}
- apiVersion: v1
  kind: Service
  metadata:
    name: foreign
    namespace: default
    labels: {service.kubernetes.io/service-proxy-name: other}
  spec:
    clusterIP: 10.96.0.18
    ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080}]
    type: ClusterIP
- apiVersion: v1
  kind: Service
  metadata:
    name: named-lb
    namespace: default
  spec:
    clusterIP: 10.96.0.19
    ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080,
      nodePort: 30081}]
    type: LoadBalancer
  status:
    loadBalancer:
      ingress: [{hostname: lb.example.com}]
YAML
	yaml_slice foreign 8080 "$POD1_IP"
	yaml_slice named-lb 8080 "$POD2_IP"
} | yaml_list >"$file"

# first_line NS ADDR PORT: connect, read one line, close first.
first_line() {
	nsx "$1" "$KPT_PYTHON" -c 'import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 2)
print(s.makefile().readline().strip())
s.close()' "$2" "$3" 2>&1
}

# sticks WHAT NS ADDR:PORT: 10 connections all land on one pod.
sticks() {
	_got=$(ask "$2" "$3" 10)
	case $_got in
	pod-[123]=10) ok "$backend: $1: $_got" ;;
	*) fail "$backend: $1: got '$_got', want one pod 10 times" ;;
	esac
}

i=0
for backend in $backends; do
	mode=$(relay_mode_for $i)
	KPT_LABEL=$backend
	i=$((i + 1))
	# Another program holds node port 30099 before kuproxy starts.
	# It lingers after its greeting so that its clients close first:
	# TIME_WAIT on its side would keep the port from kuproxy (whose claim
	# does not use SO_REUSEADDR) for a minute after it exits.
	e2e_bg "squatter-$backend" "$NS_NODE" socat \
	    TCP-LISTEN:30099,reuseaddr,fork SYSTEM:'echo squatter; sleep 0.3'
	squatter=$LAST_PID
	e2e_wait_listen "$NS_NODE" 0.0.0.0:30099 || e2e_error "socat on 30099"
	KP_IPTABLES_BACKEND=$backend kuproxy_start "$NS_NODE" "$file" "$mode" \
	    --iptables-min-sync-period 200ms --iptables-sync-period 2s \
	    --external-ip-allow 198.51.100.0/24
	for svc in web sticky partial empty flaky clash guarded; do
		kuproxy_port unused "default/$svc:http/TCP"
	done
	portal_wait "$NS_NODE" "$backend" '"default/guarded:http"' present ||
	    fail "$backend: no rules 5 s after start:" \
	    "$(portal_rules "$NS_NODE" "$backend")"
	echo "---- $backend ($mode): kuproxy's rules"
	portal_rules "$NS_NODE" "$backend"
	echo "----"

	# ClusterIP, the two paths.
	expect_tally "ClusterIP from the node" "pod-1=2 pod-2=2 pod-3=2" \
	    "$NS_NODE" 10.96.0.10:80 6
	expect_tally "ClusterIP from a pod" "pod-1=2 pod-2=2 pod-3=2" \
	    "$NS_POD1" 10.96.0.10:80 6

	# NodePort.
	expect_tally "NodePort from outside" "pod-1=2 pod-2=2 pod-3=2" \
	    "$NS_OUT" "$NODE_IP:30080" 6
	expect_tally "NodePort from the node, node IP" \
	    "pod-1=1 pod-2=1 pod-3=1" \
	    "$NS_NODE" "$NODE_IP:30080" 3
	expect_tally "NodePort from the node, 127.0.0.1" \
	    "pod-1=1 pod-2=1 pod-3=1" \
	    "$NS_NODE" 127.0.0.1:30080 3
	expect_tally "NodePort from a pod, node's bridge IP" \
	    "pod-1=1 pod-2=1 pod-3=1" "$NS_POD2" "$POD_GW_IP:30080" 3

	# LoadBalancer.
	expect_tally "LoadBalancer IP from outside" "pod-1=1 pod-2=1 pod-3=1" \
	    "$NS_OUT" "$LB_IP:80" 3
	expect_tally "LoadBalancer IP from a pod (short-circuited)" \
	    "pod-1=1 pod-2=1 pod-3=1" "$NS_POD3" "$LB_IP:80" 3
	expect_tally "LoadBalancer IP from the node (short-circuited)" \
	    "pod-1=1 pod-2=1 pod-3=1" "$NS_NODE" "$LB_IP:80" 3

	# externalIPs.
	expect_tally "externalIP from outside" "pod-1=1 pod-2=1 pod-3=1" \
	    "$NS_OUT" "$EXT_IP:80" 3
	expect_tally "non-local externalIP from the node: not intercepted" \
	    "uplink=1" "$NS_NODE" "$EXT_IP_AWAY:80"
	# Bridged pod traffic reaches iptables with its bridge port only when
	# br_netfilter is on (then it is not intercepted); without it,
	# physdev sees no bridge and the "not from a bridge port" rule matches.
	brnf=/proc/sys/net/bridge/bridge-nf-call-iptables
	if [ "$(nsx "$NS_NODE" cat "$brnf" 2>/dev/null)" = 1 ]; then
		expect_tally "non-local externalIP from a bridged pod" \
		    "uplink=1" "$NS_POD1" "$EXT_IP_AWAY:80"
	else
		_got=$(ask "$NS_POD1" "$EXT_IP_AWAY:80")
		case $_got in
		pod-[123]=1) ok "$backend: non-local externalIP from a pod" \
		    "(no br_netfilter): intercepted: $_got" ;;
		*) fail "$backend: externalIP from a pod without" \
		    "br_netfilter: got '$_got'" ;;
		esac
	fi

	# --external-ip-allow 198.51.100.0/24.
	rules=$(portal_rules "$NS_NODE" "$backend")
	if echo "$rules" | grep -F -- "-d $DENIED_EXT_IP/32"; then
		fail "$backend: a rule for $DENIED_EXT_IP, outside" \
		    "--external-ip-allow"
	fi
	grep -E "externalIP $DENIED_EXT_IP is outside --external-ip-allow" \
	    "$KP_LOG" >/dev/null ||
	    fail "$backend: no warning naming $DENIED_EXT_IP"
	expect_tally "externalIP outside --external-ip-allow, from outside" \
	    "ERROR:refused=1" "$NS_OUT" "$DENIED_EXT_IP:80"
	expect_tally "local externalIP from outside" "pod-1=1" \
	    "$NS_OUT" "$LOCAL_EXT_IP:80"
	expect_tally "local externalIP from the node" "pod-1=1" \
	    "$NS_NODE" "$LOCAL_EXT_IP:80"
	expect_tally "local externalIP from a pod" "pod-1=1" \
	    "$NS_POD2" "$LOCAL_EXT_IP:80"
	# kuproxy holds the local externalIP's port, as upstream held it.
	timeout 0.3 ip netns exec "$NS_NODE" socat -u \
	    "TCP-LISTEN:80,bind=$LOCAL_EXT_IP,reuseaddr" OPEN:/dev/null \
	    >"$T/socat-bind.log" 2>&1
	[ $? != 124 ] && grep -q "Address already in use" "$T/socat-bind.log" ||
	    fail "$backend: another program could take $LOCAL_EXT_IP:80:" \
	    "$(cat "$T/socat-bind.log")"
	ok "$backend: $LOCAL_EXT_IP:80 is held by kuproxy"

	# Balancing and endpoint states.
	sticks "ClientIP affinity, pod-1 as client" "$NS_POD1" 10.96.0.11:80
	sticks "ClientIP affinity, pod-2 as client" "$NS_POD2" 10.96.0.11:80
	sticks "ClientIP affinity, the node as client" "$NS_NODE" 10.96.0.11:80
	expect_tally "not-ready endpoint pod-2 unused" "pod-1=3 pod-3=3" \
	    "$NS_POD1" 10.96.0.12:80 6
	expect_tally "no endpoints, from a pod" "ERROR:refused=1" \
	    "$NS_POD1" 10.96.0.13:80 1 --show-ms
	ms=$(awk '{ print $3 }' "$T/ask.out" | tr -d ms)
	[ "${ms%.*}" -lt 500 ] ||
	    fail "$backend: refusal took $ms ms, want at once"
	expect_tally "no endpoints, from the node" "ERROR:refused=1" \
	    "$NS_NODE" 10.96.0.13:80
	expect_tally "dead endpoint (pod-2 refuses port 8090) skipped" \
	    "pod-1=3 pod-3=3" "$NS_POD2" 10.96.0.14:80 6

	# A service with two TCP ports and an SCTP one: the SCTP port is
	# skipped with a warning; each TCP port has its own round robin, so
	# alternating between them still gives each port pod-1 then pod-3.
	: >"$T/multi-http" && : >"$T/multi-metrics" || e2e_error "temp files"
	for _ in 1 2; do
		ask "$NS_POD2" 10.96.0.17:80 >/dev/null
		cat "$T/ask.out" >>"$T/multi-http"
		ask "$NS_POD2" 10.96.0.17:9090 >/dev/null
		cat "$T/ask.out" >>"$T/multi-metrics"
	done
	[ "$(tally "$T/multi-http") / $(tally "$T/multi-metrics")" = \
	    "pod-1=1 pod-3=1 / pod-1=1 pod-3=1" ] ||
	    fail "$backend: two ports, alternating: http" \
	    "$(tally "$T/multi-http"), metrics $(tally "$T/multi-metrics")"
	ok "$backend: two ports of one service, alternating, each its own" \
	    "round robin: http $(tally "$T/multi-http")," \
	    "metrics $(tally "$T/multi-metrics")"
	[ "$(grep -c 'default/multi:signal.*SCTP is not supported' "$KP_LOG")" \
	    = 1 ] || fail "$backend: not one SCTP warning for multi:signal"
	if echo "$rules" | grep -iE 'sctp|--dport 5000'; then
		fail "$backend: a rule for the SCTP port"
	fi
	ok "$backend: SCTP port skipped with one warning, no rule"

	# A service for another proxy; an ingress without an IP.
	if echo "$rules" | grep -F '"default/foreign'; then
		fail "$backend: rules for a service labelled for another proxy"
	fi
	expect_tally "service-proxy-name other: ignored, not intercepted" \
	    "uplink=1" \
	    "$NS_POD1" 10.96.0.18:80
	[ "$(echo "$rules" | grep -cF '"default/named-lb:http"')" = 5 ] ||
	    fail "$backend: named-lb should have exactly its ClusterIP and" \
	    "NodePort rules: $(echo "$rules" | grep -F named-lb)"
	ok "$backend: a hostname-only ingress adds no rule"

	# Headless and ExternalName.
	if echo "$rules" | grep -E '"default/(db|docs)'; then
		fail "$backend: rules for a headless or ExternalName service"
	fi
	if grep -E 'default/(db|docs).*listening on proxy port' "$KP_LOG"; then
		fail "$backend: a proxy port for a headless or ExternalName" \
		    "service"
	fi
	expect_tally "headless: no rule or listener; its pod IP directly" \
	    "pod-1=1" \
	    "$NS_POD2" "$POD1_IP:8080"

	# Node ports held, and one that was not free.
	[ "$(port_bindable "$NS_NODE" 30080)" = "in use" ] ||
	    fail "$backend: a server could listen on NodePort 30080"
	grep -q "Address already in use" "$T/socat-bind.log" ||
	    fail "$backend: socat on 30080: $(cat "$T/socat-bind.log")"
	ok "$backend: NodePort 30080 held: socat: $(sed 's/.*E //' \
	    "$T/socat-bind.log")"
	grep -E "port conflict: .*:30099/TCP" "$KP_LOG" >"$T/conflict" ||
	    fail "$backend: no port conflict logged for 30099"
	expect_tally "ClusterIP of a service whose nodePort is taken" \
	    "pod-3=1" \
	    "$NS_POD1" 10.96.0.15:80
	kuproxy_alive || fail "$backend: kuproxy died"
	ok "$backend: conflict logged: $(sed 's/.*] //' "$T/conflict")"
	if echo "$rules" | grep -F -- '--dport 30099'; then
		fail "$backend: NodePort rules for the taken port 30099"
	fi
	got=$(first_line "$NS_OUT" "$NODE_IP" 30099)
	[ "$got" = squatter ] ||
	    fail "$backend: the taken nodePort 30099 answered '$got'"
	ok "$backend: the taken nodePort stays with its owner: $got"
	# Once it is free, a sync claims it and adds the rules.
	kill "$squatter"
	wait "$squatter" 2>/dev/null
	ask_until "pod-3=1" 3500 "$NS_OUT" "$NODE_IP:30099" ||
	    fail "$backend: nodePort 30099 not served 3.5 s after it was" \
	    "freed: $ASKED"
	ok "$backend: nodePort 30099 served $ASKED_MS ms after it was freed"
	[ "$(port_bindable "$NS_NODE" 30099)" = "in use" ] ||
	    fail "$backend: nodePort 30099 not held once served"

	kuproxy_stop
	left=$(portal_all_rules "$NS_NODE")
	[ -z "$left" ] || fail "$backend: rules left after SIGTERM: $left"
	ok "$backend: SIGTERM removed every KUBE- chain and rule"
done
