#!/bin/bash
# Boot the Linux test guest (guest/linux, built by guest/linux/build.sh) in a
# QEMU from its build tree, run one scenario, and report its result lines.
#
# Usage:
#   run-linux-guest.sh --qemu PATH [options] SCENARIO [key=value ...] [-- extra qemu args]
# Options:
#   --qemu PATH       qemu-system-x86_64 in a build tree (required; it finds its
#                     firmware in the build dir's qemu-bundle)
#   --accel tcg|kvm   default tcg (-accel tcg,thread=multi); kvm needs /dev/kvm (else exit 77)
#   --smp N           vCPUs (default 1); smoke gets expect_cpus=N unless given
#   --mem SIZE        guest memory (default 1G)
#   --machine TYPE    default pc
#   --disk FILE       raw disk image for virtio-blk (default: a fresh sparse
#                     file of --disk-size in a temp dir, deleted afterwards)
#   --disk-size SIZE  default 256M
#   --format FMT      -drive format= of --disk (default raw; qcow2 for savevm)
#   --drive STR       the whole -drive option instead (id=d0), e.g.
#                     "driver=null-co,size=256M,read-zeroes=on,if=none,id=d0"
#   --cache MODE      -drive cache= (default none, i.e. O_DIRECT on the host)
#   --aio MODE        -drive aio= (default threads)
#   --blk-opts STR    appended to the -device virtio-blk-pci,drive=d0 string,
#                     e.g. ",iothread=io0" (with "-- -object iothread,id=io0")
#   --timeout S       kill QEMU after S seconds (default 300): FAIL reason=timeout
#   --append STR      extra kernel command-line words (e.g. "clocksource=tsc tsc=reliable")
#   --log FILE        console log (default: in the temp dir, kept)
#   --images DIR      vmlinuz + initramfs.cpio.gz (default out/guest/linux)
#   -v, --verbose     print the whole console log, not only the result lines
# SCENARIO: smoke | fio | hammer; key=value pairs go on the kernel command line
# (no spaces; lists comma-separated), see guest/linux/README.md.
#
# Prints the guest's INFO/RESULT/HIST/ERROR/SCENARIO lines, then one line
#   RUN scenario=S result=PASS|FAIL reason=.. wall_s=.. qemu_rc=.. log=FILE
# Exit: 0 only if the guest printed "SCENARIO <name> PASS" and QEMU exited by
# itself with status 0; 1 otherwise; 2 usage error; 77 KVM asked but missing.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
qemu="" accel=tcg smp=1 mem=1G machine=pc disk="" disk_size=256M cache=none aio=threads fmt=raw drive=""
blkopts="" kappend="" timeout_s=300 log="" images=$top/out/guest/linux verbose=0

usage() { sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
die() { echo "run-linux-guest: $*" >&2; exit 2; }

scen=""
params=()
while [ $# -gt 0 ]; do
    case $1 in
    --qemu)      qemu=$2; shift 2 ;;
    --accel)     accel=$2; shift 2 ;;
    --smp)       smp=$2; shift 2 ;;
    --mem)       mem=$2; shift 2 ;;
    --machine)   machine=$2; shift 2 ;;
    --disk)      disk=$2; shift 2 ;;
    --disk-size) disk_size=$2; shift 2 ;;
    --format)    fmt=$2; shift 2 ;;
    --drive)     drive=$2; shift 2 ;;
    --cache)     cache=$2; shift 2 ;;
    --aio)       aio=$2; shift 2 ;;
    --blk-opts)  blkopts=$2; shift 2 ;;
    --timeout)   timeout_s=$2; shift 2 ;;
    --append)    kappend=$2; shift 2 ;;
    --log)       log=$2; shift 2 ;;
    --images)    images=$2; shift 2 ;;
    -v|--verbose) verbose=1; shift ;;
    -h|--help)   usage ;;
    --)          shift; break ;;
    -*)          die "unknown option $1 (see --help)" ;;
    *=*)         [ -n "$scen" ] || die "key=value before SCENARIO: $1"
                 case $1 in *[[:space:]]*) die "no spaces allowed in '$1'" ;; esac
                 params+=("$1"); shift ;;
    *)           [ -z "$scen" ] || die "two scenarios: $scen and $1"
                 scen=$1; shift ;;
    esac
done
extra=("$@")                       # after --: passed to QEMU as is

[ -n "$qemu" ] || die "--qemu PATH is required"
[ -n "$scen" ] || die "no SCENARIO given (smoke|fio|hammer)"
case $scen in smoke|fio|hammer) ;; *) die "unknown scenario $scen" ;; esac
qemu=$(readlink -f "$qemu")        # absolute: QEMU locates its qemu-bundle from it
[ -x "$qemu" ] || die "$qemu is not executable"
for f in vmlinuz initramfs.cpio.gz; do
    [ -f "$images/$f" ] || die "$images/$f missing: run guest/linux/build.sh"
done

case $accel in
tcg) accel_arg=tcg,thread=multi ;;
kvm)
    if [ ! -c /dev/kvm ] || [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
        echo "run-linux-guest: --accel kvm asked but /dev/kvm is missing or unusable: skipping (77)" >&2
        exit 77
    fi
    accel_arg=kvm ;;
*) die "--accel must be tcg or kvm" ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/linux-guest.XXXXXX")
made_disk=""
cleanup() {
    [ -n "$made_disk" ] && rm -f "$made_disk"
    [ -f "$tmp/qemu.pid" ] && rm -f "$tmp/qemu.pid"
    return 0
}
trap cleanup EXIT
[ -n "$log" ] || log=$tmp/console.log
if [ -z "$drive" ]; then
    if [ -z "$disk" ]; then
        disk=$tmp/disk.raw
        truncate -s "$disk_size" "$disk" || die "cannot create $disk"
        made_disk=$disk
    fi
    disk=$(readlink -f "$disk")
    [ -f "$disk" ] || [ -b "$disk" ] || die "disk $disk does not exist"
    # cache=none opens the image with O_DIRECT: check that its filesystem allows it
    if [ "$cache" = none ] && ! dd if="$disk" of=/dev/null bs=4096 count=1 iflag=direct 2>/dev/null; then
        die "$disk does not support O_DIRECT (tmpfs?): use another directory or --cache writeback"
    fi
    drive="file=$disk,if=none,id=d0,format=$fmt,cache=$cache,aio=$aio"
fi

# smoke checks the vCPU count: tell it what to expect
if [ "$scen" = smoke ] && ! printf '%s\n' "${params[@]}" | grep -q '^expect_cpus='; then
    params+=("expect_cpus=$smp")
fi
append="console=ttyS0 quiet panic=-1${kappend:+ $kappend} scenario=$scen ${params[*]}"

cmd=("$qemu" -M "$machine" -accel "$accel_arg" -smp "$smp" -m "$mem"
     -nographic -no-reboot -nic none
     -kernel "$images/vmlinuz" -initrd "$images/initramfs.cpio.gz"
     -append "$append"
     -drive "$drive"
     -device "virtio-blk-pci,drive=d0$blkopts"
     -pidfile "$tmp/qemu.pid"
     "${extra[@]}")

echo "run-linux-guest: log $log"
echo "run-linux-guest: $(printf '%q ' timeout "$timeout_s" "${cmd[@]}")"
# The console has CRLF line ends and firmware escape sequences (ESC c, ESC [..):
# drop them; without -v keep only the machine-readable lines.
CLEAN='s/\r//g; s/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1b[A-Za-z]//g'
OURS='^(INFO|RESULT|HIST|ERROR|SCENARIO) '
: > "$log"                          # exists before tail follows it
t0=$(date +%s.%N)
# QEMU exits when the guest powers off (or panics: panic=-1 + -no-reboot).
timeout --kill-after=10 "$timeout_s" "${cmd[@]}" < /dev/null > "$log" 2>&1 &
tpid=$!
# Stream the lines while the guest runs (callers time them), until QEMU is gone;
# in the background too, so that the shell's wait can be interrupted.
if [ $verbose = 1 ]; then
    tail -s 0.1 --pid=$tpid -n +1 -f "$log" | sed -u "$CLEAN" &
else
    tail -s 0.1 --pid=$tpid -n +1 -f "$log" | sed -u "$CLEAN" | grep -aE --line-buffered "$OURS" &
fi
spid=$!
# Interrupted: stop QEMU too (timeout passes SIGTERM on to it).
trap 'kill -TERM $tpid 2>/dev/null; wait $tpid; wait $spid; exit 130' INT TERM HUP
wait $tpid
qrc=$?
wait $spid
trap - INT TERM HUP
t1=$(date +%s.%N)
wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
timed_out=0
case $qrc in 124|137) timed_out=1 ;; esac
# A QEMU that survived timeout's signals (it should not): kill it by its pid.
if [ -s "$tmp/qemu.pid" ]; then
    pid=$(cat "$tmp/qemu.pid")
    if kill -0 "$pid" 2>/dev/null && grep -q qemu "/proc/$pid/cmdline" 2>/dev/null; then
        kill -9 "$pid" 2>/dev/null
        timed_out=1
    fi
fi

clean() { sed "$CLEAN" "$log"; }
lines=$(clean | grep -aE "$OURS")
nscen=$(echo "$lines" | grep -c '^SCENARIO ')
result=FAIL reason=""
if [ "$nscen" -gt 1 ]; then
    reason=several-scenario-lines
elif echo "$lines" | grep -qx "SCENARIO $scen PASS"; then
    if [ $timed_out = 1 ]; then
        reason=timeout-after-pass       # the guest passed but QEMU did not exit
    elif [ $qrc != 0 ]; then
        reason=qemu-exit-$qrc
    else
        result=PASS
    fi
elif [ $timed_out = 1 ]; then
    reason=timeout
    echo "SCENARIO $scen FAIL reason=timeout"
elif [ "$nscen" = 1 ]; then
    reason=$(echo "$lines" | sed -n 's/^SCENARIO .* FAIL reason=//p')
    reason=${reason:-guest-fail}
else
    reason=no-scenario-line
    echo "SCENARIO $scen FAIL reason=no-scenario-line"
fi
if [ $result != PASS ] && [ $verbose = 0 ]; then
    echo "run-linux-guest: last lines of $log:"
    clean | tail -25 | sed 's/^/  | /'
fi
echo "RUN scenario=$scen result=$result${reason:+ reason=$reason} wall_s=$wall qemu_rc=$qrc accel=$accel smp=$smp log=$log"
[ $result = PASS ]
