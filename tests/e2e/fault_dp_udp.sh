#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# UDP under abuse and across restarts (fault matrix rows 10, 11).  Service
# default/dns (10.96.0.10): port 53 to dnsmasq on three pods, port 7 to a
# udpkit.py echo; kuproxy in the node with iptables-legacy portals and
# --udp-max-associations 500; clients in the outside namespace.
#  10. 50,000 DNS queries from random source ports of a second outside
#      address (a raw socket: nothing listens on those ports, as with
#      spoofed sources), at about 10,000 a second, while a probe asks
#      who.test from a fresh port every 20 ms.  Associations never exceed
#      the cap and kuproxy's sockets never exceed cap + baseline; evictions
#      are counted; >= 99 % of the probe's queries are answered (under
#      99 % fails, unless the kernel dropped datagrams at kuproxy's full
#      receive buffer, counted: then under 80 % fails): the flood's
#      answered one-shot associations are evicted before a client awaiting
#      its reply.  Datagrams the node's kernel
#      dropped for a full receive buffer of the service socket show in
#      kuproxy_udp_dropped_total (SO_RXQ_OVFL).  Every reply seen on the
#      wire goes to a port the flood sent from (replies only to an
#      association's source); RSS stays bounded.  Then a 65507-byte
#      datagram to port 7 comes back intact.
#  11. A client with a fixed source port sends every 100 ms.  kuproxy is
#      restarted with another proxy port range, so the UDP proxy port
#      changes: replies resume within 2 s of the new kuproxy's start
#      (it deletes the conntrack entries for 10.96.0.10:53), and conntrack
#      holds no entry to the old proxy port.  Then the service's endpoints
#      go away and come back: replies resume within 2 s of the change.
#      The new kuproxy runs with --udp-reject-privileged-sources: a query
#      from source port 853 is dropped and counted, an ordinary one
#      answered.
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib.sh"
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/dnslib.sh"
. "${KUPROXY_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/faultlib.sh"
dns_init
fault_init
command -v conntrack >/dev/null 2>&1 ||
    e2e_error "missing conntrack (packaging/install-deps installs it)"
e2e_topology

CLUSTER_IP=10.96.0.10
FLOOD_IP=192.168.77.3
CAP=500
ip -n "$NS_OUT" addr add "$FLOOD_IP/24" dev eth0 ||
    e2e_error "flood address in $NS_OUT"
for i in 1 2 3; do
	eval "ns=\$NS_POD$i ip=\$POD${i}_IP"
	dnsmasq_start "$ns" "pod-$i" "$ip"
	udp_echo_start "$ns" "pod-$i" "$ip:7007"
done

# services_file [ADDRESS...]: default/dns with these endpoints (none: no
# endpoints at all).
services_file() {
	{
		udp_service dns "$CLUSTER_IP" dns:UDP:53:53 echo:UDP:7:7007
		udp_slice dns "dns:UDP:53 echo:UDP:7007" "$@"
	} | udp_list
}
file="$T/services.yaml"
services_file "$POD1_IP" "$POD2_IP" "$POD3_IP" >"$file"

# One worker: the flood, dnsmasq and kuproxy share this machine's CPUs,
# and a worker per CPU takes the time dnsmasq needs to answer before the
# flood evicts what awaits a reply (workers.sh covers --workers).
kuproxy_start_portals "$file" --udp-max-associations "$CAP" --workers 1
kuproxy_port dns default/dns:dns/UDP
kuproxy_port echo default/dns:echo/UDP
portal_wait_synced "$CLUSTER_IP" 53
got=$(who "$NS_OUT" "$CLUSTER_IP")
case $got in
"$POD1_IP" | "$POD2_IP" | "$POD3_IP") ;;
*) fail "before the flood, who.test: $got" ;;
esac
sleep 0.5
fd_baseline
rss0=$(rss_kb "$KP_PID")
SEL='{namespace="default",service="dns",port="dns",protocol="UDP"}'

# ------------------------------------------------------------ 10. flood
# service_socket_drops: the datagrams the node's kernel dropped at the
# service socket of port dns (/proc/net/udp's last column).
service_socket_drops() {
	nsx "$NS_NODE" awk -v p="$(printf '%04X' "$dns")" \
	    '$2 ~ ":" p "$" { s += $NF } END { print s + 0 }' /proc/net/udp
}
# A sampler: the most sockets kuproxy held, and the most associations it
# reported, while the flood runs.
: >"$T/samples"
(
	while [ ! -e "$T/flood-done" ]; do
		echo "$(fd_count "$KP_PID" socket)" \
		    "$(metric "kuproxy_udp_associations_active$SEL")" \
		    >>"$T/samples"
		sleep 0.2
	done
) &
sampler=$!
fault_bg probe "$NS_OUT" dns-probe --to "$CLUSTER_IP:53" --seconds 7 \
    --interval-ms 20
probe_pid=$LAST_PID
KPT_CLIENT_TIMEOUT=40 faultkit "$NS_OUT" udp-flood --to "$CLUSTER_IP:53" \
    --src "$FLOOD_IP" --count 50000 --rate 10000 --seed 10 --capture eth0 \
    >"$T/flood.out" 2>&1 || fail "the flood: $(cat "$T/flood.out")"
wait "$probe_pid"
touch "$T/flood-done"
wait "$sampler"

# sent N ports P replies R stray S seconds X
set -- $(cat "$T/flood.out")
[ "$1" = sent ] || fail "the flood: $(cat "$T/flood.out")"
replies=$6 stray=$8
[ "$replies" -gt 0 ] || fail "the flood got no reply at all"
[ "$stray" = 0 ] ||
    fail "$stray replies went to ports the flood never sent from"
ok "50000 datagrams from $4 source ports of $FLOOD_IP in ${10} s: $replies" \
    "replies, every one to a port that sent (none stray)"

max_socks=$(awk '$1 > m { m = $1 } END { print m + 0 }' "$T/samples")
max_assoc=$(awk '$2 > m { m = $2 } END { print m + 0 }' "$T/samples")
[ "$max_assoc" -le "$CAP" ] ||
    fail "$max_assoc associations at once, over the cap of $CAP"
# Plus the sampler's own metrics scrapes: the admin server lets go of a
# finished connection's socket on its next sweep, within a second.
scrapes=5
[ "$max_socks" -le $((FD_BASE_SOCKETS + CAP + scrapes)) ] ||
    fail "kuproxy held $max_socks sockets (cap $CAP + baseline" \
    "$FD_BASE_SOCKETS + $scrapes scrapes)"
evicted=$(metric "kuproxy_udp_associations_evicted_total$SEL")
dropped=$(metric "kuproxy_udp_dropped_total$SEL")
total=$(metric "kuproxy_udp_associations_total$SEL")
[ "${evicted:-0}" -gt 0 ] || fail "no association was evicted (cap $CAP)"
rss1=$(rss_kb "$KP_PID")
rss_bounded "the flood" "$rss0" "$rss1" 32768
ok "at most $max_assoc associations (cap $CAP) and $max_socks sockets;" \
    "$total associations made, $evicted evicted, $dropped datagrams" \
    "dropped; RSS $rss0 -> $rss1 KiB"

# queries Q answered A.  The node's UDP receive-buffer errors (every
# socket in the namespace, dnsmasq's too) are reported: kuproxy's own share
# must show in its dropped counter.
rcvbuf_errors=$(nsx "$NS_NODE" awk '/^Udp:/ { n++ } /^Udp:/ && n == 2 {
    print $6 }' /proc/net/snmp)
set -- $(cat "$T/probe.log")
[ "$1" = queries ] || fail "the probe: $(cat "$T/probe.log")"
# A CPU-starved kuproxy (a shared 2-CPU machine running other tests, the
# sniffer and three dnsmasq) loses datagrams to its full receive buffer
# before it can look at them; those show in its dropped counter.  Then
# only under 80 % fails.  Without such drops, every loss is kuproxy's and
# under 99 % fails.
# Under ASan kuproxy runs about three times slower, so the flood's
# one-shot associations wait longer for dnsmasq's answers and a few more
# are evicted before it comes (the flood's own replies show it): there the
# floor is 97 %.
sock_drops=$(service_socket_drops)
floor=99
grep -qa __asan_init "$KUPROXY_BIN" 2>/dev/null && floor=97
if [ $(($4 * 100)) -lt $(($2 * floor)) ]; then
	[ "$sock_drops" -gt 0 ] && [ $(($4 * 100)) -ge $(($2 * 80)) ] ||
	    fail "the probe got $4 answers to $2 queries during the flood" \
	    "(< $floor %; the service socket's kernel drops: $sock_drops," \
	    "kuproxy_udp_dropped_total $dropped)"
	echo "NOTE: the probe got $4 of $2 answers (< $floor %) while the" \
	    "kernel dropped $sock_drops datagrams for kuproxy's full" \
	    "receive buffer (counted: kuproxy_udp_dropped_total $dropped)" >&2
fi
ok "during the flood the probe got $4 answers to $2 queries" \
    "(node UDP receive-buffer drops: $rcvbuf_errors)"

out=$(timeout 10 ip netns exec "$NS_OUT" "$KPT_PYTHON" "$UDPKIT" send \
    --to "$CLUSTER_IP:7" --size 65507 --timeout 3 2>&1) ||
    fail "65507 bytes after the flood: $out"
set -- $out
[ "$2" = 65507 ] && [ "$5" = 65507 ] && [ "$3" = "$6" ] ||
    fail "65507 bytes after the flood came back as: $out"
ok "after the flood a 65507-byte datagram came back intact"
kuproxy_alive || fail "kuproxy died"
got=$(who "$NS_OUT" "$CLUSTER_IP")
case $got in
"$POD1_IP" | "$POD2_IP" | "$POD3_IP") ;;
*) fail "after the flood, who.test: $got" ;;
esac
# What the kernel dropped at the service socket (/proc/net/udp's drops)
# must show in kuproxy_udp_dropped_total: SO_RXQ_OVFL reports it with the
# next datagram read, here the dig above.
dropped=$(metric "kuproxy_udp_dropped_total$SEL")
ovfl=$(service_socket_drops)
[ "$ovfl" = 0 ] || [ "${dropped:-0}" -ge "$ovfl" ] ||
    fail "the service socket's kernel drops ($ovfl) exceed" \
    "kuproxy_udp_dropped_total ($dropped)"
ok "the service socket's kernel drops now: $ovfl; counted as dropped: $dropped"
# Unanswered associations wait up to 5 s for their reply.
fd_back_to_baseline 8 || fail "after the flood: $FD_NOW"
ok "after the flood: dig answered by $got; $FD_NOW"

# --------------------------------------------------- 11. stale conntrack
# answered_after MS: the first "answered" line at or after MS in the
# steady client's output, as milliseconds after MS; empty when none.
answered_after() {
	awk -v t="$1" '$1 >= t && $2 == "answered" { print $1 - t; exit }' \
	    "$T/steady.out"
}

# The flood left tens of thousands of conntrack entries to 10.96.0.10:53;
# the restart's flush would have to delete them all first (seconds under
# ASan).  This case is about the fixed-port client, so start clean.
nsx "$NS_NODE" conntrack -D -p udp -s "$FLOOD_IP" >/dev/null 2>&1
fault_bg steady "$NS_OUT" udp-steady --to "$CLUSTER_IP:53" \
    --bind "$OUT_IP:44053" --seconds 12 --out "$T/steady.out"
steady_pid=$LAST_PID
sleep 1
grep -q answered "$T/steady.out" || fail "the steady client got no answer"
old_port=$dns
kuproxy_stop
sleep 0.5
restarted=$(now_ms)
kuproxy_start_portals "$file" --udp-max-associations "$CAP" \
    --proxy-port-range 20100-20199 --udp-reject-privileged-sources
kuproxy_port dns default/dns:dns/UDP
[ "$dns" != "$old_port" ] || e2e_error "the proxy port did not change"
portal_wait_synced "$CLUSTER_IP" 53
sleep 2.2
resumed=$(answered_after "$restarted")
[ -n "$resumed" ] || fail "after the restart (proxy port $old_port ->" \
    "$dns) replies did not resume within 2.2 s"
[ "$resumed" -le 2000 ] || fail "after the restart (proxy port $old_port" \
    "-> $dns) replies resumed only after $resumed ms"
stale=$(nsx "$NS_NODE" conntrack -L -p udp --reply-port-src "$old_port" \
    2>/dev/null | grep -c "dport=53")
[ "$stale" = 0 ] ||
    fail "conntrack still leads to the old proxy port $old_port: $(nsx \
    "$NS_NODE" conntrack -L -p udp --reply-port-src "$old_port" 2>&1)"
ok "restart moved the proxy port $old_port -> $dns: the fixed-port client" \
    "was answered again $resumed ms after the new start; no conntrack" \
    "entry to the old port"

kuproxy_mark
services_file | replace_file "$file"
kuproxy_wait_log "service table applied" 3 ||
    fail "the file without endpoints was not applied"
sleep 1
services_file "$POD1_IP" "$POD2_IP" "$POD3_IP" | replace_file "$file"
back=$(now_ms)
sleep 2.2
resumed=$(answered_after "$back")
[ -n "$resumed" ] ||
    fail "endpoints back: replies did not resume within 2.2 s"
[ "$resumed" -le 2000 ] ||
    fail "endpoints back: replies resumed only after $resumed ms"
lost=$(awk -v t="$back" -v u="$((back - 1000))" \
    '$1 >= u && $1 < t && $2 == "lost"' "$T/steady.out" | wc -l)
ok "endpoints gone ($lost queries unanswered), then back: the same client" \
    "answered again $resumed ms after the change"
wait "$steady_pid"

# Row 10's reflection guard, on in this kuproxy: source port 853 (DNS over
# TLS, a server's port) is dropped and counted; port 10853 is answered.
ECHO_SEL='{namespace="default",service="dns",port="echo",protocol="UDP"}'
dropped0=$(metric "kuproxy_udp_dropped_total$ECHO_SEL")
out=$(timeout 10 ip netns exec "$NS_OUT" "$KPT_PYTHON" "$UDPKIT" send \
    --to "$CLUSTER_IP:7" --size 64 --bind "$OUT_IP:853" --timeout 1 2>&1) &&
    fail "a datagram from the privileged port 853 was answered: $out"
dropped1=$(metric "kuproxy_udp_dropped_total$ECHO_SEL")
[ "${dropped1:-0}" -eq $((${dropped0:-0} + 1)) ] ||
    fail "the datagram from port 853 was not counted as dropped" \
    "($dropped0 -> $dropped1)"
out=$(timeout 10 ip netns exec "$NS_OUT" "$KPT_PYTHON" "$UDPKIT" send \
    --to "$CLUSTER_IP:7" --size 64 --bind "$OUT_IP:10853" --timeout 3 2>&1) ||
    fail "with --udp-reject-privileged-sources, port 10853: $out"
ok "--udp-reject-privileged-sources: source port 853 dropped and counted" \
    "($dropped0 -> $dropped1), port 10853 answered"
kuproxy_alive || fail "kuproxy died"
got=$(who "$NS_OUT" "$CLUSTER_IP")
case $got in
"$POD1_IP" | "$POD2_IP" | "$POD3_IP") ;;
*) fail "at the end, who.test: $got" ;;
esac
ok "kuproxy alive; a fresh client is answered by $got"
kuproxy_stop
