#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# kuproxy against a (fake) Kubernetes API server, over TLS with a bearer
# token from a tokenFile, everything inside one namespace:
#  1. A service and its EndpointSlice are created: a client reaches the
#     backend through the proxy port.
#  2. Scaling the endpoints, adding a port and deleting the service are
#     visible within 2 s.
#  3. Faults: watches dropped mid-event, an ERROR 410 in the stream, real
#     compaction behind a watch, 500s on every request for a while, the
#     server stopped for 10 s (and restarted with newer resourceVersions):
#     the table stays in force throughout and catches up afterwards.
#  4. The token file is rotated and the old token revoked: the client
#     re-reads it after the 401 and goes on.
#  5. A kubeconfig with the wrong CA: a clear TLS error, no table.
# The server is reached as "localhost" with tls-server-name, the CA comes
# inline (certificate-authority-data) or as a path relative to the
# kubeconfig.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
e2e_init
command -v curl >/dev/null 2>&1 || e2e_error "missing curl"
command -v openssl >/dev/null 2>&1 || e2e_error "missing openssl"
FAKEAPI="$KUPROXY_SRCDIR/tests/fakeapi/fakeapi.py"
[ -r "$FAKEAPI" ] || e2e_skip "no $FAKEAPI"
e2e_netns node

backend_start "$NS_NODE" web-a 127.0.0.11:8080
backend_start "$NS_NODE" web-b 127.0.0.12:8080
backend_start "$NS_NODE" alt-a 127.0.0.11:9090

"$KPT_PYTHON" "$FAKEAPI" --gen-certs "$T/certs" \
    --cert-host kubernetes.default.svc >"$T/gen-certs.log" 2>&1 ||
    e2e_error "fakeapi --gen-certs failed: $(cat "$T/gen-certs.log")"
echo tok-1 >"$T/server-tokens"
echo tok-1 >"$T/client-token"

# fakeapi_start [EXTRA FLAGS]: the API server, on $API_PORT once known.
fakeapi_start() {
	rm -f "$T/ports"
	e2e_bg fakeapi "$NS_NODE" "$KPT_PYTHON" "$FAKEAPI" \
	    --port "${API_PORT:-0}" --control-port "${CONTROL_PORT:-0}" \
	    --port-file "$T/ports" --tls-cert "$T/certs/server.crt" \
	    --tls-key "$T/certs/server.key" --token-file "$T/server-tokens" \
	    --bookmark-interval 1 --chunk-mode random "$@"
	FAKEAPI_PID=$LAST_PID
	_deadline=$(($(now_ms) + 10000))
	until [ -s "$T/ports" ] && grep -q '^PID=' "$T/ports"; do
		[ "$(now_ms)" -lt "$_deadline" ] ||
		    e2e_error "fakeapi did not start: $(cat "$T/fakeapi.log")"
		sleep 0.05
	done
	API_PORT=$(sed -n 's/^PORT=//p' "$T/ports")
	CONTROL_PORT=$(sed -n 's/^CONTROL_PORT=//p' "$T/ports")
	CONTROL_URL="http://127.0.0.1:$CONTROL_PORT/control"
}

# ctl METHOD PATH [JSON]: the fake server's control interface.
ctl() {
	nsx "$NS_NODE" curl -sS -f --max-time 10 -X "$1" \
	    -H 'Content-Type: application/json' \
	    ${3:+--data-binary "$3"} "$CONTROL_URL$2" >"$T/ctl.out" ||
	    fail "control $1 $2 failed: $(cat "$T/ctl.out")"
}

# A kubeconfig next to the certificates.  The server is named "localhost",
# which its certificate does not list: tls-server-name makes kuproxy verify
# (and send SNI for) kubernetes.default.svc instead, which it does list.
# CA: "data" embeds certs/ca.crt (an in-memory blob), anything else is a
# path relative to the kubeconfig.
kubeconfig() {	# FILE CA
	if [ "$2" = data ]; then
		_ca="certificate-authority-data: $(base64 -w0 "$T/certs/ca.crt")"
	else
		_ca="certificate-authority: certs/$2"
	fi
	cat >"$1" <<YAML
apiVersion: v1
kind: Config
current-context: test
clusters:
- name: fake
  cluster:
    server: https://localhost:$API_PORT
    tls-server-name: kubernetes.default.svc
    $_ca
users:
- name: proxy
  user:
    tokenFile: client-token
contexts:
- name: test
  context: {cluster: fake, user: proxy}
YAML
}

svc() {		# NAME PORTS-JSON
	printf '{"kind":"Service","apiVersion":"v1","metadata":{"name":"%s",' "$1"
	printf '"namespace":"default"},"spec":{"type":"ClusterIP","ports":%s}}' \
	    "$2"
}

slice() {	# NAME SERVICE PORTS-JSON ADDRESS...
	_n=$1 _s=$2 _p=$3
	shift 3
	printf '{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1",'
	printf '"metadata":{"name":"%s","namespace":"default","labels":' "$_n"
	printf '{"kubernetes.io/service-name":"%s"}},"addressType":"IPv4",' "$_s"
	printf '"ports":%s,"endpoints":[' "$_p"
	_sep=
	for _a in "$@"; do
		printf '%s{"addresses":["%s"],"conditions":{"ready":true}}' \
		    "$_sep" "$_a"
		_sep=,
	done
	printf ']}'
}

HTTP_PORT='[{"name":"http","port":80,"protocol":"TCP"}]'
HTTP_ALT_PORTS='[{"name":"http","port":80,"protocol":"TCP"},{"name":"alt","port":90,"protocol":"TCP"}]'
SLICE_HTTP='[{"name":"http","port":8080,"protocol":"TCP"}]'
SLICE_HTTP_ALT='[{"name":"http","port":8080,"protocol":"TCP"},{"name":"alt","port":9090,"protocol":"TCP"}]'

kp_start() {	# NAME KUBECONFIG [FLAGS]
	_name=$1 _kc=$2
	shift 2
	e2e_bg "kuproxy-$_name" "$NS_NODE" "$KUPROXY_BIN" --kubeconfig "$_kc" \
	    --iptables-backend none --proxy-port-range 20000-20099 \
	    --iptables-min-sync-period 200ms -v 2 "$@"
	KP_PID=$LAST_PID
	KP_LOG="$T/kuproxy-$_name.log"
	KP_MARK=0
}

# probe PORT COUNT: COUNT connections; prints the distinct backends seen.
probe() {
	client "$NS_NODE" --connect "127.0.0.1:$1" --count "$2" \
	    --timeout 2 >"$T/probe.out" 2>&1
	distinct "$T/probe.out"
}

# within SECONDS WHAT COMMAND...: COMMAND must succeed within SECONDS.
within() {
	_limit=$1 _what=$2
	shift 2
	_t0=$(now_ms)
	until "$@" >/dev/null 2>&1; do
		kuproxy_alive || fail "kuproxy died waiting for: $_what"
		[ "$(($(now_ms) - _t0))" -lt "$((_limit * 1000))" ] ||
		    fail "not within $_limit s: $_what (last probe:" \
		    "$(cat "$T/probe.out" 2>/dev/null))"
		sleep 0.05
	done
	ok "$_what after $(($(now_ms) - _t0)) ms"
}

log_has() {	# ERE: in the log since the mark
	kuproxy_log_since | grep -qE -- "$1"
}

serves() {	# PORT "EXPECTED DISTINCT"
	[ "$(probe "$1" 6)" = "$2" ]
}

refuses() {	# PORT
	! client "$NS_NODE" --connect "127.0.0.1:$1" --timeout 2 \
	    >"$T/probe.out" 2>&1 && grep -q ERROR "$T/probe.out"
}

# ------------------------------------------------------------------ start

fakeapi_start
kubeconfig "$T/kubeconfig" data
kp_start main "$T/kubeconfig"
kuproxy_wait_log "api: 0 services" 10 ||
    fail "no first (empty) table from the API"
ok "connected over TLS; empty first table"

# 1. Create.
kuproxy_mark
ctl POST /objects "$(svc web "$HTTP_PORT")"
ctl POST /objects "$(slice web-1 web "$SLICE_HTTP" 127.0.0.11)"
kuproxy_port web default/web:http/TCP 5
within 2 "web reachable through proxy port $web" serves "$web" "web-a"

# 2. Scale, add a port, delete.
ctl PUT /objects "$(slice web-1 web "$SLICE_HTTP" 127.0.0.11 127.0.0.12)"
within 2 "scaled to two endpoints" serves "$web" "web-a web-b"

kuproxy_mark
ctl PUT /objects "$(svc web "$HTTP_ALT_PORTS")"
ctl PUT /objects "$(slice web-1 web "$SLICE_HTTP_ALT" 127.0.0.11)"
within 2 "port alt added" log_has "default/web:alt/TCP: listening on proxy port"
kuproxy_port alt default/web:alt/TCP 1
within 2 "alt reachable, http scaled down" serves "$alt" "alt-a"
serves "$web" "web-a" || fail "http still serves $(cat "$T/probe.out")"

ctl DELETE /objects/services/default/web
within 2 "deleted service refuses" refuses "$web"
# Mark before re-creating: kuproxy may log the new listener at once.
kuproxy_mark
ctl DELETE /objects/endpointslices/default/web-1
ctl POST /objects "$(svc web "$HTTP_PORT")"
ctl POST /objects "$(slice web-1 web "$SLICE_HTTP" 127.0.0.11 127.0.0.12)"
within 2 "web back" log_has "default/web:http/TCP: listening"
kuproxy_port web default/web:http/TCP 1
within 2 "web back with two endpoints" serves "$web" "web-a web-b"

# 3. Faults.  After each, the table is still in force and follows changes.
change_and_check() {	# WHAT SECONDS
	ctl PUT /objects "$(slice web-1 web "$SLICE_HTTP" 127.0.0.12)"
	within "$2" "$1: follows changes (web-b only)" serves "$web" "web-b"
	ctl PUT /objects "$(slice web-1 web "$SLICE_HTTP" 127.0.0.11 \
	    127.0.0.12)"
	within "$2" "$1: follows changes (both)" serves "$web" "web-a web-b"
}

kuproxy_mark
ctl POST /watches/drop '{"mode":"mid-event"}'
serves "$web" "web-a web-b" || fail "table lost after a dropped watch"
change_and_check "watch dropped mid-event" 2

kuproxy_mark
ctl POST /watches/error '{"code":410}'
kuproxy_wait_log "expired \(410" 5 || fail "no 410 seen in the log"
serves "$web" "web-a web-b" || fail "table lost after ERROR 410"
change_and_check "ERROR 410 in the stream" 4

# Real compaction: watches without bookmarks, so the services watch's
# resourceVersion falls behind while slices change; compact; cut the
# services watch (older than 1 s: it is watched again, from the old RV).
ctl POST /bookmarks '{"interval":3600}'
ctl POST /watches/drop '{}'
ctl GET "/wait?open_watches=2&timeout=10"
sleep 1.5
kuproxy_mark
ctl PUT /objects "$(slice web-1 web "$SLICE_HTTP" 127.0.0.11 127.0.0.12 \
    127.0.0.13)"
ctl PUT /objects "$(slice web-1 web "$SLICE_HTTP" 127.0.0.11 127.0.0.12)"
ctl POST /compact '{}'
ctl POST /watches/drop '{"resource":"services"}'
kuproxy_wait_log "services: watch from resourceVersion [0-9]+ expired" 5 ||
    fail "no 410 after compaction"
# Repeated failures back off (faults came thick and fast above).
kuproxy_wait_log "services: listed" 65 || fail "services not relisted"
ctl POST /bookmarks '{"interval":1}'
change_and_check "compaction" 4

kuproxy_mark
ctl POST /faults '{"type":"http_error","code":500,"seconds":4}'
ctl POST /watches/drop '{}'
sleep 2
serves "$web" "web-a web-b" || fail "table lost during 500s"
kuproxy_log_since | grep -q "HTTP 500" || fail "500s not logged"
change_and_check "500s for 4 s" 12

kuproxy_mark
ctl GET /objects
cp "$T/ctl.out" "$T/objects.json"
"$KPT_PYTHON" -c '
import json, sys
d = json.load(open(sys.argv[1]))
items = d["objects"]["services"] + d["objects"]["endpointslices"]
for o in items:
    for k in ("resourceVersion", "uid", "managedFields", "generation",
              "creationTimestamp"):
        o["metadata"].pop(k, None)
json.dump({"kind": "List", "apiVersion": "v1", "items": items},
          open(sys.argv[2], "w"))
rv = int(d["rv"])
print(rv + 1000)' "$T/objects.json" "$T/restore.json" >"$T/next-rv" ||
    e2e_error "cannot save the fake server's objects"
kill -TERM "$FAKEAPI_PID"
wait "$FAKEAPI_PID" 2>/dev/null
t0=$(now_ms)
while [ "$(($(now_ms) - t0))" -lt 10000 ]; do
	serves "$web" "web-a web-b" ||
	    fail "table lost while the API server is down"
	sleep 1
done
kuproxy_log_since | grep -qE "retrying in [0-9.]+ s" ||
    fail "no back-off logged while the server was down"
ok "server down 10 s: table in force, retries backed off"
fakeapi_start --objects "$T/restore.json" --initial-rv "$(cat "$T/next-rv")"
# The back-off has grown through the faults above (it resets only after
# 2 quiet minutes), so a retry may be up to a minute away: 0.8 s doubling
# to 30 s, plus up to 100 % jitter.
kuproxy_wait_log "services: listed" 65 ||
    fail "no services relist after the server came back"
kuproxy_wait_log "endpointslices: listed" 65 ||
    fail "no endpointslices relist after the server came back"
change_and_check "server restart" 4

# 4. Token rotation: new token in the file, the old one revoked.
kuproxy_mark
ctl POST /tokens '{"tokens":["tok-1","tok-2"]}'
echo tok-2 >"$T/client-token.new" && mv "$T/client-token.new" "$T/client-token"
ctl POST /tokens '{"tokens":["tok-2"]}'
ctl POST /watches/drop '{}'
change_and_check "token rotated" 6
ctl GET /stats
grep -q '"tok-2"' "$T/ctl.out" || fail "the new token was never sent"
ok "rotated token picked up: $(kuproxy_log_since | grep -c '401 Unauthorized') 401s"

# 5. The wrong CA: a clear error and no table.
MAIN_PID=$KP_PID MAIN_LOG=$KP_LOG
kubeconfig "$T/kubeconfig-bad-ca" other-ca.crt
kp_start badca "$T/kubeconfig-bad-ca" --proxy-port-range 20100-20199 \
    --healthz-bind-address "" --metrics-bind-address ""
kuproxy_wait_log "list failed: .*(certificate|SSL)" 10 ||
    fail "no TLS error with the wrong CA"
ok "wrong CA: $(grep -m1 -E 'list failed' "$KP_LOG")"
if grep -q "listening on proxy port" "$KP_LOG"; then
	fail "kuproxy with the wrong CA opened listeners"
fi
kuproxy_stop
KP_PID=$MAIN_PID KP_LOG=$MAIN_LOG
kuproxy_stop
ok "kuproxy stopped cleanly"
