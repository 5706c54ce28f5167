#!/usr/bin/env bash
# Manifest requests per second: wrk with CONNECTIONS connections for DURATION on one OCI manifest,
# by tag and by digest, through a warm breakwater (tag inside its TTL), against nginx serving the
# same bytes as a static file with the same Content-Type, and against distribution's proxy (PEER=1).
# Reports req/s, p99 latency, server CPU, non-2xx answers, and the upstream manifest requests seen
# while breakwater was measured (its tag TTL should make that 0).
#
# Env: DURATION (10s)  ROUNDS (3; median of interleaved rounds)  CONNECTIONS (64)  WRK_THREADS (2)
#      THREADS (2: breakwater threads, nginx workers)  PEER (1)  QUICK=1 (3s, 1 round)
#      RESULTS_FILE (load-tests/results/manifest-rps.md)
source "$(dirname "$0")/lib.sh"

if [ "$QUICK" = 1 ]; then
    DURATION="${DURATION:-3s}"
    ROUNDS="${ROUNDS:-1}"
fi
DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-3}"
CONNECTIONS="${CONNECTIONS:-64}"
WRK_THREADS="${WRK_THREADS:-2}"
THREADS="${THREADS:-2}"
PEER="${PEER:-1}"
RESULTS_FILE="${RESULTS_FILE:-$RESULTS_DIR/manifest-rps.md}"
REPO=bench/app
TAG=v1
OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
# What containerd and skopeo send (the full list, OCI first).
ACCEPT="$OCI_MANIFEST, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json"

bench_init manifest-rps
need skopeo wrk

start_registry upstream
UP_PORT=$REG_PORT
UP_LOG="$REG_DIR/access.log"
make_image app "$TAG" 4K 16K
push_image app "$TAG" "$UP_PORT" "$REPO"
MDIGEST=$(image_field app 'd["manifest"]["digest"]')
MSIZE=$(image_field app 'd["manifest"]["size"]')

# The exact bytes as static files for nginx, under the same paths breakwater answers.
mkdir -p "$WORK/www/v2/local/$REPO/manifests"
image_field app 'd["manifest"]["b64"]' | base64 -d >"$WORK/www/v2/local/$REPO/manifests/$TAG"
cp "$WORK/www/v2/local/$REPO/manifests/$TAG" "$WORK/www/v2/local/$REPO/manifests/$MDIGEST"
start_nginx nginx "$WORK/www" "$THREADS" "location /v2/ { default_type $OCI_MANIFEST; add_header Docker-Content-Digest $MDIGEST; }"

start_breakwater bw "$UP_PORT" "$THREADS"
if [ "$PEER" = 1 ]; then
    start_registry proxy "proxy:
  remoteurl: http://127.0.0.1:$UP_PORT"
    PX_PID=$REG_PID
    PX_PORT=$REG_PORT
fi

cat >"$WORK/accept.lua" <<EOF
wrk.method = "GET"
wrk.headers["Accept"] = "$ACCEPT"
EOF

# check URL: the manifest bytes and type come back (this also warms the caches)
check() {
    local out
    out=$(curl -s -D "$WORK/h" -o "$WORK/body" -H "Accept: $ACCEPT" -w '%{http_code} %{content_type}' "$1")
    [ "$out" = "200 $OCI_MANIFEST" ] || die "GET $1: $out"
    cmp -s "$WORK/body" "$WORK/www/v2/local/$REPO/manifests/$TAG" || die "GET $1: different manifest bytes"
    grep -qi "^docker-content-digest: $MDIGEST" "$WORK/h" || die "GET $1: no/wrong Docker-Content-Digest"
}
for base in "127.0.0.1:$NGX_PORT/v2/local/$REPO" "127.0.0.1:$BW_PORT/v2/local/$REPO" ${PX_PORT:+"127.0.0.1:$PX_PORT/v2/$REPO"}; do
    check "http://$base/manifests/$TAG"
    check "http://$base/manifests/$MDIGEST"
done

# bench URL TAG PID... -> "req_per_s p99_ms p50_ms non2xx socket_errors cpu_s requests"
bench() {
    local url="$1" tag="$2" c0 c1
    shift 2
    c0=$(cpu_ticks "$@")
    wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --timeout 10s --latency -s "$WORK/accept.lua" "$url" \
        >"$WORK/wrk-$tag.txt" 2>&1 || die "wrk failed: $(cat "$WORK/wrk-$tag.txt")"
    c1=$(cpu_ticks "$@")
    python3 - "$WORK/wrk-$tag.txt" "$(calc "($c1-$c0)/$CLK_TCK")" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    n, u = float(m.group(1)), m.group(2)
    return n * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
reqs = int(re.search(r"(\d+) requests in", text).group(1))
print(f"{rps:.0f} {p99:.2f} {p50:.2f} {non2xx.group(1) if non2xx else 0} {sum(map(int, sock.groups())) if sock else 0} {sys.argv[2]} {reqs}")
EOF
}

declare -A R RAW
for round in $(seq "$ROUNDS"); do
    for ref in tag digest; do
        [ "$ref" = tag ] && r="$TAG" || r="$MDIGEST"
        log "round $round/$ROUNDS by $ref: nginx, breakwater$([ "$PEER" = 1 ] && echo ", distribution proxy"), $DURATION each"
        RAW[nginx_$ref]+="$(bench "http://127.0.0.1:$NGX_PORT/v2/local/$REPO/manifests/$r" "nginx-$ref-$round" $(tree_pids "$NGX_PID"));"
        sleep 1
        l0=$(log_lines "$UP_LOG")
        RAW[bw_$ref]+="$(bench "http://127.0.0.1:$BW_PORT/v2/local/$REPO/manifests/$r" "bw-$ref-$round" "$BW_PID");"
        sleep 1
        n=$(log_stats "$UP_LOG" "$l0" "/manifests/" "GET|HEAD")
        R[bw_up_$ref]=$((${R[bw_up_$ref]:-0} + ${n% *}))
        if [ "$PEER" = 1 ]; then
            sleep 1
            l0=$(log_lines "$UP_LOG")
            RAW[px_$ref]+="$(bench "http://127.0.0.1:$PX_PORT/v2/$REPO/manifests/$r" "px-$ref-$round" "$PX_PID");"
            wait_log_quiet "$UP_LOG" 1 20
            n=$(log_stats "$UP_LOG" "$l0" "/manifests/" "GET|HEAD")
            R[px_up_$ref]=$((${R[px_up_$ref]:-0} + ${n% *}))
        fi
    done
done
# medians over rounds (req/s, p99, p50, CPU, requests); errors summed
median_rows() {
    python3 - "$1" <<'EOF'
import statistics, sys
rows = [r.split() for r in sys.argv[1].split(";") if r.strip()]
med = lambda i: statistics.median(float(r[i]) for r in rows)
print(f"{med(0):.0f} {med(1):.2f} {med(2):.2f} {sum(int(r[3]) for r in rows)} {sum(int(r[4]) for r in rows)} {med(5):.3f} {med(6):.0f}")
EOF
}
for k in "${!RAW[@]}"; do
    R[$k]=$(median_rows "${RAW[$k]}")
done
BW_RSS=$(rss_peak_kib "$BW_PID")
stop_pid "$BW_PID"
bw_problems=$(bw_log_problems "$BW_DIR/breakwater.log")

row() { # label key nginx-key up-count
    local rps p99 p50 non2xx sock cpu reqs nrps
    read -r rps p99 p50 non2xx sock cpu reqs <<<"${R[$2]}"
    read -r nrps _ <<<"${R[$3]}"
    printf '| %s | %s | %s | %s ms | %s ms | %s | %s | %s |\n' "$1" "$rps" "$(ratio "$rps" "$nrps")" "$p99" "$p50" \
        "$non2xx / $sock" "$(fmt .1f "$(calc "$cpu*1e5/max($reqs,1)")") s" "$4"
}
read -r bt_rps bt_p99 bt_x <<<"${R[bw_tag]}"
read -r bd_rps bd_p99 bd_x <<<"${R[bw_digest]}"
read -r nt_rps _ <<<"${R[nginx_tag]}"
read -r nd_rps _ <<<"${R[nginx_digest]}"
read -r _ nt_p99 _ <<<"${R[nginx_tag]}"
figure nginx_tag_rps "$nt_rps"
figure nginx_tag_p99_ms "$nt_p99"
figure bw_tag_rps "$bt_rps"
figure bw_tag_p99_ms "$bt_p99"
figure bw_digest_rps "$bd_rps"
figure nginx_digest_rps "$nd_rps"
figure bw_upstream_manifest_requests "$((${R[bw_up_tag]} + ${R[bw_up_digest]}))"
{
    echo "## manifest-rps: one OCI manifest ($MSIZE bytes), $CONNECTIONS connections, $DURATION"
    echo
    echo "$(context); wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION with the full Accept list, median of $ROUNDS interleaved round(s); breakwater warm (tag TTL 10m), threads = nginx workers = $THREADS; wrk shares the $(nproc) CPUs."
    echo
    echo "| server, reference | req/s | vs nginx | p99 | p50 | non-2xx / socket errors | server CPU per 100k req | upstream manifest requests during the runs |"
    echo "|---|---|---|---|---|---|---|---|"
    row "nginx static file, by tag" nginx_tag nginx_tag "—"
    row "breakwater, by tag" bw_tag nginx_tag "${R[bw_up_tag]}"
    if [ "$PEER" = 1 ]; then row "distribution proxy, by tag" px_tag nginx_tag "${R[px_up_tag]}"; fi
    row "nginx static file, by digest" nginx_digest nginx_digest "—"
    row "breakwater, by digest" bw_digest nginx_digest "${R[bw_up_digest]}"
    if [ "$PEER" = 1 ]; then row "distribution proxy, by digest" px_digest nginx_digest "${R[px_up_digest]}"; fi
    echo
    echo "| goal for breakwater | measured | met |"
    echo "|---|---|---|"
    echo "| by tag ≥ 0.5× nginx | $(ratio "$bt_rps" "$nt_rps") | $(verdict "$bt_rps >= 0.5*$nt_rps") |"
    echo "| by digest ≥ 0.5× nginx | $(ratio "$bd_rps" "$nd_rps") | $(verdict "$bd_rps >= 0.5*$nd_rps") |"
    echo "| p99 ≤ 10 ms (tag / digest) | $bt_p99 ms / $bd_p99 ms | $(verdict "$bt_p99 <= 10 and $bd_p99 <= 10") |"
    echo "| no upstream manifest request within the TTL | ${R[bw_up_tag]} + ${R[bw_up_digest]} | $(verdict "${R[bw_up_tag]} + ${R[bw_up_digest]} == 0") |"
    echo
    echo "breakwater peak RSS: $((BW_RSS / 1024)) MiB. WARN/ERROR lines in its log: $bw_problems."
    echo
} | emit_results "$RESULTS_FILE"
