//! # `xlb lab down`: remove whatever a lab made, in whatever state it is

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::cmd::{ip, require_root};
use crate::*;

/// What `down` removed.
#[derive(Debug, Default, Serialize)]
pub struct DownReport {
    pub processes: usize,
    pub namespaces: Vec<String>,
    pub pin_dirs: Vec<PathBuf>,
}

/// Removes everything a lab with `prefix` may have made, whatever state it is
/// in: processes (by namespace and by the lab tag in their environment), pin
/// directories, namespaces, the state directory.
pub fn down(prefix: &str) -> Result<DownReport> {
    validate_prefix(prefix)?;
    require_root()?;
    let mut report = DownReport::default();
    let nss: Vec<String> = netns::list()
        .into_iter()
        .filter(|n| is_lab_ns(prefix, n))
        .collect();
    let inodes: Vec<u64> = nss.iter().filter_map(|n| netns::inode(n)).collect();
    report.processes = procs::stop_all(&inodes, prefix, Duration::from_secs(3));
    if let Ok(rd) = std::fs::read_dir(BPFFS_ROOT) {
        for e in rd.filter_map(|e| e.ok()) {
            let name = e.file_name();
            if name.to_str().is_some_and(|s| is_lab_pin_dir(prefix, s)) {
                let p = e.path();
                std::fs::remove_dir_all(&p).map_err(io_ctx(format!("removing {}", p.display())))?;
                report.pin_dirs.push(p);
            }
        }
    }
    // The agents' Service-names files (/run/xlb/<flattened pin dir>.names.json)
    // outlive their pin directories unless removed here.
    if let Ok(rd) = std::fs::read_dir(xlb_loader::STATE_DIR) {
        for e in rd.filter_map(|e| e.ok()) {
            let name = e.file_name();
            let lab_file = name
                .to_str()
                .and_then(|s| s.strip_prefix("sys_fs_bpf_"))
                .and_then(|s| s.strip_suffix(".names.json"))
                .is_some_and(|s| is_lab_pin_dir(prefix, s));
            if lab_file {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let mut failed = Vec::new();
    for ns in nss {
        match ip(&["netns", "del", &ns]) {
            Ok(_) => report.namespaces.push(ns),
            Err(e) => failed.push(e.to_string()),
        }
    }
    let state = state_dir(prefix);
    if state.exists() {
        std::fs::remove_dir_all(&state).map_err(io_ctx(format!("removing {}", state.display())))?;
    }
    if !failed.is_empty() {
        return Err(Error::Command {
            cmd: "ip netns del".into(),
            msg: failed.join("; "),
        });
    }
    Ok(report)
}
