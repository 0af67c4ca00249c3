//! Domain names in wire form, compared without regard to ASCII case.

use alloc::vec::Vec;
use core::fmt;

use crate::Error;

/// The longest name in wire form (RFC 1035 section 2.3.4).
pub const NAME_MAX: usize = 255;
/// The longest label.
pub const LABEL_MAX: usize = 63;
/// The most compression pointers followed while reading one name (each must point backwards).
const POINTER_HOPS_MAX: usize = 64;

/// An absolute domain name in uncompressed wire form, lowercased: length-prefixed labels ending
/// with the root's empty label. Lowercasing once on entry makes equality and ordering plain byte
/// comparisons.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(Vec<u8>);

impl Name {
    /// The root name `.`.
    pub fn root() -> Name {
        Name(alloc::vec![0])
    }

    /// Parses dotted text such as `www.example.com.` (the final dot is optional). Accepts `\.`-free
    /// names only: every dot separates labels.
    pub fn from_ascii(text: &str) -> Result<Name, Error> {
        let text = text.strip_suffix('.').unwrap_or(text);
        let mut wire = Vec::with_capacity(text.len() + 2);
        if !text.is_empty() {
            for label in text.split('.') {
                if label.is_empty() || label.len() > LABEL_MAX {
                    return Err(Error::BadName);
                }
                wire.push(label.len() as u8);
                wire.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
            }
        }
        wire.push(0);
        if wire.len() > NAME_MAX {
            return Err(Error::BadName);
        }
        Ok(Name(wire))
    }

    /// Reads a name that starts at `at` in `message`, following compression pointers; returns it
    /// and the offset just past its encoding at `at`.
    pub fn parse(message: &[u8], at: usize) -> Result<(Name, usize), Error> {
        let mut wire = Vec::with_capacity(32);
        let mut pos = at;
        let mut end = None;
        let mut hops = 0;
        loop {
            let len = *message.get(pos).ok_or(Error::Truncated)? as usize;
            match len & 0xc0 {
                0x00 => {
                    let label = message
                        .get(pos + 1..pos + 1 + len)
                        .ok_or(Error::Truncated)?;
                    wire.push(len as u8);
                    wire.extend(label.iter().map(u8::to_ascii_lowercase));
                    if wire.len() > NAME_MAX {
                        return Err(Error::BadName);
                    }
                    pos += 1 + len;
                    if len == 0 {
                        return Ok((Name(wire), end.unwrap_or(pos)));
                    }
                }
                0xc0 => {
                    let low = *message.get(pos + 1).ok_or(Error::Truncated)? as usize;
                    let target = ((len & 0x3f) << 8) | low;
                    hops += 1;
                    // Pointers must go strictly backwards, which also rules out loops.
                    if target >= pos || hops > POINTER_HOPS_MAX {
                        return Err(Error::BadPointer);
                    }
                    end.get_or_insert(pos + 2);
                    pos = target;
                }
                _ => return Err(Error::BadName),
            }
        }
    }

    /// Checks a name stored uncompressed (in a compiled zone) and takes it.
    pub fn from_wire(wire: &[u8]) -> Result<Name, Error> {
        let (name, end) = Name::parse(wire, 0)?;
        // A stored name has no pointers: it ends where the buffer ends, and decoding it took as
        // many bytes as it has.
        if end != wire.len() || name.0.len() != wire.len() {
            return Err(Error::BadName);
        }
        Ok(name)
    }

    /// The wire form (lowercase, uncompressed).
    pub fn wire(&self) -> &[u8] {
        &self.0
    }

    /// The number of labels, not counting the root.
    pub fn label_count(&self) -> usize {
        self.label_offsets().count()
    }

    /// Offsets of the labels' length bytes, from the leftmost label.
    fn label_offsets(&self) -> impl Iterator<Item = usize> + '_ {
        let mut at = 0;
        core::iter::from_fn(move || {
            let len = *self.0.get(at)? as usize;
            if len == 0 {
                return None;
            }
            let this = at;
            at += 1 + len;
            Some(this)
        })
    }

    /// The name without its leftmost `n` labels (the root when `n` is the label count or more).
    pub fn strip_labels(&self, n: usize) -> Name {
        match self.label_offsets().nth(n) {
            Some(at) => Name(self.0[at..].to_vec()),
            None => Name::root(),
        }
    }

    /// The wire form of the name without its leftmost `n` labels, borrowed.
    pub fn suffix(&self, n: usize) -> &[u8] {
        match self.label_offsets().nth(n) {
            Some(at) => &self.0[at..],
            None => &self.0[self.0.len() - 1..],
        }
    }

    /// Whether `self` is `ancestor` or below it.
    pub fn is_within(&self, ancestor: &Name) -> bool {
        self.0.len() >= ancestor.0.len()
            && self.suffix_at_len(ancestor.0.len()) == ancestor.0.as_slice()
    }

    /// The trailing `len` bytes if they start on a label boundary.
    fn suffix_at_len(&self, len: usize) -> &[u8] {
        let start = self.0.len() - len;
        // Label boundaries: the start, each label's length byte, and the root's empty label.
        if start == 0 || start == self.0.len() - 1 || self.label_offsets().any(|at| at == start) {
            &self.0[start..]
        } else {
            &[]
        }
    }

    /// `*.self`, the wildcard owner directly below this name.
    pub fn wildcard_child(&self) -> Name {
        let mut wire = Vec::with_capacity(self.0.len() + 2);
        wire.extend_from_slice(&[1, b'*']);
        wire.extend_from_slice(&self.0);
        Name(wire)
    }

    /// Whether the leftmost label is `*`.
    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with(&[1, b'*'])
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() == 1 {
            return f.write_str(".");
        }
        for at in self.label_offsets() {
            let len = self.0[at] as usize;
            for &b in &self.0[at + 1..at + 1 + len] {
                if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                    write!(f, "{}", b as char)?;
                } else {
                    write!(f, "\\{b:03}")?;
                }
            }
            f.write_str(".")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn text_round_trips_lowercased() {
        let name = Name::from_ascii("WWW.Example.com.").unwrap();
        assert_eq!(name.to_string(), "www.example.com.");
        assert_eq!(name.label_count(), 3);
        assert_eq!(
            name.strip_labels(1),
            Name::from_ascii("example.com").unwrap()
        );
        assert_eq!(name.strip_labels(3), Name::root());
        assert!(name.is_within(&Name::from_ascii("example.com").unwrap()));
        assert!(!name.is_within(&Name::from_ascii("ample.com").unwrap()));
        assert!(name.is_within(&Name::root()));
        assert_eq!(
            Name::from_ascii("example.com")
                .unwrap()
                .wildcard_child()
                .to_string(),
            "*.example.com."
        );
        assert_eq!(Name::root().to_string(), ".");
        assert!(Name::from_ascii("a..b").is_err());
        assert!(Name::from_ascii(&"a".repeat(64)).is_err());
    }

    #[test]
    fn compression_pointers_are_followed_backwards_only() {
        // "example.com" at 0, then "www" + pointer to 0 at 13.
        let mut message = alloc::vec![7];
        message.extend_from_slice(b"example");
        message.extend_from_slice(&[3, b'c', b'o', b'm', 0]);
        message.extend_from_slice(&[3, b'W', b'W', b'W', 0xc0, 0]);
        let (name, end) = Name::parse(&message, 13).unwrap();
        assert_eq!(name.to_string(), "www.example.com.");
        assert_eq!(end, message.len());
        // A pointer to itself, and one pointing forwards.
        assert_eq!(Name::parse(&[0xc0, 0], 0), Err(Error::BadPointer));
        assert_eq!(Name::parse(&[0xc0, 2, 0], 0), Err(Error::BadPointer));
        // Reserved label types and truncation.
        assert_eq!(Name::parse(&[0x40], 0), Err(Error::BadName));
        assert_eq!(Name::parse(&[5, b'a'], 0), Err(Error::Truncated));
    }

    #[test]
    fn names_over_255_bytes_are_refused() {
        let mut message = Vec::new();
        for _ in 0..5 {
            message.push(63);
            message.extend_from_slice(&[b'a'; 63]);
        }
        message.push(0);
        assert_eq!(Name::parse(&message, 0), Err(Error::BadName));
    }
}
