//! Test scaffolding for the CLI tests: the test kit (namespaces and pin
//! directories that clean up after themselves) plus running the built `xlb`.
#![allow(dead_code, unused_imports)]

use std::path::Path;
use std::process::Command;

pub use xlb_testkit::{eventually, sh, sh_out, stderr, stdout, KillOnDrop, Netns, PinDir};

/// A unique pin directory; on drop also the files xlb keeps for it under
/// /run/xlb (names, the monitor's lock and socket).
pub fn pin_dir() -> PinDir {
    let mut p = PinDir::new();
    p.also.push(xlb::names::path(&p.path));
    for ext in ["lock", "sock"] {
        p.also.push(xlb::cli::monitor::state_path(&p.path, ext));
    }
    p
}

/// Runs the built `xlb` with `--pin-dir pin`, inside `ns` when given (only the
/// network namespace changes: the bpffs mount stays the test's).
pub fn xlb(ns: Option<&Netns>, pin: &Path, args: &[&str]) -> std::process::Output {
    xlb_env(ns, pin, args, &[])
}

/// [`xlb`] with extra environment variables.
pub fn xlb_env(
    ns: Option<&Netns>,
    pin: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xlb"));
    cmd.arg("--pin-dir")
        .arg(pin)
        .args(args)
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(ns) = ns {
        let f = std::fs::File::open(ns.path()).expect("open netns");
        // SAFETY: setns is async-signal-safe; the fd stays open until spawn returns.
        unsafe {
            use std::os::fd::AsRawFd;
            let fd = f.as_raw_fd();
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd.output().expect("run xlb");
        drop(f);
        return out;
    }
    cmd.output().expect("run xlb")
}
