#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (default 10) from its seeds, one after the
# other; exits non-zero at the first target that crashes, leaving the input in
# fuzz/artifacts/<target>/. Usage: fuzz/run-all.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-10}"
# cargo-fuzz passes nightly-only flags; RUSTC_BOOTSTRAP=1 allows them on a stable toolchain.
export RUSTC_BOOTSTRAP=1
cargo fuzz build --sanitizer none
log="$(mktemp)"
for target in $(cargo fuzz list); do
  # New inputs go to a scratch directory (the first one named), so corpus/ keeps only seeds.
  scratch="$(mktemp -d)"
  if ! cargo fuzz run --sanitizer none "$target" "$scratch" "corpus/$target" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz: $target failed; the input is in fuzz/artifacts/$target/" >&2
    rm -rf "$scratch" "$log"
    exit 1
  fi
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
  echo "fuzz: $target ok, ${runs:-?} executions in ${secs}s"
  rm -rf "$scratch"
done
rm -f "$log"
