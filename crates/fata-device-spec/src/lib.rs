//! How devices are named and given on a command line, the same on every target.
//!
//! `fata run --net [NAME=]TAP`, `--block [NAME=]FILE[:ro|:cow]`, `--kv [NAME=]DIR` and
//! `--mac [NAME=]MAC` name a device; the unix target reads the same specs back from its
//! environment, and the hvt monitor checks the names it puts in the boot info. This crate is the
//! one home of that rule: [`parse`] splits a spec, [`check_name`] and [`check_unique`] say whether
//! names are usable, [`block_mode`] splits a block device's file from its mode.
//! A name is 1 to [`NAME_MAX`] bytes without NUL or `=`, because the hvt boot info carries it
//! NUL-padded in 16 bytes; every target keeps the same limit so an app runs anywhere it ran once.
//!
//! The [`manifest`] module holds the other side of the rule: the devices an app declares (in its
//! `Cargo.toml`, carried in its image as a note) and the check that a command line gives exactly
//! those.
#![forbid(unsafe_code)]

pub mod manifest;

use thiserror::Error;

/// The longest device name, in bytes.
pub const NAME_MAX: usize = 15;

/// The name of a network interface given without one.
pub const DEFAULT_NET: &str = "service";

/// The name of a block device given without one.
pub const DEFAULT_BLOCK: &str = "storage";

/// The name of a key-value store given without one.
pub const DEFAULT_KV: &str = "data";

/// Why a device name or spec cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    /// The name is empty, too long, or holds a NUL or `=`.
    #[error("the device name {0:?} is not usable: give 1 to {NAME_MAX} bytes without NUL or `=`")]
    BadName(String),
    /// Two devices have the same name.
    #[error("two devices are named {0:?}: give each its own name, as in NAME=VALUE")]
    Repeated(String),
    /// The spec names no value.
    #[error("{0:?} gives no value: write [NAME=]VALUE")]
    NoValue(String),
    /// A block device's value has a mode but no file.
    #[error("{0:?} names no file before its mode: write [NAME=]FILE[:ro|:cow]")]
    NoFile(String),
}

/// How a block device serves its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockMode {
    /// `FILE`: reads and writes reach the file.
    ReadWrite,
    /// `FILE:ro`: writes and discards are refused.
    ReadOnly,
    /// `FILE:cow`: writes stay in memory and the file never changes.
    CopyOnWrite,
}

/// Splits a block device's value, `FILE`, `FILE:ro` or `FILE:cow`, into the file and its mode.
/// Any other text after a colon is part of the file's name.
pub fn block_mode(value: &str) -> Result<(&str, BlockMode), SpecError> {
    let (file, mode) = if let Some(file) = value.strip_suffix(":ro") {
        (file, BlockMode::ReadOnly)
    } else if let Some(file) = value.strip_suffix(":cow") {
        (file, BlockMode::CopyOnWrite)
    } else {
        (value, BlockMode::ReadWrite)
    };
    if file.is_empty() {
        return Err(SpecError::NoFile(value.to_string()));
    }
    Ok((file, mode))
}

/// One device as a command line gives it: `NAME=VALUE`, or `VALUE` with the default name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The name the app takes the device by.
    pub name: String,
    /// What backs it: a tap, a file, a directory, a MAC address.
    pub value: String,
}

/// Parses `[NAME=]VALUE`, giving `default_name` when the spec has no name; checks the name.
pub fn parse(spec: &str, default_name: &str) -> Result<Spec, SpecError> {
    let (name, value) = spec.split_once('=').unwrap_or((default_name, spec));
    check_name(name)?;
    if value.is_empty() {
        return Err(SpecError::NoValue(spec.to_string()));
    }
    Ok(Spec {
        name: name.to_string(),
        value: value.to_string(),
    })
}

/// Checks that `name` can name a device.
pub fn check_name(name: &str) -> Result<(), SpecError> {
    if name.is_empty() || name.len() > NAME_MAX || name.contains(['\0', '=']) {
        return Err(SpecError::BadName(name.to_string()));
    }
    Ok(())
}

/// Checks every name, and that no two are the same (devices of every kind share one namespace).
pub fn check_unique<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), SpecError> {
    let mut seen: Vec<&str> = Vec::new();
    for name in names {
        check_name(name)?;
        if seen.contains(&name) {
            return Err(SpecError::Repeated(name.to_string()));
        }
        seen.push(name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_and_without_names() {
        let spec = parse("web=tap0", DEFAULT_NET).unwrap();
        assert_eq!((spec.name.as_str(), spec.value.as_str()), ("web", "tap0"));
        let spec = parse("tap1", DEFAULT_NET).unwrap();
        assert_eq!(
            (spec.name.as_str(), spec.value.as_str()),
            ("service", "tap1")
        );
        let spec = parse("files=/srv/a=b", DEFAULT_KV).unwrap();
        assert_eq!(spec.value, "/srv/a=b");
        assert_eq!(
            parse("=tap0", DEFAULT_NET),
            Err(SpecError::BadName(String::new()))
        );
        assert_eq!(
            parse("sixteen-bytes-xx=tap0", DEFAULT_NET),
            Err(SpecError::BadName("sixteen-bytes-xx".into()))
        );
        assert_eq!(
            parse("web=", DEFAULT_NET),
            Err(SpecError::NoValue("web=".into()))
        );
        assert_eq!(
            parse("", DEFAULT_NET),
            Err(SpecError::NoValue(String::new()))
        );
    }

    #[test]
    fn block_values_carry_their_mode() {
        assert_eq!(
            block_mode("disk.img"),
            Ok(("disk.img", BlockMode::ReadWrite))
        );
        assert_eq!(
            block_mode("disk.img:ro"),
            Ok(("disk.img", BlockMode::ReadOnly))
        );
        assert_eq!(
            block_mode("/srv/gold.img:cow"),
            Ok(("/srv/gold.img", BlockMode::CopyOnWrite))
        );
        assert_eq!(block_mode("a:b.img"), Ok(("a:b.img", BlockMode::ReadWrite)));
        assert_eq!(block_mode("x:ro:cow"), Ok(("x:ro", BlockMode::CopyOnWrite)));
        assert_eq!(block_mode(":ro"), Err(SpecError::NoFile(":ro".into())));
        assert_eq!(block_mode(""), Err(SpecError::NoFile(String::new())));
        let spec = parse("storage=disk.img:cow", DEFAULT_BLOCK).unwrap();
        assert_eq!(
            block_mode(&spec.value),
            Ok(("disk.img", BlockMode::CopyOnWrite))
        );
        let message = block_mode(":cow").unwrap_err().to_string();
        assert!(message.contains("FILE[:ro|:cow]"), "{message}");
    }

    #[test]
    fn names_are_checked_and_unique() {
        assert!(check_name("fifteen-bytes-x").is_ok());
        assert!(check_name("a\0b").is_err());
        assert!(check_unique(["service", "data", "files"]).is_ok());
        assert_eq!(
            check_unique(["service", "data", "service"]),
            Err(SpecError::Repeated("service".into()))
        );
        assert!(check_unique(["ok", ""]).is_err());
        let message = SpecError::Repeated("data".into()).to_string();
        assert!(message.contains("NAME=VALUE"), "{message}");
    }
}
