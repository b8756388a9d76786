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

echo "== build"
if ! cargo deb --version >/dev/null 2>&1; then
    cargo install cargo-deb --locked || { echo "FAIL: cargo install cargo-deb"; exit 1; }
fi
cargo build --release --locked -p evergreen || { echo "FAIL: release build"; exit 1; }
# cargo-deb writes every architecture's .deb to target/debian/: only the
# host's is replaced and installed.
arch=$(dpkg --print-architecture)
rm -f target/debian/evergreen_*_"$arch".deb
cargo deb -p evergreen --no-build --no-strip || { echo "FAIL: cargo deb"; exit 1; }
deb=$(ls target/debian/evergreen_*_"$arch".deb)
echo "package: $deb ($(stat -c %s "$deb") bytes), binary $(stat -c %s target/release/evergreen) bytes"

echo "== install"
if dpkg -i "$deb"; then pass "dpkg -i $deb"; else fail "dpkg -i $deb"; exit 1; fi

check "/usr/bin/evergreen --version" /usr/bin/evergreen --version
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
check "evergreen check: container mode can run (as root)" /usr/bin/evergreen check
check "evergreen check as user evergreen: refuses, naming the privilege" sh -c \
    "! runuser -u evergreen -- /usr/bin/evergreen check >/tmp/evergreen-check.out 2>&1 && grep -q CAP_SYS_ADMIN /tmp/evergreen-check.out"
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
for p in /usr/bin/evergreen /lib/systemd/system/evergreen.service /etc/evergreen /var/lib/evergreen \
    /etc/systemd/system/multi-user.target.wants/evergreen.service /usr/share/doc/evergreen; do
    check "$p removed" test ! -e "$p" -a ! -L "$p"
done
[ $run_dir_existed = 0 ] && check "/run/evergreen removed" test ! -e /run/evergreen
check "user evergreen removed" sh -c "! getent passwd evergreen"
check "group evergreen removed" sh -c "! getent group evergreen"

# The .rpm: only inspected (no rpm database here), and only when both
# cargo-generate-rpm (~2 min to install, so not installed by this script) and
# rpm are present.
if cargo generate-rpm --version >/dev/null 2>&1 && command -v rpm >/dev/null; then
    echo "== rpm (inspect only)"
    rm -f target/generate-rpm/evergreen-*.rpm
    if cargo generate-rpm -p supervisor/cli; then
        rpmfile=$(ls target/generate-rpm/evergreen-*.rpm)
        echo "package: $rpmfile ($(stat -c %s "$rpmfile") bytes)"
        files=$(rpm -qpl "$rpmfile")
        for p in /usr/bin/evergreen /usr/lib/systemd/system/evergreen.service /etc/evergreen/config.json; do
            check "rpm contains $p" grep -qx "$p" <<<"$files"
        done
        check "rpm marks /etc/evergreen/config.json as config" \
            sh -c "rpm -qp --configfiles '$rpmfile' | grep -qx /etc/evergreen/config.json"
        check "rpm requires shadow-utils" sh -c "rpm -qpR '$rpmfile' | grep -qx shadow-utils"
        check "rpm has %post, %preun, %postun" sh -c \
            "s=\$(rpm -qp --scripts '$rpmfile'); for x in postinstall preuninstall postuninstall; do echo \"\$s\" | grep -q \"^\$x scriptlet\" || exit 1; done"
    else
        fail "cargo generate-rpm"
    fi
else
    echo "(cargo-generate-rpm or rpm not installed: .rpm not checked)"
fi

if [ "$failures" -gt 0 ]; then
    echo "FAIL: packaging/test-deb.sh: $failures check(s) failed"
    exit 1
fi
echo "PASS: packaging/test-deb.sh: all checks passed"
