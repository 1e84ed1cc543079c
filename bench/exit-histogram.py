#!/usr/bin/env python3
"""Count the Linux test guest's I/O accesses by memory region.

    bench/exit-histogram.py --qemu PATH [--smp N] [--out FILE.md] \\
        [--] [run-linux-guest.sh SCENARIO and key=value arguments]

Boots the Linux guest (scripts/run-linux-guest.sh, TCG) with the
memory_region_ops_read/write trace events logged to a FIFO, and counts
the vCPU threads' accesses (cpu >= 0) by region name.  Under KVM these
would be the exits to userspace; under TCG they are the accesses that
leave the TLB fast path.

Which accesses took the BQL: where the build has the bql_lock trace event
(the series), from the run itself: an access counts as under the BQL if
its vCPU thread took the BQL in prepare_mmio_access() (system/physmem.c)
right before it (or before the first part of an access that the memory
core split), whatever the region, its flag or the command line say.
A build without the event (v10.2.2) is classified from its source tree
(--tree), with the table of region names below: a name whose region the
tree does not declare lock-free or dispatch-locked counts as BQL, and so
does an MMIO region where TCG's slow path (accel/tcg/cputlb.c) takes the
BQL unconditionally, as v10.2.2 does (port I/O goes through
address_space_rw(), which honours lockless_io there).

Not counted: writes that an ioeventfd consumes (virtio notify with
ioeventfd=on) never reach the region's ops, so the trace does not see
them, although under TCG their dispatch still takes the BQL; classified
from the run, that BQL acquisition is billed to the vCPU's next traced
access (mostly an HPET read), so the total under the BQL is right and
the region is not.  Unnamed
regions (TCG's subpage containers, which forward to a named region that
is counted too, and the unassigned region) are left out.
"""

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
import threading

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Region name -> (source file, marker that makes it lock-free or
# dispatch-locked there, what it then is, MMIO rather than port I/O).
# Checked against --tree at run time.
UNLOCKED = {
    'acpi-tmr': ('hw/acpi/core.c', 'memory_region_enable_lockless_io', 'lock-free', False),
    'hpet': ('hw/timer/hpet.c', 'memory_region_enable_lockless_io', 'lock-free', True),
    'pc-testdev-ioport': ('hw/misc/pc-testdev.c', 'memory_region_set_dispatch_lock',
                          'device lock', False),
    'pc-testdev-ioport-byte': ('hw/misc/pc-testdev.c', 'memory_region_set_dispatch_lock',
                               'device lock', False),
    'pc-testdev-flush-page': ('hw/misc/pc-testdev.c', 'memory_region_set_dispatch_lock',
                              'device lock', False),
    'pc-testdev-iomem': ('hw/misc/pc-testdev.c', 'memory_region_set_dispatch_lock',
                         'device lock', True),
}

LINE = re.compile(r"memory_region_ops_(read|write) cpu (-?\d+) mr \S+ addr (\S+) "
                  r"value \S+ size (\d+) name '([^']*)'")
BQL = re.compile(r"bql_lock vCPU (-?\d+) at (\S+):\d+")


def classify(tree):
    """Region name -> how the tree dispatches it from a TCG vCPU."""
    kinds = {}
    # v10.2.2's cputlb.c takes the BQL around every MMIO access, lock-free
    # regions included; the series makes it ask prepare_mmio_access().
    cputlb = open(os.path.join(tree, 'accel/tcg/cputlb.c')).read()
    tcg_mmio_honours = 'prepare_mmio_access' in cputlb
    for name, (path, marker, kind, mmio) in UNLOCKED.items():
        try:
            src = open(os.path.join(tree, path)).read()
        except OSError:
            continue
        if marker in src and (tcg_mmio_honours or not mmio):
            kinds[name] = kind
    return kinds


def count(fifo, counts, under_bql):
    """Count accesses by (region, op); under_bql: those whose vCPU took
    the BQL in prepare_mmio_access() just before."""
    # took[cpu]: True once the vCPU took the BQL for its next access; then
    # (region, next address), for the rest of an access that the memory
    # core splits into several callbacks (a dword to a byte-wide region).
    took = {}
    with open(fifo, errors='replace') as f:
        for line in f:
            m = BQL.search(line)
            if m:
                if m.group(2).endswith('physmem.c'):
                    took[int(m.group(1))] = True
                continue
            m = LINE.search(line)
            if not m or int(m.group(2)) < 0:
                continue
            cpu, addr, size, name = (int(m.group(2)), int(m.group(3), 16),
                                     int(m.group(4)), m.group(5))
            t = took.get(cpu)
            bql = t is True or t == (name, addr)
            took[cpu] = (name, addr + size) if bql else None
            if name:                    # unnamed: subpages, unassigned
                counts[(name, m.group(1))] += 1
                under_bql[name] += bql


def has_bql_event(qemu):
    """Does this QEMU have the series' bql_lock trace event?"""
    p = subprocess.run([qemu, '-trace', 'help'], capture_output=True, text=True)
    return any(l.strip() == 'bql_lock' for l in p.stdout.splitlines())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--qemu', required=True)
    ap.add_argument('--tree', help='source tree of that QEMU (default: two '
                    'levels above the binary)')
    ap.add_argument('--smp', default='1')
    ap.add_argument('--out', help='also write the table here (markdown)')
    ap.add_argument('guest', nargs=argparse.REMAINDER,
                    help='scenario and key=value arguments (default: smoke)')
    a = ap.parse_args()
    guest = [g for g in a.guest if g != '--'] or ['smoke']
    tree = a.tree or os.path.dirname(os.path.dirname(os.path.abspath(a.qemu)))
    kinds = classify(tree)

    tmp = tempfile.mkdtemp(prefix='exit-histogram-')
    fifo = os.path.join(tmp, 'trace')
    os.mkfifo(fifo)
    counts = collections.Counter()
    under_bql = collections.Counter()
    traced = has_bql_event(a.qemu)
    reader = threading.Thread(target=count, args=(fifo, counts, under_bql))
    reader.start()
    run = subprocess.run(
        [f'{TOP}/scripts/run-linux-guest.sh', '--qemu', a.qemu, '--smp', a.smp,
         '--timeout', '900'] + guest +
        ['--', '-trace', 'memory_region_ops_read', '-trace',
         'memory_region_ops_write'] + (['-trace', 'bql_lock'] if traced else []) +
        ['-D', fifo],
        stdout=subprocess.PIPE, text=True)
    reader.join()
    os.unlink(fifo)
    os.rmdir(tmp)
    status = [l for l in run.stdout.splitlines() if l.startswith('RUN ')]
    print('\n'.join(status))
    if run.returncode != 0:
        print(run.stdout, file=sys.stderr)
        sys.exit(1)

    regions = collections.defaultdict(lambda: [0, 0])
    for (name, op), n in counts.items():
        regions[name][op == 'write'] += n
    total = sum(counts.values())
    rows = sorted(regions.items(), key=lambda kv: -sum(kv[1]))
    if not traced:
        for k, v in regions.items():
            under_bql[k] = 0 if k in kinds else sum(v)
    bql = sum(under_bql.values())
    how = ('from the bql_lock trace events of the run' if traced else
           'from the source tree (this build has no bql_lock trace event)')
    out = [f"Linux guest `{' '.join(guest)}`, {a.smp} vCPU(s), TCG, "
           f"{os.path.basename(tree)}: {total} vCPU accesses to I/O regions, "
           f"{bql} ({100.0 * bql / max(total, 1):.1f}%) under the BQL ({how}).", '',
           '| region | reads | writes | share | under the BQL |',
           '|---|---|---|---|---|']
    for name, (r, w) in rows:
        out.append(f'| {name or "(unnamed)"} | {r} | {w} | '
                   f'{100.0 * (r + w) / max(total, 1):.1f}% | '
                   f'{100.0 * under_bql[name] / max(r + w, 1):.0f}% |')
    text = '\n'.join(out)
    print(text)
    if a.out:
        with open(a.out, 'w') as f:
            f.write(text + '\n')


if __name__ == '__main__':
    main()
