#!/bin/bash
# Install the Debian packages the workbench needs, only those that are missing.
# meson >= 1.5 and python3-pycotap come from bookworm-backports on Debian 12;
# that suite is enabled only when the default candidate is too old.
set -euo pipefail

PKGS="build-essential ninja-build pkg-config git ccache python3 python3-venv
  libglib2.0-dev libpixman-1-dev libfdt-dev zlib1g-dev libaio-dev liburing-dev
  libslirp-dev device-tree-compiler seabios ipxe-qemu bzip2 xz-utils
  busybox-static linux-image-cloud-amd64 gnuplot-nox dpkg-dev
  libaio-dev liburing-dev zlib1g-dev util-linux linux-perf valgrind
  clang libclang-rt-dev python3-sphinx python3-sphinx-rtd-theme"
BPO_PKGS="meson python3-pycotap"

missing=""
for p in $PKGS $BPO_PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
        missing="$missing $p"
done
meson_ok() {
    command -v meson >/dev/null &&
        dpkg --compare-versions "$(meson --version)" ge 1.5
}
if [ -z "$missing" ] && meson_ok; then
    echo "deps: all present"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "deps: missing:$missing; run 'make deps' as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
codename=$(. /etc/os-release; echo "${VERSION_CODENAME:-}")
cand=$(apt-cache policy meson | awk '/Candidate:/ {print $2}')
bpo=""
if ! dpkg --compare-versions "${cand:-0}" ge 1.5 ||
   ! apt-cache show python3-pycotap >/dev/null 2>&1; then
    src=/etc/apt/sources.list.d/${codename}-backports.sources
    if [ ! -e "$src" ]; then
        echo "deps: enabling ${codename}-backports for meson/python3-pycotap"
        cat > "$src" <<EOS
Types: deb
URIs: http://deb.debian.org/debian
Suites: ${codename}-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
        apt-get update -q
    fi
    bpo="-t ${codename}-backports"
fi
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $bpo $BPO_PKGS
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $PKGS
meson_ok || { echo "deps: meson >= 1.5 not available" >&2; exit 1; }
