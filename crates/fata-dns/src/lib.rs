//! Fata's authoritative DNS engine.
//!
//! A service-layer crate with no clock and no I/O of its own: it takes query bytes and writes
//! response bytes, so the DNS app runs it over any socket and tests feed it messages directly.
//! - [`Name`], [`wire`]: domain names and the query wire format, parsed without ever panicking;
//! - [`zone`]: zones, lookups by RFC 1034 rules with wildcards (RFC 4592) and delegations, and the
//!   compiled zone format the host hands to the server (master files are parsed on the host by
//!   `fata-zone`);
//! - [`Server`]: answers queries the way NSD does, with EDNS(0), truncation over UDP, name
//!   compression, and optional memoization of encoded responses.
//!
//! The wire code is written here rather than taken from a general DNS crate: an authoritative
//! server reads only the header, the question and the OPT record of a query, and the memoized
//! path copies a cached answer, so a general message parser and builder would cost more than the
//! whole hot path.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod message;
pub mod name;
mod server;
pub mod wire;
pub mod zone;

use core::fmt;

pub use name::Name;
pub use server::{DEFAULT_CACHE_BYTES, Server, Stats, Transport};
pub use zone::{RData, Zone, ZoneSet};

/// What can be wrong with a name, a record or a compiled zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The data ends too early.
    Truncated,
    /// A label is too long, a name is over 255 bytes, or a label type is reserved.
    BadName,
    /// A compression pointer does not point backwards.
    BadPointer,
    /// A record's data does not match its type.
    BadRecord,
    /// A record's owner is outside its zone.
    OutOfZone,
    /// A zone has no single SOA at its apex.
    NoSoa,
    /// A zone has no NS records at its apex.
    NoApexNs,
    /// Two zones have the same apex.
    DuplicateZone,
    /// The bytes are not a compiled zone set.
    NotCompiledZone,
    /// The compiled zone set has a format version this server does not read.
    CompiledVersion,
    /// Bytes follow the last zone.
    TrailingBytes,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "the data ends too early",
            Error::BadName => "a malformed domain name",
            Error::BadPointer => "a compression pointer that does not point backwards",
            Error::BadRecord => "record data that does not match its type",
            Error::OutOfZone => "a record outside its zone",
            Error::NoSoa => "a zone without exactly one SOA record at its apex",
            Error::NoApexNs => "a zone without NS records at its apex",
            Error::DuplicateZone => "two zones with the same apex",
            Error::NotCompiledZone => {
                "not a compiled zone set (compile master files with fata-zone)"
            }
            Error::CompiledVersion => "a compiled zone set of another format version",
            Error::TrailingBytes => "bytes after the last zone",
        })
    }
}

impl core::error::Error for Error {}
