#!/usr/bin/env bash
# Builds the release binary and its packages.
#
#   packaging/build.sh [host|aarch64|armv7|all]...     (default: host)
#
# host: target/release/evergreen, target/debian/evergreen_<ver>_<arch>.deb and,
# when cargo-generate-rpm is installed, target/generate-rpm/evergreen-<ver>.rpm.
# aarch64 (Raspberry Pi 4/5, 64-bit OS) and armv7 (32-bit Raspberry Pi OS):
# tries `rustup target add` and Debian's cross gcc (gcc-aarch64-linux-gnu,
# gcc-arm-linux-gnueabihf); says clearly when a target cannot be built here
# and goes on with the others. Exit status: 1 if the host build failed or a
# requested cross target could not be built, else 0. Prints the binary and
# package sizes at the end. Installs cargo-deb (`cargo install cargo-deb
# --locked`, ~35 s) if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(host)
[ "${targets[*]}" = all ] && targets=(host aarch64 armv7)

if ! cargo deb --version >/dev/null 2>&1; then
    echo "== installing cargo-deb"
    cargo install cargo-deb --locked
fi
have_rpm=0
if cargo generate-rpm --version >/dev/null 2>&1; then have_rpm=1; fi

failed=()
built=()

# The release profile strips the binary already (Cargo.toml), so the package
# tools are told not to strip again (cargo-deb would use the host's strip on a
# cross binary).
build_host() {
    echo "== host: release build"
    cargo build --release --locked -p evergreen
    echo "== host: .deb"
    cargo deb -p evergreen --no-build --no-strip
    built+=(target/release/evergreen target/debian/evergreen_*_"$(dpkg --print-architecture 2>/dev/null || echo amd64)".deb)
    if [ $have_rpm = 1 ]; then
        echo "== host: .rpm"
        cargo generate-rpm -p supervisor/cli
        built+=(target/generate-rpm/evergreen-*.rpm)
    else
        echo "== host: cargo-generate-rpm not installed; no .rpm (cargo install cargo-generate-rpm --locked, ~2 min)"
    fi
}

# build_cross NAME TRIPLE GCC-PREFIX DEBIAN-GCC-PACKAGE QEMU-ARCH DEBIAN-ARCH
build_cross() {
    local name=$1 triple=$2 gcc=$3-gcc pkg=$4
    echo "== $name ($triple)"
    if ! rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
        if ! rustup target add "$triple"; then
            echo "CANNOT BUILD $name here: 'rustup target add $triple' failed (no network or no rustup)"
            failed+=("$name"); return
        fi
    fi
    if ! command -v "$gcc" >/dev/null; then
        echo "CANNOT BUILD $name here: the cross linker $gcc is missing (apt-get install $pkg)"
        failed+=("$name"); return
    fi
    local upper
    upper=$(echo "$triple" | tr 'a-z-' 'A-Z_')
    export "CARGO_TARGET_${upper}_LINKER=$gcc"
    export "CC_${triple//-/_}=$gcc"
    if ! cargo build --release --locked -p evergreen --target "$triple"; then
        echo "CANNOT BUILD $name here: cargo build --target $triple failed (see above)"
        failed+=("$name"); return
    fi
    if ! cargo deb -p evergreen --no-build --no-strip --target "$triple"; then
        echo "CANNOT BUILD $name here: cargo deb --target $triple failed (see above)"
        failed+=("$name"); return
    fi
    # cargo-deb writes every architecture's .deb to target/debian/.
    built+=("target/$triple/release/evergreen" target/debian/evergreen_*_"$6".deb)
    # Runs the cross binary's --version under qemu-user when installed
    # (Debian's qemu-user; the cross gcc package brings the target's libc).
    local qemu=qemu-$5
    if command -v "$qemu" >/dev/null; then
        echo "== $name: under $qemu: evergreen --version; evergreen validate"
        # --version, then a smoke test: validate the embedded default group.
        if ! "$qemu" -L "/usr/$3" "target/$triple/release/evergreen" --version \
            || ! "$qemu" -L "/usr/$3" "target/$triple/release/evergreen" validate; then
            echo "FAILED: $name binary under $qemu"
            failed+=("$name (qemu)")
        fi
    else
        echo "== $name: $qemu not installed; binary not run (apt-get install qemu-user)"
    fi
    if [ $have_rpm = 1 ]; then
        cargo generate-rpm -p supervisor/cli --target "$triple" && built+=("target/$triple/generate-rpm/"evergreen-*.rpm)
    fi
}

for t in "${targets[@]}"; do
    case "$t" in
        host) build_host ;;
        aarch64) build_cross aarch64 aarch64-unknown-linux-gnu aarch64-linux-gnu gcc-aarch64-linux-gnu aarch64 arm64 ;;
        armv7) build_cross armv7 armv7-unknown-linux-gnueabihf arm-linux-gnueabihf gcc-arm-linux-gnueabihf arm armhf ;;
        *) echo "unknown target '$t' (host, aarch64, armv7, all)"; exit 2 ;;
    esac
done

echo "== sizes"
for f in "${built[@]}"; do
    [ -f "$f" ] && printf '%10d bytes  %s\n' "$(stat -c %s "$f")" "$f"
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "not built here: ${failed[*]}"
    exit 1
fi
