//! # A two-instruction XDP_PASS program for veth receivers
//!
//! A veth queues XDP_TX / redirected frames for its peer, but the peer only
//! drains that queue promptly when it has an XDP program of its own (with GRO
//! alone the frames wait until the next ordinary packet arrives). So the lab
//! gives every veth end that receives such frames (the underlay bridge ports
//! of the nodes, the pods' eth0) this program. It is attached through
//! netlink (not a bpf_link), so it stays after the process exits and goes
//! away with the interface.

use std::ffi::CString;

use libbpf_rs::libbpf_sys as sys;

use crate::{netns, Error, Result};

fn insn(code: u8, imm: i32) -> sys::bpf_insn {
    sys::bpf_insn {
        code,
        _bitfield_align_1: [],
        _bitfield_1: sys::bpf_insn::new_bitfield_1(0, 0),
        off: 0,
        imm,
    }
}

/// Attaches `r0 = XDP_PASS; exit` to `dev` in namespace `ns` (native mode),
/// replacing whatever XDP program `dev` had.
pub fn attach(ns: &str, dev: &str) -> Result<()> {
    let (ns2, dev2) = (ns.to_owned(), dev.to_owned());
    netns::run(ns, move || -> Result<()> {
        const BPF_ALU64_MOV_K: u8 = 0x07 | 0xb0;
        const BPF_JMP_EXIT: u8 = 0x05 | 0x90;
        let prog = [
            insn(BPF_ALU64_MOV_K, sys::XDP_PASS as i32),
            insn(BPF_JMP_EXIT, 0),
        ];
        let name = CString::new(dev2.clone()).map_err(|_| Error::Invalid(dev2.clone()))?;
        // SAFETY: if_nametoindex on a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(Error::Invalid(format!("no interface {dev2} in {ns2}")));
        }
        // SAFETY: valid instruction array and NUL-terminated strings; a
        // negative return is -errno.
        let fd = unsafe {
            sys::bpf_prog_load(
                sys::BPF_PROG_TYPE_XDP,
                c"xlb_lab_pass".as_ptr(),
                c"Dual BSD/GPL".as_ptr(),
                prog.as_ptr(),
                prog.len() as _,
                std::ptr::null_mut(),
            )
        };
        if fd < 0 {
            return Err(Error::Io {
                what: "loading the lab's XDP_PASS program".into(),
                source: std::io::Error::from_raw_os_error(-fd),
            });
        }
        // SAFETY: valid ifindex and program fd.
        let rc = unsafe {
            sys::bpf_xdp_attach(
                ifindex as i32,
                fd,
                sys::XDP_FLAGS_DRV_MODE,
                std::ptr::null(),
            )
        };
        // SAFETY: our fd; the attachment holds its own reference.
        unsafe { libc::close(fd) };
        if rc < 0 {
            return Err(Error::Io {
                what: format!("attaching XDP_PASS to {dev2} in {ns2}"),
                source: std::io::Error::from_raw_os_error(-rc),
            });
        }
        Ok(())
    })?
}
