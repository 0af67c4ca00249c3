//! Hostile guests against the block rings, under KVM: a malformed request completes with an error
//! status (the guest exits with the status it read back), and broken ring indices end the run
//! with a clean ABI violation, never a monitor panic or a hang.

mod common;

use common::*;
use fata_hvt_abi::{
    BLOCK_REQUEST_MAX, BLOCK_REQUESTS, BlockCompletion, BlockRequest, BlockRingHeader, BlockStatus,
    BootInfo, DeviceInfo, ExitArgs, Hypercall, YieldArgs, block_completion_slot,
};
use fata_hvt_codec::Codec;
use fata_monitor::{
    AbiViolation, BLOCK_SLOTS as SLOTS, BlockConfig, BlockMode, Config, Error, RingDefect,
};
use std::mem::offset_of;

const EXIT_ARGS: u64 = DATA;
const YIELD_ARGS: u64 = DATA + 0x40;
/// A page of the guest's writable data segment, for request buffers.
const BUFFER: u64 = DATA + 0x1000;
const MEM: u64 = 32 << 20;
/// Sectors of the device's file.
const SECTORS: u64 = 64;

const REQUESTS_PRODUCED: u64 = offset_of!(BlockRingHeader, requests_produced) as u64;
const COMPLETIONS_CONSUMED: u64 = offset_of!(BlockRingHeader, completions_consumed) as u64;

/// Offset of `field` in request slot 0.
fn slot0(field: usize) -> u64 {
    BLOCK_REQUESTS + field as u64
}

trait BlockAsm {
    /// `mov rbx, [rdi + disp32]`: device 0's ring address from the boot info.
    fn with_ring(self) -> Self;
    /// `mov rax, imm64; mov [rbx + disp32], rax`: a u64 in the ring memory.
    fn ring_u64(self, offset: u64, value: u64) -> Self;
    /// `mov dword ptr [rbx + disp32], imm32`.
    fn ring_u32(self, offset: u64, value: u32) -> Self;
    /// `mov [rbx + disp32], rbx`: the ring's own address, as a u64 in the ring memory.
    fn ring_address_at(self, offset: u64) -> Self;
    /// Exits with the status of completion 0 (`mov eax, [rbx + disp32]`).
    fn exit_with_completion_status(self) -> Self;
    /// Rings device 0's doorbell.
    fn doorbell(self) -> Self;
}

impl BlockAsm for Asm {
    fn with_ring(self) -> Self {
        let offset = (offset_of!(BootInfo, devices) + offset_of!(DeviceInfo, ring_addr)) as u32;
        self.raw(&[0x48, 0x8b, 0x9f]).raw(&offset.to_le_bytes())
    }
    fn ring_u64(self, offset: u64, value: u64) -> Self {
        self.mov_rax(value)
            .raw(&[0x48, 0x89, 0x83])
            .raw(&(offset as u32).to_le_bytes())
    }
    fn ring_u32(self, offset: u64, value: u32) -> Self {
        self.raw(&[0xc7, 0x83])
            .raw(&(offset as u32).to_le_bytes())
            .raw(&value.to_le_bytes())
    }
    fn ring_address_at(self, offset: u64) -> Self {
        self.raw(&[0x48, 0x89, 0x9b])
            .raw(&(offset as u32).to_le_bytes())
    }
    fn exit_with_completion_status(self) -> Self {
        let status = block_completion_slot(SLOTS, 0) + offset_of!(BlockCompletion, status) as u64;
        self.raw(&[0x8b, 0x83])
            .raw(&(status as u32).to_le_bytes())
            .mov_rdx(EXIT_ARGS)
            .store32()
            .hypercall(Hypercall::Exit, EXIT_ARGS)
    }
    fn doorbell(self) -> Self {
        let offset = (offset_of!(BootInfo, devices) + offset_of!(DeviceInfo, doorbell)) as u32;
        self.raw(&[0x48, 0x8b, 0x97])
            .raw(&offset.to_le_bytes())
            .store()
    }
}

fn data() -> Seg {
    let mut page = vec![0u8; 0x2000];
    ExitArgs { status: 99, pad: 0 }.encode(&mut page[0..]);
    YieldArgs {
        timeout_ns: 5_000_000_000,
        interest: 1,
        ready: 0,
    }
    .encode(&mut page[0x40..]);
    load(DATA, PF_R | PF_W, page)
}

/// Runs `code` with one block device over a fresh file of `SECTORS` sectors.
fn run_with_disk(code: Asm) -> Option<Outcome> {
    if !kvm_available() {
        return None;
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), vec![7u8; (SECTORS * 512) as usize]).unwrap();
    let image = elf(CODE, &[load(CODE, PF_R | PF_X, code.0), data()]);
    let config = Config {
        mem_bytes: MEM,
        blocks: vec![BlockConfig {
            name: "storage".into(),
            path: file.path().into(),
            mode: BlockMode::ReadWrite,
        }],
        ..Config::default()
    };
    let outcome = run_path(image_file(&image), config);
    drop(file);
    Some(outcome)
}

/// The request a guest publishes: `(op, flags, sector, len, buffer)`; `None` as the buffer puts
/// the ring's own address there.
type Fields = (u32, u32, u64, u64, Option<u64>);

/// A guest that publishes one request, yields for its device and exits with the status of the
/// completion it finds.
fn one_request((op, flags, sector, len, buffer): Fields) -> Asm {
    let code = Asm::default()
        .with_ring()
        .ring_u64(slot0(offset_of!(BlockRequest, tag)), 0)
        .ring_u32(slot0(offset_of!(BlockRequest, op)), op)
        .ring_u32(slot0(offset_of!(BlockRequest, flags)), flags)
        .ring_u64(slot0(offset_of!(BlockRequest, sector)), sector)
        .ring_u64(slot0(offset_of!(BlockRequest, len)), len);
    let at = slot0(offset_of!(BlockRequest, buffer));
    let code = match buffer {
        Some(buffer) => code.ring_u64(at, buffer),
        None => code.ring_address_at(at),
    };
    code.ring_u32(REQUESTS_PRODUCED, 1)
        .hypercall(Hypercall::Yield, YIELD_ARGS)
        .exit_with_completion_status()
}

#[test]
fn malformed_requests_complete_with_an_error_status_and_the_guest_goes_on() {
    let bad = BlockStatus::BadRequest as i32;
    let range = BlockStatus::OutOfRange as i32;
    let cases: [(Fields, i32); 15] = [
        // A well-formed read: the control.
        ((1, 0, 0, 4096, Some(BUFFER)), BlockStatus::Ok as i32),
        // Unknown operation, unknown flag, a grouped read.
        ((9, 0, 0, 512, Some(BUFFER)), bad),
        ((1, 2, 0, 512, Some(BUFFER)), bad),
        ((1, 1, 0, 512, Some(BUFFER)), bad),
        // Lengths: zero, not whole sectors, over the maximum.
        ((1, 0, 0, 0, Some(BUFFER)), bad),
        ((2, 0, 0, 100, Some(BUFFER)), bad),
        ((1, 0, 0, BLOCK_REQUEST_MAX + 512, Some(BUFFER)), bad),
        // Buffers over the ring, the boot info, the code; outside RAM, straddling its end,
        // wrapping round the address space.
        ((1, 0, 0, 512, None), bad),
        ((1, 0, 0, 512, Some(0x2000)), bad),
        ((2, 0, 0, 512, Some(CODE)), bad),
        ((1, 0, 0, 512, Some(MEM)), bad),
        ((1, 0, 0, 1024, Some(MEM - 512)), bad),
        ((1, 0, 0, 1024, Some(u64::MAX - 511)), bad),
        // Sectors past the end, and a sector count that overflows.
        ((1, 0, SECTORS, 512, Some(BUFFER)), range),
        ((1, 0, u64::MAX, 1024, Some(BUFFER)), range),
    ];
    for (fields, status) in cases {
        let Some(out) = run_with_disk(one_request(fields)) else {
            return;
        };
        match out.result {
            Ok(exit) => assert_eq!(exit.status, status, "request {fields:x?}"),
            Err(e) => panic!("request {fields:x?} ended the run: {e}"),
        }
    }
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

fn defect(outcome: &Outcome) -> RingDefect {
    match violation(outcome) {
        AbiViolation::BlockRing { handle: 0, defect } => defect,
        other => panic!("expected a block ring defect, got {other}"),
    }
}

#[test]
fn request_indices_beyond_the_ring_end_the_guest_at_a_yield_or_a_doorbell() {
    for produced in [SLOTS + 1, 0x8000_0000, u32::MAX] {
        let code = Asm::default()
            .with_ring()
            .ring_u32(REQUESTS_PRODUCED, produced);
        let codes = [
            code.hypercall(Hypercall::Yield, YIELD_ARGS),
            Asm::default()
                .with_ring()
                .ring_u32(REQUESTS_PRODUCED, produced)
                .doorbell(),
        ];
        for code in codes {
            let Some(out) = run_with_disk(code.hypercall(Hypercall::Exit, EXIT_ARGS)) else {
                return;
            };
            assert_eq!(
                defect(&out),
                RingDefect::RequestIndex {
                    produced,
                    consumed: 0
                }
            );
        }
    }
}

#[test]
fn completions_consumed_before_they_were_produced_end_the_guest() {
    let code = Asm::default()
        .with_ring()
        .ring_u32(COMPLETIONS_CONSUMED, 3)
        .hypercall(Hypercall::Yield, YIELD_ARGS)
        .hypercall(Hypercall::Exit, EXIT_ARGS);
    let Some(out) = run_with_disk(code) else {
        return;
    };
    assert_eq!(
        defect(&out),
        RingDefect::CompletionIndex {
            produced: 0,
            consumed: 3
        }
    );
}

#[test]
fn more_requests_outstanding_than_slots_end_the_guest() {
    // A whole ring of (zeroed, so malformed) requests, whose completions the guest never
    // consumes; then one more.
    let code = Asm::default()
        .with_ring()
        .ring_u32(REQUESTS_PRODUCED, SLOTS)
        .hypercall(Hypercall::Yield, YIELD_ARGS)
        .ring_u32(REQUESTS_PRODUCED, SLOTS + 1)
        .doorbell()
        .hypercall(Hypercall::Exit, EXIT_ARGS);
    let Some(out) = run_with_disk(code) else {
        return;
    };
    assert_eq!(
        defect(&out),
        RingDefect::Outstanding {
            outstanding: SLOTS + 1,
            slots: SLOTS
        }
    );
}
