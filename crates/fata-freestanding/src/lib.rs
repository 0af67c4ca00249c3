//! The symbols a freestanding Rust image needs from a C library, shared by every Fata
//! unikernel target (hvt, virtio, xen).
//!
//! On stable Rust, `compiler_builtins` does not export `memcpy` and its family for the
//! `x86_64-unknown-linux-gnu` target, and the precompiled `core` names the unwinder's entry points
//! even with `panic=abort`. No crate provides them for this setting (the `compiler_builtins`
//! `mem` feature needs build-std), so they are written here, once. The code exists only in a
//! build for a unikernel target (`--cfg fata_target=...`): in a host build these symbols would
//! clash with the C library's. A platform crate links it with `extern crate fata_freestanding;`.
#![no_std]

#[cfg(any(fata_target = "hvt", fata_target = "virtio", fata_target = "xen"))]
mod symbols;
