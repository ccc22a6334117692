#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
#
# The benchmark suite's report: medians, ratios and targets.
#
# This module owns what the raw figures mean.  It reads RESULTS/raw.tsv
# ("contender scenario metric round value", written by bench/run) and
# RESULTS/machine.json, and writes RESULTS/latest.json (every figure: each
# round's values, median, min, max, the ratio of each contender to direct
# and of kuproxy to each peer, the targets with met/missed), RESULTS/latest.md
# (the same as Markdown tables) and a plain table on stdout.
#
#   report.py RESULTS_DIR "PEER PEER ..."
import json
import os
import statistics
import sys

# metric: (unit, True when higher is better)
METRICS = {
    "gbps": ("Gbit/s", True),
    "cpu_s_per_gb": ("CPU s/GB", False),
    "req_per_s": ("req/s", True),
    "cpu_us_per_req": ("CPU µs/req", False),
    "p50_us": ("µs", False),
    "p99_us": ("µs", False),
    "errors": ("", False),
    "rate": ("req/s", True),
    "lost": ("", False),
    "user_kib_per_conn": ("KiB/conn", False),
    "kernel_kib_per_conn": ("KiB/conn", False),
    "beyond_direct_kib_per_conn": ("KiB/conn", False),
    "fds_per_conn": ("fd/conn", False),
    "pipes_held": ("pipe fds", False),
    "pipe_fds_total": ("pipe fds", False),
    "connections": ("", True),
    "cpu_s_idle": ("CPU s", False),
    "rss_kib_after": ("KiB", False),
}

# The figures shown in the comparison tables, scenario by scenario.
SHOWN = [
    ("bulk1", ["gbps", "cpu_s_per_gb"]),
    ("bulk4", ["gbps", "cpu_s_per_gb"]),
    ("cps32", ["req_per_s", "cpu_us_per_req", "errors"]),
    ("cps256", ["req_per_s", "cpu_us_per_req", "errors"]),
    ("ka32", ["req_per_s", "p50_us", "p99_us", "cpu_us_per_req", "errors"]),
    ("udp", ["rate", "p50_us", "p99_us", "cpu_us_per_req", "lost"]),
    ("idle", ["connections", "user_kib_per_conn", "kernel_kib_per_conn",
              "beyond_direct_kib_per_conn", "fds_per_conn", "pipes_held",
              "cpu_s_idle"]),
]

KUPROXY = "kuproxy"


def load(out):
    raw = {}
    order = []
    with open(os.path.join(out, "raw.tsv")) as f:
        for line in f:
            c, s, m, rnd, v = line.rstrip("\n").split("\t")
            if c not in order:
                order.append(c)
            raw.setdefault(s, {}).setdefault(m, {}).setdefault(c, []).append(
                float(v))
    return raw, order


def summarize(values):
    return {"values": values, "median": statistics.median(values),
            "min": min(values), "max": max(values)}


def add_beyond_direct(raw):
    # Per connection: the proxy's own memory plus the kernel memory the
    # whole machine grew by, less what the same connections cost direct.
    idle = raw.get("idle", {})
    direct = idle.get("kernel_kib_per_conn", {}).get("direct")
    if not direct:
        return
    base = statistics.median(direct)
    out = {}
    for c, kern in idle.get("kernel_kib_per_conn", {}).items():
        user = idle.get("user_kib_per_conn", {}).get(c, [0] * len(kern))
        out[c] = [u + k - base for u, k in zip(user, kern)]
    idle["beyond_direct_kib_per_conn"] = out


def best(figs, peers, higher):
    cands = [(figs[p]["median"], p) for p in peers if p in figs]
    if not cands:
        return None, None
    v, p = (max if higher else min)(cands)
    return p, v


def build(raw, order, peers):
    res = {}
    for s, metrics in raw.items():
        res[s] = {}
        for m, per in metrics.items():
            figs = {c: summarize(v) for c, v in per.items()}
            entry = {"contenders": figs}
            unit, higher = METRICS.get(m, ("", False))
            entry["unit"] = unit
            entry["higher_is_better"] = higher
            d = figs.get("direct", {}).get("median")
            if d:
                entry["ratio_to_direct"] = {
                    c: f["median"] / d for c, f in figs.items()}
            k = figs.get(KUPROXY, {}).get("median")
            if k is not None:
                entry["kuproxy_ratio_to"] = {
                    p: (k / figs[p]["median"] if figs[p]["median"] else None)
                    for p in figs if p != KUPROXY}
                bp, bv = best(figs, peers, higher)
                if bp:
                    entry["best_peer"] = {"name": bp, "median": bv}
            res[s][m] = entry
    return res


def med(res, s, m, c=KUPROXY):
    try:
        return res[s][m]["contenders"][c]["median"]
    except KeyError:
        return None


def target(name, value, goal, ok, evidence=""):
    return {"target": name, "value": value, "goal": goal,
            "met": None if value is None else bool(ok), "detail": evidence}


def ratio(a, b):
    return None if a is None or not b else a / b


def targets(res, peers):
    out = []

    def bestv(s, m):
        e = res.get(s, {}).get(m, {})
        return e.get("best_peer", {}).get("median"), \
            e.get("best_peer", {}).get("name")

    for s in ("bulk1", "bulk4"):
        k, d = med(res, s, "gbps"), med(res, s, "gbps", "direct")
        bv, bn = bestv(s, "gbps")
        r = ratio(k, d)
        out.append(target(s + " throughput vs direct", r, ">= 0.85",
                          r is not None and r >= 0.85))
        r = ratio(k, bv)
        out.append(target(s + " throughput vs best peer (%s)" % bn, r,
                          ">= 1.2", r is not None and r >= 1.2))
        v = med(res, s, "cpu_s_per_gb")
        out.append(target(s + " proxy CPU s/GB", v, "<= 0.15",
                          v is not None and v <= 0.15))
    for s in ("cps32", "cps256"):
        k = med(res, s, "req_per_s")
        bv, bn = bestv(s, "req_per_s")
        r = ratio(k, bv)
        out.append(target(s + " new connections/s vs best peer (%s)" % bn,
                          r, ">= 1.0", r is not None and r >= 1.0))
        v = med(res, s, "cpu_us_per_req")
        out.append(target(s + " proxy CPU µs/connection", v, "<= 45",
                          v is not None and v <= 45))
    k = med(res, "ka32", "req_per_s")
    bv, bn = bestv("ka32", "req_per_s")
    r = ratio(k, bv)
    out.append(target("keep-alive req/s vs best peer (%s)" % bn, r, ">= 1.0",
                      r is not None and r >= 1.0))
    v = med(res, "ka32", "cpu_us_per_req")
    out.append(target("keep-alive proxy CPU µs/request", v, "<= 8",
                      v is not None and v <= 8))
    k = med(res, "ka32", "p99_us")
    bv, bn = bestv("ka32", "p99_us")
    out.append(target("keep-alive p99 vs best peer (%s, %s µs)" % (bn, bv),
                      k, "<= best peer", k is not None and bv is not None
                      and k <= bv))
    r = ratio(med(res, "udp", "rate"), med(res, "udp", "rate", "direct"))
    out.append(target("UDP req/s vs direct", r, ">= 0.95",
                      r is not None and r >= 0.95))
    v = med(res, "udp", "cpu_us_per_req")
    out.append(target("UDP proxy CPU µs/request", v, "<= 5",
                      v is not None and v <= 5))
    v = med(res, "idle", "user_kib_per_conn")
    out.append(target("idle user memory KiB/connection", v, "<= 1.0",
                      v is not None and v <= 1.0))
    v = med(res, "idle", "beyond_direct_kib_per_conn")
    out.append(target("idle user+kernel KiB/connection beyond direct", v,
                      "<= 7.5", v is not None and v <= 7.5))
    # The pool may keep a few idle pipes whatever the load; what must not
    # happen is a pipe per idle connection.
    v, n = med(res, "idle", "pipes_held"), med(res, "idle", "connections")
    out.append(target("pipe fds held while idle (all %s connections)" % fmt(n),
                      v, "none per connection", v is not None and n and
                      v / n < 0.01))
    v = med(res, "idle", "cpu_s_idle")
    out.append(target("CPU while idle (s)", v, "0",
                      v is not None and v == 0))
    # Control plane, every scale: the file source with no rules and with
    # legacy rules, and the API source (kuproxy-api).  A file change is
    # read SOURCE_FILE_QUIET_MS (75 ms) after it settles, so the file's
    # endpoint-change target is kuproxy's own reading time (read_ms); the
    # API's includes the fake server's write and watch event (put_ms of it
    # is the write alone) and its CPU time is shown beside it.
    for big in sorted(s for s in res if s.startswith("control_")):
        v = med(res, big, "start_s")
        out.append(target(big + " file: start-up to all listeners (s)", v,
                          "<= 2", v is not None and v <= 2))
        v = med(res, big, "start_rules_s", "kuproxy-legacy")
        out.append(target(big + " file: start-up to rules in place (s)", v,
                          "<= 2", v is not None and v <= 2))
        v = med(res, big, "ep_change_read_ms")
        out.append(target(big + " file: endpoint change, reading (ms)", v,
                          "<= 10", v is not None and v <= 10))
        v = med(res, big, "ep_change_rule_syncs", "kuproxy-legacy")
        out.append(target(big + " file: iptables runs for an endpoint "
                          "change", v, "0", v is not None and v == 0))
        v = med(res, big, "add_svc_rules_ms", "kuproxy-legacy")
        out.append(target(big + " file: service added, rules in place (ms)",
                          v, "<= 2000", v is not None and v <= 2000))
        v = med(res, big, "rss_mib")
        out.append(target(big + " file: RSS (MiB)", v, "<= 64",
                          v is not None and v <= 64))
        api = "kuproxy-api"
        v = med(res, big, "start_s", api)
        out.append(target(big + " api: start-up to all listeners (s)", v,
                          "<= 2", v is not None and v <= 2))
        v = med(res, big, "ep_change_ms", api)
        put = med(res, big, "put_ms", api)
        out.append(target(big + " api: endpoint change, less the write "
                          "(ms)", None if v is None else
                          v - (put or 0), "<= 10",
                          v is not None and v - (put or 0) <= 10,
                          "CPU %s ms" % fmt(med(res, big, "ep_change_cpu_ms",
                                                api))))
        v = med(res, big, "rss_mib", api)
        out.append(target(big + " api: RSS (MiB)", v, "<= 64",
                          v is not None and v <= 64))
    return out


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1000:
        return "%.0f" % v
    if a >= 100:
        return "%.1f" % v
    if a >= 1:
        return "%.2f" % v
    return "%.3f" % v


def cell(f):
    if f is None:
        return "-"
    if f["min"] == f["max"]:
        return fmt(f["median"])
    return "%s [%s–%s]" % (fmt(f["median"]), fmt(f["min"]), fmt(f["max"]))


def tables(res, order, peers):
    """Rows of (title, header, rows) for stdout and Markdown alike."""
    out = []
    data_cont = [c for c in order if not c.startswith(("kuproxy-legacy",
                                                        "iptables"))]
    hdr = ["scenario", "metric"] + data_cont
    rows = []
    for s, metrics in SHOWN:
        for m in metrics:
            e = res.get(s, {}).get(m)
            if not e:
                continue
            rows.append([s, m + (" (%s)" % e["unit"] if e["unit"] else "")] +
                        [cell(e["contenders"].get(c)) for c in data_cont])
    out.append(("Data plane: median [min–max] over rounds", hdr, rows))

    rows = []
    for s, metrics in SHOWN:
        for m in metrics:
            e = res.get(s, {}).get(m)
            if not e or "ratio_to_direct" not in e or s == "idle":
                continue
            rows.append([s, m] + [fmt(e["ratio_to_direct"].get(c))
                                  for c in data_cont])
    out.append(("Ratio of each contender's median to direct", hdr, rows))

    ks = [p for p in data_cont if p not in (KUPROXY,)]
    rows = []
    for s, metrics in SHOWN:
        for m in metrics:
            e = res.get(s, {}).get(m)
            if not e or "kuproxy_ratio_to" not in e:
                continue
            rows.append([s, m] + [fmt(e["kuproxy_ratio_to"].get(c))
                                  for c in ks])
    out.append(("kuproxy's median divided by each other contender's "
                "(>1 is better for rates, worse for costs)",
                ["scenario", "metric"] + ks, rows))

    rows = []
    for s in sorted(res):
        if not s.startswith(("control_", "rulesync")):
            continue
        for m, e in res[s].items():
            for c, f in e["contenders"].items():
                rows.append([s, m, c, cell(f)])
    out.append(("Control plane", ["scale", "metric", "who", "value"], rows))
    return out


def print_table(title, hdr, rows, md):
    widths = [max(len(str(r[i])) for r in [hdr] + rows)
              for i in range(len(hdr))]
    lines = []
    if md:
        lines.append("### " + title)
        lines.append("")
        lines.append("| " + " | ".join(hdr) + " |")
        lines.append("|" + "|".join("---" for _ in hdr) + "|")
        for r in rows:
            lines.append("| " + " | ".join(str(x) for x in r) + " |")
    else:
        lines.append(title)
        lines.append("  ".join(h.ljust(w) for h, w in zip(hdr, widths)))
        for r in rows:
            lines.append("  ".join(str(x).ljust(w)
                                   for x, w in zip(r, widths)))
    lines.append("")
    return "\n".join(lines)


def main(argv):
    out = argv[0]
    peers = argv[1].split() if len(argv) > 1 else []
    raw, order = load(out)
    add_beyond_direct(raw)
    res = build(raw, order, peers)
    tg = targets(res, peers)
    with open(os.path.join(out, "machine.json")) as f:
        machine = json.load(f)
    doc = {"machine": machine, "peers": peers, "contenders": order,
           "results": res, "targets": tg}
    with open(os.path.join(out, "latest.json"), "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    tgrows = [[t["target"], fmt(t["value"]), t["goal"],
               {True: "met", False: "MISSED", None: "n/a"}[t["met"]]]
              for t in tg]
    tabs = tables(res, order, peers) + [
        ("Targets", ["target", "kuproxy", "goal", ""], tgrows)]
    head = ("Machine: %d CPUs, %s, kernel %s; pinning: proxy on cpu %d, "
            "load generators and backends on cpu %d\n" % (
                machine["nproc"], machine["cpu_model"], machine["kernel"],
                machine["pinning"]["proxy_cpu"],
                machine["pinning"]["load_and_backends_cpu"]))
    with open(os.path.join(out, "latest.md"), "w") as f:
        f.write("## kuproxy benchmark results\n\n" + head + "\n")
        f.write("Parameters: %s\n\n" % json.dumps(machine["params"]))
        for t in tabs:
            f.write(print_table(*t, md=True) + "\n")
    print(head)
    for t in tabs:
        print(print_table(*t, md=False))


if __name__ == "__main__":
    main(sys.argv[1:])
