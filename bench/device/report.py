#!/usr/bin/python3
"""Tables of the device machine's runs (bench/device/run.sh).

    bench/device/report.py DIR "machine description"  > DIR/README.md

DIR holds device.jsonl (one or more runs of run.sh, concatenated) and
host.txt.  Hammers: base, patched (and floor) median (min-max) over the
repetitions, patched/base per repetition pair, and each build's speed-up
over its own 1-vCPU median.  virtio-blk: each configuration's median
(min-max) and its ratio to the main loop of the same build, per
repetition.
"""
import collections, json, os, statistics, sys

d, machine = sys.argv[1], sys.argv[2]
runs = collections.defaultdict(lambda: collections.defaultdict(dict))
for line in open(os.path.join(d, 'device.jsonl')):
    r = json.loads(line)
    runs[(r['scenario'], r['accel'], r['smp'])][r['build']][r['rep']] = r['rate']


def stats(xs):
    xs = [x for x in xs if x]
    return (statistics.median(xs), min(xs), max(xs)) if xs else None


def m(v, scale=1e6, unit='M'):
    return f'{v / scale:.2f}{unit}' if v else '-'


def cell(s, scale=1e6, unit='M', digits=2):
    if not s:
        return '-'
    med, lo, hi = s
    return (f'{med / scale:.{digits}f}{unit} '
            f'({lo / scale:.{digits}f}-{hi / scale:.{digits}f})')


def ratios(num, den):
    return stats([num[k] / den[k] for k in num if num.get(k) and den.get(k)])


host = open(os.path.join(d, 'host.txt')).read().split('\n')
print(f'Measured on {machine}: {host[0]} CPUs, kernel {host[1]}, '
      f'{host[3].split(":", 1)[-1].strip()}; `/dev/kvm` is kvm_pvm.  '
      f'Tiny guest (`hammer`, 1 s per run; `vblk`, 2 s of writes then the '
      f'read-back), base and patched alternating in each repetition; '
      f'median (min-max) of the repetitions.  Rates in accesses/s '
      f'(requests/s for vblk), M = 10^6.')
print()
print('| scenario | accel | vCPUs | base | patched | patched/base | floor '
      '| speed-up over 1 vCPU: base → patched |')
print('|---|---|---|---|---|---|---|---|')
one = {}
for (sc, accel, smp), b in sorted(runs.items()):
    if not sc.startswith('hammer-'):
        continue
    base, pat = stats(b['base'].values()), stats(b['patched'].values())
    if smp == 1:
        one[(sc, accel)] = (base, pat)
    b1, p1 = one.get((sc, accel), (None, None))
    up = (f'{base[0] / b1[0]:.2f}x → {pat[0] / p1[0]:.2f}x'
          if base and pat and b1 and p1 else '-')
    r = ratios(b['patched'], b['base'])
    rs = f'{r[0]:.2f} ({r[1]:.2f}-{r[2]:.2f})' if r else '-'
    fl = stats(b.get('floor', {}).values())
    print(f'| {sc[7:]} | {accel} | {smp} | {cell(base)} | {cell(pat)} | {rs} '
          f'| {cell(fl)} | {up} |')

vb = [(k, b) for k, b in sorted(runs.items()) if k[0].startswith('vblk-')]
for (sc, accel, smp), b in vb:
    print()
    print(f'{sc} ({accel}, {smp} vCPUs, one queue per vCPU, a raw file in /dev/shm):')
    print()
    print('| configuration | requests/s | / main loop of the same build |')
    print('|---|---|---|')
    for c in ('base-mainloop', 'base-iothread', 'patched-mainloop', 'patched-dedicated'):
        if c not in b:
            continue
        ml = b[c.split('-')[0] + '-mainloop']
        r = ratios(b[c], ml) if not c.endswith('mainloop') else None
        rs = f'{r[0]:.2f} ({r[1]:.2f}-{r[2]:.2f})' if r else '-'
        print(f'| {c} | {cell(stats(b[c].values()), 1e3, "k", 0)} | {rs} |')
