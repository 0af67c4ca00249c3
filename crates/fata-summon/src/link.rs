//! Each service's tap, held open by the daemon for its whole life, and the host's side of it: the
//! host's address with a route to the service's address alone, so that a thousand services need
//! no bridge and a broadcast on one tap reaches no other.

use std::fs::File;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::config::Service;

/// Opens (creating them if missing) the taps of `services` with the virtio-net header the
/// monitor speaks, and gives each the host's address `host` and a route to its service. The
/// taps go away when the daemon ends (they are not persistent).
pub fn open_taps(services: &[Service], host: Ipv4Addr) -> io::Result<Vec<File>> {
    let mut taps = Vec::with_capacity(services.len());
    for service in services {
        let (tap, _) = fata_tap::open_offloading(&service.tap).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot open tap {} for service {}: {e} (it needs root or CAP_NET_ADMIN \
                     and /dev/net/tun)",
                    service.tap, service.name
                ),
            )
        })?;
        // The host's side speaks IPv4 alone: no router solicitations or multicast reports wait
        // in the queue of a stopped service.
        let _ = std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", service.tap),
            "1",
        );
        taps.push(tap);
    }
    // One `ip -batch` configures every tap in one process over netlink. (No maintained crate
    // speaks rtnetlink without an async runtime, which this daemon of threads does not run.)
    let mut script = String::new();
    for service in services {
        script.push_str(&format!(
            "addr replace {host}/32 peer {}/32 dev {}\nlink set dev {} up\n",
            service.address, service.tap, service.tap
        ));
    }
    let mut ip = Command::new("ip")
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run ip to set up the taps: {e} (install iproute2)"),
            )
        })?;
    if let Some(mut stdin) = ip.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let output = ip.wait_with_output()?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "ip could not give the taps the host's address {host}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(taps)
}

/// Frames the tap `name` carried both ways so far, from the kernel's counters; a change means
/// the service is in use.
pub fn frames(name: &str) -> u64 {
    ["rx_packets", "tx_packets"]
        .iter()
        .filter_map(|counter| {
            std::fs::read_to_string(format!("/sys/class/net/{name}/statistics/{counter}")).ok()
        })
        .filter_map(|text| text.trim().parse::<u64>().ok())
        .sum()
}
