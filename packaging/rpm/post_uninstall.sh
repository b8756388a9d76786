# evergreen %postun ($1: 0 = removal, 1 = upgrade). rpm has no purge: as
# Fedora's guidelines ask, removal keeps /var/lib/evergreen (deployments,
# spool, logs), a modified /etc/evergreen/config.json (as .rpmsave) and the
# evergreen user and group; delete them by hand for a clean slate.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 0 ]; then
    rm -rf /run/evergreen
fi
exit 0
