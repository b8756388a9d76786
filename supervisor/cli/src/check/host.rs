//! The host checks of `evergreen check`: the clock, the free space where the runtime writes
//! (spool, sessions, logs, versions), and container support as
//! `evergreen_runtime::sandbox::check` finds it (the findings stay that module's; here they
//! only become report lines).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use x509_parser::time::ASN1Time;

use super::Check;

/// 2024-01-01T00:00:00Z: a clock before it has not been set (no RTC, no NTP yet), and TLS
/// with any certificate issued since fails.
const SANE_EPOCH_SECS: i64 = 1_704_067_200;

/// Free space below which the runtime's writes fail soon: spool, sessions and logs stop.
pub(crate) const DISK_FAIL_BYTES: u64 = 10 * 1024 * 1024;
/// Free space below which an operator should act.
pub(crate) const DISK_WARN_BYTES: u64 = 100 * 1024 * 1024;
/// On a small filesystem (under [`DISK_SMALL_FREE_BYTES`] free) a share below this percentage
/// is also a warning; a large disk with a few percent free has room for years of logs.
pub(crate) const DISK_WARN_PERCENT: u64 = 5;
pub(crate) const DISK_SMALL_FREE_BYTES: u64 = 1024 * 1024 * 1024;

/// `clock`: the year is 2024 or later and no certificate the runtime uses starts in the future.
pub(crate) fn clock(latest_not_before: Option<&(i64, String, std::path::PathBuf)>) -> Check {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let shown =
        ASN1Time::from_timestamp(now).map_or_else(|_| format!("{now} s"), |t| t.to_string());
    if now < SANE_EPOCH_SECS {
        return Check::fail(
            "clock",
            format!("the clock says {shown}, before 2024: it has not been set"),
            "set the time (enable NTP: `timedatectl set-ntp true`, or an RTC); TLS fails until then",
        );
    }
    if let Some((not_before, text, path)) = latest_not_before {
        if now < *not_before {
            return Check::fail(
                "clock",
                format!(
                    "the clock says {shown}, before {} starts ({text})",
                    path.display()
                ),
                "set the time (NTP); the certificate is not valid yet by this clock",
            );
        }
    }
    Check::ok("clock", format!("{shown} (UTC)"))
}

/// `disk`: free space on the filesystem of the write directory.
pub(crate) fn disk(write_dir: &Path) -> Check {
    // Before the first run the directory may not exist yet: its filesystem is its nearest
    // existing ancestor's.
    let Some(existing) = write_dir.ancestors().find(|p| p.exists()) else {
        return Check::warn(
            "disk",
            format!("{}: no part of the path exists", write_dir.display()),
            "set writeDirectory or evergreen.root to a directory on a writable filesystem",
        );
    };
    let stat = match nix::sys::statvfs::statvfs(existing) {
        Ok(stat) => stat,
        Err(e) => {
            return Check::warn(
                "disk",
                format!("{}: cannot read the free space: {e}", existing.display()),
                "check that the directory is on a mounted filesystem",
            )
        }
    };
    let fragment = stat.fragment_size();
    let free = stat.blocks_available().saturating_mul(fragment);
    let total = stat.blocks().saturating_mul(fragment);
    disk_verdict(write_dir, free, total)
}

/// The thresholds, apart from the system call so they are unit-tested.
pub(crate) fn disk_verdict(write_dir: &Path, free: u64, total: u64) -> Check {
    // A filesystem reporting no size (some pseudo filesystems) counts as all free.
    let percent = free.saturating_mul(100).checked_div(total).unwrap_or(100);
    let detail = format!(
        "{}: {} free of {} ({percent} %), for the spool, MQTT sessions, logs and group versions",
        write_dir.display(),
        human(free),
        human(total)
    );
    let hint = "free space on that filesystem (old logs, other programs' data) or move \
                writeDirectory to a larger one";
    if free < DISK_FAIL_BYTES {
        Check::fail("disk", detail, hint)
    } else if free < DISK_WARN_BYTES
        || (free < DISK_SMALL_FREE_BYTES && percent < DISK_WARN_PERCENT)
    {
        Check::warn("disk", detail, hint)
    } else {
        Check::ok("disk", detail)
    }
}

fn human(bytes: u64) -> String {
    const MB: u64 = 1024 * 1024;
    if bytes >= 10 * 1024 * MB {
        format!("{} GiB", bytes / (1024 * MB))
    } else {
        format!("{} MiB", bytes / MB)
    }
}

/// `container …`: today's container-mode findings, one line each. A missing requirement is a
/// warning (container mode cannot run, NoContainer still does; a group that needs container
/// mode fails the `group` check with the reason), a missing option is OK with its note.
pub(crate) fn container() -> Vec<Check> {
    let report = evergreen_runtime::sandbox::check::host_report();
    let blocked = report.blockers().is_some();
    let mut out: Vec<Check> = report
        .findings
        .iter()
        .map(|f| {
            // Names stay unique: the runtime's own capability sets beside what a container
            // component keeps (`container capabilities`).
            let name = match f.what.as_str() {
                "capabilities" => "container runtime capabilities".to_string(),
                what if what.starts_with("container") => what.to_string(),
                what => format!("container {what}"),
            };
            match (f.ok, f.required) {
                (true, _) => Check::ok(name, &f.detail),
                (false, false) => Check::ok(name, format!("{} (optional)", f.detail)),
                (false, true) => Check::warn(
                    name,
                    format!(
                        "{}: container mode (GreengrassContainer) cannot run",
                        f.detail
                    ),
                    "run the runtime as root on a kernel with the namespaces and cgroups \
                     listed (`evergreen check --container`); NoContainer groups run without it",
                ),
            }
        })
        .collect();
    if !blocked {
        out.push(Check::ok(
            "container mode",
            "GreengrassContainer and NoContainer can run on this host",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Status;

    const GIB: u64 = 1024 * 1024 * 1024;

    #[test]
    fn disk_thresholds() {
        let p = Path::new("/w");
        assert_eq!(disk_verdict(p, 5 << 20, 100 * GIB).status, Status::Fail);
        assert_eq!(disk_verdict(p, 50 << 20, 100 * GIB).status, Status::Warn);
        // 500 MiB of 16 GiB is 3 %: a small margin on a small disk.
        assert_eq!(disk_verdict(p, 500 << 20, 16 * GIB).status, Status::Warn);
        // 2 GiB of 250 GiB is under 1 %, but 2 GiB is room enough.
        assert_eq!(disk_verdict(p, 2 * GIB, 250 * GIB).status, Status::Ok);
        assert_eq!(disk_verdict(p, 500 << 20, 2 * GIB).status, Status::Ok);
    }

    #[test]
    fn a_clock_before_a_certificate_fails() {
        assert_eq!(clock(None).status, Status::Ok);
        let future = (i64::MAX / 2, "far".to_string(), "/c.pem".into());
        let c = clock(Some(&future));
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("/c.pem"), "{}", c.detail);
    }
}
