#!/usr/bin/env bash
# Issue 11's replica figures, measured in one run against one upstream registry, one Garage and
# one PostgreSQL, all private on loopback:
#   A. one replica, filesystem store vs object storage (Garage; without and with the local disk
#      tier): warm blob GB/s and manifest-by-tag req/s, S3/fs ratios;
#   B. 1 vs 3 replicas on the PostgreSQL index (a filesystem store each) under the same client
#      load spread evenly: aggregate warm blob GB/s and manifest req/s, the 3/1 ratio, and one
#      replica on PostgreSQL vs one on SQLite; PostgreSQL transactions per request;
#   C. upstream requests: N concurrent cold clients over 3 replicas vs over 1 (blob GETs, bytes
#      as a multiple of the blob), and a tag past its TTL asked of all three.
# Rounds of A and B are interleaved; medians are reported.
#
# Env: BLOB_SIZE (256M)  CLIENTS (6 warm blob clients)  REPEAT (2 GETs each)  DURATION (10s)
#      CONNECTIONS (64)  ROUNDS (3)  COLD_CLIENTS (16)  TAG_TTL (3s)  LOCAL_CACHE (1: also S3
#      with local_cache_bytes)  THREADS (2)  QUICK=1 (32M, 3 clients, 1 GET, 3s, 1 round, 8 cold)
#      RESULTS_FILE (load-tests/results/replicas.md)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib-cluster.sh"

if [ "$QUICK" = 1 ]; then
    BLOB_SIZE="${BLOB_SIZE:-32M}"
    CLIENTS="${CLIENTS:-3}"
    REPEAT="${REPEAT:-1}"
    DURATION="${DURATION:-3s}"
    ROUNDS="${ROUNDS:-1}"
    COLD_CLIENTS="${COLD_CLIENTS:-8}"
fi
BLOB_SIZE="${BLOB_SIZE:-256M}"
CLIENTS="${CLIENTS:-6}"
REPEAT="${REPEAT:-2}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
ROUNDS="${ROUNDS:-3}"
COLD_CLIENTS="${COLD_CLIENTS:-16}"
TAG_TTL="${TAG_TTL:-3s}"
LOCAL_CACHE="${LOCAL_CACHE:-1}"
THREADS="${THREADS:-2}"
RESULTS_FILE="${RESULTS_FILE:-$RESULTS_DIR/replicas.md}"
REPO=bench/big
TAG=v1
SECRET=bench-cluster-secret-0123456789abcdef
ACCEPT="application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json"

bench_init replicas
need skopeo wrk

# ---------------------------------------------------------------- upstream, Garage, PostgreSQL
start_registry upstream
UP_PORT=$REG_PORT
UP_LOG="$REG_DIR/access.log"
log "upstream registry on $UP_PORT; generating a $BLOB_SIZE layer"
make_image big "$TAG" "$BLOB_SIZE" 4K
push_image big "$TAG" "$UP_PORT" "$REPO"
rm -rf "$WORK/oci-big"
DIGEST=$(image_field big 'd["layers"][0]["digest"]')
SIZE=$(image_field big 'd["layers"][0]["size"]')
MDIGEST=$(image_field big 'd["manifest"]["digest"]')
# The image's other blobs (config, small layer): fetched once per node, so the image is whole.
OTHERS=$(image_field big '" ".join([d["config"]["digest"]] + [l["digest"] for l in d["layers"][1:]])')
curl -s -o /dev/null "http://127.0.0.1:$UP_PORT/v2/$REPO/blobs/$DIGEST" # upstream page cache
start_garage
log "garage S3 API on $GARAGE_PORT"
start_postgres
log "postgresql on $PG_PORT"

cat >"$WORK/accept.lua" <<EOF
wrk.method = "GET"
wrk.headers["Accept"] = "$ACCEPT"
EOF

# Every breakwater we start: name -> "port admin pid dir".
declare -A NODE
# node NAME UPSTREAM_EXTRA...: start_breakwater with $BW_STORAGE / $BW_TAG_TTL, remembered as NAME.
node() {
    start_breakwater "$1" "$UP_PORT" "$THREADS" "${2:-}"
    NODE[$1]="$BW_PORT $BW_ADMIN $BW_PID $BW_DIR"
}
port_of() { cut -d' ' -f1 <<<"${NODE[$1]}"; }
admin_of() { cut -d' ' -f2 <<<"${NODE[$1]}"; }
pid_of() { cut -d' ' -f3 <<<"${NODE[$1]}"; }
dir_of() { cut -d' ' -f4 <<<"${NODE[$1]}"; }
# metric_of NAME REGEX: lib.sh's bw_metric against that node's admin port.
metric_of() { BW_ADMIN=$(admin_of "$1") bw_metric "$2"; }
blob_url() { echo "http://127.0.0.1:$(port_of "$1")/v2/local/$REPO/blobs/$DIGEST"; }
tag_url() { echo "http://127.0.0.1:$(port_of "$1")/v2/local/$REPO/manifests/$TAG"; }

# pg_node NAME DB_URL [TAG_TTL]: a replica on the PostgreSQL index, in the cluster.
pg_node() {
    BW_STORAGE="index = \"postgres\"

[storage.postgres]
url = \"$2\"
pool_size = 8" BW_TAG_TTL="${3:-10m}" node "$1" "
[cluster]
node = \"$1\"
peer_listen = \"127.0.0.1:$(free_port)\"
secret = \"$SECRET\"
lease_ttl = \"5s\""
}

# check_get URL: one GET answers 200 with the whole blob.
check_blob() {
    local out
    out=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' --max-time 600 "$1")
    [ "$out" = "200 $SIZE" ] || die "GET $1: $out (want 200 $SIZE)"
}

# check_tag URL: the tag answers the pushed manifest.
check_tag() {
    local out
    out=$(curl -s -D "$WORK/h" -o /dev/null -H "Accept: $ACCEPT" -w '%{http_code}' "$1")
    [ "$out" = 200 ] && grep -qi "^docker-content-digest: $MDIGEST" "$WORK/h" ||
        die "GET $1: $out, digest $(grep -i docker-content-digest "$WORK/h")"
}

# warm NAME [PREFIX]: fill the blob and the tag, wait until the blob is committed (on the
# filesystem, or in the bucket under PREFIX), then check a second GET is a hit.
warm() {
    local name="$1" prefix="${2:-}" deadline hits d
    check_blob "$(blob_url "$name")"
    check_tag "$(tag_url "$name")"
    for d in $OTHERS; do
        curl -sf -o /dev/null "http://127.0.0.1:$(port_of "$name")/v2/local/$REPO/blobs/$d" || die "$name: GET $d failed"
    done
    deadline=$(($(date +%s) + 120))
    while :; do
        if [ "$(metric_of "$name" '^breakwater_fills_in_flight$')" = 0 ]; then
            if [ -n "$prefix" ]; then
                garage_has "$prefix" "$DIGEST" && break
            elif [ -f "$(dir_of "$name")/store/blobs/sha256/${DIGEST:7:2}/${DIGEST#sha256:}" ]; then
                break
            fi
        fi
        [ "$(date +%s)" -le "$deadline" ] || die "$name: blob not committed within 120 s"
        sleep 0.1
    done
    hits=$(metric_of "$name" 'breakwater_requests_total\{kind="blob",result="hit"')
    check_blob "$(blob_url "$name")"
    [ "$(metric_of "$name" 'breakwater_requests_total\{kind="blob",result="hit"')" -gt "$hits" ] ||
        die "$name: the second GET of the blob was not a hit"
}

# blob_load TAG BW_PIDS OTHER_PIDS NAME...: CLIENTS curl processes, client i on node i mod n,
# each GETting the blob REPEAT times -> "GB/s failures bw_cpu_s_per_GB other_cpu_s_per_GB"
blob_load() {
    local tag="$1" pids="$2" others="$3" i n c0 c1 o0 o1 t0 t1 urls=() procs=()
    shift 3
    for n in "$@"; do urls+=("$(blob_url "$n")"); done
    rm -f "$WORK/b-$tag-"*.out
    c0=$(cpu_ticks $pids)
    o0=$(cpu_ticks $others)
    t0=$(now)
    for i in $(seq 0 $((CLIENTS - 1))); do
        local u="${urls[$((i % ${#urls[@]}))]}" args=()
        for _ in $(seq "$REPEAT"); do args+=(-o /dev/null "$u"); done
        curl -s --max-time 600 -w '%{http_code} %{size_download}\n' "${args[@]}" \
            >"$WORK/b-$tag-$i.out" 2>/dev/null &
        procs+=($!)
    done
    for i in "${procs[@]}"; do wait "$i" || true; done
    t1=$(now)
    c1=$(cpu_ticks $pids)
    o1=$(cpu_ticks $others)
    python3 - "$SIZE" "$((CLIENTS * REPEAT))" "$(calc "$t1-$t0")" "$(calc "($c1-$c0)/$CLK_TCK")" \
        "$(calc "($o1-$o0)/$CLK_TCK")" "$WORK/b-$tag-"*.out <<'EOF'
import sys
size, want, wall, cpu, other = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
files = sys.argv[6:]
got = [l.split() for f in files for l in open(f) if l.strip()]
ok = [g for g in got if g[0] == "200" and int(g[1]) == size]
total = sum(int(g[1]) for g in got)
gb = max(total / 1e9, 1e-9)
print(f"{total / 1e9 / wall:.3f} {want - len(ok)} {cpu / gb:.3f} {other / gb:.3f}")
EOF
}

# wrk_one URL CONNS THREADS OUT: wrk in the background; its output goes to OUT.
wrk_one() {
    wrk -t"$3" -c"$2" -d"$DURATION" --timeout 10s --latency -s "$WORK/accept.lua" "$1" >"$4" 2>&1
}

# manifest_load TAG NAME...: CONNECTIONS wrk connections on the tag, spread evenly over the
# nodes (one wrk per node, run together) -> "req_s worst_p99_ms errors requests"
manifest_load() {
    local tag="$1" i procs=() outs=() conns names
    shift
    names=("$@")
    for i in "${!names[@]}"; do
        conns=$((CONNECTIONS / $# + (i < CONNECTIONS % $# ? 1 : 0)))
        outs+=("$WORK/wrk-$tag-$i.txt")
        wrk_one "$(tag_url "${names[$i]}")" "$conns" "$([ $# = 1 ] && echo 2 || echo 1)" "${outs[$i]}" &
        procs+=($!)
    done
    for i in "${procs[@]}"; do wait "$i" || die "wrk failed: $(cat "${outs[@]}")"; done
    python3 - "${outs[@]}" <<'EOF'
import re, sys
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[m.group(2)]
rps = p99 = 0.0
errors = reqs = 0
for f in sys.argv[1:]:
    t = open(f).read()
    rps += float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    p99 = max(p99, ms(re.search(r"^\s+99%\s+(\S+)", t, re.M).group(1)))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", t)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
    errors += (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
    reqs += int(re.search(r"(\d+) requests in", t).group(1))
print(f"{rps:.0f} {p99:.2f} {errors} {reqs}")
EOF
}

# pg_delta DB BEFORE: SQL statements in DB since BEFORE (background ones apart).
pg_delta() {
    sleep 0.3 # what the last responses wrote (batched pull statistics may follow later)
    echo $(($(pg_statements "$1") - $2))
}

# ---------------------------------------------------------------- start and warm every node
log "part A nodes: filesystem store, S3 store$([ "$LOCAL_CACHE" = 1 ] && echo ", S3 store + local_cache_bytes") (SQLite index each)"
BW_STORAGE="" node a-fs
warm a-fs
BW_STORAGE="$(garage_storage a-s3)" node a-s3
warm a-s3 a-s3
A_NODES="a-fs a-s3"
if [ "$LOCAL_CACHE" = 1 ]; then
    BW_STORAGE="$(garage_storage a-s3hot 'local_cache_bytes = "8GiB"')" node a-s3hot
    warm a-s3hot a-s3hot
    A_NODES+=" a-s3hot"
fi
log "part B nodes: three replicas on PostgreSQL, a filesystem store each"
DB_B=bench_b
DB_B_URL=$(pg_database "$DB_B")
for n in b1 b2 b3; do pg_node "$n" "$DB_B_URL"; done
for n in b1 b2 b3; do warm "$n"; done

# ---------------------------------------------------------------- parts A and B, interleaved rounds
declare -A RAW R
round_blob() { # KEY BW_PIDS OTHER_PIDS NAME...
    local key="$1" pids="$2" others="$3" x0 s0
    shift 3
    x0=$(pg_statements "$DB_B")
    s0=$(garage_requests)
    RAW[blob_$key]+="$(blob_load "$key" "$pids" "$others" "$@") $(pg_delta "$DB_B" "$x0") $(($(garage_requests) - s0));"
}
round_manifest() { # KEY PIDS NAME...: also the CPU seconds of PIDS over the run
    local key="$1" pids="$2" x0 c0 out
    shift 2
    x0=$(pg_statements "$DB_B")
    c0=$(cpu_ticks $pids)
    out=$(manifest_load "$key" "$@")
    RAW[man_$key]+="$out $(pg_delta "$DB_B" "$x0") $(calc "($(cpu_ticks $pids)-$c0)/$CLK_TCK");"
}
B_PIDS="$(pid_of b1) $(pid_of b2) $(pid_of b3)"
for round in $(seq "$ROUNDS"); do
    log "round $round/$ROUNDS: warm blob ($CLIENTS clients × $REPEAT GETs) on fs, s3$([ "$LOCAL_CACHE" = 1 ] && echo ", s3+local"), 1 and 3 replicas"
    round_blob fs "$(pid_of a-fs)" "" a-fs
    round_blob s3 "$(pid_of a-s3)" "$GARAGE_PID" a-s3
    if [ "$LOCAL_CACHE" = 1 ]; then round_blob s3hot "$(pid_of a-s3hot)" "$GARAGE_PID" a-s3hot; fi
    pg_pids=$(tree_pids "$PG_PID" | tr '\n' ' ') # the postmaster and its backends
    round_blob pg1 "$B_PIDS" "$pg_pids" b1
    round_blob pg3 "$B_PIDS" "$pg_pids" b1 b2 b3
    log "round $round/$ROUNDS: manifest by tag, $CONNECTIONS connections, $DURATION each"
    round_manifest fs "$(pid_of a-fs)" a-fs
    round_manifest s3 "$(pid_of a-s3)" a-s3
    round_manifest pg1 "$B_PIDS" b1
    round_manifest pg3 "$B_PIDS" b1 b2 b3
done
# medians of each field over the rounds
for k in "${!RAW[@]}"; do
    R[$k]=$(python3 -c 'import statistics, sys
rows = [r.split() for r in sys.argv[1].split(";") if r.strip()]
print(" ".join(format(statistics.median(float(r[i]) for r in rows), "g") for i in range(len(rows[0]))))' "${RAW[$k]}")
done
for n in $A_NODES b1 b2 b3; do stop_pid "$(pid_of "$n")"; done

# ---------------------------------------------------------------- part C: upstream requests
TTL_S=$(python3 -c 'import sys; v = sys.argv[1]; print(float(v[:-1]) if v.endswith("s") else sys.exit("TAG_TTL in seconds, e.g. 3s"))' "$TAG_TTL")
log "part C: $COLD_CLIENTS cold clients on one replica (reference), then over three (tag TTL $TAG_TTL)"
BW_TAG_TTL="$TAG_TTL" node c-one
DB_C=bench_c
DB_C_URL=$(pg_database "$DB_C")
for n in c1 c2 c3; do pg_node "$n" "$DB_C_URL" "$TAG_TTL"; done

# upstream_count FROM_LINE PATH_REGEX METHODS -> requests in the upstream's log since FROM_LINE
upstream_count() {
    wait_log_quiet "$UP_LOG" 1 30
    log_stats "$UP_LOG" "$1" "$2" "$3" | cut -d' ' -f1
}

# spread_gets KIND NAME...: COLD_CLIENTS curl processes at once, client i on node i mod n
# -> "wall_s failures"; KIND blob wants the whole blob, tag the manifest.
spread_gets() {
    local kind="$1" i t0 t1 names procs=() u
    shift
    names=("$@")
    rm -f "$WORK/s-$kind-"*.out
    t0=$(now)
    for i in $(seq 0 $((COLD_CLIENTS - 1))); do
        u=$([ "$kind" = blob ] && blob_url "${names[$((i % $#))]}" || tag_url "${names[$((i % $#))]}")
        curl -s -o /dev/null --max-time 600 -H "Accept: $ACCEPT" -w '%{http_code} %{size_download}\n' "$u" \
            >"$WORK/s-$kind-$i.out" 2>/dev/null &
        procs+=($!)
    done
    for i in "${procs[@]}"; do wait "$i" || true; done
    t1=$(now)
    echo "$(fmt .3f "$(calc "$t1-$t0")") $(cat "$WORK/s-$kind-"*.out | awk -v kind="$kind" -v size="$SIZE" \
        '$1 != 200 || (kind == "blob" && $2 != size) { f++ } END { print f + 0 }')"
}

# cold_case KEY NAME...: the cold blob burst and the tag's upstream requests for these nodes.
cold_case() {
    local key="$1" l0 x0 n s
    shift
    x0=$(pg_statements "$DB_C")
    pg_statement_counts "$DB_C" >"$WORK/pg-$key-before.tsv"
    l0=$(log_lines "$UP_LOG")
    R[c_${key}_burst]=$(spread_gets blob "$@")
    R[c_${key}_up]=$(wait_log_quiet "$UP_LOG" 1 30 && log_stats "$UP_LOG" "$l0" "/blobs/$DIGEST")
    # A client joining a fill before the blob is linked to its repository has upstream confirm
    # the repository holds it (a HEAD): counted apart from the GETs.
    R[c_${key}_heads]=$(log_stats "$UP_LOG" "$l0" "/blobs/$DIGEST" HEAD | cut -d' ' -f1)
    R[c_${key}_pg]=$(pg_delta "$DB_C" "$x0")
    pg_statement_counts "$DB_C" >"$WORK/pg-$key-after.tsv"
    s=""
    for source in upstream peer takeover; do
        local sum=0 v
        for n in "$@"; do
            v=$(metric_of "$n" "breakwater_cluster_fills_total\\{source=\"$source\"")
            sum=$((sum + v))
        done
        s+="$sum/"
    done
    R[c_${key}_sources]=${s%/}
    # The tag: first asked of each node in turn (cold), then past its TTL in turn, then past
    # its TTL by COLD_CLIENTS clients at once.
    l0=$(log_lines "$UP_LOG")
    for n in "$@"; do check_tag "$(tag_url "$n")"; done
    R[c_${key}_tag_first]=$(upstream_count "$l0" "/manifests/" "GET|HEAD")
    sleep "$(calc "$TTL_S + 0.5")"
    l0=$(log_lines "$UP_LOG")
    x0=$(pg_statements "$DB_C")
    pg_statement_counts "$DB_C" >"$WORK/pg-$key-tag-before.tsv"
    for n in "$@"; do check_tag "$(tag_url "$n")"; done
    R[c_${key}_tag_seq]=$(upstream_count "$l0" "/manifests/" "GET|HEAD")
    R[c_${key}_tag_seq_pg]=$(pg_delta "$DB_C" "$x0")
    pg_statement_counts "$DB_C" >"$WORK/pg-$key-tag-after.tsv"
    sleep "$(calc "$TTL_S + 0.5")"
    l0=$(log_lines "$UP_LOG")
    R[c_${key}_tag_conc_run]=$(spread_gets tag "$@")
    R[c_${key}_tag_conc]=$(upstream_count "$l0" "/manifests/" "GET|HEAD")
}
cold_case one c-one
cold_case three c1 c2 c3
# Every node warns at start that it runs without [access] (on purpose here): not counted.
PROBLEMS=0
PANICS=0
for n in "${!NODE[@]}"; do
    l="$(dir_of "$n")/breakwater.log"
    PROBLEMS=$((PROBLEMS + $(grep -E ' (WARN|ERROR) ' "$l" | grep -vc 'no \[access\] section' || true)))
    PANICS=$((PANICS + $(grep -c 'panicked' "$l" || true)))
done
if [ "$PANICS" -gt 0 ]; then
    log "$PANICS panics in the breakwater logs, first:"
    grep -h -A1 panicked "$WORK"/*/breakwater.log | head -4 >&2
fi

# ---------------------------------------------------------------- report
f() { cut -d' ' -f"$2" <<<"${R[$1]}"; } # field N of a result
# spread KEY [REF_KEY] FMT: field 1 over the rounds as "median (min–max)"; with REF_KEY, of the
# per-round ratios KEY/REF_KEY (the two measured back to back in each round, so drifting load
# on the shared machine cancels out better than in a ratio of medians).
spread() {
    python3 - "${RAW[$1]}" "${2:+${RAW[$2]}}" "$3" <<'EOF'
import statistics, sys
rows = lambda raw: [float(r.split()[0]) for r in raw.split(";") if r.strip()]
a, fmt = rows(sys.argv[1]), sys.argv[3]
if sys.argv[2]:
    a = [x / y if y else float("nan") for x, y in zip(a, rows(sys.argv[2]))]
unit = "×" if sys.argv[2] else ""
med = format(statistics.median(a), fmt) + unit
print(med if len(a) < 2 else f"{med} ({format(min(a), fmt)}–{format(max(a), fmt)}{unit})")
EOF
}
gbs() { spread "blob_$1" "" .2f; }
rps() { spread "man_$1" "" .0f; }
per_k() { fmt .1f "$(calc "$(f "man_$1" 5)*1000/max($(f "man_$1" 4),1)")"; }
cpu_100k() { fmt .1f "$(calc "$(f "man_$1" 6)*1e5/max($(f "man_$1" 4),1)")"; }
BLOB_MIB=$(calc "$SIZE/$MIB")
GETS=$((CLIENTS * REPEAT))
{
    echo "## replicas: object storage vs filesystem, 1 vs 3 replicas, upstream requests (issue 11)"
    echo
    echo "$(context). One run: the upstream registry, Garage $("$GARAGE_BIN" --version 2>/dev/null | awk '{print $2}' | sed 's/^cargo://'), PostgreSQL $("$(pg_bin postgres)" --version | awk '{print $3}'), every breakwater (threads = $THREADS each) and every client (curl, wrk) share this machine's $(nproc) CPUs: a second or third replica adds no hardware here: where three replicas do more than one, it is because six server threads win a larger share of the contended CPUs than two (compare the CPU per request), not more machines. Medians of $ROUNDS interleaved round(s), with the range over the rounds in brackets; ratios are medians of the per-round ratios."
    echo
    echo "### A. One replica: blob store on object storage (Garage) vs the filesystem"
    echo
    echo "Warm ${BLOB_MIB} MiB blob: $CLIENTS curl clients × $REPEAT GETs; manifest by tag: wrk, $CONNECTIONS connections, $DURATION. SQLite index, redirect off; same config otherwise."
    echo
    echo "| store | warm blob GB/s | vs fs | breakwater CPU s/GB | Garage CPU s/GB | S3 requests per blob GET | failed GETs | manifest by tag req/s | vs fs | p99 | errors | breakwater CPU s per 100k manifests |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    a_row() { # label key
        local man="— | — | — | — | —" s3="—" garage="—"
        if [ -n "${R[man_$2]:-}" ]; then
            man="$(rps "$2") | $(spread "man_$2" man_fs .2f) | $(f "man_$2" 2) ms | $(fmt .0f "$(f "man_$2" 3)") | $(cpu_100k "$2")"
        fi
        if [ "$2" != fs ]; then
            s3=$(fmt .1f "$(calc "$(f "blob_$2" 6)/$GETS")")
            garage=$(f "blob_$2" 4)
        fi
        echo "| $1 | $(gbs "$2") | $(spread "blob_$2" blob_fs .2f) | $(f "blob_$2" 3) | $garage | $s3 | $(fmt .0f "$(f "blob_$2" 2)") | $man |"
    }
    a_row "filesystem (reference)" fs
    a_row "S3 (Garage), no local cache" s3
    if [ "$LOCAL_CACHE" = 1 ]; then a_row "S3 (Garage) + \`local_cache_bytes\`" s3hot; fi
    echo
    echo "S3 requests are Garage's own count (\`api_s3_request_counter\`) over each run. Without the local tier a warm GET is one HEAD plus one ranged GET per 4 MiB window, $((1 + (SIZE + 4 * MIB - 1) / (4 * MIB))) for this blob; with it, the blob is read from the node's disk. Manifest hits are answered from memory on every store."
    echo
    echo "### B. 1 vs 3 replicas: PostgreSQL index, a filesystem store each, same client load"
    echo
    echo "Blob: the same $CLIENTS clients × $REPEAT GETs, client i on replica i mod n. Manifest by tag: $CONNECTIONS wrk connections in total, split evenly with one wrk per replica running together (one thread each; a single wrk -t2 for one replica). \"1 replica\" is b1 of the same cluster with b2 and b3 idle (heartbeats only). PostgreSQL statements counted with \`pg_stat_statements\` over each run, leaving out the timer-driven ones (membership heartbeats, job leases): over a manifest run with no request to these replicas (the filesystem row of A) there were $(fmt .0f "$(f man_fs 5)")."
    echo
    echo "| replicas serving | warm blob GB/s | vs 1 | replica CPU s/GB | PostgreSQL CPU s/GB | PG statements per blob GET | manifest by tag req/s | vs 1 | worst p99 | errors | replica CPU s per 100k manifests | PG statements per 1k manifest requests |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    b_row() {
        echo "| $1 | $(gbs "$2") | $(spread "blob_$2" blob_pg1 .2f) | $(f "blob_$2" 3) | $(f "blob_$2" 4) | $(fmt .2f "$(calc "$(f "blob_$2" 5)/$GETS")") | $(rps "$2") | $(spread "man_$2" man_pg1 .2f) | $(f "man_$2" 2) ms | $(fmt .0f "$(f "man_$2" 3)") | $(cpu_100k "$2") | $(per_k "$2") |"
    }
    b_row "1 replica (reference)" pg1
    b_row "3 replicas" pg3
    echo
    echo "| ratio (median of the per-round ratios, min–max) | measured |"
    echo "|---|---|"
    echo "| 3 replicas / 1, warm blob GB/s | $(spread blob_pg3 blob_pg1 .2f) |"
    echo "| 3 replicas / 1, manifest req/s | $(spread man_pg3 man_pg1 .2f) |"
    echo "| one replica on PostgreSQL (cluster) / one on SQLite (A's filesystem row), manifest req/s | $(spread man_pg1 man_fs .2f) |"
    echo "| same, warm blob GB/s | $(spread blob_pg1 blob_fs .2f) |"
    echo
    echo "### C. Upstream requests: $COLD_CLIENTS clients, one replica vs three"
    echo
    echo "A fresh ${BLOB_MIB} MiB blob (cold on every node: new stores, new database): $COLD_CLIENTS concurrent curl GETs, client i on node i mod n. Counted in the upstream registry's access log. Then the tag (TTL $TAG_TTL): first asked of each node in turn (cold), after its TTL asked of each node in turn, and after its TTL again by $COLD_CLIENTS concurrent clients spread over the nodes."
    echo
    echo "| nodes | failed clients | upstream blob GETs | upstream blob HEADs | upstream bytes / blob | wall, all $COLD_CLIENTS | fills upstream / peer / takeover | PG statements in the burst | tag, first asks: upstream manifest requests | tag past TTL, nodes in turn | tag past TTL, $COLD_CLIENTS at once |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    c_row() {
        local wall fail gets bytes cw cf cf_note=""
        read -r wall fail <<<"${R[c_$2_burst]}"
        read -r gets bytes <<<"${R[c_$2_up]}"
        read -r cw cf <<<"${R[c_$2_tag_conc_run]}"
        [ "$cf" = 0 ] || cf_note=" ($cf failed)"
        local sources="${R[c_$2_sources]}" pg="${R[c_$2_pg]}"
        [ "$2" = one ] && sources="— (no cluster)" && pg="— (SQLite)"
        echo "| $1 | $fail | $gets | ${R[c_$2_heads]} | $(fmt .2f "$(calc "$bytes/$SIZE")")× | $wall s | $sources | $pg | ${R[c_$2_tag_first]} | ${R[c_$2_tag_seq]} | ${R[c_$2_tag_conc]}${cf_note:-} |"
    }
    c_row "1 replica, SQLite (reference)" one
    c_row "3 replicas, PostgreSQL" three
    echo
    echo "| goal | measured | met |"
    echo "|---|---|---|"
    read -r g3 b3 <<<"${R[c_three_up]}"
    read -r g1 b1 <<<"${R[c_one_up]}"
    echo "| 3 replicas fetch the blob once, like 1 (upstream GETs 3 / 1) | $g3 / $g1 | $(verdict "$g3 == $g1 == 1") |"
    echo "| upstream bytes 1.0× the blob over 3 replicas | $(fmt .2f "$(calc "$b3/$SIZE")")× | $(verdict "$b3 == $SIZE") |"
    echo "| a tag past its TTL asked of the 3 in turn: as many upstream requests as for 1 | ${R[c_three_tag_seq]} / ${R[c_one_tag_seq]} | $(verdict "${R[c_three_tag_seq]} <= ${R[c_one_tag_seq]}") |"
    echo
    echo "PostgreSQL statements (timer-driven ones apart) during the 3-replica cold burst ($COLD_CLIENTS clients, one blob; ${R[c_three_pg]} in all) and while the tag past its TTL was asked of the three in turn (${R[c_three_tag_seq_pg]} in all):"
    echo
    echo "| calls, cold burst | calls, tag past TTL ×3 | statement |"
    echo "|---|---|---|"
    python3 - "$WORK"/pg-three-{before,after,tag-before,tag-after}.tsv <<'EOF'
import sys
def load(p):
    d = {}
    for line in open(p):
        if "\t" in line:
            n, q = line.rstrip("\n").split("\t", 1)
            d[q] = d.get(q, 0) + int(n)
    return d
b0, b1, t0, t1 = map(load, sys.argv[1:5])
burst = {q: n - b0.get(q, 0) for q, n in b1.items()}
tag = {q: n - t0.get(q, 0) for q, n in t1.items()}
rows = sorted(((burst.get(q, 0), tag.get(q, 0), q) for q in set(burst) | set(tag)), reverse=True)
for b, t, q in rows:
    if b > 0 or t > 0:
        q = q if len(q) <= 100 else q[:97] + "..."
        print(f"| {b} | {t} | `{q.replace('|', '/')}` |")
EOF
    echo
    echo "In all ${#NODE[@]} breakwater logs: $PROBLEMS WARN/ERROR lines (apart from the start-up warning that \`[access]\` is off), $PANICS panics."
    echo
} | emit_results "$RESULTS_FILE"
