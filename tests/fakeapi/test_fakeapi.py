#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
#
# Self-test of the fake Kubernetes API server (fakeapi.py): it checks the
# server against the documented protocol (list paging and resourceVersion
# consistency, watch from an RV, bookmarks, 410 after compaction as a list
# error and as an in-stream ERROR, selectors and their transitions, bearer
# tokens, TLS with generated certificates, chunk framing, gzip, faults).
# Standard library only; every socket has a timeout.
#
# Run: python3 -m unittest -v test_fakeapi   (from this directory)

import base64
import gzip
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fakeapi  # noqa: E402

OBJECTS = os.path.join(HERE, "objects")
TOKEN = "s3cr3t-token"
TIMEOUT = 5


def fixture(name):
    with open(os.path.join(OBJECTS, name)) as f:
        return json.load(f)


class Server:
    """A fakeapi.py subprocess and clients for both of its ports."""

    def __init__(self, tmp, *extra, tls=None):
        self.tmp = tmp
        self.token_file = os.path.join(tmp, "token")
        with open(self.token_file, "w") as f:
            f.write(TOKEN + "\n")
        port_file = os.path.join(tmp, "ports")
        args = [sys.executable, os.path.join(HERE, "fakeapi.py"),
                "--port", "0", "--control-port", "0",
                "--port-file", port_file, "--token-file", self.token_file,
                "--bookmark-interval", "0.2", "--too-large-wait", "0.3",
                "--seed", "1"] + list(extra)
        self.tls = tls
        if tls:
            args += ["--tls-cert", tls["server"], "--tls-key",
                     tls["server_key"]]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not os.path.exists(port_file):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("fakeapi did not start")
            time.sleep(0.02)
        with open(port_file) as f:
            info = dict(line.split("=", 1) for line in f.read().split())
        self.port = int(info["PORT"])
        self.control_port = int(info["CONTROL_PORT"])
        self.info = info

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(TIMEOUT)

    # -- control port

    def ctl(self, method, path, body=None, raw=None):
        data = raw if raw is not None else (
            None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(
            "http://127.0.0.1:%d%s" % (self.control_port, path),
            data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def put(self, *objs):
        code, out = self.ctl("PUT", "/control/objects",
                             raw="\n".join(json.dumps(o) for o in objs)
                             .encode())
        assert code == 200, out
        return out

    def delete(self, resource, ns, name):
        code, out = self.ctl("DELETE", "/control/objects/%s/%s/%s"
                             % (resource, ns, name))
        assert code == 200, out
        return out

    def stats(self, **q):
        return self.ctl("GET", "/control/stats?"
                        + urllib.parse.urlencode(q))[1]

    def wait_no_watches(self, resource):
        deadline = time.monotonic() + TIMEOUT
        while self.stats()["open_watches"].get(resource, 0) != 0:
            assert time.monotonic() < deadline, "watch still open"
            time.sleep(0.05)

    def wait_watches(self, n, resource):
        code, _ = self.ctl("GET", "/control/wait?open_watches=%d&resource=%s"
                           "&timeout=5" % (n, resource))
        assert code == 200, "no open watch"

    # -- API port

    def connection(self):
        if self.tls:
            ctx = ssl.create_default_context(cafile=self.tls["ca"])
            return http.client.HTTPSConnection("127.0.0.1", self.port,
                                               timeout=TIMEOUT, context=ctx)
        return http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=TIMEOUT)

    def get(self, path, token=TOKEN, headers=None):
        """(status, headers, decoded body) of one GET."""
        conn = self.connection()
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = "Bearer " + token
        conn.request("GET", path, headers=h)
        r = conn.getresponse()
        body = r.read()
        conn.close()
        if r.getheader("Content-Type", "").startswith("application/json"):
            if r.getheader("Content-Encoding") == "gzip":
                return r.status, r, json.loads(gzip.decompress(body))
            return r.status, r, json.loads(body)
        return r.status, r, body

    def watch(self, path, token=TOKEN):
        return RawWatch(self, path, token)


class RawWatch:
    """A watch read at the HTTP chunk level (raw socket, own parser)."""

    def __init__(self, server, path, token):
        sock = socket.create_connection(("127.0.0.1", server.port),
                                        timeout=TIMEOUT)
        if server.tls:
            ctx = ssl.create_default_context(cafile=server.tls["ca"])
            sock = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
        self.sock = sock
        self.f = sock.makefile("rb")
        req = "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % path
        if token:
            req += "Authorization: Bearer %s\r\n" % token
        req += "Accept: application/json\r\n\r\n"
        sock.sendall(req.encode())
        self.status = int(self.f.readline().split()[1])
        self.headers = {}
        while True:
            line = self.f.readline().decode().rstrip("\r\n")
            if not line:
                break
            k, v = line.split(":", 1)
            self.headers[k.strip().lower()] = v.strip()
        self.chunks = []
        self.buf = b""
        self.ended = False

    def close(self):
        self.f.close()
        self.sock.close()

    def read_chunk(self):
        """Payload of the next chunk; b"" at the terminating chunk; raises
        EOFError if the connection closes without it."""
        line = self.f.readline()
        if not line:
            raise EOFError("connection closed")
        if not line.endswith(b"\r\n"):
            raise EOFError("truncated chunk header %r" % line)
        size = int(line.split(b";")[0], 16)
        if size == 0:
            self.f.readline()
            self.ended = True
            return b""
        data = self.f.read(size)
        if len(data) < size:
            self.buf += data
            raise EOFError("truncated chunk")
        if self.f.read(2) != b"\r\n":
            raise EOFError("bad chunk trailer")
        self.chunks.append(data)
        return data

    def next_line(self):
        """Next complete line (an event), or None at a clean end."""
        while b"\n" not in self.buf:
            data = self.read_chunk()
            if data == b"":
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def next_event(self, skip_bookmarks=True):
        while True:
            line = self.next_line()
            if line is None:
                return None
            ev = json.loads(line)
            if skip_bookmarks and ev["type"] == "BOOKMARK":
                continue
            return ev

    def events_until_end(self):
        out = []
        while True:
            ev = self.next_event(skip_bookmarks=False)
            if ev is None:
                return out
            out.append(ev)


def svc(name, labels=None, **spec):
    o = fixture("svc-web.json")
    o["metadata"]["name"] = name
    o["metadata"]["labels"] = labels if labels is not None else {"app": name}
    o["spec"]["selector"] = {"app": name}
    o["spec"].update(spec)
    return o


class FakeApiTest(unittest.TestCase):
    """One server per test: tests stay independent and quick."""

    server_args = ()

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="fakeapi-test.")
        self.s = Server(self.tmp, *self.server_args)

    def tearDown(self):
        self.s.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


class TestSelectors(unittest.TestCase):
    """Selector grammar without a server."""

    def match(self, sel, labels):
        reqs = fakeapi.parse_label_selector(sel)
        return all(fakeapi.label_requirement_matches(r, labels)
                   for r in reqs)

    def test_grammar(self):
        L = {"app": "web", "tier": "front", "n": "5"}
        self.assertTrue(self.match("", L))
        self.assertTrue(self.match("app=web", L))
        self.assertTrue(self.match("app==web", L))
        self.assertFalse(self.match("app!=web", L))
        self.assertTrue(self.match("missing!=x", L))
        self.assertTrue(self.match("app", L))
        self.assertFalse(self.match("!app", L))
        self.assertTrue(self.match("!service.kubernetes.io/service-proxy-name",
                                   L))
        self.assertTrue(self.match("app in (db, web)", L))
        self.assertFalse(self.match("app notin (db,web)", L))
        self.assertTrue(self.match("missing notin (a)", L))
        self.assertTrue(self.match("app=web,tier=front", L))
        self.assertFalse(self.match("app=web,tier=back", L))
        self.assertTrue(self.match("n>4,n<6", L))
        self.assertTrue(self.match("empty=", {"empty": ""}))
        self.assertTrue(self.match(
            "!service.kubernetes.io/service-proxy-name,"
            "!service.kubernetes.io/headless", L))

    def test_invalid(self):
        for bad in ("=x", "app in ()", "app in (a", "a b", "app=web,",
                    "-bad=1", "x/y/z=1", "app>x", "app=a*b"):
            with self.assertRaises(fakeapi.SelectorError, msg=bad):
                fakeapi.parse_label_selector(bad)


class TestList(FakeApiTest):
    server_args = ("--objects", os.path.join(OBJECTS, "cluster.json"))

    def test_list_shape(self):
        code, r, body = self.s.get("/api/v1/services")
        self.assertEqual(code, 200)
        self.assertEqual(body["kind"], "ServiceList")
        self.assertEqual(body["apiVersion"], "v1")
        self.assertEqual(body["metadata"]["resourceVersion"],
                         self.s.stats()["rv"])
        self.assertEqual(len(body["items"]), 7)
        for it in body["items"]:
            self.assertNotIn("kind", it)
            self.assertNotIn("apiVersion", it)
            self.assertIsInstance(it["metadata"]["resourceVersion"], str)
        web = [i for i in body["items"] if i["metadata"]["name"] == "web"][0]
        spec = web["spec"]
        # Server defaults on a `kubectl create service clusterip` object.
        self.assertEqual(spec["type"], "ClusterIP")
        self.assertEqual(spec["sessionAffinity"], "None")
        self.assertEqual(spec["ports"], [{"name": "80-8080",
                                          "protocol": "TCP", "port": 80,
                                          "targetPort": 8080}])
        self.assertTrue(spec["clusterIP"].startswith("10.9"))
        self.assertEqual(spec["clusterIPs"], [spec["clusterIP"]])
        self.assertEqual(spec["ipFamilies"], ["IPv4"])
        self.assertEqual(spec["ipFamilyPolicy"], "SingleStack")
        self.assertEqual(spec["internalTrafficPolicy"], "Cluster")
        self.assertEqual(web["status"], {"loadBalancer": {}})
        self.assertIn("uid", web["metadata"])
        self.assertIn("managedFields", web["metadata"])
        by = {i["metadata"]["name"]: i["spec"] for i in body["items"]}
        self.assertNotIn("clusterIP", by["ext"])
        self.assertEqual(by["headless"]["clusterIP"], "None")
        self.assertTrue(30000 <= by["np"]["ports"][0]["nodePort"] <= 32767)
        self.assertEqual(by["np"]["externalTrafficPolicy"], "Cluster")
        # Empty list: items is [] (never absent), for a namespace too.
        code, r, body = self.s.get("/api/v1/namespaces/empty/services")
        self.assertEqual(body["items"], [])

    def test_endpointslice_and_node_shape(self):
        code, r, body = self.s.get(
            "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices")
        self.assertEqual(body["kind"], "EndpointSliceList")
        self.assertEqual(body["apiVersion"], "discovery.k8s.io/v1")
        by = {i["metadata"]["name"]: i for i in body["items"]}
        self.assertIsNone(by["np-z9x8c"]["endpoints"])
        self.assertIsNone(by["np-z9x8c"]["ports"])
        self.assertEqual(by["web-x87dl"]["metadata"]["generation"], 1)
        code, r, body = self.s.get(
            "/api/v1/nodes?fieldSelector=metadata.name%3Dnode-1")
        self.assertEqual(body["kind"], "NodeList")
        self.assertEqual([i["metadata"]["name"] for i in body["items"]],
                         ["node-1"])
        code, r, body = self.s.get(
            "/api/v1/nodes?fieldSelector=metadata.name%3Dnode-9")
        self.assertEqual(body["items"], [])
        code, r, body = self.s.get("/api/v1/namespaces/default/nodes")
        self.assertEqual(code, 404)
        code, r, body = self.s.get("/api/v1/namespaces/default/services/web")
        self.assertEqual((code, body["kind"]), (200, "Service"))
        code, r, body = self.s.get("/api/v1/namespaces/default/services/no")
        self.assertEqual((code, body["reason"]), (404, "NotFound"))

    def test_paging_snapshot(self):
        code, r, first = self.s.get("/api/v1/services?limit=3")
        rv = first["metadata"]["resourceVersion"]
        self.assertEqual(len(first["items"]), 3)
        self.assertEqual(first["metadata"]["remainingItemCount"], 4)
        tok = first["metadata"]["continue"]
        d = json.loads(base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4)))
        self.assertEqual(d["rv"], int(rv))
        # Changes between pages are not visible in later pages.
        self.s.delete("services", "default", "web")
        self.s.put(svc("zzz-new"))
        names = [i["metadata"]["name"] for i in first["items"]]
        while tok:
            code, r, page = self.s.get("/api/v1/services?limit=3&continue="
                                       + urllib.parse.quote(tok))
            self.assertEqual(code, 200)
            self.assertEqual(page["metadata"]["resourceVersion"], rv)
            names += [i["metadata"]["name"] for i in page["items"]]
            tok = page["metadata"].get("continue")
        self.assertEqual(names, ["db", "ext", "headless", "lb", "np",
                                 "other-proxy", "web"])
        # RV=0 ignores limit; a selector drops remainingItemCount.
        code, r, body = self.s.get(
            "/api/v1/services?limit=2&resourceVersion=0")
        self.assertEqual(len(body["items"]), 7)
        self.assertNotIn("continue", body["metadata"])
        code, r, body = self.s.get("/api/v1/services?limit=2&labelSelector="
                                   "app")
        self.assertIn("continue", body["metadata"])
        self.assertNotIn("remainingItemCount", body["metadata"])
        code, r, body = self.s.get("/api/v1/services?continue=" + tok_of(
            first) + "&resourceVersion=5")
        self.assertEqual(code, 400)

    def test_exact_and_expired(self):
        code, r, body = self.s.get("/api/v1/services?limit=2")
        rv = body["metadata"]["resourceVersion"]
        tok = body["metadata"]["continue"]
        self.s.put(svc("web", labels={"app": "web", "v": "2"}))
        # limit + RV N = Exact: the old state.
        code, r, old = self.s.get("/api/v1/services?limit=10&"
                                  "resourceVersion=" + rv)
        self.assertEqual(old["metadata"]["resourceVersion"], rv)
        web = [i for i in old["items"] if i["metadata"]["name"] == "web"][0]
        self.assertNotIn("v", web["metadata"]["labels"])
        # No limit = NotOlderThan: the current state.
        code, r, cur = self.s.get("/api/v1/services?resourceVersion=" + rv)
        self.assertGreater(int(cur["metadata"]["resourceVersion"]), int(rv))
        self.s.ctl("POST", "/control/compact", {})
        code, r, st = self.s.get("/api/v1/services?limit=10&"
                                 "resourceVersion=" + rv)
        self.assertEqual(code, 410)
        self.assertEqual(st["reason"], "Expired")
        self.assertEqual(st["message"], fakeapi.MSG_LIST_EXPIRED)
        code, r, st = self.s.get("/api/v1/services?limit=2&continue=" + tok)
        self.assertEqual(code, 410)
        self.assertTrue(st["message"].startswith(
            "The provided continue parameter is too old"))
        # The inconsistent token resumes at the current state.
        code, r, rest = self.s.get("/api/v1/services?limit=10&continue="
                                   + st["metadata"]["continue"])
        self.assertEqual(code, 200)
        self.assertEqual([i["metadata"]["name"] for i in rest["items"]],
                         ["headless", "lb", "np", "other-proxy", "web"])
        # A future RV: 504 Too large resource version.
        code, r, st = self.s.get("/api/v1/services?resourceVersion=999999")
        self.assertEqual(code, 504)
        self.assertEqual(st["details"]["causes"][0]["reason"],
                         "ResourceVersionTooLarge")

    def test_selectors_and_options(self):
        q = urllib.parse.urlencode({
            "labelSelector": "!service.kubernetes.io/service-proxy-name",
            "fieldSelector": "spec.clusterIP!=None"})
        code, r, body = self.s.get("/api/v1/services?" + q)
        names = sorted(i["metadata"]["name"] for i in body["items"])
        self.assertEqual(names, ["db", "ext", "lb", "np", "web"])
        code, r, body = self.s.get("/api/v1/services?fieldSelector="
                                   "spec.type%3DNodePort")
        self.assertEqual([i["metadata"]["name"] for i in body["items"]],
                         ["np"])
        code, r, st = self.s.get("/api/v1/services?fieldSelector=spec.foo%3D1")
        self.assertEqual((code, st["reason"], st["message"]),
                         (400, "BadRequest",
                          "field label not supported: spec.foo"))
        code, r, st = self.s.get("/apis/discovery.k8s.io/v1/endpointslices?"
                                 "fieldSelector=spec.type%3Dx")
        self.assertEqual(code, 400)
        code, r, st = self.s.get("/api/v1/services?labelSelector=a%20b")
        self.assertEqual(code, 400)
        code, r, body = self.s.get(
            "/apis/discovery.k8s.io/v1/endpointslices?labelSelector="
            + urllib.parse.quote("!service.kubernetes.io/headless"))
        self.assertEqual(len(body["items"]), 3)
        code, r, st = self.s.get("/api/v1/services?resourceVersionMatch=Exact")
        self.assertEqual((code, st["reason"]), (422, "Invalid"))
        code, r, st = self.s.get("/api/v1/services?watch=maybe")
        self.assertEqual(code, 400)

    def test_auth(self):
        expect = (b'{"kind":"Status","apiVersion":"v1","metadata":{},'
                  b'"status":"Failure","message":"Unauthorized",'
                  b'"reason":"Unauthorized","code":401}')
        for tok in (None, "wrong"):
            conn = self.s.connection()
            conn.request("GET", "/api/v1/services", headers={} if tok is None
                         else {"Authorization": "Bearer " + tok})
            r = conn.getresponse()
            self.assertEqual(r.status, 401)
            self.assertEqual(r.read().strip(), expect)
            conn.close()
        # Rotation: the file is re-read on every request.
        with open(self.s.token_file, "w") as f:
            f.write("new-token\nother\n")
        self.assertEqual(self.s.get("/api/v1/nodes")[0], 401)
        self.assertEqual(self.s.get("/api/v1/nodes", token="new-token")[0],
                         200)
        self.assertEqual(self.s.get("/api/v1/nodes", token="other")[0], 200)
        self.assertIn("wrong", self.s.stats()["tokens_seen"])

    def test_gzip_large(self):
        many = [svc("bulk-%03d" % i, labels={"app": "bulk",
                                             "pad": "x" * 60})
                for i in range(300)]
        self.s.put(*many)
        code, r, body = self.s.get("/api/v1/services",
                                   headers={"Accept-Encoding": "gzip"})
        self.assertEqual(r.getheader("Content-Encoding"), "gzip")
        self.assertEqual(r.getheader("Transfer-Encoding"), "chunked")
        self.assertEqual(len(body["items"]), 307)
        code, r, body = self.s.get("/api/v1/services")
        self.assertIsNone(r.getheader("Content-Encoding"))
        code, r, body = self.s.get("/api/v1/nodes",
                                   headers={"Accept-Encoding": "gzip"})
        self.assertIsNone(r.getheader("Content-Encoding"))


def tok_of(page):
    return page["metadata"]["continue"]


class TestWatch(FakeApiTest):
    server_args = ("--objects", os.path.join(OBJECTS, "cluster.json"))

    def test_watch_from_rv(self):
        code, r, body = self.s.get("/api/v1/services")
        rv = body["metadata"]["resourceVersion"]
        self.s.put(svc("new-a"))
        self.s.delete("services", "default", "db")
        w = self.s.watch("/api/v1/services?watch=1&resourceVersion=%s&"
                         "timeoutSeconds=1" % rv)
        self.assertEqual(w.status, 200)
        self.assertEqual(w.headers["transfer-encoding"], "chunked")
        self.assertEqual(w.headers["content-type"], "application/json")
        evs = w.events_until_end()
        self.assertTrue(w.ended)  # clean terminating chunk at timeout
        self.assertEqual([(e["type"], e["object"]["metadata"]["name"])
                          for e in evs],
                         [("ADDED", "new-a"), ("DELETED", "db")])
        self.assertEqual(evs[0]["object"]["kind"], "Service")
        self.assertEqual(evs[0]["object"]["apiVersion"], "v1")
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs]
        self.assertEqual(rvs, sorted(rvs))
        self.assertGreater(rvs[0], int(rv))
        # Default mode: one event per chunk.
        self.assertEqual(len(w.chunks), 2)
        # After a clean end the keep-alive connection stays usable.
        w.sock.sendall(b"GET /api/v1/nodes HTTP/1.1\r\nHost: x\r\n"
                       b"Authorization: Bearer " + TOKEN.encode()
                       + b"\r\n\r\n")
        self.assertIn(b" 200 ", w.f.readline())
        w.close()

    def test_watch_from_zero_and_live(self):
        w = self.s.watch("/apis/discovery.k8s.io/v1/endpointslices?watch=true"
                         "&resourceVersion=0&timeoutSeconds=3")
        added = [w.next_event() for _ in range(4)]
        self.assertEqual({e["type"] for e in added}, {"ADDED"})
        self.s.wait_watches(1, "endpointslices")
        es = fixture("eps-web.json")
        es["endpoints"] = es["endpoints"][:1]
        out = self.s.put(es)
        ev = w.next_event()
        self.assertEqual(ev["type"], "MODIFIED")
        self.assertEqual(ev["object"]["metadata"]["resourceVersion"],
                         out["objects"][0]["metadata"]["resourceVersion"])
        self.assertEqual(ev["object"]["metadata"]["generation"], 2)
        w.close()

    def test_bookmarks(self):
        code, r, body = self.s.get("/apis/discovery.k8s.io/v1/endpointslices")
        rv = body["metadata"]["resourceVersion"]
        w = self.s.watch("/apis/discovery.k8s.io/v1/endpointslices?watch=1&"
                         "resourceVersion=%s&allowWatchBookmarks=true&"
                         "timeoutSeconds=2" % rv)
        ev = w.next_event(skip_bookmarks=False)
        self.assertEqual(ev, {"type": "BOOKMARK", "object": {
            "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"resourceVersion": rv, "creationTimestamp": None},
            "addressType": "", "endpoints": None, "ports": None}})
        # Writes elsewhere advance the bookmark RV too (progress notify).
        code, out = self.s.ctl("POST", "/control/bump", {"n": 3})
        ev = w.next_event(skip_bookmarks=False)
        self.assertEqual(ev["object"]["metadata"]["resourceVersion"],
                         out["rv"])
        # Without allowWatchBookmarks: none.
        w2 = self.s.watch("/api/v1/services?watch=1&resourceVersion=%s&"
                          "timeoutSeconds=1" % rv)
        self.assertEqual(w2.events_until_end(), [])
        w.close()
        w2.close()

    def test_too_old_watch(self):
        code, r, body = self.s.get("/api/v1/services")
        rv = body["metadata"]["resourceVersion"]
        self.s.put(svc("after"))
        code, c = self.s.ctl("POST", "/control/compact", {})
        w = self.s.watch("/api/v1/services?watch=1&resourceVersion=%s" % rv)
        self.assertEqual(w.status, 200)
        evs = w.events_until_end()
        self.assertEqual(evs, [{"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure",
            "message": "too old resource version: %s (%s)"
            % (rv, c["compacted"]),
            "reason": "Expired", "code": 410}}])
        w.close()
        # From the compaction point itself it works.
        w = self.s.watch("/api/v1/services?watch=1&timeoutSeconds=1&"
                         "resourceVersion=" + c["compacted"])
        self.assertEqual(w.events_until_end(), [])
        w.close()

    def test_selector_transitions(self):
        q = ("labelSelector="
             + urllib.parse.quote("!service.kubernetes.io/service-proxy-name"))
        code, r, body = self.s.get("/api/v1/services?" + q)
        rv = body["metadata"]["resourceVersion"]
        w = self.s.watch("/api/v1/services?watch=1&timeoutSeconds=3&%s&"
                         "resourceVersion=%s" % (q, rv))
        self.s.wait_watches(1, "services")
        labelled = svc("web", labels={
            "app": "web", "service.kubernetes.io/service-proxy-name": "x"})
        rv1 = self.s.put(labelled)["rv"]
        ev = w.next_event()
        self.assertEqual(ev["type"], "DELETED")
        self.assertEqual(ev["object"]["metadata"]["resourceVersion"], rv1)
        self.assertNotIn("service.kubernetes.io/service-proxy-name",
                         ev["object"]["metadata"]["labels"])
        self.s.put(svc("web", labels={"app": "web", "v": "3"}))
        ev = w.next_event()
        self.assertEqual(ev["type"], "ADDED")
        self.assertEqual(ev["object"]["metadata"]["labels"]["v"], "3")
        # A labelled service changing is invisible.
        self.s.put(svc("other-proxy", labels={
            "app": "o", "service.kubernetes.io/service-proxy-name": "o"}))
        self.s.put(svc("web", labels={"app": "web", "v": "4"}))
        ev = w.next_event()
        self.assertEqual((ev["type"], ev["object"]["metadata"]["name"]),
                         ("MODIFIED", "web"))
        w.close()

    def test_client_close_ends_idle_watch(self):
        w = self.s.watch("/api/v1/services?watch=1&resourceVersion=0")
        self.s.wait_watches(1, "services")
        w.close()
        self.s.wait_no_watches("services")

    def test_watch_list(self):
        w = self.s.watch("/api/v1/nodes?watch=1&sendInitialEvents=true&"
                         "resourceVersionMatch=NotOlderThan&"
                         "allowWatchBookmarks=true&timeoutSeconds=1")
        ev = w.next_event()
        self.assertEqual((ev["type"], ev["object"]["metadata"]["name"]),
                         ("ADDED", "node-1"))
        bm = w.next_event(skip_bookmarks=False)
        self.assertEqual(bm["type"], "BOOKMARK")
        self.assertEqual(bm["object"]["metadata"]["annotations"],
                         {"k8s.io/initial-events-end": "true"})
        w.close()

    def test_chunk_modes(self):
        code, r, body = self.s.get("/api/v1/services")
        rv = body["metadata"]["resourceVersion"]
        for i in range(3):
            self.s.put(svc("c%d" % i))
        path = ("/api/v1/services?watch=1&timeoutSeconds=1&resourceVersion="
                + rv)
        self.s.ctl("POST", "/control/chunking", {"mode": "coalesce"})
        w = self.s.watch(path)
        self.assertEqual(len(w.events_until_end()), 3)
        self.assertEqual(len(w.chunks), 1)
        w.close()
        self.s.ctl("POST", "/control/chunking", {"mode": "split", "max": 5})
        w = self.s.watch(path)
        evs = w.events_until_end()
        self.assertEqual([e["object"]["metadata"]["name"] for e in evs],
                         ["c0", "c1", "c2"])
        self.assertTrue(all(1 <= len(c) <= 5 for c in w.chunks))
        w.close()
        self.s.ctl("POST", "/control/chunking", {"mode": "random"})
        w = self.s.watch(path)
        self.assertEqual(len(w.events_until_end()), 3)
        joined = b"".join(w.chunks)
        bounds = {sum(len(c) for c in w.chunks[:i + 1])
                  for i in range(len(w.chunks))}
        ends = {i + 1 for i, b in enumerate(joined) if b == ord("\n")}
        self.assertTrue(bounds - ends, "some chunk ends inside an event")
        w.close()


class TestFaults(FakeApiTest):
    server_args = ("--objects", os.path.join(OBJECTS, "cluster.json"))

    def test_http_errors(self):
        self.s.ctl("POST", "/control/faults", {"type": "http_error",
                                               "code": 500, "count": 2,
                                               "resource": "services"})
        self.assertEqual(self.s.get("/api/v1/nodes")[0], 200)
        code, r, st = self.s.get("/api/v1/services")
        self.assertEqual((code, st["reason"]), (500, "InternalError"))
        self.assertEqual(self.s.get("/api/v1/services")[0], 500)
        self.assertEqual(self.s.get("/api/v1/services")[0], 200)
        self.s.ctl("POST", "/control/faults", {"type": "http_error",
                                               "code": 429, "count": 1})
        code, r, st = self.s.get("/api/v1/services")
        self.assertEqual((code, r.getheader("Retry-After")), (429, "1"))
        self.s.ctl("POST", "/control/faults", {"type": "http_error",
                                               "code": 410, "verb": "list",
                                               "seconds": 0.5})
        code, r, st = self.s.get("/api/v1/services")
        self.assertEqual((code, st["reason"]), (410, "Expired"))
        w = self.s.watch("/api/v1/services?watch=1&timeoutSeconds=1")
        self.assertEqual(w.status, 200)
        w.close()
        time.sleep(0.6)
        self.assertEqual(self.s.get("/api/v1/services")[0], 200)

    def test_stall(self):
        self.s.ctl("POST", "/control/faults", {"type": "stall",
                                               "mode": "headers",
                                               "seconds": 1})
        t0 = time.monotonic()
        w = self.s.watch("/api/v1/services?watch=1")
        self.assertEqual(w.status, 200)
        w.sock.settimeout(0.3)
        with self.assertRaises(socket.timeout):
            w.read_chunk()
        w.close()
        self.s.ctl("POST", "/control/faults", {"type": "stall",
                                               "mode": "silent",
                                               "seconds": 0.5})
        with self.assertRaises((http.client.RemoteDisconnected,
                                ConnectionError)):
            self.s.get("/api/v1/services")
        self.assertGreater(time.monotonic() - t0, 0.4)

    def test_stream_faults_on_open_watch(self):
        code, r, body = self.s.get("/api/v1/services")
        rv = body["metadata"]["resourceVersion"]
        w = self.s.watch("/api/v1/services?watch=1&resourceVersion=" + rv)
        self.s.wait_watches(1, "services")
        code, out = self.s.ctl("POST", "/control/watches/garbage",
                               {"lines": ["this is not json"]})
        self.assertEqual(out["watches"], 1)
        self.assertEqual(w.next_line(), b"this is not json")
        self.s.ctl("POST", "/control/watches/error", {"code": 500})
        ev = w.next_event()
        self.assertEqual((ev["type"], ev["object"]["code"]), ("ERROR", 500))
        self.assertIsNone(w.next_line())
        w.close()
        w = self.s.watch("/api/v1/services?watch=1&resourceVersion=" + rv)
        self.s.wait_watches(1, "services")
        self.s.ctl("POST", "/control/watches/drop", {"mode": "mid-event"})
        with self.assertRaises(EOFError):
            w.events_until_end()
        self.assertTrue(w.buf.startswith(b'{"type":'))
        w.close()
        w = self.s.watch("/api/v1/services?watch=1&resourceVersion=" + rv)
        self.s.wait_watches(1, "services")
        self.s.ctl("POST", "/control/watches/drop", {"mode": "reset"})
        with self.assertRaises((EOFError, ConnectionError)):
            w.events_until_end()
        w.close()
        code, st = self.s.ctl("GET", "/control/wait?open_watches=0&timeout=1")
        self.assertEqual(st["open_watches"]["services"], 0)

    def test_next_watch_faults(self):
        code, r, body = self.s.get("/api/v1/services")
        rv = body["metadata"]["resourceVersion"]
        for i in range(3):
            self.s.put(svc("d%d" % i))
        self.s.ctl("POST", "/control/faults", {"type": "watch_drop",
                                               "after_events": 2,
                                               "mode": "mid-event"})
        w = self.s.watch("/api/v1/services?watch=1&resourceVersion=" + rv)
        self.assertEqual(w.next_event()["object"]["metadata"]["name"], "d0")
        self.assertEqual(w.next_event()["object"]["metadata"]["name"], "d1")
        with self.assertRaises(EOFError):
            w.next_event()
        self.assertIn(b'"type":"ADDED"', w.buf)
        w.close()
        self.s.ctl("POST", "/control/faults", {"type": "watch_error",
                                               "code": 410,
                                               "message": "too old"})
        w = self.s.watch("/api/v1/services?watch=1&resourceVersion=" + rv)
        evs = w.events_until_end()
        self.assertEqual(evs[-1]["type"], "ERROR")
        self.assertEqual(evs[-1]["object"]["code"], 410)
        w.close()

    def test_list_raw(self):
        # Bad items go in front of the real ones; the list stays whole.
        self.s.ctl("POST", "/control/faults", {
            "type": "list_raw", "resource": "services",
            "items": ['{"metadata":{"name":"bad","namespace":"x"},'
                      '"spec":{"ports":{}}}'],
            "items_b64": [base64.b64encode(b'{"metadata":{"name":"u8",'
                                           b'"namespace":"x","annotations":'
                                           b'{"a":"\xff"}}}').decode()],
            "repeat": {"template": '{"metadata":{"name":"r{i}","namespace":'
                       '"bulk"},"spec":{"clusterIP":"{ip}"}}', "count": 3},
            "resource_version": "opaque-rv"})
        conn = self.s.connection()
        conn.request("GET", "/api/v1/services",
                     headers={"Authorization": "Bearer " + TOKEN})
        r = conn.getresponse()
        raw = r.read()
        conn.close()
        self.assertEqual(r.status, 200)
        self.assertIn(b'"a":"\xff"', raw)
        lst = json.loads(raw.decode("utf-8", "replace"))
        names = [i["metadata"]["name"] for i in lst["items"]]
        self.assertEqual(names[:5], ["bad", "u8", "r0", "r1", "r2"])
        self.assertIn("web", names)
        self.assertEqual(lst["items"][4]["spec"]["clusterIP"], "10.100.0.2")
        self.assertEqual(lst["metadata"]["resourceVersion"], "opaque-rv")
        # One request only: the next list is the real one.
        self.assertEqual(self.s.get("/api/v1/services")[2]["metadata"]
                         ["resourceVersion"], self.s.stats()["rv"])
        # A whole body, HTML, and a truncated real list.
        self.s.ctl("POST", "/control/faults", {
            "type": "list_raw", "body": "<html>login</html>",
            "content_type": "text/html"})
        code, r, body = self.s.get("/api/v1/services")
        self.assertEqual((code, body), (200, b"<html>login</html>"))
        self.s.ctl("POST", "/control/faults", {"type": "list_raw",
                                               "truncate": 30})
        conn = self.s.connection()
        conn.request("GET", "/apis/discovery.k8s.io/v1/endpointslices",
                     headers={"Authorization": "Bearer " + TOKEN})
        r = conn.getresponse()
        self.assertEqual(r.read(), b'{"kind":"EndpointSliceList","a')
        conn.close()
        # A gzip bomb: 2 MiB of spaces, then the list, in a few KiB.
        self.s.ctl("POST", "/control/faults", {"type": "list_raw",
                                               "gzip_spaces_mib": 2})
        conn = self.s.connection()
        conn.request("GET", "/api/v1/nodes",
                     headers={"Authorization": "Bearer " + TOKEN})
        r = conn.getresponse()
        zipped = r.read()
        conn.close()
        self.assertEqual(r.getheader("Content-Encoding"), "gzip")
        self.assertLess(len(zipped), 16384)
        plain = gzip.decompress(zipped)
        self.assertEqual(len(plain) - len(plain.lstrip()), 2 << 20)
        self.assertEqual(json.loads(plain)["kind"], "NodeList")

    def test_garbage_bytes(self):
        code, r, body = self.s.get("/api/v1/services")
        rv = body["metadata"]["resourceVersion"]
        w = self.s.watch("/api/v1/services?watch=1&resourceVersion=" + rv)
        self.s.wait_watches(1, "services")
        self.s.ctl("POST", "/control/watches/garbage",
                   {"lines_b64": [base64.b64encode(b"\xc3\x28").decode()]})
        self.assertEqual(w.next_line(), b"\xc3\x28")
        w.close()

    def test_stats_and_control(self):
        self.s.get("/api/v1/services?limit=500&resourceVersion=0")
        w = self.s.watch("/api/v1/services?watch=1&timeoutSeconds=1&"
                         "resourceVersion=1")
        w.close()
        st = self.s.stats(resource="services")
        self.assertEqual(st["counts"]["services"]["list"], 1)
        self.assertEqual(st["counts"]["services"]["watch"], 1)
        self.assertEqual(st["requests"][0]["params"],
                         {"limit": "500", "resourceVersion": "0"})
        self.assertEqual(st["tokens_seen"], [TOKEN])
        code, out = self.s.ctl("POST", "/control/objects",
                               raw=json.dumps(svc("web")).encode())
        self.assertEqual(code, 409)
        # A no-op update writes nothing: same RV, no event.
        rv = self.s.stats()["rv"]
        self.assertEqual(self.s.put(fixture("svc-web.json"))["rv"], rv)
        code, out = self.s.ctl("POST", "/control/bump", {"n": 5})
        self.assertEqual(int(out["rv"]), int(rv) + 5)
        with open(os.path.join(OBJECTS, "svc-web.json"), "rb") as f:
            code, body = self.s.ctl("POST", "/control/apply?prune=1",
                                    raw=f.read())
        self.assertEqual(len(body["deleted"]), 6)
        code, r, lst = self.s.get("/api/v1/services")
        self.assertEqual([i["metadata"]["name"] for i in lst["items"]],
                         ["web"])
        self.s.ctl("POST", "/control/stats/reset")
        self.assertEqual(self.s.stats()["requests"], [])


class TestTLS(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if shutil.which("openssl") is None:
            raise unittest.SkipTest("no openssl")
        cls.tmp = tempfile.mkdtemp(prefix="fakeapi-tls.")
        cls.certs = fakeapi.gen_certs(os.path.join(cls.tmp, "certs"),
                                      ["localhost", "10.0.0.1"])
        cls.kc = os.path.join(cls.tmp, "kubeconfig")
        cls.s = Server(cls.tmp, "--write-kubeconfig", cls.kc,
                       "--ca-cert", cls.certs["ca"], tls=cls.certs)

    @classmethod
    def tearDownClass(cls):
        cls.s.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_verified(self):
        code, r, body = self.s.get("/api/v1/services")
        self.assertEqual((code, body["kind"]), (200, "ServiceList"))
        self.assertEqual(self.s.get("/api/v1/services", token=None)[0], 401)
        w = self.s.watch("/api/v1/nodes?watch=1&timeoutSeconds=1&"
                         "allowWatchBookmarks=true")
        self.assertEqual(w.next_event(skip_bookmarks=False)["type"],
                         "BOOKMARK")
        w.close()
        w = self.s.watch("/api/v1/nodes?watch=1")
        self.s.wait_watches(1, "nodes")
        w.close()
        self.s.wait_no_watches("nodes")

    def test_wrong_ca_and_name(self):
        ctx = ssl.create_default_context(cafile=self.certs["other-ca"])
        with self.assertRaises(ssl.SSLCertVerificationError):
            with socket.create_connection(("127.0.0.1", self.s.port),
                                          timeout=TIMEOUT) as sock:
                ctx.wrap_socket(sock, server_hostname="127.0.0.1")
        ctx = ssl.create_default_context(cafile=self.certs["ca"])
        with self.assertRaises(ssl.SSLCertVerificationError):
            with socket.create_connection(("127.0.0.1", self.s.port),
                                          timeout=TIMEOUT) as sock:
                ctx.wrap_socket(sock, server_hostname="wrong.example")
        for name in ("localhost", "10.0.0.1"):
            with socket.create_connection(("127.0.0.1", self.s.port),
                                          timeout=TIMEOUT) as sock:
                ctx.wrap_socket(sock, server_hostname=name).close()
        # The server still works after failed handshakes.
        self.assertEqual(self.s.get("/api/v1/nodes")[0], 200)

    def test_kubeconfig(self):
        with open(self.kc) as f:
            text = f.read()
        self.assertTrue(text.startswith("apiVersion: v1\nclusters:\n"))
        self.assertIn("    server: https://127.0.0.1:%d\n" % self.s.port, text)
        self.assertIn('    token: "%s"\n' % TOKEN, text)
        self.assertIn("current-context: fakeapi\n", text)
        data = [ln.split(": ", 1)[1] for ln in text.splitlines()
                if "certificate-authority-data" in ln][0]
        with open(self.certs["ca"], "rb") as f:
            self.assertEqual(base64.b64decode(data), f.read())



class TestTLSFaults(unittest.TestCase):
    """POST /control/tls: what the API port serves changes at once, for new
    connections, and every open one is closed."""

    @classmethod
    def setUpClass(cls):
        if shutil.which("openssl") is None:
            raise unittest.SkipTest("no openssl")
        cls.tmp = tempfile.mkdtemp(prefix="fakeapi-tlsfault.")
        d = os.path.join(cls.tmp, "certs")
        cls.certs = fakeapi.gen_certs(d, ["localhost"])
        cls.certs.update(fakeapi.gen_fault_certs(d))
        cls.s = Server(cls.tmp, tls=cls.certs)

    @classmethod
    def tearDownClass(cls):
        cls.s.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def tearDown(self):
        self.assertEqual(self.s.ctl("POST", "/control/tls", {})[0], 200)

    def tls(self, spec):
        code, out = self.s.ctl("POST", "/control/tls", spec)
        self.assertEqual(code, 200, out)
        return out

    def handshake(self, ctx, name="localhost"):
        """Handshake and one GET /version; the response's status."""
        with socket.create_connection(("127.0.0.1", self.s.port),
                                      timeout=TIMEOUT) as sock:
            with ctx.wrap_socket(sock, server_hostname=name) as t:
                t.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n"
                          b"Connection: close\r\n\r\n")
                return int(t.recv(4096).split()[1])

    def test_expired_and_wrong_name(self):
        w = self.s.watch("/api/v1/nodes?watch=1")
        self.s.wait_watches(1, "nodes")
        self.assertGreaterEqual(self.tls({"cert": self.certs["expired"]})
                                ["closed"], 1)
        with self.assertRaises(EOFError):
            while True:
                w.read_chunk()
        w.close()
        ctx = ssl.create_default_context(cafile=self.certs["ca"])
        with self.assertRaisesRegex(ssl.SSLCertVerificationError,
                                    "expired"):
            self.handshake(ctx)
        self.tls({"cert": self.certs["wrong_name"]})
        with self.assertRaisesRegex(ssl.SSLCertVerificationError,
                                    "match|mismatch"):
            self.handshake(ctx)
        self.assertEqual(self.handshake(ctx, "wrong-name.invalid"), 200)

    def test_client_certificate_required(self):
        self.tls({"client_ca": self.certs["client_ca"]})
        ctx = ssl.create_default_context(cafile=self.certs["ca"])
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            self.handshake(ctx)
        ctx.load_cert_chain(self.certs["client"], self.certs["client_key"])
        self.assertEqual(self.handshake(ctx), 200)

    def test_tls_1_0_only(self):
        self.tls({"max_version": "TLSv1"})
        ctx = ssl.create_default_context(cafile=self.certs["ca"])
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        with self.assertRaises(ssl.SSLError):
            self.handshake(ctx)
        # The server records a failed handshake once it has drained the
        # connection, which may be after the client gave up.
        deadline = time.monotonic() + 5
        while True:
            last = self.s.stats()["connections"][-1]
            if last["error"] is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertIn("unsupported protocol", (last["error"] or "").lower())

    def test_plain_http_and_back(self):
        out = self.tls({"plain": True})
        self.assertEqual(out["scheme"], "http")
        conn = http.client.HTTPConnection("127.0.0.1", self.s.port,
                                          timeout=TIMEOUT)
        conn.request("GET", "/version")
        self.assertEqual(conn.getresponse().status, 200)
        conn.close()
        self.assertEqual(self.tls({})["scheme"], "https")
        self.assertEqual(self.s.get("/version")[0], 200)

    def test_connections_log_and_wait(self):
        self.assertEqual(self.s.ctl("POST", "/control/stats/reset")[0], 200)
        self.assertEqual(self.s.stats()["connections"], [])
        self.assertEqual(self.s.get("/version")[0], 200)
        code, _ = self.s.ctl("GET", "/control/wait?connections=1&timeout=5")
        self.assertEqual(code, 200)
        c = self.s.stats()["connections"]
        self.assertEqual(len(c), 1)
        self.assertTrue(c[0]["tls"].startswith("TLSv1."))
        self.assertIsNone(c[0]["error"])
        self.assertGreater(c[0]["mono"], 0)


if __name__ == "__main__":
    unittest.main()
