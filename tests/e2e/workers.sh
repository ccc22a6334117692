#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# --workers: several event loops, each with its own SO_REUSEPORT socket on
# every proxy port, behave as one proxy.
#  1. --workers 2: two threads; kuproxy logs it.
#  2. 60 TCP connections to a round-robin service: exactly 20 per
#     endpoint, although the kernel shared them out over both workers
#     (kuproxy_worker_sessions_total counts sessions on each).
#  3. ClientIP affinity: 20 connections from one client reach one
#     endpoint, whichever worker accepts them.
#  4. UDP: 30 clients (a fresh source port each) all answered, 15 per
#     endpoint: the balancer is shared by the workers' sockets too.
#  5. --max-connections counts over every worker: 6 connections held open
#     with a cap of 4 leave exactly 2 reset.
#  6. SIGTERM with connections open on the workers: exit 0 once drained.
#  7. --workers 1: one thread, the same answers.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/opslib.sh"
. "$KUPROXY_SRCDIR/tests/e2e/dnslib.sh"
ops_init
for _tool in dig dnsmasq; do
	command -v "$_tool" >/dev/null 2>&1 ||
	    e2e_error "missing $_tool (packaging/install-deps installs it)"
done
UDPKIT="$KUPROXY_SRCDIR/tests/e2e/udpkit.py"
e2e_netns node

backend_start "$NS_NODE" pod-a 127.0.0.11:8080
backend_start "$NS_NODE" pod-b 127.0.0.12:8080
backend_start "$NS_NODE" pod-c 127.0.0.13:8080
backend_start "$NS_NODE" hold-a 127.0.0.21:8080 echo
dnsmasq_start "$NS_NODE" dns-a 127.0.0.31
dnsmasq_start "$NS_NODE" dns-b 127.0.0.32

{
	yaml_service web 10.96.0.10 80
	yaml_slice web 8080 127.0.0.11 127.0.0.12 127.0.0.13
	yaml_service sticky 10.96.0.11 80 affinity=ClientIP
	yaml_slice sticky 8080 127.0.0.11 127.0.0.12 127.0.0.13
	yaml_service hold 10.96.0.12 80
	yaml_slice hold 8080 127.0.0.21
	ops_service dns 53 10.96.0.53 UDP
	ops_slice dns UDP 127.0.0.31 127.0.0.32 | sed 's/port: 8080/port: 53/'
} | yaml_list >"$T/services.yaml"

# threads PID: the number of threads of PID.
threads() {
	awk '/^Threads:/ { print $2 }' "/proc/$1/status"
}

# hold N PORT: N connections to PORT kept open until $T/hold.stop exists;
# each says "up" once connected.
hold() {
	: >"$T/hold.out"
	rm -f "$T/hold.stop"
	nsx "$NS_NODE" timeout 20 "$KPT_PYTHON" - "$1" "$2" "$T/hold.stop" \
	    >"$T/hold.out" 2>&1 <<'PY' &
import os, socket, sys, time
n, port, stop = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.sendall(b"x")
    try:
        print("up" if s.recv(1) == b"x" else "closed", flush=True)
    except OSError as e:
        print("reset" if isinstance(e, ConnectionResetError) else
              "error", flush=True)
    socks.append(s)
while not os.path.exists(stop):
    time.sleep(0.05)
PY
	HOLD_PID=$!
}

# held_lines N, held_up N: whether hold has reported on N connections,
# or N are up.
held_lines() {
	[ "$(wc -l <"$T/hold.out")" -ge "$1" ]
}
held_up() {
	[ "$(grep -c '^up$' "$T/hold.out")" -ge "$1" ]
}

# ------------------------------------------------------------ --workers 2
kuproxy_start "$NS_NODE" "$T/services.yaml" splice --workers 2 \
    --max-connections 4
kuproxy_wait_log "2 workers: one event loop each" 10 ||
    fail "kuproxy did not say it runs 2 workers"
kuproxy_port web default/web:http/TCP
kuproxy_port sticky default/sticky:http/TCP
kuproxy_port hold default/hold:http/TCP
kuproxy_port dns default/dns:udp/UDP
n=$(threads "$KP_PID")
[ "$n" -ge 2 ] || fail "kuproxy runs $n thread(s) with --workers 2"
ok "--workers 2: $n threads"

expect_tally "60 connections over two workers" \
    "pod-a=20 pod-b=20 pod-c=20" "$NS_NODE" "127.0.0.1:$web" 60
metrics_fetch m1
w0=$(metrics_get m1 'kuproxy_worker_sessions_total{worker="0"}')
w1=$(metrics_get m1 'kuproxy_worker_sessions_total{worker="1"}')
[ "${w0%.*}" -gt 0 ] && [ "${w1%.*}" -gt 0 ] ||
    fail "the kernel did not share connections out: worker 0 $w0, 1 $w1"
[ $((${w0%.*} + ${w1%.*})) = 60 ] ||
    fail "workers started $w0 + $w1 sessions for 60 connections"
ok "sessions by worker: $w0 and $w1"

ask "$NS_NODE" "127.0.0.1:$sticky" 20 >/dev/null
[ "$(distinct "$T/ask.out" | wc -w)" = 1 ] ||
    fail "affinity broken over workers: $(tally "$T/ask.out")"
ok "ClientIP affinity over workers: $(tally "$T/ask.out")"

: >"$T/dns.out"
i=0
while [ $i -lt 30 ]; do
	who "$NS_NODE" "127.0.0.1#$dns" >>"$T/dns.out"
	i=$((i + 1))
done
got=$(sort "$T/dns.out" | uniq -c | awk '{ print $2 "=" $1 }' | tr '\n' ' ')
[ "$got" = "127.0.0.31=15 127.0.0.32=15 " ] ||
    fail "30 UDP clients over two workers: $got"
ok "30 UDP clients over two workers: $got"

hold 6 "$hold"
wait_until 10 held_lines 6 ||
    fail "held connections: $(tr '\n' ' ' <"$T/hold.out")"
up=$(grep -c '^up$' "$T/hold.out")
[ "$up" = 4 ] ||
    fail "--max-connections 4 over two workers let $up of 6 through:" \
    "$(tr '\n' ' ' <"$T/hold.out")"
ok "--max-connections 4 over two workers: 4 of 6 served, the rest reset"
touch "$T/hold.stop"
wait "$HOLD_PID" 2>/dev/null

hold 4 "$hold"
wait_until 10 held_up 4 ||
    fail "held connections: $(tr '\n' ' ' <"$T/hold.out")"
kill -TERM "$KP_PID"
kuproxy_wait_log "stopping; 4 connections may finish" 5 ||
    fail "the drain did not count 4 connections"
touch "$T/hold.stop"
wait "$HOLD_PID" 2>/dev/null
kuproxy_wait_exit 10 || fail "kuproxy did not exit after its connections"
[ "$KP_EXIT" = 0 ] || fail "kuproxy exited with $KP_EXIT after draining"
ok "SIGTERM: 4 connections on the workers drained, exit 0"

# ------------------------------------------------------------ --workers 1
kuproxy_start "$NS_NODE" "$T/services.yaml" copy --workers 1
kuproxy_port web default/web:http/TCP
[ "$(threads "$KP_PID")" = 1 ] ||
    fail "--workers 1 runs $(threads "$KP_PID") threads"
expect_tally "--workers 1: one thread" "pod-a=2 pod-b=2 pod-c=2" \
    "$NS_NODE" "127.0.0.1:$web" 6
kuproxy_stop
