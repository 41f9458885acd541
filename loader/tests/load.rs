use xlb_loader::DataPlane;

#[test]
fn private_load_shares_maps_between_xdp_and_tc() {
    if !xlb_testkit::privileged() {
        return;
    }
    let dp = DataPlane::load_private().expect("load");
    // A write through the shared handles is seen by the tc object's map.
    let k = xlb_bpf::types::xlb_svc_key::nodeport(30080, xlb_bpf::Proto::Tcp);
    dp.maps.put_service(&k, &Default::default()).unwrap();
    use libbpf_rs::MapCore;
    let key = unsafe { plain::as_bytes(&k) };
    assert!(dp
        .tc
        .maps
        .services
        .lookup(key, libbpf_rs::MapFlags::ANY)
        .unwrap()
        .is_some());
}
