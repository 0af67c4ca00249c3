//! The mounted file system: paths, the operations apps call, and how each becomes one
//! all-or-nothing change of the cache.

use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use fata::BlockDevice;
use hadris_fat::r#async::read::FileReader;
use hadris_fat::r#async::write::FileWriter;
use hadris_fat::r#async::{DirectoryEntry, FatDir, FatVolume, FileEntry};
use hadris_io::SeekFrom;

use crate::Error;
use crate::clock::{DateTime, WALL_CLOCK};
use crate::disk::{Disk, Fault, PAGE, Store};
use crate::layout::{self, BOOT_SECTOR, Kind, Layout};
use crate::sync::Lock;

type Volume = FatVolume<Disk>;
type Dir<'v> = FatDir<'v, Disk>;

/// Pages the cache keeps (2 MiB), apart from those of the operation in progress.
const CACHE_PAGES: usize = 512;

/// The most bytes one step of a write or append carries (512 KiB): each step is a whole
/// operation, undone alone if it fails, so its pages must fit in memory.
pub const STEP: usize = CACHE_PAGES * PAGE / 4;

/// Once this many bytes wait for a flush, the file system flushes between operations by itself
/// (32 MiB): hosts hold grouped writes in memory until a flush, and the hvt monitor takes at
/// most 64 MiB of them.
const PENDING_MAX: u64 = 32 << 20;

/// A file or directory in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Its name: the long name where it has one, else the 8.3 name.
    pub name: String,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Its size in bytes (0 for a directory).
    pub size: u64,
}

/// What [`FatFs::metadata`] tells about a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Its size in bytes (0 for a directory).
    pub size: u64,
    /// When it was last written (the epoch, 1980-01-01, for the root directory).
    pub modified: DateTime,
}

/// A mounted FAT file system. Clones share it; operations from several tasks take turns.
///
/// Paths are absolute or relative to the root, with `/` between names (`/logs/a.txt` and
/// `logs/a.txt` are the same); names match without regard to case, as on every FAT system.
#[derive(Clone)]
pub struct FatFs {
    shared: Rc<Shared>,
}

struct Shared {
    /// Held for the whole of each operation.
    lock: Lock,
    store: Store,
    layout: Layout,
    read_only: bool,
    /// hadris-fat's handle on the volume, taken out while an operation runs; `None` after an
    /// operation was undone or dropped, until the next one opens the volume again from the
    /// restored bytes.
    volume: RefCell<Option<Volume>>,
}

/// Why an operation failed, before the failure is put in this crate's terms.
enum Failure {
    /// hadris-fat reported it.
    Fat(hadris_fat::Error),
    /// A check of this crate's.
    Fs(Error),
}

impl From<hadris_fat::Error> for Failure {
    fn from(error: hadris_fat::Error) -> Failure {
        Failure::Fat(error)
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::Fs(error)
    }
}

type Outcome<T> = Result<T, Failure>;

/// Puts hadris-fat's error in this crate's terms; `fault` is the store's account of a failed
/// access, which an I/O error stands for.
fn error(failure: Failure, fault: Option<Fault>) -> Error {
    use hadris_fat::Error as E;
    let error = match failure {
        Failure::Fs(error) => return error,
        Failure::Fat(error) => error,
    };
    match error {
        E::Io(_) | E::IoContext { .. } => match fault {
            Some(Fault::Device(device)) => Error::Device(device),
            // The file system pointed past the end of the device, or hadris-fat seeked before
            // its start.
            Some(Fault::PastEnd) | None => Error::Corrupt,
        },
        E::InvalidBootSignature { .. } => Error::NotFat,
        E::NotAFile => Error::IsADirectory,
        E::NotADirectory => Error::NotADirectory,
        E::EntryNotFound => Error::NotFound,
        E::InvalidPath | E::InvalidFilename => Error::InvalidName,
        E::NoFreeSpace => Error::NoSpace,
        E::DirectoryFull => Error::DirectoryFull,
        E::AlreadyExists => Error::Exists,
        E::DirectoryNotEmpty => Error::NotEmpty,
        // Bad signatures and numbers, loops, clusters out of bounds, bad or missing clusters,
        // entries that changed under a handle: all mean bytes that do not hold together.
        _ => Error::Corrupt,
    }
}

async fn open(store: &Store) -> Result<Volume, Error> {
    FatVolume::builder(Disk::new(store.clone()))
        .time_provider(&WALL_CLOCK)
        .open()
        .await
        .map_err(|e| error(Failure::Fat(e), store.take_fault()))
}

/// The names in `path`, root first; `.` and empty names are skipped, `..` is refused.
fn components(path: &str) -> Result<Vec<&str>, Error> {
    let mut names = Vec::new();
    for name in path.split('/') {
        match name {
            "" | "." => {}
            ".." => return Err(Error::InvalidName),
            name => names.push(name),
        }
    }
    Ok(names)
}

/// The parent directory's names and the last name of a path that must name something other
/// than the root.
fn split(path: &str) -> Result<(Vec<&str>, &str), Error> {
    let mut names = components(path)?;
    let name = names.pop().ok_or(Error::InvalidName)?;
    Ok((names, name))
}

impl FatFs {
    /// Mounts the FAT file system on `device`.
    pub async fn mount(device: BlockDevice) -> Result<FatFs, Error> {
        let geometry = device.geometry();
        if geometry.sector_size == 0 || !PAGE.is_multiple_of(geometry.sector_size as usize) {
            return Err(Error::Unsupported);
        }
        let store = Store::new(device, CACHE_PAGES);
        let mut boot = [0u8; BOOT_SECTOR];
        if store.size() < BOOT_SECTOR as u64 {
            return Err(Error::NotFat);
        }
        store
            .read(0, &mut boot)
            .await
            .map_err(|fault| match fault {
                Fault::Device(device) => Error::Device(device),
                Fault::PastEnd => Error::NotFat,
            })?;
        let layout = layout::check(&boot, store.size())?;
        let volume = open(&store).await?;
        // hadris-fat reads the same boot sector; a volume it numbers differently is one of the
        // two misreading it.
        if volume.fat().max_cluster() != layout.max_cluster {
            return Err(Error::Corrupt);
        }
        Ok(FatFs {
            shared: Rc::new(Shared {
                lock: Lock::default(),
                store,
                layout,
                read_only: geometry.read_only,
                volume: RefCell::new(Some(volume)),
            }),
        })
    }

    /// FAT12, FAT16 or FAT32.
    pub fn kind(&self) -> Kind {
        self.shared.layout.kind
    }

    /// The whole content of the file at `path`.
    pub async fn read(&self, path: &str) -> Result<Vec<u8>, Error> {
        self.run(false, async |volume: &Volume, this: &FatFs| {
            let entry = this.file(volume, path).await?;
            this.check_chain(volume, &entry).await?;
            let mut reader = FileReader::new(volume, &entry)?;
            let bytes = reader.read_to_vec().await?;
            if bytes.len() as u64 != entry.len() {
                // The chain ended before the size the entry gives.
                return Err(Error::Corrupt.into());
            }
            Ok(bytes)
        })
        .await
    }

    /// Reads into `buf` from byte `offset` of the file at `path`; returns how many bytes it read
    /// (fewer than `buf.len()` only at the end of the file, 0 from there on).
    ///
    /// Unlike [`read`](Self::read) it follows the file's cluster chain only as far as it reads,
    /// so a chain that loops further on goes unnoticed (and is never followed past the size).
    pub async fn read_at(&self, path: &str, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
        self.run(false, async |volume: &Volume, this: &FatFs| {
            let entry = this.file(volume, path).await?;
            if offset >= entry.len() {
                return Ok(0);
            }
            let mut reader = FileReader::new(volume, &entry)?;
            reader.seek(SeekFrom::Start(offset)).await?;
            let want = buf.len().min(reader.remaining());
            let mut done = 0;
            while done < want {
                let read = reader.read(&mut buf[done..want]).await?;
                if read == 0 {
                    return Err(Error::Corrupt.into());
                }
                done += read;
            }
            Ok(done)
        })
        .await
    }

    /// Makes the file at `path` hold `bytes`: creates it, or replaces what it held. Its
    /// directory must exist.
    pub async fn write(&self, path: &str, bytes: &[u8]) -> Result<(), Error> {
        self.put(path, bytes, false).await
    }

    /// Adds `bytes` at the end of the file at `path`, which is created if missing.
    pub async fn append(&self, path: &str, bytes: &[u8]) -> Result<(), Error> {
        self.put(path, bytes, true).await
    }

    async fn put(&self, path: &str, bytes: &[u8], append: bool) -> Result<(), Error> {
        let mut steps = bytes.chunks(STEP);
        let first = steps.next().unwrap_or_default();
        // The first step creates, replaces or appends; each further one appends to it.
        self.run(true, async |volume: &Volume, this: &FatFs| {
            let (parent, name) = split(path)?;
            let dir = this.dir(volume, &parent).await?;
            let entry = match dir.find(name).await? {
                Some(entry) if entry.is_directory() => return Err(Error::IsADirectory.into()),
                Some(entry) => {
                    this.check_chain(volume, &entry).await?;
                    entry
                }
                None => volume.create_file(&dir, name).await?,
            };
            let mut writer = if append {
                FileWriter::new_append(volume, &entry).await?
            } else {
                FileWriter::new(volume, &entry)?
            };
            writer.write(first).await?;
            writer.finish().await?;
            Ok(())
        })
        .await?;
        for step in steps {
            self.run(true, async |volume: &Volume, this: &FatFs| {
                let entry = this.file(volume, path).await?;
                let mut writer = FileWriter::new_append(volume, &entry).await?;
                writer.write(step).await?;
                writer.finish().await?;
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// Removes the file or the empty directory at `path`.
    pub async fn remove(&self, path: &str) -> Result<(), Error> {
        self.run(true, async |volume: &Volume, this: &FatFs| {
            let (parent, name) = split(path)?;
            let dir = this.dir(volume, &parent).await?;
            let entry = dir.find(name).await?.ok_or(Error::NotFound)?;
            if entry.is_directory() {
                this.check_dir(&entry)?;
            } else {
                this.check_chain(volume, &entry).await?;
            }
            volume.delete(&entry).await?;
            Ok(())
        })
        .await
    }

    /// Makes the directory `path`; its parent must exist.
    pub async fn create_dir(&self, path: &str) -> Result<(), Error> {
        self.run(true, async |volume: &Volume, this: &FatFs| {
            let (parent, name) = split(path)?;
            let dir = this.dir(volume, &parent).await?;
            volume.create_dir(&dir, name).await?;
            Ok(())
        })
        .await
    }

    /// The files and directories in the directory at `path` (`/` for the root), in the order
    /// the directory holds them, without `.` and `..`.
    pub async fn list(&self, path: &str) -> Result<Vec<DirEntry>, Error> {
        self.run(false, async |volume: &Volume, this: &FatFs| {
            let dir = this.dir(volume, &components(path)?).await?;
            let mut entries = dir.entries();
            let mut listing = Vec::new();
            while let Some(entry) = entries.next_entry().await {
                let DirectoryEntry::Entry(entry) = entry?;
                let name = entry.name();
                if name == "." || name == ".." {
                    continue;
                }
                listing.push(DirEntry {
                    name: name.into_owned(),
                    is_dir: entry.is_directory(),
                    size: if entry.is_directory() { 0 } else { entry.len() },
                });
            }
            Ok(listing)
        })
        .await
    }

    /// Whether `path` is a file or a directory, its size and when it was last written.
    pub async fn metadata(&self, path: &str) -> Result<Metadata, Error> {
        self.run(false, async |volume: &Volume, this: &FatFs| {
            let names = components(path)?;
            let Some((name, parent)) = names.split_last() else {
                return Ok(Metadata {
                    is_dir: true,
                    size: 0,
                    modified: DateTime::from_fat(hadris_fat::time::FatDateTime::EPOCH),
                });
            };
            let dir = this.dir(volume, parent).await?;
            let entry = dir.find(name).await?.ok_or(Error::NotFound)?;
            Ok(Metadata {
                is_dir: entry.is_directory(),
                size: if entry.is_directory() { 0 } else { entry.len() },
                modified: DateTime::from_fat(entry.modified()),
            })
        })
        .await
    }

    /// Makes every operation that returned before this call durable: when it returns, a crash
    /// of the host leaves the disk with all of them.
    pub async fn flush(&self) -> Result<(), Error> {
        let _turn = self.shared.lock.lock().await;
        self.recover().await?;
        if self.shared.read_only {
            return Ok(());
        }
        self.sync_flush().await
    }

    /// Writes FSInfo and everything waiting, and flushes the device; with the lock held and no
    /// operation in progress.
    async fn sync_flush(&self) -> Result<(), Error> {
        let store = &self.shared.store;
        let Some(volume) = self.take_volume() else {
            return Err(Error::Corrupt);
        };
        store.begin();
        if let Err(e) = volume.sync().await {
            let fault = store.take_fault();
            if !store.rollback() {
                self.shared.volume.replace(Some(volume));
            }
            return Err(error(Failure::Fat(e), fault));
        }
        self.shared.volume.replace(Some(volume));
        store.commit();
        store.flush().await.map_err(|fault| match fault {
            Fault::Device(device) => Error::Device(device),
            Fault::PastEnd => Error::Corrupt,
        })
    }

    /// Undoes an operation whose future was dropped half way, and opens the volume again if the
    /// last operation was undone.
    async fn recover(&self) -> Result<(), Error> {
        let store = &self.shared.store;
        if store.in_op() && store.rollback() {
            *self.shared.volume.borrow_mut() = None;
        }
        if self.shared.volume.borrow().is_none() {
            let volume = open(store).await?;
            *self.shared.volume.borrow_mut() = Some(volume);
        }
        Ok(())
    }

    /// Runs `op` as one operation: alone, and all of it or none of it.
    async fn run<T>(
        &self,
        writes: bool,
        op: impl AsyncFnOnce(&Volume, &FatFs) -> Outcome<T>,
    ) -> Result<T, Error> {
        if writes && self.shared.read_only {
            return Err(Error::ReadOnly);
        }
        let _turn = self.shared.lock.lock().await;
        self.recover().await?;
        let store = &self.shared.store;
        if writes && store.pending() > PENDING_MAX {
            self.sync_flush().await?;
        }
        let Some(volume) = self.take_volume() else {
            return Err(Error::Corrupt);
        };
        store.begin();
        match op(&volume, self).await {
            Ok(value) => {
                store.commit();
                self.shared.volume.replace(Some(volume));
                Ok(value)
            }
            Err(failure) => {
                let fault = store.take_fault();
                // hadris-fat's handle may hold state of the undone operation: the next
                // operation opens the volume again.
                if !store.rollback() {
                    self.shared.volume.replace(Some(volume));
                }
                Err(error(failure, fault))
            }
        }
    }

    /// hadris-fat's handle, taken out for the operation in progress: an operation whose future
    /// is dropped drops it too, and the next one opens the volume again.
    fn take_volume(&self) -> Option<Volume> {
        self.shared.volume.borrow_mut().take()
    }

    /// The directory whose path from the root is `names`.
    async fn dir<'v>(&self, volume: &'v Volume, names: &[&str]) -> Outcome<Dir<'v>> {
        let mut dir = volume.root_dir();
        for name in names {
            let entry = dir.find(name).await?.ok_or(Error::NotFound)?;
            if !entry.is_directory() {
                return Err(Error::NotADirectory.into());
            }
            self.check_dir(&entry)?;
            dir = dir.open_entry(&entry)?;
        }
        Ok(dir)
    }

    /// The file at `path`, checked to fit on the volume.
    async fn file(&self, volume: &Volume, path: &str) -> Outcome<FileEntry> {
        let (parent, name) = split(path)?;
        let dir = self.dir(volume, &parent).await?;
        let entry = dir.find(name).await?.ok_or(Error::NotFound)?;
        if entry.is_directory() {
            return Err(Error::IsADirectory.into());
        }
        let layout = &self.shared.layout;
        let capacity = u64::from(layout.max_cluster - 1) * layout.cluster_size;
        let cluster = entry.cluster().0;
        let first_ok = (2..=layout.max_cluster as usize).contains(&cluster);
        if entry.len() > capacity || (!entry.is_empty() && !first_ok) {
            return Err(Error::Corrupt.into());
        }
        Ok(entry)
    }

    /// A subdirectory's entry must point at a cluster of the volume.
    fn check_dir(&self, entry: &FileEntry) -> Outcome<()> {
        let cluster = entry.cluster().0;
        if (2..=self.shared.layout.max_cluster as usize).contains(&cluster) {
            Ok(())
        } else {
            Err(Error::Corrupt.into())
        }
    }

    /// Before a file is read whole, rewritten or removed: its chain must hold just the clusters
    /// its size needs, so that a loop (which never ends) or a chain running into other files is
    /// found instead of followed.
    async fn check_chain(&self, volume: &Volume, entry: &FileEntry) -> Outcome<()> {
        let layout = &self.shared.layout;
        let first = entry.cluster().0;
        if entry.is_empty() && first == 0 {
            return Ok(());
        }
        if !(2..=layout.max_cluster as usize).contains(&first) {
            return Err(Error::Corrupt.into());
        }
        let needed = entry.len().div_ceil(layout.cluster_size).max(1);
        let mut disk = Disk::new(self.shared.store.clone());
        let mut cluster = first;
        let mut count = 1;
        while let Some(next) = volume.fat().next_cluster(&mut disk, cluster).await? {
            count += 1;
            if count > needed {
                return Err(Error::Corrupt.into());
            }
            cluster = next as usize;
        }
        if count < needed {
            return Err(Error::Corrupt.into());
        }
        Ok(())
    }
}
