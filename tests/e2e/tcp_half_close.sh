#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Half-close goes through the proxy in both directions (nginx-tests
# stream_proxy_half_close.t).  Upstream closed both sides on the first EOF
# (k/k#18524); kuproxy forwards the FIN and keeps the other direction open.
#  - client to backend: the client sends a request and shuts down its write
#    side; the backend answers only after it sees that EOF, and the client
#    still reads the whole answer.
#  - backend to client: the backend greets and shuts down its write side;
#    the client reads to EOF and then sends, and the backend receives it.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
e2e_init
e2e_netns node

backend_start "$NS_NODE" upload-0 127.0.0.11:8080 after-eof
backend_start "$NS_NODE" banner-0 127.0.0.12:8080 greet

cat >"$T/services.yaml" <<'YAML'
apiVersion: v1
items:
- apiVersion: v1
  kind: Service
  metadata:
    name: upload
    namespace: default
  spec:
    clusterIP: 10.96.1.10
    ports:
    - name: data
      port: 7000
      protocol: TCP
      targetPort: 8080
    selector:
      app: upload
    type: ClusterIP
- apiVersion: v1
  kind: Service
  metadata:
    name: banner
    namespace: default
  spec:
    clusterIP: 10.96.1.11
    ports:
    - name: smtp
      port: 25
      protocol: TCP
      targetPort: 8080
    selector:
      app: banner
    type: ClusterIP
- addressType: IPv4
  apiVersion: discovery.k8s.io/v1
  endpoints:
  - addresses:
    - 127.0.0.11
    conditions:
      ready: true
  kind: EndpointSlice
  metadata:
    labels:
      kubernetes.io/service-name: upload
    name: upload-7qz4c
    namespace: default
  ports:
  - name: data
    port: 8080
    protocol: TCP
- addressType: IPv4
  apiVersion: discovery.k8s.io/v1
  endpoints:
  - addresses:
    - 127.0.0.12
    conditions:
      ready: true
  kind: EndpointSlice
  metadata:
    labels:
      kubernetes.io/service-name: banner
    name: banner-l0p3x
    namespace: default
  ports:
  - name: smtp
    port: 8080
    protocol: TCP
kind: List
metadata:
  resourceVersion: ""
YAML

for mode in $KPT_RELAY_MODES; do
	kuproxy_start "$NS_NODE" "$T/services.yaml" "$mode"
	kuproxy_port upload default/upload:data/TCP
	kuproxy_port banner default/banner:smtp/TCP

	# As a user would: socat sends stdin, shuts down on its EOF and waits
	# up to -t seconds for the rest of the answer.
	got=$(printf 'hello\n' | nsx "$NS_NODE" timeout 10 socat -t 5 -T 5 - \
	    "TCP:127.0.0.1:$upload")
	[ "$got" = "upload-0 got 6 bytes" ] ||
	    fail "$mode: socat after shutdown(SHUT_WR) read '$got'"
	ok "$mode: socat: request, FIN, then the reply: '$got'"

	# 4 MiB before the FIN, so that the FIN queues behind data in the relay.
	out="$T/half-$mode.out"
	client "$NS_NODE" --connect "127.0.0.1:$upload" --mode half-close \
	    --send "0123456789abcdef" --repeat 262144 >"$out" ||
	    fail "$mode: $(cat "$out")"
	[ "$(cut -d' ' -f2- "$out")" = "upload-0 got 4194304 bytes" ] ||
	    fail "$mode: after 4 MiB and FIN: $(cat "$out")"
	ok "$mode: 4 MiB, FIN, then the reply: $(cut -d' ' -f2- "$out")"

	# The other direction: the backend's FIN reaches the client, and what
	# the client sends afterwards still reaches the backend.
	log="$T/backend-banner-0.log"
	before=$(grep -c "received" "$log")
	out="$T/greet-$mode.out"
	client "$NS_NODE" --connect "127.0.0.1:$banner" --mode greet \
	    --send "QUIT after your FIN" >"$out" ||
	    fail "$mode: $(cat "$out")"
	[ "$(cut -d' ' -f2 "$out")" = banner-0 ] || fail "$mode: $(cat "$out")"
	deadline=$(($(now_ms) + 5000))
	while [ "$(grep -c "received" "$log")" = "$before" ]; do
		[ "$(now_ms)" -lt "$deadline" ] ||
		    fail "$mode: the backend never saw the client's EOF"
		sleep 0.02
	done
	last=$(grep "received" "$log" | tail -n 1)
	case $last in
	*"received 19 bytes after our FIN") ;;
	*) fail "$mode: backend after its FIN: $last" ;;
	esac
	ok "$mode: backend FIN reached the client; client's 19 bytes after it arrived"

	kuproxy_stop
done
