//! Model unit tests: the incremental model, event by event (upserts and
//! removals of Services, EndpointSlices and Nodes) against a fresh build;
//! unchanged Services keep their `Arc`. Random sequences of the same are
//! `tests_churn`'s.

use std::net::Ipv4Addr;

use serde_json::json;
use xlb_bpf::Kind;

use super::tests::{a, cfg, ep, fe, nodes, svc, two_eps, web, web_slice};
use super::*;

#[test]
fn incremental_model_matches_build_and_keeps_unchanged_arcs() {
    let api = svc(json!({"metadata": {"name": "api", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.30", "ports": [{"name": "http", "port": 80}]}}));
    let mut api_slice = web_slice("api-a", vec![ep("10.244.2.9", "n2")]);
    api_slice
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(SERVICE_NAME_LABEL.into(), "api".into());
    let mut m = Model::new(cfg());
    for n in nodes() {
        m.upsert_node(&n);
    }
    assert!(m.upsert_service(&web(json!({}))));
    assert!(m.upsert_service(&api));
    assert!(m.upsert_slice(&api_slice));
    let api_arc = m.desired().services["default/api"].clone();
    assert!(m.upsert_slice(&two_eps()));
    assert!(Arc::ptr_eq(&api_arc, &m.desired().services["default/api"]));
    // same slice again: nothing changes
    assert!(!m.upsert_slice(&two_eps()));
    let snap = Snapshot {
        services: a(vec![web(json!({})), api.clone()]),
        slices: a(vec![api_slice.clone(), two_eps()]),
        nodes: a(nodes()),
    };
    assert_eq!(m.desired(), &build(&snap, &cfg()));
    // a Node heartbeat (nothing the model uses) changes nothing
    let mut n2 = nodes()[1].clone();
    n2.metadata.resource_version = Some("99".into());
    assert!(!m.upsert_node(&n2));
    // removing the slice empties the table
    assert!(m.remove_slice("default", "web-a"));
    assert_eq!(
        fe(m.desired(), Kind::ClusterIp)
            .iter()
            .find(|f| f.key.port == 80 && f.key.addr == Some(Ipv4Addr::new(10, 96, 0, 10).into()))
            .unwrap()
            .table_size,
        0
    );
    // node removal makes its endpoints unplaceable
    assert!(m.remove_node("n2"));
    assert!(m.desired().services["default/api"].ports[0].frontends[0]
        .backends
        .is_empty());
    assert!(m.desired().tunnels.is_empty());
    assert!(m.remove_service("default", "web"));
    assert!(!m.desired().services.contains_key("default/web"));
}

#[test]
fn slice_moving_to_another_service() {
    let mut m = Model::from_snapshot(
        &Snapshot {
            services: a(vec![
                web(json!({})),
                svc(json!({"metadata": {"name": "api", "namespace": "default"},
                "spec": {"clusterIP": "10.96.0.30", "ports": [{"name": "http", "port": 80}]}})),
            ]),
            slices: a(vec![two_eps()]),
            nodes: a(nodes()),
        },
        cfg(),
    );
    let mut moved = two_eps();
    moved
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(SERVICE_NAME_LABEL.into(), "api".into());
    assert!(m.upsert_slice(&moved));
    let d = m.desired();
    assert!(d.port("default/web:80/TCP").unwrap().frontends[0]
        .backends
        .is_empty());
    assert_eq!(
        d.port("default/api:80/TCP").unwrap().frontends[0]
            .backends
            .len(),
        2
    );
}

/// Manifest files carry no resourceVersion: a slice is compared by its
/// compact form, so an edit of a field the model does not read (targetRef,
/// hostname, zone, another label, appProtocol, a second address) is no
/// change, and an edit of one it reads (a condition, an address, a node) is.
#[test]
fn snapshot_slices_compared_by_what_the_model_reads() {
    let base = |eps: Vec<serde_json::Value>, extra_label: bool, app_protocol: bool| {
        let mut s = web_slice("web-a", eps);
        if extra_label {
            s.metadata
                .labels
                .as_mut()
                .unwrap()
                .insert("app".into(), "web".into());
        }
        if app_protocol {
            s.ports.as_mut().unwrap()[0].app_protocol = Some("http".into());
        }
        s
    };
    let snap = |s: k8s_openapi::api::discovery::v1::EndpointSlice| Snapshot {
        services: a(vec![web(json!({}))]),
        slices: a(vec![s]),
        nodes: a(nodes()),
    };
    let plain = vec![ep("10.244.1.5", "n1"), ep("10.244.2.6", "n2")];
    let mut m = Model::from_snapshot(&snap(base(plain.clone(), false, false)), cfg());
    let arc = m.desired().services["default/web"].clone();

    let mut decorated = plain.clone();
    decorated[0]["targetRef"] = json!({"kind": "Pod", "name": "web-1", "namespace": "default"});
    decorated[0]["hostname"] = json!("web-1");
    decorated[1]["zone"] = json!("z1");
    decorated[1]["addresses"] = json!(["10.244.2.6", "10.244.2.7"]);
    let d = m.apply_snapshot(&snap(base(decorated, true, true)));
    assert_eq!((d.upserted, d.changed), (0, false), "{d:?}");
    assert!(Arc::ptr_eq(&arc, &m.desired().services["default/web"]));

    // What the model reads: each edit is a change, and the result is a build's.
    let edits: [(usize, &[&str], serde_json::Value); 4] = [
        (1, &["conditions", "ready"], json!(false)),
        (1, &["conditions", "terminating"], json!(true)),
        (0, &["addresses"], json!(["10.244.1.9"])),
        (1, &["nodeName"], json!("n1")),
    ];
    for (i, (at, path, value)) in edits.into_iter().enumerate() {
        let mut eps = plain.clone();
        let mut v = &mut eps[at];
        for k in path {
            v = &mut v[*k];
        }
        *v = value;
        let s = snap(base(eps, false, false));
        let mut m = Model::from_snapshot(&snap(base(plain.clone(), false, false)), cfg());
        let d = m.apply_snapshot(&s);
        assert_eq!(d.upserted, 1, "edit {i}: {d:?}");
        assert_eq!(m.desired(), &build(&s, &cfg()), "edit {i}");
    }
}
