#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# /healthz follows kube-proxy's rule: unhealthy (503) once a queued change
# has waited unapplied for more than twice --iptables-sync-period, healthy
# (200) again as soon as a sync gets through.  kuproxy runs with the legacy
# iptables backend and a PATH whose iptables-legacy-restore fails (exit 1,
# a message on stderr) while $T/restore-fails exists, and otherwise runs the
# real one (portal_exec.c looks tools up in PATH first).
#  1. Healthy at start: 200, kube-proxy's JSON body (nodeEligible on
#     /healthz, not on /livez), X-Content-Type-Options: nosniff.
#  2. With restores failing, a new service "fresh" arrives: its proxy port
#     opens and serves at once, but its portal rule cannot be written.  With
#     a 1 s sync period, /healthz and /livez turn 503 between 2 s and 3.5 s
#     after the change (never before 2 s), the restore failure counter and
#     the pending changes rise, lastUpdated stays at the last good sync.
#  3. Restores work again: 200 within 2.5 s, the rule for fresh is in the
#     nat table, nothing pending.
#  4. A connection opened at the start still echoes.
# The relay mode plays no part: this runs in the first of KPT_RELAY_MODES.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/opslib.sh"
ops_init
real_restore=$(command -v iptables-legacy-restore ||
    echo /usr/sbin/iptables-legacy-restore)
[ -x "$real_restore" ] || e2e_skip "no iptables-legacy-restore"
command -v iptables-legacy-save >/dev/null 2>&1 ||
    [ -x /usr/sbin/iptables-legacy-save ] || e2e_skip "no iptables-legacy-save"
e2e_netns node
nsx "$NS_NODE" "$real_restore" </dev/null >/dev/null 2>&1 ||
    e2e_skip "iptables-legacy-restore does not work in a network namespace"

mkdir "$T/bin" || e2e_error "mkdir $T/bin"
cat >"$T/bin/iptables-legacy-restore" <<EOF
#!/bin/sh
if [ -e "$T/restore-fails" ]; then
	cat >/dev/null
	echo "iptables-legacy-restore: injected failure (ops_healthz.sh)" >&2
	exit 1
fi
exec "$real_restore" "\$@"
EOF
chmod +x "$T/bin/iptables-legacy-restore"
PATH="$T/bin:$PATH"
export PATH
KP_IPTABLES_BACKEND=legacy

backend_start "$NS_NODE" stream-0 127.0.0.21:8080 echo
backend_start "$NS_NODE" web-0 127.0.0.11:8080
backend_start "$NS_NODE" fresh-0 127.0.0.31:8080

items1() {
	ops_service stream 5000 10.96.6.1
	ops_slice stream TCP 127.0.0.21
	ops_service web 80 10.96.6.2
	ops_slice web TCP 127.0.0.11
}

version1() {
	items1 | ops_list
}

version2() {
	{
		items1
		ops_service fresh 8443 10.96.6.3
		ops_slice fresh TCP 127.0.0.31
	} | ops_list
}

# health_body NAME WANT_NODE_ELIGIBLE: $T/NAME is kube-proxy's body; prints
# its lastUpdated.
health_body() {
	"$KPT_PYTHON" -c '
import json, sys
body = json.load(open(sys.argv[1]))
keys = ["lastUpdated", "currentTime"]
if sys.argv[2] == "yes":
    keys.append("nodeEligible")
    assert body["nodeEligible"] is True, body
assert sorted(body) == sorted(keys), body
for k in ("lastUpdated", "currentTime"):
    assert body[k].endswith("Z") and "T" in body[k], body
print(body["lastUpdated"])
' "$T/$1" "$2" || fail "$mode: $1 body: $(cat "$T/$1")"
}

rules_for() {	# ADDRESS-PREFIX: how many nat rules send it somewhere
	nsx "$NS_NODE" iptables-legacy-save -t nat | grep -cF -- "-d $1"
}

has_rules() {
	[ "$(rules_for "$1")" -gt 0 ]
}

file="$T/services.yaml"
mode=${KPT_RELAY_MODES%% *}
rm -f "$T/go" "$T/restore-fails"
version1 >"$file"
kuproxy_start "$NS_NODE" "$file" "$mode" --iptables-sync-period 1s \
    --iptables-min-sync-period 100ms
kuproxy_port stream default/stream:tcp/TCP
kuproxy_port web default/web:tcp/TCP
wait_until 5 has_rules 10.96.6.2/32 ||
    fail "no portal rule for web: $(nsx "$NS_NODE" iptables-legacy-save -t nat)"

# 1. Healthy.
e2e_bg hold "$NS_NODE" timeout 60 "$KPT_PYTHON" "$TCPKIT" client \
    --connect "127.0.0.1:$stream" --mode hold --go-file "$T/go" --timeout 30
hold=$LAST_PID
wait_until 5 grep -q "ping first" "$T/hold.log" ||
    fail "no echo on stream: $(cat "$T/hold.log")"
code=$(http_get "$NS_NODE" "http://$OPS_HEALTHZ/healthz" healthz)
[ "$code" = 200 ] || fail "/healthz answered $code at start"
grep -qi '^x-content-type-options: nosniff' "$T/healthz.headers" ||
    fail "/healthz headers: $(cat "$T/healthz.headers")"
synced=$(health_body healthz yes)
code=$(http_get "$NS_NODE" "http://$OPS_HEALTHZ/livez" livez)
[ "$code" = 200 ] || fail "/livez answered $code at start"
health_body livez no >/dev/null
ok "healthy at start: 200 with lastUpdated $synced, nosniff; livez 200"

# 2. Restores fail; a change arrives.  The periodic sync (1 s) may have
# moved lastUpdated since step 1, and one may be running now: read it again
# once any sync that started before the flag has had time to finish.
touch "$T/restore-fails"
sleep 0.5
http_get "$NS_NODE" "http://$OPS_HEALTHZ/healthz" healthz >/dev/null
synced=$(health_body healthz yes)
kuproxy_mark
t0=$(now_ms)
version2 | replace_file "$file"
kuproxy_wait_log "default/fresh:tcp/TCP: listening on proxy port" 2 ||
    fail "fresh not listening 2 s after the change"
kuproxy_port fresh default/fresh:tcp/TCP
client "$NS_NODE" --connect "127.0.0.1:$fresh" >"$T/fresh.out"
[ "$(distinct "$T/fresh.out")" = fresh-0 ] ||
    fail "fresh's proxy port while rules fail: $(cat "$T/fresh.out")"
codes=""
while :; do
	code=$(http_get "$NS_NODE" "http://$OPS_HEALTHZ/healthz" healthz)
	elapsed=$(($(now_ms) - t0))
	case $code in
	200) ;;
	503) break ;;
	*) fail "/healthz answered $code ${elapsed} ms after the change" ;;
	esac
	codes="$codes $code"
	[ "$elapsed" -lt 3500 ] ||
	    fail "/healthz still 200 ${elapsed} ms after the change"
	sleep 0.1
done
[ "$elapsed" -ge 2000 ] ||
    fail "/healthz turned 503 after ${elapsed} ms, before 2 x sync period"
[ -n "$codes" ] || fail "/healthz was never 200 after the change"
stale=$(health_body healthz yes)
[ "$stale" = "$synced" ] ||
    fail "lastUpdated moved from $synced to $stale without a good sync"
code=$(http_get "$NS_NODE" "http://$OPS_HEALTHZ/livez" livez)
[ "$code" = 503 ] || fail "/livez answered $code while /healthz is 503"
kuproxy_log_since | grep -q "injected failure" ||
    fail "kuproxy did not log the restore's error output"
[ "$(rules_for 10.96.6.3/32)" = 0 ] || fail "a rule for fresh got in"
metrics_fetch unhealthy
metrics_check unhealthy \
    'kubeproxy_sync_proxy_rules_iptables_restore_failures_total >= 2' \
    'kubeproxy_sync_proxy_rules_service_changes_pending >= 1' \
    'kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds > 0' \
    'kubeproxy_proxy_healthz_total{code="503"} >= 1' \
    'kubeproxy_proxy_livez_total{code="503"} == 1' >/dev/null
failures=$(metrics_get unhealthy \
    kubeproxy_sync_proxy_rules_iptables_restore_failures_total)
ok "restores failing: fresh serves on its proxy port; /healthz 503 after" \
    "$elapsed ms (200 before), livez 503, lastUpdated kept," \
    "$failures restore failures counted"

# 3. Restores work again.
rm -f "$T/restore-fails"
t1=$(now_ms)
while :; do
	code=$(http_get "$NS_NODE" "http://$OPS_HEALTHZ/healthz" healthz)
	recovered=$(($(now_ms) - t1))
	[ "$code" = 200 ] && break
	[ "$recovered" -lt 2500 ] ||
	    fail "/healthz still $code ${recovered} ms after restores work"
	sleep 0.05
done
synced2=$(health_body healthz yes)
[ "$synced2" != "$synced" ] || fail "lastUpdated did not move on recovery"
has_rules 10.96.6.3/32 ||
    fail "no rule for fresh: $(nsx "$NS_NODE" iptables-legacy-save -t nat)"
metrics_fetch healthy
metrics_check healthy \
    'kubeproxy_sync_proxy_rules_service_changes_pending == 0' \
    "kubeproxy_sync_proxy_rules_iptables_restore_failures_total >= $failures" \
    >/dev/null
ok "restores work again: /healthz 200 after $recovered ms, lastUpdated" \
    "$synced2, fresh's rule installed, nothing pending"

# 4. The connection from the start.
touch "$T/go"
wait_until 10 sh -c "! kill -0 $hold 2>/dev/null" ||
    fail "the stream client hangs: $(cat "$T/hold.log")"
wait "$hold" || fail "stream connection: $(cat "$T/hold.log")"
grep -q "ping second" "$T/hold.log" ||
    fail "stream connection: $(cat "$T/hold.log")"
ok "the connection opened before the failures still echoes"

kuproxy_stop
[ "$(rules_for 10.96.6.)" = 0 ] || fail "rules left after SIGTERM:" \
    "$(nsx "$NS_NODE" iptables-legacy-save -t nat)"
ok "rules removed on SIGTERM"
