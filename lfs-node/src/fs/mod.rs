//! The LFS file system served through FUSE: metadata from the Librarian, file data in FAM.
//!
//! * [`inodes`]: inode number <-> Librarian path.
//! * [`data`]: open files, their cached book maps, and read/write/truncate in FAM.
//! * [`ops`]: the operations: `do_*` (and `read_data`, `write_data`, `release_handle` in [`data`])
//!   hold the logic, which tests drive without a mount (`lfs-node/tests/fs_logic.rs`), and the
//!   `Filesystem` impl is a thin adapter from FUSE requests to them.
//! * [`xattr`]: extended attributes, including the daemon's own `user.LFS.Layout`.
//! * [`error`]: [`FsError`], what the logic fails with; the adapter logs it once and answers with
//!   its errno.
//!
//! Attributes and names of files are never cached by the kernel (TTL 0) and every open file is
//! `direct_io`, so what one node does to a file is seen at once by the others, which share only
//! the Librarian and the FAM. Directories' names and attributes are kept for a second
//! ([`DIR_TTL`]), so that path walks do not cost a Librarian round trip per directory.

mod data;
mod error;
pub mod inodes;
mod ops;
mod xattr;

use crate::fam::Fam;
use crate::geometry::{Geometry, Shelf, S_IFDIR, S_IFLNK, S_IFMT};
use crate::link::Link;
use crate::zeroing::Zeroer;
use data::OpenShelf;
use fuser::{Errno, FileAttr, FileType, INodeNo};
use inodes::Inodes;
use lfs_proto::request::{CloseShelf, GetShelf, ListOpenShelves};
use lfs_proto::Request;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use error::{FsError, Res};
pub use ops::mount_config;

/// Kernel caching of names and attributes: none (see the module doc).
const TTL: Duration = Duration::ZERO;

/// Kernel caching of a directory's name and attributes: one second, libfuse's default (the
/// original Python daemon set no timeouts of its own, so it ran with that default for every entry). A path walk then does not ask the Librarian for every
/// directory on the way at every open (`/lfs/a/b/f` cost three LOOKUPs before the file's own);
/// a directory renamed or removed on another node is seen here up to a second late.
const DIR_TTL: Duration = Duration::from_secs(1);

/// How long the kernel may keep this entry or these attributes.
fn ttl_of(attr: &FileAttr) -> &'static Duration {
    if attr.kind == FileType::Directory {
        &DIR_TTL
    } else {
        &TTL
    }
}

/// st_blksize: big, so that tools copy in big chunks (each FUSE request costs a round trip).
const BLKSIZE: u32 = 1 << 20;

/// A directory entry as listed at opendir: inode, type, name.
type DirEntry = (u64, FileType, String);

/// Who makes a new name: the caller of the FUSE request. The Librarian makes it theirs (in a
/// setgid directory, of the directory's group).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Maker {
    pub uid: u32,
    pub gid: u32,
}

impl Maker {
    pub fn of(req: &fuser::Request) -> Maker {
        Maker {
            uid: req.uid(),
            gid: req.gid(),
        }
    }
}

pub struct LfsFs {
    link: Arc<Link>,
    fam: Arc<Fam>,
    geo: Arc<Geometry>,
    zeroer: Zeroer,
    inodes: Mutex<Inodes>,
    /// Open files by shelf id.
    open: Mutex<HashMap<u64, Arc<RwLock<OpenShelf>>>>,
    /// FUSE file handle (the Librarian's open handle) -> shelf id.
    handles: Mutex<HashMap<u64, u64>>,
    /// Directory listings taken at opendir, by directory handle.
    dirs: Mutex<HashMap<u64, Vec<DirEntry>>>,
    next_dir_fh: AtomicU64,
    /// Directories' attributes as last fetched, kept for [`DIR_TTL`] like the kernel's copy.
    /// The kernel drops its copy whenever an entry is made or removed in the directory, and with
    /// `default_permissions` it needs one again for the next permission check there: answered
    /// from here, a create costs no extra Librarian round trip (it did: 30 % more time for small
    /// files). A directory changed on another node is seen a second late, as its name already is.
    dir_attrs: Mutex<HashMap<u64, (std::time::Instant, FileAttr)>>,
}

fn kind(mode: u32) -> FileType {
    match mode & S_IFMT {
        S_IFDIR => FileType::Directory,
        S_IFLNK => FileType::Symlink,
        _ => FileType::RegularFile,
    }
}

fn time(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
}

impl LfsFs {
    pub fn new(link: Arc<Link>, fam: Arc<Fam>, geo: Arc<Geometry>, zeroer: Zeroer) -> LfsFs {
        LfsFs {
            link,
            fam,
            geo,
            zeroer,
            inodes: Mutex::new(Inodes::new()),
            open: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_dir_fh: AtomicU64::new(1),
            dir_attrs: Mutex::new(HashMap::new()),
        }
    }

    /// Sends a request to the Librarian.
    fn call<R: Request>(&self, req: &R) -> Res<R::Reply> {
        self.link.call(req).map_err(|e| FsError::from_link(e, req))
    }

    /// Sends a request that removes or moves a name away (destroy, rmdir, rename). If it had to
    /// be resent, ENOENT means its first execution did the work before the reply was lost.
    fn call_removing<R: Request>(&self, req: &R) -> Res<()> {
        match self.link.call(req) {
            Err(e) if e.resent() && e.errno() == libc::ENOENT => Ok(()),
            r => r.map(|_| ()).map_err(|e| FsError::from_link(e, req)),
        }
    }

    /// Sends a request that opens a file (`create_shelf`, `open_shelf`). If it had to be resent, a
    /// first execution whose reply was lost (the Librarian killed after committing it) left an open
    /// record this daemon never learnt about, which would keep the file busy until the node's next
    /// mount: such records of this node on the same file, not held by this daemon, are closed.
    fn call_opening<R: Request<Reply = lfs_proto::reply::Shelf>>(&self, req: &R) -> Res<Shelf> {
        let (s, resent) = self
            .link
            .call_noting_resend(req, self.link.timeout())
            .map_err(|e| FsError::from_link(e, req))?;
        if resent {
            if let Some(mine) = s.open_handle {
                self.close_lost_opens(s.id, mine);
            }
        }
        Ok(s.into())
    }

    fn close_lost_opens(&self, shelf: i64, mine: i64) {
        let Ok(opens) = self.link.call(&ListOpenShelves {}) else {
            return;
        };
        let held: Vec<u64> = self.handles.lock().unwrap().keys().copied().collect();
        for o in opens {
            let (h, s) = (o.id, o.shelf_id);
            if s == shelf
                && o.node_id == self.link.identity().node_id
                && h != mine
                && !held.contains(&(h as u64))
            {
                tracing::warn!("closing open handle {h} of shelf {s}: its reply was lost when the Librarian went away");
                let _ = self.link.call(&CloseShelf {
                    id: s as u64,
                    open_handle: h as u64,
                });
            }
        }
    }

    /// Path of an inode, as last seen.
    fn path(&self, ino: INodeNo) -> Res<String> {
        Ok(self
            .inodes
            .lock()
            .unwrap()
            .path(ino.0)
            .ok_or(Errno::ESTALE)?)
    }

    /// Path of `name` in directory `parent`; names that are not UTF-8 or are hidden are refused.
    fn child(&self, parent: INodeNo, name: &std::ffi::OsStr) -> Res<String> {
        let name = name.to_str().ok_or(Errno::EINVAL)?;
        if name.len() > 255 {
            return Err(Errno::ENAMETOOLONG.into());
        }
        let dir = self.path(parent)?;
        Ok(inodes::child_path(&dir, name))
    }

    fn get_shelf(&self, path: &str) -> Res<Shelf> {
        let s = self.call(&GetShelf {
            path: path.to_string(),
        })?;
        Ok(s.into())
    }

    /// The shelf an inode names, checking that the path still leads to that inode.
    fn shelf_of(&self, ino: INodeNo) -> Res<(String, Shelf)> {
        let path = self.path(ino)?;
        let s = self.get_shelf(&path)?;
        if inodes::ino_of(s.id) != ino.0 {
            // Renamed or replaced behind our back (e.g. by another node).
            return Err(Errno::ESTALE.into());
        }
        Ok((path, s))
    }

    /// A directory's attributes fetched less than [`DIR_TTL`] ago.
    fn cached_dir_attr(&self, ino: INodeNo) -> Option<FileAttr> {
        let cache = self.dir_attrs.lock().unwrap();
        let (at, attr) = cache.get(&ino.0)?;
        (at.elapsed() < DIR_TTL).then_some(*attr)
    }

    /// Forgets cached directory attributes after a change made here (mode, owner, name).
    fn forget_dir_attrs(&self) {
        self.dir_attrs.lock().unwrap().clear();
    }

    fn attr(&self, s: &Shelf) -> FileAttr {
        let ino = inodes::ino_of(s.id);
        // An open file's size may be ahead of the Librarian's record while a write grows it.
        let size = self
            .open
            .lock()
            .unwrap()
            .get(&s.id)
            .map_or(s.size, |o| o.read().unwrap().size.max(s.size));
        let kind = kind(s.mode);
        let attr = FileAttr {
            ino: INodeNo(ino),
            size: if kind == FileType::Directory { 0 } else { size },
            blocks: s.book_count * self.geo.book_size / 512,
            atime: time(s.mtime),
            mtime: time(s.mtime),
            ctime: time(s.ctime.max(s.mtime)),
            crtime: time(s.ctime),
            kind,
            perm: (s.mode & 0o7777) as u16,
            nlink: if kind == FileType::Directory {
                s.link_count.max(2)
            } else {
                1
            },
            uid: s.uid,
            gid: s.gid,
            rdev: 0,
            blksize: BLKSIZE,
            flags: 0,
        };
        if kind == FileType::Directory {
            let now = std::time::Instant::now();
            self.dir_attrs.lock().unwrap().insert(ino, (now, attr));
        }
        attr
    }

    /// Registers a shelf found at `path` and returns its attributes.
    fn entry(&self, path: String, s: &Shelf) -> FileAttr {
        self.inodes
            .lock()
            .unwrap()
            .remember(inodes::ino_of(s.id), path);
        self.attr(s)
    }
}
