# Helpers for the scripts that need object storage or PostgreSQL (sourced after lib.sh).
#
# start_garage: a private single-node Garage (S3-compatible) in $WORK/garage on loopback ports,
# one bucket and one key allowed on it. start_postgres: a private PostgreSQL cluster in $WORK/pg
# (initdb + pg_ctl, as the `postgres` user when we are root, since PostgreSQL refuses root).
# Both are killed by PID from lib.sh's exit trap, like everything else a script starts.

GARAGE_BIN="${GARAGE_BIN:-$(command -v garage || echo /usr/local/bin/garage)}"
GARAGE_REGION=garage
GARAGE_BUCKET=breakwater

# garage_cli ARGS...: a garage admin command against our node, retried while the node settles.
garage_cli() {
    local i out
    for i in $(seq 50); do
        if out=$("$GARAGE_BIN" -c "$GARAGE_DIR/garage.toml" "$@" 2>"$GARAGE_DIR/cli.err"); then
            printf '%s\n' "$out"
            return 0
        fi
        sleep 0.2
    done
    cat "$GARAGE_DIR/cli.err" >&2
    die "garage $* failed"
}

# start_garage -> GARAGE_PID, GARAGE_PORT (S3 API), GARAGE_ADMIN (admin API, /metrics),
# GARAGE_KEY_ID, GARAGE_SECRET, GARAGE_DIR
start_garage() {
    [ -x "$GARAGE_BIN" ] || die "garage not installed (cargo install garage --locked)"
    GARAGE_DIR="$WORK/garage"
    mkdir -p "$GARAGE_DIR"
    local rpc id key
    rpc=$(free_port)
    GARAGE_PORT=$(free_port)
    GARAGE_ADMIN=$(free_port)
    cat >"$GARAGE_DIR/garage.toml" <<EOF
metadata_dir = "$GARAGE_DIR/meta"
data_dir = "$GARAGE_DIR/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"

[s3_api]
s3_region = "$GARAGE_REGION"
api_bind_addr = "127.0.0.1:$GARAGE_PORT"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$GARAGE_ADMIN"
admin_token = "bench-admin"
EOF
    RUST_LOG=garage=warn "$GARAGE_BIN" -c "$GARAGE_DIR/garage.toml" server \
        >/dev/null 2>>"$GARAGE_DIR/garage.log" </dev/null &
    GARAGE_PID=$!
    BENCH_PIDS+=("$GARAGE_PID")
    wait_http "http://127.0.0.1:$GARAGE_PORT/" 30 || {
        tail -20 "$GARAGE_DIR/garage.log" >&2
        die "garage did not listen on its S3 port"
    }
    id=$(garage_cli node id -q)
    garage_cli layout assign -z dc1 -c 10G "${id%%@*}" >/dev/null
    garage_cli layout apply --version 1 >/dev/null
    garage_cli bucket create "$GARAGE_BUCKET" >/dev/null
    key=$(garage_cli key create breakwater-bench)
    GARAGE_KEY_ID=$(awk -F': *' '/Key ID:/ { print $2 }' <<<"$key" | tr -d ' ')
    GARAGE_SECRET=$(awk -F': *' '/Secret key:/ { print $2 }' <<<"$key" | tr -d ' ')
    [ -n "$GARAGE_KEY_ID" ] && [ -n "$GARAGE_SECRET" ] || die "no key in: $key"
    garage_cli bucket allow --read --write --owner "$GARAGE_BUCKET" --key breakwater-bench >/dev/null
}

# garage_storage PREFIX [EXTRA_S3_LINES]: the [storage] keys after root, for BW_STORAGE.
garage_storage() {
    printf 'backend = "s3"\n\n[storage.s3]\nendpoint = "http://127.0.0.1:%s"\nregion = "%s"\nbucket = "%s"\nprefix = "%s"\naccess_key_id = "%s"\nsecret_access_key = "%s"\ntimeout = "30s"\n%s\n' \
        "$GARAGE_PORT" "$GARAGE_REGION" "$GARAGE_BUCKET" "$1" "$GARAGE_KEY_ID" "$GARAGE_SECRET" "${2:-}"
}

# garage_has PREFIX DIGEST: whether the bucket holds the blob (a signed HEAD of its key).
garage_has() {
    local code
    code=$(curl -s -o /dev/null -I -w '%{http_code}' --max-time 10 \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" --aws-sigv4 "aws:amz:$GARAGE_REGION:s3" --user "$GARAGE_KEY_ID:$GARAGE_SECRET" \
        "http://127.0.0.1:$GARAGE_PORT/$GARAGE_BUCKET/$1/blobs/sha256/${2#sha256:}")
    [ "$code" = 200 ]
}

# garage_requests: S3 API requests Garage has answered so far (its api_s3_request_counter).
garage_requests() {
    curl -s --max-time 5 "http://127.0.0.1:$GARAGE_ADMIN/metrics" |
        awk '$1 ~ /^api_s3_request_counter/ { s += $NF } END { printf "%.0f\n", s }'
}

# ---------------------------------------------------------------- PostgreSQL

# pg_bin PROGRAM: the newest /usr/lib/postgresql/<ver>/bin/PROGRAM.
pg_bin() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$d" ] && [ -x "$d/$1" ] || die "PostgreSQL not installed (/usr/lib/postgresql/*/bin/$1)"
    echo "$d/$1"
}

# pg_as_owner PROGRAM ARGS...: run as the postgres user when we are root.
pg_as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# start_postgres -> PG_PORT, PG_PID (the postmaster), PG_DIR
start_postgres() {
    PG_DIR="$WORK/pg"
    mkdir -p "$PG_DIR"
    if [ "$(id -u)" = 0 ]; then
        chmod 711 "$WORK" # the postgres user only needs to reach its own directory
        chown postgres: "$PG_DIR"
    fi
    pg_as_owner "$(pg_bin initdb)" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 --no-sync \
        >"$PG_DIR/initdb.log" 2>&1 || {
        cat "$PG_DIR/initdb.log" >&2
        die "initdb failed"
    }
    PG_PORT=$(free_port)
    # fsync off: the index's durability is not what is measured, its round trips are, which
    # pg_stat_statements counts.
    pg_as_owner "$(pg_bin pg_ctl)" -D "$PG_DIR/data" -l "$PG_DIR/log" \
        -o "-k $PG_DIR -p $PG_PORT -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 -c shared_preload_libraries=pg_stat_statements" \
        -w -t 60 start >/dev/null || {
        cat "$PG_DIR/log" >&2
        die "pg_ctl start failed"
    }
    PG_PID=$(head -1 "$PG_DIR/data/postmaster.pid")
    BENCH_PIDS+=("$PG_PID")
}

# pg_sql DB SQL: one statement's result, unaligned.
pg_sql() {
    "$(pg_bin psql)" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$1" -F $'\t' -Atqc "$2"
}

# pg_database NAME -> prints the URL of a new empty database (with pg_stat_statements)
pg_database() {
    pg_sql postgres "CREATE DATABASE $1" >/dev/null
    pg_sql "$1" "CREATE EXTENSION pg_stat_statements" >/dev/null
    echo "postgres://postgres@127.0.0.1:$PG_PORT/$1"
}

# The statements a replica runs on a timer whatever the traffic: membership heartbeats and job
# leases (pg_statements leaves them out, and our own monitoring queries).
PG_BACKGROUND='cluster_members|job_leases|pg_stat_statements|pg_stat_database'

# pg_statements DB: SQL statements executed in DB so far, apart from $PG_BACKGROUND.
pg_statements() {
    pg_sql "$1" "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
                 WHERE d.datname = '$1' AND s.query !~* '$PG_BACKGROUND'"
}

# pg_statement_counts DB: "calls<TAB>statement" per statement (as in pg_statements), most first.
pg_statement_counts() {
    pg_sql "$1" "SELECT calls, regexp_replace(query, '\s+', ' ', 'g') FROM pg_stat_statements s
                 JOIN pg_database d ON d.oid = s.dbid
                 WHERE d.datname = '$1' AND s.query !~* '$PG_BACKGROUND' ORDER BY calls DESC"
}
