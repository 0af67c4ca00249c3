//! Decoding a KVM exit into what the monitor does next. A pure function, so tests can feed it exits
//! without `/dev/kvm`.

use crate::error::FaultKind;
use crate::violation::AbiViolation;
use fata_hvt_abi::GuestAddr;
use fata_hvt_abi::{
    DOORBELL_BASE, DOORBELL_WINDOW_SIZE, HYPERCALL_BASE, HYPERCALL_WINDOW_SIZE, Hypercall,
};
use kvm_ioctls::VcpuExit;

/// What a vCPU exit means under the hvt ABI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The guest made a hypercall with its argument struct at `args`.
    Hypercall {
        /// Which one.
        call: Hypercall,
        /// Where its argument struct is.
        args: GuestAddr,
    },
    /// A store to the doorbell window: send device `slot`'s transmit ring, if it has one.
    Doorbell {
        /// The slot in the window (the device handle).
        slot: u64,
        /// The address stored to.
        addr: u64,
    },
    /// A signal interrupted `KVM_RUN`: run again.
    Interrupted,
    /// The guest's CPU stopped.
    Fault(FaultKind),
    /// The guest broke the ABI.
    Abi(AbiViolation),
}

/// Decodes one exit.
pub fn decode(exit: &VcpuExit<'_>) -> Exit {
    match exit {
        VcpuExit::MmioWrite(addr, data) => decode_store(*addr, data),
        VcpuExit::MmioRead(addr, _) => Exit::Abi(AbiViolation::BadRead { addr: *addr }),
        VcpuExit::IoOut(port, _) | VcpuExit::IoIn(port, _) => {
            Exit::Abi(AbiViolation::PortIo(*port))
        }
        VcpuExit::Intr => Exit::Interrupted,
        VcpuExit::Shutdown => Exit::Fault(FaultKind::Shutdown),
        VcpuExit::InternalError => Exit::Fault(FaultKind::InternalError),
        VcpuExit::FailEntry(reason, _) => Exit::Fault(FaultKind::FailEntry(*reason)),
        VcpuExit::Hlt => Exit::Fault(FaultKind::Unexpected("hlt")),
        VcpuExit::Exception => Exit::Fault(FaultKind::Unexpected("exception")),
        VcpuExit::Debug(_) => Exit::Fault(FaultKind::Unexpected("debug")),
        VcpuExit::SystemEvent(..) => Exit::Fault(FaultKind::Unexpected("system event")),
        _ => Exit::Fault(FaultKind::Unexpected("an exit the hvt ABI does not use")),
    }
}

fn decode_store(addr: u64, data: &[u8]) -> Exit {
    let bell = addr.wrapping_sub(DOORBELL_BASE);
    if bell < DOORBELL_WINDOW_SIZE {
        return Exit::Doorbell {
            slot: bell / 8,
            addr,
        };
    }
    let offset = addr.wrapping_sub(HYPERCALL_BASE);
    if offset >= HYPERCALL_WINDOW_SIZE {
        return Exit::Abi(AbiViolation::NoMemory { addr });
    }
    let Ok(value) = <[u8; 8]>::try_from(data) else {
        return Exit::Abi(AbiViolation::BadStore {
            addr,
            len: data.len(),
        });
    };
    if !offset.is_multiple_of(8) {
        return Exit::Abi(AbiViolation::BadStore { addr, len: 8 });
    }
    let nr = offset / 8;
    match u32::try_from(nr).ok().and_then(Hypercall::from_u32) {
        Some(call) => Exit::Hypercall {
            call,
            args: GuestAddr(u64::from_le_bytes(value)),
        },
        None => Exit::Abi(AbiViolation::UnknownHypercall(nr)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fata_hvt_abi::hypercall_address;

    #[test]
    fn hypercall_stores_decode() {
        let args = 0x12_3456u64.to_le_bytes();
        let at = hypercall_address(Hypercall::ConsoleWrite);
        assert_eq!(
            decode(&VcpuExit::MmioWrite(at, &args)),
            Exit::Hypercall {
                call: Hypercall::ConsoleWrite,
                args: GuestAddr(0x12_3456)
            }
        );
        assert_eq!(
            decode(&VcpuExit::MmioWrite(HYPERCALL_BASE + 8 * 100, &args)),
            Exit::Abi(AbiViolation::UnknownHypercall(100))
        );
        assert_eq!(
            decode(&VcpuExit::MmioWrite(HYPERCALL_BASE, &args)),
            Exit::Abi(AbiViolation::UnknownHypercall(0))
        );
        assert_eq!(
            decode(&VcpuExit::MmioWrite(at, &args[..4])),
            Exit::Abi(AbiViolation::BadStore { addr: at, len: 4 })
        );
        assert_eq!(
            decode(&VcpuExit::MmioWrite(at + 4, &args)),
            Exit::Abi(AbiViolation::BadStore {
                addr: at + 4,
                len: 8
            })
        );
        assert_eq!(
            decode(&VcpuExit::MmioWrite(DOORBELL_BASE - 8, &args)),
            Exit::Abi(AbiViolation::NoMemory {
                addr: DOORBELL_BASE - 8
            })
        );
        // Doorbells take stores of any width.
        assert_eq!(
            decode(&VcpuExit::MmioWrite(HYPERCALL_BASE - 8, &args[..1])),
            Exit::Doorbell {
                slot: 511,
                addr: HYPERCALL_BASE - 8
            }
        );
        assert_eq!(
            decode(&VcpuExit::MmioWrite(DOORBELL_BASE + 17, &args[..4])),
            Exit::Doorbell {
                slot: 2,
                addr: DOORBELL_BASE + 17
            }
        );
    }

    #[test]
    fn other_exits_decode() {
        let mut buf = [0u8; 8];
        assert_eq!(
            decode(&VcpuExit::MmioRead(HYPERCALL_BASE, &mut buf)),
            Exit::Abi(AbiViolation::BadRead {
                addr: HYPERCALL_BASE
            })
        );
        assert_eq!(
            decode(&VcpuExit::Shutdown),
            Exit::Fault(FaultKind::Shutdown)
        );
        assert_eq!(decode(&VcpuExit::Intr), Exit::Interrupted);
        assert_eq!(
            decode(&VcpuExit::IoOut(0x3f8, &[1])),
            Exit::Abi(AbiViolation::PortIo(0x3f8))
        );
        assert!(matches!(
            decode(&VcpuExit::Hlt),
            Exit::Fault(FaultKind::Unexpected(_))
        ));
    }
}
