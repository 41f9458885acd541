//! # The uplink: XDP through a pinned bpf_link
//!
//! Attach (or replace in place) the XDP program on the uplink, with the
//! generic-mode fallback, and the probe that asks whether a mode attaches.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use super::*;

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
