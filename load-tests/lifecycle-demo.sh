#!/usr/bin/env bash
# A walk through lifecycle policies on a real cache, for the README and for operators who want to
# see the output before trusting it with their store: seven images (tags v1.0 … v1.3, dev-a, dev-b,
# feature-x) pushed to a real docker-registry, pulled through breakwater with skopeo, then the
# issue's three-rule policy (untagged after 7 days, keep the last 2 `v*`, dev-/feature- after 14
# days) put, previewed now and as of 15 days from now, applied now (the count rule fires; the
# age rules would in 15 days), and collected by GC.
# Afterwards the kept images are pulled again and the upstream's blob requests are counted (0).
# Prints every command's output; writes results/lifecycle-demo.md.
#
# Usage: load-tests/lifecycle-demo.sh     Needs: docker-registry, skopeo, curl, python3.
set -euo pipefail
LT_DIR="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
source "$LT_DIR/lib.sh"
bench_init lifecycle-demo
need skopeo

start_registry upstream
tags=(v1.0 v1.1 v1.2 v1.3 dev-a dev-b feature-x)
for t in "${tags[@]}"; do
    make_image "app-$t" "$t" 256K 1M
    push_image "app-$t" "$t" "$REG_PORT" app
done
# No scheduled runs; a 1 s GC grace so the walk-through need not wait 10 minutes for the blobs
# it has just served to become collectable.
start_breakwater bw "$REG_PORT" 2 $'[lifecycle]\napply_interval = "0s"\n[gc]\ninterval = "0s"\ngrace = "1s"'

admin="http://127.0.0.1:$BW_ADMIN"
bw() { "$BREAKWATER_BIN" "$@" --admin "$admin"; }

for t in "${tags[@]}"; do
    skopeo copy --quiet --src-tls-verify=false "docker://127.0.0.1:$BW_PORT/local/app:$t" "dir:$WORK/pull-$t" >&2
done
# The pulls are recorded in batches; wait until every image shows one.
for _ in $(seq 100); do
    pulled="$(curl -s "$admin/api/v1/images" | python3 -c 'import json,sys; print(sum(1 for i in json.load(sys.stdin)["images"] if i.get("pull_count",0) > 0))' 2>/dev/null || echo 0)"
    [ "$pulled" -ge "${#tags[@]}" ] && break
    sleep 0.2
done

cat >"$WORK/policy.json" <<'EOF'
{"rules": [
  {"rulePriority": 1, "description": "Expire untagged images after 7 days",
   "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 7},
   "action": {"type": "expire"}},
  {"rulePriority": 2, "description": "Keep the last 2 release images",
   "selection": {"tagStatus": "tagged", "tagPatternList": ["v*"], "countType": "imageCountMoreThan", "countNumber": 2},
   "action": {"type": "expire"}},
  {"rulePriority": 3, "description": "Expire dev builds after 14 days",
   "selection": {"tagStatus": "tagged", "tagPrefixList": ["dev-"], "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 14},
   "action": {"type": "expire"}},
  {"rulePriority": 4, "description": "Expire feature builds after 14 days",
   "selection": {"tagStatus": "tagged", "tagPrefixList": ["feature-"], "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 14},
   "action": {"type": "expire"}}
]}
EOF
cat >"$WORK/bad-policy.json" <<'EOF'
{"rules": [
  {"rulePriority": 1, "selection": {"tagStatus": "tagged", "countType": "imageCountMoreThan", "countNumber": 3}, "action": {"type": "expire"}},
  {"rulePriority": 1, "selection": {"tagStatus": "any", "countType": "sinceImagePushed", "countNumber": 3}, "action": {"type": "delete"}}
]}
EOF
later_ms=$(($(date +%s%3N) + 15 * 86400 * 1000))
later="$(date -u -d "@$((later_ms / 1000))" +%Y-%m-%dT%H:%M:%SZ)"
upstream_blobs() { grep -c 'GET /v2/app/blobs/' "$REG_DIR/access.log" || true; }

run() {
    echo
    echo "\$ breakwater $*"
    bw "$@" 2>&1 || true
}
out="$WORK/demo.md"
{
    echo "# Lifecycle walk-through"
    echo
    context
    echo
    echo '```'
    run images
    run lifecycle put --scope 'local/app' "$WORK/bad-policy.json"
    run lifecycle put --scope 'local/app' "$WORK/policy.json"
    run lifecycle preview --repository local/app
    run lifecycle preview --repository local/app --at "$later"
    before_bytes="$(du -sb "$BW_DIR/store/blobs" | cut -f1)"
    run lifecycle apply --repository local/app
    sleep 2
    run gc
    after_bytes="$(du -sb "$BW_DIR/store/blobs" | cut -f1)"
    run images
    run events --limit 12
    echo '```'
    echo
    echo "Store: $before_bytes bytes of blobs before apply + GC, $after_bytes after."
    n0="$(upstream_blobs)"
    for t in v1.2 v1.3; do
        skopeo copy --quiet --src-tls-verify=false "docker://127.0.0.1:$BW_PORT/local/app:$t" "dir:$WORK/again-$t" >&2
    done
    echo "Pulling the kept v1.2 and v1.3 again: $(($(upstream_blobs) - n0)) upstream blob requests."
} 2>&1 | tee "$out"
emit_results "$RESULTS_DIR/lifecycle-demo.md" <"$out" >/dev/null
