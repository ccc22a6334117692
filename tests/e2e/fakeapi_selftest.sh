#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# The fake Kubernetes API server's own self-test (tests/fakeapi): list
# paging, watch, bookmarks, 410s, selectors, auth, TLS and faults, checked
# against the documented protocol before any kuproxy test relies on it.
# Needs python3 (standard library) and, for the TLS part, openssl.  No root,
# no namespaces: everything listens on 127.0.0.1.  Exit: 0 pass, 1 fail,
# 77 skip (no python3).
: "${KUPROXY_SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
py=${KPT_PYTHON:-/usr/bin/python3}
if [ ! -x "$py" ]; then
	py=$(command -v python3) || { echo "SKIP: no python3"; exit 77; }
fi
cd "$KUPROXY_SRCDIR/tests/fakeapi" || exit 99
# The source tree may be read-only (distcheck): no __pycache__ there.
PYTHONDONTWRITEBYTECODE=1 exec timeout 120 "$py" -m unittest -v test_fakeapi
