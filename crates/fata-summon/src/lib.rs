//! `fata summon CONFIG`: services summoned by a DNS lookup, as MirageOS's Jitsu summoned
//! unikernels.
//!
//! The daemon answers DNS for one zone with Fata's own engine (`fata-dns`). Each service of the
//! zone is an hvt image or snapshot with a tap and an address of its own. A lookup of a stopped
//! service starts it (`fata restore SNAPSHOT` or `fata run IMAGE`), and the answer leaves once
//! the service accepts a TCP connection on its port; a service that does not come up is answered
//! SERVFAIL. A service that sees no lookup and no frame for its idle timeout is stopped, which
//! gives its memory back. The daemon holds every tap open for its whole life and hands it down
//! to the monitor (`--net fd:N`), so frames that reach a stopped or starting service wait in the
//! tap's queue and are delivered once it runs.
//!
//! - [`config`]: the TOML configuration, checked with errors that name the line;
//! - [`directory`]: the zone and the DNS answers;
//! - [`link`]: the taps and the host's side of each;
//! - [`daemon`]: the services' lifecycle and the loop that serves queries;
//! - [`standby`]: the `fata` process kept started ahead of the next summon.

pub mod config;
pub mod daemon;
pub mod directory;
pub mod link;
pub mod standby;

pub use daemon::run;
