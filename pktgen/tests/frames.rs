//! The generator's output frames, read back through BPF_PROG_RUN (not live):
//! checksums recomputed here independently, flows vary as configured.
use std::collections::HashSet;
use std::net::Ipv4Addr;

use libbpf_rs::ProgramInput;
use xlb_pktgen::{PacketSpec, Pktgen, Template, Vary, Vxlan, L4, STAMP_MAGIC};
use xlb_testkit::csum::{pseudo_sum, sum16, verifies};
use xlb_testkit::privileged;

/// Checks the IPv4 header at `ip` and its L4 checksum; returns (src, dst, sport, dport).
fn check(frame: &[u8], ip: usize) -> (Ipv4Addr, Ipv4Addr, u16, u16) {
    let h = &frame[ip..ip + 20];
    assert!(verifies(sum16(h)), "IPv4 header checksum");
    let total = u16::from_be_bytes([h[2], h[3]]) as usize;
    assert_eq!(total, frame.len() - ip);
    let l4 = &frame[ip + 20..];
    let src = [h[12], h[13], h[14], h[15]];
    let dst = [h[16], h[17], h[18], h[19]];
    let s = pseudo_sum(src, dst, h[9], l4.len()) + sum16(l4);
    assert!(verifies(s), "L4 checksum (proto {})", h[9]);
    (
        Ipv4Addr::new(h[12], h[13], h[14], h[15]),
        Ipv4Addr::new(h[16], h[17], h[18], h[19]),
        u16::from_be_bytes([l4[0], l4[1]]),
        u16::from_be_bytes([l4[2], l4[3]]),
    )
}

fn run_once(gen: &Pktgen, t: &Template) -> Vec<u8> {
    // start from garbage headers (a data plane rewrote them in a recycled
    // page): the generator must rewrite every header byte. The payload past
    // the template stays as it was first written (zeros).
    let end = (t.stamp_offset() + 16).div_ceil(8) * 8;
    let mut junk = vec![0u8; t.size()];
    junk[..end].fill(0xa5);
    let mut out = vec![0u8; t.size()];
    let input = ProgramInput {
        data_in: Some(&junk),
        data_out: Some(&mut out),
        ..Default::default()
    };
    let r = gen.gen_prog().test_run(input).unwrap();
    assert_eq!(r.return_value, 3, "XDP_TX");
    out
}

#[test]
fn frames_have_valid_checksums_and_the_flows_vary() {
    if !privileged() {
        return;
    }
    let gen = Pktgen::load().unwrap();
    let vx = Vxlan {
        src_mac: [2, 0, 0, 0, 0, 3],
        dst_mac: [2, 0, 0, 0, 0, 4],
        src: "198.18.0.1".parse().unwrap(),
        dst: "198.18.0.2".parse().unwrap(),
        port: 8472,
        vni: 1,
    };
    /// (l4, encapsulation, varied side, size, flows, addresses)
    type Case = (L4, Option<Vxlan>, Vary, usize, u32, u32);
    let cases: &[Case] = &[
        (L4::Udp, None, Vary::Source, 64, 10, 1),
        (L4::Udp, None, Vary::Source, 1500, 7, 3),
        (L4::TcpSyn, None, Vary::Source, 72, 5, 1),
        (L4::TcpAck, None, Vary::Destination, 128, 6, 2),
        (L4::Udp, Some(vx), Vary::Source, 112, 4, 1),
        (L4::TcpAck, Some(vx), Vary::Destination, 120, 9, 3),
    ];
    for &(l4, vxlan, vary, size, flows, addrs) in cases {
        let mut spec = PacketSpec::new(
            "10.244.2.1:1024".parse().unwrap(),
            "10.96.0.1:80".parse().unwrap(),
            l4,
        );
        spec.size = size;
        spec.vxlan = vxlan;
        spec.vary = vary;
        spec.flows = flows;
        spec.addrs = addrs;
        let t = Template::build(&spec).unwrap();
        gen.set_template(&t, 0).unwrap();
        let ip = if vxlan.is_some() { 64 } else { 14 };
        let mut seen = HashSet::new();
        for _ in 0..2 * flows {
            let f = run_once(&gen, &t);
            if vxlan.is_none() {
                assert_eq!(&f[..ip], &t.frame[..ip], "{l4:?}: ethernet header");
            } else {
                // all of it but the outer source port (flow entropy)
                assert_eq!(&f[..34], &t.frame[..34], "{l4:?}: outer headers");
                assert_eq!(&f[36..ip], &t.frame[36..ip], "{l4:?}: outer headers");
                assert!(verifies(sum16(&f[14..34])), "outer IPv4 checksum");
                let sport = u16::from_be_bytes([f[34], f[35]]);
                assert!(sport >= 49152);
            }
            let (src, dst, sport, dport) = check(&f, ip);
            let st = t.stamp_offset();
            assert_eq!(&f[st..st + 4], &STAMP_MAGIC.to_be_bytes());
            assert_ne!(&f[st + 8..st + 16], &[0u8; 8], "timestamp");
            // the template is copied in 8-byte words up to the stamp's end
            let end = (st + 16).div_ceil(8) * 8;
            assert!(f[end..].iter().all(|&b| b == 0), "payload untouched");
            let varied = match vary {
                Vary::Source => {
                    assert_eq!((dst, dport), (Ipv4Addr::new(10, 96, 0, 1), 80));
                    (src, sport)
                }
                Vary::Destination => {
                    assert_eq!((src, sport), (Ipv4Addr::new(10, 244, 2, 1), 1024));
                    (dst, dport)
                }
            };
            assert!(
                (0..flows).any(|i| t.flow(i)
                    == std::net::SocketAddr::V4(std::net::SocketAddrV4::new(varied.0, varied.1))),
                "{varied:?} is one of the template's flows"
            );
            seen.insert(varied);
        }
        assert_eq!(
            seen.len(),
            flows as usize,
            "{l4:?} {vary:?}: every flow appears"
        );
    }
}

#[test]
fn run_stats_count_every_program_run() {
    if !privileged() {
        return;
    }
    use std::os::fd::{AsFd, AsRawFd};
    let gen = Pktgen::load().unwrap();
    let t = Template::build(&PacketSpec::new(
        "198.18.0.64:1024".parse().unwrap(),
        "198.18.0.2:30080".parse().unwrap(),
        L4::Udp,
    ))
    .unwrap();
    gen.set_template(&t, 0).unwrap();
    let fd = gen.gen_prog().as_fd().as_raw_fd();
    let stats = xlb_pktgen::enable_run_stats().unwrap();
    let before = xlb_pktgen::prog_run_count(fd).unwrap();
    for _ in 0..5 {
        run_once(&gen, &t);
    }
    assert_eq!(xlb_pktgen::prog_run_count(fd).unwrap() - before, 5);
    drop(stats);
}

/// Checks the IPv6 header at `ip` (fixed header, no extensions) and its L4
/// checksum over the IPv6 pseudo header; returns (src, dst, sport, dport, L4 checksum).
fn check6(frame: &[u8], ip: usize) -> (std::net::Ipv6Addr, std::net::Ipv6Addr, u16, u16, u16) {
    let h = &frame[ip..ip + 40];
    assert_eq!(h[0] >> 4, 6);
    let payload = u16::from_be_bytes([h[4], h[5]]) as usize;
    assert_eq!(payload, frame.len() - ip - 40);
    let l4 = &frame[ip + 40..];
    let s =
        sum16(&h[8..40]) + sum16(&(l4.len() as u32).to_be_bytes()) + u32::from(h[6]) + sum16(l4);
    assert!(
        verifies(s),
        "L4 checksum over the IPv6 pseudo header (proto {})",
        h[6]
    );
    let csum_at = if h[6] == 17 { 6 } else { 16 };
    let a = |o: usize| std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&h[o..o + 16]).unwrap());
    (
        a(8),
        a(24),
        u16::from_be_bytes([l4[0], l4[1]]),
        u16::from_be_bytes([l4[2], l4[3]]),
        u16::from_be_bytes([l4[csum_at], l4[csum_at + 1]]),
    )
}

#[test]
fn ipv6_frames_have_valid_checksums_and_the_flows_vary() {
    if !privileged() {
        return;
    }
    let gen = Pktgen::load().unwrap();
    let (src, dst): (std::net::SocketAddr, std::net::SocketAddr) = (
        "[fd00:10:244:2::1]:1024".parse().unwrap(),
        "[fd00:10:96::1]:80".parse().unwrap(),
    );
    let vx = Vxlan {
        src_mac: [2, 0, 0, 0, 0, 3],
        dst_mac: [2, 0, 0, 0, 0, 4],
        src: "fd00:198:18::1".parse().unwrap(),
        dst: "fd00:198:18::2".parse().unwrap(),
        port: 8472,
        vni: 1,
    };
    /// (l4, encapsulation, varied side, size, flows, addresses)
    type Case6 = (L4, Option<Vxlan>, Vary, usize, u32, u32);
    let cases: &[Case6] = &[
        (L4::Udp, None, Vary::Source, 86, 10, 1),
        (L4::Udp, None, Vary::Destination, 1500, 7, 3),
        (L4::TcpSyn, None, Vary::Source, 96, 5, 5),
        (L4::TcpAck, None, Vary::Destination, 128, 6, 2),
        (L4::Udp, Some(vx), Vary::Source, 152, 4, 2),
        (L4::TcpAck, Some(vx), Vary::Destination, 160, 5, 1),
    ];
    for &(l4, vxlan, vary, size, flows, addrs) in cases {
        let mut spec = PacketSpec::new(src, dst, l4);
        spec.size = size;
        spec.vary = vary;
        spec.flows = flows;
        spec.addrs = addrs;
        spec.vxlan = vxlan;
        let t = Template::build(&spec).unwrap();
        gen.set_template(&t, 0).unwrap();
        // VXLAN over IPv6: outer Ethernet, IPv6, UDP, VXLAN (70 bytes)
        let ip = if vxlan.is_some() { 70 + 14 } else { 14 };
        let mut seen = HashSet::new();
        for _ in 0..2 * flows {
            let f = run_once(&gen, &t);
            if vxlan.is_some() {
                // all of the outer headers but the source port (flow entropy)
                assert_eq!(&f[..54], &t.frame[..54], "{l4:?}: outer headers");
                assert_eq!(&f[56..ip], &t.frame[56..ip], "{l4:?}: outer headers");
                assert!(u16::from_be_bytes([f[54], f[55]]) >= 49152);
            } else {
                assert_eq!(&f[..ip], &t.frame[..ip], "{l4:?}: ethernet header");
            }
            assert_eq!(
                &f[ip..ip + 8],
                &t.frame[ip..ip + 8],
                "{l4:?}: IPv6 header before the addresses"
            );
            let (s, d, sport, dport, csum) = check6(&f, ip);
            if l4 == L4::Udp {
                assert_ne!(csum, 0, "UDP over IPv6 never carries checksum 0");
            }
            let st = t.stamp_offset();
            assert_eq!(&f[st..st + 4], &STAMP_MAGIC.to_be_bytes());
            assert_ne!(&f[st + 8..st + 16], &[0u8; 8], "timestamp");
            let varied = match vary {
                Vary::Source => {
                    assert_eq!(std::net::SocketAddr::new(d.into(), dport), dst);
                    std::net::SocketAddr::new(s.into(), sport)
                }
                Vary::Destination => {
                    assert_eq!(std::net::SocketAddr::new(s.into(), sport), src);
                    std::net::SocketAddr::new(d.into(), dport)
                }
            };
            assert!(
                (0..flows).any(|i| t.flow(i) == varied),
                "{varied} is one of the template's flows"
            );
            seen.insert(varied);
        }
        assert_eq!(
            seen.len(),
            flows as usize,
            "{l4:?} {vary:?}: every flow appears"
        );
    }
}

/// The sink finds the stamp of IPv6 frames, plain and inside VXLAN over IPv6
/// (as the data plane sends IPv6 pod traffic to another node).
#[test]
fn sink_counts_ipv6_frames_plain_and_in_ipv6_vxlan() {
    if !privileged() {
        return;
    }
    let gen = Pktgen::load().unwrap();
    let mut spec = PacketSpec::new(
        "[fd00:198:18::1]:1024".parse().unwrap(),
        "[fd00:10:244:2::2]:8080".parse().unwrap(),
        L4::TcpAck,
    );
    spec.size = 128;
    let t = Template::build(&spec).unwrap();
    gen.set_template(&t, 0).unwrap();
    let inner = run_once(&gen, &t);
    // outer Ethernet, IPv6 (next header UDP), UDP to 8472, VXLAN, then the frame
    let mut outer = vec![0u8; 14 + 40 + 8 + 8];
    outer[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    outer[14] = 0x60;
    let plen = (8 + 8 + inner.len()) as u16;
    outer[18..20].copy_from_slice(&plen.to_be_bytes());
    outer[20] = 17;
    outer[21] = 64;
    outer[22..38].copy_from_slice(
        &"fd00:198:18::11"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    outer[38..54].copy_from_slice(
        &"fd00:198:18::12"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    outer[54..56].copy_from_slice(&49152u16.to_be_bytes());
    outer[56..58].copy_from_slice(&8472u16.to_be_bytes());
    outer[58..60].copy_from_slice(&plen.to_be_bytes());
    outer[62] = 0x08;
    outer.extend_from_slice(&inner);
    gen.reset_sink().unwrap();
    for frame in [&inner, &outer] {
        let mut out = vec![0u8; frame.len()];
        let input = ProgramInput {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        };
        let r = gen.sink_prog().test_run(input).unwrap();
        assert_eq!(r.return_value, 1, "XDP_DROP");
    }
    let s = gen.sink_stats().unwrap().total();
    assert_eq!((s.packets, s.stamped, s.vxlan), (2, 2, 1), "{s:?}");
}
