//! # Tunnel NAT frames
//!
//! The VXLAN of a flow the balancing node (B) sends to the backend's node (C)
//! with the frontend trailer (`XLB_VXLAN_F_SVC | XLB_VXLAN_F_FE`, then
//! `struct xlb_vxlan_fe`), and the replies C sends back reverse-NATed
//! (`XLB_VXLAN_F_XLATED`): docs/dp.md "Who reverse-NATs (tunnel return)".

use std::net::{Ipv4Addr, SocketAddrV4};

use super::*;

/// VXLAN flags words (with the I flag) as they are on the wire.
pub const VX_SVC: u32 = 0x0800_0001;
pub const VX_SVC_FE: u32 = 0x0800_0003;
pub const VX_XLATED: u32 = 0x0800_0004;

/// The 8-byte frontend trailer: address, port, two zero bytes.
pub fn fe_trailer(fe: SocketAddrV4) -> Vec<u8> {
    let mut t = fe.ip().octets().to_vec();
    t.extend_from_slice(&fe.port().to_be_bytes());
    t.extend_from_slice(&[0, 0]);
    t
}

/// VXLAN from `src` to `dst` (the fixture's VNI) with flags word `flags`,
/// `between` the VXLAN header and the inner frame.
pub fn vxlan_with(
    inner: &[u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    flags: u32,
    between: &[u8],
) -> Vec<u8> {
    let mut payload = between.to_vec();
    payload.extend_from_slice(inner);
    let mut f = vxlan(&payload, src, dst, VNI, false);
    f[42..46].copy_from_slice(&flags.to_be_bytes());
    f
}

/// B -> C: a Service flow's frame with its frontend.
pub fn vxlan_fe(inner: &[u8], src: Ipv4Addr, dst: Ipv4Addr, fe: SocketAddrV4) -> Vec<u8> {
    vxlan_with(inner, src, dst, VX_SVC_FE, &fe_trailer(fe))
}

/// C -> B: a reply C reverse-NATed.
pub fn vxlan_xlated(inner: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    vxlan_with(inner, src, dst, VX_XLATED, &[])
}

/// The ct entry at `key`, if any.
pub fn ct_at(env: &Env, src: &str, dst: &str, proto: u8) -> Option<xlb_ct_val> {
    env.maps()
        .ct_entry(&xlb_ct_key::new(sa(src), sa(dst), proto))
        .unwrap()
}

/// B's state of a tunnel NAT flow `client -> fe` balanced to `backend`: the
/// forward entry, flagged remote and tunnel NAT, and no reverse entry.
pub fn assert_forward_only(
    env: &Env,
    client: &str,
    fe: &str,
    backend: &str,
    proto: u8,
) -> xlb_ct_val {
    let fwd = ct_at(env, client, fe, proto).expect("forward ct entry");
    assert!(!fwd.is_reverse());
    assert_eq!(
        fwd.flags & (XLB_CT_F_REMOTE | XLB_CT_F_TNAT),
        XLB_CT_F_REMOTE | XLB_CT_F_TNAT,
        "forward entry: remote, tunnel NAT (flags {:#x})",
        fwd.flags
    );
    assert!(
        ct_at(env, backend, client, proto).is_none(),
        "no reverse entry on the balancing node"
    );
    fwd
}

/// C's tunnel-return entry of `backend -> client`: reverse, tunnel, tunnel
/// NAT to `fe`, back to `peer`.
pub fn assert_tnat_entry(
    env: &Env,
    backend: &str,
    client: &str,
    fe: &str,
    peer: Ipv4Addr,
    proto: u8,
) -> xlb_ct_val {
    let rev = ct_at(env, backend, client, proto).expect("tunnel-return entry");
    assert_eq!(
        rev.flags & !XLB_CT_F_TCP_STATE,
        XLB_CT_F_REVERSE | XLB_CT_F_TUNNEL | XLB_CT_F_TNAT
    );
    assert_eq!(rev.nat(), sa(fe), "this node reverse-NATs to the frontend");
    assert_eq!(rev.tunnel_peer(), Some(peer));
    assert_eq!(
        rev.svc_id, XLB_NO_SVC,
        "the Service is the peer's: none counted here"
    );
    rev
}
