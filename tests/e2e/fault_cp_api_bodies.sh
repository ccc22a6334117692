#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# List answers no real API server sends (reliability matrix row 12, the
# bodies; fault_cp_api_objects.sh has the objects), while a probe keeps
# connecting to service "web" and must be served every time.  Each fault
# answers one list (the fake API's list_raw fault):
#  1. Both informers relist at once.  Services: the real list cut off in
#     the middle (truncated JSON), then an HTML login page with status 200
#     and Content-Type text/html.  EndpointSlices: an item nested 10,000
#     deep, then a large list streamed in 64 KiB chunks (row 12's 200 MiB
#     list scaled to 20 MiB to stay fast: 8,000 slices with 2 KiB
#     annotations).
#  2. EndpointSlices: a gzip bomb, 300 MiB of JSON white space before the
#     list in a few hundred KiB on the wire, over the 256 MiB body bound:
#     inflated and skipped a slice per turn of the event loop.
# Each bad answer gives exactly one "list failed" line naming what is wrong
# and a retry after a back-off that grows from one failure to the next; in
# step 1 the list after it succeeds; the table stays in force; the large
# list is listed.  Peak RSS grows by less than 96 MiB (with ASan three
# times that and its quarantine) over all of it: list items are decoded as they arrive, and a
# slice of the inflated bomb is held at a time.  Web is served 100%
# throughout, with the probe's normal 2 s timeout.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/fault_cp_lib.sh"
cp_init

backend_start "$NS_NODE" web-a 127.0.0.11:8080
fakeapi_start
ctl POST /objects "$(svc_json web)"
ctl POST /objects "$(slice_json web-1 web 127.0.0.11)"
cp_kubeconfig "$T/kubeconfig"
kp_start main "$T/kubeconfig"
kuproxy_port web default/web:http/TCP 10
within 3 "web served" serves "$web" "web-a"
probe_start "$web"
hwm0=$(kp_hwm_kb)

"$KPT_PYTHON" - "$T" <<'PY' || e2e_error "cannot write the fault files"
import json, sys
t = sys.argv[1]

def fault(name, **spec):
    json.dump(dict(spec, type="list_raw"), open("%s/f-%s.json" % (t, name),
                                                "w"))

fault("truncated", resource="services", truncate=150)
fault("html", resource="services", content_type="text/html",
      body="<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
           "<body><form action=/login>...</form></body></html>\n")
fault("gzip-bomb", resource="endpointslices", gzip_spaces_mib=300)
fault("deep", resource="endpointslices",
      items=["[" * 10000 + "]" * 10000])
tmpl = json.dumps({"metadata": {"name": "bulk-{i}", "namespace": "bulk",
                                "labels": {"kubernetes.io/service-name":
                                           "bulk-{i}"},
                                "annotations": {"pad": "p" * 2048}},
                   "addressType": "IPv4",
                   "ports": [{"name": "http", "port": 8080,
                              "protocol": "TCP"}],
                   "endpoints": [{"addresses": ["{ip}"],
                                  "conditions": {"ready": True}}]})
fault("large", resource="endpointslices",
      repeat={"template": tmpl, "count": 8000})
PY

# failed RESOURCE N ERE: the Nth "list failed" line of RESOURCE since the
# mark must match ERE; prints its retry delay in seconds.
failed() {
	_line=$(kuproxy_log_since | grep -a "$1: list failed: " |
	    sed -n "$2p")
	echo "$_line" | grep -qE -- "$1: list failed: $3" ||
	    fail "$1 failure $2 is not /$3/: $_line"
	echo "$_line" | sed -n 's/.*; retrying in \([0-9.]*\) s.*/\1/p'
	echo "$_line" | sed 's/^[^]]*] //' | cut -c 1-200 >>"$T/failures"
}

# 1. Both informers relist at once.  Services get two bad answers in a
# row: the retries follow a back-off that grows from one failure to the
# next (the base doubles, the jitter adds less than the base).
# EndpointSlices get a bad answer, then the large list.
ls0=$(lists services)
le0=$(lists endpointslices)
for f in truncated html deep large; do
	ctl POST /faults "@$T/f-$f.json"
done
kuproxy_mark
: >"$T/failures"
rss0=$(rss_kb "$KP_PID")
relist services
relist endpointslices
kuproxy_wait_log "services: listed " 30 ||
    fail "services: no list after two failures: $(kuproxy_log_since |
    grep -a services | cut -c 1-300)"
kuproxy_wait_log "endpointslices: listed 800[0-9] objects" 30 ||
    fail "endpointslices: the 20 MiB list was not listed:" \
    "$(kuproxy_log_since | grep -a endpointslices | cut -c 1-300)"
[ "$(log_count "services: list failed: ")" = 2 ] &&
    [ "$(log_count "endpointslices: list failed: ")" = 1 ] ||
    fail "not one 'list failed' line per bad answer:" \
    "$(kuproxy_log_since | grep -a 'list failed' | cut -c 1-200)"
d1=$(failed services 1 "bad response: the body ends inside the JSON") ||
    exit 1
d2=$(failed services 2 "bad response: not JSON: .* at byte 0") || exit 1
d3=$(failed endpointslices 1 "bad response: not JSON: nesting too deep") ||
    exit 1
while read -r line; do
	ok "$line"
done <"$T/failures"
[ "$(lists services)" = $((ls0 + 3)) ] &&
    [ "$(lists endpointslices)" = $((le0 + 2)) ] ||
    fail "not one list per bad answer and one after"
awk -v a="$d1" -v b="$d2" 'BEGIN { exit !(a < b) }' ||
    fail "back-off does not grow: services $d1 s, then $d2 s"
ok "services retried after $d1 s, then $d2 s, and listed"
ok "20 MiB list: $(kuproxy_log_since | grep -a 'endpointslices: listed' |
    sed 's/^[^]]*] //' | cut -c 1-120); RSS $((rss0 / 1024)) ->" \
    "$(($(rss_kb "$KP_PID") / 1024)) MiB"
serves "$web" web-a || fail "web not served after the bad lists"
probe_stop "bad list bodies and a 20 MiB list"

# 2. The gzip bomb.  kuproxy takes 64 KiB of the inflated body per turn
# of its event loop, so relayed connections are served meanwhile: the
# probe has its normal 2 s timeout and reports the slowest connection.
probe_start_timed "$web" 2
sleep 0.5
kuproxy_mark
: >"$T/failures"
ctl POST /faults "@$T/f-gzip-bomb.json"
relist endpointslices
kuproxy_wait_log "endpointslices: list failed: " 30 ||
    fail "gzip bomb: no 'list failed': $(kuproxy_log_since |
    grep -a endpointslices | cut -c 1-300)"
sleep 0.5
[ "$(log_count "endpointslices: list failed: ")" = 1 ] ||
    fail "gzip bomb: not one 'list failed' line"
d4=$(failed endpointslices 1 \
    "bad response: response larger than [0-9]+ bytes") || exit 1
ok "$(cat "$T/failures")"
# Step 1 showed a retry listing; waiting for this one would take 6-13 s.
awk -v a="$d3" -v b="$d4" 'BEGIN { exit !(a < b) }' ||
    fail "back-off does not grow: endpointslices $d3 s, then $d4 s"
ok "endpointslices back-off grew: $d3 s, then $d4 s"
serves "$web" web-a || fail "web not served after the gzip bomb"
probe_stop "gzip bomb"
ok "gzip bomb: the slowest probe connection took $(probe_slowest_ms) ms"

hwm1=$(kp_hwm_kb)
# 96 MiB; measured 52 MiB, most of it one read of the bomb inflated (16
# MiB), held by libcurl and then by kuproxy.  Under ASan its quarantine
# (256 MiB of freed blocks kept resident) and allocator slack come on top.
bound=$(cp_mem_bound 98304)
[ "$bound" = 98304 ] || bound=$((bound + 327680))
[ $((hwm1 - hwm0)) -lt "$bound" ] ||
    fail "peak RSS grew by $(((hwm1 - hwm0) / 1024)) MiB"
ok "peak RSS $((hwm0 / 1024)) -> $((hwm1 / 1024)) MiB"
kuproxy_stop
ok "kuproxy alive throughout and stopped cleanly"
