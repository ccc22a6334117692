#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Byte streams stay exact under awkward writes, a lossy and slow path, and
# idle clients (fault matrix rows 9 and 4, and the issue's "delay and loss
# between node and pods").  Pods are network namespaces (e2e_topology).
#  9.  In each relay mode, to an echo backend: 4 MiB written in a seeded
#      mix of 1-byte and 64 KiB writes comes back with the same sha256; then
#      32 MiB is echoed while strace sums what kuproxy's recvfrom and
#      splice calls moved: in splice mode under 5 % of the 64 MiB passes
#      through user space (recv starts each burst), and kuproxy's RSS
#      grows by less than 1 MiB.
#  L.  Loss and delay between node and pod: pod 2's namespace drops 2 % of
#      the packets each way (iptables -m statistic), and its backend sits
#      behind a relay that delivers every chunk 20 ms late and stalls for
#      1 s after the first 1 MiB towards the client.  4 MiB echoed and a
#      mixed-write stream through it are byte-exact.
#  4.  --tcp-idle-timeout 2s: 200 clients connect and send nothing while
#      a good client makes 100 request/response exchanges: every idle
#      client is closed within 3 s, the good client sees no error (its
#      p99 is reported), and the descriptors come back to the baseline.
# After each case: kuproxy alive, a healthy service answers, sockets back
# at the baseline.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/faultlib.sh"
fault_init
command -v strace >/dev/null 2>&1 ||
    e2e_error "missing strace (packaging/install-deps installs it)"
e2e_topology
IPT=iptables
printf '*filter\nCOMMIT\n' | nsx "$NS_POD2" iptables-restore --noflush \
    2>/dev/null || IPT=iptables-legacy
printf '*filter\nCOMMIT\n' | nsx "$NS_POD2" "$IPT-restore" --noflush \
    2>/dev/null || e2e_skip "no working iptables in a network namespace"

backend_start "$NS_POD1" echo-1 "$POD1_IP:8080" echo
backend_start "$NS_POD2" echo-2 127.0.0.1:8080 echo
fault_bg delay "$NS_POD2" delay-relay --listen "$POD2_IP:8080" \
    --to 127.0.0.1:8080 --delay-ms 20 --stall-after 1048576 --stall-ms 1000
e2e_wait_listen "$NS_POD2" "$POD2_IP:8080" 10 ||
    e2e_error "the delay relay did not listen"
for chain in INPUT OUTPUT; do
	nsx "$NS_POD2" "$IPT" -w -A "$chain" -p tcp -m statistic \
	    --mode random --probability 0.02 -j DROP ||
	    e2e_error "loss in $NS_POD2"
done
backend_start "$NS_NODE" probe-0 127.0.0.12:8080
# The good client of case 4 has a backend of its own, so that its times
# are kuproxy's and not those of a Python backend busy with 200 threads.
backend_start "$NS_NODE" good-0 127.0.0.13:8080 echo

{
	yaml_service echo 10.96.9.1 80
	yaml_slice echo 8080 "$POD1_IP"
	yaml_service lossy 10.96.9.2 80
	yaml_slice lossy 8080 "$POD2_IP"
	yaml_service probe 10.96.9.3 80
	yaml_slice probe 8080 127.0.0.12
	yaml_service good 10.96.9.4 80
	yaml_slice good 8080 127.0.0.13
} | yaml_list >"$T/services.yaml"

# echo_check WHAT ADDR:PORT BYTES: tcpkit's echo client; the sha256 of
# what came back equals what was sent.
echo_check() {
	KPT_CLIENT_TIMEOUT=60 client "$NS_NODE" --connect "$2" --mode echo \
	    --bytes "$3" --timeout 30 >"$T/echo.out" 2>&1 ||
	    fail "$1: $(cat "$T/echo.out")"
	# "- sent N SHA received M SHA SECONDS"
	set -- "$1" "$2" "$3" $(cat "$T/echo.out")
	[ "$6" = "$3" ] && [ "$9" = "$3" ] && [ "$7" = "${10}" ] ||
	    fail "$1: sent $6 bytes sha256 $7, got back $9 sha256 ${10}"
	ECHO_SECS=${11}
}

# mixed_check WHAT ADDR:PORT BYTES SEED: faultkit's mixed writes, echoed.
mixed_check() {
	KPT_CLIENT_TIMEOUT=60 faultkit "$NS_NODE" mixed --connect "$2" \
	    --bytes "$3" --seed "$4" --timeout 30 >"$T/mixed.out" 2>&1 ||
	    fail "$1: $(cat "$T/mixed.out")"
	# sent N SHA received M SHA writes W small K end E
	set -- "$1" "$2" "$3" $(cat "$T/mixed.out")
	[ "$5" = "$3" ] && [ "$8" = "$3" ] && [ "$6" = "$9" ] &&
	    [ "${15}" = eof ] ||
	    fail "$1: mixed writes came back wrong: $(cat "$T/mixed.out")"
	MIXED_WRITES=${11}
	MIXED_SMALL=${13}
}

set -- $KPT_RELAY_MODES
first_mode=$1
for mode in $KPT_RELAY_MODES; do
	kuproxy_start "$NS_NODE" "$T/services.yaml" "$mode" \
	    --tcp-idle-timeout 2s
	kuproxy_port echo default/echo:http/TCP
	kuproxy_port lossy default/lossy:http/TCP
	kuproxy_port probe default/probe:http/TCP
	kuproxy_port good default/good:http/TCP
	fd_baseline

	# ------------------------------------------- 9. mixed write sizes
	mixed_check "$mode: mixed writes" "127.0.0.1:$echo" 4194304 7
	ok "$mode: 4 MiB in $MIXED_WRITES writes ($MIXED_SMALL of 1 byte," \
	    "the rest 64 KiB) echoed byte-exact"

	# One transfer to warm the pools, then the measured one.
	echo_check "$mode: warm-up" "127.0.0.1:$echo" 4194304
	rss0=$(rss_kb "$KP_PID")
	strace -f -qq -e trace=recvfrom,sendto,splice -e signal=none \
	    -e abbrev=all -s 0 -p "$KP_PID" -o "$T/strace-$mode" &
	strace_pid=$!
	sleep 0.5
	echo_check "$mode: 32 MiB" "127.0.0.1:$echo" 33554432
	rss1=$(rss_kb "$KP_PID")
	ok "$mode: 32 MiB echoed byte-exact in $ECHO_SECS s; RSS" \
	    "$rss0 -> $rss1 KiB"
	rss_bounded "$mode: 32 MiB" "$rss0" "$rss1" 1024
	kill -TERM "$strace_pid"
	wait "$strace_pid" 2>/dev/null
	# Bytes each call moved: "PID recvfrom(...) = N".
	moved() {
		awk -v c="$1(" 'index($2, c) == 1 && $NF ~ /^[0-9]+$/ {
		    n += $NF } END { printf "%.0f\n", n }' "$T/strace-$mode"
	}
	by_splice=$(moved splice)
	by_recv=$(moved recvfrom)
	# Both directions: 64 MiB crossed kuproxy.  The relay reads the first
	# bytes of a burst with recv and splices once a read fills its
	# buffer, so copies stay a small fraction.
	if [ "$mode" = splice ]; then
		[ "$by_splice" -gt 0 ] ||
		    fail "$mode: strace saw no splice (did it attach?)"
		[ $((by_recv * 20)) -lt 67108864 ] ||
		    fail "$mode: $by_recv of 64 MiB went through recv" \
		    "(user space), $by_splice through splice"
	fi
	# Each spliced byte is counted twice: into a pipe, out of it.
	ok "$mode: of 64 MiB relayed, $by_recv bytes read with recv" \
	    "(copied), $((by_splice / 2)) spliced"
	still_healthy "$mode: write sizes" "127.0.0.1:$probe"

	# ---------------------------------------------- L. loss and delay
	echo_check "$mode: lossy path" "127.0.0.1:$lossy" 4194304
	lossy_secs=$ECHO_SECS
	mixed_check "$mode: lossy path, mixed writes" "127.0.0.1:$lossy" \
	    1048576 11
	drops=$(nsx "$NS_POD2" "$IPT" -w -L -v -x -n | awk '/statistic/ { n += $1 }
	    END { print n + 0 }')
	[ "$drops" -gt 0 ] || fail "$mode: the loss rules dropped nothing"
	ok "$mode: 2 % loss each way ($drops packets dropped), 20 ms delay and" \
	    "a 1 s stall: 4 MiB echoed byte-exact in $lossy_secs s, and 1 MiB" \
	    "of mixed writes ($MIXED_SMALL of 1 byte)"
	still_healthy "$mode: loss and delay" "127.0.0.1:$probe"

	if [ "$mode" != "$first_mode" ]; then
		kuproxy_stop
		continue
	fi

	# --------------------------------------------- 4. idle clients
	fault_bg idle "$NS_NODE" hold-many --connect "127.0.0.1:$echo" \
	    --count 200 --seconds 3
	idle_pid=$LAST_PID
	faultkit "$NS_NODE" rtt --connect "127.0.0.1:$good" --count 100 \
	    --interval-ms 20 --timeout 5 >"$T/rtt.out" 2>&1 ||
	    fail "the good client: $(cat "$T/rtt.out")"
	wait "$idle_pid"
	# released open O reset R eof E
	set -- $(grep released "$T/idle.log")
	[ "$3" = 0 ] && [ "$5" = 0 ] && [ "$7" = 200 ] ||
	    fail "200 idle clients 3 s after connecting: $(cat "$T/idle.log")"
	set -- $(tail -n 1 "$T/rtt.out")
	[ "$1 $2 $3 $4" = "ok 100 errors 0" ] ||
	    fail "the good client beside 200 idle ones: $(cat "$T/rtt.out")"
	p99=${8%.*}
	[ "$p99" -lt 500 ] ||
	    fail "the good client's p99 was $8 ms beside 200 idle clients"
	ok "200 idle clients all closed (FIN) within 3 s; the good client" \
	    "made 100 exchanges, 0 errors, p50 $6 ms p99 $8 ms"
	still_healthy "idle clients" "127.0.0.1:$probe"

	kuproxy_stop
done
