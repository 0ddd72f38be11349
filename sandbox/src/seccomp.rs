//! The seccomp filter every sandbox runs under, built once per engine.
//!
//! Policy: a deny list on top of dropped capabilities. Most listed calls would already fail
//! for lack of a capability; the filter is the second wall (kernel bugs behind those calls are
//! the usual container escapes). Denied calls return EPERM, except `clone3`, which returns
//! ENOSYS so libc falls back to `clone`, whose flags the filter can inspect (no new
//! namespaces, user namespaces included). Calls from a foreign architecture kill the process
//! and x32 system-call numbers are refused, so neither ABI can bypass the list.
//!
//! Why generated here rather than by a filter compiler: the kernel runs every new filter over
//! every syscall number when it is installed (to cache the always-allowed ones), once per
//! sandbox start. A linear chain of comparisons made that ~3 % of the CPU of a burst of
//! sandboxed `true` bots; a binary search over the sorted numbers takes ~7 comparisons for any
//! call instead of up to ~55, at install and at run time, in one program instead of two.

use crate::error::SandboxError;

/// Syscalls denied outright with EPERM.
const DENIED: &[libc::c_long] = &[
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_bpf,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_perf_event_open,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_mount_setattr,
    libc::SYS_userfaultfd,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_syslog,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
    libc::SYS_vhangup,
    libc::SYS_kcmp,
    libc::SYS_pidfd_getfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_lookup_dcookie,
];

/// The x32 ABI marks its syscall numbers with this bit; they share x86_64's audit arch.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Every namespace flag `clone` could use to create a namespace. All sit in the low 32 bits of
/// the flags argument, which is what the filter inspects.
const CLONE_NS_FLAGS: u32 = (libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWCGROUP) as u32;

/// `offsetof(struct seccomp_data, …)`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
/// The low half of `args[0]` (both supported architectures are little-endian).
const DATA_ARG0_LOW: u32 = 16;

fn audit_arch() -> Result<u32, SandboxError> {
    if cfg!(target_arch = "x86_64") {
        Ok(0xC000_003E) // AUDIT_ARCH_X86_64
    } else if cfg!(target_arch = "aarch64") {
        Ok(0xC000_00B7) // AUDIT_ARCH_AARCH64
    } else {
        Err(SandboxError::Unavailable(
            "the seccomp filter is built for x86_64 and aarch64 only".into(),
        ))
    }
}

/// A compiled program in the kernel's instruction type, ready for seccomp(2).
pub type Program = Vec<libc::sock_filter>;

/// Builds the program a sandbox installs (done once per engine, before any fork).
pub fn program() -> Result<Program, SandboxError> {
    build(audit_arch()?)
}

/// What the filter does with a listed syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Eperm,
    Enosys,
    /// `clone`: EPERM if any namespace flag is set, else allowed.
    CloneFlags,
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: usize, jf: usize) -> Result<libc::sock_filter, SandboxError> {
    let offset = |o: usize| {
        u8::try_from(o).map_err(|_| SandboxError::Seccomp(format!("jump of {o} is too long")))
    };
    Ok(libc::sock_filter {
        code: code as u16,
        jt: offset(jt)?,
        jf: offset(jf)?,
        k,
    })
}

/// The listed syscalls, sorted by number; a number listed twice is a mistake in the policy.
fn listed() -> Result<Vec<(u32, Verdict)>, SandboxError> {
    let mut calls: Vec<(u32, Verdict)> = DENIED
        .iter()
        .map(|&nr| (nr as u32, Verdict::Eperm))
        .chain([
            (libc::SYS_clone as u32, Verdict::CloneFlags),
            (libc::SYS_clone3 as u32, Verdict::Enosys),
        ])
        .collect();
    calls.sort_unstable_by_key(|&(nr, _)| nr);
    if let Some(pair) = calls.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(SandboxError::Seccomp(format!(
            "syscall {} is listed twice",
            pair[0].0
        )));
    }
    Ok(calls)
}

/// The whole program: guards, a binary search over the listed numbers, then the verdicts.
fn build(arch: u32) -> Result<Program, SandboxError> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_RET, BPF_W};
    let ld = BPF_LD | BPF_W | BPF_ABS;
    let ret = BPF_RET | BPF_K;
    let errno = |e: i32| libc::SECCOMP_RET_ERRNO | e as u32;
    let calls = listed()?;
    let mut p = vec![
        stmt(ld, DATA_ARCH),
        jump(BPF_JMP | BPF_JEQ | BPF_K, arch, 1, 0)?,
        stmt(ret, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(ld, DATA_NR),
        jump(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1)?,
        stmt(ret, errno(libc::EPERM)),
    ];
    // The verdict blocks follow the search tree, at these distances from its end.
    let tree_end = p.len() + tree_len(calls.len());
    let tails = Tails {
        clone: tree_end,
        allow: tree_end + 2,
        eperm: tree_end + 3,
        enosys: tree_end + 4,
    };
    search(&calls, &tails, &mut p)?;
    debug_assert_eq!(p.len(), tree_end);
    p.push(stmt(ld, DATA_ARG0_LOW));
    p.push(jump(BPF_JMP | BPF_JSET | BPF_K, CLONE_NS_FLAGS, 1, 0)?);
    p.push(stmt(ret, libc::SECCOMP_RET_ALLOW));
    p.push(stmt(ret, errno(libc::EPERM)));
    p.push(stmt(ret, errno(libc::ENOSYS)));
    Ok(p)
}

/// Where the verdict blocks start (instruction indexes).
struct Tails {
    clone: usize,
    allow: usize,
    eperm: usize,
    enosys: usize,
}

/// Instructions of the search tree over `n` numbers: a comparison per inner node and per leaf.
fn tree_len(n: usize) -> usize {
    2 * n - 1
}

/// Emits the search over `calls` (sorted): `nr > pivot` jumps over the left half; a leaf
/// compares for equality and jumps to its verdict, or to "allow".
fn search(calls: &[(u32, Verdict)], tails: &Tails, p: &mut Program) -> Result<(), SandboxError> {
    use libc::{BPF_JEQ, BPF_JGT, BPF_JMP, BPF_K};
    let here = p.len() + 1; // jumps count from the next instruction
    if let [(nr, verdict)] = calls {
        let target = match verdict {
            Verdict::Eperm => tails.eperm,
            Verdict::Enosys => tails.enosys,
            Verdict::CloneFlags => tails.clone,
        };
        p.push(jump(
            BPF_JMP | BPF_JEQ | BPF_K,
            *nr,
            target - here,
            tails.allow - here,
        )?);
        return Ok(());
    }
    let (left, right) = calls.split_at(calls.len() / 2);
    let pivot = left[left.len() - 1].0;
    p.push(jump(
        BPF_JMP | BPF_JGT | BPF_K,
        pivot,
        tree_len(left.len()),
        0,
    )?);
    search(left, tails, p)?;
    search(right, tails, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slice of classic BPF the program uses, run as the kernel would: returns the action
    /// and how many instructions ran.
    fn run(p: &[libc::sock_filter], nr: u32, arch: u32, arg0: u64) -> (u32, usize) {
        let word = |k: u32| match k {
            DATA_NR => nr,
            DATA_ARCH => arch,
            DATA_ARG0_LOW => arg0 as u32,
            other => panic!("load of offset {other}"),
        };
        let (mut pc, mut acc, mut steps) = (0usize, 0u32, 0usize);
        loop {
            let i = p[pc];
            steps += 1;
            let code = u32::from(i.code);
            if code == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS {
                acc = word(i.k);
                pc += 1;
                continue;
            }
            if code == libc::BPF_RET | libc::BPF_K {
                return (i.k, steps);
            }
            let taken = match code & !(libc::BPF_JMP | libc::BPF_K) {
                libc::BPF_JEQ => acc == i.k,
                libc::BPF_JGT => acc > i.k,
                libc::BPF_JGE => acc >= i.k,
                libc::BPF_JSET => acc & i.k != 0,
                other => panic!("unexpected instruction {other:#x}"),
            };
            pc += 1 + usize::from(if taken { i.jt } else { i.jf });
        }
    }

    fn built() -> (Program, u32) {
        let arch = audit_arch().expect("supported arch");
        (super::program().expect("builds"), arch)
    }

    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

    #[test]
    fn every_syscall_number_gets_the_policys_verdict() {
        let (p, arch) = built();
        let denied: Vec<u32> = DENIED.iter().map(|&nr| nr as u32).collect();
        for nr in 0..2048u32 {
            let want = if denied.contains(&nr) {
                EPERM
            } else if nr == libc::SYS_clone3 as u32 {
                ENOSYS
            } else {
                libc::SECCOMP_RET_ALLOW
            };
            assert_eq!(run(&p, nr, arch, 0).0, want, "syscall {nr}");
        }
    }

    #[test]
    fn clone_is_denied_with_any_namespace_flag_and_allowed_for_threads_and_forks() {
        let (p, arch) = built();
        let clone = libc::SYS_clone as u32;
        for flag in [
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWNS,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWIPC,
            libc::CLONE_NEWCGROUP,
        ] {
            let flags = (flag | libc::CLONE_VM | libc::SIGCHLD) as u64;
            assert_eq!(run(&p, clone, arch, flags).0, EPERM, "flag {flag:#x}");
        }
        let thread = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_SETTLS
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID) as u64;
        assert_eq!(run(&p, clone, arch, thread).0, libc::SECCOMP_RET_ALLOW);
        assert_eq!(
            run(&p, clone, arch, libc::SIGCHLD as u64).0,
            libc::SECCOMP_RET_ALLOW
        );
    }

    #[test]
    fn x32_numbers_are_refused_and_a_foreign_architecture_is_killed() {
        let (p, arch) = built();
        for nr in [0, 1, libc::SYS_mount as u32, 512, 547] {
            assert_eq!(run(&p, nr | X32_SYSCALL_BIT, arch, 0).0, EPERM, "x32 {nr}");
        }
        let i386 = 0x4000_0003;
        assert_eq!(run(&p, 0, i386, 0).0, libc::SECCOMP_RET_KILL_PROCESS);
    }

    #[test]
    fn any_call_is_decided_in_a_few_comparisons_not_a_walk_of_the_list() {
        // The kernel replays the program for every syscall number at each install: this is
        // what keeps a sandbox start cheap (a linear list took up to ~55 steps per number).
        let (p, arch) = built();
        let worst = (0..1024u32).map(|nr| run(&p, nr, arch, 0).1).max();
        assert!(worst <= Some(16), "worst case {worst:?} instructions");
        assert!(p.len() < 256, "{} instructions", p.len());
    }
}
