#!/bin/bash
# Instructions per guest access on a TCG hammer, counted with callgrind,
# so that small CPU-cost differences between builds show where timing
# cannot: two runs (N1 and N2 accesses), (Ir2 - Ir1) / (N2 - N1).
#
#   bench/tcg-instructions.sh QEMU [TARGET] [N1] [N2] [-- QEMU-ARGS...]
#
# TARGET is a tiny-guest hammer target (default port80), with its options
# ("mmio:0xa0000 op=read32"); QEMU-ARGS add the device it needs
# (-device VGA).  Needs valgrind.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
qemu=$1 target=${2:-port80} n1=${3:-20000} n2=${4:-220000}
extra=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do shift; done
[ $# -gt 0 ] && shift && extra=("$@")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ir() {
    valgrind --tool=callgrind --smc-check=all-non-file \
        --callgrind-out-file="$tmp/cg.$1" \
        "$qemu" -M pc -accel tcg,thread=multi -smp 1 -m 128M -display none \
        -no-reboot -nodefaults -bios "$top/out/guest/tiny/tiny.rom" \
        -debugcon "file:$tmp/con.$1" -device isa-debug-exit,iobase=0xf4,iosize=4 "${extra[@]}" \
        -fw_cfg "name=opt/tiny/args,string=scenario=hammer target=$target count=$1" \
        >"$tmp/log.$1" 2>&1 || true
    if ! grep -q "TINY PASS" "$tmp/con.$1"; then
        echo "guest failed ($1 accesses):" >&2
        tail -n 5 "$tmp/log.$1" "$tmp/con.$1" >&2
        exit 1
    fi
    sed -n 's/^summary: //p' "$tmp/cg.$1"
}
# One assignment each: in "a=$(..) b=$(..)" only the last one's status counts.
a=$(ir "$n1")
b=$(ir "$n2")
[[ $a =~ ^[0-9]+$ && $b =~ ^[0-9]+$ ]] || { echo "no callgrind summary" >&2; exit 1; }
echo "$target: $(( (b - a) / (n2 - n1) )) instructions per access ($qemu)"
