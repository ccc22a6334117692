#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
#
# Services files for the benchmark suite, in the shape
# `kubectl get services,endpointslices -A -o json` prints (a v1 List of
# Service and EndpointSlice objects, with only the fields kuproxy reads).
#
# This module owns the two kinds of file bench/run feeds kuproxy: the data
# plane file (one service per benchmark backend, each with one endpoint)
# and the control plane files (N services of M endpoints each, with the
# edits the suite times: one endpoint moved, one service added).  It writes
# files and nothing else; starting kuproxy and timing it is bench/run's job.
#
# Usage:
#   gen_services.py dataplane BACKEND_IP OUT
#   gen_services.py scale N_SERVICES N_ENDPOINTS OUT [--edit-endpoint]
#       [--add-service]
#   gen_services.py api-faults N_SERVICES N_ENDPOINTS OUT
#   gen_services.py api-object edit-endpoint|add-service|add-slice N_ENDPOINTS OUT
# --edit-endpoint replaces the last endpoint of service 0 with a new
# address; --add-service appends one service (svc-new) with its slice.
#
# For the API source (tests/fakeapi/fakeapi.py): api-faults writes two
# list_raw faults that make the next list of services and of
# endpointslices answer with N services of M endpoints each (the fake
# server would take minutes to store 10,000 services one by one: it checks
# each new one against all others), in the same shape as `scale`; api-object
# writes the object the control interface then PUTs: service 0's slice with
# its last endpoint moved, or the new service svc-new, or svc-new's slice.
import json
import os
import sys


def service(ns, name, cluster_ip, ports):
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip],
            "ports": [{"name": pname, "port": port, "protocol": proto,
                       "targetPort": target}
                      for pname, port, proto, target in ports],
            "sessionAffinity": "None",
        },
    }


def slice_(ns, name, ports, addresses):
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name + "-0", "namespace": ns,
                     "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"name": pname, "port": target, "protocol": proto}
                  for pname, _, proto, target in ports],
        "endpoints": [{"addresses": [a],
                       "conditions": {"ready": True, "serving": True,
                                      "terminating": False}}
                      for a in addresses],
    }


def dump(items, out):
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f,
                  separators=(",", ":"))
    # Renamed into place, as editors do, so that kuproxy's watch on the
    # directory sees one complete file.
    os.rename(tmp, out)


def dataplane(backend, out):
    # name, port, protocol, target port: the ports bench/run's backends use.
    svcs = [
        ("iperf", [("iperf", 5201, "TCP", 5201)]),
        ("http", [("http", 80, "TCP", 8080)]),
        ("udp", [("udp", 53, "UDP", 5353)]),
        ("hold", [("hold", 9000, "TCP", 9000)]),
    ]
    items = []
    for i, (name, ports) in enumerate(svcs):
        items.append(service("bench", name, "10.96.0.%d" % (10 + i), ports))
        items.append(slice_("bench", name, ports, [backend]))
    dump(items, out)


def scale_address(svc, ep):
    # Endpoints on loopback addresses of the benchmark namespace, distinct
    # per service and endpoint; no traffic is sent to them.
    n = svc * 128 + ep
    return "127.%d.%d.%d" % (1 + n // 65536, (n // 256) % 256, n % 256)


def scale(n_svc, n_ep, out, edit_endpoint, add_service):
    items = []
    ports = [("http", 80, "TCP", 8080)]
    for i in range(n_svc):
        name = "svc-%d" % i
        j = i + 1
        cip = "10.%d.%d.%d" % (96 + j // 65536, (j // 256) % 256, j % 256)
        addrs = [scale_address(i, e) for e in range(n_ep)]
        if edit_endpoint and i == 0:
            addrs[-1] = "127.254.0.1"
        items.append(service("scale", name, cip, ports))
        items.append(slice_("scale", name, ports, addrs))
    if add_service:
        items.append(service("scale", "svc-new", "10.200.0.1", ports))
        items.append(slice_("scale", "svc-new", ports, ["127.254.0.2"]))
    dump(items, out)


def api_faults(n_svc, n_ep, out):
    # Lists carry no kind on their items, as the real server's.  {i} is the
    # item's number and {ip} a distinct address: the service's cluster IP.
    svc = service("scale", "svc-{i}", "{ip}", [("http", 80, "TCP", 8080)])
    sl = slice_("scale", "svc-{i}", [("http", 80, "TCP", 8080)],
                [scale_address(0, e) for e in range(n_ep)])
    for obj in (svc, sl):
        del obj["kind"], obj["apiVersion"]
    faults = [
        {"type": "list_raw", "resource": "services", "count": 1,
         "repeat": {"template": json.dumps(svc, separators=(",", ":")),
                    "count": n_svc}},
        {"type": "list_raw", "resource": "endpointslices", "count": 1,
         "repeat": {"template": json.dumps(sl, separators=(",", ":")),
                    "count": n_svc}},
    ]
    with open(out, "w") as f:
        json.dump(faults, f, separators=(",", ":"))


def api_object(what, n_ep, out):
    ports = [("http", 80, "TCP", 8080)]
    if what == "edit-endpoint":
        addrs = [scale_address(0, e) for e in range(n_ep)]
        addrs[-1] = "127.254.0.1"
        obj = slice_("scale", "svc-0", ports, addrs)
    elif what == "add-service":
        obj = service("scale", "svc-new", "10.200.0.1", ports)
    else:
        obj = slice_("scale", "svc-new", ports, ["127.254.0.2"])
    with open(out, "w") as f:
        json.dump(obj, f, separators=(",", ":"))


def main(argv):
    if len(argv) >= 3 and argv[0] == "dataplane":
        dataplane(argv[1], argv[2])
    elif len(argv) >= 4 and argv[0] == "scale":
        scale(int(argv[1]), int(argv[2]), argv[3],
              "--edit-endpoint" in argv[4:], "--add-service" in argv[4:])
    elif len(argv) >= 4 and argv[0] == "api-faults":
        api_faults(int(argv[1]), int(argv[2]), argv[3])
    elif len(argv) >= 4 and argv[0] == "api-object":
        api_object(argv[1], int(argv[2]), argv[3])
    else:
        sys.exit(__doc__ or "usage: see the comment at the top")


if __name__ == "__main__":
    main(sys.argv[1:])
