# SPDX-License-Identifier: Apache-2.0
#
# Helpers for the operator-interface e2e tests (tests/e2e/ops_*.sh), sourced
# after lib.sh: the HTTP health and metrics servers, `kuproxy status`, the
# sd_notify socket, signals and the daemon's exit.  lib.sh keeps the life
# cycle (temp dir, namespaces, trap); this file only adds ways to look at a
# running kuproxy.  metrics_check.py does the parsing and the arithmetic.
#
# The building blocks:
#   ops_init                     e2e_init plus the tools these tests need
#   ops_service, ops_slice, ops_list   a services file, as kubectl prints it
#   http_get NS URL NAME         GET; prints the status code, body in $T/NAME
#   metrics_fetch NAME           /metrics of the kuproxy in $NS_NODE
#   metrics_check, metrics_get, metrics_is   metrics_check.py check / get
#   status_fetch NAME            kuproxy status, as table and --json
#   notify_start                 an sd_notify receiver; notify_wait
#   wait_until SECONDS CMD...    poll a condition
#   kuproxy_wait_exit SECONDS    wait for kuproxy's exit; KP_EXIT, KP_EXIT_MS
# Scratch variables are _o-prefixed globals (POSIX sh has no local).

. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"

# The metrics and health servers keep kube-proxy's default addresses: each
# kuproxy runs in its own namespace.
OPS_METRICS=127.0.0.1:10249
OPS_HEALTHZ=127.0.0.1:10256

ops_init() {
	e2e_init
	command -v curl >/dev/null 2>&1 ||
	    e2e_error "missing curl (packaging/install-deps installs it)"
	METRICS_CHECK="$KUPROXY_SRCDIR/tests/e2e/metrics_check.py"
	[ -r "$METRICS_CHECK" ] || e2e_error "no $METRICS_CHECK"
	"$KPT_PYTHON" -c 'import prometheus_client.parser' 2>/dev/null ||
	    e2e_error "$KPT_PYTHON lacks prometheus_client" \
	    "(python3-prometheus-client; packaging/install-deps installs it)"
}

# ------------------------------------------------------------ services file

# ops_service NAME PORT CLUSTER-IP [PROTOCOL]: a ClusterIP Service whose one
# port is named after its protocol in lower case (tcp, udp), targetPort 8080.
ops_service() {
	_oproto=${4:-TCP}
	cat <<YAML
- apiVersion: v1
  kind: Service
  metadata:
    name: $1
    namespace: default
  spec:
    clusterIP: $3
    ports:
    - name: $(echo "$_oproto" | tr '[:upper:]' '[:lower:]')
      port: $2
      protocol: $_oproto
      targetPort: 8080
    selector:
      app: $1
    sessionAffinity: None
    type: ClusterIP
YAML
}

# ops_slice NAME PROTOCOL ADDRESS...: the EndpointSlice of NAME, every
# address ready on port 8080.
ops_slice() {
	_osvc=$1
	_oproto=$2
	shift 2
	echo "- addressType: IPv4"
	echo "  apiVersion: discovery.k8s.io/v1"
	echo "  endpoints:"
	for _oa in "$@"; do
		cat <<YAML
  - addresses:
    - $_oa
    conditions:
      ready: true
      serving: true
      terminating: false
YAML
	done
	cat <<YAML
  kind: EndpointSlice
  metadata:
    labels:
      kubernetes.io/service-name: $_osvc
    name: $_osvc-abcde
    namespace: default
  ports:
  - name: $(echo "$_oproto" | tr '[:upper:]' '[:lower:]')
    port: 8080
    protocol: $_oproto
YAML
}

# ops_list: wrap the items on stdin in a List.
ops_list() {
	echo "apiVersion: v1"
	echo "items:"
	cat
	echo "kind: List"
	echo "metadata:"
	echo "  resourceVersion: \"\""
}

# ------------------------------------------------------------------- HTTP

# http_get NS URL NAME: GET URL from inside NS, bounded to 3 s.  Prints the
# status code ("000" when nothing answered); the body goes to $T/NAME and
# the response headers to $T/NAME.headers.
http_get() {
	nsx "$1" curl -s --max-time 3 -o "$T/$3" -D "$T/$3.headers" \
	    -w '%{http_code}' "$2" 2>/dev/null
	return 0
}

# metrics_fetch NAME: the /metrics page of the kuproxy in $NS_NODE into
# $T/NAME; fails the test unless it answers 200.
metrics_fetch() {
	_ocode=$(http_get "$NS_NODE" "http://$OPS_METRICS/metrics" "$1")
	[ "$_ocode" = 200 ] || fail "GET /metrics answered $_ocode"
}

# metrics_check NAME ASSERTION...: validate $T/NAME and check assertions
# ('SELECTOR OP NUMBER'); prints one line each, fails the test on any.
metrics_check() {
	_ofile=$1
	shift
	"$KPT_PYTHON" "$METRICS_CHECK" check "$T/$_ofile" "$@" \
	    >"$T/$_ofile.check" 2>&1
	_orc=$?
	cat "$T/$_ofile.check"
	[ "$_orc" = 0 ] || fail "metrics in $_ofile: $(grep -v '^ok' \
	    "$T/$_ofile.check" | tr '\n' ' ')"
}

# metrics_get NAME SELECTOR: print the sum of the matching samples.
metrics_get() {
	"$KPT_PYTHON" "$METRICS_CHECK" get "$T/$1" "$2"
}

# metrics_is NAME SELECTOR VALUE: true when that sum is VALUE.
metrics_is() {
	[ "$(metrics_get "$1" "$2")" = "$3" ]
}

# status_fetch NAME: `kuproxy status` into $T/NAME.txt and `kuproxy status
# --json` into $T/NAME.json, from the current kuproxy's status socket.
status_fetch() {
	"$KUPROXY_BIN" status --status-socket "$KP_STATUS_SOCKET" \
	    >"$T/$1.txt" 2>&1 || fail "kuproxy status: $(cat "$T/$1.txt")"
	"$KUPROXY_BIN" status --json --status-socket "$KP_STATUS_SOCKET" \
	    >"$T/$1.json" 2>&1 ||
	    fail "kuproxy status --json: $(cat "$T/$1.json")"
}

# ----------------------------------------------------------- time, exits

# wait_until SECONDS COMMAND...: run COMMAND every 50 ms until it succeeds.
# Returns 1 if it never did.
wait_until() {
	_odeadline=$(($(now_ms) + $1 * 1000))
	shift
	while ! "$@"; do
		[ "$(now_ms)" -lt "$_odeadline" ] || return 1
		sleep 0.05
	done
	return 0
}

# kuproxy_wait_exit SECONDS: wait until kuproxy has exited; KP_EXIT is its
# status and KP_EXIT_MS when it was seen gone (now_ms).  Returns 1 if it
# still runs after SECONDS.
kuproxy_wait_exit() {
	_odeadline=$(($(now_ms) + $1 * 1000))
	while kuproxy_alive; do
		[ "$(now_ms)" -lt "$_odeadline" ] || return 1
		sleep 0.02
	done
	KP_EXIT_MS=$(now_ms)
	wait "$KP_PID"
	KP_EXIT=$?
	return 0
}

# ------------------------------------------------------------- sd_notify

# notify_start: a receiver for sd_notify datagrams on $T/notify.sock that
# writes one line per datagram to $T/notify.log, its lines joined by " | ".
# Sets NOTIFY_SOCKET (exported: kuproxy_start passes the environment on).
notify_start() {
	NOTIFY_SOCKET="$T/notify.sock"
	export NOTIFY_SOCKET
	e2e_bg notify "$NS_NODE" "$KPT_PYTHON" -u -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("receiving", flush=True)
while True:
    print(" | ".join(s.recv(4096).decode().split("\n")), flush=True)
' "$NOTIFY_SOCKET"
	wait_until 5 grep -q receiving "$T/notify.log" ||
	    e2e_error "the sd_notify receiver did not start"
}

# notify_wait ERE [SECONDS]: wait for a datagram matching ERE after the
# first N lines of $T/notify.log (N = NOTIFY_MARK, default 0).
notify_wait() {
	wait_until "${2:-5}" notify_since_matches "$1"
}

notify_since_matches() {
	tail -n "+$((${NOTIFY_MARK:-0} + 1))" "$T/notify.log" | grep -qE -- "$1"
}

notify_mark() {
	NOTIFY_MARK=$(wc -l <"$T/notify.log")
}
