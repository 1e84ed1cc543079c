#!/bin/bash
# make check-bisect: build every patch of the series on its own (bisectable),
# in a worktree of qemu/ at out/bisect with its own build directory
# (configured like build.sh, so the ccache is shared), run the tiny guest
# under KVM and TCG on each, the locking stress qtest once the series
# has it, and sphinx-build -W on docs/.  Not part of make check (a header change rebuilds most of QEMU,
# 2-5 minutes a step here); run it before sending the series.
# BISECT_FROM=N starts at patch N (after a change to the tail of the series);
# BISECT_TO=M stops after patch M.
# Output: one PASS:/FAIL: line per patch; exit status = number of failures.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
wt=$top/out/bisect
export CCACHE_DIR=${CCACHE_DIR:-$top/.cache/ccache} CCACHE_BASEDIR=$top CCACHE_NOHASHDIR=1
[ -d /usr/lib/ccache ] && export PATH=/usr/lib/ccache:$PATH
if [ ! -d "$wt" ]; then
    git -C "$top/qemu" worktree add -q --detach "$wt" base-fixups
fi
fails=0 n=0 checked=0 docs_ok="" doctree=$top/out/bisect-doctree
mkdir -p "$top/out/bisect-logs"
rm -rf "$doctree"
# The docs build with warnings as errors.  Sphinx re-reads only what
# changed since its last run, so it runs from scratch on the first patch
# checked and then only on patches that touch docs/; the others keep the
# state of the last one that did.
docs_check() {  # docs_check COMMIT LOG
    if [ -n "$docs_ok" ] && ! git -C "$top/qemu" show --stat --format= "$1" | grep -q 'docs/'; then
        [ "$docs_ok" = yes ]
        return
    fi
    if env CONFDIR=etc/qemu sphinx-build -q -W --keep-going -Dkerneldoc_werror=1 -j 2 \
           -b html -d "$doctree" "$wt/docs" "$doctree/html" >>"$2" 2>&1; then
        docs_ok=yes
    else
        docs_ok=no
        return 1
    fi
}
for c in $(git -C "$top/qemu" rev-list --reverse base-fixups..HEAD); do
    subj=$(git -C "$top/qemu" log -1 --format=%s "$c")
    n=$((n + 1)) log=$top/out/bisect-logs/$(printf %02d $n).log
    [ "$n" -ge "${BISECT_FROM:-1}" ] || continue
    [ "$n" -le "${BISECT_TO:-$n}" ] || break
    checked=$((checked + 1))
    git -C "$wt" checkout -q --detach "$c"
    if [ ! -f "$wt/build/build.ninja" ]; then
        mkdir -p "$wt/build"
        . "$top/scripts/configure-flags.sh"
        (cd "$wt/build" && ../configure "${CONFIGURE_FLAGS[@]}" >/dev/null)
    fi
    stress=()
    if [ -f "$wt/tests/qtest/locking-stress-test.c" ]; then
        stress=(tests/qtest/locking-stress-test)
    fi
    if ninja -C "$wt/build" qemu-system-x86_64 "${stress[@]}" >"$log" 2>&1 &&
       { [ ${#stress[@]} = 0 ] ||
         (cd "$wt/build" && QTEST_QEMU_BINARY=./qemu-system-x86_64 \
              timeout 600 ./tests/qtest/locking-stress-test >>"$log" 2>&1); } &&
       "$top/scripts/run-tiny-guest.sh" --qemu "$wt/build/qemu-system-x86_64" --accel tcg --smp 2 halt count=200 >/dev/null &&
       { ! [ -w /dev/kvm ] ||
         "$top/scripts/run-tiny-guest.sh" --qemu "$wt/build/qemu-system-x86_64" --accel kvm --smp 2 hammer target=port80 count=2000 >/dev/null; } &&
       docs_check "$c" "$log"; then
        echo "PASS: bisect: $subj"
    else
        echo "FAIL: bisect: $subj (see $log)"
        fails=$((fails + 1))
    fi
done
# A range that selects no patch (BISECT_FROM past the end, or after
# BISECT_TO) checked nothing: say so rather than pass.
if [ "$checked" = 0 ]; then
    total=$(git -C "$top/qemu" rev-list --count base-fixups..HEAD)
    echo "FAIL: bisect: no patch in ${BISECT_FROM:-1}..${BISECT_TO:-$total} of $total"
    exit 1
fi
exit $fails
