//! End to end on the hvt target: the same apps boot as unikernels under KVM.

mod common;

use std::path::Path;

use common::{build, fata, have_kvm, text};

#[test]
fn hello_prints_the_same_lines_as_a_unikernel_as_on_unix() {
    if !have_kvm("hello_prints_the_same_lines_as_a_unikernel_as_on_unix") {
        return;
    }
    let args = ["--", "--count", "4", "--interval-ms", "10"];
    let hvt = fata(
        &[
            &["run", "--release", "--target", "hvt", "apps/hello"][..],
            &args,
        ]
        .concat(),
    );
    assert_eq!(hvt.status.code(), Some(0), "stderr: {}", text(&hvt.stderr));
    let unix = fata(
        &[
            &["run", "--release", "--target", "unix", "apps/hello"][..],
            &args,
        ]
        .concat(),
    );
    assert_eq!(text(&hvt.stdout), "hello\nworld\nhello\nworld\n");
    assert_eq!(hvt.stdout, unix.stdout);
}

#[test]
fn images_are_stripped_static_and_small() {
    let image = build("apps/hello", "hvt");
    assert_eq!(image.extension().and_then(|e| e.to_str()), Some("hvt"));
    let undefined = std::process::Command::new("nm")
        .arg("-u")
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        text(&undefined.stdout).trim().is_empty(),
        "undefined symbols: {}",
        text(&undefined.stdout)
    );
    let size = std::fs::metadata(&image).unwrap().len();
    assert!(size <= 96 * 1024, "hello.hvt is {size} bytes");
    assert!(
        Path::new(&image.with_extension("")).is_file(),
        "the linked ELF stays for addr2line"
    );
}

#[test]
fn the_app_status_and_monitor_errors_become_the_exit_status() {
    if !have_kvm("the_app_status_and_monitor_errors_become_the_exit_status") {
        return;
    }
    let image = build("apps/hello", "hvt");
    let image = image.to_str().unwrap();

    let out = fata(&["run", image, "--", "--count", "many"]);
    assert_eq!(out.status.code(), Some(1), "the app's error is its status");
    assert!(text(&out.stdout).contains("error: --count: cannot understand the value \"many\""));

    let out = fata(&["run", image, "--mem", "3M", "--", "--count", "1"]);
    assert_eq!(out.status.code(), Some(119), "{}", text(&out.stderr));

    let out = fata(&["run", "--target", "hvt", "Cargo.toml"]);
    assert_eq!(
        out.status.code(),
        Some(121),
        "not an image: {}",
        text(&out.stderr)
    );

    let out = fata(&[
        "run",
        image,
        "--mem",
        "64M",
        "--",
        "--count",
        "1",
        "--interval-ms",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\n");
}
