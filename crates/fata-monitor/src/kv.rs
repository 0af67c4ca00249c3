//! Read-only key-value stores: a host directory or a FAT image copied into guest RAM the guest
//! cannot write.
//!
//! At start-up, before the VM exists, [`Kvs::scan`] walks each directory (the regular files below
//! it, recursively; keys are `/`-separated relative paths, sorted bytewise, as the unix target
//! lists them) or each FAT image (its files, keyed the same way, read with fata-disk) and sizes
//! its region: a [`KvHeader`], one [`KvEntry`] per file, the keys, then the
//! values at multiples of [`KV_VALUE_ALIGN`]. [`Kvs::place`] puts the regions below the network
//! rings; the page tables map them user-readable, not writable and not executable, so a guest
//! store there faults. [`Kvs::write`] reads the files (or the image's files) straight into guest RAM
//! through the checked accessor. The guest reads the region in place (no hypercall) and the monitor never reads it
//! back, so nothing in it is trusted from the guest.
//!
//! Symbolic links and special files are skipped (the unix target does not list them either); a
//! file or directory that cannot be read, a name that is not UTF-8, a key over [`KV_KEY_MAX`]
//! bytes, more than [`KV_ENTRIES_MAX`] files or more bytes than guest RAM can spare are errors
//! that name the path and say what to do; so is an image that is not FAT or is damaged.

use crate::config::KvConfig;
use crate::memory::{GuestRam, OutOfRam};
use fata_disk::Image;
use fata_hvt_abi::GuestAddr;
use fata_hvt_abi::{
    DeviceInfo, DeviceKind, KV_ENTRIES_MAX, KV_KEY_MAX, KV_VALUE_ALIGN, KvEntry, KvHeader,
    MAX_MEM_BYTES, PAGE_SIZE, kv_index_len,
};
use fata_hvt_codec::Codec;
use fata_snapshot::KvState;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;
use vm_memory::ReadVolatile;

/// A key-value store that cannot be given to the guest, and why.
#[derive(Debug, Error)]
#[error("cannot set up key-value store {name} from {}: {source}", dir.display())]
pub struct StoreError {
    /// The store's name.
    pub name: String,
    /// The directory or FAT image behind it.
    pub dir: PathBuf,
    /// Why.
    #[source]
    pub source: KvError,
}

/// Why a key-value store cannot be given to the guest.
#[derive(Debug, Error)]
pub enum KvError {
    /// The directory, a subdirectory or a file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// What could not be read.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file name is not UTF-8, so it cannot be a key.
    #[error("{} has a name that is not UTF-8; keys are UTF-8 paths, so rename it", .0.display())]
    NotUtf8(PathBuf),
    /// A key is longer than the ABI allows.
    #[error("{} makes a key longer than {KV_KEY_MAX} bytes", .0.display())]
    KeyTooLong(PathBuf),
    /// The directory or image holds too many files.
    #[error("it holds more than {KV_ENTRIES_MAX} files")]
    TooManyFiles,
    /// The FAT image cannot be read.
    #[error(transparent)]
    Image(Box<fata_disk::Error>),
    /// A file changed size between the scan and the copy.
    #[error(
        "{} changed while it was being read; keep the directory still while the guest boots",
        .0.display()
    )]
    Changed(PathBuf),
    /// The stores do not fit the guest's RAM.
    #[error(
        "the stores take {bytes} bytes of guest RAM (files and index), but {mem} bytes of RAM leave \
         room for only {room} beside the image, the stack, the network rings and a {min_heap}-byte \
         heap; raise --mem to at least {suggest} MiB"
    )]
    TooLarge {
        /// Bytes the stores' regions take, page-rounded.
        bytes: u64,
        /// The guest's RAM.
        mem: u64,
        /// The bytes that were available.
        room: u64,
        /// The smallest heap the monitor leaves the guest when it has stores.
        min_heap: u64,
        /// A memory size that fits, in MiB.
        suggest: u64,
    },
    /// A region fell outside guest RAM (cannot happen for a placed store).
    #[error(transparent)]
    OutOfRam(#[from] OutOfRam),
    /// The stores do not fit even the largest guest.
    #[error(
        "the stores take {bytes} bytes of guest RAM (files and index), more than a guest of at \
         most {} MiB can hold; serve fewer or smaller files",
        MAX_MEM_BYTES >> 20
    )]
    TooLargeForAnyGuest {
        /// Bytes the stores' regions take, page-rounded.
        bytes: u64,
    },
}

/// The least heap a guest with key-value stores keeps: the stores may not eat into it.
pub const MIN_HEAP_BYTES: u64 = 1 << 20;

/// One file of a store.
#[derive(Debug)]
struct FileEntry {
    key: String,
    origin: Origin,
    len: u64,
    value_offset: u64,
}

/// Where a file's bytes come from.
#[derive(Debug)]
enum Origin {
    /// A host file.
    Host(PathBuf),
    /// A file of the store's FAT image.
    Fat(Box<fata_disk::Entry>),
}

/// One store: its files and where its region lies.
#[derive(Debug)]
struct Store {
    name: String,
    dir: PathBuf,
    /// The FAT image the files are in, when the store is one.
    image: Option<Image>,
    files: Vec<FileEntry>,
    /// Bytes of the region that hold the store.
    len: u64,
    /// Guest-physical address of the region (page-aligned), once placed.
    addr: u64,
}

/// All key-value stores of a guest.
#[derive(Debug, Default)]
pub struct Kvs {
    stores: Vec<Store>,
    first_handle: usize,
}

impl Kvs {
    /// Walks each store's directory and lays out its region; the stores' handles follow the
    /// `first_handle` other devices. Names and the device count were checked with the rest of
    /// the configuration. Touches no guest memory.
    pub fn scan(configs: &[KvConfig], first_handle: usize) -> Result<Kvs, StoreError> {
        let mut stores: Vec<Store> = Vec::with_capacity(configs.len());
        for config in configs {
            let fail = |source| StoreError {
                name: config.name.clone(),
                dir: config.dir.clone(),
                source,
            };
            let name = &config.name;
            let mut files = Vec::new();
            let image = if config.dir.is_file() {
                let image = Image::open(&config.dir).map_err(|e| fail(e.into()))?;
                collect_image(&image, &config.dir, &mut files).map_err(fail)?;
                Some(image)
            } else {
                collect(&config.dir, "", &mut files).map_err(fail)?;
                None
            };
            files.sort_by(|a, b| a.key.cmp(&b.key));
            let len = lay_out(&mut files);
            stores.push(Store {
                name: name.clone(),
                dir: config.dir.clone(),
                image,
                files,
                len,
                addr: 0,
            });
        }
        Ok(Kvs {
            stores,
            first_handle,
        })
    }

    /// The stores of a snapshot, whose regions are in the restored guest RAM already: nothing
    /// is read again, and the stores list no files (`--stats` counts none). Their handles follow
    /// the `first_handle` other devices.
    pub(crate) fn restore(states: &[KvState], first_handle: usize) -> Kvs {
        let stores = (states.iter())
            .map(|state| Store {
                name: state.name.clone(),
                dir: PathBuf::from(&state.source),
                image: None,
                files: Vec::new(),
                len: state.region_len,
                addr: state.region_addr,
            })
            .collect();
        Kvs {
            stores,
            first_handle,
        }
    }

    /// The stores' state for a snapshot, in handle order.
    pub(crate) fn save(&self) -> Vec<KvState> {
        (self.stores.iter())
            .map(|store| KvState {
                name: store.name.clone(),
                source: store.dir.to_string_lossy().into_owned(),
                region_addr: store.addr,
                region_len: store.len,
            })
            .collect()
    }

    /// Whether there are no stores.
    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }

    /// Number of stores.
    pub fn len(&self) -> usize {
        self.stores.len()
    }

    /// Bytes of guest RAM the regions take (each rounded up to a page; saturates).
    pub fn bytes(&self) -> u64 {
        self.stores
            .iter()
            .map(|s| {
                s.len
                    .checked_next_multiple_of(PAGE_SIZE)
                    .unwrap_or(u64::MAX)
            })
            .fold(0, u64::saturating_add)
    }

    /// Places the regions just below `top` (the network rings' bottom), leaving at least
    /// [`MIN_HEAP_BYTES`] between `image_end` and them; returns the lowest region address, where
    /// the heap must end. With no stores it returns `top`.
    pub fn place(&mut self, top: u64, image_end: u64, mem: u64) -> Result<u64, StoreError> {
        if self.stores.is_empty() {
            return Ok(top);
        }
        let bytes = self.bytes();
        let room = top.saturating_sub(image_end.saturating_add(MIN_HEAP_BYTES));
        if bytes > room {
            // Name the largest store: it is the one to shrink.
            let largest = self
                .stores
                .iter()
                .max_by_key(|s| s.len)
                .unwrap_or(&self.stores[0]);
            let short = (bytes - room)
                .checked_next_multiple_of(2 << 20)
                .unwrap_or(u64::MAX);
            let suggest = mem.saturating_add(short);
            let source = if suggest > MAX_MEM_BYTES {
                KvError::TooLargeForAnyGuest { bytes }
            } else {
                KvError::TooLarge {
                    bytes,
                    mem,
                    room,
                    min_heap: MIN_HEAP_BYTES,
                    suggest: suggest >> 20,
                }
            };
            return Err(StoreError {
                name: largest.name.clone(),
                dir: largest.dir.clone(),
                source,
            });
        }
        let mut next = top;
        for store in &mut self.stores {
            next -= store.len.next_multiple_of(PAGE_SIZE);
            store.addr = next;
        }
        Ok(next)
    }

    /// The guest-physical ranges the page tables must map read-only.
    pub fn read_only(&self) -> Vec<(u64, u64)> {
        self.stores
            .iter()
            .map(|s| (s.addr, s.addr + s.len.next_multiple_of(PAGE_SIZE)))
            .collect()
    }

    /// Writes each region into guest RAM: header, index, keys, and each file's bytes read
    /// straight into place.
    pub fn write(&self, ram: &GuestRam) -> Result<(), StoreError> {
        for store in &self.stores {
            let fail = |source| StoreError {
                name: store.name.clone(),
                dir: store.dir.clone(),
                source,
            };
            let (index, _) = encode_index(&store.files);
            ram.write(GuestAddr(store.addr), &index)
                .map_err(|e| fail(e.into()))?;
            for file in &store.files {
                let value = GuestAddr(store.addr + file.value_offset);
                let path = match (&file.origin, &store.image) {
                    (Origin::Host(path), _) => path,
                    (Origin::Fat(entry), Some(image)) => {
                        let mut out = GuestWriter {
                            ram,
                            addr: value,
                            room: file.len,
                        };
                        let copied = image
                            .copy(entry, &mut out, Path::new("guest memory"), &mut |_| {})
                            .map_err(|e| fail(e.into()))?;
                        if copied != file.len {
                            return Err(fail(KvError::Changed(store.dir.join(&file.key))));
                        }
                        continue;
                    }
                    (Origin::Fat(_), None) => unreachable!("a FAT entry comes with its image"),
                };
                let read = |source| {
                    fail(KvError::Read {
                        path: path.clone(),
                        source,
                    })
                };
                let mut f = File::open(path).map_err(read)?;
                let mut slice = ram.slice(value, file.len).map_err(|e| fail(e.into()))?;
                f.read_exact_volatile(&mut slice).map_err(|e| match e {
                    vm_memory::VolatileMemoryError::IOError(io)
                        if io.kind() == io::ErrorKind::UnexpectedEof =>
                    {
                        fail(KvError::Changed(path.clone()))
                    }
                    vm_memory::VolatileMemoryError::IOError(io) => read(io),
                    other => read(io::Error::other(other)),
                })?;
                if f.read(&mut [0u8; 1]).map_err(read)? != 0 {
                    return Err(fail(KvError::Changed(path.clone())));
                }
            }
        }
        Ok(())
    }

    /// Fills the stores' entries of the boot info's device table (after the other devices').
    pub fn device_infos(&self, infos: &mut [DeviceInfo]) {
        for (i, store) in self.stores.iter().enumerate() {
            let handle = self.first_handle + i;
            let Some(info) = infos.get_mut(handle) else {
                continue;
            };
            let mut name = [0u8; 16];
            name[..store.name.len()].copy_from_slice(store.name.as_bytes());
            *info = DeviceInfo {
                name,
                kind: DeviceKind::Kv as u32,
                handle: handle as u32,
                ring_addr: GuestAddr(store.addr),
                ring_len: store.len,
                ..DeviceInfo::EMPTY
            };
        }
    }

    /// Files and value bytes over all stores, for `--stats`.
    pub fn totals(&self) -> (usize, u64) {
        self.stores.iter().fold((0, 0), |(n, b), s| {
            (
                n + s.files.len(),
                b + s.files.iter().map(|f| f.len).sum::<u64>(),
            )
        })
    }
}

/// Adds the regular files below `dir` to `files`, keyed by `prefix` and their relative path.
fn collect(dir: &Path, prefix: &str, files: &mut Vec<FileEntry>) -> Result<(), KvError> {
    let read = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KvError::Read { path, source }
    };
    for entry in std::fs::read_dir(dir).map_err(read(dir))? {
        let entry = entry.map_err(read(dir))?;
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| KvError::NotUtf8(path.clone()))?;
        let key = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if key.len() as u64 > KV_KEY_MAX {
            return Err(KvError::KeyTooLong(path));
        }
        let kind = entry.file_type().map_err(read(&path))?;
        if kind.is_dir() {
            collect(&path, &key, files)?;
        } else if kind.is_file() {
            if files.len() >= KV_ENTRIES_MAX as usize {
                return Err(KvError::TooManyFiles);
            }
            // Open now so that an unreadable file is reported before the guest is set up.
            let len = File::open(&path)
                .and_then(|f| f.metadata())
                .map_err(read(&path))?
                .len();
            files.push(FileEntry {
                key,
                origin: Origin::Host(path),
                len,
                value_offset: 0,
            });
        }
    }
    Ok(())
}

/// Adds the files of the FAT image at `path` to `files`, keyed by their paths in it.
fn collect_image(image: &Image, path: &Path, files: &mut Vec<FileEntry>) -> Result<(), KvError> {
    for entry in image.entries()?.into_iter().filter(|e| !e.is_dir) {
        if entry.path.len() as u64 > KV_KEY_MAX {
            return Err(KvError::KeyTooLong(path.join(&entry.path)));
        }
        if files.len() >= KV_ENTRIES_MAX as usize {
            return Err(KvError::TooManyFiles);
        }
        files.push(FileEntry {
            key: entry.path.clone(),
            len: entry.size,
            origin: Origin::Fat(Box::new(entry)),
            value_offset: 0,
        });
    }
    Ok(())
}

/// Writes a value into guest RAM through the checked accessor, never past its room.
struct GuestWriter<'a> {
    ram: &'a GuestRam,
    addr: GuestAddr,
    room: u64,
}

impl From<fata_disk::Error> for KvError {
    fn from(error: fata_disk::Error) -> KvError {
        KvError::Image(Box::new(error))
    }
}

impl Write for GuestWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let len = buf.len() as u64;
        if len > self.room {
            return Err(io::Error::other(
                "the file grew past the size it was listed with",
            ));
        }
        self.ram.write(self.addr, buf).map_err(io::Error::other)?;
        self.addr = GuestAddr(self.addr.0 + len);
        self.room -= len;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sets each file's value offset (files sorted by key); returns the region's length.
fn lay_out(files: &mut [FileEntry]) -> u64 {
    let count = files.len() as u32;
    let mut at = kv_index_len(count) + files.iter().map(|f| f.key.len() as u64).sum::<u64>();
    for file in files.iter_mut() {
        at = at.saturating_add(KV_VALUE_ALIGN - 1) & !(KV_VALUE_ALIGN - 1);
        file.value_offset = at;
        at = at.saturating_add(file.len);
    }
    at
}

/// The header, index and keys of a region (everything before the first value), and its length.
fn encode_index(files: &[FileEntry]) -> (Vec<u8>, u64) {
    let count = files.len() as u32;
    let keys_at = kv_index_len(count) as usize;
    let mut out = vec![0u8; keys_at];
    KvHeader { count, reserved: 0 }.encode(&mut out);
    for (i, file) in files.iter().enumerate() {
        let entry = KvEntry {
            key_offset: out.len() as u64,
            key_len: file.key.len() as u64,
            value_offset: file.value_offset,
            value_len: file.len,
        };
        let at = kv_index_len(i as u32) as usize;
        entry.encode(&mut out[at..at + KvEntry::SIZE]);
        out.extend_from_slice(file.key.as_bytes());
    }
    let len = out.len() as u64;
    (out, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fata_hvt_kv::KvRegion;

    fn config(dir: &Path) -> Vec<KvConfig> {
        vec![KvConfig {
            name: "data".into(),
            dir: dir.to_path_buf(),
        }]
    }

    #[test]
    fn a_directory_becomes_a_sorted_region_the_guest_view_accepts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("css/deep")).unwrap();
        std::fs::write(dir.path().join("index.html"), b"<h1>hi</h1>").unwrap();
        std::fs::write(dir.path().join("css/site.css"), b"body{}").unwrap();
        std::fs::write(dir.path().join("css/deep/x"), b"").unwrap();
        std::os::unix::fs::symlink("index.html", dir.path().join("link")).unwrap();
        let mut kvs = Kvs::scan(&config(dir.path()), 1).unwrap();
        let top = 30 << 20;
        let bottom = kvs.place(top, 2 << 20, 32 << 20).unwrap();
        assert_eq!(bottom, top - PAGE_SIZE);
        assert_eq!(kvs.read_only(), [(bottom, top)]);
        let ram = GuestRam::new(32 << 20).unwrap();
        kvs.write(&ram).unwrap();
        let mut infos = [DeviceInfo::EMPTY; fata_hvt_abi::MAX_DEVICES];
        kvs.device_infos(&mut infos);
        assert_eq!(infos[1].kind, DeviceKind::Kv as u32);
        assert_eq!(infos[1].handle, 1);
        assert_eq!(&infos[1].name[..5], b"data\0");
        let mut region = vec![0u8; infos[1].ring_len as usize];
        ram.read(infos[1].ring_addr, &mut region).unwrap();
        let kv = KvRegion::new_checked(&region).unwrap();
        let keys: Vec<&str> = kv.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["css/deep/x", "css/site.css", "index.html"]);
        assert_eq!(kv.get("index.html"), Some(&b"<h1>hi</h1>"[..]));
        assert_eq!(kv.get("css/deep/x"), Some(&b""[..]));
        assert_eq!(kvs.totals(), (3, 17));
        // Saved and restored, the store keeps its region and source, and reads nothing.
        let saved = kvs.save();
        assert_eq!(
            saved,
            [KvState {
                name: "data".into(),
                source: dir.path().to_string_lossy().into_owned(),
                region_addr: bottom,
                region_len: infos[1].ring_len,
            }]
        );
        std::fs::remove_dir_all(dir.path()).unwrap();
        let restored = Kvs::restore(&saved, 1);
        assert_eq!(restored.save(), saved);
        assert_eq!(restored.read_only(), kvs.read_only());
        let mut again = [DeviceInfo::EMPTY; fata_hvt_abi::MAX_DEVICES];
        restored.device_infos(&mut again);
        assert_eq!(again, infos);
    }

    #[test]
    fn a_fat_image_becomes_the_same_region_as_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site");
        std::fs::create_dir_all(site.join("docs/a long directory name")).unwrap();
        std::fs::create_dir_all(site.join("empty")).unwrap();
        std::fs::write(site.join("index.html"), b"<h1>hi</h1>").unwrap();
        std::fs::write(site.join("docs/a long directory name/page.html"), b"page").unwrap();
        std::fs::write(site.join("docs/zero"), b"").unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(site.join("docs/big.bin"), &big).unwrap();
        let image = dir.path().join("site.img");
        fata_disk::create(&site, &image, &Default::default(), &mut |_| {}).unwrap();
        let region = |path: &Path| {
            let mut kvs = Kvs::scan(&config(path), 0).unwrap();
            kvs.place(30 << 20, 2 << 20, 32 << 20).unwrap();
            let ram = GuestRam::new(32 << 20).unwrap();
            kvs.write(&ram).unwrap();
            let mut infos = [DeviceInfo::EMPTY; fata_hvt_abi::MAX_DEVICES];
            kvs.device_infos(&mut infos);
            let mut region = vec![0u8; infos[0].ring_len as usize];
            ram.read(infos[0].ring_addr, &mut region).unwrap();
            region
        };
        let from_image = region(&image);
        assert_eq!(from_image, region(&site));
        let kv = KvRegion::new_checked(&from_image).unwrap();
        let keys: Vec<&str> = kv.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "docs/a long directory name/page.html",
                "docs/big.bin",
                "docs/zero",
                "index.html"
            ]
        );
        assert_eq!(kv.get("docs/big.bin"), Some(&big[..]));
        assert_eq!(kv.get("docs/zero"), Some(&b""[..]));
    }

    #[test]
    fn a_damaged_image_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.img");
        std::fs::write(&garbage, vec![0x5a; 64 << 10]).unwrap();
        let err = Kvs::scan(&config(&garbage), 0).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("garbage.img is not a FAT image") && text.contains("mkfs.fat"),
            "{text}"
        );
        let site = dir.path().join("site");
        std::fs::create_dir(&site).unwrap();
        std::fs::write(site.join("f"), b"x").unwrap();
        let image = dir.path().join("cut.img");
        fata_disk::create(&site, &image, &Default::default(), &mut |_| {}).unwrap();
        let bytes = std::fs::read(&image).unwrap();
        std::fs::write(&image, &bytes[..bytes.len() / 2]).unwrap();
        let err = Kvs::scan(&config(&image), 0).unwrap_err().to_string();
        assert!(
            err.contains("cut.img is damaged") && err.contains("cut short"),
            "{err}"
        );
    }

    #[test]
    fn bad_directories_are_refused_with_the_path() {
        let missing = Kvs::scan(&config(Path::new("/nonexistent/fata")), 0).unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/fata"),
            "{missing}"
        );

        let dir = tempfile::tempdir().unwrap();
        let bad = std::os::unix::ffi::OsStrExt::from_bytes(b"caf\xe9");
        let bad: &std::ffi::OsStr = bad;
        std::fs::write(dir.path().join(bad), b"x").unwrap();
        let err = Kvs::scan(&config(dir.path()), 0).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }

    #[test]
    fn regions_that_do_not_fit_are_not_placed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big"), vec![7u8; 3 << 20]).unwrap();
        let mut kvs = Kvs::scan(&config(dir.path()), 0).unwrap();
        assert!(kvs.bytes() > 3 << 20);
        let err = kvs.place(4 << 20, 2 << 20, 6 << 20).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("raise --mem to at least 10 MiB"), "{text}");
        assert!(kvs.place(8 << 20, 2 << 20, 10 << 20).is_ok());
        kvs.stores[0].len = u64::MAX;
        assert_eq!(kvs.bytes(), u64::MAX);
        let err = kvs.place(8 << 20, 2 << 20, 10 << 20).unwrap_err();
        assert!(err.to_string().contains("more than a guest"), "{err}");
    }

    #[test]
    fn files_that_cannot_be_read_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, b"x").unwrap();
        // Gone between the scan and the copy.
        let kvs = Kvs::scan(&config(dir.path()), 0).unwrap();
        std::fs::remove_file(&file).unwrap();
        let ram = GuestRam::new(8 << 20).unwrap();
        let err = kvs.write(&ram).unwrap_err();
        assert!(
            err.to_string().contains("cannot read") && err.to_string().contains("secret"),
            "{err}"
        );
        // Grown between the scan and the copy.
        std::fs::write(&file, b"x").unwrap();
        let mut kvs = Kvs::scan(&config(dir.path()), 0).unwrap();
        kvs.place(6 << 20, 1 << 20, 8 << 20).unwrap();
        std::fs::write(&file, b"xy").unwrap();
        let err = kvs.write(&ram).unwrap_err();
        assert!(err.to_string().contains("changed while"), "{err}");
        // Without permission (root reads anything, so only as another user).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
        if std::fs::read(&file).is_err() {
            let err = Kvs::scan(&config(dir.path()), 0).unwrap_err();
            assert!(err.to_string().contains("Permission denied"), "{err}");
        }
    }
}
