#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# 1 GiB each way, byte-exact: the client streams 1 GiB of a deterministic
# pattern through the proxy to an echo backend while reading the echo back.
# The SHA-256 of what the client sent, of what the backend received and of
# what the client got back must be equal, in splice and in copy mode.
# KPT_BULK_BYTES overrides the size.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
e2e_init
e2e_netns node
bytes=${KPT_BULK_BYTES:-1073741824}

backend_start "$NS_NODE" echo-0 127.0.0.11:8080 echo

cat >"$T/services.yaml" <<'YAML'
apiVersion: v1
kind: Service
metadata:
  name: blob
  namespace: storage
spec:
  clusterIP: 10.96.9.9
  ports:
  - name: s3
    port: 9000
    protocol: TCP
    targetPort: 8080
  selector:
    app: blob
  type: ClusterIP
---
addressType: IPv4
apiVersion: discovery.k8s.io/v1
endpoints:
- addresses:
  - 127.0.0.11
  conditions:
    ready: true
    serving: true
    terminating: false
kind: EndpointSlice
metadata:
  labels:
    kubernetes.io/service-name: blob
  name: blob-5rz8w
  namespace: storage
ports:
- name: s3
  port: 8080
  protocol: TCP
YAML

for mode in $KPT_RELAY_MODES; do
	kuproxy_start "$NS_NODE" "$T/services.yaml" "$mode"
	kuproxy_port blob storage/blob:s3/TCP

	out="$T/bulk-$mode.out"
	KPT_CLIENT_TIMEOUT=150 client "$NS_NODE" --connect "127.0.0.1:$blob" \
	    --mode echo --bytes "$bytes" --timeout 60 >"$out" ||
	    fail "$mode: transfer failed: $(cat "$out")"
	# "- sent N SHA received M SHA SECONDS"
	set -- $(cat "$out")
	[ "$#" = 8 ] || fail "$mode: client said: $(cat "$out")"
	sent=$3 sent_sha=$4 received=$6 received_sha=$7 secs=$8
	[ "$received" = "$bytes" ] ||
	    fail "$mode: sent $sent bytes, got $received back"
	[ "$received_sha" = "$sent_sha" ] ||
	    fail "$mode: echo differs: sent sha256 $sent_sha, got $received_sha"
	backend=$(grep "echoed" "$T/backend-echo-0.log" | tail -n 1)
	case $backend in
	*"echoed $bytes bytes sha256 $sent_sha") ;;
	*) fail "$mode: the backend saw: $backend (sent $sent_sha)" ;;
	esac
	ok "$mode: $bytes bytes each way byte-exact in $secs s" \
	    "(sha256 ${sent_sha%"${sent_sha#????????????}"}...)"

	kuproxy_stop
done
