#!/usr/bin/python3
"""make bench: base vs patched (and the raw-KVM floor), in one run.

Every scenario runs REPS times per build, alternating the order of the
builds from one repetition to the next.  Results go to
bench/results/latest.json (schema in README.md), latest.md (table) and
latest.svg (plot).  BQL acquisitions by vCPU threads come from separate
runs under scripts/bql-count.sh (uprobes), so they never slow a timed run.

Environment: REPS (default 5), BENCH_ONLY (comma-separated scenario-name
substrings), BENCH_SECS (seconds per hammer run, default 2).
"""
import json, os, re, socket, statistics, subprocess, sys, tempfile, threading, time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, 'qemu', 'python'))
BIN = {'base': f'{TOP}/qemu-base/build/qemu-system-x86_64',
       'patched': f'{TOP}/qemu/build/qemu-system-x86_64'}
FLOOR = f'{TOP}/out/bench/kvm-floor'
ROM = f'{TOP}/out/guest/tiny/tiny.rom'
REPS = int(os.environ.get('REPS', 5))
SECS = int(os.environ.get('BENCH_SECS', 2))
ONLY = [s for s in os.environ.get('BENCH_ONLY', '').split(',') if s]
HAVE_KVM = os.access('/dev/kvm', os.W_OK)
COUNTING = os.geteuid() == 0 and subprocess.run(
    ['sh', '-c', 'command -v perf'], capture_output=True).returncode == 0


def series_flags():
    out = subprocess.run(['bash', '-c', f'. {TOP}/scripts/series-flags.sh; '
                          'printf "%s\\n" "${SERIES_FLAGS[@]}"'],
                         capture_output=True, text=True).stdout
    return [l for l in out.splitlines() if l]


FLAGS = {'base': [], 'patched': series_flags()}


def parse_tiny(out):
    """RESULT/TOTAL lines of the tiny firmware -> dict."""
    res = {'vcpus': {}}
    for line in out.splitlines():
        kv = dict(re.findall(r'(\w+)=(\S+)', line))
        if line.startswith('RESULT'):
            res['vcpus'][int(kv['vcpu'])] = {k: int(kv[k]) for k in
                                             ('count', 'rate', 'p50_ns', 'p99_ns')}
        elif line.startswith('TOTAL'):
            res['rate'] = int(kv['rate'])
    res['pass'] = 'TINY PASS' in out
    return res


def tiny_cmd(build, accel, smp, gargs, extra=()):
    if build == 'floor':
        return [FLOOR, '-smp', str(smp), '-rom', ROM] + gargs.split()
    return [f'{TOP}/scripts/run-tiny-guest.sh', '--qemu', BIN[build],
            '--accel', accel, '--smp', str(smp), '--timeout', '300'] + \
        gargs.split() + ['--'] + FLAGS[build] + list(extra)


def bql_count(pidfile, secs=1, delay=1.5):
    """Start counting BQL acquisitions of the QEMU in pidfile: a thread.

    The window starts `delay` seconds after QEMU started, past the
    firmware's start-up (fw_cfg, TSC calibration, debug console), so that
    it sees the steady state only."""
    box = {}

    def work():
        for _ in range(100):
            if os.path.exists(pidfile) and open(pidfile).read().strip():
                break
            time.sleep(0.05)
        time.sleep(delay)
        if not os.path.exists(pidfile):
            print('  !! BQL count: the guest ended before counting began', file=sys.stderr)
            return
        pid = open(pidfile).read().strip()
        p = subprocess.run([f'{TOP}/scripts/bql-count.sh', pid, str(secs)],
                           capture_output=True, text=True)
        if p.returncode:
            print(f'  !! BQL count failed: {p.stderr.strip()}', file=sys.stderr)
            return
        out = p.stdout
        vcpu = other = 0
        for line in out.splitlines():
            m = re.match(r'BQL thread="([^"]*)" .* total=(\d+)', line)
            if m and m.group(1).startswith('CPU '):
                vcpu += int(m.group(2))
            elif m:
                other += int(m.group(2))
        box.update(vcpu_per_s=vcpu / secs, other_per_s=other / secs)
    t = threading.Thread(target=work)
    t.start()
    return t, box


class Storm:
    """Main-loop load on QEMU through QMP while the guest runs."""
    def __init__(self, kind, sock, secs=None):
        self.kind, self.sock, self.n, self.stop = kind, sock, 0, False
        self.secs = secs or SECS
        self.error = None

    def run(self):
        from qemu.qmp.legacy import QEMUMonitorProtocol
        # Start once the firmware is past its TSC calibration.
        time.sleep(0.5)
        mon = QEMUMonitorProtocol(self.sock)
        try:
            mon.connect()
        except Exception as e:
            self.error = repr(e)
            return
        try:
            # A bounded storm: under TCG a stopped guest's clock stands
            # still, so an endless stop/cont storm could starve it.
            end = time.monotonic() + self.secs
            while not self.stop and time.monotonic() < end:
                if self.kind == 'info-registers':
                    mon.cmd('human-monitor-command', **{'command-line': 'info registers -a'})
                elif self.kind == 'query-cpus-fast':
                    mon.cmd('query-cpus-fast')
                elif self.kind == 'stop-cont':
                    mon.cmd('stop')
                    mon.cmd('cont')
                self.n += 1
        except Exception:
            pass          # the guest finished and QEMU went away
        try:
            mon.close()
        except Exception:
            pass


def run_tiny(build, accel, smp, gargs, storm=None, count_bql=False, qemu=()):
    extra = ['-name', 'bench,debug-threads=on'] + list(qemu)
    tmp = tempfile.mkdtemp()
    pidfile, sock = f'{tmp}/pid', f'{tmp}/qmp.sock'
    if build != 'floor':
        extra += ['-pidfile', pidfile]
        if storm:
            extra += ['-qmp', f'unix:{sock},server=on,wait=off']
    st = counter = None
    if storm:
        # The counting run's window must fall inside the storm.
        st = Storm(storm, sock, SECS + 2 if count_bql else SECS)
        threading.Thread(target=st.run, daemon=True).start()
    if count_bql:
        counter = bql_count(pidfile)
    t0 = time.monotonic()
    p = subprocess.run(tiny_cmd(build, accel, smp, gargs, extra),
                       capture_output=True, text=True)
    wall = time.monotonic() - t0
    if st:
        st.stop = True
    res = parse_tiny(p.stdout)
    res['wall_s'] = wall
    if st:
        res['storm_cmds_per_s'] = st.n / wall
        if st.error:
            print(f'  !! storm {storm}: {st.error}', file=sys.stderr)
    if counter:
        counter[0].join()
        res.update(counter[1])
    subprocess.run(['rm', '-rf', tmp])
    if not res['pass']:
        print(f'  !! {build} {accel} smp{smp} {gargs}: guest failed\n{p.stdout[-800:]}',
              file=sys.stderr)
    return res


def run_linux_boot(build, smp):
    """Wall time from QEMU start to the guest's /init (TCG), in seconds."""
    cmd = [f'{TOP}/scripts/run-linux-guest.sh', '--qemu', BIN[build], '--smp', str(smp),
           '--timeout', '300', 'smoke', f'expect_cpus={smp}', '--'] + FLAGS[build]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    boot = None
    for line in p.stdout:
        if boot is None and line.startswith('INFO init'):
            boot = time.monotonic() - t0
    p.wait()
    return {'boot_s': boot, 'pass': p.returncode == 0}


def scenarios():
    sc = []
    accels = (['kvm'] if HAVE_KVM else []) + ['tcg']
    for accel in accels:
        for target in ('port80', 'pmtimer', 'hpet', 'rtc'):
            for smp in (1, 2):
                sc.append(dict(name=f'hammer-{target}', accel=accel, smp=smp,
                               kind='tiny', args=f'hammer target={target} secs={SECS}',
                               count_args=f'hammer target={target} secs={SECS + 3}',
                               metric='rate', unit='accesses/s', floor=accel == 'kvm'))
        # pc-testdev, the first device with a dispatch lock: its data port
        # and its MMIO buffer (TCG reaches MMIO through cputlb.c).  The
        # floor does not emulate it.
        for name, target in (('testdev-port', 'port:0xe0 op=outl'),
                             ('testdev-mmio', 'mmio:0xff000000 op=read32')):
            for smp in (1, 2):
                sc.append(dict(name=f'hammer-{name}', accel=accel, smp=smp,
                               kind='tiny', qemu=['-device', 'pc-testdev'],
                               args=f'hammer target={target} secs={SECS}',
                               count_args=f'hammer target={target} secs={SECS + 3}',
                               metric='rate', unit='accesses/s', floor=False))
        # The standard VGA's legacy window: reads (writes are coalesced
        # under KVM), four byte callbacks per 32-bit read.
        for smp in (1, 2):
            target = 'mmio:0xa0000 op=read32'
            sc.append(dict(name='hammer-vga-lowmem', accel=accel, smp=smp,
                           kind='tiny', qemu=['-device', 'VGA'],
                           args=f'hammer target={target} secs={SECS}',
                           count_args=f'hammer target={target} secs={SECS + 3}',
                           metric='rate', unit='accesses/s', floor=False))
        # The local APIC's TPR, each vCPU its own APIC behind one MMIO
        # page: a write and two reads per access counted.  KVM's in-kernel
        # APIC answers without QEMU: TCG only.
        if accel == 'tcg':
            for smp in (1, 2):
                sc.append(dict(name='hammer-apic-tpr', accel=accel, smp=smp,
                               kind='tiny', args=f'hammer target=apic secs={SECS}',
                               count_args=f'hammer target=apic secs={SECS + 3}',
                               metric='rate', unit='TPR write+read/s', floor=False))
        kvm = accel == 'kvm'
        # count_args: long enough (>= 3 s) for the BQL-counting run, whose
        # window is 1.5-2.5 s after start.
        # halt: >= 0.3 s of round trips per run (2000 gave 0.15 s under
        # TCG, where start-up jitter decided the ratio).
        sc.append(dict(name='halt', accel=accel, smp=2, kind='tiny',
                       args='halt count=' + ('5000' if kvm else '20000'),
                       metric='rate', unit='round trips/s',
                       count_args='halt count=' + ('80000' if kvm else '400000'),
                       floor=kvm))
        sc.append(dict(name='ipi', accel=accel, smp=2, kind='tiny',
                       args='ipi count=' + ('20' if kvm else '2000'),
                       count_args='ipi count=' + ('60' if kvm else '20000'),
                       metric='rate', unit='round trips/s', floor=kvm))
        # Main-loop storms against a vCPU that hammers the lock-free PM
        # timer (BQL taken by the vCPU because of the storm alone) and
        # port 0x80 (its progress when every exit needs the BQL).
        for storm in ('info-registers', 'query-cpus-fast', 'stop-cont'):
            for target in ('pmtimer', 'port80'):
                sc.append(dict(name=f'storm-{storm}-{target}', accel=accel, smp=1,
                               kind='tiny', storm=storm,
                               args=f'hammer target={target} secs={SECS + 1}',
                               count_args=f'hammer target={target} secs={SECS + 3}',
                               metric='rate', unit='accesses/s', floor=False))
    for smp in (1, 2):
        sc.append(dict(name='linux-boot', accel='tcg', smp=smp, kind='linux',
                       metric='boot_s', unit='s to /init', floor=False))
    if ONLY:
        sc = [s for s in sc if any(o in f"{s['name']}-{s['accel']}" for o in ONLY)]
    return sc


def ratio_stats(pairs):
    r = [p / b for b, p in pairs if b and p]
    return {'median': statistics.median(r), 'min': min(r), 'max': max(r)} if r else None


def main():
    have_floor = HAVE_KVM and os.path.exists(FLOOR)
    results = []
    for s in scenarios():
        label = f"{s['name']} {s['accel']} smp={s['smp']}"
        print(f'== {label}', flush=True)
        runs = {'base': [], 'patched': [], 'floor': []}
        for rep in range(REPS):
            order = ['base', 'patched'] if rep % 2 == 0 else ['patched', 'base']
            if s['floor'] and have_floor:
                order.append('floor')
            for b in order:
                if s['kind'] == 'linux':
                    r = run_linux_boot(b, s['smp'])
                else:
                    r = run_tiny(b, s['accel'], s['smp'], s['args'], s.get('storm'),
                                 qemu=s.get('qemu', ()))
                runs[b].append(r)
        entry = dict(scenario=s['name'], accel=s['accel'], smp=s['smp'],
                     args=s.get('args', ''), storm=s.get('storm'), unit=s['unit'],
                     metric=s['metric'])
        for b in runs:
            entry[b] = [r.get(s['metric']) for r in runs[b]] if runs[b] else None
            if runs[b] and 'storm_cmds_per_s' in runs[b][0]:
                entry[f'{b}_storm_cmds_per_s'] = [r['storm_cmds_per_s'] for r in runs[b]]
        entry['all_passed'] = all(r['pass'] for b in runs for r in runs[b])
        entry['ratio'] = ratio_stats(list(zip(entry['base'], entry['patched'])))
        if entry['floor']:
            fm = statistics.median(entry['floor'])
            entry['patched_vs_floor'] = statistics.median(entry['patched']) / fm
            entry['base_vs_floor'] = statistics.median(entry['base']) / fm
        if s['kind'] == 'tiny' and COUNTING:
            entry['bql_vcpu_per_s'] = {}
            entry['bql_vcpu_per_op'] = {}
            for b in ('base', 'patched'):
                r = run_tiny(b, s['accel'], s['smp'], s.get('count_args', s['args']),
                             s.get('storm'), count_bql=True, qemu=s.get('qemu', ()))
                entry['bql_vcpu_per_s'][b] = r.get('vcpu_per_s')
                # The uprobes slow the counting run by a varying amount:
                # per guest operation (at that run's own rate) compares.
                if r.get('vcpu_per_s') is not None and r.get('rate'):
                    entry['bql_vcpu_per_op'][b] = r['vcpu_per_s'] / r['rate']
                # Per main-loop command, for storms (rate over the whole run).
                if r.get('vcpu_per_s') is not None and r.get('storm_cmds_per_s'):
                    entry.setdefault('bql_vcpu_per_storm_cmd', {})[b] = \
                        r['vcpu_per_s'] / r['storm_cmds_per_s']
        results.append(entry)
        rt = entry['ratio']
        print(f"   base {entry['base']}\n   patched {entry['patched']}"
              + (f"\n   floor {entry['floor']}" if entry['floor'] else '')
              + (f"\n   ratio {rt['median']:.3f} ({rt['min']:.3f}-{rt['max']:.3f})" if rt else '')
              + (f"\n   storm cmds/s base {entry.get('base_storm_cmds_per_s')} patched "
                 f"{entry.get('patched_storm_cmds_per_s')}" if s.get('storm') else '')
              + (f"\n   BQL/s by vCPU threads {entry.get('bql_vcpu_per_s')}"
                 if 'bql_vcpu_per_s' in entry else ''), flush=True)
    doc = dict(schema=1, date=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
               host=dict(machine=os.uname().nodename, cpus=os.cpu_count(),
                         kvm='kvm_pvm' if HAVE_KVM else None,
                         kernel=os.uname().release),
               reps=REPS, hammer_secs=SECS, patched_flags=FLAGS['patched'],
               results=results)
    os.makedirs(f'{TOP}/bench/results', exist_ok=True)
    out = os.environ.get('BENCH_OUT', f'{TOP}/bench/results/latest')
    with open(out + '.json', 'w') as f:
        json.dump(doc, f, indent=1)
    subprocess.run([sys.executable, f'{TOP}/bench/report.py', out + '.json'], check=True)


if __name__ == '__main__':
    main()
