#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Watches that break in ways a network or a server breaks them (reliability
# matrix row 16), while a probe keeps connecting to service "web", which
# must be served every time:
#  1. A 410 when a watch is opened, then an ERROR 410 event in an open
#     watch: each leads to exactly one relist, the watch goes on from the
#     list's resourceVersion, and the table is swapped whole (web is never
#     closed; the probe never fails).
#  2. A stall: the server sends the watch's headers, then nothing.  The
#     watch idle bound (shortened here to 6 s through
#     KUPROXY_TEST_API_IDLE_S; 120 s by default, two missed bookmarks)
#     ends it; kuproxy watches again, and a service created during the
#     stall is served within the bound + 2 s.
#  3. A black hole: iptables DROPs the API port in the namespace, both
#     ways.  TCP keepalive and TCP_USER_TIMEOUT (shortened here to 3 s
#     through KUPROXY_TEST_API_DEAD_PEER_S; 45 s by default) end both
#     watches with a timeout before the idle bound; once the DROP is gone,
#     a change is applied within 3 s.
#  4. A fresh kuproxy (a fresh back-off) and 500s on every request for 5 s:
#     the fake server's request log shows, per resource, retries whose
#     spacing grows; the first success after the 500s applies a change
#     within 2 s.
# The other watch faults (dropped mid-event, real compaction, the server
# stopped and restarted) are in tests/e2e/api_source.sh; the API server
# away for longer is tests/e2e/fault_cp_api_down.sh.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/fault_cp_lib.sh"
cp_init

backend_start "$NS_NODE" web-a 127.0.0.11:8080
backend_start "$NS_NODE" web-b 127.0.0.12:8080
backend_start "$NS_NODE" late-a 127.0.0.13:8080
fakeapi_start
ctl POST /objects "$(svc_json web)"
ctl POST /objects "$(slice_json web-1 web 127.0.0.11)"
cp_kubeconfig "$T/kubeconfig"
IDLE_S=6
DEAD_PEER_S=3
KUPROXY_TEST_API_IDLE_S=$IDLE_S KUPROXY_TEST_API_DEAD_PEER_S=$DEAD_PEER_S \
    kp_start main "$T/kubeconfig"
kuproxy_port web default/web:http/TCP 10
within 3 "web served" serves "$web" "web-a"
ctl GET "/wait?open_watches=2&timeout=10"
probe_start "$web"
sleep 1.1	# watches younger than 1 s without events count as failures

# requests RESOURCE: the fake server's requests for RESOURCE since the last
# stats reset, one "MONO VERB CODE RESOURCEVERSION" line each, in
# $T/requests.
requests() {
	ctl GET "/stats?resource=$1"
	"$KPT_PYTHON" -c '
import json, sys
for r in json.load(open(sys.argv[1]))["requests"]:
    print("%.3f %s %s %s" % (r["mono"], r["verb"], r["code"],
                             r["params"].get("resourceVersion", "-")))
' "$T/ctl.out" >"$T/requests"
}

# one_relist WHAT: after a 410, wait for the services watch that follows
# the relist; exactly one list came between, and that watch starts from
# the list's resourceVersion.
one_relist() {
	_n_deadline=$(($(now_ms) + 8000))
	while :; do
		requests services
		awk '$2 == "list"' "$T/requests" | grep -q . &&
		    awk 'f && $2 == "watch" && $3 == 200 { w = 1 }
		    $2 == "list" { f = 1 } END { exit !w }' "$T/requests" &&
		    break
		[ "$(now_ms)" -lt "$_n_deadline" ] ||
		    fail "$1: no list and watch after it: $(cat "$T/requests")"
		sleep 0.1
	done
	[ "$(awk '$2 == "list"' "$T/requests" | wc -l)" = 1 ] ||
	    fail "$1: not exactly one list: $(cat "$T/requests")"
	ctl GET /objects/services
	_n_rv=$(sed -n 's/^ *"rv": "\([0-9]*\)".*/\1/p' "$T/ctl.out" | head -n 1)
	awk -v rv="$_n_rv" 'f && $2 == "watch" && $3 == 200 && $4 != rv {
	    bad = 1 } $2 == "list" { f = 1 } END { exit bad }' "$T/requests" ||
	    fail "$1: the watch after the list is not from its" \
	    "resourceVersion $_n_rv: $(cat "$T/requests")"
	ok "$1: exactly one relist, then a watch from resourceVersion $_n_rv"
}

# 1. 410 on opening a watch, then an ERROR 410 event.
kuproxy_mark
ctl POST /stats/reset
ctl POST /faults \
    '{"type":"http_error","code":410,"verb":"watch","resource":"services"}'
ctl POST /watches/drop '{"mode":"clean","resource":"services"}'
kuproxy_wait_log "services: watch: HTTP 410" 3 || fail "no 410 logged"
one_relist "HTTP 410 on a watch"

ctl POST /stats/reset
relist services
kuproxy_wait_log "services: watch from resourceVersion [0-9]+ expired \(410" 3 ||
    fail "no ERROR 410 logged"
one_relist "ERROR 410 event"
[ "$(log_count 'default/web:http/TCP: closed')" = 0 ] ||
    fail "web was closed during a relist"
[ "$(log_count 'service table applied')" = 0 ] ||
    fail "an unchanged relist was applied as a new table"
ok "relists swapped the table whole: web never closed, nothing re-applied"

# 2. Headers, then silence.
sleep 1.1	# the watch after the relist must not look short
kuproxy_mark
ctl POST /stats/reset
ctl POST /faults '{"type":"stall","mode":"headers","seconds":30,"verb":"watch","resource":"services"}'
ctl POST /watches/drop '{"mode":"clean","resource":"services"}'
ctl GET "/wait?requests=1&resource=services&verb=watch&timeout=5"
ctl POST /objects "$(svc_json late)"
ctl POST /objects "$(slice_json late-1 late 127.0.0.13)"
t_stall=$(now_ms)
kuproxy_wait_log "services: watch broken after [0-9]+ ms and 0 events: https://localhost:$API_PORT: received nothing for $IDLE_S s" \
    $((IDLE_S + 3)) || fail "the stalled watch was not ended:" \
    "$(kuproxy_log_since | grep services)"
kuproxy_port late default/late:http/TCP 3
within 2 "a service created during the stall" serves "$late" "late-a"
requests services
"$KPT_PYTHON" - "$T/requests" "$IDLE_S" <<'PY' >"$T/stall" 2>&1 ||
import sys
w = [float(l.split()[0]) for l in open(sys.argv[1]) if l.split()[1] == "watch"]
idle = float(sys.argv[2])
assert len(w) >= 2, "one watch only"
gap = w[1] - w[0]
assert idle <= gap <= idle + 2.5, "stalled watch replaced after %.2f s" % gap
print("the stalled watch was replaced %.2f s after it opened" % gap)
PY
    fail "stall: $(cat "$T/stall"): $(cat "$T/requests")"
ok "stall: $(cat "$T/stall") ($(($(now_ms) - t_stall)) ms after the change" \
    "the service is served)"
ctl DELETE /faults

# 3. A black hole between kuproxy and the API server.
if command -v iptables >/dev/null 2>&1 &&
    nsx "$NS_NODE" iptables -S INPUT >/dev/null 2>&1; then
	kuproxy_mark
	t_drop=$(now_ms)
	nsx "$NS_NODE" iptables -I INPUT -p tcp --sport "$API_PORT" -j DROP
	nsx "$NS_NODE" iptables -I INPUT -p tcp --dport "$API_PORT" -j DROP
	for inf in services endpointslices; do
		kuproxy_wait_log "$inf: watch broken after .*(timed out|Timeout)" \
		    $((DEAD_PEER_S + 3)) || fail "black hole: the $inf watch" \
		    "was not ended: $(kuproxy_log_since | grep "$inf")"
	done
	took=$(($(now_ms) - t_drop))
	if kuproxy_log_since | grep -q "received nothing"; then
		fail "black hole: ended by the idle bound, not the dead-peer one"
	fi
	nsx "$NS_NODE" iptables -D INPUT -p tcp --sport "$API_PORT" -j DROP
	nsx "$NS_NODE" iptables -D INPUT -p tcp --dport "$API_PORT" -j DROP
	[ "$took" -ge $((DEAD_PEER_S * 1000 - 1000)) ] ||
	    fail "black hole: ended after $took ms, before the bound"
	ok "black hole: both watches ended after $took ms:" \
	    "$(kuproxy_log_since | grep -m1 'services: watch broken' |
	    sed 's/^[^]]*\] //')"
	ctl PUT /objects "$(slice_json web-1 web 127.0.0.11 127.0.0.12)"
	within 3 "after the black hole, a change is applied" \
	    serves "$web" "web-a web-b"
else
	echo "SKIP: no iptables in the namespace: black hole not tested"
fi
probe_stop "410s, a stall and a black hole"
kuproxy_stop

# 4. 500s for 5 s, with a fresh back-off.
kp_start fresh "$T/kubeconfig"
kuproxy_port web default/web:http/TCP 10
ctl GET "/wait?open_watches=2&timeout=10"
probe_start "$web"
sleep 1.1
kuproxy_mark
ctl POST /stats/reset
ctl POST /faults '{"type":"http_error","code":500,"seconds":5}'
ctl POST /watches/drop '{"mode":"clean"}'
sleep 5
ctl PUT /objects "$(slice_json web-1 web 127.0.0.12)"
within 10 "after the 500s, a change is applied" serves "$web" "web-b"
# Each informer's next retry may come up to 6.4 s after its third 500.
ctl GET "/wait?requests=4&resource=services&timeout=10"
ctl GET "/wait?requests=4&resource=endpointslices&timeout=10"
ctl GET /stats
"$KPT_PYTHON" - "$T/ctl.out" <<'PY' >"$T/spacing" 2>&1 ||
import json, sys
reqs = json.load(open(sys.argv[1]))["requests"]
out = []
for res in ("services", "endpointslices"):
    r = [x for x in reqs if x["resource"] == res]
    t = [x["mono"] for x in r if x["code"] == 500]
    assert len(t) >= 3, "%s: %d requests answered 500" % (res, len(t))
    gaps = [b - a for a, b in zip(t, t[1:])]
    assert gaps[0] >= 0.75, "%s: retried after %.2f s" % (res, gaps[0])
    for a, b in zip(gaps, gaps[1:]):
        assert b > a - 0.05, "%s: spacing shrank: %s" % (res, gaps)
    ok = [x["mono"] for x in r if x["code"] == 200 and x["mono"] > t[-1]]
    assert ok, "%s: no success after the 500s" % res
    out.append("%s: %d x 500, spacing %s s, then 200 %.2f s after the last"
               % (res, len(t), " ".join("%.2f" % g for g in gaps),
                  ok[0] - t[-1]))
print("; ".join(out))
PY
    fail "500s: $(cat "$T/spacing")"
ok "500s: $(cat "$T/spacing")"
retries_check 2 "HTTP 500"
probe_stop "500s for 5 s"
kuproxy_stop
ok "kuproxy stopped cleanly"
