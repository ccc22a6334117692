#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Editing a UDP service's endpoints under a running kuproxy (services file
# replaced by rename, as editors do).  kuproxy runs with --udp-timeout 30s,
# so that nothing in this test can be explained by an association expiring.
#  1. Endpoint removal drops its associations at once: a client with a fixed
#     source port, answered by pod X over service default/dns
#     (10.96.0.10:53), keeps querying every 0.2 s; X is removed from the
#     slice (its dnsmasq keeps running and would still answer); within 1 s
#     of the rename the client is answered by another pod, and kuproxy logs
#     the association closed because its endpoint left.
#  2. A service without endpoints, default/empty (10.96.0.11:53): a query
#     gets no answer (counted as dropped for want of an endpoint), kuproxy
#     stays healthy (/healthz 200) and keeps serving default/dns; once
#     the file gives empty an endpoint, the same client is answered by it.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/dnslib.sh"
dns_init
e2e_topology

DNS_IP=10.96.0.10
EMPTY_IP=10.96.0.11
CLIENT_PORT=42053
EMPTY_CLIENT_PORT=43053
dnsmasq_start "$NS_POD1" pod-1 "$POD1_IP"
dnsmasq_start "$NS_POD2" pod-2 "$POD2_IP"
dnsmasq_start "$NS_POD3" pod-3 "$POD3_IP"

# services_file [EMPTY-ADDRESS] [DNS-ADDRESS...]: dns with the given pods
# (all three when none is given), and empty with EMPTY-ADDRESS or none
# ("-" for none).
services_file() {
	_empty=${1:--}
	shift $(($# > 0 ? 1 : 0))
	[ $# -gt 0 ] || set -- "$POD1_IP" "$POD2_IP" "$POD3_IP"
	[ "$_empty" = - ] && _empty=""
	{
		udp_service dns "$DNS_IP" dns:UDP:53:53
		udp_slice dns "dns:UDP:53" "$@"
		udp_service empty "$EMPTY_IP" dns:UDP:53:53
		udp_slice empty "dns:UDP:53" $_empty
	} | udp_list
}

file="$T/services.yaml"
services_file >"$file"
kuproxy_start_portals "$file" --udp-timeout 30s
kuproxy_port udp default/dns:dns/UDP
kuproxy_port udp_empty default/empty:dns/UDP
portal_wait_synced "$DNS_IP" 53
portal_wait_synced "$EMPTY_IP" 53

# 1. Endpoint removal.
client="$OUT_IP:$CLIENT_PORT"
x=$(who "$NS_OUT" "$DNS_IP" -b "$OUT_IP#$CLIENT_PORT")
case $x in
"$POD1_IP" | "$POD2_IP" | "$POD3_IP") ;;
*) fail "first query from $client: $x" ;;
esac
for i in 1 2 3; do
	sleep 0.2
	got=$(who "$NS_OUT" "$DNS_IP" -b "$OUT_IP#$CLIENT_PORT")
	[ "$got" = "$x" ] || fail "query $i from $client moved from $x to $got" \
	    "before any edit"
done
ok "$client is answered by $x over one association"

rest=""
for ip in "$POD1_IP" "$POD2_IP" "$POD3_IP"; do
	[ "$ip" = "$x" ] || rest="$rest $ip"
done
kuproxy_mark
t0=$(now_ms)
services_file - $rest | replace_file "$file"
# A query in flight when the association is dropped loses its reply, as
# it would with any proxy; the client then waits out its own 1 s and asks
# again.  That one lost query is allowed, and its wait does not count.
answers=""
lost_ms=0
while :; do
	q0=$(now_ms)
	got=$(who "$NS_OUT" "$DNS_IP" -b "$OUT_IP#$CLIENT_PORT" +time=1)
	answers="$answers $got"
	if [ "$got" = timeout ] && [ "$lost_ms" = 0 ]; then
		lost_ms=$(($(now_ms) - q0))
		continue
	fi
	elapsed=$(($(now_ms) - t0 - lost_ms))
	[ "$got" != "$x" ] && break
	[ "$elapsed" -lt 1000 ] ||
	    fail "1 s after removing $x, $client is still answered by it:$answers"
	sleep 0.2
done
[ "$elapsed" -lt 1000 ] ||
    fail "after removing $x, $client was answered by another pod only" \
    "after $elapsed ms:$answers"
case " $rest " in
*" $got "*) ;;
*) fail "after removing $x, $client got $got, want one of$rest" ;;
esac
kuproxy_log_since |
    grep -q "client $client: association with $x:53 closed: endpoint left" ||
    fail "kuproxy did not log the association to $x closed (endpoint left)"
ok "$x removed: $client answered by $got $elapsed ms after the rename" \
    "(answers:$answers), its association closed as the endpoint left"

# 2. A service without endpoints.
empty_client="$OUT_IP:$EMPTY_CLIENT_PORT"
got=$(who "$NS_OUT" "$EMPTY_IP" -b "$OUT_IP#$EMPTY_CLIENT_PORT" +time=1)
case $got in
timeout | refused) ;;
*) fail "a query to empty $EMPTY_IP:53, without endpoints, got: $got" ;;
esac
kuproxy_alive || fail "kuproxy died after a query to empty"
healthz=$(timeout 5 ip netns exec "$NS_NODE" curl -s -o /dev/null \
    -w '%{http_code}' --max-time 3 "http://127.0.0.1:10256/healthz")
[ "$healthz" = 200 ] ||
    fail "/healthz answered $healthz after a query to empty"
rejected=$(udp_metric kuproxy_service_no_endpoint_rejections_total empty)
[ "$rejected" = 1 ] ||
    fail "kuproxy counted $rejected datagrams to empty dropped for want of" \
    "an endpoint, want 1"
again=$(who "$NS_OUT" "$DNS_IP")
case " $rest " in
*" $again "*) ;;
*) fail "after the query to empty, dns answered: $again" ;;
esac
ok "empty without endpoints: no answer ($got), the datagram counted;" \
    "/healthz 200, and dns still answers ($again)"

kuproxy_mark
services_file "$POD3_IP" $rest | replace_file "$file"
kuproxy_wait_log "service table applied" 2 ||
    fail "the file giving empty an endpoint was not applied within 2 s"
# The portal stayed while empty had no endpoint, so the client's conntrack
# entry still leads to the same proxy port: nothing needs flushing.
got=$(who "$NS_OUT" "$EMPTY_IP" -b "$OUT_IP#$EMPTY_CLIENT_PORT")
[ "$got" = "$POD3_IP" ] ||
    fail "empty with endpoint $POD3_IP: $empty_client got $got"
ok "empty given endpoint $POD3_IP: the same client $empty_client is answered"

kuproxy_stop
