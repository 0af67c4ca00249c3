//! Guests under KVM, well-behaved and hostile: each ends with its status or a clear error, never a
//! monitor panic.

mod common;

use common::*;
use fata_hvt_abi::{ConsoleWriteArgs, ExitArgs, GuestAddr, Hypercall, YieldArgs};
use fata_hvt_codec::Codec;
use fata_monitor::{AbiViolation, Error, FaultKind};

const WRITE_ARGS: u64 = DATA;
const EXIT_ARGS: u64 = DATA + 0x20;
const YIELD_ARGS: u64 = DATA + 0x40;
const TEXT: u64 = DATA + 0x100;

/// A data page holding console-write arguments, exit arguments and the text `hi\n`.
fn data(write: ConsoleWriteArgs, status: i32) -> Seg {
    let mut page = vec![0u8; 0x1000];
    write.encode(&mut page[0..]);
    ExitArgs { status, pad: 0 }.encode(&mut page[0x20..]);
    YieldArgs {
        timeout_ns: 1_000_000,
        interest: 0,
        ready: 7,
    }
    .encode(&mut page[0x40..]);
    page[0x100..0x103].copy_from_slice(b"hi\n");
    load(DATA, PF_R | PF_W, page)
}

fn hello_write() -> ConsoleWriteArgs {
    ConsoleWriteArgs {
        data: GuestAddr(TEXT),
        len: 3,
    }
}

/// Runs `code` with the data page; returns the outcome.
fn guest(code: Asm, write: ConsoleWriteArgs) -> Outcome {
    let image = elf(CODE, &[load(CODE, PF_R | PF_X, code.0), data(write, 7)]);
    run_image(&image, &[])
}

fn exit_after(code: Asm) -> Asm {
    code.hypercall(Hypercall::Exit, EXIT_ARGS)
}

fn abi(outcome: &Outcome) -> &AbiViolation {
    match &outcome.result {
        Err(e @ Error::Abi { violation, .. }) => {
            assert_eq!(e.exit_code(), 125);
            eprintln!("as expected: {e}");
            violation
        }
        other => panic!("expected an ABI violation, got {other:?}"),
    }
}

fn fault(outcome: &Outcome) -> (FaultKind, u64) {
    match &outcome.result {
        Err(e @ Error::GuestFault { kind, rip, .. }) => {
            assert_eq!(e.exit_code(), 124);
            let text = e.to_string();
            assert!(
                text.contains("RIP") && text.contains("RSP") && text.contains("hint"),
                "{text}"
            );
            eprintln!("as expected: {e}");
            (*kind, *rip)
        }
        other => panic!("expected a guest fault, got {other:?}"),
    }
}

#[test]
fn well_behaved_guest_prints_yields_and_exits_with_its_status() {
    if !kvm_available() {
        return;
    }
    let code = exit_after(
        Asm::default()
            .hypercall(Hypercall::ConsoleWrite, WRITE_ARGS)
            .hypercall(Hypercall::Yield, YIELD_ARGS)
            .raw(&[0x0f, 0x57, 0xc0]), // xorps xmm0, xmm0: SSE works at CPL3 from the start
    );
    let out = guest(code, hello_write());
    assert_eq!(out.result.unwrap().status, 7);
    assert_eq!(out.console, "hi\n");
    // The monitor's thread stays confined after the run: seccomp is in force.
    let err = out.open_after.unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EPERM),
        "open after run must be denied: {err}"
    );
}

#[test]
fn boot_info_carries_the_abi_version_and_the_arguments() {
    if !kvm_available() {
        return;
    }
    // exit(boot_info.abi_version) and exit(boot_info.argc)
    for (offset, args, want) in [
        (0u8, vec![], fata_hvt_abi::ABI_VERSION as i32),
        (72, vec!["a", "bb", "c c"], 3),
    ] {
        let code = exit_after(
            Asm::default()
                .boot_info_u32(offset)
                .mov_rdx(EXIT_ARGS)
                .store32(),
        );
        let image = elf(
            CODE,
            &[load(CODE, PF_R | PF_X, code.0), data(hello_write(), 0)],
        );
        let out = run_image(&image, &args);
        assert_eq!(out.result.unwrap().status, want);
    }
}

#[test]
fn console_pointer_outside_ram_is_an_abi_violation() {
    if !kvm_available() {
        return;
    }
    let code = exit_after(Asm::default().hypercall(Hypercall::ConsoleWrite, WRITE_ARGS));
    for data_addr in [0x7000_0000_0000, u64::MAX - 1, (32 << 20) - 1] {
        let out = guest(
            code_clone(&code),
            ConsoleWriteArgs {
                data: GuestAddr(data_addr),
                len: 3,
            },
        );
        assert!(matches!(
            abi(&out),
            AbiViolation::Memory {
                call: Hypercall::ConsoleWrite,
                ..
            }
        ));
        assert!(out.console.is_empty());
    }
}

fn code_clone(code: &Asm) -> Asm {
    Asm(code.0.clone())
}

#[test]
fn argument_struct_outside_ram_is_an_abi_violation() {
    if !kvm_available() {
        return;
    }
    for args in [0xdead_0000_0000, u64::MAX - 4, (32 << 20) - 4] {
        let out = guest(
            Asm::default().hypercall(Hypercall::Exit, args),
            hello_write(),
        );
        assert!(matches!(
            abi(&out),
            AbiViolation::Memory {
                call: Hypercall::Exit,
                ..
            }
        ));
    }
}

#[test]
fn overflowing_and_huge_console_lengths_are_abi_violations() {
    if !kvm_available() {
        return;
    }
    let code = exit_after(Asm::default().hypercall(Hypercall::ConsoleWrite, WRITE_ARGS));
    let out = guest(
        code_clone(&code),
        ConsoleWriteArgs {
            data: GuestAddr(TEXT),
            len: u64::MAX - 0x10,
        },
    );
    assert!(matches!(abi(&out), AbiViolation::ConsoleTooLong(_)));
    let out = guest(
        code_clone(&code),
        ConsoleWriteArgs {
            data: GuestAddr(TEXT),
            len: 1 << 40,
        },
    );
    assert!(matches!(abi(&out), AbiViolation::ConsoleTooLong(_)));
    // Within the limit but past the end of RAM.
    let out = guest(
        code,
        ConsoleWriteArgs {
            data: GuestAddr((32 << 20) - 100),
            len: 60_000,
        },
    );
    assert!(matches!(abi(&out), AbiViolation::Memory { .. }));
}

#[test]
fn unknown_and_reserved_hypercalls_are_abi_violations() {
    if !kvm_available() {
        return;
    }
    let out = guest(Asm::default().hypercall_nr(77, WRITE_ARGS), hello_write());
    assert_eq!(abi(&out), &AbiViolation::UnknownHypercall(77));
    let out = guest(Asm::default().hypercall_nr(0, WRITE_ARGS), hello_write());
    assert_eq!(abi(&out), &AbiViolation::UnknownHypercall(0));
    let out = guest(
        Asm::default().hypercall(Hypercall::Net, WRITE_ARGS),
        hello_write(),
    );
    assert_eq!(abi(&out), &AbiViolation::Reserved(Hypercall::Net));
}

#[test]
fn reading_the_hypercall_window_is_an_abi_violation() {
    if !kvm_available() {
        return;
    }
    let at = fata_hvt_abi::hypercall_address(Hypercall::Exit);
    let out = guest(Asm::default().mov_rdx(at).load(), hello_write());
    assert_eq!(abi(&out), &AbiViolation::BadRead { addr: at });
}

#[test]
fn waiting_forever_with_nothing_to_wait_for_is_an_abi_violation() {
    if !kvm_available() {
        return;
    }
    let code = Asm::default()
        .mov_rax(u64::MAX)
        .mov_rdx(YIELD_ARGS)
        .store()
        .hypercall(Hypercall::Yield, YIELD_ARGS);
    let out = guest(code, hello_write());
    assert_eq!(abi(&out), &AbiViolation::WaitsForever);
}

#[test]
fn faults_end_with_rip_and_rsp() {
    if !kvm_available() {
        return;
    }
    // ud2
    let (kind, rip) = fault(&guest(Asm::default().raw(&[0x0f, 0x0b]), hello_write()));
    assert_eq!(kind, FaultKind::Shutdown);
    assert_eq!(rip, CODE, "RIP points at the ud2");
    // A write to page 0 (null pointer).
    fault(&guest(Asm::default().mov_rdx(0).store(), hello_write()));
    // hlt is privileged: the guest runs at CPL3.
    fault(&guest(Asm::default().raw(&[0xf4]), hello_write()));
    // Writing its own code: text is mapped read-only.
    fault(&guest(Asm::default().mov_rdx(CODE).store(), hello_write()));
    // Jumping into data: data is mapped no-execute. (`mov rax, DATA; jmp rax`)
    fault(&guest(
        Asm::default().mov_rax(TEXT).raw(&[0xff, 0xe0]),
        hello_write(),
    ));
    // Touching the page tables or the GDT, which the guest may not see.
    fault(&guest(Asm::default().mov_rdx(0x3000).load(), hello_write()));
    fault(&guest(Asm::default().mov_rdx(0x1000).load(), hello_write()));
    // Writing the read-only boot info.
    fault(&guest(
        Asm::default().mov_rdx(0x2000).store(),
        hello_write(),
    ));
}

#[test]
fn invalid_images_are_refused_before_a_vm_exists() {
    // No KVM needed: validation comes first.
    let wx = elf(CODE, &[load(CODE, PF_R | PF_W | PF_X, vec![0x0f, 0x0b])]);
    let out = run_image(&wx, &[]);
    let err = out.result.unwrap_err();
    assert_eq!(err.exit_code(), 121);
    assert!(
        err.to_string().contains("both writable and executable"),
        "{err}"
    );

    let mut past_ram = load(CODE, PF_R | PF_X, vec![0x0f, 0x0b]);
    past_ram.mem_size = 64 << 20;
    let out = run_image(&elf(CODE, &[past_ram]), &[]);
    assert!(out.result.unwrap_err().to_string().contains("--mem"));

    let good = elf(CODE, &[load(CODE, PF_R | PF_X, vec![0x0f, 0x0b])]);
    let out = run_image(&good[..good.len() - 20], &[]);
    let err = out.result.unwrap_err();
    assert_eq!(err.exit_code(), 121);
    assert!(err.to_string().contains("truncated"), "{err}");

    let out = fata_monitor_missing_file();
    assert_eq!(out.exit_code(), 120);
}

fn fata_monitor_missing_file() -> Error {
    let path = std::path::Path::new("/nonexistent/image.hvt");
    fata_monitor::run_with_console(path, &fata_monitor::Config::default(), &mut Vec::new())
        .unwrap_err()
}
