//! The boot sector, checked before hadris-fat sees it: a volume whose numbers do not fit together
//! or do not fit on the device is refused here, so that the file system code only ever works
//! inside a sane layout (its FATs large enough for every cluster, its data area on the device).

use crate::Error;

/// Where a volume's parts lie, in bytes from the start of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// FAT12, FAT16 or FAT32.
    pub kind: Kind,
    /// Bytes per cluster.
    pub cluster_size: u64,
    /// The highest valid cluster number (clusters are numbered from 2).
    pub max_cluster: u32,
    /// Bytes the volume covers (at most the device's size).
    pub volume_bytes: u64,
}

/// The three FAT variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 12-bit FAT entries: volumes of fewer than 4085 clusters.
    Fat12,
    /// 16-bit FAT entries: fewer than 65525 clusters.
    Fat16,
    /// 28-bit FAT entries, the root directory in a cluster chain.
    Fat32,
}

impl core::fmt::Display for Kind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Kind::Fat12 => "FAT12",
            Kind::Fat16 => "FAT16",
            Kind::Fat32 => "FAT32",
        })
    }
}

/// The bytes a boot sector must have for [`check`].
pub(crate) const BOOT_SECTOR: usize = 512;

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Checks the boot sector `boot` (the device's first 512 bytes) of a device of `device_bytes`
/// bytes and returns the volume's layout.
///
/// [`Error::NotFat`] when the sector does not describe a FAT volume at all; [`Error::Corrupt`]
/// when it does but its numbers contradict each other or the device; [`Error::Unsupported`] for
/// valid volumes this crate does not handle (64 KiB clusters, FAT32 with one active FAT).
pub(crate) fn check(boot: &[u8; BOOT_SECTOR], device_bytes: u64) -> Result<Layout, Error> {
    if boot[510] != 0x55 || boot[511] != 0xAA {
        return Err(Error::NotFat);
    }
    let sector_size = u64::from(u16_at(boot, 11));
    let sectors_per_cluster = u64::from(boot[13]);
    let reserved = u64::from(u16_at(boot, 14));
    let fats = u64::from(boot[16]);
    let root_entries = u64::from(u16_at(boot, 17));
    let total16 = u64::from(u16_at(boot, 19));
    let fat_size16 = u64::from(u16_at(boot, 22));
    let total32 = u64::from(u32_at(boot, 32));
    if !matches!(sector_size, 512 | 1024 | 2048 | 4096)
        || !sectors_per_cluster.is_power_of_two()
        || reserved == 0
        || !matches!(fats, 1 | 2)
    {
        return Err(Error::NotFat);
    }
    let cluster_size = sector_size * sectors_per_cluster;
    if cluster_size > 32 * 1024 {
        return Err(Error::Unsupported);
    }
    let fat32 = root_entries == 0 && fat_size16 == 0;
    let fat_size = if fat32 {
        u64::from(u32_at(boot, 36))
    } else {
        fat_size16
    };
    let total = if total16 != 0 { total16 } else { total32 };
    if fat_size == 0 || total == 0 {
        return Err(Error::Corrupt);
    }
    let volume_bytes = total * sector_size;
    if volume_bytes > device_bytes {
        return Err(Error::Corrupt);
    }
    let root_sectors = (root_entries * 32).div_ceil(sector_size);
    let data_start = reserved + fats * fat_size + root_sectors;
    if data_start >= total {
        return Err(Error::Corrupt);
    }
    let clusters = (total - data_start) / sectors_per_cluster;
    if clusters == 0 {
        return Err(Error::Corrupt);
    }
    let kind = if fat32 {
        Kind::Fat32
    } else if clusters < 4085 {
        Kind::Fat12
    } else if clusters < 65525 {
        Kind::Fat16
    } else {
        // A FAT12/16 header over more clusters than 16-bit entries can number.
        return Err(Error::Corrupt);
    };
    let max_cluster = clusters + 1;
    // Every cluster from 0 to max_cluster needs an entry inside each FAT.
    let fat_bytes_needed = match kind {
        Kind::Fat12 => ((max_cluster + 1) * 3).div_ceil(2),
        Kind::Fat16 => (max_cluster + 1) * 2,
        Kind::Fat32 => (max_cluster + 1) * 4,
    };
    if fat_bytes_needed > fat_size * sector_size {
        return Err(Error::Corrupt);
    }
    if kind == Kind::Fat32 {
        if max_cluster > 0x0FFF_FFF6 {
            return Err(Error::Corrupt);
        }
        let ext_flags = u16_at(boot, 40);
        // Bit 7: the FATs are not mirrored and only the one in bits 0-3 is in use.
        if ext_flags & 0x80 != 0 && ext_flags & 0x0F != 0 {
            return Err(Error::Unsupported);
        }
        if u16_at(boot, 42) != 0 {
            return Err(Error::Unsupported);
        }
        let root = u64::from(u32_at(boot, 44));
        let fs_info = u64::from(u16_at(boot, 48));
        if !(2..=max_cluster).contains(&root) || fs_info == 0 || fs_info >= reserved {
            return Err(Error::Corrupt);
        }
    }
    Ok(Layout {
        kind,
        cluster_size,
        // At most 0x0FFF_FFF6, checked above for FAT32 and by the cluster count for FAT12/16.
        max_cluster: max_cluster as u32,
        volume_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FAT16 boot sector as mkfs.fat writes it for a 16 MiB device (4 sectors per cluster).
    fn fat16() -> [u8; BOOT_SECTOR] {
        let mut boot = [0u8; BOOT_SECTOR];
        boot[11..13].copy_from_slice(&512u16.to_le_bytes());
        boot[13] = 4;
        boot[14..16].copy_from_slice(&4u16.to_le_bytes());
        boot[16] = 2;
        boot[17..19].copy_from_slice(&512u16.to_le_bytes());
        boot[19..21].copy_from_slice(&32768u16.to_le_bytes());
        boot[22..24].copy_from_slice(&32u16.to_le_bytes());
        boot[510] = 0x55;
        boot[511] = 0xAA;
        boot
    }

    fn fat32() -> [u8; BOOT_SECTOR] {
        let mut boot = [0u8; BOOT_SECTOR];
        boot[11..13].copy_from_slice(&512u16.to_le_bytes());
        boot[13] = 1;
        boot[14..16].copy_from_slice(&32u16.to_le_bytes());
        boot[16] = 2;
        boot[32..36].copy_from_slice(&131072u32.to_le_bytes());
        boot[36..40].copy_from_slice(&1009u32.to_le_bytes());
        boot[44..48].copy_from_slice(&2u32.to_le_bytes());
        boot[48..50].copy_from_slice(&1u16.to_le_bytes());
        boot[510] = 0x55;
        boot[511] = 0xAA;
        boot
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn reads_fat16_and_fat32_layouts() {
        let layout = check(&fat16(), 16 * MIB).unwrap();
        assert_eq!(layout.kind, Kind::Fat16);
        assert_eq!(layout.cluster_size, 2048);
        // (32768 - 4 - 64 - 32) / 4 clusters, numbered from 2.
        assert_eq!(layout.max_cluster, 8167 + 1);
        let layout = check(&fat32(), 64 * MIB).unwrap();
        assert_eq!(layout.kind, Kind::Fat32);
        assert_eq!(layout.max_cluster, 131072 - 32 - 2018 + 1);
    }

    #[test]
    fn refuses_what_is_not_fat_or_does_not_fit() {
        assert_eq!(check(&[0; BOOT_SECTOR], MIB), Err(Error::NotFat));
        let mut boot = fat16();
        boot[13] = 3;
        assert_eq!(check(&boot, 16 * MIB), Err(Error::NotFat));
        // The volume claims more than the device holds.
        assert_eq!(check(&fat16(), 8 * MIB), Err(Error::Corrupt));
        // FATs too small for the clusters the volume claims.
        let mut boot = fat16();
        boot[22..24].copy_from_slice(&8u16.to_le_bytes());
        assert_eq!(check(&boot, 16 * MIB), Err(Error::Corrupt));
        // Metadata past the end of the volume.
        let mut boot = fat16();
        boot[14..16].copy_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(check(&boot, 16 * MIB), Err(Error::Corrupt));
        // A FAT32 root directory outside the clusters, or FSInfo outside the reserved sectors.
        let mut boot = fat32();
        boot[44..48].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(check(&boot, 64 * MIB), Err(Error::Corrupt));
        let mut boot = fat32();
        boot[48..50].copy_from_slice(&40u16.to_le_bytes());
        assert_eq!(check(&boot, 64 * MIB), Err(Error::Corrupt));
        // 64 KiB clusters are valid FAT but not handled here.
        let mut boot = fat16();
        boot[13] = 128;
        assert_eq!(check(&boot, 16 * MIB), Err(Error::Unsupported));
    }
}
