#!/bin/bash
# Base fix-ups for Debian's "+ds" repack of QEMU (NOT part of the series).
#
# Debian strips prebuilt firmware from the orig tarball.  Run in the root of
# a pristine tree, this restores what an upstream tarball would carry, so that
# a QEMU run from the build tree finds its firmware in build/qemu-bundle/:
#   - x86 option ROMs (linuxboot_dma.bin, kvmvapic.bin, ...) built from the
#     tree's own pc-bios/optionrom sources;
#   - SeaBIOS and SeaVGABIOS from Debian's seabios package;
#   - iPXE ROMs from Debian's ipxe-qemu package;
#   - pc-bios/meson.build installs only the blobs that exist and unpacks
#     the edk2 images only where their .bz2 is present (the repack has none).
# dtbs are compiled by the build itself with device-tree-compiler.
set -euo pipefail
tree=$(pwd)
test -f "$tree/VERSION" -a -d "$tree/pc-bios/optionrom"

# 1. Option ROMs, built from source with the tree's own Makefile.
obj=$(mktemp -d)
trap 'rm -rf "$obj"' EXIT
cat > "$obj/config.mak" <<EOM
TOPSRC_DIR=$tree
CC=gcc
CCAS=gcc
OBJCOPY=objcopy
PYTHON=python3
EOM
make -s -C "$obj" -f "$tree/pc-bios/optionrom/Makefile" all >/dev/null
cp "$obj"/{multiboot,multiboot_dma,linuxboot,linuxboot_dma,kvmvapic,pvh}.bin \
   "$tree/pc-bios/"

# 2. SeaBIOS / SeaVGABIOS and iPXE from Debian's packages.
for f in bios.bin bios-256k.bin bios-microvm.bin vgabios.bin \
         vgabios-cirrus.bin vgabios-stdvga.bin vgabios-vmware.bin \
         vgabios-qxl.bin vgabios-virtio.bin vgabios-ramfb.bin \
         vgabios-bochs-display.bin vgabios-ati.bin; do
    cp /usr/share/seabios/$f "$tree/pc-bios/$f"
done
for f in /usr/lib/ipxe/qemu/{efi,pxe}-*.rom; do
    cp "$f" "$tree/pc-bios/"
done

# 3. Install only blobs that exist; unpack only edk2 images that exist.
python3 - "$tree/pc-bios/meson.build" <<'EOPY'
import sys
p = sys.argv[1]
s = open(p).read()
old_fd = "  foreach f : fds\n"
new_fd = ("  # Debian +ds fix-up: unpack only the edk2 images present\n"
          "  fds_present = []\n"
          "  foreach f : fds\n"
          "    if import('fs').exists(f + '.bz2')\n"
          "      fds_present += f\n"
          "    endif\n"
          "  endforeach\n"
          "  foreach f : fds_present\n")
old_inst = "if get_option('install_blobs')\n  install_data(blobs,"
new_inst = ("# Debian +ds fix-up: install only the blobs present in the tree\n"
            "blobs_present = []\n"
            "foreach b : blobs\n"
            "  if import('fs').exists(b)\n"
            "    blobs_present += b\n"
            "  endif\n"
            "endforeach\n"
            "if get_option('install_blobs')\n  install_data(blobs_present,")
assert s.count(old_fd) == 1 and s.count(old_inst) == 1
s = s.replace(old_fd, new_fd).replace(old_inst, new_inst)
open(p, 'w').write(s)
EOPY
