//! A hand-assembled hvt guest for the tests that freeze and carry on a running VM.
//!
//! The guest counts. Each step it increments `r12` and, with SSE, `xmm0`; reads the TSC and
//! exits with status 1 if it went backwards since the previous step (kept in `r13`); and writes
//! the count into one of [`PAGES`] pages of its data segment, the step's page. Every
//! [`RECORD_EVERY`] steps it writes a [`Record`] to the console (24 raw bytes: the count, the
//! TSC, `xmm0`'s low half), and every [`EXIT_EVERY`] records it makes the exit hypercall with
//! status 0, which the test takes as "progress made, freeze me here"; run again, it carries on
//! counting.

use fata_hvt_abi::{
    AbiNote, ConsoleWriteArgs, ExitArgs, GuestAddr, HYPERCALL_BASE, Hypercall, LOAD_ADDR,
};
use fata_hvt_codec::Codec;

/// Where the data segment starts: the hypercall arguments, then the record, then the pages.
pub const DATA: u64 = 0x20_0000;
/// Where the record is written before each console write.
pub const RECORD: u64 = DATA + 0x100;
/// The first of the pages the steps write, one page per step in turn.
pub const PAGES_AT: u64 = DATA + 0x1000;
/// How many pages the steps write.
pub const PAGES: u64 = 256;
/// Steps between two records.
pub const RECORD_EVERY: u64 = 1 << 16;
/// Records between two exits.
pub const EXIT_EVERY: u64 = 8;

const CONSOLE_ARGS: u64 = DATA;
const EXIT_OK: u64 = DATA + 0x20;
const EXIT_BACKWARDS: u64 = DATA + 0x30;

/// One console record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Steps so far.
    pub count: u64,
    /// The TSC at the last step.
    pub tsc: u64,
    /// `xmm0`'s low 64 bits, which count the steps too.
    pub xmm0: u64,
}

/// The records in a console's bytes.
pub fn records(console: &[u8]) -> Vec<Record> {
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    console
        .chunks_exact(24)
        .map(|r| Record {
            count: word(&r[..8]),
            tsc: word(&r[8..16]),
            xmm0: word(&r[16..]),
        })
        .collect()
}

/// Bytes of x86-64 code with backward and forward jumps.
#[derive(Default)]
struct Asm(Vec<u8>);

impl Asm {
    fn raw(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
    fn here(&self) -> usize {
        self.0.len()
    }
    /// `mov rax, imm64` / `mov rdx, imm64`.
    fn mov_rax(&mut self, imm: u64) {
        self.raw(&[0x48, 0xb8]);
        self.raw(&imm.to_le_bytes());
    }
    fn mov_rdx(&mut self, imm: u64) {
        self.raw(&[0x48, 0xba]);
        self.raw(&imm.to_le_bytes());
    }
    /// The hypercall `call` with its arguments at `args`: `mov [HYPERCALL_BASE + 8 * nr], rax`.
    fn hypercall(&mut self, call: Hypercall, args: u64) {
        self.mov_rax(args);
        self.mov_rdx(HYPERCALL_BASE + call as u64 * 8);
        self.raw(&[0x48, 0x89, 0x02]);
    }
    /// A jump (`opcode` bytes then rel32) to `target`, backwards.
    fn jump_back(&mut self, opcode: &[u8], target: usize) {
        self.raw(opcode);
        let rel = target as i64 - (self.here() + 4) as i64;
        self.raw(&(rel as i32).to_le_bytes());
    }
    /// A jump forward whose rel32 [`Asm::land`] fills in; returns where it is.
    fn jump_forward(&mut self, opcode: &[u8]) -> usize {
        self.raw(opcode);
        self.raw(&[0; 4]);
        self.here()
    }
    /// Points the forward jump ending at `from` here.
    fn land(&mut self, from: usize) {
        let rel = (self.here() - from) as i32;
        self.0[from - 4..from].copy_from_slice(&rel.to_le_bytes());
    }
}

const JNZ: &[u8] = &[0x0f, 0x85];
const JB: &[u8] = &[0x0f, 0x82];
const JMP: &[u8] = &[0xe9];

/// The guest's code, loaded at [`LOAD_ADDR`].
fn code() -> Vec<u8> {
    let mut a = Asm::default();
    a.raw(&[0x45, 0x31, 0xe4]); // xor r12d, r12d
    a.raw(&[0x45, 0x31, 0xed]); // xor r13d, r13d
    a.raw(&[0x66, 0x0f, 0xef, 0xc0]); // pxor xmm0, xmm0
    a.mov_rax(1);
    a.raw(&[0x66, 0x48, 0x0f, 0x6e, 0xc8]); // movq xmm1, rax
    let top = a.here();
    a.raw(&[0x49, 0xff, 0xc4]); // inc r12
    a.raw(&[0x66, 0x0f, 0xd4, 0xc1]); // paddq xmm0, xmm1
    a.raw(&[0x0f, 0x31]); // rdtsc
    a.raw(&[0x48, 0xc1, 0xe2, 0x20]); // shl rdx, 32
    a.raw(&[0x48, 0x09, 0xd0]); // or rax, rdx
    a.raw(&[0x4c, 0x39, 0xe8]); // cmp rax, r13
    let backwards = a.jump_forward(JB);
    a.raw(&[0x49, 0x89, 0xc5]); // mov r13, rax
    a.raw(&[0x4c, 0x89, 0xe0]); // mov rax, r12
    a.raw(&[0x48, 0x25]); // and rax, PAGES - 1
    a.raw(&((PAGES - 1) as u32).to_le_bytes());
    a.raw(&[0x48, 0xc1, 0xe0, 0x0c]); // shl rax, 12
    a.mov_rdx(PAGES_AT);
    a.raw(&[0x48, 0x01, 0xc2]); // add rdx, rax
    a.raw(&[0x4c, 0x89, 0x22]); // mov [rdx], r12
    a.raw(&[0x49, 0xf7, 0xc4]); // test r12, RECORD_EVERY - 1
    a.raw(&((RECORD_EVERY - 1) as u32).to_le_bytes());
    a.jump_back(JNZ, top);
    a.mov_rdx(RECORD);
    a.raw(&[0x4c, 0x89, 0x22]); // mov [rdx], r12
    a.raw(&[0x4c, 0x89, 0x6a, 0x08]); // mov [rdx + 8], r13
    a.raw(&[0x66, 0x0f, 0xd6, 0x42, 0x10]); // movq [rdx + 16], xmm0
    a.hypercall(Hypercall::ConsoleWrite, CONSOLE_ARGS);
    a.raw(&[0x49, 0xf7, 0xc4]); // test r12, RECORD_EVERY * EXIT_EVERY - 1
    a.raw(&((RECORD_EVERY * EXIT_EVERY - 1) as u32).to_le_bytes());
    a.jump_back(JNZ, top);
    a.hypercall(Hypercall::Exit, EXIT_OK);
    a.jump_back(JMP, top);
    a.land(backwards);
    a.hypercall(Hypercall::Exit, EXIT_BACKWARDS);
    a.0
}

/// The first page of the data segment: the hypercalls' arguments.
fn data() -> Vec<u8> {
    let mut page = vec![0u8; 0x1000];
    let console = ConsoleWriteArgs {
        data: GuestAddr(RECORD),
        len: 24,
    };
    console.encode(&mut page[..]);
    let ok = ExitArgs { status: 0, pad: 0 };
    ok.encode(&mut page[(EXIT_OK - DATA) as usize..]);
    let backwards = ExitArgs { status: 1, pad: 0 };
    backwards.encode(&mut page[(EXIT_BACKWARDS - DATA) as usize..]);
    page
}

/// The guest as an hvt image: code, data (its pages past the file as zeros) and the ABI note.
pub fn image() -> Vec<u8> {
    let mut note = vec![0u8; AbiNote::SIZE];
    AbiNote::CURRENT.encode(&mut note);
    let data_len = PAGES_AT + PAGES * 0x1000 - DATA;
    // (type, flags, address, bytes, size in memory): PT_LOAD R+X, PT_LOAD R+W, PT_NOTE.
    let segments = [
        (1u32, 5u32, LOAD_ADDR, code(), None),
        (1, 6, DATA, data(), Some(data_len)),
        (4, 4, 0, note, None),
    ];
    let mut out = vec![0u8; 64 + 56 * segments.len()];
    out[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
    out[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
    out[20..24].copy_from_slice(&1u32.to_le_bytes());
    out[24..32].copy_from_slice(&LOAD_ADDR.to_le_bytes());
    out[32..40].copy_from_slice(&64u64.to_le_bytes());
    out[52..54].copy_from_slice(&64u16.to_le_bytes());
    out[54..56].copy_from_slice(&56u16.to_le_bytes());
    out[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
    for (i, (kind, flags, addr, bytes, mem)) in segments.into_iter().enumerate() {
        let offset = out.len().next_multiple_of(4096) as u64;
        let len = bytes.len() as u64;
        let align: u64 = if kind == 4 { 4 } else { 4096 };
        let header = [
            u64::from(kind) | u64::from(flags) << 32,
            offset,
            addr,
            addr,
            len,
            mem.unwrap_or(len),
            align,
        ];
        let at = 64 + 56 * i;
        for (j, word) in header.iter().enumerate() {
            out[at + 8 * j..at + 8 * j + 8].copy_from_slice(&word.to_le_bytes());
        }
        out.resize(offset as usize, 0);
        out.extend_from_slice(&bytes);
    }
    out
}
