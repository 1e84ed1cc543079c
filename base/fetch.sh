#!/bin/bash
# Print the path of the verified base tarball, fetching it if needed.
# Order: $QEMU_TARBALL, ../shared/deps/, .cache/, then `apt-get source` from Debian.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/base/base.env"

verify() {
    echo "$QEMU_ORIG_SHA256  $1" | sha256sum -c --quiet - >/dev/null 2>&1
}
for t in "${QEMU_TARBALL:-}" "$top/../shared/deps/$QEMU_ORIG_TARBALL" \
         "$top/.cache/$QEMU_ORIG_TARBALL"; do
    [ -n "$t" ] && [ -f "$t" ] || continue
    if verify "$t"; then
        echo "$t"
        exit 0
    fi
    echo "fetch: $t: sha256 mismatch, ignored" >&2
done
mkdir -p "$top/.cache"
echo "fetch: downloading qemu=$QEMU_DEB_VERSION source from Debian" >&2
if ! (cd "$top/.cache" &&
       apt-get source --download-only -q "qemu=$QEMU_DEB_VERSION" >&2); then
    # Debian's default sources have no deb-src: add unstable's, where
    # the package lives, and try once more.
    cat > /etc/apt/sources.list.d/qemu-base-src.sources <<EOS
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: unstable
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
    apt-get update -q >&2
    (cd "$top/.cache" &&
     apt-get source --download-only -q "qemu=$QEMU_DEB_VERSION" >&2)
fi
t="$top/.cache/$QEMU_ORIG_TARBALL"
verify "$t" || { echo "fetch: $t: sha256 mismatch" >&2; exit 1; }
echo "$t"
