//! The smoltcp backend: one interface over one Fata `Net` device, driven by a task of its own.

use alloc::boxed::Box;
use alloc::rc::{Rc, Weak};
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::{pending, poll_fn};
use core::task::{Poll, Waker};
use core::time::Duration;

use fata::Net;
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::{dhcpv4, tcp as tcp_socket};
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address, Ipv4Cidr, Ipv6Address,
    Ipv6Cidr,
};

use crate::addresses::Addresses;
use crate::config::{Config, Ipv4Config, Ipv6Config, Tuning};
use link::{Link, LinkStats};

mod discovery;
pub(crate) mod link;
mod offload;
pub(crate) mod tcp;
pub(crate) mod udp;

/// How long a closed connection may take to finish its goodbye before it is reset.
const CLOSE_GRACE: Duration = Duration::from_secs(10);
/// First port of the ephemeral range (RFC 6335).
const EPHEMERAL_FIRST: u16 = 49152;
/// How soon the driver tries again when the device had no room for an announcement.
const ANNOUNCE_RETRY: Duration = Duration::from_millis(10);

/// The TCP/IP stack of one network interface. Cheap to clone: clones share the stack.
///
/// Creating it spawns the task that moves frames between the device and smoltcp: it polls the
/// interface when frames arrive, when a socket has something to send and when a TCP timer is due,
/// and flushes the frames each poll produced as one batch. When the device says it moved to
/// another link ([`Net::moves`]), the next poll renews the interface (the neighbours it knew may
/// have other MACs there, such as the host's side of another tap) and first announces its
/// addresses (a gratuitous ARP for IPv4, an unsolicited neighbour advertisement for each IPv6
/// address), so that the new link learns where they are.
#[derive(Clone)]
pub struct SmolStack {
    pub(crate) inner: Rc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) state: RefCell<State>,
    poked: Cell<bool>,
    driver: RefCell<Option<Waker>>,
    configured: RefCell<Vec<Waker>>,
}

pub(crate) struct State {
    pub(crate) iface: Interface,
    pub(crate) sockets: SocketSet<'static>,
    pub(crate) link: Link,
    dhcp: Option<SocketHandle>,
    pub(crate) tuning: Tuning,
    /// Connections the app dropped, still saying goodbye, with the time they must be gone by.
    closing: Vec<(SocketHandle, fata::Instant)>,
    next_port: u16,
    /// The device's move count when the driver last looked (see `Net::moves`).
    moves: u32,
    /// Whether the interface still has to announce its addresses after a move.
    announcing: bool,
    /// The seed the stack was given, from which each renewed interface takes its own.
    seed: u64,
    /// How many times the interface was renewed (after a move, or for router discovery).
    renewals: u64,
    /// Whether the interface takes IPv6 addresses from router advertisements, and how far
    /// router discovery got.
    discovery: discovery::Discovery,
    /// Neither IPv4 nor IPv6 is on: the stack counts as configured at once.
    nothing_to_wait_for: bool,
}

/// smoltcp's clock, read from Fata's.
pub(crate) fn now() -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros((fata::Instant::now().as_nanos() / 1000) as i64)
}

impl SmolStack {
    /// A stack over `net`, configured by `config`; `seed` randomises TCP sequence numbers and
    /// ephemeral ports.
    pub fn new(net: Box<dyn Net>, config: Config, seed: u64) -> SmolStack {
        let mut link = Link::new(net);
        let slaac = config.ipv6 == Ipv6Config::Slaac;
        let mut iface = interface(&mut link, seed, slaac);
        let mut sockets = SocketSet::new(vec![]);
        let dhcp = match config.ipv4 {
            Ipv4Config::Static { address, gateway } => {
                set_ipv4(&mut iface, Some(address), gateway);
                None
            }
            Ipv4Config::Dhcp => Some(sockets.add(dhcpv4::Socket::new())),
            Ipv4Config::Off => None,
        };
        match config.ipv6 {
            Ipv6Config::Static { address, gateway } => {
                add_link_local(&mut iface);
                add_ipv6(&mut iface, address, gateway);
            }
            Ipv6Config::Slaac => add_link_local(&mut iface),
            Ipv6Config::Off => {}
        }
        // A stack starts on the link its device is on now: it has nothing to announce until the
        // device moves again, which keeps a fresh boot as quiet as ever (the first ARP reply or
        // DHCP exchange tells the peers where it is).
        let moves = link.net().moves();
        let state = State {
            iface,
            sockets,
            link,
            dhcp,
            tuning: config.tuning,
            closing: Vec::new(),
            next_port: EPHEMERAL_FIRST + (seed % 16384) as u16,
            moves,
            announcing: false,
            seed,
            renewals: 0,
            discovery: discovery::Discovery::new(slaac, fata::Instant::now(), 0),
            nothing_to_wait_for: config.ipv4 == Ipv4Config::Off && config.ipv6 == Ipv6Config::Off,
        };
        let inner = Rc::new(Inner {
            state: RefCell::new(state),
            poked: Cell::new(false),
            driver: RefCell::new(None),
            configured: RefCell::new(Vec::new()),
        });
        fata::spawn(drive(Rc::downgrade(&inner))).detach();
        SmolStack { inner }
    }

    /// The interface's addresses now.
    pub fn addresses(&self) -> Addresses {
        Addresses::of(self.inner.state.borrow().iface.ip_addrs())
    }

    /// Waits until the interface can be reached from beyond its link (an IPv4 address, static
    /// or from DHCP, or an IPv6 address that is not link-local, static or from SLAAC) and
    /// returns its addresses.
    pub async fn wait_configured(&self) -> Addresses {
        poll_fn(|cx| {
            let state = self.inner.state.borrow();
            let addresses = Addresses::of(state.iface.ip_addrs());
            if addresses.routable() || state.nothing_to_wait_for {
                Poll::Ready(addresses)
            } else {
                self.inner.configured.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Frame counters of the device.
    pub fn stats(&self) -> LinkStats {
        self.inner.state.borrow().link.stats
    }

    /// Asks the driver task to poll the interface soon (a socket has something to send).
    pub(crate) fn poke(&self) {
        if !self.inner.poked.replace(true)
            && let Some(waker) = self.inner.driver.borrow_mut().take()
        {
            waker.wake();
        }
    }

    /// A free local port for an outgoing connection.
    pub(crate) fn ephemeral_port(&self) -> u16 {
        let mut state = self.inner.state.borrow_mut();
        let port = state.next_port;
        state.next_port = if port == u16::MAX {
            EPHEMERAL_FIRST
        } else {
            port + 1
        };
        port
    }

    /// Hands a dropped connection to the driver, which removes it once closed.
    pub(crate) fn retire(&self, handle: SocketHandle) {
        let mut state = self.inner.state.borrow_mut();
        state.sockets.get_mut::<tcp_socket::Socket>(handle).close();
        let deadline = fata::Instant::now() + CLOSE_GRACE;
        state.closing.push((handle, deadline));
        drop(state);
        self.poke();
    }
}

/// A fresh smoltcp interface over `link`, with no address yet; with `slaac`, it solicits router
/// advertisements and takes its IPv6 addresses and default route from them.
fn interface(link: &mut Link, seed: u64, slaac: bool) -> Interface {
    let mac = EthernetAddress(link.net().mac());
    let mut config = smoltcp::iface::Config::new(HardwareAddress::Ethernet(mac));
    config.random_seed = seed;
    config.slaac = slaac;
    Interface::new(config, link, now())
}

/// A fresh interface with `old`'s addresses and default routes, with SLAAC on or off (router
/// discovery, see `discovery`), or for a device that moved to another link. smoltcp cannot empty a neighbour cache's discovery rate limit: an interface that
/// had asked for a neighbour within the last second would stay silent that long on the new link,
/// so it starts afresh, as an interface brought up there would. Sockets live in the socket set,
/// not in the interface, so connections carry on.
fn renewed(
    old: &Interface,
    link: &mut Link,
    seed: u64,
    renewals: &mut u64,
    slaac: bool,
) -> Interface {
    *renewals += 1;
    // Each renewed interface draws other TCP sequence numbers than the one before.
    let seed = seed.wrapping_add(renewals.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut iface = interface(link, seed, slaac);
    iface.update_ip_addrs(|addrs| {
        // The new list has the same capacity as the old one.
        addrs.extend(old.ip_addrs().iter().copied());
    });
    let routes = old.routes();
    if let Some(route) = routes.get_default_ipv4_route()
        && let IpAddress::Ipv4(router) = route.via_router
    {
        let _ = iface.routes_mut().add_default_ipv4_route(router);
    }
    if let Some(route) = routes.get_default_ipv6_route()
        && let IpAddress::Ipv6(router) = route.via_router
    {
        let _ = iface.routes_mut().add_default_ipv6_route(router);
    }
    iface
}

/// Replaces the interface's IPv4 address and default route (DHCP's lease, or none).
fn set_ipv4(iface: &mut Interface, address: Option<Ipv4Cidr>, gateway: Option<Ipv4Address>) {
    iface.update_ip_addrs(|addrs| {
        addrs.retain(|cidr| !matches!(cidr, IpCidr::Ipv4(_)));
        if let Some(address) = address {
            // One IPv4 address, a link-local, a static and a SLAAC IPv6 address fit
            // (iface-max-addr-count-4).
            let _ = addrs.push(IpCidr::Ipv4(address));
        }
    });
    iface.routes_mut().remove_default_ipv4_route();
    if let Some(gateway) = gateway {
        // The route table has room for the one default route just removed.
        let _ = iface.routes_mut().add_default_ipv4_route(gateway);
    }
}

/// Gives the interface its IPv6 link-local address: fe80::/64 with the modified EUI-64
/// interface identifier of its MAC (RFC 4291, appendix A), as Linux does by default.
fn add_link_local(iface: &mut Interface) {
    let link_local = Ipv6Cidr::new(Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 64);
    if let Some(address) = Ipv6Cidr::from_link_prefix(&link_local, iface.hardware_addr()) {
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::Ipv6(address));
        });
    }
}

/// Adds a static IPv6 address and default route.
fn add_ipv6(iface: &mut Interface, address: Ipv6Cidr, gateway: Option<Ipv6Address>) {
    iface.update_ip_addrs(|addrs| {
        let _ = addrs.push(IpCidr::Ipv6(address));
    });
    if let Some(gateway) = gateway {
        let _ = iface.routes_mut().add_default_ipv6_route(gateway);
    }
}

impl Inner {
    /// Moves every waiting frame in, every queued frame out, and returns when to poll next and
    /// which device readiness to wait for. After the device moved to another link (a restore or
    /// a migration), first announces the interface's addresses there.
    fn poll(&self) -> (Option<Duration>, fata::ReadySet) {
        let mut state = self.state.borrow_mut();
        let State {
            iface,
            sockets,
            link,
            dhcp,
            closing,
            moves,
            announcing,
            seed,
            renewals,
            discovery,
            ..
        } = &mut *state;
        let now = now();
        let moved = link.net().moves();
        if moved != *moves {
            *moves = moved;
            *announcing = true;
            // Settle router discovery first (a restored guest's may have timed out while it
            // stood still), so that one renewal serves both.
            let _ = discovery.after_poll(fata::Instant::now(), link.stats.rx_router_adverts);
            *iface = renewed(iface, link, *seed, renewals, discovery.slaac());
        }
        if *announcing {
            let addresses = iface.ip_addrs().iter().map(|cidr| cidr.address());
            *announcing = !link.announce(addresses);
        }
        iface.poll(now, link, sockets);
        link.flush();
        if let Some(slaac) =
            discovery.after_poll(fata::Instant::now(), link.stats.rx_router_adverts)
        {
            *iface = renewed(iface, link, *seed, renewals, slaac);
        }
        // SLAAC adds its addresses during a poll; DHCP's lease is handled below.
        let mut configured = crate::addresses::routable(iface.ip_addrs());
        if let Some(handle) = *dhcp {
            match sockets.get_mut::<dhcpv4::Socket>(handle).poll() {
                Some(dhcpv4::Event::Configured(lease)) => {
                    set_ipv4(iface, Some(lease.address), lease.router);
                    configured = true;
                }
                Some(dhcpv4::Event::Deconfigured) => set_ipv4(iface, None, None),
                None => {}
            }
        }
        if configured {
            self.configured.borrow_mut().drain(..).for_each(Waker::wake);
        }
        let right_now = fata::Instant::now();
        closing.retain(|&(handle, deadline)| {
            let socket = sockets.get_mut::<tcp_socket::Socket>(handle);
            match socket.state() {
                tcp_socket::State::Closed | tcp_socket::State::TimeWait => {
                    sockets.remove(handle);
                    false
                }
                _ => {
                    if right_now >= deadline {
                        socket.abort();
                    }
                    true
                }
            }
        });
        let mut delay = iface
            .poll_delay(now, sockets)
            .map(|d| Duration::from_micros(d.total_micros()));
        if *announcing {
            delay = Some(delay.map_or(ANNOUNCE_RETRY, |d| d.min(ANNOUNCE_RETRY)));
        }
        (delay, link.net().readiness())
    }
}

/// The driver task: poll, then sleep until a frame arrives, a timer is due or a socket pokes.
/// It holds the stack only while it polls: once the app dropped the stack and its sockets, the
/// stack is freed and the driver ends at its next wake-up.
async fn drive(stack: Weak<Inner>) {
    while let Some(inner) = stack.upgrade() {
        let (delay, readiness) = inner.poll();
        drop(inner);
        let poked = poll_fn(|cx| match stack.upgrade() {
            Some(inner) if !inner.poked.replace(false) => {
                *inner.driver.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        });
        let timer = async {
            match delay {
                Some(delay) if delay.is_zero() => fata::yield_now().await,
                Some(delay) => fata::sleep(delay).await,
                None => pending().await,
            }
        };
        let device = fata::select(fata::wait_ready(readiness), frame_arrived(&stack));
        fata::select(poked, fata::select(device, timer)).await;
    }
}

/// Waits for a device that lives in memory (a [`Loopback`](crate::Loopback)) to say a frame is
/// waiting; devices the platform watches never wake it. It ends at the driver's next wake-up,
/// whatever woke it, which at worst polls the interface once more than needed.
async fn frame_arrived(stack: &Weak<Inner>) {
    let mut registered = false;
    poll_fn(|cx| {
        let Some(inner) = stack.upgrade().filter(|_| !registered) else {
            return Poll::Ready(());
        };
        inner
            .state
            .borrow_mut()
            .link
            .register_receive_waker(cx.waker());
        registered = true;
        Poll::Pending
    })
    .await
}
