//! Renders the project's README and docs/ into the site this app serves, and writes the
//! `include_bytes!` table `src/main.rs` includes.

use std::path::PathBuf;

fn main() -> Result<(), String> {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").ok_or("CARGO_MANIFEST_DIR is not set")?;
    let root = PathBuf::from(manifest).join("../..");
    let mut rendered = fata_site::render(&root)
        .map_err(|e| format!("rendering the docs under {}: {e}", root.display()))?;
    // The files bench/http.py serves from Fata and nginx alike.
    rendered.files.extend(fata_site::benchmark_files());
    for input in &rendered.inputs {
        println!("cargo:rerun-if-changed={}", input.display());
    }
    for warning in &rendered.warnings {
        println!("cargo:warning={warning}");
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    fata_site::write_table(&rendered, &out)
        .map_err(|e| format!("writing the site into {}: {e}", out.display()))?;
    Ok(())
}
