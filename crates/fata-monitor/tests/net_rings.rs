//! Hostile guests against the network rings: each broken ring ends the run with a clean ABI
//! violation, never a monitor panic or a hang. Every guest gets a tap device in a network namespace
//! of its own, made by its monitor thread (root only; fata-testkit decides what happens otherwise).

mod common;

use common::*;
use fata_hvt_abi::{
    BootInfo, DeviceInfo, ExitArgs, Hypercall, NET_PACKET_MAX, NET_PACKET_MIN, NET_RX_HEADER,
    NET_TX_HEADER, NetRingHeader, YieldArgs, doorbell_address, net_tx_slot,
};
use fata_hvt_codec::Codec;
use fata_monitor::{AbiViolation, Config, Error, NetConfig, RingDefect};
use fata_monitor::{NET_RX_SLOTS as RX_SLOTS, NET_TX_SLOTS as TX_SLOTS};
use std::mem::offset_of;
use std::time::Duration;

const EXIT_ARGS: u64 = DATA;
const YIELD_ARGS: u64 = DATA + 0x40;
const FOREVER_ARGS: u64 = DATA + 0x80;

/// Offset of device 0's `field` in the boot info.
fn device0(field: usize) -> u32 {
    (offset_of!(BootInfo, devices) + field) as u32
}

trait NetAsm {
    /// `mov rbx, [rdi + disp32]`: a u64 of the boot info.
    fn boot_info_rbx(self, offset: u32) -> Self;
    /// `mov rdx, [rdi + disp32]`.
    fn boot_info_rdx(self, offset: u32) -> Self;
    /// `mov dword ptr [rbx + disp32], imm32`: a u32 in device 0's ring memory.
    fn ring_u32(self, offset: u64, value: u32) -> Self;
    /// Yields (100 ms, interest: device 0) forever.
    fn yield_loop(self) -> Self;
}

impl NetAsm for Asm {
    fn boot_info_rbx(self, offset: u32) -> Self {
        self.raw(&[0x48, 0x8b, 0x9f]).raw(&offset.to_le_bytes())
    }
    fn boot_info_rdx(self, offset: u32) -> Self {
        self.raw(&[0x48, 0x8b, 0x97]).raw(&offset.to_le_bytes())
    }
    fn ring_u32(self, offset: u64, value: u32) -> Self {
        self.raw(&[0xc7, 0x83])
            .raw(&(offset as u32).to_le_bytes())
            .raw(&value.to_le_bytes())
    }
    fn yield_loop(self) -> Self {
        let start = self.0.len();
        let code = self.hypercall(Hypercall::Yield, YIELD_ARGS);
        let back = -((code.0.len() - start + 2) as i8);
        code.raw(&[0xeb, back as u8])
    }
}

/// Loads device 0's ring address into RBX.
fn with_ring() -> Asm {
    Asm::default().boot_info_rbx(device0(offset_of!(DeviceInfo, ring_addr)))
}

/// Rings device 0's doorbell with an 8-byte store.
fn ring_doorbell(code: Asm) -> Asm {
    code.boot_info_rdx(device0(offset_of!(DeviceInfo, doorbell)))
        .store()
}

fn data_page() -> Seg {
    let mut page = vec![0u8; 0x1000];
    ExitArgs { status: 0, pad: 0 }.encode(&mut page[0..]);
    YieldArgs {
        timeout_ns: 100_000_000,
        interest: 1,
        ready: 0,
    }
    .encode(&mut page[0x40..]);
    YieldArgs {
        timeout_ns: u64::MAX,
        interest: 0b10,
        ready: 0,
    }
    .encode(&mut page[0x80..]);
    load(DATA, PF_R | PF_W, page)
}

/// Runs `code` with one network device on a tap in a private network namespace; `None` when this
/// host cannot make one.
fn run_with_tap(code: Asm) -> Option<Outcome> {
    if !kvm_available() {
        return None;
    }
    let image = elf(CODE, &[load(CODE, PF_R | PF_X, code.0), data_page()]);
    let path = image_file(&image);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let pretend = fata_testkit::pretends_missing("netns");
        // SAFETY: unshare only changes this thread's network namespace; no memory is involved.
        if pretend || unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            let _ = std::fs::remove_file(&path);
            let _ = tx.send(None);
            return;
        }
        let config = Config {
            nets: vec![NetConfig {
                name: "service".into(),
                tap: "tap0".into(),
                mac: None,
            }],
            ..Config::default()
        };
        let mut console = Vec::new();
        let result = fata_monitor::run_with_console(&path, &config, &mut console);
        let _ = std::fs::remove_file(&path);
        let _ = tx.send(Some(Outcome {
            result,
            console: String::from_utf8_lossy(&console).into_owned(),
            open_after: Ok(()),
        }));
    });
    let outcome = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the guest did not finish within 20 s");
    if outcome.is_none() {
        fata_testkit::missing(
            "a private network namespace (unshare failed, or FATA_TEST_WITHOUT names netns)",
            "run the tests as root",
        );
    }
    outcome
}

fn violation(outcome: &Outcome) -> AbiViolation {
    match &outcome.result {
        Err(e @ Error::Abi { violation, .. }) => {
            assert_eq!(e.exit_code(), 125);
            eprintln!("as expected: {e}");
            violation.clone()
        }
        other => panic!("expected an ABI violation, got {other:?}"),
    }
}

const PRODUCED: u64 = offset_of!(NetRingHeader, produced) as u64;
const CONSUMED: u64 = offset_of!(NetRingHeader, consumed) as u64;

#[test]
fn a_transmit_packet_of_a_length_outside_the_limits_ends_the_guest() {
    let tx0 = net_tx_slot(RX_SLOTS, TX_SLOTS, 0);
    let too_long = NET_PACKET_MAX as u32 + 1;
    for len in [too_long, u32::MAX, NET_PACKET_MIN as u32 - 1, 3] {
        let code = with_ring()
            .ring_u32(tx0, len)
            .ring_u32(NET_TX_HEADER + PRODUCED, 1);
        let Some(out) = run_with_tap(ring_doorbell(code).yield_loop()) else {
            return;
        };
        assert_eq!(
            violation(&out),
            AbiViolation::NetRing {
                handle: 0,
                defect: RingDefect::FrameLength { index: 0, len }
            }
        );
    }
}

#[test]
fn a_transmit_packet_past_the_slots_produced_ends_the_guest() {
    // 2,041 bytes take two slots (with the slot's header); one was published.
    let tx0 = net_tx_slot(RX_SLOTS, TX_SLOTS, 0);
    let code = with_ring()
        .ring_u32(tx0, 2041)
        .ring_u32(NET_TX_HEADER + PRODUCED, 1);
    let Some(out) = run_with_tap(ring_doorbell(code).yield_loop()) else {
        return;
    };
    assert_eq!(
        violation(&out),
        AbiViolation::NetRing {
            handle: 0,
            defect: RingDefect::PacketSpan { index: 0, slots: 2 }
        }
    );
}

#[test]
fn transmit_index_beyond_the_ring_ends_the_guest() {
    for produced in [TX_SLOTS + 1, 0x8000_0000, u32::MAX] {
        let code = with_ring().ring_u32(NET_TX_HEADER + PRODUCED, produced);
        let Some(out) = run_with_tap(ring_doorbell(code).yield_loop()) else {
            return;
        };
        assert_eq!(
            violation(&out),
            AbiViolation::NetRing {
                handle: 0,
                defect: RingDefect::TxIndex {
                    produced,
                    consumed: 0
                }
            }
        );
    }
}

#[test]
fn receive_index_ahead_of_the_monitor_ends_the_guest() {
    // The doorbell exit (or the yield after it) makes the monitor move frames and find the index.
    let code = with_ring().ring_u32(NET_RX_HEADER + CONSUMED, 5);
    let Some(out) = run_with_tap(ring_doorbell(code).yield_loop()) else {
        return;
    };
    assert_eq!(
        violation(&out),
        AbiViolation::NetRing {
            handle: 0,
            defect: RingDefect::RxIndex {
                produced: 0,
                consumed: 5
            }
        }
    );
}

#[test]
fn doorbells_of_missing_devices_and_waits_on_them_are_violations() {
    // A doorbell slot with no device behind it reaches the monitor as an exit.
    let code = Asm::default()
        .mov_rax(1)
        .mov_rdx(doorbell_address(5).0)
        .store();
    let Some(out) = run_with_tap(code) else {
        return;
    };
    assert_eq!(
        violation(&out),
        AbiViolation::NoMemory {
            addr: doorbell_address(5).0
        }
    );
    // Waiting forever for a device that does not exist.
    let code = Asm::default().hypercall(Hypercall::Yield, FOREVER_ARGS);
    let Some(out) = run_with_tap(code) else {
        return;
    };
    assert_eq!(violation(&out), AbiViolation::WaitsForever);
}

#[test]
fn a_well_behaved_guest_rings_its_doorbell_at_any_width_and_exits() {
    // A byte-wide and an 8-byte doorbell store, a yield that times out (nothing arrives on the
    // private tap, which is down), then exit 0.
    let code = ring_doorbell(Asm::default())
        .raw(&[0xc6, 0x02, 0x01]) // mov byte ptr [rdx], 1
        .hypercall(Hypercall::Yield, YIELD_ARGS)
        .hypercall(Hypercall::Exit, EXIT_ARGS);
    let code = Asm(code.0);
    let Some(out) = run_with_tap(code) else {
        return;
    };
    assert_eq!(out.result.unwrap().status, 0);
}
