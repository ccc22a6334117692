#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
#
# What a proxy costs the machine, read from /proc, for the benchmark suite.
#
# This module owns the accounting of one contender: a root process and all
# its descendants (nginx's worker, socat's per-connection children), so that
# every proxy is measured the same way whatever its process model.  It reads
# and prints; bench/run decides when to sample and bench/report.py what the
# differences mean.
#
#   procstat.py cpu PID     CPU clock ticks of the tree (utime+stime, plus
#                           cutime+cstime: children that exited)
#   procstat.py mem PID     one JSON object: rss_kib and pss_kib summed over
#                           the tree, fds, pipes (fds that are pipes), procs
#   procstat.py tree PID    the process and its descendants, by pid
#   procstat.py kmem        one JSON object: kernel memory in KiB that grows
#                           with sockets (slab, socket buffers, page tables)
import json
import os
import sys


def stat_fields(pid):
    with open("/proc/%d/stat" % pid) as f:
        data = f.read()
    # The command name is in parentheses and may hold spaces.
    return data[data.rindex(")") + 2:].split()


def children_map():
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ppid = int(stat_fields(int(name))[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(name))
    return kids


def tree(root):
    kids = children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def cpu_ticks(root):
    total = 0
    for pid in tree(root):
        try:
            f = stat_fields(pid)
        except OSError:
            continue
        # Fields 14-17 of stat(5), counted from the state field as 3.
        utime, stime, cutime, cstime = (int(x) for x in f[11:15])
        # A live process's own time, and that of the children it has
        # reaped (socat's per-connection children): each tick once.
        total += utime + stime + cutime + cstime
    return total


def mem(root):
    res = {"rss_kib": 0, "pss_kib": 0, "fds": 0, "pipes": 0, "procs": 0}
    for pid in tree(root):
        try:
            with open("/proc/%d/smaps_rollup" % pid) as f:
                for line in f:
                    key, _, rest = line.partition(":")
                    if key == "Rss":
                        res["rss_kib"] += int(rest.split()[0])
                    elif key == "Pss":
                        res["pss_kib"] += int(rest.split()[0])
            fddir = "/proc/%d/fd" % pid
            for fd in os.listdir(fddir):
                res["fds"] += 1
                try:
                    if os.readlink(os.path.join(fddir, fd)).startswith(
                            "pipe:"):
                        res["pipes"] += 1
                except OSError:
                    pass
            res["procs"] += 1
        except OSError:
            continue
    return res


def kmem():
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            info[key] = int(rest.split()[0])
    sock_pages = 0
    for path in ("/proc/net/sockstat",):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if parts[0] in ("TCP:", "UDP:") and "mem" in parts:
                    sock_pages += int(parts[parts.index("mem") + 1])
    return {"slab_kib": info["Slab"], "pagetables_kib": info["PageTables"],
            "sock_kib": sock_pages * 4,
            "kernel_kib": info["Slab"] + info["PageTables"] +
            info.get("KernelStack", 0) + sock_pages * 4}


def main(argv):
    if len(argv) == 2 and argv[0] == "cpu":
        print(cpu_ticks(int(argv[1])))
    elif len(argv) == 2 and argv[0] == "mem":
        print(json.dumps(mem(int(argv[1]))))
    elif len(argv) == 2 and argv[0] == "tree":
        print(" ".join(str(p) for p in tree(int(argv[1]))))
    elif len(argv) == 1 and argv[0] == "kmem":
        print(json.dumps(kmem()))
    else:
        sys.exit("usage: procstat.py cpu PID | mem PID | tree PID | kmem")


if __name__ == "__main__":
    main(sys.argv[1:])
