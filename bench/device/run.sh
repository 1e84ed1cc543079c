#!/bin/bash
# Runs on the device machine, from the unpacked bundle (bundle.sh).  One
# JSON object per run in $1/device.jsonl, written as it goes, so that a
# run cut short still returns what it measured.  In order of priority:
#  1. multi-threaded TCG, the tiny guest's hammer on upstream's regions
#     (port 0x80 under the BQL, lock-free PM timer and HPET) and on the
#     converted devices (RTC, pc-testdev MMIO, VGA window), SMPS1 vCPUs;
#  2. virtio-blk, 2 vCPUs, depth 32, MSI-X completion, a raw file in
#     /dev/shm: main loop and iothread= on base, main loop and
#     x-dedicated-iothread on the series;
#  3. the same hammers at SMPS2 vCPUs;
#  4. under KVM, where /dev/kvm exists, port 0x80, PM timer and RTC, base,
#     patched and the raw-KVM floor.
# kvm-vblk (not run by default): the tiny guest's virtio-blk under kvm_pvm
# is bound by the guest itself (about 1.5k requests/s on every
# configuration and both builds, polling or MSI-X), so it compares nothing.
# Base and patched alternate in every repetition.  New runs stop starting
# once BUDGET seconds (default 400) have passed.  PHASES picks phases by
# name (default tcg-hammer1 tcg-vblk tcg-hammer2 kvm-hammer; kvm-vblk); REPS, SECS,
# SMPS1 and SMPS2 size them.
set -uo pipefail
d=$(cd "$(dirname "$0")" && pwd)
out=${1:?output directory}
reps=${REPS:-5} secs=${SECS:-1} budget=${BUDGET:-400}
smps1=${SMPS1:-1 16} smps2=${SMPS2:-4}
mkdir -p "$out"
res=$out/device.jsonl
: > "$res"
ld="$d/lib/ld-linux-x86-64.so.2 --library-path $d/lib"
{ nproc; uname -r; ls -l /dev/kvm; grep -m1 'model name' /proc/cpuinfo; } > "$out/host.txt" 2>&1
start=$SECONDS

in_budget() {
    [ $((SECONDS - start)) -lt "$budget" ] && return 0
    echo "budget of ${budget}s spent, stopping" >&2
    return 1
}

run_qemu() {  # BUILD ACCEL SMP GUEST-ARGS [QEMU-ARGS...]
    local b=$1 a=$2 smp=$3 gargs=$4 log
    shift 4
    log=$(mktemp)
    timeout 60 $ld "$d/bin/qemu-$b" -L "$d/share" -M pc -accel "$a" -smp "$smp" \
        -m 256M -display none -no-reboot -nodefaults -bios "$d/tiny.rom" \
        -debugcon "file:$log" -device isa-debug-exit,iobase=0xf4,iosize=4 \
        -fw_cfg "name=opt/tiny/args,string=$gargs" "$@" >/dev/null 2>&1
    grep -q '^TINY FAIL' "$log" && grep '^TINY FAIL' "$log" >&2
    sed -n 's/^TOTAL .* rate=\([0-9]*\).*/\1/p' "$log"
    rm -f "$log"
}
run_floor() {  # SMP GUEST-ARGS
    # shellcheck disable=SC2086
    timeout 60 $ld "$d/bin/kvm-floor" -smp "$1" -rom "$d/tiny.rom" $2 2>/dev/null |
        sed -n 's/^TOTAL .* rate=\([0-9]*\).*/\1/p'
}
record() {  # SCENARIO ACCEL SMP BUILD REP RATE
    printf '{"scenario":"%s","accel":"%s","smp":%d,"build":"%s","rep":%d,"rate":%s}\n' \
        "$1" "$2" "$3" "$4" "$5" "${6:-null}" >> "$res"
    echo "$1 $2 smp=$3 $4 rep=$5 rate=${6:-null}"
}

# name|guest target|extra QEMU arguments
targets="port80|port80|
pmtimer|pmtimer|
hpet|hpet|
rtc|rtc|
testdev-mmio|mmio:0xff000000 op=read32|-device pc-testdev
vga-lowmem|mmio:0xa0000 op=read32|-device VGA"

hammer() {  # ACCEL SMPS TARGET-NAMES
    local accel=$1 a=$1 smp name target extra rep b order
    [ "$accel" = tcg ] && a=tcg,thread=multi
    for smp in $2; do
        while IFS='|' read -r name target extra; do
            case " $3 " in *" $name "*) ;; *) continue ;; esac
            for rep in $(seq "$reps"); do
                in_budget || return 1
                order="base patched"
                [ $((rep % 2)) = 0 ] && order="patched base"
                [ "$accel" = kvm ] && [ -z "$extra" ] && order="$order floor"
                for b in $order; do
                    if [ $b = floor ]; then
                        r=$(run_floor "$smp" "scenario=hammer target=$target secs=$secs")
                    else
                        # shellcheck disable=SC2086
                        r=$(run_qemu $b "$a" "$smp" \
                            "scenario=hammer target=$target secs=$secs" $extra)
                    fi
                    record "hammer-$name" "$accel" "$smp" $b "$rep" "$r"
                done
            done
        done <<< "$targets"
    done
}

vblk() {  # ACCEL IRQ
    local accel=$1 a=$1 irq=$2 rep c b img=/dev/shm/device-vblk.raw
    [ "$accel" = tcg ] && a=tcg,thread=multi
    local dev=virtio-blk-pci,drive=d0,num-queues=2
    for rep in $(seq "$reps"); do
        in_budget || return 1
        order="base-mainloop base-iothread patched-mainloop patched-dedicated"
        [ $((rep % 2)) = 0 ] && order="patched-dedicated patched-mainloop base-iothread base-mainloop"
        for c in $order; do
            rm -f $img && truncate -s 64M $img
            set -- -drive "file=$img,format=raw,if=none,id=d0"
            case $c in
            *-mainloop) set -- "$@" -device "$dev" ;;
            *-iothread) set -- "$@" -object iothread,id=io0 -device "$dev,iothread=io0" ;;
            *-dedicated) set -- "$@" -device "$dev,x-dedicated-iothread=on" ;;
            esac
            b=${c%%-*}
            r=$(run_qemu $b "$a" 2 "scenario=vblk irq=$irq depth=32 secs=2" "$@")
            record "vblk-$irq-qd32" "$accel" 2 "$c" "$rep" "$r"
        done
    done
    rm -f $img
}

all="port80 pmtimer hpet rtc testdev-mmio vga-lowmem"
for phase in ${PHASES:-tcg-hammer1 tcg-vblk tcg-hammer2 kvm-hammer}; do
    case $phase in
    kvm-*) [ -w /dev/kvm ] || { echo "no /dev/kvm: $phase skipped" >&2; continue; } ;;
    esac
    case $phase in
    tcg-hammer1) hammer tcg "$smps1" "$all" ;;
    tcg-hammer2) hammer tcg "$smps2" "$all" ;;
    tcg-vblk) vblk tcg msix ;;
    kvm-hammer) hammer kvm "1 16" "port80 pmtimer rtc" ;;
    kvm-vblk) vblk kvm msix ;;
    esac || break
done
echo "done after $((SECONDS - start))s"
wc -l "$res"
