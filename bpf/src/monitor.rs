//! The maps of `xlb monitor`: `monitor` (on/off and the rate), `monitor_cpu`
//! (the per-CPU rate limiter's counts) and the `events` ring buffer that the
//! data plane's drop and reject paths write [`Event`]s to while a monitor is on.

use std::net::SocketAddrV4;
use std::os::fd::AsFd;
use std::path::Path;

use libbpf_rs::{MapCore, MapFlags, MapHandle};

use crate::consts::*;
use crate::maps::{from_bytes, Error, Result};
use crate::types::{xlb_event, xlb_monitor, xlb_monitor_cpu};
use crate::wire::{ip, port};
use crate::Reason;

/// The monitor's maps, from a pin directory or a loaded skeleton.
#[derive(Debug)]
pub struct MonitorMaps {
    pub monitor: MapHandle,
    pub monitor_cpu: MapHandle,
    pub events: MapHandle,
}

/// What the rate limiters did, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MonitorCounts {
    /// Events written to the ring buffer.
    pub sent: u64,
    /// Events over the per-CPU rate, counted and not written.
    pub suppressed: u64,
    /// Events the ring buffer had no room for.
    pub lost: u64,
}

fn err(op: &'static str, map: &'static str) -> impl FnOnce(libbpf_rs::Error) -> Error {
    move |source| Error::Map { op, map, source }
}

impl MonitorMaps {
    /// Opens the pinned maps. A pin directory of an xlb without them is
    /// [`Error::MissingMap`], which names the fix.
    pub fn from_pin_dir(dir: &Path) -> Result<Self> {
        let open = |name: &'static str| -> Result<MapHandle> {
            let path = dir.join(name);
            if !path.exists() && dir.join("services").exists() {
                return Err(Error::MissingMap {
                    name,
                    dir: dir.to_owned(),
                    feature: "`xlb monitor`",
                });
            }
            MapHandle::from_pinned_path(&path).map_err(|source| Error::OpenPinned { path, source })
        };
        Ok(Self {
            monitor: open("monitor")?,
            monitor_cpu: open("monitor_cpu")?,
            events: open("events")?,
        })
    }

    /// Duplicates the handles of a loaded XDP skeleton's maps.
    pub fn from_skel(skel: &crate::xdp::XdpSkel<'_>) -> Result<Self> {
        let m = &skel.maps;
        Ok(Self {
            monitor: MapHandle::try_from(&m.monitor).map_err(err("dup fd", "monitor"))?,
            monitor_cpu: MapHandle::try_from(&m.monitor_cpu)
                .map_err(err("dup fd", "monitor_cpu"))?,
            events: MapHandle::try_from(&m.events).map_err(err("dup fd", "events"))?,
        })
    }

    /// The current settings.
    pub fn settings(&self) -> Result<xlb_monitor> {
        Ok(
            match self
                .monitor
                .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
                .map_err(err("lookup", "monitor"))?
            {
                Some(b) => from_bytes("monitor", &b)?,
                None => xlb_monitor::default(),
            },
        )
    }

    /// Turns event writing on (`rate` events per second and CPU; 0 = the
    /// default, `XLB_MON_RATE_DEFAULT`) or off.
    pub fn set(&self, on: bool, rate: u32) -> Result<()> {
        let v = xlb_monitor {
            on: u32::from(on),
            rate,
        };
        // SAFETY: xlb_monitor is Plain (lib.rs).
        let b = unsafe { plain::as_bytes(&v) };
        self.monitor
            .update(&0u32.to_ne_bytes(), b, MapFlags::ANY)
            .map_err(err("update", "monitor"))
    }

    /// The rate limiters' counts, summed over CPUs.
    pub fn counts(&self) -> Result<MonitorCounts> {
        let per_cpu = self
            .monitor_cpu
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(err("lookup_percpu", "monitor_cpu"))?
            .unwrap_or_default();
        let mut s = MonitorCounts::default();
        for b in per_cpu {
            let c: xlb_monitor_cpu = from_bytes("monitor_cpu", &b)?;
            s.sent += c.sent;
            s.suppressed += c.suppressed;
            s.lost += c.lost;
        }
        Ok(s)
    }

    /// The ring buffer's file descriptor (for `libbpf_rs::RingBufferBuilder`).
    pub fn events_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.events.as_fd()
    }
}

/// Which program wrote an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Xdp,
    Tc,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::Tc => "tc",
        }
    }
}

/// One dropped or rejected frame, as the data plane reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// CLOCK_MONOTONIC ns (coarse).
    pub ts: u64,
    pub reason: Reason,
    /// The frame's Service port, when the data plane knew it.
    pub svc_id: Option<u32>,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub proto: u8,
    pub hook: Hook,
    pub ifindex: u32,
    pub len: u32,
}

impl Event {
    /// Decodes a ring buffer record; `None` for a record of another size.
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() != std::mem::size_of::<xlb_event>() {
            return None;
        }
        let e: xlb_event = from_bytes("events", b).ok()?;
        Some(Self {
            ts: e.ts,
            reason: Reason(e.reason),
            svc_id: (e.svc_id != XLB_NO_SVC).then_some(e.svc_id),
            src: SocketAddrV4::new(ip(e.saddr), port(e.sport)),
            dst: SocketAddrV4::new(ip(e.daddr), port(e.dport)),
            proto: e.proto,
            hook: if u32::from(e.hook) == XLB_HOOK_TC {
                Hook::Tc
            } else {
                Hook::Xdp
            },
            ifindex: e.ifindex,
            len: e.len,
        })
    }
}
