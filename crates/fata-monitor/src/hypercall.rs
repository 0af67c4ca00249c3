//! Hypercall handlers: read the argument struct through the checked accessor, act, write back the
//! fields marked *out*.

use crate::block::Blocks;
use crate::memory::{GuestRam, OutOfRam};
use crate::net::Nets;
use crate::violation::{AbiViolation, Stop};
use fata_hvt_abi::GuestAddr;
use fata_hvt_abi::{CONSOLE_WRITE_MAX, ConsoleWriteArgs, ExitArgs, Hypercall, YieldArgs};
use std::io::Write;
use std::time::Instant;

/// What the vCPU loop does after a hypercall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Resume the guest.
    Continue,
    /// The guest exited with this status.
    Exit(i32),
}

/// Per-hypercall counts for `--stats`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    /// Console writes.
    pub console: u64,
    /// Bytes written to the console.
    pub console_bytes: u64,
    /// Yields.
    pub yields: u64,
    /// Yields with a zero timeout: polls that never sleep.
    pub polls: u64,
    /// Doorbell stores: a network device's transmit ring was full, or a guest started block
    /// requests without waiting.
    pub doorbell_exits: u64,
}

/// The state hypercalls act on: guest RAM, the console and a bounce buffer for its bytes, the
/// network and block devices.
pub struct Handler<'a> {
    /// Guest memory.
    pub ram: &'a GuestRam,
    /// The network devices, which `Yield` waits for.
    pub nets: &'a Nets,
    /// The block devices, which `Yield` serves and waits for.
    pub blocks: &'a mut Blocks,
    /// Where console writes go.
    pub console: &'a mut dyn Write,
    /// Console bytes on their way out; allocated once, before the seccomp filter.
    pub buffer: Vec<u8>,
    /// Counters.
    pub counts: Counts,
    /// When the guest made its first hypercall.
    pub first_call: Option<Instant>,
}

impl Handler<'_> {
    /// Carries out hypercall `call` with its argument struct at `args`.
    pub fn handle(&mut self, call: Hypercall, args: GuestAddr) -> Result<Action, Stop> {
        self.first_call.get_or_insert_with(Instant::now);
        let bad = |source: OutOfRam| Stop::Abi(AbiViolation::Memory { call, source });
        match call {
            Hypercall::Exit => {
                let a: ExitArgs = self.ram.read_struct(args).map_err(bad)?;
                Ok(Action::Exit(a.status))
            }
            Hypercall::ConsoleWrite => {
                let a: ConsoleWriteArgs = self.ram.read_struct(args).map_err(bad)?;
                if a.len > CONSOLE_WRITE_MAX {
                    return Err(Stop::Abi(AbiViolation::ConsoleTooLong(a.len)));
                }
                // `len` is at most CONSOLE_WRITE_MAX, so it fits the buffer.
                self.buffer.resize(a.len as usize, 0);
                self.ram.read(a.data, &mut self.buffer).map_err(bad)?;
                self.console
                    .write_all(&self.buffer)
                    .and_then(|()| self.console.flush())
                    .map_err(|e| Stop::Host("console write", e))?;
                self.counts.console += 1;
                self.counts.console_bytes += a.len;
                Ok(Action::Continue)
            }
            Hypercall::Yield => {
                let mut a: YieldArgs = self.ram.read_struct(args).map_err(bad)?;
                a.ready = self
                    .nets
                    .wait(self.ram, self.blocks, a.interest, a.timeout_ns)?;
                self.ram.write_struct(args, &a).map_err(bad)?;
                self.counts.yields += 1;
                self.counts.polls += u64::from(a.timeout_ns == 0);
                Ok(Action::Continue)
            }
            Hypercall::Net | Hypercall::Block => Err(Stop::Abi(AbiViolation::Reserved(call))),
        }
    }

    /// A store to doorbell `slot`: send that network device's transmit ring, or take and start
    /// that block device's requests, now.
    pub fn doorbell(&mut self, slot: u64, addr: u64) -> Result<Action, Stop> {
        if !self.nets.flush(self.ram, slot)? && !self.blocks.doorbell(self.ram, slot)? {
            return Err(Stop::Abi(AbiViolation::NoMemory { addr }));
        }
        self.counts.doorbell_exits += 1;
        Ok(Action::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fata_hvt_abi::YIELD_FOREVER;
    use std::time::Duration;

    fn run(ram: &GuestRam, call: Hypercall, args: GuestAddr) -> (Result<Action, Stop>, Vec<u8>) {
        let mut out = Vec::new();
        let nets = Nets::open(&[], Duration::ZERO).unwrap();
        let mut blocks = Blocks::open(&[], 0).unwrap();
        let mut h = Handler {
            ram,
            nets: &nets,
            blocks: &mut blocks,
            console: &mut out,
            buffer: Vec::new(),
            counts: Counts::default(),
            first_call: None,
        };
        let r = h.handle(call, args);
        (r, out)
    }

    #[test]
    fn console_write_copies_guest_bytes() {
        let ram = GuestRam::new(1 << 20).unwrap();
        ram.write(GuestAddr(0x1000), b"hello\n").unwrap();
        ram.write_struct(
            GuestAddr(0x2000),
            &ConsoleWriteArgs {
                data: GuestAddr(0x1000),
                len: 6,
            },
        )
        .unwrap();
        let (r, out) = run(&ram, Hypercall::ConsoleWrite, GuestAddr(0x2000));
        assert_eq!(r.unwrap(), Action::Continue);
        assert_eq!(out, b"hello\n");
    }

    #[test]
    fn hostile_arguments_are_violations() {
        let ram = GuestRam::new(1 << 20).unwrap();
        let abi = |r: Result<Action, Stop>| match r {
            Err(Stop::Abi(v)) => v,
            other => panic!("expected an ABI violation, got {other:?}"),
        };
        // The argument struct itself outside RAM, and straddling its end.
        let v = abi(run(&ram, Hypercall::Exit, GuestAddr(u64::MAX - 3)).0);
        assert!(matches!(
            v,
            AbiViolation::Memory {
                call: Hypercall::Exit,
                ..
            }
        ));
        let v = abi(run(&ram, Hypercall::ConsoleWrite, GuestAddr((1 << 20) - 8)).0);
        assert!(matches!(v, AbiViolation::Memory { .. }));
        // Data pointer past RAM; length that overflows; length over the limit.
        for (data, len) in [
            (2 << 20, 4),
            (0x1000, u64::MAX),
            (u64::MAX, 2),
            (0x1000, CONSOLE_WRITE_MAX + 1),
        ] {
            ram.write_struct(
                GuestAddr(0x2000),
                &ConsoleWriteArgs {
                    data: GuestAddr(data),
                    len,
                },
            )
            .unwrap();
            let (r, out) = run(&ram, Hypercall::ConsoleWrite, GuestAddr(0x2000));
            abi(r);
            assert!(out.is_empty());
        }
        ram.write_struct(
            GuestAddr(0x2000),
            &YieldArgs {
                timeout_ns: YIELD_FOREVER,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            abi(run(&ram, Hypercall::Yield, GuestAddr(0x2000)).0),
            AbiViolation::WaitsForever
        );
        assert_eq!(
            abi(run(&ram, Hypercall::Net, GuestAddr(0x2000)).0),
            AbiViolation::Reserved(Hypercall::Net)
        );
    }

    #[test]
    fn yield_sleeps_and_reports_nothing_ready() {
        let ram = GuestRam::new(1 << 20).unwrap();
        let args = YieldArgs {
            timeout_ns: 2_000_000,
            interest: 1,
            ready: 99,
        };
        ram.write_struct(GuestAddr(0x2000), &args).unwrap();
        let start = std::time::Instant::now();
        assert_eq!(
            run(&ram, Hypercall::Yield, GuestAddr(0x2000)).0.unwrap(),
            Action::Continue
        );
        assert!(start.elapsed() >= Duration::from_millis(2));
        let back: YieldArgs = ram.read_struct(GuestAddr(0x2000)).unwrap();
        assert_eq!(back.ready, 0);
    }
}
