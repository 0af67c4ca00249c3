//! Sectors kept in memory in front of the file: the writes of a copy-on-write device, the grouped
//! writes that wait for a flush, and a journal applied to a device that may not write the file.
//!
//! Reads are served from the file and then patched with whatever the overlay holds for their
//! sectors, so the overlay only ever needs the sectors that differ.

use std::collections::BTreeMap;

use crate::SECTOR_SIZE;

/// Bytes per sector, as a `usize`.
const SECTOR: usize = SECTOR_SIZE as usize;

/// One sector's bytes: data, or zeros after a discard (which need no memory).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sector {
    Data(Box<[u8; SECTOR]>),
    Zero,
}

/// Sectors by number.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    sectors: BTreeMap<u64, Sector>,
}

impl Overlay {
    /// Sectors held.
    pub(crate) fn len(&self) -> u64 {
        self.sectors.len() as u64
    }

    /// Whether no sector is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.sectors.is_empty()
    }

    /// How many of the `count` sectors from `sector` on are held.
    pub(crate) fn held(&self, sector: u64, count: u64) -> u64 {
        self.sectors.range(sector..sector + count).count() as u64
    }

    /// Holds `data` (whole sectors) as the sectors from `sector` on.
    pub(crate) fn write(&mut self, sector: u64, data: &[u8]) {
        for (number, bytes) in (sector..).zip(data.chunks_exact(SECTOR)) {
            let bytes: [u8; SECTOR] = bytes.try_into().expect("chunks of one sector");
            self.sectors.insert(number, Sector::Data(Box::new(bytes)));
        }
    }

    /// Replaces the sectors among those `data` covers that are held already, leaving the others
    /// out: a write that goes to the file keeps pending copies of its sectors up to date.
    pub(crate) fn update(&mut self, sector: u64, data: &[u8]) {
        let count = (data.len() / SECTOR) as u64;
        for (number, held) in self.sectors.range_mut(sector..sector + count) {
            let at = ((number - sector) as usize) * SECTOR;
            let bytes: [u8; SECTOR] = data[at..at + SECTOR].try_into().expect("one sector");
            *held = Sector::Data(Box::new(bytes));
        }
    }

    /// Holds zeros as the `count` sectors from `sector` on.
    pub(crate) fn zero(&mut self, sector: u64, count: u64) {
        for number in sector..sector + count {
            self.sectors.insert(number, Sector::Zero);
        }
    }

    /// Drops the `count` sectors from `sector` on.
    pub(crate) fn remove(&mut self, sector: u64, count: u64) {
        let held: Vec<u64> = self
            .sectors
            .range(sector..sector + count)
            .map(|(&number, _)| number)
            .collect();
        for number in held {
            self.sectors.remove(&number);
        }
    }

    /// Copies the held sectors among those `buf` covers (from `sector` on) into `buf`.
    pub(crate) fn patch(&self, sector: u64, buf: &mut [u8]) {
        let count = (buf.len() / SECTOR) as u64;
        for (number, held) in self.sectors.range(sector..sector + count) {
            let at = ((number - sector) as usize) * SECTOR;
            let to = &mut buf[at..at + SECTOR];
            match held {
                Sector::Data(bytes) => to.copy_from_slice(&bytes[..]),
                Sector::Zero => to.fill(0),
            }
        }
    }

    /// Every held sector with its bytes, in sector order.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = (u64, &[u8; SECTOR])> {
        const ZEROS: [u8; SECTOR] = [0; SECTOR];
        self.sectors.iter().map(|(&number, held)| match held {
            Sector::Data(bytes) => (number, &**bytes),
            Sector::Zero => (number, &ZEROS),
        })
    }

    /// Drops every sector.
    pub(crate) fn clear(&mut self) {
        self.sectors.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sectors(fill: &[u8]) -> Vec<u8> {
        fill.iter().flat_map(|&b| [b; SECTOR]).collect()
    }

    #[test]
    fn writes_patch_reads_and_updates_keep_only_held_sectors() {
        let mut overlay = Overlay::default();
        overlay.write(10, &sectors(&[1, 2]));
        assert_eq!(
            (overlay.len(), overlay.held(9, 4), overlay.held(0, 10)),
            (2, 2, 0)
        );
        let mut buf = sectors(&[9, 9, 9, 9]);
        overlay.patch(9, &mut buf);
        assert_eq!(buf, sectors(&[9, 1, 2, 9]));
        overlay.update(11, &sectors(&[5, 6]));
        assert_eq!(overlay.len(), 2, "update adds no sector");
        overlay.patch(9, &mut buf);
        assert_eq!(buf, sectors(&[9, 1, 5, 9]));
        overlay.zero(12, 2);
        overlay.patch(9, &mut buf);
        assert_eq!(buf, sectors(&[9, 1, 5, 0]));
        let listed: Vec<(u64, u8)> = overlay.iter().map(|(n, b)| (n, b[0])).collect();
        assert_eq!(listed, [(10, 1), (11, 5), (12, 0), (13, 0)]);
        overlay.remove(11, 2);
        let listed: Vec<u64> = overlay.iter().map(|(n, _)| n).collect();
        assert_eq!(listed, [10, 13]);
        overlay.clear();
        assert!(overlay.is_empty());
    }
}
