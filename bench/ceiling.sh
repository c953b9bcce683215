#!/usr/bin/env bash
# The database's own ceiling for payledger's write path: pgbench doing the bare SQL of one
# command, or of one whole payment, on the same PostgreSQL, at a given concurrency, and
# nothing else.
#
#   bench/ceiling.sh [--concurrency C] [--duration S] [--payment] [--with-notify] [--cpu OUT.json]
#
# One pgbench "transaction" = what postgres-es does for one command that appends one event:
#   SELECT the payment's events (autocommit, as postgres-es's load does),
#   BEGIN; INSERT one event row; COMMIT.
# into an `events` table of payledger's shape (same columns, defaults, primary key and
# indexes), in a scratch database (payledger_bench_ceiling) that is dropped afterwards: the
# real events table is never touched. Each client appends to its own 2,000 payments (pre-
# filled with 3 events each), so streams are read as they are in payledger and no two
# clients write the same stream.
#
# --payment: one pgbench "transaction" = one whole payment, the least any event-sourced design
# with a status view must do durably: the create (read the new stream; BEGIN; insert its two
# events; COMMIT), then the provider's answer (read the stream; BEGIN; insert the outcome;
# upsert the status row; COMMIT). Two flushed commits, as payledger's create and webhook.
# --with-notify adds payledger's statement-level trigger that NOTIFYs the relay on every
# insert (migrations/20261121000001_event_store.sql), to measure what that costs.
# --cpu writes the cores each part used over the middle half of the pgbench run
# (bench/cpu.sh): what one bare command costs PostgreSQL, beside what payledger costs it.
#
# Environment: ADMIN_URL (default postgres://postgres@127.0.0.1:55432/postgres), PGBENCH
# (default /usr/lib/postgresql/15/bin/pgbench). Prints a summary on stderr and, as the last
# line on stdout, `ceiling_tps=<tps> latency_ms=<avg> clients=<C> fsync=<on|off> notify=<0|1>
# payment=<0|1>` (with --payment, tps is payments per second).
set -euo pipefail

CONCURRENCY=8
DURATION=15
NOTIFY=0
PAYMENT=0
CPU_OUT=""
while (($#)); do
    case $1 in
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --with-notify) NOTIFY=1; shift ;;
    --payment) PAYMENT=1; shift ;;
    --cpu) CPU_OUT=$2; shift 2 ;;
    -h | --help) sed -n '2,25s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "ceiling.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ $CONCURRENCY =~ ^[0-9]+$ ]] && ((CONCURRENCY >= 1 && CONCURRENCY <= 256)) || { echo "ceiling.sh: --concurrency 1..256" >&2; exit 2; }
[[ $DURATION =~ ^[0-9]+$ ]] && ((DURATION >= 1 && DURATION <= 600)) || { echo "ceiling.sh: --duration 1..600" >&2; exit 2; }

PG_BIN=/usr/lib/postgresql/15/bin
PGBENCH=${PGBENCH:-$PG_BIN/pgbench}
ADMIN_URL=${ADMIN_URL:-postgres://postgres@127.0.0.1:55432/postgres}
DB=payledger_bench_ceiling
SCRATCH_URL="${ADMIN_URL%/*}/$DB"
PER_CLIENT=2000

log() { printf '[ceiling] %s\n' "$*" >&2; }
psql_at() { PGOPTIONS="-c client_min_messages=warning" PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -At "$@"; }

WORK=$(mktemp -d)
cleanup() {
    psql_at "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

read -r fsync sync_commit <<<"$(psql_at "$ADMIN_URL" -c "SELECT current_setting('fsync') || ' ' || current_setting('synchronous_commit')")"
log "PostgreSQL $(psql_at "$ADMIN_URL" -c 'SHOW server_version'): fsync=$fsync synchronous_commit=$sync_commit"

psql_at "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
psql_at "$ADMIN_URL" -c "CREATE DATABASE $DB" >/dev/null
# payledger's events table, as its migration creates it (minus the immutability triggers,
# which fire only on UPDATE/DELETE/TRUNCATE and so cost an insert nothing).
psql_at "$SCRATCH_URL" >/dev/null <<'SQL'
CREATE TABLE events
(
    aggregate_type  text                         NOT NULL,
    aggregate_id    text                         NOT NULL,
    sequence        bigint CHECK (sequence >= 0) NOT NULL,
    event_type      text                         NOT NULL,
    event_version   text                         NOT NULL,
    payload         json                         NOT NULL,
    metadata        json                         NOT NULL,
    global_position bigint GENERATED ALWAYS AS IDENTITY,
    transaction_id  xid8                         NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at     timestamptz                  NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE INDEX events_feed_order ON events (transaction_id, global_position);
CREATE UNIQUE INDEX events_global_position ON events (global_position);
-- The status view a payment's answer updates (the shape of payledger's payment_status).
CREATE TABLE payment_status
(
    payment_id text PRIMARY KEY,
    status     text        NOT NULL,
    version    bigint      NOT NULL,
    updated_at timestamptz NOT NULL
);
SQL
if ((NOTIFY)); then
    psql_at "$SCRATCH_URL" >/dev/null <<'SQL'
CREATE FUNCTION events_notify_relay() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN PERFORM pg_notify('payledger_events', ''); RETURN NULL; END; $$;
CREATE TRIGGER events_wake_relay AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify_relay();
SQL
fi

# A payload of the size and shape of a real PaymentApproved event.
# pgbench reads `:word` as a variable, so every colon is followed by a space or, inside the
# timestamp, written as the JSON escape \u003a (the same bytes' worth of JSON text).
PAYLOAD='{"PaymentApproved": {"provider": "sandbox", "provider_event_id": "sandbox\u003aevt_5b0d6c1f2f1e4a7c9d3e8b6a4f2c1d0e", "provider_transaction_id": "sbx_tx_5b0d6c1f2f1e4a7c9d3e8b6a4f2c1d0e", "capture_id": null, "amount": {"amount": "129000.00", "currency": "COP"}, "fee": {"amount": "3970.00", "currency": "COP"}, "at": "2026-11-22T00\u003a00\u003a00.000000Z"}}'
METADATA='{"source": "webhook"}'

# Pre-fill: every client's payments hold 3 events, like a payment after its webhook.
psql_at "$SCRATCH_URL" >/dev/null <<SQL
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT 'Payment', 'p-' || (c * 100000 + a), s, 'PaymentApproved', '1.0', '$PAYLOAD', '$METADATA'
  FROM generate_series(0, $CONCURRENCY) c, generate_series(1, $PER_CLIENT) a, generate_series(1, 3) s
 ORDER BY 2, 3;
VACUUM ANALYZE events;
SQL

# Four round trips, as postgres-es makes them: load (autocommit), then BEGIN / INSERT / COMMIT.
# The load reads every row and payload of the stream server-side; \gset needs one row, so it
# returns the next sequence and the payload bytes rather than the rows themselves.
cat >"$WORK/command.sql" <<SQL
\set aid :client_id * 100000 + random(1, $PER_CLIENT)
SELECT count(*) + 1 AS next, sum(length(payload::text)) AS bytes FROM events WHERE aggregate_type = 'Payment' AND aggregate_id = 'p-' || :aid \gset
BEGIN;
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) VALUES ('Payment', 'p-' || :aid, :next, 'PaymentApproved', '1.0', '$PAYLOAD', '$METADATA');
COMMIT;
SQL

# A whole payment, six round trips' worth of work in two flushed commits. Each transaction
# is a new payment (a random id in the client's own range), so its create reads an empty
# stream as a real create does.
INITIATED='{"PaymentInitiated": {"merchant_id": "bench", "reference": "order-5b0d6c1f", "amount": {"amount": "129000.00", "currency": "COP"}, "method": "CARD", "capture_mode": "automatic", "request_fingerprint": "5b0d6c1f2f1e4a7c9d3e8b6a4f2c1d0e5b0d6c1f2f1e4a7c9d3e8b6a4f2c1d0e", "at": "2026-11-22T00\u003a00\u003a00.000000Z"}}'
cat >"$WORK/payment.sql" <<SQL
\set pid :client_id * 1000000000000 + random(1, 999999999999)
SELECT count(*) + 1 AS next FROM events WHERE aggregate_type = 'Payment' AND aggregate_id = 'q-' || :pid \gset
BEGIN;
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) VALUES ('Payment', 'q-' || :pid, :next, 'PaymentInitiated', '1.0', '$INITIATED', '$METADATA'), ('Payment', 'q-' || :pid, :next + 1, 'ProviderAttemptStarted', '1.0', '$PAYLOAD', '$METADATA');
COMMIT;
SELECT count(*) + 1 AS answer FROM events WHERE aggregate_type = 'Payment' AND aggregate_id = 'q-' || :pid \gset
BEGIN;
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) VALUES ('Payment', 'q-' || :pid, :answer, 'PaymentApproved', '1.0', '$PAYLOAD', '$METADATA');
INSERT INTO payment_status (payment_id, status, version, updated_at) VALUES ('q-' || :pid, 'APPROVED', :answer, now())
    ON CONFLICT (payment_id) DO UPDATE SET status = excluded.status, version = excluded.version, updated_at = excluded.updated_at;
COMMIT;
SQL
SCRIPT=$WORK/command.sql
((PAYMENT)) && SCRIPT=$WORK/payment.sql

threads=$((CONCURRENCY < 2 ? CONCURRENCY : 2))
log "pgbench: $CONCURRENCY clients, $threads threads, ${DURATION}s, notify trigger: $NOTIFY, whole payment: $PAYMENT"
cpu_pid=""
[[ -z $CPU_OUT ]] || { "$(dirname "$0")/cpu.sh" $((DURATION / 4)) $(((DURATION + 1) / 2)) "$CPU_OUT" & cpu_pid=$!; }
# Timed: pgbench's own -T, plus a hard bound.
if ! timeout $((DURATION + 60)) "$PGBENCH" -n -M prepared -c "$CONCURRENCY" -j "$threads" -T "$DURATION" \
    -f "$SCRIPT" "$SCRATCH_URL" >"$WORK/out.txt" 2>"$WORK/err.txt"; then
    cat "$WORK/out.txt" "$WORK/err.txt" >&2
    echo "ceiling.sh: pgbench failed" >&2
    exit 1
fi
[[ -z $cpu_pid ]] || wait "$cpu_pid" || { echo "ceiling.sh: bench/cpu.sh failed" >&2; exit 1; }
grep -E '^(number of (transactions actually processed|failed)|latency average|tps)' "$WORK/out.txt" | sed 's/^/[ceiling]   /' >&2
tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$WORK/out.txt")
latency=$(sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p' "$WORK/out.txt")
[[ -n $tps ]] || { cat "$WORK/out.txt" >&2; echo "ceiling.sh: no tps in pgbench output" >&2; exit 1; }
echo "ceiling_tps=$tps latency_ms=${latency:-?} clients=$CONCURRENCY fsync=$fsync notify=$NOTIFY payment=$PAYMENT"
