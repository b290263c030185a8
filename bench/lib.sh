# bench/lib.sh: shell helpers the benchmark scripts share (sourced, not run). The caller
# defines die(), a PIDS array of every process it started, WORK (its data directory, or
# empty) and KEEP (1: keep WORK), and installs cleanup: trap cleanup EXIT.

# stop_pids PID...: SIGTERM, up to 5 s to exit, then SIGKILL; reaps them.
stop_pids() {
    local pid left deadline
    [ $# -gt 0 ] || return 0
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    deadline=$((SECONDS + 5))
    while :; do
        left=0
        for pid in "$@"; do
            if kill -0 "$pid" 2>/dev/null; then
                left=1
            fi
        done
        if [ $left = 0 ] || [ $SECONDS -ge $deadline ]; then
            break
        fi
        sleep 0.1
    done
    for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}

# forget_pids PID...: drop stopped (and reaped) pids from PIDS, so that cleanup never
# signals a pid the system may have given to another process since.
forget_pids() {
    local pid gone keep=()
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        for gone in "$@"; do [ "$pid" != "$gone" ] || continue 2; done
        keep+=("$pid")
    done
    PIDS=("${keep[@]+"${keep[@]}"}")
}

PICKED=" " # ports handed out so far
port_free() {
    if command -v ss >/dev/null; then
        [ -z "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]
    else
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 1
        fi
    fi
}
# pick_port: set PORT to a port nobody uses (not called in $(...), so PICKED persists).
pick_port() {
    local p tries=0
    while [ $tries -lt 200 ]; do
        p=$((20000 + RANDOM % 30000))
        tries=$((tries + 1))
        [[ $PICKED == *" $p "* ]] && continue
        if port_free "$p"; then
            PICKED="$PICKED$p "
            PORT=$p
            return 0
        fi
    done
    die "no free port found"
}

wait_until() { # wait_until SECONDS WHAT -- COMMAND...
    local limit=$1 what=$2
    shift 3
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "timed out after ${limit}s waiting for $what"
        sleep 0.2
    done
}


# cleanup: on exit, stop every process started (by pid) and remove WORK, unless KEEP=1 or
# the script failed (then WORK is kept for its logs).
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pids "${PIDS[@]+"${PIDS[@]}"}"
    if [ -n "$WORK" ]; then
        if [ "$KEEP" = 1 ] || [ $rc != 0 ]; then
            echo "data and logs kept in $WORK" >&2
        else
            rm -rf "$WORK"
        fi
    fi
    exit $rc
}
