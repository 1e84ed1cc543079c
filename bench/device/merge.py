#!/usr/bin/python3
"""Merge the device machine's device.jsonl (bench/device/run.sh) into a
bench results JSON as doc["device"], then re-render its table and plot.

    merge.py bench/results/latest.json DIR_WITH_device.jsonl "machine description"
"""
import collections, json, os, statistics, subprocess, sys

path, d, machine = sys.argv[1], sys.argv[2], sys.argv[3]
doc = json.load(open(path))
runs = collections.defaultdict(lambda: collections.defaultdict(dict))
for line in open(os.path.join(d, 'device.jsonl')):
    r = json.loads(line)
    runs[(r['scenario'], r['accel'], r['smp'])][r['build']][r['rep']] = r['rate']
results = []
for (sc, accel, smp), b in sorted(runs.items()):
    e = dict(scenario=sc, accel=accel, smp=smp)
    for build in ('base', 'patched', 'floor'):
        e[build] = [b[build][k] for k in sorted(b.get(build, {}))] or None
    pairs = [(b['base'].get(k), b['patched'].get(k)) for k in b.get('base', {})]
    ratios = [p / q for q, p in pairs if p and q]
    e['ratio'] = (dict(median=statistics.median(ratios), min=min(ratios), max=max(ratios))
                  if ratios else None)
    results.append(e)
host = open(os.path.join(d, 'host.txt')).read().split('\n') if os.path.exists(
    os.path.join(d, 'host.txt')) else []
doc['device'] = dict(machine=machine, host=host, results=results)
json.dump(doc, open(path, 'w'), indent=1)
subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), '..', 'report.py'),
                path], check=True)
