#!/usr/bin/env bash
# The long runs done by hand: each target until 10 million executions or RUN_SECS (default 3600)
# seconds, whichever comes first, one after the other, without a sanitizer. The corpus each run
# grows is kept in fuzz/target/long-corpus/<target> (not committed), so a second run continues
# where the first stopped. Appends one row per target to REPORT (default fuzz/long-runs.md):
# date, target, executions, seconds, coverage, result. Stops at the first crash (the input is in
# fuzz/artifacts/<target>/). Usage: fuzz/long-run.sh [TARGET...] (default: all, fastest first).
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
secs="${RUN_SECS:-3600}"
runs="${RUNS:-10000000}"
report="${REPORT:-long-runs.md}"
cargo fuzz build --sanitizer none
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
[ -f "$report" ] || printf '| date | target | executions | seconds | coverage (edges) | result |\n|---|---|---|---|---|---|\n' >"$report"
for t in "${targets[@]}"; do
  corpus="target/long-corpus/$t"
  mkdir -p "$corpus"
  log="$(mktemp)"
  start=$(date +%s)
  if cargo fuzz run --sanitizer none "$t" "$corpus" "corpus/$t" -- \
    -runs="$runs" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    result="0 crashes"
  else
    result="**crash** (fuzz/artifacts/$t/)"
  fi
  took=$(($(date +%s) - start))
  n="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
  echo "| $(date -u +%F) | $t | ${n:-?} | $took | ${cov:-?} | $result |" | tee -a "$report"
  if [ "$result" != "0 crashes" ]; then tail -n 40 "$log" >&2; rm -f "$log"; exit 1; fi
  rm -f "$log"
done
