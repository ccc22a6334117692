#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Least privilege (reliability matrix row 22), on e2e_topology's network,
# with each iptables backend that works here ($KPT_IPT_BACKENDS):
#
#  1. --user nobody: started as root, kuproxy switches to nobody and keeps
#     only what the backend needs: /proc/PID/status shows uid 65534, no
#     supplementary groups, CapEff CAP_NET_ADMIN + CAP_NET_BIND_SERVICE
#     (+ CAP_NET_RAW with legacy), the ambient set without
#     CAP_NET_BIND_SERVICE, an empty bounding set and no_new_privs.  As
#     nobody it serves a ClusterIP from a pod and a NodePort from outside
#     through its portals, holds port 80 of a node-local externalIP
#     (CAP_NET_BIND_SERVICE at work), answers kuproxy status on a socket in
#     a directory it made for nobody, made the iptables-legacy lock file
#     readable for nogroup, and removes its rules on SIGTERM (exit 0).
#  2. setpriv as the row says (nobody, only ambient capabilities, bounding
#     set cut to them): with the full set it serves, CapEff has exactly
#     those bits; without CAP_NET_RAW on legacy, and without CAP_NET_ADMIN,
#     it exits 1 at start-up with an error naming the capability, and no
#     KUBE- rule exists in either backend afterwards.
#
# Needs root, ip netns and setpriv; exit 77 otherwise.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
e2e_init
command -v setpriv >/dev/null 2>&1 || e2e_skip "no setpriv (util-linux)"
e2e_topology
e2e_uplink 10.96.0.0/12
uplink_start 80
backends=$(ipt_backends "$NS_NODE")
[ -n "$backends" ] || e2e_skip "no iptables backend works in a namespace"

backend_start "$NS_POD2" pod-2 "$POD2_IP:8080"
backend_start "$NS_POD3" pod-3 "$POD3_IP:8080"

# nobody reads the services file and watches its directory; setpriv
# starts nobody's own copy of the binary (the build tree may be closed).
chmod 0755 "$T"
install -m 0755 "$KUPROXY_BIN" "$T/kuproxy" || e2e_error "copying kuproxy"
file=$T/services.yaml
{
	yaml_service web 10.96.0.10 80 type=NodePort node_port=30080
	yaml_slice web 8080 "$POD2_IP" "$POD3_IP"
	yaml_service ext 10.96.0.20 80 external_ips="$NODE_IP"
	yaml_slice ext 8080 "$POD3_IP"
} | yaml_list >"$file"
chmod 0644 "$file"

# iptables' lock as iptables leaves it (0600 root), in the test's own
# place: every iptables run here, ours and kuproxy's, takes this one.
XTABLES_LOCKFILE=$T/xtables.lock
export XTABLES_LOCKFILE
install -m 0600 /dev/null "$XTABLES_LOCKFILE"

# proc_field PID KEY: a line of /proc/PID/status without its key.
proc_field() {
	sed -n "s/^$2:[[:space:]]*//p" "/proc/$1/status" |
	    sed 's/[[:space:]]*$//'
}

# expect_field PID KEY WANT: fail unless /proc/PID/status says WANT.
expect_field() {
	_got=$(proc_field "$1" "$2")
	[ "$_got" = "$3" ] ||
	    fail "${KPT_LABEL:+$KPT_LABEL: }$2 is '$_got', want '$3'"
}

# Capability bits: NET_BIND_SERVICE 10, NET_ADMIN 12, NET_RAW 13.
caps_hex() {
	case $1 in
	legacy) echo 0000000000003400 ;;
	*) echo 0000000000001400 ;;
	esac
}
ambient_hex() {
	case $1 in
	legacy) echo 0000000000003000 ;;
	*) echo 0000000000001000 ;;
	esac
}

# no_rules_left WHAT: no KUBE- chain or rule in either backend, any family.
no_rules_left() {
	_left=$(portal_all_rules "$NS_NODE")
	[ -z "$_left" ] || fail "$1: rules left behind:
$_left"
}

# serves_as_usual: the ClusterIP from a pod, the NodePort from outside.
serves_as_usual() {
	expect_tally "ClusterIP from a pod" "pod-2=1 pod-3=1" \
	    "$NS_POD1" 10.96.0.10:80 2
	expect_tally "NodePort from outside" "pod-2=1 pod-3=1" \
	    "$NS_OUT" "$NODE_IP:30080" 2
}

# 1. --user nobody.
i=0
for backend in $backends; do
	mode=$(relay_mode_for $i)
	i=$((i + 1))
	KPT_LABEL="--user, $backend"
	rundir=$T/run-$backend
	KP_IPTABLES_BACKEND=$backend kuproxy_start "$NS_NODE" "$file" "$mode" \
	    --user nobody --status-socket "$rundir/status.sock" \
	    --iptables-min-sync-period 200ms
	portal_wait "$NS_NODE" "$backend" '"default/web:http"' present 10 ||
	    fail "$KPT_LABEL: no portal rules 10 s after start"
	expect_field "$KP_PID" Uid "65534	65534	65534	65534"
	expect_field "$KP_PID" Gid "65534	65534	65534	65534"
	expect_field "$KP_PID" Groups ""
	expect_field "$KP_PID" CapEff "$(caps_hex "$backend")"
	expect_field "$KP_PID" CapPrm "$(caps_hex "$backend")"
	expect_field "$KP_PID" CapAmb "$(ambient_hex "$backend")"
	expect_field "$KP_PID" CapBnd 0000000000000000
	expect_field "$KP_PID" NoNewPrivs 1
	ok "$KPT_LABEL: uid 65534, CapEff $(caps_hex "$backend"), ambient" \
	    "$(ambient_hex "$backend"), empty bounding set, no_new_privs"
	serves_as_usual
	[ "$(port_bindable "$NS_NODE" 80)" = "in use" ] ||
	    fail "$KPT_LABEL: port 80 of externalIP $NODE_IP is not held"
	ok "$KPT_LABEL: holds port 80 of the node-local externalIP"
	[ "$(stat -c %U "$rundir")" = nobody ] ||
	    fail "$KPT_LABEL: $rundir belongs to $(stat -c %U "$rundir")"
	"$KUPROXY_BIN" status --status-socket "$rundir/status.sock" \
	    >"$T/status.out" 2>&1 ||
	    fail "$KPT_LABEL: kuproxy status: $(cat "$T/status.out")"
	grep -q 'default/web:http' "$T/status.out" ||
	    fail "$KPT_LABEL: kuproxy status lacks default/web:http"
	ok "$KPT_LABEL: kuproxy status answers from nobody's $rundir"
	if [ "$backend" = legacy ]; then
		[ "$(stat -c '%G %A' "$XTABLES_LOCKFILE")" = \
		    "nogroup -rw-r-----" ] ||
		    fail "$KPT_LABEL: lock file is" \
		    "$(stat -c '%G %A' "$XTABLES_LOCKFILE")"
		ok "$KPT_LABEL: the xtables lock is readable for nogroup"
	fi
	kuproxy_stop
	no_rules_left "$KPT_LABEL: after SIGTERM"
	[ ! -e "$rundir/status.sock" ] ||
	    fail "$KPT_LABEL: the status socket outlived kuproxy"
	ok "$KPT_LABEL: rules and status socket removed on SIGTERM, exit 0"
done

# 2. setpriv, as matrix row 22 runs it.
all=+net_admin,+net_raw,+net_bind_service

# setpriv_argv CAPS: the setpriv command line for nobody with only CAPS.
setpriv_argv() {
	echo "setpriv --reuid=65534 --regid=65534 --clear-groups" \
	    "--inh-caps=$1 --ambient-caps=$1 --bounding-set=-all,$1"
}

# start_refused CAPS BACKEND NAME: kuproxy under setpriv with CAPS must
# exit 1 within 10 s, naming capability NAME, and leave no rule.
start_refused() {
	KPT_LABEL="setpriv $1, $2"
	# shellcheck disable=SC2046 # setpriv_argv is split on purpose
	timeout 10 ip netns exec "$NS_NODE" $(setpriv_argv "$1") \
	    "$T/kuproxy" --services-file "$file" --iptables-backend "$2" \
	    --status-socket "" --healthz-bind-address "" \
	    --metrics-bind-address "" >"$T/refused.log" 2>&1
	_st=$?
	[ "$_st" = 1 ] || fail "$KPT_LABEL: exit status $_st, want 1:" \
	    "$(cat "$T/refused.log")"
	grep -q "missing capability $3" "$T/refused.log" ||
	    fail "$KPT_LABEL: no error naming $3: $(cat "$T/refused.log")"
	no_rules_left "$KPT_LABEL"
	ok "$KPT_LABEL: exit 1, '$(grep -o "missing capability $3" \
	    "$T/refused.log")', no rules"
}

for backend in $backends; do
	KPT_LABEL="setpriv $all, $backend"
	# shellcheck disable=SC2046 # setpriv_argv is split on purpose
	e2e_bg "kuproxy-setpriv-$backend" "$NS_NODE" $(setpriv_argv "$all") \
	    "$T/kuproxy" --services-file "$file" --iptables-backend "$backend" \
	    --status-socket "" --healthz-bind-address "" \
	    --metrics-bind-address "" --iptables-min-sync-period 200ms -v 2
	KP_PID=$LAST_PID
	KP_LOG="$T/kuproxy-setpriv-$backend.log"
	KP_MARK=0
	portal_wait "$NS_NODE" "$backend" '"default/web:http"' present 10 ||
	    fail "$KPT_LABEL: no portal rules 10 s after start"
	# kuproxy trims what this backend does not use (NET_RAW on nft).
	expect_field "$KP_PID" CapEff "$(caps_hex "$backend")"
	expect_field "$KP_PID" NoNewPrivs 1
	ok "$KPT_LABEL: CapEff $(caps_hex "$backend")"
	serves_as_usual
	kuproxy_stop
	no_rules_left "$KPT_LABEL: after SIGTERM"
done

case " $backends " in
*" legacy "*)
	start_refused +net_admin,+net_bind_service legacy CAP_NET_RAW ;;
esac
for backend in $backends; do
	start_refused +net_raw,+net_bind_service "$backend" CAP_NET_ADMIN
done
# auto, too, cannot write rules without CAP_NET_ADMIN.
start_refused +net_bind_service auto CAP_NET_ADMIN
echo PASS
