//! `fata disk` judged by independent implementations: every image it makes is checked with
//! `fsck.fat -n` and read back with mtools' `mcopy`, byte for byte; images made by `mkfs.fat` and
//! `mcopy` are listed and copied out by `fata disk`; damaged images and impossible requests are
//! refused with their exit status and a message that says what to do.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{fata, text};

/// The files of a tree a new user might put in an image: long names, nested directories, empty
/// files, a file of a few MiB, an empty directory, and names outside ASCII.
fn make_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut bytes = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    };
    for (path, body) in [
        ("index.html", b"<h1>hello</h1>\n".to_vec()),
        ("empty", Vec::new()),
        ("README", b"short name, no extension\n".to_vec()),
        ("A File With A Rather Long Name.txt", bytes(700)),
        ("docs/getting started/first steps.html", bytes(5000)),
        ("docs/getting started/empty file.txt", Vec::new()),
        ("docs/a/b/c/d/e/deep.bin", bytes(1)),
        (
            "données/café-naïve.txt",
            "crème brûlée\n".as_bytes().to_vec(),
        ),
        (
            "big/three mebibytes and a bit.bin",
            bytes(3 * 1024 * 1024 + 123),
        ),
        ("MixedCase.TXT", b"case kept\n".to_vec()),
    ] {
        let host = root.join(path);
        std::fs::create_dir_all(host.parent().unwrap()).unwrap();
        std::fs::write(&host, &body).unwrap();
        files.insert(path.to_string(), body);
    }
    std::fs::create_dir_all(root.join("an empty directory")).unwrap();
    files
}

/// Whether the judges are installed (a strict run fails without them).
fn judges() -> bool {
    fata_testkit::program("fsck.fat", "dosfstools")
        && fata_testkit::program("mkfs.fat", "dosfstools")
        && fata_testkit::program("mcopy", "mtools")
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// `fsck.fat -n IMG` exits 0: the image is clean.
fn assert_clean(image: &Path) {
    let out = run("fsck.fat", &["-n", image.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "fsck.fat -n {}: {:?}\n{}{}",
        image.display(),
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// `mcopy -i IMG ::PATH -` gives exactly `body` for every file.
fn assert_mcopy_reads(image: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (path, body) in files {
        let out = run(
            "mcopy",
            &[
                "-n",
                "-i",
                image.to_str().unwrap(),
                &format!("::{path}"),
                "-",
            ],
        );
        assert!(
            out.status.success(),
            "mcopy ::{path}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout == *body, "mcopy ::{path}: the bytes differ");
    }
}

/// The `SIZE  PATH` lines of `fata disk list`, as a map (directories as `PATH/` with `-`).
fn listing(image: &Path) -> BTreeMap<String, String> {
    let out = fata(&["disk", "list", image.to_str().unwrap()]);
    assert!(out.status.success(), "list: {}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|line| {
            let (size, path) = line.trim_start().split_once("  ").unwrap();
            (path.to_string(), size.to_string())
        })
        .collect()
}

fn create(dir: &Path, image: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "disk",
        "create",
        dir.to_str().unwrap(),
        "-o",
        image.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    fata(&args)
}

/// Checks an image made from `make_tree`'s tree: clean, read back by mcopy, listed in full,
/// copied out whole by `fata disk copy`.
fn check_image_of_tree(image: &Path, files: &BTreeMap<String, Vec<u8>>, kind: &str) {
    assert_clean(image);
    assert_mcopy_reads(image, files);
    let out = run(
        "mdir",
        &["-i", image.to_str().unwrap(), "::an empty directory"],
    );
    assert!(out.status.success(), "mdir: {}", text(&out.stderr));

    let listed = listing(image);
    for (path, body) in files {
        assert_eq!(listed.get(path), Some(&body.len().to_string()), "{path}");
    }
    for dir in [
        "an empty directory/",
        "docs/",
        "docs/getting started/",
        "docs/a/b/c/d/e/",
        "données/",
    ] {
        assert_eq!(listed.get(dir).map(String::as_str), Some("-"), "{dir}");
    }
    let out = fata(&["disk", "list", image.to_str().unwrap()]);
    assert!(text(&out.stderr).contains(kind), "{}", text(&out.stderr));

    let out_dir = tempfile::tempdir().unwrap();
    let whole = out_dir.path().join("whole");
    let out = fata(&[
        "disk",
        "copy",
        image.to_str().unwrap(),
        "/",
        whole.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "copy /: {}", text(&out.stderr));
    for (path, body) in files {
        assert!(std::fs::read(whole.join(path)).unwrap() == *body, "{path}");
    }
    assert!(whole.join("an empty directory").is_dir());
}

#[test]
fn an_image_of_a_tree_is_fsck_clean_and_mcopy_reads_every_file() {
    if !judges() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let files = make_tree(&src);
    std::os::unix::fs::symlink("index.html", src.join("a link")).unwrap();
    let image = dir.path().join("tree.img");
    let out = create(&src, &image, &["--label", "FATA TEST"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "create: {stderr}");
    assert!(stderr.contains("FAT16"), "{stderr}");
    assert!(
        stderr.contains("left out") && stderr.contains("a link"),
        "{stderr}"
    );
    // Sized to the files plus headroom: a few MiB, not a default large size.
    let len = std::fs::metadata(&image).unwrap().len();
    assert!((4 << 20..16 << 20).contains(&len), "{len}");
    check_image_of_tree(&image, &files, "FAT16 volume \"FATA TEST\"");
    let out = run("mlabel", &["-s", "-i", image.to_str().unwrap(), "::"]);
    assert!(
        text(&out.stdout).contains("FATA TEST"),
        "{}",
        text(&out.stdout)
    );

    // One file to standard output, found whatever its letter case.
    let out = fata(&[
        "disk",
        "copy",
        image.to_str().unwrap(),
        "/docs/GETTING STARTED/first steps.html",
        "-",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout == files["docs/getting started/first steps.html"]);
    // One file into a directory, under its own name.
    let into = dir.path().join("into");
    std::fs::create_dir(&into).unwrap();
    let out = fata(&[
        "disk",
        "copy",
        image.to_str().unwrap(),
        "big/three mebibytes and a bit.bin",
        into.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        std::fs::read(into.join("three mebibytes and a bit.bin")).unwrap()
            == files["big/three mebibytes and a bit.bin"]
    );
}

#[test]
fn a_large_image_is_fat32_fsck_clean_and_mcopy_reads_every_file() {
    if !judges() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let files = make_tree(&src);
    let image = dir.path().join("tree32.img");
    let out = create(&src, &image, &["--size", "600M"]);
    assert!(out.status.success(), "create: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("FAT32 of 600M"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 600 << 20);
    check_image_of_tree(&image, &files, "FAT32");
    // Just below the size mkfs.fat changes to FAT32 at, the image is FAT16.
    let image16 = dir.path().join("tree16.img");
    let out = create(&src, &image16, &["--size", "511M"]);
    assert!(
        text(&out.stderr).contains("FAT16 of 511M"),
        "{}",
        text(&out.stderr)
    );
    assert_clean(&image16);
    assert_mcopy_reads(&image16, &files);
}

/// Makes an image with `mkfs.fat -C` of `kib` KiB (`-F BITS`) and copies `src`'s tree into it
/// with `mcopy -s`.
fn mkfs_image(src: &Path, image: &Path, bits: &str, kib: &str) {
    let mut args = vec!["-C", "-F", bits];
    if bits == "16" {
        args.extend(["-s", "1"]);
    }
    args.extend([image.to_str().unwrap(), kib]);
    let out = run("mkfs.fat", &args);
    assert!(out.status.success(), "mkfs.fat: {}", text(&out.stderr));
    let mut copy = vec!["-s", "-i", image.to_str().unwrap()];
    let entries: Vec<PathBuf> = std::fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    copy.extend(entries.iter().map(|p| p.to_str().unwrap()));
    copy.push("::");
    let out = run("mcopy", &copy);
    assert!(out.status.success(), "mcopy: {}", text(&out.stderr));
    assert_clean(image);
}

#[test]
fn images_made_by_mkfs_fat_and_mcopy_are_listed_and_copied_out() {
    if !judges() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let files = make_tree(&src);
    for (bits, kib, kind) in [
        ("12", "8000", "FAT12"),
        ("16", "8000", "FAT16"),
        ("32", "40000", "FAT32"),
    ] {
        let image = dir.path().join(format!("mkfs{bits}.img"));
        mkfs_image(&src, &image, bits, kib);
        let listed = listing(&image);
        for (path, body) in &files {
            assert_eq!(
                listed.get(path),
                Some(&body.len().to_string()),
                "FAT{bits} {path}"
            );
        }
        assert_eq!(
            listed.get("an empty directory/").map(String::as_str),
            Some("-")
        );
        let out = fata(&["disk", "list", image.to_str().unwrap()]);
        assert!(text(&out.stderr).contains(kind), "{}", text(&out.stderr));
        for (path, body) in &files {
            let out = fata(&["disk", "copy", image.to_str().unwrap(), path, "-"]);
            assert!(
                out.status.success(),
                "FAT{bits} {path}: {}",
                text(&out.stderr)
            );
            assert!(out.stdout == *body, "FAT{bits} {path}: the bytes differ");
        }
    }
}

#[test]
fn a_size_too_small_is_refused_with_the_smallest_that_fits() {
    if !judges() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("ten mebibytes"), vec![1u8; 10 << 20]).unwrap();
    let image = dir.path().join("small.img");
    let out = create(&src, &image, &["--size", "8M"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr
            .starts_with("fata: an image of 8M cannot hold these files; the smallest that can is "),
        "{stderr}"
    );
    assert!(!image.exists(), "a refused image is not left behind");
    let smallest = stderr
        .split("give --size ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap()
        .to_string();
    let out = create(&src, &image, &["--size", &smallest]);
    assert!(
        out.status.success(),
        "--size {smallest}: {}",
        text(&out.stderr)
    );
    assert_clean(&image);
    let files = BTreeMap::from([("ten mebibytes".to_string(), vec![1u8; 10 << 20])]);
    assert_mcopy_reads(&image, &files);

    // An existing image is replaced only with --force.
    let out = create(&src, &image, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("already exists: give --force"));
    let out = create(&src, &image, &["--force"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_clean(&image);

    for (args, says) in [
        (&["--size", "12Q"][..], "unknown size unit"),
        (&["--size", "1000"], "whole number of 512-byte sectors"),
        (&["--label", "much too long"], "is not a FAT volume label"),
    ] {
        let out = create(&src, &dir.path().join("x.img"), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn what_fat_cannot_hold_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a:b"), b"x").unwrap();
    let out = create(&src, &dir.path().join("x.img"), &[]);
    assert_eq!(out.status.code(), Some(6));
    assert!(
        text(&out.stderr).contains("FAT cannot hold this name"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("rename it"));
    std::fs::remove_file(src.join("a:b")).unwrap();
    std::fs::write(src.join("Same"), b"x").unwrap();
    std::fs::write(src.join("same"), b"y").unwrap();
    let out = create(&src, &dir.path().join("x.img"), &[]);
    assert_eq!(out.status.code(), Some(6));
    assert!(
        text(&out.stderr).contains("differ only in letter case"),
        "{}",
        text(&out.stderr)
    );
    let out = create(&dir.path().join("missing"), &dir.path().join("x.img"), &[]);
    assert_eq!(out.status.code(), Some(6));
    assert!(text(&out.stderr).contains("cannot read"));
    assert!(!dir.path().join("x.img").exists());
}

#[test]
fn truncated_and_garbage_images_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    make_tree(&src);
    let image = dir.path().join("good.img");
    assert!(create(&src, &image, &[]).status.success());
    let bytes = std::fs::read(&image).unwrap();
    let truncated = dir.path().join("truncated.img");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let garbage = dir.path().join("garbage.img");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..(1 << 20))
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(&garbage, &noise).unwrap();
    // A boot sector that looks right over a directory region of noise.
    let scrambled = dir.path().join("scrambled.img");
    let mut damaged = bytes.clone();
    damaged[512..512 + noise.len()].copy_from_slice(&noise);
    std::fs::write(&scrambled, &damaged).unwrap();
    let empty = dir.path().join("empty.img");
    std::fs::write(&empty, b"").unwrap();

    for (image, says) in [
        (&truncated, "truncated.img is damaged: its boot sector says"),
        (&garbage, "garbage.img is not a FAT image"),
        (&empty, "empty.img is not a FAT image"),
        (&scrambled, "scrambled.img"),
    ] {
        for args in [
            vec!["disk", "list", image.to_str().unwrap()],
            vec!["disk", "copy", image.to_str().unwrap(), "index.html", "-"],
        ] {
            let out = fata(&args);
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(6), "{args:?}: {stderr}");
            assert!(
                stderr.starts_with("fata: ") && stderr.contains(says),
                "{args:?}: {stderr}"
            );
            assert!(
                stderr.contains("make it again") || stderr.contains("give an image made by"),
                "{args:?}: {stderr}"
            );
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
    let out = fata(&["disk", "copy", image.to_str().unwrap(), "no/such/file", "-"]);
    assert_eq!(out.status.code(), Some(6));
    assert!(
        text(&out.stderr).contains("holds no /no/such/file: `fata disk list"),
        "{}",
        text(&out.stderr)
    );
    let out = fata(&[
        "disk",
        "list",
        dir.path().join("missing.img").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(6));
    assert!(text(&out.stderr).contains("cannot read"));
}
