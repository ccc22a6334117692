#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# iptables under contention and other programs' rules (reliability matrix
# rows 20 a/d and 21), on e2e_topology's network with iptables-legacy and
# iptables-nft ($KPT_IPT_BACKENDS).  Rows 20 b (a failing iptables-restore)
# and 20 c (a chain flushed by hand) are ops_healthz.sh and
# portal_lifecycle.sh.
#  1. Foreign rules first: in nat PREROUTING (one before kuproxy's jump,
#     inserted after it started, one after), a foreign chain jumped to from
#     nat OUTPUT, nat POSTROUTING, filter INPUT and FORWARD, mangle.  After
#     kuproxy's first sync and two periodic ones, iptables-save without
#     kuproxy's lines (KUBE-), comments and counters is byte for byte what it
#     was before kuproxy started.
#  2. (legacy only: nft has no xtables lock) Another program holds the
#     xtables lock ($XTABLES_LOCKFILE, the test's own file) for 10 s while a
#     new service "fresh" arrives.  Meanwhile clients of web through its
#     ClusterIP are all served, none slower than 2.5 s (a restore waiting
#     for the lock would freeze the event loop for 5 s per attempt); kuproxy
#     says the lock is held and retries with back-off (a bounded number of
#     lines; the restore failure counter rises).  Once the lock is free,
#     fresh's portal works within 3 s.
#  3. kill -9 while a client loops, then a new kuproxy with a different
#     --proxy-port-range: every service is reachable through its portal;
#     the rules are the same in number as before, none twice, the five
#     jumps once each, and every proxy port in them from the new range.
#  4. SIGTERM: iptables-save (comments and counters aside) is exactly the
#     foreign rules of step 1.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/fault_cp_lib.sh"
e2e_init
command -v flock >/dev/null 2>&1 || e2e_error "missing flock (util-linux)"
e2e_topology
e2e_uplink 10.96.0.0/12
uplink_start 80
backends=$(ipt_backends "$NS_NODE")
[ -n "$backends" ] || e2e_skip "no iptables backend works in a namespace"
# Our own lock file: /run/xtables.lock is shared with every test running
# in parallel, and with the host.
XTABLES_LOCKFILE="$T/xtables.lock"
export XTABLES_LOCKFILE

backend_start "$NS_POD1" pod-1 "$POD1_IP:8080"
backend_start "$NS_POD2" pod-2 "$POD2_IP:8080"
backend_start "$NS_POD3" pod-3 "$POD3_IP:8080"

file="$T/services.yaml"
services() {	# [fresh]
	{
		yaml_service web 10.96.0.10 80
		yaml_slice web 8080 "$POD1_IP"
		yaml_service np 10.96.0.50 80 type=NodePort node_port=30080
		yaml_slice np 8080 "$POD3_IP"
		if [ "${1:-}" = fresh ]; then
			yaml_service fresh 10.96.0.40 80
			yaml_slice fresh 8080 "$POD2_IP"
		fi
	} | yaml_list
}

# foreign_rules BACKEND: what another program (a CNI, a firewall) holds.
foreign_rules() {
	_i="nsx $NS_NODE iptables-$1"
	{
		$_i -t nat -A PREROUTING -s 198.51.100.7/32 -p tcp --dport 9999 \
		    -m comment --comment "foreign: not kuproxy's" \
		    -j DNAT --to-destination 10.244.1.11:8080 &&
		$_i -t nat -N FOREIGN-NAT &&
		$_i -t nat -A FOREIGN-NAT -d 203.0.113.0/24 -j RETURN &&
		$_i -t nat -A OUTPUT -j FOREIGN-NAT &&
		$_i -t nat -A POSTROUTING -s 198.51.100.0/24 -j MASQUERADE &&
		$_i -t filter -A INPUT -p tcp --dport 2222 -j ACCEPT &&
		$_i -t filter -A FORWARD -s 198.51.100.0/24 -j DROP &&
		$_i -t mangle -A PREROUTING -s 198.51.100.0/24 \
		    -j MARK --set-mark 0x7
	} || e2e_error "iptables-$1: cannot add the foreign rules"
}

# foreign_view BACKEND: iptables-save without kuproxy's lines, comments
# and counters.
foreign_view() {
	ipt_save "$NS_NODE" "$1" | grep -v -e 'KUBE-' -e '^#' |
	    sed 's/ \[[0-9]*:[0-9]*\]$//'
}

# Every portal answers: web and fresh by ClusterIP from a pod, np by its
# nodePort from outside.
all_served() {
	[ "$(ask "$NS_POD1" 10.96.0.10:80 2)" = "pod-1=2" ] &&
	    [ "$(ask "$NS_POD1" 10.96.0.40:80 2)" = "pod-2=2" ] &&
	    [ "$(ask "$NS_OUT" "$NODE_IP:30080" 2)" = "pod-3=2" ]
}

# The proxy ports kuproxy's rules send traffic to, one per line.
rule_ports() {
	portal_rules "$NS_NODE" "$1" | grep -oE -- \
	    '--to-ports [0-9]+|--to-destination [0-9.]+:[0-9]+' |
	    sed 's/.*[ :]//' | sort -u
}

# lock_held_test BACKEND: step 2.
lock_held_test() {
	kuproxy_mark
	rm -f "$XTABLES_LOCKFILE"
	e2e_bg lock-holder "$NS_NODE" flock "$XTABLES_LOCKFILE" sleep 10
	holder=$LAST_PID
	_n=0
	while flock -n "$XTABLES_LOCKFILE" true; do
		_n=$((_n + 1))
		[ "$_n" -lt 100 ] || e2e_error "flock did not take the lock"
		sleep 0.02
	done
	failures0=$(metric kubeproxy_sync_proxy_rules_iptables_restore_failures_total)
	services fresh | replace_file "$file"
	kuproxy_port fresh default/fresh:http/TCP 5
	: >"$T/lat.out"
	while kill -0 "$holder" 2>/dev/null; do
		client "$NS_POD1" --connect 10.96.0.10:80 --count 5 \
		    --timeout 8 --show-ms >>"$T/lat.out" 2>&1
		sleep 0.05
	done
	wait "$holder"
	released=$(now_ms)
	served=$(count pod-1 "$T/lat.out")
	total=$(wc -l <"$T/lat.out")
	slowest=$(awk '{ v = $3 + 0; if (v > m) m = v } END { print m + 0 }' \
	    "$T/lat.out")
	[ "$served" = "$total" ] && [ "$total" -ge 20 ] ||
	    fail "$backend: lock held: $served/$total served: $(tally "$T/lat.out")"
	# A sync that checked the lock just before the holder took it waits
	# in iptables-restore -w 1 for 1 s; waiting 5 s per attempt was the bug.
	awk -v m="$slowest" 'BEGIN { exit !(m < 2500) }' ||
	    fail "$backend: lock held: a connection took $slowest ms"
	ok "$backend: xtables lock held 10 s: $total/$total connections to web" \
	    "served, the slowest in $slowest ms"
	ask_until "pod-2=1" 3000 "$NS_POD1" 10.96.0.40:80 ||
	    fail "$backend: fresh not served 3 s after the lock was free:" \
	    "$ASKED"
	held=$(log_count 'the xtables lock .* is held by another program')
	[ "$held" -ge 1 ] && [ "$held" -le 12 ] ||
	    fail "$backend: $held 'lock is held' lines in 10 s"
	failures1=$(metric kubeproxy_sync_proxy_rules_iptables_restore_failures_total)
	[ "$failures1" -gt "$failures0" ] ||
	    fail "$backend: restore failures $failures0 -> $failures1"
	ok "$backend: fresh's portal works $(($(now_ms) - released)) ms after" \
	    "the lock was free; $held 'lock is held' lines, restore failures" \
	    "$failures0 -> $failures1"
}

i=0
for backend in $backends; do
	mode=$(relay_mode_for $i)
	i=$((i + 1))
	KPT_LABEL=$backend
	KP_IPTABLES_BACKEND=$backend
	services >"$file"

	# 1. Foreign rules.
	foreign_rules "$backend"
	foreign_view "$backend" >"$T/foreign-0"
	# kuproxy_start's --proxy-port-range is 20000-20099.
	kuproxy_start "$NS_NODE" "$file" "$mode" \
	    --iptables-min-sync-period 200ms --iptables-sync-period 1s
	kuproxy_port web default/web:http/TCP
	portal_wait "$NS_NODE" "$backend" 'KUBE-PORTALS-CONTAINER.*10\.96\.0\.10' \
	    present 5 || fail "$backend: no portal for web"
	nsx "$NS_NODE" "iptables-$backend" -t nat -I PREROUTING 1 \
	    -s 198.51.100.8/32 -j RETURN ||
	    e2e_error "iptables-$backend -I PREROUTING"
	foreign_view "$backend" >"$T/foreign-1"
	syncs0=$(metric kubeproxy_sync_proxy_rules_duration_seconds_count)
	sleep 2.3
	syncs=$(($(metric kubeproxy_sync_proxy_rules_duration_seconds_count) -
	    syncs0))
	[ "$syncs" -ge 2 ] || fail "$backend: $syncs periodic syncs in 2.3 s"
	foreign_view "$backend" >"$T/foreign-2"
	cmp -s "$T/foreign-1" "$T/foreign-2" ||
	    fail "$backend: kuproxy changed foreign rules:" \
	    "$(diff "$T/foreign-1" "$T/foreign-2")"
	grep -v -e '-s 198.51.100.8/32 -j RETURN' "$T/foreign-2" |
	    cmp -s - "$T/foreign-0" ||
	    fail "$backend: foreign rules differ from before kuproxy started"
	ok "$backend: $(grep -c '^-A' "$T/foreign-2") foreign rules unchanged" \
	    "byte for byte after $syncs periodic syncs"

	# 2. fresh arrives, on legacy while the xtables lock is held.
	if [ "$backend" = legacy ]; then
		lock_held_test
	else
		services fresh | replace_file "$file"
	fi
	kuproxy_port fresh default/fresh:http/TCP 5
	ask_until "pod-2=1" 3000 "$NS_POD1" 10.96.0.40:80 ||
	    fail "$backend: fresh not served: $ASKED"
	all_served || fail "$backend: not every portal serves before kill -9"
	rules_before=$(portal_rules "$NS_NODE" "$backend" | grep -c '^-A KUBE-')

	# 3. kill -9 under traffic; a new kuproxy on other proxy ports.
	rm -f "$T/probe.stop"
	(
		_n=0
		while [ ! -e "$T/probe.stop" ] && [ "$_n" -lt 300 ]; do
			client "$NS_POD1" --connect 10.96.0.10:80 --count 1 \
			    --timeout 1 >>"$T/kill-traffic.out" 2>&1
			_n=$((_n + 1))
		done
	) &
	looper=$!
	E2E_PIDS="$E2E_PIDS $looper"
	sleep 0.5
	kuproxy_kill
	sleep 0.3
	kuproxy_start "$NS_NODE" "$file" "$mode" \
	    --iptables-min-sync-period 200ms --iptables-sync-period 1s \
	    --proxy-port-range 20100-20199
	kuproxy_port fresh default/fresh:http/TCP
	wait_served() {
		_n=0
		until all_served; do
			_n=$((_n + 1))
			[ "$_n" -lt 25 ] || return 1
			sleep 0.2
		done
	}
	wait_served || fail "$backend: after kill -9 and a restart, not every" \
	    "portal serves"
	touch "$T/probe.stop"
	wait "$looper"
	portal_rules "$NS_NODE" "$backend" >"$T/rules-after"
	rules_after=$(grep -c '^-A KUBE-' "$T/rules-after")
	dups=$(sort "$T/rules-after" | uniq -d)
	jumps=$(grep -cE '^-A (PREROUTING|OUTPUT|INPUT) .*-j KUBE-' \
	    "$T/rules-after")
	[ "$rules_after" = "$rules_before" ] ||
	    fail "$backend: $rules_before rules before kill -9, $rules_after after"
	[ -z "$dups" ] || fail "$backend: rules twice after restart: $dups"
	[ "$jumps" = 5 ] || fail "$backend: $jumps jumps into kuproxy's chains"
	for port in $(rule_ports "$backend"); do
		[ "$port" -ge 20100 ] && [ "$port" -le 20199 ] ||
		    fail "$backend: a rule still points at proxy port $port"
	done
	ok "$backend: kill -9 under traffic ($(tally "$T/kill-traffic.out")),"\
	    "restart on ports 20100-20199: every portal serves; $rules_after" \
	    "rules as before, none twice, 5 jumps, proxy ports" \
	    "$(rule_ports "$backend" | tr '\n' ' ')"
	rm -f "$T/kill-traffic.out"
	foreign_view "$backend" | cmp -s - "$T/foreign-1" ||
	    fail "$backend: the restart changed foreign rules"

	# 4. SIGTERM.
	kuproxy_stop
	ipt_save "$NS_NODE" "$backend" | grep -v '^#' |
	    sed 's/ \[[0-9]*:[0-9]*\]$//' >"$T/after-stop"
	cmp -s "$T/after-stop" "$T/foreign-1" ||
	    fail "$backend: after SIGTERM: $(diff "$T/foreign-1" "$T/after-stop")"
	ok "$backend: after SIGTERM iptables-save is exactly the foreign rules"

	# The next backend starts from empty tables of its own.
	for t in nat filter mangle; do
		nsx "$NS_NODE" "iptables-$backend" -t "$t" -F
		nsx "$NS_NODE" "iptables-$backend" -t "$t" -X
	done
done
