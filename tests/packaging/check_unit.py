#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Check the installed kuproxy.service against what kuproxy needs.

systemd-analyze verify (run by tests/e2e/packaging.sh) says whether systemd
can load the unit; this says whether it is the unit we mean:

- Type=notify, reload by SIGHUP, Restart=on-failure, no restart after a
  configuration error (exit 2), KillMode=mixed;
- TimeoutStopSec is the configuration's shutdown grace period plus 5 s;
- the capabilities are exactly NET_ADMIN, NET_RAW and NET_BIND_SERVICE,
  both ambient and bounding, for a non-root User;
- the sandbox directives of the packaging notes are all there;
- the xtables lock exists before the sandbox is set up, and is writable;
- RuntimeDirectory holds the status socket the configuration names, and
  ConditionPathExists is the kubeconfig it names;
- ExecStart runs the installed binary with the installed configuration.

Usage: check_unit.py ROOT UNIT CONFIG
  ROOT: the installed tree (an unpacked .deb); UNIT and CONFIG are paths
  as installed, such as /lib/systemd/system/kuproxy.service and
  /etc/kuproxy/config.yaml.
"""

import os
import re
import shlex
import sys

import yaml

CAPS = {"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE"}
REQUIRED = {
    "Type": "notify",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "Restart": "on-failure",
    "RestartPreventExitStatus": "2",
    "KillMode": "mixed",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "LimitNOFILE": "1048576",
    "OOMScoreAdjust": "-999",
    "RuntimeDirectory": "kuproxy",
}


def parse_unit(path):
    """{section: {key: [values]}}; continuation lines joined."""
    sections = {}
    current = None
    with open(path, encoding="utf-8") as f:
        lines = f.read().replace("\\\n", " ").splitlines()
    for line in lines:
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def last(section, key):
    values = section.get(key, [])
    return values[-1] if values else None


def duration_s(text):
    units = {"h": 3600, "min": 60, "m": 60, "s": 1, "ms": 0.001}
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(ms|min|h|m|s)?", text):
        total += float(num) * units[unit or "s"]
    return total


def main(argv):
    if len(argv) != 4:
        print("usage: check_unit.py ROOT UNIT CONFIG", file=sys.stderr)
        return 2
    root, unit_path, config_path = argv[1:]
    unit = parse_unit(os.path.join(root, unit_path.lstrip("/")))
    with open(os.path.join(root, config_path.lstrip("/")),
              encoding="utf-8") as f:
        conf = yaml.safe_load(f)
    svc = unit.get("Service", {})
    problems = []

    for key, want in REQUIRED.items():
        if last(svc, key) != want:
            problems.append(f"{key}={last(svc, key)}, expected {want}")
    for key in ("AmbientCapabilities", "CapabilityBoundingSet"):
        have = set(" ".join(svc.get(key, [])).split())
        if have != CAPS:
            problems.append(f"{key} is {sorted(have)}, expected "
                            f"{sorted(CAPS)}")
    user = last(svc, "User")
    if not user or user == "root":
        problems.append("no dedicated User")
    families = set(" ".join(svc.get("RestrictAddressFamilies", [])).split())
    if families != {"AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"}:
        problems.append(f"RestrictAddressFamilies is {sorted(families)}")

    if "/run/xtables.lock" not in " ".join(svc.get("ReadWritePaths", [])):
        problems.append("/run/xtables.lock is not in ReadWritePaths")
    if "+/usr/bin/touch /run/xtables.lock" not in svc.get("ExecStartPre", []):
        problems.append("no ExecStartPre=+/usr/bin/touch /run/xtables.lock")

    kp = conf.get("kuproxy", {}) or {}
    grace = duration_s(kp.get("shutdownGracePeriod", "30s"))
    stop = last(svc, "TimeoutStopSec")
    if stop is None or duration_s(stop) != grace + 5:
        problems.append(f"TimeoutStopSec={stop}, expected the shutdown "
                        f"grace period ({grace:g}s) + 5s")
    sock = kp.get("statusSocket", "/run/kuproxy/status.sock")
    if os.path.dirname(sock) != "/run/" + (last(svc, "RuntimeDirectory")
                                          or ""):
        problems.append(f"the status socket {sock} is not in "
                        "RuntimeDirectory")
    kubeconfig = (conf.get("clientConnection", {}) or {}).get("kubeconfig")
    cond = last(unit.get("Unit", {}), "ConditionPathExists")
    if cond != kubeconfig:
        problems.append(f"ConditionPathExists={cond}, but {config_path} "
                        f"names the kubeconfig {kubeconfig}")

    argv0, *args = shlex.split(last(svc, "ExecStart") or "-")
    if not os.access(os.path.join(root, argv0.lstrip("/")), os.X_OK):
        problems.append(f"ExecStart runs {argv0}, which is not installed")
    if f"--config={config_path}" not in args:
        problems.append(f"ExecStart does not pass --config={config_path}")

    for p in problems:
        print(f"check_unit: {unit_path}: {p}")
    if problems:
        return 1
    print(f"check_unit: {unit_path}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
