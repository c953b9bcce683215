#!/usr/bin/env bash
# What one and two of each part do on `make cluster`: the same load through HAProxy with
#   both    every part as the cluster runs it (two API nodes, one active and one stand-by
#           projector per projection)
#   one-api api-2 stopped (HAProxy sends everything to api-1)
#   one-projector  every stand-by projector stopped (one projector per projection)
# Each level runs BENCH_SCALE_S seconds (30) at BENCH_SCALE_CONCURRENCY sessions (16), with
# the machine's CPU counted by bench/cpu.sh; every stopped part is started again afterwards.
# Prints one line per level and writes bench/results/last-run/scale-<level>.json. The store is
# not checked against the projections here (`make chaos` and `make bench` do): that check
# reads every payment through the API, past the cluster's rate limits.
# Needs a running cluster (`eval "$(make cluster)"`) and the release payledger-bench.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION_S=${BENCH_SCALE_S:-30}
CONCURRENCY=${BENCH_SCALE_CONCURRENCY:-16}
OUT=bench/results/last-run
BENCH=target/release/payledger-bench
CLUSTER=scripts/cluster.sh

log() { printf '[scale] %s\n' "$*" >&2; }
die() { printf '[scale] error: %s\n' "$*" >&2; exit 1; }

[[ -x $BENCH ]] || die "no $BENCH: cargo build --release -p bench"
$CLUSTER status >/dev/null || die "the cluster is not ready: eval \"\$(make cluster)\""
eval "$($CLUSTER env)"
mkdir -p "$OUT"

standbys() { $CLUSTER parts | grep -E '^projector-.*-2$'; }

# Stopped parts are started again however the script ends.
stopped=()
restart_stopped() {
    for part in "${stopped[@]}"; do
        $CLUSTER start "$part" >/dev/null 2>&1 || log "could not start $part again"
    done
    stopped=()
}
trap restart_stopped EXIT

stop_part() {
    $CLUSTER stop "$1" >/dev/null
    stopped+=("$1")
}

measure() { # level
    local level=$1 json=$OUT/scale-$1.json cpu=$OUT/scale-$1-cpu.json
    # CPU over the middle half of the run: no start-up, no drain.
    bench/cpu.sh "$((DURATION_S / 4))" "$((DURATION_S / 2))" "$cpu" &
    local sampler=$!
    "$BENCH" run --url "$PAYLEDGER_URL" --key "$PAYLEDGER_CHECKOUT_KEY" \
        --operator-key "$PAYLEDGER_OPERATOR_KEY" --payments 1000000 \
        --concurrency "$CONCURRENCY" --duration "$DURATION_S" --label "scale-$level" --no-verify \
        --json "$json" >"$OUT/scale-$level.txt"
    wait "$sampler" || true
    jq -r --arg level "$level" --slurpfile cpu "$cpu" \
        '"\($level): \(.payments_per_s) payments/s, p99 create \(.latency_ms.create.p99) ms, lag p99 \(.projection_lag_ms.p99) ms, errors \(.errors_total), CPU busy \($cpu[0].busy_pct) %"' \
        "$json"
}

log "both: two API nodes, two projectors per projection"
measure both
log "one-api: api-2 stopped"
stop_part api-2
# HAProxy marks a node down after two failed checks a second apart.
sleep 3
measure one-api
restart_stopped
log "one-projector: every stand-by projector stopped"
for part in $(standbys); do stop_part "$part"; done
measure one-projector
restart_stopped
