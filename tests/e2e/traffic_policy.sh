#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Traffic policies on the pod/node/outside network (e2e_topology), with
# one iptables backend: kuproxy runs as node "node-a"
# (--hostname-override); pod-1 and pod-2 are its endpoints' nodeName,
# pod-3 is on node-b.  Clients use service addresses, never proxy ports.
#
#  - internalTrafficPolicy Local: the clusterIP from a pod reaches only
#    pod-1 and pod-2, while the nodePort from outside reaches all three;
#    with no local endpoint a pod is refused at once.
#  - externalTrafficPolicy Local: the nodePort from outside reaches only
#    pod-1, the clusterIP all; with no local endpoint a client from
#    outside times out (dropped, not reset), while a pod still reaches
#    pod-3 through the clusterIP.  Once a local endpoint appears, the
#    nodePort answers again.
#  - healthCheckNodePort: 200 with the local endpoint count, 503 with
#    none, upstream's JSON body and headers.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
e2e_init
e2e_topology
backends=$(ipt_backends "$NS_NODE")
[ -n "$backends" ] || e2e_skip "no iptables backend works in a namespace"
backend=${backends%% *}
KPT_LABEL=$backend

backend_start "$NS_POD1" pod-1 "$POD1_IP:8080"
backend_start "$NS_POD2" pod-2 "$POD2_IP:8080"
backend_start "$NS_POD3" pod-3 "$POD3_IP:8080"

# svc NAME CLUSTER-IP NODE-PORT TYPE POLICY-LINE [HEALTH-CHECK-PORT]
svc() {
	cat <<YAML
- apiVersion: v1
  kind: Service
  metadata: {name: $1, namespace: default}
  spec:
    clusterIP: $2
    ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080,
      nodePort: $3}]
    type: $4
    $5
YAML
	[ -z "$6" ] || echo "    healthCheckNodePort: $6"
}

# slice NAME ADDRESS@NODE...: one EndpointSlice with nodeNames.
slice() {
	_name=$1
	shift
	cat <<YAML
- addressType: IPv4
  apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    labels: {kubernetes.io/service-name: $_name}
    name: $_name-e2e01
    namespace: default
  ports: [{name: http, port: 8080, protocol: TCP}]
  endpoints:
YAML
	for _e in "$@"; do
		echo "  - {addresses: [${_e%@*}], nodeName: ${_e#*@},"
		echo "     conditions: {ready: true, serving: true}}"
	done
}

# services [LOCAL-EXT-ENDPOINT]: the file; with an argument, none-ext
# gains that endpoint on this node.
services() {
	{
		svc local-in 10.96.0.20 30090 NodePort \
		    "internalTrafficPolicy: Local"
		slice local-in "$POD1_IP@node-a" "$POD2_IP@node-a" \
		    "$POD3_IP@node-b"
		svc local-ext 10.96.0.21 30091 LoadBalancer \
		    "externalTrafficPolicy: Local" 32100
		slice local-ext "$POD1_IP@node-a" "$POD3_IP@node-b"
		svc none-in 10.96.0.22 30092 NodePort \
		    "internalTrafficPolicy: Local"
		slice none-in "$POD3_IP@node-b"
		svc none-ext 10.96.0.23 30093 LoadBalancer \
		    "externalTrafficPolicy: Local" 32101
		slice none-ext "$POD3_IP@node-b" ${1:+"$1"}
	} | yaml_list
}
file="$T/services.yaml"
services >"$file"

# connect_only NS ADDR PORT: "connected", "refused", "reset" or "timeout"
# for the TCP handshake alone (2 s).
connect_only() {
	nsx "$1" "$KPT_PYTHON" -c 'import socket, sys
s = socket.socket()
s.settimeout(2)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("connected")
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except ConnectionResetError:
    print("reset")' "$2" "$3" 2>&1
}

# health NS PORT: "STATUS WEIGHT BODY" of GET / on the node's port.
health() {
	nsx "$1" curl -s -m 3 -D "$T/hc.headers" -o "$T/hc.body" \
	    -w '%{http_code}' "http://$NODE_IP:$2/" 2>&1
	printf ' %s ' "$(tr -d '\r' <"$T/hc.headers" |
	    sed -n 's/^X-Load-Balancing-Endpoint-Weight: //p')"
	tr -d '\n\t ' <"$T/hc.body"
}

expect_health() {
	_got=$(health "$NS_OUT" "$2")
	[ "$_got" = "$3" ] || fail "$backend: $1: got '$_got', want '$3'"
	ok "$backend: $1: $_got"
}

KP_IPTABLES_BACKEND=$backend kuproxy_start "$NS_NODE" "$file" \
    "$(relay_mode_for 0)" --iptables-min-sync-period 200ms \
    --hostname-override node-a
kuproxy_port unused "default/none-ext:http/TCP (external)"
portal_wait "$NS_NODE" "$backend" 'none-ext.*-j DROP' present ||
    fail "no DROP rule for none-ext: $(portal_rules "$NS_NODE" "$backend")"
echo "---- kuproxy's rules"
portal_rules "$NS_NODE" "$backend"
echo "----"

expect_tally "internal Local, clusterIP from a pod" "pod-1=3 pod-2=3" \
    "$NS_POD3" 10.96.0.20:80 6
expect_tally "internal Local, nodePort from outside" \
    "pod-1=2 pod-2=2 pod-3=2" "$NS_OUT" "$NODE_IP:30090" 6
expect_tally "internal Local without local endpoints: refused" \
    "ERROR:refused=1" "$NS_POD1" 10.96.0.22:80 1
expect_tally "external Local, nodePort from outside" "pod-1=4" \
    "$NS_OUT" "$NODE_IP:30091" 4
expect_tally "external Local, clusterIP from a pod" "pod-1=2 pod-3=2" \
    "$NS_POD2" 10.96.0.21:80 4
expect_tally "external Local without local endpoints, clusterIP" \
    "pod-3=2" "$NS_POD1" 10.96.0.23:80 2
got=$(connect_only "$NS_OUT" "$NODE_IP" 30093)
[ "$got" = timeout ] ||
    fail "$backend: external Local without local endpoints: got '$got'," \
    "want a timeout (dropped)"
ok "$backend: external Local without local endpoints: nodePort dropped"

expect_health "health check with a local endpoint" 32100 \
    '200 1 {"service":{"namespace":"default","name":"local-ext"},"localEndpoints":1,"serviceProxyHealthy":true}'
expect_health "health check without one" 32101 \
    '503 0 {"service":{"namespace":"default","name":"none-ext"},"localEndpoints":0,"serviceProxyHealthy":true}'

# A local endpoint appears: the drop goes, the health check turns 200.
kuproxy_mark
services "$POD2_IP@node-a" | replace_file "$file"
ask_until "pod-2=2" 5000 "$NS_OUT" "$NODE_IP:30093" 2 ||
    fail "$backend: nodePort after a local endpoint came: got '$ASKED'"
ok "$backend: a local endpoint came: nodePort answers (${ASKED_MS} ms)"
expect_health "health check after it came" 32101 \
    '200 1 {"service":{"namespace":"default","name":"none-ext"},"localEndpoints":1,"serviceProxyHealthy":true}'

kuproxy_stop
[ -z "$(portal_rules "$NS_NODE" "$backend" | grep -F -- '-A ')" ] ||
    fail "$backend: rules left after SIGTERM"
nsx "$NS_OUT" curl -s -m 1 "http://$NODE_IP:32100/" >/dev/null 2>&1 &&
    fail "$backend: health check node port still open after SIGTERM"
ok "$backend: SIGTERM removed the rules and closed the health checks"
