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

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A child process (an agent under test), killed on drop if still running.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
