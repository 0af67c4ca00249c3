//! A Linux tap device as a [`Net`] interface.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use fata_platform::{DeviceError, Net, Platform, ReadySet};

/// Ethernet payload size of a tap device.
const MTU: usize = 1500;
/// Room for one frame: MTU, Ethernet header and a VLAN tag.
const FRAME_MAX: usize = MTU + 18;

/// An open tap device (`IFF_TAP | IFF_NO_PI`), non-blocking.
///
/// A tap moves one frame per `read`/`write` system call (`readv`/`writev` cannot batch on it), so a
/// batch here is a loop; the trait still lets the hvt target move a batch per exit.
pub struct Tap {
    file: File,
    mac: [u8; 6],
    ready: ReadySet,
    buffer: Box<[u8; FRAME_MAX]>,
}

/// `struct ifreq` as TUNSETIFF reads it: the name and the flags.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

impl Tap {
    /// Attaches to the existing or new tap interface `name`; `ready` is its readiness bit.
    pub fn open(name: &str, ready: ReadySet) -> io::Result<Tap> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bad interface name",
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")?;
        let mut request = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
            _pad: [0; 22],
        };
        request.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `IfReq` lays out (name then
        // flags, 40 bytes); the pointer is valid for the whole call.
        let rc = unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                libc::TUNSETIFF,
                &mut request as *mut IfReq,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut mac = [0u8; 6];
        crate::Unix::random_fill(&mut mac);
        mac[0] = (mac[0] & 0xfe) | 0x02; // unicast, locally administered
        Ok(Tap {
            file,
            mac,
            ready,
            buffer: Box::new([0; FRAME_MAX]),
        })
    }

    /// The file descriptor `yield_until` polls.
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl Net for Tap {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn mtu(&self) -> usize {
        MTU
    }

    fn readiness(&self) -> ReadySet {
        self.ready
    }

    fn receive(
        &mut self,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, DeviceError> {
        let mut count = 0;
        while count < max {
            match self.file.read(&mut self.buffer[..]) {
                Ok(n) => {
                    on_frame(&self.buffer[..n]);
                    count += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(DeviceError::Io),
            }
        }
        Ok(count)
    }

    fn transmit(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> Result<(), DeviceError> {
        if len > FRAME_MAX {
            return Err(DeviceError::InvalidArgument);
        }
        let frame = &mut self.buffer[..len];
        fill(frame);
        match self.file.write(frame) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(DeviceError::WouldBlock),
            Err(_) => Err(DeviceError::Io),
        }
    }

    fn flush(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
}
