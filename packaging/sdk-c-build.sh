#!/usr/bin/env bash
# Builds Evergreen's C SDK library (supervisor/sdk-c, docs/c-functions.md) for the packages:
#
#   packaging/sdk-c-build.sh ARCH        x86_64, aarch64
#
# Native functions are the gateway's own programs, linked against its glibc, so the library is
# built for ARCH-unknown-linux-gnu (not musl, as the static runtime is) and is a glibc shared
# object. Adds the Rust target with rustup when missing; a foreign ARCH is compiled and linked
# with its cross gcc (gcc-aarch64-linux-gnu). Writes target/sdk-c/libaws-greengrass-core-sdk-c.so
# (the soname, where the packages take it from; each call replaces it) and prints its path.
# PROFILE=NAME picks a Cargo profile (default release).
set -euo pipefail
cd "$(dirname "$0")/.."
arch=$1
profile=${PROFILE:-release}
triple=$arch-unknown-linux-gnu
case "$arch" in
    x86_64 | aarch64) ;;
    *) echo "sdk-c-build.sh: unknown architecture $arch (x86_64, aarch64)" >&2; exit 2 ;;
esac
if ! rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
    rustup target add "$triple" >&2
fi
if [ "$arch" != "$(uname -m)" ]; then
    cc=$arch-linux-gnu-gcc
    if ! command -v "$cc" >/dev/null; then
        echo "sdk-c-build.sh: $cc is missing (apt-get install gcc-$arch-linux-gnu)" >&2
        exit 1
    fi
    upper=$(echo "$triple" | tr 'a-z-' 'A-Z_')
    # The library's version script names V1's symbol versions, which GNU ld refuses beside
    # rustc's own anonymous one ("anonymous version tag cannot be combined"); lld takes both,
    # and is what rustc links x86_64 with by default. Use the toolchain's own lld here too.
    gcc_ld=$(rustc --print sysroot)/lib/rustlib/$(uname -m)-unknown-linux-gnu/bin/gcc-ld
    export "CC_${triple//-/_}=$cc" "CARGO_TARGET_${upper}_LINKER=$cc" \
        "CARGO_TARGET_${upper}_RUSTFLAGS=-C link-arg=-fuse-ld=lld -C link-arg=-B$gcc_ld"
fi
cargo build --profile "$profile" --locked -p evergreen-sdk-c --target "$triple" >&2
mkdir -p target/sdk-c
out=target/sdk-c/libaws-greengrass-core-sdk-c.so
cp "target/$triple/$profile/libaws_greengrass_core_sdk_c.so" "$out"
chmod 0644 "$out"
echo "$out"
