//! Key-value stores the monitor refuses before the guest starts: too large for guest RAM, a file
//! it cannot read, a name that is not UTF-8. Each is an `Error::Kv` (exit code 116) that names the
//! store and the path; none of these checks needs KVM.

mod common;

use common::*;
use fata_hvt_abi::Hypercall;
use fata_monitor::{Config, Error, KvConfig};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A guest that exits at once; the errors below come before it could run.
fn image() -> Vec<u8> {
    let code = Asm::default().hypercall(Hypercall::Exit, DATA);
    elf(
        CODE,
        &[
            load(CODE, PF_R | PF_X, code.0),
            load(DATA, PF_R, vec![0; 8]),
        ],
    )
}

fn run_with(dir: &Path, mem_bytes: u64) -> Error {
    let config = Config {
        mem_bytes,
        kvs: vec![KvConfig {
            name: "files".into(),
            dir: dir.to_path_buf(),
        }],
        ..Config::default()
    };
    let path = image_file(&image());
    let result = fata_monitor::run_with_console(&path, &config, &mut Vec::new());
    let _ = std::fs::remove_file(&path);
    let error = result.expect_err("the store must be refused");
    assert_eq!(error.exit_code(), 116, "{error}");
    eprintln!("as expected: {error}");
    error
}

#[test]
fn a_store_larger_than_guest_ram_allows_is_refused_with_the_size_to_ask_for() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big"), vec![1u8; 6 << 20]).unwrap();
    let text = run_with(dir.path(), 8 << 20).to_string();
    assert!(text.contains("key-value store files"), "{text}");
    assert!(text.contains("raise --mem to at least 12 MiB"), "{text}");
    // The size it suggests is enough: the store is accepted there (and the run then needs KVM).
    let config = Config {
        mem_bytes: 12 << 20,
        kvs: vec![KvConfig {
            name: "files".into(),
            dir: dir.path().to_path_buf(),
        }],
        ..Config::default()
    };
    let path = image_file(&image());
    let result = fata_monitor::run_with_console(&path, &config, &mut Vec::new());
    let _ = std::fs::remove_file(&path);
    if let Err(e) = result {
        assert_ne!(e.exit_code(), 116, "{e}");
    }
}

#[test]
fn a_file_name_that_is_not_utf8_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    std::fs::write(dir.path().join("sub").join(name), b"x").unwrap();
    let text = run_with(dir.path(), 32 << 20).to_string();
    assert!(
        text.contains("not UTF-8") && text.contains("sub/caf"),
        "{text}"
    );
}

#[test]
fn a_directory_or_file_that_cannot_be_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = run_with(&dir.path().join("missing"), 32 << 20).to_string();
    assert!(
        text.contains("cannot read") && text.contains("missing"),
        "{text}"
    );
    std::fs::write(dir.path().join("plain"), b"x").unwrap();
    // A file is taken for a FAT image, and one that is not says so.
    let text = run_with(&dir.path().join("plain"), 32 << 20).to_string();
    assert!(
        text.contains("plain is not a FAT image") && text.contains("mkfs.fat"),
        "{text}"
    );

    use std::os::unix::fs::PermissionsExt;
    let secret = dir.path().join("store/secret");
    std::fs::create_dir(dir.path().join("store")).unwrap();
    std::fs::write(&secret, b"x").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&secret).is_ok() {
        eprintln!("note: running as root, which reads a mode-000 file; that case is not checked");
        return;
    }
    let text = run_with(&dir.path().join("store"), 32 << 20).to_string();
    assert!(
        text.contains("secret") && text.contains("Permission denied"),
        "{text}"
    );
}
