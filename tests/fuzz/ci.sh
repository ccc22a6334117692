#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# The fuzzing step of CI: every fuzz target for a short, bounded time
# (default 20 s each, $FUZZ_CI_SECONDS), built and run by run.sh.  Exits
# non-zero on any crash, leak, timeout, out-of-memory or undefined
# behaviour, and when clang or libFuzzer is missing (packaging/install-deps
# installs clang and libclang-rt-14-dev), so that CI cannot pass without
# having fuzzed.  The corpus replay without clang is part of make check.
set -u

here=$(cd "$(dirname "$0")" && pwd)
exec "$here/run.sh" -f -t "${FUZZ_CI_SECONDS:-20}" "$@"
