//! Writing responses: sections of records with name compression, within a size limit.

use alloc::vec::Vec;

use crate::name::Name;
use crate::wire::{CLASS_IN, rtype};
use crate::zone::{RData, RRset};

/// The sections after the question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Answer = 0,
    Authority = 1,
    Additional = 2,
}

/// Builds one response in `out`, which holds the 12-byte header and the question already.
pub(crate) struct Writer<'a> {
    out: &'a mut Vec<u8>,
    /// The most bytes the message may have.
    limit: usize,
    /// Where names written so far start (offset, lowercase uncompressed suffix), for compression.
    names: Vec<(u16, Vec<u8>)>,
    counts: [u16; 3],
}

impl<'a> Writer<'a> {
    /// A writer after a header and question of `out`; the question's name starts at 12 and its
    /// lowercase form is `qname`.
    pub(crate) fn new(out: &'a mut Vec<u8>, limit: usize, qname: &Name) -> Writer<'a> {
        let mut writer = Writer {
            out,
            limit,
            names: Vec::new(),
            counts: [0; 3],
        };
        writer.remember_prefix(12, qname, qname.label_count());
        writer
    }

    /// Writes `name`, replacing its longest already-written suffix with a pointer.
    fn name(&mut self, name: &Name, compress: bool) {
        let labels = name.label_count();
        let start = self.out.len();
        let found = if compress {
            (0..labels).find_map(|skip| {
                let suffix = name.suffix(skip);
                self.names
                    .iter()
                    .find(|(_, s)| s.as_slice() == suffix)
                    .map(|&(at, _)| (skip, at))
            })
        } else {
            None
        };
        match found {
            Some((skip, at)) => {
                let prefix_len = name.wire().len() - name.suffix(skip).len();
                self.out.extend_from_slice(&name.wire()[..prefix_len]);
                self.out.extend_from_slice(&(0xc000 | at).to_be_bytes());
                self.remember_prefix(start, name, skip);
            }
            None => {
                self.out.extend_from_slice(name.wire());
                self.remember_prefix(start, name, labels);
            }
        }
    }

    /// Remembers the suffixes of `name` that start in its first `written` labels at `start`.
    fn remember_prefix(&mut self, start: usize, name: &Name, written: usize) {
        let mut at = start;
        for skip in 0..written {
            let suffix = name.suffix(skip);
            if at <= 0x3fff {
                self.names.push((at as u16, suffix.to_vec()));
            }
            at += 1 + suffix[0] as usize;
        }
    }

    /// Writes the whole set at `owner` into `section` with TTL `ttl`; returns false, writing
    /// nothing, when it does not fit.
    pub(crate) fn rrset(&mut self, section: Section, owner: &Name, set: &RRset, ttl: u32) -> bool {
        let rollback = (self.out.len(), self.names.len());
        for rdata in &set.rdatas {
            self.name(owner, true);
            self.out.extend_from_slice(&set.rtype.to_be_bytes());
            self.out.extend_from_slice(&CLASS_IN.to_be_bytes());
            self.out.extend_from_slice(&ttl.to_be_bytes());
            let length_at = self.out.len();
            self.out.extend_from_slice(&[0, 0]);
            self.rdata(rdata);
            let length = (self.out.len() - length_at - 2) as u16;
            self.out[length_at..length_at + 2].copy_from_slice(&length.to_be_bytes());
        }
        if self.out.len() > self.limit {
            self.out.truncate(rollback.0);
            self.names.truncate(rollback.1);
            return false;
        }
        self.counts[section as usize] += set.rdatas.len() as u16;
        true
    }

    fn rdata(&mut self, rdata: &RData) {
        match rdata {
            RData::Name(name) => self.name(name, true),
            RData::Mx(preference, name) => {
                self.out.extend_from_slice(&preference.to_be_bytes());
                self.name(name, true);
            }
            RData::Srv(..) | RData::Raw(_) => rdata.encode(self.out),
            RData::Soa(mname, rname, values) => {
                self.name(mname, true);
                self.name(rname, true);
                for value in values {
                    self.out.extend_from_slice(&value.to_be_bytes());
                }
            }
        }
    }

    /// Appends an OPT record (EDNS version 0) with our payload size and the extended rcode bits.
    pub(crate) fn opt(&mut self, payload: u16, extended_rcode: u8) {
        self.out.push(0);
        self.out.extend_from_slice(&rtype::OPT.to_be_bytes());
        self.out.extend_from_slice(&payload.to_be_bytes());
        self.out.extend_from_slice(&[extended_rcode, 0, 0, 0, 0, 0]);
        self.counts[Section::Additional as usize] += 1;
    }

    /// Writes the section counts into the header.
    pub(crate) fn finish(self) {
        for (i, count) in self.counts.iter().enumerate() {
            self.out[6 + 2 * i..8 + 2 * i].copy_from_slice(&count.to_be_bytes());
        }
    }
}
