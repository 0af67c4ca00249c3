//! The seccomp allow-list the monitor confines itself to once the VM is set up.
//!
//! From then on the thread that runs the guest may only run the vCPU (`KVM_RUN`, `KVM_GET_REGS`),
//! read the rest of its state for a snapshot (`KVM_GET_SREGS`, `_XSAVE`, `_XCRS`,
//! `_VCPU_EVENTS`, `_LAPIC`, `_DEBUGREGS`, `_MSRS`, `_TSC_KHZ`; setting `immediate_exit` is a
//! store to the mapped `kvm_run`, no call),
//! write the console, read and write the network devices' taps (served on the guest's exits), make
//! the calls fata-blockfile makes after `open` (its crate docs list them: `io_uring_enter`, `read`
//! and `write` on its eventfd, `pwrite64`, `fdatasync` and `ftruncate` for a flush's journal),
//! sleep (`ppoll` on the taps and the block devices' eventfds), read the clock, manage its own
//! heap (no executable mappings) and exit.
//! Any other system call fails with `EPERM`: a failing call surfaces as a clear error rather than
//! a killed process, and it still cannot reach anything outside the allow-list. The filter applies
//! to the calling thread (and threads it starts later), for the rest of its life.

use kvm_bindings::{
    kvm_debugregs, kvm_lapic_state, kvm_msrs, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs,
    kvm_xsave,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr, ioctl_iowr_nr};

/// The KVM ioctl type, as `<linux/kvm.h>` defines `KVMIO`.
const KVMIO: std::os::raw::c_uint = 0xAE;
// `KVM_RUN()` and `KVM_GET_REGS()`, numbered as kvm-ioctls numbers the same calls.
ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_regs);
// The calls that read a vCPU's state for a snapshot (`vm::Vm::capture`).
ioctl_ior_nr!(KVM_GET_SREGS, KVMIO, 0x83, kvm_sregs);
ioctl_iowr_nr!(KVM_GET_MSRS, KVMIO, 0x88, kvm_msrs);
ioctl_ior_nr!(KVM_GET_LAPIC, KVMIO, 0x8e, kvm_lapic_state);
ioctl_ior_nr!(KVM_GET_VCPU_EVENTS, KVMIO, 0x9f, kvm_vcpu_events);
ioctl_ior_nr!(KVM_GET_DEBUGREGS, KVMIO, 0xa1, kvm_debugregs);
ioctl_io_nr!(KVM_GET_TSC_KHZ, KVMIO, 0xa3);
ioctl_ior_nr!(KVM_GET_XSAVE, KVMIO, 0xa4, kvm_xsave);
ioctl_ior_nr!(KVM_GET_XCRS, KVMIO, 0xa6, kvm_xcrs);

/// The ioctls the vCPU thread may make (on any descriptor: the others it holds are not KVM's).
fn ioctls() -> [u64; 10] {
    [
        KVM_RUN(),
        KVM_GET_REGS(),
        KVM_GET_SREGS(),
        KVM_GET_MSRS(),
        KVM_GET_LAPIC(),
        KVM_GET_VCPU_EVENTS(),
        KVM_GET_DEBUGREGS(),
        KVM_GET_TSC_KHZ(),
        KVM_GET_XSAVE(),
        KVM_GET_XCRS(),
    ]
    .map(u64::from)
}

/// The system calls allowed with any arguments.
const ALLOWED: &[libc::c_long] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_ppoll,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_clock_gettime,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_brk,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_close,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sigaltstack,
    libc::SYS_exit,
    libc::SYS_exit_group,
    // fata-blockfile, after `open`.
    libc::SYS_io_uring_enter,
    libc::SYS_pwrite64,
    libc::SYS_fdatasync,
    libc::SYS_ftruncate,
];

/// Builds the filter of the vCPU thread.
pub fn filter() -> Result<BpfProgram, seccompiler::Error> {
    let arg = |index, op, value| SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value);
    let mut rules = with_heap(ALLOWED)?;
    let ioctls = ioctls()
        .into_iter()
        .map(|nr| SeccompRule::new(vec![arg(1, SeccompCmpOp::Eq, nr)?]))
        .collect::<Result<_, _>>()?;
    rules.insert(libc::SYS_ioctl, ioctls);
    build(rules)
}

/// `allowed` with any arguments, plus `mmap` for the heap (no executable mappings).
fn with_heap(
    allowed: &[libc::c_long],
) -> Result<BTreeMap<i64, Vec<SeccompRule>>, seccompiler::Error> {
    let arg = |index, op, value| SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value);
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        allowed.iter().map(|&nr| (nr, Vec::new())).collect();
    let not_exec = SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64);
    rules.insert(
        libc::SYS_mmap,
        vec![SeccompRule::new(vec![arg(2, not_exec, 0)?])?],
    );
    Ok(rules)
}

fn build(rules: BTreeMap<i64, Vec<SeccompRule>>) -> Result<BpfProgram, seccompiler::Error> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        TargetArch::x86_64,
    )?;
    filter.try_into().map_err(seccompiler::Error::Backend)
}

/// Confines the calling thread to the allow-list.
pub fn confine() -> Result<(), seccompiler::Error> {
    seccompiler::apply_filter(&filter()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_kernel_headers() {
        assert_eq!(KVM_RUN(), 0xae80);
        assert_eq!(KVM_GET_REGS(), 0x8090_ae81);
        // As <linux/kvm.h> defines them on x86-64.
        assert_eq!(KVM_GET_SREGS(), 0x8138_ae83);
        assert_eq!(KVM_GET_MSRS(), 0xc008_ae88);
        assert_eq!(KVM_GET_LAPIC(), 0x8400_ae8e);
        assert_eq!(KVM_GET_VCPU_EVENTS(), 0x8040_ae9f);
        assert_eq!(KVM_GET_DEBUGREGS(), 0x8080_aea1);
        assert_eq!(KVM_GET_TSC_KHZ(), 0xaea3);
        assert_eq!(KVM_GET_XSAVE(), 0x9000_aea4);
        assert_eq!(KVM_GET_XCRS(), 0x8188_aea6);
    }

    #[test]
    fn confined_thread_cannot_open_files_or_map_code() {
        std::thread::spawn(|| {
            // Control: before the filter both work.
            assert!(std::fs::File::open("/dev/null").is_ok());
            confine().unwrap();
            let err = std::fs::File::open("/dev/null").unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EPERM), "open must be denied");
            // SAFETY: an anonymous private mapping at an address the kernel chooses touches no
            // existing memory; the result is only compared, never used.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_EXEC,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_eq!(p, libc::MAP_FAILED, "executable mappings must be denied");
            // Allowed calls still work: the heap and the console.
            let v = vec![0u8; 1 << 20];
            assert_eq!(v.len(), 1 << 20);
            println!("still allowed: write");
        })
        .join()
        .unwrap();
        // The main test thread is not confined.
        assert!(std::fs::File::open("/dev/null").is_ok());
    }

    #[test]
    fn a_confined_thread_can_serve_a_block_file_and_flush_its_journal() {
        use fata_blockfile::{BlockFile, Mode, Op, Request, Status};
        let disk = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(disk.path(), vec![1u8; 64 * 512]).unwrap();
        let path = disk.path().to_path_buf();
        std::thread::spawn(move || {
            let mut file = BlockFile::open(&path, Mode::ReadWrite).unwrap();
            confine().unwrap();
            let mut buffer = vec![7u8; 4096];
            let buf = buffer.as_mut_ptr();
            let requests = [
                (Op::Write { grouped: true }, 0),
                (Op::Write { grouped: false }, 8),
                (Op::Flush, 0),
                (Op::Discard, 16),
                (Op::Read, 24),
            ];
            for (tag, (op, sector)) in requests.into_iter().enumerate() {
                let len = if op == Op::Flush { 0 } else { 4096 };
                let request = Request {
                    tag: tag as u64,
                    op,
                    sector,
                    len,
                    buf,
                };
                // SAFETY: `buffer` is 4096 bytes, outlives `file`, and is not touched until the
                // loop below has collected every completion. The writes only read it, and the one
                // read goes last (a flush waits for what came before it), so the writes see 7s.
                unsafe { file.submit(request) };
            }
            let mut done = Vec::new();
            while done.len() < requests.len() {
                file.start().unwrap();
                file.complete(&mut |tag, status| done.push((tag, status)));
                let _ = crate::poll::wait_readable(
                    &[file.completion_fd()],
                    Some(std::time::Duration::from_millis(10)),
                );
            }
            done.sort_by_key(|&(tag, _)| tag);
            let statuses: Vec<Status> = done.iter().map(|&(_, s)| s).collect();
            assert_eq!(statuses[..3], [Status::Ok; 3], "{done:?}");
            assert!(matches!(statuses[3], Status::Ok | Status::Unsupported));
            assert_eq!(statuses[4], Status::Ok);
            drop(file);
            assert!(buffer.iter().all(|&b| b == 1), "the read saw the file");
        })
        .join()
        .unwrap();
        let bytes = std::fs::read(disk.path()).unwrap();
        assert!(
            bytes[..16 * 512].iter().all(|&b| b == 7),
            "both writes landed"
        );
    }
}
