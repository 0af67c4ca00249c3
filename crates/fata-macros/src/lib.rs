//! `#[fata::main]`: makes an `async fn` the entry point of a Fata program.
//!
//! The attribute keeps the function as written and adds the C `main` symbol both targets start
//! from: glibc's start code calls it on unix, the guest platform's `_start` calls it on hvt. That
//! symbol hands the function to `fata::rt::start`, with the package's name and the options the
//! attribute declares; `start` checks the arguments against them, builds the environment, runs the
//! executor and turns the result into the exit status.
//!
//! It also places the app's manifest note in `.note.fata`: the devices the app declares and its
//! settings, which `fata build` reads from the app's `[package.metadata.fata]` and hands to the
//! compile as the hex of the note's bytes in the variable `FATA_MANIFEST_NOTE`. Why that way: the
//! note must end up inside a `PT_NOTE` segment, which the link lays out (link.ld keeps
//! `.note.fata` in one on hvt; on unix the linker gives every note section one), whereas adding
//! it after the link would mean rewriting program headers of a laid-out file; the variable is read
//! with `option_env!` in the app's own crate, so rustc records it in that crate's dependency info
//! and cargo rebuilds the app, and only the app, when its declarations change. A build without the
//! variable (plain `cargo build`) gets an empty section and an image without a manifest, which
//! `fata run` still runs after saying so.
//!
//! Written on `proc_macro` alone: the attribute only needs the function's name, and leaving syn out
//! keeps every app's first build short.

use proc_macro::{TokenStream, TokenTree};

/// Marks `async fn NAME(env: fata::Env) -> Result<(), E>` (with `E: Display`) as the program's entry.
/// The crate must be `#![no_std]` and `#![no_main]`.
///
/// `#[fata::main(options = [APP, fata_net::OPTIONS])]` declares the options the program takes, as
/// a list of `&[fata::Opt]` (the app's own and those of each library that reads its arguments);
/// without it the program takes none.
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    let options = match declared_options(attr) {
        Ok(options) => options,
        Err(message) => return compile_error(message),
    };
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
         extern \"C\" fn __fata_entry() -> i32 {{
             const __FATA_OPTIONS: &[&[::fata::Opt]] = &{options};
             ::fata::rt::start(::core::env!(\"CARGO_PKG_NAME\"), __FATA_OPTIONS, {name})
         }}
         #[doc(hidden)]
         #[used]
         #[unsafe(link_section = \".note.fata\")]
         static __FATA_MANIFEST: ::fata::rt::Note<
             {{ ::fata::rt::note_len(::core::option_env!(\"FATA_MANIFEST_NOTE\")) }},
         > = ::fata::rt::note(::core::option_env!(\"FATA_MANIFEST_NOTE\"));"
    )
    .parse()
    .expect("the entry shim is valid Rust");
    let mut out = item;
    out.extend(entry);
    out
}

/// The option lists of `options = [...]`, as source text (`[]` when the attribute is empty).
fn declared_options(attr: TokenStream) -> Result<String, &'static str> {
    const SYNTAX: &str = "#[fata::main] takes `options = [LIST, ...]`, each LIST a &[fata::Opt]";
    let mut tokens = attr.into_iter();
    match (tokens.next(), tokens.next(), tokens.next(), tokens.next()) {
        (None, ..) => Ok(String::from("[]")),
        (
            Some(TokenTree::Ident(key)),
            Some(TokenTree::Punct(eq)),
            Some(TokenTree::Group(list)),
            None,
        ) if key.to_string() == "options"
            && eq.as_char() == '='
            && list.delimiter() == proc_macro::Delimiter::Bracket =>
        {
            Ok(list.to_string())
        }
        _ => Err(SYNTAX),
    }
}

fn compile_error(message: &str) -> TokenStream {
    format!("::core::compile_error!({message:?});")
        .parse()
        .expect("a compile_error! call is valid Rust")
}
