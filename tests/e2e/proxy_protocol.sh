#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# kuproxy.io/proxy-protocol: endpoints of an annotated service get a PROXY
# protocol header (v1 or v2) naming the client and the address it dialled,
# so that the backend sees who connected, which upstream's userspace mode
# always hid behind the node's address.  On the pod/node/outside network
# (e2e_topology), one nginx in pod1 answers with what it was told:
#
#  - with portal rules: a pod and the outside namespace connect to the
#    ClusterIPs from fixed source ports; nginx reports each client's own
#    address and port, and the ClusterIP:port it dialled (SO_ORIGINAL_DST),
#    for the v1 and the v2 service.
#  - a service without the annotation sends no header: an nginx listener
#    without proxy_protocol answers it normally (a header would be a bad
#    request to it).
#  - without rules (--iptables-backend none): a pod dials the proxy port on
#    the node; the header's destination is that address and port.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
e2e_init
e2e_topology
command -v curl >/dev/null 2>&1 ||
    e2e_error "missing curl (packaging/install-deps installs it)"
command -v nginx >/dev/null 2>&1 ||
    e2e_error "missing nginx (packaging/install-deps installs it)"

# nginx: 8081 expects a PROXY header (v1 or v2, nginx tells them apart),
# 8080 does not.
dir="$T/nginx-pp"
mkdir -p "$dir/tmp"
cat >"$dir/nginx.conf" <<NGINX
daemon off; master_process off; worker_processes 1;
pid $dir/nginx.pid; error_log $dir/error.log;
events { worker_connections 64; }
http {
  access_log off; client_body_temp_path $dir/tmp;
  proxy_temp_path $dir/tmp; fastcgi_temp_path $dir/tmp;
  uwsgi_temp_path $dir/tmp; scgi_temp_path $dir/tmp;
  default_type text/plain;
  server {
    listen $POD1_IP:8081 proxy_protocol;
    location / {
      return 200 "pp \$proxy_protocol_addr:\$proxy_protocol_port -> \$proxy_protocol_server_addr:\$proxy_protocol_server_port\n";
    }
  }
  server {
    listen $POD1_IP:8080;
    location / { return 200 "plain \$remote_addr\n"; }
  }
}
NGINX
e2e_bg nginx-pp "$NS_POD1" nginx -p "$dir" -e "$dir/error.log" \
    -c "$dir/nginx.conf"
for port in 8080 8081; do
	e2e_wait_listen "$NS_POD1" "$POD1_IP:$port" 10 ||
	    e2e_error "nginx did not listen on $port: $(cat "$dir/error.log")"
done

# annotated VERSION: add the annotation to the Service on stdin.
annotated() {
	sed "s|^    namespace: default\$|&\\
    annotations:\\
      kuproxy.io/proxy-protocol: $1|"
}

file="$T/services.yaml"
{
	yaml_service pp-v1 10.96.50.1 80 target=8081 | annotated v1
	yaml_slice pp-v1 8081 "$POD1_IP"
	yaml_service pp-v2 10.96.50.2 80 target=8081 | annotated v2
	yaml_slice pp-v2 8081 "$POD1_IP"
	yaml_service plain 10.96.50.3 80 target=8080
	yaml_slice plain 8080 "$POD1_IP"
	yaml_service raw 10.96.50.4 80 target=8090 | annotated v2
	yaml_slice raw 8090 "$POD1_IP"
} | yaml_list >"$file"

# get NS SOURCE_PORT URL: the body, or ERROR.
get() {
	timeout 10 ip netns exec "$1" curl -sS --max-time 5 \
	    --local-port "$2" "$3" 2>&1 || echo ERROR
}

expect() {
	[ "$2" = "$3" ] || fail "$1: got \"$2\", expected \"$3\""
	ok "$1: $2"
}

backend=$(ipt_backends "$NS_NODE" | awk '{ print $1 }')
mode=$(relay_mode_for 0)
if [ -n "$backend" ]; then
	KP_IPTABLES_BACKEND=$backend kuproxy_start "$NS_NODE" "$file" "$mode" \
	    --iptables-min-sync-period 200ms
	for svc in pp-v1 pp-v2 plain; do
		kuproxy_port unused "default/$svc:http/TCP"
	done
	portal_wait "$NS_NODE" "$backend" '"default/plain:http"' present ||
	    fail "$backend: no rules 5 s after start"
	expect "v1 from a pod" \
	    "$(get "$NS_POD2" 41001 http://10.96.50.1/)" \
	    "pp $POD2_IP:41001 -> 10.96.50.1:80"
	expect "v2 from a pod" \
	    "$(get "$NS_POD2" 41002 http://10.96.50.2/)" \
	    "pp $POD2_IP:41002 -> 10.96.50.2:80"
	expect "v1 from outside" \
	    "$(get "$NS_OUT" 41003 http://10.96.50.1/)" \
	    "pp $OUT_IP:41003 -> 10.96.50.1:80"
	expect "v2 from outside" \
	    "$(get "$NS_OUT" 41004 http://10.96.50.2/)" \
	    "pp $OUT_IP:41004 -> 10.96.50.2:80"
	expect "no annotation, no header" \
	    "$(get "$NS_POD2" 41005 http://10.96.50.3/)" "plain $POD_GW_IP"
	kuproxy_alive || fail "kuproxy died"
	kuproxy_stop
else
	echo "SKIP: the portal part (no iptables backend works here)"
fi

# No rules: the client dials the proxy port, and that is the destination.
kuproxy_start "$NS_NODE" "$file" "$mode"
kuproxy_port p1 "default/pp-v1:http/TCP"
kuproxy_port p2 "default/pp-v2:http/TCP"
kuproxy_port p3 "default/plain:http/TCP"
expect "v1 to a proxy port" \
    "$(get "$NS_POD2" 41011 "http://$POD_GW_IP:$p1/")" \
    "pp $POD2_IP:41011 -> $POD_GW_IP:$p1"
expect "v2 to a proxy port" \
    "$(get "$NS_POD2" 41012 "http://$POD_GW_IP:$p2/")" \
    "pp $POD2_IP:41012 -> $POD_GW_IP:$p2"
expect "no annotation, proxy port" \
    "$(get "$NS_POD2" 41013 "http://$POD_GW_IP:$p3/")" "plain $POD_GW_IP"

# The v2 header on the wire, byte for byte, and before the client says
# anything (server-first protocols): the client stays silent for 3 s.
e2e_bg raw-backend "$NS_POD1" socat -u \
    "TCP-LISTEN:8090,bind=$POD1_IP,reuseaddr" "OPEN:$T/raw.bin,creat,trunc"
e2e_wait_listen "$NS_POD1" "$POD1_IP:8090" || e2e_error "socat on 8090"
kuproxy_port p4 "default/raw:http/TCP"
e2e_bg raw-client "$NS_POD2" sh -c "sleep 3 | socat -u - \
    TCP:$POD_GW_IP:$p4,sourceport=41014"
deadline=$(($(now_ms) + 2000))
while [ "$(wc -c <"$T/raw.bin" 2>/dev/null || echo 0)" -lt 28 ] &&
    [ "$(now_ms)" -lt "$deadline" ]; do
	sleep 0.05
done
# signature, v2 PROXY, TCP4, 12 bytes: 10.244.1.12 -> 10.244.1.1,
# 41014 -> the proxy port.
want="0d0a0d0a000d0a515549540a2111000c0af4010c0af40101a036$(printf %04x "$p4")"
got=$(od -An -v -tx1 "$T/raw.bin" | tr -d ' \n')
expect "v2 header before the client's first byte" "$got" "$want"
kuproxy_alive || fail "kuproxy died"
kuproxy_stop
