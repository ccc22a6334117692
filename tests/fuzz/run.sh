#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Build the fuzz targets with clang and libFuzzer (ASan + UBSan) from the
# sources, and fuzz each for a bounded time.
#
#   tests/fuzz/run.sh [-f] [-t SECONDS] [TARGET...]
#
# TARGET is one of yamljson decode watch_stream kubeconfig config_file
# flags (default: all, one after the other); SECONDS per target, default
# 30 (or $FUZZ_SECONDS).  The parser sources are compiled here with
# -fsanitize=fuzzer-no-link,address,undefined: a libkuproxy.a built by gcc
# carries no coverage for libFuzzer to follow.
#
# The seed corpus in tests/fuzz/corpus/TARGET is only read; inputs that
# reach new code go to a scratch corpus in the build directory, kept
# between runs.  A crash, leak, timeout or out-of-memory input is written
# to BUILD/findings/ and makes the script exit 1 after the remaining
# targets ran.  Findings of earlier runs count too until removed, unless
# -f forgets them (CI judges one run).  To keep one as a regression test:
# minimise it (BUILD/fuzz_TARGET -minimize_crash=1 -runs=10000 FILE), fix
# the parser, and copy the input into tests/fuzz/corpus/TARGET/, which
# make check replays.
#
# Environment: FUZZ_BUILD_DIR (default ${KUPROXY_BUILD_DIR:-_build}/fuzz),
# FUZZ_CC (default clang-14, else clang), FUZZ_SECONDS.
# Exits 0 when nothing was found, 1 on a finding, 2 when it cannot build.
set -u

srcdir=$(cd "$(dirname "$0")/../.." && pwd)
fuzzdir=$srcdir/tests/fuzz
builddir=${FUZZ_BUILD_DIR:-${KUPROXY_BUILD_DIR:-$srcdir/_build}/fuzz}
seconds=${FUZZ_SECONDS:-30}
all_targets="yamljson decode watch_stream kubeconfig config_file flags"

# The parser sources the targets exercise, and what they need to link.
lib_sources="base/log.c base/svc.c base/yamljson.c watch/decode.c watch/list_stream.c
	watch/informer.c watch/kubeconfig.c conf/flags.c conf/config_file.c
	conf/parse.c"
pkgs="json-c yaml-0.1 libcurl libbsd"

die() {
	echo "fuzz: $*" >&2
	exit 2
}

forget=no
while getopts ft: opt; do
	case $opt in
	f) forget=yes ;;
	t) seconds=$OPTARG ;;
	*) echo "usage: $0 [-f] [-t SECONDS] [TARGET...]" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
targets=${*:-$all_targets}
case $seconds in
''|*[!0-9]*) die "-t wants a number of seconds, not \"$seconds\"" ;;
esac
for t in $targets; do
	[ -f "$fuzzdir/fuzz_$t.c" ] || die "no target \"$t\" (one of: $all_targets)"
done

if [ -z "${FUZZ_CC:-}" ]; then
	if command -v clang-14 >/dev/null 2>&1; then
		FUZZ_CC=clang-14
	else
		FUZZ_CC=clang
	fi
fi
command -v "$FUZZ_CC" >/dev/null 2>&1 ||
    die "$FUZZ_CC not found: install clang and libclang-rt-14-dev"
pkg-config --exists $pkgs || die "pkg-config cannot find: $pkgs"

mkdir -p "$builddir/obj/tests/fuzz" "$builddir/corpus" \
    "$builddir/findings" || die "cannot make $builddir"
cd "$builddir" || die "cannot enter $builddir"

# config.h comes from the project's own configure, run once here.
if [ ! -f config.h ]; then
	echo "fuzz: configuring $builddir for config.h"
	"$srcdir/configure" -q CC="$FUZZ_CC" >configure.log 2>&1 ||
	    die "configure failed; see $builddir/configure.log"
fi

# UBSan reports stop the run (halt_on_error below); they stay recoverable
# in the code only so that ubsan.supp can silence a known one.
san="-fsanitize=address,undefined"
cflags="-g -O1 -fno-omit-frame-pointer $san -D_GNU_SOURCE
	-I$builddir -I$srcdir $(pkg-config --cflags $pkgs)"
libs=$(pkg-config --libs $pkgs)

# compile SRC: SRC (relative to srcdir) into obj/.  Always: a few seconds,
# and no stale object after a header changed.
compile() {
	_o=obj/${1%.c}.o
	mkdir -p "$(dirname "$_o")"
	# shellcheck disable=SC2086
	$FUZZ_CC $cflags -fsanitize=fuzzer-no-link -c -o "$_o" \
	    "$srcdir/$1" || return 1
	objs="$objs $_o"
}

objs=""
for s in $lib_sources tests/fuzz/fuzz_util.c; do
	compile "$s" || die "cannot compile $s"
done
lib_objs=$objs
for t in $targets; do
	objs=""
	compile "tests/fuzz/fuzz_$t.c" || die "cannot compile fuzz_$t.c"
	# shellcheck disable=SC2086
	$FUZZ_CC $cflags -fsanitize=fuzzer -o "fuzz_$t" $objs $lib_objs \
	    $libs || die "cannot link fuzz_$t"
done

[ "$forget" = yes ] && rm -f findings/*
found=no
for t in $targets; do
	mkdir -p "corpus/$t"
	dict=""
	[ -f "$fuzzdir/dict/$t.dict" ] && dict="-dict=$fuzzdir/dict/$t.dict"
	echo "fuzz: $t for ${seconds}s"
	# -close_fd_mask=2 silences the parsers' log lines; libFuzzer and
	# the sanitizers report on a copy of stderr.  timeout(1) bounds a
	# target that stops checking its clock.
	# shellcheck disable=SC2086
	ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
	UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1:suppressions=$fuzzdir/ubsan.supp} \
	timeout -k 10 $((seconds + 120)) "./fuzz_$t" \
	    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
	    -close_fd_mask=2 -print_final_stats=1 \
	    -artifact_prefix="$builddir/findings/$t-" $dict \
	    "corpus/$t" "$fuzzdir/corpus/$t" >"$t.log" 2>&1
	rc=$?
	grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done)' \
	    "$t.log"
	if [ "$rc" -ne 0 ]; then
		found=yes
		echo "fuzz: $t: FINDING (exit $rc); the report:"
		grep -E -A40 '^==[0-9]+==|runtime error|ERROR: libFuzzer' \
		    "$t.log" | head -n 60
	fi
done
artifacts=$(ls findings 2>/dev/null)
if [ -n "$artifacts" ]; then
	found=yes
	echo "fuzz: inputs in $builddir/findings:"
	for a in $artifacts; do
		echo "  $a   (replay: $builddir/fuzz_${a%%-*} $builddir/findings/$a)"
	done
fi
if [ "$found" = yes ]; then
	echo "fuzz: FAILED"
	exit 1
fi
echo "fuzz: ok ($targets: ${seconds}s each, no finding)"
exit 0
