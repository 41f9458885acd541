//! IPv6 in the bench topology, for the IPv6 scenarios (`nodeport-remote-v6`):
//! the roles of [`super::topo`] on fd00:198:18::/64. Only the node namespace
//! has IPv6 on (the data plane's next-hop lookups need its addresses, routes
//! and neighbours); the client and the sink see frames at XDP only.

use std::net::Ipv6Addr;

use anyhow::Result;

use super::topo::{mac, sh, Egress, Topo, N1};

/// IPv6 scenarios: the same roles on fd00:198:18::/64 (the node namespace
/// alone has IPv6 on: the client and the sink only see frames, at XDP).
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, 1);
pub const NODE6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, 2);
pub const NODE_SINK_SIDE6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, 0x17);
pub const REMOTE_NODE6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, 0x18);
/// Flow sources (their last 32 bits vary), routed via the client.
pub const CLIENTS6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 0x64, 0, 0, 0, 0);
pub const REMOTE_PODS6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x244, 1, 0, 0, 0, 0);
/// Pods of the client's node (clusterip-decap-v6), behind the client.
pub const CLIENT_PODS6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x244, 2, 0, 0, 0, 0);

impl Topo {
    /// IPv6 in the node namespace for the IPv6 scenarios: addresses (no
    /// DAD), forwarding, static neighbours and the routes of the IPv4 set-up.
    pub fn add_ipv6(&self) -> Result<()> {
        let n = self.node.clone();
        let dn0 = self.dev_n0.clone();
        for kv in [
            "net.ipv6.conf.all.disable_ipv6=0",
            "net.ipv6.conf.default.disable_ipv6=0",
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
            "net.ipv6.conf.all.forwarding=1",
        ] {
            sh("ip", &["netns", "exec", &n, "sysctl", "-qw", kv])?;
        }
        for dev in [dn0.as_str(), N1] {
            let d = dev.replace('.', "/");
            for k in ["accept_dad=0", "disable_ipv6=0"] {
                let kv = format!("net.ipv6.conf.{d}.{k}");
                sh("ip", &["netns", "exec", &n, "sysctl", "-qw", &kv])?;
            }
        }
        self.ip(&n, &format!("addr add {NODE6}/124 dev {dn0} nodad"))?;
        self.ip(
            &n,
            &format!("addr add {NODE_SINK_SIDE6}/124 dev {N1} nodad"),
        )?;
        let up = match self.egress {
            Egress::Same => dn0.as_str(),
            Egress::Other => N1,
        };
        self.ip(
            &n,
            &format!(
                "-6 neigh replace {CLIENT6} lladdr {} dev {dn0} nud permanent",
                mac(&self.mac_c0)
            ),
        )?;
        if self.egress == Egress::Same {
            self.ip(&n, &format!("-6 route add {REMOTE_NODE6}/128 dev {dn0}"))?;
        }
        self.ip(
            &n,
            &format!(
                "-6 neigh replace {REMOTE_NODE6} lladdr {} dev {up} nud permanent",
                mac(&self.remote_mac())
            ),
        )?;
        self.ip(
            &n,
            &format!("-6 route add {CLIENTS6}/64 via {CLIENT6} dev {dn0}"),
        )?;
        self.ip(
            &n,
            &format!("-6 route add {REMOTE_PODS6}/64 via {REMOTE_NODE6} dev {up}"),
        )?;
        self.ip(
            &n,
            &format!("-6 route add {CLIENT_PODS6}/64 via {CLIENT6} dev {dn0}"),
        )?;
        Ok(())
    }
}
