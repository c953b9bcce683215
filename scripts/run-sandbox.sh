#!/usr/bin/env bash
# `make run`: local services, release build, migrations, a demo checkout key, then the API in
# sandbox mode on LISTEN_ADDR (default 127.0.0.1:8080), in the foreground.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

env_lines="$(scripts/services.sh up)"
eval "$env_lines"

echo "+ cargo build --release -p api" >&2
cargo build --release -p api

bin="${CARGO_TARGET_DIR:-target}/release/payledger"
[[ -x $bin ]] || {
    echo "error: $bin was not built (is the api crate's binary named payledger?)" >&2
    exit 1
}

echo "+ $bin migrate" >&2
"$bin" migrate

echo "+ $bin keys create --role checkout --merchant demo-merchant" >&2
key="$("$bin" keys create --role checkout --merchant demo-merchant)"
[[ -n $key ]] || {
    echo "error: 'keys create' printed no key" >&2
    exit 1
}

export LISTEN_ADDR="${LISTEN_ADDR:-127.0.0.1:8080}"
cat >&2 <<MSG

Demo checkout key for merchant demo-merchant: $key
Try (in another terminal):

curl -s -X POST http://$LISTEN_ADDR/v1/payments -H "Authorization: Bearer $key" -H "Idempotency-Key: demo-1" -H "Content-Type: application/json" -d '{"amount":"129000.00","currency":"COP","reference":"order-1","payment_method":{"type":"CARD","token":"tok_sandbox_approved"},"capture":"automatic"}'

Starting: $bin serve --sandbox (LISTEN_ADDR=$LISTEN_ADDR, DATABASE_URL=$DATABASE_URL, AMQP_URL=$AMQP_URL); Ctrl-C stops it.
MSG
exec "$bin" serve --sandbox
