//! Corrupt images give errors, never panics: garbage boot sectors, FAT chains that loop or leave
//! the volume, entries pointing past the end, and random damage to a populated image's metadata.

mod common;

use common::{Image, Rng, pattern};
use fata::BlockDevice;
use fata_fat::{Error, FatFs, MemoryBlock};

/// Where a FAT12/16 image's parts are, from its boot sector.
struct Geometry {
    fat: usize,
    fat_bytes: usize,
    root: usize,
    data: usize,
    cluster: usize,
}

fn geometry(image: &[u8]) -> Geometry {
    let u16_at = |at: usize| u16::from_le_bytes([image[at], image[at + 1]]) as usize;
    let sector = u16_at(11);
    let fat = u16_at(14) * sector;
    let fat_bytes = u16_at(22) * sector;
    let root = fat + image[16] as usize * fat_bytes;
    let data = root + u16_at(17) * 32;
    Geometry {
        fat,
        fat_bytes,
        root,
        data,
        cluster: image[13] as usize * sector,
    }
}

/// The offset of the root directory entry with the 8.3 name `short` (space-padded, 11 bytes).
fn root_entry(image: &[u8], g: &Geometry, short: &[u8; 11]) -> usize {
    (g.root..g.data)
        .step_by(32)
        .find(|&at| &image[at..at + 11] == short)
        .expect("the entry is in the root directory")
}

/// Sets FAT16 entry `cluster` to `value` in both FATs.
fn set_fat16(image: &mut [u8], g: &Geometry, cluster: usize, value: u16) {
    for copy in 0..2 {
        let at = g.fat + copy * g.fat_bytes + cluster * 2;
        image[at..at + 2].copy_from_slice(&value.to_le_bytes());
    }
}

/// A FAT16 image holding a few files and directories, made by mtools, as bytes.
fn populated() -> Vec<u8> {
    let image = Image::format(16, 16 * 1024, &["-s", "1"]);
    image.put("/BIG.BIN", &pattern(1, 5000));
    image.put("/small.txt", &pattern(2, 10));
    image.put("/Dir One/inner file.txt", &pattern(3, 3000));
    image.put("/Dir One/Two/deep.bin", &pattern(4, 70_000));
    std::fs::read(&image.path).unwrap()
}

fn mount(bytes: Vec<u8>) -> impl Future<Output = Result<FatFs, Error>> {
    FatFs::mount(BlockDevice::new(Box::new(MemoryBlock::new(bytes))))
}

#[test]
fn garbage_boot_sectors_are_not_fat() {
    let mut rng = Rng(7);
    for case in 0..200 {
        let mut bytes = pattern(case, 1 << 20);
        if case % 2 == 0 {
            // With the boot signature, so that the checks behind it are reached.
            bytes[510] = 0x55;
            bytes[511] = 0xAA;
            bytes[11..13].copy_from_slice(&512u16.to_le_bytes());
            bytes[13] = 1 << rng.below(7);
            bytes[16] = 1 + rng.below(2) as u8;
        }
        let result = fata::block_on(mount(bytes));
        assert!(
            matches!(
                result,
                Err(Error::NotFat | Error::Corrupt | Error::Unsupported)
            ),
            "case {case}: {:?}",
            result.err()
        );
    }
    let result = fata::block_on(mount(vec![0; 100]));
    assert!(matches!(result, Err(Error::NotFat)));
}

#[test]
fn a_fat_cycle_is_corrupt() {
    if !common::tools() {
        return;
    }
    let mut bytes = populated();
    let g = geometry(&bytes);
    let entry = root_entry(&bytes, &g, b"BIG     BIN");
    let first = u16::from_le_bytes([bytes[entry + 26], bytes[entry + 27]]) as usize;
    // BIG.BIN's 10 clusters: make the second point back at the first.
    assert_eq!(g.cluster, 512);
    set_fat16(&mut bytes, &g, first + 1, first as u16);
    fata::block_on(async move {
        let fs = mount(bytes).await.unwrap();
        assert_eq!(fs.read("/BIG.BIN").await, Err(Error::Corrupt));
        assert_eq!(fs.write("/BIG.BIN", b"new").await, Err(Error::Corrupt));
        assert_eq!(fs.append("/BIG.BIN", b"more").await, Err(Error::Corrupt));
        assert_eq!(fs.remove("/BIG.BIN").await, Err(Error::Corrupt));
        // The rest of the file system is still there.
        assert_eq!(fs.read("/small.txt").await.unwrap(), pattern(2, 10));
    });
}

#[test]
fn entries_pointing_past_the_end_are_corrupt() {
    if !common::tools() {
        return;
    }
    let mut bytes = populated();
    let g = geometry(&bytes);
    // A file whose first cluster is past the last one, and one larger than the volume.
    let small = root_entry(&bytes, &g, b"SMALL   TXT");
    bytes[small + 26..small + 28].copy_from_slice(&0xFFF0u16.to_le_bytes());
    let big = root_entry(&bytes, &g, b"BIG     BIN");
    bytes[big + 28..big + 32].copy_from_slice(&u32::MAX.to_le_bytes());
    // A directory whose cluster is past the last one.
    let dir = (g.root..g.data)
        .step_by(32)
        .find(|&at| bytes[at + 11] == 0x10)
        .unwrap();
    bytes[dir + 26..dir + 28].copy_from_slice(&0xFFF0u16.to_le_bytes());
    fata::block_on(async move {
        let fs = mount(bytes).await.unwrap();
        assert_eq!(fs.read("/small.txt").await, Err(Error::Corrupt));
        let mut buf = [0; 10];
        assert_eq!(
            fs.read_at("/small.txt", 0, &mut buf).await,
            Err(Error::Corrupt)
        );
        assert_eq!(fs.read("/BIG.BIN").await, Err(Error::Corrupt));
        assert_eq!(fs.list("/Dir One").await, Err(Error::Corrupt));
        assert_eq!(
            fs.write("/Dir One/new.txt", b"x").await,
            Err(Error::Corrupt)
        );
        assert_eq!(fs.remove("/Dir One").await, Err(Error::Corrupt));
        // What is intact still works, and writing elsewhere too.
        fs.write("/fine.txt", b"fine").await.unwrap();
        assert_eq!(fs.read("/fine.txt").await.unwrap(), b"fine");
    });
}

/// Walks every directory, reads every file and tries a few writes: on a damaged image each may
/// fail, but none may panic or hang.
async fn walk(fs: &FatFs) {
    let mut dirs = vec![String::from("/")];
    let mut seen = 0;
    while let Some(dir) = dirs.pop() {
        let Ok(listing) = fs.list(&dir).await else {
            continue;
        };
        for entry in listing {
            seen += 1;
            if seen > 1000 {
                return;
            }
            let path = format!("{}/{}", dir.trim_end_matches('/'), entry.name);
            let _ = fs.metadata(&path).await;
            if entry.is_dir {
                dirs.push(path);
            } else {
                let _ = fs.read(&path).await;
                let mut buf = [0; 700];
                let _ = fs.read_at(&path, 600, &mut buf).await;
                let _ = fs.append(&path, b"more").await;
            }
        }
        let _ = fs
            .write(
                &format!("{}/New file.txt", dir.trim_end_matches('/')),
                b"new",
            )
            .await;
        let _ = fs
            .create_dir(&format!("{}/New dir", dir.trim_end_matches('/')))
            .await;
    }
    let _ = fs.remove("/Dir One/Two/deep.bin").await;
    let _ = fs.remove("/BIG.BIN").await;
    let _ = fs.flush().await;
}

#[test]
fn random_damage_to_metadata_gives_errors_not_panics() {
    if !common::tools() {
        return;
    }
    let pristine = populated();
    let g = geometry(&pristine);
    // Boot sector, FATs, root directory and the first data clusters (the subdirectories).
    let metadata = g.data + 64 * g.cluster;
    let mut rng = Rng(11);
    for _ in 0..300 {
        let mut bytes = pristine.clone();
        for _ in 0..1 + rng.below(20) {
            let at = rng.below(metadata as u64) as usize;
            bytes[at] = rng.next() as u8;
        }
        fata::block_on(async move {
            if let Ok(fs) = mount(bytes).await {
                walk(&fs).await;
            }
        });
    }
}
