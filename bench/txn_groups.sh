#!/usr/bin/env bash
# bench/txn_groups.sh: transactions of two keys on one shard group (one KV_TXN entry) against
# two keys on two groups (two-phase commit by the client), with plain puts for reference.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/txn_groups.sh [options]

Starts a 3-server meta group and 2 shard groups of --replicas servers each (release
binaries, all on 127.0.0.1, data under --workdir), joins both groups, then runs for each
client count:
  raftfs bench --meta ... --clients C --ops N             (puts, for reference)
  raftfs bench --meta ... --clients C --ops N --txn 1     (2 keys on one group)
  raftfs bench --meta ... --clients C --ops N --txn 2     (2 keys on two groups)

  --replicas R      servers per shard group (default 3)
  --clients LIST    client thread counts, comma-separated (default 1,16)
  --ops N           operations per measurement with 16 or more clients (default 20000;
                    fewer clients run N/8)
  --workdir DIR     parent of the data directories (default /var/tmp; not tmpfs)
  --keep            keep data and logs
  --no-build        do not build first
  --help            this text

Every process started here is stopped by pid on exit, also on failure or Ctrl-C.
EOF
}

die() {
    echo "txn_groups: $*" >&2
    exit 1
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPLICAS=3
CLIENTS=1,16
OPS=20000
WORKDIR=/var/tmp
KEEP=0
BUILD=1
while [ $# -gt 0 ]; do
    case $1 in
        --replicas) REPLICAS=$2; shift 2 ;;
        --clients) CLIENTS=$2; shift 2 ;;
        --ops) OPS=$2; shift 2 ;;
        --workdir) WORKDIR=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --no-build) BUILD=0; shift ;;
        --help|-h) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
[[ $REPLICAS =~ ^[1-5]$ ]] || die "--replicas takes 1 to 5"
[[ $CLIENTS =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--clients takes a list like 1,16"

WORK=""
PIDS=()
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

trap cleanup EXIT
trap 'exit 130' INT TERM

if [ $BUILD = 1 ]; then
    make -C "$ROOT" -s MODE=release bins >/dev/null
fi
BIN=$ROOT/bin
WORK=$(mktemp -d "$WORKDIR/raftfs-txnbench.XXXXXX")

META=""
for ((i = 0; i < 3; i++)); do pick_port; META="$META${META:+,}127.0.0.1:$PORT"; done
declare -a GROUP_ADDRS
for g in 1 2; do
    list=""
    for ((i = 0; i < REPLICAS; i++)); do pick_port; list="$list${list:+,}127.0.0.1:$PORT"; done
    GROUP_ADDRS[$g]=$list
done

for ((i = 0; i < 3; i++)); do
    "$BIN/raftfs-meta" --id $i --peers "$META" --data "$WORK/meta$i" \
        >"$WORK/meta$i.log" 2>&1 &
    PIDS+=($!)
done
for g in 1 2; do
    for ((i = 0; i < REPLICAS; i++)); do
        "$BIN/raftfs-shard" --id $i --peers "${GROUP_ADDRS[$g]}" --gid $g --meta "$META" \
            --data "$WORK/g$g-$i" >"$WORK/g$g-$i.log" 2>&1 &
        PIDS+=($!)
    done
done
wait_until 30 "the meta group" -- "$BIN/raftfs" meta --meta "$META" --timeout 1000 query
"$BIN/raftfs" meta --meta "$META" join 1 "${GROUP_ADDRS[1]}" >/dev/null
"$BIN/raftfs" meta --meta "$META" join 2 "${GROUP_ADDRS[2]}" >/dev/null
# Warm up: waits out the buckets moving to group 2 (WRONG_GROUP retries).
"$BIN/raftfs" bench --meta "$META" --clients 8 --ops 2000 >/dev/null
sleep 1

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)," \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo "cluster: 3 meta servers, 2 groups of $REPLICAS servers; data in $WORK"
RESULTS=()
IFS=, read -r -a CLIENT_LIST <<<"$CLIENTS"
for c in "${CLIENT_LIST[@]}"; do
    n=$OPS
    [ "$c" -ge 16 ] || n=$((OPS / 8))
    for mode in put 1 2; do
        args=(--meta "$META" --clients "$c" --ops "$n")
        label="puts"
        if [ $mode != put ]; then
            args+=(--txn "$mode")
            label="txn, 2 keys on $mode group(s)"
        fi
        echo "== $label: raftfs bench --meta M0,M1,M2 ${args[*]:2}"
        out=$("$BIN/raftfs" bench "${args[@]}")
        echo "$out"
        RESULTS+=("$c clients, $label: $(echo "$out" | grep throughput)")
    done
done
echo
echo "== summary"
printf '%s\n' "${RESULTS[@]}"
