#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Editing the services file under a running kuproxy.
#  1. With a connection to service "stream" open, the file is replaced (new
#     file, then rename, as editors do): one endpoint of "web" is removed and
#     service "fresh" is added.  Within 1 s new connections to web avoid the
#     removed endpoint and fresh answers; web keeps its proxy port.
#  2. A file that does not parse, then one with an invalid port: kuproxy logs
#     what is wrong and changes nothing (redis tests/unit/networking.tcl:
#     old state still served after a rejected update).  SIGHUP with the
#     broken file in place changes nothing either.
#  3. Going back to the first file closes fresh (its port refuses) and
#     brings the endpoint back.
#  4. The connection to stream, open through all of this, still carries data.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
e2e_init
e2e_netns node

backend_start "$NS_NODE" stream-0 127.0.0.21:8080 echo
backend_start "$NS_NODE" web-a 127.0.0.11:8080
backend_start "$NS_NODE" web-b 127.0.0.12:8080
backend_start "$NS_NODE" web-c 127.0.0.13:8080
backend_start "$NS_NODE" fresh-0 127.0.0.31:8080

# The objects, each as kubectl prints it inside a List.
service() {	# NAME PORT CLUSTER-IP
	cat <<YAML
- apiVersion: v1
  kind: Service
  metadata:
    name: $1
    namespace: default
  spec:
    clusterIP: $3
    ports:
    - name: tcp
      port: $2
      protocol: TCP
      targetPort: 8080
    selector:
      app: $1
    sessionAffinity: None
    type: ClusterIP
YAML
}

slice() {	# NAME ADDRESS...
	_svc=$1
	shift
	echo "- addressType: IPv4"
	echo "  apiVersion: discovery.k8s.io/v1"
	echo "  endpoints:"
	for _a in "$@"; do
		cat <<YAML
  - addresses:
    - $_a
    conditions:
      ready: true
      serving: true
      terminating: false
YAML
	done
	cat <<YAML
  kind: EndpointSlice
  metadata:
    labels:
      kubernetes.io/service-name: $_svc
    name: $_svc-abcde
    namespace: default
  ports:
  - name: tcp
    port: 8080
    protocol: TCP
YAML
}

list() {	# reads items on stdin
	echo "apiVersion: v1"
	echo "items:"
	cat
	echo "kind: List"
	echo "metadata:"
	echo "  resourceVersion: \"\""
}

version1() {
	{
		service stream 5000 10.96.5.1
		slice stream 127.0.0.21
		service web 80 10.96.5.2
		slice web 127.0.0.11 127.0.0.12 127.0.0.13
	} | list
}

# web-b (127.0.0.12) leaves web; fresh arrives.
version2() {
	{
		service stream 5000 10.96.5.1
		slice stream 127.0.0.21
		service web 80 10.96.5.2
		slice web 127.0.0.11 127.0.0.13
		service fresh 8443 10.96.5.3
		slice fresh 127.0.0.31
	} | list
}

file="$T/services.yaml"

# web_probe: six connections to web; all must succeed.  Prints the counts.
web_probe() {
	client "$NS_NODE" --connect "127.0.0.1:$web" --count 6 >"$T/web.out" ||
	    fail "$mode: a connection to web failed: $(cat "$T/web.out")"
	echo "web-a=$(count web-a "$T/web.out") web-b=$(count web-b "$T/web.out")" \
	    "web-c=$(count web-c "$T/web.out")"
}

fresh_probe() {
	client "$NS_NODE" --connect "127.0.0.1:$fresh" >"$T/fresh.out" ||
	    fail "$mode: fresh: $(cat "$T/fresh.out")"
	[ "$(distinct "$T/fresh.out")" = fresh-0 ] ||
	    fail "$mode: fresh answered $(cat "$T/fresh.out")"
}

# nothing_changed WHAT: since the mark no listener opened or closed, web
# avoids web-b and fresh still answers.
nothing_changed() {
	if kuproxy_log_since | grep -E "listening on proxy port|: closed" \
	    >"$T/changes"; then
		fail "$mode: after $1, listeners changed: $(cat "$T/changes")"
	fi
	counts=$(web_probe)
	[ "$counts" = "web-a=3 web-b=0 web-c=3" ] ||
	    fail "$mode: after $1, web served $counts"
	fresh_probe
	kuproxy_alive || fail "$mode: kuproxy died after $1"
}

for mode in $KPT_RELAY_MODES; do
	rm -f "$T/go"
	version1 >"$file"
	kuproxy_start "$NS_NODE" "$file" "$mode"
	kuproxy_port stream default/stream:tcp/TCP
	kuproxy_port web default/web:tcp/TCP
	web_port_before=$web

	e2e_bg "hold-$mode" "$NS_NODE" timeout 60 "$KPT_PYTHON" "$TCPKIT" \
	    client --connect "127.0.0.1:$stream" --mode hold \
	    --go-file "$T/go" --timeout 30
	hold=$LAST_PID
	deadline=$(($(now_ms) + 5000))
	until grep -q "ping first" "$T/hold-$mode.log"; do
		[ "$(now_ms)" -lt "$deadline" ] ||
		    fail "$mode: no echo on stream: $(cat "$T/hold-$mode.log")"
		sleep 0.02
	done
	counts=$(web_probe)
	[ "$counts" = "web-a=2 web-b=2 web-c=2" ] ||
	    fail "$mode: before the edit, web served $counts"
	ok "$mode: stream connection open; web round robin $counts"

	# 1. The edit.
	kuproxy_mark
	t0=$(now_ms)
	version2 | replace_file "$file"
	until kuproxy_log_since |
	    grep -qF "default/fresh:tcp/TCP: listening on proxy port"; do
		kuproxy_alive || fail "$mode: kuproxy died after the edit"
		[ "$(($(now_ms) - t0))" -lt 1000 ] ||
		    fail "$mode: fresh not listening 1 s after the edit"
		sleep 0.01
	done
	# The table is applied whole, so once fresh listens web has changed too;
	# the probes (client start-up included) must see it straight away.
	applied=$(($(now_ms) - t0))
	kuproxy_port fresh default/fresh:tcp/TCP
	counts=$(web_probe)
	fresh_probe
	elapsed=$(($(now_ms) - t0))
	[ "$counts" = "web-a=3 web-b=0 web-c=3" ] ||
	    fail "$mode: after the edit, web served $counts"
	kuproxy_port web default/web:tcp/TCP
	[ "$web" = "$web_port_before" ] ||
	    fail "$mode: web moved from port $web_port_before to $web"
	if kuproxy_log_since | grep -F ": closed" >"$T/changes"; then
		fail "$mode: the edit closed listeners: $(cat "$T/changes")"
	fi
	ok "$mode: edit applied $applied ms after the rename; by $elapsed ms" \
	    "web served $counts and fresh answered"

	# 2. Rejected updates.
	kuproxy_mark
	version2 | sed 's/^    name: fresh$/    name: [fresh/' | replace_file "$file"
	kuproxy_wait_log "services\.yaml" 3 ||
	    fail "$mode: no log line naming services.yaml after a broken file"
	problem=$(kuproxy_log_since | grep "services\.yaml" | head -n 1)
	nothing_changed "a file that does not parse"
	ok "$mode: unparsable file rejected, nothing changed; log: $problem"

	kuproxy_mark
	version2 | sed 's/^      port: 8443$/      port: 70000/' | replace_file "$file"
	grep -q 'port: 70000' "$file" || e2e_error "sed did not apply"
	kuproxy_wait_log "70000" 3 ||
	    fail "$mode: no log line naming the invalid port 70000"
	problem=$(kuproxy_log_since | grep "70000" | head -n 1)
	nothing_changed "a file with port 70000"
	ok "$mode: port 70000 rejected, nothing changed; log: $problem"

	kuproxy_mark
	kill -HUP "$KP_PID"
	sleep 0.5
	nothing_changed "SIGHUP with the invalid file"
	ok "$mode: SIGHUP with the invalid file in place changed nothing"

	# 3. Back to the first version: fresh goes away, web-b comes back.
	kuproxy_mark
	version1 | replace_file "$file"
	kuproxy_wait_log "default/fresh:tcp/TCP: closed" 1 ||
	    fail "$mode: fresh not closed 1 s after its removal"
	client "$NS_NODE" --connect "127.0.0.1:$fresh" >"$T/fresh.out"
	[ "$(distinct "$T/fresh.out")" = ERROR:refused ] ||
	    fail "$mode: fresh's old port after removal: $(cat "$T/fresh.out")"
	counts=$(web_probe)
	[ "$counts" = "web-a=2 web-b=2 web-c=2" ] ||
	    fail "$mode: with web-b back, web served $counts"
	ok "$mode: fresh removed (its port refuses), web-b back: $counts"

	# 4. The connection opened before all of this.
	touch "$T/go"
	deadline=$(($(now_ms) + 10000))
	while kill -0 "$hold" 2>/dev/null; do
		[ "$(now_ms)" -lt "$deadline" ] ||
		    fail "$mode: the stream client hangs: $(cat "$T/hold-$mode.log")"
		sleep 0.02
	done
	wait "$hold" || fail "$mode: stream connection: $(cat "$T/hold-$mode.log")"
	grep -q "ping second" "$T/hold-$mode.log" ||
	    fail "$mode: stream connection: $(cat "$T/hold-$mode.log")"
	ok "$mode: the stream connection opened before the edits still echoes" \
	    "($(tail -n 1 "$T/hold-$mode.log" | cut -d' ' -f2-))"

	kuproxy_stop
done
