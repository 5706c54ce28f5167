#!/usr/bin/env bash
# The soak run (issue 13): a real docker-registry upstream whose tags move and which keeps gaining
# images, a client mix through breakwater for DURATION, and GC, lifecycle and scan runs during the
# traffic, against a store quota small enough that eviction really happens. Every SAMPLE_EVERY
# seconds breakwater's RSS, open fds and threads are sampled. Writes results/soak.md and exits
# non-zero when a client saw an error or the samples did not stay flat.
#
# Clients (each a loop until DURATION is over):
#   PULLERS × skopeo copy of a tag: cold (first pull of a new image) or warm (pulled before; it may
#     have been expired or evicted since, and is then fetched again: not an error);
#   one curl loop: blob GETs (sha256 checked), Range GETs (bytes checked against the pushed file),
#     blob HEADs, manifest GETs and HEADs by moving tags (digest checked against the body and
#     against the digests ever pushed for the tag), and unknown blobs/tags (404 with the OCI code);
#   the upstream churn: every CHURN_EVERY seconds app:latest and base:latest are pushed again with
#     new contents (tag revalidation after TAG_TTL finds the new digest) and a new churn:gen-N
#     appears (a cold pull);
#   the operator: every ADMIN_EVERY seconds one of `breakwater gc`, `breakwater lifecycle apply`,
#     POST /api/v1/gc, POST /api/v1/lifecycle/apply, POST /api/v1/scans/… (scan now) and a check
#     that base:latest's stored findings name the vulnerable zlib (scan on cache is on too).
# An error is a failed skopeo copy, an unexpected status or wrong bytes; the first 20 are listed.
# WARN/ERROR lines of breakwater's log are listed too, and do not fail the run.
#
# Flat: after the warm-up (WARMUP, default a tenth of DURATION, at least 30 s) the median of the
# samples in the last quarter is within +10 % (RSS) and +5 (fds, threads) of the first quarter's.
#
# Usage: load-tests/soak.sh                     1 hour (by hand; release build)
#        DURATION=3m load-tests/soak.sh          the CI form
# Env: DURATION (60m; s/m/h), SAMPLE_EVERY (10 s; 5 below 10m), WARMUP, PULLERS (2), CHURN_EVERY
#      (30 s; 15 below 10m), ADMIN_EVERY (20 s; 10 below 10m), TAG_TTL (5s), MAX_BYTES (16MiB),
#      GC_GRACE (3s), RSS_SLACK (10 %), COUNT_SLACK (5).
# Needs: docker-registry, skopeo, curl, python3 (stdlib), sha256sum, cmp.
set -euo pipefail
LT_DIR="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
source "$LT_DIR/lib.sh"
bench_init soak
need skopeo sha256sum cmp

seconds() {
    case "$1" in
    *h) echo $((${1%h} * 3600)) ;;
    *m) echo $((${1%m} * 60)) ;;
    *s) echo "${1%s}" ;;
    *) echo "$1" ;;
    esac
}
DURATION="${DURATION:-60m}"
DUR_S="$(seconds "$DURATION")"
short=$([ "$DUR_S" -lt 600 ] && echo 1 || echo 0)
SAMPLE_EVERY="${SAMPLE_EVERY:-$([ "$short" = 1 ] && echo 5 || echo 10)}"
CHURN_EVERY="${CHURN_EVERY:-$([ "$short" = 1 ] && echo 15 || echo 30)}"
ADMIN_EVERY="${ADMIN_EVERY:-$([ "$short" = 1 ] && echo 10 || echo 20)}"
WARMUP="$(seconds "${WARMUP:-$((DUR_S / 10 > 30 ? DUR_S / 10 : 30))}")"
PULLERS="${PULLERS:-2}"
TAG_TTL="${TAG_TTL:-5s}"
MAX_BYTES="${MAX_BYTES:-16MiB}"
GC_GRACE="${GC_GRACE:-3s}"
RSS_SLACK="${RSS_SLACK:-10}"
COUNT_SLACK="${COUNT_SLACK:-5}"
RESULTS_FILE="${RESULTS_FILE:-$RESULTS_DIR/soak.md}"
OSV="$REPO_DIR/testdata/vulndb/osv/Debian-synthetic-edgecases"
[ -d "$OSV" ] || die "no OSV test data at $OSV"

OPS="$WORK/ops.log"         # one line per client operation: kind ok|err detail
STOP="$WORK/stop"           # the loops finish their current operation and end when this exists
mkdir -p "$WORK/pulled" "$WORK/digests"
: >"$OPS"
: >"$WORK/churn-tags"
op() { printf '%s %s %s\n' "$1" "$2" "${3:-}" >>"$OPS"; }

# ---------------------------------------------------------------- upstream

start_registry upstream
# push_new NAME TAG REPO GEN ARGS...: a fresh layout (GEN: random = imagegen.py, debian =
# soak-image.py), pushed as REPO:TAG; its manifest digest is recorded as one the tag may have.
# Static images keep their layout (the Range checks read it).
push_new() {
    local name="$1" tag="$2" repo="$3" gen="$4"
    shift 4
    # (|| return: the churn loop calls this inside `if`, where set -e does not stop at a failure)
    if [ "$gen" = debian ]; then
        python3 "$LT_DIR/soak-image.py" "$WORK/oci-$name" "$tag" "$name-$(date +%s%N)" "$@" >"$WORK/oci-$name.json" || return 1
    else
        make_image "$name" "$tag" "$@" || return 1
    fi
    # Recorded before the push: once the upstream has the new manifest, a revalidation may serve
    # it before skopeo returns.
    image_field "$name" 'd["manifest"]["digest"]' >>"$WORK/digests/$repo-$tag" || return 1
    push_image "$name" "$tag" "$REG_PORT" "$repo"
}
for t in v1 v2 v3; do push_new "app-$t" "$t" app random 256K 2M; done
push_new base-v1 v1 base debian 1M
push_new app-latest latest app random 128K 1M
push_new base-latest latest base debian 512K
# blobs.tsv: repo, digest, size, path of every static image's blob (the curl loop's material).
for n in app-v1:app app-v2:app app-v3:app base-v1:base; do
    python3 -c 'import json,sys
d = json.load(open(sys.argv[1]))
for l in d["layers"]:
    print(sys.argv[2], l["digest"], l["size"], d["blob_path"][l["digest"]], sep="\t")' "$WORK/oci-${n%%:*}.json" "${n#*:}"
done >"$WORK/blobs.tsv"

# ---------------------------------------------------------------- breakwater

policy='{"rules":[{"rulePriority":1,"description":"keep the newest 4 churn images","selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":4},"action":{"type":"expire"}}]}'
BW_TAG_TTL="$TAG_TTL" BW_STORAGE="max_bytes = \"$MAX_BYTES\"
high_water = 90
low_water = 70" start_breakwater bw "$REG_PORT" 2 "
[lifecycle]
apply_interval = \"0s\"
[[lifecycle.policies]]
repositories = \"local/churn\"
policy = '$policy'
[gc]
interval = \"0s\"
grace = \"$GC_GRACE\"
[scan]
osv_paths = [\"$OSV\"]
on_cache = [\"local/base\", \"local/churn\"]"
admin="http://127.0.0.1:$BW_ADMIN"
bwv2="http://127.0.0.1:$BW_PORT/v2/local"
log "breakwater pid $BW_PID on :$BW_PORT (admin :$BW_ADMIN); soak for ${DUR_S}s"

# ---------------------------------------------------------------- client loops

# pick_pull_ref: the newest churn image when no one has pulled it yet (3 in 10), else a tag
# pulled before or a random recent churn image.
pick_pull_ref() {
    local newest
    newest="$(tail -1 "$WORK/churn-tags")"
    if [ -n "$newest" ] && [ $((RANDOM % 10)) -lt 3 ] && [ ! -e "$WORK/pulled/churn_$newest" ]; then
        echo "churn:$newest"
        return
    fi
    local refs=(app:v1 app:v2 app:v3 app:latest base:v1 base:latest)
    mapfile -t recent < <(tail -8 "$WORK/churn-tags")
    refs+=("${recent[@]/#/churn:}")
    echo "${refs[RANDOM % ${#refs[@]}]}"
}

pull_loop() {
    local id="$1" ref kind out
    out="$WORK/pull-$id"
    while [ ! -e "$STOP" ]; do
        ref="$(pick_pull_ref)"
        kind=skopeo_warm
        [ -e "$WORK/pulled/${ref/:/_}" ] || kind=skopeo_cold
        rm -rf "$out"
        if skopeo copy --quiet --src-tls-verify=false "docker://127.0.0.1:$BW_PORT/local/$ref" "dir:$out" 2>"$out.err"; then
            touch "$WORK/pulled/${ref/:/_}"
            op "$kind" ok "$ref"
        else
            op "$kind" err "$ref: $(tr '\n' ' ' <"$out.err" | cut -c1-300)"
        fi
        rm -rf "$out"
        sleep 0.3
    done
}

ACCEPT='application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json'

# http_op KIND EXPECTED_STATUS CURL_ARGS...: one request; sets $code, body in $WORK/body, headers
# in $WORK/hdr. An unexpected status (or no answer) is an error.
http_op() {
    local kind="$1" want="$2"
    shift 2
    code="$(curl -s --max-time 60 -o "$WORK/body" -D "$WORK/hdr" -w '%{http_code}' "$@" || echo 000)"
    if [ "$code" != "$want" ]; then
        op "$kind" err "status $code, want $want: ${*: -1} $(head -c 200 "$WORK/body" 2>/dev/null | tr '\n' ' ')"
        return 1
    fi
}
header() { tr -d '\r' <"$WORK/hdr" | awk -v h="$1" 'tolower($1) == tolower(h) ":" { print $2 }' | tail -1; }

# check_manifest KIND REPO TAG: the answer's digest is its body's and one the tag has had.
check_manifest() {
    local kind="$1" repo="$2" tag="$3" got sum
    got="$(header Docker-Content-Digest)"
    sum="sha256:$(sha256sum "$WORK/body" | cut -d' ' -f1)"
    if [ "$kind" = manifest_get ] && [ "$got" != "$sum" ]; then
        op "$kind" err "$repo:$tag digest header $got but body $sum"
    elif ! grep -qx "$got" "$WORK/digests/$repo-$tag"; then
        op "$kind" err "$repo:$tag answered $got, never pushed for that tag"
    else
        op "$kind" ok "$repo:$tag"
        if [ "$got" != "$(cat "$WORK/seen-$repo-$tag" 2>/dev/null)" ]; then
            echo "$got" >"$WORK/seen-$repo-$tag"
            op tag_change_seen ok "$repo:$tag $got"
        fi
    fi
}

curl_loop() {
    local line repo digest size path a b r tag
    mapfile -t blobs <"$WORK/blobs.tsv"
    while [ ! -e "$STOP" ]; do
        IFS=$'\t' read -r repo digest size path <<<"${blobs[RANDOM % ${#blobs[@]}]}"
        tag=$([ $((RANDOM % 2)) = 0 ] && echo latest || echo v1)
        r=$((RANDOM % 20))
        if [ "$r" -lt 5 ]; then
            if http_op blob_get 200 "$bwv2/$repo/blobs/$digest"; then
                if [ "sha256:$(sha256sum "$WORK/body" | cut -d' ' -f1)" = "$digest" ]; then
                    op blob_get ok "$digest"
                else op blob_get err "$digest: body does not hash to it"; fi
            fi
        elif [ "$r" -lt 8 ]; then
            a=$(((RANDOM * 32768 + RANDOM) % size))
            b=$((a + RANDOM % 65536))
            [ "$b" -lt "$size" ] || b=$((size - 1))
            if http_op blob_range 206 -r "$a-$b" "$bwv2/$repo/blobs/$digest"; then
                if cmp -s "$WORK/body" <(tail -c +$((a + 1)) "$path" | head -c $((b - a + 1))); then
                    op blob_range ok "$digest $a-$b"
                else op blob_range err "$digest $a-$b: wrong bytes"; fi
            fi
        elif [ "$r" -lt 10 ]; then
            if http_op blob_head 200 -I "$bwv2/$repo/blobs/$digest"; then
                if [ "$(header Content-Length)" = "$size" ]; then op blob_head ok "$digest"
                else op blob_head err "$digest: Content-Length $(header Content-Length), want $size"; fi
            fi
        elif [ "$r" -lt 15 ]; then
            repo=$([ $((RANDOM % 2)) = 0 ] && echo app || echo base)
            http_op manifest_get 200 -H "Accept: $ACCEPT" "$bwv2/$repo/manifests/$tag" &&
                check_manifest manifest_get "$repo" "$tag"
        elif [ "$r" -lt 17 ]; then
            repo=$([ $((RANDOM % 2)) = 0 ] && echo app || echo base)
            http_op manifest_head 200 -I -H "Accept: $ACCEPT" "$bwv2/$repo/manifests/$tag" &&
                check_manifest manifest_head "$repo" "$tag"
        elif [ "$r" -lt 19 ]; then
            digest="sha256:$(head -c 32 /dev/urandom | sha256sum | cut -d' ' -f1)"
            if http_op not_found 404 "$bwv2/app/blobs/$digest"; then
                if grep -q '"BLOB_UNKNOWN"' "$WORK/body"; then op not_found ok "blob"
                else op not_found err "unknown blob: $(head -c 200 "$WORK/body")"; fi
            fi
        else
            if http_op not_found 404 -H "Accept: $ACCEPT" "$bwv2/app/manifests/no-such-tag-$RANDOM"; then
                if grep -q '"MANIFEST_UNKNOWN"' "$WORK/body"; then op not_found ok "tag"
                else op not_found err "unknown tag: $(head -c 200 "$WORK/body")"; fi
            fi
        fi
        sleep 0.1
    done
}

# sleep_until_stop SECONDS: sleeps, waking early when the run is over.
sleep_until_stop() {
    local i
    for ((i = 0; i < $1 * 10; i++)); do
        [ -e "$STOP" ] && return 1
        sleep 0.1
    done
}

churn_loop() {
    local n=0
    while sleep_until_stop "$CHURN_EVERY"; do
        n=$((n + 1))
        for job in "app-latest latest app random 128K 1M" "base-latest latest base debian 512K" \
            "churn-$n gen-$n churn debian $(((RANDOM % 3 + 1)))M"; do
            # shellcheck disable=SC2086
            if push_new $job 2>"$WORK/push.err"; then op push ok "$job"
            else op push err "$job: $(tr '\n' ' ' <"$WORK/push.err" | cut -c1-300)"; fi
        done
        echo "gen-$n" >>"$WORK/churn-tags"
        rm -rf "$WORK/oci-app-latest" "$WORK/oci-base-latest" "$WORK/oci-churn-$n"
    done
}

# admin_op KIND CMD...: a CLI command or curl call that must succeed.
admin_op() {
    local kind="$1"
    shift
    if "$@" >"$WORK/admin.out" 2>&1; then op "$kind" ok
    else op "$kind" err "$(tr '\n' ' ' <"$WORK/admin.out" | cut -c1-300)"; fi
}

# scan_op TAG: scan base:TAG now (fetching what is not cached); its findings name the zlib record.
scan_op() {
    if curl -sf --max-time 120 -X POST "$admin/api/v1/scans/local/base:$1" -o "$WORK/scan.json" &&
        grep -q '"COMPLETE"' "$WORK/scan.json" && grep -q 'SYNTH-DEB-0005' "$WORK/scan.json"; then op scan_api ok "base:$1"
    else op scan_api err "base:$1: not COMPLETE with finding SYNTH-DEB-0005: $(head -c 300 "$WORK/scan.json" 2>/dev/null)"; fi
}

admin_loop() {
    local n=0 post=(curl -sf --max-time 120 -X POST -H 'Content-Type: application/json')
    while sleep_until_stop "$ADMIN_EVERY"; do
        case $((n++ % 6)) in
        0) admin_op gc_cli "$BREAKWATER_BIN" gc --admin "$admin" ;;
        1) admin_op lifecycle_cli "$BREAKWATER_BIN" lifecycle apply --admin "$admin" ;;
        2) admin_op gc_api "${post[@]}" -d '{}' "$admin/api/v1/gc" ;;
        3) scan_op latest ;;
        4) admin_op lifecycle_api "${post[@]}" -d '{}' "$admin/api/v1/lifecycle/apply" ;;
        5) scan_op v1 ;;
        esac
    done
}

sample_loop() {
    local t0 fds
    t0=$(date +%s)
    while [ ! -e "$STOP" ]; do
        fds=$(find "/proc/$BW_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
        printf '%s\t%s\t%s\t%s\n' "$(($(date +%s) - t0))" "$(rss_now_kib "$BW_PID")" "$fds" \
            "$(awk '/^Threads:/ { print $2 }' "/proc/$BW_PID/status")" >>"$WORK/samples.tsv"
        sleep "$SAMPLE_EVERY"
    done
}

start=$(date +%s)
loops=()
sample_loop &
loops+=($!)
for i in $(seq "$PULLERS"); do
    pull_loop "$i" &
    loops+=($!)
done
curl_loop &
loops+=($!)
churn_loop &
loops+=($!)
admin_loop &
loops+=($!)
BENCH_PIDS+=("${loops[@]}")

while [ $(($(date +%s) - start)) -lt "$DUR_S" ]; do
    kill -0 "$BW_PID" 2>/dev/null || { touch "$STOP"; die "breakwater exited during the soak"; }
    sleep 1
done
touch "$STOP"
log "time is up; waiting for the loops to finish their current operation"
for p in "${loops[@]}"; do wait "$p" || true; done
end=$(date +%s)

# ---------------------------------------------------------------- report

curl -s "$admin/api/v1/events?limit=10000" >"$WORK/events.json" || echo '{}' >"$WORK/events.json"
upstream_manifests="$(log_stats "$REG_DIR/access.log" 0 '/manifests/latest$' 'GET|HEAD' | cut -d' ' -f1)"
grep -E ' (WARN|ERROR) |panicked' "$BW_DIR/breakwater.log" >"$WORK/problems.log" || true
log "$(wc -l <"$WORK/problems.log") WARN/ERROR lines in breakwater's log (listed in the table)"
# (|| true: no scan at all leaves grep without a match; the table then says so)
scans="$(curl -s --max-time 10 "$admin/metrics" | grep '^breakwater_scans_total' | sed 's/^breakwater_scans_total//' | tr '\n' ' ' || true)"
set +e
python3 - "$OPS" "$WORK/samples.tsv" "$WORK/events.json" "$WORK/problems.log" "$WARMUP" "$RSS_SLACK" \
    "$COUNT_SLACK" "$((end - start))" "$upstream_manifests" "$(context)" "$DURATION" \
    "$BW_DIR/store" "$MAX_BYTES" "$TAG_TTL" "$scans" >"$WORK/soak.md" <<'EOF'
import collections, json, os, re, statistics, sys
(ops_f, samples_f, events_f, problems_f, warmup, rss_slack, count_slack, elapsed, up_manifests,
 context, duration, store, max_bytes, tag_ttl, scans) = sys.argv[1:]
warmup, rss_slack, count_slack = int(warmup), float(rss_slack), float(count_slack)
ok, err, errors = collections.Counter(), collections.Counter(), []
for line in open(ops_f):
    kind, status, detail = (line.rstrip("\n").split(" ", 2) + [""])[:3]
    (ok if status == "ok" else err)[kind] += 1
    if status != "ok":
        errors.append(f"{kind}: {detail}")
# A loop that died would leave its kinds out: each must have succeeded at least once.
for kind in ("skopeo_cold", "skopeo_warm", "blob_get", "blob_range", "blob_head", "manifest_get",
             "manifest_head", "not_found", "push", "gc_cli", "gc_api", "lifecycle_cli",
             "lifecycle_api", "scan_api", "tag_change_seen"):
    if ok[kind] == 0:
        err[kind] += 1
        errors.append(f"{kind}: not one succeeded during the run")
# Scans (on cache and on demand) must all complete: a FAILED one is an error.
failed = sum(float(x.split("} ")[1]) for x in scans.split(" {")[0:] if 'status="FAILED"' in x and "} " in x)
if failed:
    err["scan_failed"] += int(failed)
    errors.append(f"scan_failed: {int(failed)} scans FAILED (breakwater_scans_total)")
samples = [tuple(int(x) for x in l.split("\t")) for l in open(samples_f) if l.count("\t") == 3]
after = [s for s in samples if s[0] >= warmup]
print("# Soak run")
print()
print(context)
print()
print(f"Duration {duration} (ran {elapsed} s); tag TTL {tag_ttl}, store quota {max_bytes}; "
      f"{len(samples)} samples, {len(after)} after the {warmup} s warm-up.")
print()
print("| operation | ok | errors |")
print("|---|---:|---:|")
for kind in sorted(set(ok) | set(err)):
    print(f"| {kind} | {ok[kind]} | {err[kind]} |")
print(f"| **total** | {sum(ok.values())} | **{sum(err.values())}** |")
print()
events = collections.Counter(e.get("kind") for e in json.load(open(events_f)).get("events", []))
print("Events (audit trail): " + (", ".join(f"{k} {v}" for k, v in sorted(events.items())) or "none")
      + f". Upstream manifest requests for the moving tags (revalidations and pulls): {up_manifests}.")
size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(store, "blobs")) for f in fs)
print(f"Blob store at the end: {size / 2**20:.1f} MiB. Scans (breakwater_scans_total): {scans.strip() or 'none'}.")
print()
flat = True
if len(after) < 8:
    print(f"**Too few samples after the warm-up ({len(after)}) to judge flatness.**")
    flat = False
else:
    span = after[-1][0] - after[0][0]
    first = [s for s in after if s[0] <= after[0][0] + span / 4]
    last = [s for s in after if s[0] >= after[-1][0] - span / 4]
    print("| breakwater | first quarter (median) | last quarter (median) | max | limit | flat |")
    print("|---|---:|---:|---:|---:|---|")
    for i, name in ((1, "RSS (MiB)"), (2, "open fds"), (3, "threads")):
        a = statistics.median(s[i] for s in first)
        b = statistics.median(s[i] for s in last)
        m = max(s[i] for s in samples)
        if i == 1:
            limit = a * (1 + rss_slack / 100)
            good = b <= limit
            a, b, m, limit = a / 1024, b / 1024, m / 1024, limit / 1024
            cells = f"{a:.1f} | {b:.1f} | {m:.1f} | {limit:.1f} (+{rss_slack:g} %)"
        else:
            limit = a + count_slack
            good = b <= limit
            cells = f"{a:g} | {b:g} | {m} | {limit:g} (+{count_slack:g})"
        flat &= good
        print(f"| {name} | {cells} | {'yes' if good else '**no**'} |")
print()
verdict = "flat" if flat else "NOT flat"
print(f"**Verdict: {verdict}, {sum(err.values())} errors.**")
problems = open(problems_f).read().splitlines()
print()
print(f"WARN/ERROR lines in breakwater's log: {len(problems)}" + (":" if problems else "."))
if problems:
    print()
    print("```")
    def shape(line):
        # one row per kind of line: without the timestamp, digests and event ids and times
        line = line.split(" ", 1)[1] if " " in line else line
        line = re.sub(r"sha256:[0-9a-f]{6,64}", "sha256:…", line)
        return re.sub(r'"id":\d+,"at_ms":\d+,', "", line)[:200]
    for p in collections.Counter(shape(p) for p in problems).most_common(20):
        print(f"{p[1]:>5}× {p[0]}")
    print("```")
if errors:
    print()
    print("Client errors (first 20):")
    print()
    for e in errors[:20]:
        print(f"- {e[:400]}")
sys.exit(0 if flat and not errors else 1)
EOF
rc=$?
set -e
emit_results "$RESULTS_FILE" <"$WORK/soak.md"
cp "$WORK/samples.tsv" "${RESULTS_FILE%.md}-samples.tsv"
exit "$rc"
