#!/usr/bin/env bash
# Pull of one image (a small layer + a 64 MiB layer): single GETs of the big layer and whole-image
# `skopeo copy`s, through breakwater cold (fresh store every round) and warm, against the same from
# the upstream directly, and against distribution's own proxy (PEER=1), all in one run.
#
# Env: LAYER_SIZE (64M)  SMALL_SIZE (16K)  ROUNDS (5, median reported)  PEER (1)  QUICK=1 (4M, 2 rounds)
#      RESULTS_FILE (load-tests/results/pull-64mib.md)
source "$(dirname "$0")/lib.sh"

if [ "$QUICK" = 1 ]; then
    LAYER_SIZE="${LAYER_SIZE:-4M}"
    ROUNDS="${ROUNDS:-2}"
fi
LAYER_SIZE="${LAYER_SIZE:-64M}"
SMALL_SIZE="${SMALL_SIZE:-16K}"
ROUNDS="${ROUNDS:-5}"
PEER="${PEER:-1}"
RESULTS_FILE="${RESULTS_FILE:-$RESULTS_DIR/pull-64mib.md}"
REPO=bench/app
TAG=v1

bench_init pull-64mib
need skopeo

start_registry upstream
UP_PORT=$REG_PORT
UP_LOG="$REG_DIR/access.log"
log "upstream registry on $UP_PORT; generating image ($SMALL_SIZE + $LAYER_SIZE)"
make_image app "$TAG" "$SMALL_SIZE" "$LAYER_SIZE"
push_image app "$TAG" "$UP_PORT" "$REPO"
BIG=$(image_field app 'd["layers"][-1]["digest"]')
BIG_SIZE=$(image_field app 'd["layers"][-1]["size"]')
BIG_MIB=$(calc "$BIG_SIZE/$MIB")

# get URL -> "seconds_total seconds_ttfb"; fails unless 200 with the whole blob.
get() {
    local out code size total ttfb
    out=$(curl -s -o /dev/null --max-time 300 -w '%{http_code} %{size_download} %{time_total} %{time_starttransfer}' "$1" || true)
    read -r code size total ttfb <<<"$out"
    [ "$code" = 200 ] && [ "$size" = "$BIG_SIZE" ] || die "GET $1: status ${code:-none}, ${size:-0} of $BIG_SIZE bytes"
    echo "$total $ttfb"
}

# pull HOSTPORT REPO -> seconds for a whole-image skopeo copy into a fresh dir: destination.
pull() {
    local dest="$WORK/pulled" t0 t1
    rm -rf "$dest"
    t0=$(now)
    skopeo copy --quiet --src-tls-verify=false "docker://$1/$2:$TAG" "dir:$dest" >/dev/null 2>"$WORK/skopeo.err" ||
        { cat "$WORK/skopeo.err" >&2; die "skopeo copy from $1/$2 failed"; }
    t1=$(now)
    [ "$(stat -c %s "$dest/${BIG#sha256:}")" = "$BIG_SIZE" ] || die "skopeo copy from $1/$2: wrong layer size"
    rm -rf "$dest"
    calc "$t1-$t0"
}

declare -A T TT # T[key]="t1 t2 ..." totals; TT[key] = ttfb values
add() { T[$1]="${T[$1]:-} $2"; }
addt() { TT[$1]="${TT[$1]:-} $2"; }
# measure_get KEY URL / measure_pull KEY HOSTPORT REPO: one measured round (a failure ends the script)
measure_get() {
    local r
    r=$(get "$2")
    add "$1" "${r% *}"
    addt "$1" "${r#* }"
}
measure_pull() {
    local r
    r=$(pull "$2" "$3")
    add "$1" "$r"
}
med() { median ${T[$1]}; }
medt() { median ${TT[$1]}; }

DIRECT_URL="http://127.0.0.1:$UP_PORT/v2/$REPO/blobs/$BIG"
get "$DIRECT_URL" >/dev/null # page cache warm-up, not measured
pull "127.0.0.1:$UP_PORT" "$REPO" >/dev/null

log "direct from upstream: $ROUNDS GETs, $ROUNDS skopeo copies"
for r in $(seq "$ROUNDS"); do
    measure_get get_direct "$DIRECT_URL"
    measure_pull pull_direct "127.0.0.1:$UP_PORT" "$REPO"
done

# --- breakwater, cold: a fresh process and store per round
cold_upstream_gets=""
bw_problems=0
log "breakwater cold: $ROUNDS rounds of GET, $ROUNDS of skopeo copy, fresh store each"
for r in $(seq "$ROUNDS"); do
    start_breakwater "bw-cold-get-$r" "$UP_PORT"
    l0=$(log_lines "$UP_LOG")
    measure_get get_bw_cold "http://127.0.0.1:$BW_PORT/v2/local/$REPO/blobs/$BIG"
    sleep 0.3
    n=$(log_stats "$UP_LOG" "$l0" "/blobs/$BIG")
    cold_upstream_gets+="${n% *} "
    stop_pid "$BW_PID"
    bw_problems=$((bw_problems + $(bw_log_problems "$BW_DIR/breakwater.log")))
    rm -rf "$BW_DIR"

    start_breakwater "bw-cold-pull-$r" "$UP_PORT"
    measure_pull pull_bw_cold "127.0.0.1:$BW_PORT" "local/$REPO"
    stop_pid "$BW_PID"
    bw_problems=$((bw_problems + $(bw_log_problems "$BW_DIR/breakwater.log")))
    rm -rf "$BW_DIR"
done

# one more cold round, not timed with the others: how long the final byte waits after the rest
start_breakwater bw-cold-lastbyte "$UP_PORT"
read -r lb_status lb_bytes lb_total lb_ttfb lb_wait <<<"$(python3 "$LT_DIR/lastbyte.py" "http://127.0.0.1:$BW_PORT/v2/local/$REPO/blobs/$BIG")"
[ "$lb_status $lb_bytes" = "200 $BIG_SIZE" ] || die "last-byte probe: $lb_status $lb_bytes"
stop_pid "$BW_PID"
rm -rf "$BW_DIR"

# --- breakwater, warm: one process; the first GET/pull fills, the next ROUNDS are measured
log "breakwater warm: $ROUNDS GETs, $ROUNDS skopeo copies"
start_breakwater bw-warm "$UP_PORT"
BW_URL="http://127.0.0.1:$BW_PORT/v2/local/$REPO/blobs/$BIG"
get "$BW_URL" >/dev/null
bw_wait_committed "$BIG"
pull "127.0.0.1:$BW_PORT" "local/$REPO" >/dev/null
bw_wait_committed "$BIG"
sleep 0.3
l0=$(log_lines "$UP_LOG")
for r in $(seq "$ROUNDS"); do
    measure_get get_bw_warm "$BW_URL"
    measure_pull pull_bw_warm "127.0.0.1:$BW_PORT" "local/$REPO"
done
sleep 0.3
warm_upstream=$(log_stats "$UP_LOG" "$l0" "." "GET|HEAD")
warm_upstream=${warm_upstream% *}
BW_RSS=$(rss_peak_kib "$BW_PID")
stop_pid "$BW_PID"
bw_problems=$((bw_problems + $(bw_log_problems "$BW_DIR/breakwater.log")))

# --- distribution's proxy, the peer
if [ "$PEER" = 1 ]; then
    log "distribution proxy: cold and warm, $ROUNDS rounds each"
    for r in $(seq "$ROUNDS"); do
        start_registry "proxy-cold-get-$r" "proxy:
  remoteurl: http://127.0.0.1:$UP_PORT"
        measure_get get_px_cold "http://127.0.0.1:$REG_PORT/v2/$REPO/blobs/$BIG"
        wait_log_quiet "$UP_LOG" 1 20
        stop_pid "$REG_PID"
        rm -rf "$REG_DIR"
        start_registry "proxy-cold-pull-$r" "proxy:
  remoteurl: http://127.0.0.1:$UP_PORT"
        measure_pull pull_px_cold "127.0.0.1:$REG_PORT" "$REPO"
        wait_log_quiet "$UP_LOG" 1 20
        stop_pid "$REG_PID"
        rm -rf "$REG_DIR"
    done
    start_registry proxy-warm "proxy:
  remoteurl: http://127.0.0.1:$UP_PORT"
    PX_PORT=$REG_PORT
    get "http://127.0.0.1:$PX_PORT/v2/$REPO/blobs/$BIG" >/dev/null
    pull "127.0.0.1:$PX_PORT" "$REPO" >/dev/null
    wait_log_quiet "$UP_LOG" 1 20
    for r in $(seq "$ROUNDS"); do
        measure_get get_px_warm "http://127.0.0.1:$PX_PORT/v2/$REPO/blobs/$BIG"
        measure_pull pull_px_warm "127.0.0.1:$PX_PORT" "$REPO"
    done
    stop_pid "$REG_PID"
fi

# --- report
D=$(med get_direct)
P=$(med pull_direct)
figure layer_bytes "$BIG_SIZE"
figure get_direct_s "$D"
figure get_bw_cold_s "$(med get_bw_cold)"
figure get_bw_warm_s "$(med get_bw_warm)"
if [ "$PEER" = 1 ]; then figure get_px_cold_s "$(med get_px_cold)"; fi
row() { # label key reference [goal]
    local m r
    m=$(med "$2")
    r=$(ratio "$m" "$3")
    if [ -n "${TT[$2]:-}" ]; then
        printf '| %s | %s s | %s s | %s | %s |\n' "$1" "$(fmt .4f "$m")" "$(fmt .4f "$(medt "$2")")" "$r" "${4:-}"
    else
        printf '| %s | %s s | — | %s | %s |\n' "$1" "$(fmt .3f "$m")" "$r" "${4:-}"
    fi
}
{
    echo "## pull-64mib: one ${BIG_MIB} MiB layer and a whole-image pull"
    echo
    echo "$(context); median of $ROUNDS rounds; image = $SMALL_SIZE layer + ${BIG_MIB} MiB layer + config; cold = fresh breakwater process and store per round."
    echo
    echo "| measure | median time | median time to first byte | vs direct (same kind) | goal |"
    echo "|---|---|---|---|---|"
    row "GET ${BIG_MIB} MiB layer, direct from upstream" get_direct "$D"
    row "GET via breakwater, cold" get_bw_cold "$D"
    row "GET via breakwater, warm" get_bw_warm "$D"
    if [ "$PEER" = 1 ]; then row "GET via distribution proxy, cold" get_px_cold "$D"; fi
    if [ "$PEER" = 1 ]; then row "GET via distribution proxy, warm" get_px_warm "$D"; fi
    row "skopeo copy of the image, direct from upstream" pull_direct "$P"
    row "skopeo copy via breakwater, cold" pull_bw_cold "$P" "≤ 1.1× direct: $(verdict "$(med pull_bw_cold) <= 1.1*$P")"
    row "skopeo copy via breakwater, warm" pull_bw_warm "$P"
    if [ "$PEER" = 1 ]; then row "skopeo copy via distribution proxy, cold" pull_px_cold "$P"; fi
    if [ "$PEER" = 1 ]; then row "skopeo copy via distribution proxy, warm" pull_px_warm "$P"; fi
    echo
    echo "Ratios: GET cold/direct $(ratio "$(med get_bw_cold)" "$D"), warm/direct $(ratio "$(med get_bw_warm)" "$D");" \
        "skopeo cold/direct $(ratio "$(med pull_bw_cold)" "$P"), warm/direct $(ratio "$(med pull_bw_warm)" "$P")."
    echo "Upstream GETs of the big layer per cold breakwater GET round: ${cold_upstream_gets% } (goal: 1 each)." \
        "Upstream requests during the warm rounds (GETs and skopeo copies within the tag TTL): $warm_upstream (goal: 0)."
    echo "Extra cold round with a Python client: the final bytes arrived $(fmt .3f "$lb_wait") s after the rest, of $(fmt .3f "$lb_total") s in total (a cache that releases the last byte only after verifying and committing the blob shows that commit here)."
    echo "breakwater peak RSS in the warm process: $((BW_RSS / 1024)) MiB. WARN/ERROR lines in breakwater logs: $bw_problems."
    echo
    echo "Raw seconds per round: $(for k in $(printf '%s\n' "${!T[@]}" | sort); do printf '%s: %s; ' "$k" "$(python3 -c 'import sys; print(" ".join(f"{float(x):.4f}" for x in sys.argv[1:]))' ${T[$k]})"; done)"
    echo
} | emit_results "$RESULTS_FILE"
