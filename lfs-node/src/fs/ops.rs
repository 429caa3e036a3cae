//! The FUSE operations, each mapped to Librarian commands (spec §1.8) with the errno a POSIX
//! program expects.

use super::inodes::{self, ino_of, ROOT_INO};
use super::{ttl_of, FsError, LfsFs, Maker, Res, TTL};
use crate::geometry::{Shelf, S_IFDIR, S_IFREG};
use crate::zeroing::PENDING_ZERO_PREFIX;
use fuser::{
    Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, SessionACL,
    TimeOrNow, WriteFlags,
};
use lfs_proto::reply;
use lfs_proto::request::Request as _;
use lfs_proto::request::{
    Chmod, Chown, CloseShelf, CreateShelf, GetFsStats, ListShelves, Mkdir, OpenShelf, Readlink,
    RenameShelf, Rmdir, SetAmTime, Symlink,
};
use serde_json::Value;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest read/write request the kernel sends (one FUSE round trip per MiB of data).
const MAX_IO: u32 = 1 << 20;

/// Mount options: as the original (`fsname=LibrarianFS`, allow_other, noatime), several request
/// threads so one slow Librarian call does not stall every data access.
pub fn mount_config() -> fuser::Config {
    let mut c = fuser::Config::default();
    c.mount_options = vec![
        MountOption::FSName("LibrarianFS".into()),
        MountOption::Subtype("lfs".into()),
        MountOption::NoAtime,
        MountOption::Dev,
        // The kernel checks permissions against the owners and modes the Librarian keeps, as a
        // local file system's would be (read, write, search, sticky bit, chown's rules, access).
        MountOption::DefaultPermissions,
    ];
    c.acl = SessionACL::All;
    c.n_threads = Some(4);
    c
}

fn generation(s: &Shelf) -> Generation {
    Generation(s.ctime.max(0) as u64)
}

/// Hidden names: pending-zero shelves live in `/` but are the daemon's business.
fn hidden(path: &str) -> bool {
    path.strip_prefix('/')
        .is_some_and(|n| !n.contains('/') && n.starts_with(PENDING_ZERO_PREFIX))
}

fn secs(t: TimeOrNow) -> i64 {
    match t {
        // 0 asks the Librarian for "now".
        TimeOrNow::Now => 0,
        TimeOrNow::SpecificTime(t) => t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(1)
            .max(1),
    }
}

impl LfsFs {
    pub fn do_lookup(&self, parent: INodeNo, name: &OsStr) -> Res<(fuser::FileAttr, Generation)> {
        let path = self.child(parent, name)?;
        if hidden(&path) {
            return Err(Errno::ENOENT.into());
        }
        let s = self.get_shelf(&path)?;
        Ok((self.entry(path, &s), generation(&s)))
    }

    pub fn do_setattr(
        &self,
        ino: INodeNo,
        mode: Option<u32>,
        size: Option<u64>,
        mtime: Option<TimeOrNow>,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Res<fuser::FileAttr> {
        let (path, mut s) = self.shelf_of(ino)?;
        self.forget_dir_attrs();
        let chown = uid.is_some() || gid.is_some();
        if chown {
            // The kernel has checked who may (default_permissions); it also sends the mode with
            // setuid and setgid cleared when a chown must clear them.
            self.call(&Chown {
                path: path.clone(),
                uid: uid.map_or(-1, i64::from),
                gid: gid.map_or(-1, i64::from),
            })?;
        }
        if let Some(size) = size {
            self.truncate(&path, &s, size)?;
        }
        if let Some(mode) = mode {
            self.call(&Chmod {
                path: path.clone(),
                mode: mode & 0o7777,
            })?;
        }
        if let Some(t) = mtime {
            let m = secs(t);
            self.call(&SetAmTime {
                path: path.clone(),
                atime: m,
                mtime: m,
            })?;
        }
        if chown || size.is_some() || mode.is_some() || mtime.is_some() {
            s = self.get_shelf(&path)?;
        }
        Ok(self.attr(&s))
    }

    pub fn do_mkdir(
        &self,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        maker: Maker,
    ) -> Res<(fuser::FileAttr, Generation)> {
        let path = self.child(parent, name)?;
        let mode = S_IFDIR | (mode & !umask & 0o7777);
        self.make_name(
            path.clone(),
            &Mkdir {
                mode,
                path: path.clone(),
                uid: maker.uid,
                gid: maker.gid,
            },
        )
    }

    /// Makes the new name `path` with `req` (`mkdir`, `symlink`) and returns its entry. A lost
    /// reply to a request that did happen makes the resent one answer EEXIST: the name is then
    /// looked up instead.
    fn make_name<R: lfs_proto::Request<Reply = reply::Shelf>>(
        &self,
        path: String,
        req: &R,
    ) -> Res<(fuser::FileAttr, Generation)> {
        let s: Shelf = match self.link.call(req) {
            Err(e) if e.resent() && e.errno() == libc::EEXIST => self.get_shelf(&path)?,
            r => r.map_err(|e| FsError::from_link(e, req))?.into(),
        };
        Ok((self.entry(path, &s), generation(&s)))
    }

    pub fn do_unlink(&self, parent: INodeNo, name: &OsStr) -> Res<()> {
        let path = self.child(parent, name)?;
        if hidden(&path) {
            return Err(Errno::ENOENT.into());
        }
        let s = self.get_shelf(&path)?;
        if s.is_dir() {
            return Err(Errno::EISDIR.into());
        }
        self.remove_file(&path, &s)?;
        self.inodes.lock().unwrap().forget(ino_of(s.id));
        Ok(())
    }

    pub fn do_rmdir(&self, path: &str) -> Res<()> {
        self.forget_dir_attrs();
        let req = Rmdir {
            path: path.to_string(),
        };
        self.call_removing(&req)
    }

    pub fn do_rename(
        &self,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Res<()> {
        self.forget_dir_attrs();
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            return Err(Errno::EINVAL.into());
        }
        let from = self.child(parent, name)?;
        let to = self.child(newparent, newname)?;
        if hidden(&from) || hidden(&to) {
            return Err(Errno::EPERM.into());
        }
        let src = self.get_shelf(&from)?;
        match self.get_shelf(&to) {
            Ok(dst) if dst.id == src.id => return Ok(()),
            Ok(_) if flags.contains(RenameFlags::RENAME_NOREPLACE) => {
                return Err(Errno::EEXIST.into())
            }
            Ok(dst) => {
                // POSIX replace: the old target goes away first (LFS unlink semantics; not atomic).
                match (src.is_dir(), dst.is_dir()) {
                    (true, false) => return Err(Errno::ENOTDIR.into()),
                    (false, true) => return Err(Errno::EISDIR.into()),
                    (true, true) => self.do_rmdir(&to)?,
                    (false, false) => self.remove_file(&to, &dst)?,
                }
                self.inodes.lock().unwrap().forget(ino_of(dst.id));
            }
            Err(e) if e.errno() == Errno::ENOENT => {}
            Err(e) => return Err(e),
        }
        let req = RenameShelf {
            path: from.clone(),
            id: src.id,
            newpath: to.clone(),
        };
        self.call_removing(&req)?;
        self.inodes.lock().unwrap().renamed(&from, &to);
        Ok(())
    }

    pub fn do_create(
        &self,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        maker: Maker,
    ) -> Res<(fuser::FileAttr, Generation, u64)> {
        let path = self.child(parent, name)?;
        if hidden(&path) {
            return Err(Errno::EPERM.into());
        }
        if flags & libc::O_EXCL != 0 {
            // The kernel checked on this node; another node may have created it since.
            match self.get_shelf(&path) {
                Ok(_) => return Err(Errno::EEXIST.into()),
                Err(e) if e.errno() == Errno::ENOENT => {}
                Err(e) => return Err(e),
            }
        }
        let mode = S_IFREG | (mode & !umask & 0o7777);
        let s = self.call_opening(&CreateShelf {
            path: path.clone(),
            mode,
            uid: maker.uid,
            gid: maker.gid,
        })?;
        if s.is_dir() {
            self.close_opened(&s);
            return Err(Errno::EISDIR.into());
        }
        let fh = self.register_open(CreateShelf::COMMAND, &path, &s)?;
        Ok((self.entry(path, &s), generation(&s), fh))
    }

    pub fn do_open(&self, ino: INodeNo) -> Res<u64> {
        let (path, _) = self.shelf_of(ino)?;
        let s = self.call_opening(&OpenShelf { path: path.clone() })?;
        if s.is_dir() {
            self.close_opened(&s);
            return Err(Errno::EISDIR.into());
        }
        self.register_open(OpenShelf::COMMAND, &path, &s)
    }

    /// Closes the open a reply made on a shelf that is not to be opened (a directory): best
    /// effort, the node's next mount releases it anyway.
    fn close_opened(&self, s: &Shelf) {
        if let Some(h) = s.open_handle {
            let _ = self.link.call(&CloseShelf {
                id: s.id,
                open_handle: h,
            });
        }
    }

    pub fn do_opendir(&self, ino: INodeNo) -> Res<u64> {
        let path = self.path(ino)?;
        let list = self.call(&ListShelves { path: path.clone() })?;
        let mut entries = Vec::with_capacity(list.len());
        for (i, s) in list.into_iter().map(Shelf::from).enumerate() {
            let name = s.name.as_str();
            if i == 0 && !s.is_dir() {
                return Err(Errno::ENOTDIR.into());
            }
            let ino = match i {
                0 => ino.0,
                1 if ino.0 == ROOT_INO => ROOT_INO,
                _ => ino_of(s.id),
            };
            if i >= 2 {
                if path == "/" && name.starts_with(PENDING_ZERO_PREFIX) {
                    continue;
                }
                self.inodes
                    .lock()
                    .unwrap()
                    .remember(ino, inodes::child_path(&path, name));
            }
            entries.push((ino, super::kind(s.mode), name.to_string()));
        }
        let fh = self.next_dir_fh.fetch_add(1, Ordering::Relaxed);
        self.dirs.lock().unwrap().insert(fh, entries);
        Ok(fh)
    }

    pub fn do_fallocate(&self, ino: INodeNo, offset: u64, length: u64, mode: i32) -> Res<()> {
        if mode != 0 {
            // Books are allocated whole when the size grows; there is nothing to punch or keep.
            return Err(Errno::EOPNOTSUPP.into());
        }
        let (path, s) = self.shelf_of(ino)?;
        let end = offset.checked_add(length).ok_or(Errno::EFBIG)?;
        if end > self.attr(&s).size {
            self.truncate(&path, &s, end)?;
        }
        Ok(())
    }
}

/// Answers an operation that returns nothing.
fn reply_empty(op: &str, reply: ReplyEmpty, r: Res<()>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e.log(op)),
    }
}

/// Answers an operation that makes a name (mknod, mkdir, symlink, link): its entry.
fn reply_entry(op: &str, reply: ReplyEntry, r: Res<(fuser::FileAttr, Generation)>) {
    match r {
        Ok((attr, g)) => reply.entry(ttl_of(&attr), &attr, g),
        Err(e) => reply.error(e.log(op)),
    }
}

fn reply_xattr(op: &str, reply: ReplyXattr, size: u32, r: Res<Vec<u8>>) {
    match r {
        Ok(data) if size == 0 => reply.size(data.len() as u32),
        Ok(data) if data.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(data) => reply.data(&data),
        Err(e) => reply.error(e.log(op)),
    }
}

impl Filesystem for LfsFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(MAX_IO);
        let _ = config.set_max_readahead(MAX_IO);
        // Lets programs mmap direct_io files (kernel 6.6+); without it shared mmap gives ENODEV.
        if config
            .add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP)
            .is_err()
        {
            tracing::warn!("this kernel cannot mmap direct_io files: plain mmap of LFS files will fail with ENODEV (use the direct map)");
        }
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply_entry("lookup", reply, self.do_lookup(parent, name))
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if let Some(a) = self.cached_dir_attr(ino) {
            return reply.attr(ttl_of(&a), &a);
        }
        match self.shelf_of(ino) {
            Ok((_, s)) => {
                let a = self.attr(&s);
                reply.attr(ttl_of(&a), &a)
            }
            Err(e) => reply.error(e.log("getattr")),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.do_setattr(ino, mode, size, mtime, uid, gid) {
            Ok(a) => reply.attr(ttl_of(&a), &a),
            Err(e) => reply.error(e.log("setattr")),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let r = self
            .path(ino)
            .and_then(|path| self.call(&Readlink { path }));
        match r {
            Ok(t) => reply.data(t.as_bytes()),
            Err(e) => reply.error(e.log("readlink")),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & crate::geometry::S_IFMT != S_IFREG {
            return reply.error(Errno::EPERM);
        }
        match self.do_create(parent, name, mode, umask, libc::O_EXCL, Maker::of(req)) {
            Ok((attr, g, fh)) => {
                self.release_handle(fh);
                reply.entry(&TTL, &attr, g)
            }
            Err(e) => reply.error(e.log("mknod")),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let made = self.do_mkdir(parent, name, mode, umask, Maker::of(req));
        reply_entry("mkdir", reply, made)
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty("unlink", reply, self.do_unlink(parent, name))
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.child(parent, name).and_then(|p| {
            let s = self.get_shelf(&p)?;
            if !s.is_dir() {
                return Err(Errno::ENOTDIR.into());
            }
            self.do_rmdir(&p)?;
            self.inodes.lock().unwrap().forget(ino_of(s.id));
            Ok(())
        });
        reply_empty("rmdir", reply, r)
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let maker = Maker::of(req);
        let r = self.child(parent, link_name).and_then(|path| {
            let target = target.to_str().ok_or(Errno::EINVAL)?.to_string();
            let req = Symlink {
                target,
                path: path.clone(),
                uid: maker.uid,
                gid: maker.gid,
            };
            self.make_name(path, &req)
        });
        reply_entry("symlink", reply, r)
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply_empty(
            "rename",
            reply,
            self.do_rename(parent, name, newparent, newname, flags),
        )
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        // A shelf has exactly one name.
        reply.error(Errno::EPERM);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.do_open(ino) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e.log("open")),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        match self.read_data(ino, fh.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(e.log("read")),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.write_data(ino, fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e.log("write")),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing to flush (data is in FAM once write returns) and no locks. ENOSYS makes the
        // kernel stop sending FLUSH at all (`no_flush`, and close(2) returns 0): one FUSE round
        // trip less per close.
        reply.error(Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.release_handle(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Data is stored in the shared FAM mapping by the time write returns. (Directories have
        // no fsyncdir: fuser answers ENOSYS, which the kernel takes as success for good, as
        // there is nothing to flush in them either.)
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.do_opendir(ino) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e.log("opendir")),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let dirs = self.dirs.lock().unwrap();
        let Some(entries) = dirs.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.dirs.lock().unwrap().remove(&fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.call(&GetFsStats {}) {
            Ok(v) => {
                let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
                let per_book = self.geo.book_size / 4096;
                let blocks = n("books_total") * per_book;
                let free = n("books_total").saturating_sub(n("books_used")) * per_book;
                reply.statfs(blocks, free, free, blocks, free, 4096, 255, 4096)
            }
            Err(e) => reply.error(e.log("statfs")),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        if position != 0 {
            return reply.error(Errno::EINVAL);
        }
        let r = name
            .to_str()
            .ok_or(Errno::EINVAL.into())
            .and_then(|n| self.set_xattr(ino, n, value, flags));
        reply_empty("setxattr", reply, r)
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let r = name
            .to_str()
            .ok_or(Errno::ENODATA.into())
            .and_then(|n| self.get_xattr(ino, n));
        reply_xattr("getxattr", reply, size, r);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        reply_xattr("listxattr", reply, size, self.list_xattr(ino));
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = name
            .to_str()
            .ok_or(Errno::ENODATA.into())
            .and_then(|n| self.remove_xattr(ino, n));
        reply_empty("removexattr", reply, r)
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // No permission checks, as in the original: existence is enough.
        match self.shelf_of(ino) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e.log("access")),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.do_create(parent, name, mode, umask, flags, Maker::of(req)) {
            Ok((attr, g, fh)) => {
                reply.created(&TTL, &attr, g, FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO)
            }
            Err(e) => reply.error(e.log("create")),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        reply_empty(
            "fallocate",
            reply,
            self.do_fallocate(ino, offset, length, mode),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_zero_names_are_hidden_in_root_only() {
        assert!(hidden("/.lfs_pending_zero_12"));
        assert!(!hidden("/d/.lfs_pending_zero_12"));
        assert!(!hidden("/file"));
    }
}
