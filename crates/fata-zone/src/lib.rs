//! Compiles RFC 1035 master files into the compiled zone set that `fata-dns` loads.
//!
//! This is the host half of Fata's DNS: master files are parsed here, on the host, with NLnet
//! Labs' `domain` crate (no zone-file parser builds for the guest on stable Rust), checked, and
//! written in the compact wire-form format of [`fata_dns::ZoneSet::to_compiled`]. The unikernel
//! then only has to read that format, which it checks byte by byte.

use std::path::Path;

use domain::base::ToName;
use domain::base::rdata::ComposeRecordData;
use domain::zonefile::inplace::{Entry, Zonefile};
use fata_dns::{Name, RData, Zone, ZoneSet};

/// Why a master file could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The master file's syntax is wrong.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message, with its position.
        message: String,
    },
    /// A record is not acceptable to the server.
    #[error("{path}: record {owner} {rtype}: {reason}")]
    Record {
        /// The file.
        path: String,
        /// The record's owner.
        owner: String,
        /// The record's type.
        rtype: String,
        /// What is wrong.
        reason: fata_dns::Error,
    },
    /// The zone as a whole is not acceptable (no SOA, no NS, a duplicate zone).
    #[error("{path}: {reason}")]
    Zone {
        /// The file.
        path: String,
        /// What is wrong.
        reason: fata_dns::Error,
    },
    /// `$INCLUDE` is not supported.
    #[error("{path}: $INCLUDE is not supported; put the records in one file")]
    Include {
        /// The file.
        path: String,
    },
}

/// Parses the master file `text` (named `path` in messages) into a zone whose apex is the owner
/// of its SOA record. `origin` is the initial `$ORIGIN` when the file does not set one.
pub fn parse_zone(text: &str, path: &str, origin: Option<&str>) -> Result<Zone, Error> {
    let syntax = |message: String| Error::Syntax {
        path: path.to_string(),
        message,
    };
    let mut file = Zonefile::new();
    file.extend_from_slice(text.as_bytes());
    if !text.ends_with('\n') {
        file.extend_from_slice(b"\n");
    }
    if let Some(origin) = origin {
        let origin = origin
            .parse()
            .map_err(|e| syntax(format!("bad origin {origin:?}: {e}")))?;
        file.set_origin(origin);
    }
    let mut records = Vec::new();
    while let Some(entry) = file.next_entry().map_err(|e| syntax(e.to_string()))? {
        match entry {
            Entry::Record(record) => {
                let owner = Name::from_wire(record.owner().to_vec().as_slice())
                    .map_err(|e| syntax(format!("bad owner name: {e}")))?;
                let rtype = record.rtype().to_int();
                let mut data = Vec::new();
                record
                    .data()
                    .compose_rdata(&mut data)
                    .map_err(|_| syntax(format!("cannot encode the data of {owner}")))?;
                let describe = |reason| Error::Record {
                    path: path.to_string(),
                    owner: owner.to_string(),
                    rtype: record.rtype().to_string(),
                    reason,
                };
                let rdata = RData::decode(rtype, &data).map_err(describe)?;
                records.push((
                    owner.clone(),
                    rtype,
                    record.ttl().as_secs(),
                    rdata,
                    record.rtype().to_string(),
                ));
            }
            Entry::Include { .. } => {
                return Err(Error::Include {
                    path: path.to_string(),
                });
            }
        }
    }
    let zone_error = |reason| Error::Zone {
        path: path.to_string(),
        reason,
    };
    let apex = records
        .iter()
        .find(|(_, rtype, ..)| *rtype == fata_dns::wire::rtype::SOA)
        .map(|(owner, ..)| owner.clone())
        .ok_or(zone_error(fata_dns::Error::NoSoa))?;
    let mut zone = Zone::new(apex);
    for (owner, rtype, ttl, rdata, type_name) in records {
        zone.add(owner.clone(), rtype, ttl, rdata)
            .map_err(|reason| Error::Record {
                path: path.to_string(),
                owner: owner.to_string(),
                rtype: type_name,
                reason,
            })?;
    }
    zone.validate().map_err(zone_error)?;
    Ok(zone)
}

/// Reads and parses the master files at `paths` into one zone set.
pub fn compile_files<P: AsRef<Path>>(paths: &[P]) -> Result<ZoneSet, Error> {
    let mut set = ZoneSet::new();
    for path in paths {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: shown.clone(),
            source,
        })?;
        let zone = parse_zone(&text, &shown, None)?;
        set.insert(zone).map_err(|reason| Error::Zone {
            path: shown,
            reason,
        })?;
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONE: &str = "$ORIGIN example.com.\n$TTL 3600\n\
        @ IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n\
        @ IN NS ns1\n@ IN MX 10 mail\nns1 IN A 192.0.2.53\nmail IN A 192.0.2.25\n\
        www IN CNAME @\ntxt IN TXT \"hello world\" two\n_sip._udp IN SRV 10 60 5060 ns1\n\
        @ IN CAA 0 issue \"letsencrypt.org\"\nv6 IN AAAA 2001:db8::1\n";

    #[test]
    fn a_master_file_compiles_and_round_trips() {
        let zone = parse_zone(ZONE, "example.zone", None).unwrap();
        assert_eq!(zone.apex(), &Name::from_ascii("example.com").unwrap());
        let mut set = ZoneSet::new();
        set.insert(zone).unwrap();
        let compiled = set.to_compiled();
        assert_eq!(ZoneSet::from_compiled(&compiled).unwrap(), set);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let no_soa = parse_zone("$ORIGIN a.\nwww 60 IN A 192.0.2.1\n", "x", None).unwrap_err();
        assert!(no_soa.to_string().contains("SOA"), "{no_soa}");
        let garbage = parse_zone("$ORIGIN a.\n@ IN SOA ns1\n", "x", None).unwrap_err();
        assert!(garbage.to_string().starts_with("x: "), "{garbage}");
        let outside = parse_zone(
            &format!("{ZONE}www.example.org. IN A 192.0.2.9\n"),
            "x",
            None,
        )
        .unwrap_err();
        assert!(
            outside.to_string().contains("outside its zone"),
            "{outside}"
        );
    }
}
