//! # Attaching the data plane
//!
//! At the first snapshot that names the uplink: XDP and tcx egress on it, tc on the pod veths
//! (and a thread that follows new ones), the cgroup socket hooks (or their
//! removal with `--no-socket-lb`), and the programs pinned.

use std::os::fd::AsFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use xlb_loader::attach;

use super::{net, Agent};

impl Agent {
    pub(super) fn attach(&mut self, iface: &net::Iface) -> anyhow::Result<()> {
        let a = attach::attach_uplink(
            &self.pin_dir,
            self.dp.xdp_prog().as_fd(),
            &iface.name,
            self.args.xdp_mode,
            self.args.fallback_generic,
        )
        .with_context(|| format!("attaching XDP to {}", iface.name))?;
        if let Some(w) = &a.warning {
            tracing::warn!("{w}");
        }
        tracing::info!(iface = %a.iface, hook = %a.hook.describe(), replaced = a.replaced, "uplink attached");
        // Replies of this node's host-network endpoints leave through the
        // uplink's egress (reverse NAT, tunnel return: docs/dp.md).
        match attach::attach_pod_egress(
            &self.pin_dir,
            self.dp.tc_egress_prog().as_fd(),
            &iface.name,
        ) {
            Ok(Some(_)) => {}
            Ok(None) => tracing::warn!(
                iface = %iface.name,
                "no tcx egress on the uplink (tcx unavailable or turned off): replies of host-network endpoints to clients balanced by XDP leave untranslated"
            ),
            Err(e) => tracing::warn!("uplink {} (egress): {e}", iface.name),
        }
        for (_, name) in xlb_loader::sys::interfaces() {
            if name != iface.name && self.args.pod_ifaces.matches(&name) {
                match attach::attach_pod(&self.pin_dir, self.dp.tc_prog().as_fd(), &name) {
                    Ok(p) => {
                        tracing::debug!(iface = %p.iface, hook = %p.hook.describe(), "pod interface attached")
                    }
                    Err(e) => tracing::warn!("pod interface {name}: {e}"),
                }
                if let Err(e) = attach::attach_pod_egress(
                    &self.pin_dir,
                    self.dp.tc_egress_prog().as_fd(),
                    &name,
                ) {
                    tracing::warn!("pod interface {name} (egress): {e}");
                }
            }
        }
        attach::pin_programs(&self.pin_dir, &self.dp).context("pinning the programs")?;
        if self.args.no_socket_lb {
            let gone = xlb_loader::cgroup::detach(&self.pin_dir)
                .context("detaching the socket hooks (--no-socket-lb)")?;
            if !gone.is_empty() {
                tracing::info!("--no-socket-lb: socket hooks of an earlier run removed");
            }
        } else {
            let flags = if net::loopback_nodeports(&self.args.nodeport_addresses.0) {
                xlb_bpf::consts::XLB_SOCK_F_LOOPBACK
            } else {
                0
            };
            let done = crate::cli::attach::attach_sockets(
                &self.pin_dir,
                &self.dp,
                flags,
                self.args.cgroup_root.as_deref(),
            )?;
            if let Some(s) = done.first() {
                tracing::info!(
                    cgroup = %s.cgroup.display(),
                    replaced = s.replaced,
                    loopback_nodeports = flags != 0,
                    "socket hooks attached (connect, sendmsg, recvmsg, getpeername; IPv4 and IPv6)"
                );
            }
        }
        if !self.args.pod_ifaces.is_empty() {
            let stop = Arc::new(AtomicBool::new(false));
            let (s, pin, pats) = (
                stop.clone(),
                self.pin_dir.clone(),
                self.args.pod_ifaces.clone(),
            );
            let h = std::thread::Builder::new()
                .name("xlb-pod-ifaces".into())
                .spawn(move || {
                    if let Err(e) =
                        xlb_loader::netlink::follow_pods(&pin, pats, &s, Duration::from_millis(200))
                    {
                        tracing::error!("following pod interfaces stopped: {e}");
                    }
                })
                .context("starting the pod interface thread")?;
            self.pods = Some((stop, h));
        }
        Ok(())
    }
}
