//! Linux tap devices, as the hvt monitor and the unix target both open them.
//!
//! A host-side helper with one job: attach to a tap interface (`IFF_TAP | IFF_NO_PI`,
//! non-blocking, close-on-exec), and make a MAC address for the guest side of it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

/// Attaches to the tap interface `name`, creating it if it does not exist; one `read` or `write`
/// on the file moves one Ethernet frame.
pub fn open(name: &str) -> io::Result<File> {
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
            ifru_flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
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
}
