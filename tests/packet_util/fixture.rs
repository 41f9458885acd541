//! The fixture: the Services, backends, Maglev tables, neighbours and tunnel
//! peers the packet tests expect, and the flow hash and Maglev pick they are
//! checked against.

use super::*;

/// The data plane's flow hash (hash.h `xlb_flow_hash`), to predict Maglev slots.
pub fn flow_hash(src: SocketAddrV4, dst: SocketAddrV4, proto: u8, no_sport: bool) -> u32 {
    let sport = if no_sport {
        0
    } else {
        u32::from(src.port().to_be())
    };
    let ports = (sport << 16) | u32::from(dst.port().to_be());
    xlb_bpf::wire::hash3(be32(*src.ip()), be32(*dst.ip()), ports, u32::from(proto))
}

pub fn tcp_key(s: &str) -> xlb_svc_key {
    xlb_svc_key::addr(sa(s), Proto::Tcp)
}

pub fn udp_key(s: &str) -> xlb_svc_key {
    xlb_svc_key::addr(sa(s), Proto::Udp)
}

// --- the fixture every table runs against ------------------------------------

pub const VIP: &str = "10.96.0.10";

pub const BE_LOCAL: &str = "10.244.1.10:8080";

pub const BE_UDP: &str = "10.244.1.11:5353";

pub const BE_REMOTE: &str = "10.244.2.10:8080";

pub const BE_NONEIGH: &str = "10.244.3.10:8080";

pub const BE_5: &str = "10.244.1.12:8080";

pub const BE_6: &str = "10.244.1.13:8080";

pub const BE_NOTUNNEL: &str = "10.244.4.10:8080";

pub const BE_DEAD: &str = "10.244.1.99:8080";

pub const AFF_TABLE: [u32; 11] = [1, 5, 6, 1, 5, 6, 1, 5, 6, 1, 5];

pub const MULTI_TABLE: [u32; 13] = [1, 5, 6, 5, 1, 6, 6, 1, 5, 1, 6, 5, 1];

/// Services (svc_id, frontend, Maglev region) and backends used by the tables:
///
/// | id | frontend | backends |
/// |---|---|---|
/// | 1 | 10.96.0.10:80/TCP | 1 (local) |
/// | 2 | 10.96.0.10:53/UDP | 2 (local) |
/// | 3 | 10.96.0.20:80/TCP | 3 (node PEER) |
/// | 4 | 10.96.0.21:80/TCP | 4 (node NONEIGH) |
/// | 5 | 10.96.0.22:80/TCP | 7 (remote, no tunnel entry) |
/// | 6,7 | 10.96.0.30:80/TCP, :53/UDP | none |
/// | 8 | 10.96.0.40:80/TCP, ExternalIP, Local | 3 (remote only) |
/// | 9 | 10.96.0.50:80/TCP, source ranges 198.18.0.0/28 | 1 |
/// | 10 | 10.96.0.60:80/TCP, affinity 100 s | AFF_TABLE |
/// | 11 | 10.96.0.70:80/TCP | MULTI_TABLE |
/// | 12 | NodePort 30080/TCP | 1 |
/// | 13 | 10.96.0.80:80/TCP | 8 (inactive) |
/// | 14 | 10.96.0.20:53/UDP | 3 (node PEER) |
pub fn fixture(env: &Env) {
    let m = env.maps();
    m.put_config(&env.config()).unwrap();
    env.backend(1, BE_LOCAL, None);
    env.backend(2, BE_UDP, None);
    env.backend(3, BE_REMOTE, Some(PEER));
    env.backend(4, BE_NONEIGH, Some(NONEIGH));
    env.backend(5, BE_5, None);
    env.backend(6, BE_6, None);
    env.backend(7, BE_NOTUNNEL, Some(PEER));
    let mut dead = xlb_backend::new(sa(BE_DEAD), None, 1);
    dead.flags = 0;
    m.put_backend(8, &dead).unwrap();
    m.put_tunnel(
        &xlb_tunnel_key::new(Ipv4Addr::new(10, 244, 2, 0), 24),
        &xlb_tunnel_val::new(PEER, VTEP_MAC),
    )
    .unwrap();
    m.put_tunnel(
        &xlb_tunnel_key::new(Ipv4Addr::new(10, 244, 3, 0), 24),
        &xlb_tunnel_val::new(NONEIGH, VTEP_MAC),
    )
    .unwrap();
    m.put_local_addr(NODE).unwrap();
    env.service(tcp_key("10.96.0.10:80"), 1, 0, &[1; 7], 0);
    env.service(udp_key("10.96.0.10:53"), 2, 16, &[2; 7], 0);
    env.service(tcp_key("10.96.0.20:80"), 3, 32, &[3; 7], 0);
    env.service(tcp_key("10.96.0.21:80"), 4, 48, &[4; 7], 0);
    env.service(tcp_key("10.96.0.22:80"), 5, 64, &[7; 7], 0);
    env.service(tcp_key("10.96.0.30:80"), 6, 80, &[], 0);
    env.service(udp_key("10.96.0.30:53"), 7, 96, &[], 0);
    env.service(tcp_key("10.96.0.40:80"), 8, 112, &[3; 7], XLB_SVC_F_LOCAL);
    let mut v = m.service(&tcp_key("10.96.0.40:80")).unwrap().unwrap();
    v.fe_type = XLB_FE_EXTERNALIP as u8; // externalTrafficPolicy Local
    m.put_service(&tcp_key("10.96.0.40:80"), &v).unwrap();
    env.service(
        tcp_key("10.96.0.50:80"),
        9,
        128,
        &[1; 7],
        XLB_SVC_F_SRC_RANGES,
    );
    m.put_src_range(&xlb_src_range_key::new(9, Ipv4Addr::new(198, 18, 0, 0), 28))
        .unwrap();
    env.service(
        tcp_key("10.96.0.60:80"),
        10,
        144,
        &AFF_TABLE,
        XLB_SVC_F_AFFINITY,
    );
    env.service(tcp_key("10.96.0.70:80"), 11, 160, &MULTI_TABLE, 0);
    env.service(
        xlb_svc_key::nodeport(30080, Proto::Tcp),
        12,
        176,
        &[1; 7],
        0,
    );
    env.service(tcp_key("10.96.0.80:80"), 13, 192, &[8; 7], 0);
    env.service(udp_key("10.96.0.20:53"), 14, 208, &[3; 7], 0);
}

/// Backend id the Maglev region [off, off+table.len()) gives a flow.
pub fn maglev_pick(
    table: &[u32],
    src: SocketAddrV4,
    dst: SocketAddrV4,
    proto: u8,
    aff: bool,
) -> u32 {
    table[(flow_hash(src, dst, proto, aff) % table.len() as u32) as usize]
}
