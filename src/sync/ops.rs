//! The map operations sync needs, over real maps or the fake.

use std::net::IpAddr;

use libbpf_rs::MapCore;
use xlb_bpf::types::{
    xlb_backend, xlb_backend6, xlb_src_range6_key, xlb_src_range_key, xlb_svc6_key, xlb_svc_key,
    xlb_svc_stable, xlb_svc_val, xlb_tunnel6_key, xlb_tunnel6_val, xlb_tunnel_key, xlb_tunnel_val,
};
use xlb_bpf::Maps;

/// Map access for [`super::Syncer`]. Errors are the map layer's
/// ([`xlb_bpf::Error`], `Full` when a map is full).
pub trait MapOps {
    /// Capacity of `services` / `backends` / `maglev`.
    fn frontend_capacity(&self) -> u32;
    fn backend_capacity(&self) -> u32;
    fn maglev_capacity(&self) -> u32;

    fn services(&self) -> xlb_bpf::Result<Vec<(xlb_svc_key, xlb_svc_val)>>;
    fn put_service(&mut self, k: &xlb_svc_key, v: &xlb_svc_val) -> xlb_bpf::Result<()>;
    fn delete_service(&mut self, k: &xlb_svc_key) -> xlb_bpf::Result<bool>;

    /// Every backend slot (index = id), active or not.
    fn backend_slots(&self) -> xlb_bpf::Result<Vec<xlb_backend>>;
    fn put_backend(&mut self, id: u32, v: &xlb_backend) -> xlb_bpf::Result<()>;

    fn write_maglev(&mut self, off: u32, table: &[u32]) -> xlb_bpf::Result<()>;
    fn read_maglev(&self, off: u32, len: u32) -> xlb_bpf::Result<Vec<u32>>;

    fn src_ranges(&self) -> xlb_bpf::Result<Vec<xlb_src_range_key>>;
    fn put_src_range(&mut self, k: &xlb_src_range_key) -> xlb_bpf::Result<()>;
    fn delete_src_range(&mut self, k: &xlb_src_range_key) -> xlb_bpf::Result<bool>;

    fn tunnels(&self) -> xlb_bpf::Result<Vec<(xlb_tunnel_key, xlb_tunnel_val)>>;
    fn put_tunnel(&mut self, k: &xlb_tunnel_key, v: &xlb_tunnel_val) -> xlb_bpf::Result<()>;
    fn delete_tunnel(&mut self, k: &xlb_tunnel_key) -> xlb_bpf::Result<bool>;

    fn local_addrs(&self) -> xlb_bpf::Result<Vec<IpAddr>>;
    fn put_local_addr(&mut self, a: IpAddr) -> xlb_bpf::Result<()>;
    fn delete_local_addr(&mut self, a: IpAddr) -> xlb_bpf::Result<bool>;

    fn remote_addrs(&self) -> xlb_bpf::Result<Vec<IpAddr>>;
    fn put_remote_addr(&mut self, a: IpAddr) -> xlb_bpf::Result<()>;
    fn delete_remote_addr(&mut self, a: IpAddr) -> xlb_bpf::Result<bool>;

    // IPv6 (docs/ipv6.md): `services6`, `backends6` (the ids of `backends`),
    // `src_ranges6`, `tunnel6`; the address sets above hold both families.
    fn frontend6_capacity(&self) -> u32;
    fn services6(&self) -> xlb_bpf::Result<Vec<(xlb_svc6_key, xlb_svc_val)>>;
    fn put_service6(&mut self, k: &xlb_svc6_key, v: &xlb_svc_val) -> xlb_bpf::Result<()>;
    fn delete_service6(&mut self, k: &xlb_svc6_key) -> xlb_bpf::Result<bool>;
    /// Every `backends6` slot (index = id), active or not; empty without the map.
    fn backend6_slots(&self) -> xlb_bpf::Result<Vec<xlb_backend6>>;
    fn put_backend6(&mut self, id: u32, v: &xlb_backend6) -> xlb_bpf::Result<()>;
    fn src_ranges6(&self) -> xlb_bpf::Result<Vec<xlb_src_range6_key>>;
    fn put_src_range6(&mut self, k: &xlb_src_range6_key) -> xlb_bpf::Result<()>;
    fn delete_src_range6(&mut self, k: &xlb_src_range6_key) -> xlb_bpf::Result<bool>;
    fn tunnels6(&self) -> xlb_bpf::Result<Vec<(xlb_tunnel6_key, xlb_tunnel6_val)>>;
    fn put_tunnel6(&mut self, k: &xlb_tunnel6_key, v: &xlb_tunnel6_val) -> xlb_bpf::Result<()>;
    fn delete_tunnel6(&mut self, k: &xlb_tunnel6_key) -> xlb_bpf::Result<bool>;

    // Stateless flows (docs/ctl.md): `svc_stable`, absent in the pins
    // of an older xlb (then no stable tables are kept).
    fn has_svc_stable(&self) -> bool;
    /// Every entry not all zero, by svc_id.
    fn svc_stables(&self) -> xlb_bpf::Result<Vec<(u32, xlb_svc_stable)>>;
    fn put_svc_stable(&mut self, svc_id: u32, v: &xlb_svc_stable) -> xlb_bpf::Result<()>;
}

impl MapOps for Maps {
    fn frontend_capacity(&self) -> u32 {
        self.services.max_entries()
    }
    fn backend_capacity(&self) -> u32 {
        self.backends.max_entries()
    }
    fn maglev_capacity(&self) -> u32 {
        self.maglev.max_entries()
    }
    fn services(&self) -> xlb_bpf::Result<Vec<(xlb_svc_key, xlb_svc_val)>> {
        Maps::services(self)
    }
    fn put_service(&mut self, k: &xlb_svc_key, v: &xlb_svc_val) -> xlb_bpf::Result<()> {
        Maps::put_service(self, k, v)
    }
    fn delete_service(&mut self, k: &xlb_svc_key) -> xlb_bpf::Result<bool> {
        Maps::delete_service(self, k)
    }
    fn backend_slots(&self) -> xlb_bpf::Result<Vec<xlb_backend>> {
        Maps::backend_slots(self)
    }
    fn put_backend(&mut self, id: u32, v: &xlb_backend) -> xlb_bpf::Result<()> {
        Maps::put_backend(self, id, v)
    }
    fn write_maglev(&mut self, off: u32, table: &[u32]) -> xlb_bpf::Result<()> {
        Maps::write_maglev(self, off, table)
    }
    fn read_maglev(&self, off: u32, len: u32) -> xlb_bpf::Result<Vec<u32>> {
        Maps::read_maglev(self, off, len)
    }
    fn src_ranges(&self) -> xlb_bpf::Result<Vec<xlb_src_range_key>> {
        Maps::src_ranges(self)
    }
    fn put_src_range(&mut self, k: &xlb_src_range_key) -> xlb_bpf::Result<()> {
        Maps::put_src_range(self, k)
    }
    fn delete_src_range(&mut self, k: &xlb_src_range_key) -> xlb_bpf::Result<bool> {
        Maps::delete_src_range(self, k)
    }
    fn tunnels(&self) -> xlb_bpf::Result<Vec<(xlb_tunnel_key, xlb_tunnel_val)>> {
        Maps::tunnels(self)
    }
    fn put_tunnel(&mut self, k: &xlb_tunnel_key, v: &xlb_tunnel_val) -> xlb_bpf::Result<()> {
        Maps::put_tunnel(self, k, v)
    }
    fn delete_tunnel(&mut self, k: &xlb_tunnel_key) -> xlb_bpf::Result<bool> {
        Maps::delete_tunnel(self, k)
    }
    fn local_addrs(&self) -> xlb_bpf::Result<Vec<IpAddr>> {
        let v4 = Maps::local_addrs(self)?.into_iter().map(IpAddr::V4);
        Ok(v4
            .chain(Maps::local_addrs6(self)?.into_iter().map(IpAddr::V6))
            .collect())
    }
    fn put_local_addr(&mut self, a: IpAddr) -> xlb_bpf::Result<()> {
        match a {
            IpAddr::V4(a) => Maps::put_local_addr(self, a),
            IpAddr::V6(a) => Maps::put_local_addr6(self, a),
        }
    }
    fn delete_local_addr(&mut self, a: IpAddr) -> xlb_bpf::Result<bool> {
        match a {
            IpAddr::V4(a) => Maps::delete_local_addr(self, a),
            IpAddr::V6(a) => Maps::delete_local_addr6(self, a),
        }
    }
    fn remote_addrs(&self) -> xlb_bpf::Result<Vec<IpAddr>> {
        let v4 = Maps::remote_addrs(self)?.into_iter().map(IpAddr::V4);
        Ok(v4
            .chain(Maps::remote_addrs6(self)?.into_iter().map(IpAddr::V6))
            .collect())
    }
    fn put_remote_addr(&mut self, a: IpAddr) -> xlb_bpf::Result<()> {
        match a {
            IpAddr::V4(a) => Maps::put_remote_addr(self, a),
            IpAddr::V6(a) => Maps::put_remote_addr6(self, a),
        }
    }
    fn delete_remote_addr(&mut self, a: IpAddr) -> xlb_bpf::Result<bool> {
        match a {
            IpAddr::V4(a) => Maps::delete_remote_addr(self, a),
            IpAddr::V6(a) => Maps::delete_remote_addr6(self, a),
        }
    }
    fn frontend6_capacity(&self) -> u32 {
        Maps::services6_capacity(self)
    }
    fn services6(&self) -> xlb_bpf::Result<Vec<(xlb_svc6_key, xlb_svc_val)>> {
        Maps::services6(self)
    }
    fn put_service6(&mut self, k: &xlb_svc6_key, v: &xlb_svc_val) -> xlb_bpf::Result<()> {
        Maps::put_service6(self, k, v)
    }
    fn delete_service6(&mut self, k: &xlb_svc6_key) -> xlb_bpf::Result<bool> {
        Maps::delete_service6(self, k)
    }
    fn backend6_slots(&self) -> xlb_bpf::Result<Vec<xlb_backend6>> {
        Maps::backend6_slots(self)
    }
    fn put_backend6(&mut self, id: u32, v: &xlb_backend6) -> xlb_bpf::Result<()> {
        Maps::put_backend6(self, id, v)
    }
    fn src_ranges6(&self) -> xlb_bpf::Result<Vec<xlb_src_range6_key>> {
        Maps::src_ranges6(self)
    }
    fn put_src_range6(&mut self, k: &xlb_src_range6_key) -> xlb_bpf::Result<()> {
        Maps::put_src_range6(self, k)
    }
    fn delete_src_range6(&mut self, k: &xlb_src_range6_key) -> xlb_bpf::Result<bool> {
        Maps::delete_src_range6(self, k)
    }
    fn tunnels6(&self) -> xlb_bpf::Result<Vec<(xlb_tunnel6_key, xlb_tunnel6_val)>> {
        Maps::tunnels6(self)
    }
    fn put_tunnel6(&mut self, k: &xlb_tunnel6_key, v: &xlb_tunnel6_val) -> xlb_bpf::Result<()> {
        Maps::put_tunnel6(self, k, v)
    }
    fn delete_tunnel6(&mut self, k: &xlb_tunnel6_key) -> xlb_bpf::Result<bool> {
        Maps::delete_tunnel6(self, k)
    }
    fn has_svc_stable(&self) -> bool {
        Maps::has_svc_stable(self)
    }
    fn svc_stables(&self) -> xlb_bpf::Result<Vec<(u32, xlb_svc_stable)>> {
        Maps::svc_stables(self)
    }
    fn put_svc_stable(&mut self, svc_id: u32, v: &xlb_svc_stable) -> xlb_bpf::Result<()> {
        Maps::put_svc_stable(self, svc_id, v)
    }
}

/// A syncer may also borrow the maps (`Syncer<&mut Maps>`).
impl<T: MapOps> MapOps for &mut T {
    fn frontend_capacity(&self) -> u32 {
        (**self).frontend_capacity()
    }
    fn backend_capacity(&self) -> u32 {
        (**self).backend_capacity()
    }
    fn maglev_capacity(&self) -> u32 {
        (**self).maglev_capacity()
    }
    fn services(&self) -> xlb_bpf::Result<Vec<(xlb_svc_key, xlb_svc_val)>> {
        (**self).services()
    }
    fn put_service(&mut self, k: &xlb_svc_key, v: &xlb_svc_val) -> xlb_bpf::Result<()> {
        (**self).put_service(k, v)
    }
    fn delete_service(&mut self, k: &xlb_svc_key) -> xlb_bpf::Result<bool> {
        (**self).delete_service(k)
    }
    fn backend_slots(&self) -> xlb_bpf::Result<Vec<xlb_backend>> {
        (**self).backend_slots()
    }
    fn put_backend(&mut self, id: u32, v: &xlb_backend) -> xlb_bpf::Result<()> {
        (**self).put_backend(id, v)
    }
    fn write_maglev(&mut self, off: u32, table: &[u32]) -> xlb_bpf::Result<()> {
        (**self).write_maglev(off, table)
    }
    fn read_maglev(&self, off: u32, len: u32) -> xlb_bpf::Result<Vec<u32>> {
        (**self).read_maglev(off, len)
    }
    fn src_ranges(&self) -> xlb_bpf::Result<Vec<xlb_src_range_key>> {
        (**self).src_ranges()
    }
    fn put_src_range(&mut self, k: &xlb_src_range_key) -> xlb_bpf::Result<()> {
        (**self).put_src_range(k)
    }
    fn delete_src_range(&mut self, k: &xlb_src_range_key) -> xlb_bpf::Result<bool> {
        (**self).delete_src_range(k)
    }
    fn tunnels(&self) -> xlb_bpf::Result<Vec<(xlb_tunnel_key, xlb_tunnel_val)>> {
        (**self).tunnels()
    }
    fn put_tunnel(&mut self, k: &xlb_tunnel_key, v: &xlb_tunnel_val) -> xlb_bpf::Result<()> {
        (**self).put_tunnel(k, v)
    }
    fn delete_tunnel(&mut self, k: &xlb_tunnel_key) -> xlb_bpf::Result<bool> {
        (**self).delete_tunnel(k)
    }
    fn local_addrs(&self) -> xlb_bpf::Result<Vec<IpAddr>> {
        (**self).local_addrs()
    }
    fn put_local_addr(&mut self, a: IpAddr) -> xlb_bpf::Result<()> {
        (**self).put_local_addr(a)
    }
    fn delete_local_addr(&mut self, a: IpAddr) -> xlb_bpf::Result<bool> {
        (**self).delete_local_addr(a)
    }
    fn remote_addrs(&self) -> xlb_bpf::Result<Vec<IpAddr>> {
        (**self).remote_addrs()
    }
    fn put_remote_addr(&mut self, a: IpAddr) -> xlb_bpf::Result<()> {
        (**self).put_remote_addr(a)
    }
    fn delete_remote_addr(&mut self, a: IpAddr) -> xlb_bpf::Result<bool> {
        (**self).delete_remote_addr(a)
    }
    fn frontend6_capacity(&self) -> u32 {
        (**self).frontend6_capacity()
    }
    fn services6(&self) -> xlb_bpf::Result<Vec<(xlb_svc6_key, xlb_svc_val)>> {
        (**self).services6()
    }
    fn put_service6(&mut self, k: &xlb_svc6_key, v: &xlb_svc_val) -> xlb_bpf::Result<()> {
        (**self).put_service6(k, v)
    }
    fn delete_service6(&mut self, k: &xlb_svc6_key) -> xlb_bpf::Result<bool> {
        (**self).delete_service6(k)
    }
    fn backend6_slots(&self) -> xlb_bpf::Result<Vec<xlb_backend6>> {
        (**self).backend6_slots()
    }
    fn put_backend6(&mut self, id: u32, v: &xlb_backend6) -> xlb_bpf::Result<()> {
        (**self).put_backend6(id, v)
    }
    fn src_ranges6(&self) -> xlb_bpf::Result<Vec<xlb_src_range6_key>> {
        (**self).src_ranges6()
    }
    fn put_src_range6(&mut self, k: &xlb_src_range6_key) -> xlb_bpf::Result<()> {
        (**self).put_src_range6(k)
    }
    fn delete_src_range6(&mut self, k: &xlb_src_range6_key) -> xlb_bpf::Result<bool> {
        (**self).delete_src_range6(k)
    }
    fn tunnels6(&self) -> xlb_bpf::Result<Vec<(xlb_tunnel6_key, xlb_tunnel6_val)>> {
        (**self).tunnels6()
    }
    fn put_tunnel6(&mut self, k: &xlb_tunnel6_key, v: &xlb_tunnel6_val) -> xlb_bpf::Result<()> {
        (**self).put_tunnel6(k, v)
    }
    fn delete_tunnel6(&mut self, k: &xlb_tunnel6_key) -> xlb_bpf::Result<bool> {
        (**self).delete_tunnel6(k)
    }
    fn has_svc_stable(&self) -> bool {
        (**self).has_svc_stable()
    }
    fn svc_stables(&self) -> xlb_bpf::Result<Vec<(u32, xlb_svc_stable)>> {
        (**self).svc_stables()
    }
    fn put_svc_stable(&mut self, svc_id: u32, v: &xlb_svc_stable) -> xlb_bpf::Result<()> {
        (**self).put_svc_stable(svc_id, v)
    }
}
