//! `fata-site OUT [ROOT]`: renders the docs of the project at ROOT (default: the current
//! directory) into the directory OUT, one file per URL path, with the benchmark files apps/www
//! carries; `fata disk create OUT -o site.img` then makes the image `www --site` serves.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let (out, root) = match args.as_slice() {
        [out] => (out, PathBuf::from(".")),
        [out, root] => (out, root.clone()),
        _ => {
            eprintln!(
                "usage: fata-site OUT [ROOT]   (renders ROOT's README.md and docs/ into OUT)"
            );
            return ExitCode::from(2);
        }
    };
    let mut rendered = match fata_site::render(&root) {
        Ok(rendered) => rendered,
        Err(e) => {
            eprintln!(
                "fata-site: cannot render the docs under {}: {e} (give the project's root)",
                root.display()
            );
            return ExitCode::from(1);
        }
    };
    rendered.files.extend(fata_site::benchmark_files());
    for warning in &rendered.warnings {
        eprintln!("fata-site: warning: {warning}");
    }
    if let Err(e) = fata_site::write_dir(&rendered, out) {
        eprintln!("fata-site: cannot write {}: {e}", out.display());
        return ExitCode::from(1);
    }
    eprintln!(
        "fata-site: wrote {} files into {}",
        rendered.files.len(),
        out.display()
    );
    ExitCode::SUCCESS
}
