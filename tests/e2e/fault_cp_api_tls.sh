#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# TLS failures on the way to the API server (reliability matrix row 14).
# For each fault a fresh kuproxy gets its table from the fake API server,
# a probe starts connecting to service "web", and then the server switches
# what it serves (POST /control/tls), which cuts every open connection:
#   expired      a certificate that expired in 2020
#   wrong-name   a certificate from the right CA for another name
#   client-cert  a server that requires a client certificate (kuproxy's
#                kubeconfig has none)
#   plain-http   plain HTTP on the https URL
#   tls1.0       a server that speaks nothing newer than TLS 1.0
# For each: every attempt is logged once per informer, naming the server
# and the reason (with a hint where one helps); attempts back off (the
# time between them grows: checked over three attempts for the first fault,
# two for the others); no request ever reaches the server, so nothing fell
# back to an unverified connection; the probe is served every time and
# /healthz stays 200 (no change is pending).  Then the good certificate
# comes back and a change is applied; a kuproxy with a client certificate
# works against the server that requires one; kuproxy exits 0 on SIGTERM.
# The wrong CA is tests/e2e/api_source.sh's.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/fault_cp_lib.sh"
cp_init
cp_fault_certs

backend_start "$NS_NODE" web-a 127.0.0.11:8080
backend_start "$NS_NODE" web-b 127.0.0.12:8080
fakeapi_start
ctl POST /objects "$(svc_json web)"
ctl POST /objects "$(slice_json web-1 web 127.0.0.11)"
cp_kubeconfig "$T/kubeconfig"
SERVER="https://localhost:$API_PORT"

# fault NAME TLS-SPEC REASON-ERE ATTEMPTS: a kuproxy with its table, then
# the fault; returns with that kuproxy running and the fault in place.
fault() {
	ctl POST /tls '{}'
	kp_start "$1" "$T/kubeconfig"
	kuproxy_port web default/web:http/TCP 10
	within 3 "$1: web served" serves "$web" "web-a"
	ctl GET "/wait?open_watches=2&timeout=10"
	probe_start "$web"
	# A watch cut before its first second counts as a failure (client-go's
	# short-watch rule): let them grow older.
	sleep 1.1
	kuproxy_mark
	ctl POST /stats/reset
	ctl POST /tls "$2"
	# Two informers, each making ATTEMPTS attempts; the retries_check
	# below says which came when.
	_f_deadline=$(($(now_ms) + 15000))
	until [ "$(log_count \
	    "(services|endpointslices): (watch|list failed): $SERVER: .*$3")" \
	    -ge "$(($4 * 2))" ]; do
		[ "$(kp_healthz)" = 200 ] ||
		    fail "$1: /healthz answered $(kp_healthz) during the fault"
		[ "$(now_ms)" -lt "$_f_deadline" ] ||
		    fail "$1: fewer than $4 attempts per informer logged with" \
		    "/$3/: $(kuproxy_log_since | grep -E 'watch|list' | tail -n 5)"
		sleep 0.2
	done
	ok "$1: $(kuproxy_log_since |
	    grep -m1 -E "services: (watch|list failed): $SERVER" |
	    sed 's/^[^]]*\] //')"
	retries_check "$4" "$3"
	ctl GET /stats
	grep -q '"requests": \[\]' "$T/ctl.out" ||
	    fail "$1: a request reached the server: $(grep -A3 '"requests"' \
	    "$T/ctl.out")"
	if kuproxy_log_since | grep -qi insecure; then
		fail "$1: kuproxy speaks of insecure connections"
	fi
	[ "$(kp_healthz)" = 200 ] || fail "$1: /healthz is not 200"
	probe_stop "$1"
	ok "$1: no request reached the server; /healthz 200 throughout"
}

fault expired "{\"cert\":\"$T/certs/expired.crt\"}" \
    'certificate has expired' 3
kuproxy_stop
fault wrong-name "{\"cert\":\"$T/certs/wrong-name.crt\"}" \
    "no alternative certificate subject name matches target host name 'kubernetes.default.svc'" 2
kuproxy_stop
fault client-cert "{\"client_ca\":\"$T/certs/client-ca.crt\"}" \
    'certificate required.*\(the server wants a client certificate, and the credentials have none\)' 2
kuproxy_stop
fault plain-http '{"plain":true}' \
    'wrong version number \(the server does not speak TLS there: plain HTTP on an https URL\?\)' 2
kuproxy_stop
fault tls1.0 '{"max_version":"TLSv1"}' \
    'protocol version \(the server offers no TLS 1.2 or newer' 2

# The good certificate again: the next retry connects, a change applies.
ctl POST /tls '{}'
ctl PUT /objects "$(slice_json web-1 web 127.0.0.11 127.0.0.12)"
within 8 "the server fixed: the change is applied at the next retry" \
    serves "$web" "web-a web-b"
kuproxy_stop

# With a client certificate, the server that requires one serves kuproxy.
ctl POST /tls "{\"client_ca\":\"$T/certs/client-ca.crt\"}"
sed "s|^    tokenFile: .*|&\\
    client-certificate: $T/certs/client.crt\\
    client-key: $T/certs/client.key|" "$T/kubeconfig" >"$T/kubeconfig-cert"
kp_start with-cert "$T/kubeconfig-cert"
kuproxy_port web default/web:http/TCP 10
within 3 "with a client certificate, kuproxy gets its table" \
    serves "$web" "web-a web-b"
kuproxy_stop
ok "kuproxy stopped cleanly"
