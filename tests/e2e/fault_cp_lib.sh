# SPDX-License-Identifier: Apache-2.0
#
# Helpers for the control-plane fault tests (tests/e2e/fault_cp_*.sh); it
# sources lib.sh and faultlib.sh (metric, rss_kb): the fake API server (tests/fakeapi) in the test's
# node namespace, kuproxy pointed at it through a kubeconfig, objects as
# JSON, and a probe that keeps connecting to a healthy service in the
# background while a fault is injected, so that a test can assert that not
# one connection failed.  lib.sh keeps the life cycle (temp dir, namespaces,
# trap); everything here runs inside $NS_NODE.
#
# The building blocks:
#   cp_init                        e2e_init, the node namespace, certificates
#   fakeapi_start [FLAGS]          the API server (TLS, token file); ctl
#   cp_kubeconfig FILE [CA]        a kubeconfig for it (CA: data or a file)
#   svc_json, slice_json           objects for ctl
#   kp_start NAME KUBECONFIG [FLAGS]   kuproxy against it; KP_PID, KP_LOG
#   serves PORT "NAMES", within SECONDS WHAT CMD...   what a client sees
#   relist RESOURCE, lists RESOURCE   a relist now; lists answered so far
#   probe_start PORT, probe_stop WHAT   the background probe, its verdict
#   kp_hwm_kb                      kuproxy's peak resident memory
#   log_count ERE                  lines matching ERE since the mark
#   kp_reloads_are OK BAD          kuproxy_config_reloads_total's counts
#   cp_fault_certs                 the TLS fault tests' certificates
#   kp_healthz                     /healthz's HTTP status
#   retries_check MIN ERE          failed API requests back off and grow
#   probe_start_at, probe_start_timed, probe_slowest_ms   probe variants
#   cp_mem_bound                   a memory bound, tripled under ASan
#   fakeapi_stop                   stop the API server
# Scratch variables are _c-prefixed globals (POSIX sh has no local).

. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/faultlib.sh"

cp_init() {
	e2e_init
	command -v curl >/dev/null 2>&1 || e2e_error "missing curl"
	command -v openssl >/dev/null 2>&1 || e2e_error "missing openssl"
	FAKEAPI="$KUPROXY_SRCDIR/tests/fakeapi/fakeapi.py"
	[ -r "$FAKEAPI" ] || e2e_skip "no $FAKEAPI"
	e2e_netns node
	"$KPT_PYTHON" "$FAKEAPI" --gen-certs "$T/certs" \
	    --cert-host kubernetes.default.svc >"$T/gen-certs.log" 2>&1 ||
	    e2e_error "fakeapi --gen-certs failed: $(cat "$T/gen-certs.log")"
	echo tok-1 >"$T/server-tokens"
	echo tok-1 >"$T/client-token"
}

# fakeapi_start [EXTRA FLAGS]: the API server over TLS, on $API_PORT once
# known (a restart keeps the ports).  Sets FAKEAPI_PID, CONTROL_URL.
fakeapi_start() {
	rm -f "$T/ports"
	e2e_bg fakeapi "$NS_NODE" "$KPT_PYTHON" "$FAKEAPI" \
	    --port "${API_PORT:-0}" --control-port "${CONTROL_PORT:-0}" \
	    --port-file "$T/ports" --tls-cert "${API_CERT:-$T/certs/server.crt}" \
	    --tls-key "${API_KEY:-$T/certs/server.key}" \
	    --token-file "$T/server-tokens" --bookmark-interval 1 "$@"
	FAKEAPI_PID=$LAST_PID
	_c_deadline=$(($(now_ms) + 10000))
	until [ -s "$T/ports" ] && grep -q '^PID=' "$T/ports"; do
		[ "$(now_ms)" -lt "$_c_deadline" ] ||
		    e2e_error "fakeapi did not start: $(cat "$T/fakeapi.log")"
		sleep 0.05
	done
	API_PORT=$(sed -n 's/^PORT=//p' "$T/ports")
	CONTROL_PORT=$(sed -n 's/^CONTROL_PORT=//p' "$T/ports")
	CONTROL_URL="http://127.0.0.1:$CONTROL_PORT/control"
}

fakeapi_stop() {
	kill -TERM "$FAKEAPI_PID" 2>/dev/null
	wait "$FAKEAPI_PID" 2>/dev/null
	return 0
}

# ctl METHOD PATH [JSON|@FILE]: the fake server's control interface; the
# answer is in $T/ctl.out.
ctl() {
	nsx "$NS_NODE" curl -sS -f --max-time 30 -X "$1" \
	    -H 'Content-Type: application/json' \
	    ${3:+--data-binary "$3"} "$CONTROL_URL$2" >"$T/ctl.out" ||
	    fail "control $1 $2 failed: $(cat "$T/ctl.out")"
}

# cp_kubeconfig FILE [CA] [SERVER]: the server by the name "localhost",
# verified as kubernetes.default.svc (tls-server-name).  CA: "data" (the
# default) embeds certs/ca.crt, anything else is a file under certs/.
# The token comes from $T/client-token (tokenFile).
cp_kubeconfig() {
	if [ "${2:-data}" = data ]; then
		_c_ca="certificate-authority-data: $(base64 -w0 "$T/certs/ca.crt")"
	else
		_c_ca="certificate-authority: $T/certs/$2"
	fi
	cat >"$1" <<YAML
apiVersion: v1
kind: Config
current-context: test
clusters:
- name: fake
  cluster:
    server: ${3:-https://localhost:$API_PORT}
    tls-server-name: kubernetes.default.svc
    $_c_ca
users:
- name: proxy
  user:
    tokenFile: $T/client-token
contexts:
- name: test
  context: {cluster: fake, user: proxy}
YAML
}

# svc_json NAME [NAMESPACE] [PORTS-JSON]: a ClusterIP Service.
svc_json() {
	printf '{"kind":"Service","apiVersion":"v1","metadata":{"name":"%s",' "$1"
	printf '"namespace":"%s"},"spec":{"type":"ClusterIP","ports":%s}}' \
	    "${2:-default}" \
	    "${3:-[{\"name\":\"http\",\"port\":80,\"protocol\":\"TCP\"\}]}"
}

# slice_json NAME SERVICE ADDRESS...: an EndpointSlice of SERVICE in
# namespace default, port http 8080.
slice_json() {
	_c_n=$1 _c_s=$2
	shift 2
	printf '{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1",'
	printf '"metadata":{"name":"%s","namespace":"default","labels":' "$_c_n"
	printf '{"kubernetes.io/service-name":"%s"}},"addressType":"IPv4",' \
	    "$_c_s"
	printf '"ports":[{"name":"http","port":8080,"protocol":"TCP"}],'
	printf '"endpoints":['
	_c_sep=
	for _c_a in "$@"; do
		printf '%s{"addresses":["%s"],"conditions":{"ready":true}}' \
		    "$_c_sep" "$_c_a"
		_c_sep=,
	done
	printf ']}'
}

# kp_start NAME KUBECONFIG [FLAGS]: kuproxy without iptables rules (clients
# dial the proxy ports), health and metrics on their default addresses in
# the node namespace.
kp_start() {
	_c_name=$1 _c_kc=$2
	shift 2
	e2e_bg "kuproxy-$_c_name" "$NS_NODE" "$KUPROXY_BIN" --kubeconfig "$_c_kc" \
	    --iptables-backend none --proxy-port-range 20000-20099 \
	    --status-socket "$T/status-$_c_name.sock" \
	    --iptables-min-sync-period 200ms -v 2 "$@"
	KP_PID=$LAST_PID
	KP_LOG="$T/kuproxy-$_c_name.log"
	KP_MARK=0
}

# serves PORT "EXPECTED DISTINCT": six connections, the distinct answers.
serves() {
	client "$NS_NODE" --connect "127.0.0.1:$1" --count 6 --timeout 2 \
	    >"$T/serves.out" 2>&1
	[ "$(distinct "$T/serves.out")" = "$2" ]
}

# within SECONDS WHAT COMMAND...: COMMAND must succeed within SECONDS.
within() {
	_c_limit=$1 _c_what=$2
	shift 2
	_c_t0=$(now_ms)
	until "$@" >/dev/null 2>&1; do
		kuproxy_alive || fail "kuproxy died waiting for: $_c_what"
		[ "$(($(now_ms) - _c_t0))" -lt "$((_c_limit * 1000))" ] ||
		    fail "not within $_c_limit s: $_c_what (last client:" \
		    "$(cat "$T/serves.out" 2>/dev/null))"
		sleep 0.05
	done
	ok "$_c_what after $(($(now_ms) - _c_t0)) ms"
}

# relist RESOURCE: make kuproxy relist RESOURCE now (an ERROR 410 ends its
# watch).
relist() {
	ctl POST /watches/error "{\"code\":410,\"resource\":\"$1\"}"
}

# lists RESOURCE: how many lists of RESOURCE the API has answered.
lists() {
	ctl GET "/stats?resource=$1&verb=list"
	grep -c '"verb": "list"' "$T/ctl.out"
}

# probe_start PORT: connect to 127.0.0.1:PORT in the node namespace every
# 0.1 s, each answer appended to $T/probe.all, until probe_stop.  Every
# connection must be answered by a backend (whichever endpoints the
# service has at the time).
probe_start() {
	probe_start_at "$NS_NODE" "127.0.0.1:$1"
}

# probe_stop WHAT: stop the probe; fail unless it made connections and
# every one was answered by a backend.
probe_stop() {
	touch "$T/probe.stop"
	wait "$PROBE_PID" 2>/dev/null
	_c_all=$(wc -l <"$T/probe.all")
	_c_bad=$(awk '$2 !~ /^[a-z][a-z0-9-]*$/' "$T/probe.all" | wc -l)
	[ "$_c_all" -gt 0 ] || fail "$1: the probe made no connection"
	[ "$_c_bad" = 0 ] ||
	    fail "$1: probe failed $_c_bad/$_c_all: $(awk \
	    '$2 !~ /^[a-z][a-z0-9-]*$/' "$T/probe.all" | sort | uniq -c |
	    head -n 5)"
	ok "$1: probe $_c_all/$_c_all connections served" \
	    "($(tally "$T/probe.all"))"
}

kp_hwm_kb() {
	awk '/^VmHWM:/ { print $2 }' "/proc/$KP_PID/status"
}

# log_count ERE: how many lines after the mark match ERE.
log_count() {
	kuproxy_log_since | grep -cE -- "$1"
}

# kp_reloads_are SUCCESS FAILURE: whether kuproxy_config_reloads_total is
# at those counts; what it is goes to $T/reloads.
kp_reloads_are() {
	_c_ok=$(metric 'kuproxy_config_reloads_total{result="success"}')
	_c_bad=$(metric 'kuproxy_config_reloads_total{result="failure"}')
	echo "reloads: success $_c_ok, failure $_c_bad" >"$T/reloads"
	[ "$_c_ok" = "$1" ] && [ "$_c_bad" = "$2" ]
}

# cp_fault_certs: after cp_init, the certificates of the TLS fault tests
# next to the others in $T/certs (tests/fakeapi/README.md, --fault-certs):
# expired.crt, wrong-name.crt, client-ca.crt, client.crt and client.key.
cp_fault_certs() {
	"$KPT_PYTHON" -c 'import sys; sys.path.insert(0, sys.argv[1])
import fakeapi; fakeapi.gen_fault_certs(sys.argv[2])' \
	    "$(dirname "$FAKEAPI")" "$T/certs" >"$T/gen-certs.log" 2>&1 ||
	    e2e_error "fakeapi.gen_fault_certs failed: $(cat "$T/gen-certs.log")"
}

# kp_healthz: the HTTP status of /healthz from the kuproxy in $NS_NODE (on
# its default address); 000 when nothing answers.
kp_healthz() {
	nsx "$NS_NODE" curl -s -o /dev/null -w '%{http_code}' --max-time 3 \
	    http://127.0.0.1:10256/healthz
}

# retries_check MIN ERE: kuproxy's failed API requests since the mark, the
# lines "INFORMER: list failed|watch|watch failed: ... ERE ...; retrying in
# D s" (or "relisting in D s"), must show, for each informer, at least MIN
# attempts, with delays that grow (exponential back-off, as long as it is
# below its cap) and are honoured: the time between two attempts is at
# least the delay logged with the first and at most 1 s more.  Says what
# it saw (to stdout, $T/retries) or fails.
retries_check() {
	kuproxy_log_since >"$T/retries.log"
	"$KPT_PYTHON" - "$1" "$2" "$T/retries.log" >"$T/retries" 2>&1 <<'PY'
import re, sys
want, ere, path = int(sys.argv[1]), re.compile(sys.argv[2]), sys.argv[3]
line_re = re.compile(r"^\S+ (\d+):(\d+):([\d.]+) .*?\] (services|endpointslices):"
                     r" (?:list failed|watch|watch failed): (.*); "
                     r"(?:retrying|relisting) in ([\d.]+) s")
seen = {}
for line in open(path, errors="replace"):
    m = line_re.match(line)
    if not m or not ere.search(m.group(5)):
        continue
    t = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    seen.setdefault(m.group(4), []).append((t, float(m.group(6))))
bad = []
out = []
for inf in ("services", "endpointslices"):
    a = seen.get(inf, [])
    if len(a) < want:
        bad.append("%s: %d attempts, want %d" % (inf, len(a), want))
        continue
    gaps = [b[0] - p[0] for p, b in zip(a, a[1:])]
    for i, ((t, d), g) in enumerate(zip(a, gaps)):
        if not d - 0.06 <= g <= d + 1.0:   # d is rounded to 0.1 s
            bad.append("%s: attempt %d came %.2f s after the one before, "
                       "which said %.1f s" % (inf, i + 2, g, d))
    for (t0, d0), (t1, d1) in zip(a, a[1:]):
        # Delays are logged to 0.1 s: equal may be rounding.
        if d1 < d0 and d0 < 30:
            bad.append("%s: back-off did not grow: %.1f s then %.1f s"
                       % (inf, d0, d1))
    out.append("%s: %d attempts, gaps %s s" % (
        inf, len(a), " ".join("%.2f" % g for g in gaps)))
print("; ".join(out))
for b in bad:
    print("FAIL: " + b)
sys.exit(1 if bad else 0)
PY
	_c_rc=$?
	cat "$T/retries"
	[ "$_c_rc" = 0 ] || fail "back-off: $(grep FAIL "$T/retries")"
}

# probe_start_at NS ADDR:PORT [CLIENT-ARGS...]: probe_start's probe from
# any namespace to any address, e.g. a ClusterIP through kuproxy's portal
# rules, with more tcpkit client arguments (a later --timeout wins);
# probe_stop ends it the same way.
probe_start_at() {
	rm -f "$T/probe.stop" "$T/probe.all"
	(
		_c_ns=$1 _c_to=$2
		shift 2
		while [ ! -e "$T/probe.stop" ]; do
			client "$_c_ns" --connect "$_c_to" --count 3 --timeout 2 \
			    "$@" >>"$T/probe.all" 2>&1
			sleep 0.1
		done
	) &
	PROBE_PID=$!
	E2E_PIDS="$E2E_PIDS $PROBE_PID"
}

# probe_start_timed PORT SECONDS: probe_start with a client timeout of
# SECONDS instead of 2, each answer followed by its time ("NAME 12.3ms"),
# for a fault that is expected to slow connections down rather than fail
# them.  probe_stop gives the verdict; probe_slowest_ms the slowest one.
probe_start_timed() {
	probe_start_at "$NS_NODE" "127.0.0.1:$1" --timeout "$2" --show-ms
}

# The slowest connection probe_start_timed saw, in whole milliseconds.
probe_slowest_ms() {
	awk '{ v = $3 + 0; if (v > m) m = v } END { printf "%d\n", m }' \
	    "$T/probe.all"
}

# cp_mem_bound KB: a bound on RSS growth for this build: KB, or three
# times KB when kuproxy is built with AddressSanitizer, whose redzones and
# quarantine (freed blocks kept mapped) add to every allocation.
cp_mem_bound() {
	if grep -qa __asan_init "$KUPROXY_BIN" 2>/dev/null; then
		echo $(($1 * 3))
	elif [ "${KPT_VALGRIND:-0}" = 1 ]; then
		# memcheck's shadow memory and redzones, not kuproxy's.
		echo $(($1 * 4))
	else
		echo "$1"
	fi
}
