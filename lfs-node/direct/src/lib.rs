//! Direct map of an LFS file: the file's books, mapped from the FAM device into one contiguous
//! range of the caller's address space, so loads and stores go straight to fabric-attached memory
//! with no daemon in the path and are seen by every node sharing that FAM at once.
//!
//! How it works: the file stays open on its `lfs-node` mount (so the Librarian records the open:
//! the file cannot be unlinked, nor shrunk by another node, while it is mapped), the daemon is
//! asked for the file's layout through the read-only xattr [`LAYOUT_XATTR`], a range of
//! `books x book_size` bytes is reserved with `mmap(PROT_NONE)`, and each book is mapped over its
//! slot with `MAP_FIXED | MAP_SHARED` at its offset in the FAM device (runs of books that are
//! adjacent in FAM are mapped with one call).
//!
//! The map is a snapshot of the file's book list: growing the file afterwards does not extend an
//! existing map (map again, or ask for `min_size` up front).
//!
//! A C ABI over the same code is in [`ffi`] (header `include/lfs_direct.h`).

pub mod ffi;
mod layout;

pub use layout::{BookPlace, Layout, LayoutError, LAYOUT_MAGIC, LAYOUT_XATTR};

use rustix::mm::{MapFlags, ProtFlags};
use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::path::Path;

/// A failure to map, with the errno a C caller gets and a message naming the input, the rule that
/// was broken and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapError {
    pub errno: i32,
    pub msg: String,
}

impl std::fmt::Display for MapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for MapError {}

impl MapError {
    fn io(err: std::io::Error, what: String) -> MapError {
        MapError {
            errno: err.raw_os_error().unwrap_or(libc::EIO),
            msg: format!("{what}: {err}"),
        }
    }
}

/// How to map.
#[derive(Debug, Clone, Copy, Default)]
pub struct MapOptions {
    /// Grow the file to at least this many bytes (through the mount) before mapping; a writable
    /// map with a `min_size` creates the file if it does not exist.
    pub min_size: u64,
    /// Map read-only (the file and the FAM device are opened read-only).
    pub read_only: bool,
}

/// A file's books mapped contiguously. Unmapped and closed on drop.
pub struct DirectMap {
    base: *mut u8,
    mapped: usize,
    layout: Layout,
    _file: File,
    _fam: File,
}

// SAFETY: the mapping is plain shared memory that lives as long as the DirectMap; moving the
// handle to another thread changes nothing about it, and synchronising access is the caller's
// business, as with any shared mapping.
unsafe impl Send for DirectMap {}
// SAFETY: see Send above: &DirectMap only hands out the base pointer and lengths, no interior
// state.
unsafe impl Sync for DirectMap {}

/// Reads a file's layout from its daemon.
pub fn read_layout(file: &File, path: &Path) -> Result<Layout, MapError> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rustix::fs::fgetxattr(file.as_fd(), LAYOUT_XATTR, &mut buf[..]) {
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                return Layout::parse(&text).map_err(|e| MapError {
                    errno: libc::EINVAL,
                    msg: format!("{}: {e}", path.display()),
                });
            }
            Err(rustix::io::Errno::RANGE) if buf.len() < (64 << 20) => {
                let len = buf.len() * 4;
                buf.resize(len, 0);
            }
            Err(e) => {
                let errno = e.raw_os_error();
                let hint = if errno == libc::ENODATA || errno == libc::EOPNOTSUPP {
                    " (the file is not on an lfs-node mount: direct maps need a file under the LFS mount point, e.g. /lfs)"
                } else {
                    ""
                };
                return Err(MapError {
                    errno,
                    msg: format!(
                        "cannot read the layout xattr {LAYOUT_XATTR} of {}: {}{hint}",
                        path.display(),
                        std::io::Error::from_raw_os_error(errno)
                    ),
                });
            }
        }
    }
}

impl DirectMap {
    /// Maps `path` (a file on an lfs-node mount).
    pub fn open(path: impl AsRef<Path>, opts: MapOptions) -> Result<DirectMap, MapError> {
        let path = path.as_ref();
        let file = OpenOptions::new()
            .read(true)
            .write(!opts.read_only)
            .create(!opts.read_only && opts.min_size > 0)
            .truncate(false)
            .open(path)
            .map_err(|e| MapError::io(e, format!("cannot open {}", path.display())))?;
        if opts.min_size > 0 {
            let size = file
                .metadata()
                .map_err(|e| MapError::io(e, format!("cannot stat {}", path.display())))?
                .len();
            if size < opts.min_size {
                if opts.read_only {
                    return Err(MapError {
                        errno: libc::EINVAL,
                        msg: format!(
                            "{} is {size} bytes, smaller than min_size {}, and a read-only map cannot grow it: map it writable or grow it first",
                            path.display(),
                            opts.min_size
                        ),
                    });
                }
                file.set_len(opts.min_size).map_err(|e| {
                    MapError::io(
                        e,
                        format!("cannot grow {} to {} bytes", path.display(), opts.min_size),
                    )
                })?;
            }
        }
        let layout = read_layout(&file, path)?;
        let fam = OpenOptions::new()
            .read(true)
            .write(!opts.read_only)
            .open(&layout.fam_path)
            .map_err(|e| {
                MapError::io(
                    e,
                    format!(
                        "cannot open the FAM device {} named by the layout of {} (direct maps need read{} access to it; run as root)",
                        layout.fam_path,
                        path.display(),
                        if opts.read_only { "" } else { "/write" }
                    ),
                )
            })?;
        let map = Self::map_books(&layout, &fam, opts.read_only)?;
        Ok(DirectMap {
            base: map.0,
            mapped: map.1,
            layout,
            _file: file,
            _fam: fam,
        })
    }

    fn map_books(
        layout: &Layout,
        fam: &File,
        read_only: bool,
    ) -> Result<(*mut u8, usize), MapError> {
        let bs = layout.book_size as usize;
        let total = layout.books.len() * bs;
        if total == 0 {
            return Ok((std::ptr::NonNull::<u8>::dangling().as_ptr(), 0));
        }
        let fam_len = fam.metadata().map(|m| m.len()).unwrap_or(0);
        if let Some(b) = layout
            .books
            .iter()
            .find(|b| fam_len != 0 && b.fam_offset + layout.book_size > fam_len)
        {
            return Err(MapError {
                errno: libc::ERANGE,
                msg: format!(
                    "book at FAM offset {} lies beyond the end of the FAM device {} ({fam_len} bytes): the daemon and this node disagree on the FAM device",
                    b.fam_offset, layout.fam_path
                ),
            });
        }
        // Reserve the whole range first so the books land next to each other.
        // SAFETY: an anonymous PROT_NONE reservation at an address the kernel picks touches no
        // existing memory.
        let base = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                total,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }
        .map_err(|e| MapError {
            errno: e.raw_os_error(),
            msg: format!("cannot reserve {total} bytes of address space: {e}"),
        })?;
        let prot = if read_only {
            ProtFlags::READ
        } else {
            ProtFlags::READ | ProtFlags::WRITE
        };
        let mut i = 0;
        while i < layout.books.len() {
            // Extend the run while the next book follows this one in FAM too.
            let mut j = i + 1;
            while j < layout.books.len()
                && layout.books[j].fam_offset == layout.books[j - 1].fam_offset + layout.book_size
            {
                j += 1;
            }
            // SAFETY: i < books.len(), so i * bs is within the `total` bytes reserved at base.
            let at = unsafe { (base as *mut u8).add(i * bs) };
            // SAFETY: MAP_FIXED over [at, at + (j - i) * bs), which lies inside our own
            // reservation (j <= books.len()), so it replaces only memory this function
            // reserved.
            let r = unsafe {
                rustix::mm::mmap(
                    at.cast(),
                    (j - i) * bs,
                    prot,
                    MapFlags::SHARED | MapFlags::FIXED,
                    fam.as_fd(),
                    layout.books[i].fam_offset,
                )
            };
            if let Err(e) = r {
                // SAFETY: base and total are the reservation made above, which nothing else
                // refers to yet.
                unsafe {
                    let _ = rustix::mm::munmap(base, total);
                }
                return Err(MapError {
                    errno: e.raw_os_error(),
                    msg: format!(
                        "cannot map book {i} (FAM offset {}) of {}: {e}",
                        layout.books[i].fam_offset, layout.fam_path
                    ),
                });
            }
            i = j;
        }
        Ok((base.cast(), total))
    }

    /// Start of the mapping: file byte 0.
    pub fn as_ptr(&self) -> *mut u8 {
        self.base
    }

    /// The file's size when it was mapped.
    pub fn len(&self) -> usize {
        self.layout.size as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes mapped: whole books, at least [`len`](Self::len).
    pub fn mapped_len(&self) -> usize {
        self.mapped
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The file's bytes as a slice.
    ///
    /// # Safety
    /// Other processes and nodes may store into this memory at any time; the caller accepts that
    /// the contents can change under the reference (treat it as volatile shared memory).
    pub unsafe fn as_slice(&self) -> &[u8] {
        std::slice::from_raw_parts(self.base, self.len())
    }

    /// The file's bytes as a mutable slice.
    ///
    /// # Safety
    /// As [`as_slice`](Self::as_slice), and the map must not be read-only.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        std::slice::from_raw_parts_mut(self.base, self.len())
    }
}

impl Drop for DirectMap {
    fn drop(&mut self) {
        if self.mapped > 0 {
            // SAFETY: base and mapped are the reservation made by `open`, unmapped only here,
            // once.
            unsafe {
                let _ = rustix::mm::munmap(self.base.cast(), self.mapped);
            }
        }
    }
}
