#!/usr/bin/env bash
# `make chaos`: payments through `make cluster`'s load balancer while a schedule kills and
# restarts its parts (relays, projectors, API nodes, a RabbitMQ node, the whole broker,
# PostgreSQL's primary and replica, the broker's memory alarm); then every invariant:
# acknowledged commands in the store, projections equal to a rebuild, the ledger balanced,
# `audit verify`, no dead letters, no intent left open. Writes chaos/results/latest.json and
# exits non-zero on any violated invariant (the short schedule writes
# chaos/results/last-run/short.json instead).
#
# Knobs (environment): CHAOS_S (180: seconds of load, the faults spread over them),
# CHAOS_RATE (20 payments/s), CHAOS_SCHEDULE (full | short: one fault of each kind that is
# quick to bring back, what `make test` runs), AMQP_QUEUE_TYPE (quorum | classic; switching a
# cluster's type needs `scripts/cluster.sh purge` first), CHAOS_KEEP=1 (leave a cluster this
# run started running).
# A cluster that already runs is used as it is and left running. The whole run is bounded by
# CHAOS_TIMEOUT_S (3600).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CHAOS_S=${CHAOS_S:-180}
RATE=${CHAOS_RATE:-20}
SCHEDULE=${CHAOS_SCHEDULE:-full}
TIMEOUT_S=${CHAOS_TIMEOUT_S:-3600}
OUT=chaos/results
# The full schedule's report is the one kept in the repository; the short one stays local.
JSON=$OUT/latest.json
[[ $SCHEDULE == full ]] || JSON=$OUT/last-run/$SCHEDULE.json

log() { printf '[chaos] %s\n' "$*" >&2; }

log "building the release binaries (payledger, payledger-bench)"
cargo build --release -p api --bin payledger -p bench --bin payledger-bench >&2

started_cluster=0
if ! scripts/cluster.sh status >/dev/null 2>&1; then
    started_cluster=1
fi
stop_cluster() {
    if ((started_cluster)) && [[ ${CHAOS_KEEP:-0} != 1 ]]; then
        log "stopping the cluster this run started"
        scripts/cluster.sh down >&2 || log "warning: cluster.sh down failed"
    fi
}
trap stop_cluster EXIT

env_lines="$(scripts/cluster.sh up)"
eval "$env_lines"
mkdir -p "$OUT/last-run"
log "chaos: $SCHEDULE schedule, $CHAOS_S s at $RATE payments/s through $PAYLEDGER_URL"
rc=0
timeout --kill-after=30 "$TIMEOUT_S" target/release/payledger-bench chaos \
    --url "$PAYLEDGER_URL" --schedule "$SCHEDULE" --duration-s "$CHAOS_S" --rate "$RATE" \
    --out-dir "$OUT/last-run" --json "$JSON" || rc=$?
if ((rc != 0)); then
    log "FAILED (exit $rc); the parts' logs are under .dev/cluster/logs/, the report in $JSON"
    scripts/cluster.sh status >&2 || true
fi
exit "$rc"
