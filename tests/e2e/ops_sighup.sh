#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# SIGHUP re-reads the --config file and the services file without dropping
# connections; a broken config file changes nothing.
#  1. kuproxy runs with a KubeProxyConfiguration (logging.format: text) and
#     two connections open to "stream" (echo).  The config file switches to
#     logging.format: json and the services file swaps web's endpoint web-b
#     for web-c; SIGHUP.  kuproxy logs in JSON from then on, web is served by
#     web-a and web-c only, on the same proxy port, and
#     kuproxy_config_reloads_total{result="success"} is 1.  The first
#     connection still echoes.
#  2. The config file gets a misspelt field; SIGHUP.  kuproxy logs an error
#     naming the file, keeps the previous configuration (its lines stay
#     JSON) and the table, counts {result="failure"} 1, and the second
#     connection still echoes.
# The open connections are the relay's, so this runs in every mode of
# KPT_RELAY_MODES.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/opslib.sh"
ops_init
e2e_netns node

backend_start "$NS_NODE" stream-0 127.0.0.21:8080 echo
backend_start "$NS_NODE" web-a 127.0.0.11:8080
backend_start "$NS_NODE" web-b 127.0.0.12:8080
backend_start "$NS_NODE" web-c 127.0.0.13:8080

file="$T/services.yaml"
config="$T/kube-proxy-config.yaml"

services() {	# WEB-ENDPOINT...
	{
		ops_service stream 5000 10.96.9.1
		ops_slice stream TCP 127.0.0.21
		ops_service web 80 10.96.9.2
		ops_slice web TCP "$@"
	} | ops_list
}

config_file() {	# LOGGING-FORMAT [EXTRA LINE]
	cat <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: userspace
udpIdleTimeout: 250ms
logging:
  format: $1
${2:-}
YAML
}

web_probe() {	# prints "web-a=N web-b=N web-c=N" for six connections
	client "$NS_NODE" --connect "127.0.0.1:$web" --count 6 >"$T/web.out" ||
	    fail "$mode: a connection to web failed: $(cat "$T/web.out")"
	echo "web-a=$(count web-a "$T/web.out") web-b=$(count web-b "$T/web.out")" \
	    "web-c=$(count web-c "$T/web.out")"
}

# hold_open NAME: a connection to stream that pings, then waits for
# $T/go-NAME to ping again.
hold_open() {
	rm -f "$T/go-$1"
	e2e_bg "hold-$1" "$NS_NODE" timeout 60 "$KPT_PYTHON" "$TCPKIT" client \
	    --connect "127.0.0.1:$stream" --mode hold --go-file "$T/go-$1" \
	    --timeout 30
	eval "hold_$1=\$LAST_PID"
	wait_until 5 grep -q "ping first" "$T/hold-$1.log" ||
	    fail "$mode: no echo on stream: $(cat "$T/hold-$1.log")"
}

hold_finish() {	# NAME: the connection must still echo
	eval "_pid=\$hold_$1"
	touch "$T/go-$1"
	wait_until 10 sh -c "! kill -0 $_pid 2>/dev/null" ||
	    fail "$mode: the $1 client hangs: $(cat "$T/hold-$1.log")"
	wait "$_pid" && grep -q "ping second" "$T/hold-$1.log" ||
	    fail "$mode: connection $1: $(cat "$T/hold-$1.log")"
}

reloads_are() {	# SUCCESS FAILURE
	metrics_fetch reloads &&
	    metrics_is reloads 'kuproxy_config_reloads_total{result="success"}' \
	    "$1" &&
	    metrics_is reloads 'kuproxy_config_reloads_total{result="failure"}' \
	    "$2"
}

for mode in $KPT_RELAY_MODES; do
	services 127.0.0.11 127.0.0.12 >"$file"
	config_file text >"$config"
	kuproxy_start "$NS_NODE" "$file" "$mode" --config "$config"
	kuproxy_port stream default/stream:tcp/TCP
	kuproxy_port web default/web:tcp/TCP
	web_before=$web
	hold_open first
	hold_open second
	counts=$(web_probe)
	[ "$counts" = "web-a=3 web-b=3 web-c=0" ] ||
	    fail "$mode: before SIGHUP, web served $counts"
	grep -q '^{"ts"' "$KP_LOG" && fail "$mode: JSON log lines before SIGHUP"

	# 1. A good reload.
	config_file json | replace_file "$config"
	services 127.0.0.11 127.0.0.13 | replace_file "$file"
	kuproxy_mark
	kill -HUP "$KP_PID"
	kuproxy_wait_log '^\{"ts":[0-9.]+,"level":"[A-Z]","pid":[0-9]+,"msg":' 3 ||
	    fail "$mode: no JSON log line after SIGHUP: $(kuproxy_log_since)"
	wait_until 3 reloads_are 1 0 || fail "$mode: reloads after SIGHUP:" \
	    "$(grep '^kuproxy_config_reloads' "$T/reloads")"
	counts=$(web_probe)
	[ "$counts" = "web-a=3 web-b=0 web-c=3" ] ||
	    fail "$mode: after SIGHUP, web served $counts"
	kuproxy_port web default/web:tcp/TCP
	[ "$web" = "$web_before" ] ||
	    fail "$mode: web moved from port $web_before to $web"
	if kuproxy_log_since | grep -F ": closed" >"$T/changes"; then
		fail "$mode: SIGHUP closed listeners: $(cat "$T/changes")"
	fi
	hold_finish first
	ok "$mode: SIGHUP took the new config (logs now JSON) and endpoints" \
	    "($counts, same port $web), reloads success 1; the open" \
	    "connection still echoes"

	# 2. A broken config file.
	config_file text "udpIdleTimout: 1s" | replace_file "$config"
	kuproxy_mark
	kill -HUP "$KP_PID"
	wait_until 3 reloads_are 1 1 || fail "$mode: reloads after a bad" \
	    "SIGHUP: $(grep '^kuproxy_config_reloads' "$T/reloads")"
	kuproxy_wait_log "kube-proxy-config\.yaml.*udpIdleTimout" 2 ||
	    fail "$mode: no log line naming the file and the field:" \
	    "$(kuproxy_log_since)"
	problem=$(kuproxy_log_since | grep "kube-proxy-config" | head -n 1)
	case $problem in
	'{"ts":'*) ;;
	*) fail "$mode: the previous config (JSON logs) was not kept: $problem" ;;
	esac
	counts=$(web_probe)
	[ "$counts" = "web-a=3 web-b=0 web-c=3" ] ||
	    fail "$mode: after a bad SIGHUP, web served $counts"
	hold_finish second
	kuproxy_alive || fail "$mode: kuproxy died after a bad SIGHUP"
	ok "$mode: a broken config on SIGHUP: logged" \
	    "($(echo "$problem" | sed 's/.*"msg":"//; s/"}$//')), previous" \
	    "config and table kept, reloads failure 1; the other connection" \
	    "still echoes"

	kuproxy_stop
done
