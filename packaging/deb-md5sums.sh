#!/usr/bin/env bash
# Adds DEBIAN/md5sums (what `dpkg --verify` and debsums check installed files
# against) to a .deb built by cargo-deb, which writes none, and rebuilds it in
# place with the same contents, owners and compression.
#
#   packaging/deb-md5sums.sh PACKAGE.deb
set -euo pipefail
deb=$(realpath "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -R "$deb" "$work/pkg"
(cd "$work/pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
    xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$work/pkg/DEBIAN/md5sums"
dpkg-deb --root-owner-group -Zxz -b "$work/pkg" "$deb" >/dev/null
echo "$deb: md5sums of $(wc -l <"$work/pkg/DEBIAN/md5sums") files added"
