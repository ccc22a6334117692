# SPDX-License-Identifier: Apache-2.0
#
# The e2e harness, sourced by every tests/e2e/*.sh script (and by
# tests/demo.sh).  It owns the life cycle of a test: a temp dir, the network
# namespaces the test makes (named kpt-PID-*, so parallel tests never
# collide), the processes it starts inside them, and one EXIT trap that
# dumps the logs on failure and then removes all of it.  Nothing here
# touches the host's own namespace: kuproxy, backends and clients all run
# inside namespaces the test created.
#
# Exit statuses (automake's): 0 pass, 1 fail, 77 skip (not root, no
# `ip netns`), 99 harness error (a tool is missing, a backend would not
# start).  POSIX sh: the tests run under /bin/sh.
#
# Environment: KUPROXY_BIN (the binary under test), KUPROXY_SRCDIR (the
# source tree), KPT_RELAY_MODES (default "splice copy"), KPT_IPT_BACKENDS
# (default "legacy nft", for the portal tests), KPT_KEEP=1 keeps the temp
# dir, KPT_PYTHON (default /usr/bin/python3), KPT_VALGRIND=1 runs kuproxy
# under valgrind (e2e_valgrind_wrap).
#
# A test: e2e_init; e2e_netns node (or e2e_topology); backend_start ...;
# write $T/services.yaml; then for each mode in $KPT_RELAY_MODES:
# kuproxy_start, kuproxy_port, client ..., assertions (fail/ok),
# kuproxy_stop.  The building blocks:
#   e2e_netns, e2e_topology      namespaces; the pod/node/outside network
#   e2e_bg, e2e_wait_listen      background processes; waiting for a port
#   backend_start, nginx_start   backends that answer with their name
#   client                       tcpkit.py client, bounded in time
#   kuproxy_start/_port/_stop    kuproxy and its "listening on proxy port" log
#   kuproxy_mark/_log_since/_wait_log   what kuproxy logged after a point
#   replace_file                 write a file as editors do (rename over)
#   count, distinct, now_ms      reading client output; time
# and for the portal tests (kuproxy with iptables rules) and the demo:
#   e2e_uplink, uplink_start     the node's uplink; "not intercepted" answers
#   ipt_backends, relay_mode_for the backends to test ($KPT_IPT_BACKENDS)
#   ipt_save, portal_rules, portal_all_rules, portal_wait   reading rules
#   tally, ask, ask_until, expect_tally   who answered N connections
#   port_bindable, kuproxy_kill  node port claims; a crash
#   yaml_service, yaml_slice, yaml_list   services files
# Helpers keep their scratch variables in _-prefixed globals (POSIX sh has
# no local).

KPT_TAG="kpt-$$"
E2E_NETNS=""
E2E_PIDS=""
T=""

e2e_skip() {
	echo "SKIP: $*"
	exit 77
}

e2e_error() {
	echo "HARNESS ERROR: $*" >&2
	exit 99
}

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

ok() {
	echo "ok: $*"
}

now_ms() {
	echo $(($(date +%s%N) / 1000000))
}

# nsx NS COMMAND...: run a command inside a namespace.
nsx() {
	ip netns exec "$@"
}

# Check the preconditions, make the temp dir and install the EXIT trap.
# Every test calls this first.
e2e_init() {
	[ "$(id -u)" = 0 ] || e2e_skip "needs root (network namespaces)"
	command -v ip >/dev/null 2>&1 || e2e_skip "no ip(8) (iproute2)"
	: "${KUPROXY_SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
	: "${KUPROXY_BIN:=$(pwd)/kuproxy}"
	: "${KPT_RELAY_MODES:=splice copy}"
	if [ -z "${KPT_PYTHON:-}" ]; then
		KPT_PYTHON=/usr/bin/python3
		[ -x "$KPT_PYTHON" ] || KPT_PYTHON=$(command -v python3 || echo python3)
	fi
	for _tool in "$KPT_PYTHON" timeout ss socat date sha256sum; do
		command -v "$_tool" >/dev/null 2>&1 ||
		    e2e_error "missing $_tool (packaging/install-deps installs it)"
	done
	TCPKIT="$KUPROXY_SRCDIR/tests/e2e/tcpkit.py"
	[ -r "$TCPKIT" ] || e2e_error "no $TCPKIT"

	T=$(mktemp -d "${TMPDIR:-/tmp}/$KPT_TAG.XXXXXX") ||
	    e2e_error "cannot make a temp dir"
	trap e2e_cleanup EXIT
	trap 'exit 129' HUP
	trap 'exit 130' INT
	trap 'exit 143' TERM
	# A reader that goes away (| head) must not kill us before cleanup.
	trap 'exit 141' PIPE

	# ip netns needs a writable /run/netns and CAP_SYS_ADMIN; a container
	# may give us root without either.
	if ! ip netns add "$KPT_TAG-probe" >/dev/null 2>&1; then
		e2e_skip "ip netns is not available here"
	fi
	ip netns del "$KPT_TAG-probe"
	[ "${KPT_VALGRIND:-0}" = 1 ] && e2e_valgrind_wrap
	return 0
}

# KPT_VALGRIND=1 (tests/valgrind-e2e.sh): every kuproxy the test runs
# through $KUPROXY_BIN runs under valgrind's memcheck instead, one log per
# process in $KPT_VALGRIND_DIR/TEST (default $T/valgrind/TEST; TEST is the
# script's name without .sh).  valgrind runs in kuproxy's own process, so
# pids and signals are unchanged; an error or a definite or indirect leak
# makes the exit status 97 (kuproxy_stop fails on it), and e2e_cleanup
# fails the test on any error in the logs.
e2e_valgrind_wrap() {
	command -v valgrind >/dev/null 2>&1 ||
	    e2e_error "KPT_VALGRIND=1, but there is no valgrind"
	KPT_VALGRIND_DIR=${KPT_VALGRIND_DIR:-$T/valgrind}/$(basename "$0" .sh)
	mkdir -p "$KPT_VALGRIND_DIR" || e2e_error "mkdir $KPT_VALGRIND_DIR"
	cat >"$T/kuproxy-valgrind" <<VALGRIND
#!/bin/sh
exec valgrind --tool=memcheck --error-exitcode=97 --leak-check=full \\
    --show-leak-kinds=definite,indirect \\
    --errors-for-leak-kinds=definite,indirect --num-callers=30 \\
    --child-silent-after-fork=yes \\
    --log-file="$KPT_VALGRIND_DIR/kuproxy-%p.log" "$KUPROXY_BIN" "\$@"
VALGRIND
	chmod 0755 "$T/kuproxy-valgrind"
	KUPROXY_BIN=$T/kuproxy-valgrind
}

# The valgrind logs with an error: a non-zero ERROR SUMMARY or, in the log
# of a process killed before its summary, an error record.
e2e_valgrind_errors() {
	for _vg in "$KPT_VALGRIND_DIR"/kuproxy-*.log; do
		[ -f "$_vg" ] || continue
		grep -qE 'ERROR SUMMARY: [1-9]|^==[0-9]+== (Invalid|Conditional|Use of uninit|Syscall param|Mismatched|Source and dest|Argument)' \
		    "$_vg" && echo "$_vg"
	done
	return 0
}

# The EXIT trap: stop every process we started (by pid, and whatever still
# runs in our namespaces), delete the namespaces, dump the logs if the test
# did not pass, delete the temp dir, and keep the exit status.  Signals are
# ignored meanwhile, so that a reader that went away (| head) or a second ^C
# cannot leave namespaces behind.
e2e_cleanup() {
	_rc=$?
	trap - EXIT
	trap '' HUP INT TERM PIPE
	_victims=$E2E_PIDS
	for _ns in $E2E_NETNS; do
		_victims="$_victims $(ip netns pids "$_ns" 2>/dev/null)"
	done
	for _pid in $_victims; do
		kill -TERM "$_pid" 2>/dev/null
	done
	_deadline=$(($(now_ms) + 3000 * ${KPT_TIME_SCALE:-1}))
	for _pid in $_victims; do
		while kill -0 "$_pid" 2>/dev/null &&
		    [ "$(now_ms)" -lt "$_deadline" ]; do
			sleep 0.05
		done
		kill -KILL "$_pid" 2>/dev/null
	done
	for _ns in $E2E_NETNS; do
		ip netns del "$_ns" 2>/dev/null
	done
	if [ "${KPT_VALGRIND:-0}" = 1 ] && [ "$_rc" != 77 ]; then
		for _vg in $(e2e_valgrind_errors); do
			echo "FAIL: valgrind found errors: $_vg"
			cat "$_vg"
			[ "$_rc" != 0 ] || _rc=1
		done
	fi
	if [ "$_rc" != 0 ] && [ "$_rc" != 77 ] && [ -n "$T" ]; then
		e2e_dump_logs 2>/dev/null
	fi
	if [ -n "$T" ] && [ "${KPT_KEEP:-0}" = 1 ]; then
		echo "kept $T" 2>/dev/null
	elif [ -n "$T" ]; then
		rm -rf "$T"
	fi
	exit "$_rc"
}

e2e_dump_logs() {
	for _log in "$T"/kuproxy*.log; do
		[ -f "$_log" ] || continue
		echo "---- $(basename "$_log") (last 200 lines)"
		tail -n 200 "$_log"
	done
	for _log in "$T"/*.log; do
		case $(basename "$_log") in
		kuproxy*) continue ;;
		esac
		[ -f "$_log" ] || continue
		echo "---- $(basename "$_log") (last 20 lines)"
		tail -n 20 "$_log"
	done
	for _f in "$T"/*.yaml; do
		[ -f "$_f" ] || continue
		echo "---- $(basename "$_f")"
		cat "$_f"
	done
	echo "----"
}

# e2e_netns NAME: make namespace kpt-PID-NAME with lo up (idempotent) and
# set NS_<NAME> to its name, e.g. NS_NODE.
e2e_netns() {
	_name="$KPT_TAG-$1"
	_var="NS_$(echo "$1" | tr '[:lower:]' '[:upper:]')"
	eval "$_var=\$_name"
	case " $E2E_NETNS " in
	*" $_name "*) return 0 ;;
	esac
	ip netns add "$_name" || e2e_error "ip netns add $_name failed"
	E2E_NETNS="$E2E_NETNS $_name"
	nsx "$_name" ip link set lo up || e2e_error "lo up in $_name failed"
}

# e2e_bg NAME NS COMMAND...: start COMMAND in the background inside NS with
# its output in $T/NAME.log; its pid is in LAST_PID.
e2e_bg() {
	_logname=$1
	_ns=$2
	shift 2
	# Emptied here, not by the child's redirection: a caller that waits
	# for a line must never see the previous run's log under this name.
	: >"$T/$_logname.log"
	ip netns exec "$_ns" "$@" >>"$T/$_logname.log" 2>&1 &
	LAST_PID=$!
	E2E_PIDS="$E2E_PIDS $LAST_PID"
}

# e2e_wait_listen NS ADDR:PORT [SECONDS]: wait until something listens on
# ADDR:PORT (TCP) in NS.  Returns 1 on timeout.
e2e_wait_listen() {
	_deadline=$(($(now_ms) + ${3:-5} * 1000))
	while [ "$(now_ms)" -lt "$_deadline" ]; do
		if nsx "$1" ss -Hltn | awk '{ print $4 }' | grep -qxF "$2"; then
			return 0
		fi
		sleep 0.05
	done
	return 1
}

# backend_start NS NAME ADDR:PORT [MODE]: a tcpkit.py backend that answers
# as NAME (modes: hello, after-eof, greet, echo; see tcpkit.py).
backend_start() {
	e2e_bg "backend-$2" "$1" "$KPT_PYTHON" "$TCPKIT" serve \
	    --listen "$3" --name "$2" --mode "${4:-hello}"
	e2e_wait_listen "$1" "$3" 10 ||
	    e2e_error "backend $2 did not listen on $3 (see backend-$2.log)"
}

# nginx_start NS NAME ADDR:PORT...: an nginx-light instance that answers
# every HTTP request with "NAME (ADDR:PORT)".  Single process, everything
# (pid, logs, temp files) under $T/nginx-NAME.
nginx_start() {
	_ns=$1
	_name=$2
	shift 2
	_dir="$T/nginx-$_name"
	mkdir -p "$_dir/tmp"
	{
		echo "daemon off; master_process off; worker_processes 1;"
		echo "pid $_dir/nginx.pid; error_log $_dir/error.log;"
		echo "events { worker_connections 256; }"
		echo "http {"
		echo "  access_log off; client_body_temp_path $_dir/tmp;"
		echo "  proxy_temp_path $_dir/tmp; fastcgi_temp_path $_dir/tmp;"
		echo "  uwsgi_temp_path $_dir/tmp; scgi_temp_path $_dir/tmp;"
		echo "  server {"
		for _l in "$@"; do
			echo "    listen $_l;"
		done
		echo "    default_type text/plain;"
		echo "    location / {"
		echo "      return 200 \"$_name (\$server_addr:\$server_port)\\n\";"
		echo "    }"
		echo "  }"
		echo "}"
	} >"$_dir/nginx.conf"
	command -v nginx >/dev/null 2>&1 ||
	    e2e_error "missing nginx (packaging/install-deps installs it)"
	e2e_bg "nginx-$_name" "$_ns" nginx -p "$_dir" -e "$_dir/error.log" \
	    -c "$_dir/nginx.conf"
	for _l in "$@"; do
		e2e_wait_listen "$_ns" "$_l" 10 ||
		    e2e_error "nginx $_name did not listen on $_l:" \
		    "$(cat "$_dir/error.log" 2>/dev/null)"
	done
}

# client NS ARGS...: run a tcpkit.py client in NS (see tcpkit.py), bounded
# by KPT_CLIENT_TIMEOUT seconds (default 30).
client() {
	_ns=$1
	shift
	timeout "${KPT_CLIENT_TIMEOUT:-30}" ip netns exec "$_ns" \
	    "$KPT_PYTHON" "$TCPKIT" client "$@"
}

# ----------------------------------------------------------------- kuproxy

# kuproxy_start NS SERVICES_FILE MODE [EXTRA FLAGS...]: run kuproxy in the
# foreground inside NS with --relay-mode MODE and --iptables-backend
# $KP_IPTABLES_BACKEND (default none: no rules, clients use the proxy
# ports).  Sets KP_PID and KP_LOG and resets the log mark.
kuproxy_start() {
	_ns=$1
	_file=$2
	_mode=$3
	shift 3
	[ -x "$KUPROXY_BIN" ] || e2e_error "KUPROXY_BIN=$KUPROXY_BIN is not executable"
	_n=1
	while [ -e "$T/kuproxy-$_mode-$_n.log" ]; do
		_n=$((_n + 1))
	done
	# The status socket is a file path, shared by every namespace: each
	# kuproxy gets its own, in the test's temp dir.
	KP_STATUS_SOCKET="$T/status-$_mode-$_n.sock"
	e2e_bg "kuproxy-$_mode-$_n" "$_ns" "$KUPROXY_BIN" \
	    --services-file "$_file" \
	    --iptables-backend "${KP_IPTABLES_BACKEND:-none}" \
	    --status-socket "$KP_STATUS_SOCKET" \
	    --proxy-port-range 20000-20099 --relay-mode "$_mode" -v 2 "$@"
	KP_PID=$LAST_PID
	KP_LOG="$T/kuproxy-$_mode-$_n.log"
	KP_MARK=0
}

kuproxy_alive() {
	kill -0 "$KP_PID" 2>/dev/null
}

# Remember the end of the log: kuproxy_log_since and kuproxy_wait_log look
# only at what comes after it.
kuproxy_mark() {
	KP_MARK=$(wc -l <"$KP_LOG")
}

kuproxy_log_since() {
	tail -n "+$((KP_MARK + 1))" "$KP_LOG"
}

# kuproxy_wait_log ERE [SECONDS]: wait for a log line after the mark that
# matches ERE.  Returns 1 on timeout; fails the test if kuproxy died.
# This wait, kuproxy_port's and kuproxy_stop's are multiplied by
# KPT_TIME_SCALE (default 1; valgrind makes kuproxy ~20 times slower).
kuproxy_wait_log() {
	_deadline=$(($(now_ms) + ${2:-5} * 1000 * ${KPT_TIME_SCALE:-1}))
	while [ "$(now_ms)" -lt "$_deadline" ]; do
		kuproxy_log_since | grep -qE -- "$1" && return 0
		kuproxy_alive || fail "kuproxy exited (waiting for /$1/)"
		sleep 0.02
	done
	return 1
}

# kuproxy_port VAR KEY [SECONDS]: wait until kuproxy logs
# "KEY: listening on proxy port N" and set VAR to N (the latest such line).
kuproxy_port() {
	_deadline=$(($(now_ms) + ${3:-10} * 1000 * ${KPT_TIME_SCALE:-1}))
	while :; do
		_port=$(grep -F "$2: listening on proxy port " "$KP_LOG" |
		    tail -n 1 | sed 's/.*listening on proxy port \([0-9]*\).*/\1/')
		if [ -n "$_port" ]; then
			eval "$1=\$_port"
			return 0
		fi
		kuproxy_alive || fail "kuproxy exited before listening for $2"
		[ "$(now_ms)" -lt "$_deadline" ] ||
		    fail "kuproxy did not listen for $2 within ${3:-10} s"
		sleep 0.02
	done
}

# Stop kuproxy with SIGTERM; it must exit with status 0 within 10 s.
kuproxy_stop() {
	kill -TERM "$KP_PID" 2>/dev/null || fail "kuproxy was not running"
	_deadline=$(($(now_ms) + 10000 * ${KPT_TIME_SCALE:-1}))
	while kuproxy_alive; do
		if [ "$(now_ms)" -ge "$_deadline" ]; then
			kill -KILL "$KP_PID"
			fail "kuproxy did not exit within 10 s of SIGTERM"
		fi
		sleep 0.02
	done
	wait "$KP_PID"
	_st=$?
	[ "$_st" = 0 ] || fail "kuproxy exited with status $_st after SIGTERM"
}

# Replace a file the way editors and kubectl redirections into a temp file
# do: write a sibling, then rename(2) over the original.
replace_file() {
	cat >"$1.new.$$" && mv -f "$1.new.$$" "$1"
}

# ---------------------------------------------------------------- counting

# count WORD FILE: how many lines of FILE have WORD as their second field
# (tcpkit.py client output is "SRC RESULT").
count() {
	awk -v w="$1" '$2 == w { n++ } END { print n + 0 }' "$2"
}

# The distinct results in a client output, sorted, space-separated.
distinct() {
	awk '{ print $2 }' "$1" | sort -u | tr '\n' ' ' | sed 's/ $//'
}

# ----------------------------------------------------------------- network

# e2e_topology: the network the portal tests and the demo use.
#
#   pod1 10.244.1.11 --+
#   pod2 10.244.1.12 --+-- br0 10.244.1.1 [node] vout 192.168.77.1 -- 192.168.77.2 outside
#   pod3 10.244.1.13 --+
#
# Pods and outside route through the node, which forwards (ip_forward is
# set inside the node namespace only); no NAT.  Sets NS_NODE, NS_POD1..3,
# NS_OUT, POD1_IP..POD3_IP, POD_GW_IP, NODE_IP, OUT_IP.
e2e_topology() {
	POD_GW_IP=10.244.1.1
	NODE_IP=192.168.77.1
	OUT_IP=192.168.77.2
	e2e_netns node
	e2e_netns out
	{
		nsx "$NS_NODE" ip link add br0 type bridge forward_delay 0 &&
		nsx "$NS_NODE" ip addr add "$POD_GW_IP/24" dev br0 &&
		nsx "$NS_NODE" ip link set br0 up
	} || e2e_error "bridge in $NS_NODE"
	for _i in 1 2 3; do
		e2e_netns "pod$_i"
		eval "_pod=\$NS_POD$_i"
		eval "POD${_i}_IP=10.244.1.1$_i"
		{
			ip -n "$NS_NODE" link add "vpod$_i" type veth \
			    peer name eth0 netns "$_pod" &&
			ip -n "$NS_NODE" link set "vpod$_i" master br0 up &&
			ip -n "$_pod" addr add "10.244.1.1$_i/24" dev eth0 &&
			ip -n "$_pod" link set eth0 up &&
			ip -n "$_pod" route add default via "$POD_GW_IP"
		} || e2e_error "veth for pod$_i"
	done
	{
		ip -n "$NS_NODE" link add vout type veth peer name eth0 \
		    netns "$NS_OUT" &&
		ip -n "$NS_NODE" addr add "$NODE_IP/24" dev vout &&
		ip -n "$NS_NODE" link set vout up &&
		ip -n "$NS_OUT" addr add "$OUT_IP/24" dev eth0 &&
		ip -n "$NS_OUT" link set eth0 up &&
		ip -n "$NS_OUT" route add default via "$NODE_IP"
	} || e2e_error "veth for outside"
	nsx "$NS_NODE" sysctl -qw net.ipv4.ip_forward=1 ||
	    e2e_error "ip_forward in $NS_NODE"
}

# ----------------------------------------------------------------- portals
#
# For the tests that run kuproxy with iptables rules (tests/e2e/portal_*.sh)
# and the demo: an uplink behind the node, the iptables backends to test,
# reading kuproxy's rules, and clients tallied by who answered.

# e2e_uplink [PREFIX...]: after e2e_topology, make the outside namespace the
# node's uplink, as on a real node: the node's default route points at it
# (so the node can route to any address, and kuproxy's host IP, found on the
# default route's interface, is NODE_IP).  Each PREFIX becomes local to the
# outside namespace, so traffic for it that leaves the node without being
# intercepted ends there, where uplink_start answers it, instead of being
# dropped silently.
e2e_uplink() {
	ip -n "$NS_NODE" route add default via "$OUT_IP" ||
	    e2e_error "default route in $NS_NODE"
	for _prefix in "$@"; do
		ip -n "$NS_OUT" route add local "$_prefix" dev lo ||
		    e2e_error "local route $_prefix in $NS_OUT"
	done
}

# uplink_start PORT...: a backend answering "uplink" on every address of
# the outside namespace, e2e_uplink's prefixes included, for each PORT.  A
# client that reads "uplink" reached the world beyond the node: the node
# did not intercept its connection.
uplink_start() {
	for _port in "$@"; do
		e2e_bg "uplink-$_port" "$NS_OUT" "$KPT_PYTHON" "$TCPKIT" serve \
		    --listen "0.0.0.0:$_port" --name uplink
		e2e_wait_listen "$NS_OUT" "0.0.0.0:$_port" 10 ||
		    e2e_error "uplink did not listen on port $_port"
	done
}

# ipt_backends NS: those of $KPT_IPT_BACKENDS (default "legacy nft") whose
# iptables-restore works inside NS, space-separated.  Says SKIP on stderr
# for the others.
ipt_backends() {
	_usable=""
	for _b in ${KPT_IPT_BACKENDS:-legacy nft}; do
		if printf '*nat\nCOMMIT\n*filter\nCOMMIT\n' |
		    nsx "$1" "iptables-$_b-restore" --noflush >/dev/null 2>&1; then
			_usable="$_usable${_usable:+ }$_b"
		else
			echo "SKIP: iptables-$_b-restore does not work here" >&2
		fi
	done
	echo "$_usable"
}

# relay_mode_for INDEX: the INDEXth (from 0) of $KPT_RELAY_MODES, cycling.
# Portal tests pair each iptables backend with a relay mode instead of
# running every combination: the rules and the relay do not interact.
relay_mode_for() {
	set -- "$1" $KPT_RELAY_MODES
	_i=$(($1 % ($# - 1) + 2))
	eval "echo \${$_i}"
}

# ipt_save NS BACKEND [6]: iptables-save (ip6tables-save with 6) of one
# backend inside NS.
ipt_save() {
	nsx "$1" "ip${3:+6}tables-$2-save" 2>/dev/null
}

# portal_rules NS BACKEND: kuproxy's part of iptables-save, IPv4: the KUBE-
# chains, their rules and the jumps into them, without counters, in
# iptables-save's order (comparable before and after a change).
portal_rules() {
	ipt_save "$1" "$2" | grep -F 'KUBE-' | sed 's/ \[[0-9]*:[0-9]*\]$//'
}

# portal_all_rules NS: every line mentioning KUBE- in either backend, IPv4
# and IPv6, each prefixed with the tool that printed it.
portal_all_rules() {
	for _b in legacy nft; do
		for _f in "" 6; do
			ipt_save "$1" "$_b" "$_f" | grep -F 'KUBE-' |
			    sed "s/^/ip${_f}tables-$_b: /"
		done
	done
}

# portal_wait NS BACKEND ERE present|absent [SECONDS]: wait until
# portal_rules has (or no longer has) a line matching ERE.  Returns 1 on
# timeout.
portal_wait() {
	_deadline=$(($(now_ms) + ${5:-5} * 1000))
	while :; do
		if portal_rules "$1" "$2" | grep -qE -- "$3"; then
			[ "$4" = present ] && return 0
		else
			[ "$4" = absent ] && return 0
		fi
		[ "$(now_ms)" -lt "$_deadline" ] || return 1
		sleep 0.05
	done
}

# tally FILE: a client output summed up as "NAME=COUNT ...", sorted by
# name, e.g. "pod-1=2 pod-2=2 pod-3=2" or "ERROR:refused=1".
tally() {
	awk '{ n[$2]++ } END { for (w in n) print w "=" n[w] }' "$1" |
	    sort | tr '\n' ' ' | sed 's/ $//'
}

# ask NS ADDR:PORT [COUNT [CLIENT ARGS...]]: COUNT (default 1) sequential
# connections from NS, each reading until EOF with a 2 s timeout; prints
# their tally.  Failures are part of the tally, not of the exit status.
# The client's output stays in $T/ask.out.
ask() {
	_ns=$1
	_to=$2
	_n=${3:-1}
	shift 2
	[ $# -gt 0 ] && shift
	client "$_ns" --connect "$_to" --count "$_n" --timeout 2 "$@" \
	    >"$T/ask.out" 2>&1
	tally "$T/ask.out"
}

# expect_tally WHAT WANT NS ADDR:PORT [COUNT [CLIENT ARGS...]]: ask, and
# fail unless the tally is WANT; says ok with WHAT otherwise.  Messages
# start with "$KPT_LABEL: " when it is set (a backend, a relay mode).
expect_tally() {
	_what=${KPT_LABEL:+$KPT_LABEL: }$1
	_want=$2
	shift 2
	_got=$(ask "$@")
	[ "$_got" = "$_want" ] ||
	    fail "$_what ($1 to $2): got '$_got', want '$_want'"
	ok "$_what: $_got"
}

# ask_until WANT MS NS ADDR:PORT [COUNT [CLIENT ARGS...]]: ask again until
# the tally is WANT or MS milliseconds have passed.  Sets ASKED (the last
# tally) and ASKED_MS (when it matched, from the call).  Returns 1 on
# timeout.
ask_until() {
	_want=$1
	_t0=$(now_ms)
	_limit=$(($_t0 + $2))
	shift 2
	while :; do
		ASKED=$(ask "$@")
		ASKED_MS=$(($(now_ms) - _t0))
		[ "$ASKED" = "$_want" ] && return 0
		[ "$(now_ms)" -lt "$_limit" ] || return 1
		sleep 0.05
	done
}

# port_bindable NS PORT: whether a TCP server (socat, with SO_REUSEADDR as
# most servers set it) can listen on 0.0.0.0:PORT in NS.  Prints "free" or
# "in use" (socat's error is in $T/socat-bind.log).
port_bindable() {
	timeout 0.3 ip netns exec "$1" socat -u \
	    "TCP-LISTEN:$2,reuseaddr" OPEN:/dev/null \
	    >"$T/socat-bind.log" 2>&1
	# Still listening when the timeout killed it: the bind worked.
	if [ $? = 124 ]; then
		echo free
	else
		echo "in use"
	fi
}

# Stop kuproxy with SIGKILL, as a crash would: nothing of its own clean-up
# runs.
kuproxy_kill() {
	kill -KILL "$KP_PID" 2>/dev/null || fail "kuproxy was not running"
	wait "$KP_PID" 2>/dev/null
	return 0
}

# ------------------------------------------------------- services files
#
# Services files as `kubectl get services,endpointslices -o yaml` prints
# them: yaml_list wraps items that yaml_service and yaml_slice print.  Every
# service has one TCP port named "http".

# yaml_service NAME CLUSTER-IP PORT [KEY=VALUE...]: one Service in
# namespace default.  CLUSTER-IP may be None (headless) or - (none, for
# ExternalName).  Keys: type (ClusterIP), target (8080), node_port,
# external_ips (comma-separated), lb_ip (status.loadBalancer ingress),
# affinity (None or ClientIP), external_name.
yaml_service() {
	_ys_name=$1 _ys_cip=$2 _ys_port=$3
	shift 3
	_ys_type=ClusterIP _ys_target=8080 _ys_np="" _ys_ext="" _ys_lb=""
	_ys_aff=None _ys_xname=""
	for _kv in "$@"; do
		case $_kv in
		type=*) _ys_type=${_kv#*=} ;;
		target=*) _ys_target=${_kv#*=} ;;
		node_port=*) _ys_np=${_kv#*=} ;;
		external_ips=*) _ys_ext=${_kv#*=} ;;
		lb_ip=*) _ys_lb=${_kv#*=} ;;
		affinity=*) _ys_aff=${_kv#*=} ;;
		external_name=*) _ys_xname=${_kv#*=} ;;
		*) e2e_error "yaml_service: unknown $_kv" ;;
		esac
	done
	cat <<YAML
- apiVersion: v1
  kind: Service
  metadata:
    name: $_ys_name
    namespace: default
  spec:
YAML
	[ "$_ys_cip" = - ] || echo "    clusterIP: $_ys_cip"
	[ -z "$_ys_xname" ] || echo "    externalName: $_ys_xname"
	if [ -n "$_ys_ext" ]; then
		echo "    externalIPs:"
		echo "$_ys_ext" | tr ',' '\n' | sed 's/^/    - /'
	fi
	if [ "$_ys_type" != ExternalName ]; then
		cat <<YAML
    ports:
    - name: http
${_ys_np:+      nodePort: $_ys_np
}      port: $_ys_port
      protocol: TCP
      targetPort: $_ys_target
    selector:
      app: $_ys_name
    sessionAffinity: $_ys_aff
YAML
	fi
	echo "    type: $_ys_type"
	if [ -n "$_ys_lb" ]; then
		cat <<YAML
  status:
    loadBalancer:
      ingress:
      - ip: $_ys_lb
YAML
	fi
}

# yaml_slice SERVICE PORT ADDRESS[:notready]...: one EndpointSlice of
# SERVICE with endpoint port PORT (named "http"); an address with
# ":notready" has conditions.ready false.
yaml_slice() {
	_ys_name=$1 _ys_port=$2
	shift 2
	cat <<YAML
- addressType: IPv4
  apiVersion: discovery.k8s.io/v1
  endpoints:
YAML
	for _a in "$@"; do
		_ys_ready=true
		case $_a in
		*:notready) _ys_ready=false _a=${_a%:notready} ;;
		esac
		cat <<YAML
  - addresses:
    - $_a
    conditions:
      ready: $_ys_ready
      serving: $_ys_ready
      terminating: false
YAML
	done
	cat <<YAML
  kind: EndpointSlice
  metadata:
    labels:
      kubernetes.io/service-name: $_ys_name
    name: $_ys_name-e2e01
    namespace: default
  ports:
  - name: http
    port: $_ys_port
    protocol: TCP
YAML
}

# yaml_list: the items on stdin, wrapped in a List.
yaml_list() {
	echo "apiVersion: v1"
	echo "items:"
	cat
	echo "kind: List"
	echo "metadata:"
	echo "  resourceVersion: \"\""
}
