//! Gives back the pages of `evergreen run`'s start-up code once start-up is over.
//!
//! The runtime runs much of its code exactly once: the command line, the configuration and
//! group checks, the group CA and certificates, the first deployment. Every page of the
//! executable it touched stays mapped (with its neighbours: the kernel maps 64 KB or more
//! around each fault), so the supervisor kept about 8 MB of the binary mapped where its
//! steady state uses about 2 MB. [`drop_code_pages`] unmaps the executable's read-only file
//! mappings (`madvise(MADV_DONTNEED)`); code that runs again faults back in from the page
//! cache, so what stays mapped is what the runtime keeps using.
//!
//! It must never touch a writable mapping, nor one holding private copies of its pages (a
//! PIE's relocated `.data.rel.ro`): for those `MADV_DONTNEED` would discard data. Only
//! mappings of this executable that are read-only and whose `Anonymous` count is zero are
//! dropped; for them the file holds exactly what was mapped.

use std::ops::Range;

/// One mapping of `/proc/self/smaps` that may be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mapping {
    range: Range<usize>,
    /// Resident, in kB, when it was read.
    rss_kb: u64,
}

/// A mapping's header line: range, permissions, device, inode.
#[derive(Debug)]
struct Header<'a> {
    range: Range<usize>,
    perms: &'a str,
    /// Device and inode as the kernel prints them: which file is mapped.
    file: (&'a str, &'a str),
}

fn header(line: &str) -> Option<Header<'_>> {
    let mut fields = line.split_ascii_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?;
    let _offset = fields.next()?;
    let dev = fields.next()?;
    let inode = fields.next()?;
    // Field lines ("Rss:   12 kB") have no range; a header's device reads "fd:01".
    if !dev.contains(':') {
        return None;
    }
    Some(Header {
        range: usize::from_str_radix(start, 16).ok()?..usize::from_str_radix(end, 16).ok()?,
        perms,
        file: (dev, inode),
    })
}

/// The read-only mappings without private pages of the file whose mapping holds `inside`
/// (an address of this program's code), from the text of `/proc/self/smaps`.
fn code_mappings(smaps: &str, inside: usize) -> Vec<Mapping> {
    struct Entry<'a> {
        header: Header<'a>,
        rss_kb: Option<u64>,
        anonymous_kb: Option<u64>,
    }
    let mut entries: Vec<Entry<'_>> = Vec::new();
    for line in smaps.lines() {
        if let Some(header) = header(line) {
            entries.push(Entry {
                header,
                rss_kb: None,
                anonymous_kb: None,
            });
            continue;
        }
        let Some(entry) = entries.last_mut() else {
            continue;
        };
        let kb = |name: &str| {
            line.strip_prefix(name)
                .and_then(|rest| rest.split_ascii_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        if let Some(v) = kb("Rss:") {
            entry.rss_kb = Some(v);
        } else if let Some(v) = kb("Anonymous:") {
            entry.anonymous_kb = Some(v);
        }
    }
    let Some(image) = entries
        .iter()
        .find(|e| e.header.range.contains(&inside))
        .map(|e| e.header.file)
        .filter(|(_, inode)| *inode != "0")
    else {
        return Vec::new();
    };
    entries
        .iter()
        .filter(|e| e.header.file == image)
        .filter(|e| !e.header.perms.contains('w'))
        // Unknown counts (an older kernel's smaps) are treated as private pages: kept.
        .filter(|e| e.anonymous_kb == Some(0))
        .map(|e| Mapping {
            range: e.header.range.clone(),
            rss_kb: e.rss_kb.unwrap_or(0),
        })
        .collect()
}

/// Gives the heap's free pages back to the system: start-up (parsing the group, the group CA's
/// key, the first deployment's plans) leaves freed memory in glibc's arenas, which keeps it
/// for later allocations unless told. A no-op where the C library is not glibc (musl's
/// allocator returns free pages on its own).
pub fn trim_heap() {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: malloc_trim takes each arena's lock itself and releases only memory that no
        // allocation holds; it may be called from any thread at any time.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// Unmaps this executable's read-only, unmodified file mappings; returns the kB that were
/// resident in them. Their pages stay in the page cache, and each comes back (a minor fault)
/// when it is used again.
pub fn drop_code_pages() -> std::io::Result<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let inside = drop_code_pages as fn() -> std::io::Result<u64> as usize;
    let mut dropped = 0;
    for m in code_mappings(&smaps, inside) {
        // SAFETY: the range is one whole mapping of this program's own executable file,
        // read-only and holding no private (anonymous) page, as smaps read just now says; a
        // read-only mapping cannot gain one, since nothing writes to it. For such a mapping
        // MADV_DONTNEED only removes page-table entries: every later access reads the same
        // bytes from the file again, so no memory the program can observe changes.
        let rc = unsafe {
            libc::madvise(
                m.range.start as *mut libc::c_void,
                m.range.end - m.range.start,
                libc::MADV_DONTNEED,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        dropped += m.rss_kb;
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PIE as the kernel shows it: header, text, the relocated (private) `.data.rel.ro`,
    /// data, then the heap and a library.
    const SMAPS: &str = "\
55d0a0000000-55d0a0462000 r--p 00000000 fd:01 4242 /usr/bin/evergreen
Size:               4488 kB
Rss:                1536 kB
Anonymous:             0 kB
55d0a0462000-55d0a11eb000 r-xp 00461000 fd:01 4242 /usr/bin/evergreen
Size:              13860 kB
Rss:                9616 kB
Anonymous:             0 kB
55d0a11eb000-55d0a126e000 r--p 011e9000 fd:01 4242 /usr/bin/evergreen
Size:                524 kB
Rss:                 524 kB
Anonymous:           524 kB
55d0a126e000-55d0a1271000 rw-p 0126b000 fd:01 4242 /usr/bin/evergreen
Size:                 12 kB
Rss:                  12 kB
Anonymous:            12 kB
55d0a2000000-55d0a22a6000 rw-p 00000000 00:00 0 [heap]
Size:               2712 kB
Rss:                2328 kB
Anonymous:          2328 kB
7f0000000000-7f0000026000 r--p 00000000 fd:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
Size:                152 kB
Rss:                 152 kB
Anonymous:             0 kB
";

    #[test]
    fn only_the_executables_clean_read_only_mappings_are_dropped() {
        let inside = 0x55d0a0500000;
        assert_eq!(
            code_mappings(SMAPS, inside),
            vec![
                Mapping {
                    range: 0x55d0a0000000..0x55d0a0462000,
                    rss_kb: 1536
                },
                Mapping {
                    range: 0x55d0a0462000..0x55d0a11eb000,
                    rss_kb: 9616
                },
            ],
            "the relocated read-only data, the writable data, the heap and libc are kept"
        );
    }

    #[test]
    fn an_address_outside_any_file_mapping_drops_nothing() {
        // In the heap (inode 0), and in no mapping at all.
        assert_eq!(code_mappings(SMAPS, 0x55d0a2000100), Vec::new());
        assert_eq!(code_mappings(SMAPS, 0x10), Vec::new());
    }

    #[test]
    fn a_mapping_without_an_anonymous_count_is_kept() {
        let old = "\
55d0a0462000-55d0a11eb000 r-xp 00461000 fd:01 4242 /usr/bin/evergreen
Rss:                9616 kB
";
        assert_eq!(code_mappings(old, 0x55d0a0500000), Vec::new());
    }

    #[test]
    fn a_path_with_spaces_or_deleted_is_matched_by_device_and_inode() {
        let text = "\
00400000-00600000 r-xp 00000000 08:02 99 /opt/my apps/evergreen (deleted)
Rss:                  64 kB
Anonymous:             0 kB
";
        assert_eq!(
            code_mappings(text, 0x00500000),
            vec![Mapping {
                range: 0x00400000..0x00600000,
                rss_kb: 64
            }]
        );
    }

    #[test]
    fn dropping_this_test_binarys_code_keeps_it_running() {
        let dropped = drop_code_pages().expect("madvise");
        assert!(dropped > 0, "the test binary's code was resident");
        // Code and read-only data fault back in: this runs, and a table still reads right.
        let words: Vec<String> = ["a", "b"].iter().map(|s| s.repeat(2)).collect();
        assert_eq!(words, ["aa", "bb"]);
    }
}
