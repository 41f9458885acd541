//! The manifest-directory source: multi-document parsing, bad documents
//! skipped with the rest kept, change detection and reload.

use std::time::Duration;

use xlb::sources::manifests::{load_dir, parse_str};
use xlb::sources::{SnapshotRx, SourceOptions};
use xlb_testkit::TempDir;

const GOOD: &str = r#"
# a comment before the first document
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  clusterIP: 10.96.0.10
  ports:
  - name: http
    port: 80
    targetPort: http
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  namespace: shop
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
endpoints:
- addresses: ["10.244.1.5"]
  conditions: {ready: true}
  nodeName: node-a
ports:
- name: http
  port: 8080
  protocol: TCP
---
apiVersion: v1
kind: Node
metadata:
  name: node-a
  annotations:
    flannel.alpha.coreos.com/backend-data: '{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"}'
spec:
  podCIDR: 10.244.1.0/24
status:
  addresses:
  - {type: InternalIP, address: 198.18.0.2}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ignored}
spec: {}
---
"#;

#[test]
fn multi_document_file() {
    let p = parse_str(GOOD, "good.yaml");
    assert!(p.skipped.is_empty(), "{:?}", p.skipped);
    assert_eq!(p.ignored, 1, "the Deployment is ignored, not an error");
    let s = &p.snapshot;
    assert_eq!(s.services.len(), 1);
    assert_eq!(s.services[0].metadata.namespace.as_deref(), Some("shop"));
    let spec = s.services[0].spec.as_ref().unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
    assert_eq!(spec.ports.as_ref().unwrap()[0].port, 80);
    assert_eq!(s.slices.len(), 1);
    assert_eq!(
        s.slices[0].endpoints[0].node_name.as_deref(),
        Some("node-a")
    );
    assert_eq!(s.nodes.len(), 1);
    assert_eq!(
        s.nodes[0].spec.as_ref().unwrap().pod_cidr.as_deref(),
        Some("10.244.1.0/24")
    );
}

#[test]
fn bad_documents_are_skipped_and_the_rest_kept() {
    let text = r#"
apiVersion: v1
kind: Service
metadata: {name: first}
spec: {clusterIP: 10.96.0.1, ports: [{port: 53, protocol: UDP}]}
---
this is: [not, valid yaml
---
- a list, not an object
---
kind: Service
metadata: {name: no-api-version}
---
apiVersion: v1
kind: Service
metadata: {name: wrong-type}
spec: {ports: "eighty"}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: endpoints-not-a-list}
addressType: IPv4
endpoints: none
---
apiVersion: v1
kind: Service
metadata: {name: last}
spec: {clusterIP: 10.96.0.2, ports: [{port: 80}]}
"#;
    let p = parse_str(text, "mixed.yaml");
    let names: Vec<_> = p
        .snapshot
        .services
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["first", "last"]);
    assert!(p.snapshot.slices.is_empty());
    let docs: Vec<usize> = p.skipped.iter().map(|s| s.doc).collect();
    assert_eq!(docs, [2, 3, 4, 5, 6], "{:#?}", p.skipped);
    assert!(p.skipped[0].reason.contains("not valid YAML"));
    assert!(p.skipped[1].reason.contains("not a mapping"));
    assert!(p.skipped[2].reason.contains("missing kind or apiVersion"));
    assert!(p.skipped[3].reason.contains("bad Service"));
    assert!(p.skipped[4].reason.contains("bad EndpointSlice"));
    assert!(p.skipped.iter().all(|s| s.origin == "mixed.yaml"));
}

#[test]
fn list_kind_and_duplicates() {
    let text = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: a}
  spec: {clusterIP: 10.96.0.1, ports: [{port: 1}]}
- apiVersion: v1
  kind: Node
  metadata: {name: n1}
---
apiVersion: v1
kind: Service
metadata: {name: a, namespace: default}
spec: {clusterIP: 10.96.0.9, ports: [{port: 2}]}
"#;
    let p = parse_str(text, "list.yaml");
    assert!(p.skipped.is_empty());
    assert_eq!(p.snapshot.nodes.len(), 1);
    // `a` without a namespace is `default/a`: the later definition wins.
    assert_eq!(p.snapshot.services.len(), 1);
    let spec = p.snapshot.services[0].spec.as_ref().unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.9"));
}

#[test]
fn directory_reads_nested_files_and_skips_others() {
    let d = TempDir::new("xlb-manifests-t");
    std::fs::write(d.path().join("10-good.yaml"), GOOD).unwrap();
    std::fs::create_dir(d.path().join("more")).unwrap();
    std::fs::write(
        d.path().join("more/svc.yml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: api}\nspec: {clusterIP: 10.96.0.3, ports: [{port: 443}]}\n",
    )
    .unwrap();
    std::fs::write(
        d.path().join("node.json"),
        r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"node-b"}}"#,
    )
    .unwrap();
    std::fs::write(d.path().join("README.md"), "kind: Service\n").unwrap();
    std::fs::write(d.path().join(".swap.yaml"), "kind: [\n").unwrap();
    std::fs::write(d.path().join("broken.yaml"), [0xff, 0xfe, 0x00]).unwrap();
    let p = load_dir(d.path()).unwrap();
    assert_eq!(p.snapshot.services.len(), 2);
    assert_eq!(p.snapshot.nodes.len(), 2);
    assert_eq!(p.snapshot.slices.len(), 1);
    assert_eq!(p.skipped.len(), 1, "{:?}", p.skipped);
    assert!(p.skipped[0].origin.ends_with("broken.yaml"));

    assert!(load_dir(&d.path().join("missing")).is_err());
}

async fn next(rx: &mut SnapshotRx) -> std::sync::Arc<xlb::sources::Snapshot> {
    tokio::time::timeout(Duration::from_secs(30), rx.changed())
        .await
        .expect("no reload after the change")
        .unwrap();
    rx.borrow_and_update().clone().unwrap()
}

fn service_names(s: &xlb::sources::Snapshot) -> Vec<String> {
    s.services
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect()
}

#[tokio::test]
async fn directory_changes_are_picked_up() {
    let d = TempDir::new("xlb-manifests-t");
    let f = d.path().join("svc.yaml");
    std::fs::write(&f, GOOD).unwrap();
    let opts = SourceOptions {
        debounce: Duration::from_millis(50),
        poll: Duration::from_millis(20),
        ..Default::default()
    };
    let mut rx = xlb::sources::manifests::watch_dir(d.path().to_owned(), opts).unwrap();
    // The first snapshot is there at once.
    let s = rx.borrow_and_update().clone().unwrap();
    assert_eq!(service_names(&s), ["web"]);

    // A new file.
    std::fs::write(
        d.path().join("extra.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: extra}\nspec: {clusterIP: 10.96.0.4, ports: [{port: 81}]}\n",
    )
    .unwrap();
    let s = next(&mut rx).await;
    assert_eq!(service_names(&s), ["extra", "web"]);

    // An edit that breaks one document keeps the others.
    std::fs::write(
        d.path().join("extra.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: extra}\nspec: {ports: bad}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: extra2}\nspec: {clusterIP: 10.96.0.5, ports: [{port: 82}]}\n",
    )
    .unwrap();
    let s = next(&mut rx).await;
    assert_eq!(service_names(&s), ["extra2", "web"]);

    // A removed file.
    std::fs::remove_file(d.path().join("extra.yaml")).unwrap();
    let s = next(&mut rx).await;
    assert_eq!(service_names(&s), ["web"]);
    assert_eq!(s.slices.len(), 1);
}

#[tokio::test]
async fn service_selector_filters_services_only() {
    let d = TempDir::new("xlb-manifests-t");
    std::fs::write(
        d.path().join("a.yaml"),
        r#"apiVersion: v1
kind: Service
metadata: {name: on, labels: {xlb.io/enabled: "true"}}
spec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: off}
spec: {clusterIP: 10.96.0.2, ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: off-1, labels: {kubernetes.io/service-name: "off"}}
addressType: IPv4
endpoints: []
"#,
    )
    .unwrap();
    let opts = SourceOptions {
        service_selector: Some("xlb.io/enabled=true".parse().unwrap()),
        ..Default::default()
    };
    let rx = xlb::sources::manifests::watch_dir(d.path().to_owned(), opts).unwrap();
    let s = rx.borrow().clone().unwrap();
    assert_eq!(service_names(&s), ["on"]);
    assert_eq!(s.slices.len(), 1, "slices are not filtered");
}
