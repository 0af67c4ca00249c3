//! What a `Yield` waits on besides the network: the [`Service`] a device kind offers the wait
//! (the network's loop in `net` drives it), and [`wait_readable`], the one `ppoll` the vCPU
//! thread sleeps in.
//!
//! The network devices own the wait because their coalescing decides when it ends; block devices
//! join it through [`Service`], so neither module knows the other.

use crate::memory::GuestRam;
use crate::violation::Stop;
use fata_hvt_abi::MAX_DEVICES;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// Devices a `Yield` serves and waits for, apart from the network interfaces.
pub trait Service {
    /// The handles of the devices, as a readiness set.
    fn handles(&self) -> u64;
    /// Moves the devices' work between guest RAM and the host (takes requests, publishes
    /// completions); called before every readiness check.
    fn serve(&mut self, ram: &GuestRam) -> Result<(), Stop>;
    /// The devices in `interest` that have something for the guest.
    fn ready(&self, ram: &GuestRam, interest: u64) -> u64;
    /// Adds to `fds` the descriptors that become readable when a device in `interest` has new
    /// work to serve; returns how many it added.
    fn wait_fds(&self, interest: u64, fds: &mut [RawFd]) -> usize;
}

/// Waits until one of `fds` is readable or `timeout` passes (`None`: no limit). A signal ends the
/// wait early without an error.
pub fn wait_readable(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<()> {
    let unused = libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    };
    let mut polls = [unused; MAX_DEVICES];
    let fds = &fds[..fds.len().min(MAX_DEVICES)];
    for (poll, &fd) in polls.iter_mut().zip(fds) {
        poll.fd = fd;
        poll.events = libc::POLLIN;
    }
    let spec = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(t.subsec_nanos() as i32),
    });
    let spec_ptr = spec
        .as_ref()
        .map_or(std::ptr::null(), |s| s as *const libc::timespec);
    // SAFETY: `polls` holds at least `fds.len()` initialised pollfd structs the kernel writes
    // `revents` into; `spec_ptr` is null or points at `spec`, which outlives the call; no signal
    // mask.
    let rc = unsafe {
        libc::ppoll(
            polls.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            spec_ptr,
            std::ptr::null(),
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}
