#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Check that kuproxy accepts configuration files as they are shipped.

Each CONFIG is given to `kuproxy --config CONFIG`, with a services file of
no services standing in for the API server (--services-file wins over the
file's kubeconfig), no iptables rules and no health, metrics or status
sockets, so nothing outside the process is touched.  A file passes when
kuproxy applies its first (empty) table, logs no warning or error (an
ignored or unknown field would be one), and exits 0 on SIGTERM.

Usage: check_config.py KUPROXY CONFIG...
"""

import os
import signal
import subprocess
import sys
import tempfile
import time

START_TIMEOUT_S = 10
READY_LINE = "service table applied"


def config_accepted(binary, config):
    """(ok, message) for one configuration file."""
    with tempfile.TemporaryDirectory(prefix="kuproxy-conf.") as tmp:
        services = os.path.join(tmp, "services.json")
        log_path = os.path.join(tmp, "kuproxy.log")
        with open(services, "w", encoding="utf-8") as f:
            f.write('{"apiVersion": "v1", "kind": "List", "items": []}\n')
        with open(log_path, "w+", encoding="utf-8") as log:
            proc = subprocess.Popen(
                [binary, "--config", config, "--services-file", services,
                 "--iptables-backend", "none", "--healthz-bind-address", "",
                 "--metrics-bind-address", "", "--status-socket", ""],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            deadline = time.monotonic() + START_TIMEOUT_S
            while proc.poll() is None and time.monotonic() < deadline:
                log.seek(0)
                if READY_LINE in log.read():
                    break
                time.sleep(0.05)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=START_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.seek(0)
            text = log.read()
    problems = []
    if READY_LINE not in text:
        problems.append(f"never applied a table (exit {proc.returncode})")
    elif proc.returncode != 0:
        problems.append(f"exit {proc.returncode} after SIGTERM")
    # klog-style lines: the first letter is the severity.
    bad = [l for l in text.splitlines() if l[:1] in ("W", "E", "F")]
    if bad:
        problems.append("warnings or errors logged")
    if problems:
        return False, f"{config}: {'; '.join(problems)}:\n{text}"
    return True, f"{config}: accepted"


def main(argv):
    if len(argv) < 3:
        print("usage: check_config.py KUPROXY CONFIG...", file=sys.stderr)
        return 2
    failed = False
    for config in argv[2:]:
        ok, msg = config_accepted(argv[1], config)
        print(f"check_config: {msg}")
        failed |= not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
