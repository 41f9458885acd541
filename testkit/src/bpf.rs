//! Kernel state read straight from the bpf(2) syscall, independently of the
//! loader under test.
use std::io;

const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_TCX_INGRESS: u32 = 46;

/// `bpf_attr` for BPF_PROG_QUERY (the fields up to `revision`).
#[repr(C, align(8))]
#[derive(Default)]
struct ProgQuery {
    target_ifindex: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    count: u32,
    _pad: u32,
    prog_attach_flags: u64,
    link_ids: u64,
    link_attach_flags: u64,
    revision: u64,
}

/// Ids of the programs on the tcx ingress chain of `ifindex` (in the calling
/// thread's namespace), in chain order; tcx holds several programs, so a
/// check that one program left must look for its id here.
pub fn tcx_ingress_progs(ifindex: u32) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut q = ProgQuery {
        target_ifindex: ifindex,
        attach_type: BPF_TCX_INGRESS,
        prog_ids: ids.as_mut_ptr() as u64,
        count: ids.len() as u32,
        ..Default::default()
    };
    // SAFETY: q is a valid bpf_attr prefix; prog_ids points at `count` u32s.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_QUERY,
            &mut q as *mut ProgQuery,
            std::mem::size_of::<ProgQuery>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    ids.truncate(q.count as usize);
    Ok(ids)
}
