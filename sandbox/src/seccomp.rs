//! The seccomp filters every sandbox runs under, compiled once per engine with seccompiler.
//!
//! Policy: a deny list on top of dropped capabilities. Most listed calls would already fail
//! for lack of a capability; the filter is the second wall (kernel bugs behind those calls are
//! the usual container escapes). Denied calls return EPERM, except `clone3`, which returns
//! ENOSYS so libc falls back to `clone`, whose flags the filter can inspect (no new user
//! namespaces). Calls from a foreign architecture kill the process (seccompiler's arch check)
//! and x32 system-call numbers are refused, so neither ABI can bypass the list.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

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

/// Every namespace flag `clone` could use to create a namespace.
const CLONE_NS_FLAGS: u64 = (libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWCGROUP) as u64;

/// The x32 ABI marks its syscall numbers with this bit; they share x86_64's audit arch.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn target_arch() -> Result<TargetArch, SandboxError> {
    if cfg!(target_arch = "x86_64") {
        Ok(TargetArch::x86_64)
    } else if cfg!(target_arch = "aarch64") {
        Ok(TargetArch::aarch64)
    } else {
        Err(SandboxError::Unavailable(
            "seccomp filters are built for x86_64 and aarch64 only".into(),
        ))
    }
}

fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32) -> Result<BpfProgram, SandboxError> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        target_arch()?,
    )
    .map_err(|e| SandboxError::Seccomp(e.to_string()))?;
    BpfProgram::try_from(filter).map_err(|e| SandboxError::Seccomp(e.to_string()))
}

/// Refuses x32 syscall numbers before the generated program runs: a deny list keyed on
/// x86_64 numbers would otherwise be bypassed through the x32 aliases.
fn x32_guard() -> BpfProgram {
    use libc::{BPF_ABS, BPF_JGE, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    use seccompiler::sock_filter;
    let ld = (BPF_LD | BPF_W | BPF_ABS) as u16;
    vec![
        sock_filter {
            code: ld,
            jt: 0,
            jf: 0,
            k: 0,
        }, // seccomp_data.nr
        sock_filter {
            code: (BPF_JMP | BPF_JGE | BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        sock_filter {
            code: (BPF_RET | BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
    ]
}

/// The deny-list program (EPERM), including `clone` with any namespace flag.
fn deny_program() -> Result<BpfProgram, SandboxError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|&nr| (nr, vec![])).collect();
    // One rule per namespace flag: the call is denied when any of them is set.
    let mut clone_rules = Vec::new();
    for bit in 0..64u32 {
        let flag = 1u64 << bit;
        if CLONE_NS_FLAGS & flag != 0 {
            let cond = SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )
            .map_err(|e| SandboxError::Seccomp(e.to_string()))?;
            clone_rules.push(
                SeccompRule::new(vec![cond]).map_err(|e| SandboxError::Seccomp(e.to_string()))?,
            );
        }
    }
    rules.insert(libc::SYS_clone, clone_rules);
    let mut program = x32_guard();
    program.extend(compile(rules, libc::EPERM)?);
    Ok(program)
}

/// A compiled program in the kernel's instruction type, ready for seccomp(2).
pub type Program = Vec<libc::sock_filter>;

fn to_kernel(program: BpfProgram) -> Program {
    program
        .into_iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect()
}

/// The programs a sandbox installs, in order.
#[derive(Clone)]
pub struct Filters {
    pub deny: Program,
    pub clone3: Program,
}

impl Filters {
    /// Compiles both programs (done once per engine, before any fork).
    pub fn compile() -> Result<Self, SandboxError> {
        let deny = deny_program()?;
        let clone3 = compile(BTreeMap::from([(libc::SYS_clone3, vec![])]), libc::ENOSYS)?;
        Ok(Self {
            deny: to_kernel(deny),
            clone3: to_kernel(clone3),
        })
    }
}
