#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# kuproxy explain against reality, on the pod/node/outside network
# (e2e_topology), kuproxy with iptables-legacy rules in the node.  For one
# service of each type:
#
#  (a) every rule `kuproxy explain --json` lists is, verbatim, a line of
#      iptables-save in the node, and every KUBE- rule iptables-save holds
#      for that service is listed (and so are the jumps it names);
#  (b) the proxy port it names is the one kuproxy logged, and for every
#      portal address, from every place it describes (a pod, the node,
#      outside), a connection lands where it says: on one of the endpoints
#      it marks used when it says the address is intercepted, on the uplink
#      when it says the packet leaves the node; the endpoint it names as
#      next gets the next connection; a client it lists as sticky goes to
#      the endpoint it lists;
#  (c) explain without the daemon (--services-file, run in the node) lists
#      the same rules but for the proxy port placeholder.
#
# Headless, ExternalName and service-proxy-name services: no rule, no proxy
# port, what explain says instead (DNS records, CNAME, owner), and the
# headless pod record's address answers directly.  An unknown service
# exits 1.  The text of one NodePort service is printed for the README.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
e2e_init
e2e_topology
# Service IPs and 198.51.100.6 are "out there", answered by the uplink.
e2e_uplink 10.96.0.0/12 198.51.100.6/32
uplink_start 80
case " $(ipt_backends "$NS_NODE") " in
*" legacy "*) ;;
*) e2e_skip "iptables-legacy does not work in a namespace here" ;;
esac

backend_start "$NS_POD1" pod-1 "$POD1_IP:8080"
backend_start "$NS_POD2" pod-2 "$POD2_IP:8080"
backend_start "$NS_POD3" pod-3 "$POD3_IP:8080"

ALLOW=198.51.100.0/24
file="$T/services.yaml"
{
	yaml_service web 10.96.0.10 80 type=LoadBalancer node_port=30080 \
	    external_ips=198.51.100.5,198.51.100.6,192.0.2.99 \
	    lb_ip=203.0.113.7
	yaml_slice web 8080 "$POD1_IP" "$POD2_IP" "$POD3_IP"
	yaml_service np 10.96.0.11 80 type=NodePort node_port=30081
	yaml_slice np 8080 "$POD1_IP" "$POD2_IP:notready" "$POD3_IP"
	yaml_service plain 10.96.0.12 80
	yaml_slice plain 8080 "$POD2_IP" "$POD3_IP"
	yaml_service sticky 10.96.0.13 80 affinity=ClientIP
	yaml_slice sticky 8080 "$POD1_IP" "$POD2_IP" "$POD3_IP"
	yaml_service db None 8080
	yaml_slice db 8080 "$POD1_IP"
	yaml_service docs - 0 type=ExternalName external_name=docs.example.com
	cat <<YAML
- apiVersion: v1
  kind: Service
  metadata:
    name: foreign
    namespace: default
    labels: {service.kubernetes.io/service-proxy-name: other}
  spec:
    clusterIP: 10.96.0.18
    ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080}]
    type: ClusterIP
YAML
	yaml_slice foreign 8080 "$POD1_IP"
} | yaml_list >"$file"

# check SUBCOMMAND ARGS...: the JSON side of the checks (python3, stdlib).
#   rules EXPLAIN SAVE          (a); prints the number of rules
#   probes EXPLAIN SKIP_OUT UPLINK   "PLACE ADDR:PORT endpoints|uplink"
#                               per sentence of the paths that can be
#                               tried here (SKIP_OUT: outside-local
#                               prefixes; UPLINK: prefixes it answers)
#   get EXPLAIN PATH            one value (dotted path, list indexes)
#   used EXPLAIN                the used endpoints' IPs
#   sticky EXPLAIN CLIENT       the endpoint listed for a sticky client
#   same-rules DAEMON OFFLINE PORT   (c)
check() {
	"$KPT_PYTHON" - "$@" <<'PY'
import ipaddress, json, re, sys

def load(path):
    with open(path) as f:
        return json.load(f)

def rules(doc):
    out = []
    for port in doc.get("ports", []):
        for portal in port.get("portals", []):
            out.extend(portal["rules"])
    return out

def service_comment(doc):
    return '--comment "%s/%s:' % (doc["namespace"], doc["name"])

def cmd_rules(explain, save):
    doc = load(explain)
    listed = [r["rule"] for r in rules(doc)]
    with open(save) as f:
        lines = [re.sub(r" \[\d+:\d+\]$", "", l.rstrip("\n")) for l in f]
    installed = [l for l in lines if l.startswith("-A KUBE-")
                 and service_comment(doc) in l]
    bad = [r for r in listed if r not in lines]
    bad += ["installed, not listed: " + l for l in installed
            if l not in listed]
    bad += ["jump not installed: " + r["jump"] for r in rules(doc)
            if r.get("jump") and r["jump"] not in lines]
    if len(set(listed)) != len(listed):
        bad.append("a rule listed twice")
    if bad:
        print("\n".join(bad))
        return 1
    print(len(listed))
    return 0

def in_any(addr, prefixes):
    ip = ipaddress.ip_address(addr.rsplit(":", 1)[0])
    return any(ip in ipaddress.ip_network(p) for p in prefixes if p)

def cmd_probes(explain, skip_out, uplink):
    doc = load(explain)
    skip_out, uplink = skip_out.split(","), uplink.split(",")
    for port in doc["ports"]:
        host = doc.get("hostIP")
        for place in ("pod", "node", "outside"):
            for s in port["paths"][place]:
                caught = " -> KUBE-" in s
                addrs = re.findall(r"^to (\d[\d.]*:\d+)", s)
                m = re.search(r"^to (?:a|any) node address, port (\d+)", s)
                if m:
                    addrs = re.findall(r"(\d[\d.]*:\d+)", s)
                    if place == "node":
                        addrs = ["127.0.0.1:" + m.group(1),
                                 "%s:%s" % (host, m.group(1))]
                for a in addrs:
                    if place == "outside" and in_any(a, skip_out):
                        continue
                    if caught:
                        print(place, a, "endpoints")
                    elif in_any(a, uplink):
                        print(place, a, "uplink")
    return 0

def cmd_get(explain, path):
    v = load(explain)
    for k in path.split("."):
        v = v[int(k)] if isinstance(v, list) else v[k]
    print(v if not isinstance(v, (dict, list)) else json.dumps(v))
    return 0

def cmd_used(explain):
    doc = load(explain)
    print(" ".join(sorted({e["address"].rsplit(":", 1)[0]
                           for p in doc["ports"] for e in p["endpoints"]
                           if e.get("used")})))
    return 0

def cmd_same_rules(daemon, offline, port):
    a = sorted(r["rule"] for r in rules(load(daemon)))
    b = sorted(r["rule"].replace("<proxy-port>", port)
               for r in rules(load(offline)))
    if a != b or not a:
        print("daemon:\n  %s\noffline:\n  %s" % ("\n  ".join(a),
              "\n  ".join(b)))
        return 1
    return 0

def cmd_sticky(explain, client):
    bal = load(explain)["ports"][0]["balancer"]
    print(" ".join(c["endpoint"] for c in bal["stickyClients"]
                   if c["client"] == client))
    return 0

cmds = {"sticky": cmd_sticky, "rules": cmd_rules, "probes": cmd_probes, "get": cmd_get,
        "used": cmd_used, "same-rules": cmd_same_rules}
sys.exit(cmds[sys.argv[1]](*sys.argv[2:]))
PY
}

# ns_of PLACE: the namespace a probe runs from.
ns_of() {
	case $1 in
	pod) echo "$NS_POD1" ;;
	node) echo "$NS_NODE" ;;
	outside) echo "$NS_OUT" ;;
	esac
}

# pod_ip NAME: pod-N's address.
pod_ip() {
	eval "echo \$POD${1#pod-}_IP"
}

# explain_json NAME: the daemon's explanation of default/NAME in $T/NAME.json.
explain_json() {
	"$KUPROXY_BIN" explain --json --status-socket "$KP_STATUS_SOCKET" \
	    "default/$1" >"$T/$1.json" 2>"$T/$1.err" ||
	    fail "kuproxy explain default/$1: $(cat "$T/$1.err")"
}

mode=$(relay_mode_for 0)
KP_IPTABLES_BACKEND=legacy kuproxy_start "$NS_NODE" "$file" "$mode" \
    --iptables-min-sync-period 200ms --external-ip-allow "$ALLOW"
for svc in web np plain sticky; do
	kuproxy_port unused "default/$svc:http/TCP"
done
portal_wait "$NS_NODE" legacy '"default/sticky:http"' present ||
    fail "no rules 5 s after start: $(portal_rules "$NS_NODE" legacy)"
brnf=$(nsx "$NS_NODE" cat /proc/sys/net/bridge/bridge-nf-call-iptables \
    2>/dev/null || echo 0)
echo "bridge-nf-call-iptables in the node: $brnf"

for svc in web np plain sticky; do
	explain_json "$svc"
	ipt_save "$NS_NODE" legacy >"$T/save"

	# (a) The rules, both ways.
	n=$(check rules "$T/$svc.json" "$T/save") ||
	    fail "$svc: explain and iptables-save disagree: $n"
	ok "$svc: the $n rules explain lists are what iptables-save holds"

	# (b) The proxy port kuproxy logged.
	kuproxy_port logged "default/$svc:http/TCP"
	said=$(check get "$T/$svc.json" ports.0.proxyPort)
	[ "$said" = "$logged" ] ||
	    fail "$svc: explain says proxy port $said, kuproxy logged $logged"

	# (b) Every path it describes, tried.
	used=$(check used "$T/$svc.json")
	check probes "$T/$svc.json" 10.96.0.0/12,198.51.100.6/32 \
	    10.96.0.0/12,198.51.100.6/32 >"$T/$svc.probes" ||
	    fail "$svc: no probes"
	[ -s "$T/$svc.probes" ] || fail "$svc: explain describes no path"
	while read -r place addr expect; do
		got=$(ask "$(ns_of "$place")" "$addr" 2)
		if [ "$expect" = uplink ]; then
			[ "$got" = "uplink=2" ] || fail "$svc: from $place to" \
			    "$addr explain says not intercepted, got '$got'"
			continue
		fi
		for word in $got; do
			name=${word%=*}
			case " $used " in
			*" $(pod_ip "$name") "*) ;;
			*) fail "$svc: from $place to $addr: '$got'," \
			    "explain's endpoints are: $used" ;;
			esac
		done
	done <"$T/$svc.probes"
	ok "$svc: proxy port $said; $(wc -l <"$T/$svc.probes") paths" \
	    "land where explain says (endpoints $used)"

	# (c) Offline, in the node: the same rules but for the proxy port.
	nsx "$NS_NODE" "$KUPROXY_BIN" explain --json --services-file "$file" \
	    --iptables-backend legacy --external-ip-allow "$ALLOW" \
	    "default/$svc" >"$T/$svc.offline.json" 2>"$T/$svc.offline.err" ||
	    fail "$svc: offline explain: $(cat "$T/$svc.offline.err")"
	diff=$(check same-rules "$T/$svc.json" "$T/$svc.offline.json" \
	    "$logged") || fail "$svc: offline rules differ: $diff"
	ok "$svc: offline explain lists the same rules"
done

# The next endpoint it names gets the next connection.
explain_json plain
next=$(check get "$T/plain.json" ports.0.balancer.nextEndpoint)
got=$(ask "$NS_POD1" 10.96.0.12:80 1)
[ "$(pod_ip "${got%=*}"):8080" = "$next" ] ||
    fail "plain: explain's next endpoint is $next, the next connection" \
    "went to $got"
ok "plain: next endpoint $next got the next connection ($got)"

# A sticky client it lists goes where it says.
got=$(ask "$NS_POD2" 10.96.0.13:80 1)
explain_json sticky
sticky_to=$(check sticky "$T/sticky.json" "$POD2_IP")
[ -n "$sticky_to" ] ||
    fail "sticky: explain lists no sticky client $POD2_IP:" \
    "$(check get "$T/sticky.json" ports.0.balancer)"
again=$(ask "$NS_POD2" 10.96.0.13:80 3)
[ "$(pod_ip "${got%=*}"):8080" = "$sticky_to" ] &&
    [ "$again" = "${got%=*}=3" ] ||
    fail "sticky: explain says $POD2_IP -> $sticky_to; connections went" \
    "to $got then $again"
ok "sticky: $POD2_IP -> $sticky_to, as explain lists it"

# Services kuproxy does not proxy.
save=$(ipt_save "$NS_NODE" legacy)
for svc in db docs foreign; do
	explain_json "$svc"
	reason=$(check get "$T/$svc.json" skipped.reason)
	echo "$save" | grep -F "\"default/$svc:" &&
	    fail "$svc ($reason): rules installed"
	grep -E "default/$svc:.*listening on proxy port" "$KP_LOG" &&
	    fail "$svc ($reason): a proxy port"
	"$KUPROXY_BIN" explain --status-socket "$KP_STATUS_SOCKET" \
	    "default/$svc" >"$T/$svc.txt" || fail "$svc: text explain"
	ok "$svc: $reason, no rule, no proxy port: $(sed -n 2p "$T/$svc.txt")"
done
[ "$(check get "$T/db.json" skipped.reason)" = headless ] ||
    fail "db is not explained as headless"
grep -qE "^ *10-244-1-11\.default\.pod\.cluster\.local +A +$POD1_IP\$" \
    "$T/db.txt" || fail "db: no pod record for $POD1_IP: $(cat "$T/db.txt")"
expect_tally "db: its pod record's address answers directly" "pod-1=1" \
    "$NS_POD2" "$POD1_IP:8080"
grep -qE "^ *docs\.default\.svc\.cluster\.local +CNAME +docs\.example\.com\$" \
    "$T/docs.txt" || fail "docs: no CNAME: $(cat "$T/docs.txt")"
[ "$(check get "$T/foreign.json" skipped.proxyName)" = other ] ||
    fail "foreign: not explained as the proxy \"other\"'s"
expect_tally "foreign: routed as any address, as explain says" "uplink=1" \
    "$NS_POD1" 10.96.0.18:80

# An unknown service: exit 1 and a message naming it.
"$KUPROXY_BIN" explain --status-socket "$KP_STATUS_SOCKET" default/nope \
    >/dev/null 2>"$T/nope.err"
st=$?
[ "$st" = 1 ] && grep -q "no service default/nope" "$T/nope.err" ||
    fail "unknown service: status $st, $(cat "$T/nope.err")"
ok "unknown service: exit 1: $(cat "$T/nope.err")"

# The text is printed from the same document: every rule is in it.
"$KUPROXY_BIN" explain --status-socket "$KP_STATUS_SOCKET" default/np \
    >"$T/np.txt" || fail "np: text explain"
"$KPT_PYTHON" -c 'import json, sys
doc = json.load(open(sys.argv[1])); text = open(sys.argv[2]).read()
missing = [r["rule"] for p in doc["ports"] for q in p["portals"]
           for r in q["rules"] if r["rule"] not in text]
sys.exit("\n".join(missing) if missing else 0)' "$T/np.json" "$T/np.txt" ||
    fail "np: rules missing from the text"
echo "---- kuproxy explain default/np"
cat "$T/np.txt"
echo "----"

kuproxy_stop
ok "kuproxy stopped cleanly"
