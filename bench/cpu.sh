#!/usr/bin/env bash
# Where the CPU goes during a benchmark run: cores used by each part of the system over a window
# in the middle of the run (steady state: no start-up, no drain, no end-of-run verification).
#
#   bench/cpu.sh DELAY_S WINDOW_S OUT.json
#
# Sleeps DELAY_S, then counts CPU time (user + system, from /proc) over WINDOW_S for:
#   payledger        the server (HTTP, commands, relay, projectors)
#   emulators        the provider emulators in their own process (`pl-emulators`)
#   postgresql       every PostgreSQL process (backends, WAL writer, autovacuum, ...)
#   rabbitmq         the Erlang VM and its helpers
#   load_generator   payledger-bench (or pgbench, for the ceiling)
#   other            the rest of the busy time /proc/stat saw (kernel threads, interrupts,
#                    tools, the host's own noise)
# and writes {"window_s", "cores", "busy_pct", "cores_used": {part: cores}} to OUT.json.
# A process's time includes its exited children (cutime), so backends that disconnect
# during the window still count for PostgreSQL. Bounded: one /proc pass per snapshot.
set -euo pipefail

(($# == 3)) || { sed -n '2,17s/^# \{0,1\}//p' "$0" >&2; exit 2; }
DELAY_S=$1
WINDOW_S=$2
OUT=$3
[[ $DELAY_S =~ ^[0-9]+$ && $WINDOW_S =~ ^[0-9]+$ ]] && ((WINDOW_S >= 1 && WINDOW_S <= 3600)) ||
    { echo "cpu.sh: DELAY_S and WINDOW_S are whole seconds, WINDOW_S 1..3600" >&2; exit 2; }

# One line per part: "<part> <clock ticks>", then "busy <ticks>" and "all <ticks>" from /proc/stat.
snapshot() {
    # A process may exit between the glob and the read: cat goes on past it.
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk '
        {
            # The name is between the first "(" and the last ")"; the fields after it start
            # at the state.
            lp = index($0, "("); rp = 0
            for (i = length($0); i > lp; i--) if (substr($0, i, 1) == ")") { rp = i; break }
            if (lp == 0 || rp == 0) next
            name = substr($0, lp + 1, rp - lp - 1)
            n = split(substr($0, rp + 2), f, " ")
            if (n < 15) next
            ticks = f[12] + f[13] + f[14] + f[15]   # utime stime cutime cstime
            if (name == "payledger") part = "payledger"
            else if (name == "pl-emulators") part = "emulators"
            else if (name == "postgres") part = "postgresql"
            else if (name == "beam.smp" || name == "epmd" || name == "erl_child_setup" || name == "inet_gethost") part = "rabbitmq"
            else if (name == "payledger-bench" || name == "pgbench") part = "load_generator"
            else next
            sum[part] += ticks
        }
        END { for (p in sum) print p, sum[p] }'
    awk '/^cpu / { all = 0; for (i = 2; i <= NF; i++) all += $i; print "busy", all - $5 - $6; print "all", all }' /proc/stat
}

sleep "$DELAY_S"
before=$(snapshot)
sleep "$WINDOW_S"
after=$(snapshot)

HZ=$(getconf CLK_TCK)
CORES=$(nproc)
awk -v hz="$HZ" -v window="$WINDOW_S" -v cores="$CORES" '
    FNR == NR { before[$1] = $2; next }
    { delta[$1] = $2 - before[$1] }
    END {
        named = 0
        split("payledger emulators postgresql rabbitmq load_generator", parts, " ")
        for (i = 1; i <= 5; i++) { d = delta[parts[i]] + 0; if (d < 0) d = 0; used[parts[i]] = d; named += d }
        other = delta["busy"] - named; if (other < 0) other = 0
        printf "{\"window_s\": %d, \"cores\": %d, \"busy_pct\": %.1f, \"cores_used\": {", window, cores, 100 * delta["busy"] / delta["all"]
        for (i = 1; i <= 5; i++) printf "\"%s\": %.3f, ", parts[i], used[parts[i]] / hz / window
        printf "\"other\": %.3f}}\n", other / hz / window
    }' <(echo "$before") <(echo "$after") >"$OUT"
