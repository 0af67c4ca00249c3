//! How a program ends: `main`'s result and panics become the exit status, as they do for an app.
//!
//! Each test re-runs this test binary as a child process that calls `fata::rt::start`, because
//! starting ends the process.

use std::process::{Command, Output};

const CHILD: &str = "FATA_EXIT_STATUS_CHILD";

/// Runs test `name` of this binary in a child with `CHILD` set.
fn run_child(name: &str) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .output()
        .unwrap()
}

fn is_child(name: &str) -> bool {
    std::env::var(CHILD).is_ok_and(|n| n == name)
}

#[test]
fn a_panicking_task_ends_the_program_with_its_message_and_location() {
    let name = "a_panicking_task_ends_the_program_with_its_message_and_location";
    if is_child(name) {
        fata::rt::start(|_env| async {
            fata::spawn(async { panic!("boom in task {}", 7) }).await;
            Ok::<(), fata::Error>(())
        });
    }
    let out = run_child(name);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "stderr: {stderr}");
    assert!(
        stderr.contains("panicked at crates/fata/tests/exit_status.rs:"),
        "stderr: {stderr}"
    );
    assert!(stderr.contains("boom in task 7"), "stderr: {stderr}");
}

#[test]
fn an_error_from_main_is_printed_and_exits_1() {
    let name = "an_error_from_main_is_printed_and_exits_1";
    if is_child(name) {
        fata::rt::start(|_env| async { Err::<(), _>(fata::Error::msg("the zone file is empty")) });
    }
    let out = run_child(name);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("error: the zone file is empty"));
}

#[test]
fn ok_from_main_exits_0() {
    let name = "ok_from_main_exits_0";
    if is_child(name) {
        fata::rt::start(|_env| async {
            fata::sleep(fata::Duration::from_millis(1)).await;
            Ok::<(), fata::Error>(())
        });
    }
    assert_eq!(run_child(name).status.code(), Some(0));
}
