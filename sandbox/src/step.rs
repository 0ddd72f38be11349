//! Names of the setup steps the launcher and the sandbox child report failures for.
//!
//! Post-fork code cannot format messages, so it reports a step number and an errno through a
//! pipe or the launcher socket; the engine turns them back into names here.

/// A setup step. The discriminant is what travels over the pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Step {
    LauncherStdio = 1,
    LauncherOomScore,
    LauncherNetns,
    LauncherLoopback,
    LauncherMountns,
    TemplateTmpfs,
    TemplateOp,
    Clone,
    JoinHostNet,
    Loopback,
    OomScore,
    MountProc,
    MountTmp,
    BindWorkdir,
    BindExtra,
    RemountRootRo,
    PivotRoot,
    UmountOldRoot,
    ChdirWorkdir,
    Hostname,
    Rlimit,
    Stdio,
    CloseFds,
    Bounding,
    Ambient,
    Setgroups,
    Setresgid,
    Setresuid,
    Pdeathsig,
    Capset,
    NoNewPrivs,
    Seccomp,
    Execve,
}

const ALL: &[Step] = &[
    Step::LauncherStdio,
    Step::LauncherOomScore,
    Step::LauncherNetns,
    Step::LauncherLoopback,
    Step::LauncherMountns,
    Step::TemplateTmpfs,
    Step::TemplateOp,
    Step::Clone,
    Step::JoinHostNet,
    Step::Loopback,
    Step::OomScore,
    Step::MountProc,
    Step::MountTmp,
    Step::BindWorkdir,
    Step::BindExtra,
    Step::RemountRootRo,
    Step::PivotRoot,
    Step::UmountOldRoot,
    Step::ChdirWorkdir,
    Step::Hostname,
    Step::Rlimit,
    Step::Stdio,
    Step::CloseFds,
    Step::Bounding,
    Step::Ambient,
    Step::Setgroups,
    Step::Setresgid,
    Step::Setresuid,
    Step::Pdeathsig,
    Step::Capset,
    Step::NoNewPrivs,
    Step::Seccomp,
    Step::Execve,
];

impl Step {
    /// The step with this wire number, if any.
    pub fn from_code(code: i64) -> Option<Step> {
        ALL.iter().copied().find(|s| *s as i64 == code)
    }

    /// A short human name for error messages.
    pub fn name(self) -> &'static str {
        match self {
            Step::LauncherStdio => "launcher stdio",
            Step::LauncherOomScore => "launcher oom_score_adj",
            Step::LauncherNetns => "launcher network namespace",
            Step::LauncherLoopback => "launcher loopback up",
            Step::LauncherMountns => "launcher mount namespace",
            Step::TemplateTmpfs => "template tmpfs",
            Step::TemplateOp => "template root entry",
            Step::Clone => "clone",
            Step::JoinHostNet => "join host network namespace",
            Step::Loopback => "loopback up",
            Step::OomScore => "oom_score_adj",
            Step::MountProc => "mount /proc",
            Step::MountTmp => "mount /tmp",
            Step::BindWorkdir => "bind workdir",
            Step::BindExtra => "bind extra read-only path",
            Step::RemountRootRo => "remount root read-only",
            Step::PivotRoot => "pivot_root",
            Step::UmountOldRoot => "detach old root",
            Step::ChdirWorkdir => "chdir workdir",
            Step::Hostname => "sethostname",
            Step::Rlimit => "setrlimit",
            Step::Stdio => "stdio",
            Step::CloseFds => "close fds",
            Step::Bounding => "drop bounding set",
            Step::Ambient => "clear ambient caps",
            Step::Setgroups => "setgroups",
            Step::Setresgid => "setresgid",
            Step::Setresuid => "setresuid",
            Step::Pdeathsig => "parent-death signal",
            Step::Capset => "capset",
            Step::NoNewPrivs => "no_new_privs",
            Step::Seccomp => "seccomp",
            Step::Execve => "execve",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_round_trips_through_its_code() {
        for s in ALL {
            assert_eq!(Step::from_code(*s as i64), Some(*s));
        }
        assert_eq!(Step::from_code(0), None);
    }
}
