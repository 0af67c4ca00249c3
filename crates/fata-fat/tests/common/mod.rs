//! Images made and judged by dosfstools and mtools, the independent FAT implementations these
//! tests hold fata-fat to.

#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;

use fata::BlockDevice;
use fata_fat::{FatFs, MemoryBlock};

/// Whether mkfs.fat, fsck.fat and mtools are here; when not, says so (a strict run fails).
#[track_caller]
pub fn tools() -> bool {
    fata_testkit::program("mkfs.fat", "dosfstools")
        && fata_testkit::program("fsck.fat", "dosfstools")
        && fata_testkit::program("mcopy", "mtools")
        && fata_testkit::program("mmd", "mtools")
}

/// A FAT image in a temporary directory, removed on drop.
pub struct Image {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

fn run(command: &mut Command) -> std::process::Output {
    let out = command
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Image {
    /// `mkfs.fat -F BITS` over `kib` KiB, with `extra` options.
    pub fn format(bits: u8, kib: u32, extra: &[&str]) -> Image {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        run(Command::new("mkfs.fat")
            .args(["-F", &bits.to_string(), "-C"])
            .args(extra)
            .arg(&path)
            .arg(kib.to_string()));
        Image { _dir: dir, path }
    }

    /// Copies `bytes` into the image as `path` with mcopy (making its directories with mmd).
    pub fn put(&self, path: &str, bytes: &[u8]) {
        let mut dir = String::new();
        let names: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        for name in &names[..names.len() - 1] {
            dir.push('/');
            dir.push_str(name);
            // It may exist already: mmd then fails, and that is fine.
            let _ = Command::new("mmd")
                .env("MTOOLS_SKIP_CHECK", "1")
                .arg("-i")
                .arg(&self.path)
                .arg(format!("::{dir}"))
                .output();
        }
        let host = self.path.with_extension("put");
        std::fs::write(&host, bytes).unwrap();
        run(Command::new("mcopy")
            .arg("-i")
            .arg(&self.path)
            .arg(&host)
            .arg(format!("::{path}")));
    }

    /// The file `path` as mcopy reads it.
    pub fn get(&self, path: &str) -> Vec<u8> {
        run(Command::new("mcopy")
            .arg("-i")
            .arg(&self.path)
            .arg(format!("::{path}"))
            .arg("-"))
        .stdout
    }

    /// Whether mtools finds `path` in the image.
    pub fn has(&self, path: &str) -> bool {
        Command::new("mdir")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&self.path)
            .arg(format!("::{path}"))
            .output()
            .unwrap()
            .status
            .success()
    }

    /// Asserts that `fsck.fat -n` finds nothing wrong.
    pub fn assert_clean(&self) {
        assert_clean(&self.path);
    }

    /// The image's bytes as a block device, and a handle on it for [`Image::save`].
    pub fn device(&self) -> (BlockDevice, MemoryBlock) {
        let memory = MemoryBlock::new(std::fs::read(&self.path).unwrap());
        (BlockDevice::new(Box::new(memory.clone())), memory)
    }

    /// Writes back what `memory` holds durably (what its last flush left), as the image file,
    /// for fsck.fat and mtools to judge.
    pub fn save(&self, memory: &MemoryBlock) {
        std::fs::write(&self.path, memory.durable()).unwrap();
    }
}

/// Asserts that `fsck.fat -n` finds nothing wrong with the image at `path`.
pub fn assert_clean(path: &Path) {
    let out = Command::new("fsck.fat")
        .arg("-n")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fsck.fat -n {}: {}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Mounts `device`, panicking with the error if it does not mount.
pub async fn mount(device: BlockDevice) -> FatFs {
    match FatFs::mount(device).await {
        Ok(fs) => fs,
        Err(e) => panic!("mount: {e}"),
    }
}

/// Bytes that differ from file to file and from offset to offset.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A small deterministic random number generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
