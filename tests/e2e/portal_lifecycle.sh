#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Portal rules through a service's life and kuproxy's, with iptables-legacy
# and iptables-nft ($KPT_IPT_BACKENDS), clients on e2e_topology's network.
#
#  1. One edit of the services file (new file renamed over it): an endpoint
#     removed, a port changed (the old one no longer intercepted, the new
#     one works), a service deleted (its ClusterIP goes out the uplink, its
#     nodePort refuses and can be bound again), a ClusterIP service made a
#     NodePort (both work), a service added.  Clients see every change
#     within 2 s of the rename.
#  2. A malformed file changes nothing: kuproxy's rules in iptables-save are
#     the same before and after, and clients are served as before.
#  3. A chain flushed by hand is repaired within the sync period.
#  4. kill -9 leaves rules towards dead proxy ports (clients are refused);
#     a new kuproxy replaces them with its own and serves within 5 s.
#  5. kill -9 again, then `kuproxy --cleanup` in the node: no KUBE- chain or
#     rule is left in either backend, IPv4 or IPv6; a second --cleanup also
#     exits 0.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
e2e_init
e2e_topology
e2e_uplink 10.96.0.0/12
uplink_start 80 8081
backends=$(ipt_backends "$NS_NODE")
[ -n "$backends" ] || e2e_skip "no iptables backend works in a namespace"

backend_start "$NS_POD1" pod-1 "$POD1_IP:8080"
backend_start "$NS_POD2" pod-2 "$POD2_IP:8080"
backend_start "$NS_POD3" pod-3 "$POD3_IP:8080"

file="$T/services.yaml"
version1() {
	{
		yaml_service web 10.96.0.10 80
		yaml_slice web 8080 "$POD1_IP" "$POD2_IP" "$POD3_IP"
		yaml_service movable 10.96.0.20 80
		yaml_slice movable 8080 "$POD1_IP"
		yaml_service doomed 10.96.0.30 80 type=NodePort node_port=30090
		yaml_slice doomed 8080 "$POD2_IP"
		yaml_service promo 10.96.0.50 80
		yaml_slice promo 8080 "$POD3_IP"
	} | yaml_list
}
# pod-2 leaves web, movable moves to 8081, doomed goes, promo becomes a
# NodePort, fresh arrives.
version2() {
	{
		yaml_service web 10.96.0.10 80
		yaml_slice web 8080 "$POD1_IP" "$POD3_IP"
		yaml_service movable 10.96.0.20 8081
		yaml_slice movable 8080 "$POD1_IP"
		yaml_service promo 10.96.0.50 80 type=NodePort node_port=30091
		yaml_slice promo 8080 "$POD3_IP"
		yaml_service fresh 10.96.0.60 80
		yaml_slice fresh 8080 "$POD1_IP"
	} | yaml_list
}

kuproxy_flags="--iptables-min-sync-period 200ms --iptables-sync-period 2s"
i=0
for backend in $backends; do
	mode=$(relay_mode_for $i)
	KPT_LABEL=$backend
	i=$((i + 1))
	version1 >"$file"
	KP_IPTABLES_BACKEND=$backend kuproxy_start "$NS_NODE" "$file" "$mode" \
	    $kuproxy_flags
	portal_wait "$NS_NODE" "$backend" '"default/web:http"' present ||
	    fail "$backend: no rules 5 s after start"

	expect_tally "web" "pod-1=2 pod-2=2 pod-3=2" "$NS_POD1" 10.96.0.10:80 6
	expect_tally "movable on port 80" "pod-1=1" "$NS_POD1" 10.96.0.20:80
	expect_tally "movable's future port 8081, not intercepted yet" \
	    "uplink=1" \
	    "$NS_POD1" 10.96.0.20:8081
	expect_tally "doomed" "pod-2=1" "$NS_POD1" 10.96.0.30:80
	expect_tally "doomed's NodePort from outside" "pod-2=1" \
	    "$NS_OUT" "$NODE_IP:30090"
	[ "$(port_bindable "$NS_NODE" 30090)" = "in use" ] ||
	    fail "$backend: doomed's nodePort 30090 is not held"
	expect_tally "promo, a ClusterIP service" \
	    "pod-3=1" "$NS_POD1" 10.96.0.50:80
	expect_tally "no NodePort 30091 yet" "ERROR:refused=1" \
	    "$NS_OUT" "$NODE_IP:30091"
	expect_tally "fresh, not there yet" "uplink=1" "$NS_POD1" 10.96.0.60:80

	# 1. The edit.  kuproxy applies a table whole: endpoint changes at
	# once, every rule change in one sync.  So once fresh, which needs a
	# new rule, answers (within 2 s of the rename), every other change
	# must be visible too, on the first try.
	t0=$(now_ms)
	version2 | replace_file "$file"
	ask_until "pod-1=1" 2000 "$NS_POD1" 10.96.0.60:80 ||
	    fail "$backend: fresh not served 2 s after the rename: $ASKED"
	ok "$backend: fresh added: served $ASKED_MS ms after the rename"
	expect_tally "fresh from the node" "pod-1=1" "$NS_NODE" 10.96.0.60:80
	expect_tally "web without pod-2" "pod-1=2 pod-3=2" \
	    "$NS_POD1" 10.96.0.10:80 4
	expect_tally "movable on port 8081" "pod-1=1" "$NS_POD1" 10.96.0.20:8081
	expect_tally "movable's old port 80, not intercepted" "uplink=1" \
	    "$NS_POD1" 10.96.0.20:80
	expect_tally "doomed deleted: its ClusterIP goes out the uplink" \
	    "uplink=1" "$NS_POD1" 10.96.0.30:80
	expect_tally "doomed deleted: its ClusterIP from the node" "uplink=1" \
	    "$NS_NODE" 10.96.0.30:80
	expect_tally "doomed deleted: its NodePort refuses" "ERROR:refused=1" \
	    "$NS_OUT" "$NODE_IP:30090"
	[ "$(port_bindable "$NS_NODE" 30090)" = free ] ||
	    fail "$backend: nodePort 30090 still held after doomed went:" \
	    "$(cat "$T/socat-bind.log")"
	ok "$backend: doomed's nodePort 30090 can be bound again"
	expect_tally "promo's new NodePort from outside" "pod-3=1" \
	    "$NS_OUT" "$NODE_IP:30091"
	expect_tally "promo's ClusterIP still" "pod-3=1" "$NS_POD1" 10.96.0.50:80
	ok "$backend: every change visible $(($(now_ms) - t0)) ms after the" \
	    "rename"

	# 2. A file that does not parse.
	# Past --iptables-min-sync-period: any pending sync is done.
	sleep 0.3
	portal_rules "$NS_NODE" "$backend" >"$T/rules.before"
	kuproxy_mark
	version2 | sed 's/^    name: fresh$/    name: [fresh/' |
	    replace_file "$file"
	kuproxy_wait_log "services\.yaml" 3 ||
	    fail "$backend: no log line naming services.yaml after a" \
	    "broken file"
	sleep 0.5
	portal_rules "$NS_NODE" "$backend" >"$T/rules.after"
	cmp -s "$T/rules.before" "$T/rules.after" ||
	    fail "$backend: a malformed file changed the rules:" \
	    "$(diff "$T/rules.before" "$T/rules.after")"
	ok "$backend: malformed file rejected, rules unchanged" \
	    "($(grep -c '^-A' "$T/rules.after") lines); log:" \
	    "$(kuproxy_log_since | grep 'services\.yaml' | head -n 1 |
	    sed 's/.*] //')"
	expect_tally "web after the malformed file" "pod-1=2 pod-3=2" \
	    "$NS_POD1" 10.96.0.10:80 4
	expect_tally "fresh after the malformed file" "pod-1=1" \
	    "$NS_POD1" 10.96.0.60:80
	version2 | replace_file "$file"

	# 3. Rules flushed behind kuproxy's back.
	nsx "$NS_NODE" "iptables-$backend" -t nat -F KUBE-PORTALS-CONTAINER ||
	    e2e_error "iptables-$backend -F"
	# A periodic sync may come between the flush and the client: then
	# the chain is back already, which is the point anyway.
	case $(ask "$NS_POD1" 10.96.0.10:80) in
	uplink=1) ok "$backend: web right after a hand flush: not" \
	    "intercepted" ;;
	pod-[13]=1) ok "$backend: web right after a hand flush: a periodic" \
	    "sync had repaired it already" ;;
	*) fail "$backend: web after a hand flush: $(cat "$T/ask.out")" ;;
	esac
	ask_until "pod-1=1 pod-3=1" 3000 "$NS_POD1" 10.96.0.10:80 2 ||
	    fail "$backend: not repaired within the 2 s sync period: $ASKED"
	ok "$backend: flushed chain repaired; web served again" \
	    "after $ASKED_MS ms"

	# 4. kill -9, then a new kuproxy.
	kuproxy_kill
	portal_rules "$NS_NODE" "$backend" | grep -q '"default/web:http"' ||
	    fail "$backend: kill -9 took the rules away?"
	expect_tally "web with kuproxy dead: rules point at a closed port" \
	    "ERROR:refused=1" "$NS_POD1" 10.96.0.10:80
	KP_IPTABLES_BACKEND=$backend kuproxy_start "$NS_NODE" "$file" "$mode" \
	    $kuproxy_flags
	ask_until "pod-1=1 pod-3=1" 5000 "$NS_POD1" 10.96.0.10:80 2 ||
	    fail "$backend: not served within 5 s of the restart: $ASKED"
	ok "$backend: restarted kuproxy serves web after $ASKED_MS ms"
	portal_rules "$NS_NODE" "$backend" >"$T/rules.restart"
	for chain in KUBE-PORTALS-CONTAINER KUBE-PORTALS-HOST \
	    KUBE-NODEPORT-CONTAINER KUBE-NODEPORT-HOST \
	    KUBE-NODEPORT-NON-LOCAL; do
		[ "$(grep -c -- "-j $chain\$" "$T/rules.restart")" = 1 ] ||
		    fail "$backend: jumps to $chain after the restart:" \
		    "$(grep -- "-j $chain" "$T/rules.restart")"
	done
	[ "$(grep -c -- '-A KUBE-PORTALS-CONTAINER -d 10.96.0.10/32' \
	    "$T/rules.restart")" = 1 ] ||
	    fail "$backend: stale web rules after the restart:" \
	    "$(cat "$T/rules.restart")"
	ok "$backend: after the restart, one jump per chain and one rule per" \
	    "portal (stale ones gone)"
	expect_tally "movable after the restart" \
	    "pod-1=1" "$NS_POD1" 10.96.0.20:8081
	expect_tally "promo's NodePort after the restart" "pod-3=1" \
	    "$NS_OUT" "$NODE_IP:30091"

	# 5. kill -9 and --cleanup.
	kuproxy_kill
	[ -n "$(portal_all_rules "$NS_NODE")" ] ||
	    fail "$backend: no rules left by kill -9 to clean up"
	nsx "$NS_NODE" "$KUPROXY_BIN" --cleanup >"$T/cleanup.log" 2>&1 ||
	    fail "$backend: kuproxy --cleanup failed: $(cat "$T/cleanup.log")"
	left=$(portal_all_rules "$NS_NODE")
	[ -z "$left" ] || fail "$backend: left after --cleanup: $left"
	nsx "$NS_NODE" "$KUPROXY_BIN" --cleanup >"$T/cleanup2.log" 2>&1 ||
	    fail "$backend: a second --cleanup failed: $(cat "$T/cleanup2.log")"
	ok "$backend: --cleanup after kill -9 left no KUBE- chain or rule" \
	    "(legacy, nft, IPv4, IPv6); a second --cleanup exits 0"
	expect_tally "web after --cleanup: not intercepted" "uplink=1" \
	    "$NS_POD1" 10.96.0.10:80
done
