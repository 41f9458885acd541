//! Following pod interfaces with rtnetlink.

mod support;

use std::os::fd::AsFd;
use std::time::Duration;

use support::{pin_dir, Netns};
use xlb_loader::attach::{self, Hook};
use xlb_loader::netlink::{apply_event, IfaceEvent, PodIfaceWatcher};
use xlb_loader::{DataPlane, LoadOptions};

fn wait_for(w: &mut PodIfaceWatcher, want: impl Fn(&IfaceEvent) -> bool) -> Vec<IfaceEvent> {
    let mut seen = Vec::new();
    for _ in 0..100 {
        let ev = w.poll(Duration::from_millis(100)).unwrap();
        let hit = ev.iter().any(&want);
        seen.extend(ev);
        if hit {
            return seen;
        }
    }
    panic!("event not seen; got {seen:?}");
}

#[test]
fn watcher_follows_veths_and_the_pods_get_the_program() {
    if !xlb_testkit::privileged() {
        return;
    }
    let ns = Netns::new();
    ns.veth("vethold", "eth0o");
    ns.veth("other0", "other1");
    let pin = pin_dir();
    let dp = DataPlane::load(&LoadOptions {
        pin_dir: Some(pin.path.clone()),
        ..Default::default()
    })
    .unwrap();
    attach::pin_programs(&pin.path, &dp).unwrap();
    let tc_id = xlb_loader::sys::prog_id(dp.tc_prog().as_fd()).unwrap();
    let p = pin.path.clone();
    let nsname = ns.name.clone();
    ns.run(move || {
        let mut w = PodIfaceWatcher::new("veth*".parse().unwrap()).unwrap();
        let initial = w.initial();
        assert_eq!(initial.len(), 1, "{initial:?}");
        assert!(matches!(&initial[0], IfaceEvent::Added { name, .. } if name == "vethold"));
        for ev in &initial {
            apply_event(&p, ev).unwrap();
        }
        // A pod appears.
        support::sh(&[
            "ip", "-n", &nsname, "link", "add", "vethnew", "type", "veth", "peer", "name", "eth0n",
        ]);
        let ev = wait_for(
            &mut w,
            |e| matches!(e, IfaceEvent::Added { name, .. } if name == "vethnew"),
        );
        assert!(ev
            .iter()
            .all(|e| !matches!(e, IfaceEvent::Added { name, .. } if name.starts_with("eth0"))));
        for e in &ev {
            apply_event(&p, e).unwrap();
        }
        let l = attach::list(&p).unwrap();
        let new = l
            .iter()
            .find(|a| a.iface == "vethnew")
            .expect("vethnew attached");
        assert_eq!(new.hook, Hook::Tcx);
        assert_eq!(new.prog_id, tc_id);
        // Renamed out of the pattern, then deleted.
        support::sh(&[
            "ip", "-n", &nsname, "link", "set", "vethold", "name", "notapod",
        ]);
        let ev = wait_for(
            &mut w,
            |e| matches!(e, IfaceEvent::Removed { name, .. } if name == "vethold"),
        );
        for e in &ev {
            apply_event(&p, e).unwrap();
        }
        support::sh(&["ip", "-n", &nsname, "link", "del", "vethnew"]);
        let ev = wait_for(
            &mut w,
            |e| matches!(e, IfaceEvent::Removed { name, .. } if name == "vethnew"),
        );
        for e in &ev {
            apply_event(&p, e).unwrap();
        }
        let left = attach::list(&p).unwrap();
        assert!(left.iter().all(|a| a.iface != "vethnew"), "{left:?}");
    });
}
