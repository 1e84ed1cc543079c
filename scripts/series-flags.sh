# The device flags the series adds, as QEMU arguments for the patched build
# (sourced by demo.sh and bench.py).  Converted devices default to their
# unlocked dispatch (pc-testdev: x-unlocked-dispatch=on), so nothing needs
# to be passed; put "-global DEVICE.x-unlocked-dispatch=off" here to
# measure a converted device under the BQL.
SERIES_FLAGS=()
