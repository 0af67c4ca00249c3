//! fata-blockfile on real files: many requests in flight through io_uring, direct and buffered
//! I/O, the three modes, discards, grouped writes and the journal.

mod common;

use std::os::unix::fs::{FileExt, MetadataExt};
use std::time::Duration;

use common::{
    Buffer, Image, contents, discard, fill_pattern, flush, read, readable, request, run, wait,
    write,
};
use fata_blockfile::{BlockFile, GROUPED_MAX, Mode, Op, OpenError, REQUEST_MAX, Request, Status};

const MIB: u64 = 1 << 20;

#[test]
fn thirty_two_requests_in_flight_round_trip_with_one_enter_each_way() {
    let image = Image::new(64 * MIB);
    let mut file = BlockFile::open(&image.path, Mode::ReadWrite).unwrap();
    assert_eq!(file.sectors(), 64 * MIB / 512);
    // 32 writes of 128 KiB, scattered over the disk, submitted together.
    let place = |i: u64| (i * 37 % 32) * (2 * MIB / 512);
    let mut writes: Vec<Buffer> = (0..32).map(|i| Buffer::pattern(128 << 10, i)).collect();
    let requests: Vec<Request> = writes
        .iter_mut()
        .enumerate()
        .map(|(i, b)| request(i as u64, Op::Write { grouped: false }, place(i as u64), b))
        .collect();
    for &r in &requests {
        // SAFETY: `writes` outlives every request (they complete in `wait` below).
        unsafe { file.submit(r) };
    }
    assert_eq!(file.in_flight(), 32);
    file.start().unwrap();
    assert_eq!(file.stats().enters, 1, "one io_uring_enter starts all 32");
    let done = wait(&mut file, 32);
    assert!(done.iter().all(|&(_, s)| s == Status::Ok), "{done:?}");
    let mut tags: Vec<u64> = done.iter().map(|&(t, _)| t).collect();
    tags.sort();
    assert_eq!(tags, (0..32).collect::<Vec<_>>());
    assert_eq!(file.in_flight(), 0);

    // Read them back, 32 at once, into fresh buffers.
    let mut reads: Vec<Buffer> = (0..32).map(|_| Buffer::new(128 << 10, 0)).collect();
    let requests: Vec<Request> = reads
        .iter_mut()
        .enumerate()
        .map(|(i, b)| request(100 + i as u64, Op::Read, place(i as u64), b))
        .collect();
    let enters = file.stats().enters;
    // SAFETY: `reads` outlives the requests, which complete inside `run`.
    let done = unsafe { run(&mut file, &requests) };
    assert!(done.iter().all(|&(_, s)| s == Status::Ok), "{done:?}");
    assert!(file.stats().enters - enters <= 2, "{:?}", file.stats());
    for (i, (read, written)) in reads.iter().zip(&writes).enumerate() {
        assert!(
            read.as_slice() == written.as_slice(),
            "request {i} read back other bytes"
        );
    }
    // The file holds them too, as the host reads it.
    let bytes = contents(&image.path);
    for (i, written) in writes.iter().enumerate() {
        let at = (place(i as u64) * 512) as usize;
        assert!(bytes[at..at + (128 << 10)] == *written.as_slice());
    }
    let stats = file.stats();
    assert_eq!((stats.reads, stats.writes, stats.failed), (32, 32, 0));
    assert_eq!(stats.bytes_read, 32 * (128 << 10));
    assert_eq!(
        stats.direct, 64,
        "aligned requests on ext4 take the O_DIRECT path"
    );
}

#[test]
fn unaligned_buffers_take_the_page_cache_and_see_direct_writes() {
    let image = Image::new(MIB);
    let mut file = BlockFile::open(&image.path, Mode::ReadWrite).unwrap();
    // A page-aligned write goes direct; requests whose buffer is 8 bytes off alignment cannot.
    let mut aligned = Buffer::pattern(8192, 1);
    assert_eq!(write(&mut file, 8, &mut aligned, false), Status::Ok);
    assert_eq!(file.stats().direct, 1);
    let mut backing = Buffer::new(8192 + 8, 0);
    // SAFETY: 8 bytes into a buffer of 8192 + 8, leaving 8192 bytes.
    let off = unsafe { backing.ptr().add(8) };
    let unaligned = |tag, op, sector, len| Request {
        tag,
        op,
        sector,
        len,
        buf: off,
    };
    // SAFETY: `backing` outlives the request, which completes inside `run`.
    let done = unsafe { run(&mut file, &[unaligned(5, Op::Read, 8, 8192)]) };
    assert_eq!(done, [(5, Status::Ok)]);
    assert_eq!(file.stats().direct, 1, "the unaligned read was buffered");
    assert!(backing.as_slice()[8..] == *aligned.as_slice());
    // An unaligned write of one sector, through the page cache, then an aligned read over it,
    // direct: the kernel keeps the two views of the file coherent.
    let odd = Buffer::pattern(512, 2);
    backing.as_mut_slice()[8..520].copy_from_slice(odd.as_slice());
    let write_odd = unaligned(6, Op::Write { grouped: false }, 9, 512);
    // SAFETY: as above.
    let done = unsafe { run(&mut file, &[write_odd]) };
    assert_eq!(done, [(6, Status::Ok)]);
    assert_eq!(file.stats().direct, 1, "the unaligned write was buffered");
    let back = read(&mut file, 8, 8192);
    assert_eq!(file.stats().direct, 2);
    let mut expected = aligned.as_slice().to_vec();
    expected[512..1024].copy_from_slice(odd.as_slice());
    assert!(back.as_slice() == expected);
}

#[test]
fn requests_that_cannot_succeed_complete_at_once_with_their_status() {
    let image = Image::new(64 * 512);
    let mut file = BlockFile::open(&image.path, Mode::ReadWrite).unwrap();
    let mut buffer = Buffer::new(REQUEST_MAX as usize + 4096, 0);
    let ptr = buffer.ptr();
    let with = |tag, op, sector, len| Request {
        tag,
        op,
        sector,
        len,
        buf: ptr,
    };
    let write = Op::Write { grouped: false };
    let bad = [
        (with(1, Op::Read, 0, 0), Status::BadRequest),
        (with(2, Op::Read, 0, 100), Status::BadRequest),
        (with(3, write, 0, REQUEST_MAX + 512), Status::BadRequest),
        (with(4, Op::Read, 63, 1024), Status::OutOfRange),
        (with(5, write, u64::MAX, 512), Status::OutOfRange),
        (with(6, Op::Discard, 64, 512), Status::OutOfRange),
        (
            Request {
                buf: std::ptr::null_mut(),
                ..with(7, Op::Read, 0, 512)
            },
            Status::BadRequest,
        ),
    ];
    for (r, _) in bad {
        // SAFETY: none of these requests gets as far as touching `buffer`.
        unsafe { file.submit(r) };
    }
    // Without a start, the eventfd already says they are done.
    assert!(readable(file.completion_fd(), Duration::ZERO));
    let mut done = Vec::new();
    assert_eq!(file.complete(&mut |t, s| done.push((t, s))), bad.len());
    let expected: Vec<(u64, Status)> = bad.iter().map(|(r, s)| (r.tag, *s)).collect();
    assert_eq!(done, expected);
    assert_eq!(file.stats().failed, bad.len() as u64);
    // Once taken, a start clears the signal: nothing is readable while nothing waits.
    file.start().unwrap();
    assert!(!readable(file.completion_fd(), Duration::ZERO));
    // The device goes on: the last sector is served.
    let mut last = Buffer::pattern(512, 3);
    assert_eq!(common::write(&mut file, 63, &mut last, false), Status::Ok);
    file.start().unwrap();
    assert!(!readable(file.completion_fd(), Duration::ZERO));
}

#[test]
fn read_only_refuses_writes_and_discards_and_serves_reads() {
    let image = Image::new(MIB);
    let mut pattern = vec![0u8; MIB as usize];
    fill_pattern(&mut pattern, 4);
    std::fs::write(&image.path, &pattern).unwrap();
    let mut file = BlockFile::open(&image.path, Mode::ReadOnly).unwrap();
    assert_eq!(file.mode(), Mode::ReadOnly);
    let mut buffer = Buffer::new(4096, 7);
    for grouped in [false, true] {
        assert_eq!(write(&mut file, 0, &mut buffer, grouped), Status::ReadOnly);
    }
    // SAFETY: a discard and a flush carry no buffer.
    let done = unsafe { run(&mut file, &[discard(1, 0, 8), flush(2)]) };
    assert_eq!(done, [(1, Status::ReadOnly), (2, Status::Ok)]);
    let back = read(&mut file, 8, 4096);
    assert!(*back.as_slice() == pattern[4096..8192]);
    assert!(contents(&image.path) == pattern);
    assert!(
        !image.journal().exists(),
        "a read-only device makes no journal"
    );
    // Read-only devices share the file; a writer cannot join them.
    let second = BlockFile::open(&image.path, Mode::ReadOnly);
    assert!(second.is_ok());
    let writer = BlockFile::open(&image.path, Mode::ReadWrite);
    assert!(
        matches!(writer, Err(OpenError::Busy { .. })),
        "{:?}",
        writer.err()
    );
}

#[test]
fn copy_on_write_keeps_writes_in_memory_and_the_file_unchanged() {
    let image = Image::new(MIB);
    let mut pattern = vec![0u8; MIB as usize];
    fill_pattern(&mut pattern, 5);
    std::fs::write(&image.path, &pattern).unwrap();
    let mut file = BlockFile::open(&image.path, Mode::CopyOnWrite).unwrap();
    let mut plain = Buffer::pattern(8192, 6);
    let mut grouped = Buffer::pattern(1024, 7);
    assert_eq!(write(&mut file, 16, &mut plain, false), Status::Ok);
    assert_eq!(write(&mut file, 20, &mut grouped, true), Status::Ok);
    // SAFETY: a discard and a flush carry no buffer.
    let done = unsafe { run(&mut file, &[discard(1, 30, 2), flush(2)]) };
    assert_eq!(done, [(1, Status::Ok), (2, Status::Ok)]);
    let back = read(&mut file, 14, 20 * 512);
    let mut expected = pattern[14 * 512..34 * 512].to_vec();
    expected[2 * 512..18 * 512].copy_from_slice(plain.as_slice());
    expected[6 * 512..8 * 512].copy_from_slice(grouped.as_slice());
    expected[16 * 512..18 * 512].fill(0);
    assert!(
        back.as_slice() == expected,
        "reads see the writes and the discard"
    );
    assert!(contents(&image.path) == pattern, "the file never changes");
    assert!(!image.journal().exists());
    // Another copy-on-write device of the same file starts from the file, not from these writes.
    let mut other = BlockFile::open(&image.path, Mode::CopyOnWrite).unwrap();
    let back = read(&mut other, 16, 512);
    assert!(*back.as_slice() == pattern[16 * 512..17 * 512]);
}

#[test]
fn sectors_held_in_memory_are_listed_and_given_back_to_another_device() {
    let image = Image::new(MIB);
    let mut pattern = vec![0u8; MIB as usize];
    fill_pattern(&mut pattern, 8);
    std::fs::write(&image.path, &pattern).unwrap();
    let mut file = BlockFile::open(&image.path, Mode::CopyOnWrite).unwrap();
    let mut plain = Buffer::pattern(1024, 9);
    assert_eq!(write(&mut file, 16, &mut plain, false), Status::Ok);
    // SAFETY: a discard carries no buffer.
    let done = unsafe { run(&mut file, &[discard(1, 30, 1)]) };
    assert_eq!(done, [(1, Status::Ok)]);
    let held: Vec<(u64, Vec<u8>)> = file.held().map(|(n, b)| (n, b.to_vec())).collect();
    let numbers: Vec<u64> = held.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, [16, 17, 30]);
    assert!(held[0].1 == plain.as_slice()[..512] && held[2].1 == [0; 512]);

    // A fresh device of the same file, given those sectors, reads what the first one did.
    let mut restored = BlockFile::open(&image.path, Mode::CopyOnWrite).unwrap();
    for (sector, bytes) in &held {
        assert!(restored.hold(*sector, bytes));
    }
    let back = read(&mut restored, 15, 16 * 512);
    let mut expected = pattern[15 * 512..31 * 512].to_vec();
    expected[512..3 * 512].copy_from_slice(plain.as_slice());
    expected[15 * 512..].fill(0);
    assert!(back.as_slice() == expected);
    assert!(contents(&image.path) == pattern, "the file never changes");
    // Past the end, or not whole sectors: refused, nothing held.
    let sectors = MIB / 512;
    assert!(!restored.hold(sectors - 1, &[0; 1024]));
    assert!(!restored.hold(u64::MAX, &[0; 512]));
    assert!(!restored.hold(0, &[0; 100]));
    assert_eq!(restored.held().len(), 3);

    // On a read-write device they wait for the next flush, as grouped writes do.
    drop((file, restored));
    let mut rw = BlockFile::open(&image.path, Mode::ReadWrite).unwrap();
    assert!(rw.hold(16, plain.as_slice()));
    assert!(contents(&image.path) == pattern);
    // SAFETY: a flush carries no buffer.
    assert_eq!(unsafe { run(&mut rw, &[flush(2)]) }, [(2, Status::Ok)]);
    assert!(contents(&image.path)[16 * 512..18 * 512] == *plain.as_slice());
}

#[test]
fn discarded_sectors_read_back_as_zeros_and_free_their_space() {
    let image = Image::new(4 * MIB);
    let mut file = BlockFile::open(&image.path, Mode::ReadWrite).unwrap();
    let mut data = Buffer::pattern(2 * MIB as usize, 8);
    assert_eq!(write(&mut file, 0, &mut data, false), Status::Ok);
    // SAFETY: a flush carries no buffer.
    assert_eq!(unsafe { common::one(&mut file, flush(1)) }, Status::Ok);
    let blocks = std::fs::metadata(&image.path).unwrap().blocks();
    // SAFETY: a discard carries no buffer.
    let done = unsafe { run(&mut file, &[discard(2, 1024, 2048)]) };
    assert_eq!(done, [(2, Status::Ok)]);
    let back = read(&mut file, 0, 2 * MIB as usize);
    assert!(back.as_slice()[..512 * 1024] == data.as_slice()[..512 * 1024]);
    assert!(
        back.as_slice()[512 * 1024..1536 * 1024]
            .iter()
            .all(|&b| b == 0)
    );
    assert!(back.as_slice()[1536 * 1024..] == data.as_slice()[1536 * 1024..]);
    let freed = std::fs::metadata(&image.path).unwrap().blocks();
    assert!(
        freed < blocks,
        "the host freed the space: {blocks} then {freed} blocks"
    );
    assert_eq!(file.stats().discards, 1);
}

#[test]
fn grouped_writes_wait_for_the_flush_and_reads_see_them_meanwhile() {
    let image = Image::new(MIB);
    let mut file = BlockFile::open(&image.path, Mode::ReadWrite).unwrap();
    assert!(
        image.journal().exists(),
        "the journal is opened with the file"
    );
    let mut first = Buffer::pattern(4096, 9);
    let mut second = Buffer::pattern(512, 10);
    assert_eq!(write(&mut file, 0, &mut first, true), Status::Ok);
    assert_eq!(write(&mut file, 100, &mut second, true), Status::Ok);
    // A plain write over part of a grouped one: reads and the flush keep the later bytes.
    let mut later = Buffer::pattern(512, 11);
    assert_eq!(write(&mut file, 2, &mut later, false), Status::Ok);
    let mut expected = first.as_slice().to_vec();
    expected[1024..1536].copy_from_slice(later.as_slice());
    let back = read(&mut file, 0, 4096);
    assert!(
        back.as_slice() == expected,
        "reads see grouped writes at once"
    );
    let on_disk = contents(&image.path);
    assert!(
        on_disk[..1024].iter().all(|&b| b == 0),
        "not in the file before the flush"
    );
    assert!(
        on_disk[1024..1536] == *later.as_slice(),
        "the plain write is"
    );
    // SAFETY: a flush carries no buffer.
    assert_eq!(unsafe { common::one(&mut file, flush(1)) }, Status::Ok);
    let on_disk = contents(&image.path);
    assert!(on_disk[..4096] == expected);
    assert!(on_disk[100 * 512..101 * 512] == *second.as_slice());
    assert_eq!(std::fs::metadata(image.journal()).unwrap().len(), 0);
    let stats = file.stats();
    assert_eq!(
        (stats.grouped_writes, stats.journal_commits, stats.flushes),
        (2, 1, 1)
    );
    // Grouped writes that no flush applied are lost with the device, as in a crash.
    let mut lost = Buffer::pattern(512, 12);
    assert_eq!(write(&mut file, 200, &mut lost, true), Status::Ok);
    drop(file);
    assert!(
        contents(&image.path)[200 * 512..201 * 512]
            .iter()
            .all(|&b| b == 0)
    );
    let file = BlockFile::open(&image.path, Mode::ReadWrite).unwrap();
    assert_eq!(file.recovered(), 0);
}

#[test]
fn a_flush_completes_after_everything_before_it() {
    let image = Image::new(16 * MIB);
    let mut file = BlockFile::open(&image.path, Mode::ReadWrite).unwrap();
    let mut buffers: Vec<Buffer> = (0..32).map(|i| Buffer::pattern(256 << 10, i)).collect();
    let mut requests: Vec<Request> = buffers
        .iter_mut()
        .enumerate()
        .map(|(i, b)| {
            request(
                i as u64,
                Op::Write {
                    grouped: i % 4 == 0,
                },
                i as u64 * 512,
                b,
            )
        })
        .collect();
    requests.push(flush(1000));
    let mut after = Buffer::new(4096, 0);
    requests.push(request(1001, Op::Read, 0, &mut after));
    // SAFETY: the buffers outlive the requests, which complete inside `run`.
    let done = unsafe { run(&mut file, &requests) };
    let flushed = done.iter().position(|&(t, _)| t == 1000).unwrap();
    assert_eq!(
        flushed, 32,
        "every write completed before the flush: {done:?}"
    );
    assert_eq!(done[33].0, 1001);
    assert!(done.iter().all(|&(_, s)| s == Status::Ok));
    let bytes = contents(&image.path);
    for (i, b) in buffers.iter().enumerate() {
        let at = i * 512 * 512;
        assert!(bytes[at..at + (256 << 10)] == *b.as_slice(), "write {i}");
    }
    assert!(after.as_slice() == &buffers[0].as_slice()[..4096]);
}

#[test]
fn grouped_writes_past_the_limit_get_no_space() {
    let image = Image::new(2 * GROUPED_MAX);
    let mut file = BlockFile::open(&image.path, Mode::ReadWrite).unwrap();
    let mut chunk = Buffer::pattern(REQUEST_MAX as usize, 13);
    let chunks = GROUPED_MAX / REQUEST_MAX;
    for i in 0..chunks {
        let sector = i * REQUEST_MAX / 512;
        assert_eq!(
            write(&mut file, sector, &mut chunk, true),
            Status::Ok,
            "{i}"
        );
    }
    // Writing the same sectors again adds nothing; one sector more is too many.
    assert_eq!(write(&mut file, 0, &mut chunk, true), Status::Ok);
    let mut one = Buffer::pattern(512, 14);
    assert_eq!(
        write(&mut file, GROUPED_MAX / 512, &mut one, true),
        Status::NoSpace
    );
    assert_eq!(
        write(&mut file, GROUPED_MAX / 512, &mut one, false),
        Status::Ok
    );
    // SAFETY: a flush carries no buffer.
    assert_eq!(unsafe { common::one(&mut file, flush(1)) }, Status::Ok);
    assert_eq!(
        write(&mut file, GROUPED_MAX / 512, &mut one, true),
        Status::Ok
    );
    let mut on_disk = vec![0u8; REQUEST_MAX as usize];
    std::fs::File::open(&image.path)
        .unwrap()
        .read_exact_at(&mut on_disk, GROUPED_MAX - REQUEST_MAX)
        .unwrap();
    assert!(on_disk == chunk.as_slice());
}

/// A journal as the crate documents it, built by hand.
fn journal_bytes(sequence: u64, entries: &[(u64, [u8; 512])], commit: bool) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"FATAJNL1");
    bytes.extend_from_slice(&sequence.to_le_bytes());
    bytes.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (sector, data) in entries {
        bytes.extend_from_slice(&sector.to_le_bytes());
        bytes.extend_from_slice(data);
    }
    let checksum = crc32fast::hash(&bytes);
    if commit {
        bytes.extend_from_slice(b"FATACMT1");
        bytes.extend_from_slice(&sequence.to_le_bytes());
        bytes.extend_from_slice(&checksum.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
    }
    bytes
}

#[test]
fn a_committed_journal_left_by_a_crash_is_finished_at_open() {
    let image = Image::new(MIB);
    let entries = [(3, [0x33; 512]), (4, [0x44; 512]), (2047, [0x77; 512])];
    let journal = journal_bytes(41, &entries, true);
    std::fs::write(image.journal(), &journal).unwrap();
    // Read-only and copy-on-write devices apply it in memory and leave both files alone.
    for mode in [Mode::ReadOnly, Mode::CopyOnWrite] {
        let mut file = BlockFile::open(&image.path, mode).unwrap();
        assert_eq!(file.recovered(), 3);
        let back = read(&mut file, 2, 3 * 512);
        assert!(back.as_slice()[..512].iter().all(|&b| b == 0));
        assert!(back.as_slice()[512..1024].iter().all(|&b| b == 0x33));
        assert!(back.as_slice()[1024..].iter().all(|&b| b == 0x44));
        assert!(contents(&image.path).iter().all(|&b| b == 0));
        assert!(std::fs::read(image.journal()).unwrap() == journal);
    }
    // A read-write device writes it in place and empties it.
    let mut file = BlockFile::open(&image.path, Mode::ReadWrite).unwrap();
    assert_eq!((file.recovered(), file.stats().recovered_sectors), (3, 3));
    let bytes = contents(&image.path);
    assert!(bytes[3 * 512..4 * 512].iter().all(|&b| b == 0x33));
    assert!(bytes[4 * 512..5 * 512].iter().all(|&b| b == 0x44));
    assert!(bytes[2047 * 512..].iter().all(|&b| b == 0x77));
    assert_eq!(std::fs::metadata(image.journal()).unwrap().len(), 0);
    // The next flush works on from there.
    let mut more = Buffer::pattern(512, 15);
    assert_eq!(write(&mut file, 5, &mut more, true), Status::Ok);
    // SAFETY: a flush carries no buffer.
    assert_eq!(unsafe { common::one(&mut file, flush(1)) }, Status::Ok);
    assert!(contents(&image.path)[5 * 512..6 * 512] == *more.as_slice());
    drop(file);
    assert_eq!(
        BlockFile::open(&image.path, Mode::ReadWrite)
            .unwrap()
            .recovered(),
        0
    );
}

#[test]
fn a_torn_journal_is_ignored_and_a_mismatched_one_refused() {
    let image = Image::new(MIB);
    let entries = [(3, [0x33; 512])];
    let complete = journal_bytes(1, &entries, true);
    for torn in [
        journal_bytes(1, &entries, false),
        complete[..complete.len() - 1].to_vec(),
        {
            let mut flipped = complete.clone();
            flipped[30] ^= 1;
            flipped
        },
    ] {
        std::fs::write(image.journal(), &torn).unwrap();
        let mut file = BlockFile::open(&image.path, Mode::CopyOnWrite).unwrap();
        assert_eq!(file.recovered(), 0);
        let back = read(&mut file, 3, 512);
        assert!(back.as_slice().iter().all(|&b| b == 0));
        drop(file);
        let file = BlockFile::open(&image.path, Mode::ReadWrite).unwrap();
        assert_eq!(file.recovered(), 0);
        assert!(contents(&image.path).iter().all(|&b| b == 0));
        assert_eq!(
            std::fs::metadata(image.journal()).unwrap().len(),
            0,
            "emptied"
        );
    }
    std::fs::write(image.journal(), journal_bytes(1, &[(2048, [1; 512])], true)).unwrap();
    let refused = BlockFile::open(&image.path, Mode::ReadWrite);
    let message = refused.err().expect("refused").to_string();
    assert!(message.contains("for a larger disk"), "{message}");
}

#[test]
fn files_that_cannot_be_disks_are_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.img");
    std::fs::write(&empty, b"").unwrap();
    let message = BlockFile::open(&empty, Mode::ReadWrite)
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("truncate -s"), "{message}");
    let message = BlockFile::open(dir.path(), Mode::ReadOnly)
        .err()
        .unwrap()
        .to_string();
    assert!(
        message.contains("neither a regular file nor a block device"),
        "{message}"
    );
    let missing = dir.path().join("missing.img");
    let message = BlockFile::open(&missing, Mode::ReadWrite)
        .err()
        .unwrap()
        .to_string();
    assert!(
        message.contains("missing.img") && message.contains("exist"),
        "{message}"
    );
    let image = Image::new(MIB);
    let _first = BlockFile::open(&image.path, Mode::ReadWrite).unwrap();
    let message = BlockFile::open(&image.path, Mode::ReadWrite)
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("in use"), "{message}");
}
