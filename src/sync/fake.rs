//! An in-memory [`MapOps`] with the real maps' capacities and failure modes,
//! which records every write (for ordering tests) and can check the
//! invariants the data plane relies on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use xlb_bpf::types::{
    xlb_backend, xlb_backend6, xlb_src_range6_key, xlb_src_range_key, xlb_svc6_key, xlb_svc_key,
    xlb_svc_stable, xlb_svc_val, xlb_tunnel6_key, xlb_tunnel6_val, xlb_tunnel_key, xlb_tunnel_val,
};

use super::MapOps;

/// One recorded write.
#[derive(Clone, Debug)]
pub enum Op {
    PutService(xlb_svc_key, xlb_svc_val),
    DeleteService(xlb_svc_key),
    PutBackend(u32, xlb_backend),
    WriteMaglev { off: u32, len: u32 },
    PutSrcRange(xlb_src_range_key),
    DeleteSrcRange(xlb_src_range_key),
    PutTunnel(xlb_tunnel_key, xlb_tunnel_val),
    DeleteTunnel(xlb_tunnel_key),
    PutLocalAddr(IpAddr),
    DeleteLocalAddr(IpAddr),
    PutRemoteAddr(IpAddr),
    DeleteRemoteAddr(IpAddr),
    PutService6(xlb_svc6_key, xlb_svc_val),
    DeleteService6(xlb_svc6_key),
    PutBackend6(u32, xlb_backend6),
    PutSrcRange6(xlb_src_range6_key),
    DeleteSrcRange6(xlb_src_range6_key),
    PutTunnel6(xlb_tunnel6_key, xlb_tunnel6_val),
    DeleteTunnel6(xlb_tunnel6_key),
    PutSvcStable(u32, xlb_svc_stable),
}

/// A Plain struct's bytes as a map key.
fn kb<T: plain::Plain>(k: &T) -> Vec<u8> {
    // SAFETY: Plain struct.
    unsafe { plain::as_bytes(k) }.to_vec()
}

fn k8(k: &xlb_svc_key) -> [u8; 8] {
    // SAFETY: Plain struct.
    unsafe { plain::as_bytes(k) }.try_into().unwrap()
}

fn k12(k: &xlb_src_range_key) -> [u8; 12] {
    // SAFETY: Plain struct.
    unsafe { plain::as_bytes(k) }.try_into().unwrap()
}

fn kt(k: &xlb_tunnel_key) -> [u8; 8] {
    // SAFETY: Plain struct.
    unsafe { plain::as_bytes(k) }.try_into().unwrap()
}

/// In-memory maps.
#[derive(Clone, Debug)]
pub struct FakeMaps {
    pub services: HashMap<[u8; 8], (xlb_svc_key, xlb_svc_val)>,
    pub backends: Vec<xlb_backend>,
    pub maglev: Vec<u32>,
    pub src_ranges: BTreeMap<[u8; 12], xlb_src_range_key>,
    pub tunnels: BTreeMap<[u8; 8], (xlb_tunnel_key, xlb_tunnel_val)>,
    pub local_addrs: BTreeSet<IpAddr>,
    pub remote_addrs: BTreeSet<IpAddr>,
    pub frontend_capacity: u32,
    /// The IPv6 maps: `services6` (by key bytes), `backends6` (as long as
    /// `backends`: one id space), `src_ranges6`, `tunnel6`.
    pub services6: HashMap<Vec<u8>, (xlb_svc6_key, xlb_svc_val)>,
    pub backends6: Vec<xlb_backend6>,
    pub src_ranges6: BTreeMap<Vec<u8>, xlb_src_range6_key>,
    pub tunnels6: BTreeMap<Vec<u8>, (xlb_tunnel6_key, xlb_tunnel6_val)>,
    pub frontend6_capacity: u32,
    /// `svc_stable` (entries not all zero), and whether the map exists (an
    /// older xlb's pins have none).
    pub svc_stable: BTreeMap<u32, xlb_svc_stable>,
    pub has_svc_stable: bool,
    /// Every write, in order.
    pub ops: Vec<Op>,
    /// Record writes in `ops` (off for big benchmarks).
    pub record: bool,
    /// After each write, check that no frontend points at a slot not written
    /// since it was last freed or at a backend that is not active.
    pub check: bool,
    /// Slots written (for `check`).
    written: Vec<bool>,
}

impl FakeMaps {
    pub fn new(frontends: u32, backends: u32, maglev_slots: u32) -> Self {
        Self {
            services: HashMap::new(),
            backends: vec![xlb_backend::default(); backends as usize],
            maglev: vec![0; maglev_slots as usize],
            src_ranges: BTreeMap::new(),
            tunnels: BTreeMap::new(),
            local_addrs: BTreeSet::new(),
            remote_addrs: BTreeSet::new(),
            frontend_capacity: frontends,
            services6: HashMap::new(),
            backends6: vec![xlb_backend6::default(); backends as usize],
            src_ranges6: BTreeMap::new(),
            tunnels6: BTreeMap::new(),
            frontend6_capacity: frontends,
            svc_stable: BTreeMap::new(),
            has_svc_stable: true,
            ops: Vec::new(),
            record: true,
            check: true,
            written: vec![false; maglev_slots as usize],
        }
    }

    /// Small maps for tests: 1024 frontends, 1024 backends, 64 Ki slots.
    pub fn small() -> Self {
        Self::new(1024, 1024, 1 << 16)
    }

    fn rec(&mut self, op: Op) {
        if self.record {
            self.ops.push(op);
        }
    }

    /// Checks the data plane's invariants: every frontend's region is within
    /// the array and every slot of it names an active backend. Returns the
    /// violations.
    pub fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        let v6 = self
            .services6
            .values()
            .map(|(k, v)| (std::net::SocketAddr::new(k.ip().into(), k.port()), v, true));
        let v4 = self
            .services
            .values()
            .map(|(k, v)| (std::net::SocketAddr::new(k.ip().into(), k.port()), v, false));
        for (k, v, is6) in v4.chain(v6) {
            let end = u64::from(v.table_off) + u64::from(v.table_size);
            if end > self.maglev.len() as u64 {
                out.push(format!("{k:?}: region past the array"));
                continue;
            }
            for s in v.table_off..v.table_off + v.table_size {
                let id = self.maglev[s as usize];
                // a table names ids of its frontend's family only
                let ok = if is6 {
                    self.backends6
                        .get(id as usize)
                        .is_some_and(|b| b.is_active())
                } else {
                    self.backends
                        .get(id as usize)
                        .is_some_and(|b| b.is_active())
                };
                if !ok || !self.written[s as usize] {
                    out.push(format!(
                        "{k} svc_id {} slot {s} -> backend {id} not active/written",
                        v.svc_id
                    ));
                    break;
                }
            }
        }
        out
    }

    /// Whether a region `svc_stable` names overlaps `[off, off + len)`.
    fn stable_overlap(&self, off: u32, len: u32) -> Option<u32> {
        let (s, e) = (u64::from(off), u64::from(off) + u64::from(len));
        self.svc_stable.iter().find_map(|(id, v)| {
            let (vs, ve) = (
                u64::from(v.table_off),
                u64::from(v.table_off) + u64::from(v.table_size),
            );
            (v.table_size > 0 && vs < e && s < ve).then_some(*id)
        })
    }

    /// Whether a region `svc_stable` names holds backend id `id`.
    fn stable_names(&self, id: u32) -> bool {
        self.svc_stable.values().any(|v| {
            let end = (v.table_off as usize + v.table_size as usize).min(self.maglev.len());
            self.maglev[(v.table_off as usize).min(end)..end].contains(&id)
        })
    }

    /// A backend id given to another endpoint (active at a new generation)
    /// while a stable table names it: its stateless flows would go to an
    /// unrelated endpoint.
    fn check_reuse(&self, id: u32, was_gen: u32, active: bool, generation: u32) {
        if self.check && active && generation != was_gen && was_gen != 0 {
            assert!(
                !self.stable_names(id),
                "backend id {id} reused while a svc_stable table names it"
            );
        }
    }

    fn assert_ok(&self, after: &str) {
        if self.check {
            let v = self.violations();
            assert!(v.is_empty(), "after {after}: {v:?}");
        }
    }

    /// Forgets which slots were written (call when a region is freed, so a
    /// later frontend pointing at it without rewriting it is caught).
    pub fn mark_unwritten(&mut self, off: u32, len: u32) {
        for s in off..off + len {
            if let Some(w) = self.written.get_mut(s as usize) {
                *w = false;
            }
        }
    }
}

fn full(map: &'static str, max: u32) -> xlb_bpf::Error {
    xlb_bpf::Error::Full { map, max }
}

impl MapOps for FakeMaps {
    fn frontend_capacity(&self) -> u32 {
        self.frontend_capacity
    }
    fn backend_capacity(&self) -> u32 {
        self.backends.len() as u32
    }
    fn maglev_capacity(&self) -> u32 {
        self.maglev.len() as u32
    }
    fn services(&self) -> xlb_bpf::Result<Vec<(xlb_svc_key, xlb_svc_val)>> {
        Ok(self.services.values().copied().collect())
    }
    fn put_service(&mut self, k: &xlb_svc_key, v: &xlb_svc_val) -> xlb_bpf::Result<()> {
        if !self.services.contains_key(&k8(k))
            && self.services.len() >= self.frontend_capacity as usize
        {
            return Err(full("services", self.frontend_capacity));
        }
        self.services.insert(k8(k), (*k, *v));
        self.rec(Op::PutService(*k, *v));
        self.assert_ok("put_service");
        Ok(())
    }
    fn delete_service(&mut self, k: &xlb_svc_key) -> xlb_bpf::Result<bool> {
        let had = self.services.remove(&k8(k)).is_some();
        self.rec(Op::DeleteService(*k));
        Ok(had)
    }
    fn backend_slots(&self) -> xlb_bpf::Result<Vec<xlb_backend>> {
        Ok(self.backends.clone())
    }
    fn put_backend(&mut self, id: u32, v: &xlb_backend) -> xlb_bpf::Result<()> {
        let max = self.backends.len() as u32;
        let slot = self
            .backends
            .get_mut(id as usize)
            .ok_or(xlb_bpf::Error::OutOfRange {
                map: "backends",
                index: id.into(),
                max,
            })?;
        let was = slot.generation;
        *slot = *v;
        self.check_reuse(id, was, v.is_active(), v.generation);
        self.rec(Op::PutBackend(id, *v));
        self.assert_ok("put_backend");
        Ok(())
    }
    fn write_maglev(&mut self, off: u32, table: &[u32]) -> xlb_bpf::Result<()> {
        let end = off as usize + table.len();
        if end > self.maglev.len() {
            return Err(xlb_bpf::Error::OutOfRange {
                map: "maglev",
                index: end as u64 - 1,
                max: self.maglev.len() as u32,
            });
        }
        if self.check {
            if let Some(id) = self.stable_overlap(off, table.len() as u32) {
                panic!(
                    "maglev write at {off}+{} over the stable table of svc_id {id}",
                    table.len()
                );
            }
        }
        self.maglev[off as usize..end].copy_from_slice(table);
        self.written[off as usize..end]
            .iter_mut()
            .for_each(|w| *w = true);
        self.rec(Op::WriteMaglev {
            off,
            len: table.len() as u32,
        });
        self.assert_ok("write_maglev");
        Ok(())
    }
    fn read_maglev(&self, off: u32, len: u32) -> xlb_bpf::Result<Vec<u32>> {
        let end = off as usize + len as usize;
        self.maglev
            .get(off as usize..end)
            .map(|s| s.to_vec())
            .ok_or_else(|| xlb_bpf::Error::OutOfRange {
                map: "maglev",
                index: end as u64 - 1,
                max: self.maglev.len() as u32,
            })
    }
    fn src_ranges(&self) -> xlb_bpf::Result<Vec<xlb_src_range_key>> {
        Ok(self.src_ranges.values().copied().collect())
    }
    fn put_src_range(&mut self, k: &xlb_src_range_key) -> xlb_bpf::Result<()> {
        self.src_ranges.insert(k12(k), *k);
        self.rec(Op::PutSrcRange(*k));
        Ok(())
    }
    fn delete_src_range(&mut self, k: &xlb_src_range_key) -> xlb_bpf::Result<bool> {
        let had = self.src_ranges.remove(&k12(k)).is_some();
        self.rec(Op::DeleteSrcRange(*k));
        Ok(had)
    }
    fn tunnels(&self) -> xlb_bpf::Result<Vec<(xlb_tunnel_key, xlb_tunnel_val)>> {
        Ok(self.tunnels.values().copied().collect())
    }
    fn put_tunnel(&mut self, k: &xlb_tunnel_key, v: &xlb_tunnel_val) -> xlb_bpf::Result<()> {
        self.tunnels.insert(kt(k), (*k, *v));
        self.rec(Op::PutTunnel(*k, *v));
        Ok(())
    }
    fn delete_tunnel(&mut self, k: &xlb_tunnel_key) -> xlb_bpf::Result<bool> {
        let had = self.tunnels.remove(&kt(k)).is_some();
        self.rec(Op::DeleteTunnel(*k));
        Ok(had)
    }
    fn local_addrs(&self) -> xlb_bpf::Result<Vec<IpAddr>> {
        Ok(self.local_addrs.iter().copied().collect())
    }
    fn put_local_addr(&mut self, a: IpAddr) -> xlb_bpf::Result<()> {
        self.local_addrs.insert(a);
        self.rec(Op::PutLocalAddr(a));
        Ok(())
    }
    fn delete_local_addr(&mut self, a: IpAddr) -> xlb_bpf::Result<bool> {
        let had = self.local_addrs.remove(&a);
        self.rec(Op::DeleteLocalAddr(a));
        Ok(had)
    }
    fn remote_addrs(&self) -> xlb_bpf::Result<Vec<IpAddr>> {
        Ok(self.remote_addrs.iter().copied().collect())
    }
    fn put_remote_addr(&mut self, a: IpAddr) -> xlb_bpf::Result<()> {
        self.remote_addrs.insert(a);
        self.rec(Op::PutRemoteAddr(a));
        Ok(())
    }
    fn delete_remote_addr(&mut self, a: IpAddr) -> xlb_bpf::Result<bool> {
        let had = self.remote_addrs.remove(&a);
        self.rec(Op::DeleteRemoteAddr(a));
        Ok(had)
    }
    fn frontend6_capacity(&self) -> u32 {
        self.frontend6_capacity
    }
    fn services6(&self) -> xlb_bpf::Result<Vec<(xlb_svc6_key, xlb_svc_val)>> {
        Ok(self.services6.values().copied().collect())
    }
    fn put_service6(&mut self, k: &xlb_svc6_key, v: &xlb_svc_val) -> xlb_bpf::Result<()> {
        if !self.services6.contains_key(&kb(k))
            && self.services6.len() >= self.frontend6_capacity as usize
        {
            return Err(full("services6", self.frontend6_capacity));
        }
        self.services6.insert(kb(k), (*k, *v));
        self.rec(Op::PutService6(*k, *v));
        self.assert_ok("put_service6");
        Ok(())
    }
    fn delete_service6(&mut self, k: &xlb_svc6_key) -> xlb_bpf::Result<bool> {
        let had = self.services6.remove(&kb(k)).is_some();
        self.rec(Op::DeleteService6(*k));
        Ok(had)
    }
    fn backend6_slots(&self) -> xlb_bpf::Result<Vec<xlb_backend6>> {
        Ok(self.backends6.clone())
    }
    fn put_backend6(&mut self, id: u32, v: &xlb_backend6) -> xlb_bpf::Result<()> {
        let max = self.backends6.len() as u32;
        let slot = self
            .backends6
            .get_mut(id as usize)
            .ok_or(xlb_bpf::Error::OutOfRange {
                map: "backends6",
                index: id.into(),
                max,
            })?;
        *slot = *v;
        self.rec(Op::PutBackend6(id, *v));
        self.assert_ok("put_backend6");
        Ok(())
    }
    fn src_ranges6(&self) -> xlb_bpf::Result<Vec<xlb_src_range6_key>> {
        Ok(self.src_ranges6.values().copied().collect())
    }
    fn put_src_range6(&mut self, k: &xlb_src_range6_key) -> xlb_bpf::Result<()> {
        self.src_ranges6.insert(kb(k), *k);
        self.rec(Op::PutSrcRange6(*k));
        Ok(())
    }
    fn delete_src_range6(&mut self, k: &xlb_src_range6_key) -> xlb_bpf::Result<bool> {
        let had = self.src_ranges6.remove(&kb(k)).is_some();
        self.rec(Op::DeleteSrcRange6(*k));
        Ok(had)
    }
    fn tunnels6(&self) -> xlb_bpf::Result<Vec<(xlb_tunnel6_key, xlb_tunnel6_val)>> {
        Ok(self.tunnels6.values().copied().collect())
    }
    fn put_tunnel6(&mut self, k: &xlb_tunnel6_key, v: &xlb_tunnel6_val) -> xlb_bpf::Result<()> {
        self.tunnels6.insert(kb(k), (*k, *v));
        self.rec(Op::PutTunnel6(*k, *v));
        Ok(())
    }
    fn delete_tunnel6(&mut self, k: &xlb_tunnel6_key) -> xlb_bpf::Result<bool> {
        let had = self.tunnels6.remove(&kb(k)).is_some();
        self.rec(Op::DeleteTunnel6(*k));
        Ok(had)
    }
    fn has_svc_stable(&self) -> bool {
        self.has_svc_stable
    }
    fn svc_stables(&self) -> xlb_bpf::Result<Vec<(u32, xlb_svc_stable)>> {
        Ok(self.svc_stable.iter().map(|(k, v)| (*k, *v)).collect())
    }
    fn put_svc_stable(&mut self, svc_id: u32, v: &xlb_svc_stable) -> xlb_bpf::Result<()> {
        if !self.has_svc_stable {
            return Err(xlb_bpf::Error::MissingMap {
                name: "svc_stable",
                dir: Default::default(),
                feature: "stateless flows",
            });
        }
        if v.table_size == 0 && v.table_off == 0 && v.window_end == 0 {
            self.svc_stable.remove(&svc_id);
        } else {
            self.svc_stable.insert(svc_id, *v);
        }
        self.rec(Op::PutSvcStable(svc_id, *v));
        Ok(())
    }
}
