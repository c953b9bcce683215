# Shell helpers shared by services.sh and cluster.sh (sourced, not run). The caller defines
# `log` and `die` (each script prefixes its own lines) and sets POLICY_MARKER, naming itself.

POLICY_RC=/usr/sbin/policy-rc.d
POLICY_CREATED=0

# Remove the policy-rc.d only if this run created it (and it is still ours).
policy_cleanup() {
    if ((POLICY_CREATED)) && grep -qxF "$POLICY_MARKER" "$POLICY_RC" 2>/dev/null; then
        rm -f "$POLICY_RC"
        log "removed temporary $POLICY_RC"
    fi
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# pid_alive PID [COMM]: the process exists, is not a zombie (an init that does not reap leaves
# those behind) and, when COMM is given, is that program (a recycled pid is not ours).
pid_alive() {
    [[ $1 =~ ^[0-9]+$ ]] && kill -0 "$1" 2>/dev/null || return 1
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ ${stat##*) } != Z* ]] || return 1
    [[ -z ${2:-} || $(cat "/proc/$1/comm" 2>/dev/null) == "$2" ]]
}

tail_log() { # file [lines]
    local file=$1 lines=${2:-40}
    if [[ -f $file ]]; then
        log "---- last $lines lines of $file ----"
        tail -n "$lines" "$file" >&2 || true
        log "---- end of $file ----"
    else
        log "(no log file at $file)"
    fi
}

apt_has_candidate() {
    local c
    c="$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')"
    [[ -n $c && $c != "(none)" ]]
}

# install_packages PKG...: apt-get install as root, with the packages' own services (system
# PostgreSQL on 5432, RabbitMQ on 5672, HAProxy) kept from starting during the install by a
# temporary policy-rc.d; a policy-rc.d that is already there is left alone. The daemons'
# file descriptors 3, 8 and 9 (stdout reserve, locks) never leak into apt's children.
install_packages() {
    is_root || die "missing packages: $*; install them as root (apt-get install $*)"
    command -v apt-get >/dev/null || die "missing packages $* and no apt-get to install them"
    if [[ -e $POLICY_RC ]]; then
        if grep -qxF "$POLICY_MARKER" "$POLICY_RC" 2>/dev/null; then
            log "note: $POLICY_RC left behind by an interrupted run; it will be removed afterwards"
            POLICY_CREATED=1
        elif ! grep -q 'exit 101' "$POLICY_RC"; then
            log "warning: existing $POLICY_RC does not obviously block service starts; leaving it as is"
        fi
    elif (set -o noclobber && printf '#!/bin/sh\n%s\nexit 101\n' "$POLICY_MARKER" >"$POLICY_RC") 2>/dev/null; then
        POLICY_CREATED=1
        chmod 755 "$POLICY_RC"
        log "created temporary $POLICY_RC (blocks service starts during install)"
    fi
    local apt=(apt-get -q -y -o DPkg::Lock::Timeout=300) updated=0 p
    for p in "$@"; do
        if ! apt_has_candidate "$p"; then
            log "apt-get update (no install candidate for $p)"
            DEBIAN_FRONTEND=noninteractive "${apt[@]}" update >&2 3>&- 8>&- 9>&-
            updated=1
            break
        fi
    done
    log "installing $* with apt-get"
    if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "$@" >&2 3>&- 8>&- 9>&-; then
        ((updated)) && die "apt-get install $* failed"
        log "install failed; retrying after apt-get update (package lists may be stale)"
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" update >&2 3>&- 8>&- 9>&-
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "$@" >&2 3>&- 8>&- 9>&- ||
            die "apt-get install $* failed"
    fi
    policy_cleanup
    POLICY_CREATED=0
}
