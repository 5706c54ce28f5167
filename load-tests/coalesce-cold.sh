#!/usr/bin/env bash
# N concurrent cold GETs of one big blob: does the cache download it once (upstream GETs, upstream
# bytes as a multiple of the blob size, from the upstream registry's access log), how long do all N
# take against one single cold fetch measured in the same run, and what is the cache's peak RSS.
# The same against distribution's proxy (PEER=1), and N concurrent GETs straight from the upstream
# (no cache) as the floor of what N clients can receive on this machine.
#
# Env: BLOB_SIZE (256M)  CLIENTS (32)  SINGLE_ROUNDS (3, median)  PEER (1)
#      QUICK=1 (16M, 8 clients, 1 single round)  RESULTS_FILE (load-tests/results/coalesce-cold.md)
source "$(dirname "$0")/lib.sh"

if [ "$QUICK" = 1 ]; then
    BLOB_SIZE="${BLOB_SIZE:-16M}"
    CLIENTS="${CLIENTS:-8}"
    SINGLE_ROUNDS="${SINGLE_ROUNDS:-1}"
fi
BLOB_SIZE="${BLOB_SIZE:-256M}"
CLIENTS="${CLIENTS:-32}"
SINGLE_ROUNDS="${SINGLE_ROUNDS:-3}"
PEER="${PEER:-1}"
RESULTS_FILE="${RESULTS_FILE:-$RESULTS_DIR/coalesce-cold.md}"
REPO=bench/big
TAG=v1

bench_init coalesce-cold
need skopeo

start_registry upstream
UP_PORT=$REG_PORT
UP_LOG="$REG_DIR/access.log"
log "upstream registry on $UP_PORT; generating a $BLOB_SIZE layer"
make_image big "$TAG" "$BLOB_SIZE"
push_image big "$TAG" "$UP_PORT" "$REPO"
rm -rf "$WORK/oci-big" # keep disk use down; the upstream has it now
DIGEST=$(image_field big 'd["layers"][0]["digest"]')
SIZE=$(image_field big 'd["layers"][0]["size"]')
SIZE_MIB=$(calc "$SIZE/$MIB")
# warm the upstream's page cache so every variant reads it from memory
curl -s -o /dev/null "http://127.0.0.1:$UP_PORT/v2/$REPO/blobs/$DIGEST"

# single URL -> seconds of one GET (fails unless 200 with all bytes)
single() {
    local out code size total
    out=$(curl -s -o /dev/null --max-time 600 -w '%{http_code} %{size_download} %{time_total}' "$1" || true)
    read -r code size total <<<"$out"
    [ "$code" = 200 ] && [ "$size" = "$SIZE" ] || die "GET $1: status ${code:-none}, ${size:-0} of $SIZE bytes"
    echo "$total"
}

# concurrent URL TAG -> "wall_seconds failures min_client median_client max_client"
concurrent() {
    local url="$1" tag="$2" i t0 t1 pids=()
    rm -f "$WORK/c-$tag-"*.out
    t0=$(now)
    for i in $(seq "$CLIENTS"); do
        curl -s -o /dev/null --max-time 600 -w '%{http_code} %{size_download} %{time_total}\n' "$url" \
            >"$WORK/c-$tag-$i.out" 2>/dev/null &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || true; done
    t1=$(now)
    python3 - "$SIZE" "$(calc "$t1-$t0")" "$WORK/c-$tag-"*.out <<'EOF'
import statistics, sys
size, wall, files = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
fail, times = 0, []
for f in files:
    parts = (open(f).read().split() + ["000", "0", "0"])[:3]
    if parts[0] != "200" or int(parts[1]) != size:
        fail += 1
    times.append(float(parts[2]))
print(f"{wall:.3f} {fail} {min(times):.3f} {statistics.median(times):.3f} {max(times):.3f}")
EOF
}

# upstream_since LINE -> "gets bytes" of the blob since access-log line LINE (after the log settles)
upstream_since() {
    wait_log_quiet "$UP_LOG" 1 30
    log_stats "$UP_LOG" "$1" "/blobs/$DIGEST"
}

declare -A R
# --- floor: N concurrent GETs straight from the upstream
log "direct: $CLIENTS concurrent GETs from the upstream (floor)"
R[direct_single]=$(single "http://127.0.0.1:$UP_PORT/v2/$REPO/blobs/$DIGEST")
R[direct_conc]=$(concurrent "http://127.0.0.1:$UP_PORT/v2/$REPO/blobs/$DIGEST" direct)

# --- breakwater
log "breakwater: $SINGLE_ROUNDS single cold GETs (fresh store each), then $CLIENTS concurrent cold GETs"
singles=""
bw_problems=0
for r in $(seq "$SINGLE_ROUNDS"); do
    start_breakwater "bw-single-$r" "$UP_PORT"
    t=$(single "http://127.0.0.1:$BW_PORT/v2/local/$REPO/blobs/$DIGEST")
    singles+="$t "
    R[bw_single_rss]=$(rss_peak_kib "$BW_PID")
    stop_pid "$BW_PID"
    bw_problems=$((bw_problems + $(bw_log_problems "$BW_DIR/breakwater.log")))
    rm -rf "$BW_DIR"
done
R[bw_single]=$(median $singles)
# one more single cold fetch: how long the final byte waits after the rest
start_breakwater bw-lastbyte "$UP_PORT"
read -r lb_status lb_bytes lb_total lb_ttfb lb_wait <<<"$(python3 "$LT_DIR/lastbyte.py" "http://127.0.0.1:$BW_PORT/v2/local/$REPO/blobs/$DIGEST")"
[ "$lb_status $lb_bytes" = "200 $SIZE" ] || die "last-byte probe: $lb_status $lb_bytes"
stop_pid "$BW_PID"
rm -rf "$BW_DIR"
start_breakwater bw-conc "$UP_PORT"
R[bw_idle_rss]=$(rss_now_kib "$BW_PID")
l0=$(log_lines "$UP_LOG")
R[bw_conc]=$(concurrent "http://127.0.0.1:$BW_PORT/v2/local/$REPO/blobs/$DIGEST" bw)
R[bw_rss]=$(rss_peak_kib "$BW_PID")
R[bw_up]=$(upstream_since "$l0")
R[bw_metric_fetched]=$(bw_metric breakwater_upstream_bytes_total)
R[bw_metric_hit]=$(bw_metric 'breakwater_requests_total\{kind="blob",result="hit"')
R[bw_metric_miss]=$(bw_metric 'breakwater_requests_total\{kind="blob",result="miss"')
stop_pid "$BW_PID"
bw_problems=$((bw_problems + $(bw_log_problems "$BW_DIR/breakwater.log")))
rm -rf "$BW_DIR"

# --- distribution's proxy
if [ "$PEER" = 1 ]; then
    log "distribution proxy: $SINGLE_ROUNDS single cold GETs, then $CLIENTS concurrent cold GETs"
    singles=""
    for r in $(seq "$SINGLE_ROUNDS"); do
        start_registry "proxy-single-$r" "proxy:
  remoteurl: http://127.0.0.1:$UP_PORT"
        t=$(single "http://127.0.0.1:$REG_PORT/v2/$REPO/blobs/$DIGEST")
        singles+="$t "
        wait_log_quiet "$UP_LOG" 1 30
        stop_pid "$REG_PID"
        rm -rf "$REG_DIR"
    done
    R[px_single]=$(median $singles)
    start_registry proxy-conc "proxy:
  remoteurl: http://127.0.0.1:$UP_PORT"
    l0=$(log_lines "$UP_LOG")
    R[px_conc]=$(concurrent "http://127.0.0.1:$REG_PORT/v2/$REPO/blobs/$DIGEST" px)
    R[px_rss]=$(rss_peak_kib "$REG_PID")
    R[px_up]=$(upstream_since "$l0")
    stop_pid "$REG_PID"
    rm -rf "$REG_DIR"
fi

# --- report
line() { # label conc-key single up-key rss-kib
    local wall fail cmin cmed cmax gets bytes
    read -r wall fail cmin cmed cmax <<<"${R[$2]}"
    if [ -n "$4" ]; then
        read -r gets bytes <<<"${R[$4]}"
        printf '| %s | %s | %s | %s | %s s | %s | %s s / %s s / %s s | %s | %s |\n' "$1" "$fail" "$gets" \
            "$(fmt .2f "$(calc "$bytes/$SIZE")")×" "$(fmt .2f "$wall")" "$(ratio "$wall" "$3")" \
            "$cmin" "$cmed" "$cmax" "$(fmt .3f "$3") s" "$(($5 / 1024)) MiB"
    else
        printf '| %s | %s | — | — | %s s | %s | %s s / %s s / %s s | %s | — |\n' "$1" "$fail" \
            "$(fmt .2f "$wall")" "$(ratio "$wall" "$3")" "$cmin" "$cmed" "$cmax" "$(fmt .3f "$3") s"
    fi
}
read -r bw_wall bw_fail _ <<<"${R[bw_conc]}"
read -r bw_gets bw_bytes <<<"${R[bw_up]}"
{
    echo "## coalesce-cold: $CLIENTS concurrent cold GETs of one ${SIZE_MIB} MiB blob"
    echo
    echo "$(context); single cold fetch = median of $SINGLE_ROUNDS, fresh process and store each; all clients are \`curl -o /dev/null\` processes started together."
    echo
    echo "| server | failed clients | upstream blob GETs | upstream bytes / blob size | wall, all $CLIENTS | wall / single cold | client time min / median / max | single cold fetch | peak RSS |"
    echo "|---|---|---|---|---|---|---|---|---|"
    line "breakwater" bw_conc "${R[bw_single]}" bw_up "${R[bw_rss]}"
    if [ "$PEER" = 1 ]; then line "distribution proxy" px_conc "${R[px_single]}" px_up "${R[px_rss]}"; fi
    line "upstream directly (no cache; floor)" direct_conc "${R[direct_single]}" "" 0
    echo
    echo "| goal for breakwater | measured | met |"
    echo "|---|---|---|"
    echo "| upstream bytes 1.0× blob size (1 GET) | $(fmt .2f "$(calc "$bw_bytes/$SIZE")")× ($bw_gets GETs) | $(verdict "$bw_bytes == $SIZE and $bw_gets == 1") |"
    echo "| wall ≤ 1.2× single cold fetch | $(ratio "$bw_wall" "${R[bw_single]}") | $(verdict "$bw_wall <= 1.2*${R[bw_single]}") |"
    echo "| peak RSS ≤ 64 MiB | $((R[bw_rss] / 1024)) MiB | $(verdict "${R[bw_rss]} <= 64*1024") |"
    echo "| all clients complete | $((CLIENTS - bw_fail)) of $CLIENTS | $(verdict "$bw_fail == 0") |"
    echo
    echo "breakwater: idle RSS before the burst $((R[bw_idle_rss] / 1024)) MiB, peak RSS of a single cold fetch $((R[bw_single_rss] / 1024)) MiB;" \
        "its own metrics: upstream bytes $(fmt .2f "$(calc "${R[bw_metric_fetched]}/$SIZE")")× blob size, blob requests hit ${R[bw_metric_hit]} / miss ${R[bw_metric_miss]};" \
        "WARN/ERROR lines in its logs: $bw_problems."
    echo "An extra single cold fetch with a Python client got its final bytes $(fmt .3f "$lb_wait") s after the rest, of $(fmt .3f "$lb_total") s in total (the fill's commit before the last byte is released)."
    echo "Wall against the floor (the same $CLIENTS GETs straight from the upstream): $(ratio "$bw_wall" "$(echo "${R[direct_conc]}" | cut -d' ' -f1)")." \
        "On $(nproc) cores the $CLIENTS receiving curl processes share the CPUs with the servers, so the floor bounds what any cache can reach."
    echo
} | emit_results "$RESULTS_FILE"
