#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
#
# Reading what kuproxy's operator interfaces report, for the ops_*.sh e2e
# tests: a /metrics page (Prometheus text format 0.0.4), the `kuproxy
# status --json` document and the `kuproxy status` table.  The page is
# parsed twice: by python3-prometheus-client's own parser (what a scraper
# would accept) and line by line here, for the rules that parser lets pass
# (one HELP and one TYPE per family, before and around all of its samples;
# no series twice; cumulative histograms ending in +Inf == _count; counters
# named *_total; a final newline).
#
# Commands:
#   check FILE [ASSERTION...]   validate the page, then each assertion:
#                               'NAME{k="v",...} OP NUMBER', OP one of
#                               == != >= <= > <; the left side is the sum of
#                               every sample named NAME whose labels include
#                               the given ones (no match is a failure).
#   get FILE SELECTOR           print that sum ("none" and exit 1 if no match)
#   status-vs-metrics METRICS STATUS_JSON STATUS_TABLE
#                               every service port and endpoint: the JSON,
#                               the table and the metrics tell the same counts
#   status-get STATUS_JSON KEY FIELD [ENDPOINT]
#                               one number from the status document
# Exit status: 0 all good, 1 a check failed, 2 usage or unreadable input.

import json
import math
import re
import sys

from prometheus_client.parser import text_string_to_metric_families

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$')
LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')
SELECTOR_RE = re.compile(r'^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{(.*)\})?\s*$')
ASSERT_RE = re.compile(r'^(.*?)\s*(==|!=|>=|<=|>|<)\s*(\S+)\s*$')
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"),
            "summary": ("_sum", "_count", "")}


def unescape(value):
    out = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            out.append({"n": "\n", "\\": "\\", '"': '"'}.get(nxt, "\\" + nxt))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_labels(text):
    """'a="1",b="x\\"y"' -> {'a': '1', 'b': 'x"y'}; None if malformed."""
    labels = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = LABEL_RE.match(text, pos)
        if not m:
            return None
        if m.group(1) in labels:
            return None
        labels[m.group(1)] = unescape(m.group(2))
        pos = m.end()
    return labels


def family_of(name, families):
    """The declared family a sample name belongs to, or None."""
    if name in families and families[name]["type"] not in ("histogram",):
        return name
    for fam, info in families.items():
        for suffix in SUFFIXES.get(info["type"], ()):
            if suffix and name == fam + suffix:
                return fam
    return None


def validate(text):
    """Returns (samples, problems); samples: [(name, labels, value)]."""
    problems = []
    samples = []
    if not text.endswith("\n"):
        problems.append("the page does not end with a newline")
    try:
        list(text_string_to_metric_families(text))
    except Exception as e:  # the parser raises ValueError and others
        problems.append("prometheus_client's parser rejects the page: %s" % e)

    families = {}
    finished = set()
    current = None
    seen = set()
    for lineno, line in enumerate(text.splitlines(), 1):
        where = "line %d" % lineno
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            parts = line.split(" ", 3)
            if len(parts) < 4:
                problems.append("%s: truncated %s line" % (where, parts[1]))
                continue
            kind, name, rest = parts[1], parts[2], parts[3]
            info = families.setdefault(name, {"help": None, "type": None,
                                              "samples": 0})
            if name in finished or info["samples"]:
                problems.append("%s: %s for %s after its samples" %
                                (where, kind, name))
            key = kind.lower()
            if info[key] is not None:
                problems.append("%s: second %s for %s" % (where, kind, name))
            if kind == "TYPE" and rest not in TYPES:
                problems.append("%s: unknown type %r" % (where, rest))
            info[key] = rest
            if current is not None and current != name:
                finished.add(current)
            current = name
            continue
        if line.startswith("#") or not line.strip():
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            problems.append("%s: not a sample: %r" % (where, line))
            continue
        name, labels_text, value_text = m.group(1), m.group(3), m.group(4)
        labels = parse_labels(labels_text or "")
        if labels is None:
            problems.append("%s: bad labels in %r" % (where, line))
            continue
        try:
            value = float(value_text)
        except ValueError:
            problems.append("%s: bad value in %r" % (where, line))
            continue
        fam = family_of(name, families)
        if fam is None:
            problems.append("%s: %s has no # TYPE before it" % (where, name))
        else:
            info = families[fam]
            if info["help"] is None or info["type"] is None:
                problems.append("%s: family %s lacks HELP or TYPE" %
                                (where, fam))
            if fam in finished:
                problems.append("%s: %s samples are not grouped" %
                                (where, fam))
            if current != fam and current is not None:
                finished.add(current)
            current = fam
            info["samples"] += 1
            if info["type"] == "counter" and not name.endswith("_total"):
                problems.append("%s: counter %s is not named *_total" %
                                (where, name))
        series = (name, tuple(sorted(labels.items())))
        if series in seen:
            problems.append("%s: series %s%s appears twice" %
                            (where, name, labels))
        seen.add(series)
        samples.append((name, labels, value))

    for fam, info in families.items():
        if info["help"] is None or info["type"] is None:
            problems.append("family %s lacks HELP or TYPE" % fam)
        if info["type"] == "histogram":
            problems.extend(check_histogram(fam, samples))
    return samples, problems


def check_histogram(fam, samples):
    """Buckets cumulative, +Inf last and equal to _count, per label set."""
    problems = []
    groups = {}
    counts = {}
    for name, labels, value in samples:
        rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        if name == fam + "_bucket":
            le = labels.get("le")
            if le is None:
                problems.append("%s_bucket without le" % fam)
                continue
            groups.setdefault(rest, []).append((float(le), value))
        elif name == fam + "_count":
            counts[rest] = value
    for rest, buckets in groups.items():
        bounds = [b for b, _ in buckets]
        if bounds != sorted(bounds) or not math.isinf(bounds[-1]):
            problems.append("%s: buckets not ascending to +Inf" % fam)
        values = [v for _, v in buckets]
        if values != sorted(values):
            problems.append("%s: buckets are not cumulative" % fam)
        if counts.get(rest) != values[-1]:
            problems.append("%s: +Inf bucket %s != _count %s" %
                            (fam, values[-1], counts.get(rest)))
    return problems


def parse_selector(text):
    m = SELECTOR_RE.match(text)
    if not m:
        raise ValueError("bad selector %r" % text)
    labels = parse_labels(m.group(3) or "")
    if labels is None:
        raise ValueError("bad labels in selector %r" % text)
    return m.group(1), labels


def select(samples, selector):
    """Sum of the matching samples, or None when nothing matches."""
    name, want = parse_selector(selector)
    total = None
    for sname, labels, value in samples:
        if sname != name:
            continue
        if all(labels.get(k) == v for k, v in want.items()):
            total = (total or 0) + value
    return total


def fmt(v):
    if v is None:
        return "none"
    return str(int(v)) if v == int(v) else repr(v)


OPS = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
    ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, "<": lambda a, b: a < b,
}


def read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        print("metrics_check: %s" % e, file=sys.stderr)
        sys.exit(2)


def cmd_check(path, assertions):
    samples, problems = validate(read(path))
    for p in problems:
        print("FAIL: %s: %s" % (path, p))
    for a in assertions:
        m = ASSERT_RE.match(a)
        if not m:
            print("metrics_check: bad assertion %r" % a, file=sys.stderr)
            return 2
        got = select(samples, m.group(1))
        want = float(m.group(3))
        if got is None or not OPS[m.group(2)](got, want):
            problems.append(a)
            print("FAIL: %s: want %s %s, got %s" %
                  (m.group(1), m.group(2), m.group(3), fmt(got)))
        else:
            print("ok: %s %s %s" % (m.group(1), m.group(2), m.group(3)))
    return 1 if problems else 0


def cmd_get(path, selector):
    samples, _ = validate(read(path))
    got = select(samples, selector)
    print(fmt(got))
    return 0 if got is not None else 1


# ---------------------------------------------------------------- status


def load_status(path):
    try:
        return json.loads(read(path))
    except ValueError as e:
        print("metrics_check: %s: not JSON: %s" % (path, e), file=sys.stderr)
        sys.exit(2)


def find_port(doc, key):
    for sp in doc.get("servicePorts", []):
        if sp.get("key") == key:
            return sp
    return None


def cmd_status_get(path, key, field, endpoint=None):
    sp = find_port(load_status(path), key)
    if sp is not None and endpoint is not None:
        sp = next((e for e in sp.get("endpoints", [])
                   if e.get("address") == endpoint), None)
    if sp is None or field not in sp:
        print("none")
        return 1
    value = sp[field]
    print(json.dumps(value) if not isinstance(value, str) else value)
    return 0


def table_rows(text):
    """The table as {(port line): [endpoint rows]}, keyed by ns/name:port."""
    ports = {}
    current = None
    for line in text.splitlines():
        if line.startswith("  -> "):
            fields = line.split()
            if current is None or len(fields) < 8 or fields[1] == "Endpoint":
                continue
            ports[current]["endpoints"][fields[1]] = {
                "ready": fields[2] == "yes",
                "activeConnections": int(fields[3]),
                "totalConnections": int(fields[4]),
                "bytesToEndpoint": int(fields[5]),
                "bytesToClient": int(fields[6]),
                "connectFailures": int(fields[7]),
            }
            continue
        m = re.match(r"^(TCP|UDP|SCTP)\s+(\S+)\s+(.*)proxy port (\d+)", line)
        if m:
            current = (m.group(1), m.group(2))
            ports[current] = {"proxyPort": int(m.group(4)), "endpoints": {}}
    return ports


def cmd_status_vs_metrics(metrics_path, json_path, table_path):
    samples, problems = validate(read(metrics_path))
    for p in problems:
        print("FAIL: %s: %s" % (metrics_path, p))
    doc = load_status(json_path)
    table = table_rows(read(table_path))
    bad = len(problems)

    def same(what, a, b):
        nonlocal bad
        if a != b:
            bad += 1
            print("FAIL: %s: %s != %s" % (what, fmt(a) if a is not None
                                          else a, b))

    if doc.get("formatVersion") != 1:
        same("formatVersion", doc.get("formatVersion"), 1)
    n_eps = 0
    for sp in doc.get("servicePorts", []):
        sel = 'namespace="%s",service="%s",port="%s",protocol="%s"' % (
            sp["namespace"], sp["name"], sp["port"], sp["protocol"])
        key = sp["key"]
        for field, metric in (
                ("activeConnections", "kuproxy_service_connections_active{%s}"),
                ("bytesToEndpoints",
                 'kuproxy_service_bytes_total{%s,direction="to_backend"}'),
                ("bytesToClients",
                 'kuproxy_service_bytes_total{%s,direction="to_client"}'),
                ("noEndpointRejections",
                 "kuproxy_service_no_endpoint_rejections_total{%s}"),
                ("connectFailures",
                 "kuproxy_service_connect_failures_total{%s}")):
            same("%s %s vs %s" % (key, field, metric % sel),
                 select(samples, metric % sel), sp[field])
        if sp["protocol"] == "TCP":
            same("%s totalConnections" % key,
                 select(samples, "kuproxy_service_connections_total{%s}" %
                        sel), sp["totalConnections"])
        row = table.get((sp["protocol"], "%s/%s%s%s" % (
            sp["namespace"], sp["name"], ":" if sp["port"] else "",
            sp["port"])))
        if row is None:
            bad += 1
            print("FAIL: %s is not in the table" % key)
            continue
        same("%s proxy port in the table" % key, row["proxyPort"],
             sp["proxyPort"])
        for ep in sp.get("endpoints", []):
            n_eps += 1
            addr = ep["address"]
            esel = '%s,endpoint="%s"' % (sel, addr)
            # Counters exist only for endpoints that were used.
            used = ep["totalConnections"] or ep["connectFailures"]
            for field, metric in (
                    ("activeConnections", "kuproxy_endpoint_connections_active"),
                    ("totalConnections", "kuproxy_endpoint_connections_total"),
                    ("connectFailures",
                     "kuproxy_endpoint_connect_failures_total")):
                got = select(samples, "%s{%s}" % (metric, esel))
                if got is None and not used and ep[field] == 0:
                    continue
                same("%s %s %s" % (key, addr, field), got, ep[field])
            trow = row["endpoints"].get(addr)
            if trow is None:
                bad += 1
                print("FAIL: %s endpoint %s is not in the table" % (key, addr))
                continue
            for field, value in trow.items():
                same("%s %s %s in the table" % (key, addr, field), value,
                     ep[field])
    if bad == 0:
        print("ok: %d service ports and %d endpoints agree in metrics, "
              "status --json and the status table" %
              (len(doc.get("servicePorts", [])), n_eps))
    return 1 if bad else 0


def main(argv):
    if len(argv) >= 2 and argv[0] == "check":
        return cmd_check(argv[1], argv[2:])
    if len(argv) == 3 and argv[0] == "get":
        return cmd_get(argv[1], argv[2])
    if len(argv) == 4 and argv[0] == "status-vs-metrics":
        return cmd_status_vs_metrics(argv[1], argv[2], argv[3])
    if len(argv) in (4, 5) and argv[0] == "status-get":
        return cmd_status_get(*argv[1:])
    print(__doc__ or "usage: see the comment at the top of metrics_check.py",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
