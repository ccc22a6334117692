#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Everything CI checks, from a fresh checkout, as root on Debian 12:
#   1. packaging/install-deps            (skipped with --no-deps)
#   2. autoreconf -fi, then tests/fuzz/ci.sh (each parser fuzzed briefly)
#   3. _build/werror:     configure --enable-werror, make, make check
#      then tests/valgrind-e2e.sh (kuproxy under memcheck) with it
#   4. _build/sanitizers: configure --enable-sanitizers (ASan+UBSan),
#                         make, make check
#   5. make distcheck (from _build/werror)
# When make check fails, test-suite.log and the log of every failing test
# are printed.  Exits 0 only if every step passed; the last line is a
# one-line summary.  KUPROXY_BUILD_DIR moves the build trees elsewhere.
set -u

srcdir=$(cd "$(dirname "$0")/.." && pwd)
builddir=${KUPROXY_BUILD_DIR:-$srcdir/_build}
jobs=$(nproc 2>/dev/null || echo 2)
install_deps=yes
for arg in "$@"; do
	case $arg in
	--no-deps) install_deps=no ;;
	*) echo "usage: $0 [--no-deps]" >&2; exit 2 ;;
	esac
done

started=$(date +%s)
summary=""
failed=no

# step NAME COMMAND...: run one step and record how it went.
step() {
	_name=$1
	shift
	echo
	echo "==> $_name"
	_t0=$(date +%s)
	if "$@"; then
		_r=ok
	else
		_r=FAILED
		failed=yes
	fi
	summary="$summary $_name:$_r($(($(date +%s) - _t0))s)"
	echo "==> $_name: $_r"
	[ "$_r" = ok ]
}

finish() {
	_verdict=PASS
	[ "$failed" = no ] || _verdict=FAIL
	echo
	echo "run-all: $_verdict in $(($(date +%s) - started))s:$summary"
	[ "$failed" = no ]
	exit $?
}

bootstrap() {
	cd "$srcdir" || return 1
	# An in-tree ./configure blocks out-of-tree builds of the same tree.
	if [ -f config.status ]; then
		echo "the source tree is configured in place; make distclean first"
		make distclean >/dev/null || return 1
	fi
	autoreconf -fi
}

# show_test_logs DIR: test-suite.log, then each failing test's own log.
show_test_logs() {
	if [ -f "$1/test-suite.log" ]; then
		echo "---- $1/test-suite.log"
		cat "$1/test-suite.log"
	fi
	find "$1" -name '*.trs' | sort | while read -r _trs; do
		if grep -qE '^:test-result: (FAIL|ERROR|XPASS)' "$_trs"; then
			echo "---- ${_trs%.trs}.log"
			cat "${_trs%.trs}.log"
		fi
	done
}

# build NAME CONFIGURE-FLAGS...: configure and make in $builddir/NAME.
build() {
	_dir="$builddir/$1"
	shift
	rm -rf "$_dir" && mkdir -p "$_dir" && cd "$_dir" &&
	    "$srcdir/configure" "$@" && make -j"$jobs"
}

check() {
	cd "$builddir/$1" || return 1
	if ! make -j"$jobs" check; then
		show_test_logs "$builddir/$1"
		return 1
	fi
}

# Like make check, which skips e2e tests without root (exit 77).
valgrind_e2e() {
	sh "$srcdir/tests/valgrind-e2e.sh" "$@"
	_rc=$?
	if [ "$_rc" = 77 ]; then
		echo "valgrind-e2e: skipped (needs root)"
		return 0
	fi
	return "$_rc"
}

distcheck() {
	cd "$builddir/werror" || return 1
	if ! make -j"$jobs" distcheck DISTCHECK_CONFIGURE_FLAGS=--enable-werror
	then
		for _d in "$builddir"/werror/kuproxy-*/_build/sub; do
			[ -d "$_d" ] && show_test_logs "$_d"
		done
		return 1
	fi
}

if [ "$install_deps" = yes ]; then
	step install-deps "$srcdir/packaging/install-deps" || finish
fi
step autoreconf bootstrap || finish
# Every parser under libFuzzer (clang, ASan+UBSan), 20 s each.
step fuzz env FUZZ_BUILD_DIR="$builddir/fuzz" "$srcdir/tests/fuzz/ci.sh"

if step build-werror build werror --enable-werror; then
	step check-werror check werror
	# kuproxy under valgrind's memcheck through a set of e2e tests.
	step valgrind-e2e valgrind_e2e --builddir "$builddir/werror"
	werror_built=yes
else
	werror_built=no
fi
if step build-sanitizers build sanitizers --enable-sanitizers; then
	step check-sanitizers check sanitizers
fi
if [ "$werror_built" = yes ]; then
	step distcheck distcheck
fi
finish
