//! The FAM device: a plain file shared by every node (the host's FAM backing file), or, inside a
//! FAME VM, the ivshmem BAR (PCI 1af4:1110, `resource2`) that QEMU backs with that same file.
//! Mapped once `MAP_SHARED`; reads and writes are memcpy at the offsets of [`crate::geometry`].

use memmap2::MmapRaw;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

/// PCI ids of QEMU's ivshmem device.
const IVSHMEM_VENDOR: &str = "0x1af4";
const IVSHMEM_DEVICE: &str = "0x1110";

pub struct Fam {
    path: PathBuf,
    map: MmapRaw,
}

/// Finds the ivshmem BAR of a FAME VM, if there is one.
pub fn find_ivshmem() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/sys/bus/pci/devices")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|d| {
            let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();
            read("vendor").trim() == IVSHMEM_VENDOR && read("device").trim() == IVSHMEM_DEVICE
        })
        .map(|d| d.join("resource2"))
        .filter(|r| r.exists())
        .collect();
    found.sort();
    found.into_iter().next()
}

impl Fam {
    /// Maps `path`, which must hold at least `needed` bytes.
    pub fn open(path: &Path, needed: u64) -> Result<Fam, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| {
                format!(
                    "cannot open the FAM device {} for reading and writing: {e} (give the FAM backing file with --fam PATH; create it with `truncate -s SIZE PATH`)",
                    path.display()
                )
            })?;
        let len = file
            .metadata()
            .map_err(|e| format!("cannot stat the FAM device {}: {e}", path.display()))?
            .len();
        if len < needed {
            return Err(format!(
                "the FAM device {} is {len} bytes but the Librarian's books need {needed} bytes: grow it (`truncate -s {needed} {}`) or point --fam at the right file",
                path.display(),
                path.display()
            ));
        }
        let map = MmapRaw::map_raw(&file)
            .map_err(|e| format!("cannot map the FAM device {}: {e}", path.display()))?;
        Ok(Fam {
            path: path.to_path_buf(),
            map,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.map.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    fn check(&self, offset: u64, len: usize) {
        // Offsets come from the geometry, which was checked against the device size at start.
        assert!(
            offset + len as u64 <= self.len(),
            "FAM access {offset}+{len} beyond {}",
            self.len()
        );
    }

    /// Copies FAM bytes at `offset` into `out`.
    pub fn read(&self, offset: u64, out: &mut [u8]) {
        self.check(offset, out.len());
        // SAFETY: check() proved [offset, offset + out.len()) lies inside the FAM map, and
        // `out` is our own buffer, so the ranges are valid and cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map.as_ptr().add(offset as usize),
                out.as_mut_ptr(),
                out.len(),
            )
        }
    }

    /// Stores `data` into FAM at `offset`.
    pub fn write(&self, offset: u64, data: &[u8]) {
        self.check(offset, data.len());
        // SAFETY: check() proved [offset, offset + data.len()) lies inside the FAM map; `data`
        // is a separate buffer. Other nodes may store to the same bytes: FAM is shared memory,
        // as documented.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.map.as_mut_ptr().add(offset as usize),
                data.len(),
            )
        }
    }

    /// Drops this process's page-table entries for the FAM mapping. The bytes stay where they are
    /// (the shared file or BAR); the daemon just stops counting the FAM it has touched as its
    /// own resident memory while it is idle. Pages fault back in on the next access.
    pub fn drop_resident(&self) {
        // SAFETY: MADV_DONTNEED on a MAP_SHARED mapping only unmaps pages; their contents live
        // in the backing object, so concurrent readers and writers just fault them back in.
        if let Err(e) = unsafe {
            self.map
                .unchecked_advise(memmap2::UncheckedAdvice::DontNeed)
        } {
            tracing::debug!("madvise(DONTNEED) on the FAM mapping failed: {e}");
        }
    }

    /// Zeroes `len` bytes of FAM at `offset`.
    pub fn zero(&self, offset: u64, len: u64) {
        self.check(offset, len as usize);
        // SAFETY: check() proved [offset, offset + len) lies inside the FAM map.
        unsafe {
            std::ptr::write_bytes(self.map.as_mut_ptr().add(offset as usize), 0, len as usize)
        }
    }
}
