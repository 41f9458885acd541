//! Model unit tests: random churn (services, slices and nodes of both
//! families coming, going and changing): the incremental model equals a
//! fresh build, and the maps a syncer keeps from each are the same.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};
use xlb_testkit::XorShift;

use super::tests::{a, cfg, ep, node, nodes, slice, svc, two_eps, web};
use super::*;

/// Random object generator for the churn tests (the test kit's deterministic xorshift).
struct Churn(XorShift);

impl Churn {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.0.chance(percent)
    }
    fn rv(&mut self, v: &mut Value) {
        // Half of the objects carry a resourceVersion (API source), half not (manifests).
        if self.chance(50) {
            v["metadata"]["resourceVersion"] = json!(self.next().to_string());
        }
    }
    fn service(&mut self) -> Service {
        let i = self.below(8);
        let mut v = json!({"metadata": {"name": format!("s{i}"),
                                        "namespace": if self.chance(80) { "default" } else { "other" }},
            "spec": {"clusterIP": format!("10.96.0.{}", 1 + self.below(20)),
                     "ports": [{"name": "http", "port": 80 + self.below(3), "targetPort": "http"}]}});
        if self.chance(30) {
            v["spec"]["ports"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "alt", "port": 8443, "targetPort": 9443, "protocol": "UDP"}));
        }
        if self.chance(10) {
            v["spec"]["ports"][0]["port"] = json!(0); // bad: skipped with a reason
        }
        if self.chance(10) {
            v["spec"]["clusterIP"] = json!("None"); // headless
        }
        if self.chance(20) {
            v["spec"]["type"] = json!("NodePort");
            v["spec"]["ports"][0]["nodePort"] = json!(30000 + self.below(5));
        }
        if self.chance(15) {
            v["spec"]["externalTrafficPolicy"] = json!("Local");
            v["spec"]["type"] = json!("NodePort");
        }
        // Bad input and policy churn: ownership by creationTimestamp (ties
        // by name), external addresses on other Services' ClusterIPs or
        // unroutable, type / policy / affinity / label changes.
        if self.chance(70) {
            v["metadata"]["creationTimestamp"] =
                json!(format!("2026-01-0{}T00:00:00Z", 1 + self.below(3)));
        }
        if self.chance(20) {
            let ip = match self.below(3) {
                0 => "127.0.0.1".to_string(),
                _ => format!("10.96.0.{}", 1 + self.below(20)),
            };
            v["spec"]["externalIPs"] = json!([ip]);
        }
        if self.chance(15) {
            v["spec"]["type"] = json!("LoadBalancer");
            v["spec"]["ports"][0]["nodePort"] = json!(30000 + self.below(5));
            v["status"] = json!({"loadBalancer": {"ingress": [{"ip":
                format!("10.96.0.{}", 1 + self.below(25))}]}});
        }
        if self.chance(5) {
            v["spec"]["ports"][0]["nodePort"] = json!(22); // outside the range
        }
        if self.chance(15) {
            v["spec"]["sessionAffinity"] = json!("ClientIP");
            v["spec"]["sessionAffinityConfig"] =
                json!({"clientIP": {"timeoutSeconds": 1 + self.below(100)}});
        }
        if self.chance(10) {
            v["spec"]["internalTrafficPolicy"] = json!("Local");
        }
        if self.chance(5) {
            v["metadata"]["labels"] = json!({"service.kubernetes.io/service-proxy-name": "x"});
        } else if self.chance(3) {
            v["metadata"]["labels"] = json!({"service.kubernetes.io/headless": ""});
        }
        // Dual stack: both families' clusterIPs (and external addresses),
        // or IPv6 only; now and then a bad IPv6 address.
        match self.below(10) {
            0..=2 => {
                let v4 = v["spec"]["clusterIP"].clone();
                let v6 = json!(format!("fd00:96::{:x}", 1 + self.below(20)));
                v["spec"]["clusterIPs"] = json!([v4, v6]);
                v["spec"]["ipFamilies"] = json!(["IPv4", "IPv6"]);
                v["spec"]["ipFamilyPolicy"] = json!("PreferDualStack");
            }
            3 => {
                let v6 = format!("fd00:96::{:x}", 1 + self.below(20));
                v["spec"]["clusterIP"] = json!(v6);
                v["spec"]["ipFamilies"] = json!(["IPv6"]);
            }
            _ => {}
        }
        if self.chance(10) {
            let ip = match self.below(4) {
                0 => "fe80::1".to_string(),          // link-local: refused
                1 => "::ffff:10.96.0.1".to_string(), // v4-mapped: refused
                _ => format!("fd00:96::{:x}", 1 + self.below(20)),
            };
            v["spec"]["externalIPs"] = json!([ip]);
        }
        if self.chance(10) {
            v["spec"]["type"] = json!("LoadBalancer");
            v["spec"]["loadBalancerSourceRanges"] = json!(match self.below(3) {
                0 => json!(["192.0.2.0/24"]),
                1 => json!(["2001:db8::/32"]),
                _ => json!(["192.0.2.0/24", "2001:db8::/32", "2001:db8::/200"]),
            });
        }
        if self.chance(5) {
            v["metadata"]["name"] = json!(null); // nameless: skipped
        }
        self.rv(&mut v);
        svc(v)
    }
    fn slice(&mut self) -> EndpointSlice {
        let i = self.below(12);
        let v6 = self.chance(35);
        let eps: Vec<Value> = (0..self.below(4))
            .map(|_| {
                let n = 1 + self.below(3);
                let host = 1 + self.below(9);
                // now and then an address of the other family: skipped
                let addr = if v6 != self.chance(5) {
                    format!("fd00:244:{n}::{host}")
                } else {
                    format!("10.244.{n}.{host}")
                };
                let mut e = json!({"addresses": [addr],
                                   "conditions": {"ready": self.chance(80), "serving": true,
                                                  "terminating": self.chance(20)}});
                if self.chance(85) {
                    e["nodeName"] = json!(format!("n{n}"));
                }
                e
            })
            .collect();
        let mut v = json!({"metadata": {"name": format!("sl{i}"),
                                        "namespace": if self.chance(85) { "default" } else { "other" },
                                        "labels": {"kubernetes.io/service-name": format!("s{}", self.below(8))}},
            "addressType": if v6 { "IPv6" } else { "IPv4" },
            "ports": [{"name": if self.chance(80) { "http" } else { "web" }, "port": 8080, "protocol": "TCP"}],
            "endpoints": eps});
        if self.chance(8) {
            v["metadata"]["labels"] = json!({});
        } else if self.chance(3) {
            v["metadata"]["labels"]["service.kubernetes.io/headless"] = json!("");
        }
        if self.chance(4) {
            v["metadata"]["name"] = json!(null);
        }
        self.rv(&mut v);
        slice(v)
    }
    fn node(&mut self) -> Node {
        let n = 1 + self.below(3);
        let mut v = json!({"metadata": {"name": format!("n{n}"),
                                        "annotations": {"xlb.io/vtep-mac": format!("02:00:00:00:00:0{n}")}},
            "spec": {"podCIDR": format!("10.244.{n}.0/24")},
            "status": {"addresses": [{"type": "InternalIP",
                                      "address": format!("198.18.0.{}", 10 + n + 10 * self.below(2))}]}});
        if self.chance(60) {
            // Dual stack: an IPv6 pod CIDR, address and VTEP (some parts
            // missing now and then: no tunnel6 entry, with a reason).
            v["spec"]["podCIDRs"] =
                json!([format!("10.244.{n}.0/24"), format!("fd00:244:{n}::/64")]);
            if self.chance(80) {
                v["status"]["addresses"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "InternalIP", "address": format!("fd00:18::{}", 10 + n)}));
            }
            if self.chance(80) {
                v["metadata"]["annotations"]["flannel.alpha.coreos.com/backend-v6-data"] =
                    json!(format!("{{\"VNI\":1,\"VtepMAC\":\"02:00:00:00:06:0{n}\"}}"));
            }
            if self.chance(30) {
                v["metadata"]["annotations"]["flannel.alpha.coreos.com/public-ipv6"] =
                    json!(format!("2001:db8:18::{}", 10 + n + 10 * self.below(2)));
            }
        }
        if self.chance(15) {
            v["metadata"]["annotations"] = json!({});
        }
        if self.chance(5) {
            v["metadata"]["name"] = json!(null);
        }
        self.rv(&mut v);
        node(v)
    }
}

/// Replaces the object of the same name (or adds it), or removes one.
fn churn_list<T: Clone + super::diff::Object>(
    r: &mut Churn,
    list: &mut Vec<Arc<T>>,
    make: impl FnOnce(&mut Churn) -> T,
) {
    if !list.is_empty() && r.chance(25) {
        let i = r.below(list.len() as u64) as usize;
        list.remove(i);
        return;
    }
    let o = Arc::new(make(r));
    let same = |x: &Arc<T>| {
        x.object_meta().name == o.object_meta().name
            && x.object_meta().namespace == o.object_meta().namespace
    };
    match list.iter().position(same) {
        // Now and then a duplicate name (two manifest files): the last one wins.
        Some(i) if !r.chance(5) => list[i] = o,
        _ => list.push(o),
    }
}

/// Everything a FakeMaps holds, as bytes (the generated map types have no
/// PartialEq): services (both families) and src_ranges sorted, backend
/// slots (both arrays), Maglev slots, tunnels (both), local and remote
/// addresses.
type FakeView = (
    Vec<Vec<u8>>,
    Vec<Vec<u8>>,
    Vec<u32>,
    Vec<Vec<u8>>,
    Vec<Vec<u8>>,
    Vec<std::net::IpAddr>,
    Vec<std::net::IpAddr>,
);

fn fake_view(f: &crate::sync::FakeMaps) -> FakeView {
    fn b<T: plain::Plain>(v: &T) -> Vec<u8> {
        // SAFETY: Plain map types.
        unsafe { plain::as_bytes(v) }.to_vec()
    }
    let mut services: Vec<Vec<u8>> = f
        .services
        .values()
        .map(|(k, v)| [b(k), b(v)].concat())
        .chain(f.services6.values().map(|(k, v)| [b(k), b(v)].concat()))
        .collect();
    services.sort();
    (
        services,
        f.backends
            .iter()
            .map(b)
            .chain(f.backends6.iter().map(b))
            .collect(),
        f.maglev.clone(),
        f.src_ranges
            .values()
            .map(b)
            .chain(f.src_ranges6.values().map(b))
            .collect(),
        f.tunnels
            .values()
            .map(|(k, v)| [b(k), b(v)].concat())
            .chain(f.tunnels6.values().map(|(k, v)| [b(k), b(v)].concat()))
            .collect(),
        f.local_addrs.iter().copied().collect(),
        f.remote_addrs.iter().copied().collect(),
    )
}

#[test]
fn apply_snapshot_equals_build_under_random_churn() {
    // (steps with backends, with skip reasons, with tunnels, with a Node
    // change, conflicts, with an IPv6 frontend with backends, with an IPv6
    // tunnel)
    let mut seen = (0, 0, 0, 0, 0, 0, 0);
    for seed in 1..=12u64 {
        let mut r = Churn(XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1));
        let mut snap = Snapshot::default();
        let mut m = Model::new(cfg());
        // The maps too: one syncer fed the incremental model, one fed build().
        let fake = || {
            let mut f = crate::sync::FakeMaps::small();
            f.record = false;
            crate::sync::Syncer::adopt(f, Default::default()).unwrap()
        };
        let (mut sync_incr, mut sync_full) = (fake(), fake());
        for step in 0..150 {
            // One to a few changes per snapshot (a debounced burst).
            let burst = if r.chance(10) { 12 } else { 2 };
            for _ in 0..1 + r.below(burst) {
                match r.below(10) {
                    0 => churn_list(&mut r, &mut snap.nodes, Churn::node),
                    1..=4 => churn_list(&mut r, &mut snap.services, Churn::service),
                    _ => churn_list(&mut r, &mut snap.slices, |r| r.slice().into()),
                }
            }
            if r.chance(10) {
                // Fresh copies of every object (a manifest reload, a relist):
                // unchanged ones are told by resourceVersion or content.
                snap.services = snap
                    .services
                    .iter()
                    .map(|o| Arc::new((**o).clone()))
                    .collect();
                snap.slices = snap
                    .slices
                    .iter()
                    .map(|o| Arc::new((**o).clone()))
                    .collect();
                snap.nodes = snap.nodes.iter().map(|o| Arc::new((**o).clone())).collect();
            }
            if r.chance(25) {
                // In any order (the model must not depend on it).
                snap.slices.reverse();
                let half = snap.services.len() / 2;
                snap.services.rotate_left(half);
            } else {
                // As both sources publish: sorted by namespace/name.
                crate::sources::sort_snapshot(&mut snap);
            }
            let before = m.desired().clone();
            let delta = m.apply_snapshot(&snap);
            let want = build(&snap, &cfg());
            assert_eq!(m.desired(), &want, "seed {seed} step {step}");
            seen.0 += usize::from(want.backends().len() > 2);
            seen.1 += usize::from(!want.skipped.is_empty());
            seen.2 += usize::from(!want.tunnels.is_empty());
            seen.3 += usize::from(before.tunnels != want.tunnels);
            seen.5 += usize::from(
                want.frontends()
                    .any(|(_, f)| f.key.family == Family::V6 && !f.backends.is_empty()),
            );
            seen.6 += usize::from(want.tunnels.keys().any(|(a, _)| a.is_ipv6()));
            let maps_view = |d: &Desired| {
                (
                    d.services.clone(),
                    d.tunnels.clone(),
                    d.local_addrs.clone(),
                    d.remote_addrs.clone(),
                )
            };
            assert_eq!(
                delta.changed,
                maps_view(&before) != maps_view(&want),
                "seed {seed} step {step}"
            );

            let ri = sync_incr.apply(m.desired()).unwrap();
            let rf = sync_full.apply(&want).unwrap();
            // Random Services claim the same addresses and NodePorts: the
            // model gives each frontend to one, so the maps take every
            // frontend without a conflict.
            assert_eq!(ri.failed, Vec::new(), "seed {seed} step {step}");
            assert_eq!(rf.failed, Vec::new(), "seed {seed} step {step}");
            seen.4 += want.conflicts.len();
            assert_eq!(sync_incr.maps().violations(), Vec::<String>::new());
            assert_eq!(
                fake_view(sync_incr.maps()),
                fake_view(sync_full.maps()),
                "maps differ, seed {seed} step {step}"
            );

            // The same snapshot again: nothing to do, every Arc kept.
            let arcs = m.desired().services.clone();
            let again = m.apply_snapshot(&snap);
            assert_eq!(again, SnapshotDelta::default(), "seed {seed} step {step}");
            for (k, a) in &arcs {
                assert!(Arc::ptr_eq(a, &m.desired().services[k]), "{k} re-made");
            }
        }
    }
    // The generator reaches the interesting cases (1800 steps in all).
    assert!(
        seen.0 > 500
            && seen.1 > 500
            && seen.2 > 500
            && seen.3 > 20
            && seen.4 > 200
            && seen.5 > 150
            && seen.6 > 300,
        "{seen:?}"
    );
}

#[test]
fn apply_snapshot_recomputes_only_what_changed() {
    let mut r = Churn(XorShift(7));
    let mut snap = Snapshot {
        nodes: a(nodes()),
        ..Default::default()
    };
    for i in 0..8 {
        let mut s = r.service();
        s.metadata.name = Some(format!("s{i}"));
        s.metadata.namespace = Some("default".into());
        snap.services.push(Arc::new(s));
    }
    snap.services.push(Arc::new(web(json!({}))));
    snap.slices.push(Arc::new(two_eps().into()));
    let mut m = Model::new(cfg());
    m.apply_snapshot(&snap);
    let arcs = m.desired().services.clone();
    // One endpoint more in web's slice: only web changes.
    let mut s = (*snap.slices[0]).clone();
    s.endpoints.push(
        Slice::from(slice(
            json!({"addressType": "IPv4", "endpoints": [ep("10.244.2.77", "n2")]}),
        ))
        .endpoints[0]
            .clone(),
    );
    snap.slices[0] = Arc::new(s);
    let d = m.apply_snapshot(&snap);
    assert_eq!(
        d,
        SnapshotDelta {
            upserted: 1,
            removed: 0,
            changed: true
        }
    );
    for (k, a) in &arcs {
        assert_eq!(
            Arc::ptr_eq(a, &m.desired().services[k]),
            k != "default/web",
            "{k}"
        );
    }
    assert_eq!(m.desired(), &build(&snap, &cfg()));
    // A resourceVersion bump alone (a status heartbeat) is an upsert that changes nothing.
    Arc::make_mut(&mut snap.nodes[1]).metadata.resource_version = Some("1234".into());
    let d = m.apply_snapshot(&snap);
    assert_eq!((d.upserted, d.changed), (1, false));
}
