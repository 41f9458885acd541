//! Frame templates: the bytes the generator copies into every frame, and the
//! offsets and checksum seed it needs to vary the flow and fix the checksums.
//!
//! IPv4 or IPv6, by the family of the spec's addresses. An IPv6 template has
//! a fixed 40-byte header and no header checksum; the generator varies the
//! last 32 bits of its address (the generator finds the family from the
//! ethertype). VXLAN templates are IPv4 in IPv4 or IPv6 in IPv6 (flannel's
//! two overlays); the outer UDP checksum is 0 in both, which Linux's VXLAN
//! devices refuse over IPv6 by default (`udp6zerocsumrx`) and xlb's decap
//! accepts, so IPv6 VXLAN templates are for xlb's data plane.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use xlb_bpf::consts::XLB_PG_NEW_PORT_BITS;
use xlb_bpf::pktgen::types::pg_conf;

use crate::{Error, Result};

/// Bytes of template the generator can copy (`XLB_PG_TMPL_MAX`, consts.h).
pub const TMPL_MAX: usize = xlb_bpf::consts::XLB_PG_TMPL_MAX as usize;
/// `"xlbp"`: marks the payload stamp (`PG_STAMP_MAGIC`).
pub const STAMP_MAGIC: u32 = 0x786c_6270;
/// Bytes of the payload stamp (magic, pad, 64-bit timestamp).
pub const STAMP_LEN: usize = 16;
/// Largest frame (without FCS) the generator builds.
pub const MAX_SIZE: usize = 1500;
/// Smallest frame: a 64-byte Ethernet frame without its 4-byte FCS would be
/// 60; we count the frame handed to the NIC, so the smallest is 64.
pub const MIN_SIZE: usize = 64;

const ETH_LEN: usize = 14;
const IP_LEN: usize = 20;
const IP6_LEN: usize = 40;
const UDP_LEN: usize = 8;
const TCP_LEN: usize = 20;
const VXLAN_LEN: usize = 8;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// The L4 part of the template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    Udp,
    /// TCP SYN (a new connection every packet for a connection tracker).
    TcpSyn,
    /// TCP ACK of an established connection.
    TcpAck,
}

impl L4 {
    fn header_len(self) -> usize {
        match self {
            L4::Udp => UDP_LEN,
            L4::TcpSyn | L4::TcpAck => TCP_LEN,
        }
    }

    /// IP protocol number.
    pub fn proto(self) -> u8 {
        match self {
            L4::Udp => PROTO_UDP,
            L4::TcpSyn | L4::TcpAck => PROTO_TCP,
        }
    }
}

/// Which endpoint of the (inner) packet the flow variety changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vary {
    /// Source address and port (clients towards a Service).
    Source,
    /// Destination address and port (replies towards clients).
    Destination,
}

/// The outer headers of a VXLAN-encapsulated template.
#[derive(Clone, Copy, Debug)]
pub struct Vxlan {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// Of the inner addresses' family.
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Outer UDP destination port (8472 for flannel, 4789 IANA).
    pub port: u16,
    pub vni: u32,
}

/// What to send.
#[derive(Clone, Debug)]
pub struct PacketSpec {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// Both of one family.
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub l4: L4,
    /// Frame length handed to the interface (without FCS), MIN_SIZE..=MAX_SIZE.
    pub size: usize,
    /// Encapsulate in VXLAN with these outer headers.
    pub vxlan: Option<Vxlan>,
    /// Distinct flows (>= 1): the varied endpoint walks through them.
    pub flows: u32,
    /// Distinct addresses the flows are spread over; 0 picks the fewest that
    /// keep every port in range.
    pub addrs: u32,
    pub vary: Vary,
    /// Every frame a flow never seen before (`flows` and `addrs` are
    /// ignored): the varied endpoint walks through 2^22 addresses (IPv6: of
    /// the last 32 bits) from its
    /// address and 1024 ports from its port, numbered by a 32-bit flow
    /// number (28 bits of the CPU's frame counter, 4 of the CPU), so flows
    /// do not repeat within 2^28 frames per CPU.
    pub new_flows: bool,
}

impl PacketSpec {
    /// A UDP or TCP packet from `src` to `dst` with one flow, 64 bytes
    /// (an IPv6 one needs at least 86).
    pub fn new(src: SocketAddr, dst: SocketAddr, l4: L4) -> Self {
        Self {
            src_mac: [0x02, 0, 0, 0, 0, 1],
            dst_mac: [0x02, 0, 0, 0, 0, 2],
            src,
            dst,
            l4,
            size: MIN_SIZE,
            vxlan: None,
            flows: 1,
            addrs: 0,
            vary: Vary::Source,
            new_flows: false,
        }
    }
}

/// A built template: frame bytes plus what the generator program needs.
#[derive(Clone, Debug)]
pub struct Template {
    /// The whole first frame (template, stamp and zero payload).
    pub frame: Vec<u8>,
    conf: pg_conf,
    /// The first varied address (the rest differ in the last 32 bits).
    base: IpAddr,
}

fn sum16(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|c| u16::from_ne_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum()
}

fn fold(mut s: u32) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

fn ipv4_header(b: &mut [u8], total: usize, proto: u8, src: Ipv4Addr, dst: Ipv4Addr) {
    b[0] = 0x45;
    b[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    b[6] = 0x40; // DF
    b[8] = 64;
    b[9] = proto;
    b[12..16].copy_from_slice(&src.octets());
    b[16..20].copy_from_slice(&dst.octets());
    b[10..12].copy_from_slice(&[0, 0]);
    let c = !fold(sum16(&b[..IP_LEN]));
    b[10..12].copy_from_slice(&c.to_ne_bytes());
}

fn ipv6_header(b: &mut [u8], payload: usize, proto: u8, src: Ipv6Addr, dst: Ipv6Addr) {
    b[0] = 0x60;
    b[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
    b[6] = proto;
    b[7] = 64;
    b[8..24].copy_from_slice(&src.octets());
    b[24..40].copy_from_slice(&dst.octets());
}

/// The low 32 bits of an address (all of an IPv4 one): what the generator varies.
fn low32(a: IpAddr) -> u32 {
    match a {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => (u128::from(a) & 0xffff_ffff) as u32,
    }
}

/// `a` with its low 32 bits set to `low`.
fn with_low32(a: IpAddr, low: u32) -> IpAddr {
    match a {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(low)),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(
            (u128::from(a) & !0xffff_ffffu128) | u128::from(low),
        )),
    }
}

impl Template {
    /// Builds the template of `spec`, checking sizes and port ranges.
    pub fn build(spec: &PacketSpec) -> Result<Self> {
        let v6 = match (spec.src, spec.dst) {
            (SocketAddr::V4(_), SocketAddr::V4(_)) => false,
            (SocketAddr::V6(_), SocketAddr::V6(_)) => true,
            _ => {
                return Err(Error::Spec(format!(
                    "{} -> {}: source and destination of different families",
                    spec.src, spec.dst
                )))
            }
        };
        if let Some(v) = &spec.vxlan {
            if v.src.is_ipv6() != v6 || v.dst.is_ipv6() != v6 {
                return Err(Error::Spec(
                    "VXLAN templates are IPv4 in IPv4 or IPv6 in IPv6".into(),
                ));
            }
        }
        let ip_len = if v6 { IP6_LEN } else { IP_LEN };
        let outer = if spec.vxlan.is_some() {
            ETH_LEN + ip_len + UDP_LEN + VXLAN_LEN
        } else {
            0
        };
        let ip_off = outer + ETH_LEN;
        let l4_off = ip_off + if v6 { IP6_LEN } else { IP_LEN };
        let stamp_off = l4_off + spec.l4.header_len();
        let copy_len = (stamp_off + STAMP_LEN).div_ceil(8) * 8;
        if spec.size > MAX_SIZE || spec.size < MIN_SIZE.max(copy_len) {
            return Err(Error::Spec(format!(
                "frame size {} out of range: this template needs {}..={} bytes",
                spec.size,
                MIN_SIZE.max(copy_len),
                MAX_SIZE
            )));
        }
        if spec.flows == 0 {
            return Err(Error::Spec("flows must be at least 1".into()));
        }
        let (base, port_base) = match spec.vary {
            Vary::Source => (spec.src, spec.src.port()),
            Vary::Destination => (spec.dst, spec.dst.port()),
        };
        if spec.new_flows {
            let ports = 1u32 << XLB_PG_NEW_PORT_BITS;
            if u32::from(port_base) + ports > 65536 {
                return Err(Error::Spec(format!(
                    "new flows use {ports} ports from {port_base}: past 65535"
                )));
            }
            if low32(base.ip())
                .checked_add((1u32 << (32 - XLB_PG_NEW_PORT_BITS)) - 1)
                .is_none()
            {
                return Err(Error::Spec(
                    "new flows' addresses run past the last (32 bits of) address".into(),
                ));
            }
        }
        let ports_per_addr = 65536 - u32::from(port_base);
        let addrs = if spec.addrs == 0 {
            spec.flows.div_ceil(ports_per_addr)
        } else {
            spec.addrs.min(spec.flows)
        };
        if spec.flows.div_ceil(addrs) > ports_per_addr {
            return Err(Error::Spec(format!(
                "{} flows over {addrs} address(es) need ports past 65535 from {port_base}",
                spec.flows
            )));
        }
        if low32(base.ip()).checked_add(addrs - 1).is_none() {
            return Err(Error::Spec(
                "varied addresses run past the last (32 bits of) address".into(),
            ));
        }

        let mut f = vec![0u8; spec.size];
        if let Some(v) = &spec.vxlan {
            f[0..6].copy_from_slice(&v.dst_mac);
            f[6..12].copy_from_slice(&v.src_mac);
            let ethertype: u16 = if v6 { 0x86dd } else { 0x0800 };
            f[12..14].copy_from_slice(&ethertype.to_be_bytes());
            let ip = ETH_LEN;
            let u = ip + ip_len;
            match (v.src, v.dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    ipv4_header(&mut f[ip..u], spec.size - ETH_LEN, PROTO_UDP, s, d)
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    ipv6_header(&mut f[ip..u], spec.size - u, PROTO_UDP, s, d)
                }
                _ => unreachable!("families checked above"),
            }
            f[u..u + 2].copy_from_slice(&49152u16.to_be_bytes());
            f[u + 2..u + 4].copy_from_slice(&v.port.to_be_bytes());
            f[u + 4..u + 6].copy_from_slice(&((spec.size - u) as u16).to_be_bytes());
            // outer UDP checksum 0, as IPv4 VXLAN devices send it
            let x = u + UDP_LEN;
            f[x] = 0x08;
            f[x + 4..x + 8].copy_from_slice(&((v.vni & 0xff_ffff) << 8).to_be_bytes());
        }
        let e = outer;
        f[e..e + 6].copy_from_slice(&spec.dst_mac);
        f[e + 6..e + 12].copy_from_slice(&spec.src_mac);
        let ethertype: u16 = if v6 { 0x86dd } else { 0x0800 };
        f[e + 12..e + 14].copy_from_slice(&ethertype.to_be_bytes());
        let l4_len = spec.size - l4_off;
        match (spec.src.ip(), spec.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => ipv4_header(
                &mut f[ip_off..l4_off],
                spec.size - ip_off,
                spec.l4.proto(),
                s,
                d,
            ),
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                ipv6_header(&mut f[ip_off..l4_off], l4_len, spec.l4.proto(), s, d)
            }
            _ => unreachable!("families checked above"),
        }
        let l = l4_off;
        f[l..l + 2].copy_from_slice(&spec.src.port().to_be_bytes());
        f[l + 2..l + 4].copy_from_slice(&spec.dst.port().to_be_bytes());
        let csum_off = match spec.l4 {
            L4::Udp => {
                f[l + 4..l + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
                l + 6
            }
            L4::TcpSyn | L4::TcpAck => {
                f[l + 4..l + 8].copy_from_slice(&0x1000_0001u32.to_be_bytes());
                if spec.l4 == L4::TcpAck {
                    f[l + 8..l + 12].copy_from_slice(&0x2000_0001u32.to_be_bytes());
                }
                f[l + 12] = 5 << 4;
                f[l + 13] = if spec.l4 == L4::TcpSyn { 0x02 } else { 0x10 };
                f[l + 14..l + 16].copy_from_slice(&65535u16.to_be_bytes());
                l + 16
            }
        };
        f[stamp_off..stamp_off + 4].copy_from_slice(&STAMP_MAGIC.to_be_bytes());

        // L4 checksum seed: pseudo header and L4 bytes with the varied address
        // (its last 32 bits), the varied port, the timestamp and the checksum
        // itself at zero.
        let (addrs_off, addr_len) = if v6 {
            (ip_off + 8, 16)
        } else {
            (ip_off + 12, 4)
        };
        let (addr_field, port_field) = match spec.vary {
            Vary::Source => (addrs_off + addr_len - 4, l),
            Vary::Destination => (addrs_off + 2 * addr_len - 4, l + 2),
        };
        let mut s = f.clone();
        s[addr_field..addr_field + 4].fill(0);
        s[port_field..port_field + 2].fill(0);
        s[csum_off..csum_off + 2].fill(0);
        let mut seed = sum16(&s[addrs_off..addrs_off + 2 * addr_len]);
        seed += u16::from_ne_bytes([0, spec.l4.proto()]) as u32;
        seed += u16::from_ne_bytes((l4_len as u16).to_be_bytes()) as u32;
        seed += sum16(&s[l4_off..]);

        let mut conf = pg_conf {
            copy_len: copy_len as u32,
            ip_off: ip_off as u32,
            l4_off: l4_off as u32,
            csum_off: csum_off as u32,
            stamp_off: stamp_off as u32,
            outer_sport_off: if spec.vxlan.is_some() {
                (ETH_LEN + ip_len) as u32
            } else {
                0
            },
            flows: if spec.new_flows { 0 } else { spec.flows },
            addrs: if spec.new_flows {
                1 << (32 - XLB_PG_NEW_PORT_BITS)
            } else {
                addrs
            },
            addr_base: low32(base.ip()),
            port_base,
            vary_dst: (spec.vary == Vary::Destination) as u8,
            is_udp: (spec.l4 == L4::Udp) as u8,
            redirect_ifindex: 0,
            l4_csum_seed: fold(seed) as u32,
            ..Default::default()
        };
        conf.tmpl[..copy_len].copy_from_slice(&f[..copy_len]);
        Ok(Self {
            frame: f,
            conf,
            base: base.ip(),
        })
    }

    /// The endpoint flow `f` (0-based, wrapping at `flows`) uses for the varied side.
    /// In new-flows mode `f` is the 32-bit flow number.
    pub fn flow(&self, f: u32) -> SocketAddr {
        let c = &self.conf;
        if c.flows == 0 {
            return SocketAddr::new(
                with_low32(self.base, c.addr_base + (f >> XLB_PG_NEW_PORT_BITS)),
                c.port_base + (f & ((1 << XLB_PG_NEW_PORT_BITS) - 1)) as u16,
            );
        }
        let f = f % c.flows.max(1);
        let (a, p) = if c.addrs > 1 {
            (f % c.addrs, f / c.addrs)
        } else {
            (0, f)
        };
        SocketAddr::new(
            with_low32(self.base, c.addr_base + a),
            c.port_base.wrapping_add(p as u16),
        )
    }

    /// Whether the frames are IPv6.
    pub fn is_v6(&self) -> bool {
        self.base.is_ipv6()
    }

    /// Distinct flows; 0 in new-flows mode (every frame a new flow).
    pub fn flows(&self) -> u32 {
        self.conf.flows
    }

    /// Distinct varied addresses.
    pub fn addrs(&self) -> u32 {
        self.conf.addrs
    }

    /// Frame length.
    pub fn size(&self) -> usize {
        self.frame.len()
    }

    /// Offset of the payload stamp in the generated frame.
    pub fn stamp_offset(&self) -> usize {
        self.conf.stamp_off as usize
    }

    pub(crate) fn conf(&self, redirect_ifindex: u32) -> pg_conf {
        pg_conf {
            redirect_ifindex,
            ..self.conf
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checked with the test kit's checksum, not the generator's own.
    fn csum_ok(b: &[u8]) -> bool {
        xlb_testkit::csum::verifies(xlb_testkit::csum::sum16(b))
    }

    #[test]
    fn udp_template_has_valid_checksums() {
        let spec = PacketSpec::new(
            "198.18.0.64:1024".parse().unwrap(),
            "198.18.0.2:30080".parse().unwrap(),
            L4::Udp,
        );
        let t = Template::build(&spec).unwrap();
        assert_eq!(t.size(), 64);
        assert!(csum_ok(&t.frame[14..34]));
        // the seed plus the varied fields gives the real checksum
        let f = &t.frame;
        let mut s = t.conf.l4_csum_seed + sum16(&f[26..30]) + sum16(&f[34..36]);
        s += sum16(&f[42 + 8..42 + 16]);
        let c = !fold(s);
        let mut full = sum16(&f[26..34]) + u16::from_ne_bytes([0, 17]) as u32;
        full += u16::from_ne_bytes(30u16.to_be_bytes()) as u32;
        let mut l4 = f[34..].to_vec();
        l4[6..8].copy_from_slice(&c.to_ne_bytes());
        full += sum16(&l4);
        assert_eq!(fold(full), 0xffff);
    }

    /// The full IPv6 L4 checksum of `f` (pseudo header: addresses, length,
    /// next header), computed from scratch.
    fn l4_sum6(f: &[u8]) -> u16 {
        let ip = 14;
        let l4 = &f[ip + 40..];
        let mut s = sum16(&f[ip + 8..ip + 40]);
        s += sum16(&(l4.len() as u32).to_be_bytes());
        s += sum16(&[0, 0, 0, f[ip + 6]]);
        s += sum16(l4);
        fold(s)
    }

    #[test]
    fn ipv6_templates_have_valid_l4_checksums_and_vary_the_last_32_bits() {
        for (l4, csum_at) in [(L4::Udp, 6), (L4::TcpSyn, 16), (L4::TcpAck, 16)] {
            let mut spec = PacketSpec::new(
                "[fd00:198:18::64]:1024".parse().unwrap(),
                "[fd00:198:18::2]:30080".parse().unwrap(),
                l4,
            );
            assert!(
                Template::build(&spec).is_err(),
                "64 bytes hold no IPv6 + stamp"
            );
            spec.size = 128;
            spec.flows = 100;
            spec.addrs = 10;
            let t = Template::build(&spec).unwrap();
            assert!(t.is_v6());
            let f = &t.frame;
            assert_eq!(&f[12..14], &[0x86, 0xdd]);
            assert_eq!(f[14] >> 4, 6);
            assert_eq!(f[14 + 6], l4.proto());
            assert_eq!(u16::from_be_bytes([f[18], f[19]]) as usize, 128 - 54);
            assert_eq!(t.stamp_offset(), 54 + l4.header_len());
            // as the generator writes flow 37: the varied address and port,
            // the checksum from the seed, a timestamp
            let flow = t.flow(37);
            assert_eq!(
                flow,
                "[fd00:198:18::6b]:1027".parse().unwrap(),
                "address 0x64 + 37 % 10, port 1024 + 37 / 10"
            );
            let mut g = f.clone();
            let IpAddr::V6(a) = flow.ip() else { panic!() };
            g[14 + 8..14 + 24].copy_from_slice(&a.octets());
            g[54..56].copy_from_slice(&flow.port().to_be_bytes());
            let st = t.stamp_offset() + 8;
            g[st..st + 8].copy_from_slice(&0x0123_4567_89ab_cdefu64.to_ne_bytes());
            let mut sum = t.conf.l4_csum_seed + sum16(&g[14 + 20..14 + 24]);
            sum += sum16(&g[54..56]) + sum16(&g[st..st + 8]);
            let mut c = !fold(sum);
            if l4 == L4::Udp && c == 0 {
                c = 0xffff;
            }
            g[54 + csum_at..54 + csum_at + 2].copy_from_slice(&c.to_ne_bytes());
            assert_eq!(l4_sum6(&g), 0xffff, "{l4:?}");
            assert!(xlb_testkit::csum::verifies(
                xlb_testkit::csum::sum16(&g[14 + 8..14 + 40])
                    + xlb_testkit::csum::sum16(&((128 - 54) as u32).to_be_bytes())
                    + u32::from(l4.proto())
                    + xlb_testkit::csum::sum16(&g[54..])
            ));
        }
    }

    #[test]
    fn mixed_families_are_refused_and_ipv6_vxlan_is_ipv6_in_ipv6() {
        let mut spec = PacketSpec::new(
            "198.18.0.64:1024".parse().unwrap(),
            "[fd00::2]:80".parse().unwrap(),
            L4::Udp,
        );
        spec.size = 128;
        assert!(Template::build(&spec).is_err());
        spec.src = "[fd00::1]:1024".parse().unwrap();
        assert!(Template::build(&spec).is_ok());
        let mut vx = Vxlan {
            src_mac: [2, 0, 0, 0, 0, 3],
            dst_mac: [2, 0, 0, 0, 0, 4],
            src: "198.18.0.1".parse().unwrap(),
            dst: "198.18.0.2".parse().unwrap(),
            port: 8472,
            vni: 1,
        };
        spec.vxlan = Some(vx);
        assert!(Template::build(&spec).is_err(), "IPv6 in IPv4");
        vx.src = "fd00::1".parse().unwrap();
        vx.dst = "fd00::2".parse().unwrap();
        spec.vxlan = Some(vx);
        assert!(
            Template::build(&spec).is_err(),
            "128 bytes hold no IPv6 VXLAN + stamp"
        );
        spec.size = 152;
        let t = Template::build(&spec).unwrap();
        assert_eq!(&t.frame[12..14], &[0x86, 0xdd]);
        assert_eq!(t.frame[14 + 6], 17, "outer next header UDP");
        assert_eq!(&t.frame[56..58], &8472u16.to_be_bytes());
        assert_eq!(&t.frame[60..62], &[0, 0], "outer UDP checksum 0");
        assert_eq!(&t.frame[70 + 12..70 + 14], &[0x86, 0xdd], "inner IPv6");
        assert_eq!(t.stamp_offset(), 70 + 54 + 8);
        assert_eq!(t.conf.outer_sport_off, 54);
        spec.size = 128;
        spec.vxlan = None;
        spec.new_flows = true;
        spec.src = "[fd00::ffff:ffff]:1024".parse().unwrap();
        assert!(Template::build(&spec).is_err(), "low 32 bits run out");
        spec.src = "[fd00::1:0:0]:1024".parse().unwrap();
        let t = Template::build(&spec).unwrap();
        assert_eq!(
            t.flow(1025),
            "[fd00::1:0:1]:1025".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn new_flows_number_addresses_and_ports() {
        let mut spec = PacketSpec::new(
            "100.64.0.0:1024".parse().unwrap(),
            "198.18.0.2:30080".parse().unwrap(),
            L4::Udp,
        );
        spec.new_flows = true;
        let t = Template::build(&spec).unwrap();
        assert_eq!(t.flows(), 0, "the generator's new-flows mark");
        assert_eq!(t.flow(0), "100.64.0.0:1024".parse().unwrap());
        assert_eq!(t.flow(1023), "100.64.0.0:2047".parse().unwrap());
        assert_eq!(t.flow(1024), "100.64.0.1:1024".parse().unwrap());
        assert_eq!(t.flow(u32::MAX), "100.127.255.255:2047".parse().unwrap());
        spec.src = "100.64.0.0:65000".parse().unwrap();
        assert!(Template::build(&spec).is_err(), "ports past 65535");
        spec.src = "255.250.0.0:1024".parse().unwrap();
        assert!(Template::build(&spec).is_err(), "addresses past the last");
    }

    #[test]
    fn sizes_and_ports_are_checked() {
        let mut spec = PacketSpec::new(
            "198.18.0.64:1024".parse().unwrap(),
            "198.18.0.2:80".parse().unwrap(),
            L4::TcpSyn,
        );
        assert!(
            Template::build(&spec).is_err(),
            "TCP + stamp needs 72 bytes"
        );
        spec.size = 72;
        assert!(Template::build(&spec).is_ok());
        spec.size = 1501;
        assert!(Template::build(&spec).is_err());
        spec.size = 128;
        spec.flows = 1_000_000;
        let t = Template::build(&spec).unwrap();
        assert_eq!(t.addrs(), 16);
        assert_eq!(t.flow(17), "198.18.0.65:1025".parse().unwrap());
        spec.addrs = 1;
        assert!(Template::build(&spec).is_err());
        spec.flows = 0;
        assert!(Template::build(&spec).is_err());
    }

    #[test]
    fn vxlan_template_layout() {
        let mut spec = PacketSpec::new(
            "10.244.2.1:1024".parse().unwrap(),
            "10.96.0.1:80".parse().unwrap(),
            L4::Udp,
        );
        spec.vxlan = Some(Vxlan {
            src_mac: [2, 0, 0, 0, 0, 3],
            dst_mac: [2, 0, 0, 0, 0, 4],
            src: "198.18.0.1".parse().unwrap(),
            dst: "198.18.0.2".parse().unwrap(),
            port: 8472,
            vni: 1,
        });
        assert!(Template::build(&spec).is_err());
        spec.size = 112;
        let t = Template::build(&spec).unwrap();
        assert!(csum_ok(&t.frame[14..34]));
        assert!(csum_ok(&t.frame[64..84]));
        assert_eq!(&t.frame[36..38], &8472u16.to_be_bytes());
        assert_eq!(t.stamp_offset(), 50 + 42);
    }
}
