//! Tunnel entries, this node's addresses and the other nodes' addresses
//! (both families, each into its family's map).

use super::family::{delete_tunnel, put_tunnel};
use super::{MapOps, SyncReport, Syncer};
use crate::model::Desired;

impl<M: MapOps> Syncer<M> {
    pub(super) fn add_tunnels_and_addrs(&mut self, d: &Desired, rep: &mut SyncReport) {
        if d.tunnels != self.tunnels {
            for (net, t) in &d.tunnels {
                if self.tunnels.get(net) == Some(t) {
                    continue;
                }
                match put_tunnel(&mut self.maps, *net, t) {
                    Ok(()) => {
                        rep.writes += 1;
                        self.tunnels.insert(*net, t.clone());
                    }
                    Err(e) => rep
                        .failed
                        .push((format!("tunnel {}/{}", net.0, net.1), e.to_string())),
                }
            }
        }
        if d.local_addrs != self.local_addrs {
            let new: Vec<_> = d
                .local_addrs
                .difference(&self.local_addrs)
                .copied()
                .collect();
            for a in new {
                match self.maps.put_local_addr(a) {
                    Ok(()) => {
                        rep.writes += 1;
                        self.local_addrs.insert(a);
                    }
                    Err(e) => rep.failed.push((format!("local addr {a}"), e.to_string())),
                }
            }
        }
        if d.remote_addrs != self.remote_addrs {
            let new: Vec<_> = d
                .remote_addrs
                .difference(&self.remote_addrs)
                .copied()
                .collect();
            for a in new {
                match self.maps.put_remote_addr(a) {
                    Ok(()) => {
                        rep.writes += 1;
                        self.remote_addrs.insert(a);
                    }
                    Err(e) => rep.failed.push((format!("remote addr {a}"), e.to_string())),
                }
            }
        }
    }

    pub(super) fn remove_tunnels_and_addrs(&mut self, d: &Desired, rep: &mut SyncReport) {
        if d.tunnels != self.tunnels {
            let gone: Vec<_> = self
                .tunnels
                .keys()
                .filter(|k| !d.tunnels.contains_key(k))
                .copied()
                .collect();
            for net in gone {
                match delete_tunnel(&mut self.maps, net) {
                    Ok(_) => {
                        rep.writes += 1;
                        self.tunnels.remove(&net);
                    }
                    Err(e) => rep
                        .failed
                        .push((format!("tunnel {}/{}", net.0, net.1), e.to_string())),
                }
            }
        }
        if d.local_addrs != self.local_addrs {
            let gone: Vec<_> = self
                .local_addrs
                .difference(&d.local_addrs)
                .copied()
                .collect();
            for a in gone {
                match self.maps.delete_local_addr(a) {
                    Ok(_) => {
                        rep.writes += 1;
                        self.local_addrs.remove(&a);
                    }
                    Err(e) => rep.failed.push((format!("local addr {a}"), e.to_string())),
                }
            }
        }
        if d.remote_addrs != self.remote_addrs {
            let gone: Vec<_> = self
                .remote_addrs
                .difference(&d.remote_addrs)
                .copied()
                .collect();
            for a in gone {
                match self.maps.delete_remote_addr(a) {
                    Ok(_) => {
                        rep.writes += 1;
                        self.remote_addrs.remove(&a);
                    }
                    Err(e) => rep.failed.push((format!("remote addr {a}"), e.to_string())),
                }
            }
        }
    }
}
