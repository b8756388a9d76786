# evergreen %post ($1: 1 = install, 2 = upgrade). The rpm equivalent of
# packaging/debian/postinst: user and group, runtime root, service enabled
# (not started); never fails when systemd is not PID 1.
if ! getent group evergreen >/dev/null; then
    groupadd --system evergreen || :
fi
if ! getent passwd evergreen >/dev/null; then
    useradd --system --gid evergreen --no-create-home --home-dir /nonexistent \
        --shell /sbin/nologin --comment "Evergreen edge runtime" evergreen || :
fi
if [ ! -d /var/lib/evergreen ]; then
    install -d -m 0750 -o root -g evergreen /var/lib/evergreen
fi
if [ "$1" -eq 1 ]; then
    # systemctl enable only writes symlinks: it works without a running systemd.
    systemctl enable evergreen.service >/dev/null 2>&1 || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 2 ]; then
        systemctl try-restart evergreen.service >/dev/null 2>&1 || :
    fi
fi
exit 0
