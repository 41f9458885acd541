//! The clsact fallback for kernels without tcx (simulated with XLB_NO_TCX;
//! alone in this test binary because it sets a process-wide variable).

mod support;

use std::os::fd::AsFd;

use support::{pin_dir, Netns};
use xlb_loader::attach::{self, Hook};
use xlb_loader::{sys, DataPlane, LoadOptions};

#[test]
fn without_tcx_pods_get_a_clsact_filter_that_detach_removes() {
    if !xlb_testkit::privileged() {
        return;
    }
    std::env::set_var(attach::NO_TCX_ENV, "1");
    let ns = Netns::new();
    ns.veth("vethpod0", "eth0p");
    let pin = pin_dir();
    let dp = DataPlane::load(&LoadOptions {
        pin_dir: Some(pin.path.clone()),
        ..Default::default()
    })
    .unwrap();
    let tc = dp.tc_prog().as_fd().try_clone_to_owned().unwrap();
    let tc2 = dp.tc_prog().as_fd().try_clone_to_owned().unwrap();
    let tc_id = sys::prog_id(tc.as_fd()).unwrap();
    let p = pin.path.clone();
    let (first, again) = ns.run(move || {
        let a = attach::attach_pod(&p, tc.as_fd(), "vethpod0").unwrap();
        // Attaching again replaces the filter in place (tc replace), no duplicate.
        let b = attach::attach_pod(&p, tc2.as_fd(), "vethpod0").unwrap();
        (a, b)
    });
    assert_eq!(
        first.hook,
        Hook::TcClsact {
            created_qdisc: true
        }
    );
    let w = first.warning.as_deref().unwrap();
    assert!(w.contains("classic tc filter on clsact"), "{w}");
    assert!(again.replaced);
    let filters = ns.ip_out(&["link"]); // keep the namespace referenced
    assert!(filters.contains("vethpod0"));
    let shown = support::sh_out(&[
        "tc", "-n", &ns.name, "filter", "show", "dev", "vethpod0", "ingress",
    ]);
    assert_eq!(
        shown.matches("handle 0x786c62").count(),
        1,
        "one xlb filter: {shown}"
    );
    assert!(shown.contains(&format!("id {tc_id}")), "{shown}");
    let listed = attach::list(&pin.path).unwrap();
    assert_eq!(listed.len(), 1);

    let p = pin.path.clone();
    ns.run(move || attach::detach(&p, "vethpod0").unwrap());
    let shown = support::sh_out(&[
        "tc", "-n", &ns.name, "filter", "show", "dev", "vethpod0", "ingress",
    ]);
    assert!(!shown.contains("xlb_tc"), "{shown}");
    let qdiscs = support::sh_out(&["tc", "-n", &ns.name, "qdisc", "show", "dev", "vethpod0"]);
    assert!(
        !qdiscs.contains("clsact"),
        "xlb made the clsact qdisc, so it removes it: {qdiscs}"
    );
    assert!(attach::list(&pin.path).unwrap().is_empty());
}
