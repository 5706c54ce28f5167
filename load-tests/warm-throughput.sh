#!/usr/bin/env bash
# Warm blob throughput: CLIENTS concurrent clients each GET a warm 1 GiB blob REPEAT times, through
# breakwater and from nginx serving the very same file (a hard link to breakwater's stored blob,
# sendfile on), and from distribution's proxy (PEER=1), interleaved over ROUNDS rounds.
# Reports GB/s (10^9 bytes), server CPU seconds per GB served (utime+stime deltas from
# /proc/PID/stat; nginx = master + workers), and breakwater's peak RSS.
#
# Env: BLOB_SIZE (1G)  CLIENTS (8)  REPEAT (1)  ROUNDS (3, median)  PEER (1)  THREADS (2: breakwater
#      threads and nginx workers)  QUICK=1 (64M, 4 clients, 1 round)
#      RESULTS_FILE (load-tests/results/warm-throughput.md)
source "$(dirname "$0")/lib.sh"

if [ "$QUICK" = 1 ]; then
    BLOB_SIZE="${BLOB_SIZE:-64M}"
    CLIENTS="${CLIENTS:-4}"
    ROUNDS="${ROUNDS:-1}"
fi
BLOB_SIZE="${BLOB_SIZE:-1G}"
CLIENTS="${CLIENTS:-8}"
REPEAT="${REPEAT:-1}"
ROUNDS="${ROUNDS:-3}"
PEER="${PEER:-1}"
THREADS="${THREADS:-2}"
RESULTS_FILE="${RESULTS_FILE:-$RESULTS_DIR/warm-throughput.md}"
REPO=bench/huge
TAG=v1

bench_init warm-throughput
need skopeo

start_registry upstream
UP_PORT=$REG_PORT
UP_LOG="$REG_DIR/access.log"
log "upstream registry on $UP_PORT; generating a $BLOB_SIZE layer"
make_image huge "$TAG" "$BLOB_SIZE"
push_image huge "$TAG" "$UP_PORT" "$REPO"
rm -rf "$WORK/oci-huge"
DIGEST=$(image_field huge 'd["layers"][0]["digest"]')
SIZE=$(image_field huge 'd["layers"][0]["size"]')
SIZE_MIB=$(calc "$SIZE/$MIB")

# --- breakwater, warmed by one GET
start_breakwater bw "$UP_PORT" "$THREADS"
BW_URL="http://127.0.0.1:$BW_PORT/v2/local/$REPO/blobs/$DIGEST"
got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "$BW_URL")
[ "$got" = "200 $SIZE" ] || die "warming breakwater: $got"
bw_wait_committed "$DIGEST"
BW_FILL_RSS=$(rss_peak_kib "$BW_PID")
STORED=$(bw_stored_path "$DIGEST")

# --- nginx on the same bytes (same inode, so the same page cache)
mkdir -p "$WORK/www"
ln "$STORED" "$WORK/www/blob"
start_nginx nginx "$WORK/www" "$THREADS"
NGX_URL="http://127.0.0.1:$NGX_PORT/blob"
got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "$NGX_URL")
[ "$got" = "200 $SIZE" ] || die "nginx does not serve the blob: $got ($(tail -3 "$NGX_DIR/error.log"))"

# --- distribution's proxy, warmed by one GET
if [ "$PEER" = 1 ]; then
    start_registry proxy "proxy:
  remoteurl: http://127.0.0.1:$UP_PORT"
    PX_PID=$REG_PID
    PX_URL="http://127.0.0.1:$REG_PORT/v2/$REPO/blobs/$DIGEST"
    got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "$PX_URL")
    [ "$got" = "200 $SIZE" ] || die "warming the proxy: $got"
    wait_log_quiet "$UP_LOG" 2 60 # it stores in the background
    curl -s -o /dev/null "$PX_URL"
fi
# page cache warm for everyone (the proxy has its own copy)
cat "$STORED" >/dev/null

# run URL TAG PID... -> "gbps cpu_s_per_gb failures bytes"
run() {
    local url="$1" tag="$2" i c0 c1 t0 t1 pids=() args=()
    shift 2
    for i in $(seq "$REPEAT"); do args+=(-o /dev/null "$url"); done
    rm -f "$WORK/w-$tag-"*.out
    c0=$(cpu_ticks "$@")
    t0=$(now)
    for i in $(seq "$CLIENTS"); do
        curl -s --max-time 900 -w '%{http_code} %{size_download}\n' "${args[@]}" >"$WORK/w-$tag-$i.out" 2>/dev/null &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || true; done
    t1=$(now)
    c1=$(cpu_ticks "$@")
    python3 - "$SIZE" "$(calc "$t1-$t0")" "$(calc "($c1-$c0)/$CLK_TCK")" "$((CLIENTS * REPEAT))" "$WORK/w-$tag-"*.out <<'EOF'
import sys
size, wall, cpu, expect, files = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
ok = total = 0
for f in files:
    for line in open(f):
        p = line.split()
        if len(p) == 2:
            total += int(p[1])
            ok += p[0] == "200" and int(p[1]) == size
gb = total / 1e9
print(f"{gb / wall:.3f} {cpu / gb if gb else 0:.3f} {expect - ok} {total}")
EOF
}

declare -A RES
add() { RES[$1]="${RES[$1]:-}$2;"; }
bw_rss_warm=0
up_during=0
rss_reset_ok=$(reset_peak_rss "$BW_PID")
log "$ROUNDS rounds: $CLIENTS clients × $REPEAT GETs of ${SIZE_MIB} MiB each, nginx / breakwater$([ "$PEER" = 1 ] && echo " / proxy")"
for r in $(seq "$ROUNDS"); do
    add nginx "$(run "$NGX_URL" "nginx-$r" $(tree_pids "$NGX_PID"))"
    [ "$rss_reset_ok" = 1 ] && reset_peak_rss "$BW_PID" >/dev/null
    l0=$(log_lines "$UP_LOG")
    add bw "$(run "$BW_URL" "bw-$r" "$BW_PID")"
    sleep 0.5
    n=$(log_stats "$UP_LOG" "$l0" "/blobs/$DIGEST")
    up_during=$((up_during + ${n% *}))
    rss=$(rss_peak_kib "$BW_PID")
    [ "$rss" -gt "$bw_rss_warm" ] && bw_rss_warm=$rss
    if [ "$PEER" = 1 ]; then add proxy "$(run "$PX_URL" "px-$r" "$PX_PID")"; fi
done
BW_LIFE_RSS=$(rss_peak_kib "$BW_PID")
PX_RSS=$([ "$PEER" = 1 ] && rss_peak_kib "$PX_PID" || echo 0)
NGX_RSS=0
for p in $(tree_pids "$NGX_PID"); do
    v=$(rss_peak_kib "$p")
    [ "$v" -gt "$NGX_RSS" ] && NGX_RSS=$v
done
stop_pid "$BW_PID"
bw_problems=$(bw_log_problems "$BW_DIR/breakwater.log")

# medians of each column
summ() { # key -> "gbps cpu failures" (medians; failures summed)
    python3 - "${RES[$1]}" <<'EOF'
import statistics, sys
rows = [r.split() for r in sys.argv[1].split(";") if r.strip()]
print(f"{statistics.median(float(r[0]) for r in rows):.3f} {statistics.median(float(r[1]) for r in rows):.3f} {sum(int(r[2]) for r in rows)}")
EOF
}
read -r n_gbps n_cpu n_fail <<<"$(summ nginx)"
read -r b_gbps b_cpu b_fail <<<"$(summ bw)"
if [ "$PEER" = 1 ]; then read -r p_gbps p_cpu p_fail <<<"$(summ proxy)"; fi
figure blob_bytes "$SIZE"
figure clients "$CLIENTS"
figure nginx_gbps "$n_gbps"
figure bw_gbps "$b_gbps"
figure nginx_cpu_per_gb "$n_cpu"
figure bw_cpu_per_gb "$b_cpu"
figure nginx_rss_kib "$NGX_RSS"
figure bw_rss_warm_kib "$bw_rss_warm"
figure failed_gets "$((n_fail + b_fail))"
if [ "$PEER" = 1 ]; then figure px_gbps "$p_gbps"; fi
{
    echo "## warm-throughput: $CLIENTS clients × $REPEAT GETs of a warm ${SIZE_MIB} MiB blob"
    echo
    echo "$(context); median of $ROUNDS interleaved rounds; breakwater threads = nginx workers = $THREADS; nginx serves a hard link to breakwater's stored file (sendfile on)."
    echo
    echo "| server | GB/s | vs nginx | CPU s per GB served | vs nginx | peak RSS | failed GETs |"
    echo "|---|---|---|---|---|---|---|"
    echo "| nginx (sendfile) | $n_gbps | 1.00× | $n_cpu | 1.00× | $((NGX_RSS / 1024)) MiB (largest process) | $n_fail |"
    echo "| breakwater | $b_gbps | $(ratio "$b_gbps" "$n_gbps") | $b_cpu | $(ratio "$b_cpu" "$n_cpu") | $((bw_rss_warm / 1024)) MiB while serving warm$([ "$rss_reset_ok" = 1 ] || echo ' (VmHWM reset unavailable: whole life)') | $b_fail |"
    if [ "$PEER" = 1 ]; then echo "| distribution proxy | $p_gbps | $(ratio "$p_gbps" "$n_gbps") | $p_cpu | $(ratio "$p_cpu" "$n_cpu") | $((PX_RSS / 1024)) MiB (whole life) | $p_fail |"; fi
    echo
    echo "| goal for breakwater | measured | met |"
    echo "|---|---|---|"
    echo "| throughput ≥ 0.9× nginx | $(ratio "$b_gbps" "$n_gbps") | $(verdict "$b_gbps >= 0.9*$n_gbps") |"
    echo "| CPU per GB ≤ 2× nginx | $(ratio "$b_cpu" "$n_cpu") | $(verdict "$b_cpu <= 2*$n_cpu") |"
    echo "| peak RSS ≤ 32 MiB (warm serving) | $((bw_rss_warm / 1024)) MiB | $(verdict "$bw_rss_warm <= 32*1024") |"
    echo
    echo "breakwater peak RSS over its whole life (including the cold fill of the blob): $((BW_LIFE_RSS / 1024)) MiB, after the fill alone: $((BW_FILL_RSS / 1024)) MiB." \
        "Upstream GETs of the blob during the warm breakwater rounds: $up_during (goal 0). WARN/ERROR lines in breakwater's log: $bw_problems."
    echo "Per-round figures (GB/s, CPU s/GB, failures, bytes): nginx ${RES[nginx]} breakwater ${RES[bw]}$([ "$PEER" = 1 ] && echo " proxy ${RES[proxy]}")"
    echo
} | emit_results "$RESULTS_FILE"
