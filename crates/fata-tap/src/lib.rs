//! Linux tap devices, as the hvt monitor and the unix target both open them.
//!
//! A host-side helper with one job: attach to a tap interface (`IFF_TAP | IFF_NO_PI`,
//! non-blocking, close-on-exec), plain or with a virtio-net header before every frame and the
//! kernel's checksum and segmentation offloads (`IFF_VNET_HDR`, as QEMU and Firecracker open
//! theirs), and make a MAC address for the guest side of it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

/// Bytes of the virtio-net header before each frame of a tap opened with [`open_offloading`]
/// (`struct virtio_net_hdr_v1`, with its buffer count).
pub const VNET_HDR_LEN: usize = 12;

/// What the kernel does for a tap opened with [`open_offloading`]: it accepts and delivers
/// frames whose checksums are left to fill (`csum`) and TCP segments of up to 64 KiB that it cuts
/// to size for the link (`tso4`, `tso6`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offloads {
    /// `TUN_F_CSUM`: partial checksums.
    pub csum: bool,
    /// `TUN_F_TSO4`: TCP segmentation over IPv4.
    pub tso4: bool,
    /// `TUN_F_TSO6`: TCP segmentation over IPv6.
    pub tso6: bool,
}

/// Attaches to the tap interface `name`, creating it if it does not exist; one `read` or `write`
/// on the file moves one Ethernet frame.
pub fn open(name: &str) -> io::Result<File> {
    attach(name, 0)
}

/// Attaches to the tap interface `name` as [`open`] does, with a [`VNET_HDR_LEN`]-byte
/// virtio-net header before every frame read or written, and asks the kernel for checksum and
/// TCP segmentation offloads; returns those it granted (a kernel that grants none still speaks
/// the header, with plain frames).
pub fn open_offloading(name: &str) -> io::Result<(File, Offloads)> {
    offload(attach(name, libc::IFF_VNET_HDR)?)
}

/// Takes over descriptor `fd`, a tap another process opened with `IFF_VNET_HDR` and handed down
/// (as `fata summon` does, which holds each service's tap while the service is stopped, so that
/// frames arriving meanwhile wait in it), and sets it up as [`open_offloading`] does:
/// non-blocking, close-on-exec, the same header and offloads.
pub fn adopt_offloading(fd: RawFd) -> io::Result<(File, Offloads)> {
    let refuse = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {fd} {why}; hand down a tap opened with IFF_TAP | IFF_VNET_HDR"),
        )
    };
    // SAFETY: F_GETFD only reads the descriptor's flags; an unused number fails with EBADF.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(refuse("is not open"));
    }
    // SAFETY: all-zero bytes are a valid `ifreq`.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: TUNGETIFF writes one `struct ifreq`, which `libc::ifreq` is, through a pointer
    // valid for the call; any other descriptor fails it.
    if unsafe { libc::ioctl(fd, libc::TUNGETIFF, &mut request as *mut libc::ifreq) } < 0 {
        return Err(refuse("is not a tap"));
    }
    // SAFETY: TUNGETIFF filled the flags member of the union.
    let flags = libc::c_int::from(unsafe { request.ifr_ifru.ifru_flags });
    let wanted = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
    if flags & wanted != wanted {
        return Err(refuse("is a tun device without a virtio-net header"));
    }
    // SAFETY: the descriptor is open and a tap (checked above); the caller hands it over, so
    // the `File` is its only owner from here on.
    let file = unsafe { File::from_raw_fd(fd) };
    // SAFETY: plain flag changes on a descriptor this process owns.
    let set = unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) >= 0
            && libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK | libc::O_RDWR) >= 0
    };
    if !set {
        return Err(io::Error::last_os_error());
    }
    offload(file)
}

/// Sets the virtio-net header's size and asks for the offloads; returns those granted.
fn offload(file: File) -> io::Result<(File, Offloads)> {
    let size: libc::c_int = VNET_HDR_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, valid for the call.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let all = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
    for (flags, offloads) in [
        (
            all,
            Offloads {
                csum: true,
                tso4: true,
                tso6: true,
            },
        ),
        (
            libc::TUN_F_CSUM,
            Offloads {
                csum: true,
                ..Offloads::default()
            },
        ),
    ] {
        // SAFETY: TUNSETOFFLOAD takes its flags by value.
        if unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                flags as libc::c_ulong,
            )
        } == 0
        {
            return Ok((file, offloads));
        }
    }
    Ok((file, Offloads::default()))
}

fn attach(name: &str, extra_flags: libc::c_int) -> io::Result<File> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a tap name is 1 to 15 bytes",
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    let mut ifr_name = [0 as libc::c_char; libc::IFNAMSIZ];
    for (to, from) in ifr_name.iter_mut().zip(name.bytes()) {
        *to = from as libc::c_char;
    }
    let mut request = libc::ifreq {
        ifr_name,
        ifr_ifru: libc::__c_anonymous_ifr_ifru {
            ifru_flags: (libc::IFF_TAP | libc::IFF_NO_PI | extra_flags) as libc::c_short,
        },
    };
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `libc::ifreq` is; the name is
    // NUL-terminated (checked shorter than IFNAMSIZ above) and the pointer is valid for the call.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            libc::TUNSETIFF,
            &mut request as *mut libc::ifreq,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// A random unicast, locally administered MAC address.
pub fn random_mac() -> io::Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    getrandom::fill(&mut mac).map_err(io::Error::other)?;
    mac[0] = (mac[0] & 0xfe) | 0x02;
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_unicast_and_local_and_names_are_checked() {
        let mac = random_mac().unwrap();
        assert_eq!(mac[0] & 0x01, 0, "unicast");
        assert_eq!(mac[0] & 0x02, 0x02, "locally administered");
        assert_eq!(open("").unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            open("sixteen-bytes-xx").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn only_an_open_tap_is_adopted() {
        let error = adopt_offloading(-1).unwrap_err();
        assert!(error.to_string().contains("is not open"), "{error}");
        let (read, _write) = std::io::pipe().unwrap();
        let fd = std::os::fd::IntoRawFd::into_raw_fd(read);
        let error = adopt_offloading(fd).unwrap_err();
        assert!(error.to_string().contains("is not a tap"), "{error}");
        // SAFETY: `fd` was refused, so it is still this test's to close.
        unsafe { libc::close(fd) };
    }
}
