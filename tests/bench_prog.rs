//! `xlb bench prog` end to end: the JSON the issue specifies, every path and
//! floor present, and ratios that are what they say (ns / baseline). Short
//! runs; no assertion on speed.
use std::process::Command;

use serde_json::Value;
use xlb_testkit::privileged;

const PATHS: [&str; 15] = [
    "not_ours_pass",
    "ct_hit_local_dnat",
    "ct_miss_maglev_choice",
    "remote_vxlan_encap",
    "udp_new_flow_stateless",
    "udp_new_flow_ct",
    "tcp_syn_stateless",
    "vxlan_decap_reverse_nat",
    "drop_src_range",
    "drop_monitor_on",
    "drop_monitor_every_event",
    "v6_not_ours_pass",
    "v6_ct_hit_local_dnat",
    "v6_ct_miss_maglev_choice",
    "v6_remote_vxlan_encap",
];
const FLOORS: [&str; 4] = [
    "ct_lookup_miss",
    "ct_insert",
    "ct_insert_pair",
    "adjust_head",
];

fn rows<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is an array in {v}"))
}

#[test]
fn json_has_every_path_and_floor_with_consistent_ratios() {
    if !privileged() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_xlb"))
        .args(["bench", "prog", "--json", "--calls", "400"])
        .output()
        .expect("running xlb");
    assert!(
        out.status.success(),
        "xlb bench prog: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("JSON: {e}: {}", String::from_utf8_lossy(&out.stdout)));
    let base = v["baseline_ns"].as_f64().expect("baseline_ns");
    assert!(base > 0.0, "{v}");
    for (key, names) in [("paths", &PATHS[..]), ("floors", &FLOORS[..])] {
        let got: Vec<&str> = rows(&v, key)
            .iter()
            .map(|r| r["name"].as_str().expect("name"))
            .collect();
        assert_eq!(got, names, "{key}");
        for r in rows(&v, key) {
            let ns = r["ns"].as_f64().expect("ns");
            let ratio = r["ratio"].as_f64().expect("ratio");
            assert!(ns > 0.0, "{r}");
            assert!(
                (ratio - ns / base).abs() < 1e-9,
                "ratio = ns / baseline: {r}"
            );
        }
    }
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 3, "baseline_ns, paths, floors: {keys:?}");
}

#[test]
fn bad_flags_are_usage_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_xlb"))
        .args(["bench", "prog", "--calls", "5"])
        .output()
        .expect("running xlb");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--calls"));
}
