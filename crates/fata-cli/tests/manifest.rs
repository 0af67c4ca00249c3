//! The devices an app declares travel in its image: `fata build` writes them as the manifest note,
//! `fata run` refuses a command line that leaves one out or gives another before anything boots,
//! on hvt and on unix, and a built image keeps its own settings (apps/dns's coalescing).

mod common;

use std::path::{Path, PathBuf};

use common::{Netns, build, fata, refused, text};
use fata_device_spec::manifest::{Device, Kind, Manifest};

/// The manifest `fata run` reads from the executable at `path`.
fn manifest_of(path: &Path) -> Option<Manifest> {
    fata_monitor::read_manifest(&std::fs::read(path).unwrap()).unwrap()
}

/// A copy of the image at `image` whose manifest note no longer reads as one (its type changed),
/// as an image built before Fata wrote manifests is.
fn without_manifest(image: &Path, dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(image).unwrap();
    let note = Manifest::default().to_note();
    let at = bytes
        .windows(note.len())
        .position(|w| w == &note[..])
        .expect("the image carries hello's (empty) manifest note");
    bytes[at + 8] = 0x7f;
    let old = dir.join("old.hvt");
    std::fs::write(&old, bytes).unwrap();
    assert_eq!(manifest_of(&old), None);
    old
}

#[test]
fn images_and_executables_carry_what_the_app_declares() {
    let dns = Manifest::new(
        vec![
            Device::new(Kind::Net, "service"),
            Device::new(Kind::Kv, "files"),
        ],
        1000,
    )
    .unwrap();
    for target in ["hvt", "unix"] {
        assert_eq!(manifest_of(&build("apps/dns", target)), Some(dns.clone()));
        assert_eq!(
            manifest_of(&build("apps/hello", target)),
            Some(Manifest::default()),
            "hello declares that it takes nothing"
        );
    }
    let www = manifest_of(&build("apps/www", "hvt")).unwrap();
    let site = Device::new(Kind::Kv, "site");
    assert_eq!(
        www.devices(),
        [Device::new(Kind::Net, "service"), site.clone()]
    );
    assert!(www.is_optional(&site), "www runs without a site store");
    assert_eq!(www.coalesce_us(), 0);
}

#[test]
fn a_missing_or_undeclared_device_is_refused_before_boot_on_hvt() {
    let image = build("apps/dns", "hvt");
    let image = image.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = format!("files={}", dir.path().display());
    // A tap the monitor would create, had it started: that it does not exist afterwards shows
    // the run stopped before any device was opened.
    let tap = "fata-undecl0";
    let not_booted = |out: &std::process::Output| {
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
        assert!(
            !text(&out.stderr).contains("fata-monitor"),
            "{}",
            text(&out.stderr)
        );
        assert!(!Path::new("/sys/class/net").join(tap).exists());
    };

    let out = fata(&["run", image, "--stats", "--kv", &files, "--", "--zone", "z"]);
    refused(
        &out,
        2,
        "dns.hvt: the app takes the network interface \"service\", not given: give it with \
         --net service=TAP",
    );
    not_booted(&out);

    let extra = format!("extra={}", dir.path().display());
    let out = fata(&[
        "run", image, "--stats", "--net", tap, "--kv", &files, "--kv", &extra,
    ]);
    refused(
        &out,
        2,
        "dns.hvt: the app does not take the key-value store \"extra\" (it declares the network \
         interface \"service\" and the key-value store \"files\"): leave it out, or declare it \
         in the app's Cargo.toml ([package.metadata.fata.devices] kv = [\"extra\"])",
    );
    not_booted(&out);

    // A store given without a name is `data`, which dns does not take; its `files` is missing.
    let out = fata(&[
        "run",
        image,
        "--net",
        tap,
        "--kv",
        dir.path().to_str().unwrap(),
    ]);
    refused(
        &out,
        2,
        "give it with --kv files=DIR; and the app does not take the key-value store \"data\"",
    );
    not_booted(&out);

    // Built from its crate, the app is checked the same way.
    let out = fata(&[
        "run",
        "--release",
        "--target",
        "hvt",
        "apps/hello",
        "--net",
        tap,
    ]);
    refused(
        &out,
        2,
        "hello.hvt: the app does not take the network interface \"service\" (it declares no \
         devices)",
    );
    not_booted(&out);
}

#[test]
fn the_same_mistakes_are_refused_on_unix() {
    let executable = build("apps/dns", "unix");
    let executable = executable.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();

    let out = fata(&["run", "--target", "unix", executable, "--", "--zone", "z"]);
    refused(
        &out,
        2,
        "dns: the app takes the key-value store \"files\", not given: give it with --kv files=DIR",
    );
    assert!(out.stdout.is_empty(), "the app did not start");

    let extra = format!("extra={store}");
    let files = format!("files={store}");
    let out = fata(&[
        "run", "--target", "unix", executable, "--kv", &files, "--kv", &extra,
    ]);
    refused(
        &out,
        2,
        "dns: the app does not take the key-value store \"extra\"",
    );
    assert!(out.stdout.is_empty(), "the app did not start");

    let out = fata(&[
        "run",
        "--release",
        "--target",
        "unix",
        "apps/hello",
        "--kv",
        store,
    ]);
    refused(
        &out,
        2,
        "hello: the app does not take the key-value store \"data\"",
    );

    // Given what it declares, the app starts; without --net, the host's sockets stand in for
    // its network interface. It then looks for the zone in its (empty) store, and says so.
    let out = fata(&[
        "run", "--target", "unix", executable, "--kv", &files, "--", "--zone", "z",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("reading zone \"z\""),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn an_image_built_before_manifests_still_runs_unchecked() {
    if !fata_testkit::kvm() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let old = without_manifest(&build("apps/hello", "hvt"), dir.path());
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let out = fata(&[
        "run",
        old.to_str().unwrap(),
        "--kv",
        store.to_str().unwrap(),
        "--",
        "--count",
        "1",
        "--interval-ms",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\n");
    assert!(
        text(&out.stderr).contains("old.hvt carries no device declarations"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_built_dns_image_coalesces_as_its_manifest_says_on_hvt() {
    if !fata_testkit::kvm() {
        return;
    }
    let Some(ns) = Netns::create("manifest", 71) else {
        return;
    };
    let image = build("apps/dns", "hvt");
    let dir = tempfile::tempdir().unwrap();
    let files = format!("files={}", dir.path().display());
    // Without --zone the server stops at once (status 1), and --stats shows how the monitor
    // served its network interface.
    let run = |extra: &[&str]| {
        let out = ns
            .fata()
            .arg("run")
            .arg(&image)
            .args(["--stats", "--net", "tap0", "--kv", &files])
            .args(extra)
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            text(&out.stdout).contains("--zone FILE"),
            "{}",
            text(&out.stdout)
        );
        stderr
    };
    let stderr = run(&[]);
    assert!(
        stderr.contains("coalescing naps (interval 1000 us)"),
        "{stderr}"
    );
    let stderr = run(&["--coalesce-us", "0"]);
    assert!(
        stderr.contains("coalescing naps (no coalescing)"),
        "{stderr}"
    );
    let stderr = run(&["--coalesce-us", "250"]);
    assert!(
        stderr.contains("coalescing naps (interval 250 us)"),
        "{stderr}"
    );
}
