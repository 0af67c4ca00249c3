//! `#[fata::main]`: makes an `async fn` the entry point of a Fata program.
//!
//! The attribute keeps the function as written and adds the C `main` symbol both targets start
//! from: glibc's start code calls it on unix, the guest platform's `_start` calls it on hvt. That
//! symbol hands the function to `fata::rt::start`, which builds the environment, runs the executor
//! and turns the result into the exit status.
//!
//! Written on `proc_macro` alone: the attribute only needs the function's name, and leaving syn out
//! keeps every app's first build short.

use proc_macro::{TokenStream, TokenTree};

/// Marks `async fn NAME(env: fata::Env) -> Result<(), E>` (with `E: Display`) as the program's entry.
/// The crate must be `#![no_std]` and `#![no_main]`.
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return compile_error("#[fata::main] takes no arguments");
    }
    let tokens: Vec<TokenTree> = item.clone().into_iter().collect();
    let is_ident =
        |t: &TokenTree, word: &str| matches!(t, TokenTree::Ident(i) if i.to_string() == word);
    let Some(fn_at) = tokens.iter().position(|t| is_ident(t, "fn")) else {
        return compile_error("#[fata::main] goes on an `async fn`");
    };
    if !tokens[..fn_at].iter().any(|t| is_ident(t, "async")) {
        return compile_error("#[fata::main] needs an `async fn`");
    }
    let Some(TokenTree::Ident(name)) = tokens.get(fn_at + 1) else {
        return compile_error("#[fata::main]: expected the function's name after `fn`");
    };
    let entry: TokenStream = format!(
        "#[doc(hidden)]
         #[unsafe(export_name = \"main\")]
         extern \"C\" fn __fata_entry() -> i32 {{ ::fata::rt::start({name}) }}"
    )
    .parse()
    .expect("the entry shim is valid Rust");
    let mut out = item;
    out.extend(entry);
    out
}

fn compile_error(message: &str) -> TokenStream {
    format!("::core::compile_error!({message:?});")
        .parse()
        .expect("a compile_error! call is valid Rust")
}
