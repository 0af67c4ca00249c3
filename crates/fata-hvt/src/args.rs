//! The app's arguments: `argc` strings, each ending in NUL, as the monitor lays them out.

use alloc::string::String;
use alloc::vec::Vec;

/// Splits the argument bytes; takes at most `argc` strings and ignores a missing final NUL.
pub fn parse(bytes: &[u8], argc: u64) -> Vec<String> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if bytes.is_empty() && argc == 0 {
        return Vec::new();
    }
    bytes
        .split(|&b| b == 0)
        .take(argc as usize)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_split_on_nul() {
        assert_eq!(parse(b"", 0), Vec::<String>::new());
        assert_eq!(parse(b"\0", 1), vec![String::new()]);
        assert_eq!(
            parse(b"--ipv4\x0010.0.0.2/24\0a b\0", 3),
            vec!["--ipv4", "10.0.0.2/24", "a b"]
        );
        assert_eq!(parse(b"a\0b\0", 1), vec!["a"]);
    }
}
