//! Growing the maps under traffic (`xlb_loader::grow`): a UDP flow from a
//! client namespace to a ClusterIP (10.96.0.10:9999, which only xlb's DNAT
//! turns into a local backend: a packet that missed the program would be
//! dropped by the kernel) flows through the XDP-attached uplink of a node
//! namespace while the maps are grown and swapped in with new programs.
//! Every packet arrives, at the backend the flow had before the grow: after
//! the grow the new Maglev table sends new flows to the other backend, and
//! the old flow keeps its backend through connection tracking, which the
//! grow shares rather than copies. The kernel's run counters of the two
//! program versions add up to the packets sent: the hook was never empty.
//! The IPv6 frontend map `services6` grows the same way, its entry copied.

mod cli_support;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cli_support::{client_and_attached_node, enable_stats, pin_dir, prog_fd, run_cnt};
use libbpf_rs::MapCore;
use std::os::fd::AsFd;
use xlb_bpf::types::{xlb_backend, xlb_svc6_key, xlb_svc_key, xlb_svc_val};
use xlb_bpf::{Kind, Maps, Proto};
use xlb_loader::grow::Sizes;
use xlb_loader::{sys, DataPlane, LoadOptions};
use xlb_testkit::enter;

const PORT: u16 = 9999;
const TABLE: u32 = 7;

/// A UDP sink on `addr:PORT` in the namespace at `path`: counts datagrams
/// until `done`.
fn sink(
    path: std::path::PathBuf,
    addr: &'static str,
    got: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
) -> (std::thread::JoinHandle<()>, Arc<AtomicBool>) {
    let ready = Arc::new(AtomicBool::new(false));
    let r = ready.clone();
    let h = std::thread::spawn(move || {
        enter(&path);
        let s = UdpSocket::bind((addr, PORT)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        // Room for seconds of the stream: on a loaded machine (test
        // executables run side by side) this thread may not run for a while,
        // and a datagram the socket had no room for would count as lost.
        let size: libc::c_int = 16 << 20;
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
        r.store(true, Ordering::SeqCst);
        let mut buf = [0u8; 64];
        loop {
            match s.recv(&mut buf) {
                Ok(_) => {
                    got.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) if done.load(Ordering::SeqCst) => break,
                Err(_) => {}
            }
        }
    });
    (h, ready)
}

fn id_of(fd: std::os::fd::BorrowedFd<'_>) -> u32 {
    libbpf_rs::MapInfo::new(fd).unwrap().info.id
}

#[test]
fn maps_grow_under_traffic_and_a_flow_keeps_its_backend() {
    if !xlb_testkit::privileged() {
        return;
    }
    let pin = pin_dir();
    let (client, node) = client_and_attached_node(&pin.path, &["198.18.0.3"]);
    // 10.96.0.10:9999/UDP, two local backends; the table names only the
    // first for now.
    let maps = Maps::from_pin_dir(&pin.path).unwrap();
    for (id, a) in [(1, "198.18.0.2:9999"), (2, "198.18.0.3:9999")] {
        maps.put_backend(id, &xlb_backend::new(a.parse().unwrap(), None, 1))
            .unwrap();
    }
    maps.write_maglev(0, &[1; TABLE as usize]).unwrap();
    let key = xlb_svc_key::addr("10.96.0.10:9999".parse().unwrap(), Proto::Udp);
    let svc = xlb_svc_val {
        svc_id: 1,
        table_off: 0,
        table_size: TABLE,
        n_local: 2,
        fe_type: Kind::ClusterIp.fe_type(),
        ..Default::default()
    };
    maps.put_service(&key, &svc).unwrap();
    let key6 = xlb_svc6_key::addr("[fd00:96::10]:9999".parse().unwrap(), Proto::Udp);
    maps.put_service6(&key6, &svc).unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let (got1, got2) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (rx1, r1) = sink(node.path(), "198.18.0.2", got1.clone(), done.clone());
    let (rx2, r2) = sink(node.path(), "198.18.0.3", got2.clone(), done.clone());
    while !(r1.load(Ordering::SeqCst) && r2.load(Ordering::SeqCst)) {
        std::thread::sleep(Duration::from_millis(5));
    }

    // The flow: one socket (fixed source port), a steady stream.
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tx = {
        let (sent, stop, path) = (sent.clone(), stop.clone(), client.path());
        std::thread::spawn(move || {
            enter(&path);
            let s = UdpSocket::bind("198.18.0.1:0").unwrap();
            s.connect(("10.96.0.10", PORT)).unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for _ in 0..10 {
                    s.send(&n.to_be_bytes()).expect("send");
                    n += 1;
                }
                sent.store(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let _stats = enable_stats();
    let current = || node.run(|| sys::xdp_query(sys::ifindex("up0").unwrap()).unwrap().1);
    let old_prog = current();
    let old_fd = prog_fd(old_prog);
    while sent.load(Ordering::SeqCst) < 500 {
        std::thread::sleep(Duration::from_millis(5));
    }

    // Grow, in the node namespace (the links' interfaces are named there).
    let before = Maps::from_pin_dir(&pin.path).unwrap();
    let (ct_id, maglev_id) = (id_of(before.ct.as_fd()), id_of(before.maglev.as_fd()));
    let old = before.maglev.max_entries();
    let old6 = before.services6_capacity();
    let sent_before = sent.load(Ordering::SeqCst);
    let pin_path = pin.path.clone();
    let grown = node.run(move || {
        let dp = DataPlane::load(&LoadOptions {
            pin_dir: Some(pin_path.clone()),
            ..Default::default()
        })
        .unwrap();
        let cur = dp.sizes();
        let want = Sizes {
            maglev: cur.maglev * 2,
            services: cur.services * 2,
            backends: cur.backends * 2,
            services6: cur.services6 * 2,
            ..cur
        };
        let new = dp.grow(&want).unwrap().expect("grown");
        xlb_loader::grow::commit(&pin_path, &dp, &new).unwrap();
        new.sizes()
    });
    let sent_after = sent.load(Ordering::SeqCst);
    let new_prog = current();
    assert_ne!(new_prog, old_prog, "new programs in the link");
    let new_fd = prog_fd(new_prog);
    let after = Maps::from_pin_dir(&pin.path).unwrap();
    assert_eq!(grown.maglev, old * 2);
    assert_eq!(
        after.maglev.max_entries(),
        old * 2,
        "the pin is the grown map"
    );
    assert_ne!(id_of(after.maglev.as_fd()), maglev_id);
    assert_eq!(grown.services6, old6 * 2);
    assert_eq!(after.services6_capacity(), old6 * 2, "services6 grown");
    assert_eq!(
        after.service6(&key6).unwrap().map(|v| v.svc_id),
        Some(1),
        "services6 entries copied"
    );
    assert_eq!(
        id_of(after.ct.as_fd()),
        ct_id,
        "connection tracking is shared"
    );
    assert_eq!(after.service(&key).unwrap().map(|v| v.svc_id), Some(1));
    assert_eq!(
        after.read_maglev(0, TABLE).unwrap(),
        vec![1; TABLE as usize]
    );

    // New flows now go to the second backend; the running one keeps the
    // first (its connection-tracking entry).
    after.write_maglev(0, &[2; TABLE as usize]).unwrap();
    client.run(|| {
        let s = UdpSocket::bind("198.18.0.1:0").unwrap();
        s.connect(("10.96.0.10", PORT)).unwrap();
        for _ in 0..10 {
            s.send(b"new").unwrap();
        }
    });
    let mark = sent.load(Ordering::SeqCst);
    while sent.load(Ordering::SeqCst) < mark + 500 {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::SeqCst);
    tx.join().unwrap();
    let sent = sent.load(Ordering::SeqCst);
    let mut last = u64::MAX;
    while got1.load(Ordering::SeqCst) + got2.load(Ordering::SeqCst) != last {
        last = got1.load(Ordering::SeqCst) + got2.load(Ordering::SeqCst);
        if got1.load(Ordering::SeqCst) >= sent {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    done.store(true, Ordering::SeqCst);
    rx1.join().unwrap();
    rx2.join().unwrap();
    let (g1, g2) = (got1.load(Ordering::SeqCst), got2.load(Ordering::SeqCst));
    eprintln!(
        "sent {sent} ({} during the grow), backend 1 got {g1}, backend 2 got {g2}",
        sent_after - sent_before
    );
    assert_eq!(g1, sent, "the flow lost packets or changed backend");
    assert_eq!(g2, 10, "a new flow takes the new table");
    let runs = (run_cnt(&old_fd), run_cnt(&new_fd));
    assert!(runs.0 > 0 && runs.1 > 0, "both versions ran: {runs:?}");
    assert_eq!(
        runs.0 + runs.1,
        sent + 10,
        "every packet met an xlb program"
    );
}
