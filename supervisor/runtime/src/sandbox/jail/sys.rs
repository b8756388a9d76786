//! Thin wrappers over the system calls the jail makes, between fork and exec. Each takes
//! `CStr`s, so the pointers it passes are valid and NUL-terminated for the duration of the
//! call; none allocates, takes a lock or panics.

use std::ffi::CStr;
use std::ptr;
use std::sync::OnceLock;

fn opt(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(ptr::null(), CStr::as_ptr)
}

pub(super) fn errno() -> i32 {
    // SAFETY: the errno location is thread-local and always valid.
    unsafe { *libc::__errno_location() }
}

pub(super) fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> libc::c_int {
    // SAFETY: every pointer is null or a valid C string (see the module).
    unsafe {
        libc::mount(
            opt(source),
            target.as_ptr(),
            opt(fstype),
            flags,
            opt(data).cast(),
        )
    }
}

pub(super) fn prctl(option: libc::c_int, arg: libc::c_ulong) -> libc::c_int {
    // SAFETY: the prctl options used here take integer arguments only.
    unsafe { libc::prctl(option, arg, 0, 0, 0) }
}

pub(super) fn getppid() -> libc::pid_t {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::getppid() }
}

pub(super) fn exit_now(code: libc::c_int) -> ! {
    // SAFETY: ends the forked child without running the parent's
    // atexit handlers or flushing its copied buffers.
    unsafe { libc::_exit(code) }
}

pub(super) fn write_zero_to(path: &CStr) -> libc::c_int {
    // SAFETY: path is a valid C string; the fd is closed before return.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return -1;
        }
        let n = libc::write(fd, b"0".as_ptr().cast(), 1);
        libc::close(fd);
        if n == 1 {
            0
        } else {
            -1
        }
    }
}

/// Whether `path` is a directory; `None` when it does not exist (or cannot be looked at,
/// which the mount that follows would report).
pub(super) fn is_dir(path: &CStr) -> Option<bool> {
    // SAFETY: an all-zero `stat` is a valid value for the kernel to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: path is a valid C string and st a valid, writable stat buffer.
    let r = unsafe { libc::stat(path.as_ptr(), &mut st) };
    (r == 0).then_some(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

pub(super) fn touch(path: &CStr) -> libc::c_int {
    // SAFETY: path is a valid C string; the fd is closed before return.
    unsafe {
        let fd = libc::open(
            path.as_ptr(),
            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
            0o644,
        );
        if fd < 0 {
            return -1;
        }
        libc::close(fd);
        0
    }
}

pub(super) fn unshare(flags: libc::c_int) -> libc::c_int {
    // SAFETY: integer flags only.
    unsafe { libc::unshare(flags) }
}

/// A pipe whose ends close at exec: `(read, write)`.
pub(super) fn pipe_cloexec() -> Option<(libc::c_int, libc::c_int)> {
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: fds is a valid array of two ints for the kernel to fill.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    (r == 0).then_some((fds[0], fds[1]))
}

pub(super) fn close(fd: libc::c_int) {
    // SAFETY: closes a descriptor this process owns and no longer uses;
    // an error (EBADF) leaves nothing to do.
    unsafe { libc::close(fd) };
}

/// Closes every descriptor but `keep`.
pub(super) fn close_all_but(keep: libc::c_int) {
    // SAFETY: close_range takes integer arguments only; the caller
    // uses no descriptor but `keep` from here on (ranges with
    // first > last, when keep is 0, fail with EINVAL and close nothing).
    unsafe {
        if keep > 0 {
            libc::syscall(libc::SYS_close_range, 0u32, (keep - 1) as u32, 0u32);
        }
        libc::syscall(libc::SYS_close_range, (keep + 1) as u32, u32::MAX, 0u32);
    }
}

pub(super) fn fork() -> libc::pid_t {
    // SAFETY: called in a single-threaded forked child (std's pre_exec),
    // so the second fork has no other threads whose locks it could copy.
    unsafe { libc::fork() }
}

pub(super) fn sethostname(name: &CStr) -> libc::c_int {
    // SAFETY: pointer and length describe the string's bytes.
    unsafe { libc::sethostname(name.as_ptr(), name.to_bytes().len()) }
}

pub(super) fn mkdir(path: &CStr) -> libc::c_int {
    // SAFETY: path is a valid C string.
    unsafe { libc::mkdir(path.as_ptr(), 0o755) }
}

pub(super) fn symlink(target: &CStr, link: &CStr) -> libc::c_int {
    // SAFETY: both are valid C strings.
    unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) }
}

pub(super) fn chdir(path: &CStr) -> libc::c_int {
    // SAFETY: path is a valid C string.
    unsafe { libc::chdir(path.as_ptr()) }
}

pub(super) fn pivot_root(new_root: &CStr, put_old: &CStr) -> libc::c_int {
    // SAFETY: both are valid C strings; the raw syscall has no wrapper in libc.
    unsafe {
        libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) as libc::c_int
    }
}

pub(super) fn umount_detach(path: &CStr) -> libc::c_int {
    // SAFETY: path is a valid C string.
    unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) }
}

pub(super) fn rmdir(path: &CStr) -> libc::c_int {
    // SAFETY: path is a valid C string.
    unsafe { libc::rmdir(path.as_ptr()) }
}

pub(super) fn setgroups(groups: &[libc::gid_t]) -> libc::c_int {
    // SAFETY: pointer and length describe the slice.
    unsafe { libc::setgroups(groups.len(), groups.as_ptr()) }
}

pub(super) fn setresgid(gid: libc::gid_t) -> libc::c_int {
    // SAFETY: integer arguments only.
    unsafe { libc::setresgid(gid, gid, gid) }
}

pub(super) fn setresuid(uid: libc::uid_t) -> libc::c_int {
    // SAFETY: integer arguments only.
    unsafe { libc::setresuid(uid, uid, uid) }
}

/// The kernel's `__user_cap_header_struct` / `__user_cap_data_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

/// Sets the effective, permitted and inheritable sets to these masks (bit `n`: capability
/// `n`), with a raw `capset` (no allocation: this runs between fork and exec). For an empty
/// plan after a switch to a non-zero uid they are already empty; for uid 0 this is what
/// removes root's powers.
pub(super) fn set_capabilities(effective: u64, permitted: u64, inheritable: u64) -> libc::c_int {
    let header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    // Version 3 splits each 64-bit set into two 32-bit words, low word first.
    let word = |mask: u64, high: bool| (if high { mask >> 32 } else { mask }) as u32;
    let data = [false, true].map(|high| CapData {
        effective: word(effective, high),
        permitted: word(permitted, high),
        inheritable: word(inheritable, high),
    });
    // SAFETY: header and data are valid for the duration of the call and
    // laid out as the kernel's capset structures (version 3: two data words).
    unsafe {
        libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) as libc::c_int
    }
}

/// Where this process's brk heap starts and the page size, read once in the supervisor before
/// any fork (see [`note_heap_start`]).
static HEAP_START: OnceLock<(usize, usize)> = OnceLock::new();

/// Reads where the runtime's brk heap starts (`start_brk`, field 47 of `/proc/self/stat`), so
/// a forked waiter and init can give back their copy of the heap ([`release_heap`]). Called
/// in the supervisor when a plan is built; the value never changes for a process.
pub(crate) fn note_heap_start() {
    HEAP_START.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(0);
        (start_brk().unwrap_or(0), page)
    });
}

fn start_brk() -> Option<usize> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_ascii_whitespace().nth(47 - 3)?.parse().ok()
}

/// Gives back this forked child's copy of the supervisor's brk heap (`MADV_DONTNEED`).
///
/// The waiter and init are forks of the supervisor: they share its heap's pages copy-on-write,
/// and each page the supervisor later writes leaves the old copy to them alone, so over time
/// each holds the whole heap as it was at the fork (about 2 MB each, per container component).
/// Neither reads any of it: from their loop on they use only the stack, constants and system
/// calls, and allocate nothing. Called only there, after the last fork and after the last
/// read of the plan (which lives in the heap).
pub(super) fn release_heap() {
    let Some(&(start, page)) = HEAP_START.get() else {
        return;
    };
    if start == 0 || page == 0 {
        return;
    }
    // SAFETY: sbrk(0) only returns the current break; it moves nothing.
    let end = unsafe { libc::sbrk(0) } as usize;
    let start = start.next_multiple_of(page);
    if end <= start {
        return;
    }
    // SAFETY: [start, end) is this process's brk heap, private anonymous memory that only
    // malloc's main arena uses. The caller allocates nothing and reads nothing from the heap
    // from here on (see above), so the zero pages a later access would see are never looked at.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
    }
}
