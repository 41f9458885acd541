//! `xlb monitor`: two monitors on one pin directory both print the events
//! (the first reads the ring buffer, the second follows it, then leads when
//! the first ends), each ends with a summary, and the events are off again
//! after the last one.
mod cli_support;
mod packet_util;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli_support::{pin_dir, KillOnDrop};
use packet_util::{sa, tcp_key, Frame, XDP_DROP};
use serde_json::Value;
use xlb_bpf::consts::*;
use xlb_bpf::monitor::MonitorMaps;
use xlb_bpf::types::*;
use xlb_loader::{DataPlane, LoadOptions};

fn monitor(pin: &std::path::Path) -> KillOnDrop {
    KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_xlb"))
            .arg("--pin-dir")
            .arg(pin)
            .args(["monitor", "--json", "--count", "3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run xlb monitor"),
    )
}

/// Waits for `cond`, failing after a generous deadline (no assertion on speed).
fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_monitors_both_see_every_event() {
    if !xlb_testkit::privileged() {
        return;
    }
    let pin = pin_dir();
    let dp = DataPlane::load(&LoadOptions {
        pin_dir: Some(pin.path.clone()),
        ..Default::default()
    })
    .unwrap();
    let m = &dp.maps;
    m.put_backend(1, &xlb_backend::new(sa("10.244.1.5:8080"), None, 1))
        .unwrap();
    m.write_maglev(0, &[1; 7]).unwrap();
    // Source ranges that admit nobody: every frame is dropped.
    m.put_service(
        &tcp_key("10.96.0.30:80"),
        &xlb_svc_val {
            svc_id: 3,
            flags: XLB_SVC_F_SRC_RANGES,
            table_size: 7,
            n_local: 7,
            ..Default::default()
        },
    )
    .unwrap();
    let mon = MonitorMaps::from_skel(&dp.xdp).unwrap();

    let mut first = monitor(&pin.path);
    wait("the first monitor to turn events on", || {
        mon.settings().unwrap().on == 1
    });
    let mut second = monitor(&pin.path);
    // Frames until both have printed their 3 events and ended.
    let mut port = 40000u16;
    wait("both monitors to end", || {
        port += 1;
        let f = Frame::tcp(sa(&format!("198.18.0.100:{port}")), sa("10.96.0.30:80")).build();
        let o = dp
            .xdp_prog()
            .test_run(libbpf_rs::ProgramInput {
                data_in: Some(&f),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(o.return_value, XDP_DROP);
        std::thread::sleep(Duration::from_millis(30));
        first.0.try_wait().unwrap().is_some() && second.0.try_wait().unwrap().is_some()
    });
    for (name, p) in [("first", &mut first), ("second", &mut second)] {
        let st = p.0.wait().unwrap();
        let mut out = String::new();
        let mut err = String::new();
        p.0.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        p.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert!(st.success(), "{name}: {out}{err}");
        let lines: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {e}: {l}")))
            .collect();
        assert_eq!(
            lines.len(),
            4,
            "{name}: 3 events and the summary:\n{out}{err}"
        );
        for e in &lines[..3] {
            assert_eq!(e["reason"], "drop_src_range", "{name}: {e}");
            assert_eq!(e["dst"], "10.96.0.30:80", "{name}: {e}");
            assert_eq!(e["svc_id"], 3, "{name}: {e}");
        }
        assert_eq!(lines[3]["summary"]["events"], 3, "{name}: {out}");
        if name == "second" {
            assert!(err.contains("following its events"), "{name}: {err}");
        }
    }
    assert_eq!(
        mon.settings().unwrap().on,
        0,
        "events off after the last monitor"
    );
}
