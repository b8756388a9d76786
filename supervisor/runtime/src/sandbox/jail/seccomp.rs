//! The container's seccomp filter: the system calls a jailed component may not make.
//!
//! A deny-list, built once in [`JailPlan::build`](super::JailPlan::build) and installed by the
//! jail's last steps (after `no_new_privs`, before the component is forked), so the namespace's
//! init and the component both run under it and nothing they start can lift it. It blocks what
//! Docker's default profile and runc block for an unprivileged container and a component has no
//! use for:
//!
//! * new namespaces — `unshare`, `setns`, and `clone` with any `CLONE_NEW*` flag (a fresh user
//!   namespace hands out a full capability set: the entry point of many kernel exploits);
//!   `clone3` answers `ENOSYS`, since its flags sit in memory a filter cannot read, and C
//!   libraries then fall back to `clone`, which is checked;
//! * mounts and roots — `mount`, `umount2`, `pivot_root`, `chroot`, and the new mount API
//!   (`fsopen`, `fsconfig`, `fsmount`, `fspick`, `move_mount`, `open_tree`, `mount_setattr`);
//! * the kernel keyring — `keyctl`, `add_key`, `request_key`;
//! * kernel code and tracing — `bpf`, `perf_event_open`, `userfaultfd`, module loading
//!   (`init_module`, `finit_module`, `delete_module`), `kexec_load`, `kexec_file_load`;
//! * other processes — `ptrace`, `process_vm_readv`, `process_vm_writev` (a component cannot
//!   be debugged from inside its container; debug it in NoContainer mode);
//! * host-wide state — `reboot`, `swapon`, `swapoff`, `acct`, `syslog`, `settimeofday`,
//!   `clock_settime`, `clock_adjtime`, `adjtimex`, `quotactl`, `lookup_dcookie`, `vhangup`,
//!   `open_by_handle_at`, `name_to_handle_at`, and on x86-64 `iopl`, `ioperm`.
//!
//! Each answers `EPERM` (`clone3`: `ENOSYS`) rather than killing the process, so a program that
//! probes for a feature degrades as it would without the privilege. A system call of another
//! architecture's convention (a 32-bit call on a 64-bit kernel, x32 on x86-64) kills the
//! process: the numbers below mean nothing there. Everything else is allowed. Architectures
//! with a filter: x86-64, AArch64 and 32-bit ARM (every Raspberry Pi OS); a build for another
//! architecture runs its containers without one ([`SUPPORTED`] is false there).

/// The kernel's `AUDIT_ARCH_*` for this build's architecture.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;
#[cfg(target_arch = "arm")]
const AUDIT_ARCH: u32 = 0x4000_0028;

/// Whether this build has a filter (see the module documentation).
pub(crate) const SUPPORTED: bool = cfg!(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "arm"
));

/// `clone` flags that make a namespace.
const NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    // CLONE_NEWTIME (Linux 5.6), not in every libc.
    | 0x0000_0080) as u32;

/// Offsets into the kernel's `struct seccomp_data`.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;
/// The low 32 bits of the first argument (every supported architecture is little-endian).
const ARG0_LOW_OFFSET: u32 = 16;

/// `kexec_file_load`'s number: the libc crate's musl bindings for aarch64 and arm lack it
/// (the kernel's tables: `arch/x86/entry/syscalls/syscall_64.tbl`, `asm-generic/unistd.h`,
/// `arch/arm/tools/syscall.tbl`).
#[cfg(target_arch = "x86_64")]
const SYS_KEXEC_FILE_LOAD: libc::c_long = 320;
#[cfg(target_arch = "aarch64")]
const SYS_KEXEC_FILE_LOAD: libc::c_long = 294;
#[cfg(target_arch = "arm")]
const SYS_KEXEC_FILE_LOAD: libc::c_long = 401;

/// The denied system calls of this architecture.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "arm"))]
fn denied() -> Vec<libc::c_long> {
    let mut list = vec![
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_mount_setattr,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        SYS_KEXEC_FILE_LOAD,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_acct,
        libc::SYS_syslog,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
        libc::SYS_quotactl,
        libc::SYS_lookup_dcookie,
        libc::SYS_vhangup,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
    ];
    #[cfg(target_arch = "x86_64")]
    list.extend([libc::SYS_iopl, libc::SYS_ioperm]);
    list
}

/// A classic BPF program for `PR_SET_SECCOMP`, kept apart from the jail's other steps so
/// they stay comparable in tests.
#[derive(Clone)]
pub(crate) struct Filter(Vec<libc::sock_filter>);

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Filter({} instructions)", self.0.len())
    }
}

impl PartialEq for Filter {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|(a, b)| (a.code, a.jt, a.jf, a.k) == (b.code, b.jt, b.jf, b.k))
    }
}

impl Eq for Filter {}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

/// A jump whose targets are instruction indexes, resolved by [`Filter::build`].
enum Insn {
    Plain(libc::sock_filter),
    Jump {
        code: u32,
        k: u32,
        on_true: usize,
        on_false: usize,
    },
}

impl Filter {
    /// The filter of this architecture, or `None` where there is none.
    pub(crate) fn build() -> Option<Filter> {
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "arm"))]
        {
            Some(Self::program(&denied()))
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "arm")))]
        {
            None
        }
    }

    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "arm"))]
    fn program(denied: &[libc::c_long]) -> Filter {
        const LD_W_ABS: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
        const JEQ: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
        const RET: u32 = libc::BPF_RET | libc::BPF_K;
        // The body jumps to three returns placed after it; their indexes are known once the
        // body's length is.
        let body_len = 4 + usize::from(cfg!(target_arch = "x86_64")) + denied.len() + 4;
        let (allow, deny, enosys) = (body_len, body_len + 1, body_len + 2);
        let mut body: Vec<Insn> = Vec::with_capacity(body_len + 3);
        body.push(Insn::Plain(stmt(LD_W_ABS, ARCH_OFFSET)));
        body.push(Insn::Jump {
            code: JEQ,
            k: AUDIT_ARCH,
            on_true: 3,
            on_false: 2,
        });
        body.push(Insn::Plain(stmt(RET, libc::SECCOMP_RET_KILL_PROCESS)));
        body.push(Insn::Plain(stmt(LD_W_ABS, NR_OFFSET)));
        #[cfg(target_arch = "x86_64")]
        {
            // x32 system calls are numbered from bit 30.
            let next = body.len() + 1;
            body.push(Insn::Jump {
                code: libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
                k: 0x4000_0000,
                on_true: deny,
                on_false: next,
            });
        }
        for nr in denied {
            let next = body.len() + 1;
            body.push(Insn::Jump {
                code: JEQ,
                k: *nr as u32,
                on_true: deny,
                on_false: next,
            });
        }
        let next = body.len() + 1;
        body.push(Insn::Jump {
            code: JEQ,
            k: libc::SYS_clone3 as u32,
            on_true: enosys,
            on_false: next,
        });
        let next = body.len() + 1;
        body.push(Insn::Jump {
            code: JEQ,
            k: libc::SYS_clone as u32,
            on_true: next,
            on_false: allow,
        });
        body.push(Insn::Plain(stmt(LD_W_ABS, ARG0_LOW_OFFSET)));
        body.push(Insn::Jump {
            code: libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K,
            k: NAMESPACE_FLAGS,
            on_true: deny,
            on_false: allow,
        });
        debug_assert_eq!(body.len(), body_len);
        body.push(Insn::Plain(stmt(RET, libc::SECCOMP_RET_ALLOW)));
        body.push(Insn::Plain(stmt(
            RET,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        )));
        body.push(Insn::Plain(stmt(
            RET,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        )));
        let program = body
            .into_iter()
            .enumerate()
            .map(|(i, insn)| match insn {
                Insn::Plain(f) => f,
                Insn::Jump {
                    code,
                    k,
                    on_true,
                    on_false,
                } => libc::sock_filter {
                    code: code as u16,
                    // Offsets are relative to the next instruction and fit a u8: the
                    // program is well under 256 instructions (checked in the tests).
                    jt: (on_true - i - 1) as u8,
                    jf: (on_false - i - 1) as u8,
                    k,
                },
            })
            .collect();
        Filter(program)
    }

    /// Installs the filter on the calling thread. Async-signal-safe: no allocation (the
    /// program was built before the fork). Needs `no_new_privs` (or `CAP_SYS_ADMIN`).
    pub(crate) fn install(&self) -> libc::c_int {
        let prog = libc::sock_fprog {
            len: self.0.len() as libc::c_ushort,
            filter: self.0.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points at this filter's instructions, which outlive the call (the
        // kernel copies them); PR_SET_SECCOMP takes the mode and a pointer to a sock_fprog.
        unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &prog as *const libc::sock_fprog as libc::c_ulong,
                0,
                0,
            )
        }
    }

    #[cfg(test)]
    pub(crate) fn instructions(&self) -> &[libc::sock_filter] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the libc crate has the number (glibc targets), ours is the same.
    #[cfg(target_env = "gnu")]
    #[test]
    fn kexec_file_load_is_the_kernel_number() {
        assert_eq!(SYS_KEXEC_FILE_LOAD, libc::SYS_kexec_file_load);
    }

    /// Runs the filter over one system call, as the kernel would: returns the action.
    fn run(filter: &Filter, arch: u32, nr: u32, arg0: u32) -> u32 {
        let prog = filter.instructions();
        let (mut pc, mut acc) = (0usize, 0u32);
        for _ in 0..1000 {
            let insn = prog[pc];
            let code = u32::from(insn.code);
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    acc = match insn.k {
                        NR_OFFSET => nr,
                        ARCH_OFFSET => arch,
                        ARG0_LOW_OFFSET => arg0,
                        other => panic!("load at {other}"),
                    };
                    pc += 1;
                }
                c if c == libc::BPF_RET | libc::BPF_K => return insn.k,
                c if c & 0x07 == libc::BPF_JMP => {
                    let taken = match c & 0xf0 {
                        op if op == libc::BPF_JEQ => acc == insn.k,
                        op if op == libc::BPF_JGE => acc >= insn.k,
                        op if op == libc::BPF_JSET => acc & insn.k != 0,
                        op => panic!("jump op {op:#x}"),
                    };
                    pc += 1 + usize::from(if taken { insn.jt } else { insn.jf });
                }
                other => panic!("instruction {other:#x}"),
            }
        }
        panic!("the program does not end");
    }

    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

    #[test]
    fn denied_calls_get_eperm_and_others_pass() {
        let filter = Filter::build().expect("a filter on this architecture");
        assert!(filter.instructions().len() < 256);
        for nr in denied() {
            assert_eq!(
                run(&filter, AUDIT_ARCH, nr as u32, 0),
                EPERM,
                "syscall {nr}"
            );
        }
        for nr in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_openat,
            libc::SYS_execve,
        ] {
            assert_eq!(
                run(&filter, AUDIT_ARCH, nr as u32, 0),
                libc::SECCOMP_RET_ALLOW
            );
        }
    }

    #[test]
    fn clone_is_checked_for_namespace_flags_and_clone3_falls_back() {
        let filter = Filter::build().expect("a filter");
        let clone = libc::SYS_clone as u32;
        // fork() and threads.
        let thread = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD) as u32;
        assert_eq!(
            run(&filter, AUDIT_ARCH, clone, libc::SIGCHLD as u32),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(
            run(&filter, AUDIT_ARCH, clone, thread),
            libc::SECCOMP_RET_ALLOW
        );
        for flag in [
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWNS,
            libc::CLONE_NEWNET,
            libc::CLONE_NEWPID,
        ] {
            let flags = flag as u32 | libc::SIGCHLD as u32;
            assert_eq!(run(&filter, AUDIT_ARCH, clone, flags), EPERM, "{flag:#x}");
        }
        assert_eq!(
            run(&filter, AUDIT_ARCH, libc::SYS_clone3 as u32, 0),
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        );
    }

    #[test]
    fn another_architectures_calls_kill() {
        let filter = Filter::build().expect("a filter");
        assert_eq!(
            run(&filter, 0x4000_0003, libc::SYS_read as u32, 0),
            libc::SECCOMP_RET_KILL_PROCESS
        );
        #[cfg(target_arch = "x86_64")]
        assert_eq!(run(&filter, AUDIT_ARCH, 0x4000_0000, 0), EPERM);
    }
}
