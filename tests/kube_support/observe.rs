//! What the tests watch on the other side: snapshots digested to names,
//! waiting for one, and a model + sync into fake maps (`Plane`).

use super::*;

// --- assertions ----------------------------------------------------------

/// A comparable digest of a snapshot: names plus the fields the steps change.
pub fn digest(s: &Snapshot) -> (Vec<String>, Vec<String>, Vec<String>) {
    let svcs = s
        .services
        .iter()
        .map(|o| {
            let sp = o.spec.as_ref().unwrap();
            format!(
                "{}={}:{}",
                o.metadata.name.as_ref().unwrap(),
                sp.cluster_ip.as_deref().unwrap_or(""),
                sp.ports.as_ref().unwrap()[0].port
            )
        })
        .collect();
    let slices = s
        .slices
        .iter()
        .map(|o| {
            let addrs: Vec<String> = o
                .endpoints
                .iter()
                .map(|e| {
                    e.address
                        .as_ref()
                        .map(|a| a.to_string())
                        .unwrap_or_default()
                })
                .collect();
            format!("{}={}", o.metadata.name.as_ref().unwrap(), addrs.join(","))
        })
        .collect();
    let nodes = s
        .nodes
        .iter()
        .map(|o| {
            format!(
                "{}={}",
                o.metadata.name.as_ref().unwrap(),
                o.spec.as_ref().unwrap().pod_cidr.as_deref().unwrap_or("")
            )
        })
        .collect();
    (svcs, slices, nodes)
}

pub fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Waits until the published snapshot has `want`; panics (with the last
/// snapshot seen) if it does not come within a generous bound.
pub async fn expect(
    rx: &mut SnapshotRx,
    step: &str,
    want: (&[&str], &[&str], &[&str]),
) -> std::sync::Arc<Snapshot> {
    let want = (strs(want.0), strs(want.1), strs(want.2));
    let mut last = None;
    let r = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Some(s) = rx.borrow_and_update().clone() {
                let d = digest(&s);
                if d == want {
                    return s;
                }
                last = Some(d);
            }
            rx.changed().await.unwrap();
        }
    })
    .await;
    match r {
        Ok(s) => s,
        Err(_) => panic!("step {step}: wanted {want:?}, last snapshot {last:?}"),
    }
}

/// The model and sync fed with each snapshot, on the in-memory map fake.
pub struct Plane(pub Syncer<FakeMaps>);

impl Plane {
    pub fn new() -> Self {
        Plane(Syncer::adopt(FakeMaps::small(), SyncOptions::default()).unwrap())
    }

    /// Applies `snap` and checks the frontends (`ip:port`) and active
    /// backends the maps then hold.
    pub fn check(&mut self, step: &str, snap: &Snapshot, frontends: &[&str], backends: &[&str]) {
        let cfg = ModelConfig {
            node_name: "node-a".into(),
            ..Default::default()
        };
        let rep = self.0.apply(&model::build(snap, &cfg)).unwrap();
        assert!(rep.failed.is_empty(), "{step}: {:?}", rep.failed);
        let m = self.0.maps();
        assert!(m.violations().is_empty(), "{step}: {:?}", m.violations());
        let mut fe: Vec<String> = m
            .services
            .values()
            .map(|(k, _)| format!("{}:{}", k.ip(), k.port()))
            .collect();
        fe.sort();
        let mut be: Vec<String> = m
            .backends
            .iter()
            .filter(|b| b.is_active())
            .map(|b| b.sockaddr().to_string())
            .collect();
        be.sort();
        assert_eq!(fe, strs(frontends), "{step}: frontends");
        assert_eq!(be, strs(backends), "{step}: backends");
    }
}

pub fn opts() -> SourceOptions {
    SourceOptions {
        debounce: Duration::from_millis(20),
        ..Default::default()
    }
}

pub async fn wait_for(mut f: impl FnMut() -> bool) {
    let r = tokio::time::timeout(Duration::from_secs(60), async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(r.is_ok(), "condition not reached");
}
