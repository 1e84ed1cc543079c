#!/bin/bash
# Runs on the device machine, from the unpacked bundle: the tiny guest's
# hammer on port 0x80, the PM timer and the HPET, 1 to 16 vCPUs, KVM and
# multi-threaded TCG, base and patched alternating (floor too under KVM),
# REPS repetitions.  One JSON object per run in $1/device.jsonl.
set -uo pipefail
d=$(cd "$(dirname "$0")" && pwd)
out=${1:?output directory}
reps=${REPS:-5} secs=${SECS:-1}
mkdir -p "$out"
res=$out/device.jsonl
: > "$res"
ld="$d/lib/ld-linux-x86-64.so.2 --library-path $d/lib"
{ nproc; uname -r; ls -l /dev/kvm; } > "$out/host.txt" 2>&1

run_qemu() {  # BUILD ACCEL SMP ARGS
    local log
    log=$(mktemp)
    timeout 120 $ld "$d/bin/qemu-$1" -L "$d/share" -M pc -accel "$2" -smp "$3" \
        -m 256M -display none -no-reboot -nodefaults -bios "$d/tiny.rom" \
        -debugcon "file:$log" -device isa-debug-exit,iobase=0xf4,iosize=4 \
        -fw_cfg "name=opt/tiny/args,string=$4" >/dev/null 2>&1
    sed -n 's/^TOTAL .* rate=\([0-9]*\).*/\1/p' "$log"
    rm -f "$log"
}
run_floor() {  # SMP ARGS
    # shellcheck disable=SC2086
    timeout 120 $ld "$d/bin/kvm-floor" -smp "$1" -rom "$d/tiny.rom" $2 2>/dev/null |
        sed -n 's/^TOTAL .* rate=\([0-9]*\).*/\1/p'
}

for accel in kvm tcg; do
    [ $accel = kvm ] && { [ -w /dev/kvm ] || continue; }
    a=$accel
    [ $accel = tcg ] && a=tcg,thread=multi
    for target in port80 pmtimer hpet; do
        for smp in ${SMPS:-1 2 4 8 16}; do
            args="scenario=hammer target=$target secs=$secs"
            for rep in $(seq "$reps"); do
                order="base patched"
                [ $((rep % 2)) = 0 ] && order="patched base"
                [ $accel = kvm ] && order="$order floor"
                for b in $order; do
                    if [ $b = floor ]; then
                        r=$(run_floor "$smp" "$args")
                    else
                        r=$(run_qemu $b "$a" "$smp" "$args")
                    fi
                    printf '{"scenario":"hammer-%s","accel":"%s","smp":%d,"build":"%s","rep":%d,"rate":%s}\n' \
                        "$target" "$accel" "$smp" "$b" "$rep" "${r:-null}" >> "$res"
                done
            done
        done
    done
done
wc -l "$res"
