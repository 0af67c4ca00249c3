//! Reading an image: its geometry, every directory and file, and files' bytes.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use hadris_fat::{FatDir, FatType, FatVolume, FatVolumeReadExt, FileEntry};

use crate::{Error, FatKind, oem};

/// What an image is: its FAT variant, label and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// FAT12, FAT16 or FAT32.
    pub kind: FatKind,
    /// The volume label of the boot sector, trimmed (`NO NAME` when there is none).
    pub label: String,
    /// The volume's size in bytes, as its boot sector gives it.
    pub bytes: u64,
    /// Bytes per cluster.
    pub cluster_bytes: u64,
}

/// One file or directory of an image.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its `/`-separated path from the root, without a leading `/`: `docs/index.html`.
    pub path: String,
    /// Its size in bytes (0 for a directory).
    pub size: u64,
    /// Whether it is a directory.
    pub is_dir: bool,
    fat: FileEntry,
}

/// An open FAT image.
pub struct Image<D: Read + Seek = File> {
    path: PathBuf,
    len: u64,
    info: Info,
    volume: FatVolume<D>,
}

impl Image<File> {
    /// Opens the image file at `path` for reading.
    pub fn open(path: &Path) -> Result<Image<File>, Error> {
        let fail = |source| Error::OpenImage {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(fail)?;
        let meta = file.metadata().map_err(fail)?;
        if meta.is_dir() {
            return Err(Error::NotFat {
                path: path.to_path_buf(),
                why: "it is a directory".into(),
            });
        }
        Image::from_reader(path, file, meta.len())
    }
}

impl<D: Read + Seek> Image<D> {
    /// Opens the image of `len` bytes that `data` reads; `path` names it in errors.
    pub fn from_reader(path: &Path, mut data: D, len: u64) -> Result<Image<D>, Error> {
        let not_fat = |why: String| Error::NotFat {
            path: path.to_path_buf(),
            why,
        };
        if len < 512 {
            return Err(not_fat(format!(
                "it is {len} bytes, less than one boot sector"
            )));
        }
        let mut boot = [0u8; 512];
        data.seek(SeekFrom::Start(0))
            .and_then(|_| data.read_exact(&mut boot))
            .map_err(|e| not_fat(format!("its first 512 bytes cannot be read: {e}")))?;
        if boot[510..512] != [0x55, 0xaa] {
            return Err(not_fat("its first sector has no boot signature".into()));
        }
        let sector = u64::from(u16::from_le_bytes([boot[11], boot[12]]));
        let cluster_bytes = sector * u64::from(boot[13]);
        let sectors = match u16::from_le_bytes([boot[19], boot[20]]) {
            0 => u64::from(u32::from_le_bytes([boot[32], boot[33], boot[34], boot[35]])),
            small => u64::from(small),
        };
        let bytes = sectors * sector;
        data.seek(SeekFrom::Start(0))
            .map_err(|e| not_fat(format!("it cannot be read: {e}")))?;
        let volume = FatVolume::open(data).map_err(|e| not_fat(e.to_string()))?;
        if bytes > len {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                why: format!(
                    "its boot sector says {bytes} bytes, but the file has only {len}: it was cut \
                     short"
                ),
            });
        }
        let kind = match volume.fat_type() {
            FatType::Fat12 => FatKind::Fat12,
            FatType::Fat16 => FatKind::Fat16,
            FatType::Fat32 => FatKind::Fat32,
        };
        let info = Info {
            kind,
            label: volume.volume_info().volume_label().trim().to_string(),
            bytes,
            cluster_bytes,
        };
        Ok(Image {
            path: path.to_path_buf(),
            len,
            info,
            volume,
        })
    }

    /// The image's FAT variant, label and size.
    pub fn info(&self) -> &Info {
        &self.info
    }

    fn corrupt(&self, why: String) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            why,
        }
    }

    /// Every directory and file of the image, sorted by path (bytewise, as keys sort).
    ///
    /// Refuses an image whose directories loop or share clusters, whose names are not usable as
    /// path components, or whose files claim more bytes in all than the image holds.
    pub fn entries(&self) -> Result<Vec<Entry>, Error> {
        let mut entries = Vec::new();
        let mut seen_dirs = HashSet::new();
        let mut total: u64 = 0;
        let mut pending: Vec<(FatDir<'_, D>, String)> =
            vec![(self.volume.root_dir(), String::new())];
        while let Some((dir, prefix)) = pending.pop() {
            let mut names = HashSet::new();
            let mut iter = dir.entries();
            while let Some(next) = iter.next_entry() {
                let entry =
                    next.map_err(|e| self.corrupt(format!("reading directory /{prefix}: {e}")))?;
                let Some(fat) = entry.as_entry() else {
                    continue;
                };
                let short = fat.short_name();
                if fat.is_directory() && matches!(short.try_as_str(), Ok("." | "..")) {
                    continue;
                }
                let name = match fat.long_name().map(|long| long.to_string()) {
                    Some(long) if !long.is_empty() => long,
                    _ => oem::short_name(short.raw_bytes(), fat.nt_case()),
                };
                if name.is_empty() || name.contains(['/', '\0']) || name == "." || name == ".." {
                    return Err(
                        self.corrupt(format!("directory /{prefix} holds an entry named {name:?}"))
                    );
                }
                if !names.insert(name.clone()) {
                    return Err(self.corrupt(format!(
                        "directory /{prefix} holds two entries named {name:?}"
                    )));
                }
                let path = if prefix.is_empty() {
                    name.to_string()
                } else {
                    format!("{prefix}/{name}")
                };
                if fat.is_directory() {
                    let cluster = fat.cluster().0;
                    if cluster >= 2 && !seen_dirs.insert(cluster) {
                        return Err(self.corrupt(format!(
                            "directory /{path} shares its clusters with another directory"
                        )));
                    }
                    let sub = dir
                        .open_entry(fat)
                        .map_err(|e| self.corrupt(format!("opening directory /{path}: {e}")))?;
                    pending.push((sub, path.clone()));
                } else {
                    total = total.saturating_add(fat.len());
                    if total > self.len {
                        return Err(self.corrupt(format!(
                            "its files claim more than its {} bytes (at /{path})",
                            self.len
                        )));
                    }
                }
                entries.push(Entry {
                    path,
                    size: if fat.is_directory() { 0 } else { fat.len() },
                    is_dir: fat.is_directory(),
                    fat: fat.clone(),
                });
            }
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }

    /// The entry at `path` (`/`-separated, a leading `/` optional; letter case matters only when
    /// two entries differ in nothing else, as on FAT).
    pub fn find(&self, path: &str) -> Result<Entry, Error> {
        let key = path.trim_matches('/');
        let entries = self.entries()?;
        let exact = entries.iter().position(|e| e.path == key);
        let folded = || {
            entries
                .iter()
                .position(|e| e.path.to_lowercase() == key.to_lowercase())
        };
        match exact.or_else(folded) {
            Some(at) => Ok(entries[at].clone()),
            None => Err(Error::NotFound {
                image: self.path.clone(),
                key: format!("/{key}"),
            }),
        }
    }

    /// Writes the bytes of the file `entry` to `out`, which `dest` names in errors; returns how
    /// many were written. `on_bytes` hears of each chunk written, for progress.
    pub fn copy(
        &self,
        entry: &Entry,
        out: &mut dyn Write,
        dest: &Path,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<u64, Error> {
        let mut reader = self
            .volume
            .read_file(&entry.fat)
            .map_err(|e| self.corrupt(format!("reading /{}: {e}", entry.path)))?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut done = 0u64;
        while done < entry.size {
            let n = reader
                .read(&mut buf)
                .map_err(|e| self.corrupt(format!("reading /{}: {e}", entry.path)))?;
            if n == 0 {
                return Err(self.corrupt(format!(
                    "/{} ends after {done} of its {} bytes",
                    entry.path, entry.size
                )));
            }
            out.write_all(&buf[..n]).map_err(|source| Error::WriteOut {
                path: dest.to_path_buf(),
                source,
            })?;
            done += n as u64;
            on_bytes(n as u64);
        }
        Ok(done)
    }

    /// The bytes of the file `entry`.
    pub fn read(&self, entry: &Entry) -> Result<Vec<u8>, Error> {
        // The size was checked against the image's length by `entries`.
        let mut bytes = Vec::with_capacity(usize::try_from(entry.size).unwrap_or(0));
        self.copy(entry, &mut bytes, Path::new("memory"), &mut |_| {})?;
        Ok(bytes)
    }

    /// Every file of the image as a key-value pair, sorted by key: the key is the file's
    /// `/`-separated path, the value its bytes. Directories give no pair of their own.
    pub fn key_values(&self) -> Result<Vec<(String, Vec<u8>)>, Error> {
        self.entries()?
            .into_iter()
            .filter(|e| !e.is_dir)
            .map(|e| Ok((e.path.clone(), self.read(&e)?)))
            .collect()
    }
}

impl<D: Read + Seek> std::fmt::Debug for Image<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("path", &self.path)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}
