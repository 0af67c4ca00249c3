//! A Linux tap device as a [`Net`] interface.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};

use fata_platform::{DeviceError, Net, OFFLOAD_FRAME_MAX, Offloads, ReadySet, VNET_HDR_LEN};

/// Ethernet payload size of a tap device.
const MTU: usize = 1500;
const _: () = assert!(
    fata_tap::VNET_HDR_LEN == VNET_HDR_LEN,
    "one virtio-net header size"
);

/// Room for one packet: the virtio-net header and a frame of up to 64 KiB (a TCP segment the
/// kernel merged, or one it is to cut).
const PACKET_MAX: usize = VNET_HDR_LEN + OFFLOAD_FRAME_MAX;

/// An open tap device (`IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, with the kernel's checksum and TCP
/// segmentation offloads), non-blocking.
///
/// A tap moves one frame per `read`/`write` system call (`readv`/`writev` cannot batch on it), so a
/// batch here is a loop; the trait still lets the hvt target move a batch per exit.
pub struct Tap {
    file: File,
    mac: [u8; 6],
    ready: ReadySet,
    offloads: Offloads,
    buffer: Box<[u8]>,
}

impl Tap {
    /// Attaches to the existing or new tap interface `name`; `ready` is its readiness bit.
    pub fn open(name: &str, ready: ReadySet) -> io::Result<Tap> {
        let (file, granted) = fata_tap::open_offloading(name)?;
        let mac = fata_tap::random_mac()?;
        Ok(Tap {
            file,
            mac,
            ready,
            offloads: Offloads {
                csum: granted.csum,
                tso4: granted.tso4,
                tso6: granted.tso6,
            },
            buffer: vec![0; PACKET_MAX].into_boxed_slice(),
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
        crate::coalesce::received(count);
        Ok(count)
    }

    fn transmit(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> Result<(), DeviceError> {
        if len > PACKET_MAX {
            return Err(DeviceError::InvalidArgument);
        }
        crate::coalesce::sending();
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

    fn offloads(&self) -> Option<Offloads> {
        Some(self.offloads)
    }
}
