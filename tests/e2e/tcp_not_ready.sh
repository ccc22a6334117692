#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Endpoint conditions: a not-ready endpoint and a terminating one are never
# used while ready endpoints exist, even though their servers answer.  A
# service with no usable endpoint refuses connections at once (ECONNREFUSED
# in well under 100 ms), where upstream accepted and then closed.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
e2e_init
e2e_netns node

backend_start "$NS_NODE" pod-a 127.0.0.11:8080
backend_start "$NS_NODE" pod-b 127.0.0.12:8080
backend_start "$NS_NODE" pod-c 127.0.0.13:8080
backend_start "$NS_NODE" pod-d 127.0.0.14:8080

cat >"$T/services.yaml" <<'YAML'
apiVersion: v1
items:
- apiVersion: v1
  kind: Service
  metadata:
    name: web
    namespace: default
  spec:
    clusterIP: 10.96.0.80
    ports:
    - name: http
      port: 80
      protocol: TCP
      targetPort: 8080
    selector:
      app: web
    type: ClusterIP
- apiVersion: v1
  kind: Service
  metadata:
    name: empty
    namespace: default
  spec:
    clusterIP: 10.96.0.81
    ports:
    - name: http
      port: 80
      protocol: TCP
      targetPort: 8080
    selector:
      app: nothing-matches
    type: ClusterIP
- apiVersion: v1
  kind: Service
  metadata:
    name: starting
    namespace: default
  spec:
    clusterIP: 10.96.0.82
    ports:
    - port: 80
      protocol: TCP
      targetPort: 8080
    selector:
      app: starting
    type: ClusterIP
- addressType: IPv4
  apiVersion: discovery.k8s.io/v1
  endpoints:
  - addresses:
    - 127.0.0.11
    conditions:
      ready: true
      serving: true
      terminating: false
  - addresses:
    - 127.0.0.12
    conditions:
      ready: false
      serving: false
      terminating: false
  - addresses:
    - 127.0.0.13
    conditions:
      ready: true
      serving: true
      terminating: false
  - addresses:
    - 127.0.0.14
    conditions:
      ready: false
      serving: true
      terminating: true
  kind: EndpointSlice
  metadata:
    labels:
      kubernetes.io/service-name: web
    name: web-2hd8s
    namespace: default
  ports:
  - name: http
    port: 8080
    protocol: TCP
- addressType: IPv4
  apiVersion: discovery.k8s.io/v1
  endpoints: null
  kind: EndpointSlice
  metadata:
    labels:
      kubernetes.io/service-name: empty
    name: empty-m2c5d
    namespace: default
  ports:
  - name: http
    port: 8080
    protocol: TCP
- addressType: IPv4
  apiVersion: discovery.k8s.io/v1
  endpoints:
  - addresses:
    - 127.0.0.12
    conditions:
      ready: false
      serving: false
      terminating: false
  kind: EndpointSlice
  metadata:
    labels:
      kubernetes.io/service-name: starting
    name: starting-9fj2k
    namespace: default
  ports:
  - name: ""
    port: 8080
    protocol: TCP
kind: List
metadata:
  resourceVersion: ""
YAML

# refused_at_once SERVICE PORT: connect() fails with ECONNREFUSED within
# 100 ms, timed around the call itself so that a busy machine starting
# processes slowly cannot blur it.
refused_at_once() {
	out=$(nsx "$NS_NODE" timeout 5 "$KPT_PYTHON" -c '
import errno, socket, sys, time
s = socket.socket()
s.settimeout(2)
t0 = time.monotonic()
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
    print("accepted")
except OSError as e:
    ms = int((time.monotonic() - t0) * 1000)
    print("refused %d" % ms if e.errno == errno.ECONNREFUSED else
        "error %s" % e)
' "$2")
	case $out in
	"refused "*) ms=${out#refused } ;;
	*) fail "$mode: $1: want a refusal, got: $out" ;;
	esac
	[ "$ms" -lt 100 ] || fail "$mode: $1 refused only after $ms ms"
	ok "$mode: $1 refused in $ms ms"
}

for mode in $KPT_RELAY_MODES; do
	kuproxy_start "$NS_NODE" "$T/services.yaml" "$mode"
	kuproxy_port web default/web:http/TCP
	kuproxy_port empty default/empty:http/TCP
	kuproxy_port starting default/starting/TCP

	out="$T/web-$mode.out"
	client "$NS_NODE" --connect "127.0.0.1:$web" --count 12 >"$out" ||
	    fail "$mode: a connection failed: $(cat "$out")"
	[ "$(count pod-b "$out")" = 0 ] ||
	    fail "$mode: the not-ready endpoint served $(count pod-b "$out")"
	[ "$(count pod-d "$out")" = 0 ] ||
	    fail "$mode: the terminating endpoint served $(count pod-d "$out")"
	[ "$(count pod-a "$out")" = 6 ] && [ "$(count pod-c "$out")" = 6 ] ||
	    fail "$mode: want pod-a 6, pod-c 6: $(awk '{print $2}' "$out" | tr '\n' ' ')"
	ok "$mode: 12 connections, pod-a 6, pod-c 6; not-ready and terminating unused"

	refused_at_once default/empty "$empty"
	refused_at_once default/starting "$starting"

	kuproxy_stop
done
