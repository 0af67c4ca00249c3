//! The Fata app API: the one crate an app depends on.
//!
//! An app is an ordinary `#![no_std]` Rust crate whose entry is an `async fn` marked
//! [`macro@main`]. It receives an [`Env`] with its arguments and the devices the host configured, and
//! runs on Fata's single-threaded async executor: [`spawn`], [`sleep`], [`timeout`], [`select`],
//! [`join`]. When no task is ready the executor blocks in the platform's `yield_until(deadline)`,
//! like Solo5's `solo5_yield` and MirageOS's Lwt main loop.
//!
//! The platform is chosen when the app is built, not in its source: a normal build links the unix
//! target (`fata-unix`), and `fata build --target hvt` passes `--cfg fata_target="hvt"`, which links
//! the unikernel guest platform (`fata-hvt`) instead; `--target virtio` links `fata-virtio`.
//!
//! ```no_run
//! #![no_std]
//! #![no_main]
//! use fata::{Env, Result, println};
//!
//! #[fata::main]
//! async fn main(env: Env) -> Result<()> {
//!     fata::sleep(fata::Duration::from_millis(10)).await;
//!     println!("hello from {} arguments", env.args().len());
//!     Ok(())
//! }
//! ```
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;
#[cfg(not(any(fata_target = "hvt", fata_target = "virtio")))]
extern crate std;

pub mod block;
mod combinators;
mod console;
mod env;
mod error;
mod executor;
pub mod rt;
mod time;

pub use block::{BlockBuffer, BlockDevice, BlockGeometry};
pub use combinators::{Either, Elapsed, join, select, timeout, yield_now};
pub use console::{SysClock, SysConsole, SysRandom, print_fmt};
pub use core::time::Duration;
pub use env::{Env, Opt};
pub use error::{Error, Result};
pub use executor::{JoinHandle, WaitReady, block_on, spawn, wait_ready};
pub use fata_macros::main;
pub use fata_platform::{
    Block, Clock, Console, Device, DeviceError, HostSockets, Kv, Net, OFFLOAD_FRAME_MAX, Offloads,
    Random, ReadySet, SocketId, VNET_HDR_LEN,
};
pub use time::{Instant, Sleep, sleep, sleep_until};

/// The platform this build links: the unikernel guest of Fata's monitor.
#[cfg(fata_target = "hvt")]
pub(crate) type Sys = fata_hvt::Hvt;
/// The platform this build links: the unikernel guest of a standard VMM.
#[cfg(fata_target = "virtio")]
pub(crate) type Sys = fata_virtio::Virtio;
/// The platform this build links: a Linux process.
#[cfg(not(any(fata_target = "hvt", fata_target = "virtio")))]
pub(crate) type Sys = fata_unix::Unix;

/// The name of the target this build runs on: `"hvt"`, `"virtio"` or `"unix"`.
pub const TARGET: &str = if cfg!(fata_target = "hvt") {
    "hvt"
} else if cfg!(fata_target = "virtio") {
    "virtio"
} else {
    "unix"
};

/// Prints to the console, formatted like `core::format_args!`.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::print_fmt(::core::format_args!($($arg)*)) };
}

/// Prints a line to the console, formatted like `core::format_args!`.
#[macro_export]
macro_rules! println {
    () => { $crate::print_fmt(::core::format_args!("\n")) };
    ($($arg:tt)*) => { $crate::print_fmt(::core::format_args!("{}\n", ::core::format_args!($($arg)*))) };
}
