#!/usr/bin/env bash
# End to end on real data: the debootstrapped Debian 12 root (make-debian-rootfs.sh) as a one-layer
# image in a real docker-registry, pulled through breakwater by skopeo with scan on cache, and
# matched against OSV data. Prints the time from pull to stored findings, the findings summary
# (`breakwater scan findings`) and the SBOM size; writes results/scan-debian.md.
#
# Usage: load-tests/scan-debian.sh [OSV_PATH...]
#   default OSV data: the shared test data (Debian synthetic edge cases, PyPI, Go, crates.io).
# Needs: docker-registry, skopeo, tar, curl, python3, a built breakwater (BREAKWATER_BIN).
set -euo pipefail
LT_DIR="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
source "$LT_DIR/lib.sh"
bench_init scan-debian
need skopeo tar
shared="$LT_DIR/../testdata/vulndb/osv"
if [ $# -gt 0 ]; then osv=("$@"); else
    osv=("$shared/Debian-synthetic-edgecases" "$shared/PyPI-all.zip" "$shared/Go-all.zip" "$shared/crates.io-all.zip")
fi
rootfs="${BREAKWATER_DEBIAN_ROOTFS:-/var/tmp/breakwater/debian-bookworm-minbase}"
[ -f "$rootfs/var/lib/dpkg/status" ] || die "no Debian rootfs at $rootfs: run load-tests/make-debian-rootfs.sh"
layer="${BREAKWATER_BENCH_DIR:-/var/tmp/breakwater/bench}/debian-bookworm-minbase.tar.gz"
if [ ! -f "$layer" ]; then
    mkdir -p "$(dirname "$layer")"
    tar --numeric-owner -czf "$layer.partial" -C "$rootfs" . && mv "$layer.partial" "$layer"
fi

log "writing an OCI layout around $layer"
python3 - "$layer" "$WORK/oci" <<'EOF'
import gzip, hashlib, json, os, shutil, sys
layer, out = sys.argv[1], sys.argv[2]
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs)
def put(data):
    d = hashlib.sha256(data).hexdigest()
    open(os.path.join(blobs, d), "wb").write(data)
    return {"digest": "sha256:" + d, "size": len(data)}
lh, dh = hashlib.sha256(), hashlib.sha256()
with open(layer, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        lh.update(chunk)
with gzip.open(layer, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        dh.update(chunk)
shutil.copyfile(layer, os.path.join(blobs, lh.hexdigest()))
config = put(json.dumps({"architecture": "amd64", "os": "linux",
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + dh.hexdigest()]},
    "config": {"Cmd": ["/bin/bash"]}}).encode())
config["mediaType"] = "application/vnd.oci.image.config.v1+json"
manifest = put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": config, "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
    "digest": "sha256:" + lh.hexdigest(), "size": os.path.getsize(layer)}]}).encode())
manifest["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
manifest["annotations"] = {"org.opencontainers.image.ref.name": "bookworm"}
json.dump({"schemaVersion": 2, "manifests": [manifest]}, open(os.path.join(out, "index.json"), "w"))
json.dump({"imageLayoutVersion": "1.0.0"}, open(os.path.join(out, "oci-layout"), "w"))
EOF

start_registry upstream
skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/oci:bookworm" \
    "docker://127.0.0.1:$REG_PORT/debian/minbase:bookworm" >&2

BW_DIR="$WORK/bw"
mkdir -p "$BW_DIR"
BW_PORT="$(free_port)"
BW_ADMIN="$(free_port)"
paths="$(printf '"%s", ' "${osv[@]}")"
cat >"$BW_DIR/breakwater.toml" <<EOF
[server]
listen = "127.0.0.1:$BW_PORT"
admin_listen = "127.0.0.1:$BW_ADMIN"

[storage]
root = "$BW_DIR/store"

[routing]
default_upstream = "local"
presets = false

[upstreams.local]
url = "http://127.0.0.1:$REG_PORT"
aliases = ["local"]

[scan]
osv_paths = [${paths%, }]
on_cache = true
EOF
"$BREAKWATER_BIN" serve --config "$BW_DIR/breakwater.toml" >>"$BW_DIR/breakwater.log" 2>&1 </dev/null &
BW_PID=$!
BENCH_PIDS+=("$BW_PID")
wait_http "http://127.0.0.1:$BW_PORT/v2/" 30 || die "breakwater did not start"
admin="http://127.0.0.1:$BW_ADMIN"
# The data loads in the background; wait for it so the timing below is the scan's alone.
for _ in $(seq 600); do
    curl -s "$admin/api/v1/scan/status" | grep -q '"records"' && break
    sleep 0.1
done

image="local/debian/minbase:bookworm"
t0=$(now)
skopeo copy --quiet --src-tls-verify=false "docker://127.0.0.1:$BW_PORT/debian/minbase:bookworm" "dir:$WORK/pulled" >&2
t1=$(now)
until curl -sf -o /dev/null "$admin/api/v1/scans/$image"; do
    [ "$(calc "$(now) - $t0 > 120")" = True ] && die "no scan after 120 s; log: $(tail -5 "$BW_DIR/breakwater.log")"
    sleep 0.05
done
t2=$(now)
findings="$("$BREAKWATER_BIN" scan findings --admin "$admin" "$image")"
sbom_components="$("$BREAKWATER_BIN" sbom --admin "$admin" "$image" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["components"]))')"
status="$("$BREAKWATER_BIN" scan status --admin "$admin")"
{
    echo "# Scan of the debootstrapped Debian 12 (bookworm, minbase) image"
    echo
    context
    echo
    echo "Layer: $(du -m "$layer" | cut -f1) MiB gzip. Pull through breakwater (skopeo): $(fmt .2f "$(calc "$t1 - $t0")") s;"
    echo "pull start to stored findings (scan on cache): $(fmt .2f "$(calc "$t2 - $t0")") s."
    echo "SBOM: $sbom_components CycloneDX components. Layer reads: $(bw_metric '^breakwater_scan_layer_reads_total$')."
    echo
    echo '```'
    echo "$status"
    echo
    echo "$findings"
    echo '```'
} | emit_results "$RESULTS_DIR/scan-debian.md"
