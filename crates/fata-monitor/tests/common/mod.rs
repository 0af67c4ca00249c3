//! Test-only tools: an ELF writer, a few hand-assembled x86-64 instructions and a bounded runner.
#![allow(dead_code)] // each test file uses its own subset

use fata_hvt_abi::{AbiNote, HYPERCALL_BASE, Hypercall};
use fata_hvt_codec::Codec;
use fata_monitor::{Config, Error, GuestExit};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
pub const PF_R: u32 = 4;
pub const PT_LOAD: u32 = 1;
pub const PT_NOTE: u32 = 4;

/// One program header and the bytes behind it.
#[derive(Clone)]
pub struct Seg {
    pub kind: u32,
    pub addr: u64,
    pub flags: u32,
    pub data: Vec<u8>,
    pub mem_size: u64,
}

pub fn load(addr: u64, flags: u32, data: Vec<u8>) -> Seg {
    let mem_size = data.len() as u64;
    Seg {
        kind: PT_LOAD,
        addr,
        flags,
        data,
        mem_size,
    }
}

pub fn abi_note(version: u32) -> Seg {
    let mut data = vec![0; AbiNote::SIZE];
    AbiNote {
        version,
        ..AbiNote::CURRENT
    }
    .encode(&mut data);
    Seg {
        kind: PT_NOTE,
        addr: 0,
        flags: PF_R,
        mem_size: data.len() as u64,
        data,
    }
}

/// A static x86-64 ELF executable (ET_EXEC) with these program headers; each segment's bytes start
/// on their own 4 KiB page of the file.
pub fn elf_with(entry: u64, e_type: u16, machine: u16, segs: &[Seg]) -> Vec<u8> {
    let phoff = 64u64;
    let mut out = vec![0u8; 64 + 56 * segs.len()];
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 2; // 64-bit
    out[5] = 1; // little-endian
    out[6] = 1; // version
    out[16..18].copy_from_slice(&e_type.to_le_bytes());
    out[18..20].copy_from_slice(&machine.to_le_bytes());
    out[20..24].copy_from_slice(&1u32.to_le_bytes());
    out[24..32].copy_from_slice(&entry.to_le_bytes());
    out[32..40].copy_from_slice(&phoff.to_le_bytes());
    out[52..54].copy_from_slice(&64u16.to_le_bytes());
    out[54..56].copy_from_slice(&56u16.to_le_bytes());
    out[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
    for (i, s) in segs.iter().enumerate() {
        let offset = out.len().next_multiple_of(4096) as u64;
        let ph = 64 + 56 * i;
        out[ph..ph + 4].copy_from_slice(&s.kind.to_le_bytes());
        out[ph + 4..ph + 8].copy_from_slice(&s.flags.to_le_bytes());
        out[ph + 8..ph + 16].copy_from_slice(&offset.to_le_bytes());
        out[ph + 16..ph + 24].copy_from_slice(&s.addr.to_le_bytes());
        out[ph + 24..ph + 32].copy_from_slice(&s.addr.to_le_bytes());
        out[ph + 32..ph + 40].copy_from_slice(&(s.data.len() as u64).to_le_bytes());
        out[ph + 40..ph + 48].copy_from_slice(&s.mem_size.to_le_bytes());
        let align: u64 = if s.kind == PT_NOTE { 4 } else { 4096 };
        out[ph + 48..ph + 56].copy_from_slice(&align.to_le_bytes());
        out.resize(offset as usize, 0);
        out.extend_from_slice(&s.data);
    }
    out
}

/// A valid hvt image: the given segments plus the ABI note.
pub fn elf(entry: u64, segs: &[Seg]) -> Vec<u8> {
    let mut all = segs.to_vec();
    all.push(abi_note(fata_hvt_abi::ABI_VERSION));
    elf_with(entry, 2, 62, &all)
}

pub const CODE: u64 = 0x10_0000;
pub const DATA: u64 = 0x20_0000;

/// Hand-assembled x86-64, enough for hostile guests.
#[derive(Default)]
pub struct Asm(pub Vec<u8>);

impl Asm {
    /// `mov rax, imm64`
    pub fn mov_rax(mut self, imm: u64) -> Self {
        self.0.extend_from_slice(&[0x48, 0xb8]);
        self.0.extend_from_slice(&imm.to_le_bytes());
        self
    }
    /// `mov rdx, imm64`
    pub fn mov_rdx(mut self, imm: u64) -> Self {
        self.0.extend_from_slice(&[0x48, 0xba]);
        self.0.extend_from_slice(&imm.to_le_bytes());
        self
    }
    /// `mov [rdx], rax`
    pub fn store(mut self) -> Self {
        self.0.extend_from_slice(&[0x48, 0x89, 0x02]);
        self
    }
    /// `mov rax, [rdx]`
    pub fn load(mut self) -> Self {
        self.0.extend_from_slice(&[0x48, 0x8b, 0x02]);
        self
    }
    /// `mov eax, [rdi + disp8]`: a 32-bit field of the boot info.
    pub fn boot_info_u32(mut self, offset: u8) -> Self {
        self.0.extend_from_slice(&[0x8b, 0x47, offset]);
        self
    }
    /// `mov [rdx], eax`
    pub fn store32(mut self) -> Self {
        self.0.extend_from_slice(&[0x89, 0x02]);
        self
    }
    /// The hypercall `nr` with its argument struct at `args`.
    pub fn hypercall_nr(self, nr: u64, args: u64) -> Self {
        self.mov_rax(args).mov_rdx(HYPERCALL_BASE + nr * 8).store()
    }
    pub fn hypercall(self, call: Hypercall, args: u64) -> Self {
        self.hypercall_nr(call as u64, args)
    }
    /// Raw bytes.
    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
}

/// Whether KVM can be used; when not, fails a strict run or records the skip (fata-testkit).
#[track_caller]
pub fn kvm_available() -> bool {
    fata_testkit::kvm()
}

/// Writes `image` to a fresh temporary file.
pub fn image_file(image: &[u8]) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "fata-monitor-test-{}-{}.hvt",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, image).unwrap();
    path
}

/// What a bounded run produced.
pub struct Outcome {
    pub result: Result<GuestExit, Error>,
    pub console: String,
    /// `open("/dev/null")` on the monitor's thread after the run.
    pub open_after: std::io::Result<()>,
}

/// Runs an image file on its own thread (the seccomp filter confines that thread), failing the test
/// if the run takes longer than 20 s.
pub fn run_path(path: PathBuf, config: Config) -> Outcome {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut console = Vec::new();
        let result = fata_monitor::run_with_console(&path, &config, &mut console);
        let open_after = std::fs::File::open("/dev/null").map(drop);
        let _ = std::fs::remove_file(&path);
        let console = String::from_utf8_lossy(&console).into_owned();
        let _ = tx.send(Outcome {
            result,
            console,
            open_after,
        });
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the guest did not finish within 20 s")
}

/// Runs image bytes with the default configuration and `args`.
pub fn run_image(image: &[u8], args: &[&str]) -> Outcome {
    let config = Config {
        args: args.iter().map(|a| a.to_string()).collect(),
        ..Config::default()
    };
    run_path(image_file(image), config)
}
