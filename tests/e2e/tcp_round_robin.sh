#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Round robin: a service with three ready endpoints; six sequential
# connections are served exactly two each, in a fixed rotation (haproxy
# reg-tests/balance/balance-rr.vtc), in splice and in copy mode.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
e2e_init
e2e_netns node

backend_start "$NS_NODE" pod-a 127.0.0.11:8080
backend_start "$NS_NODE" pod-b 127.0.0.12:8080
backend_start "$NS_NODE" pod-c 127.0.0.13:8080

# As printed by `kubectl get services,endpointslices -n default -o yaml`.
cat >"$T/services.yaml" <<'YAML'
apiVersion: v1
items:
- apiVersion: v1
  kind: Service
  metadata:
    creationTimestamp: "2024-05-02T09:14:07Z"
    labels:
      app: web
    name: web
    namespace: default
    resourceVersion: "48213"
    uid: 0f5c3a52-6c1e-4d6b-9a57-3c2e8f1b7a10
  spec:
    clusterIP: 10.96.120.15
    clusterIPs:
    - 10.96.120.15
    internalTrafficPolicy: Cluster
    ipFamilies:
    - IPv4
    ipFamilyPolicy: SingleStack
    ports:
    - name: http
      port: 80
      protocol: TCP
      targetPort: 8080
    selector:
      app: web
    sessionAffinity: None
    type: ClusterIP
  status:
    loadBalancer: {}
- addressType: IPv4
  apiVersion: discovery.k8s.io/v1
  endpoints:
  - addresses:
    - 127.0.0.11
    conditions:
      ready: true
      serving: true
      terminating: false
    nodeName: node-1
    targetRef:
      kind: Pod
      name: web-6d5f8c7b9-a
      namespace: default
      uid: 2b7e1f04-8d4a-4c1e-b0a1-7f3c9e5d2a11
  - addresses:
    - 127.0.0.12
    conditions:
      ready: true
      serving: true
      terminating: false
    nodeName: node-1
    targetRef:
      kind: Pod
      name: web-6d5f8c7b9-b
      namespace: default
      uid: 2b7e1f04-8d4a-4c1e-b0a1-7f3c9e5d2a12
  - addresses:
    - 127.0.0.13
    conditions:
      ready: true
      serving: true
      terminating: false
    nodeName: node-1
    targetRef:
      kind: Pod
      name: web-6d5f8c7b9-c
      namespace: default
      uid: 2b7e1f04-8d4a-4c1e-b0a1-7f3c9e5d2a13
  kind: EndpointSlice
  metadata:
    annotations:
      endpoints.kubernetes.io/last-change-trigger-time: "2024-05-02T09:14:12Z"
    creationTimestamp: "2024-05-02T09:14:07Z"
    generateName: web-
    generation: 3
    labels:
      endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io
      kubernetes.io/service-name: web
    name: web-x7k2p
    namespace: default
    ownerReferences:
    - apiVersion: v1
      blockOwnerDeletion: true
      controller: true
      kind: Service
      name: web
      uid: 0f5c3a52-6c1e-4d6b-9a57-3c2e8f1b7a10
    resourceVersion: "48230"
    uid: 9a0d6c3e-1b2f-4e8a-8c7d-5e4f3a2b1c01
  ports:
  - name: http
    port: 8080
    protocol: TCP
kind: List
metadata:
  resourceVersion: ""
YAML

for mode in $KPT_RELAY_MODES; do
	kuproxy_start "$NS_NODE" "$T/services.yaml" "$mode"
	kuproxy_port web default/web:http/TCP

	out="$T/rr-$mode.out"
	client "$NS_NODE" --connect "127.0.0.1:$web" --count 6 >"$out" ||
	    fail "$mode: a connection failed: $(cat "$out")"
	for b in pod-a pod-b pod-c; do
		[ "$(count $b "$out")" = 2 ] ||
		    fail "$mode: $b served $(count $b "$out") of 6, want 2:" \
		    "$(awk '{ print $2 }' "$out" | tr '\n' ' ')"
	done
	# Exact rotation: connection i and i+3 go to the same endpoint.
	seq=$(awk '{ print $2 }' "$out" | tr '\n' ' ' | sed 's/ $//')
	set -- $seq
	[ "$1" = "$4" ] && [ "$2" = "$5" ] && [ "$3" = "$6" ] ||
	    fail "$mode: not a rotation: $seq"
	ok "$mode: 6 connections, 2/2/2 in rotation ($seq)"

	kuproxy_stop
	ok "$mode: kuproxy exited 0 on SIGTERM"
done
