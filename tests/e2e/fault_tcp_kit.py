#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
#
# The peers of tests/e2e/fault_tcp_limits.sh: backends and clients that
# push the TCP relay's limits (a connection cap, a slow reader, a peer that
# vanishes, a half-closed peer that falls silent).  Standard library only;
# every mode is bounded in time and prints one result line for the shell
# script to check.
#
# Backends (serve --mode):
#   stream   read one line, then send as fast as the peer takes until an
#            error; log "stream ended: ERROR after N bytes".
#   quiet    read one line, then wait for the peer; log "quiet ended: ERROR".
#   mute     read until EOF, then neither answer nor close for --hold s.
# Clients:
#   hold-many  open --count connections, one after another; each sends one
#              byte to an echo service and waits 1 s for it: prints
#              "ok N closed M slowest_close_ms T", then holds the open ones
#              until --go-file exists (or --hold s).
#   slow-read  send one line, then read --rate bytes a second for --seconds:
#              prints "read N bytes".
#   vanish     send one line, read what comes for 0.5 s, create --ready-file,
#              then stop reading and sleep --hold s (the script cuts the
#              network meanwhile).
#   half-close send one line, shut down the write side, then wait for the
#              end: prints "ended by eof|reset|timeout after MS ms".
import argparse
import errno
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


def error_name(e):
    """ECONNRESET, ETIMEDOUT...: what the kernel said."""
    return errno.errorcode.get(getattr(e, "errno", None) or 0,
                               type(e).__name__)


def read_line(conn):
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def serve_stream(conn, args):
    read_line(conn)
    block = b"s" * 65536
    sent = 0
    try:
        while True:
            sent += conn.send(block)
    except OSError as e:
        return "stream ended: %s after %d bytes" % (error_name(e), sent)


def serve_quiet(conn, args):
    read_line(conn)
    try:
        data = conn.recv(1)
        return "quiet ended: %s" % ("eof" if not data else "data")
    except OSError as e:
        return "quiet ended: %s" % error_name(e)


def serve_mute(conn, args):
    while conn.recv(65536):
        pass
    log("mute got EOF")
    time.sleep(args.hold)
    return "mute closed"


SERVE_MODES = {"stream": serve_stream, "quiet": serve_quiet,
               "mute": serve_mute}


def serve_one(conn, args):
    try:
        result = SERVE_MODES[args.mode](conn, args)
    except OSError as e:
        result = "%s failed: %s" % (args.mode, error_name(e))
    log(result)
    conn.close()


def cmd_serve(args):
    host, port = addr_port(args.listen)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(128)
    log("listening on %s:%d mode %s" % (host, port, args.mode))
    deadline = time.monotonic() + args.lifetime
    srv.settimeout(1)
    while time.monotonic() < deadline:
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            continue
        threading.Thread(target=serve_one, args=(conn, args),
                         daemon=True).start()
    return 0


def connect(args):
    s = socket.create_connection(addr_port(args.connect), timeout=5)
    s.settimeout(args.timeout)
    return s


def cmd_hold_many(args):
    held, closed, slowest = [], 0, 0.0
    for _ in range(args.count):
        s = None
        t0 = time.monotonic()
        try:
            # A reset may beat connect() home: that is a closed one too.
            s = connect(args)
            s.sendall(b"x")
            s.settimeout(1)
            if s.recv(1) == b"x":
                held.append(s)
                continue
        except OSError:
            pass
        slowest = max(slowest, time.monotonic() - t0)
        closed += 1
        if s is not None:
            s.close()
    log("ok %d closed %d slowest_close_ms %d" %
        (len(held), closed, slowest * 1000))
    deadline = time.monotonic() + args.hold
    while time.monotonic() < deadline and not (
            args.go_file and os.path.exists(args.go_file)):
        time.sleep(0.05)
    for s in held:
        s.close()
    return 0


def cmd_slow_read(args):
    s = connect(args)
    s.sendall(b"go\n")
    got = 0
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        got += len(s.recv(args.rate))
        time.sleep(1)
    log("read %d bytes" % got)
    s.close()
    return 0


def cmd_vanish(args):
    s = connect(args)
    s.sendall(b"go\n")
    s.settimeout(0.5)
    end = time.monotonic() + 0.5
    try:
        while time.monotonic() < end and s.recv(65536):
            pass
    except OSError:
        pass
    with open(args.ready_file, "w"):
        pass
    time.sleep(args.hold)
    return 0


def cmd_half_close(args):
    s = connect(args)
    s.sendall(b"request\n")
    s.shutdown(socket.SHUT_WR)
    t0 = time.monotonic()
    try:
        while s.recv(65536):
            pass
        how = "eof"
    except socket.timeout:
        how = "timeout"
    except OSError:
        how = "reset"
    log("ended by %s after %d ms" % (how, (time.monotonic() - t0) * 1000))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--listen", required=True)
    s.add_argument("--mode", choices=sorted(SERVE_MODES), required=True)
    s.add_argument("--hold", type=float, default=20)
    s.add_argument("--lifetime", type=float, default=120)
    for name in ("hold-many", "slow-read", "vanish", "half-close"):
        c = sub.add_parser(name)
        c.add_argument("--connect", required=True)
        c.add_argument("--timeout", type=float, default=10)
        c.add_argument("--count", type=int, default=1)
        c.add_argument("--hold", type=float, default=10)
        c.add_argument("--go-file")
        c.add_argument("--ready-file")
        c.add_argument("--rate", type=int, default=1024)
        c.add_argument("--seconds", type=float, default=5)
    args = p.parse_args()
    return {"serve": cmd_serve, "hold-many": cmd_hold_many,
            "slow-read": cmd_slow_read, "vanish": cmd_vanish,
            "half-close": cmd_half_close}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
