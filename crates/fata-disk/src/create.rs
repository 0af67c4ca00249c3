//! Making an image from a host directory: scan the tree, size the image, format it and write
//! every directory and file into it.
//!
//! The image's size comes from a model of the space FAT needs: each file takes whole clusters,
//! each directory (but FAT16's fixed root) at least one cluster for its entries (32 bytes each;
//! a long name adds one per 13 UTF-16 units), and the FAT tables and reserved sectors take what
//! hadris-fat's formatter computes for the size. The model is an upper bound, so an image it
//! says fits does hold the files.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use hadris_fat::format::{FatFormatOptions, FatTypeSelection, FatVolumeFormatter};
use hadris_fat::{FatDir, FatVolume, FatVolumeWriteExt};

use crate::{Error, FAT32_FROM, FILE_MAX, FatKind, LARGEST_IMAGE, SMALLEST_IMAGE};

/// How to make an image.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// The image's size in bytes; `None` sizes it to the files plus headroom.
    pub size: Option<u64>,
    /// The volume label (at most 11 characters); `None` leaves it `NO NAME`, as mkfs.fat does.
    pub label: Option<String>,
    /// Whether an existing file at the image's path may be replaced.
    pub replace: bool,
}

/// How far the writing has come, for a progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Files written so far.
    pub files: u64,
    /// Files to write in all.
    pub files_total: u64,
    /// Bytes of file data written so far.
    pub bytes: u64,
    /// Bytes of file data to write in all.
    pub bytes_total: u64,
}

/// What [`create`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The image's size in bytes.
    pub size: u64,
    /// FAT16 or FAT32.
    pub kind: FatKind,
    /// Bytes per cluster.
    pub cluster_bytes: u64,
    /// Files written.
    pub files: u64,
    /// Directories written (not counting the root).
    pub directories: u64,
    /// Bytes of file data written.
    pub bytes: u64,
    /// Symbolic links and special files left out: FAT holds neither.
    pub skipped: Vec<PathBuf>,
}

/// A file or directory to write.
struct Node {
    name: String,
    host: PathBuf,
    kind: Kind,
}

enum Kind {
    File { size: u64 },
    Dir { children: Vec<Node> },
}

/// The host tree, with totals.
struct Tree {
    nodes: Vec<Node>,
    files: u64,
    directories: u64,
    bytes: u64,
    skipped: Vec<PathBuf>,
}

/// Makes the FAT image `image` from the files and directories below `dir`; `progress` hears of
/// each chunk written. The image is written beside its final path and renamed into place, so a
/// failure leaves no half-made image behind.
pub fn create(
    dir: &Path,
    image: &Path,
    options: &CreateOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Created, Error> {
    if let Some(label) = &options.label {
        check_label(label)?;
    }
    if !options.replace && std::fs::symlink_metadata(image).is_ok() {
        return Err(Error::Exists(image.to_path_buf()));
    }
    if image.is_dir() {
        return Err(Error::WriteImage {
            path: image.to_path_buf(),
            source: std::io::Error::other("it is a directory; give a file name with -o"),
        });
    }
    let meta = std::fs::metadata(dir).map_err(|source| Error::ReadHost {
        path: dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(Error::NotADirectory(dir.to_path_buf()));
    }
    let tree = scan_tree(dir)?;
    let label = options.label.is_some();
    let size = match options.size {
        Some(size) => {
            if !size.is_multiple_of(512) {
                return Err(Error::NotSectors(size));
            }
            if size > LARGEST_IMAGE {
                return Err(Error::TooLarge {
                    what: format!("an image of {}", crate::format_size(size)),
                });
            }
            if !fits(&tree, label, 0, size) {
                let smallest = smallest_fit(&tree, label, 0).ok_or_else(too_many)?;
                return Err(Error::TooSmall { size, smallest });
            }
            size
        }
        None => {
            let headroom = (tree.bytes / 4).max(1 << 20);
            let fit = smallest_fit(&tree, label, headroom).ok_or_else(too_many)?;
            let rounded = fit.next_multiple_of(1 << 20);
            if fits(&tree, label, headroom, rounded) {
                rounded
            } else {
                fit
            }
        }
    };
    let geometry = geometry(
        size,
        root_slots(&tree.nodes, label),
        options.label.as_deref(),
    )
    .expect("a size that fits has a geometry");
    let partial = partial_path(image);
    let result = write_image(&partial, &tree, &geometry, progress).and_then(|()| {
        std::fs::rename(&partial, image).map_err(|source| Error::WriteImage {
            path: image.to_path_buf(),
            source,
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result?;
    Ok(Created {
        size,
        kind: if geometry.fat32 {
            FatKind::Fat32
        } else {
            FatKind::Fat16
        },
        cluster_bytes: geometry.cluster_bytes,
        files: tree.files,
        directories: tree.directories,
        bytes: tree.bytes,
        skipped: tree.skipped,
    })
}

fn too_many() -> Error {
    Error::TooLarge {
        what: "these files need more room than FAT32 gives".into(),
    }
}

/// `IMAGE` with `.partial-PID` added, in the same directory, so the rename stays on one file
/// system.
fn partial_path(image: &Path) -> PathBuf {
    let mut name = image.as_os_str().to_owned();
    name.push(format!(".partial-{}", std::process::id()));
    name.into()
}

/// Checks a volume label against what a FAT boot sector holds.
fn check_label(label: &str) -> Result<(), Error> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || " !#$%&'()-@^_`{}~".contains(c);
    if label.is_empty() || label.len() > 11 || !label.chars().all(allowed) {
        return Err(Error::Label(label.to_string()));
    }
    Ok(())
}

/// Checks that FAT can hold `name` as a long name.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.encode_utf16().count() > 255 {
        return Err("it is longer than 255 UTF-16 code units");
    }
    if name
        .chars()
        .any(|c| c < ' ' || c == '\u{7f}' || "\"*/:<>?\\|".contains(c))
    {
        return Err("it holds a control character or one of \" * / : < > ? \\ |");
    }
    if name.ends_with(['.', ' ']) {
        return Err("it ends in a dot or a space, which FAT drops");
    }
    Ok(())
}

/// Reads the tree below `dir`.
fn scan_tree(dir: &Path) -> Result<Tree, Error> {
    let mut tree = Tree {
        nodes: Vec::new(),
        files: 0,
        directories: 0,
        bytes: 0,
        skipped: Vec::new(),
    };
    tree.nodes = scan(dir, &mut tree)?;
    Ok(tree)
}

fn scan(dir: &Path, tree: &mut Tree) -> Result<Vec<Node>, Error> {
    let read = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::ReadHost { path, source }
    };
    let mut nodes = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read(dir))? {
        let entry = entry.map_err(read(dir))?;
        let host = entry.path();
        let name = entry.file_name().into_string().map_err(|_| Error::Name {
            path: host.clone(),
            why: "it is not UTF-8",
        })?;
        check_name(&name).map_err(|why| Error::Name {
            path: host.clone(),
            why,
        })?;
        let kind = entry.file_type().map_err(read(&host))?;
        let kind = if kind.is_dir() {
            tree.directories += 1;
            Kind::Dir {
                children: scan(&host, tree)?,
            }
        } else if kind.is_file() {
            let size = entry.metadata().map_err(read(&host))?.len();
            if size > FILE_MAX {
                return Err(Error::FileTooLarge { path: host, size });
            }
            tree.files += 1;
            tree.bytes += size;
            Kind::File { size }
        } else {
            tree.skipped.push(host);
            continue;
        };
        nodes.push(Node { name, host, kind });
    }
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let mut folded: Vec<(String, &Node)> =
        nodes.iter().map(|n| (n.name.to_lowercase(), n)).collect();
    folded.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(pair) = folded.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(Error::CaseClash {
            first: pair[0].1.host.clone(),
            second: pair[1].1.host.clone(),
        });
    }
    Ok(nodes)
}

/// Directory entries (32 bytes each) a name takes: the short entry and, at most, one long-name
/// entry per 13 UTF-16 units.
fn slots(name: &str) -> u64 {
    1 + (name.encode_utf16().count() as u64).div_ceil(13)
}

/// Entries the root directory needs: its children's and the volume label's.
fn root_slots(nodes: &[Node], label: bool) -> u64 {
    nodes.iter().map(|n| slots(&n.name)).sum::<u64>() + u64::from(label)
}

/// Clusters the files and directories below a directory take (not the directory's own).
fn clusters_below(nodes: &[Node], cluster: u64) -> u64 {
    nodes
        .iter()
        .map(|node| match &node.kind {
            Kind::File { size } => size.div_ceil(cluster),
            Kind::Dir { children } => {
                let entries = 2 + children.iter().map(|n| slots(&n.name)).sum::<u64>();
                (entries * 32).div_ceil(cluster).max(1) + clusters_below(children, cluster)
            }
        })
        .sum()
}

/// The layout of an image of one size.
#[derive(Debug)]
struct Geometry {
    options: FatFormatOptions,
    fat32: bool,
    cluster_bytes: u64,
    /// Clusters of the data region.
    clusters: u64,
}

/// The layout of an image of `size` bytes whose root needs `root_entries` entries: FAT32 from
/// [`FAT32_FROM`] with the formatter's cluster size (4 KiB up to 8 GiB, as mkfs.fat), FAT16 below
/// it with the smallest clusters FAT16 allows at the size. `None` when no FAT16 volume of that
/// size has room for the root's entries, or the size is out of range.
fn geometry(size: u64, root_entries: u64, label: Option<&str>) -> Option<Geometry> {
    if !(SMALLEST_IMAGE..=LARGEST_IMAGE).contains(&size) {
        return None;
    }
    let base = || {
        let options = FatFormatOptions::new(size);
        match label {
            Some(label) => options.volume_label(label),
            None => options,
        }
    };
    let accept = |options: FatFormatOptions, fat32| {
        let params = FatVolumeFormatter::calculate_params(&options).ok()?;
        Some(Geometry {
            fat32,
            cluster_bytes: u64::from(params.sectors_per_cluster) * params.sector_size as u64,
            clusters: u64::from(params.cluster_count),
            options,
        })
    };
    if size >= FAT32_FROM {
        return accept(base().fat_type(FatTypeSelection::Fat32), true);
    }
    // FAT16's root has a fixed number of entries, a multiple of 16 (a 512-byte sector's worth).
    let root_entry_count = u16::try_from(root_entries.max(512).next_multiple_of(16)).ok()?;
    (0..7).find_map(|shift| {
        let mut options = base()
            .fat_type(FatTypeSelection::Fat16)
            .sectors_per_cluster(1 << shift);
        options.root_entry_count = root_entry_count;
        accept(options, false)
    })
}

/// Whether an image of `size` bytes holds the tree and `headroom` more bytes of files.
fn fits(tree: &Tree, label: bool, headroom: u64, size: u64) -> bool {
    let root = root_slots(&tree.nodes, label);
    let Some(geometry) = geometry(size, root, None) else {
        return false;
    };
    let c = geometry.cluster_bytes;
    let root_clusters = if geometry.fat32 {
        (root * 32).div_ceil(c).max(1)
    } else {
        0
    };
    let need = root_clusters + clusters_below(&tree.nodes, c) + headroom.div_ceil(c);
    need <= geometry.clusters
}

/// The smallest size, in whole KiB, whose image holds the tree and `headroom` more bytes;
/// `None` when not even the largest does.
///
/// Whether a tree fits is not monotonic in the size: where FAT16's cluster count would pass its
/// limit the clusters double, and a tree of many small files may fit just below that size and
/// not just above it. So the sizes are taken in runs of one layout (FAT type and cluster size),
/// in order, and the first run with a size that fits holds the answer.
fn smallest_fit(tree: &Tree, label: bool, headroom: u64) -> Option<u64> {
    const K: u64 = 1024;
    let root = root_slots(&tree.nodes, label);
    let layout = |kib: u64| geometry(kib * K, root, None).map(|g| (g.fat32, g.cluster_bytes));
    let fits_kib = |kib: u64| fits(tree, label, headroom, kib * K);
    let last = LARGEST_IMAGE / K;
    let mut start = SMALLEST_IMAGE / K;
    while start <= last {
        let here = layout(start);
        // The last size of this run: layouts only grow with the size.
        let (mut lo, mut hi) = (start, last);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if layout(mid) == here {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let end = lo;
        if here.is_some() && fits_kib(end) {
            let (mut lo, mut hi) = (start, end);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if fits_kib(mid) {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            return Some(lo * K);
        }
        start = end + 1;
    }
    None
}

/// Formats the file at `path` with `geometry` and writes the tree into it.
fn write_image(
    path: &Path,
    tree: &Tree,
    geometry: &Geometry,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(), Error> {
    let write_err = |source| Error::WriteImage {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(write_err)?;
    file.set_len(geometry.options.volume_size)
        .map_err(write_err)?;
    let fat = |what: String| {
        let path = path.to_path_buf();
        move |source| Error::Format { path, what, source }
    };
    let volume = FatVolumeFormatter::format(file, geometry.options.clone())
        .map_err(fat("formatting it".into()))?;
    let mut done = Progress {
        files: 0,
        files_total: tree.files,
        bytes: 0,
        bytes_total: tree.bytes,
    };
    progress(&done);
    let mut writer = Writer {
        volume: &volume,
        image: path,
        done: &mut done,
        progress,
        buf: vec![0u8; 1 << 20],
    };
    writer.write_dir(&volume.root_dir(), &tree.nodes, "")?;
    volume.sync().map_err(fat("finishing it".into()))?;
    volume.into_inner().sync_all().map_err(write_err)
}

/// Writes nodes into an image, counting progress.
struct Writer<'a> {
    volume: &'a FatVolume<File>,
    image: &'a Path,
    done: &'a mut Progress,
    progress: &'a mut dyn FnMut(&Progress),
    buf: Vec<u8>,
}

impl Writer<'_> {
    fn fat(&self, what: String) -> impl FnOnce(hadris_fat::Error) -> Error + use<> {
        let path = self.image.to_path_buf();
        move |source| Error::Format { path, what, source }
    }

    fn write_dir(
        &mut self,
        dir: &FatDir<'_, File>,
        nodes: &[Node],
        prefix: &str,
    ) -> Result<(), Error> {
        for node in nodes {
            let path = format!("{prefix}/{}", node.name);
            match &node.kind {
                Kind::Dir { children } => {
                    let sub = self
                        .volume
                        .create_dir(dir, &node.name)
                        .map_err(self.fat(format!("creating directory {path}")))?;
                    self.write_dir(&sub, children, &path)?;
                }
                Kind::File { size } => self.write_file(dir, node, *size, &path)?,
            }
        }
        Ok(())
    }

    fn write_file(
        &mut self,
        dir: &FatDir<'_, File>,
        node: &Node,
        size: u64,
        path: &str,
    ) -> Result<(), Error> {
        let entry = self
            .volume
            .create_file(dir, &node.name)
            .map_err(self.fat(format!("creating {path}")))?;
        let read = |source| Error::ReadHost {
            path: node.host.clone(),
            source,
        };
        let mut host = File::open(&node.host).map_err(read)?;
        let changed = || Error::ReadHost {
            path: node.host.clone(),
            source: std::io::Error::other(
                "it changed while the image was being made: keep the directory still and run again",
            ),
        };
        if size > 0 {
            let mut writer = self
                .volume
                .write_file(&entry)
                .map_err(self.fat(format!("writing {path}")))?;
            let mut written = 0u64;
            loop {
                let n = host.read(&mut self.buf).map_err(read)?;
                if n == 0 {
                    break;
                }
                written += n as u64;
                if written > size {
                    return Err(changed());
                }
                writer
                    .write(&self.buf[..n])
                    .map_err(self.fat(format!("writing {path}")))?;
                self.done.bytes += n as u64;
                (self.progress)(self.done);
            }
            if written != size {
                return Err(changed());
            }
            writer
                .finish()
                .map_err(self.fat(format!("writing {path}")))?;
        } else if host.read(&mut [0u8; 1]).map_err(read)? != 0 {
            return Err(changed());
        }
        self.done.files += 1;
        (self.progress)(self.done);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_of(files: &[(&str, u64)]) -> Tree {
        let nodes = files
            .iter()
            .map(|(name, size)| Node {
                name: name.to_string(),
                host: PathBuf::from(name),
                kind: Kind::File { size: *size },
            })
            .collect();
        Tree {
            nodes,
            files: files.len() as u64,
            directories: 0,
            bytes: files.iter().map(|f| f.1).sum(),
            skipped: Vec::new(),
        }
    }

    #[test]
    fn small_images_are_fat16_and_large_ones_fat32_as_mkfs_fat_makes_them() {
        let small = geometry(4 << 20, 1, None).unwrap();
        assert!(!small.fat32);
        assert_eq!(small.cluster_bytes, 512);
        let mid = geometry(256 << 20, 1, None).unwrap();
        assert!(!mid.fat32);
        assert_eq!(mid.cluster_bytes, 4096);
        let below = geometry(FAT32_FROM - 1024, 1, None).unwrap();
        assert!(!below.fat32);
        assert_eq!(below.cluster_bytes, 8192);
        let large = geometry(FAT32_FROM, 1, None).unwrap();
        assert!(large.fat32);
        assert_eq!(large.cluster_bytes, 4096);
        assert!(geometry(SMALLEST_IMAGE - 1024, 1, None).is_none());
        // A root too large for FAT16's fixed one.
        assert!(geometry(64 << 20, 70_000, None).is_none());
    }

    #[test]
    fn the_smallest_fit_is_the_smallest_size_that_fits() {
        let tree = tree_of(&[("a", 10 << 20), ("b", 0), ("c", 1)]);
        let smallest = smallest_fit(&tree, false, 0).unwrap();
        assert!(fits(&tree, false, 0, smallest));
        assert!(!fits(&tree, false, 0, smallest - 1024));
        assert!(smallest > 10 << 20 && smallest < 11 << 20, "{smallest}");
        // An empty tree fits the smallest image.
        assert_eq!(smallest_fit(&tree_of(&[]), false, 0), Some(SMALLEST_IMAGE));
    }

    #[test]
    fn many_small_files_find_the_size_below_a_cluster_change() {
        // 60,000 one-byte files fit FAT16 with 2 KiB clusters (at most 65,524 of them, so up to
        // about 128 MiB), not FAT16 with 4 KiB clusters until far larger.
        let names: Vec<String> = (0..60_000).map(|i| format!("{i}")).collect();
        let files: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 1)).collect();
        let mut tree = tree_of(&files[..1]);
        tree.nodes = vec![Node {
            name: "d".into(),
            host: PathBuf::from("d"),
            kind: Kind::Dir {
                children: tree_of(&files).nodes,
            },
        }];
        let smallest = smallest_fit(&tree, false, 0).unwrap();
        assert!(fits(&tree, false, 0, smallest));
        assert!(smallest < 128 << 20, "{smallest}");
        assert!(!fits(&tree, false, 0, 130 << 20));
    }

    #[test]
    fn names_fat_cannot_hold_are_refused() {
        assert!(check_name("a long name with spaces.html").is_ok());
        assert!(check_name("caf\u{e9}").is_ok());
        for bad in ["a:b", "a*", "tab\t", "dot.", "space ", "q?"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_name(&"x".repeat(255)).is_ok());
        assert!(check_name(&"x".repeat(256)).is_err());
        assert!(check_label("FATA DOCS").is_ok());
        assert!(check_label("site-2").is_ok());
        assert!(check_label("twelve chars").is_err());
        assert!(check_label("a/b").is_err());
        assert!(check_label("").is_err());
    }
}
