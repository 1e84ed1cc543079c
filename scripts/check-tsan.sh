#!/bin/bash
# make check-tsan: the locking stress test on a ThreadSanitizer build of the
# patched tree, and a verdict on the races it reports.
#
# Builds qemu/ with clang and --enable-tsan in out/build-tsan (ccache; the
# first build is cold and takes a while on 2 cores), runs
# tests/qtest/locking-stress-test on it under KVM (when /dev/kvm is usable)
# and under TCG, with TSAN_OPTIONS writing one log per process to
# out/tsan/.  Every report is then attributed: it FAILS the check when one
# of its stacks runs through code that the series adds or converts (the
# functions and files listed in $ours below: dispatch locks, cpu->lock,
# the KVM vCPU loop, pc-testdev); the others are upstream races, counted
# and listed by their first QEMU frame in out/tsan/summary.txt.
# glib is not built with TSan here, so races through GMutex/GCond would be
# false positives; QEMU's own locks are pthread ones, which TSan sees.
# Not part of make check: the instrumented build and the TCG run take too
# long for CI.  Exit status: 0 when no report touches the series' code.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bld=$top/out/build-tsan out=$top/out/tsan
export CCACHE_DIR=${CCACHE_DIR:-$top/.cache/ccache} CCACHE_BASEDIR=$top CCACHE_NOHASHDIR=1
[ -d /usr/lib/ccache ] && export PATH=/usr/lib/ccache:$PATH

if [ ! -f "$bld/build.ninja" ]; then
    . "$top/scripts/configure-flags.sh"
    mkdir -p "$bld"
    (cd "$bld" && "$top/qemu/configure" "${CONFIGURE_FLAGS[@]}" \
        --cc=clang --cxx=clang++ --enable-tsan --disable-werror \
        --extra-cflags=-O1 >configure.log 2>&1) ||
        { echo "FAIL: check-tsan: configure (see $bld/configure.log)"; exit 1; }
fi
ninja -C "$bld" qemu-system-x86_64 qemu-img tests/qtest/locking-stress-test \
    >"$bld/ninja.log" 2>&1 ||
    { echo "FAIL: check-tsan: build (see $bld/ninja.log)"; exit 1; }

rm -rf "$out" && mkdir -p "$out"
export TSAN_OPTIONS="suppressions=$top/qemu/tests/tsan/suppressions.tsan \
detect_deadlocks=false history_size=7 exitcode=0 log_path=$out/tsan"
for accel in kvm tcg; do
    hide=()
    if [ $accel = kvm ] && ! [ -w /dev/kvm ]; then
        echo "SKIP: check-tsan: kvm (/dev/kvm missing or unusable)"
        continue
    fi
    [ $accel = tcg ] && [ -e /dev/kvm ] &&
        hide=(unshare -m sh -c 'mount --bind /dev/null /dev/kvm && exec "$@"' sh)
    if (cd "$bld" && "${hide[@]}" env QTEST_QEMU_BINARY=./qemu-system-x86_64 \
            QTEST_QEMU_IMG=./qemu-img timeout 1800 \
            ./tests/qtest/locking-stress-test --tap -k) >"$out/stress-$accel.log" 2>&1; then
        echo "PASS: check-tsan: locking-stress-test under $accel"
    else
        echo "FAIL: check-tsan: locking-stress-test under $accel (see $out/stress-$accel.log)"
        fails=1
    fi
done

# A report is the series' when a frame names one of these functions or
# files (the code the series adds or moves out from under the BQL).
ours='memory_region_dispatch_(read|write)|dispatch_lock|prepare_mmio_access|'\
'cpu_mutex_|qemu_cpu_kick|qemu_cpu_sleep_while_idle|qemu_process_cpu_events|'\
'cpu_halted|process_queued_cpu_work|do_run_on_cpu|run_on_cpu_no_bql|'\
'cpu_request_stop|qemu_cpu_stop|cpu_remove_sync|pause_all_vcpus|resume_all_vcpus|'\
'kvm_cpu_exec|kvm_vcpu_thread_fn|kvm_arch_(pre|post)_run|kvm_arch_process_async_events|'\
'kvm_cpu_synchronize|do_kvm_cpu_synchronize|kvm_put_vcpu_events|'\
'cpu_interrupt|generic_handle_interrupt|tcg_handle_interrupt|'\
'runstate_(get|is_running|check)|pc-testdev\.c|cpus-common\.c'
python3 - "$out" "$ours" <<'EOF'
import collections, glob, re, sys
out, ours = sys.argv[1], re.compile(sys.argv[2])
frame = re.compile(r'#\d+ (\S+) (\S+)')
mine, other = [], collections.Counter()
for log in sorted(glob.glob(f'{out}/tsan.*')):
    for rep in open(log, errors='replace').read().split('WARNING: ThreadSanitizer:')[1:]:
        rep = rep.split('SUMMARY: ThreadSanitizer:')[0]
        frames = frame.findall(rep)
        if any(ours.search(fn) or ours.search(loc) for fn, loc in frames):
            mine.append((log, rep))
        else:
            first = next((fn for fn, loc in frames if '/qemu/' in loc), '?')
            other[(rep.split('\n')[0].strip(), first)] += 1
with open(f'{out}/summary.txt', 'w') as f:
    f.write(f'{len(mine)} report(s) through the series\' code\n')
    for log, rep in mine:
        f.write(f'==== {log}\n{rep}\n')
    f.write(f'\n{sum(other.values())} other report(s), by kind and first QEMU frame:\n')
    for (kind, fn), n in other.most_common():
        f.write(f'{n:6} {kind}: {fn}\n')
print(f"tsan: {len(mine)} report(s) through the series' code, "
      f"{sum(other.values())} elsewhere (out/tsan/summary.txt)")
sys.exit(1 if mine else 0)
EOF
rc=$?
if [ $rc = 0 ] && [ -z "${fails:-}" ]; then
    echo "PASS: check-tsan"
else
    echo "FAIL: check-tsan"
    exit 1
fi
