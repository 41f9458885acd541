//! # Attach, replace, detach
//!
//! The uplink gets the XDP program through a bpf_link, the pod veths get the
//! tc program through tcx links (classic clsact filters where the kernel has
//! no tcx). Every link is pinned under `<pin>/links/` so it outlives the
//! process that made it, an upgrade can swap the program inside it
//! atomically (`BPF_LINK_UPDATE`: the hook is never empty, no packet sees a
//! gap), and `detach` removes exactly what xlb attached.
//!
//! All interface names and indexes are those of the calling thread's network
//! namespace.
//!
//! Here: the hook and attachment types, the pin names of links, listing,
//! pinning the programs and the upgrade's in-place replace. The uplink's XDP
//! is in `xdp`, the pod veths' tc in `tc`, taking hooks off in `detach`.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::pin::{self, links_dir, progs_dir, ObjKind};
use crate::{sys, DataPlane, Error, Result};

mod detach;
mod tc;
mod xdp;

pub use detach::{detach, detach_all, detach_pods, DetachedAll};
pub use tc::{attach_pod, attach_pod_egress, probe_tcx};
pub use xdp::{attach_uplink, probe_xdp};

/// Environment variable that makes the loader behave as if the kernel had no
/// tcx (exercises the clsact fallback; also a escape hatch for odd kernels).
pub const NO_TCX_ENV: &str = "XLB_NO_TCX";

/// Classic tc filter handle and priority xlb uses in the clsact fallback.
pub const TC_HANDLE: u32 = 0x786c62; // "xlb"
pub const TC_PRIORITY: u32 = 0x786c;

/// XDP attach mode of the uplink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AttachMode {
    /// In the driver (fast path); the default.
    #[default]
    Native,
    /// In the generic (skb) path: works on any device, much slower.
    Generic,
    /// On the NIC (SmartNICs whose driver supports offload).
    Offload,
}

impl AttachMode {
    fn flags(self) -> u32 {
        match self {
            AttachMode::Native => libbpf_sys::XDP_FLAGS_DRV_MODE,
            AttachMode::Generic => libbpf_sys::XDP_FLAGS_SKB_MODE,
            AttachMode::Offload => libbpf_sys::XDP_FLAGS_HW_MODE,
        }
    }

    /// From an `XDP_ATTACHED_*` value.
    pub fn from_attached(m: u8) -> Option<Self> {
        match u32::from(m) {
            libbpf_sys::XDP_ATTACHED_DRV => Some(AttachMode::Native),
            libbpf_sys::XDP_ATTACHED_SKB => Some(AttachMode::Generic),
            libbpf_sys::XDP_ATTACHED_HW => Some(AttachMode::Offload),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
            AttachMode::Offload => "offload",
        }
    }
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for AttachMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "native" | "drv" => Ok(AttachMode::Native),
            "generic" | "skb" => Ok(AttachMode::Generic),
            "offload" | "hw" => Ok(AttachMode::Offload),
            _ => Err(format!("unknown XDP mode {s:?} (native, generic, offload)")),
        }
    }
}

/// How a hook is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// XDP bpf_link in this mode.
    Xdp(AttachMode),
    /// tcx ingress bpf_link.
    Tcx,
    /// tcx egress bpf_link of a pod interface or the uplink (replies of
    /// host-network endpoints on the node: reverse NAT, tunnel return).
    TcxEgress,
    /// Classic tc filter on a clsact qdisc (`created_qdisc`: xlb made the qdisc).
    TcClsact { created_qdisc: bool },
}

impl Hook {
    pub fn describe(&self) -> String {
        match self {
            Hook::Xdp(m) => format!("xdp/{m}"),
            Hook::Tcx => "tcx/ingress".into(),
            Hook::TcxEgress => "tcx/egress".into(),
            Hook::TcClsact { .. } => "tc/clsact ingress".into(),
        }
    }

    fn pin_name(&self, iface: &str) -> String {
        let iface = &encode_iface(iface);
        match self {
            Hook::Xdp(_) => format!("xdp_{iface}"),
            Hook::Tcx => format!("tcx_{iface}"),
            Hook::TcxEgress => format!("tcxe_{iface}"),
            Hook::TcClsact {
                created_qdisc: false,
            } => format!("tc_{iface}"),
            Hook::TcClsact {
                created_qdisc: true,
            } => format!("tcq_{iface}"),
        }
    }
}

/// The result of one attach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    pub iface: String,
    pub ifindex: u32,
    pub hook: Hook,
    /// An xlb program was already there and was replaced in place.
    pub replaced: bool,
    /// Set when the requested mode was not available and another was used.
    pub warning: Option<String>,
}

/// One attachment found under the pin directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub iface: String,
    pub hook: Hook,
    /// Interface index the hook is on now; `None` when the interface is gone.
    pub ifindex: Option<u32>,
    pub prog_id: u32,
    pub pin: PathBuf,
}

fn attach_err(
    iface: &str,
    what: impl Into<String>,
    e: io::Error,
    hint: impl Into<String>,
) -> Error {
    Error::Attach {
        iface: iface.to_owned(),
        what: what.into(),
        err: e,
        hint: hint.into(),
    }
}

fn ifindex_of(iface: &str) -> Result<u32> {
    if iface.is_empty() || iface.len() >= libc::IF_NAMESIZE || iface.contains('/') {
        return Err(Error::NoSuchInterface(iface.to_owned()));
    }
    sys::ifindex(iface).ok_or_else(|| Error::NoSuchInterface(iface.to_owned()))
}

fn driver_desc(iface: &str) -> String {
    match sys::driver(iface) {
        Ok(d) if !d.is_empty() => format!("driver {d}"),
        _ => "its driver".into(),
    }
}

/// Pinned link of `iface` of the given kind, if any: (pin path, link fd, link info).
fn pinned_link(pin_dir: &Path, name: &str) -> Option<(PathBuf, OwnedFd)> {
    let path = links_dir(pin_dir).join(name);
    let fd = sys::obj_get(&path).ok()?;
    Some((path, fd))
}

fn link_ifindex(fd: BorrowedFd<'_>) -> Option<(u32, u32)> {
    let info = libbpf_rs::query::LinkInfo::from_fd(fd).ok()?;
    let ifindex = match info.info {
        libbpf_rs::query::LinkTypeInfo::Xdp(x) => x.ifindex,
        libbpf_rs::query::LinkTypeInfo::Tcx(t) => t.ifindex,
        _ => return None,
    };
    Some((ifindex, info.prog_id))
}

/// bpffs refuses names with '.', which interface names may hold (VLANs).
fn encode_iface(iface: &str) -> String {
    iface.replace('%', "%25").replace('.', "%2e")
}

fn decode_iface(s: &str) -> String {
    s.replace("%2e", ".").replace("%25", "%")
}

fn parse_pin_name(name: &str) -> Option<(Hook, &str)> {
    if let Some(i) = name.strip_prefix("xdp_") {
        // The mode is read from the kernel; the name only says "XDP".
        Some((Hook::Xdp(AttachMode::Native), i))
    } else if let Some(i) = name.strip_prefix("tcx_") {
        Some((Hook::Tcx, i))
    } else if let Some(i) = name.strip_prefix("tcxe_") {
        Some((Hook::TcxEgress, i))
    } else if let Some(i) = name.strip_prefix("tcq_") {
        Some((
            Hook::TcClsact {
                created_qdisc: true,
            },
            i,
        ))
    } else {
        name.strip_prefix("tc_").map(|i| {
            (
                Hook::TcClsact {
                    created_qdisc: false,
                },
                i,
            )
        })
    }
}

/// Every attachment pinned under `pin_dir`.
pub fn list(pin_dir: &Path) -> Result<Vec<Attachment>> {
    let dir = links_dir(pin_dir);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Io {
                what: format!("reading {}", dir.display()),
                err: e,
                hint: "run as root".into(),
            })
        }
    };
    let mut out = Vec::new();
    for ent in rd.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        let Some((mut hook, iface)) = parse_pin_name(&name) else {
            continue;
        };
        let iface = &decode_iface(iface);
        let path = ent.path();
        let Ok(fd) = sys::obj_get(&path) else {
            continue;
        };
        let (ifindex, prog_id) = match pin::obj_kind(&fd) {
            Some(ObjKind::Link) => match link_ifindex(fd.as_fd()) {
                Some((0, p)) => (None, p),
                Some((i, p)) => (Some(i), p),
                None => (None, 0),
            },
            Some(ObjKind::Prog) => {
                let id = sys::prog_id(fd.as_fd()).unwrap_or(0);
                (sys::ifindex(iface), id)
            }
            _ => (None, 0),
        };
        if let (Hook::Xdp(_), Some(i)) = (hook, ifindex) {
            if let Some(m) = sys::xdp_query(i)
                .ok()
                .and_then(|(m, _)| AttachMode::from_attached(m))
            {
                hook = Hook::Xdp(m);
            }
        }
        out.push(Attachment {
            iface: iface.to_owned(),
            hook,
            ifindex,
            prog_id,
            pin: path,
        });
    }
    out.sort_by(|a, b| a.pin.cmp(&b.pin));
    Ok(out)
}
/// Pins the data plane's programs under `<pin>/progs/` (what new pod veths get).
pub fn pin_programs(pin_dir: &Path, dp: &DataPlane) -> Result<()> {
    pin::repin(dp.xdp_prog().as_fd(), &progs_dir(pin_dir).join("xdp"))?;
    pin::repin(dp.tc_prog().as_fd(), &progs_dir(pin_dir).join("tc"))?;
    pin::repin(
        dp.tc_egress_prog().as_fd(),
        &progs_dir(pin_dir).join("tc_egress"),
    )
}

/// The pinned pod-veth egress program, if pinned.
pub fn pinned_tc_egress_prog(pin_dir: &Path) -> Option<OwnedFd> {
    sys::obj_get(&progs_dir(pin_dir).join("tc_egress")).ok()
}

/// The pinned pod-veth program (for attaching a new veth without loading).
pub fn pinned_tc_prog(pin_dir: &Path) -> Result<OwnedFd> {
    let path = progs_dir(pin_dir).join("tc");
    sys::obj_get(&path).map_err(|e| Error::Io {
        what: format!("opening {}", path.display()),
        err: e,
        hint: "attach the data plane first: `xlb attach --iface IF`".into(),
    })
}

/// Upgrade: points every pinned link (and tc filter) at `dp`'s programs, each
/// in one atomic step, then re-pins the programs. Returns what was updated.
pub fn replace(pin_dir: &Path, dp: &DataPlane) -> Result<Vec<Attached>> {
    let mut out = Vec::new();
    for a in list(pin_dir)? {
        let Some(ifindex) = a.ifindex else {
            continue; // interface gone: nothing to replace
        };
        let res = match a.hook {
            Hook::Xdp(_) => attach_uplink(
                pin_dir,
                dp.xdp_prog().as_fd(),
                &a.iface,
                match a.hook {
                    Hook::Xdp(m) => m,
                    _ => unreachable!(),
                },
                false,
            ),
            Hook::TcxEgress => attach_pod_egress(pin_dir, dp.tc_egress_prog().as_fd(), &a.iface)
                .map(|r| {
                    r.unwrap_or(Attached {
                        iface: a.iface.clone(),
                        ifindex,
                        hook: a.hook,
                        replaced: false,
                        warning: Some(format!("{}: tcx egress not replaced", a.iface)),
                    })
                }),
            _ => attach_pod(pin_dir, dp.tc_prog().as_fd(), &a.iface),
        };
        match res {
            Ok(r) => out.push(r),
            // The interface may have been renamed or moved since; skip it.
            Err(Error::NoSuchInterface(_)) => {
                tracing::warn!(iface = %a.iface, ifindex, "interface gone during replace");
            }
            Err(e) => return Err(e),
        }
    }
    pin_programs(pin_dir, dp)?;
    Ok(out)
}
