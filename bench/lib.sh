# bench/lib.sh: shell helpers the benchmark scripts share (sourced, not run). The caller
# defines die() and a PIDS array of every process it started.

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

