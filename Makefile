# Workbench for the fine-grained locking series.  See README.md.
#   make          deps + tree + build + guests + demo
#   make check    the test command (.ci/run calls it)
#   make bench    benchmarks, patched vs base, into bench/results/
SHELL := /bin/bash
.DEFAULT_GOAL := all

all: deps tree build guests demo

deps:
	scripts/deps.sh

# (Re)materialize qemu/ only when it is missing or patches/ changed since.
tree: qemu/.git/tree-stamp
qemu/.git/tree-stamp: $(wildcard patches/*.patch) base/fixup.sh base/base.env
	scripts/tree.sh
	touch $@

build: tree
	scripts/build.sh

guests:
	$(MAKE) -C guest/tiny
	guest/linux/build.sh

export:
	scripts/export.sh

demo: guests
	scripts/demo.sh

check: tree build guests
	scripts/check.sh

check-bisect: tree guests
	scripts/check-bisect.sh

check-tsan: tree build guests
	scripts/check-tsan.sh

bench: tree build guests
	$(MAKE) -C bench/floor
	bench/bench.py
	bench/latency.py
	bench/blk-bql.py --matrix bench/results/blk-bql
	bench/blk-iops.py

clean:
	rm -rf out qemu/build qemu-base/build

.PHONY: all deps tree build guests export demo check check-bisect check-tsan bench clean
