#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Checks of the Kubernetes manifests in packaging/kubernetes/.

The manifests are parsed (python3-yaml) and checked against kubeadm's
kube-proxy DaemonSet conventions and against kuproxy itself:

- the ClusterRole grants exactly what kuproxy requests: the request paths
  and verbs are read from the C sources (watch/*.c), so adding a request
  there without updating the role fails here;
- the ConfigMap's kubeconfig points at a control-plane endpoint, never at
  the kubernetes Service, with the service account's token file and CA;
- the DaemonSet: host network, system-node-critical, every taint
  tolerated, NODE_NAME from spec.nodeName into --hostname-override, only
  NET_ADMIN and NET_RAW, the xtables lock, /lib/modules read-only, the
  ConfigMap mounted where the config expects it, readiness on /healthz
  and liveness on /livez of the health port, a termination grace period
  of the shutdown grace period plus 5 s, and only flags kuproxy has;
- with --kuproxy BIN, the ConfigMap's config.conf is accepted by kuproxy
  (check_config.py), and the image tag is kuproxy's version.

Usage: check_manifests.py SRCDIR [--kuproxy BIN]
"""

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_config  # noqa: E402

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
HEALTHZ_PORT = 10256


class Problems:
    def __init__(self):
        self.items = []

    def check(self, cond, what):
        if not cond:
            self.items.append(what)
        return cond


def load_objects(srcdir):
    """{kind: [object]} over every YAML document in packaging/kubernetes."""
    objs = {}
    for path in sorted(glob.glob(os.path.join(srcdir, "packaging",
                                              "kubernetes", "*.yaml"))):
        with open(path, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    objs.setdefault(doc["kind"], []).append(doc)
    return objs


def one(objs, kind, problems):
    items = objs.get(kind, [])
    problems.check(len(items) == 1, f"expected one {kind}, found "
                   f"{len(items)}")
    return items[0] if items else {}


def code_requests(srcdir):
    """{(apiGroup, resource): {verbs}} that kuproxy's API client uses.

    Every string literal in watch/*.c that is an API path counts:
    /api/v1/RESOURCE (core group) or /apis/GROUP/VERSION/RESOURCE.  A path
    with a name after the resource would be a get.  Lists are what the
    informers start with; watches are asked for with watch=1.
    """
    paths = set()
    watches = False
    lists = False
    for path in glob.glob(os.path.join(srcdir, "watch", "*.c")):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        paths.update(re.findall(r'"(/apis?/[^"]*)"', text))
        watches |= bool(re.search(r'"watch"\s*,\s*"1"', text))
        lists |= "INFORMER_LIST" in text
    requests = {}
    for p in paths:
        parts = p.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 3:
            group, rest = "", parts[2:]
        elif parts[0] == "apis" and len(parts) >= 4:
            group, rest = parts[1], parts[3:]
        else:
            continue    # discovery (/api, /apis): needs no rule
        if rest[0] == "namespaces" and len(rest) >= 3:
            rest = rest[2:]
        verbs = set()
        if len(rest) > 1:
            verbs.add("get")
        else:
            if lists:
                verbs.add("list")
            if watches:
                verbs.add("watch")
        requests.setdefault((group, rest[0]), set()).update(verbs)
    return requests


def role_grants(role):
    grants = {}
    for rule in role.get("rules", []):
        for group in rule.get("apiGroups", []):
            for res in rule.get("resources", []):
                grants.setdefault((group, res), set()).update(
                    rule.get("verbs", []))
    return grants


def check_rbac(srcdir, objs, problems):
    sa = one(objs, "ServiceAccount", problems)
    role = one(objs, "ClusterRole", problems)
    binding = one(objs, "ClusterRoleBinding", problems)
    want = code_requests(srcdir)
    problems.check(want, "found no API request paths in watch/*.c")
    have = role_grants(role)
    for key in sorted(set(want) | set(have)):
        w, h = sorted(want.get(key, ())), sorted(have.get(key, ()))
        problems.check(w == h, f"ClusterRole: {key[0] or 'core'}/{key[1]}: "
                       f"grants {h}, the code uses {w}")
    ref = binding.get("roleRef", {})
    problems.check(ref.get("kind") == "ClusterRole" and
                   ref.get("name") == role.get("metadata", {}).get("name"),
                   "ClusterRoleBinding does not bind the ClusterRole")
    subj = binding.get("subjects", [])
    sa_meta = sa.get("metadata", {})
    problems.check(any(s.get("kind") == "ServiceAccount" and
                       s.get("name") == sa_meta.get("name") and
                       s.get("namespace") == sa_meta.get("namespace")
                       for s in subj),
                   "ClusterRoleBinding does not name the ServiceAccount")
    return sa_meta


def parse_duration_s(text):
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text):
        total += float(num) * units[unit]
    return total


def check_configmap(cm, problems):
    """The parsed config.conf and kubeconfig.conf (or {})."""
    data = cm.get("data", {})
    conf = yaml.safe_load(data.get("config.conf", "")) or {}
    kc = yaml.safe_load(data.get("kubeconfig.conf", "")) or {}
    problems.check(conf.get("kind") == "KubeProxyConfiguration",
                   "config.conf is not a KubeProxyConfiguration")
    problems.check(conf.get("mode") in (None, "", "userspace"),
                   "config.conf: mode must be userspace")
    clusters = kc.get("clusters", [])
    users = kc.get("users", [])
    if problems.check(len(clusters) == 1 and len(users) == 1,
                      "kubeconfig.conf: expected one cluster and one user"):
        cluster = clusters[0].get("cluster", {})
        server = cluster.get("server", "")
        problems.check(server.startswith("https://"),
                       f"kubeconfig.conf: server {server!r} is not https")
        host = re.sub(r"^https://([^/:]+|\[[^]]+\]).*", r"\1", server)
        # The kubernetes Service is what kuproxy implements: a kubeconfig
        # that goes through it cannot bootstrap the node's proxy.
        problems.check(not host.startswith("kubernetes") and
                       "KUBERNETES_SERVICE" not in server and
                       not re.match(r"10\.96\.0\.1$|10\.0\.0\.1$", host),
                       f"kubeconfig.conf: server {server!r} is the "
                       "kubernetes Service, not the control-plane endpoint")
        problems.check(cluster.get("certificate-authority") ==
                       f"{SA_DIR}/ca.crt",
                       "kubeconfig.conf: certificate-authority is not the "
                       "service account CA")
        problems.check(users[0].get("user", {}).get("tokenFile") ==
                       f"{SA_DIR}/token",
                       "kubeconfig.conf: tokenFile is not the service "
                       "account token")
    return conf


def container_flags(container):
    words = container.get("command", [])[1:] + container.get("args", [])
    return {w.split("=", 1)[0]: (w.split("=", 1) + [""])[1]
            for w in words if w.startswith("--")}


def check_daemonset(ds, sa_meta, cm, conf, help_flags, version, problems):
    spec = ds.get("spec", {}).get("template", {}).get("spec", {})
    c = (spec.get("containers") or [{}])[0]
    problems.check(spec.get("hostNetwork") is True, "hostNetwork is not true")
    problems.check(spec.get("priorityClassName") == "system-node-critical",
                   "priorityClassName is not system-node-critical")
    problems.check(spec.get("serviceAccountName") == sa_meta.get("name"),
                   "serviceAccountName is not the ServiceAccount")
    problems.check(ds.get("metadata", {}).get("namespace") ==
                   sa_meta.get("namespace"),
                   "the DaemonSet and ServiceAccount namespaces differ")
    problems.check(any(t.get("operator") == "Exists" and "key" not in t
                       for t in spec.get("tolerations", [])),
                   "no toleration with operator Exists for every taint")

    env = {e["name"]: e for e in c.get("env", [])}
    problems.check(env.get("NODE_NAME", {}).get("valueFrom", {})
                   .get("fieldRef", {}).get("fieldPath") == "spec.nodeName",
                   "NODE_NAME does not come from spec.nodeName")
    flags = container_flags(c)
    problems.check(flags.get("--hostname-override") == "$(NODE_NAME)",
                   "--hostname-override is not $(NODE_NAME)")
    if help_flags is not None:
        for flag in flags:
            problems.check(flag in help_flags,
                           f"the DaemonSet passes {flag}, which kuproxy "
                           "does not have")
    if version is not None:
        problems.check(c.get("image", "").endswith(f":{version}"),
                       f"image {c.get('image')!r} is not tagged {version}")

    caps = c.get("securityContext", {}).get("capabilities", {})
    problems.check(sorted(caps.get("add", [])) == ["NET_ADMIN", "NET_RAW"],
                   f"capabilities add {caps.get('add')}, expected NET_ADMIN "
                   "and NET_RAW")
    problems.check(caps.get("drop") == ["ALL"], "capabilities do not drop "
                   "ALL")
    problems.check(c.get("securityContext", {}).get("privileged") is not True,
                   "the container is privileged")

    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}

    def volume_at(path):
        m = mounts.get(path)
        return (m, volumes.get(m["name"], {})) if m else (None, {})

    m, v = volume_at("/run/xtables.lock")
    problems.check(v.get("hostPath") == {"path": "/run/xtables.lock",
                                         "type": "FileOrCreate"},
                   "/run/xtables.lock is not a FileOrCreate hostPath mount")
    m, v = volume_at("/lib/modules")
    problems.check(m is not None and m.get("readOnly") is True and
                   v.get("hostPath", {}).get("path") == "/lib/modules",
                   "/lib/modules is not mounted read-only from the host")

    config_path = flags.get("--config", "")
    m, v = volume_at(os.path.dirname(config_path))
    cm_name = cm.get("metadata", {}).get("name")
    if problems.check(v.get("configMap", {}).get("name") == cm_name,
                      f"--config {config_path!r} is not in the ConfigMap "
                      "volume"):
        problems.check(os.path.basename(config_path) in cm.get("data", {}),
                       f"the ConfigMap has no {os.path.basename(config_path)}")
        kc_path = conf.get("clientConnection", {}).get("kubeconfig", "")
        problems.check(os.path.dirname(kc_path) == m["mountPath"] and
                       os.path.basename(kc_path) in cm.get("data", {}),
                       f"clientConnection.kubeconfig {kc_path!r} is not the "
                       "ConfigMap's kubeconfig")
    if c.get("securityContext", {}).get("readOnlyRootFilesystem"):
        sock = conf.get("kuproxy", {}).get("statusSocket",
                                           "/run/kuproxy/status.sock")
        m, v = volume_at(os.path.dirname(sock))
        problems.check(m is not None and not m.get("readOnly"),
                       f"read-only root, but no writable mount for {sock}")

    for kind, path in (("readinessProbe", "/healthz"),
                       ("livenessProbe", "/livez")):
        get = c.get(kind, {}).get("httpGet", {})
        problems.check(get.get("path") == path and
                       get.get("port") == HEALTHZ_PORT,
                       f"{kind} is not httpGet {path} on {HEALTHZ_PORT}")

    grace = conf.get("kuproxy", {}).get("shutdownGracePeriod", "30s")
    problems.check(spec.get("terminationGracePeriodSeconds") ==
                   parse_duration_s(grace) + 5,
                   "terminationGracePeriodSeconds is not the shutdown grace "
                   f"period ({grace}) plus 5 s")


def kuproxy_help_flags(binary):
    out = subprocess.run([binary, "--help"], check=True, capture_output=True,
                         text=True).stdout
    return set(re.findall(r"--[a-z][a-z0-9-]*", out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("srcdir")
    ap.add_argument("--kuproxy")
    opts = ap.parse_args()
    problems = Problems()
    objs = load_objects(opts.srcdir)

    sa_meta = check_rbac(opts.srcdir, objs, problems)
    cm = one(objs, "ConfigMap", problems)
    conf = check_configmap(cm, problems)
    help_flags = version = None
    if opts.kuproxy:
        help_flags = kuproxy_help_flags(opts.kuproxy)
        version = subprocess.run([opts.kuproxy, "--version"], check=True,
                                 capture_output=True, text=True
                                 ).stdout.split()[1]
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write(cm.get("data", {}).get("config.conf", ""))
            f.flush()
            ok, msg = check_config.config_accepted(opts.kuproxy, f.name)
            problems.check(ok, f"ConfigMap config.conf: {msg}")
    check_daemonset(one(objs, "DaemonSet", problems), sa_meta, cm, conf,
                    help_flags, version, problems)

    for p in problems.items:
        print(f"check_manifests: {p}")
    if problems.items:
        return 1
    print("check_manifests: ok (ClusterRole: " + ", ".join(
        f"{g or 'core'}/{r} {'+'.join(sorted(v))}"
        for (g, r), v in sorted(code_requests(opts.srcdir).items())) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
