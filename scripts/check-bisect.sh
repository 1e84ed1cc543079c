#!/bin/bash
# make check-bisect: build every patch of the series on its own (bisectable),
# in a worktree of qemu/ at out/bisect with its own build directory, and run
# the tiny guest under KVM and TCG on each.  Not part of make check (each
# step is an incremental build); run it before sending the series.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
wt=$top/out/bisect
export CCACHE_DIR=${CCACHE_DIR:-$top/.cache/ccache} CCACHE_BASEDIR=$top CCACHE_NOHASHDIR=1
[ -d /usr/lib/ccache ] && export PATH=/usr/lib/ccache:$PATH
if [ ! -d "$wt" ]; then
    git -C "$top/qemu" worktree add -q --detach "$wt" base-fixups
fi
fails=0
for c in $(git -C "$top/qemu" rev-list --reverse base-fixups..HEAD); do
    subj=$(git -C "$top/qemu" log -1 --format=%s "$c")
    git -C "$wt" checkout -q --detach "$c"
    if [ ! -f "$wt/build/build.ninja" ]; then
        mkdir -p "$wt/build"
        (cd "$wt/build" && ../configure --target-list=x86_64-softmmu \
            --python=/usr/bin/python3 --enable-kvm --enable-tcg --disable-docs \
            --disable-rust --disable-user >/dev/null)
    fi
    if ninja -C "$wt/build" qemu-system-x86_64 >"$top/out/bisect.log" 2>&1 &&
       "$top/scripts/run-tiny-guest.sh" --qemu "$wt/build/qemu-system-x86_64" --accel tcg --smp 2 halt count=200 >/dev/null &&
       { ! [ -w /dev/kvm ] ||
         "$top/scripts/run-tiny-guest.sh" --qemu "$wt/build/qemu-system-x86_64" --accel kvm --smp 2 hammer target=port80 count=2000 >/dev/null; }; then
        echo "PASS: bisect: $subj"
    else
        echo "FAIL: bisect: $subj (see out/bisect.log)"
        fails=$((fails + 1))
    fi
done
exit $fails
