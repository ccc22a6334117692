#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
#
# A small fake Kubernetes API server for kuproxy's tests.  Standard library
# only.  It owns the API side of every test that needs a "cluster": services,
# endpointslices and nodes stored under one etcd-like resourceVersion
# counter, served through the real list/watch protocol (paging with continue
# tokens, resourceVersion semantics, 410 Expired after compaction, chunked
# watch streams, bookmarks, selector transitions, gzip, bearer tokens, TLS).
# It is written against the documented API, not against kuproxy's client:
# see /work/shared/reference/kubernetes-api-watch.md sections 0-7.
#
# A second, plain-HTTP port on 127.0.0.1 is the control interface a test
# uses to change objects, compact history, inject faults and read what the
# client did.  README.md in this directory lists both interfaces.
#
# Usage: fakeapi.py --port 0 --control-port 0 --port-file PATH [options]
#        fakeapi.py --gen-certs DIR [--cert-host NAME ...]

import argparse
import base64
import copy
import datetime
import gzip
import http.server
import ipaddress
import json
import os
import queue
import random
import re
import select
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
import warnings
import zlib

# --------------------------------------------------------------------------
# Resource types

class ResourceType:
    """What the server knows about one resource: paths, kinds, fields."""

    def __init__(self, name, kind, api_version, prefix, namespaced, fields):
        self.name = name
        self.kind = kind
        self.list_kind = kind + "List"
        self.api_version = api_version
        self.prefix = prefix
        self.namespaced = namespaced
        self.fields = fields


RESOURCES = {
    "services": ResourceType(
        "services", "Service", "v1", "/api/v1", True,
        ("metadata.name", "metadata.namespace", "spec.clusterIP",
         "spec.type")),
    "endpointslices": ResourceType(
        "endpointslices", "EndpointSlice", "discovery.k8s.io/v1",
        "/apis/discovery.k8s.io/v1", True,
        ("metadata.name", "metadata.namespace")),
    "nodes": ResourceType(
        "nodes", "Node", "v1", "/api/v1", False,
        ("metadata.name", "spec.unschedulable")),
}
KIND_TO_RESOURCE = {rt.kind: rt.name for rt in RESOURCES.values()}

# Responses larger than this are gzipped when the client accepts gzip
# (kube-apiserver's APIResponseCompression threshold).
GZIP_THRESHOLD = 128 * 1024
# Go's net/http switches to chunked encoding past its 2 KiB buffer.
CHUNKED_THRESHOLD = 2048

REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden",
    404: "NotFound", 405: "MethodNotAllowed", 409: "AlreadyExists",
    410: "Expired", 422: "Invalid", 429: "TooManyRequests",
    500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
}

MSG_LIST_EXPIRED = "The resourceVersion for the provided list is too old."
MSG_CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent "
    "list result. You can start a new list without the continue "
    "parameter, or use the continue token in this response to retrieve "
    "the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, "
    "modified, or deleted between the time the first chunk was returned "
    "and now may show up in the list.")

# Go key order of the types we serve, so output looks like the real thing.
METADATA_ORDER = ("name", "generateName", "namespace", "selfLink", "uid",
                  "resourceVersion", "generation", "creationTimestamp",
                  "deletionTimestamp", "deletionGracePeriodSeconds",
                  "labels", "annotations", "ownerReferences", "finalizers",
                  "managedFields")
SERVICE_SPEC_ORDER = ("ports", "selector", "clusterIP", "clusterIPs",
                      "type", "externalIPs", "sessionAffinity",
                      "loadBalancerIP", "loadBalancerSourceRanges",
                      "externalName", "externalTrafficPolicy",
                      "healthCheckNodePort", "publishNotReadyAddresses",
                      "sessionAffinityConfig", "ipFamilies",
                      "ipFamilyPolicy", "allocateLoadBalancerNodePorts",
                      "loadBalancerClass", "internalTrafficPolicy",
                      "trafficDistribution")
SERVICE_PORT_ORDER = ("name", "protocol", "appProtocol", "port",
                      "targetPort", "nodePort")
SLICE_ORDER = ("kind", "apiVersion", "metadata", "addressType", "endpoints",
               "ports")
SLICE_ENDPOINT_ORDER = ("addresses", "conditions", "hostname", "targetRef",
                        "nodeName", "zone", "hints", "deprecatedTopology")
SLICE_PORT_ORDER = ("name", "protocol", "port", "appProtocol")
TOP_ORDER = ("kind", "apiVersion", "metadata", "spec", "status")


def ordered(d, order):
    """Copy of dict d with the keys in order first, the others after."""
    out = {k: d[k] for k in order if k in d}
    for k, v in d.items():
        if k not in out:
            out[k] = v
    return out


def go_json(obj):
    """JSON as Go's encoding/json writes it: compact, UTF-8, HTML-escaped."""
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    # <, > and & can only occur inside strings in JSON text.
    s = (s.replace("<", "\\u003c").replace(">", "\\u003e")
         .replace("&", "\\u0026").replace("\u2028", "\\u2028")
         .replace("\u2029", "\\u2029"))
    return s


def now_timestamp():
    return datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def status_object(code, message, reason=None, details=None, metadata=None):
    """A metav1.Status failure, keys in Go order."""
    st = {"kind": "Status", "apiVersion": "v1",
          "metadata": metadata if metadata is not None else {},
          "status": "Failure", "message": message,
          "reason": reason if reason is not None else REASONS.get(code, "")}
    if details is not None:
        st["details"] = details
    st["code"] = code
    return st


def status_for_code(code, message=None):
    """The Status the real server sends for a given code (fault injection)."""
    if code == 500:
        m = message or "injected fault"
        return status_object(500, "Internal error occurred: " + m,
                             details={"causes": [{"message": m}]})
    if code == 429:
        return status_object(
            429, message or "Too many requests, please try again later.",
            details={"retryAfterSeconds": 1})
    if code == 410:
        return status_object(410, message or MSG_LIST_EXPIRED)
    if code == 503:
        return status_object(503, message or "service unavailable")
    if code == 504:
        return status_object(
            504, message or "Timeout: request did not complete within "
            "requested timeout - context deadline exceeded",
            details={})
    if code == 403:
        return status_object(403, message or "forbidden", details={})
    return status_object(code, message or "injected fault %d" % code)


def invalid_options(field, detail, cause="FieldValueForbidden"):
    """422 for bad ListOptions, as the apiserver's validation says it."""
    msg = "%s: %s" % (field, detail)
    return status_object(
        422, 'ListOptions.meta.k8s.io "" is invalid: ' + msg,
        details={"group": "meta.k8s.io", "kind": "ListOptions",
                 "causes": [{"reason": cause, "message": detail,
                             "field": field}]})


class ApiError(Exception):
    """An error that becomes a Status response."""

    def __init__(self, status, headers=None):
        super().__init__(status["message"])
        self.status = status
        self.headers = headers or {}


def bad_request(message):
    return ApiError(status_object(400, message))


def parse_go_bool(value, name):
    """Go strconv.ParseBool; anything else is a 400."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise bad_request('strconv.ParseBool: parsing "%s": invalid syntax '
                      '(%s)' % (value, name))


def parse_rv(value):
    """A resourceVersion given by a client: a decimal string."""
    if not re.fullmatch(r"[0-9]+", value or ""):
        raise bad_request("invalid resource version: %s" % value)
    return int(value)


# --------------------------------------------------------------------------
# Label and field selectors (k8s.io/apimachinery/pkg/labels, fields)

class SelectorError(ValueError):
    pass


_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS_SUBDOMAIN = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_OPERATORS = ("!=", "==", "=", "!", "(", ")", ",", "<", ">")


def _lex_labels(s):
    """Tokens of a label selector: operators, 'in', 'notin', identifiers."""
    tokens = []
    i = 0
    while i < len(s):
        c = s[i]
        if c.isspace():
            i += 1
            continue
        for op in _OPERATORS:
            if s.startswith(op, i):
                tokens.append(("op", op))
                i += len(op)
                break
        else:
            j = i
            while j < len(s) and not s[j].isspace() and s[j] not in "!=(),<>":
                j += 1
            word = s[i:j]
            if word in ("in", "notin"):
                tokens.append(("op", word))
            else:
                tokens.append(("id", word))
            i = j
    return tokens


def _check_label_key(key):
    if "/" in key:
        prefix, name = key.split("/", 1)
        if (not prefix or len(prefix) > 253
                or not _DNS_SUBDOMAIN.fullmatch(prefix)):
            raise SelectorError("invalid label key %r: prefix part must be "
                                "a DNS subdomain" % key)
    else:
        name = key
    if not name or len(name) > 63 or not _LABEL_NAME.fullmatch(name):
        raise SelectorError("invalid label key %r: name part must consist "
                            "of alphanumeric characters, '-', '_' or '.', "
                            "and must start and end with an alphanumeric "
                            "character" % key)


def _check_label_value(value):
    if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
        raise SelectorError("invalid label value: %r: a valid label must be "
                            "an empty string or consist of alphanumeric "
                            "characters, '-', '_' or '.'" % value)


def parse_label_selector(s):
    """List of (key, op, values) requirements, ANDed.  Raises SelectorError."""
    tokens = _lex_labels(s or "")
    reqs = []
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else ("end", "")

    while pos < len(tokens):
        tok = peek()
        pos += 1
        if tok == ("op", "!"):
            key = peek()
            pos += 1
            if key[0] != "id":
                raise SelectorError("found '%s', expected: identifier after "
                                    "'!'" % key[1])
            _check_label_key(key[1])
            reqs.append((key[1], "!", ()))
        elif tok[0] == "id":
            key = tok[1]
            _check_label_key(key)
            nxt = peek()
            if nxt[0] == "end" or nxt == ("op", ","):
                reqs.append((key, "exists", ()))
            elif nxt[1] in ("in", "notin"):
                pos += 1
                if peek() != ("op", "("):
                    raise SelectorError("found '%s', expected: '('"
                                        % peek()[1])
                pos += 1
                values = []
                while True:
                    t = peek()
                    if t[0] == "id":
                        values.append(t[1])
                        pos += 1
                        t = peek()
                    elif t in (("op", ","), ("op", ")")):
                        values.append("")
                    else:
                        raise SelectorError("found '%s', expected: ',', ')' "
                                            "or identifier" % t[1])
                    pos += 1
                    if t == ("op", ")"):
                        break
                    if t != ("op", ","):
                        raise SelectorError("found '%s', expected: ',' or "
                                            "')'" % t[1])
                if values == [""]:
                    raise SelectorError("for 'in', 'notin' operators, values "
                                        "set can't be empty")
                for v in values:
                    _check_label_value(v)
                reqs.append((key, nxt[1], tuple(values)))
            elif nxt[1] in ("=", "==", "!=", "<", ">"):
                pos += 1
                t = peek()
                if t[0] == "id":
                    value = t[1]
                    pos += 1
                elif t[0] == "end" or t == ("op", ","):
                    value = ""
                else:
                    raise SelectorError("found '%s', expected: identifier"
                                        % t[1])
                if nxt[1] in ("<", ">"):
                    if not re.fullmatch(r"-?[0-9]+", value):
                        raise SelectorError("for 'Gt', 'Lt' operators, the "
                                            "value must be an integer")
                else:
                    _check_label_value(value)
                op = "=" if nxt[1] == "==" else nxt[1]
                reqs.append((key, op, (value,)))
            else:
                raise SelectorError("found '%s', expected: in, notin, =, ==, "
                                    "!=, gt, lt" % nxt[1])
        else:
            raise SelectorError("found '%s', expected: !, identifier, or "
                                "'end of string'" % tok[1])
        t = peek()
        if t[0] == "end":
            break
        if t != ("op", ","):
            raise SelectorError("found '%s', expected: ',' or 'end of "
                                "string'" % t[1])
        pos += 1
        if peek()[0] == "end":
            raise SelectorError("found '', expected: !, identifier, or 'end "
                                "of string'")
    return reqs


def label_requirement_matches(req, labels):
    key, op, values = req
    present = key in labels
    if op == "exists":
        return present
    if op == "!":
        return not present
    if op in ("=", "in"):
        return present and labels[key] in values
    if op in ("!=", "notin"):
        return not present or labels[key] not in values
    if op in ("<", ">"):
        if not present:
            return False
        try:
            have = int(labels[key])
        except ValueError:
            return False
        want = int(values[0])
        return have < want if op == "<" else have > want
    return False


def _split_unescaped(s, sep):
    parts = []
    cur = []
    i = 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            cur.append(s[i:i + 2])
            i += 2
            continue
        if s[i] == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(s[i])
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape_field_value(v):
    return re.sub(r"\\(.)", r"\1", v)


def parse_field_selector(s, rtype):
    """List of (field, op, value); op is '=' or '!='.  Raises ApiError."""
    reqs = []
    if not s:
        return reqs
    for term in _split_unescaped(s, ","):
        if term == "":
            continue
        found = None
        for i in range(len(term)):
            for op in ("!=", "==", "="):
                if term.startswith(op, i):
                    found = (i, op)
                    break
            if found:
                break
        if not found:
            raise bad_request("invalid selector: '%s'; can't understand "
                              "'%s'" % (s, term))
        i, op = found
        field = term[:i]
        value = _unescape_field_value(term[i + len(op):])
        if field not in rtype.fields:
            raise bad_request("field label not supported: %s" % field)
        reqs.append((field, "!=" if op == "!=" else "=", value))
    return reqs


def field_value(obj, field):
    md = obj.get("metadata", {})
    if field == "metadata.name":
        return md.get("name", "")
    if field == "metadata.namespace":
        return md.get("namespace", "")
    spec = obj.get("spec") or {}
    if field == "spec.clusterIP":
        return spec.get("clusterIP", "")
    if field == "spec.type":
        return spec.get("type", "")
    if field == "spec.unschedulable":
        return "true" if spec.get("unschedulable") else "false"
    return ""


class Selector:
    """Label + field selector of one request."""

    def __init__(self, rtype, label_selector, field_selector):
        try:
            self.labels = parse_label_selector(label_selector)
        except SelectorError as e:
            raise bad_request("unable to parse requirement: %s" % e)
        self.fields = parse_field_selector(field_selector, rtype)

    @property
    def empty(self):
        return not self.labels and not self.fields

    def matches(self, obj):
        labels = obj.get("metadata", {}).get("labels") or {}
        for req in self.labels:
            if not label_requirement_matches(req, labels):
                return False
        for field, op, value in self.fields:
            have = field_value(obj, field)
            if (have == value) != (op == "="):
                return False
        return True


# --------------------------------------------------------------------------
# Object defaulting: what the apiserver fills in on create and update

def _fields_v1(value, depth=0):
    """A managedFields fieldsV1 tree shaped like the real one."""
    if isinstance(value, dict):
        out = {".": {}} if depth > 0 else {}
        for k, v in value.items():
            out["f:" + k] = _fields_v1(v, depth + 1)
        return out
    if isinstance(value, list) and value and all(
            isinstance(x, dict) and "port" in x for x in value):
        out = {".": {}}
        for x in value:
            key = {"port": x["port"], "protocol": x.get("protocol", "TCP")}
            out["k:" + go_json(key)] = _fields_v1(x, 1)
        return out
    return {}


def managed_fields(obj, manager, ts):
    tree = {}
    md = obj.get("metadata", {})
    mdtree = {}
    for k in ("labels", "annotations"):
        if md.get(k):
            mdtree["f:" + k] = _fields_v1(md[k], 1)
    if mdtree:
        tree["f:metadata"] = mdtree
    for k, v in obj.items():
        if k in ("kind", "apiVersion", "metadata", "status"):
            continue
        tree["f:" + k] = _fields_v1(v, 1)
    return [{"manager": manager, "operation": "Update",
             "apiVersion": obj.get("apiVersion", "v1"), "time": ts,
             "fieldsType": "FieldsV1", "fieldsV1": tree}]


class Allocator:
    """ClusterIPs from 10.96.0.0/12 and NodePorts from 30000-32767."""

    def __init__(self):
        self.net = ipaddress.ip_network("10.96.0.0/12")
        self.next_ip = int(ipaddress.ip_address("10.96.100.1"))
        self.next_port = 30080

    def cluster_ip(self, used):
        last = int(self.net.broadcast_address)
        for _ in range(self.net.num_addresses):
            ip = str(ipaddress.ip_address(self.next_ip))
            self.next_ip += 1
            if self.next_ip >= last:
                self.next_ip = int(self.net.network_address) + 2
            if ip not in used:
                return ip
        raise ApiError(status_object(500, "Internal error occurred: range is "
                                     "full"))

    def node_port(self, used):
        for _ in range(2768):
            p = self.next_port
            self.next_port = 30000 if p >= 32767 else p + 1
            if p not in used:
                return p
        raise ApiError(status_object(500, "Internal error occurred: range is "
                                     "full"))


def _invalid_object(kind, name, field, detail):
    msg = '%s "%s" is invalid: %s: %s' % (kind, name, field, detail)
    cause = {"reason": "FieldValueInvalid", "message": detail, "field": field}
    return ApiError(status_object(
        422, msg, details={"name": name, "kind": kind.lower() + "s",
                           "causes": [cause]}))


def default_service(obj, existing, others, alloc):
    """SetDefaults_Service plus the allocations of the service registry."""
    name = obj["metadata"]["name"]
    spec = obj.setdefault("spec", {})
    old = (existing or {}).get("spec", {})
    stype = spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["sessionAffinity"] == "ClientIP":
        cfg = spec.setdefault("sessionAffinityConfig", {})
        cip = cfg.setdefault("clientIP", {})
        cip.setdefault("timeoutSeconds", 10800)
    ports = spec.get("ports") or []
    for p in ports:
        p.setdefault("protocol", "TCP")
        p.setdefault("targetPort", p.get("port"))
    if ports:
        spec["ports"] = [ordered(p, SERVICE_PORT_ORDER) for p in ports]
    if stype == "ExternalName":
        for k in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy",
                  "internalTrafficPolicy"):
            if spec.get(k) in (None, "", []):
                spec.pop(k, None)
    else:
        used_ips = set()
        used_ports = set()
        for o in others:
            osp = o.get("spec", {})
            if (o["metadata"].get("namespace"), o["metadata"]["name"]) == (
                    obj["metadata"].get("namespace"), name):
                continue
            used_ips.update(osp.get("clusterIPs") or [osp.get("clusterIP")])
            used_ports.update(p.get("nodePort") for p in osp.get("ports", [])
                              if p.get("nodePort"))
        if not spec.get("clusterIP"):
            spec["clusterIP"] = (old.get("clusterIP")
                                 or alloc.cluster_ip(used_ips))
        cip = spec["clusterIP"]
        if cip != "None":
            try:
                ipaddress.ip_address(cip)
            except ValueError:
                raise _invalid_object("Service", name, "spec.clusterIP",
                                      "Invalid value: \"%s\": must be a "
                                      "valid IP address" % cip)
            if cip in used_ips:
                raise _invalid_object("Service", name, "spec.clusterIPs",
                                      "Invalid value: []string{\"%s\"}: "
                                      "failed to allocate IP %s: provided IP "
                                      "is already allocated" % (cip, cip))
        spec.setdefault("clusterIPs", [cip])
        if "ipFamilies" not in spec:
            spec["ipFamilies"] = ["IPv6" if ":" in cip else "IPv4"]
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        if stype in ("NodePort", "LoadBalancer"):
            old_np = {(p.get("port"), p.get("protocol")): p.get("nodePort")
                      for p in old.get("ports", [])}
            alloc_np = stype == "NodePort" or spec.get(
                "allocateLoadBalancerNodePorts", True)
            for p in spec.get("ports", []):
                if not p.get("nodePort") and alloc_np:
                    p["nodePort"] = (old_np.get((p["port"], p["protocol"]))
                                     or alloc.node_port(used_ports))
                    used_ports.add(p["nodePort"])
            spec["ports"] = [ordered(p, SERVICE_PORT_ORDER)
                             for p in spec.get("ports", [])]
            spec.setdefault("externalTrafficPolicy", "Cluster")
        elif spec.get("externalIPs"):
            spec.setdefault("externalTrafficPolicy", "Cluster")
        if stype == "LoadBalancer":
            spec.setdefault("allocateLoadBalancerNodePorts", True)
    obj["spec"] = ordered(spec, SERVICE_SPEC_ORDER)
    # Status normally changes only through /status; the control interface
    # writes it directly (standing in for a load-balancer controller).
    st = obj.get("status") or {}
    st.setdefault("loadBalancer", {})
    for ing in st["loadBalancer"].get("ingress") or []:
        if ing.get("ip"):
            ing.setdefault("ipMode", "VIP")
    obj["status"] = st


def default_endpointslice(obj, existing):
    """SetDefaults for discovery/v1 plus generation bookkeeping."""
    obj.setdefault("addressType", "IPv4")
    eps = obj.get("endpoints") or None
    if eps is not None:
        out = []
        for ep in eps:
            ep.setdefault("conditions", {})
            out.append(ordered(ep, SLICE_ENDPOINT_ORDER))
        eps = out
    obj["endpoints"] = eps
    ports = obj.get("ports") or None
    if ports is not None:
        out = []
        for p in ports:
            p.setdefault("name", "")
            p.setdefault("protocol", "TCP")
            out.append(ordered(p, SLICE_PORT_ORDER))
        ports = out
    obj["ports"] = ports
    md = obj["metadata"]
    if existing is None:
        md["generation"] = 1
    else:
        old_body = {k: v for k, v in existing.items() if k != "metadata"}
        new_body = {k: v for k, v in obj.items() if k != "metadata"}
        gen = existing["metadata"].get("generation", 1)
        md["generation"] = gen + 1 if old_body != new_body else gen


# --------------------------------------------------------------------------
# The store: one resourceVersion counter, per-resource history

class Event:
    __slots__ = ("rv", "type", "key", "obj", "prev")

    def __init__(self, rv, etype, key, obj, prev):
        self.rv = rv
        self.type = etype
        self.key = key
        self.obj = obj
        self.prev = prev


class TooOld(Exception):
    pass


def same_content(a, b):
    """a and b differ only in resourceVersion and managedFields."""
    def strip(o):
        o = dict(o)
        o["metadata"] = {k: v for k, v in o["metadata"].items()
                         if k not in ("resourceVersion", "managedFields")}
        return o
    return strip(a) == strip(b)


def object_key(rtype, obj):
    md = obj["metadata"]
    if rtype.namespaced:
        return "%s/%s" % (md["namespace"], md["name"])
    return md["name"]


class Store:
    """Objects, the etcd-like revision counter and the event history.

    history[resource] holds every event after the compaction point; base
    [resource] is the state at that point, so the state at any retained
    revision can be rebuilt (paged lists serve such snapshots)."""

    def __init__(self, initial_rv, managed=True):
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.rv = initial_rv
        self.compacted = initial_rv
        self.objects = {r: {} for r in RESOURCES}
        self.base = {r: {} for r in RESOURCES}
        self.history = {r: [] for r in RESOURCES}
        self.watchers = set()
        self.alloc = Allocator()
        self.managed = managed

    # -- reading

    def state_at(self, resource, rv):
        """Objects of resource at revision rv (>= compacted)."""
        with self.lock:
            if rv >= self.rv:
                return dict(self.objects[resource])
            if rv < self.compacted:
                raise TooOld()
            state = dict(self.base[resource])
            for ev in self.history[resource]:
                if ev.rv > rv:
                    break
                if ev.type == "DELETED":
                    state.pop(ev.key, None)
                else:
                    state[ev.key] = ev.obj
            return state

    def wait_for_rv(self, rv, timeout):
        """True once the store reached rv; False after timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.rv < rv:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True

    # -- writing

    def _bump(self):
        self.rv += 1
        self.cond.notify_all()
        return self.rv

    def _record(self, resource, etype, key, obj, prev):
        ev = Event(self.rv, etype, key, obj, prev)
        self.history[resource].append(ev)
        for w in list(self.watchers):
            if w.resource == resource:
                w.queue.put(("event", ev))
        return ev

    def _prepare(self, resource, obj, existing, namespace):
        """Canonical stored form of obj: metadata, defaults, key order."""
        rtype = RESOURCES[resource]
        obj = copy.deepcopy(obj)
        obj["kind"] = rtype.kind
        obj["apiVersion"] = rtype.api_version
        md = obj.setdefault("metadata", {})
        if not md.get("name"):
            if existing is None and md.get("generateName"):
                md["name"] = md["generateName"] + "".join(
                    random.choice("bcdfghjklmnpqrstvwxz2456789")
                    for _ in range(5))
            else:
                raise ApiError(status_object(
                    422, "%s \"\" is invalid: metadata.name: Required value: "
                    "name or generateName is required" % rtype.kind))
        if rtype.namespaced:
            md["namespace"] = md.get("namespace") or namespace or "default"
        else:
            md.pop("namespace", None)
        ts = now_timestamp()
        if existing is not None:
            md["uid"] = existing["metadata"]["uid"]
            md["creationTimestamp"] = existing["metadata"][
                "creationTimestamp"]
        else:
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = ts
        for k in ("selfLink", "managedFields"):
            md.pop(k, None)
        # Set by put() once the revision is known; here for the key order.
        md["resourceVersion"] = ""
        if resource == "services":
            md.pop("generation", None)
            others = self.objects["services"].values()
            default_service(obj, existing, others, self.alloc)
        elif resource == "endpointslices":
            default_endpointslice(obj, existing)
            obj = ordered(obj, SLICE_ORDER)
        else:
            obj.setdefault("spec", {})
            obj.setdefault("status", {})
        if self.managed:
            manager = {"services": "kubectl-create",
                       "endpointslices": "endpointslice-controller",
                       "nodes": "kubelet"}[resource]
            md["managedFields"] = managed_fields(obj, manager, ts)
        obj["metadata"] = ordered(md, METADATA_ORDER)
        if resource != "endpointslices":
            obj = ordered(obj, TOP_ORDER)
        return obj

    def put(self, resource, obj, namespace=None, mode="upsert"):
        """Create (mode create), update (update) or either (upsert)."""
        rtype = RESOURCES[resource]
        with self.lock:
            md = obj.get("metadata") or {}
            key = None
            existing = None
            if md.get("name"):
                probe = {"metadata": {
                    "name": md["name"],
                    "namespace": md.get("namespace") or namespace
                    or "default"}}
                key = object_key(rtype, probe)
                existing = self.objects[resource].get(key)
            if existing is not None and mode == "create":
                raise ApiError(status_object(
                    409, '%s "%s" already exists' % (resource, md["name"]),
                    details={"name": md["name"], "kind": resource}))
            if existing is None and mode == "update":
                raise ApiError(status_object(
                    404, '%s "%s" not found' % (resource, md.get("name")),
                    details={"name": md.get("name"), "kind": resource}))
            new = self._prepare(resource, obj, existing, namespace)
            key = object_key(rtype, new)
            if existing is not None and same_content(existing, new):
                # etcd is not written for a no-op update: no new RV, no
                # event.
                return existing
            rv = self._bump()
            new["metadata"]["resourceVersion"] = str(rv)
            self.objects[resource][key] = new
            self._record(resource, "MODIFIED" if existing else "ADDED", key,
                         new, existing)
            return new

    def delete(self, resource, namespace, name):
        rtype = RESOURCES[resource]
        with self.lock:
            key = ("%s/%s" % (namespace or "default", name)
                   if rtype.namespaced else name)
            old = self.objects[resource].pop(key, None)
            if old is None:
                raise ApiError(status_object(
                    404, '%s "%s" not found' % (resource, name),
                    details={"name": name, "kind": resource}))
            rv = self._bump()
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = str(rv)
            self._record(resource, "DELETED", key, gone, old)
            return gone

    def bump(self, n):
        """Advance the counter as writes to other resources would."""
        with self.lock:
            for _ in range(n):
                self._bump()
            return self.rv

    def compact(self, rv=None):
        """Forget history up to rv (default: now); older RVs become 410."""
        with self.lock:
            rv = self.rv if rv is None else min(rv, self.rv)
            if rv <= self.compacted:
                return self.compacted
            for r in RESOURCES:
                self.base[r] = self.state_at(r, rv)
                self.history[r] = [e for e in self.history[r] if e.rv > rv]
            self.compacted = rv
            return rv

    # -- watching

    def subscribe(self, watcher, start, send_initial):
        """Register watcher; return the events it must send first.

        start is None for ""/"0" (state, then changes) or an int RV
        (changes after it).  Raises TooOld for a compacted RV."""
        with self.lock:
            resource = watcher.resource
            if start is None:
                snapshot = self.rv
                if send_initial is False:
                    initial = []
                else:
                    initial = [Event(snapshot, "ADDED", k, o, None)
                               for k, o in sorted(
                                   self.objects[resource].items())]
                watcher.start_rv = snapshot
            else:
                if start < self.compacted:
                    raise TooOld()
                if send_initial:
                    initial = [Event(self.rv, "ADDED", k, o, None)
                               for k, o in sorted(
                                   self.objects[resource].items())]
                    watcher.start_rv = max(self.rv, start)
                else:
                    initial = [e for e in self.history[resource]
                               if e.rv > start]
                    watcher.start_rv = start
            self.watchers.add(watcher)
            return initial

    def unsubscribe(self, watcher):
        with self.lock:
            self.watchers.discard(watcher)


# --------------------------------------------------------------------------
# Shared server state: settings, faults, statistics

class Fault:
    """One injected fault, matched against requests."""

    TYPES = ("http_error", "stall", "watch_error", "watch_garbage",
             "watch_drop", "list_raw")

    def __init__(self, spec):
        self.spec = spec
        self.type = spec.get("type", "http_error")
        if self.type not in self.TYPES:
            raise ValueError("unknown fault type %r" % self.type)
        self.count = spec.get("count")
        self.until = (time.monotonic() + float(spec["seconds"])
                      if "seconds" in spec and self.type != "stall"
                      else None)
        if self.count is None and self.until is None:
            self.count = 1
        self.resource = spec.get("resource")
        self.verb = spec.get("verb", "any")
        if self.type.startswith("watch_"):
            self.verb = "watch"
        elif self.type == "list_raw":
            self.verb = "list"

    def live(self):
        if self.count is not None and self.count <= 0:
            return False
        if self.until is not None and time.monotonic() >= self.until:
            return False
        return True

    def matches(self, resource, verb):
        if not self.live():
            return False
        if self.resource and self.resource != resource:
            return False
        if self.verb != "any" and self.verb != verb:
            return False
        return True

    def take(self):
        if self.count is not None:
            self.count -= 1

    def describe(self):
        d = dict(self.spec)
        d["remaining"] = self.count
        if self.until is not None:
            d["seconds_left"] = max(0.0, self.until - time.monotonic())
        return d


class State:
    """Everything both servers share."""

    def __init__(self, args):
        self.store = Store(args.initial_rv, not args.no_managed_fields)
        self.lock = threading.Lock()
        self.token_file = args.token_file
        self.bookmark_interval = args.bookmark_interval
        self.too_large_wait = args.too_large_wait
        self.chunking = {"mode": args.chunk_mode, "max": args.chunk_max,
                         "delay_ms": 0}
        self.rng = random.Random(args.seed)
        self.faults = []
        self.requests = []
        self.open_watches = {}
        self.tokens_seen = []
        self.connections = []
        self.verbose = args.verbose
        self.started = time.monotonic()

    def accepted_tokens(self):
        """Tokens in the token file, re-read on every request."""
        try:
            with open(self.token_file) as f:
                return {t.strip() for t in f if t.strip()}
        except OSError:
            return set()

    def take_fault(self, resource, verb):
        with self.lock:
            for f in self.faults:
                if f.matches(resource, verb):
                    f.take()
                    return f
        return None

    def log_request(self, entry):
        with self.lock:
            entry["index"] = len(self.requests)
            self.requests.append(entry)
            tok = entry.get("token")
            if tok is not None and tok not in self.tokens_seen:
                self.tokens_seen.append(tok)

    def log_connection(self, tls, error):
        """An API connection was accepted: its TLS version (None for plain
        HTTP or a failed handshake) and the handshake's error, if any."""
        with self.lock:
            self.connections.append({
                "index": len(self.connections),
                "mono": time.monotonic() - self.started,
                "tls": tls, "error": error})

    def watch_opened(self, resource, delta):
        with self.lock:
            self.open_watches[resource] = (
                self.open_watches.get(resource, 0) + delta)

    def stats(self, resource=None, verb=None):
        with self.lock:
            reqs = [r for r in self.requests
                    if (resource is None or r.get("resource") == resource)
                    and (verb is None or r.get("verb") == verb)]
            counts = {}
            for r in self.requests:
                if r.get("resource"):
                    c = counts.setdefault(r["resource"],
                                          {"list": 0, "watch": 0, "get": 0})
                    if r.get("verb") in c:
                        c[r["verb"]] += 1
            return {"rv": str(self.store.rv),
                    "compacted": str(self.store.compacted),
                    "counts": counts,
                    "open_watches": dict(self.open_watches),
                    "tokens_seen": list(self.tokens_seen),
                    "connections": copy.deepcopy(self.connections),
                    "requests": copy.deepcopy(reqs)}


# --------------------------------------------------------------------------
# Continue tokens (etcd3 store format: base64url JSON, no padding)

def encode_continue(rv, start_key):
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv,
                      "start": start_key + "\x00"}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_continue(token):
    try:
        pad = "=" * (-len(token) % 4)
        d = json.loads(base64.urlsafe_b64decode(token + pad))
        if d.get("v") != "meta.k8s.io/v1":
            raise ValueError("wrong version")
        return int(d["rv"]), str(d["start"])
    except (ValueError, KeyError, TypeError) as e:
        raise bad_request("continue key is not valid: %s" % e)


# --------------------------------------------------------------------------
# The API server

BOOKMARK_BODIES = {
    "services": {"spec": {}, "status": {"loadBalancer": {}}},
    "endpointslices": {"addressType": "", "endpoints": None, "ports": None},
    "nodes": {"spec": {}, "status": {
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "",
                     "kernelVersion": "", "osImage": "",
                     "containerRuntimeVersion": "", "kubeletVersion": "",
                     "kubeProxyVersion": "", "operatingSystem": "",
                     "architecture": ""}}},
}


def bookmark_object(resource, rv, initial_end=False):
    """The zero-valued object of the kind that a BOOKMARK carries."""
    rtype = RESOURCES[resource]
    md = {"resourceVersion": str(rv), "creationTimestamp": None}
    if initial_end:
        md["annotations"] = {"k8s.io/initial-events-end": "true"}
    obj = {"kind": rtype.kind, "apiVersion": rtype.api_version,
           "metadata": md}
    obj.update(copy.deepcopy(BOOKMARK_BODIES[resource]))
    return obj


def list_item(obj):
    """An item of a list: the object without kind and apiVersion."""
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}


def with_rv(obj, rv):
    obj = copy.deepcopy(obj)
    obj["metadata"]["resourceVersion"] = str(rv)
    return obj


_PATH_RE = re.compile(
    r"^(?P<prefix>/api/v1|/apis/discovery\.k8s\.io/v1)"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<res>[a-z]+)(?:/(?P<name>[^/]+))?/?$")


class WatchClosed(Exception):
    """The watch ends (timeout, error event, drop); how is in .how."""

    def __init__(self, how):
        super().__init__(how)
        self.how = how


class Watcher:
    def __init__(self, resource):
        self.resource = resource
        self.queue = queue.SimpleQueue()
        self.start_rv = 0


class ApiHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections are closed after this many seconds.
    timeout = 120

    # -- plumbing

    def setup(self):
        srv = self.server
        ctx = srv.ssl_context
        if ctx is not None:
            self.request.settimeout(10)
            self.request = ctx.wrap_socket(self.request, server_side=True,
                                           do_handshake_on_connect=False)
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError) as e:
                srv.state.log_connection(None, str(e))
                self.linger(self.request)
                raise
            srv.state.log_connection(self.request.version(), None)
        else:
            srv.state.log_connection(None, None)
        srv.track(self, True)
        super().setup()

    def finish(self):
        self.server.track(self, False)
        super().finish()

    @staticmethod
    def linger(sock):
        """Close after a failed handshake as nginx's lingering close does:
        FIN first, then read what the client still sends (for up to 1 s),
        so that the client reads our alert instead of a reset.  With TLS
        1.3 a client learns that its certificate was missing only after it
        sent its request."""
        try:
            socket.socket.shutdown(sock, socket.SHUT_WR)
            sock.settimeout(1)
            deadline = time.monotonic() + 1
            while (time.monotonic() < deadline
                   and socket.socket.recv(sock, 4096)):
                pass
        except OSError:
            pass
        sock.close()

    def log_message(self, fmt, *args):
        if self.server.state.verbose:
            sys.stderr.write("fakeapi: %s %s\n" % (self.address_string(),
                                                   fmt % args))

    def send_head(self, code, headers):
        """Status line and headers the way kube-apiserver sends them."""
        self.send_response_only(code)
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Date", self.date_time_string())
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.flush()

    def accepts_gzip(self):
        enc = self.headers.get("Accept-Encoding", "")
        return any(p.split(";")[0].strip() == "gzip" for p in enc.split(","))

    def send_json(self, code, obj, extra=()):
        body = (go_json(obj) + "\n").encode()
        headers = [("Content-Type", "application/json")] + list(extra)
        if len(body) > GZIP_THRESHOLD and self.accepts_gzip():
            body = gzip.compress(body, compresslevel=1)
            headers += [("Content-Encoding", "gzip"),
                        ("Vary", "Accept-Encoding")]
        if len(body) > CHUNKED_THRESHOLD:
            headers.append(("Transfer-Encoding", "chunked"))
            self.send_head(code, headers)
            for i in range(0, len(body), 4096):
                self.write_chunk(body[i:i + 4096])
            self.end_chunks()
        else:
            headers.append(("Content-Length", str(len(body))))
            self.send_head(code, headers)
            self.wfile.write(body)
            self.wfile.flush()
        self.entry["code"] = code

    def send_status(self, st, extra=()):
        self.send_json(st["code"], st, extra)

    def write_chunk(self, data):
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def abort_connection(self, reset=False):
        """Close the TCP connection at once (FIN, or RST if reset)."""
        self.close_connection = True
        try:
            if reset:
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", 1, 0))
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.connection.close()
        except OSError:
            pass

    def client_gone(self):
        """True if the client closed its end of an idle watch."""
        conn = self.connection
        try:
            readable = select.select([conn], [], [], 0)[0]
        except (OSError, ValueError):
            return True
        if not readable:
            return False
        if isinstance(conn, ssl.SSLSocket):
            conn.settimeout(0.05)
            try:
                return conn.recv(1) == b""
            except (ssl.SSLWantReadError, socket.timeout):
                return False
            except (OSError, ssl.SSLError):
                return True
            finally:
                conn.settimeout(self.timeout)
        try:
            return conn.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    # -- request entry

    def do_GET(self):
        st = self.server.state
        url = urllib.parse.urlsplit(self.path)
        raw_params = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        params = {k: v[0] for k, v in raw_params.items()}
        auth = self.headers.get("Authorization")
        token = None
        if auth is not None:
            token = auth[7:] if auth.startswith("Bearer ") else auth
        self.entry = {"time": time.time(),
                      "mono": time.monotonic() - st.started,
                      "method": self.command, "path": url.path,
                      "query": url.query, "params": params,
                      "resource": None, "namespace": None, "verb": None,
                      "token": token, "code": None,
                      "accept_encoding": self.headers.get("Accept-Encoding"),
                      "user_agent": self.headers.get("User-Agent")}
        m = _PATH_RE.match(url.path)
        if m and m.group("res") in RESOURCES and (
                RESOURCES[m.group("res")].prefix == m.group("prefix")):
            self.entry["resource"] = m.group("res")
            self.entry["namespace"] = m.group("ns")
            if m.group("name"):
                self.entry["verb"] = "get"
            elif params.get("watch") not in (None, "", "0", "f", "F",
                                             "false", "False", "FALSE"):
                self.entry["verb"] = "watch"
            else:
                self.entry["verb"] = "list"
        st.log_request(self.entry)
        try:
            self.route(url.path, m, params, token)
        except ApiError as e:
            self.send_status(e.status, list(e.headers.items()))
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError,
                socket.timeout):
            self.close_connection = True

    def do_POST(self):
        self.close_connection = True
        self.entry = {"resource": None}
        self.send_status(status_object(
            405, "the server does not allow this method on the requested "
            "resource", details={}))

    do_PUT = do_DELETE = do_PATCH = do_POST

    def route(self, path, m, params, token):
        st = self.server.state
        if path in ("/healthz", "/livez", "/readyz"):
            body = b"ok"
            self.send_head(200, [("Content-Type", "text/plain; charset=utf-8"),
                                 ("Content-Length", str(len(body)))])
            self.wfile.write(body)
            self.entry["code"] = 200
            return
        if path == "/version":
            self.send_json(200, {"major": "1", "minor": "32",
                                 "gitVersion": "v1.32.0-fakeapi",
                                 "platform": "linux/amd64"})
            return
        if st.token_file is not None and (
                token is None or token not in st.accepted_tokens()):
            self.send_json(401, status_object(401, "Unauthorized"))
            return
        disc = self.discovery(path)
        if disc is not None:
            self.send_json(200, disc)
            return
        resource = self.entry["resource"]
        if resource is None:
            self.send_status(status_object(
                404, "the server could not find the requested resource",
                details={}))
            return
        rtype = RESOURCES[resource]
        if m.group("ns") and not rtype.namespaced:
            self.send_status(status_object(
                404, "the server could not find the requested resource",
                details={}))
            return
        verb = self.entry["verb"]
        fault = st.take_fault(resource, verb)
        if fault is not None and self.apply_request_fault(fault, verb):
            return
        if verb == "get":
            self.serve_get(rtype, m.group("ns"), m.group("name"))
        elif verb == "watch":
            self.serve_watch(rtype, m.group("ns"), params, fault)
        else:
            self.serve_list(rtype, m.group("ns"), params)

    def discovery(self, path):
        """Minimal discovery documents, enough for kubectl."""
        def res(name, kind, namespaced, verbs, short=None):
            r = {"name": name, "singularName": kind.lower(),
                 "namespaced": namespaced, "kind": kind, "verbs": verbs}
            if short:
                r["shortNames"] = [short]
            return r
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0",
                         "serverAddress": "127.0.0.1:6443"}]}
        if path == "/apis":
            gv = {"groupVersion": "discovery.k8s.io/v1", "version": "v1"}
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": "discovery.k8s.io", "versions": [gv],
                 "preferredVersion": gv}]}
        if path == "/api/v1":
            return {"kind": "APIResourceList", "groupVersion": "v1",
                    "resources": [
                        res("nodes", "Node", False,
                            ["get", "list", "watch"], "no"),
                        res("services", "Service", True,
                            ["get", "list", "watch"], "svc")]}
        if path == "/apis/discovery.k8s.io/v1":
            return {"kind": "APIResourceList", "apiVersion": "v1",
                    "groupVersion": "discovery.k8s.io/v1", "resources": [
                        res("endpointslices", "EndpointSlice", True,
                            ["get", "list", "watch"])]}
        return None

    # -- faults applied before the request is served

    def apply_request_fault(self, fault, verb):
        """True if the fault answered the request (nothing else to do)."""
        spec = fault.spec
        if fault.type == "http_error":
            code = int(spec.get("code", 500))
            extra = []
            if code in (429, 503) or "retry_after" in spec:
                extra.append(("Retry-After", str(spec.get("retry_after", 1))))
            self.send_status(status_for_code(code, spec.get("message")),
                             extra)
            return True
        if fault.type == "stall":
            seconds = float(spec.get("seconds", 5))
            self.entry["code"] = 0
            if spec.get("mode", "silent") == "headers":
                headers = [("Content-Type", "application/json"),
                           ("Transfer-Encoding", "chunked")]
                self.send_head(200, headers)
                self.entry["code"] = 200
            time.sleep(seconds)
            self.abort_connection()
            return True
        if fault.type == "list_raw":
            self.serve_list_raw(spec)
            return True
        return False

    def serve_list_raw(self, spec):
        """A list answer a real server would not send: see the list_raw
        fault in README.md.  The real list of the request is the starting
        point unless a whole body is given."""
        if "body_b64" in spec or "body" in spec:
            body = (base64.b64decode(spec["body_b64"]) if "body_b64" in spec
                    else spec["body"].encode())
        else:
            m = _PATH_RE.match(urllib.parse.urlsplit(self.path).path)
            rtype = RESOURCES[self.entry["resource"]]
            lst = self.list_object(rtype, m.group("ns"),
                                   self.entry["params"])
            if "resource_version" in spec:
                lst["metadata"]["resourceVersion"] = spec["resource_version"]
            body = go_json(lst).encode()
            raw = [text.encode() for text in spec.get("items", [])]
            raw += [base64.b64decode(b) for b in spec.get("items_b64", [])]
            rep = spec.get("repeat")
            if rep:
                tmpl = rep["template"]
                for i in range(int(rep["count"])):
                    raw.append(tmpl.replace("{i}", str(i)).replace(
                        "{ip}", "10.%d.%d.%d" % (100 + i // 65536,
                                                 i // 256 % 256, i % 256))
                        .encode())
            if raw:
                at = body.index(b'"items":[') + len(b'"items":[')
                rest = body[at:]
                sep = b"" if rest.startswith(b"]") else b","
                body = body[:at] + b",".join(raw) + sep + rest
            if "truncate" in spec:
                body = body[:int(spec["truncate"])]
        headers = [("Content-Type", spec.get("content_type",
                                             "application/json"))]
        if spec.get("gzip") or spec.get("gzip_spaces_mib"):
            body = self.gzip_padded(body, int(spec.get("gzip_spaces_mib", 0)))
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Transfer-Encoding", "chunked"))
        self.send_head(int(spec.get("code", 200)), headers)
        self.entry["code"] = int(spec.get("code", 200))
        for i in range(0, len(body), 65536):
            self.write_chunk(body[i:i + 65536])
        self.end_chunks()

    @staticmethod
    def gzip_padded(body, spaces_mib):
        """gzip of spaces_mib MiB of spaces (JSON whitespace), then body:
        a small download that inflates to as much as asked."""
        z = zlib.compressobj(9, zlib.DEFLATED, 31)
        mib = b" " * (1 << 20)
        out = []
        for _ in range(spaces_mib):
            out.append(z.compress(mib))
        out.append(z.compress(body))
        out.append(z.flush())
        return b"".join(out)

    # -- single object

    def serve_get(self, rtype, ns, name):
        store = self.server.state.store
        key = "%s/%s" % (ns, name) if rtype.namespaced else name
        if rtype.namespaced and not ns:
            raise ApiError(status_object(
                404, "the server could not find the requested resource",
                details={}))
        with store.lock:
            obj = store.objects[rtype.name].get(key)
        if obj is None:
            raise ApiError(status_object(
                404, '%s "%s" not found' % (rtype.name, name),
                details={"name": name, "kind": rtype.name}))
        self.send_json(200, obj)

    # -- list

    def validate_rv_match(self, params, watch):
        rv = params.get("resourceVersion")
        match = params.get("resourceVersionMatch")
        sie = params.get("sendInitialEvents")
        if not watch and sie is not None:
            raise ApiError(invalid_options(
                "sendInitialEvents", "Forbidden: sendInitialEvents is "
                "forbidden for list"))
        if not match:
            if watch and sie is not None and parse_go_bool(
                    sie, "sendInitialEvents"):
                raise ApiError(invalid_options(
                    "resourceVersionMatch", "Forbidden: sendInitialEvents "
                    "requires setting resourceVersionMatch to NotOlderThan"))
            return None
        if match not in ("Exact", "NotOlderThan"):
            raise ApiError(invalid_options(
                "resourceVersionMatch", 'Unsupported value: "%s": supported '
                'values: "Exact", "NotOlderThan"' % match,
                "FieldValueNotSupported"))
        if watch and sie is None:
            raise ApiError(invalid_options(
                "resourceVersionMatch", "Forbidden: resourceVersionMatch is "
                "forbidden for watch unless sendInitialEvents is provided"))
        if watch and match != "NotOlderThan":
            raise ApiError(invalid_options(
                "resourceVersionMatch", 'Unsupported value: "%s": '
                'supported values: "NotOlderThan"' % match,
                "FieldValueNotSupported"))
        if not rv and not watch:
            raise ApiError(invalid_options(
                "resourceVersionMatch", "Forbidden: resourceVersionMatch is "
                "forbidden unless resourceVersion is provided"))
        if params.get("continue"):
            raise ApiError(invalid_options(
                "resourceVersionMatch", "Forbidden: resourceVersionMatch is "
                "forbidden when continue is provided"))
        if match == "Exact" and rv == "0":
            raise ApiError(invalid_options(
                "resourceVersionMatch", 'Forbidden: resourceVersionMatch '
                '"exact" is forbidden for resourceVersion "0"'))
        return match

    def too_large(self, rv):
        """Wait for the store to reach rv like the watch cache, else 504."""
        st = self.server.state
        if st.store.wait_for_rv(rv, st.too_large_wait):
            return
        raise ApiError(status_object(
            504, "Too large resource version: %d, current: %d"
            % (rv, st.store.rv), reason="Timeout",
            details={"causes": [{"reason": "ResourceVersionTooLarge",
                                 "message": "Too large resource version"}],
                     "retryAfterSeconds": 1}), {"Retry-After": "1"})

    def serve_list(self, rtype, ns, params):
        self.send_json(200, self.list_object(rtype, ns, params))

    def list_object(self, rtype, ns, params):
        """The list a request asks for (raises ApiError)."""
        store = self.server.state.store
        match = self.validate_rv_match(params, False)
        sel = Selector(rtype, params.get("labelSelector", ""),
                       params.get("fieldSelector", ""))
        rv_param = params.get("resourceVersion", "")
        cont = params.get("continue", "")
        limit = 0
        if params.get("limit"):
            try:
                limit = int(params["limit"])
            except ValueError:
                raise bad_request("invalid limit: %s" % params["limit"])
            limit = max(limit, 0)
        start_key = ""
        if cont:
            if rv_param not in ("", "0"):
                raise bad_request("specifying resource version is not "
                                  "allowed when using continue")
            snap_rv, start_key = decode_continue(cont)
        elif rv_param == "0":
            # Served from the watch cache, which ignores limit.
            snap_rv = None
            limit = 0
        elif rv_param == "":
            snap_rv = None
        else:
            n = parse_rv(rv_param)
            if n > store.rv:
                self.too_large(n)
            exact = match == "Exact" or (limit > 0 and match is None)
            snap_rv = n if exact else None
        with store.lock:
            if cont and snap_rv != -1 and snap_rv < store.compacted:
                # The etcd3 store hands back an "inconsistent" token (rv -1)
                # that resumes at the same key against the current state.
                token = encode_continue(-1, start_key.rstrip("\x00"))
                raise ApiError(status_object(410, MSG_CONTINUE_EXPIRED,
                                             metadata={"continue": token}))
            if snap_rv is None or snap_rv == -1:
                list_rv = store.rv
            else:
                list_rv = snap_rv
            try:
                state = store.state_at(rtype.name, list_rv)
            except TooOld:
                raise ApiError(status_object(410, MSG_LIST_EXPIRED))
        keys = sorted(k for k in state
                      if not ns or k.startswith(ns + "/"))
        keys = [k for k in keys if k >= start_key]
        items = []
        last_i = -1
        for i, k in enumerate(keys):
            if limit and len(items) == limit:
                break
            if sel.matches(state[k]):
                items.append(list_item(state[k]))
                last_i = i
        meta = {"resourceVersion": str(list_rv)}
        if limit and len(items) == limit and last_i < len(keys) - 1:
            meta["continue"] = encode_continue(list_rv, keys[last_i])
            if sel.empty:
                meta["remainingItemCount"] = len(keys) - 1 - last_i
        return {"kind": rtype.list_kind, "apiVersion": rtype.api_version,
                "metadata": meta, "items": items}

    # -- watch

    def serve_watch(self, rtype, ns, params, fault):
        st = self.server.state
        store = st.store
        parse_go_bool(params["watch"], "watch")
        self.validate_rv_match(params, True)
        sel = Selector(rtype, params.get("labelSelector", ""),
                       params.get("fieldSelector", ""))
        bookmarks = parse_go_bool(params.get("allowWatchBookmarks", "false"),
                                  "allowWatchBookmarks")
        sie = params.get("sendInitialEvents")
        send_initial = None if sie is None else parse_go_bool(
            sie, "sendInitialEvents")
        if send_initial and not bookmarks:
            raise ApiError(invalid_options(
                "allowWatchBookmarks", "Forbidden: allowWatchBookmarks must "
                "be set to true when sendInitialEvents is provided"))
        timeout = params.get("timeoutSeconds", "")
        if timeout:
            try:
                timeout = int(timeout)
            except ValueError:
                raise bad_request("invalid timeoutSeconds: %s" % timeout)
        if not timeout:
            timeout = st.rng.uniform(1800, 3600)
        rv_param = params.get("resourceVersion", "")
        start = None if rv_param in ("", "0") else parse_rv(rv_param)
        watcher = Watcher(rtype.name)
        try:
            initial = store.subscribe(watcher, start, send_initial)
            too_old = None
        except TooOld:
            initial = []
            too_old = status_object(
                410, "too old resource version: %d (%d)"
                % (start, store.compacted))
        self.send_head(200, [("Content-Type", "application/json"),
                             ("Transfer-Encoding", "chunked")])
        self.entry["code"] = 200
        if too_old is not None:
            self.write_events([{"type": "ERROR", "object": too_old}])
            self.end_chunks()
            return
        st.watch_opened(rtype.name, 1)
        session = WatchSession(self, watcher, rtype, ns, sel, bookmarks,
                               timeout, fault)
        try:
            session.run(initial, send_initial and bookmarks)
        except WatchClosed as e:
            if e.how == "clean":
                self.end_chunks()
            elif e.how == "gone":
                self.close_connection = True
            else:
                self.abort_connection(reset=(e.how == "reset"))
        finally:
            store.unsubscribe(watcher)
            st.watch_opened(rtype.name, -1)

    def write_events(self, events):
        """Write encoded events as chunks, per the chunking setting."""
        lines = [(go_json(e) + "\n").encode() for e in events]
        self.write_lines(lines)

    def write_lines(self, lines):
        st = self.server.state
        with st.lock:
            mode = st.chunking["mode"]
            cmax = max(1, int(st.chunking.get("max", 7)))
            delay = st.chunking.get("delay_ms", 0) / 1000.0
        if not lines:
            return
        if mode == "event":
            for line in lines:
                self.write_chunk(line)
            return
        data = b"".join(lines)
        if mode == "coalesce":
            self.write_chunk(data)
            return
        # split: small chunks of 1..max bytes; random: chunks up to twice
        # the mean line length, so they straddle event boundaries.
        if mode == "random":
            cmax = max(2, 2 * len(data) // len(lines))
        i = 0
        while i < len(data):
            n = st.rng.randint(1, cmax)
            self.write_chunk(data[i:i + n])
            i += n
            if delay:
                time.sleep(delay)


class WatchSession:
    """One open watch: turns store events into the stream a client sees."""

    COALESCE_WINDOW = 0.05
    # How often an idle watch checks whether its client went away.
    POLL = 0.25

    def __init__(self, handler, watcher, rtype, ns, sel, bookmarks, timeout,
                 fault):
        self.h = handler
        self.st = handler.server.state
        self.watcher = watcher
        self.rtype = rtype
        self.ns = ns
        self.sel = sel
        self.bookmarks = bookmarks
        self.deadline = time.monotonic() + timeout
        self.last_rv = watcher.start_rv
        self.sent = 0
        self.fault = fault

    def visible(self, obj):
        if obj is None:
            return False
        if self.ns and obj["metadata"].get("namespace") != self.ns:
            return False
        return self.sel.matches(obj)

    def convert(self, ev, initial=False):
        """The event this watcher sees (cacher convertToWatchEvent).

        Live events at or below the start RV are skipped (a watch from a
        future RV); the initial events were chosen by the store."""
        if not initial and ev.rv <= self.watcher.start_rv:
            return None
        self.last_rv = max(self.last_rv, ev.rv)
        cur = ev.type != "DELETED" and self.visible(ev.obj)
        old = ev.type != "ADDED" and self.visible(ev.prev)
        if cur and old:
            return {"type": "MODIFIED", "object": ev.obj}
        if cur:
            return {"type": "ADDED", "object": ev.obj}
        if old:
            # Stopped matching, or deleted: the previous content at the
            # new resourceVersion.
            return {"type": "DELETED", "object": with_rv(ev.prev, ev.rv)}
        return None

    def emit(self, events):
        """Send events; a watch_drop fault ends the stream after its count."""
        out = [e for e in events if e is not None]
        f = self.fault
        if f is not None and f.type == "watch_drop":
            room = max(0, int(f.spec.get("after_events", 0)) - self.sent)
            if len(out) >= room:
                self.h.write_events(out[:room])
                self.sent += room
                self.drop(f.spec.get("mode", "close"),
                          out[room] if len(out) > room else None)
        self.h.write_events(out)
        self.sent += len(out)

    def drop(self, mode, next_event=None):
        if mode == "mid-event":
            ev = next_event or {"type": "BOOKMARK", "object": bookmark_object(
                self.rtype.name, self.last_rv)}
            line = (go_json(ev) + "\n").encode()
            self.h.write_chunk(line[:len(line) // 2])
            raise WatchClosed("close")
        raise WatchClosed(mode)

    def send_bookmark(self, initial_end=False):
        """A BOOKMARK at the newest RV this watcher has fully seen: the
        store's RV when nothing is queued for it (like etcd progress
        notifications, it may name a write to another resource)."""
        store = self.st.store
        with store.lock:
            if not initial_end and self.watcher.queue.empty():
                self.last_rv = max(self.last_rv, store.rv)
        self.h.write_events([{"type": "BOOKMARK", "object": bookmark_object(
            self.rtype.name, self.last_rv, initial_end)}])

    def apply_stream_fault(self):
        """watch_error / watch_garbage faults act right after the start."""
        f = self.fault
        if f is None:
            return
        if f.type == "watch_error":
            self.control({"op": "error", **f.spec})
        elif f.type == "watch_garbage":
            self.control({"op": "garbage", **f.spec})

    def control(self, msg):
        op = msg.get("op")
        if op == "drop":
            self.drop(msg.get("mode", "close"))
        elif op == "garbage":
            lines = [(s if s.endswith("\n") else s + "\n").encode()
                     for s in msg.get("lines", [] if "lines_b64" in msg
                                      else ["garbage"])]
            # Bytes that are not UTF-8 cannot travel in a JSON string.
            for b in msg.get("lines_b64", []):
                line = base64.b64decode(b)
                lines.append(line if line.endswith(b"\n") else line + b"\n")
            self.h.write_lines(lines)
        elif op == "error":
            code = int(msg.get("code", 500))
            stobj = status_for_code(code, msg.get("message"))
            if msg.get("reason"):
                stobj["reason"] = msg["reason"]
            self.h.write_events([{"type": "ERROR", "object": stobj}])
            if msg.get("end", True):
                raise WatchClosed("clean")
        elif op == "bookmark":
            if self.bookmarks:
                self.send_bookmark()

    def run(self, initial, watch_list):
        self.emit([self.convert(ev, initial=True) for ev in initial])
        if watch_list:
            self.send_bookmark(initial_end=True)
        self.apply_stream_fault()
        next_bm = time.monotonic() + self.st.bookmark_interval
        while True:
            now = time.monotonic()
            if now >= self.deadline:
                raise WatchClosed("clean")
            wake = self.deadline
            if self.bookmarks:
                wake = min(wake, next_bm)
            try:
                item = self.watcher.queue.get(
                    timeout=max(0.0, min(wake - now, self.POLL)))
            except queue.Empty:
                if self.h.client_gone():
                    raise WatchClosed("gone")
                if self.bookmarks and time.monotonic() >= next_bm:
                    self.send_bookmark()
                    next_bm = time.monotonic() + self.st.bookmark_interval
                continue
            batch, ctl = self.collect(item)
            self.emit(batch)
            if ctl is not None:
                self.control(ctl)

    def collect(self, item):
        """Events ready now (more within a short window when coalescing),
        up to the first control message."""
        batch = []
        while True:
            kind, val = item
            if kind != "event":
                return batch, val
            batch.append(self.convert(val))
            try:
                item = self.watcher.queue.get_nowait()
            except queue.Empty:
                if self.st.chunking["mode"] != "coalesce":
                    return batch, None
                try:
                    item = self.watcher.queue.get(
                        timeout=self.COALESCE_WINDOW)
                except queue.Empty:
                    return batch, None


class ApiServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, addr, state, ssl_context):
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        self.state = state
        # What new connections get; /control/tls changes it.
        self.ssl_context = ssl_context
        self.live = set()
        self.live_lock = threading.Lock()
        super().__init__(addr, ApiHandler)

    def track(self, handler, live):
        with self.live_lock:
            if live:
                self.live.add(handler)
            else:
                self.live.discard(handler)

    def close_all(self):
        """Shut down every open API connection, watches and idle
        keep-alive ones alike, so that the client's next request opens a
        new one.  Returns how many."""
        with self.live_lock:
            conns = [h.connection for h in self.live]
        n = 0
        for c in conns:
            try:
                # The socket's own shutdown: SSLSocket.shutdown would drop
                # its SSL object under the handler thread's feet.
                socket.socket.shutdown(c, socket.SHUT_RDWR)
                n += 1
            except OSError:
                pass
        return n

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLError, socket.timeout,
                            OSError)):
            return
        super().handle_error(request, client_address)


# --------------------------------------------------------------------------
# Control interface

def parse_documents(text):
    """Objects from a JSON document, a List, or concatenated documents."""
    dec = json.JSONDecoder()
    docs = []
    i = 0
    text = text.strip()
    while i < len(text):
        doc, j = dec.raw_decode(text, i)
        docs.append(doc)
        i = j
        while i < len(text) and text[i].isspace():
            i += 1
    objs = []
    for d in docs:
        if not isinstance(d, dict):
            raise ValueError("not an object: %r" % (d,))
        if d.get("kind", "").endswith("List") and "items" in d:
            for it in d["items"] or []:
                it = dict(it)
                if "kind" not in it and d["kind"] != "List":
                    it["kind"] = d["kind"][:-4]
                objs.append(it)
        else:
            objs.append(d)
    return objs


def resource_of(obj):
    kind = obj.get("kind")
    if kind not in KIND_TO_RESOURCE:
        raise ApiError(status_object(400, "unsupported kind %r" % kind))
    return KIND_TO_RESOURCE[kind]


class ControlHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60

    def log_message(self, fmt, *args):
        if self.server.state.verbose:
            sys.stderr.write("fakeapi control: %s\n" % (fmt % args))

    def reply(self, code, obj):
        body = (json.dumps(obj, indent=1) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n).decode() if n else ""

    def json_body(self):
        text = self.body()
        return json.loads(text) if text.strip() else {}

    def dispatch(self, method):
        url = urllib.parse.urlsplit(self.path)
        params = {k: v[0] for k, v in
                  urllib.parse.parse_qs(url.query).items()}
        parts = [p for p in url.path.split("/") if p]
        if not parts or parts[0] != "control":
            return self.reply(404, {"error": "no such endpoint"})
        name = "/".join(parts[1:2])
        try:
            fn = getattr(self, "c_%s_%s" % (method.lower(),
                                            name.replace("-", "_")), None)
            if fn is None:
                return self.reply(404, {"error": "no such endpoint %s %s"
                                        % (method, url.path)})
            return fn(parts[2:], params)
        except ApiError as e:
            return self.reply(e.status["code"], {"error": e.status["message"],
                                                 "status": e.status})
        except (ValueError, KeyError, TypeError, OSError) as e:
            return self.reply(400, {"error": str(e)})

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    @property
    def state(self):
        return self.server.state

    # -- objects

    def c_get_objects(self, rest, params):
        store = self.state.store
        with store.lock:
            out = {r: list(store.objects[r].values()) for r in RESOURCES
                   if not rest or rest[0] == r}
            return self.reply(200, {"rv": str(store.rv), "objects": out})

    def _put_all(self, objs, mode, ns):
        stored = []
        for o in objs:
            stored.append(self.state.store.put(resource_of(o), o, ns, mode))
        return stored

    def c_post_objects(self, rest, params):
        objs = parse_documents(self.body())
        mode = "upsert" if params.get("upsert") else "create"
        stored = self._put_all(objs, mode, params.get("namespace"))
        self.reply(201, {"rv": str(self.state.store.rv), "objects": stored})

    def c_put_objects(self, rest, params):
        objs = parse_documents(self.body())
        stored = self._put_all(objs, "upsert", params.get("namespace"))
        self.reply(200, {"rv": str(self.state.store.rv), "objects": stored})

    def c_delete_objects(self, rest, params):
        if len(rest) == 3:
            resource, ns, name = rest
        elif len(rest) == 2:
            resource, name = rest
            ns = None
        else:
            raise ValueError("DELETE /control/objects/RESOURCE/[NS/]NAME")
        if resource not in RESOURCES:
            raise ValueError("unknown resource %r" % resource)
        gone = self.state.store.delete(resource, ns, name)
        self.reply(200, {"rv": str(self.state.store.rv), "object": gone})

    def c_post_apply(self, rest, params):
        text = self.body()
        try:
            spec = json.loads(text)
        except ValueError:
            spec = None
        if isinstance(spec, dict) and "path" in spec and "kind" not in spec:
            with open(spec["path"]) as f:
                text = f.read()
        objs = parse_documents(text)
        store = self.state.store
        with store.lock:
            stored = self._put_all(objs, "upsert", params.get("namespace"))
            deleted = []
            if params.get("prune"):
                keep = {(resource_of(o), object_key(RESOURCES[resource_of(o)],
                                                    o)) for o in stored}
                kinds = {r for r, _ in keep}
                for r in kinds:
                    for k, o in list(store.objects[r].items()):
                        if (r, k) not in keep:
                            md = o["metadata"]
                            deleted.append(store.delete(
                                r, md.get("namespace"), md["name"]))
            self.reply(200, {"rv": str(store.rv), "objects": stored,
                             "deleted": deleted})

    # -- history

    def c_post_compact(self, rest, params):
        spec = self.json_body()
        rv = spec.get("rv")
        got = self.state.store.compact(None if rv in (None, "")
                                       else int(rv))
        self.reply(200, {"compacted": str(got),
                         "rv": str(self.state.store.rv)})

    def c_post_bump(self, rest, params):
        spec = self.json_body()
        rv = self.state.store.bump(int(spec.get("n", 1)))
        self.reply(200, {"rv": str(rv)})

    # -- faults

    def c_get_faults(self, rest, params):
        with self.state.lock:
            self.reply(200, {"faults": [f.describe()
                                        for f in self.state.faults]})

    def c_post_faults(self, rest, params):
        spec = self.json_body()
        specs = spec if isinstance(spec, list) else [spec]
        faults = [Fault(s) for s in specs]
        with self.state.lock:
            self.state.faults = [f for f in self.state.faults if f.live()]
            self.state.faults.extend(faults)
        self.reply(200, {"faults": [f.describe() for f in faults]})

    def c_delete_faults(self, rest, params):
        with self.state.lock:
            self.state.faults = []
        self.reply(200, {"faults": []})

    # -- open watches

    def c_post_watches(self, rest, params):
        if not rest or rest[0] not in ("drop", "garbage", "error",
                                       "bookmark"):
            raise ValueError("POST /control/watches/{drop,garbage,error,"
                             "bookmark}")
        msg = dict(self.json_body())
        msg["op"] = rest[0]
        resource = msg.get("resource")
        store = self.state.store
        n = 0
        with store.lock:
            for w in list(store.watchers):
                if resource is None or w.resource == resource:
                    w.queue.put(("ctl", msg))
                    n += 1
        self.reply(200, {"watches": n})

    # -- settings

    def c_post_chunking(self, rest, params):
        spec = self.json_body()
        if spec.get("mode", "event") not in ("event", "coalesce", "split",
                                             "random"):
            raise ValueError("mode: event, coalesce, split or random")
        with self.state.lock:
            self.state.chunking = {"mode": spec.get("mode", "event"),
                                   "max": int(spec.get("max", 7)),
                                   "delay_ms": float(spec.get("delay_ms",
                                                              0))}
            if "seed" in spec:
                self.state.rng.seed(spec["seed"])
            self.reply(200, {"chunking": self.state.chunking})

    def c_post_bookmarks(self, rest, params):
        spec = self.json_body()
        self.state.bookmark_interval = float(spec["interval"])
        self.reply(200, {"interval": self.state.bookmark_interval})

    def c_post_tls(self, rest, params):
        """What the API port serves from now on: see README.md.  Every
        open API connection is closed."""
        spec = self.json_body()
        owner = self.server.owner
        if spec.get("plain"):
            ctx = None
        elif not any(k in spec for k in ("cert", "key", "client_ca",
                                         "max_version")):
            ctx = owner.start_ssl_context
        else:
            a = owner.args
            cert = spec.get("cert", a.tls_cert)
            key = spec.get("key", a.tls_key)
            if not cert or not key:
                raise ValueError("cert and key: the server started "
                                 "without TLS")
            ctx = tls_context(cert, key, spec.get("client_ca"),
                              spec.get("max_version"))
        owner.api.ssl_context = ctx
        closed = owner.api.close_all()
        self.reply(200, {"scheme": "https" if ctx else "http",
                         "closed": closed})

    def c_post_tokens(self, rest, params):
        """Replace the token file's content (one token a line)."""
        spec = self.json_body()
        if self.state.token_file is None:
            raise ValueError("server runs without --token-file")
        tmp = self.state.token_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("".join(t + "\n" for t in spec.get("tokens", [])))
        os.replace(tmp, self.state.token_file)
        self.reply(200, {"tokens": spec.get("tokens", [])})

    # -- statistics

    def c_get_stats(self, rest, params):
        self.reply(200, self.state.stats(params.get("resource"),
                                         params.get("verb")))

    def c_post_stats(self, rest, params):
        if rest != ["reset"]:
            raise ValueError("POST /control/stats/reset")
        with self.state.lock:
            self.state.requests = []
            self.state.tokens_seen = []
            self.state.connections = []
        self.reply(200, {"ok": True})

    def c_get_wait(self, rest, params):
        """Block until a condition on the stats holds (or 408)."""
        timeout = float(params.get("timeout", 5))
        resource = params.get("resource")
        deadline = time.monotonic() + timeout
        while True:
            s = self.state.stats(resource, params.get("verb"))
            ok = True
            if "open_watches" in params:
                have = (s["open_watches"].get(resource, 0) if resource
                        else sum(s["open_watches"].values()))
                ok = ok and have >= int(params["open_watches"])
            if "requests" in params:
                ok = ok and len(s["requests"]) >= int(params["requests"])
            if "connections" in params:
                ok = ok and len(s["connections"]) >= int(
                    params["connections"])
            if ok:
                s.pop("requests")
                s.pop("connections")
                return self.reply(200, s)
            if time.monotonic() >= deadline:
                s.pop("requests")
                s.pop("connections")
                return self.reply(408, s)
            time.sleep(0.02)

    def c_post_shutdown(self, rest, params):
        self.reply(200, {"ok": True})
        threading.Thread(target=self.server.owner.shutdown,
                         daemon=True).start()


class ControlServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, addr, state, owner):
        self.state = state
        self.owner = owner
        super().__init__(addr, ControlHandler)


# --------------------------------------------------------------------------
# Certificates and kubeconfig

def _openssl(*args, cwd=None):
    subprocess.run(("openssl",) + args, cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   timeout=30)


def _make_ca(d, name, cn):
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "7",
             "-keyout", name + ".key", "-out", name + ".crt",
             "-subj", "/CN=" + cn,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def gen_certs(d, hosts=()):
    """Create in d: ca.crt/ca.key, server.crt/server.key signed by it (SAN
    IP:127.0.0.1 plus hosts; names or IPs), and other-ca.crt/other-ca.key,
    an unrelated CA for "wrong CA" tests.  Needs the openssl CLI."""
    os.makedirs(d, exist_ok=True)
    _make_ca(d, "ca", "fakeapi-ca")
    _make_ca(d, "other-ca", "fakeapi-other-ca")
    sans = ["IP:127.0.0.1"]
    for h in hosts:
        try:
            ipaddress.ip_address(h)
            entry = "IP:" + h
        except ValueError:
            entry = "DNS:" + h
        if entry not in sans:
            sans.append(entry)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=%s\n" % ",".join(sans))
    _openssl("req", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
             "server.key", "-out", "server.csr", "-subj", "/CN=kube-apiserver",
             cwd=d)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt",
             "-CAkey", "ca.key", "-CAcreateserial", "-days", "7",
             "-extfile", "server.ext", "-out", "server.crt", cwd=d)
    return {n: os.path.join(d, n + ext) for n, ext in
            (("ca", ".crt"), ("server", ".crt"), ("other-ca", ".crt"))} | {
        "server_key": os.path.join(d, "server.key")}


def gen_fault_certs(d):
    """Create in d, next to what gen_certs(d) made, certificates for TLS
    fault tests: expired.crt (the server's key and names, valid only on
    2020-01-01), wrong-name.crt (the server's key, signed by ca, but only
    for DNS:wrong-name.invalid), and client-ca.crt/key with client.crt/key
    (CN kuproxy, clientAuth) for a server that wants client certificates.
    Returns their paths by name."""
    db = os.path.join(d, "ca-db")
    os.makedirs(db, exist_ok=True)
    with open(os.path.join(db, "index.txt"), "w"):
        pass
    with open(os.path.join(db, "serial"), "w") as f:
        f.write("1000\n")
    with open(os.path.join(db, "ca.cnf"), "w") as f:
        f.write("[ca]\ndefault_ca = fake\n[fake]\n"
                "database = ca-db/index.txt\nserial = ca-db/serial\n"
                "new_certs_dir = ca-db\ndefault_md = sha256\n"
                "policy = any\nunique_subject = no\n"
                "[any]\ncommonName = supplied\n")
    # openssl x509 cannot set past dates; openssl ca can.
    _openssl("ca", "-batch", "-config", "ca-db/ca.cnf", "-cert", "ca.crt",
             "-keyfile", "ca.key", "-in", "server.csr", "-out",
             "expired.crt", "-startdate", "20200101000000Z", "-enddate",
             "20200102000000Z", "-extfile", "server.ext", "-notext", cwd=d)
    with open(os.path.join(d, "wrong-name.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=DNS:wrong-name.invalid\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt",
             "-CAkey", "ca.key", "-CAcreateserial", "-days", "7",
             "-extfile", "wrong-name.ext", "-out", "wrong-name.crt", cwd=d)
    _make_ca(d, "client-ca", "fakeapi-client-ca")
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=clientAuth\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
             "client.key", "-out", "client.csr", "-subj", "/CN=kuproxy",
             cwd=d)
    _openssl("x509", "-req", "-in", "client.csr", "-CA", "client-ca.crt",
             "-CAkey", "client-ca.key", "-CAcreateserial", "-days", "7",
             "-extfile", "client.ext", "-out", "client.crt", cwd=d)
    return {n: os.path.join(d, f) for n, f in (
        ("expired", "expired.crt"), ("wrong_name", "wrong-name.crt"),
        ("client_ca", "client-ca.crt"), ("client", "client.crt"),
        ("client_key", "client.key"))}


def _yaml_str(s):
    """A YAML scalar for s (JSON strings are valid YAML)."""
    return json.dumps(s)


def kubeconfig_text(server, ca_pem=None, token=None, token_file=None,
                    name="fakeapi"):
    """A kubeconfig as `kubectl config view --raw` prints it."""
    cluster = []
    if ca_pem is not None:
        cluster.append("    certificate-authority-data: %s\n"
                       % base64.b64encode(ca_pem).decode())
    cluster.append("    server: %s\n" % server)
    user = []
    if token is not None:
        user.append("    token: %s\n" % _yaml_str(token))
    if token_file is not None:
        user.append("    tokenFile: %s\n" % _yaml_str(token_file))
    return ("apiVersion: v1\n"
            "clusters:\n"
            "- cluster:\n" + "".join(cluster) +
            "  name: %s\n" % name +
            "contexts:\n"
            "- context:\n"
            "    cluster: %s\n"
            "    user: %s\n"
            "  name: %s\n" % (name, name, name) +
            "current-context: %s\n" % name +
            "kind: Config\n"
            "preferences: {}\n"
            "users:\n"
            "- name: %s\n" % name +
            "  user:" + ("\n" + "".join(user) if user else " {}\n"))


def write_atomically(path, text):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------
# Main

TLS_VERSIONS = {"TLSv1": "TLSv1", "TLSv1.1": "TLSv1_1", "TLSv1.2": "TLSv1_2",
                "TLSv1.3": "TLSv1_3"}


def tls_context(cert, key, client_ca=None, max_version=None):
    """A server context: HTTP/1.1 through ALPN; with client_ca, a client
    certificate signed by it is required; with max_version ("TLSv1" ...
    "TLSv1.3"), nothing newer is offered, and legacy versions are allowed
    down to TLS 1.0 (OpenSSL 3 refuses them at its default security
    level)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    if client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca)
    if max_version:
        if max_version not in TLS_VERSIONS:
            raise ValueError("max_version: one of %s"
                             % ", ".join(TLS_VERSIONS))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = getattr(ssl.TLSVersion,
                                          TLS_VERSIONS[max_version])
    return ctx


class FakeApi:
    """Both servers and their threads."""

    def __init__(self, args):
        self.args = args
        self.state = State(args)
        ctx = None
        if args.tls_cert:
            ctx = tls_context(args.tls_cert, args.tls_key)
        self.start_ssl_context = ctx
        self.scheme = "https" if ctx else "http"
        self.api = ApiServer((args.listen, args.port), self.state, ctx)
        self.control = ControlServer(("127.0.0.1", args.control_port),
                                     self.state, self)
        self.done = threading.Event()

    @property
    def url(self):
        host = self.args.listen
        if ":" in host:
            host = "[%s]" % host
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1"
        return "%s://%s:%d" % (self.scheme, host,
                               self.api.server_address[1])

    @property
    def control_url(self):
        return "http://127.0.0.1:%d" % self.control.server_address[1]

    def load_objects(self, paths):
        for p in paths:
            with open(p) as f:
                for o in parse_documents(f.read()):
                    self.state.store.put(resource_of(o), o, None, "upsert")

    def write_files(self):
        a = self.args
        if a.write_kubeconfig:
            ca_pem = None
            ca_path = a.ca_cert or a.tls_cert
            if ca_path:
                with open(ca_path, "rb") as f:
                    ca_pem = f.read()
            token = token_file = None
            if a.kubeconfig_token_file:
                token_file = os.path.abspath(a.token_file)
            elif a.token_file:
                with open(a.token_file) as f:
                    toks = [t.strip() for t in f if t.strip()]
                token = toks[0] if toks else None
            write_atomically(a.write_kubeconfig, kubeconfig_text(
                self.url, ca_pem, token, token_file))
        if a.port_file:
            write_atomically(a.port_file, (
                "PORT=%d\nCONTROL_PORT=%d\nSCHEME=%s\nURL=%s\n"
                "CONTROL_URL=%s\nPID=%d\n" % (
                    self.api.server_address[1],
                    self.control.server_address[1], self.scheme, self.url,
                    self.control_url, os.getpid())))

    def serve(self):
        for srv in (self.api, self.control):
            threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.write_files()
        self.done.wait()

    def shutdown(self):
        self.api.shutdown()
        self.control.shutdown()
        self.done.set()


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Fake Kubernetes API server for kuproxy's tests.")
    p.add_argument("--listen", default="127.0.0.1",
                   help="API address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="API port (0: any)")
    p.add_argument("--control-port", type=int, default=0,
                   help="control port on 127.0.0.1 (0: any)")
    p.add_argument("--port-file", help="write PORT=, CONTROL_PORT=, URL=... "
                   "here once both ports listen")
    p.add_argument("--tls-cert", help="serve HTTPS with this certificate")
    p.add_argument("--tls-key", help="key of --tls-cert")
    p.add_argument("--ca-cert", help="CA to embed in --write-kubeconfig "
                   "(default: --tls-cert itself)")
    p.add_argument("--token-file", help="accepted bearer tokens, one a line, "
                   "re-read on every request; without it no auth")
    p.add_argument("--bookmark-interval", type=float, default=1.0,
                   help="seconds between BOOKMARK events (default 1)")
    p.add_argument("--objects", action="append", default=[],
                   help="initial objects (JSON object, List or several "
                   "documents); may repeat")
    p.add_argument("--write-kubeconfig", help="write a kubeconfig here")
    p.add_argument("--kubeconfig-token-file", action="store_true",
                   help="kubeconfig names --token-file (tokenFile) instead "
                   "of embedding its first token")
    p.add_argument("--initial-rv", type=int, default=1000,
                   help="first resourceVersion (default 1000)")
    p.add_argument("--too-large-wait", type=float, default=3.0,
                   help="seconds to wait for a future RV before 504 "
                   "(default 3, as the watch cache)")
    p.add_argument("--chunk-mode", default="event",
                   choices=("event", "coalesce", "split", "random"),
                   help="how watch events map to HTTP chunks")
    p.add_argument("--chunk-max", type=int, default=7,
                   help="largest chunk in split mode")
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument("--no-managed-fields", action="store_true",
                   help="do not add metadata.managedFields")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--gen-certs", metavar="DIR",
                   help="create ca/server/other-ca certificates in DIR and "
                   "exit")
    p.add_argument("--cert-host", action="append", default=[],
                   help="extra SAN (name or IP) for --gen-certs")
    p.add_argument("--fault-certs", action="store_true",
                   help="with --gen-certs: also expired, wrong-name and "
                   "client certificates")
    args = p.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if args.kubeconfig_token_file and not args.token_file:
        p.error("--kubeconfig-token-file needs --token-file")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.gen_certs:
        gen_certs(args.gen_certs, args.cert_host)
        if args.fault_certs:
            gen_fault_certs(args.gen_certs)
        return 0
    fake = FakeApi(args)
    fake.load_objects(args.objects)
    try:
        fake.serve()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
