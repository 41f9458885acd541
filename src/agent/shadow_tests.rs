//! Tests of the node listeners and the frontends that shadow them.

use super::*;
use crate::model::{Model, ModelConfig, Snapshot};

#[test]
fn proc_net_listeners() {
    let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:280A 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 0100007F:9C40 0100007F:0016 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
";
    let l = parse_proc_net(tcp, Proto::Tcp);
    assert_eq!(l.len(), 2, "{l:?}");
    assert_eq!(l[0].port, 22);
    assert_eq!(l[0].addr, IpAddr::from(Ipv4Addr::UNSPECIFIED));
    assert_eq!(l[1].port, 10250);
    if cfg!(target_endian = "little") {
        assert_eq!(l[1].addr, IpAddr::from(Ipv4Addr::LOCALHOST));
    }
    // A real listener of this process shows up.
    let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port();
    assert!(listeners().iter().any(|l| l.proto == Proto::Tcp
        && l.port == port
        && l.addr == IpAddr::from(Ipv4Addr::LOCALHOST)));
}

#[test]
fn shadows_of_node_listeners() {
    use crate::model::{Model, ModelConfig, Snapshot};
    let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "s", "namespace": "d"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.5",
                 "externalIPs": ["198.18.0.11"],
                 "ports": [{"port": 22, "nodePort": 30022, "protocol": "TCP"},
                           {"port": 80, "nodePort": 10250, "protocol": "TCP"}]}
    }))
    .unwrap();
    let snap = Snapshot {
        services: vec![std::sync::Arc::new(svc)],
        ..Default::default()
    };
    let node = Ipv4Addr::new(198, 18, 0, 11);
    let cfg = ModelConfig {
        node_name: "n1".into(),
        node_addrs: vec![node.into()],
        nodeport_cidrs: vec![(Ipv4Addr::new(198, 18, 0, 0).into(), 24)],
        // a cluster whose API server hands out NodePorts as low as 10250
        nodeport_range: 1..=32767,
        ..Default::default()
    };
    let m = Model::from_snapshot(&snap, cfg);
    let d = m.desired();
    assert_eq!(
        d.local_addrs.iter().copied().collect::<Vec<_>>(),
        vec![node]
    );
    let addrs: BTreeSet<IpAddr> = [node.into()].into();
    let l = |a: [u8; 4], port| Listener {
        proto: Proto::Tcp,
        addr: Ipv4Addr::from(a).into(),
        port,
    };
    let listening = [
        l([0, 0, 0, 0], 22),        // sshd: the externalIP on the node address covers it
        l([127, 0, 0, 1], 10250),   // kubelet on loopback: the NodePort with loopback
        l([10, 1, 1, 1], 80),       // another address: not covered
        l([198, 18, 0, 11], 30022), // on the node address: the NodePort covers it
    ];
    let s = shadows(d, &addrs, true, &listening);
    let got: Vec<_> = s
        .iter()
        .map(|s| (s.frontend.clone(), s.listener.port))
        .collect();
    assert_eq!(
        got,
        vec![
            ("*:10250/TCP (NodePort)".to_string(), 10250),
            ("*:30022/TCP (NodePort)".to_string(), 30022),
            ("198.18.0.11:22/TCP".to_string(), 22),
        ],
        "{s:?}"
    );
    assert_eq!(
        shadows(d, &addrs, false, &listening).len(),
        2,
        "no loopback NodePorts"
    );
    // Outside --nodeport-addresses, the node address takes no NodePort.
    let cfg = ModelConfig {
        node_name: "n1".into(),
        node_addrs: vec![node.into()],
        nodeport_cidrs: vec![(Ipv4Addr::new(10, 0, 0, 0).into(), 8)],
        ..Default::default()
    };
    assert!(Model::from_snapshot(&snap, cfg)
        .desired()
        .local_addrs
        .is_empty());
}

#[test]
fn proc_net6_listeners() {
    // Words as a little-endian kernel prints them: [::]:22, [::1]:10250,
    // [2001:db8::5]:53 (udp), [::ffff:198.18.0.11]:8080 (v4-mapped).
    let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 00000000000000000000000001000000:280A 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 00000000000000000000000001000000:9C40 00000000000000000000000001000000:0016 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
   3: 0000000000000000FFFF00000B0012C6:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0 100 0 0 10 0
";
    let l = parse_proc_net(tcp6, Proto::Tcp);
    assert_eq!(l.len(), 3, "{l:?}");
    assert_eq!(l[0].addr, IpAddr::from(Ipv6Addr::UNSPECIFIED));
    assert_eq!(l[0].port, 22);
    if cfg!(target_endian = "little") {
        assert_eq!(l[1].addr, IpAddr::from(Ipv6Addr::LOCALHOST));
        assert_eq!(l[2].addr, IpAddr::from(Ipv4Addr::new(198, 18, 0, 11)));
    }
    let udp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when ref pointer drops
   0: B80D0120000000000000000005000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5 2 0 0
   1: B80D0120000000000000000005000000:0036 B80D0120000000000000000006000000:0035 07 00000000:00000000 00:00000000 00000000     0        0 6 2 0 0
";
    let u = parse_proc_net(udp6, Proto::Udp);
    assert_eq!(u.len(), 1, "connected UDP is no listener: {u:?}");
    if cfg!(target_endian = "little") {
        assert_eq!(u[0].addr, "2001:db8::5".parse::<IpAddr>().unwrap());
    }
    assert_eq!((u[0].port, u[0].proto), (53, Proto::Udp));
    // A real IPv6 listener of this process shows up (when the namespace
    // has IPv6 at all).
    if let Ok(s) = std::net::TcpListener::bind("[::1]:0") {
        let port = s.local_addr().unwrap().port();
        assert!(listeners().iter().any(|l| l.proto == Proto::Tcp
            && l.port == port
            && l.addr == IpAddr::from(Ipv6Addr::LOCALHOST)));
    }
}

#[test]
fn shadows_of_node_listeners6() {
    let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "s", "namespace": "d"},
        "spec": {"type": "NodePort", "clusterIP": "fd00:96::5",
                 "clusterIPs": ["fd00:96::5"], "ipFamilies": ["IPv6"],
                 "externalIPs": ["2001:db8::11"],
                 "ports": [{"port": 22, "nodePort": 30022, "protocol": "TCP"},
                           {"port": 53, "nodePort": 30053, "protocol": "UDP"}]}
    }))
    .unwrap();
    let snap = Snapshot {
        services: vec![std::sync::Arc::new(svc)],
        ..Default::default()
    };
    let node6: Ipv6Addr = "2001:db8::11".parse().unwrap();
    let node4 = Ipv4Addr::new(198, 18, 0, 11);
    let cfg = ModelConfig {
        node_name: "n1".into(),
        node_addrs: vec![node4.into(), node6.into()],
        ..Default::default()
    };
    let m = Model::from_snapshot(&snap, cfg);
    let d = m.desired();
    let addrs: BTreeSet<IpAddr> = [node4.into(), node6.into()].into();
    let l = |a: &str, port, proto| Listener {
        proto,
        addr: a.parse().unwrap(),
        port,
    };
    let listening = [
        l("::", 22, Proto::Tcp), // sshd on [::]: the IPv6 externalIP covers it
        l("2001:db8::11", 30022, Proto::Tcp), // on the node's IPv6 address: the NodePort
        l("2001:db8::99", 30053, Proto::Udp), // not a node address: not covered
        l("0.0.0.0", 30053, Proto::Udp), // IPv4 only: the IPv6 NodePort leaves it
        l("::1", 30022, Proto::Tcp), // IPv6 loopback: no loopback NodePorts
        l("198.18.0.11", 22, Proto::Tcp), // IPv4 node address, IPv6 frontend
    ];
    let s = shadows(d, &addrs, true, &listening);
    let got: Vec<_> = s
        .iter()
        .map(|s| {
            (
                s.frontend.clone(),
                s.listener.addr.to_string(),
                s.listener.port,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "[*]:30022/TCP (NodePort)".to_string(),
                "2001:db8::11".to_string(),
                30022
            ),
            ("[2001:db8::11]:22/TCP".to_string(), "::".to_string(), 22),
        ],
        "{s:?}"
    );
}

#[test]
fn a_dual_stack_any_listener_is_shadowed_by_ipv4_frontends_too() {
    // [::]:80 without IPV6_V6ONLY takes IPv4 connections too.
    let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "s", "namespace": "d"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.5",
                 "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}
    }))
    .unwrap();
    let snap = Snapshot {
        services: vec![std::sync::Arc::new(svc)],
        ..Default::default()
    };
    let node4 = Ipv4Addr::new(198, 18, 0, 11);
    let cfg = ModelConfig {
        node_name: "n1".into(),
        node_addrs: vec![node4.into()],
        ..Default::default()
    };
    let m = Model::from_snapshot(&snap, cfg);
    let addrs: BTreeSet<IpAddr> = [node4.into()].into();
    let any6 = Listener {
        proto: Proto::Tcp,
        addr: Ipv6Addr::UNSPECIFIED.into(),
        port: 30080,
    };
    let s = shadows(m.desired(), &addrs, false, &[any6]);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].frontend, "*:30080/TCP (NodePort)");
}
