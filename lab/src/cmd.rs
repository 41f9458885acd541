//! # Running the lab's commands (`ip`, `bridge`, `mount`, ...)
//!
//! Errors carry the command line and its stderr. This module runs programs
//! only: namespaces are [`crate::netns`]'s, which uses it.

use std::process::Command;

use crate::{Error, Result};

/// Runs a command; its stdout, or an error carrying its stderr.
pub(crate) fn checked(mut cmd: Command, desc: &str) -> Result<String> {
    let out = cmd.output().map_err(|e| Error::Command {
        cmd: desc.to_owned(),
        msg: if e.kind() == std::io::ErrorKind::NotFound {
            format!("{e} (install it: `make deps` installs iproute2 and ethtool)")
        } else {
            e.to_string()
        },
    })?;
    if !out.status.success() {
        return Err(Error::Command {
            cmd: desc.to_owned(),
            msg: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn ip(args: &[&str]) -> Result<String> {
    let mut c = Command::new("ip");
    c.args(args);
    checked(c, &format!("ip {}", args.join(" ")))
}

pub(crate) fn bridge(args: &[&str]) -> Result<String> {
    let mut c = Command::new("bridge");
    c.args(args);
    checked(c, &format!("bridge {}", args.join(" ")))
}

pub(crate) fn link_exists(ns: &str, dev: &str) -> bool {
    Command::new("ip")
        .args(["-n", ns, "link", "show", "dev", dev])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The lab's commands need root.
pub(crate) fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::Invalid(
            "the lab needs root (network namespaces, BPF); run it with sudo".into(),
        ));
    }
    Ok(())
}
