#!/usr/bin/env bash
# Access control's cost on the hot paths: the same warm breakwater twice over one upstream, open
# (no [access]) and with access control on (clients present a registry token from /token, rules
# checked, repository links checked), measured back to back in interleaved rounds:
#  - manifest GETs by digest (wrk, CONNECTIONS connections, DURATION);
#  - warm blob GETs (CLIENTS parallel curl downloads of a BLOB_SIZE layer), GB/s.
# Reports each figure and the ratio on/off (the goal is >= 0.9).
#
# Env: DURATION (10s)  ROUNDS (3)  CONNECTIONS (64)  BLOB_SIZE (256M)  CLIENTS (4)  THREADS (2)
#      QUICK=1 (3s, 1 round, 64M)  PROFILE=1 (perf profiles first)  RESULTS_FILE (load-tests/results/auth-overhead.md)
source "$(dirname "$0")/lib.sh"

if [ "$QUICK" = 1 ]; then
    DURATION="${DURATION:-3s}"
    ROUNDS="${ROUNDS:-1}"
    BLOB_SIZE="${BLOB_SIZE:-64M}"
fi
DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-3}"
CONNECTIONS="${CONNECTIONS:-64}"
BLOB_SIZE="${BLOB_SIZE:-256M}"
CLIENTS="${CLIENTS:-4}"
THREADS="${THREADS:-2}"
RESULTS_FILE="${RESULTS_FILE:-$RESULTS_DIR/auth-overhead.md}"
REPO=bench/app
TAG=v1
ROBOT_TOKEN=bench-robot-token-0123456789abcdef

bench_init auth-overhead
need skopeo wrk curl

start_registry upstream
UP_PORT=$REG_PORT
make_image app "$TAG" "$BLOB_SIZE"
push_image app "$TAG" "$UP_PORT" "$REPO"
MDIGEST=$(image_field app 'd["manifest"]["digest"]')
LDIGEST=$(image_field app 'd["layers"][0]["digest"]')
LSIZE=$(image_field app 'd["layers"][0]["size"]')

start_breakwater open "$UP_PORT" "$THREADS"
OPEN_PORT=$BW_PORT OPEN_PID=$BW_PID
export BW_BENCH_ROBOT_TOKEN=$ROBOT_TOKEN
start_breakwater auth "$UP_PORT" "$THREADS" '
[access]
[[access.robots]]
name = "bench"
token_env = "BW_BENCH_ROBOT_TOKEN"

[[access.rules]]
who = ["robot:bench"]
repositories = ["local/**"]
actions = ["pull", "fill"]'
AUTH_PORT=$BW_PORT AUTH_PID=$BW_PID

# A registry token as docker/containerd get one: Basic robot credentials at /token.
TOKEN=$(curl -sf -u "bench:$ROBOT_TOKEN" \
    "http://127.0.0.1:$AUTH_PORT/token?service=breakwater&scope=repository:local/$REPO:pull" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])') || die "no token"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$AUTH_PORT/v2/local/$REPO/manifests/$MDIGEST")
[ "$code" = 401 ] || die "access control is not on (anonymous got $code)"

# Warm both caches (manifest and layer) and check the bytes.
for p in "$OPEN_PORT" "$AUTH_PORT"; do
    for path in "manifests/$TAG" "manifests/$MDIGEST" "blobs/$LDIGEST"; do
        out=$(curl -s -o "$WORK/body" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
            -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://127.0.0.1:$p/v2/local/$REPO/$path")
        [ "$out" = 200 ] || die "GET $path on $p: $out"
    done
    [ "$(sha256sum <"$WORK/body" | cut -d' ' -f1)" = "${LDIGEST#sha256:}" ] || die "wrong layer bytes from $p"
done

cat >"$WORK/token.lua" <<LUA
wrk.method = "GET"
wrk.headers["Accept"] = "application/vnd.oci.image.manifest.v1+json"
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUA

# rps PORT -> requests/s (non-2xx answers abort the run)
rps() {
    wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --timeout 10s -s "$WORK/token.lua" \
        "http://127.0.0.1:$1/v2/local/$REPO/manifests/$MDIGEST" >"$WORK/wrk.txt" 2>&1 || die "wrk: $(cat "$WORK/wrk.txt")"
    ! grep -q "Non-2xx" "$WORK/wrk.txt" || die "non-2xx answers: $(cat "$WORK/wrk.txt")"
    awk '/Requests\/sec/ { print $2 }' "$WORK/wrk.txt"
}

# gbps PORT -> GB/s of CLIENTS parallel warm downloads
gbps() {
    local t0 t1 i
    t0=$(now)
    for i in $(seq "$CLIENTS"); do
        curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" \
            "http://127.0.0.1:$1/v2/local/$REPO/blobs/$LDIGEST" &
    done
    wait
    t1=$(now)
    calc "$CLIENTS*$LSIZE/($t1-$t0)/1e9"
}

# PROFILE=1: where the CPU goes on the manifest path, each instance under the same wrk load
# (perf report text into $WORK/perf-{open,auth}.txt), before the measured rounds.
if [ "${PROFILE:-0}" = 1 ]; then
    need perf
    for side in open auth; do
        if [ $side = open ]; then port=$OPEN_PORT pid=$OPEN_PID; else port=$AUTH_PORT pid=$AUTH_PID; fi
        perf record -q -F 999 -g -p "$pid" -o "$WORK/perf-$side.data" -- sleep 6 >/dev/null 2>&1 &
        perf_pid=$!
        rps "$port" >/dev/null
        wait "$perf_pid"
        perf report -q -i "$WORK/perf-$side.data" --no-children --percent-limit 0.7 --stdio \
            -g none >"$WORK/perf-$side.txt" 2>/dev/null
        log "profile ($side): $WORK/perf-$side.txt"
    done
fi

M_OPEN=() M_AUTH=() B_OPEN=() B_AUTH=() M_RATIO=() B_RATIO=()
# Each round measures both instances back to back, in alternating order (open first in odd
# rounds, on first in even ones), so a drift in the machine's load does not favour one side; the
# figure is the median of the per-round ratios.
for round in $(seq "$ROUNDS"); do
    log "round $round/$ROUNDS"
    if [ $((round % 2)) = 1 ]; then
        mo=$(rps "$OPEN_PORT"); sleep 1; ma=$(rps "$AUTH_PORT"); sleep 1
        bo=$(gbps "$OPEN_PORT"); ba=$(gbps "$AUTH_PORT")
    else
        ma=$(rps "$AUTH_PORT"); sleep 1; mo=$(rps "$OPEN_PORT"); sleep 1
        ba=$(gbps "$AUTH_PORT"); bo=$(gbps "$OPEN_PORT")
    fi
    M_OPEN+=("$mo") M_AUTH+=("$ma") B_OPEN+=("$bo") B_AUTH+=("$ba")
    M_RATIO+=("$(calc "$ma/$mo")") B_RATIO+=("$(calc "$ba/$bo")")
done
mo=$(median "${M_OPEN[@]}") ma=$(median "${M_AUTH[@]}")
bo=$(median "${B_OPEN[@]}") ba=$(median "${B_AUTH[@]}")
{
    echo "## auth-overhead: access control on vs off, same run"
    echo
    echo "$(context); medians of $ROUNDS round(s) in alternating order, on / off = median of the per-round ratios; breakwater threads = $THREADS; clients share the $(nproc) CPUs."
    echo
    echo "| measure | open (no [access]) | access control on (registry token) | on / off |"
    echo "|---|---|---|---|"
    echo "| manifest GET by digest, req/s ($CONNECTIONS connections, $DURATION) | $(fmt .0f "$mo") | $(fmt .0f "$ma") | $(fmt .2f "$(median "${M_RATIO[@]}")")× |"
    echo "| warm blob GET, GB/s ($CLIENTS clients, $(calc "$LSIZE/$MIB" | cut -d. -f1) MiB layer) | $(fmt .2f "$bo") | $(fmt .2f "$ba") | $(fmt .2f "$(median "${B_RATIO[@]}")")× |"
    echo
    echo "Rounds: manifests open ${M_OPEN[*]} / on ${M_AUTH[*]}; blobs open ${B_OPEN[*]} / on ${B_AUTH[*]}."
} | emit_results "$RESULTS_FILE"
