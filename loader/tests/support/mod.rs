//! The test kit for the loader's tests.
#![allow(dead_code, unused_imports)]

pub use xlb_testkit::{eventually, sh, sh_out, Netns, PinDir};

/// A unique pin directory, removed on drop.
pub fn pin_dir() -> PinDir {
    PinDir::new()
}
