# Sourced by build.sh and check-bisect.sh: the one configure line of every
# QEMU tree this repository builds, so that they share the ccache.
CONFIGURE_FLAGS=(
    --target-list=x86_64-softmmu
    --python=/usr/bin/python3
    --enable-kvm --enable-tcg
    --enable-linux-aio --enable-linux-io-uring
    --enable-slirp --enable-fdt=system
    --disable-docs --disable-rust --disable-user
)
