#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Balancers chosen by the kuproxy.io/balancer annotation, against three
# "greet" backends (they answer their name and keep the connection until
# the client closes, so held connections stay open on the endpoint).
#  1. least-connections: two connections held open occupy two endpoints;
#     six more, one after another, all go to the third (round robin would
#     spread them).  Once the held ones close, new ones spread again.
#  2. a service without the annotation takes --balancer's default, round
#     robin: 2/2/2.
#  3. maglev: twelve client addresses each reach one endpoint every time;
#     more than one endpoint is used; when one endpoint is removed from the
#     services file, every client of the two that stay keeps its endpoint.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
e2e_init
FAULTKIT="$KUPROXY_SRCDIR/tests/e2e/faultkit.py"
[ -r "$FAULTKIT" ] || e2e_error "no $FAULTKIT"
e2e_netns node

backend_start "$NS_NODE" pod-a 127.0.0.11:8080 greet
backend_start "$NS_NODE" pod-b 127.0.0.12:8080 greet
backend_start "$NS_NODE" pod-c 127.0.0.13:8080 greet

# services_yaml ENDPOINTS...: lc (least-connections), mg (maglev) and rr
# (no annotation), each with the given endpoint addresses on port 8080.
services_yaml() {
	for _s in lc:least-connections mg:maglev rr:; do
		_name=${_s%%:*}
		_alg=${_s#*:}
		cat <<YAML
- apiVersion: v1
  kind: Service
  metadata:
    name: $_name
    namespace: default
YAML
		[ -n "$_alg" ] &&
		    echo "    annotations: {kuproxy.io/balancer: $_alg}"
		cat <<YAML
  spec:
    clusterIP: 10.96.0.$((20 + ${#_name}))
    ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080}]
    type: ClusterIP
YAML
		yaml_slice "$_name" 8080 "$@"
	done | yaml_list
}

services_yaml 127.0.0.11 127.0.0.12 127.0.0.13 >"$T/services.yaml"
kuproxy_start "$NS_NODE" "$T/services.yaml" splice
kuproxy_port lc default/lc:http/TCP
kuproxy_port mg default/mg:http/TCP
kuproxy_port rr default/rr:http/TCP

# ------------------------------------------------- 1. least connections
e2e_bg hold "$NS_NODE" "$KPT_PYTHON" "$FAULTKIT" hold-many \
    --connect "127.0.0.1:$lc" --count 2 --seconds 4
hold_pid=$LAST_PID
# Both held connections are up (the proxy connects to an endpoint at
# once); then give its loop a moment to have done so.
i=0
until grep -q "connected 2 failed 0" "$T/hold.log" 2>/dev/null; do
	[ $i -lt 100 ] || fail "hold-many: $(cat "$T/hold.log")"
	sleep 0.05
	i=$((i + 1))
done
sleep 0.3
# One at a time, each after the previous session has closed on the proxy
# too (a greet backend's FIN, then the client's): a session still open
# would count, and rightly tie the third endpoint with the held two.
: >"$T/lc.out"
for i in 1 2 3 4 5 6; do
	ask "$NS_NODE" "127.0.0.1:$lc" 1 >/dev/null
	cat "$T/ask.out" >>"$T/lc.out"
	sleep 0.1
done
got=$(tally "$T/lc.out")
case $got in
pod-?=6) ok "least-connections: 2 held, 6 more all to the free one: $got" ;;
*) fail "least-connections with 2 held connections: got '$got'" ;;
esac
wait "$hold_pid"
expect_tally "least-connections, none held: ties taken in turn" \
    "pod-a=2 pod-b=2 pod-c=2" "$NS_NODE" "127.0.0.1:$lc" 6

# ----------------------------------------------- 2. the default balancer
expect_tally "no annotation: round robin" "pod-a=2 pod-b=2 pod-c=2" \
    "$NS_NODE" "127.0.0.1:$rr" 6

# ----------------------------------------------------------- 3. maglev
# mapping FILE: "IP POD" for 12 client addresses, each asked 3 times;
# fails unless each address got one endpoint every time.
mapping() {
	: >"$1"
	for n in 50 51 52 53 54 55 56 57 58 59 60 61; do
		ip="127.0.0.$n"
		got=$(ask "$NS_NODE" "127.0.0.1:$mg" 3 --bind "$ip")
		case $got in
		pod-?=3) echo "$ip ${got%=3}" >>"$1" ;;
		*) fail "maglev: client $ip got '$got', want one endpoint" ;;
		esac
	done
}
mapping "$T/mg-before"
used=$(awk '{ print $2 }' "$T/mg-before" | sort -u | wc -l)
[ "$used" -ge 2 ] ||
    fail "maglev: 12 clients all on one endpoint: $(tr '\n' ' ' <"$T/mg-before")"
ok "maglev: 12 clients, each on one endpoint every time, $used endpoints used"

# Remove the endpoint with the most clients: its clients move, no other.
gone=$(awk '{ print $2 }' "$T/mg-before" | sort | uniq -c | sort -rn |
    awk 'NR == 1 { print $2 }')
case $gone in
pod-a) keep="127.0.0.12 127.0.0.13" ;;
pod-b) keep="127.0.0.11 127.0.0.13" ;;
*) keep="127.0.0.11 127.0.0.12" ;;
esac
kuproxy_mark
# shellcheck disable=SC2086
services_yaml $keep | replace_file "$T/services.yaml"
kuproxy_wait_log "default/mg:http/TCP: endpoints changed" 10 ||
    fail "the endpoint change of mg was not applied"
mapping "$T/mg-after"
moved=0 kept=0
while read -r ip pod; do
	now=$(awk -v ip="$ip" '$1 == ip { print $2 }' "$T/mg-after")
	if [ "$pod" = "$gone" ]; then
		[ "$now" != "$gone" ] || fail "maglev: $ip still on removed $gone"
		moved=$((moved + 1))
	else
		[ "$now" = "$pod" ] ||
		    fail "maglev: $ip moved from $pod to $now although only" \
		    "$gone was removed"
		kept=$((kept + 1))
	fi
done <"$T/mg-before"
ok "maglev: $gone removed: its $moved clients moved, the other $kept kept" \
    "their endpoint"
kuproxy_stop
