# The device flags the series adds, as QEMU arguments for the patched build
# (sourced by demo.sh and bench.sh).  Empty until a device is converted.
SERIES_FLAGS=()
