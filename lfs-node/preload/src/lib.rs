//! `liblfs_preload.so`: plain `mmap()` of an LFS file is FAM.
//!
//! Preloaded into a program (`LD_PRELOAD`, or `/etc/ld.so.preload` in a node), it interposes
//! `mmap`, `mmap64`, `munmap` and `mremap`. A mapping of a file on an lfs-node mount is made the
//! way the direct map ([`lfs_direct`]) makes one: the file's layout is read from the daemon
//! (xattr `user.LFS.Layout`) and each book of the requested range is mapped from the FAM device
//! at its offset, so loads and stores go straight to fabric-attached memory and every node sharing
//! that FAM sees them at once, as with the original's tmfs. Every other call goes to the kernel
//! unchanged.
//!
//! What holds (the README's "Plain mmap of /lfs files" says the same for users):
//! * `MAP_SHARED`: the FAM itself. Ordinary shared memory across nodes: use atomics or fences for
//!   ordering; `msync` is not needed (and does nothing harmful).
//! * `MAP_PRIVATE`: a private copy-on-write map of the same FAM pages: pages the process has not
//!   written show the FAM (other nodes' stores included), written pages are its own.
//! * Offsets must be page-aligned (EINVAL otherwise, as from the kernel); lengths and offsets need
//!   not be book-aligned.
//! * The file's books are mapped at `mmap` time. Bytes past the file's size but inside its last
//!   book are FAM like the rest; pages past its last book raise SIGBUS when touched, as pages past
//!   the end of a file do. A file that grows later is not seen growing by an existing map (the
//!   pages past its old books keep raising SIGBUS); `mremap` to a bigger size, or a new `mmap`,
//!   maps the new books. While mapped, the file is held open (a duplicate of the descriptor, closed
//!   when the last page of the map is unmapped), so the Librarian refuses other nodes' unlinks and
//!   the books cannot be handed to another file.
//! * `munmap` of part of a map leaves the rest; `mprotect`, `madvise` and `msync` act on the FAM
//!   mapping (a read-only descriptor gives a map that cannot be made writable, as from the
//!   kernel). `fork`: the child shares the maps (MAP_SHARED) or gets copies (MAP_PRIVATE), as
//!   always. `exec` ends the maps, and closes the held descriptors (close-on-exec).
//! * Files are recognised by their descriptor (a FUSE file system answering the layout xattr), so
//!   paths through symlinks, `openat` or a relative path do not matter.
//! * `LFS_MMAP=page-cache` in the environment turns the library off for that process (the kernel's
//!   FUSE page cache, per node, as without it). Statically linked programs are not covered: they
//!   map through the kernel; use `lfs_direct`.

use std::ffi::{c_int, c_void, CString};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use lfs_direct::{Layout, LAYOUT_XATTR};

/// The environment variable that turns the library off for one program (`page-cache`).
pub const MODE_ENV: &str = "LFS_MMAP";
/// `statfs.f_type` of FUSE file systems.
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// One mapped range of an LFS file, as the process sees it now.
struct Region {
    start: usize,
    len: usize,
    /// File offset of `start`.
    file_off: u64,
    prot: c_int,
    /// `MAP_SHARED` or `MAP_PRIVATE`.
    kind: c_int,
    /// The held descriptor; shared by the pieces a partial munmap leaves.
    file: Arc<OwnedFd>,
}

static REGIONS: Mutex<Vec<Region>> = Mutex::new(Vec::new());
/// How many regions there are, read without the lock so that munmap of other memory stays cheap.
static COUNT: AtomicUsize = AtomicUsize::new(0);

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os(MODE_ENV).is_none_or(|v| v != "page-cache"))
}

fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    *PAGE.get_or_init(|| unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize)
}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e }
}

fn errno() -> c_int {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The kernel's mmap, past any interposer (ours included).
unsafe fn sys_mmap(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    libc::syscall(libc::SYS_mmap, addr, len, prot, flags, fd, off) as *mut c_void
}

unsafe fn sys_munmap(addr: *mut c_void, len: usize) -> c_int {
    libc::syscall(libc::SYS_munmap, addr, len) as c_int
}

/// The layout of the file behind `fd` if it is an LFS file; `Err(errno)` if it is one whose
/// layout cannot be read.
fn lfs_layout(fd: RawFd) -> Option<Result<Layout, c_int>> {
    // SAFETY: a zeroed statfs is a valid out-parameter.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fd is the caller's; st is a valid pointer.
    if unsafe { libc::fstatfs(fd, &mut st) } != 0 || st.f_type != FUSE_SUPER_MAGIC {
        return None;
    }
    let name = CString::new(LAYOUT_XATTR).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::fgetxattr(fd, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            let text = String::from_utf8_lossy(&buf[..n as usize]);
            return Some(Layout::parse(&text).map_err(|_| libc::EIO));
        }
        match errno() {
            libc::ERANGE if buf.len() < (64 << 20) => buf.resize(buf.len() * 4, 0),
            // Another FUSE file system: not ours.
            libc::ENODATA | libc::EOPNOTSUPP => return None,
            e => return Some(Err(e)),
        }
    }
}

/// Maps `len` bytes (a multiple of the page size) of the file at `file_off` onto `base`, which
/// is reserved already: each run of books adjacent in FAM with one `MAP_FIXED` call, pages past
/// the last book from an empty memfd (SIGBUS when touched).
/// How a map's pages are mapped: protection, `MAP_SHARED` or `MAP_PRIVATE`, and the caller's
/// flags that carry over (`MAP_POPULATE`, `MAP_NORESERVE`, `MAP_LOCKED`).
#[derive(Clone, Copy)]
struct MapAs {
    prot: c_int,
    kind: c_int,
    extra: c_int,
}

unsafe fn map_books(
    base: usize,
    len: usize,
    file_off: u64,
    how: MapAs,
    layout: &Layout,
    fam: RawFd,
) -> Result<(), c_int> {
    let MapAs { prot, kind, extra } = how;
    let bs = layout.book_size;
    let mut pos = 0usize;
    while pos < len {
        let at = file_off + pos as u64;
        let b = (at / bs) as usize;
        if b >= layout.books.len() {
            let past = libc::memfd_create(c"lfs-past-the-books".as_ptr(), libc::MFD_CLOEXEC);
            if past < 0 {
                return Err(errno());
            }
            let r = sys_mmap(
                (base + pos) as *mut c_void,
                len - pos,
                prot,
                kind | libc::MAP_FIXED,
                past,
                0,
            );
            let e = errno();
            libc::close(past);
            return if r == libc::MAP_FAILED {
                Err(e)
            } else {
                Ok(())
            };
        }
        // The run of books from b that follow each other in FAM.
        let mut end = b + 1;
        while end < layout.books.len()
            && layout.books[end].fam_offset == layout.books[end - 1].fam_offset + bs
        {
            end += 1;
        }
        let run_left = (end as u64 * bs - at) as usize;
        let n = run_left.min(len - pos);
        let r = sys_mmap(
            (base + pos) as *mut c_void,
            n,
            prot,
            kind | libc::MAP_FIXED | extra,
            fam,
            (layout.books[b].fam_offset + at % bs) as i64,
        );
        if r == libc::MAP_FAILED {
            return Err(errno());
        }
        pos += n;
    }
    Ok(())
}

/// Opens the FAM device of `layout`, read-write when the map may be written through to it.
fn open_fam(layout: &Layout, writable: bool) -> Result<OwnedFd, c_int> {
    let path = CString::new(layout.fam_path.as_str()).map_err(|_| libc::EINVAL)?;
    let mode = if writable {
        libc::O_RDWR
    } else {
        libc::O_RDONLY
    };
    // SAFETY: path is a valid C string.
    let fd = unsafe { libc::open(path.as_ptr(), mode | libc::O_CLOEXEC) };
    if fd < 0 {
        let e = errno();
        eprintln!(
            "lfs-preload: cannot open the FAM device {} ({}) to map an LFS file: run as root, or set {MODE_ENV}=page-cache",
            layout.fam_path,
            std::io::Error::from_raw_os_error(e)
        );
        return Err(e);
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Forgets the regions (or the parts of them) in `[start, start + len)`.
fn forget(start: usize, len: usize) {
    let end = start + len;
    let mut regions = REGIONS.lock().unwrap_or_else(|e| e.into_inner());
    let mut kept = Vec::with_capacity(regions.len() + 1);
    for r in regions.drain(..) {
        let r_end = r.start + r.len;
        if r_end <= start || r.start >= end {
            kept.push(r);
            continue;
        }
        if r.start < start {
            kept.push(Region {
                len: start - r.start,
                file: r.file.clone(),
                ..r
            });
        }
        if r_end > end {
            kept.push(Region {
                start: end,
                len: r_end - end,
                file_off: r.file_off + (end - r.start) as u64,
                file: r.file.clone(),
                ..r
            });
        }
    }
    COUNT.store(kept.len(), Ordering::Release);
    *regions = kept;
}

fn remember(r: Region) {
    forget(r.start, r.len);
    let mut regions = REGIONS.lock().unwrap_or_else(|e| e.into_inner());
    regions.push(r);
    COUNT.store(regions.len(), Ordering::Release);
}

/// A mapping of an LFS file: what [`mmap`] does for one.
#[allow(clippy::too_many_arguments)]
unsafe fn map_lfs(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: RawFd,
    off: i64,
    layout: &Layout,
) -> Result<*mut c_void, c_int> {
    let page = page_size();
    if len == 0 || off < 0 || !(off as usize).is_multiple_of(page) {
        return Err(libc::EINVAL);
    }
    let kind = match flags & libc::MAP_TYPE {
        libc::MAP_SHARED | libc::MAP_SHARED_VALIDATE => libc::MAP_SHARED,
        libc::MAP_PRIVATE => libc::MAP_PRIVATE,
        _ => return Err(libc::EINVAL),
    };
    let access = libc::fcntl(fd, libc::F_GETFL) & libc::O_ACCMODE;
    if access == libc::O_WRONLY
        || (kind == libc::MAP_SHARED && prot & libc::PROT_WRITE != 0 && access != libc::O_RDWR)
    {
        return Err(libc::EACCES);
    }
    let fam = open_fam(layout, kind == libc::MAP_SHARED && access == libc::O_RDWR)?;
    let held = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0);
    if held < 0 {
        return Err(errno());
    }
    let held = Arc::new(OwnedFd::from_raw_fd(held));
    let total = round_up(len, page);
    let fixed = flags & libc::MAP_FIXED != 0;
    let base = if fixed {
        addr
    } else {
        // Reserve the whole range so the books land next to each other.
        let r = sys_mmap(
            addr,
            total,
            libc::PROT_NONE,
            libc::MAP_PRIVATE
                | libc::MAP_ANONYMOUS
                | libc::MAP_NORESERVE
                | (flags & libc::MAP_FIXED_NOREPLACE),
            -1,
            0,
        );
        if r == libc::MAP_FAILED {
            return Err(errno());
        }
        r
    };
    let extra = flags & (libc::MAP_POPULATE | libc::MAP_NORESERVE | libc::MAP_LOCKED);
    use std::os::fd::AsRawFd;
    if let Err(e) = map_books(
        base as usize,
        total,
        off as u64,
        MapAs { prot, kind, extra },
        layout,
        fam.as_raw_fd(),
    ) {
        // A FAM device the kernel cannot map privately (a PCI BAR may refuse): a private copy.
        let copied = kind == libc::MAP_PRIVATE && private_copy(base as usize, total, off, prot, fd);
        if !copied {
            if !fixed {
                sys_munmap(base, total);
            }
            return Err(e);
        }
    }
    remember(Region {
        start: base as usize,
        len: total,
        file_off: off as u64,
        prot,
        kind,
        file: held,
    });
    Ok(base)
}

/// Fills `[base, base + len)` with a private, anonymous copy of the file from `off` (what
/// `MAP_PRIVATE` promises, as of now), with `prot`. Pages past the end of the file are zero.
unsafe fn private_copy(base: usize, len: usize, off: i64, prot: c_int, fd: RawFd) -> bool {
    let r = sys_mmap(
        base as *mut c_void,
        len,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
        -1,
        0,
    );
    if r == libc::MAP_FAILED {
        return false;
    }
    let mut done = 0usize;
    while done < len {
        let n = libc::pread(
            fd,
            (base + done) as *mut c_void,
            len - done,
            off + done as i64,
        );
        if n < 0 {
            return false;
        }
        if n == 0 {
            break;
        }
        done += n as usize;
    }
    libc::mprotect(base as *mut c_void, len, prot) == 0
}

/// The interposed `mmap(2)`.
///
/// # Safety
/// As `mmap(2)`.
#[no_mangle]
pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: libc::off_t,
) -> *mut c_void {
    if fd < 0 || flags & libc::MAP_ANONYMOUS != 0 || !enabled() {
        return sys_mmap(addr, len, prot, flags, fd, off);
    }
    let result = match lfs_layout(fd) {
        None => return sys_mmap(addr, len, prot, flags, fd, off),
        Some(Err(e)) => Err(e),
        Some(Ok(layout)) => map_lfs(addr, len, prot, flags, fd, off, &layout),
    };
    match result {
        Ok(p) => p,
        Err(e) => {
            set_errno(e);
            libc::MAP_FAILED
        }
    }
}

/// The interposed `mmap64` (the same call on 64-bit Linux).
///
/// # Safety
/// As `mmap(2)`.
#[no_mangle]
pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: libc::off64_t,
) -> *mut c_void {
    mmap(addr, len, prot, flags, fd, off)
}

/// The interposed `munmap(2)`: the kernel unmaps, and a map's held descriptor is closed with its
/// last page.
///
/// # Safety
/// As `munmap(2)`.
#[no_mangle]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: usize) -> c_int {
    let rc = sys_munmap(addr, len);
    if rc == 0 && COUNT.load(Ordering::Acquire) > 0 {
        forget(addr as usize, round_up(len, page_size()));
    }
    rc
}

/// The interposed `mremap(2)`. Declared with the optional fifth argument (`new_address`, read
/// only with `MREMAP_FIXED`): on x86-64 a variadic caller passes it in the same register.
///
/// Shrinking is the kernel's. Growing an LFS map maps the added pages from the file's books as
/// they are now; moving keeps the pages (private copies included).
///
/// # Safety
/// As `mremap(2)`.
#[no_mangle]
pub unsafe extern "C" fn mremap(
    old: *mut c_void,
    old_len: usize,
    new_len: usize,
    flags: c_int,
    new_addr: *mut c_void,
) -> *mut c_void {
    let page = page_size();
    let (o, ol, nl) = (
        old as usize,
        round_up(old_len, page),
        round_up(new_len, page),
    );
    let found = (COUNT.load(Ordering::Acquire) > 0)
        .then(|| covering(o, ol))
        .flatten();
    let Some((file_off, prot, kind, file)) = found else {
        return libc::syscall(libc::SYS_mremap, old, old_len, new_len, flags, new_addr)
            as *mut c_void;
    };
    match grow(
        o,
        ol,
        nl,
        flags,
        new_addr as usize,
        file_off,
        prot,
        kind,
        file,
    ) {
        Ok(p) => p as *mut c_void,
        Err(e) => {
            set_errno(e);
            libc::MAP_FAILED
        }
    }
}

/// The map of one file that covers `[o, o + len)` without a gap, possibly in several regions
/// (a map grown before, or split by nothing but our bookkeeping): its file offset at `o`, its
/// protection, kind and held descriptor.
fn covering(o: usize, len: usize) -> Option<(u64, c_int, c_int, Arc<OwnedFd>)> {
    let regions = REGIONS.lock().unwrap_or_else(|e| e.into_inner());
    let first = regions
        .iter()
        .find(|r| r.start <= o && o < r.start + r.len)?;
    let file_off = first.file_off + (o - first.start) as u64;
    let mut reached = first.start + first.len;
    while reached < o + len {
        let next = regions.iter().find(|r| {
            r.start == reached
                && Arc::ptr_eq(&r.file, &first.file)
                && r.file_off == file_off + (reached - o) as u64
        })?;
        reached = next.start + next.len;
    }
    Some((file_off, first.prot, first.kind, first.file.clone()))
}

/// Moves the pages of `[from, from + len)` to `to` (reserved), one kernel mapping at a time: a
/// map of several runs of books is several mappings, and `mremap(2)` moves only one at once.
unsafe fn move_pages(from: usize, len: usize, to: usize) -> Result<(), c_int> {
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|_| libc::EIO)?;
    for line in maps.lines() {
        let Some((lo, hi)) = line.split_whitespace().next().and_then(|r| {
            let (a, b) = r.split_once('-')?;
            Some((
                usize::from_str_radix(a, 16).ok()?,
                usize::from_str_radix(b, 16).ok()?,
            ))
        }) else {
            continue;
        };
        let (lo, hi) = (lo.max(from), hi.min(from + len));
        if lo >= hi {
            continue;
        }
        let m = libc::syscall(
            libc::SYS_mremap,
            lo,
            hi - lo,
            hi - lo,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            to + (lo - from),
        ) as *mut c_void;
        if m == libc::MAP_FAILED {
            return Err(errno());
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
unsafe fn grow(
    o: usize,
    ol: usize,
    nl: usize,
    flags: c_int,
    new_addr: usize,
    file_off: u64,
    prot: c_int,
    kind: c_int,
    file: Arc<OwnedFd>,
) -> Result<usize, c_int> {
    use std::os::fd::AsRawFd;
    let fixed = flags & libc::MREMAP_FIXED != 0;
    let may_move = flags & libc::MREMAP_MAYMOVE != 0;
    if flags & !(libc::MREMAP_FIXED | libc::MREMAP_MAYMOVE) != 0 || (fixed && !may_move) {
        return Err(libc::EINVAL);
    }
    if nl <= ol && !fixed {
        // Shrinking in place: the kernel's, and the tail is forgotten.
        let r = libc::syscall(libc::SYS_mremap, o, ol, nl, 0, 0) as *mut c_void;
        if r == libc::MAP_FAILED {
            return Err(errno());
        }
        forget(o + nl, ol - nl);
        return Ok(o);
    }
    let layout = match lfs_layout(file.as_raw_fd()) {
        Some(Ok(l)) => l,
        Some(Err(e)) => return Err(e),
        None => return Err(libc::EINVAL),
    };
    let access = libc::fcntl(file.as_raw_fd(), libc::F_GETFL) & libc::O_ACCMODE;
    let fam = open_fam(&layout, kind == libc::MAP_SHARED && access == libc::O_RDWR)?;
    let add = nl.saturating_sub(ol);
    let base = if !may_move {
        // In place only: the pages after the map must be free.
        let r = sys_mmap(
            (o + ol) as *mut c_void,
            add,
            libc::PROT_NONE,
            libc::MAP_PRIVATE
                | libc::MAP_ANONYMOUS
                | libc::MAP_NORESERVE
                | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        );
        if r == libc::MAP_FAILED {
            return Err(libc::ENOMEM);
        }
        o
    } else {
        let target = if fixed {
            new_addr as *mut c_void
        } else {
            std::ptr::null_mut()
        };
        let r = sys_mmap(
            target,
            nl,
            libc::PROT_NONE,
            libc::MAP_PRIVATE
                | libc::MAP_ANONYMOUS
                | libc::MAP_NORESERVE
                | if fixed { libc::MAP_FIXED } else { 0 },
            -1,
            0,
        );
        if r == libc::MAP_FAILED {
            return Err(errno());
        }
        // Move the pages as they are (a private map's copies too).
        let keep = ol.min(nl);
        if let Err(e) = move_pages(o, keep, r as usize) {
            sys_munmap(r, nl);
            return Err(e);
        }
        if ol > keep {
            sys_munmap((o + keep) as *mut c_void, ol - keep);
        }
        forget(o, ol);
        remember(Region {
            start: r as usize,
            len: keep,
            file_off,
            prot,
            kind,
            file: file.clone(),
        });
        r as usize
    };
    if add > 0 {
        map_books(
            base + ol,
            add,
            file_off + ol as u64,
            MapAs {
                prot,
                kind,
                extra: 0,
            },
            &layout,
            fam.as_raw_fd(),
        )?;
        remember(Region {
            start: base + ol,
            len: add,
            file_off: file_off + ol as u64,
            prot,
            kind,
            file,
        });
    }
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_unmaps_split_regions_and_keep_file_offsets() {
        let fd = Arc::new(std::fs::File::open("/dev/null").unwrap().into());
        let page = page_size();
        remember(Region {
            start: 100 * page,
            len: 10 * page,
            file_off: 0,
            prot: libc::PROT_READ,
            kind: libc::MAP_SHARED,
            file: Arc::clone(&fd),
        });
        forget(103 * page, 2 * page);
        {
            let regions = REGIONS.lock().unwrap();
            let mut got: Vec<(usize, usize, u64)> = regions
                .iter()
                .map(|r| (r.start / page, r.len / page, r.file_off / page as u64))
                .collect();
            got.sort();
            assert_eq!(got, vec![(100, 3, 0), (105, 5, 5)]);
        }
        assert_eq!(Arc::strong_count(&fd), 3);
        forget(0, 1000 * page);
        assert_eq!(
            Arc::strong_count(&fd),
            1,
            "the held descriptor goes with the last piece"
        );
        assert_eq!(COUNT.load(Ordering::Acquire), 0);
    }
}
