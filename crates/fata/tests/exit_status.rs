//! How a program ends: `main`'s result, panics and arguments that do not fit the app's options
//! become the exit status, as they do for an app.
//!
//! Each test re-runs this test binary as a child process that calls `fata::rt::start`, because
//! starting ends the process. The binary has its own harness (libtest-mimic), so a child's
//! arguments are the app's arguments rather than the test harness's.

use std::process::{Command, Output};

use fata::Opt;
use libtest_mimic::{Arguments, Failed, Trial};

const CHILD: &str = "FATA_EXIT_STATUS_CHILD";

/// The options of the children, as an app declares them.
const OPTIONS: &[&[Opt]] = &[&[
    Opt::value("--count", "N", "how many"),
    Opt::repeatable("--zone", "FILE", "a zone"),
]];

fn main() {
    if let Ok(name) = std::env::var(CHILD) {
        child(&name);
    }
    let trials = vec![
        Trial::test(
            "a_panicking_task_ends_the_program_with_its_message_and_location",
            a_panicking_task_ends_the_program_with_its_message_and_location,
        ),
        Trial::test(
            "an_error_from_main_is_printed_and_exits_1",
            an_error_from_main_is_printed_and_exits_1,
        ),
        Trial::test("ok_from_main_exits_0", ok_from_main_exits_0),
        Trial::test(
            "an_unknown_option_exits_1_with_the_usage_before_main_runs",
            an_unknown_option_exits_1_with_the_usage_before_main_runs,
        ),
        Trial::test(
            "a_repeated_single_valued_option_exits_1",
            a_repeated_single_valued_option_exits_1,
        ),
    ];
    libtest_mimic::run(&Arguments::from_args(), trials).exit();
}

/// What the child called `name` does: it starts a program and never returns.
fn child(name: &str) -> ! {
    match name {
        "panic" => fata::rt::start("exit_status", OPTIONS, |_env| async {
            fata::spawn(async { panic!("boom in task {}", 7) }).await;
            Ok::<(), fata::Error>(())
        }),
        "error" => fata::rt::start("exit_status", OPTIONS, |_env| async {
            Err::<(), _>(fata::Error::msg("the zone file is empty"))
        }),
        "ok" => fata::rt::start("exit_status", OPTIONS, |env| async move {
            let zones: Vec<String> = env.arg_all("--zone")?;
            let count: u32 = env.arg("--count")?.unwrap_or(0);
            fata::sleep(fata::Duration::from_millis(1)).await;
            fata::println!("main ran: {count} {zones:?}");
            Ok::<(), fata::Error>(())
        }),
        other => panic!("no child called {other}"),
    }
}

/// Runs child `name` of this binary with the app arguments `args`.
fn run_child(name: &str, args: &[&str]) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args(args)
        .env(CHILD, name)
        .output()
        .unwrap()
}

/// Fails with `message` unless `ok`.
fn check(ok: bool, message: impl FnOnce() -> String) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(message().into()) }
}

fn a_panicking_task_ends_the_program_with_its_message_and_location() -> Result<(), Failed> {
    let out = run_child("panic", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    check(out.status.code() == Some(101), || {
        format!("stderr: {stderr}")
    })?;
    check(
        stderr.contains("panicked at crates/fata/tests/exit_status.rs:"),
        || format!("stderr: {stderr}"),
    )?;
    check(stderr.contains("boom in task 7"), || {
        format!("stderr: {stderr}")
    })
}

fn an_error_from_main_is_printed_and_exits_1() -> Result<(), Failed> {
    let out = run_child("error", &[]);
    check(out.status.code() == Some(1), || format!("{:?}", out.status))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    check(stdout.contains("error: the zone file is empty"), || {
        stdout.to_string()
    })
}

fn ok_from_main_exits_0() -> Result<(), Failed> {
    let out = run_child("ok", &["--zone", "a", "--count=3", "--zone", "b"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    check(out.status.code() == Some(0), || {
        format!("{:?}: {stdout}", out.status)
    })?;
    check(stdout.contains("main ran: 3 [\"a\", \"b\"]"), || {
        stdout.to_string()
    })
}

fn an_unknown_option_exits_1_with_the_usage_before_main_runs() -> Result<(), Failed> {
    let out = run_child("ok", &["--count", "1", "--tls-cert", "cert.pem"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    check(out.status.code() == Some(1), || format!("{:?}", out.status))?;
    check(
        stdout.starts_with(
            "error: unknown option --tls-cert\nusage: exit_status [OPTIONS]\n  --count N  ",
        ),
        || stdout.to_string(),
    )?;
    check(stdout.contains("--zone FILE"), || stdout.to_string())?;
    check(!stdout.contains("main ran"), || stdout.to_string())
}

fn a_repeated_single_valued_option_exits_1() -> Result<(), Failed> {
    let out = run_child("ok", &["--count", "1", "--count", "2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    check(out.status.code() == Some(1), || format!("{:?}", out.status))?;
    check(
        stdout.starts_with("error: --count is given more than once\nusage: exit_status"),
        || stdout.to_string(),
    )?;
    check(!stdout.contains("main ran"), || stdout.to_string())
}
