//! # `xlb lab check`: probe a running lab over real sockets
//!
//! Each [`Probe`] names its source namespace, its destination and the
//! backends allowed to answer; adding a probe is adding one entry to the list
//! [`check`] builds (a new [`Src`] kind for a new source namespace).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use serde::Serialize;

use crate::cmd::require_root;
use crate::up::LabInfo;
use crate::*;

/// One probe of `xlb lab check`.
#[derive(Clone, Debug, Serialize)]
pub struct CheckRow {
    pub probe: String,
    pub from: String,
    pub to: String,
    pub expect: String,
    pub got: String,
    pub ok: bool,
    /// A host-network probe: from a node's own namespace, or to a backend
    /// listening in one.
    pub host_network: bool,
}

#[derive(Clone, Copy)]
enum Src {
    Client,
    Pod(u8, u8),
    /// A process in node `n`'s own namespace (kubelet, a hostNetwork pod).
    Node(u8),
}

struct Probe {
    name: String,
    src: Src,
    to: SocketAddr,
    udp: bool,
    /// Backends allowed to answer.
    expect: Vec<String>,
    /// Whether the backend must see the source's own address.
    client_visible: bool,
    /// See [`CheckRow::host_network`].
    host_network: bool,
}

fn run_probe(lab: &Lab, p: &Probe) -> CheckRow {
    let (ns, from_name, from_addr) = match p.src {
        Src::Client => (lab.ns_client(), "client".to_owned(), CLIENT_ADDR),
        Src::Pod(n, k) => (lab.ns_pod(n, k), pod_name(n, k), pod_addr(n, k)),
        Src::Node(n) => (lab.ns_node(n), node_name(n), node_addr(n)),
    };
    // The client's address in the family of the destination.
    let from_addr = match p.to {
        SocketAddr::V4(_) => IpAddr::V4(from_addr),
        SocketAddr::V6(_) => IpAddr::V6(v6::v6(from_addr)),
    };
    let (to, udp) = (p.to, p.udp);
    let t = Duration::from_secs(2);
    let res = netns::run(&ns, move || {
        if udp {
            probe::udp_ip(None, to, t).and_then(|(r, src)| {
                if src == to {
                    Ok(r)
                } else {
                    Err(std::io::Error::other(format!("reply from {src}")))
                }
            })
        } else {
            probe::tcp_ip(None, to, t)
        }
    });
    let (got, ok) = match res {
        Err(e) => (e.to_string(), false),
        Ok(Err(e)) => (format!("error: {e}"), false),
        Ok(Ok(r)) => {
            let who = p.expect.contains(&r.name);
            let seen = !p.client_visible || r.peer.ip() == from_addr;
            (format!("{} saw {}", r.name, r.peer.ip()), who && seen)
        }
    };
    CheckRow {
        probe: p.name.clone(),
        from: from_name,
        to: format!("{}{}", p.to, if p.udp { "/udp" } else { "" }),
        expect: p.expect.join("|"),
        got,
        ok,
        host_network: p.host_network,
    }
}

/// Probes a running lab over real sockets; every row must be `ok`.
///
/// Always: pod to pod across the overlay. With xlb: NodePort local and remote
/// (the backend must see the client's address), ClusterIP local and remote
/// from a pod, LoadBalancer ingress, ExternalIP, UDP NodePort (the reply must
/// come from the address dialled), per deploy/examples. Host network (left
/// out with `pods_only`): ClusterIP and NodePort from node namespaces, the
/// `kubernetes` Service (endpoint in node 2's namespace, no nodeName) from
/// pods and nodes on both nodes, and the `hostnet` Service (a hostNetwork
/// backend on node 1) from a pod on the other node. In a dual-stack lab,
/// every probe again over IPv6 (`<name>-v6`).
pub fn check(prefix: &str, pods_only: bool) -> Result<Vec<CheckRow>> {
    require_root()?;
    let info = LabInfo::load(prefix)?;
    let lab = info.lab()?;
    let n1 = node_addr(1);
    let mut probes = Vec::new();
    let last = lab.nodes;
    if last > 1 {
        probes.push(Probe {
            name: "pod-to-pod-overlay".into(),
            src: Src::Pod(1, 1),
            to: SocketAddrV4::new(pod_addr(last, 1), BACKEND_PORT).into(),
            udp: false,
            expect: vec![pod_name(last, 1)],
            client_visible: true,
            host_network: false,
        });
    }
    if info.xlb && lab.nodes >= 2 {
        let web: Vec<String> = [(1, 1), (1, 2), (2, 1), (2, 2)]
            .into_iter()
            .filter(|&(_, k)| k <= lab.pods_per_node)
            .map(|(n, k)| pod_name(n, k))
            .collect();
        let vip = |a: [u8; 4], port| SocketAddrV4::new(Ipv4Addr::from(a), port);
        probes.push(Probe {
            name: "nodeport-local".into(),
            src: Src::Client,
            to: SocketAddrV4::new(n1, 30081).into(),
            udp: false,
            expect: vec![pod_name(1, 1)],
            client_visible: true,
            host_network: false,
        });
        probes.push(Probe {
            name: "nodeport-remote".into(),
            src: Src::Client,
            to: SocketAddrV4::new(n1, 30082).into(),
            udp: false,
            expect: vec![pod_name(2, 1)],
            client_visible: true,
            host_network: false,
        });
        if lab.pods_per_node >= 2 {
            probes.push(Probe {
                name: "clusterip-local".into(),
                src: Src::Pod(1, 2),
                to: vip([10, 96, 0, 11], 80).into(),
                udp: false,
                expect: vec![pod_name(1, 1)],
                client_visible: true,
                host_network: false,
            });
            probes.push(Probe {
                name: "clusterip-remote".into(),
                src: Src::Pod(1, 2),
                to: vip([10, 96, 0, 12], 80).into(),
                udp: false,
                expect: vec![pod_name(2, 1)],
                client_visible: true,
                host_network: false,
            });
        }
        probes.push(Probe {
            name: "loadbalancer-ip".into(),
            src: Src::Client,
            to: vip([10, 96, 100, 17], 80).into(),
            udp: false,
            expect: web.clone(),
            client_visible: true,
            host_network: false,
        });
        probes.push(Probe {
            name: "external-ip".into(),
            src: Src::Client,
            to: vip([10, 96, 200, 18], 80).into(),
            udp: false,
            expect: web.clone(),
            client_visible: true,
            host_network: false,
        });
        probes.push(Probe {
            name: "nodeport-udp".into(),
            src: Src::Client,
            to: SocketAddrV4::new(n1, 30080).into(),
            udp: true,
            expect: web,
            client_visible: true,
            host_network: false,
        });
        if !pods_only {
            host_probes(&mut probes);
        }
    }
    if info.dual_stack {
        let six: Vec<Probe> = probes.iter().filter_map(v6_twin).collect();
        probes.extend(six);
    }
    Ok(probes.iter().map(|p| run_probe(&lab, p)).collect())
}

/// The same probe over IPv6 (a dual-stack lab): the destination's IPv6
/// counterpart, from the same namespace.
fn v6_twin(p: &Probe) -> Option<Probe> {
    let SocketAddr::V4(to) = p.to else {
        return None;
    };
    Some(Probe {
        name: format!("{}-v6", p.name),
        src: p.src,
        to: SocketAddr::new(v6::to_v6(*to.ip())?.into(), to.port()),
        udp: p.udp,
        expect: p.expect.clone(),
        client_visible: p.client_visible,
        host_network: p.host_network,
    })
}

fn host_probes(probes: &mut Vec<Probe>) {
    let vip = |a: [u8; 4], port| SocketAddrV4::new(Ipv4Addr::from(a), port);
    let host = |name: &str, src, to: SocketAddrV4, expect: String, client_visible| Probe {
        name: name.to_owned(),
        src,
        to: to.into(),
        udp: false,
        expect: vec![expect],
        client_visible,
        host_network: true,
    };
    probes.push(host(
        "clusterip-from-node",
        Src::Node(1),
        vip([10, 96, 0, 12], 80),
        pod_name(2, 1),
        false,
    ));
    probes.push(host(
        "nodeport-from-node",
        Src::Node(2),
        SocketAddrV4::new(node_addr(1), 30081),
        pod_name(1, 1),
        false,
    ));
    let api = daemons::host_backend_name(2);
    let kubernetes = vip([10, 96, 0, 1], 443);
    for (name, src) in [
        ("kubernetes-from-pod-node1", Src::Pod(1, 1)),
        ("kubernetes-from-pod-node2", Src::Pod(2, 1)),
        ("kubernetes-from-node1", Src::Node(1)),
        ("kubernetes-from-node2", Src::Node(2)),
    ] {
        probes.push(host(name, src, kubernetes, api.clone(), false));
    }
    probes.push(host(
        "hostnet-from-pod",
        Src::Pod(2, 1),
        vip([10, 96, 0, 9], 80),
        daemons::host_backend_name(1),
        true,
    ));
}
