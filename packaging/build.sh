#!/usr/bin/env bash
# Builds the static release binaries and their packages into target/dist/:
#
#   packaging/build.sh [host|x86_64|aarch64|all]...     (default: host)
#
# For each target: the static (musl) binary (packaging/static-build.sh), its
# .deb (cargo-deb, with md5sums), .rpm (rpmbuild, packaging/build-rpm.sh) and
# tarball with install.sh (packaging/tarball.sh), in target/dist/ as
# evergreen-<version>-<target>, evergreen_<version>-1_<debarch>.deb,
# evergreen-<version>-1.<rpmarch>.rpm and evergreen-<version>-<target>.tar.gz,
# and a SHA256SUMS over all of them.
# A foreign target's binary is run under qemu-user when it is installed
# (--version and `validate` of the embedded default group).
#
# A target that cannot be built here (no rustup target, no cross gcc) is
# reported and the others go on; exit status 1 if any requested target failed.
# armv7 (32-bit ARM) is refused with the reason: no 32-bit build is possible
# (see packaging/README.md, "32-bit ARM").
# Installs cargo-deb (`cargo install cargo-deb --locked`, ~35 s) if missing;
# needs rpmbuild (Debian: apt-get install rpm) for the .rpm.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(host)
[ "${targets[*]}" = all ] && targets=(x86_64 aarch64)

if ! cargo deb --version >/dev/null 2>&1; then
    echo "== installing cargo-deb"
    cargo install cargo-deb --locked
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
dist=target/dist
mkdir -p "$dist"
failed=()

# build_one NAME TRIPLE DEB-ARCH RPM-ARCH QEMU-ARCH
build_one() {
    local name=$1 triple=$2 debarch=$3 rpmarch=$4 qemu=qemu-$5
    echo "== $name: static binary ($triple)"
    if ! packaging/static-build.sh "$triple"; then
        echo "CANNOT BUILD $name here (see above)"
        failed+=("$name"); return
    fi
    local bin=target/$triple/release/evergreen
    cp "$bin" "$dist/evergreen-$version-$name"
    if [ "$5" != "$(uname -m)" ]; then
        if command -v "$qemu" >/dev/null; then
            echo "== $name: under $qemu: --version; validate"
            if ! "$qemu" "$bin" --version || ! "$qemu" "$bin" validate; then
                echo "FAILED: $name binary under $qemu"; failed+=("$name (qemu)")
            fi
        else
            echo "== $name: $qemu not installed; binary not run (apt-get install qemu-user)"
        fi
    fi
    echo "== $name: C SDK library (glibc)"
    if ! packaging/sdk-c-build.sh "$5" >/dev/null; then
        echo "CANNOT BUILD the C SDK library for $name here (see above)"
        failed+=("$name (C SDK)"); return
    fi
    echo "== $name: .deb"
    rm -f target/debian/evergreen_*_"$debarch".deb
    cargo deb -p evergreen --no-build --no-strip --target "$triple"
    local deb
    deb=$(ls target/debian/evergreen_*_"$debarch".deb)
    packaging/deb-md5sums.sh "$deb"
    cp "$deb" "$dist/"
    echo "== $name: tarball with install.sh"
    packaging/tarball.sh "$bin" "$name" "$dist"
    if command -v rpmbuild >/dev/null; then
        echo "== $name: .rpm"
        packaging/build-rpm.sh "$bin" "$rpmarch" "$dist" || failed+=("$name (rpm)")
    else
        echo "== $name: rpmbuild not installed; no .rpm (apt-get install rpm)"
    fi
}

for t in "${targets[@]}"; do
    [ "$t" = host ] && t=$(uname -m)
    case "$t" in
        x86_64) build_one x86_64 x86_64-unknown-linux-musl amd64 x86_64 x86_64 ;;
        aarch64) build_one aarch64 aarch64-unknown-linux-musl arm64 aarch64 aarch64 ;;
        armv7 | armv7l | arm*)
            echo "CANNOT BUILD $t: ntex-net 3 (under ntex-mqtt 8.2, the MQTT server's library)"
            echo "  refuses every 32-bit target (compile_error \"Only 64bit platforms are supported\")."
            echo "  A Pi with a 64-bit kernel (uname -m: aarch64) runs the aarch64 build, also under"
            echo "  a 32-bit OS; see packaging/README.md, \"32-bit ARM\"."
            failed+=("$t") ;;
        *) echo "unknown target '$t' (host, x86_64, aarch64, all)"; exit 2 ;;
    esac
done

if compgen -G "$dist/evergreen*" >/dev/null; then
    (cd "$dist" && sha256sum -- evergreen* >SHA256SUMS)
    echo "== target/dist"
    (cd "$dist" && for f in *; do printf '%10d bytes  %s\n' "$(stat -c %s "$f")" "$f"; done)
fi
if [ ${#failed[@]} -gt 0 ]; then
    echo "not built here: ${failed[*]}"
    exit 1
fi
