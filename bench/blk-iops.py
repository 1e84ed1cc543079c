#!/usr/bin/python3
"""virtio-blk IOPS and host CPU per I/O: main loop, IOThread, x-dedicated-iothread.

    bench/blk-iops.py [--reps N] [--smp N] [--depths 1,32] [--out PREFIX]
    bench/blk-iops.py --plot-only PREFIX     (PREFIX.svg from PREFIX.json)

The Linux guest (TCG, one fio job per vCPU, 4 KiB, libaio... io_uring)
runs randwrite then time-based randread on a null-co disk and on a raw
file in /dev/shm, at iodepth 1 and 32.  For each phase the harness takes
a window in its steady state (only that phase's counter grows in
query-blockstats) and reports the disk's IOPS over the window and the
host CPU time of the whole QEMU process per I/O (utime + stime from
/proc/PID/stat).  Configurations, alternated in each repetition:
  base-mainloop      unpatched, no IOThread
  base-iothread      unpatched, -object iothread + iothread=
  patched-iothread   the series, iothread=
  patched-dedicated  the series, x-dedicated-iothread=on
Writes PREFIX.json, PREFIX.md (default bench/results/blk-iops): median
(min-max) of the repetitions, and the ratios to base-mainloop and
base-iothread; and PREFIX.svg, the medians as bars with min-max error
bars (gnuplot).  No data is checked here (verify=0): scripts/blk-integrity.py
and the guests' own checks do that.
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, threading, time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, 'qemu', 'python'))
from qemu.qmp.legacy import QEMUMonitorProtocol  # noqa: E402

BIN = {'base': f'{TOP}/qemu-base/build/qemu-system-x86_64',
       'patched': f'{TOP}/qemu/build/qemu-system-x86_64'}
CONFIGS = ['base-mainloop', 'base-iothread', 'patched-iothread', 'patched-dedicated']
HZ = os.sysconf('SC_CLK_TCK')
WINDOW = 1.5


def drive(backend, tmp):
    if backend == 'null':
        return 'driver=null-co,size=512M,read-zeroes=on,if=none,id=d0'
    img = f'/dev/shm/blk-iops-{os.getpid()}.raw'
    subprocess.run(['truncate', '-s', '512M', img], check=True)
    return f'file={img},if=none,id=d0,format=raw,cache=writeback,aio=threads'


def cpu_ticks(pid):
    f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    return int(f[11]) + int(f[12])          # utime, stime


def run_one(config, backend, depth, smp):
    build, mode = config.split('-')
    opts = {'mainloop': ',id=disk0', 'iothread': ',id=disk0,iothread=io0',
            'dedicated': ',id=disk0,x-dedicated-iothread=on'}[mode]
    tmp = tempfile.mkdtemp()
    sock, pidf = f'{tmp}/qmp.sock', f'{tmp}/pid'
    cmd = [f'{TOP}/scripts/run-linux-guest.sh', '--qemu', BIN[build], '--smp', str(smp),
           '--drive', drive(backend, tmp), '--blk-opts', opts, '--timeout', '300',
           'fio', f'numjobs={smp}', f'size_mib={64 if depth == 1 else 128}',
           f'iodepth={depth}', 'runtime=8',
           'verify=0', '--', '-object', 'iothread,id=io0', '-pidfile', pidf,
           '-qmp', f'unix:{sock},server=on,wait=off']
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = []
    threading.Thread(target=lambda: out.extend(p.stdout), daemon=True).start()
    for _ in range(400):
        if os.path.exists(sock) and os.path.exists(pidf):
            break
        time.sleep(0.05)
    mon = QEMUMonitorProtocol(sock)
    mon.connect()
    pid = open(pidf).read().strip()

    def sample():
        st = next(d['stats'] for d in mon.cmd('query-blockstats') if d.get('device') == 'd0')
        return time.monotonic(), st['rd_operations'], st['wr_operations'], cpu_ticks(pid)

    res = {}
    try:
        for phase, grows, still in (('randwrite', 2, 1), ('randread', 1, 2)):
            prev = sample()
            while True:                      # two samples in this phase only
                time.sleep(0.25)
                cur = sample()
                if cur[grows] > prev[grows] and cur[still] == prev[still]:
                    break
                prev = cur
            time.sleep(0.25)
            a = sample()
            time.sleep(WINDOW)
            b = sample()
            if b[still] != a[still]:
                raise RuntimeError(f'{phase}: the window left the phase: {a} {b}')
            ops = b[grows] - a[grows]
            res[phase] = {'iops': ops / (b[0] - a[0]),
                          'cpu_us_per_io': (b[3] - a[3]) * 1e6 / HZ / max(ops, 1)}
    finally:
        try:
            mon.cmd('quit')
        except Exception:
            pass
        p.wait()
        subprocess.run(['rm', '-rf', tmp, f'/dev/shm/blk-iops-{os.getpid()}.raw'])
    return res


def med(xs):
    return statistics.median(xs), min(xs), max(xs)


def plot(runs, out):
    """@out.svg: IOPS per backend, depth and phase, one bar per config."""
    groups = sorted({(r['backend'], r['depth']) for r in runs})
    rows = []
    for backend, depth in groups:
        for phase in ('randwrite', 'randread'):
            cells = []
            for c in CONFIGS:
                v = [r[phase]['iops'] for r in runs if r['config'] == c and
                     r['backend'] == backend and r['depth'] == depth]
                cells += list(med(v)) if v else ['NaN'] * 3
            rows.append(f'"{backend} qd{depth} {phase}" ' + ' '.join(map(str, cells)))
    with open(f'{out}.dat', 'w') as f:
        f.write('\n'.join(rows) + '\n')
    cols = ', '.join(f"'{out}.dat' using {2 + 3 * i}:{3 + 3 * i}:{4 + 3 * i}"
                     f"{':xtic(1)' if i == 0 else ''} title '{c}'"
                     for i, c in enumerate(CONFIGS))
    script = f"""set terminal svg size 1000,480 dynamic
set output '{out}.svg'
set title 'virtio-blk IOPS (median, min-max), Linux guest under TCG, 2 vCPUs, 2 host cores'
set style data histograms
set style histogram errorbars gap 2 lw 1
set style fill solid 0.6 border -1
set ylabel 'IOPS'
set yrange [0:*]
set key below horizontal
set xtics rotate by -20
plot {cols}
"""
    subprocess.run(['gnuplot'], input=script, text=True, check=True)
    os.unlink(f'{out}.dat')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--reps', type=int, default=int(os.environ.get('REPS', 5)))
    ap.add_argument('--smp', type=int, default=2)
    ap.add_argument('--out', default=f'{TOP}/bench/results/blk-iops')
    ap.add_argument('--depths', default='1,32', help='comma-separated iodepths')
    ap.add_argument('--plot-only', metavar='PREFIX',
                    help='only draw PREFIX.svg from PREFIX.json')
    a = ap.parse_args()
    if a.plot_only:
        plot(json.load(open(f'{a.plot_only}.json')), a.plot_only)
        return
    depths = [int(d) for d in a.depths.split(',')]
    runs = []
    for rep in range(a.reps):
        order = CONFIGS if rep % 2 == 0 else CONFIGS[::-1]
        for backend in ('null', 'tmpfs'):
            for depth in depths:
                for config in order:
                    try:
                        r = run_one(config, backend, depth, a.smp)
                    except Exception as e:
                        print(f'!! {config} {backend} qd{depth}: {e!r}', file=sys.stderr)
                        continue
                    runs.append(dict(rep=rep, config=config, backend=backend, depth=depth, **r))
                    print(f"rep{rep} {backend} qd{depth} {config}: " + ' '.join(
                        f"{ph}={r[ph]['iops']:.0f}/{r[ph]['cpu_us_per_io']:.0f}us"
                        for ph in ('randwrite', 'randread')), flush=True)
    json.dump(runs, open(f'{a.out}.json', 'w'), indent=1)
    with open(f'{a.out}.md', 'w') as f:
        f.write(f'virtio-blk, Linux guest under TCG, {a.smp} vCPUs, one fio job per vCPU, '
                f'4 KiB; median (min-max) of {a.reps} alternating repetitions; '
                f'host: 2 cores (bench/blk-iops.py)\n\n')
        f.write('| backend | qd | phase | config | IOPS | CPU µs/IO | / base-mainloop | '
                '/ base-iothread |\n|---|---|---|---|---|---|---|---|\n')
        for backend in ('null', 'tmpfs'):
            for depth in depths:
                for phase in ('randwrite', 'randread'):
                    def vals(c, key='iops'):
                        return [r[phase][key] for r in runs if r['config'] == c and
                                r['backend'] == backend and r['depth'] == depth]

                    def ratio(c, ref):
                        pairs = [(x[phase]['iops'], y[phase]['iops']) for x in runs for y in runs
                                 if x['config'] == c and y['config'] == ref and
                                 x['rep'] == y['rep'] and x['backend'] == y['backend'] == backend
                                 and x['depth'] == y['depth'] == depth]
                        if not pairs or c == ref:
                            return '-'
                        m = med([x / y for x, y in pairs])
                        return f'{m[0]:.2f} ({m[1]:.2f}-{m[2]:.2f})'
                    for c in CONFIGS:
                        if not vals(c):
                            continue
                        i, c_ = med(vals(c)), med(vals(c, 'cpu_us_per_io'))
                        f.write(f'| {backend} | {depth} | {phase} | {c} | {i[0]:.0f} '
                                f'({i[1]:.0f}-{i[2]:.0f}) | {c_[0]:.0f} ({c_[1]:.0f}-{c_[2]:.0f}) | '
                                f'{ratio(c, "base-mainloop")} | {ratio(c, "base-iothread")} |\n')
    plot(runs, a.out)
    print(open(f'{a.out}.md').read())


if __name__ == '__main__':
    main()
