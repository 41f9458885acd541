//! Steady, sequence-numbered TCP and UDP streams through lab Services, for
//! tests that disturb whoever owns the data plane (an agent restart, an
//! upgrade) and count what the streams lost.
//!
//! - A TCP flow is one connection to a lab backend (`xlb lab backend`, which
//!   echoes each line): it sends `t<seq>` every [`INTERVAL`] and checks that
//!   the echo is that line from the backend that greeted it. A reset, an
//!   EOF, a wrong echo or no echo within [`TCP_TIMEOUT`] ends the flow with
//!   an error.
//! - A UDP flow is one connected socket with a fixed source port sending
//!   `u<seq>` every [`INTERVAL`]; a second thread receives the backend's
//!   echoes (`NAME PEER u<seq>`) and records which sequence numbers came
//!   back and from which backend. A connected socket accepts datagrams from
//!   the dialled address only, so a reply that lost its reverse NAT counts as
//!   lost too. Lost = sent minus distinct sequence numbers received, after
//!   the replies have drained.
//!
//! Sockets are made inside the flow's namespace ([`netns::run`]) and used
//! from plain threads afterwards. [`Streams::finish`] stops and joins every
//! thread; dropping [`Streams`] stops them too (a failing test unwinds
//! without leaving threads that talk to a lab being taken down).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use xlb_lab::netns;
use xlb_lab::probe::{Conn, Reply};

/// Pause between two messages of a flow.
pub const INTERVAL: Duration = Duration::from_millis(3);
/// How long a TCP flow waits for an echo before it calls the connection lost.
pub const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound for progress waits: a stalled flow, not a slow one.
const PROGRESS_LIMIT: Duration = Duration::from_secs(90);
/// Replies stop draining once none arrived for this long.
const DRAIN_QUIET: Duration = Duration::from_secs(3);

/// What one TCP flow did.
#[derive(Debug)]
pub struct TcpResult {
    pub label: String,
    pub backend: String,
    pub exchanged: u64,
    pub error: Option<String>,
}

/// What one UDP flow did.
#[derive(Debug)]
pub struct UdpResult {
    pub label: String,
    pub sent: u64,
    /// Distinct sequence numbers echoed back.
    pub received: u64,
    pub duplicates: u64,
    /// Missing sequence numbers as ranges `[a, b]`.
    pub missing: Vec<(u64, u64)>,
    pub backends: BTreeSet<String>,
    pub errors: Vec<String>,
}

impl UdpResult {
    pub fn lost(&self) -> u64 {
        self.sent - self.received
    }
}

struct TcpFlow {
    label: String,
    count: Arc<AtomicU64>,
    /// Set when the connection failed (the flow then stops).
    failed: Arc<Mutex<Option<String>>>,
    handle: Option<JoinHandle<TcpResult>>,
}

struct UdpFlow {
    label: String,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    tx: Option<JoinHandle<Vec<String>>>,
    rx: Option<JoinHandle<RxState>>,
    rx_stop: Arc<AtomicBool>,
}

#[derive(Default)]
struct RxState {
    seen: Vec<bool>,
    duplicates: u64,
    backends: BTreeSet<String>,
    errors: Vec<String>,
}

/// Every flow of a test.
pub struct Streams {
    stop: Arc<AtomicBool>,
    tcp: Vec<TcpFlow>,
    udp: Vec<UdpFlow>,
}

/// The outcome of every flow.
#[derive(Debug)]
pub struct Report {
    pub tcp: Vec<TcpResult>,
    pub udp: Vec<UdpResult>,
}

impl Default for Streams {
    fn default() -> Self {
        Self::new()
    }
}

impl Streams {
    pub fn new() -> Self {
        Self {
            stop: Arc::new(AtomicBool::new(false)),
            tcp: Vec::new(),
            udp: Vec::new(),
        }
    }

    /// `conns` TCP flows from namespace `ns` (source address `from`, any when
    /// `None`) to `to`. Panics when a connection cannot be opened.
    pub fn tcp(
        &mut self,
        label: &str,
        ns: &str,
        from: Option<Ipv4Addr>,
        to: SocketAddrV4,
        conns: usize,
    ) {
        for i in 0..conns {
            let conn = netns::run(ns, move || Conn::open(from, to, TCP_TIMEOUT))
                .unwrap()
                .unwrap_or_else(|e| panic!("{label} #{i}: connecting to {to}: {e}"));
            let label = format!("{label} #{i} ({})", conn.greeting.name);
            let count = Arc::new(AtomicU64::new(0));
            let failed = Arc::new(Mutex::new(None));
            let (stop, c, f) = (self.stop.clone(), count.clone(), failed.clone());
            let l = label.clone();
            let handle = std::thread::spawn(move || tcp_loop(l, conn, stop, c, f));
            self.tcp.push(TcpFlow {
                label,
                count,
                failed,
                handle: Some(handle),
            });
        }
    }

    /// `flows` UDP flows from namespace `ns` to `to`, each from its own
    /// source port.
    pub fn udp(&mut self, label: &str, ns: &str, to: SocketAddrV4, flows: usize) {
        for i in 0..flows {
            let sock = netns::run(ns, move || -> std::io::Result<UdpSocket> {
                let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
                s.connect(to)?;
                s.set_read_timeout(Some(Duration::from_millis(100)))?;
                Ok(s)
            })
            .unwrap()
            .unwrap_or_else(|e| panic!("{label} #{i}: socket to {to}: {e}"));
            let port = sock.local_addr().map(|a| a.port()).unwrap_or(0);
            let label = format!("{label} #{i} (port {port})");
            let rx_sock = sock.try_clone().expect("cloning a UDP socket");
            let (sent, received) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
            let rx_stop = Arc::new(AtomicBool::new(false));
            let (stop, s) = (self.stop.clone(), sent.clone());
            let tx = std::thread::spawn(move || udp_send(sock, stop, s));
            let (r, st) = (received.clone(), rx_stop.clone());
            let rx = std::thread::spawn(move || udp_recv(rx_sock, st, r));
            self.udp.push(UdpFlow {
                label,
                sent,
                received,
                tx: Some(tx),
                rx: Some(rx),
                rx_stop,
            });
        }
    }

    /// Per flow: its label and messages answered so far (TCP echoes, UDP
    /// distinct replies).
    fn counts(&self) -> Vec<(&str, u64)> {
        self.tcp
            .iter()
            .map(|f| (f.label.as_str(), f.count.load(Ordering::Relaxed)))
            .chain(
                self.udp
                    .iter()
                    .map(|f| (f.label.as_str(), f.received.load(Ordering::Relaxed))),
            )
            .collect()
    }

    /// TCP flows that failed so far.
    fn failures(&self) -> Vec<String> {
        self.tcp
            .iter()
            .filter_map(|f| {
                let e = f.failed.lock().unwrap_or_else(|p| p.into_inner());
                e.as_ref().map(|e| format!("{}: {e}", f.label))
            })
            .collect()
    }

    /// Waits until every flow has had `n` more messages answered than now.
    /// Err at once when a TCP flow failed, else names the flows that made
    /// no such progress within a generous bound.
    pub fn advance(&self, n: u64) -> Result<(), String> {
        let start: Vec<u64> = self.counts().iter().map(|c| c.1).collect();
        let t0 = Instant::now();
        loop {
            let failed = self.failures();
            if !failed.is_empty() {
                return Err(format!("TCP connections failed: {failed:?}"));
            }
            let behind: Vec<String> = self
                .counts()
                .iter()
                .zip(&start)
                .filter(|((_, now), s)| *now < *s + n)
                .map(|((l, now), s)| format!("{l}: {} of {n}", now - s))
                .collect();
            if behind.is_empty() {
                return Ok(());
            }
            if t0.elapsed() > PROGRESS_LIMIT {
                return Err(format!(
                    "flows without progress for {PROGRESS_LIMIT:?}: {behind:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops every flow, lets the UDP replies drain and reports.
    pub fn finish(mut self) -> Report {
        self.stop.store(true, Ordering::SeqCst);
        let tcp = self
            .tcp
            .iter_mut()
            .map(|f| f.handle.take().unwrap().join().expect("tcp flow thread"))
            .collect();
        let mut udp_errors = Vec::new();
        for f in &mut self.udp {
            udp_errors.push(f.tx.take().unwrap().join().expect("udp sender thread"));
        }
        // Drain: until every reply is in or none came for DRAIN_QUIET.
        let total = |s: &Self| -> u64 {
            s.udp
                .iter()
                .map(|f| f.received.load(Ordering::SeqCst))
                .sum()
        };
        let sent: u64 = self.udp.iter().map(|f| f.sent.load(Ordering::SeqCst)).sum();
        let (mut last, mut since) = (total(&self), Instant::now());
        while last < sent && since.elapsed() < DRAIN_QUIET {
            std::thread::sleep(Duration::from_millis(50));
            let now = total(&self);
            if now != last {
                (last, since) = (now, Instant::now());
            }
        }
        let mut udp = Vec::new();
        for (f, tx_errors) in self.udp.iter_mut().zip(udp_errors) {
            f.rx_stop.store(true, Ordering::SeqCst);
            let rx = f.rx.take().unwrap().join().expect("udp receiver thread");
            let sent = f.sent.load(Ordering::SeqCst);
            let mut missing = Vec::new();
            for seq in 0..sent {
                if !rx.seen.get(seq as usize).copied().unwrap_or(false) {
                    match missing.last_mut() {
                        Some((_, b)) if *b + 1 == seq => *b = seq,
                        _ => missing.push((seq, seq)),
                    }
                }
            }
            let received = (0..sent as usize)
                .filter(|&i| rx.seen.get(i).copied().unwrap_or(false))
                .count() as u64;
            let mut errors = tx_errors;
            errors.extend(rx.errors);
            if rx.seen.len() as u64 > sent {
                errors.push(format!(
                    "echo of sequence numbers never sent (up to {})",
                    rx.seen.len()
                ));
            }
            udp.push(UdpResult {
                label: f.label.clone(),
                sent,
                received,
                duplicates: rx.duplicates,
                missing,
                backends: rx.backends,
                errors,
            });
        }
        Report { tcp, udp }
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for f in &self.udp {
            f.rx_stop.store(true, Ordering::SeqCst);
        }
        for f in &mut self.tcp {
            if let Some(h) = f.handle.take() {
                let _ = h.join();
            }
        }
        for f in &mut self.udp {
            if let Some(h) = f.tx.take() {
                let _ = h.join();
            }
            if let Some(h) = f.rx.take() {
                let _ = h.join();
            }
        }
    }
}

fn tcp_loop(
    label: String,
    mut conn: Conn,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    failed: Arc<Mutex<Option<String>>>,
) -> TcpResult {
    let mut seq = 0u64;
    let mut error = None;
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = conn.exchange(&format!("t{seq}")) {
            let msg = format!("after {seq} echoes: {e}");
            *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg.clone());
            error = Some(msg);
            break;
        }
        seq += 1;
        count.store(seq, Ordering::Relaxed);
        std::thread::sleep(INTERVAL);
    }
    TcpResult {
        label,
        backend: conn.greeting.name.clone(),
        exchanged: seq,
        error,
    }
}

fn udp_send(sock: UdpSocket, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) -> Vec<String> {
    let mut seq = 0u64;
    let mut errors = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match sock.send(format!("u{seq}").as_bytes()) {
            Ok(_) => {
                seq += 1;
                sent.store(seq, Ordering::SeqCst);
            }
            // ECONNREFUSED: an ICMP error came back for an earlier datagram.
            Err(e) if errors.len() < 10 => errors.push(format!("send after {seq}: {e}")),
            Err(_) => {}
        }
        std::thread::sleep(INTERVAL);
    }
    errors
}

fn udp_recv(sock: UdpSocket, stop: Arc<AtomicBool>, received: Arc<AtomicU64>) -> RxState {
    let mut st = RxState::default();
    let mut buf = [0u8; 512];
    let mut distinct = 0u64;
    let note = |st: &mut RxState, e: String| {
        if st.errors.len() < 10 {
            st.errors.push(e);
        }
    };
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                let seq = Reply::parse(&text).and_then(|r| {
                    let seq = r.echo.as_deref()?.strip_prefix('u')?.parse::<u64>().ok()?;
                    st.backends.insert(r.name);
                    Some(seq)
                });
                let Some(seq) = seq else {
                    note(&mut st, format!("unexpected reply {text:?}"));
                    continue;
                };
                let i = seq as usize;
                if st.seen.len() <= i {
                    st.seen.resize(i + 1, false);
                }
                if st.seen[i] {
                    st.duplicates += 1;
                } else {
                    st.seen[i] = true;
                    distinct += 1;
                    received.store(distinct, Ordering::SeqCst);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
            }
            Err(e) => note(&mut st, format!("recv: {e}")),
        }
    }
    st
}

impl Report {
    /// One line per flow, for the test output.
    pub fn print(&self, case: &str) {
        for t in &self.tcp {
            eprintln!(
                "[{case}] tcp {}: {} echoes{}",
                t.label,
                t.exchanged,
                t.error
                    .as_deref()
                    .map(|e| format!(", ERROR {e}"))
                    .unwrap_or_default()
            );
        }
        for u in &self.udp {
            eprintln!(
                "[{case}] udp {}: sent {}, echoed {}, lost {}{}{}, backends {:?}{}",
                u.label,
                u.sent,
                u.received,
                u.lost(),
                if u.missing.is_empty() {
                    String::new()
                } else {
                    format!(" (missing {:?})", u.missing)
                },
                if u.duplicates > 0 {
                    format!(", {} duplicates", u.duplicates)
                } else {
                    String::new()
                },
                u.backends,
                if u.errors.is_empty() {
                    String::new()
                } else {
                    format!(", ERRORS {:?}", u.errors)
                }
            );
        }
        eprintln!(
            "[{case}] summary: {} TCP connections ({} failed, {} echoes), {} UDP flows: {} datagrams sent, {} lost",
            self.tcp.len(),
            self.tcp_failures().len(),
            self.tcp.iter().map(|t| t.exchanged).sum::<u64>(),
            self.udp.len(),
            self.udp.iter().map(|u| u.sent).sum::<u64>(),
            self.lost()
        );
    }

    /// Datagrams lost over every UDP flow.
    pub fn lost(&self) -> u64 {
        self.udp.iter().map(UdpResult::lost).sum()
    }

    /// TCP flows that ended with an error.
    pub fn tcp_failures(&self) -> Vec<String> {
        self.tcp
            .iter()
            .filter_map(|t| t.error.as_ref().map(|e| format!("{}: {e}", t.label)))
            .collect()
    }

    /// UDP flows with socket errors, duplicates, or more than one backend
    /// (an established flow keeps its backend).
    pub fn udp_faults(&self) -> Vec<String> {
        self.udp
            .iter()
            .filter(|u| !u.errors.is_empty() || u.duplicates > 0 || u.backends.len() != 1)
            .map(|u| {
                format!(
                    "{}: errors {:?}, {} duplicates, backends {:?}",
                    u.label, u.errors, u.duplicates, u.backends
                )
            })
            .collect()
    }
}

/// Shared by tests that must not overlap (streams are sensitive to a
/// neighbour's lab coming up on the same CPUs).
pub static SERIAL: Mutex<()> = Mutex::new(());
