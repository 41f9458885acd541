//! The nodes as the model keeps them ([`NodeInfo`], read from a Node by
//! `endpoints::node_info`) and the state derived from all of them together:
//! tunnel entries (other nodes' pod CIDRs and IPv4 addresses), this node's and the other nodes'
//! addresses. Apart from the per-Service computation (`compute`) because a
//! change of what the model uses of a Node recomputes every Service.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

/// What the model keeps of a Node.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct NodeInfo {
    /// First IPv4 InternalIP: the IPv4 underlay address.
    pub addr: Option<Ipv4Addr>,
    /// The IPv6 underlay address: flannel's `public-ipv6` annotation, else
    /// the first IPv6 InternalIP.
    pub addr6: Option<Ipv6Addr>,
    /// Every InternalIP/ExternalIP of both families.
    pub addrs: Vec<IpAddr>,
    /// Pod CIDRs of both families.
    pub cidrs: Vec<(IpAddr, u8)>,
    pub vtep_mac: Option<[u8; 6]>,
    /// The IPv6 VTEP MAC (flannel's `backend-v6-data`).
    pub vtep_mac6: Option<[u8; 6]>,
}

impl NodeInfo {
    /// The underlay address of `family`.
    pub fn underlay(&self, family: Family) -> Option<IpAddr> {
        match family {
            Family::V4 => self.addr.map(IpAddr::V4),
            Family::V6 => self.addr6.map(IpAddr::V6),
        }
    }

    /// The VTEP MAC of `family`.
    pub fn vtep(&self, family: Family) -> Option<[u8; 6]> {
        match family {
            Family::V4 => self.vtep_mac,
            Family::V6 => self.vtep_mac6,
        }
    }
}

impl Model {
    pub(super) fn node_changed(&mut self) -> bool {
        let mut changed = self.refresh_nodes();
        let keys: Vec<String> = self.services.keys().cloned().collect();
        for k in keys {
            changed |= self.recompute(&k);
        }
        changed
    }

    /// Tunnel entries, local and remote addresses from the nodes.
    pub(super) fn refresh_nodes(&mut self) -> bool {
        let mut tunnels = BTreeMap::new();
        let mut reasons = Vec::new();
        for (name, n) in &self.nodes {
            if *name == self.cfg.node_name {
                continue;
            }
            for fam in [Family::V4, Family::V6] {
                let cidrs: Vec<(IpAddr, u8)> = n
                    .cidrs
                    .iter()
                    .filter(|c| Family::of(c.0) == fam)
                    .copied()
                    .collect();
                if cidrs.is_empty() {
                    continue;
                }
                let (Some(addr), Some(mac)) = (n.underlay(fam), n.vtep(fam)) else {
                    let why = match (fam, n.underlay(fam).is_none()) {
                        (Family::V4, true) => "no IPv4 InternalIP: no tunnel entry for its IPv4 pod CIDRs".to_string(),
                        (Family::V6, true) => format!("no IPv6 address (annotation {FLANNEL_PUBLIC_IPV6_ANNOTATION} or an IPv6 InternalIP): no tunnel entry for its IPv6 pod CIDRs"),
                        (Family::V4, false) => format!(
                            "no VTEP MAC (annotation {} or {XLB_VTEP_ANNOTATION}): no tunnel entry for its IPv4 pod CIDRs",
                            self.cfg.vtep_mac_annotation
                        ),
                        (Family::V6, false) => format!(
                            "no IPv6 VTEP MAC (annotation {FLANNEL_VTEP6_ANNOTATION}): no tunnel entry for its IPv6 pod CIDRs"
                        ),
                    };
                    reasons.push((format!("Node {name}"), why));
                    continue;
                };
                let entry = TunnelEntry {
                    node: addr,
                    vtep_mac: mac,
                };
                for c in cidrs {
                    tunnels.insert(c, entry.clone());
                }
                // Its own IPv4 addresses too: a host-network endpoint there is
                // reached through its tunnel, and its xlb returns the replies
                // (tc egress, docs/dp.md "Who reverse-NATs"). IPv6 has no such
                // tunnel return: without an entry, XDP drops those flows
                // (`drop_no_tunnel`) rather than have them answered from the
                // endpoint's own address.
                if fam == Family::V4 {
                    for a in n.addrs.iter().filter(|a| a.is_ipv4()) {
                        tunnels.entry((*a, 32)).or_insert_with(|| entry.clone());
                    }
                }
            }
        }
        self.set_reasons("Nodes (tunnels)", reasons);
        let mut local: BTreeSet<IpAddr> = self.cfg.node_addrs.iter().copied().collect();
        if let Some(me) = self.nodes.get(&self.cfg.node_name) {
            local.extend(me.addrs.iter().copied());
        }
        // Every node takes NodePorts on the same addresses
        // (`--nodeport-addresses` is cluster-wide configuration).
        let mut remote: BTreeSet<IpAddr> = self
            .nodes
            .iter()
            .filter(|(name, _)| **name != self.cfg.node_name)
            .flat_map(|(_, n)| n.addrs.iter().copied())
            .filter(|a| !local.contains(a))
            .collect();
        if !self.cfg.nodeport_cidrs.is_empty() {
            local.retain(|a| in_cidrs(*a, &self.cfg.nodeport_cidrs));
            remote.retain(|a| in_cidrs(*a, &self.cfg.nodeport_cidrs));
        }
        let changed = tunnels != self.desired.tunnels
            || local != self.desired.local_addrs
            || remote != self.desired.remote_addrs;
        self.desired.tunnels = tunnels;
        self.desired.local_addrs = local;
        self.desired.remote_addrs = remote;
        changed
    }
}
