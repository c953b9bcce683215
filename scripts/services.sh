#!/usr/bin/env bash
# Throwaway PostgreSQL 15 and RabbitMQ for development and CI, without systemd or Docker.
#
#   scripts/services.sh up      start (or reuse) both; print two `export ...` lines on stdout
#   scripts/services.sh env     print the two `export ...` lines only
#   scripts/services.sh down    stop what `up` started (by its pid files); ok when nothing runs
#   scripts/services.sh status  say what runs
#
# Typical use:   eval "$(scripts/services.sh up)"
#
# Everything lives under .dev/ in the repo root (git-ignored). PostgreSQL refuses to run as
# root, so as root it runs as user `postgres`; when user postgres cannot reach .dev/ (a checkout
# under a private home directory) its files go to /tmp/payledger-dev-<hash>/ instead, and
# .dev/pg-location records where.
#
# Environment:
#   DATABASE_URL, AMQP_URL  when set (and not pointing at the local ports below) they are external
#                           services: `up` leaves that service alone and prints the given URL.
#   PAYLEDGER_DURABLE=1     run PostgreSQL with fsync/synchronous_commit/full_page_writes on
#                           (benchmarks). Default: all off (fast, not crash-safe). A running
#                           instance in the other mode is restarted.
#
# Only the two export lines go to stdout; all progress goes to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
# shellcheck source=lib.sh
. "$ROOT/scripts/lib.sh"
DEV_DIR="$ROOT/.dev"

PG_PORT=55432
PG_BIN=/usr/lib/postgresql/15/bin
PG_TIMEOUT=90            # seconds for pg_ctl start/stop

AMQP_PORT=55672
RMQ_NODE=payledger@localhost
RMQ_DIST_PORT=55673      # must be set: the default (AMQP port + 20000) is over 65535
RMQ_EPMD_PORT=55674      # private epmd, so `down` can stop it without touching anyone else's
RMQ_CTL_DIST_PORT_MIN=55680   # CLI tools' own distribution ports (default: dist port + 10000)
RMQ_CTL_DIST_PORT_MAX=55689
RMQ_BIN=/usr/lib/rabbitmq/bin
RMQ_TIMEOUT=120          # seconds; boot takes 11-16 s on an idle 2-core machine

RMQ_DIR="$DEV_DIR/rabbitmq"
RMQ_PID_FILE="$RMQ_DIR/rabbitmq.pid"
RMQ_LOG="$RMQ_DIR/log/$RMQ_NODE.log"
RMQ_STARTUP_LOG="$RMQ_DIR/log/startup.log"
RMQ_CRASH_DUMP="$RMQ_DIR/log/erl_crash.dump"   # where the VM writes why it died during boot

LOCAL_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/payledger"
LOCAL_AMQP_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f"

POLICY_MARKER='# temporary: created by payledger scripts/services.sh'

log() { printf '[services] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

trap policy_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Run a command as the PostgreSQL user (root: user postgres; otherwise: the caller).
as_pg() {
    if is_root; then
        local runuser
        runuser="$(command -v runuser || echo /usr/sbin/runuser)"
        "$runuser" -u postgres -- "$@"
    else
        "$@"
    fi
}

# A preset URL pointing at our own local port is not "external": it usually comes from an
# earlier `eval "$(scripts/services.sh env)"`, and the service still has to be started.
is_local_url() { # url port
    [[ $1 == *@127.0.0.1:"$2"/* || $1 == *@localhost:"$2"/* ]]
}
external_db() { [[ -n ${DATABASE_URL:-} ]] && ! is_local_url "$DATABASE_URL" "$PG_PORT"; }
external_mq() { [[ -n ${AMQP_URL:-} ]] && ! is_local_url "$AMQP_URL" "$AMQP_PORT"; }

print_env() {
    printf 'export DATABASE_URL=%q\n' "${DATABASE_URL:-$LOCAL_DATABASE_URL}"
    printf 'export AMQP_URL=%q\n' "${AMQP_URL:-$LOCAL_AMQP_URL}"
}

durable() { [[ ${PAYLEDGER_DURABLE:-0} == 1 ]]; }

# Serialise concurrent up/down runs (two engineers, or make -j). fd 9 must not leak into the
# daemons, or they would hold the lock forever: every daemon start closes it (9>&-).
take_lock() {
    mkdir -p "$DEV_DIR"
    exec 9>"$DEV_DIR/.lock"
    if ! flock -n 9; then
        log "another services.sh run holds $DEV_DIR/.lock; waiting (up to 300 s)"
        flock -w 300 9 || die "timed out waiting for $DEV_DIR/.lock"
    fi
}

# ---------------------------------------------------------------------------------------------
# Packages

ensure_packages() { # need_pg need_mq
    local missing=()
    if (($1)) && [[ ! -x $PG_BIN/pg_ctl ]]; then missing+=(postgresql); fi
    if (($2)) && [[ ! -x $RMQ_BIN/rabbitmq-server ]]; then missing+=(rabbitmq-server); fi
    ((${#missing[@]})) || return 0

    install_packages "${missing[@]}"

    if (($1)) && [[ ! -x $PG_BIN/pg_ctl ]]; then die "no $PG_BIN/pg_ctl after installing postgresql (not version 15?)"; fi
    if (($2)) && [[ ! -x $RMQ_BIN/rabbitmq-server ]]; then die "no $RMQ_BIN/rabbitmq-server after installing rabbitmq-server"; fi
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL

# Sets PG_BASE (owned by the PostgreSQL user), PG_DATA, PG_LOG, PG_SOCK.
pg_paths() {
    local base=""
    if [[ -f $DEV_DIR/pg-location ]]; then
        base="$(<"$DEV_DIR/pg-location")"
    fi
    PG_BASE="$base"
    PG_DATA="${base:+$base/data}"
    PG_LOG="${base:+$base/postgres.log}"
    # Unix socket paths are limited to 107 bytes; fall back to /tmp for very deep checkouts.
    if ((${#base} + 20 < 100)); then PG_SOCK="$base"; else PG_SOCK=/tmp; fi
}

# Choose (first time) and prepare the directory PostgreSQL lives in; record it in .dev/.
pg_prepare_base() {
    local base
    if [[ -f $DEV_DIR/pg-location ]]; then
        base="$(<"$DEV_DIR/pg-location")"
    else
        base="$DEV_DIR/postgres"
        if is_root; then
            chmod 755 "$DEV_DIR"
            if ! as_pg test -x "$DEV_DIR"; then
                local hash tmp
                hash="$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
                tmp="/tmp/payledger-dev-$hash"
                log "user postgres cannot reach $DEV_DIR; using $tmp/postgres instead"
                mkdir -p "$tmp"
                [[ -O $tmp && ! -L $tmp ]] || die "$tmp exists but is not owned by $(id -un)"
                chmod 755 "$tmp"
                base="$tmp/postgres"
            fi
        fi
        printf '%s\n' "$base" >"$DEV_DIR/pg-location"
    fi
    mkdir -p "$base"
    if is_root; then
        chown postgres:postgres "$base"
        chmod 755 "$base"
        as_pg test -w "$base" || die "user postgres cannot write to $base"
    fi
    pg_paths
}

pg_running() { # our postmaster (per its pid file) is alive
    [[ -n ${PG_DATA:-} && -f $PG_DATA/postmaster.pid ]] || return 1
    local pid
    pid="$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null || true)"
    pid_alive "$pid" postgres
}

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -t 3; }

psql_admin() {
    PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -At \
        "postgres://postgres@127.0.0.1:$PG_PORT/postgres" "$@"
}

pg_options() {
    local fsync=off
    if durable; then fsync=on; fi
    printf '%s' "-p $PG_PORT -k '$PG_SOCK' -c listen_addresses=127.0.0.1" \
        " -c max_connections=300 -c idle_in_transaction_session_timeout=60s" \
        " -c fsync=$fsync -c synchronous_commit=$fsync -c full_page_writes=$fsync"
}

pg_start() {
    if [[ ! -f $PG_DATA/PG_VERSION ]]; then
        if [[ -e $PG_DATA ]]; then
            log "removing incomplete data directory $PG_DATA"
            rm -rf "$PG_DATA"
        fi
        log "initdb $PG_DATA"
        (cd "$PG_BASE" && as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 \
            --locale=C.UTF-8 --no-sync) >"$PG_BASE/initdb.log" 2>&1 3>&- 9>&- ||
            {
                tail_log "$PG_BASE/initdb.log"
                die "initdb failed"
            }
    fi
    log "starting PostgreSQL 15 on 127.0.0.1:$PG_PORT (data $PG_DATA, log $PG_LOG)"
    if ! (cd "$PG_BASE" && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$PG_TIMEOUT" \
        -o "$(pg_options)" start) </dev/null >&2 3>&- 9>&-; then
        tail_log "$PG_LOG"
        die "PostgreSQL failed to start (pg_ctl -w, timeout $PG_TIMEOUT s); log: $PG_LOG"
    fi
    local i
    for ((i = 0; i < 30; i++)); do
        pg_ready && return 0
        sleep 1
    done
    tail_log "$PG_LOG"
    die "PostgreSQL started but does not accept connections on 127.0.0.1:$PG_PORT"
}

pg_stop() {
    (cd "$PG_BASE" && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t "$PG_TIMEOUT" stop) </dev/null >&2 3>&- 9>&- ||
        {
            tail_log "$PG_LOG"
            die "pg_ctl stop failed"
        }
}

pg_up() {
    pg_prepare_base
    local want=off
    if durable; then want=on; fi
    if pg_running; then
        local i
        for ((i = 0; i < 30; i++)); do # e.g. still in crash recovery
            pg_ready && break
            ((i > 0)) || log "PostgreSQL (pid $(head -n1 "$PG_DATA/postmaster.pid")) runs but does not answer yet; waiting up to 30 s"
            sleep 1
        done
        pg_ready || die "PostgreSQL (pid $(head -n1 "$PG_DATA/postmaster.pid")) runs but does not answer on 127.0.0.1:$PG_PORT; try: scripts/services.sh down"
        local cur
        cur="$(psql_admin -c 'SHOW fsync')"
        if [[ $cur != "$want" ]]; then
            log "PostgreSQL runs with fsync=$cur but fsync=$want is wanted: restarting it"
            pg_stop
            pg_start
        else
            log "reusing PostgreSQL on 127.0.0.1:$PG_PORT (pid $(head -n1 "$PG_DATA/postmaster.pid"))"
        fi
    else
        if pg_ready; then
            die "something else answers on 127.0.0.1:$PG_PORT (not started by this script); stop it or set DATABASE_URL"
        fi
        pg_start
    fi

    local db
    for db in payledger payledger_test; do
        if [[ $(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$db'") != 1 ]]; then
            log "creating database $db"
            psql_admin -c "CREATE DATABASE \"$db\""
        fi
    done

    local mode fs sc fpw
    mode="$(psql_admin -c "SELECT current_setting('fsync') || ' ' || current_setting('synchronous_commit') || ' ' || current_setting('full_page_writes')")"
    read -r fs sc fpw <<<"$mode"
    if [[ $fs == on && $sc == on ]]; then
        log "PostgreSQL mode: DURABLE (fsync=$fs, synchronous_commit=$sc, full_page_writes=$fpw)"
    else
        log "PostgreSQL mode: fast, NOT durable (fsync=$fs, synchronous_commit=$sc, full_page_writes=$fpw); PAYLEDGER_DURABLE=1 for benchmarks"
    fi
}

# ---------------------------------------------------------------------------------------------
# RabbitMQ

# Environment for RabbitMQ's scripts in $RMQ_BIN (they run as the caller; the wrappers in
# /usr/sbin would switch to user rabbitmq) so that they all talk to the private node.
RMQ_ENV=(
    "HOME=$RMQ_DIR/home"
    "RABBITMQ_NODENAME=$RMQ_NODE"
    "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1"
    "RABBITMQ_NODE_PORT=$AMQP_PORT"
    "RABBITMQ_DIST_PORT=$RMQ_DIST_PORT"
    "RABBITMQ_CTL_DIST_PORT_MIN=$RMQ_CTL_DIST_PORT_MIN"
    "RABBITMQ_CTL_DIST_PORT_MAX=$RMQ_CTL_DIST_PORT_MAX"
    "ERL_EPMD_PORT=$RMQ_EPMD_PORT"
    "ERL_EPMD_ADDRESS=127.0.0.1"
    "RABBITMQ_MNESIA_BASE=$RMQ_DIR/mnesia"
    "RABBITMQ_LOG_BASE=$RMQ_DIR/log"
    "RABBITMQ_CONFIG_FILE=$RMQ_DIR/rabbitmq.conf"
    "RABBITMQ_ADVANCED_CONFIG_FILE=$RMQ_DIR/advanced.config"
    "RABBITMQ_ENABLED_PLUGINS_FILE=$RMQ_DIR/enabled_plugins"
    "RABBITMQ_PID_FILE=$RMQ_PID_FILE"
    "RABBITMQ_CONF_ENV_FILE=$RMQ_DIR/rabbitmq-env.conf"
    # No scheduler busy-waiting: on a 2-core machine shared with PostgreSQL and payledger,
    # Erlang's spinning schedulers took CPU the others needed (RabbitMQ's advice for hosts
    # with few cores or shared with other work).
    "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=+sbwt none +sbwtdcpu none +sbwtdio none"
)

# rmq SECONDS SCRIPT ARGS...: run one of RabbitMQ's scripts against the private node, bounded.
rmq() {
    local secs=$1 script=$2
    shift 2
    (cd "$RMQ_DIR" && timeout "$secs" env "${RMQ_ENV[@]}" "$RMQ_BIN/$script" "$@")
}

# The beam.smp whose -home is our private $RMQ_DIR/home: the node is identified by its own
# directory, never by program name alone. Used while booting, before the pid file exists.
rmq_find_beam() {
    local d comm args
    for d in /proc/[0-9]*; do
        read -r comm 2>/dev/null <"$d/comm" || continue
        [[ $comm == beam.smp ]] || continue
        args="$(tr '\0' '\n' <"$d/cmdline" 2>/dev/null)" || continue
        [[ $'\n'$args$'\n' == *$'\n'"$RMQ_DIR/home"$'\n'* ]] || continue
        pid_alive "${d#/proc/}" beam.smp || continue
        echo "${d#/proc/}"
        return 0
    done
    return 1
}

# The live node's pid: from its pid file, else (still booting) from rmq_find_beam.
rmq_pid() {
    local pid=""
    if [[ -f $RMQ_PID_FILE ]]; then pid="$(head -n1 "$RMQ_PID_FILE" 2>/dev/null || true)"; fi
    if [[ -n $pid ]] && pid_alive "$pid" beam.smp; then
        echo "$pid"
        return 0
    fi
    rmq_find_beam
}
rmq_running() { rmq_pid >/dev/null; }

# A real AMQP 0-9-1 protocol header exchange: the broker answers with a Connection.Start
# method frame (type 1, channel 0).
amqp_ping() {
    local hex
    # shellcheck disable=SC2016  # $1 expands in the inner bash
    hex="$(timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "AMQP\x00\x00\x09\x01" >&3 && head -c 3 <&3 | od -An -tx1' _ "$AMQP_PORT" 2>/dev/null)" || return 1
    [[ ${hex//[[:space:]]/} == 010000 ]]
}

rmq_prepare() {
    mkdir -p "$RMQ_DIR/home" "$RMQ_DIR/mnesia" "$RMQ_DIR/log"
    : >"$RMQ_DIR/rabbitmq-env.conf" # empty: ignore /etc/rabbitmq/rabbitmq-env.conf
    cat >"$RMQ_DIR/rabbitmq.conf" <<EOF
# Generated by scripts/services.sh (overwritten on every start).
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
loopback_users.guest = true
log.file.level = info
log.console = false
EOF
    printf '[].\n' >"$RMQ_DIR/enabled_plugins"
    # Distribution only on loopback.
    printf '[{kernel, [{inet_dist_use_interface, {127,0,0,1}}]}].\n' >"$RMQ_DIR/advanced.config"
    local cookie="$RMQ_DIR/home/.erlang.cookie"
    if [[ ! -s $cookie ]]; then
        (umask 077 && od -An -N20 -tx1 /dev/urandom | tr -dc '0-9a-f' | tr 'a-f' 'A-F' >"$cookie")
        chmod 400 "$cookie"
    fi
}

RMQ_STARTED=0
rmq_start() { # returns at once; rmq_wait waits for readiness
    mkdir -p "$RMQ_DIR"
    if rmq_running; then
        if amqp_ping; then
            log "reusing RabbitMQ node $RMQ_NODE on 127.0.0.1:$AMQP_PORT (pid $(rmq_pid))"
            return 0
        fi
        log "RabbitMQ (pid $(rmq_pid)) runs but AMQP does not answer yet; waiting for it"
        RMQ_STARTED=1
        return 0
    fi
    if amqp_ping; then
        die "something else answers on 127.0.0.1:$AMQP_PORT (not started by this script); stop it or set AMQP_URL"
    fi
    rm -f "$RMQ_PID_FILE"
    rmq_prepare
    if [[ -e $RMQ_CRASH_DUMP ]]; then mv -f "$RMQ_CRASH_DUMP" "$RMQ_CRASH_DUMP.old"; fi
    log "starting RabbitMQ node $RMQ_NODE on 127.0.0.1:$AMQP_PORT (dir $RMQ_DIR, boot takes ~15 s)"
    printf '\n==== %s rabbitmq-server -detached\n' "$(date -Is)" >>"$RMQ_STARTUP_LOG"
    ERL_CRASH_DUMP="$RMQ_CRASH_DUMP" rmq 60 rabbitmq-server -detached </dev/null >>"$RMQ_STARTUP_LOG" 2>&1 3>&- 9>&- || {
        tail_log "$RMQ_STARTUP_LOG"
        die "rabbitmq-server -detached failed"
    }
    RMQ_STARTED=1
}

rmq_fail() {
    # The node log only if this boot wrote to it (startup.log was appended to at the start).
    if [[ $RMQ_LOG -nt $RMQ_STARTUP_LOG ]]; then tail_log "$RMQ_LOG" 30; fi
    if [[ -s $RMQ_CRASH_DUMP ]]; then
        log "$RMQ_CRASH_DUMP says: $(grep -m1 '^Slogan:' "$RMQ_CRASH_DUMP" || true)"
    fi
    die "$*"
}

rmq_wait() {
    ((RMQ_STARTED)) || return 0
    local start=$SECONDS gone=0
    # 1. the TCP port (await_startup fails at once before the node has registered)
    until amqp_ping; do
        if [[ -s $RMQ_CRASH_DUMP ]]; then
            sleep 1 # let the VM finish writing it
            rmq_fail "RabbitMQ crashed during boot"
        fi
        if rmq_running; then gone=0; elif ((++gone >= 5)); then
            rmq_fail "RabbitMQ exited during boot (no beam.smp with -home $RMQ_DIR/home)"
        fi
        ((SECONDS - start < RMQ_TIMEOUT)) || rmq_fail "RabbitMQ did not open 127.0.0.1:$AMQP_PORT within $RMQ_TIMEOUT s"
        sleep 1
    done
    # 2. the node says it has finished booting
    local left=$((RMQ_TIMEOUT - (SECONDS - start)))
    ((left > 10)) || left=10
    rmq "$((left + 10))" rabbitmqctl -q -n "$RMQ_NODE" await_startup --timeout "$left" </dev/null >&2 3>&- 9>&- || rmq_fail "rabbitmqctl await_startup failed"
    log "RabbitMQ ready after $((SECONDS - start)) s (pid $(rmq_pid || echo '?'))"
    # Every test app declares its own queues (prefix test.<database>) and none deletes them:
    # the broker drops them after ten unused minutes (23,000 had piled up here).
    rmq 30 rabbitmqctl -q -n "$RMQ_NODE" set_policy --apply-to queues test-queues-expire \
        '^test\.' '{"expires":600000}' </dev/null >&2 3>&- 9>&- || log "could not set the test-queue expiry policy"
}

rmq_stop() {
    local pid i=0
    if pid="$(rmq_pid)"; then
        log "stopping RabbitMQ node $RMQ_NODE (pid $pid)"
        local pidfile=()
        if [[ -f $RMQ_PID_FILE ]]; then pidfile=("$RMQ_PID_FILE"); fi
        rmq 90 rabbitmqctl -q -n "$RMQ_NODE" stop "${pidfile[@]}" </dev/null >&2 3>&- 9>&- ||
            log "rabbitmqctl stop failed"
        while pid_alive "$pid" beam.smp && ((i++ < 30)); do sleep 1; done
        if pid_alive "$pid" beam.smp; then
            log "pid $pid still alive; SIGTERM"
            kill -TERM "$pid" 2>/dev/null || true
            i=0
            while pid_alive "$pid" beam.smp && ((i++ < 30)); do sleep 1; done
        fi
        if pid_alive "$pid" beam.smp; then
            log "pid $pid still alive; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    else
        log "RabbitMQ: not running"
    fi
    rm -f "$RMQ_PID_FILE"
    # The node's private epmd (a port of our own, so nobody else's epmd is touched).
    local epmd candidates
    epmd="$(command -v epmd || true)"
    if [[ -z $epmd ]]; then
        candidates=(/usr/lib/erlang/erts-*/bin/epmd)
        [[ -x ${candidates[0]} ]] && epmd=${candidates[0]}
    fi
    if [[ -n $epmd ]] && "$epmd" -port "$RMQ_EPMD_PORT" -names >/dev/null 2>&1; then
        log "stopping private epmd on port $RMQ_EPMD_PORT"
        "$epmd" -port "$RMQ_EPMD_PORT" -kill >&2 || log "warning: epmd -kill failed"
    fi
}

# ---------------------------------------------------------------------------------------------
# Subcommands

cmd_up() {
    exec 3>&1 1>&2 # stdout is reserved for the export lines (fd 3)
    local need_pg=1 need_mq=1
    if external_db; then
        need_pg=0
        log "DATABASE_URL is set: using that PostgreSQL, not starting one"
        if durable; then log "note: PAYLEDGER_DURABLE=1 does not change an external PostgreSQL; check its fsync yourself"; fi
    fi
    if external_mq; then
        need_mq=0
        log "AMQP_URL is set: using that RabbitMQ, not starting one"
    fi
    if ((need_pg || need_mq)); then
        take_lock
        ensure_packages "$need_pg" "$need_mq"
        if ((need_mq)); then rmq_start; fi # boots in the background while PostgreSQL starts
        if ((need_pg)); then pg_up; fi
        if ((need_mq)); then rmq_wait; fi
    fi
    print_env >&3
}

cmd_down() {
    if [[ ! -d $DEV_DIR ]]; then
        log "nothing to stop ($DEV_DIR does not exist)"
        return 0
    fi
    exec 1>&2
    take_lock
    if [[ -d $RMQ_DIR && -x $RMQ_BIN/rabbitmqctl ]]; then
        rmq_stop
    else
        log "RabbitMQ: not running"
    fi
    pg_paths
    if [[ -n $PG_BASE ]] && pg_running; then
        log "stopping PostgreSQL (pid $(head -n1 "$PG_DATA/postmaster.pid"), data $PG_DATA)"
        pg_stop
    else
        log "PostgreSQL: not running"
    fi
    log "down: done"
}

cmd_status() {
    local ok=0
    if external_db; then
        echo "PostgreSQL: external (DATABASE_URL is set)"
    else
        pg_paths
        if [[ -n $PG_BASE ]] && pg_running; then
            local state="not answering" mode=""
            if pg_ready; then
                state="ready"
                mode=", fsync=$(psql_admin -c 'SHOW fsync' 2>/dev/null || echo '?')"
            else
                ok=1
            fi
            echo "PostgreSQL: running, $state (pid $(head -n1 "$PG_DATA/postmaster.pid"), 127.0.0.1:$PG_PORT$mode, data $PG_DATA)"
        else
            echo "PostgreSQL: not running"
            ok=1
        fi
    fi
    if external_mq; then
        echo "RabbitMQ: external (AMQP_URL is set)"
    elif rmq_running; then
        local state="not answering"
        if amqp_ping; then state="ready"; else ok=1; fi
        echo "RabbitMQ: running, $state (pid $(rmq_pid), node $RMQ_NODE, 127.0.0.1:$AMQP_PORT, dir $RMQ_DIR)"
    else
        echo "RabbitMQ: not running"
        ok=1
    fi
    return "$ok"
}

usage() {
    sed -n '2,9s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
env) print_env ;;
status) cmd_status ;;
-h | --help | help)
    usage
    ;;
*)
    usage
    exit 2
    ;;
esac
