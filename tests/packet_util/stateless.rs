//! # Stateless-path fixtures (tests/packet_xdp_stateless*.rs)
//!
//! The two Maglev tables of a Service whose table changes under live flows
//! (the old one, in force before, and the new one), its `svc_stable` entry
//! (bpf/include/stateless.h), and the wait that lets the flow cache lapse.

use std::time::Duration;

use xlb_bpf::types::xlb_svc_stable;

use super::Env;

/// Maglev regions of the old and the new table.
pub const OLD_OFF: u32 = 512;
pub const NEW_OFF: u32 = 600;
/// The old table names backend 30 only, the new one 30 and 31 (each test
/// writes backends of those ids).
pub const OLD: [u32; 13] = [30; 13];
pub const NEW: [u32; 13] = [30, 31, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 31];

/// `svc_stable[svc]`: the stable table at `off` of `size` slots, the window
/// open until `window_end` (0: closed); `ct_seen` is the write's now.
pub fn put_stable(env: &Env, svc: u32, off: u32, size: u32, window_end: u64) {
    let v = xlb_svc_stable {
        table_off: off,
        table_size: size,
        window_end,
        ct_seen: 0,
    };
    env.maps().put_svc_stable(svc, &v).unwrap();
}

/// Lets every flow-cache copy lapse (50 ms), so the next packet takes the
/// real path.
pub fn cache_lapse() {
    std::thread::sleep(Duration::from_millis(80));
}
