//! apps/pulse end to end, as a unikernel and as a process, over a tap device in a network
//! namespace: its DNS answers (its address, the clock text), a 4 MiB download checked byte for
//! byte, and a monotonic clock that moves on. The lifecycle tests rely on each of these.

mod common;

use common::pulse::check_pulse;
use common::{Netns, Running, build};

fn run_pulse(ns: &Netns, target: &str) -> Running {
    build("apps/pulse", target);
    let ipv4 = format!("{}/24", ns.guest());
    let mut command = ns.fata();
    command.args([
        "run",
        "--release",
        "--target",
        target,
        "apps/pulse",
        "--net",
        "tap0",
        "--",
        "--ipv4",
        &ipv4,
    ]);
    Running::start(command, "pulse: ready")
}

#[test]
fn pulse_on_hvt_over_a_tap_device() {
    if !fata_testkit::kvm() {
        return;
    }
    let Some(ns) = Netns::create("pulsehvt", 80) else {
        return;
    };
    let mut app = run_pulse(&ns, "hvt");
    check_pulse(&ns);
    assert!(app.is_running());
}

#[test]
fn pulse_on_unix_over_a_tap_device() {
    let Some(ns) = Netns::create("pulseunix", 81) else {
        return;
    };
    let mut app = run_pulse(&ns, "unix");
    check_pulse(&ns);
    assert!(app.is_running());
}
