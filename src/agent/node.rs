//! # This node as the data plane sees it
//!
//! The node's addresses (IPv4 and IPv6 underlay), uplink and NodePort
//! addresses, resolved from the flags and the Node object at every
//! snapshot, and the `config` and `config6` maps written from them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{bail, Context};
use xlb_bpf::types::xlb_config;
use xlb_bpf::wire::be32;

use super::{net, net6, Agent};
use crate::model::Snapshot;

/// This node as the data plane sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct NodeNet {
    pub(super) addr: Option<Ipv4Addr>,
    /// The IPv6 underlay address (`config6`).
    pub(super) addr6: Option<Ipv6Addr>,
    pub(super) iface: Option<net::Iface>,
    /// The addresses NodePorts answer on, both families
    /// (`--nodeport-addresses` applied).
    pub(super) nodeport_addrs: Vec<IpAddr>,
}

impl Agent {
    /// This node's address and uplink: flags first, then the Node object.
    pub(super) fn resolve_node(&self, snap: &Snapshot) -> anyhow::Result<NodeNet> {
        let from_node = own_node_addr(snap, &self.node_name);
        let iface = match self.args.iface.as_deref() {
            None | Some("") => None,
            Some("auto") => {
                let v4 = self.args.node_addr.or(from_node);
                let v6 = self
                    .args
                    .node_addr6
                    .or_else(|| own_node_addr6(snap, &self.node_name));
                Some(auto_uplink(
                    &self.node_name,
                    v4,
                    v6,
                    &net::ipv4_addrs()?,
                    &net6::ipv6_addrs()?,
                )?)
            }
            Some(name) => Some(name.to_owned()),
        };
        let iface = match iface {
            Some(name) => Some(net::iface(&name).with_context(|| format!("looking up {name}"))?),
            None => None,
        };
        let addr = self
            .args
            .node_addr
            .or(from_node)
            .or_else(|| iface.as_ref().and_then(|i| i.addrs.first().copied()));
        let had_addr = self.node.as_ref().map(|n| n.addr.is_some());
        if addr.is_none() && had_addr != Some(false) {
            tracing::warn!(
                node = %self.node_name,
                "no node address yet (no --node-addr, no InternalIP on the Node, no --iface): \
                 NodePort and VXLAN wait for it"
            );
        }
        let addr6 = self
            .args
            .node_addr6
            .or_else(|| own_node_addr6(snap, &self.node_name))
            .or_else(|| iface.as_ref().and_then(|i| i.addrs6.first().copied()));
        let nodeport_addrs = net::nodeport_addrs(&self.args.nodeport_addresses.0)
            .context("listing this node's addresses")?;
        Ok(NodeNet {
            addr,
            addr6,
            iface,
            nodeport_addrs,
        })
    }

    /// The `config` map: node address, VXLAN, uplink; written when it changes.
    pub(super) fn write_config(&mut self, node: &NodeNet) -> anyhow::Result<()> {
        let maps = &self.dp.maps;
        let old = maps.config().context("reading the config map")?;
        let mut c = old;
        if let Some(a) = node.addr {
            c.node_addr = be32(a);
        }
        c.vxlan_port = self.args.vxlan_port.to_be();
        c.vni = self.args.vni;
        if let Some(i) = &node.iface {
            c.ifindex = i.ifindex;
            c.mac = i.mac;
            c.mtu = i.mtu;
        }
        c.flags |= xlb_bpf::consts::XLB_CFG_F_REJECT;
        if self.args.no_tunnel_nat {
            c.flags &= !xlb_bpf::consts::XLB_CFG_F_TNAT;
        } else {
            c.flags |= xlb_bpf::consts::XLB_CFG_F_TNAT;
        }
        self.args.ct_timeouts.apply(&mut c);
        if node.addr.is_some() {
            c.flags |= xlb_bpf::consts::XLB_CFG_F_VXLAN;
        }
        // Written only when it changes: a write voids the XDP flow cache.
        if plain_bytes(&old) != plain_bytes(&c) {
            maps.put_config(&c).context("writing the config map")?;
            tracing::info!(
                node_addr = %c.node_addr(),
                vxlan_port = self.args.vxlan_port,
                vni = c.vni,
                ifindex = c.ifindex,
                "data-plane config written"
            );
        }
        // config6: the IPv6 underlay address (pins of an xlb without IPv6
        // have no config6: nothing to write there).
        if maps.v6().is_some() {
            let c6 = maps.config6().context("reading the config6 map")?;
            let want = c6.with_node_addr(node.addr6.or(c6.node_addr()));
            if plain_bytes6(&want) != plain_bytes6(&c6) {
                maps.put_config6(&want).context("writing the config6 map")?;
                tracing::info!(
                    node_addr6 = ?want.node_addr(),
                    "data-plane IPv6 config written"
                );
            }
        }
        Ok(())
    }
}

/// The uplink `--iface auto` picks: the interface holding the node's IPv4
/// address, else (a node with only IPv6, or an IPv4 address on no
/// interface) the one holding its IPv6 address. `addrs4` and `addrs6` are
/// every interface's addresses.
fn auto_uplink(
    node_name: &str,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
    addrs4: &[(String, Ipv4Addr)],
    addrs6: &[(String, Ipv6Addr)],
) -> anyhow::Result<String> {
    let by4 = v4.and_then(|a| addrs4.iter().find(|(_, x)| *x == a).map(|(n, _)| n));
    let by6 = v6.and_then(|a| addrs6.iter().find(|(_, x)| *x == a).map(|(n, _)| n));
    if let Some(name) = by4.or(by6) {
        return Ok(name.clone());
    }
    match (v4, v6) {
        (None, None) => bail!(
            "--iface auto: no node address (pass --node-addr or --node-addr6, or make sure Node {node_name} has an InternalIP)"
        ),
        (Some(a), None) => bail!("--iface auto: no interface holds {a}"),
        (None, Some(b)) => bail!("--iface auto: no interface holds {b}"),
        (Some(a), Some(b)) => bail!("--iface auto: no interface holds {a} or {b}"),
    }
}

fn plain_bytes6(c: &xlb_bpf::types::xlb_config6) -> Vec<u8> {
    // SAFETY: xlb_config6 is Plain (integers only, explicit padding).
    unsafe { plain::as_bytes(c) }.to_vec()
}

/// The IPv6 underlay of the Node named `name`: flannel's `public-ipv6`
/// annotation, else its first global IPv6 InternalIP.
fn own_node_addr6(snap: &Snapshot, name: &str) -> Option<Ipv6Addr> {
    let node = snap
        .nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(name))?;
    let ann = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::model::FLANNEL_PUBLIC_IPV6_ANNOTATION))
        .and_then(|v| v.trim().parse::<Ipv6Addr>().ok())
        .filter(net6::is_node_addr6);
    ann.or_else(|| {
        node.status
            .as_ref()?
            .addresses
            .as_ref()?
            .iter()
            .filter(|a| a.type_ == "InternalIP")
            .filter_map(|a| a.address.parse::<Ipv6Addr>().ok())
            .find(net6::is_node_addr6)
    })
}

fn plain_bytes(c: &xlb_config) -> Vec<u8> {
    // SAFETY: xlb_config is Plain (integers only, explicit padding).
    unsafe { plain::as_bytes(c) }.to_vec()
}

/// The first IPv4 InternalIP of the Node named `name`.
fn own_node_addr(snap: &Snapshot, name: &str) -> Option<Ipv4Addr> {
    let node = snap
        .nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(name))?;
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs<A: std::str::FromStr>(l: &[(&str, &str)]) -> Vec<(String, A)>
    where
        A::Err: std::fmt::Debug,
    {
        l.iter()
            .map(|(n, a)| (n.to_string(), a.parse().unwrap()))
            .collect()
    }

    #[test]
    fn auto_uplink_by_either_family() {
        let a4: Vec<(String, Ipv4Addr)> = addrs(&[("lo", "127.0.0.1"), ("eth0", "198.18.0.11")]);
        let a6: Vec<(String, Ipv6Addr)> =
            addrs(&[("lo", "::1"), ("eth0", "fe80::1"), ("eth1", "2001:db8::11")]);
        let v4 = Some(Ipv4Addr::new(198, 18, 0, 11));
        let v6 = Some("2001:db8::11".parse().unwrap());
        let pick = |v4, v6| auto_uplink("n1", v4, v6, &a4, &a6);
        // IPv4 first; an IPv6-only node by its IPv6 address.
        assert_eq!(pick(v4, v6).unwrap(), "eth0");
        assert_eq!(pick(None, v6).unwrap(), "eth1");
        // an IPv4 address on no interface: the IPv6 one still finds it
        assert_eq!(pick(Some(Ipv4Addr::new(10, 9, 9, 9)), v6).unwrap(), "eth1");
        let e = pick(None, Some("2001:db8::99".parse().unwrap())).unwrap_err();
        assert!(
            e.to_string().contains("no interface holds 2001:db8::99"),
            "{e}"
        );
        let e = pick(None, None).unwrap_err();
        assert!(e.to_string().contains("no node address"), "{e}");
    }

    #[test]
    fn auto_uplink_on_this_host_ipv6_only() {
        // ::1 on lo (when the namespace has IPv6 at all) finds lo.
        let a6 = net6::ipv6_addrs().unwrap();
        if a6
            .iter()
            .any(|(n, a)| n == "lo" && *a == Ipv6Addr::LOCALHOST)
        {
            let got = auto_uplink(
                "n1",
                None,
                Some(Ipv6Addr::LOCALHOST),
                &net::ipv4_addrs().unwrap(),
                &a6,
            );
            assert_eq!(got.unwrap(), "lo");
        }
    }
}
