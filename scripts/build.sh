#!/bin/bash
# make build: configure and build the patched tree (qemu/build) and the
# unpatched base (qemu-base/build), the same way, with ccache.
# Usage: build.sh [patched|base]...   (default: both)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

. "$top/scripts/configure-flags.sh"
# Both trees compile the same relative paths from their build directory, so
# one ccache serves both (and survives re-materialization).
export CCACHE_DIR=${CCACHE_DIR:-$top/.cache/ccache}
export CCACHE_BASEDIR=$top CCACHE_NOHASHDIR=1 CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}
# configure hands meson an explicit "cc", so wrap it through Debian's
# ccache symlinks rather than relying on meson's ccache detection.
[ -d /usr/lib/ccache ] && export PATH=/usr/lib/ccache:$PATH
jobs=${JOBS:-$(nproc)}

build_one() {
    local src=$1 what=$2
    [ -d "$src" ] || { echo "build: $src missing, run 'make tree'" >&2; exit 1; }
    mkdir -p "$src/build"
    local stamp="$src/build/.configure-flags"
    local flags="${CONFIGURE_FLAGS[*]} cc=$(command -v cc)"
    if [ ! -f "$src/build/build.ninja" ] ||
       [ "$(cat "$stamp" 2>/dev/null)" != "$flags" ]; then
        rm -rf "$src/build"
        mkdir -p "$src/build"
        (cd "$src/build" && ../configure "${CONFIGURE_FLAGS[@]}") > "$src/build/configure.log" 2>&1 || {
            tail -30 "$src/build/configure.log" >&2; exit 1; }
        echo "$flags" > "$stamp"
    fi
    echo "build: $src ($what)"
    # shellcheck disable=SC2086
    ninja -C "$src/build" -j "$jobs" $what
}

targets=${*:-patched base}
for t in $targets; do
    case $t in
    patched) build_one "$top/qemu" "qemu-system-x86_64 qemu-img" ;;
    base)    build_one "$top/qemu-base" "qemu-system-x86_64" ;;
    *) echo "build: unknown target $t" >&2; exit 1 ;;
    esac
done
ccache -s 2>/dev/null | grep -E 'Hits|Misses' | head -3 || true
