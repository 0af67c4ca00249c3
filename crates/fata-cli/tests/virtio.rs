//! End to end on the virtio target: the same apps boot as PVH unikernels under QEMU.

mod common;

use common::{build, fata, refused, text};

/// Whether QEMU is here; when not, says so (and fails under CI).
fn qemu() -> bool {
    fata_testkit::program(fata_qemu::QEMU, "qemu-system-x86")
}

#[test]
fn hello_prints_the_same_lines_under_qemu_as_on_unix() {
    if !qemu() {
        return;
    }
    let args = ["--", "--count", "4", "--interval-ms", "10"];
    let virtio = fata(
        &[
            &["run", "--release", "--target", "virtio", "apps/hello"][..],
            &args,
        ]
        .concat(),
    );
    assert_eq!(
        virtio.status.code(),
        Some(0),
        "stderr: {}",
        text(&virtio.stderr)
    );
    assert!(
        text(&virtio.stderr).contains("with QEMU ("),
        "the accelerator is printed: {}",
        text(&virtio.stderr)
    );
    let unix = fata(
        &[
            &["run", "--release", "--target", "unix", "apps/hello"][..],
            &args,
        ]
        .concat(),
    );
    assert_eq!(text(&virtio.stdout), "hello\nworld\nhello\nworld\n");
    assert_eq!(virtio.stdout, unix.stdout);
}

#[test]
fn sleeps_last_as_long_as_asked_under_emulation() {
    if !qemu() {
        return;
    }
    let image = build("apps/hello", "virtio");
    let started = std::time::Instant::now();
    let out = fata(&[
        "run",
        image.to_str().unwrap(),
        "--",
        "--count",
        "3",
        "--interval-ms",
        "400",
    ]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    // Two pauses of 400 ms: a clock measured wrongly makes them far shorter or longer.
    assert!(
        (std::time::Duration::from_millis(780)..std::time::Duration::from_millis(3000))
            .contains(&took),
        "two 400 ms pauses took {took:?}"
    );
}

#[test]
fn the_image_is_a_pvh_elf_with_no_undefined_symbols() {
    let image = build("apps/hello", "virtio");
    assert_eq!(image.extension().and_then(|e| e.to_str()), Some("virtio"));
    let notes = std::process::Command::new("readelf")
        .args(["--notes", "--program-headers"])
        .arg(&image)
        .output()
        .expect("readelf (binutils) runs");
    let notes = text(&notes.stdout);
    assert!(notes.contains("Xen") && notes.contains("NOTE"), "{notes}");
    let nm = std::process::Command::new("nm")
        .arg("-u")
        .arg(image.with_extension(""))
        .output()
        .expect("nm runs");
    assert_eq!(text(&nm.stdout), "", "undefined symbols");
    let size = std::fs::metadata(&image).unwrap().len();
    assert!(size <= 128 * 1024, "hello.virtio is {size} bytes");
}

#[test]
fn app_statuses_and_bad_options_come_back_as_on_hvt() {
    if !qemu() {
        return;
    }
    let image = build("apps/hello", "virtio");
    let image = image.to_str().unwrap();
    // hello refuses an option it does not know: the app's status 1 comes back through QEMU.
    let out = fata(&["run", image, "--", "--no-such-option"]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("--no-such-option"),
        "{}",
        text(&out.stdout)
    );
    let out = fata(&["run", image, "--stats"]);
    refused(&out, 2, "hvt target only");
    let out = fata(&["run", image, "--net", "packet:eth0"]);
    refused(&out, 2, "declare");
}
