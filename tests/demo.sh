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
#
# --step pauses after each stage and request, and says what just happened
# and why, with the rule that caught the packets (their counters in
# iptables-save -c) or the line kuproxy logged; see usage() below.
set -u
srcdir=$(cd "$(dirname "$0")/.." && pwd)

usage() {
	cat <<USAGE
usage: tests/demo.sh [--step]

Builds a small cluster in network namespaces, runs kuproxy in it and sends
requests to a service of every type.  Needs root and a built kuproxy
(see README.md).

  --step   after each stage (network built, services written, kuproxy
           started, rules installed, each request sent, kuproxy stopped)
           explain what just happened and why, with the iptables rule that
           caught the packets or the line kuproxy logged, then wait for
           Enter (q and Enter ends the demo).  It waits only when
           standard input is a terminal; when it is not a terminal (CI,
           </dev/null) it prints the same explanations and goes on.
  --help   print this and exit.

Environment: KUPROXY_BIN (the binary), KUPROXY_DEMO_IPTABLES (auto or
none: see the top of this script).
USAGE
}

STEP=0
for arg in "$@"; do
	case $arg in
	--step) STEP=1 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
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

# ---- --step: what just happened, and why ------------------------------

# With --step the pauses read from the demo's own stdin, kept on fd 3:
# explain's stdin is the text it prints.
if [ "$STEP" = 1 ]; then
	exec 3<&0
	[ -t 3 ] || echo "--step: standard input is not a terminal, so" \
	    "the demo explains each step without waiting"
fi

# Wait for Enter when stdin is a terminal; q ends the demo (the EXIT
# trap cleans up).  Never waits otherwise.
step_pause() {
	[ -t 3 ] || return 0
	printf '   [Enter: next step, q: quit] '
	read -r _reply <&3 || _reply=""
	case $_reply in
	q*) exit 0 ;;
	esac
}

# explain ID TITLE: with --step, print TITLE and the text on stdin as the
# explanation of step ID, then pause.  Without --step, print nothing.
explain() {
	[ "$STEP" = 1 ] || return 0
	printf '\n   -- Step "%s": %s\n' "$1" "$2"
	sed -e '/^$/d' -e 's/ *$//' -e 's/^/   |  /'
	step_pause
}

# The KUBE- rules of the node with their packet counts ("COUNT RULE"),
# the filter table's INPUT jump left out: every packet for the node
# passes it, whichever service it is for.
rule_counts() {
	nsx "$NS_NODE" "iptables-$backend-save" -c 2>/dev/null |
	    sed -n 's/^\[\([0-9]*\):[0-9]*\] \(-A .*KUBE-.*\)/\1 \2/p' |
	    grep -v '^[0-9]* -A INPUT '
}

# The rules whose packet count grew since $T/counts.before: the path the
# last request's packets took through the rules.
rules_matched() {
	rule_counts | awk 'NR == FNR { n[substr($0, index($0, " ") + 1)] = $1;
	    next }
	    { r = substr($0, index($0, " ") + 1); if ($1 > n[r] + 0) print r }' \
	    "$T/counts.before" -
}

# Before a request: remember the counters and the end of kuproxy's log.
step_before_request() {
	[ "$STEP" = 1 ] || return 0
	[ "$rules" = yes ] && rule_counts >"$T/counts.before"
	kuproxy_mark
}

# step_request WHY: explain the request just made: who answered, WHY, the
# rules its packets went through and what kuproxy logged about it.
n_requests=0
step_request() {
	[ "$STEP" = 1 ] || return 0
	n_requests=$((n_requests + 1))
	# The session's close line follows the client's own close.
	kuproxy_wait_log ': closed' 2 || true
	{
		echo "$_from asked $_url; $_ans answered."
		echo "$1" | fold -s -w 70
		if [ "$rules" = yes ]; then
			echo "Rules that caught it (their packet counters in" \
			    "iptables-$backend-save -c moved):"
			rules_matched | sed 's/^/    /'
			echo "(The jumps from PREROUTING and OUTPUT count every" \
			    "new connection that passes them, kuproxy's own to" \
			    "the pod included: it leaves from the node.)" |
			    fold -s -w 70
		fi
		echo "kuproxy logged (-v 4 in --step mode):"
		kuproxy_log_since | grep -E ': (connected|closed)' |
		    sed 's/^[^]]*] /    /'
	} >"$T/step.txt"
	# Not in a pipe: q at the pause must end the demo, not a subshell.
	explain "request $n_requests" "a request, and the way it went" \
	    <"$T/step.txt"
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
explain network "the network is built" <<EXPLAIN
Five network namespaces stand in for a node, three pods on the node's
bridge br0 (as a CNI bridge plugin sets them up) and a host outside,
which is the node's uplink.  The node forwards between them.
Why it matters: a Service's addresses (cluster IP, load-balancer IP)
are on no interface, and a node port is a port of the node.  Packets
for them cross the node's nat table, PREROUTING when they arrive from a
pod or from outside, OUTPUT when the node sends them, and that is where
kuproxy's rules will catch them.  Without a rule, the node would route
a packet for 10.96.0.10 out of its uplink, as its routes say:
$(nsx "$NS_NODE" ip route | sed 's/^/    /')
EXPLAIN

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
explain services "the Services and EndpointSlices are written" <<EXPLAIN
$services holds what kubectl get services,endpointslices -o yaml
prints: $(grep -c '^  kind: Service$' "$services") Services and $(grep -c '^  kind: EndpointSlice$' "$services") EndpointSlices.
kuproxy reads the same objects from the API server (list and watch) or,
as here, from a file (--services-file).  It joins each slice to its
Service by the kubernetes.io/service-name label and the port name, and
keeps the ready endpoints.
Why db and docs are different: a headless Service (clusterIP: None)
has no virtual IP, DNS answers with the pod addresses; an ExternalName
Service is a DNS CNAME.  Neither involves a proxy, in kube-proxy or
here.
EXPLAIN

say "4. kuproxy in the node namespace"
echo "   $KUPROXY_BIN --services-file services.yaml \\"
echo "       --iptables-backend $KP_IPTABLES_BACKEND --proxy-port-range 20000-20099"
# --step shows each connection's log lines, which come at -v 4.
step_flags=""
[ "$STEP" = 1 ] && step_flags="-v 4"
# shellcheck disable=SC2086 # step_flags is empty or two words
kuproxy_start "$NS_NODE" "$services" splice --iptables-min-sync-period 200ms \
    $step_flags
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
explain kuproxy "kuproxy is started" <<EXPLAIN
kuproxy read the file, built its service table and opened one proxy
port per service port, on 0.0.0.0, from --proxy-port-range:
$(grep -E 'workers:|services, [0-9]+ proxied|listening on proxy port|table applied' \
    "$KP_LOG" | sed 's/^[^]]*] /    /')
Why: in kube-proxy's userspace mode the kernel does not choose a pod.
Every connection to a service is handed to the proxy, which accepts it
on the service port's proxy port, picks an endpoint (round robin, or
ClientIP affinity) and makes a connection of its own to it.  Each
worker (--workers, one per CPU) has its own socket on every proxy port
(SO_REUSEPORT), and the kernel shares the connections out among them:
$(nsx "$NS_NODE" ss -Hltn 'sport >= :20000 and sport <= :20099' |
    awk '{ print "    LISTEN " $4 }' | sort)
EXPLAIN

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
	explain rules "the rules are installed" <<EXPLAIN
kuproxy wrote its five chains in one iptables-restore transaction:
$(grep -E 'iptables backend|portals:' "$KP_LOG" | sed 's/^[^]]*] /    /')
Why these rules: they move packets for a service address to kuproxy's
proxy port and nothing else.  For web, whose proxy port is $web:
$(chain_rules '"default/web:http"' | sed 's/^ *-A /    -A /')
A pod's packet for 10.96.0.10:80 passes PREROUTING, and the REDIRECT
rewrites its destination to the address it arrived at (br0's,
$POD_GW_IP) and port $web.  conntrack remembers the rewrite and undoes
it on the replies, so the pod sees 10.96.0.10:80 answer.  The node's
own packets pass OUTPUT instead, where a DNAT to the node's address
does the same (a REDIRECT there would go to 127.0.0.1, and replies
would come from the wrong address).
EXPLAIN
else
	say "5. No iptables rules (--iptables-backend $KP_IPTABLES_BACKEND): clients dial the node's proxy ports"
	explain rules "no rules are installed" <<EXPLAIN
With --iptables-backend none kuproxy changes no rule: nothing catches
packets for 10.96.0.10, so the clients below dial the proxy ports on
the node's addresses themselves.  kuproxy still accepts, picks an
endpoint and relays exactly as it does behind the rules.
EXPLAIN
fi

# request NS FROM URL: one HTTP request; prints who answered, and counts
# the requests no pod answered.
unanswered=0
request() {
	_from=$2 _url=$3
	step_before_request
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
# What --step says about each kind of request.
why_web="The pod's SYN for 10.96.0.10:80 met KUBE-PORTALS-CONTAINER in \
PREROUTING and was redirected to web's proxy port on br0's address.  \
kuproxy accepted it, took the next of web's endpoints in round robin and \
connected to that pod from the node's own address."
why_node="The node's own packets do not pass PREROUTING: OUTPUT sent \
them to KUBE-PORTALS-HOST, whose DNAT points at the proxy port on the \
node's address $NODE_IP."
why_nodeport="No portal matched $NODE_IP:30080, so the last jump of \
PREROUTING (--dst-type LOCAL: $NODE_IP is this node's) took the packet \
to KUBE-NODEPORT-CONTAINER, which redirected it to shop's proxy port; \
KUBE-NODEPORT-NON-LOCAL let the redirected SYN through filter INPUT."
why_lb="203.0.113.10 is no interface's address: the outside host routes \
it to the node, as a cloud load balancer that keeps the destination \
would deliver it.  KUBE-PORTALS-CONTAINER catches it like a cluster IP."
why_lb_np="A load balancer that rewrites the destination sends to a node \
port instead: the NodePort rules take it to the same proxy port as \
the load-balancer IP."
why_ext="An externalIP's rule carries -m physdev ! --physdev-is-in: it \
catches packets that did not come in through a bridge port, from \
outside, while pods on br0 talking to a non-local externalIP go past."
why_direct="No rule is involved: the client dialled the proxy port on \
the node, and kuproxy picked an endpoint as it would behind a portal."
if [ "$rules" = yes ]; then
	echo "   web's ClusterIP from a pod: PREROUTING, KUBE-PORTALS-CONTAINER,"
	echo "   kuproxy picks the pods in turn (round robin):"
	for _ in 1 2 3; do
		request "$NS_POD1" "$from_pod" "http://10.96.0.10/"
		step_request "$why_web"
	done
	echo "   web's ClusterIP from the node: OUTPUT, KUBE-PORTALS-HOST:"
	request "$NS_NODE" "$from_node" "http://10.96.0.10/"
	step_request "$why_node"
	echo "   shop's NodePort 30080 on the node's address, from outside:"
	for _ in 1 2; do
		request "$NS_OUT" "$from_out" "http://$NODE_IP:30080/"
		step_request "$why_nodeport"
	done
	echo "   api's load-balancer IP, routed to the node, from outside:"
	request "$NS_OUT" "$from_out" "http://203.0.113.10:443/"
	step_request "$why_lb"
	echo "   api's NodePort 30443, where a cloud load balancer would send it:"
	request "$NS_OUT" "$from_out" "http://$NODE_IP:30443/"
	step_request "$why_lb_np"
	echo "   legacy's externalIP, routed to the node, from outside:"
	for _ in 1 2; do
		request "$NS_OUT" "$from_out" "http://198.51.100.20/"
		step_request "$why_ext"
	done
else
	echo "   web (ClusterIP) through the node's proxy port, round robin over 3 pods:"
	for _ in 1 2 3; do
		request "$NS_POD1" "$from_pod" "http://$POD_GW_IP:$web/"
		step_request "$why_direct"
	done
	echo "   shop (NodePort), from outside:"
	for _ in 1 2; do
		request "$NS_OUT" "$from_out" "http://$NODE_IP:$shop/"
		step_request "$why_direct"
	done
	echo "   api (LoadBalancer), from outside:"
	request "$NS_OUT" "$from_out" "http://$NODE_IP:$api/"
	step_request "$why_direct"
	echo "   legacy (externalIPs), from a pod:"
	for _ in 1 2; do
		request "$NS_POD3" "pod-3 ($POD3_IP)" \
		    "http://$POD_GW_IP:$legacy/"
		step_request "$why_direct"
	done
fi

[ "$unanswered" = 0 ] ||
    fail "$unanswered of the requests above got no answer from a pod"

say "7. What kuproxy logged"
sed 's/^/   /' "$KP_LOG" | tail -n 20

say "8. Stopping kuproxy (SIGTERM)"
kuproxy_mark
kuproxy_stop
if [ "$rules" = yes ]; then
	left=$(portal_all_rules "$NS_NODE")
	[ -z "$left" ] || fail "rules left after kuproxy stopped: $left"
	echo "   kuproxy removed its chains and rules on the way out."
fi
explain stop "kuproxy is stopped" <<EXPLAIN
On SIGTERM kuproxy removed its rules, then closed its proxy ports, and
let the connections still open finish (--shutdown-grace-period):
$(kuproxy_log_since | grep -v ': closed' | sed 's/^[^]]*] /    /')
Why in that order: a rule left behind would redirect clients to a port
nobody listens on, and the service would be dead on this node; with
the rules gone, kube-proxy or another proxy can take over cleanly.
Rules of kuproxy's left in the node: $(portal_all_rules "$NS_NODE" | wc -l).
EXPLAIN
say "Done: namespaces, processes and $T are removed on exit."
