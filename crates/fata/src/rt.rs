//! Program start-up, called by the code `#[fata::main]` generates.

use core::fmt::Display;
use core::future::Future;

use fata_platform::Platform;

use crate::{Env, Opt, Sys};

/// Checks the arguments of `program` against `options` (see [`Env::new`]), runs the app's `main`
/// on a fresh executor and ends the program with its result: status 0 on `Ok`, `error: MESSAGE`
/// on the console and status 1 on `Err` or on arguments that do not fit the options (`main` does
/// not run then). A panic anywhere prints its message and location and ends the program with
/// status 101.
pub fn start<F, Fut, E>(program: &'static str, options: &'static [&'static [Opt]], main: F) -> !
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = Result<(), E>> + 'static,
    E: Display + 'static,
{
    Sys::init();
    let env = match Env::new(program, options, Sys::args(), Sys::take_devices()) {
        Ok(env) => env,
        Err(bad_arguments) => fail(bad_arguments),
    };
    match crate::block_on(main(env)) {
        Ok(()) => Sys::exit(0),
        Err(error) => fail(error),
    }
}

/// Prints `error: MESSAGE` on the console and ends the program with status 1.
fn fail(error: impl Display) -> ! {
    crate::print!("error: {error}\n");
    Sys::exit(1)
}
