//! [`View6`] over the pinned (or a test's) IPv6 maps. Pins of an xlb
//! without IPv6 read as empty maps (no Service, no entry).

use std::net::Ipv6Addr;

use libbpf_rs::MapCore;
use xlb_bpf::types::*;

use super::view::MapsView;
use super::View6;

impl View6 for MapsView<'_> {
    fn node_addr6(&self) -> anyhow::Result<Option<Ipv6Addr>> {
        if self.0.v6().is_none() {
            return Ok(None);
        }
        Ok(self.0.config6()?.node_addr())
    }
    fn service6(&self, k: &xlb_svc6_key) -> anyhow::Result<Option<xlb_svc_val>> {
        Ok(self.0.service6(k)?)
    }
    fn is_local_addr6(&self, a: Ipv6Addr) -> anyhow::Result<bool> {
        let Some(m) = self.0.v6() else {
            return Ok(false);
        };
        let k = xlb_addr6::new(a);
        Ok(super::view::lookup::<xlb_addr6, u32>(&m.local_addrs6, "local_addrs6", &k)?.is_some())
    }
    fn src_range6_allows(&self, svc_id: u32, client: Ipv6Addr) -> anyhow::Result<bool> {
        let Some(m) = self.0.v6() else {
            return Ok(false);
        };
        let k = xlb_src_range6_key::new(svc_id, client, 128);
        Ok(
            super::view::lookup::<xlb_src_range6_key, u32>(&m.src_ranges6, "src_ranges6", &k)?
                .is_some(),
        )
    }
    fn affinity6(&self, k: &xlb_affinity6_key) -> anyhow::Result<Option<xlb_affinity_val>> {
        Ok(self.0.affinity6_entry(k)?)
    }
    fn ct6(&self, k: &xlb_ct6_key) -> anyhow::Result<Option<xlb_ct6_val>> {
        Ok(self.0.ct6_entry(k)?)
    }
    fn backend6(&self, id: u32) -> anyhow::Result<Option<xlb_backend6>> {
        let Some(m) = self.0.v6() else {
            return Ok(None);
        };
        if id >= m.backends6.max_entries() {
            return Ok(None);
        }
        Ok(self.0.backend6(id)?)
    }
    fn tunnel6(&self, addr: Ipv6Addr) -> anyhow::Result<Option<xlb_tunnel6_val>> {
        let Some(m) = self.0.v6() else {
            return Ok(None);
        };
        let k = xlb_tunnel6_key::new(addr, 128);
        super::view::lookup(&m.tunnel6, "tunnel6", &k)
    }
}
