#!/bin/sh
# Installs Evergreen from the release tarball on a host without dpkg or rpm
# (or where the package manager should not own it), as the packages do:
#
#   sudo ./install.sh                 install (or upgrade) from this directory
#   sudo ./install.sh --uninstall     remove the program, keep /etc/evergreen and /var/lib/evergreen
#   sudo ./install.sh --purge         remove everything, the evergreen user and group too
#
# What goes where (the tarball's files stay the administrator's, under /usr/local):
#   /usr/local/bin/evergreen                  the static binary
#   /etc/systemd/system/evergreen.service     the unit (ExecStart pointed at /usr/local/bin)
#   /etc/evergreen/config.json                the configuration (kept when it exists)
#   /var/lib/evergreen                        the runtime root, 0750 root:evergreen
#   /usr/local/share/man/man1/evergreen*.1    the man pages
#   /usr/local/share/bash-completion/completions/evergreen    bash completion
#   /usr/local/share/doc/evergreen/           README, default configuration, licences
#   /usr/local/lib/evergreen/libaws-greengrass-core-sdk-c.so, /usr/local/include/greengrasssdk.h
#                                             the C SDK of native functions
# and the evergreen system user and group. With systemd running, the service is
# enabled (not started), as the packages do; without systemd, run
# `evergreen run --config /etc/evergreen/config.json` under your supervisor.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
bin=/usr/local/bin/evergreen
unit=/etc/systemd/system/evergreen.service
mandir=/usr/local/share/man/man1
completion=/usr/local/share/bash-completion/completions/evergreen
doc=/usr/local/share/doc/evergreen
# The C SDK of native functions: the runtime finds the library in lib/evergreen/
# beside its bin/ (docs/c-functions.md).
sdk_lib=/usr/local/lib/evergreen/libaws-greengrass-core-sdk-c.so
sdk_header=/usr/local/include/greengrasssdk.h
etc=/etc/evergreen
root=/var/lib/evergreen

say() { echo "install.sh: $*"; }
systemd_running() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

if [ "$(id -u)" != 0 ]; then
    say "run as root (sudo $0 $*)" >&2
    exit 1
fi

case "${1:-}" in
"")
    for f in evergreen evergreen.service config.json config.defaults.json man/evergreen.1 completions/evergreen.bash; do
        [ -f "$here/$f" ] || { say "$here/$f is missing: run install.sh from the unpacked tarball" >&2; exit 1; }
    done
    if ! getent group evergreen >/dev/null; then
        if command -v groupadd >/dev/null 2>&1; then groupadd --system evergreen; else addgroup -S evergreen; fi
    fi
    if ! getent passwd evergreen >/dev/null; then
        nologin=/usr/sbin/nologin
        [ -x "$nologin" ] || nologin=/sbin/nologin
        if command -v useradd >/dev/null 2>&1; then
            useradd --system --gid evergreen --no-create-home --home-dir /nonexistent \
                --shell "$nologin" --comment "Evergreen edge runtime" evergreen
        else
            adduser -S -D -H -h /nonexistent -s "$nologin" -G evergreen evergreen
        fi
    fi
    # A running service keeps running the old binary until restarted below.
    install -D -m 0755 "$here/evergreen" "$bin.new" && mv -f "$bin.new" "$bin"
    install -d -m 0755 /etc/systemd/system
    sed -e 's|/usr/bin/evergreen|/usr/local/bin/evergreen|g' \
        -e 's|/usr/share/doc/evergreen|/usr/local/share/doc/evergreen|g' "$here/evergreen.service" >"$unit.new"
    chmod 0644 "$unit.new" && mv -f "$unit.new" "$unit"
    install -d -m 0755 "$etc"
    if [ -e "$etc/config.json" ]; then
        say "kept $etc/config.json (the new default is in $doc/config.json)"
    else
        install -m 0644 "$here/config.json" "$etc/config.json"
    fi
    [ -d "$root" ] || install -d -m 0750 -o root -g evergreen "$root"
    install -d -m 0755 "$mandir"
    install -m 0644 "$here"/man/*.1 "$mandir/"
    install -D -m 0644 "$here/completions/evergreen.bash" "$completion"
    if [ -f "$here/libaws-greengrass-core-sdk-c.so" ]; then
        install -D -m 0644 "$here/libaws-greengrass-core-sdk-c.so" "$sdk_lib"
        install -D -m 0644 "$here/greengrasssdk.h" "$sdk_header"
    fi
    install -d -m 0755 "$doc"
    for f in README.md LICENSE THIRD-PARTY-LICENSES.md config.json config.defaults.json; do
        [ -f "$here/$f" ] && install -m 0644 "$here/$f" "$doc/$f"
    done
    # The reference pages the README links to.
    if [ -d "$here/docs" ]; then
        install -d -m 0755 "$doc/docs"
        install -m 0644 "$here"/docs/*.md "$doc/docs/"
    fi
    if systemd_running; then
        systemctl daemon-reload
        systemctl enable evergreen.service >/dev/null 2>&1 || say "could not enable evergreen.service"
        systemctl try-restart evergreen.service || true
        say "installed $("$bin" --version); start with: systemctl start evergreen"
    else
        say "installed $("$bin" --version); no systemd running: start it with"
        say "  $bin run --config $etc/config.json"
    fi
    ;;
--uninstall | --purge)
    if systemd_running; then
        systemctl stop evergreen.service 2>/dev/null || true
        systemctl disable evergreen.service >/dev/null 2>&1 || true
    fi
    rm -f "$bin" "$unit" "$mandir"/evergreen.1 "$mandir"/evergreen-*.1 "$completion" "$sdk_lib" "$sdk_header"
    rmdir /usr/local/lib/evergreen 2>/dev/null || true
    rm -rf "$doc" /run/evergreen
    systemd_running && systemctl daemon-reload
    if [ "$1" = --purge ]; then
        rm -rf "$etc" "$root"
        if getent passwd evergreen >/dev/null; then
            if command -v userdel >/dev/null 2>&1; then userdel evergreen; else deluser evergreen; fi
        fi
        if getent group evergreen >/dev/null; then
            if command -v groupdel >/dev/null 2>&1; then groupdel evergreen; else delgroup evergreen; fi
        fi
        say "removed Evergreen, its configuration, its root and the evergreen user and group"
    else
        say "removed Evergreen; kept $etc and $root (--purge removes them)"
    fi
    ;;
*)
    say "unknown option $1 (none, --uninstall or --purge)" >&2
    exit 2
    ;;
esac
