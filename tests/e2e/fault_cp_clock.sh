#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Wall-clock jumps (reliability matrix row 17).  kuproxy runs under
# libfaketime (Debian's faketime package) with its wall clock read from a
# file the test rewrites (FAKETIME_TIMESTAMP_FILE, re-read on every call)
# and CLOCK_MONOTONIC left alone (FAKETIME_DONT_FAKE_MONOTONIC=1), as NTP
# stepping the clock would leave it.  Live state: a UDP association (service
# "dns", --udp-timeout 3s, one echo endpoint: the association is the source
# port the endpoint sees) and ClientIP affinity (service "sticky", three
# endpoints, sessionAffinityConfig timeoutSeconds 30).
#  1. Before any jump: one association; 4 connections to sticky all go to
#     the same endpoint, X; /healthz 200.
#  2. The wall clock steps +1 h (checked: /healthz's currentTime moved by
#     an hour): the association carries on (same source port, no new
#     association), sticky stays on X, /healthz and /livez stay 200.
#  3. The wall clock steps to -1 h: the same; then after 4 s of silence
#     the association has expired on time and the next datagram makes a
#     new one (a new source port), and sticky is still on X.
# Only the displayed times (log lines, currentTime) move.  The relay plays
# no part: one mode.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/fault_cp_lib.sh"
e2e_init
e2e_netns node
command -v curl >/dev/null 2>&1 || e2e_error "missing curl"
FAKETIME_LIB=""
for _lib in /usr/lib/*/faketime/libfaketime.so.1 \
    /usr/lib/faketime/libfaketime.so.1; do
	[ -r "$_lib" ] && FAKETIME_LIB=$_lib && break
done
[ -n "$FAKETIME_LIB" ] ||
    e2e_skip "no libfaketime (packaging/install-deps installs faketime)"
[ "${KPT_VALGRIND:-0}" = 1 ] &&
    e2e_skip "libfaketime and valgrind both preload into kuproxy"
UDPKIT="$KUPROXY_SRCDIR/tests/e2e/udpkit.py"
mode=${KPT_RELAY_MODES%% *}

# kuproxy, wrapped: libfaketime preloaded into it alone.  An ASan build
# wants its runtime first in the library list; the preload comes first
# here, which is harmless for this test.
echo "+0" >"$T/faketime"
cat >"$T/kuproxy-faketime" <<WRAP
#!/bin/sh
LD_PRELOAD="$FAKETIME_LIB\${LD_PRELOAD:+:\$LD_PRELOAD}" \\
FAKETIME_TIMESTAMP_FILE="$T/faketime" FAKETIME_NO_CACHE=1 \\
FAKETIME_DONT_FAKE_MONOTONIC=1 \\
ASAN_OPTIONS="\${ASAN_OPTIONS:+\$ASAN_OPTIONS:}verify_asan_link_order=0" \\
exec "$KUPROXY_BIN" "\$@"
WRAP
chmod 0755 "$T/kuproxy-faketime"
KUPROXY_BIN=$T/kuproxy-faketime

e2e_bg echo-dns "$NS_NODE" "$KPT_PYTHON" "$UDPKIT" echo \
    --listen 127.0.0.11:8053
backend_start "$NS_NODE" sticky-1 127.0.0.21:8080
backend_start "$NS_NODE" sticky-2 127.0.0.22:8080
backend_start "$NS_NODE" sticky-3 127.0.0.23:8080

{
	cat <<YAML
- apiVersion: v1
  kind: Service
  metadata: {name: dns, namespace: default}
  spec:
    clusterIP: 10.96.0.53
    ports: [{name: dns, port: 53, protocol: UDP, targetPort: 8053}]
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    name: dns-1
    namespace: default
    labels: {kubernetes.io/service-name: dns}
  addressType: IPv4
  endpoints: [{addresses: [127.0.0.11], conditions: {ready: true}}]
  ports: [{name: dns, port: 8053, protocol: UDP}]
- apiVersion: v1
  kind: Service
  metadata: {name: sticky, namespace: default}
  spec:
    clusterIP: 10.96.0.80
    ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080}]
    sessionAffinity: ClientIP
    sessionAffinityConfig: {clientIP: {timeoutSeconds: 30}}
YAML
	yaml_slice sticky 8080 127.0.0.21 127.0.0.22 127.0.0.23
} | yaml_list >"$T/services.yaml"

kuproxy_start "$NS_NODE" "$T/services.yaml" "$mode" --udp-timeout 3s -v 3
kuproxy_port dns default/dns:dns/UDP
kuproxy_port sticky default/sticky:http/TCP

# send: one datagram from the client's fixed port; prints the source port
# the endpoint saw (the association's), or fails (call it as
# `p=$(send WHAT) || exit 1`: fail only ends the command substitution).
send() {
	_before=$(grep -c '^from ' "$T/echo-dns.log")
	timeout 5 ip netns exec "$NS_NODE" "$KPT_PYTHON" "$UDPKIT" send \
	    --to "127.0.0.1:$dns" --size 100 --bind 127.0.0.1:41053 \
	    >"$T/send.out" 2>&1 || fail "$1: no echo: $(cat "$T/send.out")"
	grep '^from ' "$T/echo-dns.log" | sed -n "$((_before + 1))p" |
	    awk '{ print $2 }' | sed 's/.*://'
}

# sticky_tally: four connections to sticky from one client.
sticky_tally() {
	client "$NS_NODE" --connect "127.0.0.1:$sticky" --count 4 \
	    --timeout 2 >"$T/sticky.out" 2>&1
	tally "$T/sticky.out"
}

# health WHAT: /healthz and /livez must answer 200; sets HEALTH_NOW to
# /healthz's currentTime in seconds since the epoch.
health() {
	for _path in healthz livez; do
		_code=$(nsx "$NS_NODE" curl -s --max-time 3 -o "$T/$_path" \
		    -w '%{http_code}' "http://127.0.0.1:10256/$_path")
		[ "$_code" = 200 ] ||
		    fail "$1: /$_path answered $_code: $(cat "$T/$_path")"
	done
	HEALTH_NOW=$(date -u -d "$(sed 's/.*"currentTime": *"\([^"]*\)".*/\1/' \
	    "$T/healthz")" +%s) || fail "$1: no currentTime: $(cat "$T/healthz")"
}

# jump OFFSET WANT-SECONDS: step kuproxy's wall clock; check that it moved.
jump() {
	echo "$1" >"$T/faketime"
	health "clock at $1"
	_skew=$((HEALTH_NOW - $(date -u +%s) - $2))
	[ "$_skew" -ge -5 ] && [ "$_skew" -le 5 ] ||
	    fail "libfaketime did not move kuproxy's clock to $1" \
	    "(currentTime $(sed 's/.*"currentTime": *"\([^"]*\)".*/\1/' \
	    "$T/healthz"))"
	ok "kuproxy's wall clock is at $1: currentTime" \
	    "$(sed 's/.*"currentTime": *"\([^"]*\)".*/\1/' "$T/healthz")"
}

# 1. Before any jump.
kuproxy_mark
port1=$(send "first datagram") || exit 1
x=$(sticky_tally)
case $x in
sticky-[123]=4) ;;
*) fail "affinity before any jump: $x" ;;
esac
health "before any jump"
ok "association from source port $port1; sticky: $x; /healthz 200"

# 2. +1 h.
jump +1h 3600
p=$(send "after +1 h") || exit 1
[ "$p" = "$port1" ] ||
    fail "the association changed after +1 h"
[ "$(sticky_tally)" = "$x" ] || fail "affinity after +1 h: $(tally "$T/sticky.out")"
sleep 1
health "1 s after +1 h"
ok "+1 h: same association, sticky still $x, /healthz and /livez 200"

# 3. -1 h, then the association's timeout.
jump -1h -3600
p=$(send "after -1 h") || exit 1
[ "$p" = "$port1" ] ||
    fail "the association changed after -1 h"
[ "$(sticky_tally)" = "$x" ] || fail "affinity after -1 h: $(tally "$T/sticky.out")"
n=$(log_count 'new association')
[ "$n" = 1 ] || fail "$n new associations across the jumps, want 1"
sleep 4
port2=$(send "after 4 s of silence") || exit 1
[ "$port2" != "$port1" ] ||
    fail "the association outlived --udp-timeout after -1 h"
[ "$(log_count 'new association')" = 2 ] ||
    fail "no new association after the timeout"
[ "$(sticky_tally)" = "$x" ] || fail "affinity 4 s after -1 h"
health "after -1 h and the UDP timeout"
ok "-1 h: same association until 3 s of silence expired it (new source" \
    "port $port2), sticky still $x, /healthz 200"

kuproxy_stop
ok "kuproxy alive throughout and stopped cleanly"
