#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Backends that refuse, black-hole, vanish or reset (fault matrix rows 7,
# 8).  Pods are network namespaces (e2e_topology); a black hole is an
# iptables DROP of SYNs inside the pod's own namespace.
#  7a. Service "mixed" has three endpoints: pod 1 refuses (nothing listens),
#      pod 2 drops SYNs, pod 3 answers.  30 sequential connections are all
#      served by pod 3; exactly the connections that met the black hole
#      took >= 240 ms, each at most the first dial step (250 ms +50), and
#      each dead endpoint was met at most 3 times (it backs off after a
#      failure while another endpoint is usable); kuproxy's
#      per-endpoint failure counters equal the failures it logged, and
#      pod 3 never failed.  Service "refusing" (pods 1 and 3): 10 of 10
#      served, each in under 100 ms.
#  7b. All dead (pod 3's server stopped): the client is reset after the
#      four dial steps at most (250+500+1000+2000 ms), and counted.
#  7c. ClientIP affinity pinned to an endpoint that then black-holes: the
#      next connection pays one dial step, lands on the other endpoint, and
#      the client stays there with no further failure.
#      (Zero endpoints -> refused at once: tcp_not_ready.sh.)
#  8.  In each relay mode: a backend sends 1 MiB and closes with
#      SO_LINGER{1,0}; the client reads a prefix of those bytes and then
#      ECONNRESET, not a clean EOF.  The mirror: a client sends 1 MiB and
#      resets; the backend reads a prefix and then ECONNRESET.  Both are
#      counted in kuproxy_tcp_resets_total{direction}.
# After each case: kuproxy alive, a healthy service answers, sockets back
# at the baseline.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/faultlib.sh"
fault_init
e2e_topology
IPT=iptables
printf '*filter\nCOMMIT\n' | nsx "$NS_POD2" iptables-restore --noflush \
    2>/dev/null || IPT=iptables-legacy
printf '*filter\nCOMMIT\n' | nsx "$NS_POD2" "$IPT-restore" --noflush \
    2>/dev/null || e2e_skip "no working iptables in a network namespace"

# pod 1: nothing on 8080 (refuses); pod 2: 8080 answers but its SYNs are
# dropped; pod 3: 8080 answers.  Port 8081 on pods 1 and 3 for affinity.
backend_start "$NS_POD2" pod-2 "$POD2_IP:8080"
backend_start "$NS_POD3" pod-3 "$POD3_IP:8080"
pod3_pid=$LAST_PID
backend_start "$NS_POD1" sticky-1 "$POD1_IP:8081"
backend_start "$NS_POD3" sticky-3 "$POD3_IP:8081"
nsx "$NS_POD2" "$IPT" -w -A INPUT -p tcp --dport 8080 --syn -j DROP ||
    e2e_error "black hole in $NS_POD2"
backend_start "$NS_NODE" probe-0 127.0.0.12:8080
fault_bg rst "$NS_NODE" serve --listen 127.0.0.21:8080 --mode rst-after \
    --bytes 1048576
fault_bg sink "$NS_NODE" serve --listen 127.0.0.22:8080 --mode sink
e2e_wait_listen "$NS_NODE" 127.0.0.21:8080 10 &&
    e2e_wait_listen "$NS_NODE" 127.0.0.22:8080 10 ||
    e2e_error "faultkit backends did not listen"

{
	yaml_service mixed 10.96.8.1 80
	yaml_slice mixed 8080 "$POD1_IP" "$POD2_IP" "$POD3_IP"
	yaml_service sticky 10.96.8.2 80 target=8081 affinity=ClientIP
	yaml_slice sticky 8081 "$POD1_IP" "$POD3_IP"
	yaml_service refusing 10.96.8.6 80
	yaml_slice refusing 8080 "$POD1_IP" "$POD3_IP"
	yaml_service probe 10.96.8.3 80
	yaml_slice probe 8080 127.0.0.12
	yaml_service rst 10.96.8.4 80
	yaml_slice rst 8080 127.0.0.21
	yaml_service sink 10.96.8.5 80
	yaml_slice sink 8080 127.0.0.22
} | yaml_list >"$T/services.yaml"

ep_failures() {
	metric "kuproxy_endpoint_connect_failures_total{namespace=\"default\",service=\"$1\",port=\"http\",protocol=\"TCP\",endpoint=\"$2\"}"
}

logged_failures() {
	kuproxy_log_since | grep -c "service default/$1:http: client .*: endpoint $2: .*trying next"
}

set -- $KPT_RELAY_MODES
first_mode=$1
for mode in $KPT_RELAY_MODES; do
	kuproxy_start "$NS_NODE" "$T/services.yaml" "$mode"
	kuproxy_port mixed default/mixed:http/TCP
	kuproxy_port sticky default/sticky:http/TCP
	kuproxy_port refusing default/refusing:http/TCP
	kuproxy_port probe default/probe:http/TCP
	kuproxy_port rst default/rst:http/TCP
	kuproxy_port sink default/sink:http/TCP
	fd_baseline

	# ---------------------------------------------------- 8. resets
	faultkit "$NS_NODE" expect-reset --connect "127.0.0.1:$rst" \
	    >"$T/rst-$mode.out" 2>&1 ||
	    fail "$mode: the reset client: $(cat "$T/rst-$mode.out")"
	set -- $(cat "$T/rst-$mode.out")
	[ "$1 $3 $4" = "got prefix-ok reset" ] && [ "$2" -le 1048576 ] ||
	    fail "$mode: backend reset after 1 MiB; the client saw:" \
	    "$(cat "$T/rst-$mode.out")"
	ok "$mode: backend RST after 1 MiB: the client read $2 bytes, a" \
	    "prefix of what was sent, then ECONNRESET"

	n_sink=$(grep -c "^from" "$T/sink.log")
	faultkit "$NS_NODE" send-reset --connect "127.0.0.1:$sink" \
	    --bytes 1048576 >"$T/sreset-$mode.out" 2>&1 ||
	    fail "$mode: the resetting client: $(cat "$T/sreset-$mode.out")"
	_d=$(($(now_ms) + 5000))
	while [ "$(grep -c "^from" "$T/sink.log")" = "$n_sink" ]; do
		[ "$(now_ms)" -lt "$_d" ] || fail "$mode: the sink saw no end"
		sleep 0.05
	done
	set -- $(grep "^from" "$T/sink.log" | tail -n 1)
	[ "$3 $6 $7" = "got prefix-ok reset" ] ||
	    fail "$mode: client RST after 1 MiB; the backend saw: $*"
	ok "$mode: client RST after 1 MiB: the backend read $4 bytes, a" \
	    "prefix, then ECONNRESET"
	# Each mode starts a fresh kuproxy: one reset each way, at least.
	n_ep=$(metric 'kuproxy_tcp_resets_total{direction="endpoint"}')
	n_cl=$(metric 'kuproxy_tcp_resets_total{direction="client"}')
	[ "${n_ep:-0}" -ge 1 ] ||
	    fail "$mode: the backend reset was not counted: ${n_ep:-no metric}"
	[ "${n_cl:-0}" -ge 1 ] ||
	    fail "$mode: the client reset was not counted: ${n_cl:-no metric}"
	ok "$mode: kuproxy_tcp_resets_total endpoint $n_ep, client $n_cl"
	still_healthy "$mode: resets" "127.0.0.1:$probe"

	if [ "$mode" != "$first_mode" ]; then
		kuproxy_stop
		continue
	fi

	# ----------------------------------- 7a. refused, black hole, live
	kuproxy_mark
	client "$NS_NODE" --connect "127.0.0.1:$mixed" --count 30 \
	    --timeout 5 --show-ms >"$T/mixed.out" 2>&1
	[ "$(count pod-3 "$T/mixed.out")" = 30 ] ||
	    fail "want 30 of 30 served by pod-3: $(tally "$T/mixed.out")"
	fails1=$(logged_failures mixed "$POD1_IP:8080")
	fails2=$(logged_failures mixed "$POD2_IP:8080")
	fails3=$(logged_failures mixed "$POD3_IP:8080")
	[ "$fails3" = 0 ] || fail "the live endpoint failed $fails3 times"
	[ "$fails1" -gt 0 ] && [ "$fails2" -gt 0 ] ||
	    fail "want both dead endpoints tried: refused $fails1, dropped $fails2"
	[ "$(ep_failures mixed "$POD1_IP:8080")" = "$fails1" ] &&
	    [ "$(ep_failures mixed "$POD2_IP:8080")" = "$fails2" ] &&
	    [ "$(ep_failures mixed "$POD3_IP:8080")" = 0 ] ||
	    fail "per-endpoint failure counters: $(grep \
	    'endpoint_connect_failures_total{.*service="mixed"' "$T/metric.page")"
	dropped_log=$(kuproxy_log_since | grep -c \
	    "endpoint $POD2_IP:8080: no answer within \(250\|500\) ms")
	[ "$dropped_log" = "$fails2" ] ||
	    fail "black-holed dials: $fails2, but $dropped_log timed out in 250/500 ms"
	# Times: "- pod-3 12.3ms".  Slow ones paid a black-hole step.
	slow=$(awk '{ sub(/ms$/, "", $3); $3 += 0 } $3 >= 240' "$T/mixed.out" | wc -l)
	slow_min=$(awk '{ sub(/ms$/, "", $3); $3 += 0 } NR == 1 || $3 < m { m = $3 }
	    END { print int(m) }' "$T/mixed.out")
	slow_max=$(awk '{ sub(/ms$/, "", $3); $3 += 0 } $3 > m { m = $3 }
	    END { print int(m) }' "$T/mixed.out")
	[ "$slow" = "$fails2" ] ||
	    fail "$slow connections took >= 240 ms, but the black hole was" \
	    "dialled $fails2 times: $(awk '{print $3}' "$T/mixed.out" | tr '\n' ' ')"
	ok "30/30 served by pod-3; failures refused $fails1, black-holed" \
	    "$fails2 (counters exact); black-holed connections took" \
	    "$slow_min-$slow_max ms"
	# The dial step follows the endpoint's own timeouts, not the
	# attempt, and a failed endpoint backs off (2 s) while another is
	# usable: the black hole costs the first step, and rarely.
	[ "$slow_max" -le 300 ] ||
	    fail "row 7: a black-holed endpoint cost up to $slow_max ms, not" \
	    "the first dial step (250 ms +50)"
	[ "$fails1" -le 3 ] && [ "$fails2" -le 3 ] ||
	    fail "row 7: 30 connections met the dead endpoints $fails1 +" \
	    "$fails2 times: the back-off does not skip them"

	# Refusals alone cost nothing noticeable.
	client "$NS_NODE" --connect "127.0.0.1:$refusing" --count 10 \
	    --timeout 5 --show-ms >"$T/refusing.out" 2>&1
	[ "$(count pod-3 "$T/refusing.out")" = 10 ] ||
	    fail "refusing: want 10 of 10 by pod-3: $(tally "$T/refusing.out")"
	ref_max=$(awk '{ sub(/ms$/, "", $3); $3 += 0 } $3 > m { m = $3 }
	    END { print m + 0 }' "$T/refusing.out")
	ref_fails=$(logged_failures refusing "$POD1_IP:8080")
	[ "$(ep_failures refusing "$POD1_IP:8080")" = "$ref_fails" ] ||
	    fail "refusing: failure counter differs from the $ref_fails logged"
	awk '{ sub(/ms$/, "", $3); $3 += 0 } $3 >= 100 { exit 1 }' "$T/refusing.out" ||
	    fail "refusing: a connection past a refusing endpoint took $ref_max ms"
	ok "10/10 served past a refusing endpoint ($ref_fails refusals, counted)," \
	    "each connection <= $ref_max ms"
	still_healthy "refused and black-holed endpoints" "127.0.0.1:$probe"

	# --------------------------------------- 7c. affinity to a dead one
	kuproxy_mark
	client "$NS_NODE" --connect "127.0.0.1:$sticky" --count 4 \
	    >"$T/sticky1.out" 2>&1 || fail "sticky: $(cat "$T/sticky1.out")"
	pinned=$(distinct "$T/sticky1.out")
	case $pinned in
	sticky-1) pinned_ns=$NS_POD1 pinned_ip=$POD1_IP other=sticky-3 ;;
	sticky-3) pinned_ns=$NS_POD3 pinned_ip=$POD3_IP other=sticky-1 ;;
	*) fail "sticky: 4 connections went to $pinned, want one endpoint" ;;
	esac
	nsx "$pinned_ns" "$IPT" -w -A INPUT -p tcp --dport 8081 --syn -j DROP ||
	    e2e_error "black hole in $pinned_ns"
	client "$NS_NODE" --connect "127.0.0.1:$sticky" --count 5 --show-ms \
	    >"$T/sticky2.out" 2>&1
	[ "$(count "$other" "$T/sticky2.out")" = 5 ] ||
	    fail "affinity to black-holed $pinned: $(cat "$T/sticky2.out")"
	first_ms=$(sed -n 1p "$T/sticky2.out" | awk '{ print int($3) }')
	rest_max=$(sed -n '2,$p' "$T/sticky2.out" |
	    awk '{ sub(/ms$/, "", $3); $3 += 0; if ($3 > m) m = $3 } END { print int(m) }')
	[ "$(ep_failures sticky "$pinned_ip:8081")" = 1 ] ||
	    fail "the pinned endpoint failed $(ep_failures sticky \
	    "$pinned_ip:8081") times, want once (then re-pinned)"
	[ "$first_ms" -ge 240 ] && [ "$rest_max" -lt 240 ] ||
	    fail "re-pinning: first connection $first_ms ms, then up to $rest_max ms"
	ok "affinity pinned to $pinned, which black-holes: one dial step" \
	    "($first_ms ms), then re-pinned to $other (5/5, <= $rest_max ms)"
	nsx "$pinned_ns" "$IPT" -w -D INPUT -p tcp --dport 8081 --syn -j DROP
	still_healthy "affinity to a dead endpoint" "127.0.0.1:$probe"

	# ---------------------------------------------------- 7b. all dead
	kill "$pod3_pid"
	wait "$pod3_pid" 2>/dev/null
	kuproxy_mark
	before=$(metric 'kuproxy_service_no_endpoint_rejections_total{namespace="default",service="mixed"')
	client "$NS_NODE" --connect "127.0.0.1:$mixed" --timeout 10 --show-ms \
	    >"$T/dead.out" 2>&1
	set -- $(cat "$T/dead.out")
	ms=${3%ms}
	ms=${ms%.*}
	[ "$2" = ERROR:reset ] ||
	    fail "all endpoints dead: the client saw $(cat "$T/dead.out")"
	[ "$ms" -le 4250 ] ||
	    fail "all endpoints dead: reset only after $ms ms (steps sum to 3750)"
	after=$(metric 'kuproxy_service_no_endpoint_rejections_total{namespace="default",service="mixed"')
	[ "$after" = $((before + 1)) ] ||
	    fail "all endpoints dead: rejections went from $before to $after"
	tries=$(kuproxy_log_since | grep -c "trying next")
	ok "all endpoints dead: reset after $ms ms and $tries dial attempts," \
	    "counted as a rejection"
	still_healthy "all endpoints dead" "127.0.0.1:$probe"
	backend_start "$NS_POD3" pod-3 "$POD3_IP:8080"
	pod3_pid=$LAST_PID

	kuproxy_stop
done
