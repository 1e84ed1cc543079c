#!/bin/bash
# make build: configure and build the patched tree (qemu/build) and the
# unpatched base (qemu-base/build), the same way, with ccache, and a debug
# build of the patched tree (out/build-debug, --enable-debug).
# Usage: build.sh [patched|base|debug]...   (default: all three)
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

# build_one SRC BUILDDIR "TARGETS" [EXTRA CONFIGURE FLAGS...]
build_one() {
    local src=$1 bdir=$2 what=$3
    shift 3
    local cflags=("${CONFIGURE_FLAGS[@]}" "$@")
    [ -d "$src" ] || { echo "build: $src missing, run 'make tree'" >&2; exit 1; }
    mkdir -p "$bdir"
    local stamp="$bdir/.configure-flags"
    local flags="${cflags[*]} cc=$(command -v cc)"
    if [ ! -f "$bdir/build.ninja" ] ||
       [ "$(cat "$stamp" 2>/dev/null)" != "$flags" ]; then
        rm -rf "$bdir"
        mkdir -p "$bdir"
        (cd "$bdir" && "$src/configure" "${cflags[@]}") > "$bdir/configure.log" 2>&1 || {
            tail -30 "$bdir/configure.log" >&2; exit 1; }
        echo "$flags" > "$stamp"
    fi
    echo "build: $bdir ($what)"
    # shellcheck disable=SC2086
    ninja -C "$bdir" -j "$jobs" $what
}

targets=${*:-patched base debug}
for t in $targets; do
    case $t in
    patched) build_one "$top/qemu" "$top/qemu/build" \
                 "qemu-system-x86_64 qemu-img tests/qtest/locking-stress-test" ;;
    base)    build_one "$top/qemu-base" "$top/qemu-base/build" "qemu-system-x86_64" ;;
    # --enable-debug: -O0 and CONFIG_DEBUG_MUTEX, which compiles in the
    # lock-order assertions of the series; make check runs the stress test
    # on it.
    debug)   build_one "$top/qemu" "$top/out/build-debug" \
                 "qemu-system-x86_64 tests/qtest/locking-stress-test" --enable-debug ;;
    *) echo "build: unknown target $t" >&2; exit 1 ;;
    esac
done
ccache -s 2>/dev/null | grep -E 'Hits|Misses' | head -3 || true
