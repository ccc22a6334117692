#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# The API server goes away and comes back with a change (reliability
# matrix rows 26 and 16, "API down"), with kuproxy's portal rules in place
# (the first iptables backend that works in a namespace) and a probe in
# pod3 connecting to service "web" through its ClusterIP:
#  1. The fake API server is stopped for 10 s.  Every probe connection is
#     served; kuproxy's rule count, sampled every 0.2 s from iptables-save,
#     never changes; /healthz stays 200 (nothing is pending); the retries
#     back off (the time between them grows).
#  2. The server comes back with newer resourceVersions and one changed
#     service (web's endpoints: pod-2 only).  Once kuproxy has reconnected
#     (its first successful request), the change is served within 2 s; the
#     rule count is still the same (the change moved no rule) and web's
#     proxy port did not change.
# Then kuproxy exits 0 on SIGTERM and removes its rules.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/fault_cp_lib.sh"
cp_init
e2e_topology
backend=$(ipt_backends "$NS_NODE" | awk '{ print $1 }')
[ -n "$backend" ] || e2e_skip "no iptables backend works in a namespace"

backend_start "$NS_POD1" pod-1 "$POD1_IP:8080"
backend_start "$NS_POD2" pod-2 "$POD2_IP:8080"

# svc_ip_json NAME CLUSTER-IP: a ClusterIP service, port 80 to 8080.
svc_ip_json() {
	printf '{"kind":"Service","apiVersion":"v1","metadata":{"name":"%s",' "$1"
	printf '"namespace":"default"},"spec":{"type":"ClusterIP",'
	printf '"clusterIP":"%s","ports":[{"name":"http","port":80,' "$2"
	printf '"targetPort":8080,"protocol":"TCP"}]}}'
}

fakeapi_start
ctl POST /objects "$(svc_ip_json web 10.96.0.10)"
ctl POST /objects "$(slice_json web-1 web "$POD1_IP" "$POD2_IP")"
ctl POST /objects "$(svc_ip_json other 10.96.0.20)"
ctl POST /objects "$(slice_json other-1 other "$POD1_IP")"
cp_kubeconfig "$T/kubeconfig"
kp_start main "$T/kubeconfig" --iptables-backend "$backend"
kuproxy_wait_log "iptables backend $backend" 5 ||
    fail "kuproxy is not on iptables-$backend: $(head -n 5 "$KP_LOG")"
kuproxy_port web default/web:http/TCP 10

# via_cluster_ip "EXPECTED": six connections from pod3 to web's ClusterIP.
via_cluster_ip() {
	client "$NS_POD3" --connect 10.96.0.10:80 --count 6 --timeout 2 \
	    >"$T/serves.out" 2>&1
	[ "$(distinct "$T/serves.out")" = "$1" ]
}
within 5 "web served through its ClusterIP" via_cluster_ip "pod-1 pod-2"
rules=$(portal_rules "$NS_NODE" "$backend" | wc -l)
[ "$rules" -gt 0 ] || fail "no portal rules"

# Sample kuproxy's rule count every 0.2 s until $T/sample.stop.
rm -f "$T/sample.stop" "$T/rule-counts"
(
	while [ ! -e "$T/sample.stop" ]; do
		portal_rules "$NS_NODE" "$backend" | wc -l >>"$T/rule-counts"
		sleep 0.2
	done
) &
SAMPLER_PID=$!
E2E_PIDS="$E2E_PIDS $SAMPLER_PID"
probe_start_at "$NS_POD3" 10.96.0.10:80

# 1. The server away for 10 s.
ctl GET /objects
"$KPT_PYTHON" -c '
import json, sys
d = json.load(open(sys.argv[1]))
items = d["objects"]["services"] + d["objects"]["endpointslices"]
for o in items:
    for k in ("resourceVersion", "uid", "managedFields", "generation",
              "creationTimestamp"):
        o["metadata"].pop(k, None)
    if o["metadata"]["name"] == "web-1":
        o["endpoints"] = [e for e in o["endpoints"]
                          if e["addresses"] == [sys.argv[3]]]
json.dump({"kind": "List", "apiVersion": "v1", "items": items},
          open(sys.argv[2], "w"))
print(int(d["rv"]) + 1000)' "$T/ctl.out" "$T/restore.json" "$POD2_IP" \
    >"$T/next-rv" || e2e_error "cannot save the fake server's objects"
sleep 1.1	# watches younger than 1 s would count as failures
kuproxy_mark
fakeapi_stop
t_down=$(now_ms)
while [ "$(($(now_ms) - t_down))" -lt 10000 ]; do
	[ "$(kp_healthz)" = 200 ] ||
	    fail "/healthz answered $(kp_healthz) while the API server is down"
	sleep 1
done
kuproxy_log_since | grep -qE "Connection refused|Couldn't connect" ||
    fail "the outage is not logged: $(kuproxy_log_since | tail -n 3)"
retries_check 3 "https://localhost:$API_PORT: "
ok "server down 10 s: /healthz 200 throughout"

# 2. Back, with web's endpoints changed.
fakeapi_start --objects "$T/restore.json" --initial-rv "$(cat "$T/next-rv")"
t_up=$(now_ms)
until [ "$(log_count '(services|endpointslices): listed')" -ge 1 ]; do
	[ "$(($(now_ms) - t_up))" -lt 30000 ] ||
	    fail "kuproxy did not reconnect within 30 s"
	sleep 0.05
done
t_back=$(now_ms)
within 2 "after reconnecting, the change is applied" via_cluster_ip "pod-2"
ok "reconnected $((t_back - t_up)) ms after the server came back (the" \
    "back-off's next retry)"
kuproxy_wait_log "services: listed" 5 || fail "services not relisted"
kuproxy_wait_log "endpointslices: listed" 5 || fail "slices not relisted"
sleep 0.5
touch "$T/sample.stop"
wait "$SAMPLER_PID"
probe_stop "API server down 10 s and back"
counts=$(sort -u "$T/rule-counts" | tr '\n' ' ')
[ "$counts" = "$rules " ] ||
    fail "the rule count changed: $counts (was $rules):" \
    "$(uniq -c "$T/rule-counts" | tr '\n' ' ')"
ok "rule count $rules in all $(wc -l <"$T/rule-counts") samples"
kuproxy_port web2 default/web:http/TCP 1
[ "$web2" = "$web" ] || fail "web's proxy port moved from $web to $web2"
kuproxy_stop
[ -z "$(portal_rules "$NS_NODE" "$backend")" ] ||
    fail "rules left after SIGTERM: $(portal_rules "$NS_NODE" "$backend")"
ok "kuproxy stopped cleanly and removed its rules"
