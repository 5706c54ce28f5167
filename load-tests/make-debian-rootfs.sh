#!/usr/bin/env bash
# Builds a minimal Debian bookworm root filesystem for the scan tests
# (src/scan/catalog/tests.rs compares the dpkg cataloger against dpkg-query on it).
# Usage: load-tests/make-debian-rootfs.sh [DIR]   (default: $BREAKWATER_DEBIAN_ROOTFS
# or /var/tmp/breakwater/debian-bookworm-minbase). Needs root and `apt-get install debootstrap`.
set -euo pipefail
dir="${1:-${BREAKWATER_DEBIAN_ROOTFS:-/var/tmp/breakwater/debian-bookworm-minbase}}"
if [ -f "$dir/var/lib/dpkg/status" ]; then
    echo "rootfs already present at $dir"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap missing: apt-get install -y debootstrap" >&2; exit 1; }
# Build into a temp dir and rename, so an interrupted run never looks complete.
tmp="$dir.partial"
rm -rf "$tmp"
mkdir -p "$(dirname "$dir")"
debootstrap --variant=minbase bookworm "$tmp"
mv "$tmp" "$dir"
echo "rootfs ready at $dir"
