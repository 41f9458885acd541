//! Running commands, and child processes that die with the test.
use std::process::{Child, Command, Output};

/// Runs `args[0]` with the rest as arguments; panics with its stderr unless it succeeds.
pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("spawning {}: {e}", args[0]));
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
}

/// Runs `args[0]` with the rest as arguments; its stdout, whatever its status.
pub fn sh_out(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("spawning {}: {e}", args[0]));
    stdout(&out)
}

/// Runs `cmd`; panics with its stderr unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", stderr(&out));
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A child process (an agent under test), killed on drop if still running.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// SIGTERM, then the exit status (panics if the child outlives a
    /// generous bound: a hang guard).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                return st;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "child {} did not stop on SIGTERM",
                self.0.id()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
