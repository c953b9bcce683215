#!/usr/bin/env bash
# Installs what `make test` needs besides PostgreSQL and RabbitMQ (scripts/services.sh): the
# headless browser the dashboard and API docs tests drive (Debian's chromium and
# chromium-driver), promtool for the alert rules (Debian's prometheus; its service is kept
# from starting) and schemathesis for the contract test (PyPI, in a virtualenv at .dev/venv).
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
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
    install_packages "${missing[@]}"
fi
for tool in chromium chromedriver promtool; do
    command -v "$tool" >/dev/null || die "$tool is still missing"
done

# The version the contract test and its config (tests/contract) are written for.
SCHEMATHESIS_VERSION=4.32.5
VENV="$ROOT/.dev/venv"
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
    python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null \
        || install_packages python3-venv
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" >&2
fi
"$VENV/bin/schemathesis" --version >/dev/null || die "schemathesis is still missing"

log "$(chromedriver --version | head -1); $(promtool --version 2>&1 | head -1); schemathesis $SCHEMATHESIS_VERSION"
