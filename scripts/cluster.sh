#!/usr/bin/env bash
# The whole system as a cluster on this one machine, without systemd or Docker: a PostgreSQL
# primary with a streaming replica, a three-node RabbitMQ cluster, the sandbox provider, two
# API nodes behind HAProxy, two relays and two projectors per projection.
#
#   scripts/cluster.sh up                  start (or reuse) every part; print `export ...` lines
#   scripts/cluster.sh down                stop every part by its pid, then the private epmd
#   scripts/cluster.sh purge               down, then delete .dev/cluster/ (all data, the key)
#   scripts/cluster.sh status              one line per part: name, running|stopped, pid, address,
#                                          ready|live|down (exit 1 unless every part is ready)
#   scripts/cluster.sh env                 print the `export ...` lines only
#   scripts/cluster.sh parts               the part names, one a line
#   scripts/cluster.sh pid PART            its pid (exit 1 when it does not run)
#   scripts/cluster.sh kill PART           SIGKILL (rabbit-N: its beam.smp; pg-*: the postmaster)
#   scripts/cluster.sh start PART          start one part again and wait until it answers
#   scripts/cluster.sh stop PART           graceful stop of one part (bounded, then SIGKILL)
#   scripts/cluster.sh pg-restart primary|replica fast|immediate
#   scripts/cluster.sh broker-stop         stop the three RabbitMQ nodes (rabbit-1 last)
#   scripts/cluster.sh broker-start        start the three together; they wait for each other
#   scripts/cluster.sh memory-alarm on|off raise or clear the memory alarm on every node
#   scripts/cluster.sh rabbitmqctl ARGS... rabbitmqctl against rabbit-1 (or -n NODE)
#
# Typical use:   cargo build --release -p api --bin payledger && eval "$(scripts/cluster.sh up)"
#
# Everything lives under .dev/cluster/ (pids/, logs/, data) and never touches the ports of
# scripts/services.sh (55432, 55672-55689), so tests run beside the cluster. PostgreSQL runs as
# user `postgres`; when that user cannot reach .dev/cluster/ its files go to
# /tmp/payledger-cluster-<hash>/ instead (.dev/cluster/pg-location records where).
#
# Environment: AMQP_QUEUE_TYPE (default quorum) for the payledger processes; PAYLEDGER_BIN
# (default target/release/payledger). Only the export lines go to stdout; progress to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
# shellcheck source=lib.sh
. "$ROOT/scripts/lib.sh"
CL_DIR="$ROOT/.dev/cluster"
PID_DIR="$CL_DIR/pids"
LOG_DIR="$CL_DIR/logs"

if [[ -n ${PAYLEDGER_BIN:-} ]]; then
    BIN=$PAYLEDGER_BIN
else
    target="${CARGO_TARGET_DIR:-target}"
    [[ $target == /* ]] || target="$ROOT/$target"
    BIN="$target/release/payledger"
fi

PG_BIN=/usr/lib/postgresql/15/bin
PG_TIMEOUT=90             # seconds for pg_ctl start/stop/restart
PG_SLOT=replica           # the replica's physical replication slot on the primary

RMQ_BIN=/usr/lib/rabbitmq/bin
RMQ_EPMD_PORT=56674       # one private epmd shared by the three nodes and the CLI
RMQ_CTL_DIST_PORT_MIN=56700
RMQ_CTL_DIST_PORT_MAX=56709
RMQ_TIMEOUT=180           # seconds; a boot takes ~15 s, a restarted node may wait for its peers
RMQ_NODES=(1 2 3)

PL_TIMEOUT=60             # seconds for a payledger process to answer /health/live
PL_STOP_TIMEOUT=20        # seconds between SIGTERM and SIGKILL
LB_TIMEOUT=60             # seconds for HAProxy to see both API nodes up

LB_PORT=8080
LB_STATS_PORT=8404
SANDBOX_PORT=18099
PROJECTIONS=(status analytics failures ledger customers)

DATABASE_URL_PRIMARY="postgres://postgres@127.0.0.1:56432/payledger"
DATABASE_URL_REPLICA="postgres://postgres@127.0.0.1:56433/payledger"
AMQP_URLS="amqp://guest:guest@127.0.0.1:56672/%2f,amqp://guest:guest@127.0.0.1:56682/%2f,amqp://guest:guest@127.0.0.1:56692/%2f"
CHECKOUT_KEY_FILE="$CL_DIR/checkout-key"
OPERATOR_KEY_FILE="$CL_DIR/operator-key"
CHECKOUT_MERCHANT=cluster-merchant

declare -A PORT=(
    [pg-primary]=56432 [pg-replica]=56433
    [rabbit-1]=56672 [rabbit-2]=56682 [rabbit-3]=56692
    [sandbox]=$SANDBOX_PORT
    [api-1]=18081 [api-2]=18082 [relay-1]=18083 [relay-2]=18084
    [lb]=$LB_PORT
)
PARTS=(pg-primary pg-replica rabbit-1 rabbit-2 rabbit-3 sandbox relay-1 relay-2)
PL_PARTS=(relay-1 relay-2)
p=18085
for name in "${PROJECTIONS[@]}"; do
    for i in 1 2; do
        PORT[projector-$name-$i]=$p
        PARTS+=("projector-$name-$i")
        PL_PARTS+=("projector-$name-$i")
        p=$((p + 1))
    done
done
PARTS+=(api-1 api-2 lb)
PL_PARTS+=(api-1 api-2)

POLICY_MARKER='# temporary: created by payledger scripts/cluster.sh'

log() { printf '[cluster] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

trap policy_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

as_pg() {
    if is_root; then
        "$(command -v runuser || echo /usr/sbin/runuser)" -u postgres -- "$@"
    else
        "$@"
    fi
}

# A killed process stays a zombie until init reaps it (about a second here), and PostgreSQL
# takes a zombie's pid in postmaster.pid for a live server: wait until it is really gone.
wait_gone() { # pid seconds
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}

port_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null; }

http_status() { # url -> the HTTP status code, 000 when nothing answers
    curl -s -o /dev/null -m 3 -w '%{http_code}' "$1" 2>/dev/null || true
}

part_kind() {
    case $1 in
    pg-primary | pg-replica) echo pg ;;
    rabbit-[123]) echo rabbit ;;
    sandbox) echo sandbox ;;
    lb) echo lb ;;
    api-[12] | relay-[12] | projector-*-[12])
        [[ -n ${PORT[$1]:-} ]] || return 1
        echo payledger
        ;;
    *) return 1 ;;
    esac
}

check_part() {
    part_kind "$1" >/dev/null || die "unknown part '$1'; one of: ${PARTS[*]}"
}

# Serialise whole-cluster operations (up, down, broker-*) with fd 9, and the start or stop of
# one part with fd 8 (held only while it is launched, so nodes that wait for each other can
# boot concurrently). Every daemon is started with both closed (8>&- 9>&-), or it would hold
# the lock forever.
take_lock() {
    mkdir -p "$CL_DIR"
    exec 9>"$CL_DIR/.lock"
    if ! flock -n 9; then
        log "another cluster.sh run holds $CL_DIR/.lock; waiting (up to 600 s)"
        flock -w 600 9 || die "timed out waiting for $CL_DIR/.lock"
    fi
}
lock_part() {
    mkdir -p "$CL_DIR/locks"
    exec 8>"$CL_DIR/locks/$1.lock"
    flock -w 300 8 || die "timed out waiting for the lock of $1"
}
unlock_part() { exec 8>&-; }

# ---------------------------------------------------------------------------------------------
# Ports

# The cluster's ports from 56432 up lie in Linux's ephemeral range (32768-60999). A client
# socket could take one of them as its own local port while its server is down (a client that
# retries 127.0.0.1:56682 can even connect to itself), and the server's restart then fails
# with "address already in use" (seen: rabbit-2 after broker-stop). Reserved ports are never
# handed out as ephemeral ones.
RESERVED_PORTS=(56432-56433 56672-56709)
RESERVED_FILE=/proc/sys/net/ipv4/ip_local_reserved_ports

port_reserved() { # port current-list
    local r lo hi
    for r in ${2//,/ }; do
        lo=${r%-*} hi=${r#*-}
        ((lo <= $1 && $1 <= hi)) && return 0
    done
    return 1
}

reserve_ports() {
    local cur r lo hi p missing=()
    cur="$(cat "$RESERVED_FILE" 2>/dev/null)" || {
        log "warning: cannot read $RESERVED_FILE; the cluster's ports are not reserved"
        return 0
    }
    for r in "${RESERVED_PORTS[@]}"; do
        lo=${r%-*} hi=${r#*-}
        for ((p = lo; p <= hi; p++)); do
            if ! port_reserved "$p" "$cur"; then
                missing+=("$r")
                break
            fi
        done
    done
    ((${#missing[@]})) || return 0
    local want
    want="$(IFS=,; echo "${cur:+$cur,}${missing[*]}")"
    if echo "$want" >"$RESERVED_FILE" 2>/dev/null; then
        log "reserved ports ${missing[*]} against ephemeral use ($RESERVED_FILE)"
    else
        log "warning: could not write $RESERVED_FILE (not root?); a client socket may take one of the cluster's ports while its server is down"
    fi
}

# ---------------------------------------------------------------------------------------------
# Packages

ensure_packages() {
    local missing=()
    [[ -x $PG_BIN/pg_ctl && -x $PG_BIN/pg_basebackup ]] || missing+=(postgresql)
    [[ -x $RMQ_BIN/rabbitmq-server ]] || missing+=(rabbitmq-server)
    command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]] || missing+=(haproxy)
    command -v curl >/dev/null || missing+=(curl)
    ((${#missing[@]})) || return 0

    install_packages "${missing[@]}"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL: primary and streaming replica

# Sets PG_BASE (owned by the PostgreSQL user; empty before the first `up`) and PG_LOG_DIR.
pg_paths() {
    PG_BASE=""
    if [[ -f $CL_DIR/pg-location ]]; then PG_BASE="$(<"$CL_DIR/pg-location")"; fi
    # The logs sit with the others when user postgres can write there.
    if [[ $PG_BASE == "$CL_DIR"/* ]]; then PG_LOG_DIR=$LOG_DIR; else PG_LOG_DIR=$PG_BASE; fi
}

pg_prepare_base() {
    local base
    if [[ -f $CL_DIR/pg-location ]]; then
        base="$(<"$CL_DIR/pg-location")"
    else
        base="$CL_DIR/pg"
        if is_root; then
            chmod 755 "$ROOT/.dev" "$CL_DIR" "$LOG_DIR"
            if ! as_pg test -x "$CL_DIR"; then
                local hash tmp
                hash="$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
                tmp="/tmp/payledger-cluster-$hash"
                log "user postgres cannot reach $CL_DIR; using $tmp/pg instead"
                mkdir -p "$tmp"
                [[ -O $tmp && ! -L $tmp ]] || die "$tmp exists but is not owned by $(id -un)"
                chmod 755 "$tmp"
                base="$tmp/pg"
            fi
        fi
        printf '%s\n' "$base" >"$CL_DIR/pg-location"
    fi
    mkdir -p "$base"
    if is_root; then
        chown postgres:postgres "$base"
        chmod 755 "$base"
        as_pg test -w "$base" || die "user postgres cannot write to $base"
    fi
    pg_paths
}

pg_role() { echo "${1#pg-}"; } # pg-primary -> primary
pg_data() { echo "$PG_BASE/$(pg_role "$1")"; }
pg_log() { echo "$PG_LOG_DIR/$1.log"; }

pg_pid() {
    pg_paths
    [[ -n $PG_BASE && -f $(pg_data "$1")/postmaster.pid ]] || return 1
    local pid
    pid="$(head -n1 "$(pg_data "$1")/postmaster.pid" 2>/dev/null || true)"
    pid_alive "$pid" postgres || return 1
    echo "$pid"
}

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "${PORT[$1]}" -U postgres -d postgres -t 3; }

psql_on() { # part args...
    local part=$1
    shift
    PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -At \
        "postgres://postgres@127.0.0.1:${PORT[$part]}/postgres" "$@"
}

# Durable on both (fsync, synchronous_commit, full_page_writes); the replica needs at least
# the primary's max_connections and max_wal_senders to run as a hot standby. Passed on the
# command line: pg_ctl restart reuses them, and pg_basebackup does not copy them across.
pg_options() {
    printf '%s' "-p ${PORT[$1]} -k '$PG_BASE' -c listen_addresses=127.0.0.1 -c cluster_name=$1" \
        " -c max_connections=300 -c idle_in_transaction_session_timeout=60s" \
        " -c fsync=on -c synchronous_commit=on -c full_page_writes=on" \
        " -c wal_level=replica -c max_wal_senders=10 -c max_replication_slots=10" \
        " -c max_slot_wal_keep_size=2GB -c hot_standby=on -c hot_standby_feedback=on"
}

pg_prepare_log() {
    local file
    file="$(pg_log "$1")"
    mkdir -p "$(dirname "$file")"
    touch "$file"
    if is_root; then chown postgres:postgres "$file"; fi
}

pg_ctl_start() { # part
    local data log
    data="$(pg_data "$1")"
    log="$(pg_log "$1")"
    pg_prepare_log "$1"
    log "starting $1 on 127.0.0.1:${PORT[$1]} (data $data, log $log)"
    if ! (cd "$PG_BASE" && as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$log" -w -t "$PG_TIMEOUT" \
        -o "$(pg_options "$1")" start) </dev/null >&2 3>&- 8>&- 9>&-; then
        tail_log "$log"
        die "$1 failed to start (pg_ctl -w, timeout $PG_TIMEOUT s); log: $log"
    fi
    pg_wait_ready "$1" 30
}

pg_wait_ready() { # part seconds
    local i
    for ((i = 0; i < $2; i++)); do
        pg_ready "$1" && return 0
        sleep 1
    done
    tail_log "$(pg_log "$1")"
    die "$1 runs but does not accept connections on 127.0.0.1:${PORT[$1]}"
}

pg_primary_start() {
    local data
    data="$(pg_data pg-primary)"
    if [[ ! -f $data/PG_VERSION ]]; then
        if [[ -e $data ]]; then
            log "removing incomplete data directory $data"
            rm -rf "$data"
        fi
        log "initdb $data"
        (cd "$PG_BASE" && as_pg "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 \
            --locale=C.UTF-8) >"$PG_BASE/initdb.log" 2>&1 3>&- 8>&- 9>&- ||
            {
                tail_log "$PG_BASE/initdb.log"
                die "initdb failed"
            }
    fi
    pg_ctl_start pg-primary
}

# The database and the replica's slot, when missing.
pg_primary_setup() {
    if [[ $(psql_on pg-primary -c "SELECT 1 FROM pg_database WHERE datname = 'payledger'") != 1 ]]; then
        log "creating database payledger"
        psql_on pg-primary -c 'CREATE DATABASE payledger'
    fi
    if [[ $(psql_on pg-primary -c "SELECT 1 FROM pg_replication_slots WHERE slot_name = '$PG_SLOT'") != 1 ]]; then
        log "creating physical replication slot $PG_SLOT"
        psql_on pg-primary -c "SELECT pg_create_physical_replication_slot('$PG_SLOT')" >/dev/null
    fi
}

pg_replica_start() {
    local data
    data="$(pg_data pg-replica)"
    if [[ ! -f $data/PG_VERSION ]]; then
        pg_pid pg-primary >/dev/null && pg_ready pg-primary ||
            die "pg-replica has no data yet and pg-primary does not run: start pg-primary first"
        pg_primary_setup
        rm -rf "$data"
        log "pg_basebackup from the primary into $data (slot $PG_SLOT)"
        if ! (cd "$PG_BASE" && as_pg "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "${PORT[pg-primary]}" \
            -U postgres -D "$data" -R -S "$PG_SLOT" -X stream -c fast) </dev/null >"$PG_BASE/basebackup.log" 2>&1 3>&- 8>&- 9>&-; then
            tail_log "$PG_BASE/basebackup.log"
            rm -rf "$data"
            die "pg_basebackup failed"
        fi
    fi
    pg_ctl_start pg-replica
}

# After a killed postmaster: its pid must be gone (not a zombie) and its backends, which
# leave on their own once they see it die, must have released the shared memory.
pg_wait_remains() { # part
    local data stale i pids d
    data="$(pg_data "$1")"
    [[ -f $data/postmaster.pid ]] || return 0
    stale="$(head -n1 "$data/postmaster.pid" 2>/dev/null || true)"
    if [[ $stale =~ ^[0-9]+$ ]] && ! wait_gone "$stale" 10; then
        log "warning: the old postmaster $stale of $1 is still not reaped"
    fi
    for ((i = 0; i < 100; i++)); do
        pids=()
        for d in /proc/[0-9]*; do
            [[ $(cat "$d/comm" 2>/dev/null) == postgres && $(readlink "$d/cwd" 2>/dev/null) == "$data" ]] && pids+=("${d#/proc/}")
        done
        ((${#pids[@]})) || return 0
        ((i > 0)) || log "waiting for ${#pids[@]} leftover process(es) of $1 to exit"
        sleep 0.2
    done
    log "SIGKILL leftover processes of $1: ${pids[*]}"
    kill -KILL "${pids[@]}" 2>/dev/null || true
    for d in "${pids[@]}"; do wait_gone "$d" 5 || true; done
}

pg_start() { # part (launch and wait: pg_ctl -w)
    pg_prepare_base
    if pg_pid "$1" >/dev/null; then
        pg_wait_ready "$1" 60
        log "reusing $1 on 127.0.0.1:${PORT[$1]} (pid $(pg_pid "$1"))"
    else
        if pg_ready "$1"; then die "something else answers on 127.0.0.1:${PORT[$1]}; stop it first"; fi
        pg_wait_remains "$1"
        case $1 in
        pg-primary) pg_primary_start ;;
        pg-replica) pg_replica_start ;;
        esac
    fi
    if [[ $1 == pg-primary ]]; then pg_primary_setup; fi
}

pg_stop() { # part [mode]
    local mode=${2:-fast} pid
    pg_paths
    if ! pid="$(pg_pid "$1")"; then
        log "$1: not running"
        return 0
    fi
    log "stopping $1 (pid $pid, -m $mode)"
    (cd "$PG_BASE" && as_pg "$PG_BIN/pg_ctl" -D "$(pg_data "$1")" -m "$mode" -w -t "$PG_TIMEOUT" stop) </dev/null >&2 3>&- 8>&- 9>&- ||
        {
            tail_log "$(pg_log "$1")"
            die "pg_ctl stop of $1 failed"
        }
}

pg_restart() { # part mode
    pg_paths
    [[ -n $PG_BASE && -f $(pg_data "$1")/PG_VERSION ]] || die "$1 has no data directory yet: run up first"
    local log
    log="$(pg_log "$1")"
    pg_prepare_log "$1"
    log "restarting $1 (pg_ctl restart -m $2)"
    # pg_ctl restart reuses the options recorded in postmaster.opts; -o repeats them in case
    # the server was killed before it wrote them.
    if ! (cd "$PG_BASE" && as_pg "$PG_BIN/pg_ctl" -D "$(pg_data "$1")" -l "$log" -m "$2" -w \
        -t "$PG_TIMEOUT" -o "$(pg_options "$1")" restart) </dev/null >&2 3>&- 8>&- 9>&-; then
        tail_log "$log"
        die "pg_ctl restart of $1 failed"
    fi
    pg_wait_ready "$1" 60
    log "$1 is back (pid $(pg_pid "$1"))"
}

# The replica streams from the primary (bounded wait: it connects within a second or two).
pg_check_replication() {
    local i state=""
    for ((i = 0; i < 30; i++)); do
        state="$(psql_on pg-primary -c "SELECT state FROM pg_stat_replication WHERE application_name = 'pg-replica' OR application_name = 'walreceiver' LIMIT 1" 2>/dev/null || true)"
        [[ $state == streaming ]] && break
        sleep 1
    done
    [[ $state == streaming ]] || die "pg-replica does not stream from pg-primary (state '${state:-none}'); see $(pg_log pg-replica)"
    [[ $(psql_on pg-replica -c 'SELECT pg_is_in_recovery()') == t ]] || die "pg-replica is not in recovery (not a standby)"
    log "pg-replica streams from pg-primary through slot $PG_SLOT"
}

# ---------------------------------------------------------------------------------------------
# RabbitMQ: three nodes of one cluster

rmq_dir() { echo "$CL_DIR/rabbit-$1"; }
rmq_node() { echo "rabbit-$1@localhost"; }
rmq_amqp_port() { echo $((56672 + ($1 - 1) * 10)); }
rmq_dist_port() { echo $((56673 + ($1 - 1) * 10)); }
rmq_pid_file() { echo "$PID_DIR/rabbit-$1.pid"; }
rmq_log() { echo "$LOG_DIR/rabbit-$1.log"; }
rmq_startup_log() { echo "$LOG_DIR/rabbit-$1.startup.log"; }
rmq_crash_dump() { echo "$LOG_DIR/rabbit-$1.erl_crash.dump"; }

# Environment for RabbitMQ's scripts in $RMQ_BIN (they run as the caller; the wrappers in
# /usr/sbin would switch to user rabbitmq) so that they talk to node N of the private cluster.
rmq_env() {
    local d
    d="$(rmq_dir "$1")"
    RMQ_ENV=(
        "HOME=$d/home"
        "RABBITMQ_NODENAME=$(rmq_node "$1")"
        "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1"
        "RABBITMQ_NODE_PORT=$(rmq_amqp_port "$1")"
        "RABBITMQ_DIST_PORT=$(rmq_dist_port "$1")"
        "RABBITMQ_CTL_DIST_PORT_MIN=$RMQ_CTL_DIST_PORT_MIN"
        "RABBITMQ_CTL_DIST_PORT_MAX=$RMQ_CTL_DIST_PORT_MAX"
        "ERL_EPMD_PORT=$RMQ_EPMD_PORT"
        "ERL_EPMD_ADDRESS=127.0.0.1"
        "RABBITMQ_MNESIA_BASE=$d/mnesia"
        "RABBITMQ_LOG_BASE=$d/log"
        "RABBITMQ_LOGS=$(rmq_log "$1")"
        "RABBITMQ_CONFIG_FILE=$d/rabbitmq.conf"
        "RABBITMQ_ADVANCED_CONFIG_FILE=$d/advanced.config"
        "RABBITMQ_ENABLED_PLUGINS_FILE=$d/enabled_plugins"
        "RABBITMQ_PID_FILE=$(rmq_pid_file "$1")"
        "RABBITMQ_CONF_ENV_FILE=$d/rabbitmq-env.conf"
        # No scheduler busy-waiting: on two cores shared with PostgreSQL and payledger the
        # spinning schedulers took CPU the others needed.
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=+sbwt none +sbwtdcpu none +sbwtdio none"
    )
}

rmq() { # N SECONDS SCRIPT ARGS...: one of RabbitMQ's scripts for node N, bounded
    local n=$1 secs=$2 script=$3
    shift 3
    rmq_env "$n"
    (cd "$(rmq_dir "$n")" && timeout "$secs" env "${RMQ_ENV[@]}" "$RMQ_BIN/$script" "$@")
}

# The beam.smp whose -home is node N's own directory: a node is identified by its directory,
# never by program name alone. Used while booting, before the pid file exists.
rmq_find_beam() {
    local home d comm args
    home="$(rmq_dir "$1")/home"
    for d in /proc/[0-9]*; do
        read -r comm 2>/dev/null <"$d/comm" || continue
        [[ $comm == beam.smp ]] || continue
        args="$(tr '\0' '\n' <"$d/cmdline" 2>/dev/null)" || continue
        [[ $'\n'$args$'\n' == *$'\n'"$home"$'\n'* ]] || continue
        pid_alive "${d#/proc/}" beam.smp || continue
        echo "${d#/proc/}"
        return 0
    done
    return 1
}

rmq_pid() {
    local pid="" f
    f="$(rmq_pid_file "$1")"
    if [[ -f $f ]]; then pid="$(head -n1 "$f" 2>/dev/null || true)"; fi
    if [[ -n $pid ]] && pid_alive "$pid" beam.smp; then
        echo "$pid"
        return 0
    fi
    rmq_find_beam "$1"
}

# A real AMQP 0-9-1 protocol header exchange: the broker answers with Connection.Start.
amqp_ping() { # port
    local hex
    # shellcheck disable=SC2016  # $1 expands in the inner bash
    hex="$(timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "AMQP\x00\x00\x09\x01" >&3 && head -c 3 <&3 | od -An -tx1' _ "$1" 2>/dev/null)" || return 1
    [[ ${hex//[[:space:]]/} == 010000 ]]
}

rmq_prepare() {
    local d
    d="$(rmq_dir "$1")"
    mkdir -p "$d/home" "$d/mnesia" "$d/log" "$PID_DIR" "$LOG_DIR"
    : >"$d/rabbitmq-env.conf" # empty: ignore /etc/rabbitmq/rabbitmq-env.conf
    cat >"$d/rabbitmq.conf" <<EOF
# Generated by scripts/cluster.sh (overwritten on every start).
listeners.tcp.default = 127.0.0.1:$(rmq_amqp_port "$1")
loopback_users.guest = true
# The side of a partition with fewer than two of the three nodes stops serving.
cluster_partition_handling = pause_minority
log.file.level = info
log.console = false
EOF
    printf '[].\n' >"$d/enabled_plugins"
    # Distribution only on loopback.
    printf '[{kernel, [{inet_dist_use_interface, {127,0,0,1}}]}].\n' >"$d/advanced.config"
    # One cookie for every node and the CLI, or they cannot talk to each other.
    local shared="$CL_DIR/erlang.cookie" cookie="$d/home/.erlang.cookie"
    if [[ ! -s $shared ]]; then
        (umask 077 && od -An -N20 -tx1 /dev/urandom | tr -dc '0-9a-f' | tr 'a-f' 'A-F' >"$shared")
        chmod 400 "$shared"
    fi
    if ! cmp -s "$shared" "$cookie" 2>/dev/null; then
        rm -f "$cookie"
        cp "$shared" "$cookie"
    fi
    chmod 400 "$cookie"
}

RMQ_STARTED=()
rmq_launch() { # N: returns at once; rmq_wait waits for readiness
    local n=$1 port pid
    port="$(rmq_amqp_port "$n")"
    if pid="$(rmq_pid "$n")"; then
        if amqp_ping "$port"; then
            log "reusing rabbit-$n on 127.0.0.1:$port (pid $pid)"
        else
            log "rabbit-$n (pid $pid) runs but AMQP does not answer yet; waiting for it"
        fi
        return 0
    fi
    if amqp_ping "$port"; then die "something else answers on 127.0.0.1:$port; stop it first"; fi
    rm -f "$(rmq_pid_file "$n")"
    rmq_prepare "$n"
    local dump
    dump="$(rmq_crash_dump "$n")"
    if [[ -e $dump ]]; then mv -f "$dump" "$dump.old"; fi
    log "starting rabbit-$n on 127.0.0.1:$port (dir $(rmq_dir "$n"), log $(rmq_log "$n"))"
    printf '\n==== %s rabbitmq-server -detached\n' "$(date -Is)" >>"$(rmq_startup_log "$n")"
    ERL_CRASH_DUMP="$dump" rmq "$n" 60 rabbitmq-server -detached </dev/null >>"$(rmq_startup_log "$n")" 2>&1 3>&- 8>&- 9>&- || {
        tail_log "$(rmq_startup_log "$n")"
        die "rabbitmq-server -detached failed for rabbit-$n"
    }
}

rmq_fail() { # N message
    local dump
    dump="$(rmq_crash_dump "$1")"
    tail_log "$(rmq_log "$1")" 30
    if [[ -s $dump ]]; then log "$dump says: $(grep -m1 '^Slogan:' "$dump" || true)"; fi
    die "$2"
}

rmq_wait() { # N
    local n=$1 port start=$SECONDS gone=0
    port="$(rmq_amqp_port "$n")"
    # 1. the TCP port (await_startup fails at once before the node has registered); a node
    #    restarted alone may first wait for its peers' tables.
    until amqp_ping "$port"; do
        if [[ -s $(rmq_crash_dump "$n") ]]; then
            sleep 1
            rmq_fail "$n" "rabbit-$n crashed during boot"
        fi
        if rmq_pid "$n" >/dev/null; then gone=0; elif ((++gone >= 5)); then
            rmq_fail "$n" "rabbit-$n exited during boot"
        fi
        ((SECONDS - start < RMQ_TIMEOUT)) || rmq_fail "$n" "rabbit-$n did not open 127.0.0.1:$port within $RMQ_TIMEOUT s"
        sleep 1
    done
    # 2. the node says it has finished booting
    local left=$((RMQ_TIMEOUT - (SECONDS - start)))
    ((left > 10)) || left=10
    rmq "$n" "$((left + 10))" rabbitmqctl -q -n "$(rmq_node "$n")" await_startup --timeout "$left" </dev/null >&2 3>&- 8>&- 9>&- ||
        rmq_fail "$n" "rabbitmqctl await_startup failed for rabbit-$n"
    log "rabbit-$n ready after $((SECONDS - start)) s (pid $(rmq_pid "$n" || echo '?'))"
}

# Wait for several nodes at once: booted together, they wait for each other.
rmq_wait_all() { # N...
    local n pids=() failed=0
    for n in "$@"; do
        (rmq_wait "$n") &
        pids+=($!)
    done
    for n in "${pids[@]}"; do wait "$n" || failed=1; done
    ((failed == 0)) || die "RabbitMQ did not come up"
}

rmq_cluster_json() { rmq 1 30 rabbitmqctl -q -n "$(rmq_node "${1:-1}")" cluster_status --formatter json </dev/null 2>/dev/null; }

# The node names listed under KEY ("disk_nodes", "running_nodes") of cluster_status JSON.
json_nodes() { # json key
    grep -o "\"$2\":\[[^]]*\]" <<<"$1" | grep -o 'rabbit-[0-9]@localhost' || true
}

# Nodes 2 and 3 join rabbit-1 the first time (a node keeps its membership in its mnesia dir,
# so a restarted node rejoins on its own).
rmq_form_cluster() {
    local json members n node
    json="$(rmq_cluster_json 1)" || die "rabbitmqctl cluster_status on rabbit-1 failed"
    members="$(json_nodes "$json" disk_nodes)"
    for n in 2 3; do
        node="$(rmq_node "$n")"
        if grep -qxF "$node" <<<"$members"; then continue; fi
        log "rabbit-$n joins the cluster of rabbit-1"
        rmq "$n" 60 rabbitmqctl -q -n "$node" stop_app </dev/null >&2 3>&- 8>&- 9>&- || die "stop_app on rabbit-$n failed"
        if ! rmq "$n" 60 rabbitmqctl -q -n "$node" join_cluster "$(rmq_node 1)" </dev/null >&2 3>&- 8>&- 9>&-; then
            # It holds the state of another cluster: start it afresh.
            log "join_cluster failed; resetting rabbit-$n and joining again"
            rmq "$n" 60 rabbitmqctl -q -n "$node" reset </dev/null >&2 3>&- 8>&- 9>&- || die "reset of rabbit-$n failed"
            rmq "$n" 60 rabbitmqctl -q -n "$node" join_cluster "$(rmq_node 1)" </dev/null >&2 3>&- 8>&- 9>&- ||
                die "rabbit-$n could not join rabbit-1"
        fi
        rmq "$n" 120 rabbitmqctl -q -n "$node" start_app </dev/null >&2 3>&- 8>&- 9>&- || die "start_app on rabbit-$n failed"
    done
}

rmq_check_cluster() {
    local json running i
    for ((i = 0; i < 30; i++)); do
        json="$(rmq_cluster_json 1 || true)"
        running="$(json_nodes "$json" running_nodes | sort | tr '\n' ' ')"
        [[ $running == "rabbit-1@localhost rabbit-2@localhost rabbit-3@localhost " ]] && break
        sleep 1
    done
    [[ $running == "rabbit-1@localhost rabbit-2@localhost rabbit-3@localhost " ]] ||
        die "the RabbitMQ cluster runs only: ${running:-nothing} (rabbitmqctl cluster_status)"
    log "RabbitMQ cluster runs on all three nodes: $running"
}

rmq_stop() { # N
    local n=$1 pid i=0
    if ! pid="$(rmq_pid "$n")"; then
        log "rabbit-$n: not running"
        rm -f "$(rmq_pid_file "$n")"
        return 0
    fi
    log "stopping rabbit-$n (pid $pid)"
    local pidfile=()
    if [[ -f $(rmq_pid_file "$n") ]]; then pidfile=("$(rmq_pid_file "$n")"); fi
    rmq "$n" 90 rabbitmqctl -q -n "$(rmq_node "$n")" stop "${pidfile[@]}" </dev/null >&2 3>&- 8>&- 9>&- ||
        log "rabbitmqctl stop of rabbit-$n failed"
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
    rm -f "$(rmq_pid_file "$n")"
}

epmd_stop() {
    local epmd candidates
    epmd="$(command -v epmd || true)"
    if [[ -z $epmd ]]; then
        candidates=(/usr/lib/erlang/erts-*/bin/epmd)
        [[ -x ${candidates[0]} ]] && epmd=${candidates[0]}
    fi
    if [[ -n $epmd ]] && ERL_EPMD_ADDRESS=127.0.0.1 "$epmd" -port "$RMQ_EPMD_PORT" -names >/dev/null 2>&1; then
        log "stopping the private epmd on port $RMQ_EPMD_PORT"
        "$epmd" -port "$RMQ_EPMD_PORT" -kill >&2 || log "warning: epmd -kill failed"
    fi
}

rmq_memory_alarm() { # on|off
    local n rc=0 args
    case $1 in
    on) args=(absolute 1) ;; # any use is over one byte: the alarm goes off at once
    off) args=(0.4) ;;       # RabbitMQ's default
    *) die "memory-alarm takes on or off" ;;
    esac
    for n in "${RMQ_NODES[@]}"; do
        if ! rmq_pid "$n" >/dev/null; then
            log "rabbit-$n: not running, skipped"
            continue
        fi
        rmq "$n" 30 rabbitmqctl -q -n "$(rmq_node "$n")" set_vm_memory_high_watermark "${args[@]}" </dev/null >&2 3>&- 8>&- 9>&- || {
            log "set_vm_memory_high_watermark on rabbit-$n failed"
            rc=1
        }
    done
    ((rc == 0)) || die "memory-alarm $1 failed on some node"
    log "memory alarm $1 (vm_memory_high_watermark ${args[*]} on every running node)"
}

# ---------------------------------------------------------------------------------------------
# payledger processes and the sandbox provider (pid files written here)

pl_pid_file() { echo "$PID_DIR/$1.pid"; }
pl_log() { echo "$LOG_DIR/$1.log"; }

pl_pid() {
    local f pid
    f="$(pl_pid_file "$1")"
    [[ -f $f ]] || return 1
    pid="$(head -n1 "$f" 2>/dev/null || true)"
    pid_alive "$pid" payledger || return 1
    echo "$pid"
}

# The command line and environment of a payledger part.
pl_command() {
    local part=$1 pool=4
    PL_ENV=(
        "DATABASE_URL=$DATABASE_URL_PRIMARY"
        "DATABASE_READ_URL=$DATABASE_URL_REPLICA"
        "AMQP_URL=$AMQP_URLS"
        "AMQP_QUEUE_TYPE=${AMQP_QUEUE_TYPE:-quorum}"
        "PROVIDERS=sandbox"
        "SANDBOX_BASE_URL=http://127.0.0.1:$SANDBOX_PORT"
        "TRUSTED_PROXIES=127.0.0.1"
        "LOG_FORMAT=json"
        "RECONCILE_AFTER_MS=10000"
        "RECONCILE_INTERVAL_MS=5000"
        "LISTEN_ADDR=127.0.0.1:${PORT[$part]}"
        # `make chaos` drives the whole load with one key: ten times a merchant's default.
        "RATE_LIMIT_COMMANDS=${RATE_LIMIT_COMMANDS:-1000}"
        "RATE_LIMIT_READS=${RATE_LIMIT_READS:-1000}"
    )
    case $part in
    sandbox) PL_ARGS=(sandbox --listen "127.0.0.1:$SANDBOX_PORT" --webhook-url "http://127.0.0.1:$LB_PORT/v1/webhooks/sandbox") ;;
    api-*)
        PL_ARGS=(serve --role api)
        pool=16
        ;;
    relay-*) PL_ARGS=(serve --role relay) ;;
    projector-*)
        local name=${part#projector-}
        PL_ARGS=(serve --role projector --projection "${name%-*}")
        ;;
    esac
    PL_ENV+=("DATABASE_POOL_MAX=$pool")
}

check_bin() {
    [[ -x $BIN ]] || die "$BIN not found; build it first: cargo build --release -p api --bin payledger"
}

pl_launch() { # part: returns at once; pl_wait waits until it answers
    local part=$1 pid
    if pid="$(pl_pid "$part")"; then
        log "reusing $part (pid $pid, 127.0.0.1:${PORT[$part]})"
        return 0
    fi
    if port_open "${PORT[$part]}"; then die "something else listens on 127.0.0.1:${PORT[$part]} (wanted by $part)"; fi
    check_bin
    pl_command "$part"
    mkdir -p "$PID_DIR" "$LOG_DIR"
    local logf
    logf="$(pl_log "$part")"
    printf '==== %s %s %s\n' "$(date -Is)" "$BIN" "${PL_ARGS[*]}" >>"$logf"
    # Its own session: a Ctrl-C in the terminal that ran `up` does not reach it. setsid runs
    # in the forked child (not a group leader) and execs, so $! is payledger's pid.
    (cd "$ROOT" && exec setsid env "${PL_ENV[@]}" "$BIN" "${PL_ARGS[@]}") </dev/null >>"$logf" 2>&1 3>&- 8>&- 9>&- &
    echo $! >"$(pl_pid_file "$part")"
    log "started $part (pid $!, 127.0.0.1:${PORT[$part]}, log $logf)"
}

pl_ready() { # part
    if [[ $1 == sandbox ]]; then
        port_open "$SANDBOX_PORT"
    else
        [[ $(http_status "http://127.0.0.1:${PORT[$1]}/health/live") == 200 ]]
    fi
}

pl_wait() { # part
    local part=$1 start=$SECONDS pid
    pid="$(head -n1 "$(pl_pid_file "$part")" 2>/dev/null || true)"
    until pl_ready "$part"; do
        if ! pid_alive "$pid"; then
            tail_log "$(pl_log "$part")" 20
            die "$part (pid $pid) exited during start; log: $(pl_log "$part")"
        fi
        if ((SECONDS - start >= PL_TIMEOUT)); then
            tail_log "$(pl_log "$part")" 20
            die "$part (pid $pid) does not answer on 127.0.0.1:${PORT[$part]} within $PL_TIMEOUT s"
        fi
        sleep 0.5
    done
    log "$part ready after $((SECONDS - start)) s"
}

# SIGTERM each, wait for all (bounded), SIGKILL what is left.
pl_stop() { # part...
    local part pid pids=() names=() i
    for part in "$@"; do
        if pid="$(pl_pid "$part")"; then
            log "stopping $part (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            names+=("$part")
        fi
        rm -f "$(pl_pid_file "$part")"
    done
    ((${#pids[@]})) || return 0
    local deadline=$((SECONDS + PL_STOP_TIMEOUT)) left
    while :; do
        left=0
        for pid in "${pids[@]}"; do if pid_alive "$pid" payledger; then left=1; fi; done
        ((left && SECONDS < deadline)) || break
        sleep 0.3
    done
    for i in "${!pids[@]}"; do
        if pid_alive "${pids[$i]}" payledger; then
            log "${names[$i]} (pid ${pids[$i]}) still alive after $PL_STOP_TIMEOUT s; SIGKILL"
            kill -KILL "${pids[$i]}" 2>/dev/null || true
        fi
    done
}

migrate() {
    check_bin
    log "$BIN migrate (on pg-primary)"
    DATABASE_URL=$DATABASE_URL_PRIMARY timeout 120 "$BIN" migrate </dev/null >&2 3>&- 8>&- 9>&- ||
        die "payledger migrate failed"
}

# ---------------------------------------------------------------------------------------------
# HAProxy

LB_CFG="$CL_DIR/haproxy.cfg"
LB_PID_FILE="$PID_DIR/lb.pid"
LB_SOCK="$CL_DIR/haproxy.sock"

haproxy_bin() { command -v haproxy || echo /usr/sbin/haproxy; }

lb_pid() {
    local pid
    [[ -f $LB_PID_FILE ]] || return 1
    pid="$(head -n1 "$LB_PID_FILE" 2>/dev/null || true)"
    pid_alive "$pid" haproxy || return 1
    echo "$pid"
}

lb_config() {
    cat >"$LB_CFG" <<EOF
# Generated by scripts/cluster.sh (overwritten on every start).
global
    maxconn 4096
    # Runtime API: show stat, disable/enable server, ...
    stats socket $LB_SOCK mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    timeout queue 5s
    option forwardfor
    option redispatch
    retries 2
    # Only a request that never reached a node is retried (on the other node): a POST that
    # was sent may have been executed, and the client's Idempotency-Key is its retry.
    retry-on conn-failure

frontend api
    bind 127.0.0.1:$LB_PORT
    default_backend api

backend api
    balance roundrobin
    option httpchk GET /health/ready
    http-check expect status 200
    default-server inter 1s fall 2 rise 2
    server api-1 127.0.0.1:${PORT[api-1]} check
    server api-2 127.0.0.1:${PORT[api-2]} check

listen stats
    bind 127.0.0.1:$LB_STATS_PORT
    stats enable
    stats uri /
    stats refresh 2s
EOF
}

lb_start() {
    local pid
    if pid="$(lb_pid)"; then
        log "reusing lb (haproxy pid $pid, 127.0.0.1:$LB_PORT, stats 127.0.0.1:$LB_STATS_PORT)"
        return 0
    fi
    if port_open "$LB_PORT"; then die "something else listens on 127.0.0.1:$LB_PORT (wanted by lb)"; fi
    if port_open "$LB_STATS_PORT"; then die "something else listens on 127.0.0.1:$LB_STATS_PORT (haproxy stats)"; fi
    mkdir -p "$PID_DIR" "$LOG_DIR"
    lb_config
    local logf
    logf="$LOG_DIR/lb.log"
    "$(haproxy_bin)" -c -q -f "$LB_CFG" >>"$logf" 2>&1 || {
        tail_log "$logf" 20
        die "haproxy -c rejects $LB_CFG"
    }
    rm -f "$LB_PID_FILE"
    printf '==== %s haproxy -D -p %s -f %s\n' "$(date -Is)" "$LB_PID_FILE" "$LB_CFG" >>"$logf"
    "$(haproxy_bin)" -D -p "$LB_PID_FILE" -f "$LB_CFG" </dev/null >>"$logf" 2>&1 3>&- 8>&- 9>&- || {
        tail_log "$logf" 20
        die "haproxy failed to start"
    }
    local i
    for ((i = 0; i < 20; i++)); do
        if lb_pid >/dev/null && [[ $(http_status "http://127.0.0.1:$LB_STATS_PORT/") == 200 ]]; then
            log "lb: haproxy pid $(lb_pid) on 127.0.0.1:$LB_PORT (stats http://127.0.0.1:$LB_STATS_PORT/)"
            return 0
        fi
        sleep 0.5
    done
    tail_log "$logf" 20
    die "haproxy does not answer on 127.0.0.1:$LB_STATS_PORT"
}

lb_stop() {
    local pid i=0
    if ! pid="$(lb_pid)"; then
        log "lb: not running"
        rm -f "$LB_PID_FILE"
        return 0
    fi
    # SIGUSR1: soft stop (stop listening, let requests in flight finish); bounded, since a
    # kept-alive client connection could hold it open.
    log "stopping lb (haproxy pid $pid)"
    kill -USR1 "$pid" 2>/dev/null || true
    while pid_alive "$pid" haproxy && ((i++ < 50)); do sleep 0.2; done
    if pid_alive "$pid" haproxy; then
        log "haproxy (pid $pid) still alive after 10 s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$LB_PID_FILE" "$LB_SOCK"
}

# The api servers HAProxy currently sees UP (from the stats CSV).
lb_servers_up() {
    curl -s -m 3 "http://127.0.0.1:$LB_STATS_PORT/;csv" 2>/dev/null |
        awk -F, '$1 == "api" && $2 ~ /^api-/ && $18 ~ /^UP/ {print $2}' | sort | tr '\n' ' '
}

lb_wait_apis() {
    local start=$SECONDS up=""
    while :; do
        up="$(lb_servers_up)"
        if [[ $up == "api-1 api-2 " && $(http_status "http://127.0.0.1:$LB_PORT/health/ready") == 200 ]]; then
            log "lb sees api-1 and api-2 up after $((SECONDS - start)) s"
            return 0
        fi
        if ((SECONDS - start >= LB_TIMEOUT)); then
            die "HAProxy does not see both API nodes up within $LB_TIMEOUT s (up: ${up:-none}); see http://127.0.0.1:$LB_STATS_PORT/"
        fi
        sleep 0.5
    done
}

# ---------------------------------------------------------------------------------------------
# One part

part_pid() {
    case "$(part_kind "$1")" in
    pg) pg_pid "$1" ;;
    rabbit) rmq_pid "${1#rabbit-}" ;;
    lb) lb_pid ;;
    *) pl_pid "$1" ;;
    esac
}

part_ready() {
    case "$(part_kind "$1")" in
    pg) pg_ready "$1" ;;
    rabbit) amqp_ping "${PORT[$1]}" ;;
    lb) [[ $(http_status "http://127.0.0.1:$LB_STATS_PORT/") == 200 ]] ;;
    *) pl_ready "$1" ;;
    esac
}

part_start() { # part: start and wait until it answers
    local part=$1
    mkdir -p "$PID_DIR" "$LOG_DIR"
    reserve_ports
    lock_part "$part"
    case "$(part_kind "$part")" in
    pg)
        pg_start "$part"
        unlock_part
        if [[ $part == pg-replica ]] && pg_pid pg-primary >/dev/null; then pg_check_replication; fi
        ;;
    rabbit)
        rmq_launch "${part#rabbit-}"
        unlock_part
        rmq_wait "${part#rabbit-}"
        ;;
    lb)
        lb_start
        unlock_part
        ;;
    *)
        pl_launch "$part"
        unlock_part
        pl_wait "$part"
        ;;
    esac
}

part_stop() {
    local part=$1
    lock_part "$part"
    case "$(part_kind "$part")" in
    pg) pg_stop "$part" fast ;;
    rabbit) rmq_stop "${part#rabbit-}" ;;
    lb) lb_stop ;;
    *) pl_stop "$part" ;;
    esac
    unlock_part
}

part_kill() {
    local part=$1 pid
    pid="$(part_pid "$part")" || die "$part is not running"
    log "SIGKILL $part (pid $pid)"
    kill -KILL "$pid"
    wait_gone "$pid" 10 || log "warning: pid $pid is still not reaped after 10 s"
}

# ---------------------------------------------------------------------------------------------
# Subcommands

# A value made only of characters the shell takes literally is printed as it is (%q would
# write the commas of AMQP_URL as "\,", right for eval but not for a reader).
export_line() { # name value
    if [[ $2 =~ ^[A-Za-z0-9_./:@%,=+-]*$ ]]; then
        printf 'export %s=%s\n' "$1" "$2"
    else
        printf 'export %s=%q\n' "$1" "$2"
    fi
}

print_env() {
    export_line PAYLEDGER_URL "http://127.0.0.1:$LB_PORT"
    if [[ -s $CHECKOUT_KEY_FILE && -s $OPERATOR_KEY_FILE ]]; then
        export_line PAYLEDGER_CHECKOUT_KEY "$(<"$CHECKOUT_KEY_FILE")"
        export_line PAYLEDGER_OPERATOR_KEY "$(<"$OPERATOR_KEY_FILE")"
    else
        log "no keys yet ($CHECKOUT_KEY_FILE, $OPERATOR_KEY_FILE): run up"
    fi
    export_line DATABASE_URL "$DATABASE_URL_PRIMARY"
    export_line DATABASE_READ_URL "$DATABASE_URL_REPLICA"
    export_line AMQP_URL "$AMQP_URLS"
}

# ensure_key ROLE FILE PROBE [MERCHANT]: reuse the saved key while the API still accepts it on
# PROBE (the database may have been recreated), else create one.
ensure_key() {
    local role=$1 file=$2 probe=$3 merchant=${4:-}
    if [[ -s $file ]]; then
        local code
        code="$(curl -s -o /dev/null -m 10 -w '%{http_code}' -H "Authorization: Bearer $(<"$file")" \
            "http://127.0.0.1:$LB_PORT$probe" 2>/dev/null || true)"
        if [[ $code != 401 && $code != 000 ]]; then
            log "reusing the $role key in $file (GET $probe: $code)"
            return 0
        fi
        log "the saved $role key is refused ($code); creating a new one"
    fi
    local key args=(keys create --role "$role")
    [[ -n $merchant ]] && args+=(--merchant "$merchant")
    key="$(DATABASE_URL=$DATABASE_URL_PRIMARY timeout 60 "$BIN" "${args[@]}" </dev/null 3>&- 8>&- 9>&-)" ||
        die "payledger keys create --role $role failed"
    [[ -n $key ]] || die "payledger keys create printed no key"
    (umask 077 && printf '%s\n' "$key" >"$file")
    log "$role key saved in $file"
}

cmd_up() {
    exec 3>&1 1>&2 # stdout is reserved for the export lines (fd 3)
    local t0=$SECONDS
    check_bin
    take_lock
    ensure_packages
    reserve_ports
    mkdir -p "$PID_DIR" "$LOG_DIR"

    # RabbitMQ boots (~15 s) while PostgreSQL starts and the replica is copied.
    local n
    for n in "${RMQ_NODES[@]}"; do
        lock_part "rabbit-$n"
        rmq_launch "$n"
        unlock_part
    done
    lock_part pg-primary
    pg_start pg-primary
    unlock_part
    lock_part pg-replica
    pg_start pg-replica
    unlock_part
    pg_check_replication
    migrate

    lock_part sandbox
    pl_launch sandbox
    unlock_part
    lock_part lb
    lb_start
    unlock_part

    rmq_wait_all "${RMQ_NODES[@]}"
    rmq_form_cluster
    rmq_check_cluster

    local part
    for part in "${PL_PARTS[@]}"; do
        lock_part "$part"
        pl_launch "$part"
        unlock_part
    done
    for part in sandbox "${PL_PARTS[@]}"; do pl_wait "$part"; done
    lb_wait_apis
    ensure_key checkout "$CHECKOUT_KEY_FILE" "/v1/payments?limit=1" "$CHECKOUT_MERCHANT"
    ensure_key operator "$OPERATOR_KEY_FILE" /metrics
    log "cluster up in $((SECONDS - t0)) s; scripts/cluster.sh status shows every part"
    print_env >&3
}

cmd_down() {
    if [[ ! -d $CL_DIR ]]; then
        log "nothing to stop ($CL_DIR does not exist)"
        return 0
    fi
    exec 1>&2
    take_lock
    lock_part lb
    lb_stop
    unlock_part
    pl_stop "${PL_PARTS[@]}" sandbox
    # rabbit-1 last: a cluster is best restarted from the node that stopped last.
    local n
    for n in 3 2 1; do
        lock_part "rabbit-$n"
        rmq_stop "$n"
        unlock_part
    done
    epmd_stop
    pg_paths
    if [[ -n $PG_BASE ]]; then
        lock_part pg-replica
        pg_stop pg-replica fast
        unlock_part
        lock_part pg-primary
        pg_stop pg-primary fast
        unlock_part
    fi
    log "down: done"
}

cmd_purge() {
    cmd_down
    [[ -d $CL_DIR ]] || return 0
    pg_paths
    if [[ -n $PG_BASE && $PG_BASE != "$CL_DIR"/* && $PG_BASE == /tmp/payledger-cluster-*/pg ]]; then
        log "deleting $(dirname "$PG_BASE")"
        rm -rf "$(dirname "$PG_BASE")"
    fi
    log "deleting $CL_DIR"
    rm -rf "$CL_DIR"
}

cmd_status() {
    local part pid state health rc=0 addr
    for part in "${PARTS[@]}"; do
        addr="127.0.0.1:${PORT[$part]}"
        if pid="$(part_pid "$part" 2>/dev/null)"; then
            state=running
            # payledger: ready (can do its role's work now), live (answers, but not ready).
            if [[ $(part_kind "$part") == payledger ]]; then
                case "$(http_status "http://127.0.0.1:${PORT[$part]}/health/ready")" in
                200) health=ready ;;
                503) health=live rc=1 ;;
                *) health=down rc=1 ;;
                esac
            elif part_ready "$part" 2>/dev/null; then health=ready; else
                health=down
                rc=1
            fi
        else
            state=stopped pid=- health=-
            rc=1
        fi
        printf '%-24s %-8s %-8s %-16s %s\n' "$part" "$state" "$pid" "$addr" "$health"
    done
    return "$rc"
}

cmd_broker_stop() {
    take_lock
    local n
    for n in 3 2 1; do
        lock_part "rabbit-$n"
        rmq_stop "$n"
        unlock_part
    done
}

cmd_broker_start() {
    take_lock
    reserve_ports
    local n
    for n in "${RMQ_NODES[@]}"; do
        lock_part "rabbit-$n"
        rmq_launch "$n"
        unlock_part
    done
    rmq_wait_all "${RMQ_NODES[@]}"
    rmq_check_cluster
}

cmd_rabbitmqctl() {
    local a has_node=0
    for a in "$@"; do [[ $a == -n || $a == --node || $a == --node=* ]] && has_node=1; done
    rmq_env 1
    mkdir -p "$(rmq_dir 1)/home"
    local pre=()
    ((has_node)) || pre=(-n "$(rmq_node 1)")
    cd "$(rmq_dir 1)" && exec env "${RMQ_ENV[@]}" "$RMQ_BIN/rabbitmqctl" "${pre[@]}" "$@"
}

usage() { sed -n '2,23s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; }

need_arg() { [[ -n ${1:-} ]] || {
    usage
    exit 2
}; }

cmd=${1:-}
shift || true
case $cmd in
up) cmd_up ;;
down) cmd_down ;;
purge) cmd_purge ;;
status) cmd_status ;;
env) print_env ;;
parts) printf '%s\n' "${PARTS[@]}" ;;
pid)
    need_arg "${1:-}"
    check_part "$1"
    part_pid "$1" || {
        log "$1 is not running"
        exit 1
    }
    ;;
kill)
    need_arg "${1:-}"
    check_part "$1"
    part_kill "$1"
    ;;
start)
    need_arg "${1:-}"
    check_part "$1"
    exec 1>&2
    part_start "$1"
    ;;
stop)
    need_arg "${1:-}"
    check_part "$1"
    exec 1>&2
    part_stop "$1"
    ;;
pg-restart)
    [[ ${1:-} == primary || ${1:-} == replica ]] && [[ ${2:-} == fast || ${2:-} == immediate ]] || {
        log "usage: scripts/cluster.sh pg-restart primary|replica fast|immediate"
        exit 2
    }
    exec 1>&2
    lock_part "pg-$1"
    pg_restart "pg-$1" "$2"
    unlock_part
    ;;
broker-stop)
    exec 1>&2
    cmd_broker_stop
    ;;
broker-start)
    exec 1>&2
    cmd_broker_start
    ;;
memory-alarm)
    need_arg "${1:-}"
    rmq_memory_alarm "$1"
    ;;
rabbitmqctl) cmd_rabbitmqctl "$@" ;;
-h | --help | help) usage ;;
*)
    usage
    exit 2
    ;;
esac
