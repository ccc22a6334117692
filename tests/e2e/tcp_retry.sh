#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Retry past a dead endpoint: of three ready endpoints one has no server
# (connect is refused).  kuproxy tries the next endpoint, so all of 30
# sequential connections succeed and the client never notices.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
e2e_init
e2e_netns node

backend_start "$NS_NODE" pod-a 127.0.0.11:8080
backend_start "$NS_NODE" pod-b 127.0.0.12:8080
# 127.0.0.13:8080: nobody listens there.

cat >"$T/services.yaml" <<'YAML'
apiVersion: v1
items:
- apiVersion: v1
  kind: Service
  metadata:
    name: api
    namespace: default
  spec:
    clusterIP: 10.96.7.70
    ports:
    - name: grpc
      port: 9000
      protocol: TCP
      targetPort: grpc
    selector:
      app: api
    sessionAffinity: None
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
    - 127.0.0.13
    conditions:
      ready: true
      serving: true
      terminating: false
  - addresses:
    - 127.0.0.12
    conditions:
      ready: true
      serving: true
      terminating: false
  kind: EndpointSlice
  metadata:
    labels:
      kubernetes.io/service-name: api
    name: api-4xq9z
    namespace: default
  ports:
  - name: grpc
    port: 8080
    protocol: TCP
kind: List
metadata:
  resourceVersion: ""
YAML

for mode in $KPT_RELAY_MODES; do
	kuproxy_start "$NS_NODE" "$T/services.yaml" "$mode"
	kuproxy_port api default/api:grpc/TCP

	out="$T/retry-$mode.out"
	client "$NS_NODE" --connect "127.0.0.1:$api" --count 30 >"$out"
	errors=$(grep -c ERROR "$out")
	[ "$errors" = 0 ] || fail "$mode: $errors of 30 connections failed:" \
	    "$(grep ERROR "$out" | sort | uniq -c)"
	[ "$(count pod-a "$out")" -gt 0 ] && [ "$(count pod-b "$out")" -gt 0 ] ||
	    fail "$mode: want both live endpoints used: $(distinct "$out")"
	[ "$(($(count pod-a "$out") + $(count pod-b "$out")))" = 30 ] ||
	    fail "$mode: unexpected answers: $(distinct "$out")"
	ok "$mode: 30 of 30 connections served (pod-a $(count pod-a "$out")," \
	    "pod-b $(count pod-b "$out")) past the dead endpoint"

	kuproxy_stop
done
