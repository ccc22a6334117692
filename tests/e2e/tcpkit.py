#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
#
# The two ends of every e2e TCP scenario: a backend ("serve") that says who
# it is, and a client ("client") that reports what a user of the service
# would see.  Standard library only.  The proxy sits between them; this file
# knows nothing about it except the address to connect to.
#
# Backend modes (serve --mode):
#   hello      send "NAME\n" at once, then close (the client needs to send
#              nothing: a plain "which backend answered?" probe).
#   after-eof  read until the client's EOF, then reply "NAME got N bytes\n"
#              and close: the reply exists only if the half-close reached us.
#   greet      send "NAME\n", shut down the write side, then read until EOF
#              and log how many bytes arrived after our FIN.
#   echo       send back every byte; on EOF, shut down the write side.
# Each backend logs one line per connection to stdout ("from ADDR:PORT ...").
#
# Client modes (client --mode), one result line per connection:
#   names      connect, read until EOF: "SRC NAME" or "SRC ERROR:<kind>".
#   half-close send --send (--repeat times), shut down the write side, read
#              the reply.
#   greet      read until EOF, then send --send bytes, then close.
#   echo       stream --bytes deterministic bytes while reading the echo;
#              print "sent N SHA received M SHA SECONDS".
#   hold       one connection kept open: ping, wait for --go-file, ping again.
# Exit status: 0 when every connection succeeded, 1 otherwise, 2 on usage.

import argparse
import errno
import hashlib
import os
import socket
import sys
import threading
import time


def log(*args):
    print(*args, flush=True)


def addr_port(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def read_all(sock):
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


# ---------------------------------------------------------------- backend


def serve_hello(conn, name):
    conn.sendall(name.encode() + b"\n")
    return "said hello"


def serve_after_eof(conn, name):
    got = read_all(conn)
    conn.sendall(b"%s got %d bytes\n" % (name.encode(), len(got)))
    return "got %d bytes before EOF, replied" % len(got)


def serve_greet(conn, name):
    conn.sendall(name.encode() + b"\n")
    conn.shutdown(socket.SHUT_WR)
    got = read_all(conn)
    return "received %d bytes after our FIN" % len(got)


def serve_echo(conn, name):
    sha = hashlib.sha256()
    n = 0
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    while True:
        k = conn.recv_into(buf)
        if k == 0:
            break
        sha.update(view[:k])
        conn.sendall(view[:k])
        n += k
    conn.shutdown(socket.SHUT_WR)
    return "echoed %d bytes sha256 %s" % (n, sha.hexdigest())


SERVE_MODES = {
    "hello": serve_hello,
    "after-eof": serve_after_eof,
    "greet": serve_greet,
    "echo": serve_echo,
}


def serve_one(conn, peer, name, handler):
    try:
        result = handler(conn, name)
        log("from %s:%d %s" % (peer[0], peer[1], result))
    except OSError as e:
        log("from %s:%d error %s" % (peer[0], peer[1], e))
    finally:
        conn.close()


def cmd_serve(args):
    host, port = addr_port(args.listen)
    handler = SERVE_MODES[args.mode]
    lsock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((host, port))
    lsock.listen(128)
    log("%s listening on %s:%d mode %s" % (args.name, host, port, args.mode))
    while True:
        conn, peer = lsock.accept()
        threading.Thread(target=serve_one, daemon=True,
                         args=(conn, peer, args.name, handler)).start()


# ----------------------------------------------------------------- client


def error_kind(e):
    kinds = {
        errno.ECONNREFUSED: "refused",
        errno.ECONNRESET: "reset",
        errno.ETIMEDOUT: "timeout",
        errno.EPIPE: "broken-pipe",
    }
    if isinstance(e, socket.timeout):
        return "timeout"
    return kinds.get(e.errno, "errno-%s" % e.errno)


def connect(args, src):
    sock = socket.socket(socket.AF_INET)
    sock.settimeout(args.timeout)
    if src:
        sock.bind((src, 0))
    sock.connect(addr_port(args.connect))
    return sock


def client_names(sock, args):
    return read_all(sock).decode(errors="replace").strip()


def client_half_close(sock, args):
    sock.sendall(args.send.encode() * args.repeat)
    sock.shutdown(socket.SHUT_WR)
    return read_all(sock).decode(errors="replace").strip()


def client_greet(sock, args):
    greeting = read_all(sock).decode(errors="replace").strip()
    sock.sendall(args.send.encode())
    return "%s sent %d bytes after EOF" % (greeting, len(args.send))


def pattern_block():
    # A deterministic block whose length is not a power of two, so that a
    # relay that drops, repeats or reorders any aligned chunk changes the
    # digest.
    block = hashlib.sha256(b"kuproxy").digest() * 32771
    return block


def client_echo(sock, args):
    block = pattern_block()
    doubled = memoryview(block + block)
    total = args.bytes
    sent_sha = hashlib.sha256()
    send_error = []

    def sender():
        off = 0
        left = total
        try:
            while left > 0:
                n = min(left, len(block))
                chunk = doubled[off:off + n]
                sent_sha.update(chunk)
                sock.sendall(chunk)
                off = (off + n) % len(block)
                left -= n
            sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            send_error.append(e)

    start = time.monotonic()
    t = threading.Thread(target=sender, daemon=True)
    t.start()
    recv_sha = hashlib.sha256()
    received = 0
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    while True:
        k = sock.recv_into(buf)
        if k == 0:
            break
        recv_sha.update(view[:k])
        received += k
    t.join(args.timeout)
    if send_error:
        raise send_error[0]
    secs = time.monotonic() - start
    return "sent %d %s received %d %s %.2f" % (
        total, sent_sha.hexdigest(), received, recv_sha.hexdigest(), secs)


def wait_for_file(path, timeout):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise socket.timeout("no %s" % path)
        time.sleep(0.02)


def ping(sock, text):
    sock.sendall(text.encode() + b"\n")
    want = len(text) + 1
    got = b""
    while len(got) < want:
        data = sock.recv(want - len(got))
        if not data:
            raise ConnectionResetError(errno.ECONNRESET, "EOF mid-ping")
        got += data
    if got != text.encode() + b"\n":
        raise OSError(errno.EPROTO, "echo mismatch: %r" % got)
    return got.decode().strip()


def client_hold(sock, args):
    log("ping %s" % ping(sock, "first"))
    wait_for_file(args.go_file, args.timeout)
    big = "second " + "x" * 100000
    ping(sock, big)
    return "ping second (%d bytes)" % (len(big) + 1)


CLIENT_MODES = {
    "names": client_names,
    "half-close": client_half_close,
    "greet": client_greet,
    "echo": client_echo,
    "hold": client_hold,
}


def cmd_client(args):
    sources = args.bind.split(",") if args.bind else [""]
    handler = CLIENT_MODES[args.mode]
    failures = 0
    for i in range(args.count):
        src = sources[i % len(sources)]
        label = src or "-"
        t0 = time.monotonic()
        try:
            sock = connect(args, src)
            try:
                result = handler(sock, args)
            finally:
                sock.close()
        except OSError as e:
            failures += 1
            result = "ERROR:%s" % error_kind(e)
        if args.show_ms:
            result += " %.1fms" % ((time.monotonic() - t0) * 1000)
        log("%s %s" % (label, result))
    return 1 if failures else 0


def main():
    p = argparse.ArgumentParser(description="e2e backend and client")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--listen", required=True, help="ADDR:PORT")
    s.add_argument("--name", required=True)
    s.add_argument("--mode", choices=SERVE_MODES, default="hello")
    c = sub.add_parser("client")
    c.add_argument("--connect", required=True, help="ADDR:PORT")
    c.add_argument("--mode", choices=CLIENT_MODES, default="names")
    c.add_argument("--bind", help="source IPs, comma-separated, in turn")
    c.add_argument("--count", type=int, default=1)
    c.add_argument("--send", default="request\n")
    c.add_argument("--repeat", type=int, default=1, help="send --send N times")
    c.add_argument("--bytes", type=int, default=0)
    c.add_argument("--go-file")
    c.add_argument("--timeout", type=float, default=5.0)
    c.add_argument("--show-ms", action="store_true")
    args = p.parse_args()
    if args.cmd == "serve":
        cmd_serve(args)
        return 0
    return cmd_client(args)


if __name__ == "__main__":
    sys.exit(main())
