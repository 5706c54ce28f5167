#!/usr/bin/env bash
# Profiles cold single GETs of one big layer through breakwater: each round starts a fresh
# breakwater (empty store), attaches a profiler to it, GETs the layer once with curl, and stops.
# Direct GETs from the upstream are timed in the same run for the ratio.
#
# Env: LAYER_SIZE (64M)  ROUNDS (5)
#      MODE: time (no profiler) | strace (syscall counts and time, `strace -f -c`) |
#            trace (every read/write-like syscall with its duration, `strace -f -T`) |
#            perf (`perf record -g`, report of the hottest symbols)
#      OUT (where the profiler's reports go; default: $BENCH_TMP/breakwater-profile-cold-reports)
source "$(dirname "$0")/lib.sh"

LAYER_SIZE="${LAYER_SIZE:-64M}"
ROUNDS="${ROUNDS:-5}"
MODE="${MODE:-time}"
REPO=bench/app

bench_init profile-cold
OUT="${OUT:-$BENCH_TMP/breakwater-profile-cold-reports}"
mkdir -p "$OUT"
case "$MODE" in
time) ;;
strace | trace) need strace ;;
perf) need perf ;;
*) die "MODE must be time, strace, trace or perf" ;;
esac

start_registry upstream
UP_PORT=$REG_PORT
make_image app v1 16K "$LAYER_SIZE"
push_image app v1 "$UP_PORT" "$REPO"
BIG=$(image_field app 'd["layers"][-1]["digest"]')
DIRECT_URL="http://127.0.0.1:$UP_PORT/v2/$REPO/blobs/$BIG"
# busy_ticks: CPU time (clock ticks) every process on the machine has used, from /proc/stat.
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
get() { curl -s -o /dev/null --max-time 300 -w '%{http_code} %{size_download} %{time_total} %{time_starttransfer}\n' "$1"; }
get "$DIRECT_URL" >/dev/null # page cache warm-up

direct="" cold="" ttfb="" cpu="" busy_direct="" busy_cold=""
for r in $(seq "$ROUNDS"); do
    b0=$(busy_ticks)
    read -r _ _ t _ <<<"$(get "$DIRECT_URL")"
    busy_direct+=" $(($(busy_ticks) - b0))"
    direct+=" $t"
    start_breakwater "bw-$r" "$UP_PORT"
    prof=""
    case "$MODE" in
    strace) strace -f -c -p "$BW_PID" -o "$OUT/strace-c-$r.txt" 2>/dev/null & prof=$! ;;
    trace) strace -f -T -tt -e trace=read,write,pwrite64,pread64,fsync,fdatasync,recvfrom,sendto,writev,readv,futex,epoll_wait \
        -p "$BW_PID" -o "$OUT/strace-T-$r.txt" 2>/dev/null & prof=$! ;;
    perf) perf record -g -q -p "$BW_PID" -o "$OUT/perf-$r.data" 2>/dev/null & prof=$! ;;
    esac
    [ -n "$prof" ] && sleep 1
    b0=$(busy_ticks)
    read -r code size t tt <<<"$(get "http://127.0.0.1:$BW_PORT/v2/local/$REPO/blobs/$BIG")"
    busy_cold+=" $(($(busy_ticks) - b0))"
    [ "$code" = 200 ] || die "cold GET: status $code"
    cold+=" $t" ttfb+=" $tt"
    bw_wait_committed "$BIG"
    cpu+=" $(cpu_ticks "$BW_PID")"
    if [ -n "$prof" ]; then
        kill -INT "$prof" 2>/dev/null || true
        wait "$prof" 2>/dev/null || true
    fi
    stop_pid "$BW_PID"
    rm -rf "$BW_DIR/store"
done
if [ "$MODE" = perf ]; then
    perf report -i "$OUT/perf-$ROUNDS.data" --no-children --stdio -g none --sort comm,dso,symbol 2>/dev/null |
        grep -v '^#' | grep '%' | head -40 >"$OUT/perf-top.txt" || true
fi
D=$(median $direct)
C=$(median $cold)
echo "profile-cold ($MODE, $ROUNDS rounds, $LAYER_SIZE): direct $(fmt .4f "$D") s, breakwater cold $(fmt .4f "$C") s" \
    "(ttfb $(fmt .4f "$(median $ttfb)") s), ratio $(ratio "$C" "$D");" \
    "breakwater CPU per round (start, fill, commit) $(calc "$(median $cpu) / $(getconf CLK_TCK)") s;" \
    "machine CPU during the GET (every process: upstream, curl, breakwater): direct" \
    "$(calc "$(median $busy_direct) / $(getconf CLK_TCK)") s, cold $(calc "$(median $busy_cold) / $(getconf CLK_TCK)") s" \
    "on $(nproc) cores; reports in $OUT"
