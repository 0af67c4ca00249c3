//! fata-fat against dosfstools and mtools: images made by mkfs.fat and filled by mcopy are read
//! back, changed through fata-fat, and then judged by `fsck.fat -n` and read back by mcopy.

mod common;

use std::collections::BTreeMap;

use common::{Image, mount, pattern};
use fata_fat::{Error, FatFs, Kind, STEP};

/// What a test expects each file to hold.
type Model = BTreeMap<String, Vec<u8>>;

/// Fills an image with mtools, works on it through fata-fat, and checks the result with
/// fsck.fat and mcopy.
fn round_trip(bits: u8, kib: u32, kind: Kind, big: usize) {
    if !common::tools() {
        return;
    }
    let image = Image::format(bits, kib, &["-n", "FATATEST"]);
    let from_mtools: Vec<(&str, Vec<u8>)> = vec![
        ("/README.TXT", pattern(1, 3000)),
        ("/docs/Long File Name.md", pattern(2, 70_000)),
        ("/docs/deep/er/x.bin", pattern(3, 1)),
        ("/empty.txt", Vec::new()),
    ];
    for (path, bytes) in &from_mtools {
        image.put(path, bytes);
    }
    let (device, memory) = image.device();
    let model = fata::block_on(async move {
        let fs = mount(device).await;
        assert_eq!(fs.kind(), kind);
        let mut model = Model::new();
        for (path, bytes) in from_mtools {
            assert_eq!(fs.read(path).await.unwrap(), bytes, "{path}");
            model.insert(path.to_string(), bytes);
        }
        // FAT names match without regard to case.
        assert_eq!(fs.read("/readme.txt").await.unwrap(), model["/README.TXT"]);
        let mut part = [0u8; 100];
        assert_eq!(
            fs.read_at("/docs/long file name.md", 69_950, &mut part)
                .await,
            Ok(50)
        );
        assert_eq!(part[..50], model["/docs/Long File Name.md"][69_950..]);
        assert_eq!(fs.read_at("/README.TXT", 5000, &mut part).await, Ok(0));

        let docs = fs.list("/docs").await.unwrap();
        let names: Vec<(&str, bool, u64)> = docs
            .iter()
            .map(|e| (e.name.as_str(), e.is_dir, e.size))
            .collect();
        assert_eq!(
            names,
            [("Long File Name.md", false, 70_000), ("deep", true, 0)]
        );

        // Names that need long-name entries: spaces, mixed case, more than 8.3, non-ASCII.
        let dir = "/New Folder/Sub-directory with a long name";
        fs.create_dir("/New Folder").await.unwrap();
        fs.create_dir(dir).await.unwrap();
        let mut put = async |path: &str, bytes: Vec<u8>, append: bool| {
            if append {
                fs.append(path, &bytes).await.unwrap();
                model.entry(path.to_string()).or_default().extend(bytes);
            } else {
                fs.write(path, &bytes).await.unwrap();
                model.insert(path.to_string(), bytes);
            }
        };
        put(&format!("{dir}/MixedCase.Txt"), pattern(4, 5000), false).await;
        put(&format!("{dir}/Größe ñ.data"), pattern(5, 10), false).await;
        put("/lower.txt", pattern(6, 100), false).await;
        put(
            "/a.much.longer.name.than.eight.three",
            pattern(7, 4097),
            false,
        )
        .await;
        // Overwrite with less and with more than the file held.
        put("/lower.txt", pattern(8, 10), false).await;
        put("/README.TXT", pattern(9, 9000), false).await;
        put("/emptied.bin", pattern(10, 300), false).await;
        put("/emptied.bin", Vec::new(), false).await;
        // Append to a file mtools wrote, to a new file, and to an empty one.
        put("/docs/Long File Name.md", pattern(11, 12_345), true).await;
        put("/new.log", pattern(12, 777), true).await;
        put("/new.log", pattern(13, 1), true).await;
        put("/emptied.bin", pattern(14, 33), true).await;
        // Enough files to take a directory past its first cluster.
        fs.create_dir("/many").await.unwrap();
        for i in 0..70 {
            put(
                &format!("/many/file number {i}.txt"),
                pattern(100 + i, 40),
                false,
            )
            .await;
        }
        // A file written in several steps.
        put("/big.bin", pattern(15, big), false).await;

        fs.remove("/empty.txt").await.unwrap();
        fs.remove("/docs/deep/er/x.bin").await.unwrap();
        fs.remove("/docs/deep/er").await.unwrap();
        for path in ["/empty.txt", "/docs/deep/er/x.bin"] {
            model.remove(path);
        }
        fs.flush().await.unwrap();

        // fata-fat reads back what it wrote.
        for (path, bytes) in &model {
            assert_eq!(&fs.read(path).await.unwrap(), bytes, "{path}");
        }
        let meta = fs.metadata(dir).await.unwrap();
        assert!(meta.is_dir);
        let meta = fs.metadata("/big.bin").await.unwrap();
        assert_eq!((meta.is_dir, meta.size), (false, big as u64));
        assert!(meta.modified.year >= 2024, "{:?}", meta.modified);
        model
    });
    image.save(&memory);
    image.assert_clean();
    for (path, bytes) in &model {
        assert_eq!(&image.get(path), bytes, "mcopy reads {path}");
    }
    assert!(!image.has("/empty.txt"));
    assert!(!image.has("/docs/deep/er"));
    assert!(image.has("/docs/deep"));
}

#[test]
fn fat12_round_trip() {
    round_trip(12, 1440, Kind::Fat12, STEP + 1000);
}

#[test]
fn fat16_round_trip() {
    round_trip(16, 16 * 1024, Kind::Fat16, 3 * STEP + 12345);
}

#[test]
fn fat32_round_trip() {
    round_trip(32, 64 * 1024, Kind::Fat32, 3 * STEP + 12345);
}

#[test]
fn errors_say_what_is_wrong() {
    if !common::tools() {
        return;
    }
    let image = Image::format(16, 16 * 1024, &["-r", "32"]);
    image.put("/file.txt", b"x");
    image.put("/dir/inner.txt", b"y");
    let (device, memory) = image.device();
    fata::block_on(async move {
        let fs = mount(device).await;
        assert_eq!(fs.read("/missing").await, Err(Error::NotFound));
        assert_eq!(fs.read("/nodir/file").await, Err(Error::NotFound));
        assert_eq!(fs.read("/dir").await, Err(Error::IsADirectory));
        assert_eq!(fs.write("/dir", b"z").await, Err(Error::IsADirectory));
        assert_eq!(fs.read("/file.txt/x").await, Err(Error::NotADirectory));
        assert_eq!(fs.list("/file.txt").await, Err(Error::NotADirectory));
        assert_eq!(fs.create_dir("/dir").await, Err(Error::Exists));
        assert_eq!(fs.create_dir("/FILE.TXT").await, Err(Error::Exists));
        assert_eq!(fs.remove("/dir").await, Err(Error::NotEmpty));
        assert_eq!(fs.remove("/").await, Err(Error::InvalidName));
        assert_eq!(fs.read("/../file.txt").await, Err(Error::InvalidName));
        assert_eq!(fs.write("/a*b", b"z").await, Err(Error::InvalidName));
        assert_eq!(
            fs.write(&"n".repeat(256), b"z").await,
            Err(Error::InvalidName)
        );
        assert_eq!(fs.metadata("/").await.map(|m| m.is_dir), Ok(true));
        // A FAT16 root directory has a fixed number of entries (32 here, two taken): names that
        // need long-name entries take several.
        let mut made = 0;
        let full = loop {
            match fs
                .write(&format!("/A file with a long name {made}"), b"z")
                .await
            {
                Ok(()) => made += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(full, Error::DirectoryFull);
        assert!((5..30).contains(&made), "{made} files fit");
        fs.flush().await.unwrap();
    });
    image.save(&memory);
    image.assert_clean();
    assert_eq!(image.get("/dir/inner.txt"), b"y");
}

#[test]
fn a_full_disk_refuses_the_write_and_stays_consistent() {
    if !common::tools() {
        return;
    }
    let image = Image::format(12, 360, &[]);
    let (device, memory) = image.device();
    let kept = pattern(1, 100_000);
    let expected = kept.clone();
    fata::block_on(async move {
        let fs = mount(device).await;
        fs.write("/kept.bin", &kept).await.unwrap();
        // More than the rest of the disk: refused whole.
        assert_eq!(
            fs.write("/huge.bin", &pattern(2, 300_000)).await,
            Err(Error::NoSpace)
        );
        // Overwriting with more than fits leaves the old content.
        assert_eq!(
            fs.write("/kept.bin", &pattern(3, 400_000)).await,
            Err(Error::NoSpace)
        );
        assert_eq!(fs.read("/kept.bin").await.unwrap(), kept);
        fs.flush().await.unwrap();
    });
    image.save(&memory);
    image.assert_clean();
    assert_eq!(image.get("/kept.bin"), expected);
}

#[test]
fn a_read_only_disk_reads_and_refuses_writes() {
    if !common::tools() {
        return;
    }
    let image = Image::format(16, 16 * 1024, &[]);
    image.put("/file.txt", b"hello");
    let memory = fata_fat::MemoryBlock::new(std::fs::read(&image.path).unwrap()).read_only();
    let device = fata::BlockDevice::new(Box::new(memory));
    fata::block_on(async move {
        let fs = FatFs::mount(device).await.unwrap();
        assert_eq!(fs.read("/file.txt").await.unwrap(), b"hello");
        assert_eq!(fs.write("/file.txt", b"x").await, Err(Error::ReadOnly));
        assert_eq!(fs.create_dir("/d").await, Err(Error::ReadOnly));
        assert_eq!(fs.flush().await, Ok(()));
    });
}

#[test]
fn writes_past_what_a_host_holds_unflushed_flush_by_themselves() {
    if !common::tools() {
        return;
    }
    let image = Image::format(32, 96 * 1024, &[]);
    let (device, memory) = image.device();
    let handle = memory.clone();
    let big = pattern(1, 40 << 20);
    let expected = big.clone();
    fata::block_on(async move {
        let fs = mount(device).await;
        fs.write("/big.bin", &big).await.unwrap();
        // Hosts hold grouped writes until a flush (the hvt monitor at most 64 MiB): the file
        // system flushed on its own between steps.
        assert!(handle.flushes() >= 1, "no flush while 40 MiB were written");
        fs.flush().await.unwrap();
    });
    image.save(&memory);
    image.assert_clean();
    assert!(image.get("/big.bin") == expected);
}
