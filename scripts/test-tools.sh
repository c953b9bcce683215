#!/usr/bin/env bash
# Installs what `make test` needs besides PostgreSQL and RabbitMQ (scripts/services.sh): the
# headless browser the dashboard test drives (Debian's chromium and chromium-driver) and
# promtool for the alert rules (Debian's prometheus; its service is kept from starting).
# Installs only what is missing, as root; prints nothing on stdout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
log() { printf '[test-tools] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
POLICY_MARKER="# temporary: created by payledger scripts/test-tools.sh"
# shellcheck source=lib.sh
. "$ROOT/scripts/lib.sh"
trap policy_cleanup EXIT

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v promtool >/dev/null || missing+=(prometheus)
if ((${#missing[@]})); then
    install_packages "${missing[@]}"
fi
for tool in chromium chromedriver promtool; do
    command -v "$tool" >/dev/null || die "$tool is still missing"
done
log "$(chromedriver --version | head -1); $(promtool --version 2>&1 | head -1)"
