#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
#
# Misbehaving peers for the data-plane fault tests (tests/e2e/fault_dp_*.sh):
# backends that reset mid-stream, clients that reset, hold hundreds of
# connections, write in odd sizes, or flood a UDP service from spoofed
# source ports.  Standard library only; tcpkit.py and udpkit.py keep the
# well-behaved ends.  Every mode prints one result line that the shell
# script checks; exit status 0 unless the mode itself could not run.
#
# Byte streams are the same deterministic pattern everywhere (pattern()),
# so a receiver can tell a prefix of what was sent from anything else.
#
# Subcommands:
#   serve --listen ADDR:PORT --mode rst-after --bytes N
#       each connection: send N pattern bytes, then close with
#       SO_LINGER{1,0} (RST, not FIN).  Logs "sent N then reset".
#   serve --listen ADDR:PORT --mode sink
#       each connection: read until EOF or error; logs
#       "got N bytes prefix-ok|prefix-bad eof|reset|error-E".
#   expect-reset --connect ADDR:PORT [--timeout S]
#       read until EOF or error: "got N prefix-ok|prefix-bad reset|eof|...".
#   send-reset --connect ADDR:PORT --bytes N [--linger-ms MS]
#       send N pattern bytes, wait, then close with RST: "sent N then reset".
#   mixed --connect ADDR:PORT --bytes N [--seed S]
#       against an echo backend: send N pattern bytes in a seeded random
#       mix of 1-byte and 64 KiB writes (TCP_NODELAY, so small writes are
#       small segments) while reading the echo; "sent N SHA received M SHA
#       writes W small K".
#   hold-many --connect ADDR:PORT --count N --seconds S
#       open N connections (the kernel completes the handshake even when
#       nobody accepts), keep them S seconds, close them all:
#       "connected C failed F", then "released open O reset R eof E" (what
#       the proxy had done to them by then).
#   rtt --connect ADDR:PORT --count N [--interval-ms MS] [--timeout S]
#       N request/response exchanges, each on a new connection to an echo
#       backend ("ping N\n", half-close, read the echo):
#       "ok K errors E p50 X p99 Y max Z" (milliseconds).
#   slow-http --connect ADDR:PORT --count N --seconds S
#       N clients that send the start of an HTTP request and then one
#       header byte per second (slowloris); after S seconds report how
#       many the server closed: "closed C open O".
#   delay-relay --listen ADDR:PORT --to ADDR:PORT --delay-ms MS
#           [--stall-after N --stall-ms MS]
#       a TCP relay in front of a backend that delivers every chunk MS
#       later (pipelined, as a long link would), passes half-close on and,
#       with --stall-after, stops relaying towards the client for
#       --stall-ms once N bytes went that way (a stalling backend).
#   udp-flood --to IP:PORT --src IP --count N [--rate R] [--capture IFACE]
#       N DNS queries for who.test from IP with random source ports
#       (raw socket: nothing listens on them), at about R per second.  With
#       --capture, sniff IFACE for UDP replies to IP until 1 s after the
#       last send and check that each goes to a port we sent from:
#       "sent N ports P replies R stray S".
#   dns-probe --to IP:PORT --seconds S [--interval-ms MS]
#       a fresh socket (source port) per query of who.test, 1 s timeout
#       each, for S seconds: "queries Q answered A".
#   udp-steady --to IP:PORT --bind IP:PORT --seconds S --out FILE
#       one query every 100 ms from a fixed source port for S seconds;
#       writes "EPOCH_MS answered|lost" per query to FILE (EPOCH_MS as the
#       shell's date +%s%N / 1000000).

import argparse
import errno
import hashlib
import random
import select
import socket
import struct
import sys
import threading
import time

CHUNK = 65536


def log(*args):
    print(*args, flush=True)


def addr_port(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


_PATTERN = hashlib.sha256(b"kuproxy-fault").digest() * 4099


def pattern(n, off=0):
    """n bytes of the endless pattern starting at offset off."""
    out = bytearray()
    size = len(_PATTERN)
    while len(out) < n:
        start = (off + len(out)) % size
        out += _PATTERN[start:start + n - len(out)]
    return bytes(out)


def is_prefix(data):
    return data == pattern(len(data))


def rst_close(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", 1, 0))
    sock.close()


def read_until_end(sock):
    """Read until EOF or an error: (bytes, 'eof'|'reset'|'error-E')."""
    chunks = []
    end = "eof"
    try:
        while True:
            data = sock.recv(CHUNK)
            if not data:
                break
            chunks.append(data)
    except socket.timeout:
        end = "timeout"
    except OSError as e:
        end = "reset" if e.errno == errno.ECONNRESET else \
            "error-%s" % errno.errorcode.get(e.errno, e.errno)
    return b"".join(chunks), end


# ---------------------------------------------------------------- backends


def serve_rst_after(conn, args):
    conn.sendall(pattern(args.bytes))
    # Let the bytes leave before the reset discards what is still queued.
    time.sleep(args.linger_ms / 1000.0)
    rst_close(conn)
    return "sent %d then reset" % args.bytes


def serve_sink(conn, args):
    data, end = read_until_end(conn)
    conn.close()
    return "got %d bytes %s %s" % (
        len(data), "prefix-ok" if is_prefix(data) else "prefix-bad", end)


SERVE_MODES = {"rst-after": serve_rst_after, "sink": serve_sink}


def cmd_serve(args):
    host, port = addr_port(args.listen)
    lsock = socket.socket(socket.AF_INET)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((host, port))
    lsock.listen(128)
    log("listening on %s:%d mode %s" % (host, port, args.mode))
    handler = SERVE_MODES[args.mode]

    def one(conn, peer):
        try:
            log("from %s:%d %s" % (peer[0], peer[1], handler(conn, args)))
        except OSError as e:
            log("from %s:%d error %s" % (peer[0], peer[1], e))

    while True:
        conn, peer = lsock.accept()
        threading.Thread(target=one, args=(conn, peer), daemon=True).start()


# ----------------------------------------------------------------- clients


def connect(target, timeout):
    sock = socket.create_connection(addr_port(target), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def cmd_expect_reset(args):
    sock = connect(args.connect, args.timeout)
    data, end = read_until_end(sock)
    sock.close()
    log("got %d %s %s" % (len(data),
                          "prefix-ok" if is_prefix(data) else "prefix-bad",
                          end))
    return 0


def cmd_send_reset(args):
    sock = connect(args.connect, args.timeout)
    sock.sendall(pattern(args.bytes))
    time.sleep(args.linger_ms / 1000.0)
    rst_close(sock)
    log("sent %d then reset" % args.bytes)
    return 0


def cmd_mixed(args):
    sock = connect(args.connect, args.timeout)
    rng = random.Random(args.seed)
    data = pattern(args.bytes)
    sent_sha = hashlib.sha256(data).hexdigest()
    stats = {"writes": 0, "small": 0}
    errors = []

    def sender():
        off = 0
        try:
            while off < len(data):
                # Runs of tiny writes between big ones: each tiny write
                # is its own segment, so the relay sees both extremes.
                if rng.random() < 0.5:
                    for _ in range(rng.randint(1, 64)):
                        if off >= len(data):
                            break
                        sock.sendall(data[off:off + 1])
                        off += 1
                        stats["writes"] += 1
                        stats["small"] += 1
                else:
                    n = min(CHUNK, len(data) - off)
                    sock.sendall(data[off:off + n])
                    off += n
                    stats["writes"] += 1
            sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            errors.append(e)

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    got, end = read_until_end(sock)
    t.join(args.timeout)
    sock.close()
    if errors:
        log("ERROR sending: %s" % errors[0])
        return 1
    log("sent %d %s received %d %s writes %d small %d end %s" % (
        len(data), sent_sha, len(got), hashlib.sha256(got).hexdigest(),
        stats["writes"], stats["small"], end))
    return 0


def cmd_hold_many(args):
    socks = []
    failed = 0
    for _ in range(args.count):
        s = socket.socket(socket.AF_INET)
        s.settimeout(2)
        try:
            s.connect(addr_port(args.connect))
            socks.append(s)
        except OSError:
            failed += 1
            s.close()
    log("connected %d failed %d" % (len(socks), failed))
    time.sleep(args.seconds)
    states = {"open": 0, "reset": 0, "eof": 0}
    for s in socks:
        states[peer_state(s)] += 1
        s.close()
    log("released open %d reset %d eof %d" % (
        states["open"], states["reset"], states["eof"]))
    return 0


def peer_state(sock):
    """'open', 'eof' or 'reset': what the other end did to sock so far."""
    sock.setblocking(False)
    try:
        data = sock.recv(1, socket.MSG_PEEK)
        return "open" if data else "eof"
    except BlockingIOError:
        return "open"
    except OSError:
        return "reset"


def one_rtt(args, i):
    msg = b"ping %d\n" % i
    sock = connect(args.connect, args.timeout)
    try:
        sock.sendall(msg)
        sock.shutdown(socket.SHUT_WR)
        got, end = read_until_end(sock)
    finally:
        sock.close()
    if got != msg or end != "eof":
        raise OSError(errno.EPROTO, "echo %r %s" % (got, end))


def cmd_rtt(args):
    times = []
    errors = 0
    for i in range(args.count):
        t0 = time.monotonic()
        try:
            one_rtt(args, i)
            times.append((time.monotonic() - t0) * 1000)
        except OSError as e:
            errors += 1
            log("error %s" % e)
        time.sleep(args.interval_ms / 1000.0)
    times.sort()

    def pct(p):
        return times[min(len(times) - 1, int(len(times) * p))] \
            if times else -1

    log("ok %d errors %d p50 %.1f p99 %.1f max %.1f" % (
        len(times), errors, pct(0.5), pct(0.99), times[-1] if times else -1))
    return 0


def cmd_slow_http(args):
    socks = []
    for _ in range(args.count):
        s = socket.socket(socket.AF_INET)
        s.settimeout(2)
        s.connect(addr_port(args.connect))
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        s.setblocking(False)
        socks.append(s)
    closed = set()
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        for i, s in enumerate(socks):
            if i in closed:
                continue
            try:
                s.send(b"X")
                data = s.recv(4096)
                if data == b"":
                    closed.add(i)
            except BlockingIOError:
                pass
            except OSError:
                closed.add(i)
        time.sleep(1)
    log("closed %d open %d" % (len(closed), len(socks) - len(closed)))
    for s in socks:
        s.close()
    return 0


def delayed_pipe(src, dst, delay, stall_after, stall_ms):
    """Copy src to dst, each chunk delay seconds after it was read."""
    import queue
    q = queue.Queue()

    def reader():
        try:
            while True:
                data = src.recv(CHUNK)
                q.put((time.monotonic() + delay, data))
                if not data:
                    return
        except OSError:
            q.put((time.monotonic(), None))

    threading.Thread(target=reader, daemon=True).start()
    sent = 0
    stalled = stall_after <= 0
    try:
        while True:
            due, data = q.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if data is None:
                rst_close(dst)
                return
            if not data:
                dst.shutdown(socket.SHUT_WR)
                return
            dst.sendall(data)
            sent += len(data)
            if not stalled and sent >= stall_after:
                stalled = True
                time.sleep(stall_ms / 1000.0)
    except OSError:
        pass


def cmd_delay_relay(args):
    host, port = addr_port(args.listen)
    lsock = socket.socket(socket.AF_INET)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((host, port))
    lsock.listen(128)
    log("relaying %s to %s, %d ms later" % (args.listen, args.to,
                                            args.delay_ms))
    delay = args.delay_ms / 1000.0

    def one(client):
        try:
            backend = socket.create_connection(addr_port(args.to), timeout=5)
            backend.settimeout(None)
        except OSError as e:
            log("backend: %s" % e)
            rst_close(client)
            return
        up = threading.Thread(target=delayed_pipe, daemon=True,
                              args=(client, backend, delay, 0, 0))
        up.start()
        delayed_pipe(backend, client, delay, args.stall_after, args.stall_ms)
        up.join()
        client.close()
        backend.close()
        log("relayed a connection")

    while True:
        conn, _ = lsock.accept()
        threading.Thread(target=one, args=(conn,), daemon=True).start()


# --------------------------------------------------------------------- UDP


def dns_query(qid):
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    name = b"".join(bytes([len(p)]) + p for p in b"who.test".split(b"."))
    return header + name + b"\0" + struct.pack("!HH", 1, 1)


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff


def udp_packet(src, sport, dst, dport, payload):
    """An IPv4 header and a UDP datagram, for a raw IPPROTO_RAW socket."""
    ulen = 8 + len(payload)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + \
        struct.pack("!BBH", 0, socket.IPPROTO_UDP, ulen)
    udp = struct.pack("!HHHH", sport, dport, ulen, 0) + payload
    csum = checksum(pseudo + udp) or 0xffff
    udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 0, 0, 64,
                     socket.IPPROTO_UDP, 0, socket.inet_aton(src),
                     socket.inet_aton(dst))
    return ip + udp


def capture_replies(iface, src_ip, stop, result):
    """Sniff UDP to src_ip on iface: result[dport] = count."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM,
                      socket.htons(0x0800))
    s.bind((iface, 0x0800))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    want = socket.inet_aton(src_ip)
    result["ready"] = True
    while not (stop.is_set() and not select.select([s], [], [], 0)[0]):
        r, _, _ = select.select([s], [], [], 0.1)
        if not r:
            continue
        pkt = s.recv(65535)
        if len(pkt) < 28 or pkt[9] != socket.IPPROTO_UDP or \
                pkt[16:20] != want:
            continue
        ihl = (pkt[0] & 0x0f) * 4
        frag = struct.unpack("!H", pkt[6:8])[0] & 0x1fff
        if frag:
            continue
        dport = struct.unpack("!H", pkt[ihl + 2:ihl + 4])[0]
        result.setdefault("ports", {})
        result["ports"][dport] = result["ports"].get(dport, 0) + 1
    s.close()


def cmd_udp_flood(args):
    dst, dport = addr_port(args.to)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    rng = random.Random(args.seed)
    stop = threading.Event()
    result = {}
    t = None
    if args.capture:
        t = threading.Thread(target=capture_replies, daemon=True,
                             args=(args.capture, args.src, stop, result))
        t.start()
        while "ready" not in result:
            time.sleep(0.01)
    used = set()
    t0 = time.monotonic()
    for i in range(args.count):
        sport = rng.randint(1024, 65535)
        used.add(sport)
        pkt = udp_packet(args.src, sport, dst, dport, dns_query(i & 0xffff))
        while True:
            try:
                raw.sendto(pkt, (dst, 0))
                break
            except OSError as e:
                if e.errno not in (errno.ENOBUFS, errno.EAGAIN):
                    raise
                time.sleep(0.001)
        if args.rate and i % 100 == 99:
            ahead = (i + 1) / args.rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
    secs = time.monotonic() - t0
    if t is not None:
        time.sleep(1)
        stop.set()
        t.join(5)
    ports = result.get("ports", {})
    stray = sum(n for p, n in ports.items() if p not in used)
    log("sent %d ports %d replies %d stray %d seconds %.1f" % (
        args.count, len(used), sum(ports.values()), stray, secs))
    return 0


def dns_ask(sock, to, qid, timeout):
    sock.settimeout(timeout)
    sock.sendto(dns_query(qid), to)
    deadline = time.monotonic() + timeout
    while True:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        data, _ = sock.recvfrom(4096)
        if len(data) >= 12 and struct.unpack("!H", data[:2])[0] == qid:
            return data


def cmd_dns_probe(args):
    to = addr_port(args.to)
    queries = answered = 0
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        queries += 1
        try:
            dns_ask(s, to, queries & 0xffff, 1.0)
            answered += 1
        except OSError:
            pass
        s.close()
        time.sleep(args.interval_ms / 1000.0)
    log("queries %d answered %d" % (queries, answered))
    return 0


def cmd_udp_steady(args):
    to = addr_port(args.to)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(addr_port(args.bind))
    deadline = time.monotonic() + args.seconds
    i = 0
    with open(args.out, "w") as out:
        while time.monotonic() < deadline:
            i += 1
            t0 = time.monotonic()
            try:
                dns_ask(s, to, i & 0xffff, 0.1)
                what = "answered"
            except OSError:
                what = "lost"
            out.write("%d %s\n" % (int(time.time() * 1000), what))
            out.flush()
            left = 0.1 - (time.monotonic() - t0)
            if left > 0:
                time.sleep(left)
    return 0


def main():
    p = argparse.ArgumentParser(prog="faultkit.py")
    sub = p.add_subparsers(dest="cmd", required=True)

    def add(name, *extra):
        c = sub.add_parser(name)
        c.add_argument("--timeout", type=float, default=10.0)
        for e in extra:
            if e in ("connect", "listen", "to", "src", "bind", "out",
                     "capture", "mode"):
                c.add_argument("--" + e, required=e not in ("capture",))
            else:
                c.add_argument("--" + e, type=float if e in ("seconds",)
                               else int, default=0)
        return c

    s = add("serve", "listen", "mode", "bytes")
    s.add_argument("--linger-ms", type=int, default=200)
    add("expect-reset", "connect")
    c = add("send-reset", "connect", "bytes")
    c.add_argument("--linger-ms", type=int, default=300)
    add("mixed", "connect", "bytes", "seed")
    add("hold-many", "connect", "count", "seconds")
    c = add("rtt", "connect", "count")
    c.add_argument("--interval-ms", type=int, default=20)
    add("slow-http", "connect", "count", "seconds")
    c = add("delay-relay", "listen", "to", "delay-ms", "stall-after",
            "stall-ms")
    c = add("udp-flood", "to", "src", "count", "rate", "seed", "capture")
    add("dns-probe", "to", "seconds").add_argument(
        "--interval-ms", type=int, default=20)
    add("udp-steady", "to", "bind", "seconds", "out")
    args = p.parse_args()
    fn = {
        "serve": cmd_serve,
        "expect-reset": cmd_expect_reset,
        "send-reset": cmd_send_reset,
        "mixed": cmd_mixed,
        "hold-many": cmd_hold_many,
        "rtt": cmd_rtt,
        "slow-http": cmd_slow_http,
        "delay-relay": cmd_delay_relay,
        "udp-flood": cmd_udp_flood,
        "dns-probe": cmd_dns_probe,
        "udp-steady": cmd_udp_steady,
    }[args.cmd]
    return fn(args)


if __name__ == "__main__":
    sys.exit(main())
