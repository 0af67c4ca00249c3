//! Router discovery for SLAAC, kept clear of a defect of smoltcp 0.14.
//!
//! smoltcp sends three router solicitations, 4 s apart. When no router answers them, its SLAAC
//! state stays "discovering" with a retry time that has passed and never moves on, and
//! `Interface::poll_at` reports that past instant whenever a socket has a deadline of its own. The
//! driver then polls again at once, and again, for as long as a TCP connection is open: on hvt,
//! where frames leave at the guest's next exit, every answer was held back by 20 to 60 ms from
//! 12 s after boot on (docs/networking.md has the measurement).
//!
//! So once the solicitations are over and no advertisement came, the stack renews its interface
//! without SLAAC. An advertisement that arrives later (the link counts them) renews it with SLAAC
//! again: that solicits at once, and the router's answer configures the addresses.

use core::time::Duration;

/// How long after the first solicitation smoltcp is done with router discovery: its three
/// solicitations, 4 s apart, and 4 s for an answer to the last (RFC 4861's
/// `MAX_RTR_SOLICITATIONS` and `RTR_SOLICITATION_INTERVAL`).
const DISCOVERY_TIME: Duration = Duration::from_secs(12);

/// Where router discovery stands for one stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Discovery {
    /// The stack takes no addresses from routers.
    Off,
    /// The interface runs SLAAC and solicits routers; none has answered since `since`.
    Soliciting { since: fata::Instant, adverts: u64 },
    /// A router answered: SLAAC keeps the addresses up to date from its advertisements.
    Answered,
    /// No router answered: the interface runs without SLAAC until an advertisement arrives
    /// (the link had seen `adverts` of them then).
    Waiting { adverts: u64 },
}

impl Discovery {
    /// Router discovery for a stack that takes its IPv6 addresses from routers (`slaac`) or
    /// not, starting now, when its link had seen `adverts` advertisements.
    pub(crate) fn new(slaac: bool, now: fata::Instant, adverts: u64) -> Discovery {
        if slaac {
            Discovery::Soliciting {
                since: now,
                adverts,
            }
        } else {
            Discovery::Off
        }
    }

    /// Whether the interface should run smoltcp's SLAAC.
    pub(crate) fn slaac(&self) -> bool {
        matches!(self, Discovery::Soliciting { .. } | Discovery::Answered)
    }

    /// After a poll, when the link has seen `adverts` advertisements: `Some(slaac)` when the
    /// interface must be renewed with SLAAC on or off.
    pub(crate) fn after_poll(&mut self, now: fata::Instant, adverts: u64) -> Option<bool> {
        match *self {
            Discovery::Off | Discovery::Answered => None,
            Discovery::Soliciting { adverts: seen, .. } if adverts != seen => {
                *self = Discovery::Answered;
                None
            }
            Discovery::Soliciting { since, .. } if now - since >= DISCOVERY_TIME => {
                *self = Discovery::Waiting { adverts };
                Some(false)
            }
            Discovery::Soliciting { .. } => None,
            Discovery::Waiting { adverts: seen } if adverts != seen => {
                *self = Discovery::Soliciting {
                    since: now,
                    adverts,
                };
                Some(true)
            }
            Discovery::Waiting { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> fata::Instant {
        fata::Instant::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn an_unanswered_discovery_turns_slaac_off_and_an_advertisement_turns_it_on_again() {
        let mut discovery = Discovery::new(true, at(1_000), 0);
        assert!(discovery.slaac());
        assert_eq!(discovery.after_poll(at(12_999), 0), None);
        assert_eq!(discovery.after_poll(at(13_000), 0), Some(false));
        assert!(!discovery.slaac());
        assert_eq!(discovery.after_poll(at(60_000), 0), None);
        assert_eq!(discovery.after_poll(at(61_000), 1), Some(true));
        assert!(discovery.slaac());
        assert_eq!(discovery.after_poll(at(61_010), 2), None);
        assert_eq!(discovery, Discovery::Answered);
        assert_eq!(discovery.after_poll(at(999_000), 2), None);
    }

    #[test]
    fn an_answered_discovery_keeps_slaac_and_a_stack_without_it_never_renews() {
        let mut answered = Discovery::new(true, at(0), 5);
        assert_eq!(answered.after_poll(at(4_000), 6), None);
        assert_eq!(answered.after_poll(at(100_000), 6), None);
        assert!(answered.slaac());
        let mut off = Discovery::new(false, at(0), 0);
        assert_eq!(off.after_poll(at(100_000), 3), None);
        assert!(!off.slaac());
    }
}
