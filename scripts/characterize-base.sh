#!/bin/bash
# List the upstream tests that fail on the unpatched base build (qemu-base/)
# on this machine, for base/known-failures.txt (reasons are added by hand
# from qemu-base/build/meson-logs/testlog-base.txt).
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/upstream-tests.sh" "$top/qemu-base/build" testlog-base >"$top/out/characterize-base.log" 2>&1
python3 - "$top/qemu-base/build/meson-logs/testlog-base.json" <<'EOPY'
import json, sys
for line in open(sys.argv[1]):
    t = json.loads(line)
    if t['result'] not in ('OK', 'SKIP', 'EXPECTEDFAIL'):
        print(f"{t['name']}  # {t['result']} on base: <reason>")
EOPY
