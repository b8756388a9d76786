#!/usr/bin/env bash
# The release tarball for hosts without a package manager: the static binary,
# the unit, the configuration, the man pages, the shell completions, the docs,
# the C SDK library and header of native functions (built for the same
# architecture by packaging/sdk-c-build.sh first) and install.sh.
#
#   packaging/tarball.sh BINARY TARGET OUT-DIR     writes OUT-DIR/evergreen-<version>-<target>.tar.gz
#
# Prints the tarball's path.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=$1 name=$2 out=$3
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
base=evergreen-$version-$name
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/$base" "$out"
install -m 0755 "$binary" "$work/$base/evergreen"
install -m 0755 packaging/install.sh "$work/$base/"
install -m 0644 packaging/evergreen.service README.md LICENSE THIRD-PARTY-LICENSES.md "$work/$base/"
cp -r packaging/man packaging/completions docs "$work/$base/"
install -m 0644 packaging/etc/config.json "$work/$base/config.json"
install -m 0644 target/sdk-c/libaws-greengrass-core-sdk-c.so supervisor/sdk-c/include/greengrasssdk.h "$work/$base/"
install -m 0644 packaging/config.json "$work/$base/config.defaults.json"
tar -C "$work" --owner=0 --group=0 --numeric-owner -czf "$out/$base.tar.gz" "$base"
echo "$out/$base.tar.gz"
