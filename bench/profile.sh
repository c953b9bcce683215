#!/usr/bin/env bash
# Where a payment's work goes, statement by statement: one load level against payledger (as
# `make bench` runs it: durable PostgreSQL, the sandbox in its own process, quorum queues)
# with PostgreSQL's pg_stat_statements counting every statement, and bench/cpu.sh counting
# every part's CPU. Not part of `make bench`: the extension costs PostgreSQL a little, so its
# figures are for finding the work, not for the record.
#
#   bench/profile.sh [--concurrency C] [--duration S] [--rate PAYMENTS_PER_S]
#
# Prints payments/s, CPU per payment by part, and per payment: statements, execution time and
# WAL records, in all and for the statements that cost most. Everything also goes to
# bench/results/last-profile/ (load.json, cpu.json, statements.txt). PostgreSQL is restarted
# with pg_stat_statements loaded, and restarted without it at the end; the release binaries
# are built if missing. Bounded: the load runs at most --duration (<= 600 s).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CONCURRENCY=64
DURATION=30
RATE=""
while (($#)); do
    case $1 in
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    -h | --help) sed -n '2,14s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "profile.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ $CONCURRENCY =~ ^[0-9]+$ ]] && ((CONCURRENCY >= 1 && CONCURRENCY <= 1024)) || { echo "profile.sh: --concurrency 1..1024" >&2; exit 2; }
[[ $DURATION =~ ^[0-9]+$ ]] && ((DURATION >= 4 && DURATION <= 600)) || { echo "profile.sh: --duration 4..600" >&2; exit 2; }

PG_BIN=/usr/lib/postgresql/15/bin
ADMIN_URL=postgres://postgres@127.0.0.1:55432/postgres
DB=payledger_profile
OUT=bench/results/last-profile
PORT=${BENCH_PORT:-18580}
SANDBOX_PORT=$((PORT + 1))
PREFIX="payledger_profile_$$"
PAYLEDGER=target/release/payledger
BENCH=target/release/payledger-bench

log() { printf '[profile] %s\n' "$*" >&2; }
die() { printf '[profile] error: %s\n' "$*" >&2; exit 1; }
psql_at() { PGOPTIONS="-c client_min_messages=warning" PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -At "$@"; }
as_pg() { if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi; }
restart_pg() {
    local base
    base=$(<.dev/pg-location)
    as_pg "$PG_BIN/pg_ctl" -D "$base/data" -l "$base/postgres.log" -m fast -w -s -t 90 restart
}

SERVER_PID=""
EMULATOR_PID=""
cleanup() {
    set +e
    for pid in $SERVER_PID $EMULATOR_PID; do
        kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    if [[ -n ${PRELOADED:-} ]]; then
        log "restarting PostgreSQL without pg_stat_statements"
        psql_at "$ADMIN_URL" -c "ALTER SYSTEM RESET shared_preload_libraries" && restart_pg ||
            log "could not unload pg_stat_statements: ALTER SYSTEM RESET shared_preload_libraries, then restart"
    fi
    return 0
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP PIPE

mkdir -p "$OUT"
rm -f "$OUT"/*
eval "$(PAYLEDGER_DURABLE=1 scripts/services.sh up)"
[[ -x $PAYLEDGER && -x $BENCH ]] || cargo build --release -p api -p bench
ln -sf payledger target/release/pl-emulators

log "restarting PostgreSQL with pg_stat_statements"
psql_at "$ADMIN_URL" -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"
PRELOADED=1
restart_pg
psql_at "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
psql_at "$ADMIN_URL" -c "CREATE DATABASE $DB"
export DATABASE_URL="${ADMIN_URL%/*}/$DB"
"$PAYLEDGER" migrate >/dev/null
psql_at "$DATABASE_URL" -c "CREATE EXTENSION pg_stat_statements"
PAYLEDGER_BENCH_KEY=$("$PAYLEDGER" keys create --role checkout --merchant profile-merchant)
PAYLEDGER_OPERATOR_KEY=$("$PAYLEDGER" keys create --role operator)
export PAYLEDGER_BENCH_KEY PAYLEDGER_OPERATOR_KEY

RUST_LOG=warn target/release/pl-emulators sandbox --listen "127.0.0.1:$SANDBOX_PORT" \
    --webhook-url "http://127.0.0.1:$PORT/v1/webhooks/sandbox" >"$OUT/emulators.log" 2>&1 &
EMULATOR_PID=$!
RATE_LIMIT_COMMANDS=1000000 RATE_LIMIT_READS=1000000 RATE_LIMIT_ADDRESS=1000000 \
RATE_LIMIT_WEBHOOKS=1000000 PROVIDERS=sandbox SANDBOX_BASE_URL="http://127.0.0.1:$SANDBOX_PORT" \
LISTEN_ADDR="127.0.0.1:$PORT" AMQP_PREFIX=$PREFIX RUST_LOG=warn \
    "$PAYLEDGER" serve >"$OUT/payledger.log" 2>&1 &
SERVER_PID=$!
for i in $(seq 1 120); do
    curl -fsS -m 2 "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 &&
        curl -fsS -m 2 "http://127.0.0.1:$SANDBOX_PORT/health" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "payledger exited: $OUT/payledger.log"
    ((i == 120)) && die "payledger or the sandbox did not answer in 60 s"
    sleep 0.5
done

load() { # duration json
    local rc=0
    "$BENCH" run --url "http://127.0.0.1:$PORT" --payments 1000000 --concurrency "$CONCURRENCY" \
        --duration "$1" ${RATE:+--rate "$RATE"} --no-verify --json "$2" >"$2.txt" 2>&1 || rc=$?
    ((rc == 0 || rc == 2)) || die "payledger-bench run failed (exit $rc): $2.txt"
}
log "warm-up: 5 s at concurrency $CONCURRENCY"
load 5 "$OUT/warm-up.json"
psql_at "$DATABASE_URL" -c "SELECT pg_stat_statements_reset()" >/dev/null
log "load: ${DURATION} s at concurrency $CONCURRENCY${RATE:+, $RATE payments/s}"
bench/cpu.sh $((DURATION / 4)) $((DURATION / 2)) "$OUT/cpu.json" &
CPU_PID=$!
load "$DURATION" "$OUT/load.json"
wait "$CPU_PID"

PAYMENTS=$(jq -r '.payments_started' "$OUT/load.json")
((PAYMENTS > 0)) || die "no payment was started"
PPS=$(jq -r '.payments_per_s' "$OUT/load.json")
THIS_DB="dbid = (SELECT oid FROM pg_database WHERE datname = '$DB')"
{
    echo "payments/s: $PPS ($PAYMENTS payments, $(jq -r '.errors_total' "$OUT/load.json") errors)"
    echo "CPU ms per payment: $(jq -r --argjson pps "$PPS" \
        '.cores_used | to_entries | map("\(.key) \(.value * 1000 / $pps * 100 | round / 100)") | join(", ")' "$OUT/cpu.json")"
    echo "per payment, all statements: $(psql_at "$DATABASE_URL" -c "
        SELECT round(sum(calls) / $PAYMENTS, 1) || ' statements, ' || round((sum(total_exec_time) / $PAYMENTS)::numeric, 3)
               || ' ms executing, ' || round(sum(wal_records) / $PAYMENTS, 1) || ' WAL records'
          FROM pg_stat_statements WHERE $THIS_DB")"
    echo
    echo "exec ms / payment | calls / payment | mean ms | WAL records / payment | statement"
    psql_at -F ' | ' "$DATABASE_URL" -c "
        SELECT round((total_exec_time / $PAYMENTS)::numeric, 4), round(calls / $PAYMENTS::numeric, 2),
               round(mean_exec_time::numeric, 3), round(wal_records / $PAYMENTS::numeric, 1),
               left(regexp_replace(query, '\s+', ' ', 'g'), 110)
          FROM pg_stat_statements WHERE $THIS_DB AND calls >= $PAYMENTS / 100
         ORDER BY total_exec_time DESC LIMIT 25"
} | tee "$OUT/statements.txt"
