#!/bin/bash
# Count BQL acquisitions per thread of a running QEMU, with uprobes.
#
#   bql-count.sh PID SECONDS
#
# Counts calls of bql_lock_impl() (every bql_lock()/BQL_LOCK_GUARD) plus the
# re-acquisitions inside qemu_cond_wait/timedwait on &bql, per thread, over
# SECONDS.  Needs root, perf and tracefs; works on any build with symbols
# (the base and the patched build alike), so it never relies on the series.
# Output, one line per thread with a non-zero count:
#   BQL thread="CPU 0/KVM" tid=123 lock=N condwait=M total=N+M
# Start QEMU with -name ...,debug-threads=on so vCPU threads are named.
set -euo pipefail
pid=$1 secs=$2
exe=$(readlink -f /proc/"$pid"/exe)
mountpoint -q /sys/kernel/tracing 2>/dev/null ||
    mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
# Probes are offsets into one build: name them after its build-id, so that a
# rebuilt binary never inherits probes placed for an older one.
bid=$(readelf -n "$exe" | sed -n 's/.*Build ID: \([0-9a-f]\{12\}\).*/\1/p')
[ -n "$bid" ] || { echo "bql-count: $exe has no build-id" >&2; exit 1; }
grp=bql$bid
# Probe bql_lock_impl() at its first call instruction, not at its entry:
# x86 uprobes emulate a call, but single-step many prologue instructions
# out of line (a "sub $8,%rsp" costs two traps).  Builds differ in their
# prologues, so an entry probe slowed one build's BQL ten times more than
# the other's, and with it the guest behaviour being counted.
dis=$(objdump -d --no-show-raw-insn --disassemble=bql_lock_impl "$exe")
start=$(sed -n 's/^0*\([0-9a-f]*\) <bql_lock_impl>:$/\1/p' <<<"$dis")
call=$(sed -n 's/^ *\([0-9a-f]*\):[[:space:]]*call.*/\1/p' <<<"$dis" | head -1)
at=$([ -n "$start" ] && [ -n "$call" ] && echo $((0x$call - 0x$start)))
[ -n "$at" ] || { echo "bql-count: no call in bql_lock_impl of $exe" >&2; exit 1; }
# Every acquisition must pass the probe: no branch may come before it.
if sed -n "1,/^ *$call:/p" <<<"$dis" | grep -qE '^ *[0-9a-f]+:[[:space:]]*(j[a-z]*|ret)[[:space:]]'; then
    echo "bql-count: bql_lock_impl of $exe branches before its first call" >&2; exit 1
fi
if ! perf probe -l 2>/dev/null | grep "^ *$grp:lock " >/dev/null; then
    # Event names are global: drop the probes of other builds first.
    perf probe -q -d 'bql*:*' >/dev/null 2>&1 || true
    perf probe -q -x "$exe" -a "$grp:lock=bql_lock_impl+$at" \
        -a "$grp:cwait=qemu_cond_wait_impl mutex=%si:u64" \
        -a "$grp:ctwait=qemu_cond_timedwait_impl mutex=%si:u64" >/dev/null 2>&1 || {
        echo "bql-count: cannot set uprobes on $exe (perf probe failed)" >&2; exit 1; }
fi
# &bql at run time: load address of the executable + its symbol offset.
off=$(nm "$exe" | awk '$3 == "bql" {print $1}' | head -1)
base=$(awk -v e="$exe" '$6 == e && $3 == "00000000" {split($1, a, "-"); print a[1]; exit}' /proc/"$pid"/maps)
bql=$(printf '0x%x' $((0x$base + 0x$off)))
out=$(mktemp)
perf stat -x '|' --per-thread -p "$pid" \
    -e "$grp:lock" \
    -e "$grp:cwait" --filter "mutex == $bql" \
    -e "$grp:ctwait" --filter "mutex == $bql" \
    -o "$out" -- sleep "$secs" >/dev/null 2>&1 ||
    { echo "bql-count: perf stat failed on pid $pid" >&2; rm -f "$out"; exit 1; }
# Every event must have been counted, or a zero would mean nothing.
for ev in lock cwait ctwait; do
    grep -q "$grp:$ev" "$out" ||
        { echo "bql-count: perf stat counted no $grp:$ev" >&2; rm -f "$out"; exit 1; }
done
awk -F'|' '
    NF >= 4 && $2 ~ /^[0-9]+$/ {
        name = $1; sub(/-[0-9]+$/, "", name); tid = $1; sub(/.*-/, "", tid)
        names[tid] = name
        if ($4 ~ /:lock$/) lock[tid] += $2; else cw[tid] += $2
    }
    END {
        for (t in names) if (lock[t] + cw[t] > 0)
            printf "BQL thread=\"%s\" tid=%s lock=%d condwait=%d total=%d\n",
                   names[t], t, lock[t], cw[t], lock[t] + cw[t]
    }' "$out" | sort
rm -f "$out"
