#!/usr/bin/env python3
"""Per-access latency, p50 and p99, with the main loop idle and busy.

    bench/latency.py            (part of make bench; REPS as for bench.py)

One vCPU of the tiny guest hammers a region (the firmware times one access
in 64 with the TSC, into buckets a sixteenth of an octave wide, 3-6%
apart, and reports p50/p99 as bucket limits) under KVM, on the base and
the patched build, alternating, REPS times each:
  - idle: nothing else runs in QEMU;
  - busy: a QMP client sends query-cpus-fast back to back.  That is what
    management tools poll (libvirt, for vCPU thread ids and halted state),
    and each command holds the BQL in the main loop while it runs; back to
    back, the main loop holds the BQL most of the time.
Regions: pc-testdev's port and MMIO buffer, the RTC (an index/data pair)
and the VGA's legacy window (converted: a device lock), port 0x80 (BQL)
and upstream's lock-free ACPI PM timer and HPET, for reference.
BENCH_ONLY=NAME,... keeps some of them.  The goal for a converted region: busy p99 <= 1.1x idle p99.

PIN=1 runs the vCPU thread alone on host CPU 1 and everything else (QEMU's
other threads, the QMP client) on CPU 0.  Unpinned on a 2-core host, the
main loop answering the storm sometimes runs on the vCPU's core and
preempts it for about as long as it would hold the BQL, which puts a
lock-free region's busy p99 at up to 1.5x its idle p99 in some runs.

Output: bench/results/latency.json and latency.md (BENCH_OUT=PREFIX to
change), medians over the runs with min-max.
"""

import glob
import json
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

TARGETS = [
    ('testdev-port', 'port:0xe0 op=outl', ['-device', 'pc-testdev']),
    ('testdev-mmio', 'mmio:0xff000000 op=read32', ['-device', 'pc-testdev']),
    ('rtc', 'rtc', []),
    ('vga-lowmem', 'mmio:0xa0000 op=read32', ['-device', 'VGA']),
    ('port80', 'port80', []),
    ('pmtimer', 'pmtimer', []),
    ('hpet', 'hpet', []),
]
LOADS = [('idle', None), ('busy', 'query-cpus-fast')]
PIN = os.environ.get('PIN') == '1'


def pin_vcpu(stop, done):
    """Move each thread named "CPU 0/KVM" (debug-threads=on) to CPU 1."""
    while not stop.is_set():
        for comm in glob.glob('/proc/[0-9]*/task/[0-9]*/comm'):
            try:
                tid = int(comm.split('/')[4])
                if tid not in done and open(comm).read().strip() == 'CPU 0/KVM':
                    os.sched_setaffinity(tid, {1})
                    done.add(tid)
            except (OSError, ValueError):
                pass
        time.sleep(0.005)


def one(build, target, qemu, storm):
    stop, pinned = threading.Event(), set()
    if PIN:
        pinner = threading.Thread(target=pin_vcpu, args=(stop, pinned), daemon=True)
        pinner.start()
    r = bench.run_tiny(build, 'kvm', 1, f'hammer target={target} secs={bench.SECS + 1}',
                       storm, qemu=qemu)
    stop.set()
    if PIN:
        pinner.join()
        if not pinned:
            sys.exit(f'latency: {build} {target}: PIN=1 found no vCPU thread to pin')
    v = r['vcpus'].get(0, {})
    if storm and not r.get('storm_cmds_per_s'):
        # A busy run whose storm never ran would pass for an idle one.
        sys.exit(f'latency: {build} {target}: the {storm} storm did not run')
    return dict(p50=v.get('p50_ns'), p99=v.get('p99_ns'), rate=r.get('rate'),
                passed=r['pass'], storm_cmds_per_s=r.get('storm_cmds_per_s'))


def stats(xs):
    xs = [x for x in xs if x is not None]
    return dict(median=statistics.median(xs), min=min(xs), max=max(xs)) if xs else None


def main():
    if not bench.HAVE_KVM:
        print('latency: /dev/kvm missing or unusable, skipped')
        return
    if PIN:
        if os.cpu_count() < 2:
            sys.exit('latency: PIN=1 needs two host CPUs')
        os.sched_setaffinity(0, {0})    # QEMU and the QMP client inherit it
    results = []
    for name, target, qemu in TARGETS:
        if bench.ONLY and not any(o in name for o in bench.ONLY):
            continue
        for load, storm in LOADS:
            runs = {'base': [], 'patched': []}
            for rep in range(bench.REPS):
                for b in (['base', 'patched'] if rep % 2 == 0 else ['patched', 'base']):
                    runs[b].append(one(b, target, qemu, storm))
            e = dict(region=name, load=load)
            for b in runs:
                e[b] = dict(p50=stats([r['p50'] for r in runs[b]]),
                            p99=stats([r['p99'] for r in runs[b]]),
                            rate=stats([r['rate'] for r in runs[b]]),
                            storm_cmds_per_s=stats([r['storm_cmds_per_s'] for r in runs[b]]),
                            all_passed=all(r['passed'] for r in runs[b]))
            print(f"== {name} {load}: p99 base {e['base']['p99']} patched {e['patched']['p99']}",
                  flush=True)
            results.append(e)
    out = os.environ.get('BENCH_OUT', f'{bench.TOP}/bench/results/latency')
    doc = dict(schema=1, date=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
               reps=bench.REPS, secs=bench.SECS + 1, results=results)
    with open(out + '.json', 'w') as f:
        json.dump(doc, f, indent=1)
    lines = [f"Measured {doc['date']}, KVM, 1 vCPU, {bench.REPS} alternating runs per build "
             "and load; medians (min-max) of each run's p50/p99 in ns (bucket limits: "
             "a sixteenth of an octave, 3-6% apart).  busy = back-to-back QMP query-cpus-fast." +
             (" PIN=1: the vCPU thread alone on CPU 1, the rest on CPU 0." if PIN else ""), '',
             '| region | build | p50 idle | p99 idle | p50 busy | p99 busy | p99 busy/idle |',
             '|---|---|---|---|---|---|---|']
    by = {(e['region'], e['load']): e for e in results}
    fmt = lambda s: f"{s['median']:.0f} ({s['min']:.0f}-{s['max']:.0f})" if s else '-'
    for name, _, _ in TARGETS:
        if (name, 'idle') not in by:
            continue
        for b in ('base', 'patched'):
            i, y = by[(name, 'idle')][b], by[(name, 'busy')][b]
            ratio = (y['p99']['median'] / i['p99']['median']
                     if i['p99'] and y['p99'] else float('nan'))
            lines.append(f"| {name} | {b} | {fmt(i['p50'])} | {fmt(i['p99'])} | "
                         f"{fmt(y['p50'])} | {fmt(y['p99'])} | {ratio:.2f} |")
    with open(out + '.md', 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines))
    failed = [f"{e['region']} {e['load']} {b}" for e in results for b in ('base', 'patched')
              if not e[b]['all_passed']]
    if failed:
        print('latency: guest runs failed: ' + ', '.join(failed), file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    main()
