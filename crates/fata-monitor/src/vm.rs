//! The KVM side: open `/dev/kvm`, create the VM and its one vCPU in the hvt entry state, and run the
//! vCPU loop.

use crate::arch;
use crate::error::{Error, FaultKind};
use crate::exit::{self, Exit};
use crate::hypercall::{Action, Handler};
use crate::layout;
use crate::memory::GuestRam;
use crate::signal::{control_pending, stop_signal};
use crate::violation::Stop;
use kvm_bindings::{
    KVM_CAP_SPLIT_IRQCHIP, Msrs, kvm_enable_cap, kvm_msr_entry, kvm_userspace_memory_region,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use std::marker::PhantomData;

/// I/O APIC routes KVM reserves for a split irqchip; Fata routes none (the guest takes no
/// interrupts), so this is the smallest usual value.
const SPLIT_IRQCHIP_ROUTES: u64 = 24;
const MSR_IA32_TSC: u32 = 0x10;

fn setup(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |e| Error::VmSetup {
        what,
        source: e.into(),
    }
}

/// The error for a failed `open("/dev/kvm")`, saying what to do about it.
pub fn kvm_open_error(errno: i32) -> Error {
    Error::KvmUnavailable(match errno {
        libc::ENOENT => "/dev/kvm does not exist; run on a host with hardware virtualization and \
                         the kvm module loaded (or use --target unix)"
            .into(),
        libc::EACCES | libc::EPERM => "no permission to open /dev/kvm; add your user to the `kvm` \
                                       group (then log in again)"
            .into(),
        _ => format!(
            "cannot open /dev/kvm: {}",
            std::io::Error::from_raw_os_error(errno)
        ),
    })
}

/// A VM with its vCPU, over guest RAM it borrows for its whole life: the borrow keeps the RAM
/// mapped for as long as KVM may touch it, whatever safe code does with either.
pub struct Vm<'ram> {
    vcpu: VcpuFd,
    _vm: VmFd,
    _kvm: Kvm,
    _ram: PhantomData<&'ram GuestRam>,
}

/// Why [`Vm::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    /// The guest exited with this status.
    Exit(i32),
    /// A control request waits; the guest's state is whole (between two exits).
    Control,
}

/// The guest's clock as seen at boot.
pub struct BootClock {
    /// TSC frequency in kHz.
    pub tsc_khz: u64,
    /// The guest TSC at `wall_ns`.
    pub tsc: u64,
    /// Host wall clock in nanoseconds since the epoch.
    pub wall_ns: u64,
}

impl<'ram> Vm<'ram> {
    /// Creates the VM over `ram` with the vCPU about to run `entry` at CPL3, its stack at
    /// `stack_top`.
    pub fn new(ram: &'ram GuestRam, entry: u64, stack_top: u64) -> Result<Vm<'ram>, Error> {
        let (kvm, vm) = create_vm()?;
        map_ram(&vm, ram)?;
        let vcpu = create_vcpu(&vm)?;
        let mut sregs = vcpu
            .get_sregs()
            .map_err(setup("reading special registers"))?;
        arch::set_entry_sregs(&mut sregs, &layout::TABLES);
        vcpu.set_sregs(&sregs)
            .map_err(setup("setting special registers"))?;
        let regs = arch::entry_regs(entry, stack_top, layout::BOOT_INFO_ADDR);
        vcpu.set_regs(&regs).map_err(setup("setting registers"))?;
        Ok(Vm {
            vcpu,
            _vm: vm,
            _kvm: kvm,
            _ram: PhantomData,
        })
    }

    /// Reads the TSC frequency and pairs the guest's TSC with the host's wall clock.
    pub fn boot_clock(&self) -> Result<BootClock, Error> {
        let tsc_khz = self
            .vcpu
            .get_tsc_khz()
            .map_err(setup("reading the TSC frequency"))?;
        let mut msrs = Msrs::from_entries(&[kvm_msr_entry {
            index: MSR_IA32_TSC,
            ..Default::default()
        }])
        .map_err(|e| Error::VmSetup {
            what: "reading the TSC",
            source: std::io::Error::other(e),
        })?;
        let read = self
            .vcpu
            .get_msrs(&mut msrs)
            .map_err(setup("reading the TSC"))?;
        let wall_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let tsc = if read == 1 {
            msrs.as_slice()[0].data
        } else {
            0
        };
        Ok(BootClock {
            tsc_khz: tsc_khz.into(),
            tsc,
            wall_ns,
        })
    }

    /// Runs the guest until it exits or a control request waits.
    pub fn run(&mut self, handler: &mut Handler<'_>, exits: &mut u64) -> Result<Ran, Error> {
        loop {
            let exit = match self.vcpu.run() {
                Ok(exit) => exit::decode(&exit),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    Exit::Interrupted
                }
                Err(e) => {
                    return Err(Error::HostIo {
                        what: "KVM_RUN",
                        source: e.into(),
                    });
                }
            };
            *exits += 1;
            let action = match exit {
                Exit::Hypercall { call, args } => handler.handle(call, args),
                Exit::Doorbell { slot, addr } => handler.doorbell(slot, addr),
                Exit::Interrupted => Ok(Action::Continue),
                Exit::Abi(violation) => {
                    return Err(Error::Abi {
                        violation,
                        rip: self.rip().0,
                    });
                }
                Exit::Fault(kind) => return Err(self.fault(kind)),
            };
            let stop = match action {
                Ok(Action::Continue) => match stop_signal() {
                    Some(signal) => return Err(Error::Stopped { signal }),
                    None if control_pending() => return Ok(Ran::Control),
                    None => continue,
                },
                Ok(Action::Exit(status)) => return Ok(Ran::Exit(status)),
                Err(stop) => stop,
            };
            return Err(match stop {
                Stop::Abi(violation) => Error::Abi {
                    violation,
                    rip: self.rip().0,
                },
                Stop::Host(what, source) => Error::HostIo { what, source },
            });
        }
    }

    fn rip(&self) -> (u64, u64) {
        self.vcpu.get_regs().map_or((0, 0), |r| (r.rip, r.rsp))
    }

    fn fault(&self, kind: FaultKind) -> Error {
        let (rip, rsp) = self.rip();
        Error::GuestFault { kind, rip, rsp }
    }
}

/// Opens `/dev/kvm` and creates an empty VM.
fn create_vm() -> Result<(Kvm, VmFd), Error> {
    let kvm = Kvm::new().map_err(|e| kvm_open_error(e.errno()))?;
    let vm = kvm.create_vm().map_err(|e| {
        Error::KvmUnavailable(format!(
            "/dev/kvm cannot create a VM ({}); is another hypervisor holding virtualization?",
            std::io::Error::from(e)
        ))
    })?;
    Ok((kvm, vm))
}

/// Maps all of `ram` as guest-physical `0..size`.
fn map_ram(vm: &VmFd, ram: &GuestRam) -> Result<(), Error> {
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: ram.size(),
        userspace_addr: ram.host_base() as u64,
    };
    // SAFETY: the region is `ram`'s whole mapping. It stays mapped while the VM exists: the only
    // caller, `Vm::new`, ties the `Vm` that owns `vm` to a borrow of `ram`.
    unsafe { vm.set_user_memory_region(region) }.map_err(setup("mapping guest memory"))
}

/// Creates the one vCPU, with a split irqchip.
fn create_vcpu(vm: &VmFd) -> Result<VcpuFd, Error> {
    // The guest takes no interrupts, but a vCPU without an in-kernel local APIC flips a static
    // key in the host kernel when it is created and again when it is destroyed: code patching
    // with an IPI to every CPU, about 0.5 ms per boot on this nested host. A split irqchip
    // (local APIC in the kernel, nothing else) avoids both.
    let split_irqchip = kvm_enable_cap {
        cap: KVM_CAP_SPLIT_IRQCHIP,
        args: [SPLIT_IRQCHIP_ROUTES, 0, 0, 0],
        ..Default::default()
    };
    vm.enable_cap(&split_irqchip)
        .map_err(setup("enabling a split irqchip (KVM_CAP_SPLIT_IRQCHIP)"))?;
    vm.create_vcpu(0).map_err(setup("creating the vCPU"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_open_errors_say_what_to_do() {
        let missing = kvm_open_error(libc::ENOENT);
        assert_eq!(missing.exit_code(), 122);
        assert!(
            missing.to_string().contains("/dev/kvm does not exist"),
            "{missing}"
        );
        assert!(
            kvm_open_error(libc::EACCES)
                .to_string()
                .contains("kvm` group")
        );
        assert!(
            kvm_open_error(libc::EBUSY)
                .to_string()
                .contains("cannot open /dev/kvm")
        );
    }
}
