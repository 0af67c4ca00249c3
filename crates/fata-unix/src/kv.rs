//! A directory, or a FAT image, as a read-only key-value store.

use std::collections::BTreeMap;
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

/// The files of a FAT image, keyed by their `/`-separated paths in it, as [`DirKv`] keys a
/// directory's: the image is read into memory when it opens (fata-disk checks it, and its files
/// may claim no more bytes than the image holds).
pub struct FatKv {
    values: BTreeMap<String, Vec<u8>>,
}

impl FatKv {
    /// Reads every file of the FAT image at `path`.
    pub fn open(path: &Path) -> Result<FatKv, fata_disk::Error> {
        let image = fata_disk::Image::open(path)?;
        Ok(FatKv {
            values: image.key_values()?.into_iter().collect(),
        })
    }

    fn value(&self, key: &str) -> Result<&[u8], DeviceError> {
        self.values
            .get(key)
            .map(Vec::as_slice)
            .ok_or(DeviceError::NotFound)
    }
}

impl Kv for FatKv {
    fn list(&self) -> Result<Vec<String>, DeviceError> {
        Ok(self.values.keys().cloned().collect())
    }

    fn size(&self, key: &str) -> Result<u64, DeviceError> {
        Ok(self.value(key)?.len() as u64)
    }

    fn read(&self, key: &str, offset: u64, buf: &mut [u8]) -> Result<usize, DeviceError> {
        let value = self.value(key)?;
        let start = usize::try_from(offset).map_or(value.len(), |o| o.min(value.len()));
        let n = buf.len().min(value.len() - start);
        buf[..n].copy_from_slice(&value[start..start + n]);
        Ok(n)
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

    #[test]
    fn a_fat_image_serves_what_its_directory_does() {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site");
        std::fs::create_dir_all(site.join("css/a long directory name")).unwrap();
        std::fs::write(site.join("index.html"), b"<h1>hi</h1>").unwrap();
        std::fs::write(site.join("css/a long directory name/site.css"), b"body{}").unwrap();
        std::fs::write(site.join("empty"), b"").unwrap();
        let image = dir.path().join("site.img");
        fata_disk::create(&site, &image, &Default::default(), &mut |_| {}).unwrap();
        let fat = FatKv::open(&image).unwrap();
        let plain = DirKv::open(&site).unwrap();
        assert_eq!(fat.list(), plain.list());
        for key in plain.list().unwrap() {
            assert_eq!(fat.get(&key), plain.get(&key), "{key}");
        }
        let mut tail = [0; 8];
        assert_eq!(fat.read("index.html", 7, &mut tail), Ok(4));
        assert_eq!(&tail[..4], b"/h1>");
        assert_eq!(fat.read("index.html", 11, &mut tail), Ok(0));
        assert_eq!(fat.read("index.html", u64::MAX, &mut tail), Ok(0));
        assert_eq!(fat.size("missing"), Err(DeviceError::NotFound));
        assert_eq!(fat.size("css"), Err(DeviceError::NotFound));

        let garbage = dir.path().join("garbage.img");
        std::fs::write(&garbage, vec![7u8; 4096]).unwrap();
        let err = FatKv::open(&garbage).err().unwrap().to_string();
        assert!(err.contains("is not a FAT image"), "{err}");
    }
}
