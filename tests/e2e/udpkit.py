#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
#
# The two ends of the e2e UDP datagram-size scenarios: a backend ("echo")
# that sends every datagram back to where it came from, and a client
# ("send") that sends one datagram of random bytes and checks that the very
# same bytes come back.  Standard library only.  DNS scenarios use dnsmasq
# and dig instead; this file is for what they cannot do: datagrams far
# larger than a DNS message.
#
#   echo --listen IP:PORT
#       Echo datagrams of up to 65535 bytes; log "from ADDR:PORT N bytes".
#   send --to IP:PORT --size N [--bind IP:PORT] [--timeout S]
#       Print "sent N SHA256 received M SHA256" and exit 0 when the reply is
#       the same N bytes, else print "ERROR:<kind> ..." and exit 1.
# Exit status 2 on usage errors.

import argparse
import hashlib
import os
import socket
import sys

MAX_DATAGRAM = 65535


def addr_port(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def cmd_echo(args):
    host, port = addr_port(args.listen)
    sock = socket.socket(family_of(host), socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MAX_DATAGRAM)
    sock.bind((host, port))
    print(f"echo listening on {args.listen}", flush=True)
    while True:
        data, peer = sock.recvfrom(MAX_DATAGRAM)
        print(f"from {peer[0]}:{peer[1]} {len(data)} bytes", flush=True)
        sock.sendto(data, peer)


def cmd_send(args):
    host, port = addr_port(args.to)
    sock = socket.socket(family_of(host), socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MAX_DATAGRAM)
    if args.bind:
        sock.bind(addr_port(args.bind))
    sock.settimeout(args.timeout)
    payload = os.urandom(args.size)
    sent_sha = hashlib.sha256(payload).hexdigest()
    try:
        sock.sendto(payload, (host, port))
        # One buffer larger than any datagram: a short read means the
        # datagram really was shorter, not that we cut it.
        reply = sock.recv(MAX_DATAGRAM + 1)
    except socket.timeout:
        print(f"ERROR:timeout sent {args.size} {sent_sha}", flush=True)
        return 1
    except OSError as e:
        print(f"ERROR:{e.strerror} sent {args.size} {sent_sha}", flush=True)
        return 1
    got_sha = hashlib.sha256(reply).hexdigest()
    print(f"sent {args.size} {sent_sha} received {len(reply)} {got_sha}",
          flush=True)
    return 0 if reply == payload else 1


def main():
    p = argparse.ArgumentParser(prog="udpkit.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("echo")
    e.add_argument("--listen", required=True)
    s = sub.add_parser("send")
    s.add_argument("--to", required=True)
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--bind")
    s.add_argument("--timeout", type=float, default=3.0)
    args = p.parse_args()
    if args.cmd == "echo":
        return cmd_echo(args)
    return cmd_send(args)


if __name__ == "__main__":
    sys.exit(main())
