//! What `eg-mqtt-bench` reads about a broker's processes from `/proc`: the process and its
//! descendants, their CPU time and their resident size. The proc root is a parameter so the
//! parsing is tested against files in a temporary directory. It only reads.
//!
//! CPU time comes from each live thread's `schedstat` (nanoseconds) rather than from `stat`'s
//! utime + stime alone (clock ticks, 10 ms): a short case costs a broker a few ticks, too
//! coarse to compare per message. Threads that have exited are still counted, with tick
//! precision: the process's `stat` total minus what its live threads' `stat` holds.

use std::path::{Path, PathBuf};

/// A `/proc` to read (the real one, or a test's directory laid out the same way).
#[derive(Debug, Clone)]
pub struct Proc {
    root: PathBuf,
}

impl Default for Proc {
    fn default() -> Self {
        Proc::at("/proc")
    }
}

/// `(ppid, utime + stime in clock ticks)` from the text of `/proc/<pid>/stat`.
fn parse_stat(text: &str) -> Option<(i32, u64)> {
    // The command name is in parentheses and may contain spaces: fields are counted after the
    // last ')'. There, field 3 (state) comes first: ppid is the 2nd, utime the 12th, stime the
    // 13th (fields 4, 14 and 15 of proc(5)).
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// `VmRSS` in KiB from the text of `/proc/<pid>/status`.
fn parse_rss_kib(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Proc {
    pub fn at(root: impl AsRef<Path>) -> Proc {
        Proc {
            root: root.as_ref().to_path_buf(),
        }
    }

    fn stat(&self, pid: i32) -> Option<(i32, u64)> {
        let text = std::fs::read_to_string(self.root.join(pid.to_string()).join("stat")).ok()?;
        parse_stat(&text)
    }

    /// `pid` and every live descendant (a broker that forks workers is measured whole).
    pub fn tree(&self, pid: i32) -> Vec<i32> {
        let mut parents = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for entry in entries.flatten() {
                let Some(p) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                    continue;
                };
                if let Some((ppid, _)) = self.stat(p) {
                    parents.push((p, ppid));
                }
            }
        }
        let mut out = vec![pid];
        let mut i = 0;
        while i < out.len() {
            let parent = out[i];
            out.extend(
                parents
                    .iter()
                    .filter(|(_, ppid)| *ppid == parent)
                    .map(|(p, _)| *p),
            );
            i += 1;
        }
        out
    }

    /// CPU time of `pid` and its descendants in ns: live threads to the nanosecond (their
    /// `schedstat`), exited ones to the tick (see the module's comment). A process without
    /// `schedstat` (a kernel without CONFIG_SCHED_INFO) is counted in ticks.
    pub fn cpu_ns(&self, pid: i32, tick_ns: u64) -> u64 {
        let mut total = 0;
        for p in self.tree(pid) {
            let Some((_, ticks)) = self.stat(p) else {
                continue;
            };
            let tasks = self.root.join(p.to_string()).join("task");
            let mut live_ticks = 0u64;
            let mut live_ns = 0u64;
            let mut precise = true;
            if let Ok(entries) = std::fs::read_dir(&tasks) {
                for entry in entries.flatten() {
                    let dir = entry.path();
                    let ns = std::fs::read_to_string(dir.join("schedstat"))
                        .ok()
                        .and_then(|t| t.split_whitespace().next()?.parse::<u64>().ok());
                    let stat = std::fs::read_to_string(dir.join("stat"))
                        .ok()
                        .and_then(|t| parse_stat(&t));
                    match (ns, stat) {
                        (Some(ns), Some((_, t))) => {
                            live_ns += ns;
                            live_ticks += t;
                        }
                        // A thread that exited between the listing and the read: its time
                        // is in the process's total, counted below.
                        (None, None) => {}
                        _ => precise = false,
                    }
                }
            } else {
                precise = false;
            }
            total += if precise {
                live_ns + ticks.saturating_sub(live_ticks) * tick_ns
            } else {
                ticks * tick_ns
            };
        }
        total
    }

    /// Resident size of `pid` and its descendants in KiB (0 for a process gone).
    pub fn rss_kib(&self, pid: i32) -> u64 {
        self.tree(pid)
            .iter()
            .filter_map(|p| {
                std::fs::read_to_string(self.root.join(p.to_string()).join("status")).ok()
            })
            .filter_map(|text| parse_rss_kib(&text))
            .sum()
    }
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`; 100 if it cannot be read).
pub fn ticks_per_sec() -> u64 {
    // SAFETY: sysconf only reads a configuration value; no memory is passed.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(n).ok().filter(|n| *n > 0).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(root: &Path, pid: i32, ppid: i32, ticks: (u64, u64), rss: u64) {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("stat"),
            format!(
                "{pid} (a (b) c) S {ppid} 1 1 0 -1 0 0 0 0 0 {} {} 0 0 20 0 4 0 1 0 0\n",
                ticks.0, ticks.1
            ),
        )
        .expect("stat");
        std::fs::write(
            dir.join("status"),
            format!("Name:\tx\nVmPeak:\t 9 kB\nVmRSS:\t {rss} kB\n"),
        )
        .expect("status");
    }

    #[test]
    fn a_process_tree_is_summed_and_strangers_are_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        fake(dir.path(), 10, 1, (5, 7), 1000);
        fake(dir.path(), 11, 10, (1, 2), 200);
        fake(dir.path(), 12, 11, (0, 1), 30);
        fake(dir.path(), 20, 1, (100, 100), 5000);
        std::fs::create_dir_all(dir.path().join("self")).expect("mkdir");
        let proc = Proc::at(dir.path());
        let mut tree = proc.tree(10);
        tree.sort_unstable();
        assert_eq!(tree, vec![10, 11, 12]);
        assert_eq!(proc.rss_kib(10), 1230);
        // Without task directories, CPU time is counted in ticks: 16 of 10 ms.
        assert_eq!(proc.cpu_ns(10, 10_000_000), 160_000_000);
        assert_eq!(proc.cpu_ns(99, 10_000_000), 0);
    }

    #[test]
    fn live_threads_count_in_ns_and_exited_ones_in_ticks() {
        let dir = tempfile::tempdir().expect("temp dir");
        // The process: 50 ticks in all; its two live threads hold 30 of them.
        fake(dir.path(), 10, 1, (40, 10), 1000);
        for (tid, ticks, ns) in [(10, 20, 201_000_000u64), (11, 10, 99_500_000)] {
            let task = dir.path().join("10/task").join(tid.to_string());
            std::fs::create_dir_all(&task).expect("mkdir");
            std::fs::write(
                task.join("stat"),
                format!("{tid} (t) S 1 1 1 0 -1 0 0 0 0 0 {ticks} 0 0 0\n"),
            )
            .expect("stat");
            std::fs::write(task.join("schedstat"), format!("{ns} 5 6\n")).expect("schedstat");
        }
        let proc = Proc::at(dir.path());
        // 300.5 ms live, 20 ticks of 10 ms exited.
        assert_eq!(proc.cpu_ns(10, 10_000_000), 300_500_000 + 200_000_000);
    }

    #[test]
    fn a_malformed_stat_is_skipped() {
        assert_eq!(parse_stat("12 (x) S 1"), None);
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_rss_kib("VmRSS: lots"), None);
    }
}
