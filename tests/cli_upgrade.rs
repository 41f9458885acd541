//! An upgrade under traffic loses nothing: UDP packets to a ClusterIP
//! (10.96.0.10:9999, which only xlb's DNAT turns into the node's backend
//! 198.18.0.2:9999: a packet that missed the program would be dropped by the
//! kernel, which has no such address) flow from a client namespace through
//! the XDP-attached uplink of a node namespace to a receiving socket while `xlb attach` is run again and again (each run
//! loads the programs anew and swaps them inside the pinned links). Every
//! packet sent arrives at the socket, and every one of them was run through
//! one of the XDP program versions (the kernel's per-program run counters
//! add up to exactly the number sent): the hook was never empty.

mod cli_support;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cli_support::{client_and_attached_node, enable_stats, pin_dir, prog_fd, run_cnt, stderr, xlb};
use xlb_loader::sys;
use xlb_testkit::enter;

const PORT: u16 = 9999;
const MAX_PACKETS: u64 = 400_000;

fn set_rcvbuf(s: &UdpSocket, bytes: i32) {
    use std::os::fd::AsRawFd;
    // SAFETY: valid socket and option value; SO_RCVBUFFORCE needs CAP_NET_ADMIN (root here).
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const i32).cast(),
            4,
        );
    }
}

#[test]
fn upgrade_under_traffic_drops_zero_packets() {
    if !xlb_testkit::privileged() {
        return;
    }
    let pin = pin_dir();
    let (client, node) = client_and_attached_node(&pin.path, &[]);
    // The Service: 10.96.0.10:9999/UDP -> local backend 198.18.0.2:9999.
    let maps = xlb_bpf::Maps::from_pin_dir(&pin.path).unwrap();
    let vip = "10.96.0.10:9999".parse().unwrap();
    maps.put_backend(
        1,
        &xlb_bpf::types::xlb_backend::new("198.18.0.2:9999".parse().unwrap(), None, 1),
    )
    .unwrap();
    maps.write_maglev(0, &[1; 7]).unwrap();
    let svc = xlb_bpf::types::xlb_svc_val {
        svc_id: 1,
        table_off: 0,
        table_size: 7,
        n_local: 1,
        fe_type: xlb_bpf::Kind::ClusterIp.fe_type(),
        ..Default::default()
    };
    maps.put_service(
        &xlb_bpf::types::xlb_svc_key::addr(vip, xlb_bpf::Proto::Udp),
        &svc,
    )
    .unwrap();

    // Sink: a UDP socket in the node namespace.
    let received = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicBool::new(false));
    let done_rx = Arc::new(AtomicBool::new(false));
    let rx = {
        let (received, ready, done_rx, path) = (
            received.clone(),
            ready.clone(),
            done_rx.clone(),
            node.path(),
        );
        std::thread::spawn(move || {
            enter(&path);
            let s = UdpSocket::bind(("0.0.0.0", PORT)).unwrap();
            set_rcvbuf(&s, 64 << 20);
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            ready.store(true, Ordering::SeqCst);
            let mut buf = [0u8; 64];
            loop {
                match s.recv(&mut buf) {
                    Ok(_) => {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) if done_rx.load(Ordering::SeqCst) => break,
                    Err(_) => {}
                }
            }
        })
    };
    while !ready.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }

    // Source: a steady stream from the client namespace until told to stop.
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tx = {
        let (sent, stop, path) = (sent.clone(), stop.clone(), client.path());
        std::thread::spawn(move || {
            enter(&path);
            let s = UdpSocket::bind("198.18.0.1:0").unwrap();
            s.connect(("10.96.0.10", PORT)).unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) && n < MAX_PACKETS {
                for _ in 0..20 {
                    s.send(&n.to_be_bytes()).expect("send");
                    n += 1;
                }
                sent.store(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };

    // Per-program run counters, and an fd on every program version so each
    // can be read after it was replaced.
    let _stats = enable_stats();
    let current = || node.run(|| sys::xdp_query(sys::ifindex("up0").unwrap()).unwrap().1);
    let mut progs = vec![current()];
    let mut fds = vec![prog_fd(progs[0])];
    let mut during = Vec::new();
    for _ in 0..5 {
        let before = sent.load(Ordering::SeqCst);
        let o = xlb(
            Some(&node),
            &pin.path,
            &["attach", "--iface", "up0", "--pod-ifaces", ""],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(cli_support::stdout(&o).contains("replaced"));
        during.push(sent.load(Ordering::SeqCst) - before);
        let id = current();
        progs.push(id);
        fds.push(prog_fd(id));
    }
    stop.store(true, Ordering::SeqCst);
    tx.join().unwrap();
    let sent = sent.load(Ordering::SeqCst);
    // Wait for the sink to drain (bounded: it stops growing).
    let mut last = u64::MAX;
    while received.load(Ordering::SeqCst) != last {
        last = received.load(Ordering::SeqCst);
        if last == sent {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    done_rx.store(true, Ordering::SeqCst);
    rx.join().unwrap();
    let received = received.load(Ordering::SeqCst);

    let mut distinct = progs.clone();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        progs.len(),
        "every upgrade installed a new program: {progs:?}"
    );
    assert!(
        during.iter().all(|&d| d > 0),
        "traffic flowed during every upgrade: {during:?}"
    );
    let stats = node.ip_out(&["-s", "link", "show", "up0"]);
    eprintln!("sent {sent}, received {received}, packets sent during each upgrade {during:?}");
    assert_eq!(sent, received, "packets lost across upgrades\n{stats}");
    let runs: Vec<u64> = fds.iter().map(run_cnt).collect();
    eprintln!("XDP runs per program version {runs:?}");
    assert!(
        runs.iter().filter(|&&r| r > 0).count() >= 2,
        "traffic saw several versions: {runs:?}"
    );
    assert_eq!(
        runs.iter().sum::<u64>(),
        sent,
        "every packet went through an xlb XDP program"
    );
}
