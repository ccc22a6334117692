#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# tests/demo.sh --step with no terminal, as CI runs it: it must not wait
# for Enter, must explain every stage (the network, the services, kuproxy
# started, the rules, each request, kuproxy stopped) with the rule or log
# line that shows it, and must end 0.  --help must say that it does not
# wait without a terminal.
#
# Needs root (the demo makes network namespaces; it exits 77 without).
# Environment: KUPROXY_BIN, KUPROXY_SRCDIR, as for every e2e test.
set -u

: "${KUPROXY_SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${KUPROXY_BIN:=$(pwd)/kuproxy}"
export KUPROXY_BIN
demo=$KUPROXY_SRCDIR/tests/demo.sh

fail() {
	echo "FAIL: $*" >&2
	[ -n "${out:-}" ] && [ -f "$out" ] && cat "$out" >&2
	exit 1
}

ok() {
	echo "ok: $*"
}

out=$(mktemp "${TMPDIR:-/tmp}/kpt-demo-step.XXXXXX") || exit 99
trap 'rm -f "$out"' EXIT

sh "$demo" --help >"$out" 2>&1 || fail "demo.sh --help exited $?"
grep -q -- '--step' "$out" || fail "--help does not describe --step"
grep -q 'not a terminal' "$out" ||
    fail "--help does not say what --step does without a terminal"
ok "--help describes --step"

# Well inside the e2e budget: the demo takes a few seconds; a pause that
# waits for Enter would hang until the timeout.
timeout 60 sh "$demo" --step </dev/null >"$out" 2>&1
rc=$?
case $rc in
0) ;;
77) echo "SKIP: the demo skipped: $(grep SKIP "$out")"; exit 77 ;;
124) fail "demo.sh --step </dev/null did not finish within 60 s" ;;
*) fail "demo.sh --step </dev/null exited $rc" ;;
esac
ok "demo.sh --step </dev/null ended 0 without waiting"

grep -q 'not a terminal' "$out" ||
    fail "the demo did not say it would not wait"
grep -q 'Enter: next step' "$out" && fail "the demo prompted with no terminal"

# step ID: the explanation of step ID is there, with a body.
step() {
	grep -A1 -F -- "-- Step \"$1\":" "$out" | grep -q '^   |  ' ||
	    fail "no explanation for step \"$1\""
}
for id in network services kuproxy rules stop; do
	step "$id"
done
ok "network, services, kuproxy, rules and stop steps explained"

# The stages show their evidence: routes, log lines, rules, sockets.
grep -q '|      default via ' "$out" || fail "network step shows no route"
grep -q '|      .*listening on proxy port' "$out" ||
    fail "kuproxy step shows no log line"
grep -q '|      LISTEN ' "$out" || fail "kuproxy step shows no sockets"

if grep -q -- '-- Step "rules": the rules are installed' "$out"; then
	rules=yes
	want=10
	grep -q '|      -A KUBE-PORTALS-CONTAINER -d 10.96.0.10/32 .*REDIRECT' \
	    "$out" || fail "rules step shows no web portal rule"
else
	rules=no
	want=8
fi

# Every request has its step, with who answered, the log lines and (with
# rules) the rule that caught it.
n=$(grep -c -- '-- Step "request [0-9]*":' "$out")
[ "$n" = "$want" ] || fail "$n request steps, want $want (rules: $rules)"
i=1
while [ "$i" -le "$want" ]; do
	awk -v id="-- Step \"request $i\":" '
	    index($0, id) { on = 1; next }
	    on && !/^   \|/ { exit }
	    on { print }' "$out" >"$out.req"
	grep -q 'answered\.$' "$out.req" ||
	    fail "request $i: no answer named"
	grep -q ': connected$' "$out.req" ||
	    fail "request $i: no 'connected' log line"
	if [ "$rules" = yes ]; then
		grep -qE '\-A KUBE-(PORTALS|NODEPORT)-[A-Z]+ .*-j (REDIRECT|DNAT)' \
		    "$out.req" || fail "request $i: no rule that caught it"
	fi
	i=$((i + 1))
done
rm -f "$out.req"
ok "$want request steps, each with its answer, log lines and rules ($rules)"

grep -q '|  Rules of kuproxy.s left in the node: 0\.' "$out" ||
    fail "stop step does not show the rules gone"
ok "stop step shows no rules left"
