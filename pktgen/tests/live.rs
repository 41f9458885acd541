//! Live-frames generator and sink on a veth pair inside a namespace of our own.
use std::path::PathBuf;

use xlb_pktgen::{Limit, PacketSpec, Pktgen, RunOptions, Template, L4};
use xlb_testkit::netns::veth_pair;
use xlb_testkit::{precondition, privileged, several_cpus, Netns};

/// A namespace with a veth pair `a` <-> `b` (two queues each); removed on drop.
struct Pair {
    ns: Netns,
    a: &'static str,
    b: &'static str,
}

impl Pair {
    fn new() -> Self {
        let p = Pair {
            ns: Netns::with_prefix("xpg"),
            a: "pga",
            b: "pgb",
        };
        veth_pair(Some(&p.ns.name), p.a, p.b, 2);
        p.ns.ip(&["link", "set", p.a, "up"]);
        p.ns.ip(&["link", "set", p.b, "up"]);
        p
    }

    fn path(&self) -> PathBuf {
        self.ns.path()
    }
}

fn spec() -> PacketSpec {
    let mut s = PacketSpec::new(
        "198.18.0.64:1024".parse().unwrap(),
        "198.18.0.2:30080".parse().unwrap(),
        L4::Udp,
    );
    s.flows = 100;
    s
}

/// Loads the generator, attaches the sink on `b`; returns the link to keep it attached.
fn setup(p: &Pair) -> (Pktgen, libbpf_rs::Link, u32) {
    let gen = Pktgen::load().unwrap();
    gen.set_template(&Template::build(&spec()).unwrap(), 0)
        .unwrap();
    let b = p.ns.ifindex(p.b);
    let link = p.ns.run(|| gen.sink_prog().attach_xdp(b as i32).unwrap());
    (gen, link, p.ns.ifindex(p.a))
}

#[test]
fn sends_exactly_the_requested_count_and_the_sink_counts_it() {
    if !privileged() {
        return;
    }
    let p = Pair::new();
    let (gen, _link, a) = setup(&p);
    let mut o = RunOptions::new(a, vec![0], Limit::Count(10_007));
    o.netns = Some(p.path());
    let r = gen.run(&o, |_| {}).unwrap();
    assert_eq!(r.sent(), 10_007);
    assert_eq!(r.cores.len(), 1);
    assert_eq!(r.cores[0].errors, 0);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let s = gen.sink_stats().unwrap().total();
    eprintln!("sink: {s:?}");
    assert!(s.stamped <= r.sent());
    assert!(s.stamped > 0, "nothing arrived at the sink");
    // the kernel's own frames (IPv6 router solicitations) are counted, not stamped
    assert!(s.packets >= s.stamped);
    assert!(s.bytes >= s.stamped * 64);
    let lat = gen.sink_stats().unwrap().latency().unwrap();
    assert_eq!(lat.samples, s.stamped);
    assert!(lat.p50 <= lat.p99 && lat.p99 <= lat.p999);

    // a second run adds exactly its count again
    let r2 = gen.run(&o, |_| {}).unwrap();
    assert_eq!(r2.sent(), 10_007);
}

#[test]
fn ipv6_frames_are_sent_and_stamped_at_the_sink() {
    if !privileged() {
        return;
    }
    let p = Pair::new();
    let (gen, _link, a) = setup(&p);
    let mut s = PacketSpec::new(
        "[fd00:198:18::64]:1024".parse().unwrap(),
        "[fd00:198:18::2]:30080".parse().unwrap(),
        L4::Udp,
    );
    s.size = 128;
    s.flows = 100;
    gen.set_template(&Template::build(&s).unwrap(), 0).unwrap();
    gen.reset_sink().unwrap();
    let mut o = RunOptions::new(a, vec![0], Limit::Count(5_003));
    o.netns = Some(p.path());
    let r = gen.run(&o, |_| {}).unwrap();
    assert_eq!(r.sent(), 5_003);
    assert_eq!(r.cores[0].errors, 0);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let st = gen.sink_stats().unwrap().total();
    assert!(st.stamped > 0 && st.stamped <= 5_003, "{st:?}");
    assert!(st.bytes >= st.stamped * 128);
    assert_eq!(
        gen.sink_stats().unwrap().latency().unwrap().samples,
        st.stamped
    );
}

#[test]
fn two_cores_report_two_figures() {
    if !privileged() || !precondition(several_cpus(), "two CPUs") {
        return;
    }
    let p = Pair::new();
    let (gen, _link, a) = setup(&p);
    let mut o = RunOptions::new(a, vec![0, 1], Limit::Count(4_001));
    o.netns = Some(p.path());
    let r = gen.run(&o, |_| {}).unwrap();
    assert_eq!(r.cores.len(), 2);
    assert_eq!(r.cores[0].cpu, 0);
    assert_eq!(r.cores[1].cpu, 1);
    assert_eq!(r.cores[0].sent, 2_001);
    assert_eq!(r.cores[1].sent, 2_000);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let s = gen.sink_stats().unwrap();
    // everything runs on the sending CPU: each CPU's sink counter saw its share
    assert!(s.cpu(0).stamped > 0 && s.cpu(0).stamped <= 2_001);
    assert!(s.cpu(1).stamped > 0 && s.cpu(1).stamped <= 2_000);
}

#[test]
fn time_bounded_and_paced_runs_stop() {
    if !privileged() {
        return;
    }
    let p = Pair::new();
    let (gen, _link, a) = setup(&p);
    let mut o = RunOptions::new(
        a,
        vec![0],
        Limit::Duration(std::time::Duration::from_millis(200)),
    );
    o.netns = Some(p.path());
    o.rate_pps = Some(5_000);
    let r = gen.run(&o, |_| {}).unwrap();
    assert!(r.sent() > 0);
    // paced at 5000/s for 0.2 s: never more than the pace allows plus one chunk
    assert!(r.sent() <= 1_000 + 50, "{}", r.sent());
    gen.reset_sink().unwrap();
    assert_eq!(gen.sink_stats().unwrap().total().packets, 0);
}

#[test]
fn bad_options_are_errors() {
    if !privileged() {
        return;
    }
    let gen = Pktgen::load().unwrap();
    let o = RunOptions::new(1, vec![0], Limit::Count(1));
    assert!(gen.run(&o, |_| {}).is_err(), "no template yet");
    gen.set_template(&Template::build(&spec()).unwrap(), 0)
        .unwrap();
    let o = RunOptions::new(1, vec![0, 0], Limit::Count(1));
    assert!(gen.run(&o, |_| {}).is_err(), "same CPU twice");
    let mut o = RunOptions::new(1, vec![0], Limit::Count(1));
    o.batch = 0;
    assert!(gen.run(&o, |_| {}).is_err());
    o.batch = 64;
    o.ifindex = 999_999;
    assert!(gen.run(&o, |_| {}).is_err(), "no such interface");
}
