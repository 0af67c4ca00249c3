//! The memory file and the snapshot directory, on a real file system.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;

use fata_snapshot::{
    Extent, FormatError, MEMORY_FILE, MemoryWriter, STATE_FILE, Snapshot, SnapshotError,
    open_memory, read_state, verify_extents, write_state,
};
use proptest::prelude::*;

const PAGE: usize = 4096;
const MIB: u64 = 1 << 20;

/// Page `n` of a test guest: its bytes say which page it is.
fn page(n: u64) -> Vec<u8> {
    (0..PAGE as u64)
        .map(|i| (n.wrapping_mul(31) + i * 7) as u8)
        .collect()
}

#[test]
fn memory_file_is_sparse_and_runs_merge() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(MEMORY_FILE);
    let mem_bytes = 32 * MIB;
    let mut writer = MemoryWriter::create(&path, mem_bytes).unwrap();
    writer.write(0, &page(0)).unwrap();
    writer.write(4096, &page(1)).unwrap();
    writer.write(0, &[]).unwrap();
    writer.write(16 * MIB, &page(2)).unwrap();
    let extents = writer.finish().unwrap();

    let mut first = page(0);
    first.extend(page(1));
    assert_eq!(
        extents,
        vec![
            Extent {
                offset: 0,
                len: 8192,
                crc: crc32c::crc32c(&first),
            },
            Extent {
                offset: 16 * MIB,
                len: 4096,
                crc: crc32c::crc32c(&page(2)),
            },
        ]
    );

    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), mem_bytes);
    let allocated = meta.blocks() * 512;
    assert!(
        allocated <= 1 << 20,
        "{allocated} bytes allocated for 3 pages of a {mem_bytes}-byte file"
    );

    let bytes = fs::read(&path).unwrap();
    assert_eq!(&bytes[..8192], &first[..]);
    assert_eq!(&bytes[16 << 20..(16 << 20) + PAGE], &page(2)[..]);
    assert!(bytes[8192..16 << 20].iter().all(|&b| b == 0));
    assert_eq!(verify_extents(&bytes, &extents), Ok(()));
}

#[test]
fn verify_extents_finds_a_changed_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(MEMORY_FILE);
    let mut writer = MemoryWriter::create(&path, 4 * MIB).unwrap();
    writer.write(8192, &page(7)).unwrap();
    writer.write(MIB, &[page(8), page(9)].concat()).unwrap();
    let extents = writer.finish().unwrap();
    let good = fs::read(&path).unwrap();
    assert_eq!(verify_extents(&good, &extents), Ok(()));

    for at in [8192, 8192 + 4095, MIB as usize + 5000] {
        let mut bad = good.clone();
        bad[at] ^= 1;
        let (offset, len) = if at < MIB as usize {
            (8192, 4096)
        } else {
            (MIB, 8192)
        };
        assert_eq!(
            verify_extents(&bad, &extents),
            Err(FormatError::CorruptMemory { offset, len }),
            "byte {at}"
        );
    }
    // A byte outside every extent is not checked.
    let mut outside = good.clone();
    outside[0] = 1;
    assert_eq!(verify_extents(&outside, &extents), Ok(()));
    // An extent the memory does not hold.
    assert!(matches!(
        verify_extents(&good[..MIB as usize], &extents),
        Err(FormatError::Malformed(what)) if what.contains("past the memory file")
    ));
    let huge = Extent {
        offset: u64::MAX - 4095,
        len: 4096,
        crc: 0,
    };
    assert!(matches!(
        verify_extents(&good, &[huge]),
        Err(FormatError::Malformed(_))
    ));
}

#[test]
fn memory_writer_refuses_bad_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = MemoryWriter::create(&dir.path().join(MEMORY_FILE), 2 * MIB).unwrap();
    writer.write(MIB, &page(0)).unwrap();
    let cases: [(u64, usize, &str); 5] = [
        (MIB + 4096 + 1, PAGE, "whole 4 KiB pages"),
        (MIB + 4096, 100, "whole 4 KiB pages"),
        (0, PAGE, "not after the last run"),
        (2 * MIB, PAGE, "ends past guest memory"),
        (u64::MAX - 4095, PAGE, "ends past guest memory"),
    ];
    for (offset, len, why) in cases {
        let error = writer.write(offset, &vec![0; len]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains(why), "{error}");
    }
    // Refused runs left no trace.
    let extents = writer.finish().unwrap();
    assert_eq!(extents.len(), 1);
    assert_eq!((extents[0].offset, extents[0].len), (MIB, 4096));
}

fn snapshot(mem_bytes: u64, memory: Vec<Extent>) -> Snapshot {
    Snapshot {
        mem_bytes,
        name: "web".into(),
        memory,
        ..Snapshot::default()
    }
}

#[test]
fn snapshot_directory_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = MemoryWriter::create(&dir.path().join(MEMORY_FILE), 2 * MIB).unwrap();
    writer.write(0, &page(3)).unwrap();
    let written = snapshot(2 * MIB, writer.finish().unwrap());
    write_state(dir.path(), &written).unwrap();
    // Writing again replaces the state.
    write_state(dir.path(), &written).unwrap();

    let mut names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [MEMORY_FILE, STATE_FILE], "no temporary file left");

    let read = read_state(dir.path()).unwrap();
    assert_eq!(read, written);
    let memory = open_memory(dir.path(), &read).unwrap();
    let bytes = {
        use std::io::Read;
        let mut bytes = Vec::new();
        (&memory).read_to_end(&mut bytes).unwrap();
        bytes
    };
    assert_eq!(verify_extents(&bytes, &read.memory), Ok(()));
}

#[test]
fn missing_files_ask_whether_it_is_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = dir.path().join("nowhere");
    let error = read_state(&nowhere).unwrap_err();
    assert!(matches!(error, SnapshotError::Missing { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&format!(
            "is {} a snapshot made by `fata snapshot`?",
            nowhere.display()
        )),
        "{error}"
    );
    let file = dir.path().join("plain");
    fs::write(&file, b"hello").unwrap();
    assert!(matches!(
        read_state(&file),
        Err(SnapshotError::Missing { .. })
    ));
    assert!(matches!(
        open_memory(dir.path(), &snapshot(2 * MIB, vec![])),
        Err(SnapshotError::Missing { .. })
    ));
}

#[test]
fn bad_state_and_short_memory_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(STATE_FILE), b"not a snapshot at all").unwrap();
    let error = read_state(dir.path()).unwrap_err();
    assert!(
        matches!(
            error,
            SnapshotError::Format {
                source: FormatError::NotASnapshot,
                ..
            }
        ),
        "{error:?}"
    );

    let good = snapshot(4 * MIB, vec![]);
    fs::write(dir.path().join(MEMORY_FILE), vec![0; 4096]).unwrap();
    let error = open_memory(dir.path(), &good).unwrap_err();
    assert!(
        matches!(
            error,
            SnapshotError::MemoryLength {
                len: 4096,
                mem_bytes,
                ..
            } if mem_bytes == 4 * MIB
        ),
        "{error:?}"
    );

    let invalid = snapshot(3 * MIB, vec![]);
    assert!(matches!(
        write_state(dir.path(), &invalid),
        Err(SnapshotError::Invalid(FormatError::Malformed(_)))
    ));
    assert_eq!(
        fs::read(dir.path().join(STATE_FILE)).unwrap(),
        b"not a snapshot at all",
        "a refused snapshot leaves the old state"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any set of pages, written in order, becomes one extent per maximal run of neighbours,
    /// each checksum right, and the file holds those pages and zeros elsewhere.
    #[test]
    fn neighbours_merge(pages in proptest::collection::btree_set(0u64..512, 0..100)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MEMORY_FILE);
        let mut writer = MemoryWriter::create(&path, 2 * MIB).unwrap();
        for &n in &pages {
            writer.write(n * 4096, &page(n)).unwrap();
        }
        let extents = writer.finish().unwrap();
        let starts: BTreeSet<u64> =
            pages.iter().copied().filter(|&n| n == 0 || !pages.contains(&(n - 1))).collect();
        prop_assert_eq!(extents.len(), starts.len());
        let covered: BTreeSet<u64> = extents
            .iter()
            .flat_map(|e| e.offset / 4096..(e.offset + e.len) / 4096)
            .collect();
        prop_assert_eq!(&covered, &pages);
        let bytes = fs::read(&path).unwrap();
        prop_assert_eq!(verify_extents(&bytes, &extents), Ok(()));
        let mut expected = vec![0u8; 2 * MIB as usize];
        for &n in &pages {
            let at = n as usize * PAGE;
            expected[at..at + PAGE].copy_from_slice(&page(n));
        }
        prop_assert!(bytes == expected);
    }
}
