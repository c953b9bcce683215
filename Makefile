# Developer and CI entry points. Recipes stay thin: the work is in scripts/.
#
#   make services   start (or reuse) PostgreSQL + RabbitMQ under .dev/; prints DATABASE_URL, AMQP_URL
#   make test       the test tools (headless Chromium, promtool, schemathesis), the alert rules' tests,
#                   services, the release binary, the workspace tests (DATABASE_URL, AMQP_URL),
#                   then a one-minute chaos run against a cluster of its own (scripts/chaos.sh)
#   make lint       cargo fmt --check and clippy -D warnings, with and without the emulators
#   make run        services, release build, migrate, demo checkout key, serve --sandbox on :8080
#   make status     what runs
#   make down       stop what `make services` started
#   make bench      durable PostgreSQL, release build, benchmark -> bench/results/latest.json
#   make cluster    release build, then the whole system as a cluster on this machine (PostgreSQL
#                   primary + replica, 3 RabbitMQ nodes, 2 API nodes behind HAProxy on :8080,
#                   relays, projectors, sandbox) under .dev/cluster/; prints the export lines
#   make cluster-status  each part of the cluster: running or not, pid, address
#   make cluster-down    stop every part of the cluster by its pid
#   make chaos      payments through the cluster while its parts are killed and restarted, then
#                   every invariant -> chaos/results/latest.json (CHAOS_S, default 180 s)
#
# DATABASE_URL / AMQP_URL already set in the environment mean external services: they are used
# as they are. PAYLEDGER_DURABLE=1 runs PostgreSQL with fsync on (benchmarks).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

SERVICES := scripts/services.sh
CLUSTER := scripts/cluster.sh

# cargo-nextest when installed, cargo test otherwise. Override: make test TEST_CMD='cargo test -p domain'
ifneq ($(shell command -v cargo-nextest 2>/dev/null),)
TEST_CMD := cargo nextest run --workspace --no-fail-fast
else
TEST_CMD := cargo test --workspace
endif

.PHONY: help services down status env test lint run bench cluster cluster-down cluster-status chaos

help:
	@sed -n '3,20s/^# \{0,1\}//p' Makefile

services:
	$(SERVICES) up

down:
	$(SERVICES) down

status:
	$(SERVICES) status

env:
	@$(SERVICES) env

# The assignment (not `eval "$(...)"` directly) makes a failing `up` stop the recipe.
# The release binary is built first: the crash drill kills and restarts it as a process.
test:
	scripts/test-tools.sh
	scripts/check-alerts.sh
	@env_lines="$$($(SERVICES) up)"; eval "$$env_lines"; \
	cargo build --release -p api --bin payledger; \
	echo "+ DATABASE_URL=$$DATABASE_URL AMQP_URL=$$AMQP_URL $(TEST_CMD)" >&2; \
	$(TEST_CMD)
	CHAOS_SCHEDULE=short CHAOS_S=$${CHAOS_S:-60} scripts/chaos.sh

# The second clippy checks the production build, which leaves the emulators out.
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p api --no-default-features --all-targets -- -D warnings

run:
	scripts/run-sandbox.sh

# Not part of `make test`: restarts PostgreSQL with fsync on and takes several minutes.
bench:
	bench/run.sh

# Only the export lines reach stdout (the build's output and the echoed command go to stderr),
# so `eval "$(make cluster)"` works.
cluster:
	@echo "+ cargo build --release -p api --bin payledger" >&2
	@cargo build --release -p api --bin payledger >&2
	@$(CLUSTER) up

cluster-down:
	$(CLUSTER) down

cluster-status:
	@$(CLUSTER) status

# Not part of `make test` in full (its short schedule is): several minutes, durable PostgreSQL.
chaos:
	scripts/chaos.sh
