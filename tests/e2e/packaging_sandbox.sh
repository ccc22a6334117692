#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# kuproxy under the systemd unit's privileges, without systemd: the unit
# (packaging/systemd/kuproxy.service.in) runs it as a dedicated non-root
# user with only the ambient capabilities it lists and NoNewPrivileges, and
# makes the xtables lock group-readable for it.  This test does the same
# with setpriv (user nobody standing in for kuproxy, the capabilities read
# from the unit), in a namespace of its own, and checks that the portal
# rules are written and removed with each iptables backend, and that
# --iptables-backend auto still recognises a node whose rules are in
# iptables-legacy (which a non-root process can only read table by table).
#
# Needs root, ip netns and setpriv; exit 77 otherwise.
. "$(dirname "$0")/lib.sh"

e2e_init
command -v setpriv >/dev/null 2>&1 || e2e_skip "no setpriv (util-linux)"
for tool in iptables-legacy-save iptables-nft-save; do
	command -v "$tool" >/dev/null 2>&1 || e2e_skip "no $tool"
done

unit=$KUPROXY_SRCDIR/packaging/systemd/kuproxy.service.in
# "CAP_NET_ADMIN CAP_NET_RAW" -> "+net_admin,+net_raw", setpriv's spelling.
caps=$(sed -n 's/^AmbientCapabilities=//p' "$unit" | tr ' ' '\n' |
    sed -n 's/^CAP_\(.*\)/+\1/p' | tr '[:upper:]' '[:lower:]' |
    paste -sd, -)
[ -n "$caps" ] || e2e_error "no AmbientCapabilities in $unit"
grep -q '^NoNewPrivileges=yes' "$unit" || fail "the unit lacks NoNewPrivileges"
grep -q '^User=' "$unit" || fail "the unit runs kuproxy as root"

# The lock as iptables leaves it (0600 root), then the unit's
# ExecStartPre steps, with nogroup standing in for the kuproxy group.
lock=$T/xtables.lock
install -m 0600 /dev/null "$lock"
if ! chgrp nogroup "$lock" || ! chmod g+r "$lock"; then
	e2e_error "cannot prepare $lock"
fi
chmod 0755 "$T"

# The user cannot be expected to reach the build tree (a checkout under
# /root is closed to others): it gets its own copies in $T.
install -m 0755 "$KUPROXY_BIN" "$T/kuproxy" || e2e_error "copying kuproxy"
install -m 0644 "$KUPROXY_SRCDIR/tests/data/services-list.yaml" \
    "$T/services.yaml" || e2e_error "copying the services file"
services=$T/services.yaml
cluster_ip=10.96.0.1

# sandboxed_kuproxy NS BACKEND: start kuproxy as the unit would.
sandboxed_kuproxy() {
	e2e_bg "kuproxy-$2" "$1" setpriv --reuid=nobody --regid=nogroup \
	    --clear-groups --inh-caps="$caps" --ambient-caps="$caps" \
	    --no-new-privs env XTABLES_LOCKFILE="$lock" "$T/kuproxy" \
	    --services-file "$services" --iptables-backend "$2" \
	    --healthz-bind-address "" --metrics-bind-address "" \
	    --status-socket "" -v 2
	KP_PID=$LAST_PID
	KP_LOG="$T/kuproxy-$2.log"
	KP_MARK=0
}

# portal_rules NS SAVE: the nat rules kuproxy wrote for the cluster IP.
portal_rules() {
	nsx "$1" "$2" -t nat 2>/dev/null |
	    grep -c -- "-A KUBE-PORTALS-CONTAINER .*$cluster_ip" || true
}

# wait_rules NS SAVE: until kuproxy's portal for the cluster IP is there.
wait_rules() {
	_deadline=$(($(now_ms) + 10000))
	while [ "$(portal_rules "$1" "$2")" = 0 ]; do
		kuproxy_alive || fail "kuproxy exited before writing its rules"
		[ "$(now_ms)" -lt "$_deadline" ] ||
		    fail "no portal rules in $2 after 10 s"
		sleep 0.1
	done
}

for backend in nft legacy; do
	e2e_netns "$backend"
	ns=$KPT_TAG-$backend	# what e2e_netns named it
	sandboxed_kuproxy "$ns" "$backend"
	wait_rules "$ns" "iptables-$backend-save"
	ok "$backend: portal rules written as nobody with $caps"
	kuproxy_stop
	[ "$(portal_rules "$ns" "iptables-$backend-save")" = 0 ] ||
	    fail "$backend: portal rules left after SIGTERM"
	ok "$backend: rules removed on SIGTERM, exit 0"
	if grep -E '^[WE][0-9]{4} .*(iptables|portal)' "$KP_LOG" |
	    grep -v 'no IPv4 address on a non-loopback'; then
		fail "$backend: iptables warnings (above)"
	fi
done

# A node whose rules are in iptables-legacy: auto must pick legacy.
e2e_netns auto
nsx "$NS_AUTO" iptables-legacy -t nat -A POSTROUTING -s 10.244.0.0/16 \
    -j MASQUERADE || e2e_error "seeding a legacy rule"
sandboxed_kuproxy "$NS_AUTO" auto
kuproxy_wait_log 'iptables backend ' 5 || fail "no backend decision logged"
grep -q 'iptables backend legacy' "$KP_LOG" ||
    fail "auto chose $(grep -o 'iptables backend [a-z]*' "$KP_LOG") on a" \
	"node with legacy rules"
wait_rules "$NS_AUTO" iptables-legacy-save
kuproxy_stop
ok "auto: picked legacy on a legacy node, as nobody"
echo PASS
