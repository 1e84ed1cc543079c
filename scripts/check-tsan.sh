#!/bin/bash
# make check-tsan: the locking stress test on a ThreadSanitizer build of the
# patched tree, and a verdict on the races it reports.
#
# Builds qemu/ with clang and --enable-tsan in out/build-tsan (ccache; the
# first build is cold and takes a while on 2 cores), runs the release
# build's tests/qtest/locking-stress-test on it under KVM (when /dev/kvm is
# usable), the tiny guest's VGA and virtio-blk scenarios under KVM and its
# halt scenario under TCG, with TSAN_OPTIONS writing one
# log per process to out/tsan/.  Every report is then attributed: it FAILS the check when one
# of its stacks runs through code that the series adds or converts (the
# functions and files listed in $ours below: dispatch locks, cpu->lock,
# the KVM and MTTCG vCPU loops, pc-testdev, the RTC, virtio-pci's notify,
# the VGA window, the local APIC, MSI-X from an IOThread); the others are
# upstream races, counted
# and listed by their first QEMU frame in out/tsan/summary.txt.
# glib is not built with TSan here, so races through GMutex/GCond would be
# false positives; QEMU's own locks are pthread ones, which TSan sees.
# TSan's lock-order (deadlock) detector is on; TSAN_DEADLOCKS=0 turns it off.
# Not part of make check: the instrumented build takes too long for CI.  Exit status: 0 when no report touches the series' code.
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
# Only QEMU is instrumented: the qtest binary forks QEMU from a threaded
# process, which TSan refuses ("starting new threads after multi-threaded
# fork"), so the test comes from the release build (make build).
test=$top/qemu/build/tests/qtest/locking-stress-test
[ -x "$test" ] || { echo "FAIL: check-tsan: $test missing: make build"; exit 1; }
ninja -C "$bld" qemu-system-x86_64 qemu-img >"$bld/ninja.log" 2>&1 ||
    { echo "FAIL: check-tsan: build (see $bld/ninja.log)"; exit 1; }

rm -rf "$out" && mkdir -p "$out"
# The deadlock detector must be able to report: a two-mutex inversion.
if [ "${TSAN_DEADLOCKS:-1}" != 0 ]; then
    printf '%s\n' '#include <pthread.h>' \
        'static pthread_mutex_t a = PTHREAD_MUTEX_INITIALIZER, b = PTHREAD_MUTEX_INITIALIZER;' \
        'static void *t(void *x) { pthread_mutex_lock(&b); pthread_mutex_lock(&a);' \
        '  pthread_mutex_unlock(&a); pthread_mutex_unlock(&b); return x; }' \
        'int main(void) { pthread_t th; pthread_mutex_lock(&a); pthread_mutex_lock(&b);' \
        '  pthread_mutex_unlock(&b); pthread_mutex_unlock(&a);' \
        '  pthread_create(&th, 0, t, 0); return pthread_join(th, 0); }' >"$out/inversion.c"
    # (grep reads a file: "grep -q" on a pipe may end the program with
    # SIGPIPE first, which pipefail turned into a failure.)
    clang -fsanitize=thread -O1 -pthread "$out/inversion.c" -o "$out/inversion" &&
        TSAN_OPTIONS="detect_deadlocks=1 exitcode=0" "$out/inversion" >"$out/inversion.log" 2>&1
    grep -q lock-order-inversion "$out/inversion.log" ||
        { echo "FAIL: check-tsan: TSan's deadlock detector reports nothing here"; exit 1; }
fi
export TSAN_OPTIONS="suppressions=$top/qemu/tests/tsan/suppressions.tsan \
detect_deadlocks=${TSAN_DEADLOCKS:-1} second_deadlock_stack=1 history_size=7 exitcode=0 log_path=$out/tsan"
if ! [ -w /dev/kvm ]; then
    echo "SKIP: check-tsan: /dev/kvm missing or unusable (the TCG run is not used, see below)"
    exit 0
fi
# KVM only: under TCG the TSan runtime itself aborted here ("nested bug in
# the same thread" on a deadly signal), so TCG gets no TSan verdict from
# this script; the SKIP line below says so.
# The APIC case (-global apic.x-unlocked-dispatch=off) runs on TCG even
# where KVM works, KVM's APIC being in the kernel: skipped here, like the
# TCG run (it hung at start-up on this build); tiny tcg-apic below
# covers the APIC under TCG.
if (cd "$bld" && QTEST_QEMU_BINARY=./qemu-system-x86_64 QTEST_QEMU_IMG=./qemu-img \
        timeout 1800 "$test" --tap -k \
        -s /x86_64/locking-stress/x86/pc/apic/x-unlocked-dispatch=off) >"$out/stress-kvm.log" 2>&1; then
    echo "PASS: check-tsan: locking-stress-test under kvm"
else
    echo "FAIL: check-tsan: locking-stress-test under kvm (see $out/stress-kvm.log)"
    fails=1
fi
echo "SKIP: check-tsan: locking-stress-test under tcg (TSan's runtime aborts under TCG here)"
echo "SKIP: check-tsan: locking-stress-test pc/apic/x-unlocked-dispatch=off (forces TCG; see above)"

# The tiny guest (guest/tiny) on the TSan build: the code that the stress
# test does not reach.  Under KVM: the VGA window from 4 vCPUs (its lock,
# and KVM's coalesced ring flushed into it), and virtio-blk from 2 vCPUs
# with x-dedicated-iothread and with ioeventfd=off (virtio-pci's notify
# lock and its bottom half).  Under TCG the MTTCG loop without the BQL:
# halt ping-pong only.  The others do not survive TSan's runtime under
# TCG here: ipi ("nested bug in the same thread"), the VGA window (SEGV in
# __tsan_func_entry on entry to vga_mem_read(), 15 frames deep, per gdb)
# and a polling virtio-blk (passed 2 runs in 5; the others crashed, hung
# or ended early).  A crash of the runtime under TCG counts as skipped.
# The guest's verdict is read from its log: TSAN_OPTIONS' exitcode=0
# replaces QEMU's exit status once TSan has reported anything.
tiny_tsan() {  # tiny_tsan LABEL ACCEL SMP ARGS...
    local label=$1 accel=$2 smp=$3 timeout=600
    shift 3
    [ "$accel" = tcg ] && timeout=180
    touch "$out/.before-$label"
    "$top/scripts/run-tiny-guest.sh" --qemu "$bld/qemu-system-x86_64" --accel "$accel" \
        --smp "$smp" --timeout $timeout "$@" >"$out/tiny-$label.log" 2>&1
    if grep -q "^TINY PASS" "$out/tiny-$label.log"; then
        echo "PASS: check-tsan: tiny $label"
    elif [ "$accel" = tcg ] &&
         find "$out" -name 'tsan.*' -newer "$out/.before-$label" -print0 |
         xargs -0 -r grep -lE "ThreadSanitizer: (SEGV|nested bug)" | grep -q .; then
        # TSan's runtime itself dies under TCG now and then (a SEGV in
        # __tsan_func_entry, or "nested bug in the same thread") and the
        # process then hangs.  The reports it wrote before are still
        # judged below; make check runs the scenario without TSan.
        echo "SKIP: check-tsan: tiny $label (TSan's runtime crashed under TCG; see $out/tiny-$label.log)"
    else
        echo "FAIL: check-tsan: tiny $label (see $out/tiny-$label.log)"
        fails=1
    fi
    rm -f "$out/.before-$label"
}
img=$out/vblk.img
blk=(-drive "file=$img,if=none,id=d0,format=raw,cache=none,aio=threads")
rm -f "$img" && truncate -s 64M "$img"
tiny_tsan kvm-vga kvm 4 hammer target=vga count=20000 -- -device VGA
tiny_tsan kvm-vblk-dedicated kvm 2 vblk irq=msix count=300 depth=4 -- "${blk[@]}" \
    -device virtio-blk-pci,drive=d0,x-dedicated-iothread=on
tiny_tsan kvm-vblk-no-ioeventfd kvm 2 vblk irq=poll count=300 depth=4 -- "${blk[@]}" \
    -device virtio-blk-pci,drive=d0,ioeventfd=off
tiny_tsan tcg-halt tcg 2 halt count=300
# The userspace local APIC under its own lock (TCG only: KVM's is in the
# kernel): each vCPU's TPR through the one MMIO page.  2 vCPUs: with 4,
# TSan's runtime died ("nested bug in the same thread") or hung here.
tiny_tsan tcg-apic tcg 2 hammer target=apic count=2000
# An IOThread sending its MSI-X completions without the BQL (TCG only:
# under KVM an irqfd does it): msix_lock, the pending bits, the APIC's
# MSI window from a thread without a vCPU.
rm -f "$img" && truncate -s 64M "$img"
tiny_tsan tcg-vblk-msix-dedicated tcg 2 vblk irq=msix count=300 depth=4 -- "${blk[@]}" \
    -device virtio-blk-pci,drive=d0,x-dedicated-iothread=on
# INTx: vCPUs read and clear virtio-pci's ISR without the BQL while the
# main loop raises the line under it.
for accel in kvm tcg; do
    rm -f "$img" && truncate -s 64M "$img"
    tiny_tsan $accel-vblk-isr $accel 2 vblk irq=isr count=300 depth=4 -- "${blk[@]}" \
        -object iothread,id=io0 -device virtio-blk-pci,drive=d0,iothread=io0
done
rm -f "$img"

# A report is the series' when the top frames of one of its two accesses
# are code that the series adds or moves out from under the BQL.  Known
# reports (scripts/tsan-known.txt: both accesses' top frames and the
# reason) are listed apart and do not fail the check.
ours='memory_region_dispatch_(read|write)|dispatch_lock|prepare_mmio_access|'\
'cpu_mutex_|qemu_cpu_kick|qemu_cpu_sleep_while_idle|qemu_process_cpu_events|'\
'cpu_halted|process_queued_cpu_work|do_run_on_cpu|run_on_cpu_no_bql|queue_work_on_cpu|'\
'cpu_request_stop|qemu_cpu_stop|cpu_remove_sync|pause_all_vcpus|resume_all_vcpus|'\
'cpu_resume|cpu_is_stopped|cpu_can_run|cpu_thread_is_idle|cpu_work_list_empty|'\
'kvm_cpu_exec|kvm_vcpu_thread_fn|kvm_arch_(pre|post)_run|kvm_arch_process_async_events|'\
'mttcg_cpu_thread_fn|mttcg_cpu_exec|mttcg_force_rcu|plugin_vcpu_cb__idle_resume|'\
'virtio_pci_notify_[a-z_]+|virtio_pci_set_notify_vdev_plugged|memory_region_ioeventfds_lock|'\
'virtio_wait_deferred_notify|'\
'vga\.c|'\
'kvm_cpu_synchronize|do_kvm_cpu_synchronize|kvm_put_vcpu_events|kvm_arch_put_registers|'\
'cpu_interrupt|generic_handle_interrupt|tcg_handle_interrupt|has_work|'\
'runstate_(get|is_running|check|set)|pc-testdev\.c|mc146818rtc\.c|'\
'kvm_flush_coalesced_mmio_buffer|kvm_coalesced_|address_space_write_bql_free|'\
'apic\.c|apic_common\.c|cpu_handle_interrupt|x86_cpu_exec_(halt|interrupt)|'\
'msix\.c|pci_msi_trigger_without_bql|address_space_write_bql_free|'\
'virtio_irq_deferred_fn|virtio_notify_vector_without_bql|virtio_pci_notify_without_bql|'\
'virtio_queue_set_vector|virtio_queue_set_guest_notifier_fd_handler|'\
'virtio_pci_isr_read[a-z_]*|virtio_pci_update_intx'
python3 - "$out" "$ours" "$top/scripts/tsan-known.txt" <<'EOF2'
import collections, glob, re, sys
out, ours, known_file = sys.argv[1], re.compile(sys.argv[2]), sys.argv[3]
known = []
for line in open(known_file):
    if line.strip() and not line.startswith('#'):
        a, b, why = [x.strip() for x in line.split(';;', 2)]
        known.append((re.compile(a), re.compile(b), why))
frame = re.compile(r'#(\d+) (\S+) (\S+)')
access = re.compile(r'\n  (?=(?:Previous )?(?:[Ww]rite|[Rr]ead|[Aa]tomic))')
mine, kn, other = collections.Counter(), collections.Counter(), collections.Counter()
example = {}
# QEMU drops the BQL inside coroutines that did not take it (the incoming
# migration coroutine calls run_on_cpu(), which releases it while it
# waits).  TSan models a coroutine as a fiber of its own, reports "unlock
# of an unlocked mutex (or by a wrong thread)", and from then on loses the
# BQL's happens-before edges in that process: it reports pairs of accesses
# that both hold the BQL.  Those pairs are listed as known, not judged.
lost_bql = ('both accesses under the BQL, in a process where a coroutine '
            'released the BQL and TSan lost track of it (see check-tsan.sh)')
bql_mutex = re.compile(r'Mutex (M\d+) \([^)]*\) created at:\n(?:.*\n)*?.*qemu_init_cpu_loop')
for log in sorted(glob.glob(f'{out}/tsan.*')):
    text = open(log, errors='replace').read()
    confused = 'unlock of an unlocked mutex' in text
    for rep in text.split('WARNING: ThreadSanitizer:')[1:]:
        rep = rep.split('SUMMARY: ThreadSanitizer:')[0]
        blocks = access.split(rep)[1:3]
        # Function names and their files: the series' list names both.
        tops = [' < '.join(f'{f} {l}' for _, f, l in frame.findall(b)[:3]) for b in blocks]
        sig = ' || '.join(tops) or rep.split('\n')[0].strip()
        m = bql_mutex.search(rep)
        if confused and m and len(blocks) == 2 and \
                all(f'write {m.group(1)}' in b.split('\n')[0] for b in blocks):
            kn[(sig, lost_bql)] += 1
            continue
        if confused and 'unlock of an unlocked mutex' in rep.split('\n')[0] and \
                'coroutine_trampoline' in rep:
            kn[('unlock of an unlocked mutex, in a coroutine', lost_bql)] += 1
            continue
        why = next((w for a, b, w in known
                    if len(tops) == 2 and ((a.search(tops[0]) and b.search(tops[1])) or
                                           (a.search(tops[1]) and b.search(tops[0])))), None)
        if why:
            kn[(sig, why)] += 1
        elif not tops or any(ours.search(t) for t in tops):
            # Reports without two accesses (leaks, bad unlocks, deadlocks)
            # are not attributed by frame: they fail until listed as known.
            mine[sig] += 1
            example.setdefault(sig, f'==== {log}\n{rep}\n')
        else:
            other[sig] += 1
with open(f'{out}/summary.txt', 'w') as f:
    f.write(f'{sum(mine.values())} report(s) through the series\' code:\n')
    for sig, n in mine.most_common():
        f.write(f'{n:6} {sig}\n')
    f.write(f'\n{sum(kn.values())} known report(s) (scripts/tsan-known.txt):\n')
    for (sig, why), n in kn.most_common():
        f.write(f'{n:6} {sig}\n       {why}\n')
    f.write(f'\n{sum(other.values())} other report(s), upstream code:\n')
    for sig, n in other.most_common():
        f.write(f'{n:6} {sig}\n')
    f.write('\nFirst report of each of the series\' signatures:\n')
    for sig in mine:
        f.write(example[sig])
if not glob.glob(f'{out}/tsan.*'):
    print('tsan: no TSan log at all: is the build instrumented?')
    sys.exit(1)
print(f"tsan: {sum(mine.values())} report(s) through the series' code, "
      f"{sum(kn.values())} known, {sum(other.values())} elsewhere (out/tsan/summary.txt)")
sys.exit(1 if mine else 0)
EOF2
rc=$?
if [ $rc = 0 ] && [ -z "${fails:-}" ]; then
    echo "PASS: check-tsan"
else
    echo "FAIL: check-tsan"
    exit 1
fi
