//! Whole operations or nothing: random work on an in-memory device that forgets unflushed grouped
//! writes when it "crashes" and fails requests on demand. After every crash the disk must hold
//! exactly what the file system held at its last flush, and fsck.fat must find it clean.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Image, Rng, pattern};
use fata::BlockDevice;
use fata_fat::{Error, FatFs, MemoryBlock, STEP};

/// What the file system should hold: files by path, and directories.
#[derive(Debug, Clone, Default, PartialEq)]
struct Model {
    files: BTreeMap<String, Vec<u8>>,
    dirs: BTreeSet<String>,
}

const NAMES: [&str; 6] = [
    "a.txt",
    "Long name with spaces.log",
    "MiXeD.CaSe",
    "b",
    "données.bin",
    "c.dat",
];

/// A random path under the root or one of two directories.
fn path(rng: &mut Rng) -> String {
    let dir = ["", "/Sub Dir", "/Sub Dir/nested"][rng.below(3) as usize];
    format!("{dir}/{}", NAMES[rng.below(NAMES.len() as u64) as usize])
}

/// One random operation on `fs`; returns it as text (for failure messages) and updates `model`
/// when it succeeds. With `small`, writes fit one step, so a failed one changes nothing.
async fn step(
    fs: &FatFs,
    model: &mut Model,
    rng: &mut Rng,
    small: bool,
) -> (String, Result<(), Error>) {
    let seed = rng.next();
    let len = match rng.below(10) {
        // Files larger in all than the cache, so that operations read and write back mid-way.
        0..=3 if small => rng.below(STEP as u64) as usize,
        0 => STEP + rng.below(2 * STEP as u64) as usize,
        1..=3 => rng.below(20_000) as usize,
        _ => rng.below(600) as usize,
    };
    match rng.below(8) {
        0..=2 => {
            let path = path(rng);
            let bytes = pattern(seed, len);
            let result = fs.write(&path, &bytes).await;
            if result.is_ok() {
                model.files.insert(path.clone(), bytes);
            }
            (format!("write {path} {len}"), result)
        }
        3 | 4 => {
            let path = path(rng);
            let bytes = pattern(seed, len);
            let result = fs.append(&path, &bytes).await;
            if result.is_ok() {
                model.files.entry(path.clone()).or_default().extend(bytes);
            }
            (format!("append {path} {len}"), result)
        }
        5 => {
            let path = path(rng);
            let result = fs.remove(&path).await;
            if result.is_ok() {
                model.files.remove(&path);
            }
            (format!("remove {path}"), result)
        }
        6 => {
            let dir = ["/Sub Dir", "/Sub Dir/nested"][rng.below(2) as usize];
            let result = fs.create_dir(dir).await;
            if result.is_ok() {
                model.dirs.insert(dir.to_string());
            }
            (format!("create_dir {dir}"), result)
        }
        _ => ("flush".to_string(), fs.flush().await),
    }
}

/// Whether `result` is an error a random operation may meet by itself (a missing directory,
/// an existing one, a file that is not there).
fn expected(result: &Result<(), Error>) -> bool {
    matches!(
        result,
        Ok(()) | Err(Error::NotFound | Error::Exists | Error::NotEmpty)
    )
}

/// Reads everything `model` says is there and checks that nothing else is.
async fn check(fs: &FatFs, model: &Model, context: &str) {
    for (path, bytes) in &model.files {
        match fs.read(path).await {
            Ok(read) => assert!(read == *bytes, "{context}: {path} differs"),
            Err(e) => panic!("{context}: {path}: {e}"),
        }
    }
    for dir in ["/", "/Sub Dir", "/Sub Dir/nested"] {
        let listing = match fs.list(dir).await {
            Ok(listing) => listing,
            Err(Error::NotFound) if !model.dirs.contains(dir) => continue,
            Err(e) => panic!("{context}: list {dir}: {e}"),
        };
        for entry in listing {
            let path = format!("{}/{}", dir.trim_end_matches('/'), entry.name);
            let known = if entry.is_dir {
                model.dirs.contains(&path)
            } else {
                model.files.contains_key(&path)
            };
            assert!(known, "{context}: {path} should not be there");
        }
    }
}

fn image(bits: u8, kib: u32) -> Vec<u8> {
    let image = Image::format(bits, kib, &[]);
    std::fs::read(&image.path).unwrap()
}

/// The durable bytes of `memory` as an image file that fsck.fat must find clean.
fn assert_clean(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crashed.img");
    std::fs::write(&path, bytes).unwrap();
    common::assert_clean(&path);
}

fn crashes(bits: u8, kib: u32, seed: u64) {
    if !common::tools() {
        return;
    }
    let mut bytes = image(bits, kib);
    let mut rng = Rng(seed);
    let mut durable = Model::default();
    for _ in 0..12 {
        let memory = MemoryBlock::new(bytes);
        let device = BlockDevice::new(Box::new(memory.clone()));
        let ops = 5 + rng.below(40);
        let mut round_rng = Rng(rng.next());
        let start = durable.clone();
        let after = fata::block_on(async move {
            let fs = FatFs::mount(device).await.unwrap();
            check(&fs, &start, "after the crash").await;
            let mut model = start.clone();
            let mut flushed = start;
            for _ in 0..ops {
                let (op, result) = step(&fs, &mut model, &mut round_rng, false).await;
                assert!(expected(&result), "{op}: {result:?}");
                if op == "flush" {
                    flushed = model.clone();
                }
            }
            flushed
        });
        // The host dies: grouped writes since the last flush are lost.
        memory.crash();
        bytes = memory.durable();
        assert_clean(&bytes);
        durable = after;
    }
    let memory = MemoryBlock::new(bytes);
    let device = BlockDevice::new(Box::new(memory));
    fata::block_on(async move {
        let fs = FatFs::mount(device).await.unwrap();
        check(&fs, &durable, "at the end").await;
    });
}

#[test]
fn fat16_holds_what_it_held_at_the_last_flush_after_each_crash() {
    crashes(16, 16 * 1024, 1);
}

#[test]
fn fat32_holds_what_it_held_at_the_last_flush_after_each_crash() {
    crashes(32, 40 * 1024, 2);
}

/// A request that fails in the middle of an operation undoes the operation, whichever request
/// it is; the file system goes on, and flushes clean once the device heals.
fn failures(bits: u8, kib: u32, seed: u64) {
    if !common::tools() {
        return;
    }
    let memory = MemoryBlock::new(image(bits, kib));
    let device = BlockDevice::new(Box::new(memory.clone()));
    let handle = memory.clone();
    let model = fata::block_on(async move {
        let fs = FatFs::mount(device).await.unwrap();
        let mut rng = Rng(seed);
        let mut model = Model::default();
        let mut failed = 0;
        let mut in_op = 0;
        for _ in 0..300 {
            // Fail after a few requests, sometimes at once.
            handle.fail_after(Some(rng.below(12)));
            let (op, result) = step(&fs, &mut model, &mut rng, true).await;
            // Half the time the flush after it meets the failing device too.
            let (op, result) = match result {
                Ok(()) if rng.below(2) == 0 => (format!("{op}, flush"), fs.flush().await),
                result => (op, result),
            };
            handle.fail_after(None);
            match result {
                Err(Error::Device(fata::DeviceError::Io)) => {
                    failed += 1;
                    if !op.contains("flush") {
                        in_op += 1;
                    }
                    check(&fs, &model, &format!("after a failed {op}")).await;
                }
                other => assert!(expected(&other), "{op}: {other:?}"),
            }
        }
        assert!(
            failed > 50 && in_op > 25,
            "only {failed} operations met a failing device, {in_op} of them before the flush"
        );
        fs.flush().await.unwrap();
        check(&fs, &model, "after the last flush").await;
        model
    });
    memory.crash();
    let bytes = memory.durable();
    assert_clean(&bytes);
    let device = BlockDevice::new(Box::new(MemoryBlock::new(bytes)));
    fata::block_on(async move {
        let fs = FatFs::mount(device).await.unwrap();
        check(&fs, &model, "remounted").await;
    });
}

#[test]
fn fat16_undoes_operations_the_device_fails() {
    failures(16, 16 * 1024, 3);
}

#[test]
fn fat32_undoes_operations_the_device_fails() {
    failures(32, 40 * 1024, 4);
}
