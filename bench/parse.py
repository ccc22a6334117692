#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
#
# Reading load generators' output for the benchmark suite.
#
# This module owns the formats of iperf3 -J and wrk --latency: it turns one
# output file into "metric value" lines that bench/run records.  A run that
# produced nothing usable prints "error 1", so a contender that failed a
# scenario shows up as such instead of as a zero.
#
#   parse.py iperf3 FILE      gbps, bytes
#   parse.py wrk FILE         req_per_s, requests, errors, p50_us, p99_us
#   parse.py json FILE        every number of a one-line JSON object
import json
import re
import sys

UNITS_US = {"us": 1.0, "ms": 1000.0, "s": 1e6, "m": 60e6}


def iperf3(text):
    doc = json.loads(text)
    if "error" in doc:
        return {"error": 1}
    recv = doc["end"]["sum_received"]
    return {"gbps": recv["bits_per_second"] / 1e9, "bytes": recv["bytes"]}


def wrk_time_us(value):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", value)
    return float(m.group(1)) * UNITS_US[m.group(2)]


def wrk(text):
    out = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not m:
        return {"error": 1}
    out["req_per_s"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", text)
    out["requests"] = int(m.group(1)) if m else 0
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                  r"timeout (\d+)", text)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += int(m.group(1))
    out["errors"] = errors
    for pct, key in (("50", "p50_us"), ("99", "p99_us")):
        m = re.search(r"^\s+%s%%\s+(\S+)" % pct, text, re.M)
        if m:
            out[key] = wrk_time_us(m.group(1))
    return out


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: parse.py iperf3|wrk|json FILE")
    try:
        with open(argv[1]) as f:
            text = f.read()
        if argv[0] == "iperf3":
            res = iperf3(text)
        elif argv[0] == "wrk":
            res = wrk(text)
        else:
            res = {k: v for k, v in json.loads(text).items()
                   if isinstance(v, (int, float))}
    except (OSError, ValueError, KeyError):
        res = {"error": 1}
    for key, value in res.items():
        print(key, value)


if __name__ == "__main__":
    main(sys.argv[1:])
