#!/usr/bin/env bash
# bench/fs_vs_passthrough.sh: the same fio jobs on a raftfs mount, on a libfuse passthrough
# mount of a local directory (bench/passthrough) and on that local directory itself (issue 6,
# "Benchmark"). `make bench-fs` runs it.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/fs_vs_passthrough.sh [options]

Starts a 3-server meta group and 2 shard groups of 3 servers each (release binaries, all on
127.0.0.1, data under --workdir), joins both groups, mounts raftfs (bin/raftfs-mount) and a
passthrough of a local directory (build/release/bench/passthrough), then runs on each of
raftfs, passthrough and the local directory (fio, psync engine, fallocate=none):
  seq write   1 MiB blocks, --seq-mib MiB, direct=0, end_fsync=1
  seq read    the same file, 1 MiB blocks (page cache dropped first)
  rand read   4 KiB, a 64 MiB file, --rand-secs s, iodepth 1, numjobs 1
  rand write  4 KiB, the same file, --rand-secs s, iodepth 1, numjobs 1
  create      --files empty files in one directory (fio ioengine=filecreate); on raftfs
              once the used space has held still for 15 s (the deleted files collected in
              the background; at most 180 s)
  stat        stat of each (ioengine=filestat)
  unlink      unlink of each (ioengine=filedelete)
  the same three as a plain python3 loop (open+close, stat, unlink), when python3 is there:
  fio's file engines cost about 0.4 ms a file of their own at 10,000 files
and prints MB/s or ops/s per job and target, and raftfs as % of passthrough next to the
goals of issue 6 (seq write >= 15%, seq read >= 50%, creates >= 40%).

  --seq-mib N       size of the sequential file (default 256)
  --rand-secs S     length of each random job (default 15)
  --files N         files in the metadata run (default 10000)
  --job-timeout S   upper bound on any one fio run (default 300)
  --workdir DIR     parent of the data directories (default /var/tmp; not tmpfs)
  --targets LIST    comma-separated subset of raftfs,passthrough,local (default: all three)
  --only LIST       comma-separated subset of seqwrite,seqread,rand,meta (default: all)
  --keep            keep data and logs
  --no-build        do not build first
  --help            this text

Installs fio with apt-get when missing (as root). Ports are picked free on 127.0.0.1;
both mounts are unmounted with fusermount3 -u and every process started here is stopped
by pid on exit, also on failure or Ctrl-C.
EOF
}

die() {
    echo "fs_vs_passthrough: $*" >&2
    exit 1
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SEQ_MIB=256
RAND_SECS=15
FILES=10000
JOB_TIMEOUT=300
WORKDIR=/var/tmp
KEEP=0
BUILD=1
TARGET_LIST=raftfs,passthrough,local
ONLY=seqwrite,seqread,rand,meta
while [ $# -gt 0 ]; do
    case $1 in
        --seq-mib) SEQ_MIB=$2; shift 2 ;;
        --rand-secs) RAND_SECS=$2; shift 2 ;;
        --files) FILES=$2; shift 2 ;;
        --job-timeout) JOB_TIMEOUT=$2; shift 2 ;;
        --workdir) WORKDIR=$2; shift 2 ;;
        --targets) TARGET_LIST=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --no-build) BUILD=0; shift ;;
        --help|-h) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
[[ $SEQ_MIB =~ ^[1-9][0-9]*$ ]] || die "--seq-mib takes a positive number"
[[ $RAND_SECS =~ ^[1-9][0-9]*$ ]] || die "--rand-secs takes a positive number"
[[ $FILES =~ ^[1-9][0-9]*$ ]] || die "--files takes a positive number"
[ "$(stat -f -c %T "$WORKDIR")" != tmpfs ] || die "$WORKDIR is tmpfs: pick a disk (--workdir)"

WORK=""
PIDS=()
MOUNTS=()
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Unmount first (the daemons exit on unmount), then lib.sh's cleanup stops what is left by pid.
fs_cleanup() {
    local rc=$? m
    for m in "${MOUNTS[@]+"${MOUNTS[@]}"}"; do
        if mountpoint -q "$m"; then
            fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || true
        fi
    done
    set +e # (exit $rc) hands rc on to cleanup's $?; under set -e it would end the trap here
    (exit $rc)
    cleanup
}
trap fs_cleanup EXIT
trap 'exit 130' INT TERM

if ! command -v fio >/dev/null; then
    [ "$(id -u)" = 0 ] || die "fio missing: apt-get install fio (as root)"
    apt-get install -y fio >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y fio >/dev/null; } ||
        die "could not install fio"
fi
command -v fusermount3 >/dev/null || die "fusermount3 missing (apt-get install fuse3)"

if [ $BUILD = 1 ]; then
    make -C "$ROOT" -s MODE=release bins build/release/bench/passthrough >/dev/null
fi
BIN=$ROOT/bin
PT=$ROOT/build/release/bench/passthrough
[ -x "$PT" ] && [ -x "$BIN/raftfs-mount" ] || die "binaries missing: run without --no-build"
WORK=$(mktemp -d "$WORKDIR/raftfs-fsbench.XXXXXX")

# Ports are picked in this shell (pick_port keeps PICKED), not in $(...).
META=""
for ((i = 0; i < 3; i++)); do pick_port; META="$META${META:+,}127.0.0.1:$PORT"; done
declare -a GROUP_ADDRS
for ((g = 1; g <= 2; g++)); do
    list=""
    for ((i = 0; i < 3; i++)); do pick_port; list="$list${list:+,}127.0.0.1:$PORT"; done
    GROUP_ADDRS[$g]=$list
done

for ((i = 0; i < 3; i++)); do
    "$BIN/raftfs-meta" --id $i --peers "$META" --data "$WORK/meta$i" \
        >"$WORK/meta$i.log" 2>&1 &
    PIDS+=($!)
done
for ((g = 1; g <= 2; g++)); do
    for ((i = 0; i < 3; i++)); do
        "$BIN/raftfs-shard" --id $i --peers "${GROUP_ADDRS[$g]}" --gid $g --meta "$META" \
            --data "$WORK/g$g-$i" >"$WORK/g$g-$i.log" 2>&1 &
        PIDS+=($!)
    done
done
wait_until 30 "the meta group" -- "$BIN/raftfs" meta --meta "$META" --timeout 1000 query
for ((g = 1; g <= 2; g++)); do
    "$BIN/raftfs" meta --meta "$META" join $g "${GROUP_ADDRS[$g]}" >/dev/null
done
# Waits out the buckets moving to the groups (WRONG_GROUP retries).
timeout 60 "$BIN/raftfs" bench --meta "$META" --clients 8 --ops 2000 >/dev/null ||
    die "the cluster did not settle after the joins"

LOCAL=$WORK/local
PTSRC=$WORK/ptsrc
MNT_RAFTFS=$WORK/mnt-raftfs
MNT_PT=$WORK/mnt-pt
mkdir -p "$LOCAL" "$PTSRC" "$MNT_RAFTFS" "$MNT_PT"
"$BIN/raftfs-mount" --meta "$META" "$MNT_RAFTFS" -f >"$WORK/mount.log" 2>&1 &
PIDS+=($!)
MOUNTS+=("$MNT_RAFTFS")
"$PT" "$PTSRC" "$MNT_PT" -f >"$WORK/passthrough.log" 2>&1 &
PIDS+=($!)
MOUNTS+=("$MNT_PT")
wait_until 30 "the raftfs mount" -- mountpoint -q "$MNT_RAFTFS"
wait_until 30 "the passthrough mount" -- mountpoint -q "$MNT_PT"

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)," \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (with local changes)')"
echo "cluster: 3 meta servers, 2 groups of 3 shard servers; data in $WORK ($(findmnt -n -o FSTYPE -T "$WORK"))"
echo "fio: $(fio --version), psync, fallocate=none; metadata run with fio's filecreate/filestat/filedelete"

# drop_caches: so that a read job reads from where the data lives, not from the page cache.
drop_caches() {
    sync
    if [ -w /proc/sys/vm/drop_caches ]; then
        echo 3 >/proc/sys/vm/drop_caches
    fi
}

# die_sub MESSAGE: die from inside $(...), whose failure `set -- $(...)` would not notice:
# the main shell gets SIGTERM (its trap exits and cleans up).
die_sub() {
    echo "fs_vs_passthrough: $*" >&2
    kill -TERM $$
    exit 1
}

# run_fio DIR DIRECTION ARGS...: one fio run in DIR, bounded by --job-timeout; prints its
# bandwidth in KiB/s and its ops/s ("bw iops") for DIRECTION (read or write), taken from fio's
# terse output (v3: read bw/iops are fields 7/8, write bw/iops fields 48/49).
run_fio() {
    local dir=$1 direction=$2 out
    shift 2
    out=$(timeout "$JOB_TIMEOUT" fio --minimal --directory="$dir" --ioengine=psync \
        --fallocate=none --group_reporting "$@" 2>>"$WORK/fio.err") ||
        die_sub "fio $* in $dir failed or timed out (${JOB_TIMEOUT}s); see $WORK/fio.err"
    if [ "$direction" = read ]; then
        echo "$out" | tail -n1 | cut -d';' -f7,8 | tr ';' ' '
    else
        echo "$out" | tail -n1 | cut -d';' -f48,49 | tr ';' ' '
    fi
}

# md_loop DIR N: the metadata run again as a plain loop (python3: open(O_CREAT)+close, stat,
# unlink of N files), without fio's per-file bookkeeping; prints "create stat unlink" ops/s.
md_loop() {
    timeout "$JOB_TIMEOUT" python3 - "$1" "$2" <<'PY' || die_sub "metadata loop in $1 failed or timed out"
import os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
rates = []
for step in ("create", "stat", "unlink"):
    t = time.monotonic()
    for i in range(n):
        p = "%s/f%d" % (d, i)
        if step == "create":
            os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))
        elif step == "stat":
            os.stat(p)
        else:
            os.unlink(p)
    rates.append("%.0f" % (n / (time.monotonic() - t)))
print(" ".join(rates))
PY
}

declare -A R # R[job,target] = figure (MB/s or ops/s)
IFS=, read -r -a TARGETS <<<"$TARGET_LIST"
# want JOB: whether --only asks for JOB.
want() { [[ ,$ONLY, == *,$1,* ]]; }

# Wait (at most 180 s) until the used space of the filesystem under $1 has not changed for
# 15 s (longer than raftfs-mount's 10 s orphan grace): on raftfs the data of the files just deleted is collected in the background (orphan
# grace, then the shard servers' blob collector and a smaller snapshot), and the metadata run
# should measure creates, not that collection running beside them. Prints the seconds waited.
settle_space() {
    local last= same=0 waited=0 used
    while [ "$waited" -lt 180 ] && [ "$same" -lt 15 ]; do
        used=$(stat -f -c '%b-%f' "$1" 2>/dev/null | awk -F- '{ print $1 - $2 }')
        if [ "$used" = "$last" ]; then same=$((same + 1)); else same=0; last=$used; fi
        sleep 1
        waited=$((waited + 1))
    done
    echo "$waited"
}
declare -A DIRS=([raftfs]=$MNT_RAFTFS [passthrough]=$MNT_PT [local]=$LOCAL)
mbps() { awk -v k="$1" 'BEGIN { printf "%.1f", k * 1024 / 1e6 }'; }
ops() { awk -v o="$1" 'BEGIN { printf "%.0f", o }'; }

for t in "${TARGETS[@]}"; do
    d=${DIRS[$t]}
    echo "== $t ($d)"
    if want seqwrite || want seqread; then
        set -- $(run_fio "$d" write --name=seqwrite --filename=seq.dat --rw=write --bs=1M \
            --size="${SEQ_MIB}M" --end_fsync=1)
        R[seqwrite,$t]=$(mbps "$1"); echo "seq write 1 MiB: ${R[seqwrite,$t]} MB/s"
    fi
    if want seqread; then
        drop_caches
        set -- $(run_fio "$d" read --name=seqread --filename=seq.dat --rw=read --bs=1M \
            --size="${SEQ_MIB}M")
        R[seqread,$t]=$(mbps "$1"); echo "seq read 1 MiB: ${R[seqread,$t]} MB/s"
    fi
    rm -f "$d/seq.dat"
    if want rand; then
        # Lays out rand.dat (64 MiB, not measured), then reads it.
        drop_caches
        set -- $(run_fio "$d" read --name=randread --filename=rand.dat --rw=randread --bs=4k \
            --size=64M --iodepth=1 --numjobs=1 --time_based --runtime="$RAND_SECS")
        R[randread,$t]=$(ops "$2"); echo "rand read 4 KiB: ${R[randread,$t]} ops/s"
        set -- $(run_fio "$d" write --name=randwrite --filename=rand.dat --rw=randwrite --bs=4k \
            --size=64M --iodepth=1 --numjobs=1 --time_based --runtime="$RAND_SECS")
        R[randwrite,$t]=$(ops "$2"); echo "rand write 4 KiB: ${R[randwrite,$t]} ops/s"
        rm -f "$d/rand.dat"
    fi
    want meta || continue
    # Every target's metadata run starts on a quiet disk: raftfs collecting the files deleted
    # by earlier jobs (its own, or raftfs's before this target) and the writeback of the
    # sequential jobs slow creates on the local disk as well (0.01 -> 0.8 ms here).
    sync
    echo "space settled after $(settle_space "$MNT_RAFTFS") s (raftfs's deleted files collected)"
    mkdir -p "$d/meta"
    # fio counts each file of these engines as one read op.
    set -- $(run_fio "$d/meta" read --name=md --ioengine=filecreate --filesize=4k --bs=4k \
        --nrfiles="$FILES" --openfiles=1)
    R[create,$t]=$(ops "$2"); echo "create: ${R[create,$t]} ops/s"
    set -- $(run_fio "$d/meta" read --name=md --ioengine=filestat --filesize=4k --bs=4k \
        --nrfiles="$FILES" --openfiles=1)
    R[stat,$t]=$(ops "$2"); echo "stat: ${R[stat,$t]} ops/s"
    set -- $(run_fio "$d/meta" read --name=md --ioengine=filedelete --filesize=4k --bs=4k \
        --nrfiles="$FILES" --openfiles=1)
    R[unlink,$t]=$(ops "$2"); echo "unlink: ${R[unlink,$t]} ops/s"
    left=$(find "$d/meta" -type f | wc -l)
    [ "$left" = 0 ] || echo "warning: $left files left in $d/meta after filedelete"
    if command -v python3 >/dev/null; then
        set -- $(md_loop "$d/meta" "$FILES")
        R[lcreate,$t]=$1 R[lstat,$t]=$2 R[lunlink,$t]=$3
        echo "loop create/stat/unlink: $1 / $2 / $3 ops/s"
    fi
    rmdir "$d/meta" 2>/dev/null || true
done

echo
echo "== summary (seq in MB/s, others in ops/s; raftfs as % of passthrough)"
printf '| %-23s | %10s | %11s | %10s | %14s | %s |\n' job raftfs passthrough local \
    "raftfs/passthr" goal
echo '|---|---:|---:|---:|---:|---|'
for job in seqwrite seqread randread randwrite create stat unlink lcreate lstat lunlink; do
    [ -n "${R[$job,raftfs]:-}" ] || continue
    case $job in
        seqwrite) name="seq write 1 MiB, MB/s"; goal=">= 15%" ;;
        seqread) name="seq read 1 MiB, MB/s"; goal=">= 50%" ;;
        randread) name="rand read 4 KiB, ops/s"; goal="-" ;;
        randwrite) name="rand write 4 KiB, ops/s"; goal="-" ;;
        create) name="create, ops/s"; goal=">= 40%" ;;
        stat) name="stat, ops/s"; goal="-" ;;
        unlink) name="unlink, ops/s"; goal="-" ;;
        lcreate) name="create (loop), ops/s"; goal=">= 40%" ;;
        lstat) name="stat (loop), ops/s"; goal="-" ;;
        lunlink) name="unlink (loop), ops/s"; goal="-" ;;
    esac
    pct=$(awk -v a="${R[$job,raftfs]}" -v b="${R[$job,passthrough]:-0}" \
        'BEGIN { if (b > 0) printf "%.1f%%", 100 * a / b; else print "-" }')
    if [ "$goal" != "-" ]; then
        met=$(awk -v p="${pct%\%}" -v g="${goal//[^0-9]/}" 'BEGIN { print (p >= g) ? "met" : "not met" }')
        goal="$goal ($met)"
    fi
    printf '| %-23s | %10s | %11s | %10s | %14s | %s |\n' "$name" "${R[$job,raftfs]}" \
        "${R[$job,passthrough]:--}" "${R[$job,local]:--}" "$pct" "$goal"
done
