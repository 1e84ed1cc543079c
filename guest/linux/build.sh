#!/bin/bash
# Build the Linux test guest from Debian packages only:
#   out/guest/linux/vmlinuz            Debian's cloud kernel (linux-image-*-cloud-amd64)
#   out/guest/linux/initramfs.cpio.gz  busybox-static + virtio modules + static fio
#                                      + our static programs (guest/linux/src/*.c) + /init
#
# Idempotent: every step is skipped when its outputs are up to date.
#   - fio 3.33-3 is built once, statically, from Debian's source package, and
#     cached under out/guest/linux/fio-build/ (downloaded source under .cache/fio/);
#   - our programs are rebuilt when their .c is newer than the binary;
#   - the initramfs is repacked only when a checksum of all its inputs changes.
# Needs root only when a package or the deb-src entry is missing.
#
# Usage: guest/linux/build.sh [-f]    (-f: force repacking the initramfs)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)      # guest/linux
top=$(cd "$here/../.." && pwd)           # repository root
out=$top/out/guest/linux
cache=$top/.cache/fio
FIO_VERSION=3.33-3                       # pinned: bookworm's fio
FIO_UPSTREAM=${FIO_VERSION%-*}
# Only what the guest needs: libaio and io_uring engines, no optional libraries.
FIO_CONFIGURE=(--build-static --disable-native --disable-numa --disable-rdma
               --disable-gfapi --disable-rados --disable-rbd --disable-http
               --disable-libnfs --disable-pmem --disable-xnvme --disable-libzbc
               --disable-tcmalloc --disable-dfs --disable-lex)
# virtio modules, in dependency order (read from each module's depends=);
# a module built into the kernel has no .ko and is skipped.
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk"
force=0
[ "${1:-}" = "-f" ] && force=1

log() { echo "guest-linux: $*"; }
die() { echo "guest-linux: error: $*" >&2; exit 1; }

# apt-get install the given packages if any is missing.
need_pkgs() {
    local p missing=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
            missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    [ "$(id -u)" = 0 ] || die "missing packages:$missing (run as root)"
    log "installing$missing"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
}

mkdir -p "$out"
need_pkgs busybox-static gcc libc6-dev libaio-dev liburing-dev zlib1g-dev dpkg-dev make xz-utils

# ---------------------------------------------------------------- kernel
need_pkgs linux-image-cloud-amd64
# newest installed cloud kernel that has its modules
kver=""
for f in $(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V); do
    v=${f#/boot/vmlinuz-}
    [ -d "/lib/modules/$v" ] && kver=$v
done
[ -n "$kver" ] || die "no /boot/vmlinuz-*-cloud-amd64 with /lib/modules"
if ! cmp -s "/boot/vmlinuz-$kver" "$out/vmlinuz"; then
    log "kernel $kver -> $out/vmlinuz"
    cp "/boot/vmlinuz-$kver" "$out/vmlinuz.tmp" && mv "$out/vmlinuz.tmp" "$out/vmlinuz"
else
    log "kernel $kver up to date"
fi
echo "$kver" > "$out/kernel-version"

# ---------------------------------------------------------------- fio
fiob=$out/fio-build
fio_stamp="fio=$FIO_VERSION ${FIO_CONFIGURE[*]}"
if [ -x "$fiob/fio" ] && [ "$(cat "$fiob/stamp" 2>/dev/null)" = "$fio_stamp" ]; then
    log "fio $FIO_VERSION up to date"
else
    # 1. the Debian source package, downloaded once into .cache/fio
    mkdir -p "$cache"
    dsc=$cache/fio_$FIO_VERSION.dsc
    if [ ! -f "$dsc" ]; then
        if ! (cd "$cache" && apt-get source --download-only "fio=$FIO_VERSION"); then
            # No deb-src entry for bookworm: add one, refresh only that list, retry.
            [ "$(id -u)" = 0 ] || die "apt-get source failed; need root to add a deb-src entry"
            src=/etc/apt/sources.list.d/bookworm-src.sources
            log "adding $src"
            cat > "$src" <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
            apt-get update -q -o Dir::Etc::sourcelist="$src" \
                -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0
            (cd "$cache" && apt-get source --download-only "fio=$FIO_VERSION")
        fi
    fi
    [ -f "$dsc" ] || die "$dsc not downloaded"
    # 2. unpack (with Debian's patches applied) into a fresh build tree
    rm -rf "$fiob"
    mkdir -p "$fiob"
    # (dpkg-source checks the files against the .dsc checksums; apt-get
    #  checked the .dsc against the signed Sources index)
    dpkg-source -x "$dsc" "$fiob/src" >/dev/null
    # 3. configure + build static (about a minute on 2 cores)
    log "building fio $FIO_VERSION (static)"
    (cd "$fiob/src" && ./configure "${FIO_CONFIGURE[@]}" > ../configure.log 2>&1) || {
        tail -30 "$fiob/configure.log" >&2; die "fio configure failed"; }
    (cd "$fiob/src" && make -j"$(nproc)" fio > ../make.log 2>&1) || {
        tail -30 "$fiob/make.log" >&2; die "fio build failed"; }
    cp "$fiob/src/fio" "$fiob/fio"
    strip "$fiob/fio"
    # it must be static and have both engines we use
    dyn=$(LC_ALL=C readelf -d "$fiob/fio" 2>&1 || true)
    echo "$dyn" | grep -q NEEDED && die "fio is not static"
    for e in libaio io_uring; do
        "$fiob/fio" --enghelp 2>/dev/null | grep -qw "$e" || die "fio lacks engine $e"
    done
    echo "$fio_stamp" > "$fiob/stamp"
fi

# ---------------------------------------------------------------- our programs
mkdir -p "$out/bin"
for c in "$here"/src/*.c; do
    [ -e "$c" ] || continue
    b=$out/bin/$(basename "$c" .c)
    if [ ! -x "$b" ] || [ "$c" -nt "$b" ]; then
        log "gcc -static $(basename "$c")"
        gcc -static -O2 -Wall -Wextra -pthread -o "$b" "$c"
        strip "$b"
    fi
done

# ---------------------------------------------------------------- initramfs
# Checksum of everything that goes in (plus this script); repack only on change.
moddir=/lib/modules/$kver
modfiles=()
for m in $MODULES; do
    f=$(find "$moddir" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" \
             -o -name "$m.ko.gz" | head -1)
    [ -n "$f" ] && modfiles+=("$f")
done
inputs_sum=$( { echo "$kver $MODULES"
                sha256sum /bin/busybox "$here/init" "$fiob/fio" "$0" "$out"/bin/* \
                          "${modfiles[@]}" | sed "s|$top/||"; } | sha256sum | cut -d' ' -f1)
if [ $force = 0 ] && [ -f "$out/initramfs.cpio.gz" ] &&
   [ "$(cat "$out/initramfs.stamp" 2>/dev/null)" = "$inputs_sum" ]; then
    log "initramfs up to date ($out/initramfs.cpio.gz)"
    exit 0
fi

root=$out/rootfs
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,run,etc,lib/modules,mnt}
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"           # the rest is linked by /init (busybox --install)
install -m 0755 "$here/init" "$root/init"
cp "$fiob/fio" "$root/bin/fio"
cp "$out"/bin/* "$root/bin/"
# Modules: plain .ko (busybox insmod cannot read compressed ones); list the
# load order in /lib/modules/load-order for /init.
: > "$root/lib/modules/load-order"
for m in $MODULES; do
    f=$(find "$moddir" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" \
             -o -name "$m.ko.gz" | head -1)
    if [ -z "$f" ]; then
        # not a module: must then be built in (modules.builtin lists it)
        if grep -q "/$m.ko\$" "$moddir/modules.builtin" 2>/dev/null; then
            log "module $m is built in"
        else
            log "warning: module $m neither .ko nor built in"
        fi
        continue
    fi
    case $f in
    *.ko)     cp "$f" "$root/lib/modules/$m.ko" ;;
    *.ko.xz)  xz -dc "$f" > "$root/lib/modules/$m.ko" ;;
    *.ko.zst) zstd -dcq "$f" > "$root/lib/modules/$m.ko" ;;
    *.ko.gz)  gzip -dc "$f" > "$root/lib/modules/$m.ko" ;;
    esac
    echo "$m" >> "$root/lib/modules/load-order"
done
echo "$kver" > "$root/etc/kernel-version"

# newc archive made by busybox cpio (the machine has no cpio binary);
# entries sorted, everything owned by root.
(cd "$root" && find . | LC_ALL=C sort | busybox cpio -o -H newc 2>/dev/null) |
    gzip -9 > "$out/initramfs.cpio.gz.tmp"
mv "$out/initramfs.cpio.gz.tmp" "$out/initramfs.cpio.gz"
echo "$inputs_sum" > "$out/initramfs.stamp"
log "initramfs $(du -h "$out/initramfs.cpio.gz" | cut -f1) -> $out/initramfs.cpio.gz"
