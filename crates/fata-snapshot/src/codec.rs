//! The state file's bytes: framing, body encoding and the checks a decoded [`Snapshot`] passes.
//!
//! Framing: [`MAGIC`] (8 bytes), [`FORMAT_VERSION`] (u32), the body's length (u64), the body, and
//! a CRC-32C (u32) of everything before it; every integer little-endian.
//!
//! Body: the fields of [`Snapshot`] in declaration order, depth first. Integers are
//! little-endian at their own width, `[u8; N]` is its N bytes, a string or byte vector is its
//! length (u64) then its bytes, a list its length (u64) then its items, an `Option` a byte (0
//! none, 1 some) then the value, and a [`DeviceState`] a byte (1 net, 2 block, 3 key-value) then
//! its fields. Nothing else is allowed, so every snapshot has exactly one encoding.

use thiserror::Error;

use crate::{
    BlockState, DeviceState, Extent, FORMAT_VERSION, ImageIdentity, KvState, MAGIC, NetState,
    Parent, RunSettings, Snapshot, VcpuState,
};

/// Bytes before the body: magic, version and body length.
const HEADER: usize = 8 + 4 + 8;
/// Bytes after the body: the CRC-32C.
const TRAILER: usize = 4;
/// The page size extents are made of.
pub(crate) const PAGE: u64 = 4096;
/// Guest memory is a whole number of these.
const MEM_UNIT: u64 = 2 << 20;
/// A block device's sector.
const SECTOR: u64 = 512;

const TAG_NET: u8 = 1;
const TAG_BLOCK: u8 = 2;
const TAG_KV: u8 = 3;
/// The fewest bytes a device's encoding takes (a key-value store with empty names), so a device
/// count is checked against the bytes left and preallocation stays a small multiple of them.
const MIN_DEVICE: usize = 1 + 8 + 8 + 8 + 8;

/// Why bytes are not a snapshot this crate can use.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FormatError {
    /// The bytes do not start with [`MAGIC`].
    #[error(
        "not a Fata snapshot (it does not start with FATASNAP): give a directory `fata snapshot` wrote"
    )]
    NotASnapshot,
    /// A format version this crate does not read.
    #[error(
        "snapshot format version {found}, and this fata reads version {supported}: restore it \
         with the fata that took it"
    )]
    UnsupportedVersion {
        /// The version in the bytes.
        found: u32,
        /// The version this crate reads ([`FORMAT_VERSION`]).
        supported: u32,
    },
    /// The bytes end before the length their header gives.
    #[error(
        "the snapshot state is cut short (an unfinished copy?): copy it again or take a new snapshot"
    )]
    Truncated,
    /// The state's checksum does not match its bytes.
    #[error(
        "the snapshot state does not match its checksum (changed or damaged): copy it again or \
         take a new snapshot"
    )]
    Corrupt,
    /// An extent of guest memory does not match its checksum.
    #[error(
        "guest memory at {offset:#x} ({len} bytes) does not match its checksum: the memory file \
         was changed or damaged; copy it again or take a new snapshot"
    )]
    CorruptMemory {
        /// The extent's guest-physical offset.
        offset: u64,
        /// The extent's length.
        len: u64,
    },
    /// The checksum matches but a field's value is impossible.
    #[error(
        "the snapshot is malformed ({0}): it was not written by a working fata; take a new snapshot"
    )]
    Malformed(String),
}

/// Encodes `snapshot` as a state file's bytes.
///
/// Encoding does not check the snapshot: [`decode`] refuses one that fails
/// [`Snapshot::validate`], so a writer calls that first ([`crate::write_state`] does).
pub fn encode(snapshot: &Snapshot) -> Vec<u8> {
    let mut body = Vec::new();
    put_snapshot(&mut body, snapshot);
    let mut out = Vec::with_capacity(HEADER + body.len() + TRAILER);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a state file's bytes into a [`Snapshot`] that passes [`Snapshot::validate`].
///
/// Checks, in order: magic, version, length, checksum, then the body; never panics, and
/// allocates no more than the input's length could hold.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, FormatError> {
    let (body, _) = frame(bytes)?;
    let mut reader = Reader { bytes: body };
    let snapshot = reader.snapshot()?;
    if !reader.bytes.is_empty() {
        return Err(malformed(format!(
            "{} bytes after the last field",
            reader.bytes.len()
        )));
    }
    snapshot.validate()?;
    Ok(snapshot)
}

/// The CRC-32C trailer of a state file's bytes, after checking their framing and checksum: what
/// a diff snapshot records of its parent ([`Parent::state_crc`]).
pub fn state_crc(bytes: &[u8]) -> Result<u32, FormatError> {
    frame(bytes).map(|(_, crc)| crc)
}

/// The body and trailer of a state file, its framing and checksum checked.
fn frame(bytes: &[u8]) -> Result<(&[u8], u32), FormatError> {
    let magic = &bytes[..bytes.len().min(MAGIC.len())];
    if magic != &MAGIC[..magic.len()] {
        return Err(FormatError::NotASnapshot);
    }
    let header = bytes.get(..HEADER).ok_or(FormatError::Truncated)?;
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let body_len = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
    let total = usize::try_from(body_len)
        .ok()
        .and_then(|len| len.checked_add(HEADER + TRAILER))
        .ok_or(FormatError::Truncated)?;
    if bytes.len() < total {
        return Err(FormatError::Truncated);
    }
    if bytes.len() > total {
        return Err(malformed(format!(
            "{} bytes after the checksum",
            bytes.len() - total
        )));
    }
    let (covered, trailer) = bytes.split_at(total - TRAILER);
    let crc = u32::from_le_bytes(trailer.try_into().expect("4 bytes"));
    if crc32c::crc32c(covered) != crc {
        return Err(FormatError::Corrupt);
    }
    Ok((&covered[HEADER..], crc))
}

fn malformed(what: String) -> FormatError {
    FormatError::Malformed(what)
}

impl Snapshot {
    /// Checks what the types cannot say: guest memory a positive multiple of 2 MiB; extents whole
    /// 4 KiB pages, sorted, disjoint and inside guest memory; writable ranges and key-value
    /// regions inside guest memory; block modes `rw`, `ro` or `cow`, and overlay sectors (only
    /// with `cow`) whole sectors inside the device. [`decode`] refuses a snapshot that fails.
    pub fn validate(&self) -> Result<(), FormatError> {
        let mem = self.mem_bytes;
        if mem == 0 || !mem.is_multiple_of(MEM_UNIT) {
            return Err(malformed(format!(
                "guest memory of {mem} bytes is not a positive multiple of 2 MiB"
            )));
        }
        let inside = |start: u64, len: u64| start.checked_add(len).is_some_and(|end| end <= mem);
        let mut end = 0;
        for (i, extent) in self.memory.iter().enumerate() {
            let Extent { offset, len, .. } = *extent;
            if !offset.is_multiple_of(PAGE) || len == 0 || !len.is_multiple_of(PAGE) {
                return Err(malformed(format!(
                    "memory extent {i} ({len} bytes at {offset:#x}) is not whole 4 KiB pages"
                )));
            }
            if offset < end {
                return Err(malformed(format!(
                    "memory extent {i} at {offset:#x} overlaps or precedes the one before it"
                )));
            }
            if !inside(offset, len) {
                return Err(malformed(format!(
                    "memory extent {i} ({len} bytes at {offset:#x}) ends past guest memory ({mem} bytes)"
                )));
            }
            end = offset + len;
        }
        for &(start, stop) in &self.run.writable {
            if start > stop || stop > mem {
                return Err(malformed(format!(
                    "writable range {start:#x}..{stop:#x} is not inside guest memory ({mem} bytes)"
                )));
            }
        }
        for (i, device) in self.devices.iter().enumerate() {
            match device {
                DeviceState::Net(_) => {}
                DeviceState::Block(block) => block.validate(i)?,
                DeviceState::Kv(kv) => {
                    if !inside(kv.region_addr, kv.region_len) {
                        return Err(malformed(format!(
                            "device {i} ({:?}): key-value region ({} bytes at {:#x}) ends past guest memory ({mem} bytes)",
                            kv.name, kv.region_len, kv.region_addr
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

impl BlockState {
    /// The checks of [`Snapshot::validate`] for device `index`.
    fn validate(&self, index: usize) -> Result<(), FormatError> {
        let name = &self.name;
        if !["rw", "ro", "cow"].contains(&self.mode.as_str()) {
            return Err(malformed(format!(
                "device {index} ({name:?}): unknown block mode {:?}",
                self.mode
            )));
        }
        if self.mode != "cow" && !self.overlay.is_empty() {
            return Err(malformed(format!(
                "device {index} ({name:?}): written sectors on a {} device",
                self.mode
            )));
        }
        for (first, bytes) in &self.overlay {
            let len = bytes.len() as u64;
            if !len.is_multiple_of(SECTOR)
                || first
                    .checked_add(len / SECTOR)
                    .is_none_or(|end| end > self.sectors)
            {
                return Err(malformed(format!(
                    "device {index} ({name:?}): {len} written bytes at sector {first} are not \
                     whole sectors inside its {} sectors",
                    self.sectors
                )));
            }
        }
        Ok(())
    }
}

// ---- encoding ----

fn put_u8(out: &mut Vec<u8>, value: u8) {
    out.push(value);
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    put_u64(out, len as u64);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_snapshot(out: &mut Vec<u8>, s: &Snapshot) {
    put_u32(out, s.abi_version);
    put_bytes(out, s.image.path.as_bytes());
    put_u64(out, s.image.len);
    out.extend_from_slice(&s.image.sha256);
    put_u64(out, s.mem_bytes);
    put_bytes(out, s.name.as_bytes());
    put_u64(out, s.taken_wall_ns);
    match &s.parent {
        None => put_u8(out, 0),
        Some(parent) => {
            put_u8(out, 1);
            put_bytes(out, parent.dir.as_bytes());
            put_u32(out, parent.state_crc);
        }
    }
    put_len(out, s.memory.len());
    for extent in &s.memory {
        put_u64(out, extent.offset);
        put_u64(out, extent.len);
        put_u32(out, extent.crc);
    }
    let v = &s.vcpu;
    for blob in [
        &v.regs,
        &v.sregs,
        &v.xsave,
        &v.xcrs,
        &v.events,
        &v.lapic,
        &v.debugregs,
    ] {
        put_bytes(out, blob);
    }
    put_len(out, v.msrs.len());
    for &(index, value) in &v.msrs {
        put_u32(out, index);
        put_u64(out, value);
    }
    put_u32(out, v.tsc_khz);
    put_u64(out, v.tsc);
    put_len(out, s.devices.len());
    for device in &s.devices {
        put_device(out, device);
    }
    put_u64(out, s.run.net_coalesce_us);
    put_len(out, s.run.writable.len());
    for &(start, end) in &s.run.writable {
        put_u64(out, start);
        put_u64(out, end);
    }
}

fn put_device(out: &mut Vec<u8>, device: &DeviceState) {
    match device {
        DeviceState::Net(n) => {
            put_u8(out, TAG_NET);
            put_bytes(out, n.name.as_bytes());
            put_bytes(out, n.tap.as_bytes());
            out.extend_from_slice(&n.mac);
            put_u64(out, n.ring_addr);
            put_u32(out, n.rx_produced);
            put_u32(out, n.tx_consumed);
            put_u32(out, n.moves);
        }
        DeviceState::Block(b) => {
            put_u8(out, TAG_BLOCK);
            put_bytes(out, b.name.as_bytes());
            put_bytes(out, b.path.as_bytes());
            put_bytes(out, b.mode.as_bytes());
            put_u64(out, b.sectors);
            put_u64(out, b.ring_addr);
            put_u32(out, b.requests_consumed);
            put_u32(out, b.completions_produced);
            put_u32(out, b.completions_seen);
            put_len(out, b.pending.len());
            for &(tag, status) in &b.pending {
                put_u64(out, tag);
                put_u32(out, status);
            }
            put_len(out, b.overlay.len());
            for (sector, bytes) in &b.overlay {
                put_u64(out, *sector);
                put_bytes(out, bytes);
            }
        }
        DeviceState::Kv(k) => {
            put_u8(out, TAG_KV);
            put_bytes(out, k.name.as_bytes());
            put_bytes(out, k.source.as_bytes());
            put_u64(out, k.region_addr);
            put_u64(out, k.region_len);
        }
    }
}

// ---- decoding ----

/// The body not yet read. Every read checks the bytes are there first.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], FormatError> {
        if n > self.bytes.len() {
            return Err(malformed(format!("the body ends inside {what}")));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], FormatError> {
        Ok(self.take(N, what)?.try_into().expect("N bytes"))
    }

    fn u8(&mut self, what: &str) -> Result<u8, FormatError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, FormatError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, FormatError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A count of items each at least `item` bytes long, checked against the bytes left.
    fn count(&mut self, item: usize, what: &str) -> Result<usize, FormatError> {
        let n = self.u64(what)?;
        match usize::try_from(n) {
            Ok(n) if n <= self.bytes.len() / item => Ok(n),
            _ => Err(malformed(format!(
                "{what} claims {n} entries, more than the {} bytes left hold",
                self.bytes.len()
            ))),
        }
    }

    fn bytes(&mut self, what: &str) -> Result<Vec<u8>, FormatError> {
        let n = self.count(1, what)?;
        Ok(self.take(n, what)?.to_vec())
    }

    fn string(&mut self, what: &str) -> Result<String, FormatError> {
        String::from_utf8(self.bytes(what)?).map_err(|_| malformed(format!("{what} is not UTF-8")))
    }

    /// A list of items each at least `item` bytes long, read by `read`.
    fn list<T>(
        &mut self,
        item: usize,
        what: &str,
        mut read: impl FnMut(&mut Self) -> Result<T, FormatError>,
    ) -> Result<Vec<T>, FormatError> {
        let n = self.count(item, what)?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(read(self)?);
        }
        Ok(items)
    }

    fn snapshot(&mut self) -> Result<Snapshot, FormatError> {
        Ok(Snapshot {
            abi_version: self.u32("the ABI version")?,
            image: ImageIdentity {
                path: self.string("the image path")?,
                len: self.u64("the image length")?,
                sha256: self.array("the image SHA-256")?,
            },
            mem_bytes: self.u64("the memory size")?,
            name: self.string("the name")?,
            taken_wall_ns: self.u64("the time taken")?,
            parent: match self.u8("the parent")? {
                0 => None,
                1 => Some(Parent {
                    dir: self.string("the parent directory")?,
                    state_crc: self.u32("the parent checksum")?,
                }),
                other => return Err(malformed(format!("parent marker {other}, not 0 or 1"))),
            },
            memory: self.list(20, "the memory extents", |r| {
                Ok(Extent {
                    offset: r.u64("an extent")?,
                    len: r.u64("an extent")?,
                    crc: r.u32("an extent")?,
                })
            })?,
            vcpu: VcpuState {
                regs: self.bytes("the vCPU registers")?,
                sregs: self.bytes("the vCPU special registers")?,
                xsave: self.bytes("the vCPU xsave area")?,
                xcrs: self.bytes("the vCPU XCRs")?,
                events: self.bytes("the vCPU events")?,
                lapic: self.bytes("the vCPU local APIC")?,
                debugregs: self.bytes("the vCPU debug registers")?,
                msrs: self.list(12, "the MSRs", |r| Ok((r.u32("an MSR")?, r.u64("an MSR")?)))?,
                tsc_khz: self.u32("the TSC frequency")?,
                tsc: self.u64("the TSC")?,
            },
            devices: self.list(MIN_DEVICE, "the devices", Self::device)?,
            run: RunSettings {
                net_coalesce_us: self.u64("the coalescing delay")?,
                writable: self.list(16, "the writable ranges", |r| {
                    Ok((r.u64("a writable range")?, r.u64("a writable range")?))
                })?,
            },
        })
    }

    fn device(&mut self) -> Result<DeviceState, FormatError> {
        Ok(match self.u8("a device kind")? {
            TAG_NET => DeviceState::Net(NetState {
                name: self.string("a network device's name")?,
                tap: self.string("a network device's tap")?,
                mac: self.array("a network device's MAC")?,
                ring_addr: self.u64("a network device's rings")?,
                rx_produced: self.u32("a network device's indices")?,
                tx_consumed: self.u32("a network device's indices")?,
                moves: self.u32("a network device's moves")?,
            }),
            TAG_BLOCK => DeviceState::Block(BlockState {
                name: self.string("a block device's name")?,
                path: self.string("a block device's path")?,
                mode: self.string("a block device's mode")?,
                sectors: self.u64("a block device's size")?,
                ring_addr: self.u64("a block device's rings")?,
                requests_consumed: self.u32("a block device's indices")?,
                completions_produced: self.u32("a block device's indices")?,
                completions_seen: self.u32("a block device's indices")?,
                pending: self.list(12, "a block device's pending completions", |r| {
                    Ok((r.u64("a completion")?, r.u32("a completion")?))
                })?,
                overlay: self.list(16, "a block device's written sectors", |r| {
                    Ok((r.u64("written sectors")?, r.bytes("written sectors")?))
                })?,
            }),
            TAG_KV => DeviceState::Kv(KvState {
                name: self.string("a key-value store's name")?,
                source: self.string("a key-value store's source")?,
                region_addr: self.u64("a key-value store's region")?,
                region_len: self.u64("a key-value store's region")?,
            }),
            other => return Err(malformed(format!("unknown device kind {other}"))),
        })
    }
}
