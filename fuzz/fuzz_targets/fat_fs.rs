//! fata-fat, the guest's FAT file system, on an image however damaged must give errors and never
//! a panic or a hang: mounting it, walking and reading everything, writing, removing and
//! flushing, and mounting what that left.
//!
//! Random bytes almost never make a boot sector, so the input damages real images instead: its
//! first byte picks a template (FAT12, FAT16 or FAT32, made by mkfs.fat and filled by fata-fat
//! with nested directories, long names and files of several clusters), and each 3 bytes after
//! it XOR one byte of the template's metadata: a little-endian offset into its boot sector,
//! FSInfo, the start of both FATs, the root directory and the first data clusters (laid end to
//! end), then the byte to XOR there. An input of one byte is the intact image.
#![no_main]

use std::process::Command;
use std::sync::OnceLock;

use fata::BlockDevice;
use fata_fat::{FatFs, MemoryBlock};
use libfuzzer_sys::fuzz_target;

/// An image and the byte ranges of it the input changes.
struct Template {
    image: Vec<u8>,
    ranges: Vec<(usize, usize)>,
}

fn mkfs(bits: u8, kib: u32, extra: &[&str]) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("fata-fuzz-fat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("fat{bits}.img"));
    let _ = std::fs::remove_file(&path);
    let out = Command::new("mkfs.fat")
        .args(["-F", &bits.to_string(), "-s", "1", "-C"])
        .args(extra)
        .arg(&path)
        .arg(kib.to_string())
        .output()
        .expect("mkfs.fat (Debian's dosfstools) makes the templates");
    assert!(out.status.success(), "mkfs.fat: {}", String::from_utf8_lossy(&out.stderr));
    let image = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    image
}

/// Fills a fresh image through fata-fat.
fn populate(image: Vec<u8>) -> Vec<u8> {
    let memory = MemoryBlock::new(image);
    let device = BlockDevice::new(Box::new(memory.clone()));
    fata::block_on(async move {
        let fs = FatFs::mount(device).await.unwrap();
        fs.write("/README.TXT", &[b'r'; 700]).await.unwrap();
        fs.create_dir("/Some Directory").await.unwrap();
        fs.create_dir("/Some Directory/nested.d").await.unwrap();
        fs.write("/Some Directory/A long file name.text", &[b'l'; 2000]).await.unwrap();
        fs.write("/Some Directory/nested.d/x", b"x").await.unwrap();
        fs.write("/empty", b"").await.unwrap();
        for i in 0..8 {
            fs.write(&format!("/Some Directory/f{i}"), &[i; 30]).await.unwrap();
        }
        fs.flush().await.unwrap();
    });
    memory.durable()
}

fn template(bits: u8) -> Template {
    let image = match bits {
        12 => populate(mkfs(12, 256, &["-r", "32"])),
        16 => populate(mkfs(16, 4096, &["-r", "32"])),
        _ => populate(mkfs(32, 2048, &[])),
    };
    let u16_at = |at: usize| u16::from_le_bytes([image[at], image[at + 1]]) as usize;
    let sector = u16_at(11);
    let reserved = u16_at(14) * sector;
    let fat_bytes = match u16_at(22) {
        0 => u32::from_le_bytes(image[36..40].try_into().unwrap()) as usize * sector,
        sectors => sectors * sector,
    };
    let root = reserved + image[16] as usize * fat_bytes;
    let data = root + u16_at(17) * 32;
    let mut ranges = vec![(0, 512)];
    if bits == 32 {
        let fs_info = u16_at(48) * sector;
        ranges.push((fs_info, fs_info + 512));
    }
    ranges.push((reserved, reserved + 1024));
    ranges.push((reserved + fat_bytes, reserved + fat_bytes + 256));
    if root < data {
        ranges.push((root, root + 1024));
    }
    // The first clusters: the FAT32 root directory, the subdirectories, the first files.
    ranges.push((data, data + 4096));
    Template { image, ranges }
}

fuzz_target!(|input: &[u8]| {
    static TEMPLATES: OnceLock<[Template; 3]> = OnceLock::new();
    let templates = TEMPLATES.get_or_init(|| [template(12), template(16), template(32)]);
    let Some((&pick, damage)) = input.split_first() else {
        return;
    };
    let template = &templates[pick as usize % 3];
    let mut image = template.image.clone();
    let metadata: usize = template.ranges.iter().map(|(start, end)| end - start).sum();
    for patch in damage.chunks_exact(3) {
        let mut at = usize::from(u16::from_le_bytes([patch[0], patch[1]])) % metadata;
        for &(start, end) in &template.ranges {
            if at < end - start {
                image[start + at] ^= patch[2];
                break;
            }
            at -= end - start;
        }
    }
    let memory = MemoryBlock::new(image);
    fata::block_on(async move {
        for round in 0..2 {
            let device = BlockDevice::new(Box::new(memory.clone()));
            let Ok(fs) = FatFs::mount(device).await else {
                return;
            };
            walk(&fs, round == 0).await;
        }
    });
});

/// Lists every directory and reads every file; with `change`, also appends, writes, makes
/// directories, removes and flushes.
async fn walk(fs: &FatFs, change: bool) {
    let mut dirs = vec![String::from("/")];
    let mut seen = 0;
    while let Some(dir) = dirs.pop() {
        let Ok(listing) = fs.list(&dir).await else {
            continue;
        };
        let base = dir.trim_end_matches('/').to_string();
        for entry in listing {
            seen += 1;
            if seen > 200 {
                return;
            }
            let path = format!("{base}/{}", entry.name);
            if entry.is_dir {
                dirs.push(path);
                continue;
            }
            // A damaged directory may hold two entries of one name: compare with the entry the
            // path finds, not with the listing's.
            let Ok(meta) = fs.metadata(&path).await else {
                continue;
            };
            if let Ok(bytes) = fs.read(&path).await {
                assert_eq!(bytes.len() as u64, meta.size, "{path}");
            }
            let mut buf = [0; 600];
            if let Ok(read) = fs.read_at(&path, 100, &mut buf).await {
                assert!(read as u64 <= meta.size.saturating_sub(100), "{path}");
            }
            if change {
                let _ = fs.append(&path, b"appended").await;
            }
        }
        if change {
            let _ = fs.write(&format!("{base}/new file.txt"), &[7; 1500]).await;
            let _ = fs.create_dir(&format!("{base}/new dir")).await;
            let _ = fs.remove(&format!("{base}/f3")).await;
        }
    }
    if change {
        let _ = fs.remove("/Some Directory/nested.d/x").await;
        let _ = fs.remove("/Some Directory/nested.d").await;
        let _ = fs.flush().await;
    }
}
