#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Malformed and huge input through the services file (reliability matrix
# row 12, the file side; row 18, SIGHUP with a broken services file), while
# a probe keeps connecting to service "web" and must be served every time.
# The file source's rule (watch/source_file.c): a file that does not parse,
# or in which any object fails to decode, changes nothing; each bad object
# is logged with the file, the line (YAML; JSON names items[N]) and the
# field.
#  1. One bad input at a time, each in a YAML file that also holds the good
#     objects, renamed over the services file: wrong types ("80", ports
#     {}), ports 0/65536/-1, an invalid clusterIP and endpoint address,
#     duplicate port names, an unknown protocol, nesting 10,000 deep (YAML
#     flow and JSON), bytes that are not UTF-8 (YAML, and a JSON name), a
#     YAML alias bomb (billion laughs: refused at its first anchor), a
#     10 MiB clusterIP.  Each gives exactly one line naming file:line (YAML
#     objects; file:line:column for what the parser itself refuses; JSON
#     objects items[N]) and the field, and the file changes nothing ("the
#     last table stays in force"); no log line is longer than 4 KiB.
#  2. A valid file with a 10 MiB annotation is applied; peak RSS grows by
#     less than 64 MiB over steps 1-2 (three times that with ASan).
#  3. SIGHUP while the file is broken: the error again with file:line and
#     field, "SIGHUP: the service file was not applied",
#     kuproxy_config_reloads_total{result="failure"} 1, success 0.  A good
#     file with a change, then SIGHUP: applied (web-a and web-b), success 1.
#  4. A kubeconfig holding an alias bomb: kuproxy exits 1 within 5 s with
#     an error naming the kubeconfig and the line of the first anchor.
# Probe: 100% served throughout.  The relay plays no part: one mode.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/fault_cp_lib.sh"
e2e_init
e2e_netns node
command -v curl >/dev/null 2>&1 || e2e_error "missing curl"
mode=${KPT_RELAY_MODES%% *}

backend_start "$NS_NODE" web-a 127.0.0.11:8080
backend_start "$NS_NODE" web-b 127.0.0.12:8080
backend_start "$NS_NODE" big-a 127.0.0.13:8080

file="$T/services.in"
mkdir "$T/cases" || e2e_error "mkdir $T/cases"

# The cases: $T/cases/NAME.{yaml,json} and $T/cases/expect, one line per
# case: NAME FILE ERE (the ERE follows the file name in the log line).
"$KPT_PYTHON" - "$T/cases" <<'PY' || e2e_error "cannot write the cases"
import json, os, sys
d = sys.argv[1]
expect = open(os.path.join(d, "expect"), "w")

GOOD = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata:
    name: web
    namespace: default
  spec:
    clusterIP: 10.96.0.10
    ports:
    - name: http
      port: 80
      protocol: TCP
      targetPort: 8080
    type: ClusterIP
- addressType: IPv4
  apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    labels:
      kubernetes.io/service-name: web
    name: web-1
    namespace: default
  endpoints:
  - addresses:
    - 127.0.0.11
    conditions:
      ready: true
  ports:
  - name: http
    port: 8080
    protocol: TCP
"""

def service(name, cip="10.96.0.20", port="80", proto="TCP", ports=None):
    """A Service item; the line with "# BAD" is where the error is."""
    if ports is None:
        ports = ("    - name: http\n      port: %s\n      protocol: %s\n"
                 % (port, proto))
    return ("- apiVersion: v1\n  kind: Service\n  metadata:\n"
            "    name: %s\n    namespace: default\n  spec:\n"
            "    clusterIP: %s\n    ports:\n%s" % (name, cip, ports))

def case(name, bad_item, ere, parse_error=False):
    """The file is GOOD plus bad_item; the error names the line marked
    "# BAD" (and a column, when the parser itself fails)."""
    text = GOOD + bad_item
    lines = text.split("\n")
    at = ":%d" % [i + 1 for i, l in enumerate(lines) if "# BAD" in l][0]
    if parse_error:
        at += ":[0-9]+"
    open(os.path.join(d, name + ".yaml"), "w", encoding="utf-8",
         errors="surrogateescape").write(text)
    expect.write("%s %s.yaml %s: %s\n" % (name, name, at, ere))

case("port-string", service("port-string", port='"80" # BAD'),
     r"default/port-string: spec\.ports\[0\]\.port: must be an integer, not a string")
case("ports-object", service("ports-object", ports="") .replace(
     "    ports:\n", "    ports: {} # BAD\n"),
     r"default/ports-object: spec\.ports: must be a list, not an object")
for n, v in (("port-zero", "0"), ("port-65536", "65536"),
             ("port-minus", "-1")):
    case(n, service(n, port=v + " # BAD"),
         r"default/%s: spec\.ports\[0\]\.port: %s is out of range" % (n, v))
case("bad-ip", service("bad-ip", cip="10.96.300.1 # BAD"),
     r'default/bad-ip: spec\.clusterIP: "10\.96\.300\.1" is not a valid IP')
case("dup-names", service("dup-names", ports=(
     "    - name: http\n      port: 80\n"
     "    - name: http # BAD\n      port: 81\n")),
     r'default/dup-names: spec\.ports\[1\]\.name: "http" duplicates')
case("protocol", service("protocol", proto="HTTP # BAD"),
     r'default/protocol: spec\.ports\[0\]\.protocol: "HTTP" is not TCP')
case("slice-ip", """\
- addressType: IPv4
  apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    labels:
      kubernetes.io/service-name: web
    name: web-2
    namespace: default
  endpoints:
  - addresses:
    - 10.0.0.999 # BAD
  ports:
  - name: http
    port: 8080
""", r'default/web-2: endpoints\[0\]\.addresses\[0\]: "10\.0\.0\.999" is not a valid IP')
case("deep-yaml", "- kind: Service\n  spec: " + "[" * 10000 + "]" * 10000
     + " # BAD\n", "nested deeper than 64 levels", parse_error=True)
case("not-utf8", service("not-utf8").replace("name: not-utf8",
     "name: not-utf8\n    annotations: {note: \udcff} # BAD"),
     "invalid .*UTF-8 octet", parse_error=True)
bomb = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'
        ' # BAD']
for i in range(1, 10):
    bomb.append("a%d: &a%d [%s]" % (i, i, ",".join(["*a%d" % (i - 1)] * 9)))
case("alias-bomb", "- kind: Service\n  metadata:\n    " +
     "\n    ".join(bomb) + "\n", "anchors are not supported",
     parse_error=True)
case("huge-ip", service("huge-ip", cip="x" * (10 << 20) + " # BAD"),
     r'default/huge-ip: spec\.clusterIP: "xxxx.*" is not a valid IP')

# JSON: no line numbers; items[N] says which object.
good = {"apiVersion": "v1", "kind": "List", "items": []}
open(os.path.join(d, "deep.json"), "w").write(
    '{"apiVersion":"v1","kind":"List","items":[' + "[" * 10000 +
    "]" * 10000 + "]}")
expect.write("deep-json deep.json :1:[0-9]+: nesting too deep\n")
bad = {"apiVersion": "v1", "kind": "Service",
       "metadata": {"name": "NAME", "namespace": "default"},
       "spec": {"clusterIP": "10.96.0.21",
                "ports": [{"name": "http", "port": 80}]}}
good["items"] = [bad]
open(os.path.join(d, "name-utf8.json"), "wb").write(
    json.dumps(good).encode().replace(b"NAME", b"x\xff\xfe"))
expect.write(r'name-utf8 name-utf8.json : items\[0\]: Service: '
             r'metadata\.name: "x\\xff\\xfe" is not a DNS label' "\n")

# Valid, with a 10 MiB annotation.
open(os.path.join(d, "big.yaml"), "w").write(
    GOOD + service("big", cip="10.96.0.30", port="80\n      targetPort: 8080")
    .replace("    namespace: default\n", "    namespace: default\n"
             "    annotations:\n      blob: " + "x" * (10 << 20) + "\n")
    + """\
- addressType: IPv4
  apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    labels:
      kubernetes.io/service-name: big
    name: big-1
    namespace: default
  endpoints:
  - addresses:
    - 127.0.0.13
  ports:
  - name: http
    port: 8080
""")
open(os.path.join(d, "good.yaml"), "w").write(GOOD)
open(os.path.join(d, "good2.yaml"), "w").write(
    GOOD.replace("  - addresses:\n    - 127.0.0.11\n",
                 "  - addresses:\n    - 127.0.0.12\n  - addresses:\n"
                 "    - 127.0.0.11\n"))

# A kubeconfig with an alias bomb in its clusters.
open(os.path.join(d, "kubeconfig-bomb"), "w").write(
    "apiVersion: v1\nkind: Config\n" + "\n".join(bomb) +
    "\nclusters: *a9\n")
PY

cp "$T/cases/good.yaml" "$file"
kuproxy_start "$NS_NODE" "$file" "$mode"
kuproxy_port web default/web:http/TCP
probe_start "$web"
hwm0=$(kp_hwm_kb)

# 1. Each bad file in turn.
kuproxy_mark
bad_files_from=$KP_MARK
while read -r name case_file ere; do
	kuproxy_mark
	replace_file "$file" <"$T/cases/$case_file"
	kuproxy_wait_log "service file .*services\.in.*the last table stays in force" 10 ||
	    fail "$name: no 'last table stays in force':" \
	    "$(kuproxy_log_since | cut -c 1-300)"
	n=$(log_count "services\.in$ere")
	[ "$n" = 1 ] || fail "$name: $n lines match /services.in$ere/:" \
	    "$(kuproxy_log_since | cut -c 1-300)"
	long=$(kuproxy_log_since | awk 'length($0) > 4096' | wc -l)
	[ "$long" = 0 ] || fail "$name: $long log lines longer than 4 KiB"
	ok "$name: $(kuproxy_log_since | grep -aE "services\.in$ere" |
	    sed 's/^[^]]*] //' | cut -c 1-160)"
done <"$T/cases/expect"
serves "$web" web-a || fail "web not served after the bad files"
KP_MARK=$bad_files_from
[ "$(log_count 'listening on proxy port|service table applied')" = 0 ] ||
    fail "a bad file changed the table"

# 2. A valid 10 MiB object.
kuproxy_mark
replace_file "$file" <"$T/cases/big.yaml"
kuproxy_port big default/big:http/TCP 10
within 3 "the service with a 10 MiB annotation served" serves "$big" big-a
hwm1=$(kp_hwm_kb)
[ $((hwm1 - hwm0)) -lt "$(cp_mem_bound 65536)" ] ||
    fail "peak RSS grew by $(((hwm1 - hwm0) / 1024)) MiB"
ok "peak RSS $((hwm0 / 1024)) -> $((hwm1 / 1024)) MiB after every bad file" \
    "and a 10 MiB object"

# 3. SIGHUP with a broken services file, then with a good one.
kuproxy_mark
replace_file "$file" <"$T/cases/protocol.yaml"
kuproxy_wait_log "the last table stays in force" 5 ||
    fail "the broken file was not read"
kuproxy_mark
kill -HUP "$KP_PID"
kuproxy_wait_log "SIGHUP: the service file was not applied" 5 ||
    fail "no SIGHUP failure line: $(kuproxy_log_since)"
[ "$(log_count 'services\.in:[0-9]+: default/protocol: spec\.ports\[0\]\.protocol')" = 1 ] ||
    fail "SIGHUP: the error does not name file:line and field:" \
    "$(kuproxy_log_since)"
kp_reloads_are 0 1 || fail "SIGHUP with a broken file: $(cat "$T/reloads")"
kuproxy_alive || fail "kuproxy died on SIGHUP with a broken file"
serves "$web" web-a || fail "web lost after a bad SIGHUP"
ok "SIGHUP with a broken services file: error with file:line:field," \
    "reloads failure 1, table kept"
kuproxy_mark
replace_file "$file" <"$T/cases/good2.yaml"
kill -HUP "$KP_PID"
within 3 "a good file after the bad ones applied" serves "$web" "web-a web-b"
within 5 "SIGHUP with a good file: reloads success 1" kp_reloads_are 1 1
probe_stop "every bad services file and SIGHUP"

# 4. A kubeconfig alias bomb: a start-up error, at once.
t0=$(now_ms)
timeout 10 ip netns exec "$NS_NODE" "$KUPROXY_BIN" --kubeconfig \
    "$T/cases/kubeconfig-bomb" --iptables-backend none \
    --healthz-bind-address "" --metrics-bind-address "" \
    --status-socket "$T/bomb.sock" >"$T/bomb.log" 2>&1
st=$?
took=$(($(now_ms) - t0))
[ "$st" = 1 ] || fail "kubeconfig alias bomb: exit $st: $(cat "$T/bomb.log")"
[ "$took" -lt 5000 ] || fail "kubeconfig alias bomb: took $took ms"
grep -qE 'kubeconfig-bomb: ?3:[0-9]+: anchors are not supported' \
    "$T/bomb.log" ||
    fail "kubeconfig alias bomb: no file:line: $(cat "$T/bomb.log")"
ok "kubeconfig alias bomb: exit 1 after $took ms:" \
    "$(grep -E 'anchors' "$T/bomb.log" | sed 's/^[^]]*] //' | head -n 1)"

serves "$web" "web-a web-b" || fail "web not served at the end"
kuproxy_stop
ok "kuproxy alive throughout and stopped cleanly"
