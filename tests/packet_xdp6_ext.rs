//! # XDP packet tests, IPv6: extension headers, fragments, ICMPv6 errors,
//! malformed frames
//!
//! The IPv6 path walks hop-by-hop, destination options, routing (segments
//! left 0) and fragment headers; balances first fragments and lets later
//! ones follow (frag6); translates ICMPv6 errors about balanced flows both
//! ways, also when the quoted packet carries extension headers; and counts
//! every truncated or malformed frame, untouched.
mod packet_util;

use std::net::SocketAddrV6;

use packet_util::v6::*;
use packet_util::*;
use xlb_bpf::consts::*;

#[test]
fn extension_headers_are_skipped() {
    let Some(env) = env6() else { return };
    let chains = [
        vec![Ext::HopByHop(0)],
        vec![Ext::HopByHop(1), Ext::DestOpts(0)],
        vec![Ext::HopByHop(0), Ext::Routing(4, 2), Ext::DestOpts(3)],
        vec![Ext::DestOpts(0); 6],
    ];
    for (i, ext) in chains.iter().enumerate() {
        let f = Frame6::tcp(SocketAddrV6::new(CLIENT6, 43000 + i as u16, 0, 0), vip6(80))
            .ext(ext.clone())
            .payload(b"abc");
        let (rc, r, out) = run6(&env, &f.build());
        assert_eq!((rc, r), (XDP_PASS, XLB_R_PASS_LOCAL), "{ext:?}");
        let p = check_frame6(&out).unwrap();
        assert_eq!(p.dst, *sa6(BE6_LOCAL).ip());
        assert_eq!(out, dnat6(&f, sa6(BE6_LOCAL)), "{ext:?}");
        let u = Frame6::udp(SocketAddrV6::new(CLIENT6, 43000 + i as u16, 0, 0), vip6(53))
            .ext(ext.clone());
        let (rc, _, out) = run6(&env, &u.build());
        assert_eq!(rc, XDP_PASS);
        assert_eq!(out, dnat6(&u, sa6(BE6_UDP)), "UDP {ext:?}");
    }
    // not walked: a seventh header, a routing header with segments left,
    // two fragment headers, an unknown one (AH) before TCP
    let f = Frame6::tcp(client6(), vip6(80))
        .ext(vec![Ext::DestOpts(0); 7])
        .build();
    let (rc, r, out) = run6(&env, &f);
    assert_eq!(
        (rc, r, out == f),
        (XDP_PASS, XLB_R_PASS_EXT6, true),
        "seven"
    );
    let mut f = Frame6::tcp(client6(), vip6(80))
        .ext(vec![Ext::Routing(4, 2)])
        .build();
    f[14 + 40 + 3] = 1; // segments left
    let (rc, r, out) = run6(&env, &f);
    assert_eq!(
        (rc, r, out == f),
        (XDP_PASS, XLB_R_PASS_EXT6, true),
        "segments left"
    );
    let two = vec![
        Ext::Fragment {
            offset: 0,
            more: false,
            id: 1,
        },
        Ext::Fragment {
            offset: 0,
            more: false,
            id: 2,
        },
    ];
    let f = Frame6::tcp(client6(), vip6(80)).ext(two).build();
    let (rc, r, out) = run6(&env, &f);
    assert_eq!(
        (rc, r, out == f),
        (XDP_PASS, XLB_R_PASS_EXT6, true),
        "two fragment headers"
    );
    // an AH (51) is an upper layer xlb does not balance: passes
    let mut f = Frame6::tcp(client6(), vip6(80)).build();
    f[20] = 51;
    let (rc, r, out) = run6(&env, &f);
    assert_eq!(
        (rc, r, out == f),
        (XDP_PASS, XLB_R_PASS_L4_OTHER, true),
        "AH"
    );
    // an atomic fragment (offset 0, no M) is a whole datagram
    let at = Frame6::tcp(sa6("[2001:db8:18::64]:44000"), vip6(80)).ext(vec![Ext::Fragment {
        offset: 0,
        more: false,
        id: 9,
    }]);
    let (rc, r, out) = run6(&env, &at.build());
    assert_eq!((rc, r), (XDP_PASS, XLB_R_PASS_LOCAL));
    assert_eq!(out, dnat6(&at, sa6(BE6_LOCAL)));
}

#[test]
fn fragments_follow_their_first() {
    let Some(env) = env6() else { return };
    let u = Frame6::udp(client6(), vip6(53)).payload(&(0..200u8).collect::<Vec<_>>());
    let (first, later) = u.fragments(64, 0x1234_5678);
    let mut to_be = u.clone();
    to_be.dst = sa6(BE6_UDP);
    let (want_first, want_later) = to_be.fragments(64, 0x1234_5678);
    // a later fragment before its first: untranslated
    let (rc, r, out) = run6(&env, &later);
    assert_eq!(
        (rc, r, out == later),
        (XDP_PASS, XLB_R_PASS_FRAG_NO_FIRST, true)
    );
    let (rc, r, out) = run6(&env, &first);
    assert_eq!((rc, r), (XDP_PASS, XLB_R_PASS_LOCAL), "first fragment");
    assert_eq!(
        out, want_first,
        "first fragment: address, port, datagram checksum"
    );
    let (rc, r, out) = run6(&env, &later);
    assert_eq!((rc, r), (XDP_PASS, XLB_R_PASS_LOCAL), "later fragment");
    assert_eq!(out, want_later, "later fragment: address only");
    // the reassembled datagram verifies with the new addresses
    let (pa, pb) = (parse6(&want_first).unwrap(), parse6(&want_later).unwrap());
    let mut whole = want_first[pa.l4_off..].to_vec();
    whole.extend_from_slice(&want_later[pb.l4_off..]);
    check_l4_6(CLIENT6, *sa6(BE6_UDP).ip(), UDP, &whole).unwrap();
    // another datagram id: its later fragment has no first
    let (_, other) = u.fragments(64, 0x99);
    let (rc, r, out) = run6(&env, &other);
    assert_eq!(
        (rc, r, out == other),
        (XDP_PASS, XLB_R_PASS_FRAG_NO_FIRST, true)
    );
    // TCP to a remote backend: both fragments encapsulated
    let t = Frame6::tcp(client6(), vip6_n(0x20, 80)).payload(&[7; 100]);
    let (a, b) = t.fragments(48, 5);
    for f in [a, b] {
        let (rc, r, out) = run6(&env, &f);
        assert_eq!((rc, r), (XDP_TX, XLB_R_TX_REMOTE));
        let p = check_frame6(&out).unwrap();
        let inner = parse6_at(&out, p.l4_off + 16 + 14).unwrap();
        assert_eq!(inner.dst, *sa6(BE6_REMOTE).ip());
    }
}

/// An ICMPv6 error from `src` to `dst` quoting `quoted` (a whole frame).
fn error6(
    src: std::net::Ipv6Addr,
    dst: std::net::Ipv6Addr,
    typ: u8,
    word: u32,
    quoted: &[u8],
) -> Vec<u8> {
    icmp6_error(src, dst, typ, 0, word, quoted, 1232)
}

#[test]
fn icmp6_errors_about_balanced_flows_are_translated() {
    let Some(env) = env6() else { return };
    let f = Frame6::tcp(client6(), vip6(80)).payload(b"hello");
    let (rc, _, dnated) = run6(&env, &f.build());
    assert_eq!(rc, XDP_PASS);
    let router = "2001:db8:18::fe".parse().unwrap();
    // toward the client: a router past the DNAT quotes client -> backend;
    // the client must see client -> frontend, from the frontend
    for typ in [1u8, 2, 3, 4] {
        let e = error6(router, CLIENT6, typ, 1280, &dnated);
        let (rc, r, out) = run6(&env, &e);
        assert_eq!((rc, r), (XDP_PASS, XLB_R_PASS_ICMP_RELATED), "type {typ}");
        check_frame6(&out).unwrap();
        assert_eq!(
            out,
            error6(VIP6, CLIENT6, typ, 1280, &f.build()),
            "type {typ}"
        );
    }
    // a short quote (TCP checksum not quoted) too
    let e = icmp6_error(router, CLIENT6, 1, 4, 0, &dnated, 48);
    let (rc, r, out) = run6(&env, &e);
    assert_eq!((rc, r), (XDP_PASS, XLB_R_PASS_ICMP_RELATED));
    assert_eq!(out, icmp6_error(VIP6, CLIENT6, 1, 4, 0, &f.build(), 48));
    check_frame6(&out).unwrap();
    // toward the backend: the client side quotes a reverse-NATed reply
    // frontend -> client; the backend must see backend -> client
    let mut reply = Frame6::tcp(vip6(80), client6());
    reply.tcp_flags = 0x12;
    let mut from_backend = reply.clone();
    from_backend.src = sa6(BE6_LOCAL);
    let e = error6(CLIENT6, VIP6, 1, 0, &reply.build());
    let (rc, r, out) = run6(&env, &e);
    assert_eq!((rc, r), (XDP_PASS, XLB_R_PASS_ICMP_RELATED));
    check_frame6(&out).unwrap();
    assert_eq!(
        out,
        error6(CLIENT6, *sa6(BE6_LOCAL).ip(), 1, 0, &from_backend.build())
    );
    // about no flow: untouched
    let stray = Frame6::tcp(sa6("[2001:db8:18::65]:1"), vip6(80)).build();
    let e = error6(router, CLIENT6, 1, 0, &stray);
    let (rc, r, out) = run6(&env, &e);
    assert_eq!((rc, r, out == e), (XDP_PASS, XLB_R_PASS_L4_OTHER, true));
    // about a flow to a remote backend: toward the backend, through the tunnel
    let g = Frame6::udp(client6(), vip6_n(0x20, 53));
    let (rc, _, _) = run6(&env, &g.build());
    assert_eq!(rc, XDP_TX);
    let mut rep = Frame6::udp(vip6_n(0x20, 53), client6());
    rep.payload = b"answer".to_vec();
    let e = error6(CLIENT6, *vip6_n(0x20, 0).ip(), 1, 0, &rep.build());
    let (rc, r, out) = run6(&env, &e);
    assert_eq!((rc, r), (XDP_TX, XLB_R_TX_ICMP_RELATED));
    let p = check_frame6(&out).unwrap();
    assert_eq!((p.src, p.dst), (NODE6, PEER6));
    let inner = &out[p.l4_off + 16..];
    let mut rep_be = rep.clone();
    rep_be.src = sa6("[fd00:244:2::10]:8080");
    let want = error6(CLIENT6, *sa6(BE6_REMOTE).ip(), 1, 0, &rep_be.build());
    assert_eq!(&inner[14..], &want[14..], "translated, encapsulated");
    assert_eq!(&inner[..6], &VTEP_MAC);
}

#[test]
fn icmp6_errors_quoting_extension_headers_are_translated() {
    let Some(env) = env6() else { return };
    let router = "2001:db8:18::fe".parse().unwrap();
    for ext in [
        vec![Ext::DestOpts(0)],
        vec![Ext::HopByHop(1), Ext::Routing(4, 2)],
        vec![Ext::Fragment {
            offset: 0,
            more: false,
            id: 7,
        }],
        vec![Ext::HopByHop(0), Ext::DestOpts(1), Ext::Routing(0, 0)],
    ] {
        clear_ct6(&env);
        let f = Frame6::tcp(client6(), vip6(80))
            .ext(ext.clone())
            .payload(b"hello");
        let (rc, _, dnated) = run6(&env, &f.build());
        assert_eq!(rc, XDP_PASS, "{ext:?}");
        // toward the client: client -> backend quoted, client -> frontend seen
        let e = error6(router, CLIENT6, 1, 0, &dnated);
        let (rc, r, out) = run6(&env, &e);
        assert_eq!((rc, r), (XDP_PASS, XLB_R_PASS_ICMP_RELATED), "{ext:?}");
        check_frame6(&out).unwrap();
        assert_eq!(out, error6(VIP6, CLIENT6, 1, 0, &f.build()), "{ext:?}");
        // a quote cut past the ports (the TCP checksum not quoted) too
        let cut = 40 + ext_chain(&ext, TCP).1.len() + 8;
        let e = icmp6_error(router, CLIENT6, 2, 0, 1280, &dnated, cut);
        let (rc, r, out) = run6(&env, &e);
        assert_eq!((rc, r), (XDP_PASS, XLB_R_PASS_ICMP_RELATED), "{ext:?}");
        assert_eq!(
            out,
            icmp6_error(VIP6, CLIENT6, 2, 0, 1280, &f.build(), cut),
            "{ext:?}"
        );
        // toward the backend: a reverse-NATed reply quoted
        let mut reply = Frame6::tcp(vip6(80), client6()).ext(ext.clone());
        reply.tcp_flags = 0x12;
        let mut from_backend = reply.clone();
        from_backend.src = sa6(BE6_LOCAL);
        let e = error6(CLIENT6, VIP6, 1, 0, &reply.build());
        let (rc, r, out) = run6(&env, &e);
        assert_eq!((rc, r), (XDP_PASS, XLB_R_PASS_ICMP_RELATED), "{ext:?}");
        check_frame6(&out).unwrap();
        assert_eq!(
            out,
            error6(CLIENT6, *sa6(BE6_LOCAL).ip(), 1, 0, &from_backend.build()),
            "{ext:?}"
        );
    }
    // Quotes that hold no ports of a flow pass untouched: a later fragment,
    // a routing header with segments left, a chain longer than the walk, a
    // quote cut inside the extension headers.
    clear_ct6(&env);
    let f = Frame6::tcp(client6(), vip6(80)).payload(b"hello");
    let (_, _, dnated) = run6(&env, &f.build());
    let requote = |ext: Vec<Ext>| {
        let mut g = Frame6::tcp(client6(), sa6(BE6_LOCAL)).payload(b"hello");
        g.ext = ext;
        g.build()
    };
    let mut seg_left = requote(vec![Ext::Routing(4, 0)]);
    seg_left[14 + 40 + 3] = 1;
    let quotes = [
        requote(vec![Ext::Fragment {
            offset: 1,
            more: false,
            id: 7,
        }]),
        seg_left,
        requote(vec![Ext::DestOpts(0); 7]),
    ];
    for (i, q) in quotes.iter().enumerate() {
        let e = error6(router, CLIENT6, 1, 0, q);
        let (rc, r, out) = run6(&env, &e);
        assert_eq!(
            (rc, r, out == e),
            (XDP_PASS, XLB_R_PASS_L4_OTHER, true),
            "quote {i}"
        );
    }
    let long = requote(vec![Ext::DestOpts(3)]);
    let e = icmp6_error(router, CLIENT6, 1, 0, 0, &long, 40 + 16);
    let (rc, r, out) = run6(&env, &e);
    assert_eq!(
        (rc, r, out == e),
        (XDP_PASS, XLB_R_PASS_L4_OTHER, true),
        "cut"
    );
    // the same flow quoted without extension headers is still translated
    let e = error6(router, CLIENT6, 1, 0, &dnated);
    assert_eq!(run6(&env, &e).1, XLB_R_PASS_ICMP_RELATED);
}

/// Every truncation of IPv6 frames (Ethernet, IPv6, extension headers,
/// TCP, UDP, VXLAN over IPv6 and its inner frame), cut as is and with the
/// payload length fitted to the cut: untouched, exactly one reason.
#[test]
fn every_truncation_is_counted() {
    let Some(env) = env6() else { return };
    let ok = [
        XLB_R_PASS_TRUNC_ETH,
        XLB_R_PASS_TRUNC_IP,
        XLB_R_PASS_TRUNC_L4,
        XLB_R_PASS_TRUNC_VXLAN,
        XLB_R_PASS_EXT6,
        XLB_R_PASS_NOT_IP,
    ];
    let tcp = Frame6::tcp(client6(), vip6(80)).ext(vec![Ext::HopByHop(1), Ext::DestOpts(0)]);
    let inner = Frame6::tcp(sa6("[fd00:244:2::8]:42000"), vip6(80)).build();
    let frames = [
        ("tcp+ext", tcp.build(), 0usize),
        ("udp", Frame6::udp(client6(), vip6(53)).build(), 0),
        ("vxlan6", vxlan6(&inner, PEER6, NODE6, VNI, true, true), 1),
    ];
    let mut seen = std::collections::BTreeSet::new();
    let mut runs = 0;
    for (name, full, vx) in &frames {
        // (BPF_PROG_RUN refuses XDP frames shorter than an Ethernet header)
        for len in 14..full.len() {
            for fit in [false, true] {
                let mut f = full[..len].to_vec();
                if fit && len >= 54 {
                    let pl = (len - 54) as u16;
                    f[18..20].copy_from_slice(&pl.to_be_bytes());
                    if *vx == 1 && len >= 62 {
                        f[58..60].copy_from_slice(&pl.to_be_bytes());
                    }
                    if *vx == 1 && len >= 70 + 54 {
                        let ipl = (len - 70 - 54) as u16;
                        f[70 + 18..70 + 20].copy_from_slice(&ipl.to_be_bytes());
                    }
                }
                let what = format!("{name} cut at {len} (fit {fit})");
                let before = env.reasons();
                let (rc, out) = env.xdp_in(&f, Some(env.uplink));
                let r = one_reason(&before, &env.reasons());
                assert_eq!(rc, XDP_PASS, "{what}");
                assert_eq!(out, f, "{what}: untouched");
                assert!(ok.contains(&r), "{what}: reason {r}");
                seen.insert(r);
                runs += 1;
            }
        }
    }
    for r in [
        XLB_R_PASS_TRUNC_IP,
        XLB_R_PASS_TRUNC_L4,
        XLB_R_PASS_TRUNC_VXLAN,
    ] {
        assert!(seen.contains(&r), "reason {r} reached: {seen:?}");
    }
    assert!(runs > 400);
    // a payload length beyond the frame, and one below the headers
    let mut f = Frame6::tcp(client6(), vip6(80)).build();
    f[18..20].copy_from_slice(&999u16.to_be_bytes());
    let (rc, r, out) = run6(&env, &f);
    assert_eq!((rc, r, out == f), (XDP_PASS, XLB_R_PASS_TRUNC_IP, true));
    let mut f = Frame6::tcp(client6(), vip6(80)).build();
    f[18..20].copy_from_slice(&10u16.to_be_bytes());
    let (rc, r, out) = run6(&env, &f);
    assert_eq!((rc, r, out == f), (XDP_PASS, XLB_R_PASS_TRUNC_L4, true));
    // a TCP data offset past the payload
    let mut f = Frame6::tcp(client6(), vip6(80)).build();
    f[54 + 12] = 0xf0;
    let (rc, r, out) = run6(&env, &f);
    assert_eq!((rc, r, out == f), (XDP_PASS, XLB_R_PASS_TRUNC_L4, true));
    assert_eq!(ct6_count(&env), 0, "nothing tracked");
}
