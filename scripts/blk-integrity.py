#!/usr/bin/python3
"""Data integrity of a virtio-blk disk across VM life-cycle events.

    scripts/blk-integrity.py --qemu PATH [--blk-opts STR] [--smp N] CASE...

The Linux test guest (TCG) runs fio: randwrite of every block of each
job's region with verify=crc32c (read back and checked), then a
verifying randread.  While it writes, the harness drives QEMU through
QMP:

  stop-cont  stop and cont every 0.3 s until the guest is done;
  reset      system_reset during the write phase: the guest boots again,
             runs fio again from the start, and must pass;
  savevm     savevm during the write phase (qcow2 disk), more writes,
             then loadvm: the guest goes on from the snapshot, and what it
             verifies must match the disk as the snapshot left it;
  migrate    migration to a file during the write phase, QEMU quits, a
             new QEMU restores it (-incoming) on the same disk and the
             guest finishes and verifies there.

On the tiny firmware under KVM (exit 77 if /dev/kvm is unusable):

  tiny-flush-kill  every vCPU writes its blocks of a fresh qcow2 image
             (cache=writeback) and FLUSHes; once the guest says so, QEMU is
             killed with SIGKILL; a new QEMU reads every block back and
             checks it;
  tiny-stop-cont   stop and cont every 0.2 s while every vCPU writes, reads
             back and checks its own and another vCPU's blocks.

--blk-opts is appended to the virtio-blk-pci device (default
",x-dedicated-iothread=on"; an IOThread io0 exists for ",iothread=io0").  One line per case:
    INTEGRITY case=C result=PASS|FAIL reason=.. wall_s=..
Exit status 0 if every case passed.
"""
import argparse, os, subprocess, sys, tempfile, threading, time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, 'qemu', 'python'))
from qemu.qmp.legacy import QEMUMonitorProtocol  # noqa: E402

FIO = ['fio', 'size_mib=64', 'iodepth=16', 'runtime=2']


class Guest:
    """run-linux-guest.sh in the background, with a QMP socket."""
    def __init__(self, a, tmp, disk, fmt, extra=()):
        self.sock = f'{tmp}/qmp-{time.monotonic_ns()}.sock'
        cmd = [f'{TOP}/scripts/run-linux-guest.sh', '--qemu', a.qemu,
               '--smp', str(a.smp), '--disk', disk, '--format', fmt,
               '--blk-opts', a.blk_opts, '--timeout', str(a.timeout)] + FIO + \
              [f'numjobs={a.smp}', '--', '-qmp',
               f'unix:{self.sock},server=on,wait=off',
               '-object', 'iothread,id=io0'] + list(extra)
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        self.out = []
        self.reader = threading.Thread(target=lambda: self.out.extend(self.p.stdout),
                                       daemon=True)
        self.reader.start()
        for _ in range(400):
            if os.path.exists(self.sock):
                break
            time.sleep(0.05)
        self.mon = QEMUMonitorProtocol(self.sock)
        self.mon.connect()

    def writes(self):
        for dev in self.mon.cmd('query-blockstats'):
            if dev.get('device') == 'd0':
                return dev['stats']['wr_operations']
        return 0

    def wait_writes(self, n, secs=120):
        end = time.monotonic() + secs
        while time.monotonic() < end and self.p.poll() is None:
            if self.writes() >= n:
                return True
            time.sleep(0.1)
        return False

    def hmp(self, line):
        return self.mon.cmd('human-monitor-command', **{'command-line': line})

    def finish(self):
        """Wait for the guest; True if it printed SCENARIO fio PASS."""
        self.p.wait()
        self.reader.join(5)
        try:
            self.mon.close()
        except Exception:
            pass
        return any(l.startswith('SCENARIO fio PASS') for l in self.out)

    def quit(self):
        try:
            self.mon.cmd('quit')
        except Exception:
            pass
        self.finish()


class CaseFailed(Exception):
    """A case cannot go on: QEMU has been told to quit."""
    def __init__(self, why, guest):
        super().__init__(why)
        self.why, self.guest = why, guest


def need(g, ok, why):
    if not ok:
        g.quit()
        raise CaseFailed(why, g)


def hmp_ok(g, line):
    """Run an HMP command that prints nothing when it succeeds."""
    r = g.hmp(line).strip()
    need(g, not r, f'{line.split()[0]}: {r}')


def case_stop_cont(a, tmp, disk):
    g = Guest(a, tmp, disk, 'raw')
    n = 0
    while g.p.poll() is None:
        try:
            g.mon.cmd('stop')
            time.sleep(0.1)
            g.mon.cmd('cont')
            n += 1
        except Exception:
            break
        time.sleep(0.3)
    return g.finish(), f'cycles={n}', g


def case_reset(a, tmp, disk):
    # run-linux-guest.sh passes -no-reboot: let this reset reboot.
    g = Guest(a, tmp, disk, 'raw', ['-action', 'reboot=reset'])
    need(g, g.wait_writes(4000), 'no-writes')
    g.mon.cmd('system_reset')
    return g.finish(), 'reset-during-randwrite', g


def case_savevm(a, tmp, disk):
    q = f'{tmp}/disk.qcow2'
    subprocess.run([os.path.join(os.path.dirname(a.qemu), 'qemu-img'), 'create',
                    '-q', '-f', 'qcow2', q, '256M'], check=True)
    g = Guest(a, tmp, q, 'qcow2')
    need(g, g.wait_writes(4000), 'no-writes')
    hmp_ok(g, 'savevm snap1')
    at = g.writes()
    need(g, g.wait_writes(at + 3000), 'no-writes-after-savevm')
    hmp_ok(g, 'loadvm snap1')
    return g.finish(), f'snapshot_at_writes={at}', g


def case_migrate(a, tmp, disk):
    state = f'{tmp}/vm.state'
    g = Guest(a, tmp, disk, 'raw')
    need(g, g.wait_writes(4000), 'no-writes')
    g.mon.cmd('migrate', uri=f'file:{state}')
    end = time.monotonic() + 60
    status = ''
    while time.monotonic() < end:
        status = g.mon.cmd('query-migrate').get('status', '')
        if status in ('completed', 'failed'):
            break
        time.sleep(0.2)
    at = g.writes()
    g.quit()
    if status != 'completed':
        return False, f'migrate-{status or "timeout"}', g
    g2 = Guest(a, tmp, disk, 'raw', ['-incoming', f'file:{state}'])
    ok = g2.finish()
    g2.out[:0] = g.out
    return ok, f'migrated_at_writes={at}', g2


def tiny(a, tmp, disk, gargs, extra=(), log=None,
         drive='format=raw,cache=none,aio=threads'):
    """run-tiny-guest.sh (KVM) on @disk in the background."""
    cmd = [f'{TOP}/scripts/run-tiny-guest.sh', '--qemu', a.qemu, '--accel',
           'kvm', '--smp', str(a.smp), '--timeout', str(a.timeout)] + \
          (['--log', log] if log else []) + ['vblk'] + gargs + ['--',
           '-drive', f'file={disk},if=none,id=d0,{drive}',
           '-device', f'virtio-blk-pci,drive=d0{a.blk_opts}',
           '-object', 'iothread,id=io0'] + list(extra)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


TINY_DATA = ['count=1500', 'depth=8', 'seed=11', 'irq=msix']


def case_tiny_flush_kill(a, tmp, disk):
    """The tiny guest (KVM) writes, FLUSHes and says so; QEMU gets SIGKILL;
    a new QEMU reads every block back from the fresh qcow2 image
    (cache=writeback, so cluster allocation goes through QEMU's metadata
    cache).  Limit: this does not prove that the FLUSH is needed.  The
    same run with cache=unsafe, where QEMU ignores the FLUSH, passes too
    (session 5): what QEMU leaves in the host page cache survives SIGKILL,
    and qcow2 had written its metadata there.  Only a host crash would
    show a missing flush."""
    log, pidf = f'{tmp}/tiny.log', f'{tmp}/qemu.pid'
    disk = f'{tmp}/disk.qcow2'
    subprocess.run([os.path.join(os.path.dirname(a.qemu), 'qemu-img'), 'create',
                    '-q', '-f', 'qcow2', disk, '64M'], check=True)
    qcow2 = 'format=qcow2,cache=writeback,aio=threads'
    p = tiny(a, tmp, disk, ['mode=flush'] + TINY_DATA, ['-pidfile', pidf], log,
             qcow2)
    end = time.monotonic() + a.timeout
    while time.monotonic() < end and p.poll() is None:
        if os.path.exists(log) and 'TINY FLUSHED' in open(log, errors='replace').read():
            break
        time.sleep(0.05)
    else:
        p.kill()
        return False, 'no-FLUSHED', None
    os.kill(int(open(pidf).read()), 9)
    p.communicate()
    c = tiny(a, tmp, disk, ['mode=check'] + TINY_DATA, drive=qcow2)
    out = c.communicate()[0]
    ok = c.returncode == 0 and 'TINY PASS' in out
    if not ok:
        sys.stdout.write(out[-2000:])
    return ok, 'killed-after-flush', None


def case_tiny_stop_cont(a, tmp, disk):
    """stop/cont every 0.2 s while the tiny guest (KVM) writes, reads back
    and cross-checks every vCPU's blocks."""
    sock = f'{tmp}/qmp.sock'
    p = tiny(a, tmp, disk, ['mode=rw'] + TINY_DATA,
             ['-qmp', f'unix:{sock},server=on,wait=off'])
    for _ in range(400):
        if os.path.exists(sock):
            break
        time.sleep(0.05)
    mon = QEMUMonitorProtocol(sock)
    mon.connect()
    n = 0
    while p.poll() is None:
        try:
            mon.cmd('stop')
            time.sleep(0.05)
            mon.cmd('cont')
            n += 1
        except Exception:
            break
        time.sleep(0.2)
    out = p.communicate()[0]
    ok = p.returncode == 0 and 'TINY PASS' in out
    if not ok:
        sys.stdout.write(out[-2000:])
    return ok, f'cycles={n}', None


CASES = {'stop-cont': case_stop_cont, 'reset': case_reset,
         'savevm': case_savevm, 'migrate': case_migrate,
         'tiny-flush-kill': case_tiny_flush_kill,
         'tiny-stop-cont': case_tiny_stop_cont}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--qemu', required=True)
    ap.add_argument('--blk-opts', default=',x-dedicated-iothread=on')
    ap.add_argument('--smp', type=int, default=2)
    ap.add_argument('--timeout', type=int, default=240,
                    help='seconds for each QEMU run')
    ap.add_argument('cases', nargs='+', choices=sorted(CASES))
    a = ap.parse_args()
    a.qemu = os.path.abspath(a.qemu)
    failed = 0
    for name in a.cases:
        tmp = tempfile.mkdtemp(dir=os.environ.get('TMPDIR', '/tmp'))
        disk = f'{tmp}/disk.raw'
        subprocess.run(['truncate', '-s', '256M', disk], check=True)
        t0 = time.monotonic()
        if name.startswith('tiny-') and not os.access('/dev/kvm', os.W_OK):
            print(f'INTEGRITY case={name} result=SKIP reason=no-usable-/dev/kvm')
            continue
        try:
            ok, why, g = CASES[name](a, tmp, disk)
        except CaseFailed as e:
            ok, why, g = False, e.why, e.guest
        except Exception as e:
            ok, why, g = False, f'exception:{type(e).__name__}', None
        wall = time.monotonic() - t0
        if not ok:
            failed += 1
            if g:
                sys.stdout.write(''.join(l for l in g.out if not l.startswith('run-linux-guest:'))[-3000:])
        print(f'INTEGRITY case={name} result={"PASS" if ok else "FAIL"} '
              f'reason={why} wall_s={wall:.1f}', flush=True)
        subprocess.run(['rm', '-rf', tmp])
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()
