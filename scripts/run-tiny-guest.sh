#!/bin/bash
# Run one scenario of the tiny SMP firmware (guest/tiny) on any QEMU binary.
#
#   run-tiny-guest.sh --qemu PATH [--accel kvm|tcg] [--smp N] [--machine M]
#                     [--timeout S] [--log FILE] SCENARIO [key=value ...]
#                     [-- extra QEMU arguments]
#
# SCENARIO is hammer, halt, ipi or vblk; key=value pairs go to the firmware
# (guest/tiny/tiny.c documents them, guest/tiny/vblk.c those of vblk, which
# needs a virtio-blk-pci device among the extra QEMU arguments).  The guest's RESULT/HIST/TOTAL/TINY
# lines are printed.  Exit: 0 PASS, 1 FAIL or hang, 77 KVM asked for but
# /dev/kvm unusable.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
qemu="" accel=kvm smp=1 machine=pc timeout=120 log=""
rom=${TINY_ROM:-$top/out/guest/tiny/tiny.rom}
while [ $# -gt 0 ]; do
    case $1 in
    --qemu) qemu=$2; shift 2 ;;
    --accel) accel=$2; shift 2 ;;
    --smp) smp=$2; shift 2 ;;
    --machine) machine=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --log) log=$2; shift 2 ;;
    --rom) rom=$2; shift 2 ;;
    -*) echo "run-tiny-guest: unknown option $1" >&2; exit 2 ;;
    *) break ;;
    esac
done
scenario=${1:?scenario (hammer, halt, ipi)}; shift
gargs="scenario=$scenario"
while [ $# -gt 0 ] && [ "$1" != "--" ]; do gargs="$gargs $1"; shift; done
[ "${1:-}" = "--" ] && shift
[ -x "$qemu" ] || { echo "run-tiny-guest: --qemu $qemu: not executable" >&2; exit 2; }
[ -f "$rom" ] || { echo "run-tiny-guest: $rom missing: make guests" >&2; exit 2; }

case $accel in
kvm) if ! [ -r /dev/kvm ] || ! [ -c /dev/kvm ]; then
         echo "SKIP: /dev/kvm is missing or unusable, KVM scenario not run"
         exit 77
     fi
     accel_arg=kvm ;;
tcg) accel_arg=tcg,thread=multi ;;
*) accel_arg=$accel ;;
esac

[ -n "$log" ] || log=$(mktemp /tmp/tiny-guest.XXXXXX.log)
timeout -k 5 "$timeout" "$qemu" -M "$machine" -accel "$accel_arg" -smp "$smp" -m 128M \
    -display none -no-reboot -nodefaults \
    -bios "$rom" -debugcon "file:$log" \
    -device isa-debug-exit,iobase=0xf4,iosize=4 \
    -fw_cfg "name=opt/tiny/args,string=$gargs" "$@" \
    2> >(grep -v "CPUID\[eax=01h\].ECX.pni" >&2)
rc=$?
grep -E '^(TINY|RESULT|HIST|TOTAL)' "$log"
case $rc in
33) exit 0 ;;
35) exit 1 ;;
124|137) echo "TINY FAIL reason=timeout-${timeout}s log=$log"; exit 1 ;;
*) echo "TINY FAIL reason=qemu-exit-$rc log=$log"; exit 1 ;;
esac
