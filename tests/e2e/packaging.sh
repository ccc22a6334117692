#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# The packaging, end to end: build the .deb with packaging/build-deb
# (lintian must report no errors), unpack it into a scratch root, and check
# what a user gets: the installed binary runs and has the tree's version,
# the man page, the default configuration (a conffile kuproxy accepts) and
# the systemd unit (systemd-analyze verify, and the properties kuproxy
# needs) are where they belong.  Then the Dockerfile (structure, stages,
# COPY sources, runtime libraries), the Kubernetes manifests (fields, RBAC
# against the requests in watch/), the man page against --help, and
# `make install DESTDIR=...` from the build directory.
#
# No root and no namespaces needed; nothing outside a temp dir is written.
# It also runs inside make distcheck: build-deb copies the (read-only)
# unpacked tarball before building.  Exit: 0 pass, 1 fail, 77 skip (a
# packaging tool is missing: packaging/install-deps installs them all).
#
# Environment: KUPROXY_BIN (the built binary; its directory is the build
# directory), KUPROXY_SRCDIR, KPT_KEEP=1 keeps the temp dir, KPT_PYTHON
# (default /usr/bin/python3, which needs python3-yaml).
set -u

: "${KUPROXY_SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${KUPROXY_BIN:=$(pwd)/kuproxy}"
srcdir=$KUPROXY_SRCDIR
builddir=$(cd "$(dirname "$KUPROXY_BIN")" && pwd)
checks=$srcdir/tests/packaging
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

ok() {
	echo "ok: $*"
}

py=${KPT_PYTHON:-/usr/bin/python3}
[ -x "$py" ] || py=$(command -v python3 || echo python3)
missing=""
for tool in "$py" dpkg-buildpackage dpkg-parsechangelog dh lintian \
    help2man objdump make; do
	command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if command -v "$py" >/dev/null 2>&1 && ! "$py" -c 'import yaml' 2>/dev/null
then
	missing="$missing python3-yaml"
fi
if [ -n "$missing" ]; then
	echo "SKIP: missing:$missing (packaging/install-deps installs them)"
	exit 77
fi
[ -x "$KUPROXY_BIN" ] || fail "no kuproxy binary at $KUPROXY_BIN"

T=$(mktemp -d "${TMPDIR:-/tmp}/kpt-packaging.XXXXXX") || exit 99
cleanup() {
	if [ "${KPT_KEEP:-0}" = 1 ]; then
		echo "kept $T"
	else
		rm -rf "$T"
	fi
}
trap cleanup EXIT

# run_check WHAT SCRIPT ARGS...: one of the tests/packaging checks.
run_check() {
	_what=$1
	_script=$2
	shift 2
	if ! "$py" "$checks/$_script" "$@" >"$T/check.log" 2>&1; then
		cat "$T/check.log" >&2
		fail "$_what"
	fi
	cat "$T/check.log"
}

version=$("$KUPROXY_BIN" --version | sed -n '1s/^kuproxy //p')
deb_version=$(dpkg-parsechangelog -l "$srcdir/packaging/debian/changelog" \
    -S Version)
[ "$version" = "$deb_version" ] ||
    fail "packaging/debian/changelog is at $deb_version, kuproxy at $version"
ok "debian/changelog version $deb_version is kuproxy's"

# 1. The package.  nocheck: the unit tests run in make check already.
# One compiler at a time, niced: make check runs timing-sensitive tests
# next to this one.
t0=$(date +%s)
if ! DEB_BUILD_OPTIONS="nocheck parallel=1" DEB_BUILD_PROFILES=nocheck \
    timeout 900 nice -n 10 "$srcdir/packaging/build-deb" --outdir "$T/deb" \
    >"$T/build-deb.log" 2>&1
then
	cat "$T/build-deb.log" >&2
	fail "packaging/build-deb"
fi
ok "built $(cd "$T/deb" && echo ./*.deb) in $(($(date +%s) - t0))s"
if grep -q '^E: ' "$T/deb/kuproxy_${version}_lintian.txt"; then
	cat "$T/deb/kuproxy_${version}_lintian.txt" >&2
	fail "lintian reported errors"
fi
ok "lintian: no errors, $(grep -c '^[WIPX]: ' \
    "$T/deb/kuproxy_${version}_lintian.txt") other tags"

deb=$(ls "$T"/deb/kuproxy_"$version"_*.deb)
root=$T/root
dpkg-deb -x "$deb" "$root" || fail "dpkg-deb -x"
dpkg-deb -e "$deb" "$T/control" || fail "dpkg-deb -e"
for f in usr/sbin/kuproxy usr/share/man/man8/kuproxy.8.gz \
    etc/kuproxy/config.yaml lib/systemd/system/kuproxy.service; do
	[ -f "$root/$f" ] || fail "the package has no /$f"
done
ok "the package has /usr/sbin/kuproxy, kuproxy.8.gz," \
    "/etc/kuproxy/config.yaml, kuproxy.service"
grep -qx /etc/kuproxy/config.yaml "$T/control/conffiles" ||
    fail "/etc/kuproxy/config.yaml is not a conffile"
grep -q 'adduser .*--system' "$T/control/postinst" ||
    fail "postinst does not create the kuproxy user"
grep -q 'deb-systemd-helper enable' "$T/control/postinst" ||
    fail "postinst does not enable the unit (dh_installsystemd)"
depends=$(dpkg-deb -f "$deb" Depends)
case ", $depends," in
*", iptables,"*) ;;
*) fail "Depends ($depends) lacks iptables" ;;
esac
ok "conffile, system user, unit enabled, Depends: $depends"

installed_version=$("$root/usr/sbin/kuproxy" --version |
    sed -n '1s/^kuproxy //p')
[ "$installed_version" = "$version" ] ||
    fail "the installed kuproxy --version says $installed_version"
ok "installed kuproxy --version: $installed_version"

# 2. The configuration file and the unit, as installed.
run_check "the packaged config.yaml" check_config.py \
    "$root/usr/sbin/kuproxy" "$root/etc/kuproxy/config.yaml"
run_check "the packaged unit" check_unit.py "$root" \
    /lib/systemd/system/kuproxy.service /etc/kuproxy/config.yaml
if command -v systemd-analyze >/dev/null 2>&1; then
	# verify checks that the programs exist and that man finds the
	# Documentation= page: point both into the scratch root.
	mkdir -p "$T/unit"
	sed "s|/usr/sbin/kuproxy|$root/usr/sbin/kuproxy|" \
	    "$root/lib/systemd/system/kuproxy.service" >"$T/unit/kuproxy.service"
	MANPATH=$root/usr/share/man systemd-analyze verify \
	    "$T/unit/kuproxy.service" >"$T/verify.log" 2>&1
	rc=$?
	# Unknown keys and bad values are only warnings (exit 0), so any
	# output at all is a failure.
	if [ "$rc" -ne 0 ] || [ -s "$T/verify.log" ]; then
		cat "$T/verify.log" >&2
		fail "systemd-analyze verify kuproxy.service"
	fi
	ok "systemd-analyze verify: clean"
	systemd-analyze security --offline=yes "$T/unit/kuproxy.service" \
	    2>/dev/null | tail -n 1 | sed 's/^/info: systemd-analyze security: /'
else
	echo "SKIP (part): no systemd-analyze; the unit is not verified"
fi

# 3. The manual against --help: the packaged one, and the build's.
run_check "kuproxy.8 in the package" check_manpage.py \
    "$root/usr/sbin/kuproxy" "$root/usr/share/man/man8/kuproxy.8.gz"

# 4. The container image and the Kubernetes manifests.
run_check "the Dockerfile" check_dockerfile.py "$srcdir" --root "$root" \
    --binary "$root/usr/sbin/kuproxy"
run_check "the Kubernetes manifests" check_manifests.py "$srcdir" \
    --kuproxy "$root/usr/sbin/kuproxy"

# 5. make install from the build directory.  A make running this test
# must not hand its jobserver or command-line variables (TESTS=...) down.
if ! env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
    make -C "$builddir" install DESTDIR="$T/inst" >"$T/install.log" 2>&1
then
	cat "$T/install.log" >&2
	fail "make install DESTDIR=..."
fi
for pattern in '*/sbin/kuproxy' '*/man8/kuproxy.8' '*/kuproxy/config.yaml'; do
	found=$(find "$T/inst" -path "$pattern" -type f | head -n 1)
	[ -n "$found" ] || fail "make install did not install $pattern"
	echo "  installed ${found#"$T/inst"}"
done
if grep -q '^systemdsystemunitdir = .' "$builddir/Makefile"; then
	found=$(find "$T/inst" -name kuproxy.service -type f | head -n 1)
	[ -n "$found" ] || fail "make install did not install kuproxy.service"
	echo "  installed ${found#"$T/inst"}"
	conf=$(find "$T/inst" -path '*/kuproxy/config.yaml' -type f | head -n 1)
	run_check "kuproxy.service from make install" check_unit.py \
	    "$T/inst" "${found#"$T/inst"}" "${conf#"$T/inst"}"
fi
run_check "kuproxy.8 from make install" check_manpage.py "$KUPROXY_BIN" \
    "$(find "$T/inst" -path '*/man8/kuproxy.8' -type f | head -n 1)"
ok "make install DESTDIR=...: binary, man page, config, unit"
echo "PASS"
