#!/bin/bash
# Run upstream's check-unit and check-qtest-x86_64 suites of one build
# directory with meson, /dev/kvm hidden (an empty file bound over it in a
# private mount namespace) so that the qtests use TCG.
#   upstream-tests.sh BUILD_DIR LOGBASE
# Results: BUILD_DIR/meson-logs/LOGBASE.json (one JSON object per test).
set -uo pipefail
b=$1 logbase=$2
empty=$(mktemp)
ninja -C "$b" || exit 1
unshare -m bash -c "
    mount --bind '$empty' /dev/kvm 2>/dev/null || true
    cd '$b' && meson test --no-rebuild --num-processes \$(nproc) \
        -t ${QTEST_TIMEOUT_MULT:-2} --suite unit --suite qtest-x86_64 --logbase '$logbase'
"
rc=$?
rm -f "$empty"
exit $rc
