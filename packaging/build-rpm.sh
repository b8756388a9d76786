#!/usr/bin/env bash
# Builds the rpm from an already built binary, with rpmbuild and
# packaging/rpm/evergreen.spec (apt-get install rpm on Debian).
#
#   packaging/build-rpm.sh BINARY RPM-ARCH OUT-DIR     e.g. x86_64, aarch64
#
# The C SDK library for RPM-ARCH must be built first (packaging/sdk-c-build.sh
# RPM-ARCH writes target/sdk-c/libaws-greengrass-core-sdk-c.so).
# Prints the path of the .rpm it wrote.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=$1 arch=$2 out=$3
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
top=$(mktemp -d)
trap 'rm -rf "$top"' EXIT
mkdir -p "$top/SOURCES" "$out"
cp "$binary" "$top/SOURCES/evergreen"
cp packaging/evergreen.service README.md LICENSE THIRD-PARTY-LICENSES.md "$top/SOURCES/"
# docs/: the reference pages the README links to, kept beside it.
cp -r packaging/man packaging/completions docs "$top/SOURCES/"
cp packaging/etc/config.json "$top/SOURCES/config.json"
cp target/sdk-c/libaws-greengrass-core-sdk-c.so supervisor/sdk-c/include/greengrasssdk.h "$top/SOURCES/"
cp packaging/config.json "$top/SOURCES/config.defaults.json"
rpmbuild -bb --quiet \
    --define "_topdir $top" --define "version $version" --define "rpm_arch $arch" \
    --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
    --target "$arch-linux" packaging/rpm/evergreen.spec >&2
rpm_file=$(ls "$top"/RPMS/*.rpm)
cp "$rpm_file" "$out/"
if command -v rpmlint >/dev/null; then
    rpmlint -r packaging/rpm/evergreen.rpmlintrc "$rpm_file" >&2
else
    echo "rpmlint not installed: the rpm was not checked (apt-get install rpmlint)" >&2
fi
echo "$out/$(basename "$rpm_file")"
