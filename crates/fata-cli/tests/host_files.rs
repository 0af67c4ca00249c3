//! Host files an app declares (`[package.metadata.fata.host-files]`), prepared by the program the
//! app names: apps/dns's master files, compiled by the fata-zone crate's program. A file that
//! cannot be prepared exits 5 with what to do; one prepared before is not prepared again while
//! it and the program are unchanged.

mod common;

use common::{fata, text};

/// `fata run --release --target unix apps/dns -- ARGS`, to completion.
fn run_dns(args: &[&str]) -> std::process::Output {
    let mut all = vec!["run", "--release", "--target", "unix", "apps/dns", "--"];
    all.extend_from_slice(args);
    fata(&all)
}

#[test]
fn a_zone_that_cannot_be_prepared_exits_5_and_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.zone");
    std::fs::write(&bad, "this is not a zone\n").unwrap();
    let out = run_dns(&["--zone", bad.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("fata-zone: "),
        "the program's own message: {stderr}"
    );
    assert!(
        stderr.contains("fata-zone failed (exit status: 1); its message is above: fix the file"),
        "{stderr}"
    );

    let missing = dir.path().join("missing.zone");
    let out = run_dns(&["--zone", missing.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("cannot read it") && stderr.contains("give the path of an existing file"),
        "{stderr}"
    );
}

#[test]
fn a_prepared_zone_is_prepared_again_only_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let zone = dir.path().join("z.zone");
    let text_of = |serial: u32| {
        format!(
            "$ORIGIN z.test.\n$TTL 60\n@ IN SOA ns1 hostmaster {serial} 7200 3600 1209600 300\n\
             @ IN NS ns1\nns1 IN A 192.0.2.1\n"
        )
    };
    std::fs::write(&zone, text_of(1)).unwrap();
    // An option dns does not take ends it once the zone is prepared, so each run is short.
    let args = ["--zone", zone.to_str().unwrap(), "--stop-here"];
    let prepared = |out: &std::process::Output| {
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(text(&out.stdout).contains("unknown option --stop-here"));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("building the program that prepares its files"),
            "{stderr}"
        );
        if stderr.contains("preparing it with fata-zone") {
            true
        } else {
            assert!(
                stderr.contains("unchanged since it was last prepared"),
                "{stderr}"
            );
            false
        }
    };
    assert!(prepared(&run_dns(&args)), "first run");
    assert!(!prepared(&run_dns(&args)), "second run");
    std::fs::write(&zone, text_of(2) + "ns2 IN A 192.0.2.2\n").unwrap();
    assert!(prepared(&run_dns(&args)), "after the file changed");
}
