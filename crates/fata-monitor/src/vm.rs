//! The KVM side: open `/dev/kvm`, create the VM and its one vCPU in the hvt entry state, and run the
//! vCPU loop.
//!
//! For snapshots and migration, [`Vm::capture`] freezes the vCPU into a [`VcpuState`] (KVM's own
//! structures as bytes) and [`Vm::restore`] makes a fresh VM over RAM that already holds the guest
//! and carries it on, its TSC moved on by the time the guest spent frozen (where KVM can set a
//! guest's TSC: kvm_pvm cannot, and the guest reads the host's). [`DirtyLog`] reports the pages
//! written since it last looked, from any thread, while the guest runs.

use crate::arch;
use crate::error::{Error, FaultKind};
use crate::exit::{self, Exit};
use crate::hypercall::{Action, Handler};
use crate::layout;
use crate::memory::GuestRam;
use crate::signal::{control_pending, stop_signal};
use crate::violation::Stop;
use fata_snapshot::VcpuState;
use kvm_bindings::{
    KVM_CAP_SPLIT_IRQCHIP, KVM_MEM_LOG_DIRTY_PAGES, Msrs, kvm_enable_cap, kvm_msr_entry,
    kvm_userspace_memory_region, kvm_xsave,
};
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};
use std::io;
use std::sync::Arc;
use std::time::Instant;
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// I/O APIC routes KVM reserves for a split irqchip; Fata routes none (the guest takes no
/// interrupts), so this is the smallest usual value.
const SPLIT_IRQCHIP_ROUTES: u64 = 24;
const MSR_IA32_TSC: u32 = 0x10;

/// The MSRs a snapshot carries besides the TSC, those of them the vCPU reads: SYSENTER_CS, _ESP,
/// _EIP, MISC_ENABLE, PAT, STAR, LSTAR, CSTAR, SYSCALL_MASK, KERNEL_GS_BASE, TSC_AUX. EFER and
/// the FS and GS bases travel in the special registers. An hvt guest runs at CPL3 and can write
/// none of them, so these are the values the monitor and KVM gave it; carrying them keeps a
/// restored vCPU identical all the same.
const SAVED_MSRS: &[u32] = &[
    0x174,
    0x175,
    0x176,
    0x1a0,
    0x277,
    0xc000_0081,
    0xc000_0082,
    0xc000_0083,
    0xc000_0084,
    0xc000_0102,
    0xc000_0103,
];

fn host_io(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |e| Error::HostIo {
        what,
        source: e.into(),
    }
}

/// A KVM structure as the bytes a snapshot carries.
fn to_bytes<T: IntoBytes + Immutable>(value: &T) -> Vec<u8> {
    value.as_bytes().to_vec()
}

/// A KVM structure back from a snapshot's bytes, which must be exactly its size.
fn from_bytes<T: FromBytes>(what: &'static str, bytes: &[u8]) -> Result<T, Error> {
    T::read_from_bytes(bytes).map_err(|_| Error::VmSetup {
        what,
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the snapshot holds {} bytes where KVM's structure has {}; it was taken by a \
                 monitor built for another kernel interface",
                bytes.len(),
                size_of::<T>()
            ),
        ),
    })
}

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
    vm: Arc<VmFd>,
    _kvm: Kvm,
    ram: &'ram GuestRam,
}

/// The dirty-page log of a VM's RAM: the pages the guest wrote (KVM's log of slot 0) and those
/// the monitor wrote (the RAM's own bitmap), since the log started or was last taken.
///
/// It holds the VM's descriptor and borrows its RAM, and is `Send` and `Sync`: a migration
/// sender takes the log on its own thread while the vCPU thread runs the guest. It stays valid
/// after the [`Vm`] is gone (the VM lives until the last of them is dropped).
#[derive(Clone)]
pub(crate) struct DirtyLog<'ram> {
    vm: Arc<VmFd>,
    ram: &'ram GuestRam,
}

/// How a restored guest's TSC came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TscSet {
    /// Nanoseconds the TSC the guest reads is ahead of the one [`Vm::restore`] asked for
    /// (negative: behind). A few microseconds where KVM sets the TSC; where it cannot
    /// (kvm_pvm), how far the host's TSC is from the snapshot's moved on by the time frozen.
    pub ahead_ns: i64,
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
        map_ram(&vm, ram, 0)?;
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
            vm: Arc::new(vm),
            _kvm: kvm,
            ram,
        })
    }

    /// Creates a VM over `ram`, which holds a guest frozen in `state`, and sets the vCPU back to
    /// that state, with its TSC `clock_advance_ns` (the time the guest spent frozen) past the
    /// saved one, so that the guest's clocks, which count TSC ticks from boot, move on by that
    /// much and never back. Returns the VM and how far the TSC the guest now reads is from the
    /// one asked for ([`TscSet`]).
    ///
    /// Where KVM cannot offset a guest's TSC from the host's (kvm_pvm ignores the write: the
    /// guest reads the host's TSC whatever is set), the guest's clocks move on by however far
    /// the host's TSC did since the snapshot: the time that passed, on the host that took it,
    /// if it has not rebooted. A TSC that would go back is an error that says so. The host's
    /// TSC may run at another frequency only if KVM can scale it to the snapshot's
    /// (`KVM_SET_TSC_KHZ`); otherwise that is an error too.
    pub(crate) fn restore(
        ram: &'ram GuestRam,
        state: &VcpuState,
        clock_advance_ns: u64,
    ) -> Result<(Vm<'ram>, TscSet), Error> {
        let start = Instant::now();
        let (kvm, vm) = create_vm()?;
        map_ram(&vm, ram, 0)?;
        let vcpu = create_vcpu(&vm)?;
        let khz = vcpu
            .get_tsc_khz()
            .map_err(setup("reading the TSC frequency"))?;
        if khz != state.tsc_khz {
            vcpu.set_tsc_khz(state.tsc_khz)
                .map_err(|e| Error::VmSetup {
                    what: "running the guest's TSC at its snapshot's frequency",
                    source: io::Error::other(format!(
                        "the snapshot's TSC ran at {} kHz, this host's runs at {khz} kHz, and \
                         KVM cannot scale it ({}); restore on a host with the same TSC \
                         frequency",
                        state.tsc_khz,
                        io::Error::from(e)
                    )),
                })?;
        }
        let regs = from_bytes("restoring the registers", &state.regs)?;
        let sregs = from_bytes("restoring the special registers", &state.sregs)?;
        let xsave: kvm_xsave = from_bytes("restoring the FPU and SSE state", &state.xsave)?;
        let xcrs = from_bytes("restoring the extended control registers", &state.xcrs)?;
        let events = from_bytes("restoring the pending events", &state.events)?;
        let lapic = from_bytes("restoring the local APIC", &state.lapic)?;
        let debugregs = from_bytes("restoring the debug registers", &state.debugregs)?;
        let entries: Vec<kvm_msr_entry> = (state.msrs.iter())
            .map(|&(index, data)| kvm_msr_entry {
                index,
                data,
                ..Default::default()
            })
            .collect();
        set_msrs(&vcpu, &entries, "restoring the MSRs")?;
        vcpu.set_sregs(&sregs)
            .map_err(setup("restoring the special registers"))?;
        vcpu.set_regs(&regs)
            .map_err(setup("restoring the registers"))?;
        // KVM_SET_XSAVE reads as many bytes as this host's guest FPU state takes, which is more
        // than `kvm_xsave` only where KVM_CAP_XSAVE2 says so (dynamic features such as AMX,
        // which these vCPUs are never given).
        let xsave_size = vm.check_extension_int(Cap::Xsave2);
        if xsave_size as usize > size_of::<kvm_xsave>() {
            return Err(Error::VmSetup {
                what: "restoring the FPU and SSE state",
                source: io::Error::other(format!(
                    "KVM wants {xsave_size} bytes of FPU state, more than a snapshot carries"
                )),
            });
        }
        // SAFETY: KVM reads at most KVM_CAP_XSAVE2's size from `xsave`, checked just above to be
        // no more than the `kvm_xsave` it points to.
        unsafe { vcpu.set_xsave(&xsave) }.map_err(setup("restoring the FPU and SSE state"))?;
        vcpu.set_xcrs(&xcrs)
            .map_err(setup("restoring the extended control registers"))?;
        vcpu.set_debug_regs(&debugregs)
            .map_err(setup("restoring the debug registers"))?;
        vcpu.set_lapic(&lapic)
            .map_err(setup("restoring the local APIC"))?;
        vcpu.set_vcpu_events(&events)
            .map_err(setup("restoring the pending events"))?;
        // Last, so that the time spent setting up counts as time the guest was frozen.
        let advance_ns = clock_advance_ns.saturating_add(start.elapsed().as_nanos() as u64);
        let ticks = u128::from(advance_ns) * u128::from(state.tsc_khz) / 1_000_000;
        let tsc = state
            .tsc
            .saturating_add(u64::try_from(ticks).unwrap_or(u64::MAX));
        set_tsc(&vcpu, tsc)?;
        let actual = read_tsc(&vcpu).map_err(|e| match e {
            Error::HostIo { what, source } => Error::VmSetup { what, source },
            other => other,
        })?;
        if actual < state.tsc {
            return Err(Error::VmSetup {
                what: "setting the guest's TSC",
                source: io::Error::other(format!(
                    "KVM here keeps the guest's TSC at the host's ({actual}), which is behind \
                     the snapshot's ({}): the guest's clock would go back; restore on the host \
                     that took the snapshot, before it reboots",
                    state.tsc
                )),
            });
        }
        let ahead_ticks = i128::from(actual) - i128::from(tsc);
        let ahead_ns = ahead_ticks * 1_000_000 / i128::from(state.tsc_khz.max(1));
        let set = TscSet {
            ahead_ns: ahead_ns.clamp(i64::MIN.into(), i64::MAX.into()) as i64,
        };
        let vm = Vm {
            vcpu,
            vm: Arc::new(vm),
            _kvm: kvm,
            ram,
        };
        Ok((vm, set))
    }

    /// Freezes the vCPU: finishes an exit the guest is in the middle of, then reads every piece
    /// of its state a restore sets back, the TSC last.
    ///
    /// Call it on the vCPU thread between two runs (after [`Vm::run`] returned, or from its loop
    /// between exits). KVM finishes an MMIO or port access that exited to the monitor only when
    /// the vCPU next enters KVM_RUN (a read's value, a write's completion and the instruction
    /// pointer moving past it), so this first enters KVM_RUN with `immediate_exit` set, which
    /// completes it and returns without running a guest instruction.
    pub(crate) fn capture(&mut self) -> Result<VcpuState, Error> {
        self.finish_exit()?;
        let vcpu = &self.vcpu;
        let regs = vcpu.get_regs().map_err(host_io("reading the registers"))?;
        let sregs = vcpu
            .get_sregs()
            .map_err(host_io("reading the special registers"))?;
        let xsave = vcpu
            .get_xsave()
            .map_err(host_io("reading the FPU and SSE state"))?;
        let xcrs = vcpu
            .get_xcrs()
            .map_err(host_io("reading the extended control registers"))?;
        let events = vcpu
            .get_vcpu_events()
            .map_err(host_io("reading the pending events"))?;
        let lapic = vcpu
            .get_lapic()
            .map_err(host_io("reading the local APIC"))?;
        let debugregs = vcpu
            .get_debug_regs()
            .map_err(host_io("reading the debug registers"))?;
        let msrs = readable_msrs(vcpu, SAVED_MSRS)?;
        let tsc_khz = vcpu
            .get_tsc_khz()
            .map_err(host_io("reading the TSC frequency"))?;
        let tsc = read_tsc(vcpu)?;
        Ok(VcpuState {
            regs: to_bytes(&regs),
            sregs: to_bytes(&sregs),
            xsave: to_bytes(&xsave),
            xcrs: to_bytes(&xcrs),
            events: to_bytes(&events),
            lapic: to_bytes(&lapic),
            debugregs: to_bytes(&debugregs),
            msrs,
            tsc_khz,
            tsc,
        })
    }

    /// Enters KVM_RUN with `immediate_exit` set, so that KVM completes the exit in progress
    /// and returns before the guest runs again.
    fn finish_exit(&mut self) -> Result<(), Error> {
        self.vcpu.set_kvm_immediate_exit(1);
        let entered = self.vcpu.run().map(|_| ());
        self.vcpu.set_kvm_immediate_exit(0);
        match entered {
            Err(e) if e.errno() == libc::EINTR => Ok(()),
            Err(e) => Err(Error::HostIo {
                what: "finishing the guest's exit before reading its state",
                source: e.into(),
            }),
            Ok(()) => Err(Error::HostIo {
                what: "finishing the guest's exit before reading its state",
                source: io::Error::other(
                    "KVM_RUN with immediate_exit set returned another exit instead of EINTR",
                ),
            }),
        }
    }

    /// The VM's dirty-page log, for use from any thread while the guest runs.
    pub(crate) fn dirty_log(&self) -> DirtyLog<'ram> {
        DirtyLog {
            vm: Arc::clone(&self.vm),
            ram: self.ram,
        }
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

impl DirtyLog<'_> {
    /// Starts logging: from now on the guest's writes are logged (slot 0 registered again with
    /// KVM_MEM_LOG_DIRTY_PAGES), and the monitor's record starts empty.
    pub(crate) fn start(&self) -> Result<(), Error> {
        map_ram(&self.vm, self.ram, KVM_MEM_LOG_DIRTY_PAGES)?;
        self.ram.take_dirty();
        Ok(())
    }

    /// The pages written since [`start`](Self::start) or the last call, by the guest or the
    /// monitor, and clears the log: bit `n % 64` of word `n / 64` stands for the 4 KiB page `n`.
    /// A page written while this runs is in this log or the next.
    pub(crate) fn take(&self) -> Result<Vec<u64>, Error> {
        let mut dirty = self
            .vm
            .get_dirty_log(0, self.ram.size() as usize)
            .map_err(host_io("reading the dirty log (KVM_GET_DIRTY_LOG)"))?;
        for (word, monitor) in dirty.iter_mut().zip(self.ram.take_dirty()) {
            *word |= monitor;
        }
        Ok(dirty)
    }

    /// Stops logging (guest writes go at full speed again).
    pub(crate) fn stop(&self) -> Result<(), Error> {
        map_ram(&self.vm, self.ram, 0)
    }
}

/// Maps all of `ram` as guest-physical `0..size` (slot 0), with the memory-slot `flags`.
fn map_ram(vm: &VmFd, ram: &GuestRam, flags: u32) -> Result<(), Error> {
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags,
        guest_phys_addr: 0,
        memory_size: ram.size(),
        userspace_addr: ram.host_base() as u64,
    };
    // SAFETY: the region is `ram`'s whole mapping. It stays mapped while the VM exists: `Vm`
    // and `DirtyLog`, the only holders of `vm`, borrow `ram` for as long as they live.
    unsafe { vm.set_user_memory_region(region) }.map_err(setup("mapping guest memory"))
}

/// Reads those of the MSRs `indices` the vCPU reads, as (index, value), skipping the others.
fn readable_msrs(vcpu: &VcpuFd, indices: &[u32]) -> Result<Vec<(u32, u64)>, Error> {
    let mut read = Vec::with_capacity(indices.len());
    let mut rest = indices;
    while !rest.is_empty() {
        let entries: Vec<kvm_msr_entry> = (rest.iter())
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = Msrs::from_entries(&entries).map_err(|e| Error::HostIo {
            what: "reading the MSRs",
            source: io::Error::other(e),
        })?;
        // KVM reads entries in order and stops at the first it refuses.
        let n = vcpu
            .get_msrs(&mut msrs)
            .map_err(host_io("reading the MSRs"))?;
        read.extend(msrs.as_slice()[..n].iter().map(|e| (e.index, e.data)));
        rest = &rest[(n + 1).min(rest.len())..];
    }
    Ok(read)
}

/// Writes all of `entries`, or fails naming the first KVM refused.
fn set_msrs(vcpu: &VcpuFd, entries: &[kvm_msr_entry], what: &'static str) -> Result<(), Error> {
    let msrs = Msrs::from_entries(entries).map_err(|e| Error::VmSetup {
        what,
        source: io::Error::other(e),
    })?;
    let written = vcpu.set_msrs(&msrs).map_err(setup(what))?;
    match entries.get(written) {
        None => Ok(()),
        Some(refused) => Err(Error::VmSetup {
            what,
            source: io::Error::other(format!(
                "KVM refused MSR {:#x} = {:#x}",
                refused.index, refused.data
            )),
        }),
    }
}

/// The guest's TSC, as KVM reads it for the guest.
fn read_tsc(vcpu: &VcpuFd) -> Result<u64, Error> {
    match readable_msrs(vcpu, &[MSR_IA32_TSC])?.first() {
        Some(&(_, tsc)) => Ok(tsc),
        None => Err(Error::HostIo {
            what: "reading the TSC",
            source: io::Error::other("KVM refused to read IA32_TSC"),
        }),
    }
}

/// Sets the guest's TSC to `tsc` (KVM keeps the offset to the host's).
fn set_tsc(vcpu: &VcpuFd, tsc: u64) -> Result<(), Error> {
    let entry = kvm_msr_entry {
        index: MSR_IA32_TSC,
        data: tsc,
        ..Default::default()
    };
    set_msrs(vcpu, &[entry], "setting the guest's TSC")
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
#[path = "testguest.rs"]
mod testguest;

#[cfg(test)]
mod tests {
    use super::testguest::{self, PAGES, PAGES_AT, RECORD, RECORD_EVERY, Record};
    use super::*;
    use crate::block::Blocks;
    use crate::hypercall::Counts;
    use crate::net::Nets;
    use crate::{Config, Guest};
    use fata_hvt_abi::{GuestAddr, LOAD_ADDR, PAGE_SIZE};
    use std::os::unix::fs::FileExt;
    use std::time::Duration;

    /// The counting guest, laid out in fresh RAM as `run` lays a guest out.
    fn counting_guest() -> (Guest, Config) {
        let image = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(image.path(), testguest::image()).unwrap();
        let config = Config::default();
        let guest = Guest::load(image.path(), &config).unwrap();
        (guest, config)
    }

    /// Runs `vm` over `ram` with no devices until the guest exits; returns its status and
    /// console records.
    fn run(vm: &mut Vm<'_>, ram: &GuestRam) -> (i32, Vec<Record>) {
        let nets = Nets::open(&[], Duration::ZERO).unwrap();
        let mut blocks = Blocks::open(&[], 0).unwrap();
        let mut console = Vec::new();
        let mut handler = Handler {
            ram,
            nets: &nets,
            blocks: &mut blocks,
            console: &mut console,
            buffer: Vec::new(),
            counts: Counts::default(),
            first_call: None,
        };
        let Ran::Exit(status) = vm.run(&mut handler, &mut 0).unwrap() else {
            panic!("no control request was made");
        };
        (status, testguest::records(&console))
    }

    fn is_set(bitmap: &[u64], addr: u64) -> bool {
        let page = addr / PAGE_SIZE;
        bitmap[(page / 64) as usize] & (1 << (page % 64)) != 0
    }

    #[test]
    fn a_frozen_guest_carries_on_in_a_fresh_vm_over_its_memory_file() {
        if !fata_testkit::kvm() {
            return;
        }
        let (guest, config) = counting_guest();
        let mut vm = Vm::new(&guest.ram, guest.entry, config.mem_bytes).unwrap();
        guest.write_boot_info(&vm, &config).unwrap();
        let (status, before) = run(&mut vm, &guest.ram);
        assert_eq!(status, 0);
        assert_eq!(before.len(), testguest::EXIT_EVERY as usize, "{before:?}");
        let started = Instant::now();
        let state = vm.capture().unwrap();
        let frozen = Instant::now();
        let captured = frozen - started;
        let touched = guest.ram.touched().unwrap();
        let listed = started.elapsed() - captured;
        let memory = tempfile::tempfile().unwrap();
        memory.set_len(config.mem_bytes).unwrap();
        let mut page_bytes = 0;
        for range in &touched {
            let mut bytes = vec![0u8; (range.end - range.start) as usize];
            guest.ram.read(GuestAddr(range.start), &mut bytes).unwrap();
            memory.write_all_at(&bytes, range.start).unwrap();
            page_bytes += bytes.len();
        }
        drop(vm);
        drop(guest);

        std::thread::sleep(Duration::from_millis(50));
        let ram = GuestRam::map_private(&memory, config.mem_bytes).unwrap();
        let started = Instant::now();
        let (mut vm, set) = Vm::restore(&ram, &state, frozen.elapsed().as_nanos() as u64).unwrap();
        let restored = started.elapsed();
        let (status, after) = run(&mut vm, &ram);
        assert_eq!(status, 0);
        eprintln!(
            "capture {captured:?}, listing {} KiB touched in {} ranges {listed:?}, restore \
             {restored:?}; TSC at {} kHz, {} us ahead of the one asked for",
            page_bytes >> 10,
            touched.len(),
            state.tsc_khz,
            set.ahead_ns / 1000,
        );
        // The count, in a register and in xmm0, carries on from where it stopped.
        let last = before.last().unwrap();
        let counts: Vec<u64> = before.iter().chain(&after).map(|r| r.count).collect();
        let expected: Vec<u64> = (1..=counts.len() as u64)
            .map(|n| n * RECORD_EVERY)
            .collect();
        assert_eq!(counts, expected);
        assert!(after.iter().all(|r| r.xmm0 == r.count), "{after:?}");
        // The TSC never went back (the guest checks every step) and moved on by the time the
        // guest spent frozen: at least the 50 ms, with some slack above for the runs.
        let ms = |ticks: u64| ticks / u64::from(state.tsc_khz);
        let gap = ms(after[0].tsc - last.tsc);
        eprintln!("the guest's TSC moved on {gap} ms across a freeze of 50 ms or more");
        assert!((50..250).contains(&gap), "the TSC moved {gap} ms");
        assert!(state.tsc >= last.tsc);

        // The same snapshot again, told the guest was frozen for no time and then for ten
        // seconds: its TSC moves on by what it is told where KVM can set it, and by however far
        // the host's moved on where it cannot (kvm_pvm); `TscSet` says which.
        for told_ms in [0, 10_000] {
            let again = GuestRam::map_private(&memory, config.mem_bytes).unwrap();
            let (mut vm, set) = Vm::restore(&again, &state, told_ms * 1_000_000).unwrap();
            let (status, rerun) = run(&mut vm, &again);
            assert_eq!(status, 0);
            let counts: Vec<u64> = rerun.iter().map(|r| r.count).collect();
            assert_eq!(counts, after.iter().map(|r| r.count).collect::<Vec<_>>());
            let gap = ms(rerun[0].tsc - last.tsc) as i64;
            let expected = told_ms as i64 + set.ahead_ns / 1_000_000;
            eprintln!(
                "told {told_ms} ms: the TSC moved on {gap} ms ({} ms ahead of what it was told)",
                set.ahead_ns / 1_000_000
            );
            assert!(
                (expected..expected + 200).contains(&gap),
                "told {told_ms} ms and {} ms ahead, the TSC moved {gap} ms",
                set.ahead_ns / 1_000_000
            );
        }

        // A TSC at another frequency, which this host's KVM cannot scale to, and a blob of the
        // wrong size: errors that say what is wrong.
        let other = VcpuState {
            tsc_khz: state.tsc_khz / 2,
            ..state.clone()
        };
        let again = GuestRam::map_private(&memory, config.mem_bytes).unwrap();
        match Vm::restore(&again, &other, 0) {
            Err(e) => assert!(e.to_string().contains("cannot scale it"), "{e}"),
            Ok(_) => eprintln!("KVM here scales a guest's TSC"),
        }
        let mut short = state.clone();
        short.lapic.pop();
        let Err(e) = Vm::restore(&again, &short, 0) else {
            panic!("a short local APIC state was taken");
        };
        let text = e.to_string();
        assert!(
            text.contains("1023 bytes where KVM's structure has 1024"),
            "{text}"
        );
    }

    #[test]
    fn a_confined_vcpu_thread_can_freeze_its_guest() {
        if !fata_testkit::kvm() {
            return;
        }
        std::thread::spawn(|| {
            let (guest, config) = counting_guest();
            let mut vm = Vm::new(&guest.ram, guest.entry, config.mem_bytes).unwrap();
            guest.write_boot_info(&vm, &config).unwrap();
            crate::seccomp::confine().unwrap();
            assert_eq!(run(&mut vm, &guest.ram).0, 0);
            let state = vm.capture().unwrap();
            assert!(state.tsc > 0 && state.tsc_khz > 0);
            assert_eq!(state.msrs.len(), SAVED_MSRS.len(), "{:x?}", state.msrs);
            assert_eq!(run(&mut vm, &guest.ram).0, 0, "the guest carries on");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_dirty_log_reports_the_guests_writes_and_the_monitors() {
        if !fata_testkit::kvm() {
            return;
        }
        let (guest, config) = counting_guest();
        let mut vm = Vm::new(&guest.ram, guest.entry, config.mem_bytes).unwrap();
        guest.write_boot_info(&vm, &config).unwrap();
        let log = vm.dirty_log();
        log.start().unwrap();
        // Another thread takes the log while the guest runs.
        let done = std::sync::atomic::AtomicBool::new(false);
        let (status, during) = std::thread::scope(|scope| {
            let taker = scope.spawn(|| {
                let mut takes = 0;
                let mut seen = vec![0u64; (config.mem_bytes / PAGE_SIZE / 64) as usize];
                while !done.load(std::sync::atomic::Ordering::Acquire) {
                    for (all, word) in seen.iter_mut().zip(log.take().unwrap()) {
                        *all |= word;
                    }
                    takes += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                (takes, seen)
            });
            let (status, _) = run(&mut vm, &guest.ram);
            done.store(true, std::sync::atomic::Ordering::Release);
            (status, taker.join().unwrap())
        });
        assert_eq!(status, 0);
        let (takes, mut dirty) = during;
        let started = Instant::now();
        for (all, word) in dirty.iter_mut().zip(log.take().unwrap()) {
            *all |= word;
        }
        eprintln!(
            "{takes} takes while the guest ran; one take {:?}",
            started.elapsed()
        );
        for page in 0..PAGES {
            assert!(is_set(&dirty, PAGES_AT + page * PAGE_SIZE), "page {page}");
        }
        assert!(is_set(&dirty, RECORD), "the record");
        assert!(!is_set(&dirty, LOAD_ADDR), "the code is only read");
        // Nothing runs: the log is empty, until the monitor writes.
        let quiet = log.take().unwrap();
        assert!(quiet.iter().all(|&w| w == 0), "{quiet:?}");
        guest.ram.write(GuestAddr(0x30_0000), &[1; 10]).unwrap();
        guest.ram.mark_dirty(GuestAddr(0x40_0ff0), 0x20);
        let monitor = log.take().unwrap();
        let set: Vec<u64> = (0..config.mem_bytes / PAGE_SIZE)
            .filter(|&page| is_set(&monitor, page * PAGE_SIZE))
            .collect();
        assert_eq!(set, [0x300, 0x400, 0x401]);
        // Stopped, there is no log to take; the guest runs on.
        log.stop().unwrap();
        assert!(log.take().is_err());
        assert_eq!(run(&mut vm, &guest.ram).0, 0);
    }

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
