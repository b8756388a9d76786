#!/usr/bin/env bash
# Builds the static (musl) release binary for one target:
#
#   packaging/static-build.sh TRIPLE        x86_64-unknown-linux-musl,
#                                           aarch64-unknown-linux-musl
#
# Adds the Rust target with rustup when missing. The C code of the
# dependencies (ring, aws-lc) is compiled with musl-gcc for the host's
# architecture (Debian's musl-tools) and with the target's cross gcc
# otherwise (gcc-aarch64-linux-gnu), which also links
# the binary, with Rust's self-contained musl start files and libc.
# Writes target/TRIPLE/release/evergreen, or with PROFILE=NAME (a Cargo
# profile, e.g. cross-check) target/TRIPLE/NAME/evergreen.
set -euo pipefail
cd "$(dirname "$0")/.."
triple=$1
if ! rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
    rustup target add "$triple"
fi
case "$triple" in
    "$(uname -m)"-unknown-linux-musl) cc=musl-gcc ;;
    aarch64-unknown-linux-musl) cc=aarch64-linux-gnu-gcc ;;
    *) echo "static-build.sh: unknown target $triple" >&2; exit 2 ;;
esac
if ! command -v "$cc" >/dev/null; then
    echo "static-build.sh: $cc is missing (apt-get install musl-tools, or the cross gcc)" >&2
    exit 1
fi
export "CC_${triple//-/_}=$cc"
if [ "$cc" != musl-gcc ]; then
    # A cross gcc is glibc's: link with it, but with Rust's own musl start
    # files and libc (self-contained), not the gcc's glibc ones.
    upper=$(echo "$triple" | tr 'a-z-' 'A-Z_')
    export "CARGO_TARGET_${upper}_LINKER=$cc"
    export "CARGO_TARGET_${upper}_RUSTFLAGS=-C link-self-contained=yes"
fi
cargo build --profile "${PROFILE:-release}" --locked -p evergreen --target "$triple"
