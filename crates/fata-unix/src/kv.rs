//! A directory as a read-only key-value store.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};

use fata_platform::{DeviceError, Kv};

/// The regular files below a directory, keyed by their `/`-separated path relative to it.
pub struct DirKv {
    root: PathBuf,
}

impl DirKv {
    /// Opens the directory at `root`.
    pub fn open(root: &Path) -> io::Result<DirKv> {
        if !root.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "not a directory"));
        }
        Ok(DirKv {
            root: root.to_path_buf(),
        })
    }

    /// The file behind `key`, refusing keys that would leave the directory.
    fn path(&self, key: &str) -> Result<PathBuf, DeviceError> {
        let relative = Path::new(key);
        if key.is_empty()
            || !relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(DeviceError::NotFound);
        }
        Ok(self.root.join(relative))
    }

    fn file(&self, key: &str) -> Result<File, DeviceError> {
        let path = self.path(key)?;
        if !path.is_file() {
            return Err(DeviceError::NotFound);
        }
        File::open(path).map_err(|_| DeviceError::Io)
    }

    fn collect(&self, dir: &Path, prefix: &str, keys: &mut Vec<String>) -> io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let key = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let kind = entry.file_type()?;
            if kind.is_dir() {
                self.collect(&entry.path(), &key, keys)?;
            } else if kind.is_file() {
                keys.push(key);
            }
        }
        Ok(())
    }
}

impl Kv for DirKv {
    fn list(&self) -> Result<Vec<String>, DeviceError> {
        let mut keys = Vec::new();
        self.collect(&self.root, "", &mut keys)
            .map_err(|_| DeviceError::Io)?;
        keys.sort();
        Ok(keys)
    }

    fn size(&self, key: &str) -> Result<u64, DeviceError> {
        Ok(self
            .file(key)?
            .metadata()
            .map_err(|_| DeviceError::Io)?
            .len())
    }

    fn read(&self, key: &str, offset: u64, buf: &mut [u8]) -> Result<usize, DeviceError> {
        self.file(key)?
            .read_at(buf, offset)
            .map_err(|_| DeviceError::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_reads_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("css")).unwrap();
        std::fs::write(dir.path().join("index.html"), b"<h1>hi</h1>").unwrap();
        std::fs::write(dir.path().join("css/site.css"), b"body{}").unwrap();
        let kv = DirKv::open(dir.path()).unwrap();
        assert_eq!(kv.list().unwrap(), ["css/site.css", "index.html"]);
        assert_eq!(kv.size("index.html"), Ok(11));
        assert_eq!(kv.get("css/site.css").unwrap(), b"body{}");
        let mut tail = [0; 4];
        assert_eq!(kv.read("index.html", 7, &mut tail), Ok(4));
        assert_eq!(&tail, b"/h1>");
        assert_eq!(kv.size("missing"), Err(DeviceError::NotFound));
        assert_eq!(kv.size("../etc/passwd"), Err(DeviceError::NotFound));
        assert_eq!(kv.size("/etc/passwd"), Err(DeviceError::NotFound));
        assert_eq!(kv.size("css"), Err(DeviceError::NotFound));
    }
}
