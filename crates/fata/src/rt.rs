//! Program start-up, called by the code `#[fata::main]` generates.

use core::fmt::Display;
use core::future::Future;

use fata_platform::Platform;

use crate::{Env, Sys};

/// Runs the app's `main` on a fresh executor and ends the program with its result: status 0 on
/// `Ok`, `error: MESSAGE` on the console and status 1 on `Err`. A panic anywhere prints its message
/// and location and ends the program with status 101.
pub fn start<F, Fut, E>(main: F) -> !
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = Result<(), E>> + 'static,
    E: Display + 'static,
{
    Sys::init();
    let env = Env::new(Sys::args(), Sys::take_devices());
    match crate::block_on(main(env)) {
        Ok(()) => Sys::exit(0),
        Err(error) => {
            crate::print!("error: {error}\n");
            Sys::exit(1)
        }
    }
}
