//! End to end on the unix target: the `fata` command builds and runs real apps.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{fata, refused, text};

#[test]
fn hello_runs_as_a_process_and_prints_its_lines_on_time() {
    // Build first so the timing below measures the app, not the compiler.
    assert!(
        fata(&["build", "--target", "unix", "apps/hello"])
            .status
            .success()
    );
    let started = Instant::now();
    let out = fata(&[
        "run",
        "--target",
        "unix",
        "apps/hello",
        "--",
        "--count",
        "4",
        "--interval-ms",
        "10",
    ]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\nworld\nhello\nworld\n");
    assert!(
        took >= Duration::from_millis(30),
        "three 10 ms intervals took only {took:?}"
    );
}

#[test]
fn build_prints_the_executable_path_last() {
    let out = fata(&["build", "apps/hello"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let path = stdout.lines().last().expect("a path");
    assert!(Path::new(path).is_file(), "{path} is not a file");
    assert!(path.ends_with("/hello"), "{path}");
}

#[test]
fn errors_say_what_went_wrong() {
    let out = fata(&["build", "no/such/crate"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("no crate at no/such/crate"),
        "{}",
        text(&out.stderr)
    );

    let out = fata(&["build", "--target", "xen", "apps/hello"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown target \"xen\""),
        "{}",
        text(&out.stderr)
    );

    let out = fata(&[
        "run",
        "--target",
        "unix",
        "apps/hello",
        "--",
        "--count",
        "many",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the app's own failure is its exit status"
    );
    assert!(text(&out.stdout).contains("--count: cannot understand the value \"many\""));
}

#[test]
fn a_new_app_builds_and_runs_and_a_broken_one_shows_the_compiler_error() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("greeter");
    let app_arg = app.to_str().unwrap();
    let out = fata(&["new", app_arg]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));

    let out = fata(&["run", app_arg, "--", "--name", "Fata"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello, Fata, from the unix target\n");

    let out = fata(&["new", app_arg]);
    assert_eq!(out.status.code(), Some(1), "refuses to overwrite");

    let main = app.join("src/main.rs");
    let source = std::fs::read_to_string(&main).unwrap();
    std::fs::write(&main, source.replace("Ok(())", "Ok(undefined_thing)")).unwrap();
    let out = fata(&["build", app_arg]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("the compiler's first error"), "{stderr}");
    assert!(stderr.contains("undefined_thing"), "{stderr}");
}

#[test]
fn device_names_follow_the_hvt_rule_on_unix_too() {
    // Through `fata run`: the command line is refused before the app starts.
    let run_hello = |devices: &[&str]| {
        let mut args = vec!["run", "--target", "unix", "apps/hello"];
        args.extend_from_slice(devices);
        fata(&args)
    };
    let twice = run_hello(&["--kv", "a=/tmp", "--kv", "a=/tmp"]);
    refused(&twice, 2, "two devices are named \"a\"");
    let long = run_hello(&["--kv", "sixteen-bytes-xx=/tmp"]);
    refused(&long, 2, "\"sixteen-bytes-xx\" is not usable");
    // The executable alone, given its devices in the environment as `fata run` does.
    let built = fata(&["build", "--target", "unix", "apps/hello"]);
    let executable = text(&built.stdout).lines().last().unwrap().to_string();
    let out = std::process::Command::new(&executable)
        .env("FATA_KV", "data=/tmp,/tmp")
        .output()
        .unwrap();
    refused(&out, 2, "two devices are named \"data\"");
}
