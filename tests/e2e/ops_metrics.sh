#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# /metrics and `kuproxy status` count exactly what clients did.
#  1. Five connections to "web" (two endpoints), each sending 1000 bytes and
#     half-closing, each answered "web-X got 1000 bytes\n" (21 bytes):
#     connections_total 5, bytes to_backend 5000 and to_client 105, the
#     per-endpoint totals are the round-robin split the clients saw, nothing
#     active afterwards, no connect failure.
#  2. "dead" has one endpoint where nothing listens: each of 3 clients costs
#     4 refused connect attempts and is then reset, so connect_failures 12
#     (also per endpoint) and no_endpoint_rejections 3.  UDP "dns" has no
#     endpoint: 4 datagrams are 4 no_endpoint_rejections.  TCP "empty" has no
#     endpoint either: its listener is paused, the kernel refuses, so kuproxy
#     never sees (nor counts) those clients.
#  3. The page parses with prometheus_client's parser and passes the format
#     rules metrics_check.py enforces; every family kuproxy documents is
#     there; the healthz/livez counters match the requests made; /proxyMode
#     says userspace; unknown paths are 404 and POST is refused (405, or
#     evhttp's 501); the metrics server answers on 127.0.0.1 only, the
#     health server on every address.
#  4. `kuproxy status` (table) and `kuproxy status --json` report the same
#     counts as the metrics, port by port and endpoint by endpoint; the
#     status socket is mode 0600, and removed on exit, after which
#     `kuproxy status` says it cannot reach kuproxy and exits non-zero.
# Relay-mode dependent (the byte counters are kept by the splice and the
# copy paths separately), so it runs in every mode of KPT_RELAY_MODES.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/opslib.sh"
ops_init
e2e_netns node
# A second address on the node, to see which servers answer on it.
NODE_ADDR=10.99.0.1
{
	ip -n "$NS_NODE" link add ops0 type veth peer name ops1 &&
	ip -n "$NS_NODE" addr add "$NODE_ADDR/24" dev ops0 &&
	ip -n "$NS_NODE" link set ops0 up &&
	ip -n "$NS_NODE" link set ops1 up
} || e2e_error "second address in $NS_NODE"

backend_start "$NS_NODE" web-a 127.0.0.11:8080 after-eof
backend_start "$NS_NODE" web-b 127.0.0.12:8080 after-eof

file="$T/services.yaml"
{
	ops_service web 80 10.96.7.1
	ops_slice web TCP 127.0.0.11 127.0.0.12
	ops_service dead 81 10.96.7.2
	ops_slice dead TCP 127.0.0.13
	ops_service empty 82 10.96.7.3
	ops_service dns 53 10.96.7.4 UDP
} | ops_list >"$file"

SEL_WEB='namespace="default",service="web",port="tcp",protocol="TCP"'
SEL_DEAD='namespace="default",service="dead",port="tcp",protocol="TCP"'
SEL_EMPTY='namespace="default",service="empty",port="tcp",protocol="TCP"'
SEL_DNS='namespace="default",service="dns",port="udp",protocol="UDP"'
EP_A="$SEL_WEB,endpoint=\"127.0.0.11:8080\""
EP_B="$SEL_WEB,endpoint=\"127.0.0.12:8080\""
EP_DEAD="$SEL_DEAD,endpoint=\"127.0.0.13:8080\""

web_quiet() {
	metrics_fetch quiet &&
	    metrics_is quiet "kuproxy_service_connections_active{$SEL_WEB}" 0 &&
	    metrics_is quiet "kuproxy_service_connections_active{$SEL_DEAD}" 0
}

dns_counted() {
	metrics_fetch dns && metrics_is dns \
	    "kuproxy_service_no_endpoint_rejections_total{$SEL_DNS}" 4
}

for mode in $KPT_RELAY_MODES; do
	kuproxy_start "$NS_NODE" "$file" "$mode"
	kuproxy_port web default/web:tcp/TCP
	kuproxy_port dead default/dead:tcp/TCP
	kuproxy_port empty default/empty:tcp/TCP
	kuproxy_port dns default/dns:udp/UDP

	# 1. Traffic with known sizes.
	client "$NS_NODE" --connect "127.0.0.1:$web" --mode half-close \
	    --send 0123456789 --repeat 100 --count 5 >"$T/web.out" ||
	    fail "$mode: a web connection failed: $(cat "$T/web.out")"
	n_a=$(count web-a "$T/web.out")
	n_b=$(count web-b "$T/web.out")
	[ "$(awk '$3 == "got" && $4 == 1000' "$T/web.out" | wc -l)" = 5 ] ||
	    fail "$mode: backends did not get 1000 bytes each: $(cat "$T/web.out")"
	[ "$((n_a + n_b))" = 5 ] || fail "$mode: web answered $(cat "$T/web.out")"
	reply=$(printf 'web-a got 1000 bytes\n' | wc -c)
	back=$((5 * reply))

	# 2. Clients that find no endpoint.
	client "$NS_NODE" --connect "127.0.0.1:$dead" --count 3 >"$T/dead.out"
	[ "$(distinct "$T/dead.out")" = ERROR:reset ] ||
	    fail "$mode: dead service: $(cat "$T/dead.out")"
	client "$NS_NODE" --connect "127.0.0.1:$empty" --count 2 >"$T/empty.out"
	[ "$(distinct "$T/empty.out")" = ERROR:refused ] ||
	    fail "$mode: empty service: $(cat "$T/empty.out")"
	for i in 1 2 3 4; do
		echo "query $i" | nsx "$NS_NODE" timeout 5 socat -u - \
		    "UDP4-SENDTO:127.0.0.1:$dns" || fail "$mode: socat UDP send"
	done
	ok "$mode: 5 web connections (web-a $n_a, web-b $n_b), 3 resets from" \
	    "dead, 2 refusals from empty, 4 datagrams to dns"

	wait_until 5 web_quiet || fail "$mode: web sessions still active:" \
	    "$(grep connections_active "$T/quiet")"
	wait_until 5 dns_counted || fail "$mode: the 4 datagrams to dns were" \
	    "not counted: $(grep 'no_endpoint.*dns' "$T/dns")"

	# 3. Health requests to count, then the page.
	for i in 1 2 3; do
		code=$(http_get "$NS_NODE" "http://$OPS_HEALTHZ/healthz" healthz)
		[ "$code" = 200 ] || fail "$mode: /healthz answered $code"
	done
	for i in 1 2; do
		code=$(http_get "$NS_NODE" "http://$OPS_HEALTHZ/livez" livez)
		[ "$code" = 200 ] || fail "$mode: /livez answered $code"
	done
	code=$(http_get "$NS_NODE" "http://$OPS_METRICS/healthz" healthz-m)
	[ "$code" = 200 ] || fail "$mode: /healthz on the metrics server: $code"

	metrics_fetch metrics
	grep -qi '^content-type: text/plain; version=0.0.4' \
	    "$T/metrics.headers" ||
	    fail "$mode: /metrics content type: $(cat "$T/metrics.headers")"
	metrics_check metrics \
	    "kuproxy_service_connections_total{$SEL_WEB} == 5" \
	    "kuproxy_service_connections_active{$SEL_WEB} == 0" \
	    "kuproxy_service_bytes_total{$SEL_WEB,direction=\"to_backend\"} == 5000" \
	    "kuproxy_service_bytes_total{$SEL_WEB,direction=\"to_client\"} == $back" \
	    "kuproxy_service_connect_failures_total{$SEL_WEB} == 0" \
	    "kuproxy_service_no_endpoint_rejections_total{$SEL_WEB} == 0" \
	    "kuproxy_endpoint_connections_total{$SEL_WEB} == 5" \
	    "kuproxy_endpoint_connections_total{$EP_A} == $n_a" \
	    "kuproxy_endpoint_connections_total{$EP_B} == $n_b" \
	    "kuproxy_endpoint_connections_active{$SEL_WEB} == 0" \
	    "kuproxy_endpoint_connect_failures_total{$SEL_WEB} == 0" \
	    "kuproxy_service_connections_total{$SEL_DEAD} == 3" \
	    "kuproxy_service_no_endpoint_rejections_total{$SEL_DEAD} == 3" \
	    "kuproxy_service_connect_failures_total{$SEL_DEAD} == 12" \
	    "kuproxy_endpoint_connect_failures_total{$EP_DEAD} == 12" \
	    "kuproxy_endpoint_connections_total{$SEL_DEAD} == 0" \
	    "kuproxy_service_bytes_total{$SEL_DEAD} == 0" \
	    "kuproxy_service_connections_total{$SEL_EMPTY} == 0" \
	    "kuproxy_service_no_endpoint_rejections_total{$SEL_EMPTY} == 0" \
	    "kuproxy_service_no_endpoint_rejections_total{$SEL_DNS} == 4" \
	    "kuproxy_udp_associations_active{$SEL_DNS} == 0" \
	    "kuproxy_udp_associations_total{$SEL_DNS} == 0" \
	    "kuproxy_udp_associations_evicted_total{$SEL_DNS} == 0" \
	    "kuproxy_udp_dropped_total{$SEL_DNS} >= 0" \
	    'kubeproxy_proxy_healthz_total{code="200"} == 4' \
	    'kubeproxy_proxy_healthz_total{code="503"} == 0' \
	    'kubeproxy_proxy_livez_total{code="200"} == 2' \
	    'kubeproxy_proxy_livez_total{code="503"} == 0' \
	    'kuproxy_build_info == 1' \
	    'kuproxy_config_reloads_total{result="success"} == 0' \
	    'kuproxy_config_reloads_total{result="failure"} == 0' \
	    'kubeproxy_sync_proxy_rules_duration_seconds_count >= 1' \
	    'kubeproxy_network_programming_duration_seconds_count >= 0' \
	    'kubeproxy_sync_proxy_rules_last_timestamp_seconds > 0' \
	    'kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds >= 0' \
	    'kubeproxy_sync_proxy_rules_service_changes_total >= 1' \
	    'kubeproxy_sync_proxy_rules_service_changes_pending == 0' \
	    'kubeproxy_sync_proxy_rules_endpoint_changes_total >= 0' \
	    'kubeproxy_sync_proxy_rules_iptables_restore_failures_total == 0' \
	    'process_cpu_seconds_total >= 0' 'process_open_fds > 0' \
	    'process_max_fds > 0' 'process_resident_memory_bytes > 0' \
	    'process_virtual_memory_bytes > 0' \
	    'process_start_time_seconds > 1600000000' >/dev/null
	ok "$mode: /metrics parses, every family has HELP and TYPE, and it" \
	    "counts exactly: web 5 conns 5000/$((5 * reply)) bytes" \
	    "(endpoints $n_a+$n_b), dead 3 rejections 12 failures, dns 4" \
	    "rejections, healthz 4, livez 2"

	code=$(http_get "$NS_NODE" "http://$OPS_METRICS/proxyMode" mode)
	[ "$code" = 200 ] && [ "$(cat "$T/mode")" = userspace ] ||
	    fail "$mode: /proxyMode answered $code: $(cat "$T/mode")"
	code=$(http_get "$NS_NODE" "http://$OPS_METRICS/nothing" nothing)
	[ "$code" = 404 ] || fail "$mode: /nothing answered $code"
	post=$(nsx "$NS_NODE" curl -s --max-time 3 -o /dev/null \
	    -w '%{http_code}' -X POST "http://$OPS_METRICS/metrics")
	# evhttp answers a method it was not allowed with 501.
	case $post in
	405 | 501) ;;
	*) fail "$mode: POST /metrics answered $post" ;;
	esac
	code=$(http_get "$NS_NODE" "http://$NODE_ADDR:10249/metrics" far)
	[ "$code" = 000 ] ||
	    fail "$mode: the metrics server answered $code on $NODE_ADDR"
	code=$(http_get "$NS_NODE" "http://$NODE_ADDR:10256/healthz" farh)
	[ "$code" = 200 ] ||
	    fail "$mode: the health server answered $code on $NODE_ADDR"
	ok "$mode: /proxyMode userspace, 404, POST $post; metrics only" \
	    "on 127.0.0.1, healthz on $NODE_ADDR too"

	# 4. The status views against the metrics, fetched with nothing moving.
	status_fetch status
	metrics_fetch metrics2
	"$KPT_PYTHON" "$METRICS_CHECK" status-vs-metrics "$T/metrics2" \
	    "$T/status.json" "$T/status.txt" >"$T/compare.out" 2>&1 ||
	    fail "$mode: status and metrics disagree: $(cat "$T/compare.out")"
	for field in totalConnections:5 bytesToEndpoints:5000 \
	    bytesToClients:$((5 * reply)) activeConnections:0; do
		got=$("$KPT_PYTHON" "$METRICS_CHECK" status-get "$T/status.json" \
		    default/web:tcp/TCP "${field%%:*}")
		[ "$got" = "${field#*:}" ] ||
		    fail "$mode: status --json web ${field%%:*} is $got"
	done
	got=$("$KPT_PYTHON" -c '
import json, sys
doc = json.load(open(sys.argv[1]))
sp = [p for p in doc["servicePorts"] if p["key"] == "default/web:tcp/TCP"][0]
eps = sp["endpoints"]
print(sum(e["totalConnections"] for e in eps),
      sum(e["bytesToEndpoint"] for e in eps),
      sum(e["bytesToClient"] for e in eps), doc["formatVersion"])
' "$T/status.json") || fail "$mode: reading status.json"
	[ "$got" = "5 5000 $((5 * reply)) 1" ] ||
	    fail "$mode: status --json endpoints of web sum to $got"
	grep -Eq "^TCP +default/web:tcp +10\.96\.7\.1:80 +proxy port $web " \
	    "$T/status.txt" || fail "$mode: status table: $(cat "$T/status.txt")"
	row="+yes +0 +$n_a +$((n_a * 1000)) +$((n_a * reply)) +0"
	grep -Eq "^  -> 127\.0\.0\.11:8080 $row\$" "$T/status.txt" ||
	    fail "$mode: status table: $(cat "$T/status.txt")"
	perm=$(stat -c %a "$KP_STATUS_SOCKET")
	[ "$perm" = 600 ] || fail "$mode: the status socket has mode $perm"
	ok "$mode: $(tail -n 1 "$T/compare.out" | sed 's/^ok: //');" \
	    "web in status: 5 conns, 5000/$((5 * reply)) bytes; socket mode 600"

	kuproxy_stop
	[ ! -e "$KP_STATUS_SOCKET" ] || fail "$mode: status socket left behind"
	"$KUPROXY_BIN" status --status-socket "$KP_STATUS_SOCKET" \
	    >"$T/gone.out" 2>&1 && fail "$mode: kuproxy status succeeded" \
	    "with no daemon: $(cat "$T/gone.out")"
	grep -q "cannot reach kuproxy" "$T/gone.out" ||
	    fail "$mode: kuproxy status with no daemon: $(cat "$T/gone.out")"
done
