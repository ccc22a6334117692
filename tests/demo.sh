#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# kuproxy on a built-in demo cluster, for a newcomer: a "node" network
# namespace with three "pods" on a bridge and an "outside" host routed
# through it, nginx in each pod, a services file with one service of every
# type, kuproxy in the node namespace with the iptables rules it installs,
# and requests to the service addresses from a pod, from the node and from
# outside, each printed with the backend that answered.  Everything is torn
# down at the end.  Installs nothing: run packaging/install-deps and build
# first (see README.md).  Needs root.
#
# KUPROXY_BIN picks the binary (default: ./kuproxy, else
# _build/werror/kuproxy); KUPROXY_DEMO_IPTABLES picks --iptables-backend
# (default auto: kuproxy installs its rules in the node namespace, and
# clients use the service addresses; none: no rules, clients use the proxy
# ports directly).
set -u
srcdir=$(cd "$(dirname "$0")/.." && pwd)
KUPROXY_SRCDIR=$srcdir
if [ -z "${KUPROXY_BIN:-}" ]; then
	for KUPROXY_BIN in "$srcdir/kuproxy" "$srcdir/_build/werror/kuproxy" ""; do
		[ -x "$KUPROXY_BIN" ] && break
	done
	if [ -z "$KUPROXY_BIN" ]; then
		echo "demo: no kuproxy binary; build first (see README.md)" >&2
		exit 1
	fi
fi
. "$srcdir/tests/e2e/lib.sh"
e2e_init
KP_IPTABLES_BACKEND=${KUPROXY_DEMO_IPTABLES:-auto}

say() {
	printf '\n== %s\n' "$*"
}

say "1. The network: namespaces $KPT_TAG-{node,pod1,pod2,pod3,out}"
e2e_topology
# The outside host is the node's uplink (its default route), as on a real
# node: service traffic the node does not intercept would leave there.
e2e_uplink
cat <<PICTURE
   pod1 $POD1_IP --+
   pod2 $POD2_IP --+-- br0 $POD_GW_IP [node] vout $NODE_IP -- $OUT_IP outside
   pod3 $POD3_IP --+
PICTURE

say "2. Backends: nginx in each pod answers with its name"
nginx_start "$NS_POD1" pod-1 "$POD1_IP:8080" "$POD1_IP:8443"
nginx_start "$NS_POD2" pod-2 "$POD2_IP:8080" "$POD2_IP:8443"
nginx_start "$NS_POD3" pod-3 "$POD3_IP:8080" "$POD3_IP:8443"
echo "   pod-1, pod-2, pod-3 listen on :8080 and :8443"

say "3. The services file (what kubectl get services,endpointslices -o yaml prints)"
services="$T/services.yaml"
# endpoint ADDRESS: one ready endpoint entry of an EndpointSlice.
endpoint() {
	cat <<YAML
  - addresses:
    - $1
    conditions:
      ready: true
      serving: true
      terminating: false
YAML
}
# slice SERVICE PORT-NAME PORT ADDRESS...
slice() {
	_svc=$1 _pname=$2 _port=$3
	shift 3
	printf -- '- addressType: IPv4\n  apiVersion: discovery.k8s.io/v1\n'
	printf '  endpoints:\n'
	for _a in "$@"; do
		endpoint "$_a"
	done
	cat <<YAML
  kind: EndpointSlice
  metadata:
    labels:
      kubernetes.io/service-name: $_svc
    name: $_svc-demo1
    namespace: default
  ports:
  - name: $_pname
    port: $_port
    protocol: TCP
YAML
}
{
	cat <<YAML
apiVersion: v1
items:
- apiVersion: v1
  kind: Service
  metadata:
    name: web
    namespace: default
  spec:
    clusterIP: 10.96.0.10
    ports:
    - name: http
      port: 80
      protocol: TCP
      targetPort: 8080
    selector:
      app: web
    type: ClusterIP
- apiVersion: v1
  kind: Service
  metadata:
    name: shop
    namespace: default
  spec:
    clusterIP: 10.96.0.20
    ports:
    - name: http
      nodePort: 30080
      port: 80
      protocol: TCP
      targetPort: 8080
    selector:
      app: shop
    type: NodePort
- apiVersion: v1
  kind: Service
  metadata:
    name: api
    namespace: default
  spec:
    clusterIP: 10.96.0.30
    ports:
    - name: https
      nodePort: 30443
      port: 443
      protocol: TCP
      targetPort: 8443
    selector:
      app: api
    type: LoadBalancer
  status:
    loadBalancer:
      ingress:
      - ip: 203.0.113.10
- apiVersion: v1
  kind: Service
  metadata:
    name: legacy
    namespace: default
  spec:
    clusterIP: 10.96.0.40
    externalIPs:
    - 198.51.100.20
    ports:
    - name: http
      port: 80
      protocol: TCP
      targetPort: 8080
    selector:
      app: legacy
    type: ClusterIP
- apiVersion: v1
  kind: Service
  metadata:
    name: db
    namespace: default
  spec:
    clusterIP: None
    ports:
    - name: pg
      port: 5432
      protocol: TCP
      targetPort: 5432
    selector:
      app: db
    type: ClusterIP
- apiVersion: v1
  kind: Service
  metadata:
    name: docs
    namespace: default
  spec:
    externalName: docs.example.com
    type: ExternalName
YAML
	slice web http 8080 "$POD1_IP" "$POD2_IP" "$POD3_IP"
	slice shop http 8080 "$POD1_IP" "$POD2_IP"
	slice api https 8443 "$POD3_IP"
	slice legacy http 8080 "$POD2_IP" "$POD3_IP"
	slice db pg 5432 "$POD1_IP"
	cat <<YAML
kind: List
metadata:
  resourceVersion: ""
YAML
} >"$services"
cat <<TABLE
   NAME     TYPE           CLUSTER-IP   EXTERNAL-IP     PORT(S)         ENDPOINTS
   web      ClusterIP      10.96.0.10   <none>          80/TCP          pod-1 pod-2 pod-3
   shop     NodePort       10.96.0.20   <none>          80:30080/TCP    pod-1 pod-2
   api      LoadBalancer   10.96.0.30   203.0.113.10    443:30443/TCP   pod-3
   legacy   ClusterIP      10.96.0.40   198.51.100.20   80/TCP          pod-2 pod-3
   db       ClusterIP      None         <none>          5432/TCP        pod-1 (headless)
   docs     ExternalName   <none>       docs.example.com                (a DNS name only)
   ($services)
TABLE

say "4. kuproxy in the node namespace"
echo "   $KUPROXY_BIN --services-file services.yaml \\"
echo "       --iptables-backend $KP_IPTABLES_BACKEND --proxy-port-range 20000-20099"
kuproxy_start "$NS_NODE" "$services" splice --iptables-min-sync-period 200ms
for key in web:http shop:http api:https legacy:http; do
	var=$(echo "$key" | cut -d: -f1)
	kuproxy_port "$var" "default/$key/TCP"
	eval "echo \"   default/$key/TCP: listening on proxy port \$$var\""
done
sleep 0.2
if grep -E "default/(db|docs)" "$KP_LOG" | grep -q "listening on proxy port"; then
	fail "kuproxy opened a proxy port for a headless or ExternalName service"
fi
echo "   default/db (headless) and default/docs (ExternalName) get no proxy port:"
echo "   they have no virtual IP, clients resolve them by DNS (as with kube-proxy)"

# Which iptables kuproxy chose ("iptables backend nft: why").
backend=$(sed -n 's/.*iptables backend \([a-z]*\)[:,].*/\1/p' "$KP_LOG" |
    head -n 1)
rules=no
if [ "$backend" = legacy ] || [ "$backend" = nft ]; then
	portal_wait "$NS_NODE" "$backend" '"default/api:https"' present ||
	    fail "no portal rules 5 s after kuproxy started (see its log)"
	rules=yes
fi

# chain_rules CHAIN: kuproxy's rules in CHAIN (or the jumps into it).
chain_rules() {
	portal_rules "$NS_NODE" "$backend" | grep -E -- "$1" | sed 's/^/     /'
}

if [ "$rules" = yes ]; then
	say "5. The rules kuproxy installed (iptables-$backend-save, KUBE- chains only)"
	echo "   $(grep 'iptables backend' "$KP_LOG" | head -n 1 | sed 's/.*] //')"
	echo "   nat table, jumps from the built-in chains: PREROUTING sees packets"
	echo "   arriving from pods and from outside, OUTPUT the node's own packets:"
	chain_rules '^-A (PREROUTING|OUTPUT) '
	echo "   KUBE-PORTALS-CONTAINER: arriving packets for a service IP (ClusterIP,"
	echo "   load-balancer IP, externalIP) go to the service's proxy port on the"
	echo "   address they arrived at (REDIRECT):"
	chain_rules '^-A KUBE-PORTALS-CONTAINER '
	echo "   KUBE-PORTALS-HOST: the node's own packets for a service IP go to the"
	echo "   proxy port on the node's address (DNAT):"
	chain_rules '^-A KUBE-PORTALS-HOST '
	echo "   KUBE-NODEPORT-CONTAINER and -HOST: a node port on any of the node's"
	echo "   addresses (the jump's --dst-type LOCAL) goes to the proxy port:"
	chain_rules '^-A KUBE-NODEPORT-(CONTAINER|HOST) '
	echo "   filter table, KUBE-NODEPORT-NON-LOCAL: lets node-port traffic, now"
	echo "   for the proxy port, through an INPUT chain that drops by default:"
	chain_rules '^-A (INPUT|KUBE-NODEPORT-NON-LOCAL) '
	if portal_rules "$NS_NODE" "$backend" | grep -E '"default/(db|docs)'; then
		fail "rules for a headless or ExternalName service"
	fi
	echo "   Nothing for db (headless) or docs (ExternalName)."
else
	say "5. No iptables rules (--iptables-backend $KP_IPTABLES_BACKEND): clients dial the node's proxy ports"
fi

# request NS FROM URL: one HTTP request; prints who answered, and counts
# the requests no pod answered.
unanswered=0
request() {
	_ans=$(nsx "$1" timeout 5 curl -sS --max-time 3 "$3" 2>&1)
	printf '   %-24s %-30s -> %s\n' "$2" "$3" "$_ans"
	case $_ans in
	pod-[0-9]*) ;;
	*) unanswered=$((unanswered + 1)) ;;
	esac
}

say "6. Requests (each answered by the pod named on the right)"
from_pod="pod-1 ($POD1_IP)"
from_node="the node"
from_out="outside ($OUT_IP)"
if [ "$rules" = yes ]; then
	echo "   web's ClusterIP from a pod: PREROUTING, KUBE-PORTALS-CONTAINER,"
	echo "   kuproxy picks the pods in turn (round robin):"
	for _ in 1 2 3; do request "$NS_POD1" "$from_pod" "http://10.96.0.10/"; done
	echo "   web's ClusterIP from the node: OUTPUT, KUBE-PORTALS-HOST:"
	request "$NS_NODE" "$from_node" "http://10.96.0.10/"
	echo "   shop's NodePort 30080 on the node's address, from outside:"
	for _ in 1 2; do request "$NS_OUT" "$from_out" "http://$NODE_IP:30080/"; done
	echo "   api's load-balancer IP, routed to the node, from outside:"
	request "$NS_OUT" "$from_out" "http://203.0.113.10:443/"
	echo "   api's NodePort 30443, where a cloud load balancer would send it:"
	request "$NS_OUT" "$from_out" "http://$NODE_IP:30443/"
	echo "   legacy's externalIP, routed to the node, from outside:"
	for _ in 1 2; do request "$NS_OUT" "$from_out" "http://198.51.100.20/"; done
else
	echo "   web (ClusterIP) through the node's proxy port, round robin over 3 pods:"
	for _ in 1 2 3; do request "$NS_POD1" "$from_pod" "http://$POD_GW_IP:$web/"; done
	echo "   shop (NodePort), from outside:"
	for _ in 1 2; do request "$NS_OUT" "$from_out" "http://$NODE_IP:$shop/"; done
	echo "   api (LoadBalancer), from outside:"
	request "$NS_OUT" "$from_out" "http://$NODE_IP:$api/"
	echo "   legacy (externalIPs), from a pod:"
	for _ in 1 2; do request "$NS_POD3" "pod-3 ($POD3_IP)" "http://$POD_GW_IP:$legacy/"; done
fi

[ "$unanswered" = 0 ] ||
    fail "$unanswered of the requests above got no answer from a pod"

say "7. What kuproxy logged"
sed 's/^/   /' "$KP_LOG" | tail -n 20

say "8. Stopping kuproxy (SIGTERM)"
kuproxy_stop
if [ "$rules" = yes ]; then
	left=$(portal_all_rules "$NS_NODE")
	[ -z "$left" ] || fail "rules left after kuproxy stopped: $left"
	echo "   kuproxy removed its chains and rules on the way out."
fi
say "Done: namespaces, processes and $T are removed on exit."
