//! The error type apps return from `main`.

use alloc::string::{String, ToString};
use core::fmt;

/// An error with a message for the person running the app; `main` returning it exits with status 1
/// after printing `error: MESSAGE`.
pub struct Error {
    message: String,
}

impl Error {
    /// An error that says `message`.
    pub fn msg(message: impl fmt::Display) -> Error {
        Error {
            message: message.to_string(),
        }
    }
}

impl<E: core::error::Error> From<E> for Error {
    fn from(error: E) -> Error {
        Error::msg(error)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?})", self.message)
    }
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = core::result::Result<T, E>;
