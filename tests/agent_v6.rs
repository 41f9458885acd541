//! `xlb agent` on a dual-stack node, inside a network namespace this test
//! creates (root): this node's global IPv6 addresses go to `local_addrs6`
//! (never the link-local one) and follow addresses added later, the node's
//! IPv6 underlay goes to `config6`, the other node's IPv6 address to
//! `remote_addrs6`, its IPv6 pod CIDR to `tunnel6`, and a dual-stack
//! Service's IPv6 frontends and backends to `services6` / `backends6`. No
//! traffic leaves the namespace.

use std::net::Ipv6Addr;
use std::path::Path;

use xlb_bpf::Maps;
mod cli_support;
use cli_support::{agent_cleanup, spawn_agent, Netns, Pins};
use xlb_testkit::agent::{free_port, http_status, wait_for};
use xlb_testkit::{privileged, unique_name};

const MANIFESTS: &str = r#"apiVersion: v1
kind: Node
metadata:
  name: node-a
spec:
  podCIDRs: ["10.244.1.0/24", "fd00:244:1::/64"]
status:
  addresses:
  - {type: InternalIP, address: 198.18.0.2}
  - {type: InternalIP, address: "2001:db8:18::2"}
---
apiVersion: v1
kind: Node
metadata:
  name: node-b
  annotations:
    xlb.io/vtep-mac: "02:00:00:00:00:0b"
    flannel.alpha.coreos.com/backend-v6-data: '{"VNI":1,"VtepMAC":"02:00:00:00:06:0b"}'
    flannel.alpha.coreos.com/public-ipv6: "2001:db8:18::3"
spec:
  podCIDRs: ["10.244.2.0/24", "fd00:244:2::/64"]
status:
  addresses:
  - {type: InternalIP, address: 198.18.0.3}
  - {type: InternalIP, address: "fd00:18::3"}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10, "fd00:96::10"]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  ports: [{port: 80, targetPort: 8080, nodePort: 30080, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-6
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv6
ports: [{port: 8080, protocol: TCP}]
endpoints:
- addresses: ["fd00:244:1::5"]
  nodeName: node-a
- addresses: ["fd00:244:2::7"]
  nodeName: node-b
"#;

fn ip6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn agent_programs_this_nodes_ipv6_addresses_underlay_and_the_ipv6_maps() {
    if !privileged() {
        return;
    }
    let ns = Netns::new();
    ns.ip(&["link", "set", "lo", "up"]);
    ns.ip(&["link", "add", "up0", "type", "veth", "peer", "name", "up1"]);
    ns.ip(&["addr", "add", "198.18.0.2/24", "dev", "up0"]);
    ns.ip(&["addr", "add", "2001:db8:18::2/64", "dev", "up0", "nodad"]);
    ns.ip(&["addr", "add", "fe80::2/64", "dev", "up0", "nodad"]);
    ns.ip(&["link", "set", "up0", "up"]);
    ns.ip(&["link", "set", "up1", "up"]);

    let name = unique_name("xlb-t6-");
    let pins = Pins(
        Path::new("/sys/fs/bpf").join(&name),
        std::env::temp_dir().join(format!("{name}-m")),
    );
    std::fs::create_dir_all(&pins.1).unwrap();
    std::fs::write(pins.1.join("all.yaml"), MANIFESTS).unwrap();
    let port = free_port();
    let agent = spawn_agent(&ns, &pins, port, &["--no-socket-lb"]);
    wait_for("/readyz in the namespace", || {
        (ns.run(move || http_status(port, "/readyz")) == Some(200)).then_some(())
    });

    let maps = Maps::from_pin_dir(&pins.0).unwrap();
    // This node's IPv6 addresses: the global one, not the link-local one.
    let local6 = maps.local_addrs6().unwrap();
    assert!(local6.contains(&ip6("2001:db8:18::2")), "{local6:?}");
    assert!(
        !local6.iter().any(|a| a.is_unicast_link_local()),
        "{local6:?}"
    );
    // The IPv6 underlay: the Node's IPv6 InternalIP.
    assert_eq!(
        maps.config6().unwrap().node_addr(),
        Some(ip6("2001:db8:18::2"))
    );
    // The other node: its IPv6 address, its IPv6 pod CIDR to its
    // public-ipv6 underlay and IPv6 VTEP.
    let remote6 = maps.remote_addrs6().unwrap();
    assert!(remote6.contains(&ip6("fd00:18::3")), "{remote6:?}");
    let t6 = maps.tunnels6().unwrap();
    assert_eq!(t6.len(), 1);
    assert_eq!(t6[0].0.net(), (ip6("fd00:244:2::"), 64));
    assert_eq!(t6[0].1.node(), ip6("2001:db8:18::3"));
    assert_eq!(t6[0].1.vtep_mac, [2, 0, 0, 0, 6, 0xb]);
    // The Service: ClusterIP and NodePort in services6 over backends6.
    let s6 = maps.services6().unwrap();
    assert_eq!(s6.len(), 2, "{s6:?}");
    assert!(s6
        .iter()
        .any(|(k, _)| k.ip() == ip6("fd00:96::10") && k.port() == 80));
    assert!(s6.iter().any(|(k, _)| k.is_nodeport() && k.port() == 30080));
    let b6: Vec<_> = maps
        .backends6()
        .unwrap()
        .into_iter()
        .map(|(_, b)| (b.sockaddr().to_string(), b.node()))
        .collect();
    assert_eq!(
        b6,
        [
            ("[fd00:244:1::5]:8080".to_string(), None),
            (
                "[fd00:244:2::7]:8080".to_string(),
                Some(ip6("2001:db8:18::3"))
            ),
        ]
    );
    // The IPv4 ClusterIP has no IPv4 endpoint: it rejects, in `services`.
    assert!(maps
        .services()
        .unwrap()
        .iter()
        .any(|(k, v)| k.port() == 80 && v.table_size == 0));

    // An IPv6 address added later takes NodePorts too.
    ns.ip(&["addr", "add", "2001:db8:99::2/64", "dev", "up0", "nodad"]);
    wait_for("the new IPv6 address in local_addrs6", || {
        maps.local_addrs6()
            .unwrap()
            .contains(&ip6("2001:db8:99::2"))
            .then_some(())
    });

    let mut agent = agent;
    let st = agent.terminate();
    assert!(st.success(), "{st:?}");
    drop(maps);
    agent_cleanup(&ns, &pins.0);
}
