//! Isolation: what a sandboxed program can see and do.

mod common;

use codex32_sandbox::SandboxError;
use common::{bash, engine, python, run_spec, spec, workdir};

#[test]
fn a_trivial_program_runs_and_reports_its_exit_code() {
    let Some(engine) = engine(1) else { return };
    let run = bash(&engine, "echo hello; exit 3");
    assert_eq!(run.stdout, "hello\n", "stderr: {}", run.stderr);
    assert_eq!(run.outcome.exit_code, Some(3));
    assert_eq!(run.outcome.signal, None);
}

#[test]
fn proc_shows_only_the_sandboxes_own_processes() {
    let Some(engine) = engine(1) else { return };
    let run = bash(
        &engine,
        "ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '; echo; ps -e -o pid=,comm= | wc -l",
    );
    let mut lines = run.stdout.lines();
    let pids: Vec<u32> = lines
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(
        pids.first(),
        Some(&1),
        "the sandbox is PID 1 of its namespace: {}",
        run.stdout
    );
    assert!(
        pids.len() <= 5 && pids.iter().all(|&p| p < 20),
        "only a handful of our own pids: {pids:?}"
    );
    let ps_count: usize = lines.next().unwrap_or("0").trim().parse().unwrap();
    assert!(
        ps_count <= 4,
        "ps sees {ps_count} processes; stderr: {}",
        run.stderr
    );
}

#[test]
fn the_hosts_root_home_is_not_readable() {
    let Some(engine) = engine(1) else { return };
    let secret = format!("/root/codex32-sandbox-secret-{}", std::process::id());
    std::fs::write(&secret, "top secret").unwrap();
    let run = bash(&engine, &format!("cat {secret} 2>&1; ls -a /root"));
    std::fs::remove_file(&secret).unwrap();
    assert!(!run.stdout.contains("top secret"), "{}", run.stdout);
    assert!(run.stdout.contains("No such file"), "{}", run.stdout);
}

#[test]
fn the_environment_is_exactly_the_specs() {
    let Some(engine) = engine(1) else { return };
    let wd = workdir();
    let (spec, out, err) = spec("/usr/bin/env", &[], wd.path());
    let run = run_spec(&engine, spec, out, err);
    assert_eq!(run.stdout, "PATH=/usr/local/bin:/usr/bin:/bin\nHOME=/tmp\n");
    // And no way around it through /proc: PID 1 of this /proc is the sandbox itself.
    let run = bash(&engine, "tr '\\0' '\\n' < /proc/1/environ");
    assert!(!run.stdout.contains("CARGO"), "{}", run.stdout);
}

#[test]
fn writes_succeed_only_in_tmp_and_the_workdir() {
    let Some(engine) = engine(1) else { return };
    let wd = workdir();
    let script = "for p in /x /usr/x /etc/x /dev/x /proc/x /root/x /tmp/x /work/x; do \
                  if touch $p 2>/dev/null; then echo ok $p; else echo denied $p; fi; done";
    let (spec, out, err) = spec("/usr/bin/bash", &["-c", script], wd.path());
    let run = run_spec(&engine, spec, out, err);
    let ok: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("ok")).collect();
    assert_eq!(ok, ["ok /tmp/x", "ok /work/x"], "{}", run.stdout);
    assert!(
        wd.path().join("x").exists(),
        "the workdir is the caller's directory"
    );
}

fn host_postgres_reachable() -> bool {
    std::net::TcpStream::connect("127.0.0.1:5432").is_ok()
}

#[test]
fn the_network_is_loopback_only_unless_asked_for() {
    let Some(engine) = engine(1) else { return };
    if !host_postgres_reachable() {
        eprintln!("SKIPPED: nothing listens on 127.0.0.1:5432 on this host");
        return;
    }
    let script = "if exec 3<>/dev/tcp/127.0.0.1/5432; then echo connected; else echo refused; fi";
    for (network, expected) in [(false, "refused"), (true, "connected")] {
        let wd = workdir();
        let (mut spec, out, err) = spec("/usr/bin/bash", &["-c", script], wd.path());
        spec.network = network;
        let run = run_spec(&engine, spec, out, err);
        assert_eq!(
            run.stdout.trim(),
            expected,
            "network={network}: {}",
            run.stderr
        );
    }
}

#[test]
fn capabilities_are_all_zero_and_privileges_cannot_be_regained() {
    let Some(engine) = engine(1) else { return };
    let run = bash(
        &engine,
        "grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status; id -u; id -g; hostname",
    );
    let zero = "0000000000000000";
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(
            run.stdout.contains(&format!("{cap}:\t{zero}")),
            "{cap} not zero: {}",
            run.stdout
        );
    }
    assert!(
        run.stdout.contains("NoNewPrivs:\t1") && run.stdout.contains("Seccomp:\t2"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.ends_with("65534\n65534\nexec-test\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn mount_unshare_and_module_tools_fail() {
    let Some(engine) = engine(1) else { return };
    let script = "mount -t tmpfs none /tmp 2>/dev/null && echo MOUNTED; \
                  unshare -U true 2>/dev/null && echo UNSHARED; \
                  unshare -r true 2>/dev/null && echo USERNS; \
                  echo done";
    let run = bash(&engine, script);
    assert_eq!(run.stdout, "done\n");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn dangerous_syscalls_return_eperm() {
    let Some(engine) = engine(1) else { return };
    // x86_64 numbers: mount, umount2, pivot_root, ptrace, init_module, finit_module, unshare,
    // setns, bpf, keyctl, kexec_load, perf_event_open, open_by_handle_at.
    let script = r#"
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
for nr in (165, 166, 155, 101, 175, 313, 272, 308, 321, 250, 246, 298, 304):
    r = libc.syscall(nr, 0, 0, 0, 0, 0)
    print(nr, r, errno.errorcode.get(ctypes.get_errno()))
"#;
    let wd = workdir();
    let (py, _) = python();
    let (spec, out, err) = spec(&py, &["-c", script], wd.path());
    let run = run_spec(&engine, spec, out, err);
    assert_eq!(run.stdout.lines().count(), 13, "stderr: {}", run.stderr);
    for line in run.stdout.lines() {
        assert!(line.ends_with(" -1 EPERM"), "{line}");
    }
}

#[test]
fn clone_with_namespace_flags_is_refused_clone3_is_absent_and_forks_work() {
    let Some(engine) = engine(1) else { return };
    // x86_64: clone is 56, clone3 435. CLONE_NEWUTS | SIGCHLD, then CLONE_NEWUSER | SIGCHLD.
    let script = r#"
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
for nr, flags in ((56, 0x04000000 | 17), (56, 0x10000000 | 17), (435, 0)):
    r = libc.syscall(nr, flags, 0, 0, 0, 0)
    print(nr, r, errno.errorcode.get(ctypes.get_errno()))
pid = os.fork()
if pid == 0:
    os._exit(7)
print("fork", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"#;
    let wd = workdir();
    let (py, _) = python();
    let (spec, out, err) = spec(&py, &["-c", script], wd.path());
    let run = run_spec(&engine, spec, out, err);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines,
        ["56 -1 EPERM", "56 -1 EPERM", "435 -1 ENOSYS", "fork 7"],
        "stderr: {}",
        run.stderr
    );
}

#[test]
fn a_missing_program_is_a_setup_error_at_execve() {
    let Some(engine) = engine(1) else { return };
    let wd = workdir();
    let (spec, _, _) = spec("/usr/bin/does-not-exist", &[], wd.path());
    match engine.spawn(spec) {
        Err(SandboxError::Setup { step, errno }) => {
            assert_eq!(step, "execve");
            assert_eq!(errno, nix::errno::Errno::ENOENT);
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a missing program must not start"),
    }
    // The slot is usable again afterwards.
    assert_eq!(bash(&engine, "exit 0").outcome.exit_code, Some(0));
}
