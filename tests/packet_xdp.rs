mod packet_util;
use packet_util::*;

#[test]
fn smoke() {
    let Some(env) = Env::new() else { return };
    let f = Frame::tcp(sa("198.18.0.100:40000"), sa("10.96.0.10:80")).build();
    let (rc, out) = env.xdp_in(&f, Some(env.uplink));
    println!("rc {rc} {:?}", out.len());
    let (rc, out) = env.tc(&f);
    println!("rc {rc} {:?}", out.len());
}
