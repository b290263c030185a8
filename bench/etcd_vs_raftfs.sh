#!/usr/bin/env bash
# bench/etcd_vs_raftfs.sh: the same put workload against a 3-server raftfs shard group and a
# 3-member etcd on this machine, one system at a time, both syncing to disk before they
# acknowledge; prints the results side by side. `make bench-etcd` runs it.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/etcd_vs_raftfs.sh [options]

Starts a 3-server raftfs shard group (bin/raftfs-shard) and measures puts with
`raftfs bench`; stops it; starts a 3-member etcd (Debian's etcd-server, fsync on,
the defaults) and measures the same puts with bench/etcd/etcd_load, first over
etcd's native gRPC API, then over its grpc-gateway JSON API; stops it; prints one
table. Every run uses the same client counts, value size and key set, and each
client thread issues one put at a time. etcd clients talk to the etcd leader.

  --clients "C1 C2"    client counts to measure (default "16 64")
  --raftfs-ops N       puts per raftfs run (default 150000)
  --etcd-ops N         puts per etcd run (default 40000); the defaults keep every
                       run between about 3 and 15 s on a 2-core machine
  --value-size B       value bytes (default 128)
  --keys K             distinct keys (default 1000)
  --etcd-api "A ..."   etcd APIs to measure: grpc, http (default "grpc http")
  --etcd-single        also measure a 1-member etcd (no replication)
  --raftfs-variant "A" also measure a raftfs group started with the extra
                       raftfs-shard options A (repeatable), e.g.
                       --raftfs-variant "--snapshot-every 100000"
  --only raftfs|etcd   measure one system only
  --rounds N           measure everything N times over (default 1), one system at
                       a time in turn, and also print the median of each figure
  --retries N          measure a row again, up to N times (default 3), while other
                       work (or the hypervisor's steal) took more than C cores
  --max-other C        that threshold (default 0.2)
  --perf-dir DIR       record each measured run with `perf record` (DWARF call
                       graphs) on the server processes and write the top of each
                       profile, flat and inclusive, to DIR (the sampling slows the
                       servers: use it for profiles, not figures)
  --workdir DIR        parent of the temporary data directories (default /var/tmp;
                       must not be tmpfs, where fsync costs nothing)
  --keep               keep the data directories and logs
  --no-build           do not run `make MODE=release bins` first
  --help               this text

Installs etcd-server, etcd-client and libnghttp2-dev with apt-get when missing
(needs root). Ports are picked free on 127.0.0.1; every process started here is
stopped by pid on exit, also on failure or Ctrl-C.
EOF
}

die() {
    echo "etcd_vs_raftfs: $*" >&2
    exit 1
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLIENTS="16 64"
RAFTFS_OPS=150000
ETCD_OPS=40000
VALUE_SIZE=128
KEYS=1000
ETCD_APIS="grpc http"
ETCD_SINGLE=0
RAFTFS_VARIANTS=()
RETRIES=3
MAX_OTHER=0.2
ROUNDS=1
ONLY=""
PERF_DIR=""
WORK_PARENT=/var/tmp
KEEP=0
BUILD=1

while [ $# -gt 0 ]; do
    case "$1" in
        --clients) CLIENTS=${2:?--clients needs a value}; shift 2 ;;
        --raftfs-ops) RAFTFS_OPS=${2:?--raftfs-ops needs a value}; shift 2 ;;
        --etcd-ops) ETCD_OPS=${2:?--etcd-ops needs a value}; shift 2 ;;
        --value-size) VALUE_SIZE=${2:?--value-size needs a value}; shift 2 ;;
        --keys) KEYS=${2:?--keys needs a value}; shift 2 ;;
        --etcd-api) ETCD_APIS=${2:?--etcd-api needs a value}; shift 2 ;;
        --etcd-single) ETCD_SINGLE=1; shift ;;
        --raftfs-variant) RAFTFS_VARIANTS+=("${2:?--raftfs-variant needs options}"); shift 2 ;;
        --only) ONLY=${2:?--only needs raftfs or etcd}; shift 2 ;;
        --rounds) ROUNDS=${2:?--rounds needs a value}; shift 2 ;;
        --retries) RETRIES=${2:?--retries needs a value}; shift 2 ;;
        --max-other) MAX_OTHER=${2:?--max-other needs a value}; shift 2 ;;
        --perf-dir) PERF_DIR=${2:?--perf-dir needs a directory}; shift 2 ;;
        --workdir) WORK_PARENT=${2:?--workdir needs a directory}; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --no-build) BUILD=0; shift ;;
        --help | -h) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
for n in $CLIENTS $RAFTFS_OPS $ETCD_OPS $VALUE_SIZE $KEYS $ROUNDS; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "not a positive number: $n"
done
[[ $RETRIES =~ ^[0-9]+$ ]] || die "--retries takes a number"
[[ $MAX_OTHER =~ ^[0-9]*\.?[0-9]+$ ]] || die "--max-other takes a number of cores"
for a in $ETCD_APIS; do
    [[ $a == grpc || $a == http ]] || die "--etcd-api takes grpc and/or http, not $a"
done
[[ -z $ONLY || $ONLY == raftfs || $ONLY == etcd ]] || die "--only takes raftfs or etcd"

# ---- what we start, and stopping it ----

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WORK=""
PIDS=()          # every process started here
CLUSTER_PIDS=()  # the servers of the cluster being measured

trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- prerequisites ----

INSTALLED_ETCD=0
need_pkgs=()
if [ "$ONLY" != raftfs ]; then
    command -v etcd >/dev/null || need_pkgs+=(etcd-server)
    command -v etcdctl >/dev/null || need_pkgs+=(etcd-client)
    [ -e /usr/include/nghttp2/nghttp2.h ] || need_pkgs+=(libnghttp2-dev)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing ${need_pkgs[*]}: run as root to install them with apt-get"
    echo "installing ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
    if [[ " ${need_pkgs[*]} " == *" etcd-server "* ]]; then
        INSTALLED_ETCD=1
    fi
fi

# An etcd left running (such as the package's own service on 2379/2380) would not clash
# with our ports but would compete for the CPU, so none may run during the measurement.
if [ "$ONLY" != raftfs ] && others=$(pgrep -x etcd | tr '\n' ' ') && [ -n "$others" ]; then
    if [ $INSTALLED_ETCD = 1 ]; then
        echo "stopping the etcd service the package just started (pids $others)"
        service etcd stop >/dev/null 2>&1 || invoke-rc.d etcd stop >/dev/null 2>&1 || true
        sleep 1
        others=$(pgrep -x etcd | tr '\n' ' ' || true)
    fi
    [ -z "$others" ] || die "an etcd is already running (pids $others), it would skew the" \
        "measurement: stop it first (service etcd stop)"
fi

if [ $BUILD = 1 ]; then
    echo "building release binaries"
    make -C "$ROOT" -s -j2 MODE=release bins >/dev/null
fi
for b in raftfs-shard raftfs; do
    [ -x "$ROOT/bin/$b" ] || die "$ROOT/bin/$b missing: run make -j2 MODE=release bins"
done
if [ -n "$PERF_DIR" ]; then
    command -v perf >/dev/null || die "--perf-dir needs perf (apt-get install linux-perf)"
    mkdir -p "$PERF_DIR"
    PERF_DIR=$(cd "$PERF_DIR" && pwd)
fi

mkdir -p "$WORK_PARENT"
WORK=$(mktemp -d "$WORK_PARENT/etcd-vs-raftfs.XXXXXX")
fstype=$(stat -f -c %T "$WORK")
[ "$fstype" != tmpfs ] || die "$WORK_PARENT is tmpfs, where fsync is free: pass --workdir on a disk"

LOAD="$WORK/etcd_load"
if [ "$ONLY" != raftfs ]; then
    ${CC:-cc} -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
        -Wmissing-prototypes -pthread -o "$LOAD" "$ROOT/bench/etcd/etcd_load.c" -lnghttp2 ||
        die "cannot build bench/etcd/etcd_load.c"
fi

# ---- helpers ----

# "BUSY STEAL": CPU seconds the whole machine has used so far (user + system + irq), and
# seconds the hypervisor gave its CPUs to someone else (steal).
machine_cpu_seconds() {
    awk -v k="$(getconf CLK_TCK)" '$1 == "cpu" { printf "%.3f %.3f\n", ($2 + $3 + $4 + $7 + $8) / k,
        $9 / k }' /proc/stat
}

# children_cpu_seconds FILE: CPU seconds (user + system) of the finished children of this
# shell, from the output of `times` saved in FILE (`times` must run in this shell, not in
# a subshell, whose counts start at zero). Its second line is "0m1.250s 0m0.500s".
children_cpu_seconds() {
    awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/)
         t += a[1] * 60 + a[2] } printf "%.3f\n", t }' "$1"
}

# CPU seconds (user + system) used so far by the given pids and all their threads.
cpu_seconds() {
    local pid st total=0 tck
    tck=$(getconf CLK_TCK)
    for pid in "$@"; do
        # Fields 14 and 15 of /proc/PID/stat, counted after the ')' that ends the name.
        st=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null) ||
            die "server pid $pid has exited (its log is in $WORK)"
        total=$((total + $(echo "$st" | awk '{print $12 + $13}')))
    done
    awk -v t="$total" -v k="$tck" 'BEGIN { printf "%.3f", t / k }'
}

RESULTS="$WORK/results.tsv"
: >"$RESULTS"

# measure_once SYSTEM API CLIENTS ROWFILE -- COMMAND...: run one load, write its result row.
measure_once() {
    local system=$1 api=$2 clients=$3 row=$4 out="$WORK/run.$RANDOM" c0 c1 m0 m1 s0 s1
    local perf_pid=""
    shift 5
    if [ -n "$PERF_DIR" ]; then
        local pl
        pl=$(
            IFS=,
            echo "${CLUSTER_PIDS[*]}"
        )
        # DWARF call graphs: the release build keeps no frame pointers.
        perf record -q -F 249 --call-graph dwarf,8192 -o "$WORK/perf.data" -p "$pl" \
            >/dev/null 2>&1 &
        perf_pid=$!
        PIDS+=("$perf_pid")
        sleep 0.5
    fi
    c0=$(cpu_seconds "${CLUSTER_PIDS[@]}")
    read -r m0 s0 < <(machine_cpu_seconds)
    local rc=0 load_pid
    times >"$out.times0"
    # In the background, so that a signal to this script is handled at once (bash runs a
    # trap only when the foreground command ends). A load that hangs (a server that stops
    # answering) ends after 10 minutes, status 124.
    timeout --foreground 600 "$@" >"$out.out" 2>"$out.err" &
    load_pid=$!
    PIDS+=("$load_pid")
    wait "$load_pid" || rc=$?
    forget_pids "$load_pid"
    times >"$out.times1"
    echo "$(children_cpu_seconds "$out.times0") $(children_cpu_seconds "$out.times1")" \
        >"$out.time"
    c1=$(cpu_seconds "${CLUSTER_PIDS[@]}")
    read -r m1 s1 < <(machine_cpu_seconds)
    if [ -n "$perf_pid" ]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
        forget_pids "$perf_pid"
        local name="$PERF_DIR/${system// /_}-$api-$clients"
        {
            echo "## self time by library and symbol"
            perf report -i "$WORK/perf.data" --no-children -g none --sort dso,symbol --stdio \
                2>/dev/null | grep -v '^#' | grep -v '^$' | sed 's/[ -]*$//' | head -60
            echo "## inclusive time by symbol (callees included), summed over the processes"
            perf report -i "$WORK/perf.data" --children -g none --sort pid,symbol --stdio \
                2>/dev/null | grep -v '^#' | awk '
                    / \[[.k]\] / { sub(/%/, "", $1); s = $0; sub(/.*\[[.k]\] /, "", s)
                                   sub(/[ -]*$/, "", s); t[s] += $1 }
                    END { for (s in t) printf "%7.2f%%  %s\n", t[s], s }' |
                sort -rn | head -150
        } >"$name.txt" || true
        echo "  profile: $name.txt"
    fi
    sed 's/^/  /' "$out.out"
    if [ $rc != 0 ]; then
        sed 's/^/  /' "$out.err" >&2
        die "$system ($api, $clients clients) failed with status $rc (see above)"
    fi
    awk -v sys="$system" -v api="$api" -v cl="$clients" -v c0="$c0" -v c1="$c1" \
        -v m0="$m0" -v m1="$m1" -v s0="$s0" -v s1="$s1" -v round="$ROUND" \
        -v ct="$(cat "$out.time")" '
        /^ops / { ops = $2; err = $4; t = $(NF - 1) }
        /^throughput / { tput = $2; p50 = $7; p99 = $9; p999 = $11; mx = $13 }
        END {
            split(ct, cc, " ")  # client CPU seconds before and after
            cc[1] = cc[2] - cc[1]; cc[2] = 0
            n = ops > 0 ? ops : 1
            printf "%s\t%s\t%s\t%d\t%.0f\t%s\t%s\t%s\t%s\t%d\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%d\n",
                sys, api, cl, ops, tput, p50, p99, p999, mx, err, (c1 - c0) * 1e6 / n,
                (cc[1] + cc[2]) * 1e6 / n, (c1 - c0) / t,
                (m1 - m0 - (c1 - c0) - cc[1] - cc[2]) / t, (s1 - s0) / t, round
        }' "$out.out" >"$row"
}

# measure SYSTEM API CLIENTS -- COMMAND...: run one load and record its row; run it again
# (up to --retries times) while other work on the machine, or the hypervisor (steal), took
# more than --max-other cores.
measure() {
    local row="$WORK/row.$RANDOM" attempt other steal
    for ((attempt = 0; ; attempt++)); do
        measure_once "$1" "$2" "$3" "$row" "${@:4}"
        other=$(cut -f14 "$row")
        steal=$(cut -f15 "$row")
        if [ "$attempt" -ge "$RETRIES" ] ||
            awk -v o="$other" -v s="$steal" -v m="$MAX_OTHER" 'BEGIN { exit !(o <= m && s <= m) }'
        then
            break
        fi
        echo "  other work used $other cores and steal $steal meanwhile: measuring again"
        sleep 5
    done
    cat "$row" >>"$RESULTS"
}

stop_cluster() {
    stop_pids "${CLUSTER_PIDS[@]+"${CLUSTER_PIDS[@]}"}"
    forget_pids "${CLUSTER_PIDS[@]+"${CLUSTER_PIDS[@]}"}"
    CLUSTER_PIDS=()
}

# ---- the machine ----

echo "date        $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine     $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)," \
    "$(sed -n 's/^PRETTY_NAME="\(.*\)"/\1/p' /etc/os-release), kernel $(uname -r)"
echo "data dirs   $WORK ($fstype)"
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    rev="$rev + uncommitted changes"
fi
echo "raftfs      $rev"
[ "$ONLY" = raftfs ] || echo "etcd        $(etcd --version | sed -n 's/^etcd Version: //p')"
echo "workload    puts of $VALUE_SIZE B values over $KEYS keys; clients: $CLIENTS;" \
    "$RAFTFS_OPS puts per raftfs run, $ETCD_OPS per etcd run"
# CPU already busy (other work on a shared machine) would skew a CPU-bound comparison.
read -r _ u1 n1 s1 i1 w1 _ </proc/stat
sleep 1
read -r _ u2 n2 s2 i2 w2 _ </proc/stat
busy=$(((u2 + n2 + s2 - u1 - n1 - s1) * 100 / (u2 + n2 + s2 + i2 + w2 - u1 - n1 - s1 - i1 - w1 + 1)))
echo "idle check  CPU ${busy}% busy in the second before starting"
if [ "$busy" -gt 15 ]; then
    echo "warning: other work is using the CPU: the figures will be skewed" >&2
fi

max_clients=0
for c in $CLIENTS; do
    if [ "$c" -gt "$max_clients" ]; then
        max_clients=$c
    fi
done

# ---- raftfs ----

run_raftfs() { # run_raftfs LABEL [EXTRA raftfs-shard ARGS...]
    local label=$1 group="" i c
    shift
    for i in 0 1 2; do
        pick_port
        group="$group${group:+,}127.0.0.1:$PORT"
    done
    echo
    echo "== $label: 3 x raftfs-shard $*, group $group"
    for i in 0 1 2; do
        "$ROOT/bin/raftfs-shard" --id $i --peers "$group" --data "$WORK/raftfs$RUN-$i" "$@" \
            >"$WORK/raftfs$RUN-$i.log" 2>&1 &
        PIDS+=($!)
        CLUSTER_PIDS+=($!)
    done
    RUN=$((RUN + 1))
    wait_until 30 "a raftfs leader" -- "$ROOT/bin/raftfs" kv --group "$group" --timeout 1000 \
        put bench-ready 1
    # Warm-up (not recorded): every client's connection set up, LevelDB files created.
    "$ROOT/bin/raftfs" bench --group "$group" --clients "$max_clients" --ops 5000 \
        --value-size "$VALUE_SIZE" --keys "$KEYS" >/dev/null
    for c in $CLIENTS; do
        echo "-- $c clients"
        measure "$label" native "$c" -- "$ROOT/bin/raftfs" bench --group "$group" --clients "$c" \
            --ops "$RAFTFS_OPS" --value-size "$VALUE_SIZE" --keys "$KEYS"
    done
    stop_cluster
}

# ---- etcd ----

# start_etcd N: an N-member etcd cluster; sets ETCD_ENDPOINTS and ETCD_LEADER.
start_etcd() {
    local n=$1 i cluster=""
    local -a cports=() pports=()
    for ((i = 0; i < n; i++)); do
        pick_port
        cports+=("$PORT")
        pick_port
        pports+=("$PORT")
        cluster="$cluster${cluster:+,}m$i=http://127.0.0.1:${pports[$i]}"
    done
    ETCD_ENDPOINTS=""
    for ((i = 0; i < n; i++)); do
        local cport=${cports[$i]} pport=${pports[$i]}
        ETCD_ENDPOINTS="$ETCD_ENDPOINTS${ETCD_ENDPOINTS:+,}127.0.0.1:$cport"
        # env -i: no ETCD_* variables from the caller's environment change the defaults.
        env -i PATH="$PATH" etcd --name "m$i" --data-dir "$WORK/etcd$RUN-$i" \
            --listen-client-urls "http://127.0.0.1:$cport" \
            --advertise-client-urls "http://127.0.0.1:$cport" \
            --listen-peer-urls "http://127.0.0.1:$pport" \
            --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
            --initial-cluster "$cluster" --initial-cluster-state new \
            --initial-cluster-token "bench-$$-$RUN" \
            --logger zap --log-outputs "$WORK/etcd$RUN-$i.log" >/dev/null 2>&1 &
        PIDS+=($!)
        CLUSTER_PIDS+=($!)
    done
    RUN=$((RUN + 1))
    wait_until 30 "etcd to be healthy" -- etcdctl --endpoints "$ETCD_ENDPOINTS" \
        --command-timeout 2s endpoint health
    local deadline=$((SECONDS + 30))
    ETCD_LEADER=""
    while [ -z "$ETCD_LEADER" ]; do
        # "endpoint, id, version, db size, is leader, ..." one line per member
        ETCD_LEADER=$(etcdctl --endpoints "$ETCD_ENDPOINTS" endpoint status 2>/dev/null |
            awk -F', ' '$5 == "true" { print $1; exit }' || true)
        [ -n "$ETCD_LEADER" ] || [ $SECONDS -lt $deadline ] || die "etcd elected no leader"
        [ -n "$ETCD_LEADER" ] || sleep 0.2
    done
}

run_etcd() { # run_etcd MEMBERS LABEL
    local n=$1 label=$2 api c
    echo
    start_etcd "$n"
    echo "== $label: members $ETCD_ENDPOINTS, leader $ETCD_LEADER"
    "$LOAD" --endpoints "$ETCD_LEADER" --clients "$max_clients" --ops 2000 \
        --value-size "$VALUE_SIZE" --keys "$KEYS" >/dev/null
    for api in $ETCD_APIS; do
        for c in $CLIENTS; do
            echo "-- $api, $c clients"
            measure "$label" "$api" "$c" -- "$LOAD" --proto "$api" --endpoints "$ETCD_LEADER" \
                --clients "$c" --ops "$ETCD_OPS" --value-size "$VALUE_SIZE" --keys "$KEYS"
        done
    done
    stop_cluster
}

# ---- the rounds: every system, one at a time, ROUNDS times ----

RUN=0
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    if [ "$ROUNDS" -gt 1 ]; then
        echo
        echo "=== round $ROUND of $ROUNDS"
    fi
    if [ "$ONLY" != etcd ]; then
        run_raftfs "raftfs"
        for v in "${RAFTFS_VARIANTS[@]+"${RAFTFS_VARIANTS[@]}"}"; do
            # shellcheck disable=SC2086 # the variant is a list of options
            run_raftfs "raftfs $v" $v
        done
    fi
    if [ "$ONLY" != raftfs ]; then
        run_etcd 3 "etcd"
        [ "$ETCD_SINGLE" = 0 ] || run_etcd 1 "etcd 1-member"
    fi
done

# ---- the tables ----

echo
echo "| round | system | API | clients | puts | puts/s | p50 ms | p99 ms | p999 ms | max ms |" \
    "errors | server CPU µs/put | client CPU µs/put | server cores | other cores | steal cores |"
echo "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
    $16, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15 }' "$RESULTS"
echo
echo "server cores: CPU the servers used per second of the run; other cores: CPU used by"
echo "everything else on the machine meanwhile (kernel threads, other work; 0.03-0.10 on an"
echo "idle machine); steal: CPU time the hypervisor gave to other guests. A row where either"
echo "is above $MAX_OTHER ran beside other work and is skewed."
awk -F'\t' -v m="$MAX_OTHER" '$14 > m || $15 > m { n++ }
    END { if (n) printf "warning: %d rows ran beside other work\n", n }' "$RESULTS" >&2

# Medians over the rounds (each column on its own); with one round, the values themselves.
MEDIANS="$WORK/medians.tsv"
awk -F'\t' '
    function median(list,   v, n, i, j, x) {
        n = split(list, v, " ")
        for (i = 2; i <= n; i++) {
            x = v[i] + 0
            for (j = i - 1; j >= 1 && v[j] + 0 > x; j--) v[j + 1] = v[j]
            v[j + 1] = x
        }
        return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    {
        k = $1 "\t" $2 "\t" $3
        if (!(k in n)) order[++nk] = k
        n[k]++
        for (c = 5; c <= 12; c++) col[k, c] = col[k, c] " " $c
        if (!(k in lo) || $5 + 0 < lo[k]) lo[k] = $5 + 0
        if (!(k in hi) || $5 + 0 > hi[k]) hi[k] = $5 + 0
    }
    END {
        for (i = 1; i <= nk; i++) {
            k = order[i]
            printf "%s\t%d\t%.0f\t%.0f\t%.0f", k, n[k], median(col[k, 5]), lo[k], hi[k]
            for (c = 6; c <= 9; c++) printf "\t%.2f", median(col[k, c])
            printf "\t%d\t%.0f\t%.0f\n", median(col[k, 10]), median(col[k, 11]), median(col[k, 12])
        }
    }' "$RESULTS" >"$MEDIANS"
if [ "$ROUNDS" -gt 1 ]; then
    echo
    echo "Medians over $ROUNDS rounds:"
    echo
    echo "| system | API | clients | rounds | puts/s | puts/s range | p50 ms | p99 ms | p999 ms |" \
        "max ms | errors | server CPU µs/put | client CPU µs/put |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s-%s | %s | %s | %s | %s | %s | %s | %s |\n",
        $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 }' "$MEDIANS"
fi
if [ -z "$ONLY" ]; then
    echo
    awk -F'\t' '
        $1 ~ /^raftfs/ { rt[$1, $3] = $5; rp[$1, $3] = $9 }
        $1 == "etcd" { et[$2, $3] = $5; ep[$2, $3] = $9; apis[$2] = 1 }
        END {
            for (k in rt) {
                split(k, kk, SUBSEP)
                for (a in apis) if ((a, kk[2]) in et)
                    printf "%s clients, %s vs etcd %s: throughput %.1fx, p99 %.2f ms vs %.2f ms\n",
                        kk[2], kk[1], a, rt[k] / et[a, kk[2]], rp[k], ep[a, kk[2]]
            }
        }' "$MEDIANS" | sort -n
fi
