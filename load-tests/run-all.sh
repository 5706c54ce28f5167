#!/usr/bin/env bash
# Runs every load test in turn and writes load-tests/RESULTS.md: a header (date, CPUs, commit,
# sizes) and each script's table, plus how long each took. A script that fails is reported (with
# the tail of its output) and the others still run.
#
# Env: everything the scripts take (QUICK=1, BREAKWATER_BIN, ...); ONLY="pull-64mib manifest-rps"
#      to run a subset; RESULTS_MD (load-tests/RESULTS.md); RUN_NOTE (a line for the header, e.g.
#      what the binary was built from).
set -uo pipefail
LT_DIR="$(cd "$(dirname "$0")" && pwd)"
REPO_DIR="$(cd "$LT_DIR/.." && pwd)"
RESULTS_MD="${RESULTS_MD:-$LT_DIR/RESULTS.md}"
export RESULTS_DIR="${RESULTS_DIR:-$LT_DIR/results}"
SCRIPTS="${ONLY:-pull-64mib coalesce-cold warm-throughput manifest-rps replicas}"
BIN="${BREAKWATER_BIN:-$REPO_DIR/target/release/breakwater}"

if [ ! -x "$BIN" ]; then
    echo "no breakwater binary at $BIN: run cargo build --release first" >&2
    exit 1
fi
mkdir -p "$RESULTS_DIR"
tmp="$(mktemp)"
trap 'rm -f "$tmp" "$tmp".*' EXIT

{
    echo "# breakwater load-test results"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "- CPUs (nproc): $(nproc); memory: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "- commit: $(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO_DIR" diff --quiet HEAD 2>/dev/null || echo ' (working tree has uncommitted changes)')"
    echo "- binary: $BIN ($(stat -c '%y' "$BIN" | cut -d. -f1))"
    if [ -n "${RUN_NOTE:-}" ]; then echo "- note: $RUN_NOTE"; fi
    echo "- QUICK=${QUICK:-0}; peers: $(docker-registry --version 2>/dev/null | head -1), $(nginx -v 2>&1), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
    echo
    echo "Ratios compare against references measured in the same run; absolute numbers drift between runs and machines."
    echo
} >"$tmp"

status=0
durations=""
for s in $SCRIPTS; do
    echo "=== $s" >&2
    t0=$(date +%s)
    "$LT_DIR/$s.sh" >"$tmp.out" 2>"$tmp.err"
    rc=$?
    dt=$(($(date +%s) - t0))
    durations+="| $s | $dt s | $([ $rc = 0 ] && echo ok || echo "failed ($rc)") |"$'\n'
    cat "$tmp.err" >&2
    if [ $rc = 0 ]; then
        cat "$tmp.out" >>"$tmp"
    else
        status=1
        {
            echo "## $s: FAILED (exit $rc)"
            echo
            echo '```'
            tail -25 "$tmp.err"
            echo '```'
            echo
        } >>"$tmp"
    fi
done
{
    echo "## Run times"
    echo
    echo "| script | wall time | result |"
    echo "|---|---|---|"
    printf '%s' "$durations"
} >>"$tmp"
cp "$tmp" "$RESULTS_MD"
cat "$RESULTS_MD"
exit $status
