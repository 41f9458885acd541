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

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::pin::{self, links_dir, progs_dir, ObjKind};
use crate::{sys, DataPlane, Error, Result};

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
    /// tcx egress bpf_link of a pod interface (reverse NAT of replies from
    /// host-network endpoints on the node).
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

/// Attaches (or replaces in place) the uplink XDP program on `iface`.
///
/// `fallback_generic`: when native mode is refused by the driver, attach in
/// generic mode and say so in [`Attached::warning`] instead of failing.
pub fn attach_uplink(
    pin_dir: &Path,
    prog: BorrowedFd<'_>,
    iface: &str,
    mode: AttachMode,
    fallback_generic: bool,
) -> Result<Attached> {
    let ifindex = ifindex_of(iface)?;
    let name = Hook::Xdp(mode).pin_name(iface);
    if let Some((path, link)) = pinned_link(pin_dir, &name) {
        match link_ifindex(link.as_fd()) {
            Some((i, _)) if i == ifindex => {
                let current = sys::xdp_query(ifindex)
                    .ok()
                    .and_then(|(m, _)| AttachMode::from_attached(m))
                    .unwrap_or(mode);
                if current != mode && !(fallback_generic && current == AttachMode::Generic) {
                    return Err(Error::Other(format!(
                        "{iface} has xlb attached in {current} mode, not {mode}: a link cannot \
                         change mode; run `xlb detach --iface {iface}` first (traffic is not \
                         balanced between detach and attach)"
                    )));
                }
                sys::link_update(link.as_fd(), prog).map_err(|e| {
                    attach_err(
                        iface,
                        "replacing the XDP program",
                        e,
                        "the pinned link may belong to an incompatible xlb; `xlb detach --iface IF` and attach again",
                    )
                })?;
                return Ok(Attached {
                    iface: iface.into(),
                    ifindex,
                    hook: Hook::Xdp(current),
                    replaced: true,
                    warning: None,
                });
            }
            _ => {
                // The interface went away (or was re-created): the link is defunct.
                tracing::info!(pin = %path.display(), "removing stale XDP link pin");
                let _ = sys::link_detach(link.as_fd());
                pin::unpin(&path).ok();
            }
        }
    }

    let (link, used, warning) = match sys::link_create(
        prog,
        ifindex as i32,
        libbpf_sys::BPF_XDP,
        mode.flags(),
    ) {
        Ok(l) => (l, mode, None),
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(0);
            if errno == libc::EBUSY || errno == libc::EEXIST {
                let other = sys::xdp_query(ifindex).map(|(_, id)| id).unwrap_or(0);
                return Err(attach_err(
                    iface,
                    format!("attaching XDP ({mode})"),
                    e,
                    format!(
                        "{iface} already has an XDP program (id {other}) that xlb did not attach \
                         (or attached under another --pin-dir); remove it first, e.g. \
                         `ip link set dev {iface} xdp off`"
                    ),
                ));
            }
            match mode {
                AttachMode::Native if fallback_generic && (errno == libc::EOPNOTSUPP || errno == libc::EINVAL) => {
                    let l = sys::link_create(prog, ifindex as i32, libbpf_sys::BPF_XDP, AttachMode::Generic.flags())
                        .map_err(|e2| attach_err(iface, "attaching XDP (generic fallback)", e2, "see `xlb doctor --iface IF`"))?;
                    let w = format!(
                        "{iface}: {} has no native XDP ({e}); attached in generic mode, which is much slower",
                        driver_desc(iface)
                    );
                    tracing::info!("{w}");
                    (l, AttachMode::Generic, Some(w))
                }
                AttachMode::Native => {
                    return Err(attach_err(
                        iface,
                        "attaching XDP in native mode",
                        e,
                        format!(
                            "{} has no native XDP support; use `--mode generic` (slower), or \
                             `--fallback-generic` to fall back with a warning; `xlb doctor --iface {iface}` tells more",
                            driver_desc(iface)
                        ),
                    ))
                }
                AttachMode::Offload => {
                    return Err(attach_err(
                        iface,
                        "attaching XDP in offload mode",
                        e,
                        format!(
                            "{} cannot offload this program (offload needs a SmartNIC driver \
                             that supports it, and every map offloaded); use `--mode native`",
                            driver_desc(iface)
                        ),
                    ))
                }
                AttachMode::Generic => {
                    return Err(attach_err(
                        iface,
                        "attaching XDP in generic mode",
                        e,
                        "check `xlb doctor --iface IF`",
                    ))
                }
            }
        }
    };
    let path = links_dir(pin_dir).join(Hook::Xdp(used).pin_name(iface));
    if let Err(e) = pin::repin(&link, &path) {
        // Unpinned, the link would vanish with this process: undo explicitly.
        let _ = sys::link_detach(link.as_fd());
        return Err(e);
    }
    Ok(Attached {
        iface: iface.into(),
        ifindex,
        hook: Hook::Xdp(used),
        replaced: false,
        warning,
    })
}

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

fn tc_classic_detach(ifindex: u32, destroy_qdisc: bool) -> io::Result<()> {
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

/// Removes the hooks of every pod interface (tcx and tc), keeping the uplink.
pub fn detach_pods(pin_dir: &Path) -> Result<Vec<Attachment>> {
    let pods: Vec<_> = list(pin_dir)?
        .into_iter()
        .filter(|a| !matches!(a.hook, Hook::Xdp(_)))
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

/// Probe: can an XDP program attach to `ifindex` in `mode`? Attaches a
/// trivial XDP_PASS program through a link and removes it at once.
pub fn probe_xdp(ifindex: u32, mode: AttachMode) -> io::Result<()> {
    let prog = sys::load_trivial(libbpf_sys::BPF_PROG_TYPE_XDP, libbpf_sys::XDP_PASS as i32)?;
    let link = sys::link_create(
        prog.as_fd(),
        ifindex as i32,
        libbpf_sys::BPF_XDP,
        mode.flags(),
    )?;
    sys::link_detach(link.as_fd())
}

/// Probe: does tcx ingress attach on `ifindex`? (A trivial TCX_NEXT program,
/// removed at once; packets are untouched.)
pub fn probe_tcx(ifindex: u32) -> io::Result<()> {
    let prog = sys::load_trivial(libbpf_sys::BPF_PROG_TYPE_SCHED_CLS, -1 /* TCX_NEXT */)?;
    let link = sys::link_create(prog.as_fd(), ifindex as i32, libbpf_sys::BPF_TCX_INGRESS, 0)?;
    sys::link_detach(link.as_fd())
}
