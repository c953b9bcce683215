#!/usr/bin/env bash
# Checks the Prometheus alert rules (ops/prometheus/alerts.yml) with `promtool check rules` and
# runs their unit tests (ops/prometheus/*.test.yml) with `promtool test rules`. promtool comes
# with Debian's prometheus package (scripts/test-tools.sh installs it). Exits non-zero when a
# check or a test fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"

log() { printf '[check-alerts] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

run() {
    log "+ $*"
    "$@"
}

command -v promtool >/dev/null || die "promtool is missing: scripts/test-tools.sh installs it"

cd "$ROOT"
log "$(promtool --version 2>&1 | head -n 1)"

rules=ops/prometheus/alerts.yml
[[ -f $rules ]] || die "no $rules"
shopt -s nullglob
tests=(ops/prometheus/*.test.yml)
shopt -u nullglob
((${#tests[@]})) || die "no ops/prometheus/*.test.yml"

run promtool check rules "$rules"
run promtool test rules "${tests[@]}"
log "alert rules: check and tests passed"
