# Shared helpers for the load-test scripts (sourced, not run).
#
# Everything listens on 127.0.0.1 only, lives in one temp dir ($WORK) and is killed by PID on exit.
# Environment:
#   BREAKWATER_BIN  breakwater binary (default: <repo>/target/release/breakwater)
#   RESULTS_DIR     where result files go (default: load-tests/results)
#   KEEP=1          keep $WORK (logs, configs, stores) after the run
#   QUICK=1         small sizes and few rounds, for a smoke run (each script applies its own)
#   BENCH_TMP       parent of $WORK (default: $TMPDIR or /tmp); needs ~3× the largest blob free

set -euo pipefail

LT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$LT_DIR/.." && pwd)"
BREAKWATER_BIN="${BREAKWATER_BIN:-$REPO_DIR/target/release/breakwater}"
RESULTS_DIR="${RESULTS_DIR:-$LT_DIR/results}"
QUICK="${QUICK:-0}"
KEEP="${KEEP:-0}"
MIB=$((1024 * 1024))
CLK_TCK="$(getconf CLK_TCK)"

# PIDs we started, killed in reverse order on exit.
BENCH_PIDS=()
WORK=""

log() { printf '[%s %s] %s\n' "$(date +%H:%M:%S)" "${BENCH_NAME:-bench}" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

need() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null || die "missing tool: $c"
    done
}

bench_init() {
    BENCH_NAME="$1"
    need curl python3 docker-registry
    [ -x "$BREAKWATER_BIN" ] || die "no breakwater binary at $BREAKWATER_BIN (cargo build --release)"
    BENCH_TMP="${BENCH_TMP:-${TMPDIR:-/tmp}}"
    mkdir -p "$BENCH_TMP"
    WORK="$(mktemp -d "$BENCH_TMP/breakwater-$BENCH_NAME.XXXXXX")"
    BENCH_START=$(date +%s)
    BENCH_LOAD0=$(cut -d' ' -f1 /proc/loadavg)
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    log "work dir $WORK; breakwater $BREAKWATER_BIN"
}

kill_pid() {
    # kill_pid PID: TERM, then KILL after 5 s; only ever the PID we were given.
    local pid="$1" i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

bench_cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
        kill_pid "${BENCH_PIDS[$i]}"
    done
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ "$KEEP" = 1 ] || [ "$rc" != 0 ]; then
            log "kept $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    [ -n "${BENCH_START:-}" ] && log "finished in $(($(date +%s) - BENCH_START)) s (exit $rc)"
    exit "$rc"
}

forget_pid() {
    local pid="$1" i
    for i in "${!BENCH_PIDS[@]}"; do
        [ "${BENCH_PIDS[$i]}" = "$pid" ] && unset 'BENCH_PIDS[i]'
    done
    BENCH_PIDS=("${BENCH_PIDS[@]}")
}

stop_pid() {
    kill_pid "$1"
    forget_pid "$1"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

now() { date +%s.%N; }

# wait_http URL SECONDS: until URL answers any HTTP status.
wait_http() {
    local url="$1" deadline=$(($(date +%s) + ${2:-30}))
    while [ "$(date +%s)" -le "$deadline" ]; do
        if curl -s -o /dev/null --max-time 2 "$url"; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------- docker-registry (distribution)

# start_registry NAME [EXTRA_YAML] -> sets REG_PORT, REG_PID, REG_DIR; access log in $REG_DIR/access.log
start_registry() {
    local name="$1" extra="${2:-}" attempt
    REG_DIR="$WORK/$name"
    mkdir -p "$REG_DIR/storage"
    for attempt in 1 2 3 4 5; do
        REG_PORT="$(free_port)"
        cat >"$REG_DIR/config.yml" <<EOF
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: "$REG_DIR/storage"
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$REG_PORT
  secret: breakwater-bench-secret
$extra
EOF
        docker-registry serve "$REG_DIR/config.yml" >>"$REG_DIR/access.log" 2>>"$REG_DIR/registry.log" </dev/null &
        REG_PID=$!
        BENCH_PIDS+=("$REG_PID")
        if wait_http "http://127.0.0.1:$REG_PORT/v2/" 30 && kill -0 "$REG_PID" 2>/dev/null &&
            grep -q "listening on 127.0.0.1:$REG_PORT" "$REG_DIR/registry.log"; then
            return 0
        fi
        stop_pid "$REG_PID"
        grep -q "address already in use" "$REG_DIR/registry.log" || break
    done
    tail -20 "$REG_DIR/registry.log" >&2
    die "docker-registry $name did not start"
}

# Access-log accounting. Lines of distribution's combined log:
#   127.0.0.1 - - [date] "GET /v2/x/blobs/sha256:.. HTTP/1.1" 200 12345 "" "ua"
log_lines() { wc -l <"$1" | tr -d ' '; }

# log_stats FILE FROM_LINE PATH_REGEX [METHOD_REGEX] -> "requests bytes" for requests (default: GET)
# whose path matches, counting lines after FROM_LINE. Bytes are the body sizes the registry logged.
log_stats() {
    python3 - "$1" "$2" "$3" "${4:-GET}" <<'EOF'
import re, sys
path, start, pat = sys.argv[1], int(sys.argv[2]), re.compile(sys.argv[3])
line_re = re.compile(r'"(' + sys.argv[4] + r') (\S+) HTTP/[0-9.]+" (\d{3}) (\d+|-)')
n = b = 0
with open(path, errors="replace") as f:
    for i, line in enumerate(f):
        if i < start:
            continue
        m = line_re.search(line)
        if m and pat.search(m.group(2)):
            n += 1
            if m.group(4) != "-":
                b += int(m.group(4))
print(n, b)
EOF
}

# wait_log_quiet FILE [QUIET_S] [MAX_S]: until FILE stopped growing for QUIET_S (distribution writes
# an access-log line after the response; its proxy also fetches in the background).
wait_log_quiet() {
    local f="$1" quiet="${2:-1}" max="${3:-30}" last cur stable=0 t0
    t0=$(date +%s)
    last=$(stat -c %s "$f")
    while [ $(($(date +%s) - t0)) -lt "$max" ]; do
        sleep 0.25
        cur=$(stat -c %s "$f")
        if [ "$cur" = "$last" ]; then
            stable=$((stable + 1))
            [ "$stable" -ge $((quiet * 4)) ] && return 0
        else
            stable=0
            last=$cur
        fi
    done
}

# ---------------------------------------------------------------- breakwater

# start_breakwater NAME UPSTREAM_PORT [THREADS] [EXTRA_TOML] -> BW_PORT, BW_ADMIN, BW_PID, BW_DIR
# (fresh store). BW_STORAGE: extra [storage] lines (index, backend and their sections);
# BW_TAG_TTL: the upstream's tag_ttl (10m).
start_breakwater() {
    local name="$1" up="$2" threads="${3:-2}" extra="${4:-}" attempt
    BW_DIR="$WORK/$name"
    rm -rf "$BW_DIR"
    mkdir -p "$BW_DIR"
    for attempt in 1 2 3 4 5; do
        BW_PORT="$(free_port)"
        BW_ADMIN="$(free_port)"
        cat >"$BW_DIR/breakwater.toml" <<EOF
[server]
listen = "127.0.0.1:$BW_PORT"
admin_listen = "127.0.0.1:$BW_ADMIN"
threads = $threads
${BW_SERVER:-}

[storage]
root = "$BW_DIR/store"
${BW_STORAGE:-}

[routing]
default_upstream = "local"
presets = false

[upstreams.local]
url = "http://127.0.0.1:$up"
aliases = ["local"]
tag_ttl = "${BW_TAG_TTL:-10m}"
$extra
EOF
        "$BREAKWATER_BIN" serve --config "$BW_DIR/breakwater.toml" >>"$BW_DIR/breakwater.log" 2>&1 </dev/null &
        BW_PID=$!
        BENCH_PIDS+=("$BW_PID")
        if wait_http "http://127.0.0.1:$BW_PORT/v2/" 30 && wait_http "http://127.0.0.1:$BW_ADMIN/metrics" 10 &&
            kill -0 "$BW_PID" 2>/dev/null; then
            return 0
        fi
        stop_pid "$BW_PID"
        grep -qi "in use" "$BW_DIR/breakwater.log" || break
    done
    tail -20 "$BW_DIR/breakwater.log" >&2
    die "breakwater $name did not start"
}

# bw_metric NAME_REGEX: sum of matching sample lines from /metrics.
bw_metric() {
    curl -s --max-time 5 "http://127.0.0.1:$BW_ADMIN/metrics" |
        awk -v re="$1" '$0 !~ /^#/ && $1 ~ re { s += $NF } END { printf "%.0f\n", s }'
}

# bw_stored_path DIGEST: where breakwater's filesystem store keeps a committed blob.
bw_stored_path() { echo "$BW_DIR/store/blobs/sha256/${1:7:2}/${1#sha256:}"; }

# bw_wait_committed DIGEST [SECONDS]: breakwater may release the last byte before the blob is
# committed (fsync + rename); wait until the blob is in the store and no fill runs, so "warm"
# measurements read the stored file rather than join a fill.
bw_wait_committed() {
    local d="$1" deadline=$(($(date +%s) + ${2:-120}))
    while [ "$(date +%s)" -le "$deadline" ]; do
        if [ -f "$(bw_stored_path "$d")" ] && [ "$(bw_metric '^breakwater_fills_in_flight$')" = 0 ]; then
            return 0
        fi
        sleep 0.1
    done
    die "blob $d not committed to breakwater's store within ${2:-120} s"
}

# bw_log_problems LOGFILE: "N" warnings/errors, first few printed to stderr.
bw_log_problems() {
    local f="$1" n
    n=$(grep -cE ' (WARN|ERROR) |panicked' "$f" || true)
    if [ "$n" -gt 0 ]; then
        log "$n WARN/ERROR lines in $f, first ones:"
        grep -E ' (WARN|ERROR) |panicked' "$f" | head -5 | cut -c1-300 >&2
    fi
    echo "$n"
}

# ---------------------------------------------------------------- nginx

# start_nginx NAME ROOT [WORKERS] [EXTRA_HTTP_CONF] -> NGX_PORT, NGX_PID (master; workers are its children)
start_nginx() {
    local name="$1" root="$2" workers="${3:-2}" extra="${4:-}" attempt
    need nginx
    NGX_DIR="$WORK/$name"
    mkdir -p "$NGX_DIR/tmp"
    for attempt in 1 2 3 4 5; do
        NGX_PORT="$(free_port)"
        cat >"$NGX_DIR/nginx.conf" <<EOF
daemon off;
master_process on;
$([ "$(id -u)" = 0 ] && echo "user root root;")
worker_processes $workers;
pid $NGX_DIR/nginx.pid;
error_log $NGX_DIR/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 60;
    client_body_temp_path $NGX_DIR/tmp/body;
    proxy_temp_path $NGX_DIR/tmp/proxy;
    fastcgi_temp_path $NGX_DIR/tmp/fastcgi;
    uwsgi_temp_path $NGX_DIR/tmp/uwsgi;
    scgi_temp_path $NGX_DIR/tmp/scgi;
    types { }
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$NGX_PORT;
        root $root;
        $extra
    }
}
EOF
        nginx -c "$NGX_DIR/nginx.conf" -p "$NGX_DIR" </dev/null >>"$NGX_DIR/stdout.log" 2>&1 &
        NGX_PID=$!
        BENCH_PIDS+=("$NGX_PID")
        if wait_http "http://127.0.0.1:$NGX_PORT/" 15 && kill -0 "$NGX_PID" 2>/dev/null; then
            return 0
        fi
        stop_pid "$NGX_PID"
        grep -q "in use" "$NGX_DIR/error.log" "$NGX_DIR/stdout.log" 2>/dev/null || break
    done
    cat "$NGX_DIR/error.log" "$NGX_DIR/stdout.log" >&2 2>/dev/null || true
    die "nginx did not start"
}

# ---------------------------------------------------------------- /proc accounting

# cpu_ticks PID...: utime+stime (clock ticks) of the given processes, all their threads.
cpu_ticks() {
    local total=0 pid f
    for pid in "$@"; do
        [ -r "/proc/$pid/stat" ] || continue
        # after "pid (comm) " the fields start at 3 (state); utime is field 14, stime 15
        read -r -a f < <(sed 's/^.*) //' "/proc/$pid/stat")
        total=$((total + ${f[11]} + ${f[12]}))
    done
    echo "$total"
}

# tree_pids PID: PID and its direct children (nginx master + workers).
tree_pids() {
    echo "$1"
    pgrep -P "$1" 2>/dev/null || true
}

# rss_peak_kib PID: VmHWM (peak resident set) in KiB.
rss_peak_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
rss_now_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# reset_peak_rss PID: restart VmHWM from the current RSS (Linux clear_refs 5); 1 if it worked.
reset_peak_rss() {
    if echo 5 >"/proc/$1/clear_refs" 2>/dev/null; then echo 1; else echo 0; fi
}

# ---------------------------------------------------------------- numbers

# median V1 V2 ...
median() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

# calc EXPR: python arithmetic, e.g. calc "2.5/1.25"
calc() { python3 -c "import sys; from math import *; print($1)"; }

# fmt FMT VALUE
fmt() { python3 -c 'import sys; print(format(float(sys.argv[2]), sys.argv[1]))' "$1" "$2"; }

# ratio A B [FMT]: A/B formatted (default .2f) with a trailing ×, "n/a" when B is 0.
ratio() {
    python3 -c 'import sys
a, b = float(sys.argv[1]), float(sys.argv[2])
r = a / b if b else None
print("n/a" if r is None else (format(r, sys.argv[3]) if r >= 0.1 or r == 0 else format(r, ".2g")) + "×")' "$1" "$2" "${3:-.2f}"
}

# verdict OK_EXPR: "yes"/"**no**" for a python boolean expression.
verdict() { python3 -c "print('yes' if ($1) else '**no**')"; }

# ---------------------------------------------------------------- images

# make_image NAME TAG SIZE... : writes an OCI layout with one layer per SIZE (bytes, random) under
# $WORK/oci-NAME and prints the JSON description (digests, sizes) to $WORK/oci-NAME.json.
make_image() {
    local name="$1" tag="$2"
    shift 2
    python3 "$LT_DIR/imagegen.py" "$WORK/oci-$name" "$tag" "$@" >"$WORK/oci-$name.json"
}

# push_image NAME TAG REGPORT REPO: skopeo copy oci:... docker://127.0.0.1:REGPORT/REPO:TAG
push_image() {
    need skopeo
    skopeo copy --quiet --dest-tls-verify=false \
        "oci:$WORK/oci-$1:$2" "docker://127.0.0.1:$3/$4:$2" >&2
}

# image_field NAME PY_EXPR: evaluate an expression on the image description `d`.
image_field() {
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' \
        "$WORK/oci-$1.json" "$2"
}

# ---------------------------------------------------------------- results

# context: date, CPUs, commit and the 1-minute load average at start and now (the machine is
# shared: a load well above nproc before the run means other work competed for the cores).
context() {
    printf '%s, %s CPUs, commit %s%s, load average %s at start / %s at end' \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(nproc)" \
        "$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo '?')" \
        "$(git -C "$REPO_DIR" diff --quiet HEAD -- . ':!load-tests/results' 2>/dev/null || echo ' (dirty tree)')" \
        "$BENCH_LOAD0" "$(cut -d' ' -f1 /proc/loadavg)"
}

# figure KEY VALUE: one machine-readable figure ("KEY VALUE" line) appended to $FIGURES_FILE when
# that is set; issue-table.sh reads these instead of parsing the markdown.
figure() {
    if [ -n "${FIGURES_FILE:-}" ]; then echo "$1 $2" >>"$FIGURES_FILE"; fi
}

# emit_results FILE: stdin (markdown) to stdout and FILE.
emit_results() {
    mkdir -p "$(dirname "$1")"
    tee "$1"
}
