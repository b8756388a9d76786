# evergreen %preun ($1: 0 = removal, 1 = upgrade): on removal, stop and
# disable the service; on upgrade it keeps running (%post restarts it).
if [ "$1" -eq 0 ]; then
    systemctl disable evergreen.service >/dev/null 2>&1 || :
    if [ -d /run/systemd/system ]; then
        systemctl stop evergreen.service >/dev/null 2>&1 || :
    fi
fi
exit 0
