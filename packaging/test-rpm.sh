#!/usr/bin/env bash
# rpm install test into a scratch root (`rpm --root`), so it runs on any
# machine with rpm (Debian's `rpm` package) and never touches the host:
# installs the package, checks its files, modes and the directories it owns,
# erases it and checks that nothing of the package is left (the directories
# included). Scriptlets are not run (--noscripts): the scratch root has no
# shell, systemd or shadow-utils; packaging/test-deb.sh runs the same steps
# for real on this machine.
#
#   packaging/test-rpm.sh PACKAGE.rpm
#
# Prints PASS/FAIL per check; exit 1 if any failed.
set -uo pipefail
rpm_file=$(realpath "$1")
failures=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
rpm --root "$root" --initdb
echo "== rpm -i into $root"
if rpm --root "$root" -i --nodeps --noscripts "$rpm_file" 2>&1 | grep -v "does not exist - using root"; then :; fi
check "installed" rpm --root "$root" -q evergreen
check "/usr/bin/evergreen 0755" test "$(stat -c %a "$root/usr/bin/evergreen")" = 755
check "evergreen --version runs" "$root/usr/bin/evergreen" --version
check "rpm provides no soname of the private C SDK library" sh -c "! rpm -qp --provides '$rpm_file' | grep -q libaws"
check "unit in /usr/lib/systemd/system" test -f "$root/usr/lib/systemd/system/evergreen.service"
check "configuration" test -f "$root/etc/evergreen/config.json"
check "man page" test -f "$root/usr/share/man/man1/evergreen.1.gz"
check "a man page per command (evergreen-status.1)" test -f "$root/usr/share/man/man1/evergreen-status.1.gz"
check "bash completion" test -f "$root/usr/share/bash-completion/completions/evergreen"
check "zsh completion" test -f "$root/usr/share/zsh/site-functions/_evergreen"
check "fish completion" test -f "$root/usr/share/fish/vendor_completions.d/evergreen.fish"
check "licence and inventory" test -f "$root/usr/share/licenses/evergreen/LICENSE" -a -f "$root/usr/share/licenses/evergreen/THIRD-PARTY-LICENSES.md"
check "C SDK library and header" test -f "$root/usr/lib/evergreen/libaws-greengrass-core-sdk-c.so" -a -f "$root/usr/include/greengrasssdk.h"
check "/var/lib/evergreen 0750" test "$(stat -c %a "$root/var/lib/evergreen")" = 750
for dir in /etc/evergreen /usr/lib/evergreen /usr/share/doc/evergreen /usr/share/licenses/evergreen /var/lib/evergreen; do
    check "$dir owned by the package" sh -c "rpm --root '$root' -qf '$dir' | grep -q '^evergreen-'"
done
check "configuration is %config(noreplace)" sh -c "rpm --root '$root' -qc evergreen | grep -qx /etc/evergreen/config.json"
echo "== rpm -e"
check "erased" rpm --root "$root" -e --noscripts evergreen
for path in /usr/bin/evergreen /usr/lib/evergreen /usr/include/greengrasssdk.h /usr/share/man/man1/evergreen.1.gz /usr/share/doc/evergreen/docs/install.md /usr/share/bash-completion/completions/evergreen /etc/evergreen /usr/share/doc/evergreen /usr/share/licenses/evergreen /usr/lib/systemd/system/evergreen.service /var/lib/evergreen; do
    check "$path gone" test ! -e "$root$path"
done
if [ $failures -gt 0 ]; then
    echo "packaging/test-rpm.sh: $failures check(s) failed"
    exit 1
fi
echo "packaging/test-rpm.sh: all checks passed"
