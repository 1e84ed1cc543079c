#!/bin/bash
# Runs the locking stress test's "pc" case under TCG in a loop (from
# /work/main/qemu/build); when a run passes 25 s, prints every vCPU's
# state twice with notes/apic-wip/gdb-vcpus.gdb (run from /work/main).
cd /work/main/qemu/build
for i in $(seq 1 40); do
  unshare -m sh -c 'mount --bind /dev/null /dev/kvm && exec "$@"' sh env QTEST_QEMU_BINARY=./qemu-system-x86_64 timeout 600 ./tests/qtest/locking-stress-test --tap -k -p /x86_64/locking-stress/x86/pc > /tmp/stress-loop-run-$i.log 2>&1 &
  tp=$!
  s=$(date +%s)
  while kill -0 $tp 2>/dev/null; do
    sleep 1
    if [ $(( $(date +%s) - s )) -gt 25 ]; then
      pid=$(pgrep -f "qemu-system-x86_64 -qtest" | head -1)
      echo "run $i stuck, qemu pid $pid" > /tmp/stress-loop-found.txt
      gdb -p $pid -batch -x /work/main/notes/apic-wip/gdb-vcpus.gdb > /tmp/stress-loop-cpus.txt 2>&1
      sleep 3
      gdb -p $pid -batch -x /work/main/notes/apic-wip/gdb-vcpus.gdb > /tmp/stress-loop-cpus2.txt 2>&1
      wait $tp
      echo "rc=$?" >> /tmp/stress-loop-found.txt
      exit 0
    fi
  done
  wait $tp; echo "run $i rc=$? $(grep -h -m1 'ERROR:' /tmp/stress-loop-run-$i.log | cut -c40-120)" >> /tmp/stress-loop-runs.txt
done
