//! The test kit, plus pin directories that also remove the names file the
//! loader keeps beside them.
#![allow(dead_code, unused_imports)]

pub use xlb_testkit::{eventually, sh, sh_out, Netns, PinDir};

/// A unique pin directory; on drop also the loader's names file for it.
pub fn pin_dir() -> PinDir {
    let mut p = PinDir::new();
    p.also.push(xlb_loader::names::file_path(&p.path));
    p
}
