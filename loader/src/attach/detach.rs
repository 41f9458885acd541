//! # Detach: taking off what xlb attached
//!
//! One pinned attachment, every hook of an interface, every pod hook, or
//! everything of xlb's (hooks, socket hooks and pins) under a pin directory.

use std::os::fd::AsFd;
use std::path::Path;

use super::tc::tc_classic_detach;
use super::*;

fn detach_one(a: &Attachment) -> Result<()> {
    match a.hook {
        Hook::Xdp(_) | Hook::Tcx | Hook::TcxEgress => {
            if let Ok(fd) = sys::obj_get(&a.pin) {
                if let Err(e) = sys::link_detach(fd.as_fd()) {
                    // A defunct link (interface gone) has nothing to detach.
                    if a.ifindex.is_some() {
                        return Err(attach_err(&a.iface, "detaching", e, "run as root"));
                    }
                }
            }
        }
        Hook::TcClsact { created_qdisc } => {
            if let Some(i) = a.ifindex {
                match tc_classic_detach(i, created_qdisc) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                    Err(e) => {
                        return Err(attach_err(
                            &a.iface,
                            "removing the tc filter",
                            e,
                            "run as root",
                        ))
                    }
                }
            }
        }
    }
    pin::unpin(&a.pin).map_err(|e| Error::Io {
        what: format!("removing pin {}", a.pin.display()),
        err: e,
        hint: "run as root".into(),
    })
}

/// Removes every xlb hook on `iface` (XDP and tc) and its pins; the maps stay.
/// Errors with [`Error::NotAttached`] when xlb has nothing there.
pub fn detach(pin_dir: &Path, iface: &str) -> Result<Vec<Attachment>> {
    let mine: Vec<_> = list(pin_dir)?
        .into_iter()
        .filter(|a| a.iface == iface)
        .collect();
    if mine.is_empty() {
        return Err(Error::NotAttached {
            iface: iface.into(),
            pin_dir: pin_dir.to_owned(),
        });
    }
    for a in &mine {
        detach_one(a)?;
    }
    Ok(mine)
}

/// Removes the hooks of every pod interface (tcx and tc), keeping the
/// uplink's (XDP, and its tcx egress).
pub fn detach_pods(pin_dir: &Path) -> Result<Vec<Attachment>> {
    let all = list(pin_dir)?;
    let uplinks: Vec<String> = all
        .iter()
        .filter(|a| matches!(a.hook, Hook::Xdp(_)))
        .map(|a| a.iface.clone())
        .collect();
    let pods: Vec<_> = all
        .into_iter()
        .filter(|a| !uplinks.contains(&a.iface))
        .collect();
    for a in &pods {
        detach_one(a)?;
    }
    Ok(pods)
}

/// What [`detach_all`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DetachedAll {
    /// The hooks taken off.
    pub hooks: Vec<Attachment>,
    /// The socket hooks taken off the cgroup.
    pub sockets: Vec<crate::cgroup::SockHook>,
    /// The pins removed, and what was kept because xlb did not make it.
    pub pins: crate::remove::Removal,
}

/// Removes every hook (the socket hooks included) and every pin of xlb's under `pin_dir` (maps
/// included: state is lost), and nothing else: `pin_dir` must be a
/// directory on bpffs ([`Error::PinDir`] otherwise, with nothing touched),
/// and only what xlb names is removed there (see [`crate::remove`]).
pub fn detach_all(pin_dir: &Path) -> Result<DetachedAll> {
    if !crate::remove::check(pin_dir)? {
        return Ok(DetachedAll::default());
    }
    let maps = crate::declared_map_names()?;
    let hooks = list(pin_dir)?;
    for a in &hooks {
        detach_one(a)?;
    }
    let sockets = crate::cgroup::detach(pin_dir)?;
    let pins = crate::remove::remove_own_pins(pin_dir, &maps)?;
    Ok(DetachedAll {
        hooks,
        sockets,
        pins,
    })
}
