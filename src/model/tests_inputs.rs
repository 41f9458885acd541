//! Model unit tests: input the model leaves out or settles without an error
//! of its own (DNS-only Services, bad Services, EndpointSlices and endpoints
//! each skipped with a reason while the rest is kept, topology fields
//! ignored, an endpoint listed twice). Apart from the per-field tests
//! (`tests`): each case here is about what is *not* programmed.

use serde_json::json;
use xlb_bpf::Kind;

use super::tests::{ep, fe, run, sa, skipped_has, slice, svc, two_eps, web, web_slice};

#[test]
fn headless_and_external_name_skipped_without_error() {
    let headless = web(json!({"clusterIP": "None"}));
    let mut ext = svc(json!({"metadata": {"name": "ext", "namespace": "default"},
        "spec": {"type": "ExternalName", "externalName": "example.com"}}));
    ext.metadata.name = Some("ext".into());
    let d = run(vec![headless, ext], vec![two_eps()]);
    assert!(d.services.is_empty());
    assert!(d.skipped.is_empty(), "{:?}", d.skipped);
}

#[test]
fn bad_inputs_skipped_with_reason_others_kept() {
    let good = svc(json!({"metadata": {"name": "good", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 443}]}}));
    let cases = vec![
        (web(json!({"clusterIP": "10.96.0.999"})), "bad clusterIP"),
        (web(json!({"clusterIP": ""})), "no clusterIP"),
        (
            web(json!({"ports": [{"name": "http", "port": 0}]})),
            "port 0 out of range",
        ),
        (
            web(json!({"ports": [{"name": "x", "port": 70000}]})),
            "port 70000 out of range",
        ),
        (
            web(json!({"ports": [{"name": "s", "port": 80, "protocol": "SCTP"}]})),
            "SCTP not supported",
        ),
        (
            web(json!({"ports": [{"name": "s", "port": 80, "protocol": "QUIC"}]})),
            "unknown protocol",
        ),
        (web(json!({"type": "Weird"})), "unknown type"),
        (web(json!({"ports": []})), "no ports"),
        (
            web(
                json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 99999}]}),
            ),
            "nodePort 99999",
        ),
        (
            svc(json!({"metadata": {"name": "nospec", "namespace": "default"}})),
            "spec missing",
        ),
        (
            svc(json!({"metadata": {"namespace": "default"}, "spec": {"clusterIP": "10.96.0.9"}})),
            "metadata.name missing",
        ),
    ];
    for (bad, why) in cases {
        let d = run(vec![bad, good.clone()], vec![two_eps()]);
        assert!(skipped_has(&d, why), "{why}: {:?}", d.skipped);
        assert!(
            d.port("default/good:443/TCP").is_some(),
            "{why}: good Service lost"
        );
    }
}

#[test]
fn bad_slices_and_endpoints_skipped() {
    let nolabel = slice(json!({"metadata": {"name": "x", "namespace": "default"},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
        "endpoints": [ep("10.244.1.9", "n1")]}));
    let fqdn = slice(json!({"metadata": {"name": "f", "namespace": "default",
            "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "FQDN", "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": ["example.com"]}]}));
    let bad_port = slice(json!({"metadata": {"name": "p", "namespace": "default",
            "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 0}],
        "endpoints": [ep("10.244.1.9", "n1")]}));
    let bad_ep = web_slice(
        "web-b",
        vec![
            json!({"addresses": ["10.244.1.300"], "nodeName": "n1"}),
            json!({"addresses": [], "nodeName": "n1"}),
            ep("10.244.1.6", "n1"),
        ],
    );
    let d = run(
        vec![web(json!({}))],
        vec![nolabel, fqdn, bad_port, bad_ep, two_eps()],
    );
    for why in [
        "label kubernetes.io/service-name missing",
        "addressType \"FQDN\"",
        "port Some(0) out of range",
        "bad endpoint address",
        "endpoint without addresses",
    ] {
        assert!(skipped_has(&d, why), "{why}: {:?}", d.skipped);
    }
    assert_eq!(fe(&d, Kind::ClusterIp)[0].backends.len(), 3);
}

#[test]
fn zone_and_hints_accepted_and_ignored() {
    let eps = vec![json!({"addresses": ["10.244.2.7"], "nodeName": "n2",
        "conditions": {"ready": true}, "zone": "zone-b",
        "hints": {"forZones": [{"name": "zone-b"}]}})];
    let d = run(vec![web(json!({}))], vec![web_slice("web-a", eps)]);
    assert_eq!(
        fe(&d, Kind::ClusterIp)[0].backends,
        vec![sa("10.244.2.7:8080")]
    );
    assert!(d.skipped.is_empty());
}

#[test]
fn duplicate_endpoint_across_slices_prefers_ready() {
    let a = web_slice(
        "web-a",
        vec![json!({"addresses": ["10.244.1.5"], "nodeName": "n1",
            "conditions": {"ready": false, "serving": true, "terminating": true}})],
    );
    let b = web_slice("web-b", vec![ep("10.244.1.5", "n1")]);
    let d = run(vec![web(json!({}))], vec![a, b]);
    let p = d.port("default/web:80/TCP").unwrap();
    assert_eq!(p.backends.len(), 1);
    assert!(!p.backends[0].terminating);
}
