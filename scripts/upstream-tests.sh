#!/bin/bash
# Run upstream's check-unit and check-qtest-x86_64 suites of one build
# directory with meson, /dev/kvm hidden (an empty file bound over it in a
# private mount namespace) so that the qtests use TCG.
#   upstream-tests.sh BUILD_DIR LOGBASE
# Results: BUILD_DIR/meson-logs/LOGBASE.json (one JSON object per test).
# migration-test runs its default (quick) set: see qtest-wrapper.sh.
set -uo pipefail
b=$(cd "$1" && pwd) logbase=$2
here=$(cd "$(dirname "$0")" && pwd)
empty=$(mktemp)
ninja -C "$b" || exit 1
unshare -m bash -c "
    mount --bind '$empty' /dev/kvm 2>/dev/null || true
    cd '$b' && meson test --no-rebuild --num-processes \$(nproc) \
        --wrapper '$here/qtest-wrapper.sh' \
        -t ${QTEST_TIMEOUT_MULT:-2} --suite unit --suite qtest-x86_64 --logbase '$logbase'
"
rc=$?
rm -f "$empty"
# meson names the logs after the wrapper too: give them the asked-for name.
for ext in json txt; do
    f="$b/meson-logs/$logbase-qtest-wrapper.sh.$ext"
    [ -f "$f" ] && mv -f "$f" "$b/meson-logs/$logbase.$ext"
done
exit $rc
