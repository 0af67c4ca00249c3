//! The files a server serves, with their response heads computed once, up front.

use alloc::string::String;
use alloc::vec::Vec;

use crate::text::push_decimal;

/// Longest decoded path looked up; longer ones cannot name a file (404).
pub(crate) const MAX_PATH: usize = 1024;

/// One file of a site, as a build step embeds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct File<'a> {
    /// Its path in URLs, starting with `/` (`/index.html` also answers `/`).
    pub path: &'a str,
    /// Its bytes, sent as they are.
    pub body: &'a [u8],
    /// Its `Content-Type`, such as `text/html; charset=utf-8`.
    pub content_type: &'a str,
    /// Its entity tag, quotes included (`"1f2e3d"`): changes whenever the body does.
    pub etag: &'a str,
}

/// A file ready to serve: the constant part of its `200` and `304` heads is already formatted.
#[derive(Debug)]
pub(crate) struct Entry<'a> {
    pub(crate) path: &'a [u8],
    pub(crate) body: &'a [u8],
    pub(crate) etag: &'a [u8],
    /// Status line and headers of a `200` answer, up to (not including) `Date`.
    pub(crate) head_ok: Vec<u8>,
    /// Status line and headers of a `304` answer, up to (not including) `Date`.
    pub(crate) head_not_modified: Vec<u8>,
}

/// The files of a site, looked up by path.
#[derive(Debug)]
pub struct Site<'a> {
    entries: Vec<Entry<'a>>,
}

impl<'a> Site<'a> {
    /// A site serving `files`; a later file with the same path as an earlier one replaces it.
    pub fn new(files: &[File<'a>]) -> Site<'a> {
        let mut entries: Vec<Entry<'a>> = Vec::with_capacity(files.len());
        for file in files {
            let mut head_ok = Vec::with_capacity(192);
            head_ok.extend_from_slice(b"HTTP/1.1 200 OK\r\nServer: fata\r\nContent-Type: ");
            head_ok.extend_from_slice(file.content_type.as_bytes());
            head_ok.extend_from_slice(b"\r\nContent-Length: ");
            push_decimal(&mut head_ok, file.body.len());
            head_ok.extend_from_slice(b"\r\nETag: ");
            head_ok.extend_from_slice(file.etag.as_bytes());
            head_ok.extend_from_slice(
                b"\r\nCache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n",
            );
            let mut head_not_modified = Vec::with_capacity(128);
            head_not_modified
                .extend_from_slice(b"HTTP/1.1 304 Not Modified\r\nServer: fata\r\nETag: ");
            head_not_modified.extend_from_slice(file.etag.as_bytes());
            head_not_modified.extend_from_slice(b"\r\nCache-Control: no-cache\r\n");
            let entry = Entry {
                path: file.path.as_bytes(),
                body: file.body,
                etag: file.etag.as_bytes(),
                head_ok,
                head_not_modified,
            };
            match entries.iter().position(|e| e.path == entry.path) {
                Some(at) => entries[at] = entry,
                None => entries.push(entry),
            }
        }
        entries.sort_unstable_by(|a, b| a.path.cmp(b.path));
        Site { entries }
    }

    /// How many files it serves.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it serves nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total bytes of its files.
    pub fn total_bytes(&self) -> usize {
        self.entries.iter().map(|e| e.body.len()).sum()
    }

    /// The paths it serves, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.entries.iter().map(|e| e.path)
    }

    /// The file at `path` (already percent-decoded, without query); a path ending in `/` names
    /// the `index.html` in that directory.
    pub(crate) fn lookup(&self, path: &[u8]) -> Option<&Entry<'a>> {
        let find = |p: &[u8]| {
            self.entries
                .binary_search_by(|e| e.path.cmp(p))
                .ok()
                .map(|at| &self.entries[at])
        };
        if path.ends_with(b"/") {
            let mut index = [0u8; MAX_PATH + 16];
            let joined = path.len() + b"index.html".len();
            if joined > index.len() {
                return None;
            }
            index[..path.len()].copy_from_slice(path);
            index[path.len()..joined].copy_from_slice(b"index.html");
            find(&index[..joined])
        } else {
            find(path)
        }
    }
}

/// The `Content-Type` of a file, by the extension of its name or path; `application/octet-stream`
/// for one it does not know.
pub fn content_type(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("pdf") => "application/pdf",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// An entity tag for `body`: its 64-bit FNV-1a hash in hex, quoted, so it changes whenever the
/// body does.
pub fn etag(body: &[u8]) -> String {
    let hash = body.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    alloc::format!("\"{hash:016x}\"")
}
