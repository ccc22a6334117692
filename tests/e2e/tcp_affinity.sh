#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# ClientIP session affinity with timeoutSeconds: 2.  Two clients (source
# addresses 127.0.0.50 and .51) alternate ten connections each: each always
# lands on one endpoint.  After 3 s of silence the first client's entry has
# expired and its next connection takes the next round-robin endpoint, the
# one neither client had (upstream honoured no custom timeout: k/k#107398).
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
e2e_init
e2e_netns node

backend_start "$NS_NODE" pod-a 127.0.0.11:8080
backend_start "$NS_NODE" pod-b 127.0.0.12:8080
backend_start "$NS_NODE" pod-c 127.0.0.13:8080

# Multi-document YAML, as `kubectl get service/sticky endpointslice/sticky-q8v4n
# -o yaml` prints each object (status and bookkeeping fields trimmed).
cat >"$T/services.yaml" <<'YAML'
apiVersion: v1
kind: Service
metadata:
  name: sticky
  namespace: shop
  resourceVersion: "7001"
spec:
  clusterIP: 10.96.33.7
  clusterIPs:
  - 10.96.33.7
  ipFamilies:
  - IPv4
  ipFamilyPolicy: SingleStack
  ports:
  - name: http
    port: 80
    protocol: TCP
    targetPort: 8080
  selector:
    app: sticky
  sessionAffinity: ClientIP
  sessionAffinityConfig:
    clientIP:
      timeoutSeconds: 2
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
  targetRef:
    kind: Pod
    name: sticky-0
    namespace: shop
- addresses:
  - 127.0.0.12
  conditions:
    ready: true
    serving: true
    terminating: false
  targetRef:
    kind: Pod
    name: sticky-1
    namespace: shop
- addresses:
  - 127.0.0.13
  conditions:
    ready: true
    serving: true
    terminating: false
  targetRef:
    kind: Pod
    name: sticky-2
    namespace: shop
kind: EndpointSlice
metadata:
  labels:
    endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io
    kubernetes.io/service-name: sticky
  name: sticky-q8v4n
  namespace: shop
ports:
- name: http
  port: 8080
  protocol: TCP
YAML

for mode in $KPT_RELAY_MODES; do
	kuproxy_start "$NS_NODE" "$T/services.yaml" "$mode"
	kuproxy_port sticky shop/sticky:http/TCP

	out="$T/affinity-$mode.out"
	client "$NS_NODE" --connect "127.0.0.1:$sticky" \
	    --bind 127.0.0.50,127.0.0.51 --count 20 >"$out" ||
	    fail "$mode: a connection failed: $(cat "$out")"
	grep '^127.0.0.50 ' "$out" >"$out.50"
	grep '^127.0.0.51 ' "$out" >"$out.51"
	first=$(distinct "$out.50")
	second=$(distinct "$out.51")
	[ "$(wc -l <"$out.50")" = 10 ] && [ "$(wc -l <"$out.51")" = 10 ] ||
	    fail "$mode: want 10 connections per client: $(cat "$out")"
	case "$first$second" in
	*" "*) fail "$mode: a client moved between endpoints:" \
	    ".50 -> $first; .51 -> $second" ;;
	esac
	[ "$first" != "$second" ] ||
	    fail "$mode: both clients on $first, want two round-robin picks"
	ok "$mode: 127.0.0.50 always on $first, 127.0.0.51 always on $second"

	unused=$(printf 'pod-a\npod-b\npod-c\n' |
	    grep -vxF -e "$first" -e "$second")
	sleep 3
	client "$NS_NODE" --connect "127.0.0.1:$sticky" --bind 127.0.0.50 \
	    >"$out.after" || fail "$mode: connection after expiry failed"
	after=$(distinct "$out.after")
	[ "$after" = "$unused" ] ||
	    fail "$mode: after 3 s idle, 127.0.0.50 went to $after," \
	    "want the next round-robin endpoint $unused"
	ok "$mode: after 3 s idle (timeoutSeconds: 2), 127.0.0.50 moved to $after"

	kuproxy_stop
done
