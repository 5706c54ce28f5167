#!/usr/bin/env bash
# Idle connections: breakwater's resident memory (VmRSS) with 0 and then STEPS idle client
# connections open on the registry port (connected, nothing sent), KiB per connection, whether a
# request is still answered meanwhile, and whether header_timeout closes them all.
#
# Env: STEPS ("1000 10000")  HEADER_TIMEOUT (20s: long enough to measure before it fires)
#      QUICK=1 (STEPS="100 1000")  RESULTS_FILE (load-tests/results/idle-connections.md)
#      LIMITS=0: set no client-limit keys (to measure a binary from before they existed; Pingora
#      then closes idle connections after its 60 s keep-alive)
source "$(dirname "$0")/lib.sh"

[ "$QUICK" = 1 ] && STEPS="${STEPS:-100 1000}"
STEPS="${STEPS:-1000 10000}"
HEADER_TIMEOUT="${HEADER_TIMEOUT:-20s}"
RESULTS_FILE="${RESULTS_FILE:-$RESULTS_DIR/idle-connections.md}"

bench_init idle-connections
start_registry upstream
if [ "${LIMITS:-1}" = 1 ]; then
    BW_SERVER="header_timeout = \"$HEADER_TIMEOUT\"
max_connections = 30000"
else
    HEADER_TIMEOUT="(not set)"
fi
BW_SERVER="${BW_SERVER:-}" start_breakwater bw "$REG_PORT" 2

log "opening idle connections: $STEPS"
python3 - "$BW_PORT" "$BW_PID" $STEPS >"$WORK/idle.out" <<'PY'
import resource, socket, sys, time, urllib.request
port, pid, steps = int(sys.argv[1]), int(sys.argv[2]), [int(s) for s in sys.argv[3:]]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
def fds():
    import os
    return len(os.listdir(f"/proc/{pid}/fd"))
time.sleep(0.5)
base, fd0 = rss(), fds()
print(f"0 {base} 0")
conns = []
for n in steps:
    n = min(n, hard - 200)
    while len(conns) < n:
        conns.append(socket.create_connection(("127.0.0.1", port)))
    deadline = time.time() + 30
    while fds() < fd0 + n and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1)
    r = rss()
    print(f"{n} {r} {(r - base) * 1024 // n}")
ok = urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=10).status
print(f"served {ok}")
t0 = time.time()
closed = 0
for c in conns:
    c.settimeout(120)
    try:
        closed += c.recv(1) == b""
    except OSError:
        closed += 1
print(f"closed {closed} of {len(conns)} within {time.time() - t0:.1f}s")
PY
cat "$WORK/idle.out" >&2
stop_pid "$BW_PID"
{
    echo "## idle-connections: breakwater VmRSS with idle client connections"
    echo
    echo "$(context); header_timeout = $HEADER_TIMEOUT; release binary $BREAKWATER_BIN."
    echo
    echo "| idle connections | VmRSS | bytes per connection |"
    echo "|---|---|---|"
    grep -E '^[0-9]+ ' "$WORK/idle.out" | while read -r n kib per; do
        echo "| $n | $((kib / 1024)) MiB ($kib KiB) | $per |"
    done
    echo
    echo "GET /v2/ while they were open: $(awk '/^served/ {print $2}' "$WORK/idle.out"). $(grep '^closed' "$WORK/idle.out") (header_timeout)."
    echo
} | emit_results "$RESULTS_FILE"
