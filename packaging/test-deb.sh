#!/usr/bin/env bash
# Package test: builds the .deb, installs it on this machine with dpkg, checks
# the installed files, user, permissions and unit, runs the installed runtime
# with the installed configuration for a few seconds, purges the package and
# checks that nothing is left. Run as root on a machine without Evergreen
# installed (CI: a fresh Debian machine; systemd need not be PID 1).
#
# Prints PASS/FAIL per check and exits 1 if any failed. Skips (loudly, exit 0)
# when Evergreen is already present on this machine (package, /etc/evergreen,
# /var/lib/evergreen or an evergreen user/group), so it never touches an
# operator's installation. Every wait is bounded.
set -uo pipefail
cd "$(dirname "$0")/.."

failures=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() { # check DESCRIPTION COMMAND...
    local what=$1; shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}

if [ "$(id -u)" != 0 ]; then
    echo "SKIP: packaging/test-deb.sh needs root (dpkg -i)"; exit 0
fi
for p in /etc/evergreen /var/lib/evergreen /lib/systemd/system/evergreen.service; do
    if [ -e "$p" ]; then
        echo "SKIP: packaging/test-deb.sh: $p already exists; not touching an existing Evergreen installation"
        exit 0
    fi
done
if dpkg-query -W -f='${Status}' evergreen 2>/dev/null | grep -q installed \
    || getent passwd evergreen >/dev/null || getent group evergreen >/dev/null; then
    echo "SKIP: packaging/test-deb.sh: an evergreen package, user or group already exists; not touching it"
    exit 0
fi
run_dir_existed=0
[ -e /run/evergreen ] && run_dir_existed=1

runtime_pid=
cleanup() {
    if [ -n "$runtime_pid" ] && kill -0 "$runtime_pid" 2>/dev/null; then
        kill -KILL "$runtime_pid" 2>/dev/null
        wait "$runtime_pid" 2>/dev/null
    fi
    if dpkg-query -W -f='${Status}' evergreen 2>/dev/null | grep -q installed; then
        echo "cleanup: purging the evergreen package"
        dpkg --purge evergreen >/dev/null 2>&1
    fi
    if [ $run_dir_existed = 0 ]; then rm -rf /run/evergreen; fi
}
trap cleanup EXIT

echo "== build (static, musl)"
if ! cargo deb --version >/dev/null 2>&1; then
    cargo install cargo-deb --locked || { echo "FAIL: cargo install cargo-deb"; exit 1; }
fi
# The packages carry the static musl binary (packaging/README.md): it runs on
# any glibc, or none.
target=$(uname -m)-unknown-linux-musl
# The cross-check profile (Cargo.toml) by default: the release profile's behaviour (static,
# stripped, unwinding panics) unoptimised: the release build's fat LTO takes some twenty minutes
# on two cores since the ML connectors brought tract. TEST_DEB_PROFILE=release tests the release artefact
# (packaging/build.sh builds it).
profile=${TEST_DEB_PROFILE:-cross-check}
PROFILE=$profile packaging/static-build.sh "$target" || { echo "FAIL: static build"; exit 1; }
bin=target/$target/$profile/evergreen
check "the binary is static (no NEEDED entry)" sh -c "! readelf -d $bin 2>/dev/null | grep -q NEEDED"
# No libc at all: a root holding nothing but the binary. What runs there runs
# on any glibc, old or new, or none (Alpine).
bare=$(mktemp -d)
cp "$bin" "$bare/evergreen"
check "the binary runs in a root with nothing but itself (chroot: --version, validate)" \
    sh -c "chroot '$bare' /evergreen --version && chroot '$bare' /evergreen validate"
rm -rf "$bare"
# cargo-deb writes every architecture's .deb to target/debian/: only the
# host's is replaced and installed.
arch=$(dpkg --print-architecture)
# The C SDK of native functions, a glibc library for this architecture, goes into
# the packages beside the binary (docs/c-functions.md).
sdk_lib=$(packaging/sdk-c-build.sh "$(uname -m)") || { echo "FAIL: packaging/sdk-c-build.sh"; exit 1; }
check "the C SDK library's soname is V1's" sh -c \
    "readelf -d $sdk_lib | grep -q 'Library soname: \[libaws-greengrass-core-sdk-c.so\]'"
rm -f target/debian/evergreen_*_"$arch".deb
cargo deb -p evergreen --no-build --no-strip --profile "$profile" --target "$target" ||
    { echo "FAIL: cargo deb"; exit 1; }
deb=$(ls target/debian/evergreen_*_"$arch".deb)
packaging/deb-md5sums.sh "$deb" || { echo "FAIL: md5sums"; exit 1; }
echo "package: $deb ($(stat -c %s "$deb") bytes), binary $(stat -c %s "$bin") bytes"
check "the package depends on nothing but adduser (static binary)" \
    sh -c "dpkg-deb -f $deb Depends | grep -qx adduser"
if command -v lintian >/dev/null; then
    lintian_out=$(lintian "$deb" 2>&1 | grep -v 'running with root privileges')
    echo "${lintian_out:-lintian: no errors, no warnings}"
    check "lintian: no errors or warnings" sh -c "! printf '%s\n' \"$lintian_out\" | grep -q '^[EW]: '"
else
    fail "lintian is not installed (apt-get install lintian)"
fi

echo "== install"
if dpkg -i "$deb"; then pass "dpkg -i $deb"; else fail "dpkg -i $deb"; exit 1; fi

check "/usr/bin/evergreen --version" /usr/bin/evergreen --version
check "C SDK library installed (/usr/lib/evergreen)" test -f /usr/lib/evergreen/libaws-greengrass-core-sdk-c.so
check "C SDK header installed (/usr/include/greengrasssdk.h)" test -f /usr/include/greengrasssdk.h
check "man page evergreen(1)" test -f /usr/share/man/man1/evergreen.1.gz
check "a man page per command (evergreen-stop(1))" test -f /usr/share/man/man1/evergreen-stop.1.gz
for page in packaging/man/*.1; do
    [ -f "/usr/share/man/man1/${page##*/}.gz" ] || fail "${page##*/} not installed"
done
check "bash completion" test -f /usr/share/bash-completion/completions/evergreen
check "zsh completion" test -f /usr/share/zsh/vendor-completions/_evergreen
check "fish completion" test -f /usr/share/fish/vendor_completions.d/evergreen.fish
check "the installed bash completion is the binary's own" sh -c \
    "/usr/bin/evergreen completions bash | cmp -s - /usr/share/bash-completion/completions/evergreen"
check "docs/ installed beside the README (its links resolve)" test -f /usr/share/doc/evergreen/docs/cli.md -a -f /usr/share/doc/evergreen/docs/install.md
check "unit installed" test -f /lib/systemd/system/evergreen.service
if command -v systemd-analyze >/dev/null; then
    check "systemd-analyze verify evergreen.service" systemd-analyze verify /lib/systemd/system/evergreen.service
else
    echo "(systemd-analyze not available: unit not verified)"
fi
check "service enabled (wants symlink)" test -L /etc/systemd/system/multi-user.target.wants/evergreen.service
check "config installed" test -f /etc/evergreen/config.json
check "config is a conffile" sh -c "dpkg-query -W -f='\${Conffiles}' evergreen | grep -q /etc/evergreen/config.json"
check "config valid (evergreen validate --config)" /usr/bin/evergreen validate --config /etc/evergreen/config.json
check "evergreen check --container: container mode can run (as root)" /usr/bin/evergreen check --container
check "evergreen check --container as user evergreen: refuses, naming the privilege" sh -c \
    "! runuser -u evergreen -- /usr/bin/evergreen check --container >/tmp/evergreen-check.out 2>&1 && grep -q CAP_SYS_ADMIN /tmp/evergreen-check.out"
rm -f /tmp/evergreen-check.out
check "user evergreen exists" getent passwd evergreen
check "group evergreen exists" getent group evergreen
check "user evergreen has no login shell" sh -c "getent passwd evergreen | grep -q ':/usr/sbin/nologin$'"
owner=$(stat -c '%U:%G %a' /var/lib/evergreen 2>/dev/null)
check "/var/lib/evergreen is root:evergreen 750 (got '$owner')" test "$owner" = "root:evergreen 750"

echo "== run the installed runtime (as root, installed config)"
# Without systemd nothing creates RuntimeDirectory=; the runtime would create
# the socket's directory itself, but do it as systemd would.
install -d -m 0750 /run/evergreen
timeout -s KILL 90 /usr/bin/evergreen run --config /etc/evergreen/config.json \
    >/tmp/evergreen-test-deb.out 2>&1 &
runtime_pid=$!
log=/var/lib/evergreen/var/log/user/us-east-1/aws/MessageLog.log
ok=0
for _ in $(seq 1 60); do # up to 30 s (the Heartbeat connector publishes every 5 s)
    if grep -q 'topic=evergreen/heartbeat' "$log" 2>/dev/null; then ok=1; break; fi
    kill -0 "$runtime_pid" 2>/dev/null || break
    sleep 0.5
done
check "heartbeat line in $log" test $ok = 1
ok=0
for _ in $(seq 1 20); do # up to 10 s
    if timeout 5 /usr/bin/evergreen status --socket /run/evergreen/control.sock; then ok=1; break; fi
    sleep 0.5
done
check "evergreen status --socket /run/evergreen/control.sock answers" test $ok = 1
# With no flags every command reads /etc/evergreen/config.json, so finds the
# socket there (what README's install section tells operators to type).
check "evergreen status (default config path)" timeout 5 /usr/bin/evergreen status
check "evergreen logs MessageLog -n 2 (default config path)" timeout 5 /usr/bin/evergreen logs MessageLog -n 2
# Components run as the package's unprivileged user (evergreen.defaultRunAs
# in the installed config), the runtime itself as root. `timeout` runs the
# runtime; a container-mode component (DeviceDefender) sits below its
# container's waiter and the namespace's init (forks of the runtime that stay
# root), so every descendant is looked at; connectors are the processes whose
# arguments are `evergreen connector <Name>`.
descendants() {
    local child
    for child in $(pgrep -P "$1"); do
        echo "$child"
        descendants "$child"
    done
}
components_are_evergreen() {
    local pids users count
    pids=$(descendants "$runtime_pid" | paste -sd, -)
    [ -n "$pids" ] || return 1
    users=$(ps -o user:32=,args= -p "$pids" | awk '$3 == "connector" {print $1}' | sort -u | paste -sd' ' -)
    count=$(ps -o args= -p "$pids" | awk '$2 == "connector"' | wc -l)
    echo "component users: ${users:-none} ($count connectors)"
    [ "$users" = evergreen ] && [ "$count" = 3 ]
}
check "components run as user evergreen" components_are_evergreen
# A Python function (Greengrass V1 Lambda in Python) on the static binary: the
# runtime must find the system's python3 and run it as user evergreen.
py_dir=$(mktemp -d /tmp/evergreen-py.XXXXXX)
chmod 0755 "$py_dir"
cat >"$py_dir/hello.py" <<'PY'
import sys
print("evergreen python check: python", sys.version.split()[0], flush=True)
def handler(event, context):
    return None
PY
cat >"$py_dir/group.json" <<JSON
{"FunctionDefinitionVersion": {"Functions": [{"Id": "py-check",
  "FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:py-check:1",
  "FunctionConfiguration": {"Executable": "hello.handler", "CodeUri": "$py_dir",
    "Runtime": "python3.8", "Pinned": true, "Timeout": 3,
    "Environment": {"Execution": {"IsolationMode": "NoContainer"}}}}]}}
JSON
if command -v python3 >/dev/null; then
    check "deploy a Python function to the installed runtime" timeout 60 /usr/bin/evergreen deploy "$py_dir/group.json"
    py_log=/var/lib/evergreen/var/log/user/us-east-1/123456789012/py-check.log
    ok=0
    for _ in $(seq 1 40); do # up to 20 s
        if grep -q "evergreen python check: python 3" "$py_log" 2>/dev/null; then ok=1; break; fi
        sleep 0.5
    done
    check "the Python function ran on the system python3 ($py_log)" test $ok = 1
else
    fail "python3 is not installed: the Python function check cannot run"
fi
rm -rf "$py_dir"
# A C function (a Greengrass V1 Lambda executable) built against the installed
# header and library, as a user builds one on the gateway, runs on the installed
# runtime with the runtime's copy of the library.
c_dir=$(mktemp -d /tmp/evergreen-c.XXXXXX)
chmod 0755 "$c_dir"
cat >"$c_dir/hello.c" <<'C'
#include <stdio.h>
#include "greengrasssdk.h"
static void handler(const gg_lambda_context *context) {
    (void)context;
}
int main(void) {
    if (gg_global_init(0) != GGE_SUCCESS) return 1;
    gg_log(GG_LOG_INFO, "evergreen c check: %s", "sdk loaded");
    gg_runtime_start(handler, 0);
    return 0;
}
C
cat >"$c_dir/group.json" <<JSON
{"FunctionDefinitionVersion": {"Functions": [{"Id": "c-check",
  "FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:c-check:1",
  "FunctionConfiguration": {"Executable": "$c_dir/hello", "Runtime": "executable",
    "Pinned": true, "Timeout": 3,
    "Environment": {"Execution": {"IsolationMode": "NoContainer"}}}}]}}
JSON
if command -v cc >/dev/null; then
    check "a C function builds against the installed header and library" \
        cc -o "$c_dir/hello" "$c_dir/hello.c" -L/usr/lib/evergreen -laws-greengrass-core-sdk-c
    chmod 0755 "$c_dir/hello"
    check "deploy a C function to the installed runtime" timeout 60 /usr/bin/evergreen deploy "$c_dir/group.json"
    c_log=/var/lib/evergreen/var/log/user/us-east-1/123456789012/c-check.log
    ok=0
    for _ in $(seq 1 40); do # up to 20 s
        if grep -q "evergreen c check: sdk loaded" "$c_log" 2>/dev/null; then ok=1; break; fi
        sleep 0.5
    done
    check "the C function ran on the packaged library ($c_log)" test $ok = 1
else
    fail "cc is not installed: the C function check cannot run (apt-get install gcc)"
fi
rm -rf "$c_dir"
kill -TERM "$runtime_pid" 2>/dev/null
status=
for _ in $(seq 1 40); do # up to 20 s (a stop takes at most ~7 s by default)
    if ! kill -0 "$runtime_pid" 2>/dev/null; then wait "$runtime_pid"; status=$?; break; fi
    sleep 0.5
done
runtime_pid=
check "runtime stops cleanly on SIGTERM (exit status '$status')" test "$status" = 0
check "control socket removed on stop" test ! -e /run/evergreen/control.sock
if [ "$failures" -gt 0 ]; then
    echo "--- runtime output"; tail -n 30 /tmp/evergreen-test-deb.out
fi
rm -f /tmp/evergreen-test-deb.out

echo "== upgrade (reinstall over itself): keeps an edited config and the data"
sed -i 's/"logToStderr": true/"logToStderr": false/' /etc/evergreen/config.json
check "dpkg -i over the installed package" dpkg -i --force-confold "$deb"
check "edited /etc/evergreen/config.json kept" grep -q '"logToStderr": false' /etc/evergreen/config.json
check "logs under /var/lib/evergreen kept" test -s "$log"
owner=$(stat -c '%U:%G %a' /var/lib/evergreen 2>/dev/null)
check "/var/lib/evergreen still root:evergreen 750 (got '$owner')" test "$owner" = "root:evergreen 750"
check "service still enabled" test -L /etc/systemd/system/multi-user.target.wants/evergreen.service

echo "== purge"
check "dpkg --purge evergreen" dpkg --purge evergreen
check "package gone" sh -c "! dpkg-query -W -f='\${Status}' evergreen 2>/dev/null | grep -q installed"
for p in /usr/bin/evergreen /usr/lib/evergreen /usr/include/greengrasssdk.h \
    /lib/systemd/system/evergreen.service /etc/evergreen /var/lib/evergreen \
    /usr/share/man/man1/evergreen.1.gz /usr/share/bash-completion/completions/evergreen \
    /etc/systemd/system/multi-user.target.wants/evergreen.service /usr/share/doc/evergreen; do
    check "$p removed" test ! -e "$p" -a ! -L "$p"
done
[ $run_dir_existed = 0 ] && check "/run/evergreen removed" test ! -e /run/evergreen
check "user evergreen removed" sh -c "! getent passwd evergreen"
check "group evergreen removed" sh -c "! getent group evergreen"

# The tarball for hosts without a package manager: install.sh installs what
# the package did (under /usr/local), an upgrade keeps the configuration,
# --purge leaves nothing.
echo "== tarball with install.sh"
if tarball=$(packaging/tarball.sh "$bin" "$(uname -m)" target/dist); then
    # The tarball carries the same library (built above for this architecture).
    echo "tarball: $tarball ($(stat -c %s "$tarball") bytes)"
    untar=$(mktemp -d)
    tar -C "$untar" -xzf "$tarball"
    installer=$(ls "$untar"/evergreen-*/install.sh)
    check "install.sh" "$installer"
    check "/usr/local/bin/evergreen --version" /usr/local/bin/evergreen --version
    check "C SDK library under /usr/local/lib/evergreen" test -f /usr/local/lib/evergreen/libaws-greengrass-core-sdk-c.so
    check "man pages under /usr/local/share/man/man1" test -f /usr/local/share/man/man1/evergreen-stop.1
    check "bash completion under /usr/local" test -f /usr/local/share/bash-completion/completions/evergreen
    check "unit starts /usr/local/bin/evergreen" \
        grep -q '^ExecStart=/usr/local/bin/evergreen run' /etc/systemd/system/evergreen.service
    check "configuration valid" /usr/local/bin/evergreen validate --config /etc/evergreen/config.json
    owner=$(stat -c '%U:%G %a' /var/lib/evergreen 2>/dev/null)
    check "/var/lib/evergreen is root:evergreen 750 (got '$owner')" test "$owner" = "root:evergreen 750"
    check "user evergreen exists" getent passwd evergreen
    echo '{"evergreen": {"root": "/var/lib/evergreen", "logToStderr": false}}' >/etc/evergreen/config.json
    check "install.sh again (an upgrade)" "$installer"
    check "the edited configuration was kept" grep -q '"logToStderr": false' /etc/evergreen/config.json
    check "install.sh --uninstall" "$installer" --uninstall
    check "--uninstall kept /etc/evergreen and /var/lib/evergreen" test -d /etc/evergreen -a -d /var/lib/evergreen
    check "install.sh --purge" "$installer" --purge
    for p in /usr/local/bin/evergreen /etc/systemd/system/evergreen.service /etc/evergreen \
        /var/lib/evergreen /usr/local/share/doc/evergreen /usr/local/share/man/man1/evergreen.1 \
        /usr/local/share/man/man1/evergreen-status.1 /usr/local/share/bash-completion/completions/evergreen \
        /usr/local/lib/evergreen /usr/local/include/greengrasssdk.h; do
        check "$p removed" test ! -e "$p"
    done
    check "user evergreen removed" sh -c "! getent passwd evergreen"
    check "group evergreen removed" sh -c "! getent group evergreen"
    rm -rf "$untar"
else
    fail "packaging/tarball.sh"
fi

# The aarch64 package (Raspberry Pi OS 64-bit): the static binary built for
# aarch64-unknown-linux-musl, its .deb (lintian) unpacked by dpkg into a
# scratch root that takes arm64 packages, and the installed binary run under
# qemu-user. Unpacked, not configured: postinst needs an arm64 userland
# (adduser, deb-systemd-helper) the scratch root does not have; the same
# scripts ran above on this machine's package.
if command -v qemu-aarch64 >/dev/null && command -v aarch64-linux-gnu-gcc >/dev/null; then
    echo "== aarch64 package under qemu"
    # The cross-check profile (Cargo.toml): release behaviour, unoptimised, for CI's time;
    # packaging/build.sh builds the release artefact.
    if PROFILE=cross-check packaging/static-build.sh aarch64-unknown-linux-musl \
        && packaging/sdk-c-build.sh aarch64 >/dev/null; then
        rm -f target/debian/evergreen_*_arm64.deb
        cargo deb -p evergreen --no-build --no-strip --profile cross-check \
            --target aarch64-unknown-linux-musl >/dev/null
        deb64=$(ls target/debian/evergreen_*_arm64.deb)
        packaging/deb-md5sums.sh "$deb64"
        echo "package: $deb64 ($(stat -c %s "$deb64") bytes), binary $(stat -c %s target/aarch64-unknown-linux-musl/cross-check/evergreen) bytes"
        check "arm64 .deb: Architecture arm64" sh -c "dpkg-deb -f $deb64 Architecture | grep -qx arm64"
        if command -v lintian >/dev/null; then
            check "lintian (arm64): no errors or warnings" sh -c \
                "! lintian $deb64 2>&1 | grep -q '^[EW]: '"
        fi
        foreign=$(mktemp -d)
        mkdir -p "$foreign/var/lib/dpkg/info" "$foreign/var/lib/dpkg/updates"
        touch "$foreign/var/lib/dpkg/status"
        dpkg --root="$foreign" --add-architecture arm64
        check "dpkg --root (arm64 root) --unpack the arm64 .deb" \
            dpkg --root="$foreign" --force-depends --unpack "$deb64"
        check "dpkg --root lists /usr/bin/evergreen as the package's" sh -c \
            "dpkg --root='$foreign' -L evergreen | grep -qx /usr/bin/evergreen"
        check "the arm64 package's C SDK library is an AArch64 glibc library" sh -c \
            "readelf -h '$foreign/usr/lib/evergreen/libaws-greengrass-core-sdk-c.so' | grep -q AArch64 && readelf -d '$foreign/usr/lib/evergreen/libaws-greengrass-core-sdk-c.so' | grep -q 'libc.so.6'"
        check "the arm64 binary runs under qemu: --version" qemu-aarch64 "$foreign/usr/bin/evergreen" --version
        check "the arm64 binary runs under qemu: validate (embedded group)" \
            qemu-aarch64 "$foreign/usr/bin/evergreen" validate
        # Unpacked, not configured: the conffile waits as .dpkg-new.
        check "the arm64 binary runs under qemu: validate the packaged config" \
            qemu-aarch64 "$foreign/usr/bin/evergreen" validate --config "$foreign/etc/evergreen/config.json.dpkg-new"
        rm -rf "$foreign"
    else
        fail "static build for aarch64-unknown-linux-musl, or its C SDK library"
    fi
else
    fail "qemu-user and gcc-aarch64-linux-gnu are needed for the aarch64 package (apt-get install qemu-user gcc-aarch64-linux-gnu)"
fi

# The .rpm of the same static binary: built with rpmbuild (checked by
# rpmlint), installed into a scratch root and erased (packaging/test-rpm.sh).
if command -v rpmbuild >/dev/null; then
    echo "== rpm"
    rpm_arch=$(uname -m)
    # The host's library again (the arm64 package's build replaced it).
    packaging/sdk-c-build.sh "$rpm_arch" >/dev/null || fail "packaging/sdk-c-build.sh $rpm_arch"
    if rpmfile=$(packaging/build-rpm.sh "$bin" "$rpm_arch" target/rpm); then
        echo "package: $rpmfile ($(stat -c %s "$rpmfile") bytes)"
        check "rpm requires nothing but shadow-utils and /bin/sh (static binary)" sh -c \
            "! rpm -qpR '$rpmfile' 2>/dev/null | grep -v -e '^/bin/sh' -e '^shadow-utils' -e '^rpmlib(' -e '^config(evergreen)' | grep -q ."
        check "rpm recommends python3" sh -c "rpm -qp --recommends '$rpmfile' 2>/dev/null | grep -qx python3"
        check "rpm install test (packaging/test-rpm.sh)" packaging/test-rpm.sh "$rpmfile"
    else
        fail "packaging/build-rpm.sh"
    fi
else
    fail "rpmbuild is not installed (apt-get install rpm)"
fi

if [ "$failures" -gt 0 ]; then
    echo "FAIL: packaging/test-deb.sh: $failures check(s) failed"
    exit 1
fi
echo "PASS: packaging/test-deb.sh: all checks passed"
