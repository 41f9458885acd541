//! `xlb maps`: read the pinned maps as tables (or JSON), like `ipvsadm -Ln`.
//!
//! Everything goes through `xlb_bpf::Maps` (typed), both families' maps
//! in one table (`family`); addresses print as dotted quads or canonical
//! IPv6 (`[2001:db8::1]:80` with a port), ports in host order, protocols by name, Services by the name the
//! agent recorded in `/run/xlb/names.json` (see [`crate::names`]).
//!
//! Here: the arguments and the dispatch. One module per group of tables
//! (`services`, `backends`, `flows`, `node`), the shared table and value
//! formatting in `format`, the `--service`/`--backend` selectors in `select`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};
use xlb_bpf::consts::*;
use xlb_bpf::types::*;
use xlb_bpf::wire::{mac_string, proto_name};
use xlb_bpf::Maps;

mod backends;
mod family;
mod flows;
mod format;
mod node;
mod select;
mod services;

use backends::*;
use family::*;
use flows::*;
use format::*;
use node::*;
use select::*;
use services::*;

/// Print the contents of the pinned maps.
///
/// Examples:
///   xlb maps services
///   xlb maps services --service default/web --json
///   xlb maps backends --service 10.96.0.10:53
///   xlb maps maglev default/web:80/TCP
///   xlb maps ct --backend 10.244.1.5 --limit 20
///   xlb maps stats
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct MapsArgs {
    #[command(subcommand)]
    pub which: Which,

    /// Machine-readable output: {"rows": [...], "count": N, "total": T}.
    #[arg(long, global = true)]
    pub json: bool,

    /// Only this Service: svc_id, name (ns/name or ns/name:port/PROTO), or frontend (IP or IP:port; [IPv6]:port).
    #[arg(long, global = true, value_name = "S")]
    pub service: Option<String>,

    /// Only this backend: backend id, IP or IP:port ([IPv6]:port).
    #[arg(long, global = true, value_name = "B")]
    pub backend: Option<String>,

    /// Print at most N rows (the count line still tells the total).
    #[arg(long, global = true, value_name = "N")]
    pub limit: Option<usize>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Which {
    /// Frontends (ClusterIP, NodePort, LoadBalancer, ExternalIP) -> Service ports.
    Services,
    /// Backend slots in use, with the packets and bytes forwarded to each.
    Backends,
    /// A Service's Maglev table: slots per backend, and the packets and bytes forwarded to each.
    Maglev {
        /// The Service: svc_id, name or frontend.
        svc: String,
    },
    /// Connection-tracking entries.
    Ct,
    /// Session-affinity (ClientIP) entries.
    Affinity,
    /// loadBalancerSourceRanges.
    SrcRanges,
    /// Pod CIDR -> node tunnel entries.
    Tunnel,
    /// Reason counters (pass_*, drop_*, tx_*: a frame's outcome; event_*:
    /// counted on the way, e.g. event_ct_full) and per-Service packets/bytes.
    Stats {
        /// Also the reasons whose counters are zero.
        #[arg(long)]
        all: bool,
    },
    /// Runtime configuration and this node's addresses.
    Config,
}

pub fn run(a: MapsArgs, pin_dir: &Path) -> anyhow::Result<()> {
    let maps = Maps::from_pin_dir(pin_dir)
        .with_context(|| format!("opening the maps under {}", pin_dir.display()))?;
    let names = crate::names::read_or_warn(pin_dir);
    let sel = a.service.as_deref().map(|s| SvcSel {
        sel: s,
        names: &names,
    });
    let bsel = a.backend.as_deref();
    let table = match &a.which {
        Which::Services => {
            let mut t = services(&maps, &names, sel.as_ref(), bsel)?;
            not_programmed(&mut t, pin_dir);
            t
        }
        Which::Backends => backends(&maps, sel.as_ref(), bsel)?,
        Which::Maglev { svc } => maglev(
            &maps,
            &names,
            &SvcSel {
                sel: svc,
                names: &names,
            },
            bsel,
        )?,
        Which::Ct => ct(&maps, &names, sel.as_ref(), bsel)?,
        Which::Affinity => affinity(&maps, &names, sel.as_ref(), bsel)?,
        Which::SrcRanges => src_ranges(&maps, &names, sel.as_ref())?,
        Which::Tunnel => tunnel(&maps)?,
        Which::Stats { all } => stats(&maps, &names, sel.as_ref(), *all)?,
        Which::Config => config(&maps)?,
    };
    table.print(a.json, a.limit)
}
