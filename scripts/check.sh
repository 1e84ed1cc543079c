#!/bin/bash
# make check: the project's test command.  Ends with "N passed, N failed, N skipped".
#   1. series hygiene (applies, docs build, round-trips, checkpatch, Signed-off-by, subjects)
#   2. upstream check-unit and check-qtest-x86_64 on the patched tree, with
#      /dev/kvm hidden so that they use TCG (see README); failures that the
#      unpatched base has too are listed in base/known-failures.txt
#   3. the guest scenarios: tiny firmware under KVM and TCG, Linux under TCG
#   4. cost: host instructions per TCG access, patched against base
# CHECK_ONLY="hygiene guests" runs a subset (default: all four).
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
only=${CHECK_ONLY:-hygiene upstream guests cost}
logdir=$top/out/check
mkdir -p "$logdir"
npass=0 nfail=0 nskip=0
failed=()
pass() { npass=$((npass + 1)); echo "PASS: $1"; }
fail() { nfail=$((nfail + 1)); failed+=("$1"); echo "FAIL: $1${2:+ ($2)}"; }
skip() { nskip=$((nskip + 1)); echo "SKIP: $1 ($2)"; }
want() { [[ " $only " == *" $1 "* ]]; }

Q=$top/qemu/build/qemu-system-x86_64
QB=$top/qemu-base/build/qemu-system-x86_64

# ---- 1. series hygiene -------------------------------------------------------
hygiene() {
    local patches=() p tmp subj
    for p in patches/0*.patch; do
        [ -e "$p" ] && [[ $p != *0000-cover-letter.patch ]] && patches+=("$p")
    done
    echo "== hygiene: ${#patches[@]} patches"

    # Applies to the pristine base (+ fix-ups) with git am, no fuzz.
    tmp=$(mktemp -d)
    git -C qemu worktree add -q --detach "$tmp/wt" base-fixups
    if (cd "$tmp/wt" && for p in "${patches[@]}"; do
            git -c user.name=check -c user.email=check@localhost am -q "$top/$p" || exit 1
        done); then
        pass "hygiene: series applies to base"
    else
        fail "hygiene: series applies to base"
    fi
    # Its documentation builds as QEMU's docs target does, warnings as
    # errors (the build here configures with --disable-docs).
    if CONFDIR=etc/qemu sphinx-build -q -W --keep-going -Dkerneldoc_werror=1 -j 2 \
           -b html -d "$tmp/doctree" "$tmp/wt/docs" "$tmp/html" >"$logdir/docs.log" 2>&1; then
        pass "hygiene: docs build (sphinx-build -W)"
    else
        fail "hygiene: docs build (sphinx-build -W)" "see out/check/docs.log"
    fi
    git -C qemu worktree remove --force "$tmp/wt"

    # qemu/ and patches/ agree: export round-trips byte for byte.
    if scripts/export.sh "$tmp/exp" >/dev/null && diff -r "$tmp/exp" patches >"$logdir/export.diff"; then
        pass "hygiene: make export round-trips"
    else
        fail "hygiene: make export round-trips" "see out/check/export.diff"
    fi
    rm -rf "$tmp"

    [ -e patches/0000-cover-letter.patch ] || [ ${#patches[@]} -eq 0 ] &&
        pass "hygiene: cover letter present" ||
        fail "hygiene: cover letter present"

    for p in "${patches[@]}"; do
        local name=${p#patches/}
        if perl qemu/scripts/checkpatch.pl --mailback "$p" >"$logdir/${name%.patch}.checkpatch" 2>&1 ||
           ! grep -q '^ERROR' "$logdir/${name%.patch}.checkpatch"; then
            pass "checkpatch: $name"
        else
            fail "checkpatch: $name" "$(grep -c '^ERROR' "$logdir/${name%.patch}.checkpatch") errors"
        fi
        local author
        author=$(python3 -c 'import email, sys
m = email.message_from_file(open(sys.argv[1]))
print(" ".join(str(m["From"]).split()))' "$p")
        if grep -q "^Signed-off-by: $author\$" "$p"; then
            pass "signed-off: $name"
        else
            fail "signed-off: $name" "no Signed-off-by of $author"
        fi
        subj=$(sed -n '/^Subject:/{N;s/\n / /;s/^Subject: \[PATCH[^]]*\] //;p}' "$p" | head -1)
        if [[ $subj =~ ^[a-zA-Z0-9_./+-]+(,\ ?[a-zA-Z0-9_./+-]+)*:\ [^\ ].+ ]]; then
            pass "subject: $name"
        else
            fail "subject: $name" "'$subj' is not 'subsystem: summary'"
        fi
    done
}

# ---- 2. upstream suites ---------------------------------------------------------
upstream() {
    echo "== upstream: check-unit, check-qtest-x86_64 (TCG: /dev/kvm hidden)"
    local b=$top/qemu/build json=$top/qemu/build/meson-logs/testlog-check.json
    rm -f "$json"
    scripts/upstream-tests.sh "$b" testlog-check >"$logdir/upstream.log" 2>&1
    if [ ! -s "$json" ]; then
        fail "upstream: build and run" "see out/check/upstream.log"
        return
    fi
    python3 - "$json" base/known-failures.txt <<'EOPY' >"$logdir/upstream.results"
import json, sys
# One line per test: KIND<TAB>meson test name<TAB>why (names contain spaces).
known = set()
for line in open(sys.argv[2]):
    line = line.split('#', 1)[0].strip()
    if line:
        known.add(line)
for line in open(sys.argv[1]):
    t = json.loads(line)
    name, res = t['name'], t['result']
    if res in ('OK', 'EXPECTEDFAIL'):
        print(f'PASS\t{name}\t')
    elif res == 'SKIP':
        print(f'SKIP\t{name}\tskipped by the test itself')
    elif name in known:
        print(f'SKIP\t{name}\t{res}, as on the unpatched base: base/known-failures.txt')
    else:
        print(f'FAIL\t{name}\t{res}')
EOPY
    # A run that executed almost nothing must not pass quietly.
    local ran
    ran=$(wc -l <"$json")
    if [ "$ran" -lt "${UPSTREAM_MIN_TESTS:-150}" ]; then
        fail "upstream: test count" "only $ran tests ran; see out/check/upstream.log"
    fi
    local kind name why
    while IFS=$'\t' read -r kind name why; do
        case $kind in
        PASS) pass "upstream: $name" ;;
        SKIP) skip "upstream: $name" "$why" ;;
        FAIL) fail "upstream: $name" "$why; see qemu/build/meson-logs/testlog-check.txt" ;;
        esac
    done <"$logdir/upstream.results"
}

# ---- 3. guest scenarios ----------------------------------------------------------
tiny() {   # tiny LABEL BINARY ACCEL SMP ARGS...
    local label=$1 bin=$2 accel=$3 smp=$4
    shift 4
    local log=$logdir/tiny-$label.log
    scripts/run-tiny-guest.sh --qemu "$bin" --accel "$accel" --smp "$smp" --timeout 300 "$@" >"$log" 2>&1
    case $? in
    0) pass "tiny: $label" ;;
    77) skip "tiny: $label" "/dev/kvm missing or unusable: KVM scenario not run" ;;
    *) fail "tiny: $label" "see out/check/tiny-$label.log" ;;
    esac
}
linux() {  # linux LABEL ARGS...
    local label=$1
    shift
    local log=$logdir/linux-$label.log
    scripts/run-linux-guest.sh --qemu "$Q" --timeout 600 "$@" >"$log" 2>&1
    case $? in
    0) pass "linux: $label" ;;
    77) skip "linux: $label" "$(tail -1 "$log")" ;;
    *) fail "linux: $label" "see out/check/linux-$label.log" ;;
    esac
}
integrity() {  # integrity LABEL CASE [blk-integrity.py options...]
    local label=$1 case=$2 log=$logdir/blk-integrity-$1.log
    shift 2
    scripts/blk-integrity.py --qemu "$Q" "$@" "$case" >"$log" 2>&1
    if grep -q "result=PASS" "$log"; then
        pass "blk-integrity: $label"
    elif grep -q "result=SKIP" "$log"; then
        skip "blk-integrity: $label" "$(grep -o 'reason=.*' "$log")"
    else
        fail "blk-integrity: $label" "see out/check/${log##*/}"
    fi
}
# msix_path LABEL WANT: which thread raised the MSI-X completions of the
# tiny guest's run LABEL (traced into out/check/tiny-LABEL.trace): the
# IOThread itself (WANT=iothread: virtio_notify_without_bql, at most 1%
# of them through the main loop, which start-up may use) or the main loop
# (WANT=main-loop: none without the BQL).
msix_path() {
    local label=$1 want=$2 trace=$logdir/tiny-$1.trace direct main
    direct=$(grep -c '^virtio_notify_without_bql' "$trace" 2>/dev/null)
    main=$(grep -c '^virtio_notify_irqfd_deferred_fn' "$trace" 2>/dev/null)
    direct=${direct:-0} main=${main:-0}
    if { [ "$want" = iothread ] && [ "$direct" -gt 0 ] && [ $((main * 100)) -le "$direct" ]; } ||
       { [ "$want" = main-loop ] && [ "$direct" -eq 0 ] && [ "$main" -gt 0 ]; }; then
        pass "msix-path: $label raised by the $want ($direct direct, $main through the main loop)"
    else
        fail "msix-path: $label raised by the $want" "$direct direct, $main through the main loop"
    fi
}
# isr_path LABEL WANT: how the vCPUs of the tiny guest's irq=isr run LABEL
# read virtio-pci's ISR status register (traced into
# out/check/tiny-LABEL.trace): without the BQL (WANT=unlocked: one
# virtio_pci_isr_read_unlocked event at least for each read the guest
# counted) or under it (WANT=bql: none).
isr_path() {
    local label=$1 want=$2 trace=$logdir/tiny-$1.trace unlocked reads
    unlocked=$(grep -c '^virtio_pci_isr_read_unlocked' "$trace" 2>/dev/null)
    reads=$(grep -o 'isr_reads=[0-9]*' "$logdir/tiny-$label.log" |
            awk -F= '{ n += $2 } END { print n + 0 }')
    unlocked=${unlocked:-0}
    if [ "$reads" -gt 0 ] &&
       { { [ "$want" = unlocked ] && [ "$unlocked" -ge "$reads" ]; } ||
         { [ "$want" = bql ] && [ "$unlocked" -eq 0 ]; }; }; then
        pass "isr-path: $label read $want ($reads reads, $unlocked without the BQL)"
    else
        fail "isr-path: $label read $want" "$reads reads, $unlocked without the BQL"
    fi
}
# cfg_path LABEL WANT: how the tiny guest's run LABEL read virtio-pci's
# common configuration (traced into out/check/tiny-LABEL.trace).
# WANT=unlocked: every config_generation read the guest counted was
# served under the proxy's lock (virtio_pci_generation_read_unlocked),
# and the set-up's other accesses were handed to the BQL
# (memory_region_rerun_with_bql).  WANT=bql: neither happened.
cfg_path() {
    local label=$1 want=$2 trace=$logdir/tiny-$1.trace gen rerun reads
    gen=$(grep -c '^virtio_pci_generation_read_unlocked' "$trace" 2>/dev/null)
    rerun=$(grep -c "^memory_region_rerun_with_bql mr 'virtio-pci-common" "$trace" 2>/dev/null)
    reads=$(grep -o 'gen_reads=[0-9]*' "$logdir/tiny-$label.log" |
            awk -F= '{ n += $2 } END { print n + 0 }')
    gen=${gen:-0} rerun=${rerun:-0}
    if [ "$reads" -gt 0 ] &&
       { { [ "$want" = unlocked ] && [ "$gen" -ge "$reads" ] && [ "$rerun" -gt 0 ]; } ||
         { [ "$want" = bql ] && [ "$gen" -eq 0 ] && [ "$rerun" -eq 0 ]; }; }; then
        pass "cfg-path: $label common config $want ($reads generation reads, $gen without the BQL, $rerun handed to it)"
    else
        fail "cfg-path: $label common config $want" "$reads generation reads, $gen without the BQL, $rerun handed to it"
    fi
}
# INTx: the main loop raises the line, every vCPU reads and clears the
# shared ISR, which lowers it; the guest checks that no line is left high.
# The series reads the ISR without the BQL (x-unlocked-dispatch) and takes
# it only to lower a line that may be high.
vblk_isr() {
    local img=$logdir/vblk.img build accel flag dev
    for build in patched base; do
        local bin=$Q
        [ $build = base ] && bin=$QB
        for accel in kvm tcg; do
            for flag in on off; do
                [ $build = base ] && [ $flag = off ] && continue
                local label=$build-$accel-smp2-vblk-isr-iothread trc=()
                dev="virtio-blk-pci,drive=d0,iothread=io0"
                if [ $build = patched ]; then
                    label=$label-unlocked-$flag
                    dev="$dev,x-unlocked-dispatch=$flag"
                    trc=(-trace virtio_pci_isr_read_unlocked
                         -trace virtio_pci_generation_read_unlocked
                         -trace memory_region_rerun_with_bql
                         -D "$logdir/tiny-$label.trace")
                fi
                rm -f "$img" && truncate -s 64M "$img"
                tiny "$label" "$bin" $accel 2 \
                    vblk irq=isr count=$([ $accel = kvm ] && echo 300 || echo 2000) depth=4 -- \
                    -object iothread,id=io0 \
                    -drive file="$img",if=none,id=d0,format=raw,cache=none,aio=threads \
                    -device "$dev" "${trc[@]}"
                if [ ${#trc[@]} -gt 0 ] && grep -q "TINY PASS" "$logdir/tiny-$label.log"; then
                    isr_path "$label" "$([ $flag = on ] && echo unlocked || echo bql)"
                    cfg_path "$label" "$([ $flag = on ] && echo unlocked || echo bql)"
                fi
            done
        done
    done
    rm -f "$img"
}
# The APIC's x-unlocked-dispatch takes effect under MTTCG only: "on" with
# round-robin TCG is an error at start-up, not a silent fallback.
apic_flag() {
    local log=$logdir/apic-flag.log args=(-M pc -nodefaults -display none -S)
    timeout 60 "$Q" "${args[@]}" -accel tcg,thread=single \
        -global apic.x-unlocked-dispatch=on </dev/null >"$log" 2>&1
    if [ $? -eq 1 ] && grep -q "x-unlocked-dispatch=on needs multi-threaded TCG" "$log"; then
        pass "apic-flag: x-unlocked-dispatch=on with thread=single is an error"
    else
        fail "apic-flag: x-unlocked-dispatch=on with thread=single is an error" \
            "see out/check/${log##*/}"
    fi
    printf '%s\n' '{"execute":"qmp_capabilities"}' '{"execute":"quit"}' |
        timeout 60 "$Q" "${args[@]}" -accel tcg,thread=multi \
            -global apic.x-unlocked-dispatch=on -qmp stdio >>"$log" 2>&1 &&
        pass "apic-flag: x-unlocked-dispatch=on under MTTCG starts" ||
        fail "apic-flag: x-unlocked-dispatch=on under MTTCG starts" "see out/check/${log##*/}"
}
# virtio-pci's x-unlocked-dispatch under record/replay, where its notify
# bottom half cannot be replayed: auto (the default) keeps the BQL and
# starts, on is an error rather than ignored.
virtio_flag() {
    local log=$logdir/virtio-flag.log rr=$logdir/virtio-flag.rr mode
    for mode in auto on; do
        printf '%s\n' '{"execute":"qmp_capabilities"}' '{"execute":"quit"}' |
            timeout 60 "$Q" -M pc -nodefaults -display none -S -qmp stdio \
                -accel tcg -icount shift=auto,rr=record,rrfile="$rr" \
                -drive if=none,id=d0,driver=null-co \
                -device virtio-blk-pci,drive=d0,x-unlocked-dispatch=$mode >"$log.$mode" 2>&1
        echo "exit status $?" >>"$log.$mode"
    done
    grep -q '^exit status 0$' "$log.auto" &&
        pass "virtio-flag: x-unlocked-dispatch=auto under record/replay starts" ||
        fail "virtio-flag: x-unlocked-dispatch=auto under record/replay starts" "see out/check/${log##*/}.auto"
    grep -q '^exit status 1$' "$log.on" &&
        grep -q "x-unlocked-dispatch=on is not supported with record/replay" "$log.on" &&
        pass "virtio-flag: x-unlocked-dispatch=on under record/replay is an error" ||
        fail "virtio-flag: x-unlocked-dispatch=on under record/replay is an error" "see out/check/${log##*/}.on"
    rm -f "$rr"
}
# x-dedicated-iothread on another transport: virtio-mmio (microvm).  The
# IOThread is created and listed, and the conflict with iothread= is an
# error there too.  No guest I/O: the tiny guest's driver is PCI only.
mmio_dedicated() {
    local log=$logdir/mmio-dedicated.log img=$logdir/mmio.img
    local args=(-M microvm -accel tcg -nodefaults -display none -object iothread,id=io0
                -drive file="$img",if=none,id=d0,format=raw)
    rm -f "$img" && truncate -s 16M "$img"
    printf '%s\n' '{"execute":"qmp_capabilities"}' '{"execute":"query-iothreads"}' \
        '{"execute":"quit"}' |
        timeout 60 "$Q" "${args[@]}" -qmp stdio \
            -device virtio-blk-device,drive=d0,id=vb0,x-dedicated-iothread=on >"$log" 2>&1
    grep -q '"id": "#iothread-vb0"' "$log" &&
        pass "virtio-mmio: x-dedicated-iothread creates #iothread-vb0" ||
        fail "virtio-mmio: x-dedicated-iothread creates #iothread-vb0" "see out/check/${log##*/}"
    timeout 60 "$Q" "${args[@]}" -S \
        -device virtio-blk-device,drive=d0,id=vb0,x-dedicated-iothread=on,iothread=io0 \
        </dev/null >>"$log" 2>&1
    if [ $? -eq 1 ] && grep -q "x-dedicated-iothread and iothread properties cannot be set" "$log"; then
        pass "virtio-mmio: x-dedicated-iothread with iothread= is an error"
    else
        fail "virtio-mmio: x-dedicated-iothread with iothread= is an error" "see out/check/${log##*/}"
    fi
    rm -f "$img"
}
guests() {
    echo "== guests"
    local build accel smp
    for build in patched base; do
        local bin=$Q
        [ $build = base ] && bin=$QB
        for accel in kvm tcg; do
            for smp in 1 2 4; do
                tiny "$build-$accel-smp$smp-port80" "$bin" $accel $smp hammer target=port80 count=5000
                tiny "$build-$accel-smp$smp-pmtimer" "$bin" $accel $smp hammer target=pmtimer count=5000
                tiny "$build-$accel-smp$smp-hpet" "$bin" $accel $smp hammer target=hpet count=5000
                tiny "$build-$accel-smp$smp-rtc" "$bin" $accel $smp hammer target=rtc count=2000
                tiny "$build-$accel-smp$smp-halt" "$bin" $accel $smp halt count=500
            done
            # kvm_pvm delivers an IPI to a spinning vCPU only at the end of an
            # emulation batch (tens of ms): few rounds.
            tiny "$build-$accel-smp2-ipi" "$bin" $accel 2 ipi count=20
            # The userspace local APIC (TCG; KVM's is in the kernel): each
            # vCPU's own TPR through the one MMIO page, IPIs among 4 vCPUs.
            if [ $accel = tcg ]; then
                tiny "$build-tcg-smp4-apic" "$bin" tcg 4 hammer target=apic count=20000
                tiny "$build-tcg-smp4-ipi" "$bin" tcg 4 ipi count=20
            fi
            # The series' APIC back under the BQL (x-unlocked-dispatch=off).
            if [ $accel = tcg ] && [ $build = patched ]; then
                tiny "$build-tcg-smp4-apic-bql" "$bin" tcg 4 \
                    hammer target=apic count=20000 -- -global apic.x-unlocked-dispatch=off
                tiny "$build-tcg-smp4-ipi-bql" "$bin" tcg 4 \
                    ipi count=20 -- -global apic.x-unlocked-dispatch=off
            fi
            # The VGA window from every vCPU (planar write, read back
            # through the latches); under KVM its writes go through the
            # coalesced ring, flushed into the device lock.  A smoke test
            # of the locking: a lock-free window passed it too.
            for smp in 2 4; do
                tiny "$build-$accel-smp$smp-vga" "$bin" $accel $smp \
                    hammer target=vga count=20000 -- -device VGA
            done
            if [ $build = patched ]; then
                tiny "$build-$accel-smp4-vga-bql" "$bin" $accel 4 \
                    hammer target=vga count=20000 -- -device VGA,x-unlocked-dispatch=off
            fi
        done
        tiny "$build-kvm-q35-smp2-pmtimer" "$bin" kvm 2 --machine q35 hammer target=pmtimer count=5000 2>/dev/null
    done
    # virtio-blk from every vCPU (guest/tiny/vblk.c, one queue each): the
    # main loop, -object iothread and x-dedicated-iothread (patched only),
    # completion by polling and by MSI-X (irqfd from an IOThread on KVM).
    local img=$logdir/vblk.img irq mode dev
    for build in patched base; do
        local bin=$Q
        [ $build = base ] && bin=$QB
        for accel in kvm tcg; do
            for irq in poll msix; do
                for mode in mainloop iothread dedicated; do
                    [ $build = base ] && [ $mode = dedicated ] && continue
                    dev="virtio-blk-pci,drive=d0"
                    [ $mode = iothread ] && dev="$dev,iothread=io0"
                    [ $mode = dedicated ] && dev="$dev,x-dedicated-iothread=on"
                    rm -f "$img" && truncate -s 64M "$img"
                    local label=$build-$accel-smp2-vblk-$irq-$mode trc=()
                    # The series: under TCG (no irqfd) the IOThread sends
                    # the MSI-X message itself.
                    [ $build = patched ] && [ $accel = tcg ] && [ $irq = msix ] &&
                        [ $mode != mainloop ] &&
                        trc=(-trace virtio_notify_without_bql -trace virtio_notify_irqfd_deferred_fn
                             -D "$logdir/tiny-$label.trace")
                    tiny "$label" "$bin" $accel 2 \
                        vblk irq=$irq count=$([ $accel = kvm ] && echo 600 || echo 4000) depth=4 -- \
                        -object iothread,id=io0 \
                        -drive file="$img",if=none,id=d0,format=raw,cache=none,aio=threads \
                        -device "$dev" "${trc[@]}"
                    [ ${#trc[@]} -gt 0 ] && msix_path "$label" iothread
                done
            done
        done
    done
    # MSI-X completion from an IOThread with the series' APIC under the BQL.
    rm -f "$img" && truncate -s 64M "$img"
    # The APIC needs the BQL then, so the main loop raises the interrupts.
    tiny "patched-tcg-smp2-vblk-msix-iothread-apic-bql" "$Q" tcg 2 \
        vblk irq=msix count=4000 depth=4 -- \
        -object iothread,id=io0 \
        -drive file="$img",if=none,id=d0,format=raw,cache=none,aio=threads \
        -device virtio-blk-pci,drive=d0,iothread=io0 -global apic.x-unlocked-dispatch=off \
        -trace virtio_notify_without_bql -trace virtio_notify_irqfd_deferred_fn \
        -D "$logdir/tiny-patched-tcg-smp2-vblk-msix-iothread-apic-bql.trace"
    msix_path patched-tcg-smp2-vblk-msix-iothread-apic-bql main-loop
    # MSI-X aimed at the HPET (its read-only ID register): a lock-free
    # region whose callbacks may take the BQL, which an IOThread must never
    # wait for.  The IOThread must leave every interrupt to the main loop
    # (with patch 52's rule dropped, it wrote to the HPET itself: 300 of
    # 300).  The guest finds its completions by its 10 ms timer.
    rm -f "$img" && truncate -s 64M "$img"
    tiny "patched-tcg-smp2-vblk-msix-to-hpet" "$Q" tcg 2 \
        vblk irq=msix msi_addr=0xfed00000 tick=10000 count=200 depth=4 -- \
        -drive file="$img",if=none,id=d0,format=raw,cache=none,aio=threads \
        -device virtio-blk-pci,drive=d0,x-dedicated-iothread=on \
        -trace virtio_notify_without_bql -trace virtio_notify_irqfd_deferred_fn \
        -D "$logdir/tiny-patched-tcg-smp2-vblk-msix-to-hpet.trace"
    msix_path patched-tcg-smp2-vblk-msix-to-hpet main-loop
    vblk_isr
    rm -f "$img"
    mmio_dedicated
    apic_flag
    virtio_flag
    # Data integrity of an x-dedicated-iothread disk across stop/cont,
    # reset, savevm/loadvm, migration to a file (Linux, TCG), SIGKILL after
    # a flush and stop/cont (tiny guest, KVM).  stop-cont hung 5 runs in 16
    # before the series' virtio-blk fix (v10.2.2 hangs too).
    local case
    for case in stop-cont reset savevm migrate tiny-flush-kill tiny-stop-cont; do
        integrity "$case" "$case"
    done
    # Kicks through virtio-pci's bottom half (no ioeventfd) racing with
    # stops: a stop must run the pending ones (with a discard instead, this
    # hung on its first run).
    integrity tiny-stop-cont-no-ioeventfd tiny-stop-cont --blk-opts ",ioeventfd=off"
    # The series' own stress qtest, on KVM (upstream's suites above ran it
    # on TCG): against the patched build, and the base as a reference.
    for build in patched base; do
        local bin=$Q log=$logdir/locking-stress-kvm-$build.log skips=()
        if [ $build = base ]; then
            # v10.2.2 loses a coalesced PIO write (the RTC index) when a
            # migration or savevm stops the VM before it is flushed: those
            # cases fail there 2 times in 10; the series fixes it.
            # It also shows a virtio-blk capacity that the disk never had
            # to a driver that reads it across a resize (the generation
            # moves later, in a bottom half): block_resize fails there in
            # its first round.
            bin=$QB
            skips=(-s /x86_64/locking-stress/x86/migrate -s /x86_64/locking-stress/x86/savevm
                   -s /x86_64/locking-stress/x86/pc/virtio-blk-pci/block_resize)
            skip "locking-stress-test: kvm-base migrate, savevm" \
                 "v10.2.2 loses coalesced writes across a stop (fixed by the series)"
            skip "locking-stress-test: kvm-base block_resize" \
                 "v10.2.2 tears virtio-blk's capacity across a resize (fixed by the series)"
        fi
        if ! [ -c /dev/kvm ] || ! [ -w /dev/kvm ]; then
            skip "locking-stress-test: kvm-$build" "/dev/kvm missing or unusable"
        elif [ ! -x qemu/build/tests/qtest/locking-stress-test ]; then
            fail "locking-stress-test: kvm-$build" "test binary not built"
        elif (cd qemu/build && QTEST_QEMU_BINARY=$bin QTEST_QEMU_IMG=./qemu-img \
                timeout 600 ./tests/qtest/locking-stress-test --tap -k "${skips[@]}") >"$log" 2>&1; then
            pass "locking-stress-test: kvm-$build"
        else
            fail "locking-stress-test: kvm-$build" "see out/check/${log##*/}"
        fi
    done
    # The debug build (--enable-debug) compiles in the lock-order
    # assertions that release builds leave out: the stress test on it,
    # under KVM and (with /dev/kvm hidden) TCG.
    local dbg=$top/out/build-debug accel
    for accel in kvm tcg; do
        local log=$logdir/locking-stress-debug-$accel.log hide=()
        [ $accel = tcg ] && [ -e /dev/kvm ] && hide=(unshare -m sh -c 'mount --bind /dev/null /dev/kvm && exec "$@"' sh)
        if [ $accel = kvm ] && { ! [ -c /dev/kvm ] || ! [ -w /dev/kvm ]; }; then
            skip "locking-stress-test: debug-$accel" "/dev/kvm missing or unusable"
        elif [ ! -x "$dbg/tests/qtest/locking-stress-test" ]; then
            fail "locking-stress-test: debug-$accel" "debug build missing: make build"
        elif (cd "$dbg" && QTEST_QEMU_BINARY=./qemu-system-x86_64 \
                QTEST_QEMU_IMG=$top/qemu/build/qemu-img timeout 900 \
                "${hide[@]}" ./tests/qtest/locking-stress-test --tap -k) >"$log" 2>&1; then
            pass "locking-stress-test: debug-$accel"
        else
            fail "locking-stress-test: debug-$accel" "see out/check/${log##*/}"
        fi
    done
    linux tcg-smp1-smoke --smp 1 smoke expect_cpus=1
    linux tcg-smp2-smoke --smp 2 smoke expect_cpus=2
    linux tcg-smp2-fio-mainloop --smp 2 fio runtime=3
    linux tcg-smp2-fio-iothread --smp 2 --blk-opts ",iothread=io0" fio runtime=3 \
        -- -object iothread,id=io0
    linux tcg-smp2-fio-dedicated --smp 2 --blk-opts ",x-dedicated-iothread=on" fio runtime=3
    linux tcg-smp2-hammer --smp 2 hammer port=0x80 op=outb threads=2 secs=2
    if [ -w /dev/kvm ] && grep -qw -e vmx -e svm /proc/cpuinfo; then
        linux kvm-smp2-smoke --accel kvm --smp 2 smoke expect_cpus=2
    else
        skip "linux: kvm-smp2-smoke" "no hardware virtualization (kvm_pvm): Linux does not boot under -accel kvm here"
    fi
}

# ---- 4. cost ----------------------------------------------------------------------
# insn_cost LABEL MAX TARGET: host instructions per access of a TCG hammer
# (1 vCPU, callgrind: bench/tcg-instructions.sh), patched against base,
# must be at most MAX percent of the base's.  Counts repeat to about 10
# instructions where timed runs here spread +-10%: an outlined ioeventfd
# match in patch 32 (+8% per port 0x80 write) sat in the series for a
# day because only timed runs looked.
insn_cost() {
    local label=$1 max=$2 target=$3 log=$logdir/insn-$3.log pb pp pid
    if ! command -v valgrind >/dev/null; then
        fail "cost: $label" "valgrind missing: scripts/deps.sh installs it"
        return
    fi
    bench/tcg-instructions.sh "$QB" "$target" >"$log.base" 2>&1 &
    pid=$!
    bench/tcg-instructions.sh "$Q" "$target" >"$log" 2>&1
    wait "$pid"
    pb=$(sed -n 's/.*: \([0-9]*\) instructions per access.*/\1/p' "$log.base")
    pp=$(sed -n 's/.*: \([0-9]*\) instructions per access.*/\1/p' "$log")
    if [ -z "$pb" ] || [ -z "$pp" ] || [ "$pb" -le 0 ] || [ "$pp" -le 0 ]; then
        fail "cost: $label" "no count, see out/check/${log##*/} and ${log##*/}.base"
    elif [ $((pp * 100)) -le $((pb * max)) ]; then
        pass "cost: $label $pp instructions per access, base $pb (at most $max%)"
    else
        fail "cost: $label" "$pp instructions per access, base $pb: over $max%"
    fi
}
cost() {
    echo "== cost"
    # Paths the series takes nothing off: a region under the BQL and
    # upstream's lock-free PM timer (1.025x and 1.012x when written).
    insn_cost "port80 (BQL)" 105 port80
    insn_cost "pmtimer (lock-free)" 105 pmtimer
    # A converted device and a lock-free MMIO region, whose TCG accesses
    # no longer take the BQL (0.99x and 0.87x when written).
    insn_cost "rtc (dispatch lock)" 102 rtc
    insn_cost "hpet (lock-free MMIO)" 95 hpet
}

want hygiene && hygiene
want upstream && upstream
want guests && guests
want cost && cost

if [ ${#failed[@]} -gt 0 ]; then
    echo "== failed:"
    printf '  %s\n' "${failed[@]}"
fi
[ -n "${CI_START:-}" ] && echo "ci: $(( $(date +%s) - CI_START )) s since the start of .ci/run"
echo "$npass passed, $nfail failed, $nskip skipped"
[ "$nfail" -eq 0 ]
