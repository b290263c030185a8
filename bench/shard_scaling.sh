#!/usr/bin/env bash
# bench/shard_scaling.sh: the same put workload on a sharded cluster of 1, 2 and 3 shard
# groups, then the stall a key's writes see while its bucket moves between two groups.
# `make bench-shard` runs it.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/shard_scaling.sh [options]

Starts a 3-server meta group and up to 3 shard groups of --replicas servers each
(release binaries, all on 127.0.0.1, data under --workdir), then:
  1. joins group 1, 2, 3 in turn and after each join runs `raftfs bench --meta`
     (puts through routed clients: every key goes to its bucket's group);
  2. runs bench/bench_move_stall: writers put to keys of one bucket while the
     bucket moves back and forth between groups 1 and 2; prints the longest put
     per move and percentiles during and between moves.

  --groups N        largest number of groups (default 3)
  --replicas R      servers per shard group (default 3)
  --clients C       client threads of raftfs bench (default 32)
  --ops N           puts per measurement (default 60000)
  --moves N         bucket moves in the stall measurement (default 10)
  --every MS        time between moves (default 1000)
  --workdir DIR     parent of the data directories (default /var/tmp; not tmpfs)
  --keep            keep data and logs
  --no-build        do not build first
  --help            this text

Ports are picked free on 127.0.0.1; every process started here is stopped by pid
on exit, also on failure or Ctrl-C.
EOF
}

die() {
    echo "shard_scaling: $*" >&2
    exit 1
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GROUPS_MAX=3
REPLICAS=3
CLIENTS=32
OPS=60000
MOVES=10
EVERY=1000
WORKDIR=/var/tmp
KEEP=0
BUILD=1
while [ $# -gt 0 ]; do
    case $1 in
        --groups) GROUPS_MAX=$2; shift 2 ;;
        --replicas) REPLICAS=$2; shift 2 ;;
        --clients) CLIENTS=$2; shift 2 ;;
        --ops) OPS=$2; shift 2 ;;
        --moves) MOVES=$2; shift 2 ;;
        --every) EVERY=$2; shift 2 ;;
        --workdir) WORKDIR=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --no-build) BUILD=0; shift ;;
        --help|-h) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
[[ $GROUPS_MAX =~ ^[1-3]$ ]] || die "--groups takes 1, 2 or 3"
[[ $REPLICAS =~ ^[1-5]$ ]] || die "--replicas takes 1 to 5"

WORK=""
PIDS=()
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

trap cleanup EXIT
trap 'exit 130' INT TERM

if [ $BUILD = 1 ]; then
    make -C "$ROOT" -s MODE=release bins build/release/bench/bench_move_stall >/dev/null
fi
BIN=$ROOT/bin
STALL=$ROOT/build/release/bench/bench_move_stall
[ -x "$STALL" ] || die "$STALL missing: run without --no-build"
WORK=$(mktemp -d "$WORKDIR/raftfs-shardbench.XXXXXX")

# Ports are picked in this shell (pick_port keeps PICKED), not in $(...).
META=""
for ((i = 0; i < 3; i++)); do pick_port; META="$META${META:+,}127.0.0.1:$PORT"; done
declare -a GROUP_ADDRS
for ((g = 1; g <= GROUPS_MAX; g++)); do
    list=""
    for ((i = 0; i < REPLICAS; i++)); do pick_port; list="$list${list:+,}127.0.0.1:$PORT"; done
    GROUP_ADDRS[$g]=$list
done

for ((i = 0; i < 3; i++)); do
    "$BIN/raftfs-meta" --id $i --peers "$META" --data "$WORK/meta$i" \
        >"$WORK/meta$i.log" 2>&1 &
    PIDS+=($!)
done
for ((g = 1; g <= GROUPS_MAX; g++)); do
    for ((i = 0; i < REPLICAS; i++)); do
        "$BIN/raftfs-shard" --id $i --peers "${GROUP_ADDRS[$g]}" --gid $g --meta "$META" \
            --data "$WORK/g$g-$i" >"$WORK/g$g-$i.log" 2>&1 &
        PIDS+=($!)
    done
done
wait_until 30 "the meta group" -- "$BIN/raftfs" meta --meta "$META" --timeout 1000 query

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)," \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo "cluster: 3 meta servers, up to $GROUPS_MAX groups of $REPLICAS servers; data in $WORK"
RESULTS=()
for ((g = 1; g <= GROUPS_MAX; g++)); do
    "$BIN/raftfs" meta --meta "$META" join $g "${GROUP_ADDRS[$g]}" >/dev/null
    # Warm up: waits out the buckets moving to the new group (WRONG_GROUP retries).
    "$BIN/raftfs" bench --meta "$META" --clients 8 --ops 2000 >/dev/null
    sleep 1
    echo "== $g group(s): raftfs bench --meta ... --clients $CLIENTS --ops $OPS"
    out=$("$BIN/raftfs" bench --meta "$META" --clients "$CLIENTS" --ops "$OPS")
    echo "$out"
    RESULTS+=("$g group(s): $(echo "$out" | grep throughput)")
done

if [ "$GROUPS_MAX" -ge 2 ]; then
    echo "== a bucket moving between groups 1 and 2 under writes"
    "$STALL" --meta "$META" --groups 1,2 --moves "$MOVES" --every "$EVERY"
fi
echo
echo "== summary"
printf '%s\n' "${RESULTS[@]}"
