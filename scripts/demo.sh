#!/bin/bash
# make demo: the tiny guest on 2 vCPUs under -accel kvm (TCG where /dev/kvm is
# missing), on the patched build with the series' device flags and on the
# base build; per-vCPU rates and BQL acquisitions by vCPU threads for both.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
. scripts/series-flags.sh
Q=$top/qemu/build/qemu-system-x86_64
QB=$top/qemu-base/build/qemu-system-x86_64
smp=${SMP:-2} secs=${SECS:-3}
accel=kvm
if ! [ -c /dev/kvm ] || ! [ -w /dev/kvm ]; then
    accel=tcg
    echo "demo: /dev/kvm is missing: running under TCG (multi-threaded), not KVM"
fi
counting=1
if [ "$(id -u)" != 0 ] || ! command -v perf >/dev/null; then
    counting=0
    echo "demo: BQL counts need root and perf (uprobes): not counted"
fi

run() {  # run BUILD TARGET COUNT -> RESULT lines; BQL lines if COUNT=1
    local build=$1 target=$2 count=$3 bin=$Q flags=("${SERIES_FLAGS[@]}")
    [ "$build" = base ] && bin=$QB flags=()
    local pidf
    pidf=$(mktemp -u /tmp/demo.XXXXXX.pid)
    scripts/run-tiny-guest.sh --qemu "$bin" --accel $accel --smp "$smp" \
        hammer target="$target" secs="$secs" -- \
        -name "demo,debug-threads=on" -pidfile "$pidf" "${flags[@]}" &
    local guest=$!
    if [ "$count" = 1 ]; then
        for _ in $(seq 50); do [ -s "$pidf" ] && break; sleep 0.1; done
        sleep 0.5    # past firmware start-up, into the hammer loop
        [ -s "$pidf" ] && scripts/bql-count.sh "$(cat "$pidf")" 1
    fi
    wait $guest
    rm -f "$pidf"
}

printf '\n%-8s %-8s %-5s %12s %14s\n' build target vcpu "accesses/s" "BQL/s (vCPU)"
for target in port80 pmtimer hpet rtc; do
    for build in base patched; do
        out=$(run $build $target 0 2>/dev/null)
        [ $counting = 1 ] && out="$out
$(run $build $target 1 2>/dev/null | grep '^BQL')"
        for v in $(seq 0 $((smp - 1))); do
            rate=$(echo "$out" | sed -n "s/^RESULT .* vcpu=$v .* rate=\([0-9]*\).*/\1/p")
            bql=$(echo "$out" | sed -n "s/^BQL thread=\"CPU $v\/[A-Z]*\" .* total=\([0-9]*\)/\1/p")
            printf '%-8s %-8s %-5s %12s %14s\n' $build $target $v "${rate:-FAIL}" "${bql:-0}"
        done
    done
done
echo
echo "accel=$accel smp=$smp; patched flags: ${SERIES_FLAGS[*]:-(none yet)}"
echo "BQL/s: bql_lock() calls plus condvar re-acquisitions of the BQL by each vCPU"
echo "thread over 1 s of a second run (scripts/bql-count.sh); rates come from a"
echo "run without the uprobes."
