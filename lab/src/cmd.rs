//! # Commands: iproute2, ethtool and sysctls, each step idempotent
//!
//! Plain iproute2 commands (`ip -n NS ...`): a link is created only when
//! missing, addresses/routes/neighbours use `replace`.

use std::process::Command;

use crate::{io_ctx, netns, Error, Result};

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

pub(crate) fn ensure_ns(name: &str) -> Result<()> {
    if !netns::exists(name) {
        ip(&["netns", "add", name])?;
    }
    ip(&["-n", name, "link", "set", "lo", "up"])?;
    Ok(())
}

/// Writes sysctls of the namespace (from a thread inside it: /proc/sys/net is per netns).
pub(crate) fn sysctls(ns: &str, kv: &[(&str, &str)]) -> Result<()> {
    let kv: Vec<(String, String)> = kv
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    netns::run(ns, move || -> Result<()> {
        for (k, v) in kv {
            let path = format!("/proc/sys/{}", k.replace('.', "/"));
            std::fs::write(&path, &v).map_err(io_ctx(format!("writing {path}")))?;
        }
        Ok(())
    })?
}

/// GRO on, so that the veth receives XDP_TX / redirected frames (DESIGN.md "Lab").
pub(crate) fn gro_on(ns: &str, dev: &str) -> Result<()> {
    netns::output(ns, "ethtool", &["-K", dev, "gro", "on"]).map(drop)
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
