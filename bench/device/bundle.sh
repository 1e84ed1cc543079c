#!/bin/bash
# Build out/device-bundle.tar.xz: everything the lent 16-core device machine
# (no network, nothing of ours installed) needs to run the scaling variant of
# make bench: the stripped patched and base qemu-system-x86_64, the raw-KVM
# floor, the tiny ROM, kvmvapic.bin and the VGA BIOS, every shared library ldd lists, the
# dynamic loader, and run.sh.  Carry it with the device tool, then:
#   tar xJf out/device-bundle.tar.xz -C /tmp && /tmp/device-bundle/run.sh "$OUT"
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
out=$top/out/device-bundle
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/share"
strip -o "$out/bin/qemu-patched" "$top/qemu/build/qemu-system-x86_64"
strip -o "$out/bin/qemu-base" "$top/qemu-base/build/qemu-system-x86_64"
cp "$top/out/bench/kvm-floor" "$out/bin/"
cp "$top/out/guest/tiny/tiny.rom" "$out/"
cp "$top/qemu/pc-bios/kvmvapic.bin" "$top/qemu/pc-bios/vgabios-stdvga.bin" "$out/share/"
for b in "$out"/bin/*; do
    ldd "$b" | awk '/=> \// {print $3}'
done | sort -u | xargs -I{} cp -L {} "$out/lib/"
cp -L /lib64/ld-linux-x86-64.so.2 "$out/lib/"
cp "$top/bench/device/run.sh" "$out/"
(cd "$top/out" && tar -cJf device-bundle.tar.xz device-bundle)
ls -la "$top/out/device-bundle.tar.xz"
