# SPDX-License-Identifier: Apache-2.0
#
# Helpers for the UDP e2e tests (tests/e2e/udp_*.sh), sourced after lib.sh.
# lib.sh keeps the life cycle (temp dir, namespaces, trap, kuproxy itself);
# this file adds what a UDP service needs: dnsmasq backends that answer
# with their own address, dig as the client, a UDP echo backend
# (udpkit.py) for datagrams larger than DNS uses, services files with UDP
# ports, and waiting until a ClusterIP portal really carries traffic.
#
# The UDP tests run on e2e_topology's network: each pod runs a backend on
# its own address, kuproxy runs in the node with iptables-legacy portals,
# and the client in the outside namespace sends to the ClusterIP, routed
# through the node as a pod's traffic would be.  The relay mode only
# concerns TCP, so UDP-only scripts run kuproxy once, in splice mode.
#
# The building blocks:
#   dns_init                     e2e_init plus dig, dnsmasq, iptables-legacy
#   dnsmasq_start NS NAME IP     a DNS server answering who.test with IP
#   udp_echo_start NS NAME ADDR:PORT   a udpkit.py echo backend
#   e2e_wait_udp NS ADDR:PORT    wait until a UDP socket is bound there
#   who NS SERVER [DIG ARGS]     ask SERVER (IP or IP#PORT) for who.test
#   udp_service, udp_slice, udp_list   a services file
#   kuproxy_start_portals FILE [FLAGS]   kuproxy in the node, legacy portals
#   portal_wait_synced IP PORT   wait until the rules and conntrack are done
#   udp_metric NAME SERVICE [DIRECTION]   one counter of a UDP service port
# Scratch variables are _d-prefixed globals (POSIX sh has no local).

# The name every dnsmasq answers for, each with its own address.
DNS_NAME=who.test

# kuproxy's metrics server, at its default address in the node namespace.
DNS_METRICS=127.0.0.1:10249

dns_init() {
	e2e_init
	for _dtool in dig dnsmasq iptables-legacy curl; do
		command -v "$_dtool" >/dev/null 2>&1 ||
		    e2e_error "missing $_dtool (packaging/install-deps installs it)"
	done
	UDPKIT="$KUPROXY_SRCDIR/tests/e2e/udpkit.py"
	[ -r "$UDPKIT" ] || e2e_error "no $UDPKIT"
}

# e2e_wait_udp NS ADDR:PORT [SECONDS]: wait until a UDP socket is bound to
# ADDR:PORT in NS.  Returns 1 on timeout.
e2e_wait_udp() {
	_ddeadline=$(($(now_ms) + ${3:-5} * 1000))
	while [ "$(now_ms)" -lt "$_ddeadline" ]; do
		if nsx "$1" ss -Hlun | awk '{ print $4 }' | grep -qxF "$2"; then
			return 0
		fi
		sleep 0.05
	done
	return 1
}

# dnsmasq_start NS NAME IP: dnsmasq on IP port 53, UDP and TCP, answering
# $DNS_NAME with IP and nothing else (no upstream, no hosts file, no
# configuration file).  Logs each query to $T/dnsmasq-NAME.log.
dnsmasq_start() {
	e2e_bg "dnsmasq-$2" "$1" dnsmasq --keep-in-foreground \
	    --conf-file=/dev/null --no-resolv --no-hosts --port=53 \
	    --listen-address="$3" --bind-interfaces \
	    --address="/$DNS_NAME/$3" --pid-file="$T/dnsmasq-$2.pid" \
	    --user=root --group=root --log-facility=- --log-queries
	# dnsmasq binds UDP and TCP together; TCP is the one ss shows best.
	e2e_wait_listen "$1" "$3:53" 10 && e2e_wait_udp "$1" "$3:53" 5 ||
	    e2e_error "dnsmasq $2 did not listen on $3:53" \
	    "(see dnsmasq-$2.log)"
}

# udp_echo_start NS NAME ADDR:PORT: a udpkit.py backend that sends every
# datagram back.
udp_echo_start() {
	e2e_bg "echo-$2" "$1" "$KPT_PYTHON" "$UDPKIT" echo --listen "$3"
	e2e_wait_udp "$1" "$3" 10 ||
	    e2e_error "echo backend $2 did not listen on $3 (see echo-$2.log)"
}

# who NS SERVER [DIG ARGS...]: ask SERVER (IP, or IP#PORT) once for
# $DNS_NAME over UDP, one try of 2 s, and print the address it answered
# with, or "timeout", "refused" or "ERROR:<dig's first line>".  Always
# returns 0: the caller compares what a user would see.
who() {
	_dns=$1
	_dserver=${2%%#*}
	_dport=53
	case $2 in
	*"#"*) _dport=${2#*#} ;;
	esac
	shift 2
	_dout=$(timeout 5 ip netns exec "$_dns" dig "@$_dserver" -p "$_dport" \
	    "$DNS_NAME" +short +tries=1 +time=2 "$@" 2>&1)
	_drc=$?
	if [ "$_drc" = 0 ] && [ -n "$_dout" ] &&
	    ! echo "$_dout" | grep -q '^;;'; then
		echo "$_dout" | head -n 1
	elif echo "$_dout" | grep -q "timed out\|no servers could be reached"; then
		echo timeout
	elif echo "$_dout" | grep -qi "refused"; then
		echo refused
	else
		echo "ERROR:rc=$_drc:$(echo "$_dout" | head -n 1)"
	fi
}

# ------------------------------------------------------------ services file

# udp_service NAME CLUSTER-IP PORT-NAME:PROTOCOL:PORT:TARGET-PORT...: a
# ClusterIP Service, as kubectl prints it inside a List.
udp_service() {
	cat <<YAML
- apiVersion: v1
  kind: Service
  metadata:
    name: $1
    namespace: default
  spec:
    clusterIP: $2
    clusterIPs:
    - $2
    ports:
YAML
	_dsvc=$1
	shift 2
	for _dp in "$@"; do
		echo "$_dp" | awk -F: '{
			print "    - name: " $1
			print "      port: " $3
			print "      protocol: " $2
			print "      targetPort: " $4
		}'
	done
	cat <<YAML
    selector:
      app: $_dsvc
    sessionAffinity: None
    type: ClusterIP
YAML
}

# udp_slice NAME PORTS ADDRESS...: the EndpointSlice of service NAME with
# every ADDRESS ready; PORTS is a space-separated list of
# PORT-NAME:PROTOCOL:PORT.  No address gives a slice without endpoints.
udp_slice() {
	_dsvc=$1
	_dports=$2
	shift 2
	echo "- addressType: IPv4"
	echo "  apiVersion: discovery.k8s.io/v1"
	if [ $# = 0 ]; then
		echo "  endpoints: []"
	else
		echo "  endpoints:"
	fi
	for _da in "$@"; do
		cat <<YAML
  - addresses:
    - $_da
    conditions:
      ready: true
      serving: true
      terminating: false
YAML
	done
	cat <<YAML
  kind: EndpointSlice
  metadata:
    labels:
      kubernetes.io/service-name: $_dsvc
    name: $_dsvc-abcde
    namespace: default
  ports:
YAML
	for _dp in $_dports; do
		echo "$_dp" | awk -F: '{
			print "  - name: " $1
			print "    port: " $3
			print "    protocol: " $2
		}'
	done
}

# udp_list: wrap the items on stdin in a List.
udp_list() {
	echo "apiVersion: v1"
	echo "items:"
	cat
	echo "kind: List"
	echo "metadata:"
	echo "  resourceVersion: \"\""
}

# ----------------------------------------------------------------- kuproxy

# kuproxy_start_portals FILE [FLAGS...]: kuproxy in the node namespace with
# iptables-legacy portals, debug logging (association lines and conntrack
# flushes are what the UDP tests read) and MODE splice unless
# KPT_UDP_MODE says otherwise.
kuproxy_start_portals() {
	_dfile=$1
	shift
	KP_IPTABLES_BACKEND=legacy kuproxy_start "$NS_NODE" "$_dfile" \
	    "${KPT_UDP_MODE:-splice}" -v 4 "$@"
}

# portal_wait_synced IP PORT [SECONDS]: wait, after the log mark, until the
# portal rules are synced and the UDP conntrack entries to IP:PORT are
# flushed (or conntrack is reported missing).  A query sent before the
# flush could lose its conntrack entry in flight and get its reply from the
# proxy port instead of IP:PORT, which dig rightly ignores.
portal_wait_synced() {
	kuproxy_wait_log "portals: IPv4 rules synced" "${3:-5}" ||
	    fail "portal rules for $1:$2 not synced within ${3:-5} s"
	_dflushed="conntrack: flushed UDP entries to $1 port $2\$"
	kuproxy_wait_log "$_dflushed|conntrack is not installed" "${3:-5}" ||
	    fail "conntrack entries to $1:$2 not flushed within ${3:-5} s"
}

# udp_metric NAME SERVICE [DIRECTION]: print the value of metric NAME for
# the UDP port of service default/SERVICE (and DIRECTION, for bytes), as
# kuproxy in $NS_NODE serves it now; fails the test when there is none.
udp_metric() {
	_dsel="service=\"$2\",.*protocol=\"UDP\""
	[ -n "${3:-}" ] && _dsel="$_dsel,direction=\"$3\""
	_dval=$(timeout 5 ip netns exec "$NS_NODE" curl -sS --max-time 3 \
	    "http://$DNS_METRICS/metrics" | grep -E "^$1\{.*$_dsel\}" |
	    awk '{ print $2 }')
	[ -n "$_dval" ] || fail "no metric $1 for default/$2 (UDP) ${3:-}"
	echo "$_dval"
}
