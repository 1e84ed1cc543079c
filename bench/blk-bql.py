#!/usr/bin/python3
"""BQL acquisitions per virtio-blk request, per QEMU thread.

    bench/blk-bql.py [--build patched|base] [--accel tcg|kvm] [--smp N]
                     [--mode mainloop|iothread|dedicated] [--guest linux|tiny]
                     [--irq poll|msix] [--secs S] [--sites] [--json FILE]
    bench/blk-bql.py --matrix PREFIX    (all of them; PREFIX.json, PREFIX.md)

Boots a guest that keeps a virtio-blk disk busy (the Linux guest's fio
randread, or the tiny firmware's timed vblk write pass, 16 requests in
flight per vCPU), waits for the steady state (fio: reads grow while
writes stand still; tiny: writes grow),
then counts the BQL acquisitions of every QEMU thread for S seconds with
scripts/bql-count.sh (uprobes, so the base build can be counted too) and
divides them by the requests that query-blockstats saw complete in the
same window.  The two query-blockstats commands themselves cost the main
loop a handful of acquisitions, which a window of thousands of requests
makes negligible.

mode: mainloop (no IOThread), iothread (-object iothread + iothread=),
dedicated (x-dedicated-iothread=on, the series only).
Prints one line per thread with a non-zero count and a total:
    BLKBQL mode=M accel=A thread="CPU 0/TCG" count=N per_req=X
    BLKBQL mode=M accel=A reqs=R window_s=S iops=I
"""
import argparse, json, os, re, subprocess, sys, tempfile, threading, time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, 'qemu', 'python'))
from qemu.qmp.legacy import QEMUMonitorProtocol  # noqa: E402

BIN = {'base': f'{TOP}/qemu-base/build/qemu-system-x86_64',
       'patched': f'{TOP}/qemu/build/qemu-system-x86_64'}


def blk_opts(mode):
    """(--blk-opts string, extra QEMU args) for a mode."""
    if mode == 'iothread':
        return ',id=disk0,iothread=io0', ['-object', 'iothread,id=io0']
    if mode == 'dedicated':
        return ',id=disk0,x-dedicated-iothread=on', []
    return ',id=disk0', []


def guest_cmd(a, tmp):
    opts, extra = blk_opts(a.mode)
    extra += ['-name', 'blkbql,debug-threads=on', '-pidfile', f'{tmp}/pid',
              '-D', f'{tmp}/trace.log',
              '-qmp', f'unix:{tmp}/qmp.sock,server=on,wait=off']
    if a.guest == 'linux':
        # A short write phase (16 MiB per job), then randread until the
        # window is over and QEMU is told to quit.  The ACPI PM timer as
        # clocksource: its reads are lock-free in base and series alike
        # (the HPET's take the BQL under base's TCG; the TSC runs fast
        # under TCG and ends a time-based fio early).
        return [f'{TOP}/scripts/run-linux-guest.sh', '--qemu', BIN[a.build],
                '--accel', a.accel, '--smp', str(a.smp), '--blk-opts', opts,
                '--append', 'clocksource=acpi_pm', '--timeout', '300',
                'fio', f'numjobs={a.smp}', 'size_mib=16', 'iodepth=32', 'read_verify=0',
                'runtime=900', '--'] + extra
    disk = f'{tmp}/disk.raw'
    subprocess.run(['truncate', '-s', '64M', disk], check=True)
    return [f'{TOP}/scripts/run-tiny-guest.sh', '--qemu', BIN[a.build],
            '--accel', a.accel, '--smp', str(a.smp), '--timeout', '300',
            'vblk', f'irq={a.irq}', 'mode=rw', 'depth=16', 'data=hdr',
            f'secs={a.secs + 12}', '--',
            '-drive', f'file={disk},if=none,id=d0,format=raw,cache=none,aio=threads',
            '-device', f'virtio-blk-pci,drive=d0{opts}'] + extra


def blockstats(mon):
    for dev in mon.cmd('query-blockstats'):
        if dev.get('qdev', '').endswith('disk0') or dev.get('device') == 'd0':
            st = dev['stats']
            return st['rd_operations'], st['wr_operations']
    raise RuntimeError('disk0 not in query-blockstats')


def measure(a):
    tmp = tempfile.mkdtemp()
    cmd = guest_cmd(a, tmp)
    guest = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    out = []
    reader = threading.Thread(target=lambda: out.extend(guest.stdout), daemon=True)
    reader.start()
    for _ in range(600):
        if os.path.exists(f'{tmp}/qmp.sock') and os.path.exists(f'{tmp}/pid'):
            break
        time.sleep(0.05)
    mon = QEMUMonitorProtocol(f'{tmp}/qmp.sock')
    mon.connect()
    try:
        return steady_and_count(a, tmp, mon, guest, reader, out)
    except Exception:
        guest.wait(30)
        reader.join(5)
        sys.stderr.write(''.join(out[-40:]))
        raise


def steady_and_count(a, tmp, mon, guest, reader, out):
    pid = open(f'{tmp}/pid').read().strip()
    # Steady state: the Linux guest's reads grow and its writes have
    # stopped for a second (fio's randread); the tiny guest's writes grow
    # (its timed write pass).
    prev = blockstats(mon)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(1)
        cur = blockstats(mon)
        if a.guest == 'linux' and cur[0] - prev[0] > 100 and cur[1] == prev[1]:
            break
        if a.guest == 'tiny' and cur[1] - prev[1] > 100:
            break
        prev = cur
    else:
        raise RuntimeError('no steady state within 120 s')
    t0 = time.monotonic()
    r0 = blockstats(mon)
    if a.sites:
        mon.cmd('trace-event-set-state', name='bql_lock', enable=True)
    p = subprocess.run([f'{TOP}/scripts/bql-count.sh', pid, str(a.secs)],
                       capture_output=True, text=True)
    if a.sites:
        mon.cmd('trace-event-set-state', name='bql_lock', enable=False)
    r1 = blockstats(mon)
    window = time.monotonic() - t0
    if p.returncode:
        raise RuntimeError(f'bql-count: {p.stderr.strip()}')
    try:
        mon.cmd('quit')
    except Exception:
        pass
    try:
        mon.close()
    except EOFError:
        pass                # QEMU quit and closed the socket first
    guest.wait()
    reader.join(5)
    reqs = (r1[0] - r0[0]) + (r1[1] - r0[1])
    threads = []
    for line in p.stdout.splitlines():
        m = re.match(r'BQL thread="([^"]*)" tid=\d+ .* total=(\d+)', line)
        if m:
            threads.append((m.group(1), int(m.group(2))))
    sites = {}
    if a.sites and os.path.exists(f'{tmp}/trace.log'):
        for line in open(f'{tmp}/trace.log'):
            m = re.search(r'bql_lock vCPU (-?\d+) at (\S+)', line)
            if m:
                key = f"{'vCPU' if m.group(1) != '-1' else 'other'} {m.group(2)}"
                sites[key] = sites.get(key, 0) + 1
    subprocess.run(['rm', '-rf', tmp])
    return dict(sites=sites, build=a.build, mode=a.mode, accel=a.accel, guest=a.guest,
                irq=a.irq if a.guest == 'tiny' else 'msix', smp=a.smp, reqs=reqs,
                window_s=window, iops=reqs / window,
                threads={n: c for n, c in threads})


def matrix(a):
    """Every build and mode on the tiny guest (KVM and TCG, poll and MSI-X)
    and the Linux guest (TCG): bench/results/blk-bql.{json,md}."""
    runs = []
    configs = [('tiny', acc, irq) for acc in ('kvm', 'tcg') for irq in ('poll', 'msix')]
    configs.append(('linux', 'tcg', 'msix'))
    for guest, accel, irq in configs:
        for build, mode in (('base', 'mainloop'), ('patched', 'mainloop'),
                            ('base', 'iothread'), ('patched', 'iothread'),
                            ('patched', 'dedicated')):
            b = argparse.Namespace(**vars(a))
            b.guest, b.accel, b.irq, b.build, b.mode = guest, accel, irq, build, mode
            b.sites = build == 'patched'
            r = None
            for attempt in range(3):
                try:
                    r = measure(b)
                    break
                except Exception as e:
                    print(f'!! {guest} {accel} {irq} {build} {mode} '
                          f'(try {attempt + 1}): {e!r}', file=sys.stderr)
            if r is None:
                continue
            runs.append(r)
            print(f"{guest} {accel} {irq} {build} {mode}: reqs={r['reqs']} "
                  f"threads={r['threads']}", flush=True)
    with open(f'{a.matrix}.json', 'w') as f:
        json.dump(runs, f, indent=1)
    with open(f'{a.matrix}.md', 'w') as f:
        f.write('BQL acquisitions per virtio-blk request, by thread '
                '(bench/blk-bql.py --matrix; 2 cores, kvm_pvm; '
                f'{a.smp} vCPUs, {a.secs} s window in the steady state)\n\n')
        f.write('| guest | accel | completion | build | mode | IOPS | vCPUs | '
                'IOThread | main loop | BQL sites on the patched build |\n')
        f.write('|---|---|---|---|---|---|---|---|---|---|\n')
        for r in runs:
            n = max(r['reqs'], 1)
            vcpu = sum(c for t, c in r['threads'].items() if t.startswith('CPU '))
            io = sum(c for t, c in r['threads'].items() if t.startswith('IO '))
            main = sum(c for t, c in r['threads'].items()
                       if not t.startswith(('CPU ', 'IO ')))
            sites = ', '.join(f"{k.split('/')[-1]} {v / n:.3f}" for k, v in
                              sorted(r['sites'].items(), key=lambda kv: -kv[1])[:4])
            f.write(f"| {r['guest']} | {r['accel']} | {r['irq']} | {r['build']} | "
                    f"{r['mode']} | {r['iops']:.0f} | {vcpu / n:.3f} | {io / n:.3f} | "
                    f"{main / n:.3f} | {sites or '-'} |\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--build', default='patched', choices=BIN)
    ap.add_argument('--accel', default='tcg')
    ap.add_argument('--smp', type=int, default=2)
    ap.add_argument('--mode', default='dedicated',
                    choices=('mainloop', 'iothread', 'dedicated'))
    ap.add_argument('--guest', default='linux', choices=('linux', 'tiny'))
    ap.add_argument('--irq', default='poll', choices=('poll', 'msix'))
    ap.add_argument('--secs', type=int, default=3)
    ap.add_argument('--sites', action='store_true',
                    help='also tally the call sites (-trace bql_lock, series only)')
    ap.add_argument('--json')
    ap.add_argument('--matrix', metavar='PREFIX',
                    help='run every guest/accel/irq/build/mode, write PREFIX.{json,md}')
    a = ap.parse_args()
    if a.matrix:
        matrix(a)
        return
    r = measure(a)
    tag = f"build={r['build']} mode={r['mode']} accel={r['accel']} guest={r['guest']} irq={r['irq']}"
    for name, count in sorted(r['threads'].items()):
        print(f'BLKBQL {tag} thread="{name}" count={count} '
              f'per_req={count / max(r["reqs"], 1):.4f}')
    for site, count in sorted(r['sites'].items(), key=lambda kv: -kv[1]):
        print(f'BLKBQL {tag} site="{site}" count={count} '
              f'per_req={count / max(r["reqs"], 1):.4f}')
    print(f"BLKBQL {tag} reqs={r['reqs']} window_s={r['window_s']:.2f} iops={r['iops']:.0f}")
    if a.json:
        with open(a.json, 'w') as f:
            json.dump(r, f, indent=1)


if __name__ == '__main__':
    main()
