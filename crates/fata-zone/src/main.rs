//! `fata-zone`: compiles master files for Fata's DNS server.
//!
//! `fata-zone OUT FILE.zone...` writes the compiled zone set of the files to OUT.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((out, files)) = args.split_first().filter(|(_, files)| !files.is_empty()) else {
        eprintln!("usage: fata-zone OUT FILE.zone...");
        return ExitCode::from(2);
    };
    match fata_zone::compile_files(files) {
        Ok(set) => match std::fs::write(out, set.to_compiled()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fata-zone: cannot write {out}: {e}");
                ExitCode::from(1)
            }
        },
        Err(e) => {
            eprintln!("fata-zone: {e}");
            ExitCode::from(1)
        }
    }
}
