//! The bench's Services, backends and the frames each scenario sends.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use xlb_bpf::consts::*;
use xlb_bpf::Proto;
use xlb_pktgen::{PacketSpec, Vary, Vxlan, L4};

use super::args::{ProtoArg, RunArgs, Scenario};
use super::topo::*;
use super::topo6::*;

pub(super) const NODEPORT: u16 = 30080;
pub(super) const SVC_PORT: u16 = 80;
pub(super) const BACKEND_PORT: u16 = 8080;
pub(super) const BACKENDS: u32 = 4;
pub(super) const CLIENT_PORT: u16 = 1024;
/// Maglev table size per Service (the smallest prime xlb uses).
pub(super) const TABLE: u32 = 251;

pub(super) fn svc_addr(i: u32) -> SocketAddrV4 {
    let base = u32::from(Ipv4Addr::new(10, 96, 0, 1));
    SocketAddrV4::new(
        Ipv4Addr::from(base + i % 65534),
        SVC_PORT + (i / 65534) as u16,
    )
}

pub(super) fn backend_addr(j: u32) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(u32::from(REMOTE_PODS) + 10 + j),
        BACKEND_PORT,
    )
}

/// ClusterIP `i` of the IPv6 scenarios: fd00:10:96::/112 (then the next ports).
pub(super) fn svc_addr6(i: u32) -> SocketAddrV6 {
    let base = u128::from(Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 1));
    SocketAddrV6::new(
        Ipv6Addr::from(base + u128::from(i % 65534)),
        SVC_PORT + (i / 65534) as u16,
        0,
        0,
    )
}

/// Backend `j` of the IPv6 scenarios, a pod of the remote node.
pub(super) fn backend_addr6(j: u32) -> SocketAddrV6 {
    SocketAddrV6::new(
        Ipv6Addr::from(u128::from(REMOTE_PODS6) + 10 + u128::from(j)),
        BACKEND_PORT,
        0,
        0,
    )
}

pub(super) fn target(services: u32) -> u32 {
    services / 2
}

pub(super) fn l4(p: ProtoArg) -> L4 {
    match p {
        ProtoArg::Udp => L4::Udp,
        ProtoArg::TcpSyn => L4::TcpSyn,
        ProtoArg::TcpAck => L4::TcpAck,
    }
}

pub(super) fn proto(p: ProtoArg) -> Proto {
    match p {
        ProtoArg::Udp => Proto::Udp,
        _ => Proto::Tcp,
    }
}

/// The frames each scenario sends.
/// `macs`: the client port's and the node port's MAC.
pub(super) fn spec(
    s: Scenario,
    a: &RunArgs,
    flows: u32,
    services: u32,
    (mac_c0, mac_n0): ([u8; 6], [u8; 6]),
) -> PacketSpec {
    let client = SocketAddrV4::new(CLIENTS, CLIENT_PORT);
    let mut p = match s {
        Scenario::NodeportRemote | Scenario::Iptables | Scenario::Nftables => PacketSpec::new(
            client.into(),
            SocketAddrV4::new(NODE, NODEPORT).into(),
            l4(a.proto),
        ),
        Scenario::ClusteripDecap => PacketSpec::new(
            SocketAddrV4::new(Ipv4Addr::from(u32::from(CLIENT_PODS) + 1), CLIENT_PORT).into(),
            svc_addr(target(services)).into(),
            l4(a.proto),
        ),
        Scenario::ReplyRevnat => {
            let mut p = PacketSpec::new(backend_addr(0).into(), client.into(), l4(a.proto));
            p.vary = Vary::Destination;
            p
        }
        Scenario::NodeportRemoteV6 => PacketSpec::new(
            SocketAddrV6::new(CLIENTS6, CLIENT_PORT, 0, 0).into(),
            SocketAddrV6::new(NODE6, NODEPORT, 0, 0).into(),
            l4(a.proto),
        ),
        Scenario::ClusteripDecapV6 => PacketSpec::new(
            SocketAddrV6::new(
                Ipv6Addr::from(u128::from(CLIENT_PODS6) + 1),
                CLIENT_PORT,
                0,
                0,
            )
            .into(),
            svc_addr6(target(services)).into(),
            l4(a.proto),
        ),
    };
    p.src_mac = mac_c0;
    p.dst_mac = mac_n0;
    p.size = a.size as usize;
    p.flows = flows;
    if a.new_flows && p.vary == Vary::Source {
        p.src = SocketAddrV4::new(NEW_FLOW_SOURCES, CLIENT_PORT).into();
        p.new_flows = true;
    }
    match s {
        Scenario::ClusteripDecapV6 => {
            p.vxlan = Some(Vxlan {
                src_mac: mac_c0,
                dst_mac: mac_n0,
                src: CLIENT6.into(),
                dst: NODE6.into(),
                port: XLB_VXLAN_PORT_DEFAULT as u16,
                vni: XLB_VNI_DEFAULT,
            });
        }
        Scenario::ClusteripDecap => {
            p.vxlan = Some(Vxlan {
                src_mac: mac_c0,
                dst_mac: mac_n0,
                src: CLIENT.into(),
                dst: NODE.into(),
                port: XLB_VXLAN_PORT_DEFAULT as u16,
                vni: XLB_VNI_DEFAULT,
            });
        }
        Scenario::ReplyRevnat => {
            p.src_mac = MAC_S0;
            p.vxlan = Some(Vxlan {
                src_mac: mac_c0,
                dst_mac: mac_n0,
                src: REMOTE_NODE.into(),
                dst: NODE.into(),
                port: XLB_VXLAN_PORT_DEFAULT as u16,
                vni: XLB_VNI_DEFAULT,
            });
        }
        _ => {}
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_stay_in_their_ranges() {
        for i in [0, 1, 65533, 65534, 99_999] {
            let a = svc_addr6(i);
            assert_eq!(a.ip().segments()[..7], [0xfd00, 0x10, 0x96, 0, 0, 0, 0]);
            assert_ne!(a.ip().segments()[7], 0xffff);
        }
        assert_eq!(backend_addr6(3).ip().to_string(), "fd00:10:244:1::d");
    }

    #[test]
    fn service_addresses_stay_in_the_service_range() {
        for i in [0, 1, 65533, 65534, 99_999] {
            let a = svc_addr(i);
            assert_eq!(a.ip().octets()[..2], [10, 96]);
            assert_ne!(a.ip().octets()[2..], [255, 255]);
        }
        assert_ne!(svc_addr(0), svc_addr(65534));
    }
}
