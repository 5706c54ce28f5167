#!/usr/bin/env bash
# Measures two breakwater binaries in one run: each load-test script runs for BEFORE, then for
# AFTER, back to back, so both see the same machine state; the tables go to one markdown file.
# Used for "within noise of today's" checks of refactors.
#
# Usage: BEFORE=/path/to/old/breakwater AFTER=target/release/breakwater load-tests/compare.sh
# Env:   ONLY (default: pull-64mib coalesce-cold warm-throughput manifest-rps), PEER (default 0:
#        no distribution proxy rows), QUICK, OUT (default load-tests/results/compare.md).
set -uo pipefail
LT_DIR="$(cd "$(dirname "$0")" && pwd)"
: "${BEFORE:?set BEFORE to the reference binary}"
AFTER="${AFTER:-$LT_DIR/../target/release/breakwater}"
OUT="${OUT:-$LT_DIR/results/compare.md}"
SCRIPTS="${ONLY:-pull-64mib coalesce-cold warm-throughput manifest-rps}"
export PEER="${PEER:-0}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

{
    echo "# before / after, one run"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); CPUs: $(nproc); load average at start: $(cut -d' ' -f1 /proc/loadavg)"
    echo "- before: $BEFORE"
    echo "- after: $AFTER"
    echo
} >"$tmp/out.md"
for s in $SCRIPTS; do
    for side in before after; do
        bin="$BEFORE"
        [ "$side" = after ] && bin="$AFTER"
        echo "=== $s ($side)" >&2
        if BREAKWATER_BIN="$bin" RESULTS_DIR="$tmp/$side" "$LT_DIR/$s.sh" >"$tmp/$s.$side.md" 2>"$tmp/$s.$side.err"; then
            { echo "### $s — $side"; echo; cat "$tmp/$s.$side.md"; echo; } >>"$tmp/out.md"
        else
            { echo "### $s — $side: FAILED"; echo; echo '```'; tail -20 "$tmp/$s.$side.err"; echo '```'; echo; } >>"$tmp/out.md"
        fi
    done
done
mkdir -p "$(dirname "$OUT")"
cp "$tmp/out.md" "$OUT"
cat "$OUT"
