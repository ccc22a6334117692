#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# A slow rule sync must not stop the relays: kuproxy runs with
# iptables-legacy portals and a PATH whose iptables-legacy-restore, while
# $T/slow exists, sleeps $SLOW_S seconds before running the real one (and
# logs when each run starts and ends to $T/restores.log).  Services "probe"
# (TCP 80 and UDP 53 on 10.96.0.10, one pod) and "gone" are there from the
# start.
#  1. A client in pod1 connects to probe's ClusterIP (TCP, reads the
#     backend's name) and exchanges a datagram with it (UDP echo) every
#     50 ms for the whole test: every request is answered, none slower than
#     $BOUND_MS (a sync on the event loop made them wait the whole sleep).
#  2. Service "a" arrives: a sync starts (S1) and sleeps.  Meanwhile "gone"
#     is removed and "b" added, then "c" added, in two more file edits:
#     kuproxy applies both tables within a second, while S1 still sleeps.
#     During S1 gone's proxy port is still held and its rule is there; a's
#     rule is not (it lands only after the sleep).
#  3. After S1, a's rule is in; exactly one more sync (S2) starts for the
#     two edits made during S1, and gone's listener keeps its port while S2
#     sleeps (its rule still points at it).  After S2, b's and c's rules
#     are in, gone's rule is out and only then its listener closes.
#     kubeproxy_sync_proxy_rules_duration_seconds_count rose by exactly 2.
#  4. a, b and c answer through their ClusterIPs; SIGTERM removes every
#     rule.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/faultlib.sh"
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/dnslib.sh"
dns_init
real_restore=$(command -v iptables-legacy-restore ||
    echo /usr/sbin/iptables-legacy-restore)
[ -x "$real_restore" ] || e2e_skip "no iptables-legacy-restore"
e2e_topology
[ -n "$(KPT_IPT_BACKENDS=legacy ipt_backends "$NS_NODE")" ] ||
    e2e_skip "iptables-legacy does not work in a network namespace"
XTABLES_LOCKFILE="$T/xtables.lock"
export XTABLES_LOCKFILE

SLOW_S=3
SCALE=${KPT_TIME_SCALE:-1}
BOUND_MS=$((500 * SCALE))
PROBE_IP=10.96.0.10

mkdir "$T/bin" || e2e_error "mkdir $T/bin"
cat >"$T/bin/iptables-legacy-restore" <<EOF
#!/bin/sh
if [ -e "$T/slow" ]; then
	echo "start \$(date +%s%N)" >>"$T/restores.log"
	sleep $SLOW_S
	"$real_restore" "\$@"
	rc=\$?
	echo "end \$(date +%s%N)" >>"$T/restores.log"
	exit \$rc
fi
exec "$real_restore" "\$@"
EOF
chmod +x "$T/bin/iptables-legacy-restore"
PATH="$T/bin:$PATH"
export PATH

backend_start "$NS_POD2" probe-0 "$POD2_IP:8080"
udp_echo_start "$NS_POD2" probe-0 "$POD2_IP:5353"
backend_start "$NS_POD3" pod-3 "$POD3_IP:8080"

# services NAME...: probe, plus the named TCP services (gone a b c), each
# with its own ClusterIP and pod3 behind it.
services() {
	{
		udp_service probe "$PROBE_IP" http:TCP:80:8080 echo:UDP:53:5353
		udp_slice probe "http:TCP:8080 echo:UDP:5353" "$POD2_IP"
		for _s in "$@"; do
			case $_s in
			gone) _ip=10.96.0.30 ;;
			a) _ip=10.96.0.21 ;;
			b) _ip=10.96.0.22 ;;
			c) _ip=10.96.0.23 ;;
			esac
			udp_service "$_s" "$_ip" http:TCP:80:8080
			udp_slice "$_s" "http:TCP:8080" "$POD3_IP"
		done
	} | udp_list
}

# rule_for IP: whether kuproxy's nat rules send IP somewhere.
rule_for() {
	portal_rules "$NS_NODE" legacy | grep -qF -- "-d $1/32"
}

# held PORT: whether kuproxy still holds TCP port PORT (a removed port's
# listener is paused, out of LISTEN, but keeps its port until it closes):
# another program's bind fails with EADDRINUSE.
held() {
	nsx "$NS_NODE" "$KPT_PYTHON" -c '
import errno, socket, sys
s = socket.socket()
try:
    s.bind(("0.0.0.0", int(sys.argv[1])))
except OSError as e:
    sys.exit(0 if e.errno == errno.EADDRINUSE else 2)
sys.exit(1)' "$1"
}

# restores WORD: how many slowed restores logged WORD (start or end).
restores() {
	grep -c "^$1 " "$T/restores.log" 2>/dev/null || true
}

# wait_restores WORD N SECONDS: until N slowed restores logged WORD.
wait_restores() {
	_deadline=$(($(now_ms) + $3 * 1000 * SCALE))
	until [ "$(restores "$1")" -ge "$2" ]; do
		[ "$(now_ms)" -lt "$_deadline" ] || return 1
		kuproxy_alive || fail "kuproxy died"
		sleep 0.02
	done
}

file="$T/services.yaml"
services gone >"$file"
: >"$T/restores.log"
rm -f "$T/slow" "$T/probe.stop"
KP_IPTABLES_BACKEND=legacy kuproxy_start "$NS_NODE" "$file" splice \
    --iptables-min-sync-period 100ms --iptables-sync-period 60s
kuproxy_port probe default/probe:http/TCP
kuproxy_port gone_port default/gone:http/TCP
portal_wait "$NS_NODE" legacy "-d 10\.96\.0\.30/32" present 5 ||
    fail "no rule for gone at start"
ask_until "probe-0=1" 5000 "$NS_POD1" "$PROBE_IP:80" ||
    fail "probe not served through its ClusterIP: $ASKED"
nsx "$NS_POD1" "$KPT_PYTHON" "$UDPKIT" send --to "$PROBE_IP:53" --size 32 \
    >"$T/udp-first.out" 2>&1 ||
    fail "probe's UDP port: $(cat "$T/udp-first.out")"

# 1. The probe, in the background for the rest of the test.
cat >"$T/probe.py" <<'EOF'
import os, socket, sys, time
proto, to, stop = sys.argv[1:4]
host, _, port = to.rpartition(":")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(10)
end = time.monotonic() + 60
n = 0
while not os.path.exists(stop) and time.monotonic() < end:
    t = time.monotonic()
    try:
        if proto == "tcp":
            s = socket.create_connection((host, int(port)), timeout=10)
            data = b""
            while True:
                d = s.recv(256)
                if not d:
                    break
                data += d
            s.close()
            res = data.decode().strip() or "ERROR:empty"
        else:
            payload = b"probe %d" % n
            u.sendto(payload, (host, int(port)))
            while u.recvfrom(256)[0] != payload:
                pass
            res = "ok"
    except OSError as e:
        res = "ERROR:" + type(e).__name__
    print("%s %d %s" % (proto, (time.monotonic() - t) * 1000, res),
          flush=True)
    n += 1
    time.sleep(0.05)
EOF
e2e_bg probe-tcp "$NS_POD1" timeout 90 "$KPT_PYTHON" "$T/probe.py" tcp \
    "$PROBE_IP:80" "$T/probe.stop"
probe_tcp=$LAST_PID
e2e_bg probe-udp "$NS_POD1" timeout 90 "$KPT_PYTHON" "$T/probe.py" udp \
    "$PROBE_IP:53" "$T/probe.stop"
probe_udp=$LAST_PID

# probe_verdict: stop the probe and check what it saw.
probe_verdict() {
	touch "$T/probe.stop"
	wait "$probe_tcp" "$probe_udp"
	cat "$T/probe-tcp.log" "$T/probe-udp.log" >"$T/probe.out"
	_tcp=$(grep -c '^tcp ' "$T/probe.out")
	_udp=$(grep -c '^udp ' "$T/probe.out")
	_bad=$(grep -cv -e '^tcp [0-9]* probe-0$' -e '^udp [0-9]* ok$' \
	    "$T/probe.out")
	_tcp_max=$(awk '$1 == "tcp" && $2 > m { m = $2 } END { print m + 0 }' \
	    "$T/probe.out")
	_udp_max=$(awk '$1 == "udp" && $2 > m { m = $2 } END { print m + 0 }' \
	    "$T/probe.out")
	echo "probe: $_tcp TCP and $_udp UDP requests, slowest TCP" \
	    "${_tcp_max} ms, UDP ${_udp_max} ms, $_bad failed"
	[ "$_tcp_max" -lt "$BOUND_MS" ] && [ "$_udp_max" -lt "$BOUND_MS" ] ||
	    fail "probe: a request took ${_tcp_max} ms (TCP) / ${_udp_max} ms" \
	    "(UDP) while syncs slept $SLOW_S s; the bound is $BOUND_MS ms"
	[ "$_bad" = 0 ] ||
	    fail "probe: $_bad failed: $(grep -v -e ' probe-0$' -e ' ok$' \
	    "$T/probe.out" | head -n 5)"
	[ "$_tcp" -ge 20 ] && [ "$_udp" -ge 20 ] ||
	    fail "probe: only $_tcp TCP and $_udp UDP requests"
	ok "probe through the ClusterIP every 50 ms: $_tcp TCP, $_udp UDP" \
	    "requests, all answered, slowest ${_tcp_max} ms / ${_udp_max} ms"
}
sleep 0.5

# 2. a arrives; S1 sleeps while gone goes and b and c arrive.
touch "$T/slow"
syncs0=$(metric kubeproxy_sync_proxy_rules_duration_seconds_count)
kuproxy_mark
services gone a | replace_file "$file"
wait_restores start 1 3 || fail "no sync started for a within 3 s"
t_s1=$(now_ms)
services a b | replace_file "$file"
kuproxy_wait_log "default/gone:http/TCP: removed|table applied.*removed=1" \
    "$((SLOW_S + 2))" || true
services a b c | replace_file "$file"
kuproxy_wait_log "default/c:http/TCP: listening on proxy port" \
    "$((SLOW_S + 2))" || true
applied_ms=$(($(now_ms) - t_s1))
if [ "$applied_ms" -ge $((1000 * SCALE)) ]; then
	probe_verdict
	fail "the edits made during a sync were applied after $applied_ms ms"
fi
[ "$(restores end)" = 0 ] || e2e_error "S1 ended before the checks (slow host?)"
held "$gone_port" || fail "gone's listener closed during S1"
rule_for 10.96.0.30 || fail "gone's rule vanished during S1"
rule_for 10.96.0.21 && fail "a's rule is in before S1's restore ran"
ok "the edits during S1 applied within $applied_ms ms; gone still" \
    "holds port $gone_port and keeps its rule; no rule for a yet"

# 3. S1 ends; S2 for the edits made meanwhile.
wait_restores end 1 "$((SLOW_S + 3))" || fail "S1 did not end"
portal_wait "$NS_NODE" legacy "-d 10\.96\.0\.21/32" present 2 ||
    fail "a's rule not in after S1"
wait_restores start 2 3 || fail "no second sync after the edits during S1"
[ "$(restores end)" = 1 ] || e2e_error "S2 ended before the checks"
held "$gone_port" || fail "gone's listener closed before S2 removed its rule"
rule_for 10.96.0.30 || fail "gone's rule vanished before S2's restore"
kuproxy_log_since | grep -q "default/gone:http/TCP: closed" &&
    fail "gone closed before the sync that drops its rule"
ok "S1 wrote a's rule; S2 started for both edits; gone still holds its port"
wait_restores end 2 "$((SLOW_S + 3))" || fail "S2 did not end"
portal_wait "$NS_NODE" legacy "-d 10\.96\.0\.30/32" absent 2 ||
    fail "gone's rule still in after S2"
rule_for 10.96.0.22 && rule_for 10.96.0.23 ||
    fail "b's or c's rule missing after S2: $(portal_rules "$NS_NODE" legacy)"
kuproxy_wait_log "default/gone:http/TCP: closed" 2 ||
    fail "gone's listener not closed after S2"
_n=0
while held "$gone_port"; do
	_n=$((_n + 1))
	[ "$_n" -lt 50 ] || fail "port $gone_port still held after gone closed"
	sleep 0.02
done
rm -f "$T/slow"
sleep 1
syncs=$(($(metric kubeproxy_sync_proxy_rules_duration_seconds_count) -
    syncs0))
[ "$syncs" = 2 ] || fail "$syncs syncs for three edits, want 2"
[ "$(restores start)" = 2 ] || fail "$(restores start) slowed restores, want 2"
ok "S2 wrote b's and c's rules and dropped gone's, then gone closed;" \
    "$syncs syncs in all"

probe_verdict

# 4. Served, and cleaned up.
expect_tally "a by ClusterIP" "pod-3=1" "$NS_POD1" 10.96.0.21:80
expect_tally "b by ClusterIP" "pod-3=1" "$NS_POD1" 10.96.0.22:80
expect_tally "c by ClusterIP" "pod-3=1" "$NS_POD1" 10.96.0.23:80
kuproxy_stop
[ -z "$(portal_rules "$NS_NODE" legacy)" ] ||
    fail "rules left after SIGTERM: $(portal_rules "$NS_NODE" legacy)"
ok "SIGTERM removed every rule"
