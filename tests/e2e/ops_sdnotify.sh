#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# systemd's readiness protocol, with a datagram receiver standing in for
# systemd on $NOTIFY_SOCKET.
#  1. The first datagram is READY=1 with a STATUS= line, and it comes only
#     once the table is applied: a client connecting as soon as it arrives
#     is served.
#  2. An edit of the services file updates STATUS= (no second READY=1).
#  3. SIGHUP: RELOADING=1, then READY=1.
#  4. SIGTERM: STOPPING=1, and kuproxy exits 0.
#  5. An abstract socket ("@name", per network namespace) works as well.
# No relay is involved: this runs in the first of KPT_RELAY_MODES.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/opslib.sh"
ops_init
e2e_netns node

backend_start "$NS_NODE" web-a 127.0.0.11:8080
backend_start "$NS_NODE" web-b 127.0.0.12:8080

file="$T/services.yaml"
services() {	# ENDPOINT...
	{
		ops_service web 80 10.96.10.1
		ops_slice web TCP "$@"
	} | ops_list
}

# line_of ERE: the number of the first line of notify.log matching ERE.
line_of() {
	grep -nE -- "$1" "$T/notify.log" | head -n 1 | cut -d: -f1
}

mode=${KPT_RELAY_MODES%% *}
services 127.0.0.11 >"$file"
notify_start
kuproxy_start "$NS_NODE" "$file" "$mode"

# 1. Ready.
notify_wait "READY=1" 5 || fail "no READY=1: $(cat "$T/notify.log")"
kuproxy_port web default/web:tcp/TCP 1
client "$NS_NODE" --connect "127.0.0.1:$web" >"$T/first.out" ||
    fail "not served right after READY=1: $(cat "$T/first.out")"
first=$(sed -n 2p "$T/notify.log")
case $first in
"READY=1 | STATUS=serving 1 service ports, 1 endpoints") ;;
*) fail "the first datagram: $first" ;;
esac
ok "first datagram: $first; served at once"

# 2. A table change.
notify_mark
services 127.0.0.11 127.0.0.12 | replace_file "$file"
notify_wait "^STATUS=serving 1 service ports, 2 endpoints$" 3 ||
    fail "no STATUS update after an edit: $(cat "$T/notify.log")"
notify_since_matches READY && fail "READY=1 again after an edit"
ok "an edit updates STATUS (2 endpoints), no second READY=1"

# 3. Reload.
notify_mark
kill -HUP "$KP_PID"
notify_wait "^READY=1$" 3 ||
    fail "no READY=1 after SIGHUP: $(cat "$T/notify.log")"
reloading=$(line_of "^RELOADING=1")
ready=$(tail -n "+$((NOTIFY_MARK + 1))" "$T/notify.log" |
    grep -n "^READY=1$" | head -n 1 | cut -d: -f1)
[ -n "$reloading" ] && [ "$reloading" -gt "$NOTIFY_MARK" ] &&
    [ "$((NOTIFY_MARK + ready))" -gt "$reloading" ] ||
    fail "SIGHUP: not RELOADING=1 then READY=1: $(cat "$T/notify.log")"
ok "SIGHUP: $(tail -n "+$((NOTIFY_MARK + 1))" "$T/notify.log" | tr '\n' ';')"

# 4. Stop.
notify_mark
kill -TERM "$KP_PID"
notify_wait "^STOPPING=1" 3 || fail "no STOPPING=1: $(cat "$T/notify.log")"
kuproxy_wait_exit 5 || fail "kuproxy still runs 5 s after SIGTERM"
[ "$KP_EXIT" = 0 ] || fail "kuproxy exited $KP_EXIT"
ok "SIGTERM: STOPPING=1, exit 0"

# 5. The abstract namespace.
NOTIFY_SOCKET="@$KPT_TAG-notify"
e2e_bg notify-abstract "$NS_NODE" "$KPT_PYTHON" -u -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + sys.argv[1][1:])
print("receiving", flush=True)
while True:
    print(" | ".join(s.recv(4096).decode().split("\n")), flush=True)
' "$NOTIFY_SOCKET"
wait_until 5 grep -q receiving "$T/notify-abstract.log" ||
    e2e_error "the abstract sd_notify receiver did not start"
kuproxy_start "$NS_NODE" "$file" "$mode"
wait_until 5 grep -q "^READY=1" "$T/notify-abstract.log" ||
    fail "no READY=1 on $NOTIFY_SOCKET: $(cat "$T/notify-abstract.log")"
kuproxy_stop
grep -q "^STOPPING=1" "$T/notify-abstract.log" ||
    fail "no STOPPING=1 on $NOTIFY_SOCKET"
ok "abstract socket $NOTIFY_SOCKET: READY=1 and STOPPING=1"
