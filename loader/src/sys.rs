//! Thin, safe wrappers over the few libbpf/kernel calls libbpf-rs does not
//! cover: bpf_link create/update/detach with flags (XDP modes, tcx), pins of
//! raw fds, interface lookups (in the caller's network namespace) and the
//! driver name through the ethtool ioctl.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))
}

/// libbpf returns `-errno` (and sets errno).
fn fd_ret(rc: i32) -> io::Result<OwnedFd> {
    if rc < 0 {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    // SAFETY: a fresh fd returned by the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(rc) })
}

fn ret(rc: i32) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::from_raw_os_error(-rc))
    } else {
        Ok(())
    }
}

/// Opens a pinned object (map, program or link).
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    // SAFETY: valid C string.
    fd_ret(unsafe { libbpf_sys::bpf_obj_get(c.as_ptr()) })
}

/// Pins `fd` at `path` (the parent must exist on a bpffs).
pub fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: valid fd and C string.
    ret(unsafe { libbpf_sys::bpf_obj_pin(fd.as_raw_fd(), c.as_ptr()) })
}

/// `bpf_link_create(prog, target, type)` with `flags` (XDP mode flags; 0 for tcx).
pub fn link_create(
    prog: BorrowedFd<'_>,
    target: i32,
    attach_type: libbpf_sys::bpf_attach_type,
    flags: u32,
) -> io::Result<OwnedFd> {
    // SAFETY: an all-zero opts struct is valid (libbpf's OPTS init), sz set below.
    let mut opts: libbpf_sys::bpf_link_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _;
    opts.flags = flags;
    // SAFETY: valid fd and opts.
    fd_ret(unsafe { libbpf_sys::bpf_link_create(prog.as_raw_fd(), target, attach_type, &opts) })
}

/// Atomically points `link` at `prog` (no moment without a program).
pub fn link_update(link: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let opts = libbpf_sys::bpf_link_update_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_link_update_opts>() as _,
        ..Default::default()
    };
    // SAFETY: valid fds and opts.
    ret(unsafe { libbpf_sys::bpf_link_update(link.as_raw_fd(), prog.as_raw_fd(), &opts) })
}

/// Detaches a link from its hook (the link object lives on until its last fd/pin goes).
pub fn link_detach(link: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: valid fd.
    ret(unsafe { libbpf_sys::bpf_link_detach(link.as_raw_fd()) })
}

/// XDP attachment of an interface: (attach mode `XDP_ATTACHED_*`, prog id).
pub fn xdp_query(ifindex: u32) -> io::Result<(u8, u32)> {
    let mut opts = libbpf_sys::bpf_xdp_query_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_xdp_query_opts>() as _,
        ..Default::default()
    };
    // SAFETY: valid opts.
    ret(unsafe { libbpf_sys::bpf_xdp_query(ifindex as i32, 0, &mut opts) })?;
    Ok((opts.attach_mode, opts.prog_id))
}

/// Loads a two-instruction program `r0 = ret; exit` (probes in `doctor`).
pub fn load_trivial(prog_type: libbpf_sys::bpf_prog_type, ret_code: i32) -> io::Result<OwnedFd> {
    // SAFETY: bpf_insn is plain data; zero means register 0 for dst/src.
    let mut insns: [libbpf_sys::bpf_insn; 2] = unsafe { std::mem::zeroed() };
    insns[0].code = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K: r0 = imm
    insns[0].imm = ret_code;
    insns[1].code = 0x95; // BPF_JMP | BPF_EXIT
    let name = CString::new("xlb_probe").expect("no NUL");
    let license = CString::new("GPL").expect("no NUL");
    // SAFETY: valid instructions, names and a null opts pointer (defaults).
    fd_ret(unsafe {
        libbpf_sys::bpf_prog_load(
            prog_type,
            name.as_ptr(),
            license.as_ptr(),
            insns.as_ptr(),
            insns.len() as _,
            std::ptr::null_mut(),
        )
    })
}

/// Index of interface `name` in the calling thread's network namespace.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// Name of interface `index` in the calling thread's network namespace.
pub fn ifname(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buffer of IF_NAMESIZE bytes.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    let s = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(s.to_string_lossy().into_owned())
}

/// Every interface of the calling thread's network namespace: (index, name).
pub fn interfaces() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    // SAFETY: if_nameindex returns an array terminated by a zero entry, freed below.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return out;
        }
        let mut p = list;
        while (*p).if_index != 0 && !(*p).if_name.is_null() {
            let name = std::ffi::CStr::from_ptr((*p).if_name)
                .to_string_lossy()
                .into_owned();
            out.push(((*p).if_index, name));
            p = p.add(1);
        }
        libc::if_freenameindex(list);
    }
    out
}

/// Driver name of an interface (ethtool `ETHTOOL_GDRVINFO`), e.g. "veth", "mlx5_core".
pub fn driver(name: &str) -> io::Result<String> {
    const ETHTOOL_GDRVINFO: u32 = 0x3;
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        version: [u8; 32],
        fw_version: [u8; 32],
        bus_info: [u8; 32],
        erom_version: [u8; 32],
        reserved2: [u8; 12],
        n_priv_flags: u32,
        n_stats: u32,
        testinfo_len: u32,
        eedump_len: u32,
        regdump_len: u32,
    }
    if name.len() >= libc::IF_NAMESIZE {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "name too long"));
    }
    // SAFETY: plain C structs, zero is valid.
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&mut info as *mut DrvInfo).cast();
    // SAFETY: a datagram socket for the ioctl, closed by OwnedFd.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    let sock = fd_ret(if sock < 0 { -errno() } else { sock })?;
    // SAFETY: valid socket, ifreq pointing at a live DrvInfo.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut ifr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let end = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Mounts a bpf filesystem at `dir`.
pub fn mount_bpffs(dir: &Path) -> io::Result<()> {
    let target = cpath(dir)?;
    let src = CString::new("bpf").expect("no NUL");
    let opts = CString::new("mode=0700").expect("no NUL");
    // SAFETY: valid C strings.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            src.as_ptr(),
            0,
            opts.as_ptr().cast(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Unmounts `dir` (lazily: whatever still uses it keeps it until done).
pub fn umount(dir: &Path) -> io::Result<()> {
    let target = cpath(dir)?;
    // SAFETY: valid C string.
    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Id of a loaded program.
pub fn prog_id(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: valid fd, buffer and length.
    ret(unsafe {
        libbpf_sys::bpf_obj_get_info_by_fd(
            fd.as_raw_fd(),
            (&mut info as *mut libbpf_sys::bpf_prog_info).cast(),
            &mut len,
        )
    })?;
    Ok(info.id)
}

/// Whether a program with this id still exists.
pub fn prog_exists(id: u32) -> bool {
    // SAFETY: plain syscall wrapper.
    let rc = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
    if rc >= 0 {
        // SAFETY: fresh fd we own.
        unsafe { libc::close(rc) };
        true
    } else {
        -rc != libc::ENOENT
    }
}

/// Probe: can this process create a BPF map (syscall present, privileges)?
pub fn probe_map_create() -> io::Result<()> {
    let name = CString::new("xlb_probe").expect("no NUL");
    // SAFETY: valid name; null opts = defaults.
    fd_ret(unsafe {
        libbpf_sys::bpf_map_create(
            libbpf_sys::BPF_MAP_TYPE_ARRAY,
            name.as_ptr(),
            4,
            4,
            1,
            std::ptr::null(),
        )
    })
    .map(drop)
}
