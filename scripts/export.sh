#!/bin/bash
# make export: regenerate patches/ from the commits on top of base-fixups in
# qemu/, with patches/0000-cover-letter.patch whose subject and blurb come
# from series/cover-letter.txt.  Deterministic: `make tree && make export`
# gives no diff.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$top/patches}
q="$top/qemu"
git -C "$q" rev-parse -q --verify base-fixups >/dev/null ||
    { echo "export: qemu/ has no base-fixups tag; run 'make tree'" >&2; exit 1; }
if [ -n "$(git -C "$q" status --porcelain --untracked-files=no)" ]; then
    echo "export: qemu/ has uncommitted changes; commit them first" >&2
    exit 1
fi
n=$(git -C "$q" rev-list --count base-fixups..HEAD)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ "$n" -gt 0 ]; then
    # Fixed options, independent of the user's git configuration.
    git -C "$q" -c core.abbrev=12 -c diff.noprefix=false -c diff.renames=true \
        -c format.signOff=false -c format.coverLetter=false \
        -c branch."$(git -C "$q" symbolic-ref --short HEAD 2>/dev/null || echo series)".description="$(cat "$top/series/cover-letter.txt")" \
        format-patch -q --zero-commit --no-signature --cover-letter \
        --cover-from-description=subject --numbered --subject-prefix=PATCH \
        --stat=72 --no-attach -o "$tmp" base-fixups..HEAD
    # The cover letter's From/Date are the series head's, not the clock's.
    head_author=$(git -C "$q" log -1 --format='%an <%ae>')
    head_date=$(git -C "$q" log -1 --format='%aD')
    python3 - "$tmp/0000-cover-letter.patch" "$head_author" "$head_date" <<'EOPY'
import sys
path, author, date = sys.argv[1:]
head, sep, body = open(path).read().partition('\n\n')
out, skip = [], False
for line in head.split('\n'):
    if skip and line.startswith(' '):
        continue                  # continuation of a folded header
    skip = False
    if line.startswith('From: '):
        out.append('From: ' + author)
        skip = True
    elif line.startswith('Date: '):
        out.append('Date: ' + date)
        skip = True
    else:
        out.append(line)
open(path, 'w').write('\n'.join(out) + sep + body)
EOPY
fi
# Touch only what changed, so that make does not re-materialize for nothing.
mkdir -p "$out"
for f in "$out"/[0-9][0-9][0-9][0-9]-*.patch; do
    [ -e "$f" ] && [ ! -e "$tmp/${f##*/}" ] && rm -f "$f"
done
for f in "$tmp"/*.patch; do
    [ -e "$f" ] || continue
    cmp -s "$f" "$out/${f##*/}" || cp "$f" "$out/"
done
if [ "$out" = "$top/patches" ]; then
    git -C "$q" rev-parse HEAD > "$q/.git/tree-head"
    touch "$q/.git/tree-stamp"
fi
echo "export: $n patches (+ cover letter) in ${out#$top/}/"
