#!/usr/bin/env bash
# Scanner benchmarks: inventory of the debootstrapped Debian layer, rematch of 1,000 stored
# inventories (criterion, benches/scan.rs), and the peak memory of analysing the Debian layer
# and a 1 GiB layer (same process type, so the two peaks compare: flat means the analysis
# does not grow with the layer).
#
# Usage: load-tests/scan-bench.sh            (QUICK=1: skip criterion, memory figures only)
# Needs: the rootfs from load-tests/make-debian-rootfs.sh, tar, gzip, head, python3.
# Writes load-tests/results/scan.md. Layers are kept in $BREAKWATER_BENCH_DIR
# (default /var/tmp/breakwater/bench; ~1.2 GiB) for later runs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
bench_dir="${BREAKWATER_BENCH_DIR:-/var/tmp/breakwater/bench}"
rootfs="${BREAKWATER_DEBIAN_ROOTFS:-/var/tmp/breakwater/debian-bookworm-minbase}"
results="${RESULTS_FILE:-$here/results/scan.md}"
export BREAKWATER_BENCH_DIR="$bench_dir"
mkdir -p "$bench_dir" "$(dirname "$results")"

[ -f "$rootfs/var/lib/dpkg/status" ] || {
    echo "no Debian rootfs at $rootfs: run load-tests/make-debian-rootfs.sh" >&2
    exit 1
}
debian="$bench_dir/debian-bookworm-minbase.tar.gz"
if [ ! -f "$debian" ]; then
    tar --numeric-owner -czf "$debian.partial" -C "$rootfs" .
    mv "$debian.partial" "$debian"
fi

# 1 GiB layer: the Debian root, then incompressible files (including a 200 MiB executable that
# starts like an ELF file, which the analyzer must stream-search rather than hold) up to 1 GiB
# of tar; gzip -1 so building it takes seconds, not minutes.
big="$bench_dir/layer-1gib.tar.gz"
if [ ! -f "$big" ]; then
    staging="$bench_dir/big-staging"
    rm -rf "$staging"
    mkdir -p "$staging/srv/data" "$staging/usr/local/bin"
    printf '\177ELF\002\001\001' > "$staging/usr/local/bin/huge-tool"
    head -c $((200 << 20)) /dev/urandom >> "$staging/usr/local/bin/huge-tool"
    chmod 755 "$staging/usr/local/bin/huge-tool"
    for i in $(seq 1 6); do head -c $((100 << 20)) /dev/urandom > "$staging/srv/data/blob-$i.bin"; done
    tar --numeric-owner -cf - -C "$rootfs" . -C "$staging" srv usr | gzip -1 > "$big.partial"
    mv "$big.partial" "$big"
    rm -rf "$staging"
fi

cd "$root"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
{
    echo "# Scanner benchmarks"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, $(uname -r)"
    echo
    echo "## Peak memory of one layer analysis (BENCH_SCAN_LAYER, VmHWM of the bench process)"
    echo
    echo '```'
    for layer in "$debian" "$big"; do
        BENCH_SCAN_LAYER="$layer" cargo bench --quiet --bench scan 2>/dev/null | grep '^layer '
    done
    echo '```'
} | tee "$out"
if [ "${QUICK:-0}" != 1 ]; then
    {
        echo
        echo "## Criterion (inventory of the Debian layer; rematch of 1,000 stored inventories)"
        echo
        echo '```'
        cargo bench --quiet --bench scan 2>&1 | grep -E '^(inventory|rematch)/|time:|thrpt:|^debian layer|^rematch:|^rematch breakdown' || true
        echo '```'
    } | tee -a "$out"
fi
cp "$out" "$results"
echo "written to $results"
