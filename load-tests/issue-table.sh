#!/usr/bin/env bash
# The issue-13 table in one run: every row measured beside its reference, by running the existing
# scripts (each writes "key value" figures to a file through lib.sh's `figure`), then one table:
#   measure | breakwater | reference (same run) | ratio | goal | met
# written to results/issue-table.md (and stdout). The scripts' own tables go to the same directory
# as issue-table-<run>.md, so every figure can be traced back.
#
# Runs: pull-64mib (LAYER_SIZE=48700000, PEER=1: direct and distribution's proxy);
#       warm-throughput with 1 client (PEER=1) and 8 clients on a 1 GiB blob, and 8 clients on a
#       256 MiB blob (for "RSS flat in blob size"); manifest-rps (PEER=0: the row's reference is nginx).
# Env: QUICK=1 (4 MiB layer, 64/16 MiB blobs, 1 round, 3 s of wrk: a smoke run, not a measurement)
#      RSS_FLAT_MIB (4: "flat" = largest − smallest peak RSS of the three warm runs ≤ this)
#      RESULTS_DIR, BREAKWATER_BIN, BENCH_TMP as for the other scripts.
set -uo pipefail
LT_DIR="$(cd "$(dirname "$0")" && pwd)"
REPO_DIR="$(cd "$LT_DIR/.." && pwd)"
export RESULTS_DIR="${RESULTS_DIR:-$LT_DIR/results}"
OUT="$RESULTS_DIR/issue-table.md"
QUICK="${QUICK:-0}"
RSS_FLAT_MIB="${RSS_FLAT_MIB:-4}"
if [ "$QUICK" = 1 ]; then
    LAYER=4M BIG=64M SMALLER=16M
else
    LAYER=48700000 BIG=1G SMALLER=256M
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$RESULTS_DIR"
LOAD0=$(cut -d' ' -f1 /proc/loadavg)
T0=$(date +%s)

# run NAME SCRIPT [VAR=VALUE...]: one script with its figures in $tmp/NAME.fig
failed=""
run() {
    local name="$1" script="$2"
    shift 2
    echo "=== $name: $script $*" >&2
    if env "$@" FIGURES_FILE="$tmp/$name.fig" RESULTS_FILE="$RESULTS_DIR/issue-table-$name.md" \
        "$LT_DIR/$script.sh" >/dev/null 2>"$tmp/$name.err"; then
        return 0
    fi
    tail -15 "$tmp/$name.err" >&2
    failed+=" $name"
    : >"$tmp/$name.fig"
}

run cold pull-64mib LAYER_SIZE="$LAYER" PEER=1
run warm1 warm-throughput CLIENTS=1 BLOB_SIZE="$BIG" PEER=1
run warm8 warm-throughput CLIENTS=8 BLOB_SIZE="$BIG" PEER=0
run warm8small warm-throughput CLIENTS=8 BLOB_SIZE="$SMALLER" PEER=0
run manifest manifest-rps PEER=0

# The table, from the figure files (python: the arithmetic and the "met" verdicts in one place).
python3 - "$tmp" "$RSS_FLAT_MIB" "$failed" >"$tmp/table.md" <<'EOF'
import os, sys
tmp, flat_mib, failed = sys.argv[1], float(sys.argv[2]), sys.argv[3].split()

def figs(name):
    d = {}
    p = os.path.join(tmp, name + ".fig")
    if os.path.exists(p):
        for line in open(p):
            k, _, v = line.strip().partition(" ")
            try:
                d[k] = float(v)
            except ValueError:
                pass
    return d

cold, w1, w8, w8s, man = (figs(n) for n in ("cold", "warm1", "warm8", "warm8small", "manifest"))
rows = []

def row(measure, bw, ref, ratio, goal, met):
    rows.append(f"| {measure} | {bw} | {ref} | {ratio} | {goal} | {met} |")

def have(d, *keys):
    return all(k in d for k in keys)

def yes(ok):
    return "yes" if ok else "**no**"

MISSING = ("not measured", "—", "—")

if have(cold, "get_bw_cold_s", "get_direct_s"):
    bw, ref = cold["get_bw_cold_s"], cold["get_direct_s"]
    px = f"; distribution proxy {cold['get_px_cold_s']:.3f} s ({cold['get_px_cold_s'] / ref:.2f}×)" if "get_px_cold_s" in cold else ""
    size = cold.get("layer_bytes", 0) / 1e6
    row(f"cold single GET of a {size:.1f} MB layer", f"{bw:.3f} s", f"straight from upstream {ref:.3f} s{px}",
        f"{bw / ref:.2f}×", "≤ 1.3× straight from upstream", yes(bw <= 1.3 * ref))
else:
    row("cold single GET of a 48.7 MB layer", *MISSING, "≤ 1.3× straight from upstream", "not measured")

if have(w1, "bw_gbps", "nginx_gbps"):
    bw, ref = w1["bw_gbps"], w1["nginx_gbps"]
    px = f"; distribution {w1['px_gbps']:.3f} GB/s" if "px_gbps" in w1 else ""
    row("warm blob, 1 client, GB/s", f"{bw:.3f}", f"nginx sendfile {ref:.3f}{px}", f"{bw / ref:.2f}×",
        "≥ nginx sendfile", yes(bw >= ref))
else:
    row("warm blob, 1 client, GB/s", *MISSING, "≥ nginx sendfile", "not measured")

if have(w8, "bw_gbps", "nginx_gbps", "bw_cpu_per_gb", "nginx_cpu_per_gb"):
    bw, ref = w8["bw_gbps"], w8["nginx_gbps"]
    row("warm blob, 8 clients, GB/s", f"{bw:.3f}", f"nginx {ref:.3f}", f"{bw / ref:.2f}×", "≥ 0.95× nginx",
        yes(bw >= 0.95 * ref))
    bw, ref = w8["bw_cpu_per_gb"], w8["nginx_cpu_per_gb"]
    row("CPU seconds per GB served warm", f"{bw:.3f}", f"nginx {ref:.3f}", f"{bw / ref:.2f}×" if ref else "n/a",
        "≤ 1.3× nginx", yes(bw <= 1.3 * ref))
else:
    row("warm blob, 8 clients, GB/s", *MISSING, "≥ 0.95× nginx", "not measured")
    row("CPU seconds per GB served warm", *MISSING, "≤ 1.3× nginx", "not measured")

rss = {label: d["bw_rss_warm_kib"] / 1024 for label, d in
       (("1 client", w1), ("8 clients", w8), ("8 clients, smaller blob", w8s)) if "bw_rss_warm_kib" in d}
if "8 clients" in rss and len(rss) == 3:
    peak = rss["8 clients"]
    spread = max(rss.values()) - min(rss.values())
    ngx = w8.get("nginx_rss_kib", 0) / 1024
    sizes = f"{w1.get('blob_bytes', 0) / 2**20:.0f} MiB / {w8s.get('blob_bytes', 0) / 2**20:.0f} MiB"
    row("peak RSS, 8 warm clients", f"{peak:.1f} MiB", f"nginx {ngx:.1f} MiB (largest process)",
        f"{peak / ngx:.2f}×" if ngx else "n/a", "≤ 24 MiB", yes(peak <= 24))
    row(f"peak RSS flat in clients and blob size (1 client, 8 clients, 8 clients on the smaller blob; {sizes})",
        " / ".join(f"{v:.1f}" for v in rss.values()) + " MiB", "—", f"spread {spread:.1f} MiB",
        f"spread ≤ {flat_mib:g} MiB", yes(spread <= flat_mib))
else:
    row("peak RSS, 8 warm clients", *MISSING, "≤ 24 MiB, flat in clients and blob size", "not measured")

if have(man, "bw_tag_rps", "nginx_tag_rps", "bw_tag_p99_ms"):
    bw, ref, p99 = man["bw_tag_rps"], man["nginx_tag_rps"], man["bw_tag_p99_ms"]
    row("manifest GETs by tag, req/s", f"{bw:.0f} (p99 {p99:.2f} ms)",
        f"nginx static file {ref:.0f} (p99 {man.get('nginx_tag_p99_ms', 0):.2f} ms)", f"{bw / ref:.2f}×",
        "≥ 0.8× nginx, p99 ≤ 5 ms", yes(bw >= 0.8 * ref and p99 <= 5))
else:
    row("manifest GETs by tag, req/s", *MISSING, "≥ 0.8× nginx, p99 ≤ 5 ms", "not measured")

print("| measure | breakwater | reference (same run) | ratio | goal | met |")
print("|---|---|---|---|---|---|")
print("\n".join(rows))
if failed:
    print()
    print(f"Failed runs (their rows say \"not measured\"): {', '.join(failed)}.")
EOF

{
    echo "# issue 13: the benchmark table, one run"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); $(nproc) CPUs; load average $LOAD0 at start, $(cut -d' ' -f1 /proc/loadavg) at end; $(($(date +%s) - T0)) s"
    echo "- commit: $(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO_DIR" diff --quiet HEAD -- . ':!load-tests/results' 2>/dev/null || echo ' (dirty tree)'); QUICK=$QUICK$([ "$QUICK" = 1 ] && echo ' (smoke run: small sizes, one round; not a measurement)')"
    echo "- each script's own table: issue-table-{cold,warm1,warm8,warm8small,manifest}.md beside this file"
    echo
    cat "$tmp/table.md"
    echo
} | tee "$OUT"
[ -z "$failed" ]
