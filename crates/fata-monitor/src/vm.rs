//! The KVM side: open `/dev/kvm`, create the VM and its one vCPU in the hvt entry state, and run the
//! vCPU loop.

use crate::error::{Error, FaultKind};
use crate::exit::{self, Exit};
use crate::hypercall::{Action, Handler, Stop};
use crate::layout;
use crate::memory::GuestRam;
use kvm_bindings::{
    KVM_CAP_SPLIT_IRQCHIP, Msrs, kvm_enable_cap, kvm_msr_entry, kvm_regs, kvm_segment,
    kvm_userspace_memory_region,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};

/// I/O APIC routes KVM reserves for a split irqchip; Fata routes none (the guest takes no
/// interrupts), so this is the smallest usual value.
const SPLIT_IRQCHIP_ROUTES: u64 = 24;
const CR0_PE: u64 = 1;
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;
/// Bit 1 of RFLAGS is reserved and reads as one; IF and IOPL stay clear (no interrupts, no ports).
const RFLAGS_RESERVED: u64 = 1 << 1;
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

/// A VM with its vCPU. Fields drop in order: the vCPU and VM before the RAM they map.
pub struct Vm {
    vcpu: VcpuFd,
    _vm: VmFd,
    _kvm: Kvm,
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

impl Vm {
    /// Creates the VM over `ram` with the vCPU about to run `entry` at CPL3.
    pub fn new(ram: &GuestRam, entry: u64, stack_top: u64) -> Result<Vm, Error> {
        let kvm = Kvm::new().map_err(|e| kvm_open_error(e.errno()))?;
        let vm = kvm.create_vm().map_err(|e| {
            Error::KvmUnavailable(format!(
                "/dev/kvm cannot create a VM ({}); is another hypervisor holding virtualization?",
                std::io::Error::from(e)
            ))
        })?;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: ram.size(),
            userspace_addr: ram.host_base() as u64,
        };
        // SAFETY: the region is `ram`'s whole mapping, which stays mapped while the VM exists:
        // `run` drops the `Vm` before the `GuestRam` it was created over.
        unsafe { vm.set_user_memory_region(region) }.map_err(setup("mapping guest memory"))?;
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
        let vcpu = vm.create_vcpu(0).map_err(setup("creating the vCPU"))?;

        let mut sregs = vcpu
            .get_sregs()
            .map_err(setup("reading special registers"))?;
        let code = kvm_segment {
            base: 0,
            limit: 0xffff_ffff,
            selector: layout::CODE_SELECTOR,
            type_: 0xb,
            present: 1,
            dpl: 3,
            db: 0,
            s: 1,
            l: 1,
            g: 1,
            avl: 0,
            unusable: 0,
            padding: 0,
        };
        let data = kvm_segment {
            selector: layout::DATA_SELECTOR,
            type_: 0x3,
            db: 1,
            l: 0,
            ..code
        };
        sregs.cs = code;
        (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
        sregs.tr = kvm_segment {
            base: layout::TSS_ADDR,
            limit: layout::TSS_LIMIT,
            selector: layout::TSS_SELECTOR,
            type_: 0xb,
            dpl: 0,
            s: 0,
            l: 0,
            g: 0,
            ..code
        };
        sregs.ldt = kvm_segment {
            unusable: 1,
            present: 0,
            ..sregs.tr
        };
        sregs.gdt.base = layout::GDT_ADDR;
        sregs.gdt.limit = layout::GDT_LIMIT;
        sregs.idt.base = 0;
        sregs.idt.limit = 0;
        sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
        sregs.cr3 = layout::PML4_ADDR;
        sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
        sregs.efer = EFER_LME | EFER_LMA | EFER_NXE;
        vcpu.set_sregs(&sregs)
            .map_err(setup("setting special registers"))?;
        let regs = kvm_regs {
            rip: entry,
            rsp: stack_top,
            rdi: layout::BOOT_INFO_ADDR,
            rflags: RFLAGS_RESERVED,
            ..Default::default()
        };
        vcpu.set_regs(&regs).map_err(setup("setting registers"))?;
        Ok(Vm {
            vcpu,
            _vm: vm,
            _kvm: kvm,
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

    /// Runs the guest until it exits; returns its status.
    pub fn run(&mut self, handler: &mut Handler<'_>, exits: &mut u64) -> Result<i32, Error> {
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
                Ok(Action::Continue) if crate::stop_signal().is_some() => {
                    let signal = crate::stop_signal().unwrap_or(0);
                    return Err(Error::Stopped { signal });
                }
                Ok(Action::Continue) => continue,
                Ok(Action::Exit(status)) => return Ok(status),
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
