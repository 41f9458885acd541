//! Frontend ownership: which Service has a frontend that several claim, and
//! externalIPs / LoadBalancer ingress IPs kept off other Services' ClusterIPs.
//!
//! One rule, the API server's order: the Service with the older
//! creationTimestamp owns a contested frontend, then the smaller
//! `namespace/name` (objects without a timestamp, e.g. manifest files, come
//! after those with one). Whatever order the events arrive in, the owner is
//! the same, and when it goes (or stops claiming) the next claimant gets the
//! frontend in the same recompute. An externalIP or LoadBalancer ingress IP
//! equal to another Service's ClusterIP is refused whatever the order: a
//! ClusterIP allocated to one Service is never taken by another one.
//!
//! [`Claims`] keeps every Service's computed state before ownership (its
//! "raw" state) and indexes its claims; [`Claims::set`] says which Services'
//! final states a change can touch and [`Claims::resolve`] derives one.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use xlb_bpf::Kind;

use super::{FrontendConflict, FrontendKey, ServiceDesired};

/// Order of claimants: (creationTimestamp in seconds, `i64::MAX` without
/// one; `namespace/name`). The smallest owns.
pub(crate) type Rank = (i64, String);

/// The rank of a Service object whose key is `key`.
pub(crate) fn rank_of(svc: &Service, key: &str) -> Rank {
    let t = svc
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or(i64::MAX);
    (t, key.to_string())
}

/// LoadBalancer ingress and ExternalIP frontends: the ones that may not
/// take another Service's ClusterIP.
fn is_external_addr(kind: Kind) -> bool {
    matches!(kind, Kind::LoadBalancer | Kind::ExternalIp)
}

type Reasons = Vec<(String, String)>;

#[derive(Debug, Default)]
pub(crate) struct Claims {
    /// Service key -> its rank and state before ownership (the very `Arc`
    /// the desired state holds when the Service owns all it claims).
    raw: HashMap<String, (Rank, Arc<ServiceDesired>)>,
    /// Frontend (never an internal entry: those follow their frontend) ->
    /// claimants by rank, each with whether its claim is an external
    /// address (LoadBalancer / ExternalIP).
    by_key: HashMap<FrontendKey, BTreeMap<Rank, bool>>,
    /// ClusterIP -> Services with it.
    cluster_ips: HashMap<IpAddr, BTreeSet<String>>,
    /// External address -> Services with a frontend on it.
    ext_addrs: HashMap<IpAddr, BTreeSet<String>>,
}

impl Claims {
    /// Sets (or, with `None`, removes) a Service's raw state. Returns the
    /// Services whose final state may have changed (the Service itself
    /// included); [`Claims::resolve`] each of them.
    pub fn set(&mut self, key: &str, new: Option<(Rank, Arc<ServiceDesired>)>) -> BTreeSet<String> {
        let mut affected = BTreeSet::from([key.to_string()]);
        if let Some((rank, d)) = self.raw.remove(key) {
            self.index(key, &rank, &d, false, &mut affected);
        }
        if let Some((rank, d)) = new {
            self.index(key, &rank, &d, true, &mut affected);
            self.raw.insert(key.to_string(), (rank, d));
        }
        affected
    }

    fn index(
        &mut self,
        key: &str,
        rank: &Rank,
        d: &ServiceDesired,
        add: bool,
        affected: &mut BTreeSet<String>,
    ) {
        for f in d.ports.iter().flat_map(|p| p.frontends.iter()) {
            if f.key.internal {
                continue;
            }
            let ext = is_external_addr(f.kind);
            let claimants = self.by_key.entry(f.key).or_default();
            affected.extend(claimants.keys().map(|r| r.1.clone()));
            if add {
                claimants.insert(rank.clone(), ext);
            } else {
                claimants.remove(rank);
                if claimants.is_empty() {
                    self.by_key.remove(&f.key);
                }
            }
            let Some(a) = f.key.addr else { continue };
            let index = if f.kind == Kind::ClusterIp {
                // Every claim on this address may change validity.
                affected.extend(self.ext_addrs.get(&a).into_iter().flatten().cloned());
                affected.extend(self.cluster_ips.get(&a).into_iter().flatten().cloned());
                &mut self.cluster_ips
            } else if ext {
                &mut self.ext_addrs
            } else {
                continue;
            };
            if add {
                index.entry(a).or_default().insert(key.to_string());
            } else if let Some(set) = index.get_mut(&a) {
                set.remove(key);
                if set.is_empty() {
                    index.remove(&a);
                }
            }
        }
    }

    /// The other Service whose ClusterIP `a` is, if any.
    fn cluster_ip_of_other(&self, a: IpAddr, key: &str) -> Option<&String> {
        self.cluster_ips.get(&a)?.iter().find(|n| *n != key)
    }

    /// The Service that owns frontend `k`: the first claimant whose claim
    /// stands (an external address claim on another Service's ClusterIP
    /// does not).
    fn owner(&self, k: &FrontendKey) -> Option<&String> {
        self.by_key.get(k)?.iter().find_map(|(r, ext)| {
            let refused = *ext
                && k.addr
                    .is_some_and(|a| self.cluster_ip_of_other(a, &r.1).is_some());
            (!refused).then_some(&r.1)
        })
    }

    /// A Service's final state: its raw state (the same `Arc` when it owns
    /// everything it claims) without the frontends it does not own (and
    /// without ports left with none). Reasons and conflicts for what it lost
    /// are pushed.
    pub fn resolve(
        &self,
        key: &str,
        reasons: &mut Reasons,
        conflicts: &mut Vec<FrontendConflict>,
    ) -> Option<Arc<ServiceDesired>> {
        let (_, raw) = self.raw.get(key)?;
        let all_owned = raw
            .ports
            .iter()
            .flat_map(|p| p.frontends.iter())
            .filter(|f| !f.key.internal)
            .all(|f| {
                self.by_key.get(&f.key).is_some_and(|c| c.len() == 1)
                    && !(is_external_addr(f.kind)
                        && f.key
                            .addr
                            .is_some_and(|a| self.cluster_ip_of_other(a, key).is_some()))
            });
        if all_owned && !has_duplicate_keys(raw) {
            return Some(raw.clone());
        }
        let mut out = (**raw).clone();
        let mut seen: HashSet<FrontendKey> = HashSet::new();
        for p in &mut out.ports {
            let obj = format!("Service {}", p.name);
            let mut lost: HashSet<FrontendKey> = HashSet::new();
            for f in p.frontends.iter().filter(|f| !f.key.internal) {
                if !seen.insert(f.key) {
                    lost.insert(f.key);
                    reasons.push((
                        obj.clone(),
                        format!(
                            "frontend {} already used by another port of the Service",
                            f.key
                        ),
                    ));
                    continue;
                }
                if let Some(other) = f
                    .key
                    .addr
                    .filter(|_| is_external_addr(f.kind))
                    .and_then(|a| self.cluster_ip_of_other(a, key))
                {
                    lost.insert(f.key);
                    reasons.push((
                        obj.clone(),
                        format!(
                            "{} frontend {} refused: its address is the ClusterIP of Service {other}",
                            f.kind, f.key
                        ),
                    ));
                    conflicts.push(FrontendConflict {
                        frontend: f.key,
                        service: p.name.clone(),
                        owner: other.clone(),
                    });
                    continue;
                }
                match self.owner(&f.key) {
                    Some(o) if o == key => {}
                    owner => {
                        let owner = owner.cloned().unwrap_or_default();
                        lost.insert(f.key);
                        reasons.push((
                            obj.clone(),
                            format!(
                                "frontend {} also claimed by Service {owner}, which has it (older, or first by namespace/name)",
                                f.key
                            ),
                        ));
                        conflicts.push(FrontendConflict {
                            frontend: f.key,
                            service: p.name.clone(),
                            owner,
                        });
                    }
                }
            }
            if lost.is_empty() {
                continue;
            }
            p.frontends.retain(|f| !lost.contains(&f.key.external()));
            let in_table: BTreeSet<SocketAddr> = p
                .frontends
                .iter()
                .flat_map(|f| f.backends.iter().copied())
                .collect();
            for b in &mut p.backends {
                b.draining = !in_table.contains(&b.addr);
            }
        }
        out.ports.retain(|p| !p.frontends.is_empty());
        (!out.ports.is_empty()).then(|| Arc::new(out))
    }
}

/// Whether two ports of a Service claim one frontend (two NodePorts alike:
/// the API server refuses it, a manifest may not).
fn has_duplicate_keys(d: &ServiceDesired) -> bool {
    let mut seen = HashSet::new();
    d.ports
        .iter()
        .flat_map(|p| p.frontends.iter())
        .any(|f| !f.key.internal && !seen.insert(f.key))
}
