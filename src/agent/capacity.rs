//! # The agent's map sizes: load, grow, report
//!
//! At load a map is created at its flag's size (or the default) unless one
//! is pinned already, which is reused at its size. Before every sync the
//! maps are brought to [`sizing::plan`] for the desired state, and once more
//! after a sync that found a following map full: [`Agent::grow_maps`] loads
//! larger copies under the running programs and swaps them in
//! ([`xlb_loader::grow`]); the syncer and the metrics then use the new maps.
//! A failed grow leaves the old data plane as it was (logged; what does not
//! fit is reported as not programmed and retried).

use std::path::Path;

use anyhow::Context;
use xlb_bpf::Maps;
use xlb_loader::grow::Sizes;
use xlb_loader::{pin, LoadOptions};

use super::sizing::{self, Need};
use super::{net, Agent, AgentArgs};

/// Load options: `--ct-entries` and `--ct6-entries`, and each map size flag
/// for a map not pinned yet, of both families (a pinned one keeps its size
/// and is grown to the flag after).
pub(super) fn load_options(args: &AgentArgs, pin_dir: &Path) -> LoadOptions {
    let unpinned = |name: &str, v: Option<u32>| {
        v.filter(|_| pin::pinned_max_entries(&pin_dir.join(name)).is_none())
    };
    let s = &args.map_sizes;
    LoadOptions {
        pin_dir: Some(pin_dir.to_owned()),
        ct_entries: args.ct_entries,
        ct6_entries: args.ct6_entries,
        services: unpinned("services", s.max_frontends),
        backends: unpinned("backends", s.max_backends),
        maglev_slots: unpinned("maglev", s.maglev_slots),
        affinity: unpinned("affinity", s.affinity_entries),
        src_ranges: unpinned("src_ranges", s.max_src_ranges),
        services6: unpinned("services6", s.max_frontends),
        affinity6: unpinned("affinity6", s.affinity_entries),
        src_ranges6: unpinned("src_ranges6", s.max_src_ranges),
    }
}

impl Agent {
    /// Brings the maps to [`sizing::plan`] for `need` (and the maps a sync
    /// found `full`); `true` when they grew. Failures are logged and leave
    /// the data plane as it was.
    pub(super) fn grow_maps(&mut self, need: &Need, full: &[&str]) -> bool {
        let cur = self.dp.sizes();
        let fixed = self.args.map_sizes.fixed();
        let want = sizing::plan(need, &cur, &fixed, full);
        if want == cur {
            return false;
        }
        for (name, c, w) in changes(&cur, &want) {
            if w < c {
                continue;
            }
            tracing::info!(map = name, from = c, to = w, "growing a map");
        }
        match self.try_grow(&want) {
            Ok(true) => {
                tracing::info!(sizes = ?self.dp.sizes(), "maps grown: new maps and programs swapped in (connection tracking kept)");
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::error!("growing the maps failed, the data plane keeps its maps: {e:#}");
                false
            }
        }
    }

    fn try_grow(&mut self, want: &Sizes) -> anyhow::Result<bool> {
        let Some(new) = self.dp.grow(want).context("loading the larger maps")? else {
            return Ok(false);
        };
        // Handles on the new maps first: nothing can fail after the swap.
        let (for_sync, for_metrics) = (Maps::from_skel(&new.xdp)?, Maps::from_skel(&new.xdp)?);
        xlb_loader::grow::commit(&self.pin_dir, &self.dp, &new)
            .context("swapping the larger maps in")?;
        if self.attached && !self.args.no_socket_lb {
            if let Err(e) = self.attach_sockets(&new) {
                // Back to the old maps and programs, sockets included.
                let back = xlb_loader::grow::commit(&self.pin_dir, &new, &self.dp);
                let sockets = self.attach_sockets(&self.dp);
                if let Err(b) = back.map_err(anyhow::Error::from).and(sockets) {
                    tracing::error!("putting the old data plane back: {b:#}");
                }
                return Err(e.context("moving the socket hooks to the larger maps"));
            }
        }
        self.syncer.replace_maps(for_sync);
        self.metrics.set_maps(for_metrics);
        self.dp = new;
        self.sock_term.maps_replaced(&self.dp, &self.metrics);
        Ok(true)
    }

    /// The socket hooks pointed at `dp`'s programs (swapped inside their
    /// links).
    pub(super) fn attach_sockets(&self, dp: &xlb_loader::DataPlane) -> anyhow::Result<()> {
        let flags = if net::loopback_nodeports(&self.args.nodeport_addresses.0) {
            xlb_bpf::consts::XLB_SOCK_F_LOOPBACK
        } else {
            0
        };
        crate::cli::attach::attach_sockets(
            &self.pin_dir,
            dp,
            flags,
            self.args.cgroup_root.as_deref(),
        )
        .map(|_| ())
    }
}

/// `(map, current, wanted)` for every size that differs.
fn changes(cur: &Sizes, want: &Sizes) -> Vec<(&'static str, u32, u32)> {
    [
        ("services", cur.services, want.services),
        ("backends", cur.backends, want.backends),
        ("maglev", cur.maglev, want.maglev),
        ("affinity", cur.affinity, want.affinity),
        ("src_ranges", cur.src_ranges, want.src_ranges),
        ("services6", cur.services6, want.services6),
        ("affinity6", cur.affinity6, want.affinity6),
        ("src_ranges6", cur.src_ranges6, want.src_ranges6),
    ]
    .into_iter()
    .filter(|(_, c, w)| c != w)
    .collect()
}
