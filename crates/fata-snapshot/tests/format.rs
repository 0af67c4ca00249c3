//! The state file's encoding: round trips, and every way bytes can be wrong.

use fata_snapshot::{
    BlockState, DeviceState, Extent, FORMAT_VERSION, FormatError, ImageIdentity, KvState, MAGIC,
    NetState, Parent, RunSettings, Snapshot, VcpuState, decode, encode, state_crc,
};
use proptest::prelude::*;

const MIB: u64 = 1 << 20;

/// A snapshot with every field set and every kind of device.
fn full() -> Snapshot {
    Snapshot {
        abi_version: 6,
        image: ImageIdentity {
            path: "/srv/pulse.hvt".into(),
            len: 1_234_567,
            sha256: std::array::from_fn(|i| i as u8 * 7),
        },
        mem_bytes: 64 * MIB,
        name: "NAMEMARK".into(),
        taken_wall_ns: 1_700_000_000_123_456_789,
        parent: Some(Parent {
            dir: "/var/snap/base".into(),
            state_crc: 0xdead_beef,
        }),
        memory: vec![
            Extent {
                offset: 0,
                len: 8192,
                crc: 1,
            },
            Extent {
                offset: 16 * MIB,
                len: 4096,
                crc: 2,
            },
            Extent {
                offset: 64 * MIB - 4096,
                len: 4096,
                crc: 3,
            },
        ],
        vcpu: VcpuState {
            regs: vec![1; 144],
            sregs: vec![2; 312],
            xsave: vec![3; 4096],
            xcrs: vec![4; 392],
            events: vec![5; 64],
            lapic: vec![6; 1024],
            debugregs: vec![7; 128],
            msrs: vec![(0x10, 99), (0xc000_0080, 0xd01)],
            tsc_khz: 2_400_000,
            tsc: 987_654_321,
        },
        devices: vec![
            DeviceState::Net(NetState {
                name: "service".into(),
                tap: "tap0".into(),
                mac: [2, 0, 0, 0, 0, 1],
                ring_addr: 0x20_0000,
                rx_produced: 17,
                tx_consumed: u32::MAX,
                moves: 2,
            }),
            DeviceState::Block(BlockState {
                name: "storage".into(),
                path: "/srv/disk.img".into(),
                mode: "cow".into(),
                sectors: 2048,
                ring_addr: 0x30_0000,
                requests_consumed: 5,
                completions_produced: 4,
                completions_seen: 3,
                pending: vec![(77, 0), (78, 5)],
                overlay: vec![(0, vec![0xaa; 512]), (100, vec![0xbb; 4096])],
            }),
            DeviceState::Block(BlockState {
                name: "logs".into(),
                path: "/srv/logs.img".into(),
                mode: "ro".into(),
                sectors: 8,
                ..BlockState::default()
            }),
            DeviceState::Kv(KvState {
                name: "KVTAG".into(),
                source: "/srv/site".into(),
                region_addr: 0x40_0000,
                region_len: 0x1000,
            }),
        ],
        run: RunSettings {
            net_coalesce_us: 50,
            writable: vec![(0x10_0000, 0x80_0000), (0x100_0000, 64 * MIB)],
        },
    }
}

/// The smallest valid snapshot.
fn minimal() -> Snapshot {
    Snapshot {
        mem_bytes: 2 * MIB,
        ..Snapshot::default()
    }
}

const HEADER: usize = 20;

/// `body` framed as a state file, with a correct checksum.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    let crc = crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The body of an encoded state file.
fn body(bytes: &[u8]) -> Vec<u8> {
    bytes[HEADER..bytes.len() - 4].to_vec()
}

/// CRC-32C (Castagnoli, reflected), bit by bit: the tests' own reference.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("marker present")
}

fn malformed(result: Result<Snapshot, FormatError>) -> String {
    match result {
        Err(FormatError::Malformed(what)) => what,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn full_snapshot_round_trips() {
    let snapshot = full();
    let bytes = encode(&snapshot);
    assert_eq!(&bytes[..8], b"FATASNAP");
    assert_eq!(bytes[8..12], 1u32.to_le_bytes());
    assert_eq!(
        u64::from_le_bytes(bytes[12..20].try_into().unwrap()),
        (bytes.len() - HEADER - 4) as u64
    );
    assert_eq!(decode(&bytes), Ok(snapshot.clone()));
    assert_eq!(encode(&decode(&bytes).unwrap()), bytes);
    assert_eq!(frame(&body(&bytes)), bytes, "the trailer is CRC-32C");
}

#[test]
fn minimal_snapshot_round_trips() {
    let bytes = encode(&minimal());
    assert_eq!(decode(&bytes), Ok(minimal()));
}

#[test]
fn state_crc_is_the_trailer() {
    let bytes = encode(&full());
    let trailer = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap());
    assert_eq!(state_crc(&bytes), Ok(trailer));
    assert_eq!(
        state_crc(&bytes[..bytes.len() - 1]),
        Err(FormatError::Truncated)
    );
    assert_ne!(state_crc(&encode(&minimal())), Ok(trailer));
}

#[test]
fn every_truncation_is_truncated() {
    let bytes = encode(&full());
    for len in 0..bytes.len() {
        assert_eq!(
            decode(&bytes[..len]),
            Err(FormatError::Truncated),
            "cut at {len}"
        );
    }
}

#[test]
fn every_flipped_byte_is_refused() {
    let bytes = encode(&full());
    for at in 0..bytes.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut changed = bytes.clone();
            changed[at] ^= flip;
            let result = decode(&changed);
            let expected_kind = match at {
                0..8 => matches!(result, Err(FormatError::NotASnapshot)),
                8..12 => matches!(result, Err(FormatError::UnsupportedVersion { .. })),
                12..20 => matches!(
                    result,
                    Err(FormatError::Truncated | FormatError::Malformed(_))
                ),
                _ => result == Err(FormatError::Corrupt),
            };
            assert!(expected_kind, "byte {at} ^ {flip:#x}: {result:?}");
        }
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = encode(&full());
    bytes.push(0);
    assert!(malformed(decode(&bytes)).contains("after the checksum"));
    // Garbage inside the checksummed body, after the last field.
    let mut inner = body(&encode(&full()));
    inner.push(0);
    assert!(malformed(decode(&frame(&inner))).contains("after the last field"));
}

#[test]
fn other_versions_are_refused() {
    let mut bytes = encode(&full());
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let len = bytes.len();
    let crc = crc32c(&bytes[..len - 4]);
    bytes[len - 4..].copy_from_slice(&crc.to_le_bytes());
    let error = decode(&bytes).unwrap_err();
    assert_eq!(
        error,
        FormatError::UnsupportedVersion {
            found: 2,
            supported: 1
        }
    );
    assert!(error.to_string().contains("with the fata that took it"));
}

#[test]
fn foreign_bytes_are_not_a_snapshot() {
    assert_eq!(
        decode(b"\x7fELF\x02\x01\x01"),
        Err(FormatError::NotASnapshot)
    );
    assert_eq!(decode(b"FATASNAQ"), Err(FormatError::NotASnapshot));
    assert_eq!(decode(b"FATA"), Err(FormatError::Truncated));
}

/// What a malformed snapshot's message says, and the change that makes it.
type Violation = (&'static str, fn(&mut Snapshot));

#[test]
fn impossible_values_are_malformed() {
    let cases: Vec<Violation> = vec![
        ("positive multiple of 2 MiB", |s| s.mem_bytes = 0),
        ("positive multiple of 2 MiB", |s| s.mem_bytes += 4096),
        ("whole 4 KiB pages", |s| s.memory[1].offset += 512),
        ("whole 4 KiB pages", |s| s.memory[1].len = 4095),
        ("whole 4 KiB pages", |s| s.memory[1].len = 0),
        ("overlaps or precedes", |s| s.memory.swap(0, 1)),
        ("overlaps or precedes", |s| s.memory[1].offset = 4096),
        ("ends past guest memory", |s| s.memory[2].len = 8192),
        ("ends past guest memory", |s| {
            s.memory[2].len = u64::MAX - 4095
        }),
        ("writable range", |s| s.run.writable[0] = (8, 4)),
        ("writable range", |s| s.run.writable[1].1 += 1),
        ("unknown block mode", |s| block(s).mode = "rwx".into()),
        ("written sectors on a rw device", |s| {
            block(s).mode = "rw".into()
        }),
        ("whole sectors", |s| block(s).overlay[0].1.push(0)),
        ("whole sectors", |s| block(s).overlay[1].0 = 2041),
        ("whole sectors", |s| block(s).overlay[1].0 = u64::MAX),
        ("key-value region", |s| {
            let DeviceState::Kv(kv) = &mut s.devices[3] else {
                unreachable!()
            };
            kv.region_addr = 64 * MIB - 4;
        }),
    ];
    for (expected, change) in cases {
        let mut snapshot = full();
        change(&mut snapshot);
        let what = malformed(decode(&encode(&snapshot)));
        assert!(what.contains(expected), "{what:?} lacks {expected:?}");
        assert!(matches!(
            snapshot.validate(),
            Err(FormatError::Malformed(_))
        ));
    }
    assert_eq!(full().validate(), Ok(()));
}

fn block(snapshot: &mut Snapshot) -> &mut BlockState {
    let DeviceState::Block(block) = &mut snapshot.devices[1] else {
        unreachable!()
    };
    block
}

#[test]
fn bad_markers_and_lengths_are_malformed() {
    let good = body(&encode(&full()));

    let mut inner = good.clone();
    let kv = find(&inner, &[5, 0, 0, 0, 0, 0, 0, 0, b'K', b'V']);
    inner[kv - 1] = 9;
    assert!(malformed(decode(&frame(&inner))).contains("unknown device kind 9"));

    let name = find(&inner, b"NAMEMARK");
    let mut inner = good.clone();
    inner[name + 8 + 8] = 2;
    assert!(malformed(decode(&frame(&inner))).contains("parent marker 2"));

    let mut inner = good.clone();
    inner[name] = 0xff;
    assert!(malformed(decode(&frame(&inner))).contains("not UTF-8"));

    // A length far beyond the input is refused before anything is allocated for it.
    let mut inner = good;
    inner[name - 8..name].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(malformed(decode(&frame(&inner))).contains("more than the"));

    // A count is checked against the smallest encoding of its items, not against one byte each.
    let mut inner = body(&encode(&minimal()));
    let devices = inner.len() - 16 - 8;
    inner[devices..devices + 8].copy_from_slice(&16u64.to_le_bytes());
    assert!(malformed(decode(&frame(&inner))).contains("the devices claims 16 entries"));

    let mut inner = body(&encode(&minimal()));
    inner.truncate(inner.len() - 1);
    assert!(malformed(decode(&frame(&inner))).contains("the body ends inside"));
}

proptest! {
    /// Any body, framed correctly, decodes or is refused without a panic; what decodes encodes
    /// back to the same bytes (the encoding is canonical).
    #[test]
    fn any_body_decodes_or_is_refused(inner in proptest::collection::vec(any::<u8>(), 0..512)) {
        let bytes = frame(&inner);
        if let Ok(snapshot) = decode(&bytes) {
            prop_assert_eq!(encode(&snapshot), bytes);
        }
    }

    /// Changing bytes of a good body keeps decoding panic-free and canonical.
    #[test]
    fn changed_bodies_stay_canonical(
        changes in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)
    ) {
        let mut inner = body(&encode(&full()));
        for (at, value) in changes {
            let at = at.index(inner.len());
            inner[at] = value;
        }
        let bytes = frame(&inner);
        if let Ok(snapshot) = decode(&bytes) {
            prop_assert_eq!(encode(&snapshot), bytes);
        }
    }
}
