#!/usr/bin/env bash
# Build the real Asterisk 22 used by tests/real/ once per machine, into a cache keyed by the
# tarball's sha256 (outside the clone). Prints the install prefix on its last line.
#
#   scripts/build_asterisk.sh [TARBALL]
#
# TARBALL defaults to ../shared/asterisk/src/asterisk-*.tar.xz beside the clone. The cache root
# is $DIALER_ASTERISK_CACHE (default ~/.cache/bank-dialer/asterisk). The Debian packages it needs
# are installed by .ci/run (see ../shared/asterisk/BUILD.md for the facts behind every step).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
tarball="${1:-}"
if [ -z "$tarball" ]; then
  tarball="$(ls "$here"/../shared/asterisk/src/asterisk-*.tar.xz 2>/dev/null | head -n1 || true)"
fi
if [ -z "$tarball" ] || [ ! -f "$tarball" ]; then
  echo "build_asterisk: no Asterisk tarball (looked in ../shared/asterisk/src/)" >&2
  exit 3
fi
sha="$(sha256sum "$tarball" | cut -c1-16)"
cache="${DIALER_ASTERISK_CACHE:-$HOME/.cache/bank-dialer/asterisk}"
prefix="$cache/$sha"
if [ -x "$prefix/sbin/asterisk" ] && [ -f "$prefix/.complete" ]; then
  echo "build_asterisk: cached build at $prefix" >&2
  echo "$prefix"
  exit 0
fi
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ -x "$prefix/sbin/asterisk" ] && [ -f "$prefix/.complete" ]; then
  echo "$prefix"
  exit 0
fi
work="$(mktemp -d "$cache/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
echo "build_asterisk: building $(basename "$tarball") into $prefix" >&2
tar -xJf "$tarball" -C "$work"
src="$(ls -d "$work"/asterisk-*/ | head -n1)"
cd "$src"
rm -rf "$prefix"
./configure --prefix="$prefix" --without-pjproject-bundled --with-jansson-bundled=no \
  >"$work/configure.log" 2>&1 || { tail -40 "$work/configure.log" >&2; exit 1; }
make menuselect.makeopts >"$work/menuselect.log" 2>&1
menuselect/menuselect --disable CORE-SOUNDS-EN-GSM --disable MOH-OPSOUND-WAV menuselect.makeopts \
  >>"$work/menuselect.log" 2>&1
make -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -60 "$work/make.log" >&2; exit 1; }
make install >"$work/install.log" 2>&1 || { tail -40 "$work/install.log" >&2; exit 1; }
# Samples the tests copy as they are (amd.conf, indications.conf, ...).
mkdir -p "$prefix/share/samples"
cp configs/samples/*.conf.sample "$prefix/share/samples/"
touch "$prefix/.complete"
echo "build_asterisk: built in $(( $(date +%s) - start )) s" >&2
echo "$prefix"
