//! # Lab processes: start in a namespace, find, stop
//!
//! Background processes (backends, agents) start in their own session with
//! output to a log file and a pid file next to it. Stopping never trusts the
//! pid file alone: `down` kills every process whose network namespace is one
//! of the lab's, which also finds processes whose pid file was lost.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::{io_ctx, netns, Result};

/// Environment variable naming the lab a background process belongs to.
pub const TAG_ENV: &str = "XLB_LAB";

/// A background process of the lab.
#[derive(Clone, Debug)]
pub struct Daemon {
    /// Namespace it runs in.
    pub ns: String,
    /// Pid and log files (`<state>/<role>.pid`, `<state>/<role>.log`).
    pub pid_file: PathBuf,
    pub log_file: PathBuf,
}

impl Daemon {
    pub fn new(state_dir: &Path, role: &str, ns: &str) -> Self {
        Self {
            ns: ns.to_owned(),
            pid_file: state_dir.join(format!("{role}.pid")),
            log_file: state_dir.join(format!("{role}.log")),
        }
    }

    /// The pid from the pid file, if that process is alive and in our namespace.
    pub fn running(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        (alive(pid) && netns_inode(pid) == netns::inode(&self.ns)).then_some(pid)
    }

    /// Starts `program args` unless it already runs, tagged with the lab's
    /// prefix (`XLB_LAB=<prefix>` in its environment, which `down` looks for).
    /// `host_bpffs`: see [`netns::command`].
    pub fn start_tagged(
        &self,
        prefix: &str,
        program: &Path,
        args: &[String],
        host_bpffs: Option<&Path>,
    ) -> Result<u32> {
        if let Some(pid) = self.running() {
            return Ok(pid);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .map_err(io_ctx(format!("opening {}", self.log_file.display())))?;
        let log2 = log
            .try_clone()
            .map_err(io_ctx(format!("opening {}", self.log_file.display())))?;
        let mut cmd = netns::command(&self.ns, program, host_bpffs)?;
        cmd.args(args)
            .env(TAG_ENV, prefix)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0);
        let child = cmd.spawn().map_err(io_ctx(format!(
            "starting {} in {}",
            program.display(),
            self.ns
        )))?;
        let pid = child.id();
        // The child outlives us (it is reparented when we exit); never waited on here.
        drop(child);
        std::fs::write(&self.pid_file, format!("{pid}\n"))
            .map_err(io_ctx(format!("writing {}", self.pid_file.display())))?;
        Ok(pid)
    }

    /// SIGKILLs the process (simulating a crash); the pid file stays.
    pub fn kill(&self) -> Option<u32> {
        let pid = self.running()?;
        signal(pid, libc::SIGKILL);
        wait_gone(&[pid], Duration::from_secs(5));
        Some(pid)
    }
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) S ...": the state follows the last ')'.
    match stat.rfind(')') {
        Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
        None => false,
    }
}

/// Network namespace inode of a process.
pub fn netns_inode(pid: u32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    let s = link.to_str()?;
    s.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: plain kill(2).
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Whether the process carries `XLB_LAB=<prefix>` in its environment.
pub fn tagged(pid: u32, prefix: &str) -> bool {
    let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let want = format!("{TAG_ENV}={prefix}");
    env.split(|&b| b == 0).any(|kv| kv == want.as_bytes())
}

/// Every process (other than us) whose network namespace has one of `inodes`
/// or that is tagged with the lab's `prefix`.
pub fn of_lab(inodes: &[u64], prefix: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && alive(pid))
        .filter(|&pid| netns_inode(pid).is_some_and(|i| inodes.contains(&i)) || tagged(pid, prefix))
        .collect()
}

fn wait_gone(pids: &[u32], limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        if pids.iter().all(|&p| !alive(p)) {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM, then SIGKILL after `grace`, every process of the lab ([`of_lab`]).
/// Returns how many were stopped.
pub fn stop_all(inodes: &[u64], prefix: &str, grace: Duration) -> usize {
    let pids = of_lab(inodes, prefix);
    for &p in &pids {
        signal(p, libc::SIGTERM);
    }
    if !wait_gone(&pids, grace) {
        for &p in &pids {
            if alive(p) {
                signal(p, libc::SIGKILL);
            }
        }
        wait_gone(&pids, Duration::from_secs(5));
    }
    pids.len()
}
