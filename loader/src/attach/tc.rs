//! # The pod veths: tc through tcx links, clsact where there is no tcx
//!
//! Attach (or replace in place) the ingress and egress programs on a pod
//! veth, the classic clsact filter helpers, and the tcx probe.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;

use super::*;

fn tcx_disabled() -> bool {
    std::env::var_os(NO_TCX_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

fn tc_hook(ifindex: u32) -> libbpf_sys::bpf_tc_hook {
    libbpf_sys::bpf_tc_hook {
        sz: std::mem::size_of::<libbpf_sys::bpf_tc_hook>() as _,
        ifindex: ifindex as i32,
        attach_point: libbpf_sys::BPF_TC_INGRESS,
        ..Default::default()
    }
}

fn tc_opts(prog: Option<BorrowedFd<'_>>, replace: bool) -> libbpf_sys::bpf_tc_opts {
    libbpf_sys::bpf_tc_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_tc_opts>() as _,
        prog_fd: prog.map(|p| p.as_raw_fd()).unwrap_or(0),
        flags: if replace {
            libbpf_sys::BPF_TC_F_REPLACE
        } else {
            0
        },
        handle: TC_HANDLE,
        priority: TC_PRIORITY,
        ..Default::default()
    }
}

fn neg_errno(rc: i32) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::from_raw_os_error(-rc))
    } else {
        Ok(())
    }
}

/// Classic tc: attach (or atomically replace) xlb's filter on clsact ingress.
/// Returns whether xlb created the clsact qdisc.
fn tc_classic_attach(ifindex: u32, prog: BorrowedFd<'_>) -> io::Result<bool> {
    let mut hook = tc_hook(ifindex);
    // SAFETY: valid hook struct.
    let rc = unsafe { libbpf_sys::bpf_tc_hook_create(&mut hook) };
    let created = match rc {
        0 => true,
        rc if -rc == libc::EEXIST => false,
        rc => return Err(io::Error::from_raw_os_error(-rc)),
    };
    let mut opts = tc_opts(Some(prog), true);
    // SAFETY: valid hook and opts.
    neg_errno(unsafe { libbpf_sys::bpf_tc_attach(&hook, &mut opts) })?;
    Ok(created)
}

pub(super) fn tc_classic_detach(ifindex: u32, destroy_qdisc: bool) -> io::Result<()> {
    let mut hook = tc_hook(ifindex);
    let opts = tc_opts(None, false);
    // SAFETY: valid hook and opts.
    let r = neg_errno(unsafe { libbpf_sys::bpf_tc_detach(&hook, &opts) });
    // Only remove the qdisc when our filter was really there: never touch a
    // clsact that holds someone else's filters only.
    if destroy_qdisc && r.is_ok() {
        hook.attach_point = libbpf_sys::BPF_TC_INGRESS | libbpf_sys::BPF_TC_EGRESS;
        // SAFETY: valid hook.
        let _ = unsafe { libbpf_sys::bpf_tc_hook_destroy(&mut hook) };
    }
    r
}

/// Attaches (or replaces in place) the pod-veth tc program on `iface`'s ingress:
/// tcx where the kernel has it, a clsact filter otherwise (with a warning).
pub fn attach_pod(pin_dir: &Path, prog: BorrowedFd<'_>, iface: &str) -> Result<Attached> {
    let ifindex = ifindex_of(iface)?;
    let links = links_dir(pin_dir);
    // Existing tcx link: update it.
    if let Some((path, link)) = pinned_link(pin_dir, &Hook::Tcx.pin_name(iface)) {
        match link_ifindex(link.as_fd()) {
            Some((i, _)) if i == ifindex => {
                sys::link_update(link.as_fd(), prog).map_err(|e| {
                    attach_err(
                        iface,
                        "replacing the tcx program",
                        e,
                        "`xlb detach --iface IF` and attach again",
                    )
                })?;
                return Ok(Attached {
                    iface: iface.into(),
                    ifindex,
                    hook: Hook::Tcx,
                    replaced: true,
                    warning: None,
                });
            }
            _ => {
                let _ = sys::link_detach(link.as_fd());
                pin::unpin(&path).ok();
            }
        }
    }
    // Existing classic filter: replace it (tc replaces a filter atomically).
    for created in [false, true] {
        let hook = Hook::TcClsact {
            created_qdisc: created,
        };
        let path = links.join(hook.pin_name(iface));
        if sys::obj_get(&path).is_ok() {
            let made = tc_classic_attach(ifindex, prog).map_err(|e| {
                attach_err(
                    iface,
                    "replacing the tc filter",
                    e,
                    "`xlb detach --iface IF` and attach again",
                )
            })?;
            let hook = Hook::TcClsact {
                created_qdisc: created || made,
            };
            pin::unpin(&path).ok();
            pin::repin(prog, &links.join(hook.pin_name(iface)))?;
            return Ok(Attached {
                iface: iface.into(),
                ifindex,
                hook,
                replaced: !made,
                warning: None,
            });
        }
    }

    let warning;
    if !tcx_disabled() {
        match sys::link_create(prog, ifindex as i32, libbpf_sys::BPF_TCX_INGRESS, 0) {
            Ok(link) => {
                let path = links.join(Hook::Tcx.pin_name(iface));
                if let Err(e) = pin::repin(&link, &path) {
                    let _ = sys::link_detach(link.as_fd());
                    return Err(e);
                }
                return Ok(Attached {
                    iface: iface.into(),
                    ifindex,
                    hook: Hook::Tcx,
                    replaced: false,
                    warning: None,
                });
            }
            Err(e) => {
                let errno = e.raw_os_error().unwrap_or(0);
                if errno != libc::EINVAL && errno != libc::EOPNOTSUPP {
                    return Err(attach_err(
                        iface,
                        "attaching tcx ingress",
                        e,
                        "check `xlb doctor --iface IF`",
                    ));
                }
                warning = Some(format!(
                    "{iface}: the kernel has no tcx ({e}); using a classic tc filter on clsact (kernel >= 6.6 has tcx)"
                ));
            }
        }
    } else {
        warning = Some(format!(
            "{iface}: tcx disabled by {NO_TCX_ENV}; using a classic tc filter on clsact"
        ));
    }
    if let Some(w) = &warning {
        tracing::info!("{w}");
    }
    let created = tc_classic_attach(ifindex, prog).map_err(|e| {
        attach_err(
            iface,
            "attaching a tc filter on clsact ingress",
            e,
            "the kernel needs CONFIG_NET_CLS_BPF and CONFIG_NET_SCH_INGRESS; `xlb doctor` checks",
        )
    })?;
    let hook = Hook::TcClsact {
        created_qdisc: created,
    };
    if let Err(e) = pin::repin(prog, &links.join(hook.pin_name(iface))) {
        let _ = tc_classic_detach(ifindex, created);
        return Err(e);
    }
    Ok(Attached {
        iface: iface.into(),
        ifindex,
        hook,
        replaced: false,
        warning,
    })
}

/// Attaches (or replaces in place) the pod-veth egress program on `iface`
/// (tcx egress): the reverse NAT of replies that host-network endpoints of
/// this node send into the pod. Without tcx (or with it disabled) nothing is
/// attached: `Ok(None)`, and those replies stay untranslated.
pub fn attach_pod_egress(
    pin_dir: &Path,
    prog: BorrowedFd<'_>,
    iface: &str,
) -> Result<Option<Attached>> {
    let ifindex = ifindex_of(iface)?;
    let name = Hook::TcxEgress.pin_name(iface);
    if let Some((path, link)) = pinned_link(pin_dir, &name) {
        match link_ifindex(link.as_fd()) {
            Some((i, _)) if i == ifindex => {
                sys::link_update(link.as_fd(), prog).map_err(|e| {
                    attach_err(
                        iface,
                        "replacing the tcx egress program",
                        e,
                        "`xlb detach --iface IF` and attach again",
                    )
                })?;
                return Ok(Some(Attached {
                    iface: iface.into(),
                    ifindex,
                    hook: Hook::TcxEgress,
                    replaced: true,
                    warning: None,
                }));
            }
            _ => {
                let _ = sys::link_detach(link.as_fd());
                pin::unpin(&path).ok();
            }
        }
    }
    if tcx_disabled() {
        return Ok(None);
    }
    match sys::link_create(prog, ifindex as i32, libbpf_sys::BPF_TCX_EGRESS, 0) {
        Ok(link) => {
            let path = links_dir(pin_dir).join(name);
            if let Err(e) = pin::repin(&link, &path) {
                let _ = sys::link_detach(link.as_fd());
                return Err(e);
            }
            Ok(Some(Attached {
                iface: iface.into(),
                ifindex,
                hook: Hook::TcxEgress,
                replaced: false,
                warning: None,
            }))
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP)) => Ok(None),
        Err(e) => Err(attach_err(
            iface,
            "attaching tcx egress",
            e,
            "check `xlb doctor --iface IF`",
        )),
    }
}

/// Probe: does tcx ingress attach on `ifindex`? (A trivial TCX_NEXT program,
/// removed at once; packets are untouched.)
pub fn probe_tcx(ifindex: u32) -> io::Result<()> {
    let prog = sys::load_trivial(libbpf_sys::BPF_PROG_TYPE_SCHED_CLS, -1 /* TCX_NEXT */)?;
    let link = sys::link_create(prog.as_fd(), ifindex as i32, libbpf_sys::BPF_TCX_INGRESS, 0)?;
    sys::link_detach(link.as_fd())
}
