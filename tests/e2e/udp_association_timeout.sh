#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# One client's association lives as long as the client keeps talking and
# ends after --udp-timeout of silence.  Service default/dns (10.96.0.10:53,
# UDP) has three dnsmasq pods; kuproxy runs with --udp-timeout 2s.  dig
# always sends from the same source port (-b ADDR#PORT), as a long-lived
# client socket would:
#  1. five queries 0.3 s apart are all answered by one pod, X, over one
#     association;
#  2. after 3 s of silence the association has expired (kuproxy logs it
#     idle), and the next query from the same port is answered by the pod
#     after X in the rotation, over a new association.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/dnslib.sh"
dns_init
e2e_topology

CLUSTER_IP=10.96.0.10
CLIENT_PORT=41053
dnsmasq_start "$NS_POD1" pod-1 "$POD1_IP"
dnsmasq_start "$NS_POD2" pod-2 "$POD2_IP"
dnsmasq_start "$NS_POD3" pod-3 "$POD3_IP"

{
	udp_service dns "$CLUSTER_IP" dns:UDP:53:53
	udp_slice dns "dns:UDP:53" "$POD1_IP" "$POD2_IP" "$POD3_IP"
} | udp_list >"$T/services.yaml"

# The pod after $1 in the rotation (endpoints in address order).
next_pod() {
	case $1 in
	"$POD1_IP") echo "$POD2_IP" ;;
	"$POD2_IP") echo "$POD3_IP" ;;
	*) echo "$POD1_IP" ;;
	esac
}

client="$OUT_IP:$CLIENT_PORT"
kuproxy_start_portals "$T/services.yaml" --udp-timeout 2s
kuproxy_port udp default/dns:dns/UDP
portal_wait_synced "$CLUSTER_IP" 53

# 1. Queries inside the timeout stay on one pod.
kuproxy_mark
first=""
for i in 1 2 3 4 5; do
	got=$(who "$NS_OUT" "$CLUSTER_IP" -b "$OUT_IP#$CLIENT_PORT")
	case $got in
	"$POD1_IP" | "$POD2_IP" | "$POD3_IP") ;;
	*) fail "query $i from $client: $got" ;;
	esac
	[ -n "$first" ] || first=$got
	[ "$got" = "$first" ] ||
	    fail "query $i from $client, 0.3 s after the last, moved from" \
	    "$first to $got"
	sleep 0.3
done
n_assoc=$(kuproxy_log_since | grep -c "client $client: new association")
[ "$n_assoc" = 1 ] ||
    fail "5 queries from $client within the timeout made $n_assoc associations"
ok "5 queries from $client 0.3 s apart: all answered by $first, one association"

# 2. Silence longer than the timeout ends the association.
kuproxy_mark
sleep 3
kuproxy_log_since |
    grep -q "client $client: association with $first:53 closed: idle" ||
    fail "no 'closed: idle' for $client after 3 s of silence" \
    "(--udp-timeout 2s)"
want=$(next_pod "$first")
got=$(who "$NS_OUT" "$CLUSTER_IP" -b "$OUT_IP#$CLIENT_PORT")
[ "$got" = "$want" ] ||
    fail "after the timeout, $client was answered by $got, want $want" \
    "(the pod after $first)"
kuproxy_log_since |
    grep -q "client $client: new association with endpoint $want:53" ||
    fail "no new association for $client after the timeout"
ok "after 3 s of silence the association expired; the next query from" \
    "$client went to the next pod, $want"

kuproxy_stop
