//! What `eg-mqtt-bench` reads about a broker's processes from `/proc`: the process and its
//! descendants, their CPU time (utime + stime) and their resident size. The proc root is a
//! parameter so the parsing is tested against files in a temporary directory. It only reads.

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

    /// utime + stime of `pid` and its descendants, in clock ticks (0 for a process gone).
    pub fn cpu_ticks(&self, pid: i32) -> u64 {
        self.tree(pid)
            .iter()
            .filter_map(|p| self.stat(*p))
            .map(|(_, t)| t)
            .sum()
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
        assert_eq!(proc.cpu_ticks(10), 16);
        assert_eq!(proc.rss_kib(10), 1230);
        assert_eq!(proc.cpu_ticks(99), 0);
    }

    #[test]
    fn a_malformed_stat_is_skipped() {
        assert_eq!(parse_stat("12 (x) S 1"), None);
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_rss_kib("VmRSS: lots"), None);
    }
}
