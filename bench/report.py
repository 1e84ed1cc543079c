#!/usr/bin/python3
"""Render bench/results/X.json as X.md (table) and X.svg (plot, gnuplot)."""
import json, os, statistics, subprocess, sys

path = sys.argv[1]
stem = path[:-5]
doc = json.load(open(path))


def fmt(v):
    if v is None:
        return '-'
    if v >= 1000:
        return f'{v / 1000:.1f}k' if v < 1e6 else f'{v / 1e6:.2f}M'
    return f'{v:.3g}'


def med(xs):
    xs = [x for x in (xs or []) if x is not None]
    return statistics.median(xs) if xs else None


lines = [f"Measured {doc['date']} on {doc['host']['machine']} ({doc['host']['cpus']} CPUs, "
         f"KVM: {doc['host']['kvm'] or 'none'}), {doc['reps']} alternating runs per build; "
         f"patched flags: {' '.join(doc['patched_flags']) or '(none)'}.",
         '',
         '| scenario | accel | vCPUs | unit | base (median) | patched (median) '
         '| patched/base median (min-max) | floor | patched/floor | BQL/s by vCPU threads base → patched (per guest op) |',
         '|---|---|---|---|---|---|---|---|---|---|']
for r in doc['results']:
    rt = r['ratio']
    ratio = f"{rt['median']:.3f} ({rt['min']:.3f}-{rt['max']:.3f})" if rt else '-'
    bql, per = r.get('bql_vcpu_per_s'), r.get('bql_vcpu_per_op')
    bqls = f"{fmt(bql['base'])} → {fmt(bql['patched'])}" if bql else '-'
    if per and per.get('base') is not None and per.get('patched') is not None:
        bqls += f" ({per['base']:.3f} → {per['patched']:.3f} per op)"
    pcmd = r.get('bql_vcpu_per_storm_cmd')
    if pcmd and pcmd.get('base') is not None and pcmd.get('patched') is not None:
        bqls += f" ({pcmd['base']:.2f} → {pcmd['patched']:.2f} per storm command)"
    fl = r.get('patched_vs_floor')
    lines.append(f"| {r['scenario']} | {r['accel']} | {r['smp']} | {r['unit']} "
                 f"| {fmt(med(r['base']))} | {fmt(med(r['patched']))} | {ratio} "
                 f"| {fmt(med(r['floor']))} | {f'{fl:.2f}' if fl else '-'} | {bqls} |")
lines += ['', 'Rates come from runs without instrumentation.  BQL acquisitions by vCPU '
          'threads come from one extra run per build under uprobes '
          '(scripts/bql-count.sh, a 1 s window 1.5 s after start, in the steady state), '
          'which slow the guest by a varying '
          'amount: compare them per guest operation where given, and as orders of '
          'magnitude otherwise.  The floor is bench/floor/kvm-floor.c: the same '
          'firmware on a minimal KVM program that answers every exit with no lock.']
if 'device' in doc:
    dev = doc['device']
    lines += ['', f"Scaling on the device machine ({dev['machine']}): aggregate accesses/s, "
              'median of alternating runs; speed-up is against the same build at 1 vCPU.', '',
              '| scenario | accel | vCPUs | base | patched | patched/base (min-max) '
              '| floor | base speed-up | patched speed-up |', '|---|---|---|---|---|---|---|---|---|']
    one = {(r['scenario'], r['accel']): r for r in dev['results'] if r['smp'] == 1}
    for r in dev['results']:
        rt, o = r['ratio'], one.get((r['scenario'], r['accel']))
        sp = lambda b: (f"{med(r[b]) / med(o[b]):.2f}x" if o and med(r[b]) and med(o[b]) else '-')
        lines.append(f"| {r['scenario']} | {r['accel']} | {r['smp']} | {fmt(med(r['base']))} "
                     f"| {fmt(med(r['patched']))} | "
                     + (f"{rt['median']:.3f} ({rt['min']:.3f}-{rt['max']:.3f})" if rt else '-')
                     + f" | {fmt(med(r['floor']))} | {sp('base')} | {sp('patched')} |")
open(stem + '.md', 'w').write('\n'.join(lines) + '\n')

# Plot: patched/base median ratio per scenario with min-max error bars.
dat = stem + '.dat'
with open(dat, 'w') as f:
    for i, r in enumerate(x for x in doc['results'] if x['ratio']):
        rt = r['ratio']
        f.write(f"{i} {rt['median']} {rt['min']} {rt['max']} "
                f"\"{r['scenario']}/{r['accel']}/{r['smp']}\"\n")
gp = f"""
set terminal svg size 1100,520 dynamic
set output '{stem}.svg'
set title 'patched / base (median of alternating runs, bars: min-max)'
set ylabel 'ratio'
set xtics rotate by -60 font ',9'
set grid ytics
set yrange [0:*]
set key off
plot 1 lt 0, '{dat}' using 1:2:3:4:xticlabels(5) with yerrorbars pt 7
"""
subprocess.run(['gnuplot'], input=gp, text=True, check=True)
os.remove(dat)
print(open(stem + '.md').read())
