//! Open files and their data in FAM.
//!
//! An open file keeps its size and the FAM offset of each of its books. While a node has a file
//! open, no other node can shrink it (the Librarian refuses with EMFILE), so the cached books stay
//! valid: reads and writes inside the cached size go straight to FAM with no Librarian round trip,
//! and only reads past it or writes that grow the file ask the Librarian again.

use super::{FsError, LfsFs, Res};
use crate::geometry::{Book, Shelf};
use crate::zeroing::PENDING_ZERO_PREFIX;
use fuser::Errno;
use lfs_proto::request::{
    BadReply, CloseShelf, DestroyShelf, ListOpenShelves, ListShelfBooks, RenameShelf, ResizeShelf,
};
use lfs_proto::{reply, Command, Request};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub struct OpenShelf {
    pub id: u64,
    pub size: u64,
    /// FAM offset of each book, in file order.
    pub books: Vec<u64>,
    /// Open FUSE handles on this node.
    pub handles: usize,
}

impl LfsFs {
    /// FAM offsets of a shelf's books.
    fn fetch_books(&self, path: &str) -> Res<Vec<u64>> {
        let books = self.call(&ListShelfBooks {
            path: path.to_string(),
        })?;
        self.books_from(path, &books)
    }

    /// FAM offsets of books as a reply lists them.
    fn books_from(&self, path: &str, books: &[reply::Book]) -> Res<Vec<u64>> {
        let mut out = Vec::with_capacity(books.len());
        for b in books {
            let book = Book::from(b);
            let off = self
                .geo
                .fam_offset(&book)
                .map_err(|e| FsError::fam(path, e))?;
            if off + self.geo.book_size > self.fam.len() {
                return Err(FsError::fam(
                    path,
                    format!(
                        "book {:#x} at FAM offset {off} lies beyond the FAM device ({} bytes)",
                        book.lza,
                        self.fam.len()
                    ),
                ));
            }
            out.push(off);
        }
        Ok(out)
    }

    /// Records an open handle (the Librarian's, from the reply to `command`) on a shelf, loading
    /// its books.
    pub(super) fn register_open(&self, command: Command, path: &str, s: &Shelf) -> Res<u64> {
        let fh = s.open_handle.ok_or_else(|| {
            FsError::bad_reply(
                path,
                BadReply::new(
                    command,
                    "open shelf",
                    "no open_handle",
                    &format!("shelf {} without one", s.id),
                ),
            )
        })?;
        let books = if s.book_count > 0 {
            match self.fetch_books(path) {
                Ok(b) => b,
                Err(e) => {
                    let _ = self.link.call(&CloseShelf {
                        id: s.id,
                        open_handle: fh,
                    });
                    return Err(e);
                }
            }
        } else {
            vec![]
        };
        {
            let mut open = self.open.lock().unwrap();
            let o = open.entry(s.id).or_insert_with(|| {
                Arc::new(RwLock::new(OpenShelf {
                    id: s.id,
                    size: s.size,
                    books: vec![],
                    handles: 0,
                }))
            });
            let mut o = o.write().unwrap();
            o.handles += 1;
            if books.len() >= o.books.len() {
                o.size = o.size.max(s.size);
                o.books = books;
            }
        }
        self.handles.lock().unwrap().insert(fh, s.id);
        Ok(fh)
    }

    /// Drops an open handle: on the Librarian first, then here, so that once this node counts
    /// no open the Librarian has none either (unlink checks both).
    pub fn release_handle(&self, fh: u64) {
        let Some(id) = self.handles.lock().unwrap().remove(&fh) else {
            return;
        };
        if let Err(e) = self.link.call(&CloseShelf {
            id,
            open_handle: fh,
        }) {
            tracing::warn!("close_shelf {id}/{fh} failed: {e}");
        }
        let mut open = self.open.lock().unwrap();
        if let Some(o) = open.get(&id).cloned() {
            let mut o = o.write().unwrap();
            o.handles = o.handles.saturating_sub(1);
            if o.handles == 0 {
                open.remove(&id);
            }
        }
    }

    fn open_shelf(&self, fh: u64) -> Res<Arc<RwLock<OpenShelf>>> {
        let id = *self.handles.lock().unwrap().get(&fh).ok_or(Errno::EBADF)?;
        Ok(self
            .open
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .ok_or(Errno::EBADF)?)
    }

    /// Re-reads size and books from the Librarian (another node may have grown the file).
    fn refresh(&self, path: &str, o: &mut OpenShelf) -> Res<()> {
        let s = self.get_shelf(path)?;
        if s.id != o.id {
            return Err(Errno::ESTALE.into());
        }
        o.size = s.size;
        if s.book_count as usize != o.books.len() {
            o.books = self.fetch_books(path)?;
        }
        Ok(())
    }

    /// Visits the FAM pieces of file range `pos..pos+len` (each inside one book).
    fn pieces(
        &self,
        o: &OpenShelf,
        pos: u64,
        len: usize,
        mut f: impl FnMut(u64, usize, usize),
    ) -> Res<()> {
        let bs = self.geo.book_size;
        let mut done = 0usize;
        while done < len {
            let at = pos + done as u64;
            let book = (at / bs) as usize;
            let within = at % bs;
            let n = ((bs - within) as usize).min(len - done);
            let base = *o.books.get(book).ok_or(Errno::EIO)?;
            f(base + within, done, n);
            done += n;
        }
        Ok(())
    }

    pub fn read_data(&self, ino: fuser::INodeNo, fh: u64, pos: u64, size: u32) -> Res<Vec<u8>> {
        let shelf = self.open_shelf(fh)?;
        let mut o = shelf.read().unwrap();
        if pos + size as u64 > o.size {
            drop(o);
            let path = self.path(ino)?;
            self.refresh(&path, &mut shelf.write().unwrap())?;
            o = shelf.read().unwrap();
        }
        if pos >= o.size {
            return Ok(vec![]);
        }
        let len = (size as u64).min(o.size - pos) as usize;
        let mut out = vec![0u8; len];
        self.pieces(&o, pos, len, |off, at, n| {
            self.fam.read(off, &mut out[at..at + n])
        })?;
        Ok(out)
    }

    pub fn write_data(&self, ino: fuser::INodeNo, fh: u64, pos: u64, data: &[u8]) -> Res<u32> {
        let shelf = self.open_shelf(fh)?;
        let end = pos.checked_add(data.len() as u64).ok_or(Errno::EFBIG)?;
        {
            let o = shelf.read().unwrap();
            if end <= o.size {
                self.pieces(&o, pos, data.len(), |off, at, n| {
                    self.fam.write(off, &data[at..at + n])
                })?;
                return Ok(data.len() as u32);
            }
        }
        let path = self.path(ino)?;
        let mut o = shelf.write().unwrap();
        if pos > o.size {
            // A hole: the bytes before `pos` in the last book must read as zeros, which needs the
            // file's real size (another node may have grown it and written there meanwhile).
            self.refresh(&path, &mut o)?;
            if end > o.size {
                self.resize(&path, &mut o, end, pos)?;
            }
        } else if end > o.size {
            // Appending (or overlapping the end): nothing to zero. One round trip that only
            // grows, so a size another node set meanwhile is never shrunk back.
            self.grow(&path, &mut o, end)?;
        }
        self.pieces(&o, pos, data.len(), |off, at, n| {
            self.fam.write(off, &data[at..at + n])
        })?;
        Ok(data.len() as u32)
    }

    /// Zeroes file bytes `from..to` that lie in books the file already has. Growing a file must
    /// show zeros there (POSIX), but a shrink inside a book, or a store through a direct map past
    /// the end, can have left old bytes in the last book. New books are zero already.
    fn zero_gap(&self, books: &[u64], from: u64, to: u64) {
        let to = to.min(books.len() as u64 * self.geo.book_size);
        let mut at = from;
        while at < to {
            let within = at % self.geo.book_size;
            let n = (self.geo.book_size - within).min(to - at);
            self.fam
                .zero(books[(at / self.geo.book_size) as usize] + within, n);
            at += n;
        }
    }

    /// Sets the size of an open shelf, keeping its cache right and queuing freed books for zeroing.
    /// Bytes from `zero_from` up to the new size are zeroed first when it grows (a write passes the
    /// offset it starts at: what it writes needs no zeroing).
    fn resize(&self, path: &str, o: &mut OpenShelf, size: u64, zero_to: u64) -> Res<()> {
        if size > o.size {
            self.zero_gap(&o.books, o.size, zero_to.min(size));
        }
        self.resize_path(path, o.id, size)?;
        o.size = size;
        let count = size.div_ceil(self.geo.book_size) as usize;
        if count < o.books.len() {
            o.books.truncate(count);
        } else if count > o.books.len() {
            o.books = self.fetch_books(path)?;
        }
        Ok(())
    }

    /// ENOSPC for a size needing more books than the whole pool has: no need to ask the Librarian.
    fn within_pool(&self, size: u64) -> Res<()> {
        if size.div_ceil(self.geo.book_size) > self.geo.books_total {
            return Err(Errno::ENOSPC.into());
        }
        Ok(())
    }

    /// Grows an open shelf to at least `size` (never shrinks it), and takes the resulting size and
    /// books from the reply.
    fn grow(&self, path: &str, o: &mut OpenShelf, size: u64) -> Res<()> {
        self.within_pool(size)?;
        let r = self.call(&ResizeShelf {
            path: path.to_string(),
            id: o.id,
            size_bytes: size,
            zero_enabled: true,
            grow_only: true,
            with_books: true,
        })?;
        let bad = |detail: String| {
            FsError::bad_reply(
                path,
                BadReply::new(
                    ResizeShelf::COMMAND,
                    ResizeShelf::REPLY,
                    detail,
                    &serde_json::to_value(&r).unwrap_or_default(),
                ),
            )
        };
        let (Some(new_size), Some(books)) = (r.size_bytes, r.books.as_deref()) else {
            return Err(bad(format!(
                "no {} (asked with grow_only and with_books)",
                if r.size_bytes.is_none() {
                    "size_bytes"
                } else {
                    "books"
                }
            )));
        };
        let books = self.books_from(path, books)?;
        if new_size < size || (books.len() as u64) < new_size.div_ceil(self.geo.book_size) {
            return Err(bad(format!(
                "grown to {size} bytes, the Librarian says {new_size} bytes in {} books",
                books.len()
            )));
        }
        o.size = new_size;
        o.books = books;
        Ok(())
    }

    /// `resize_shelf`, queuing the pending-zero shelf a shrink produces.
    fn resize_path(&self, path: &str, id: u64, size: u64) -> Res<()> {
        self.within_pool(size)?;
        let req = ResizeShelf {
            path: path.to_string(),
            id,
            size_bytes: size,
            zero_enabled: true,
            grow_only: false,
            with_books: false,
        };
        // "Cannot shrink multiply-opened shelf" (EMFILE): another node has it open, or has just
        // closed it and its RELEASE is still on the way. EMFILE would read as "too many open
        // files" to a POSIX program; EBUSY says what it is.
        let r = once_closed(|| match self.link.call(&req) {
            Err(e) if e.errno() == libc::EMFILE => Ok(None),
            r => r.map(Some).map_err(|e| FsError::from_link(e, &req)),
        })?
        .ok_or(Errno::EBUSY)?;
        if let Some(z) = r.z_shelf_path {
            self.zeroer.queue(z);
        }
        Ok(())
    }

    /// truncate(2), open or not.
    pub(super) fn truncate(&self, path: &str, s: &Shelf, size: u64) -> Res<()> {
        if !s.is_file() {
            return Err(if s.is_dir() {
                Errno::EISDIR
            } else {
                Errno::EINVAL
            }
            .into());
        }
        let cached = self.open.lock().unwrap().get(&s.id).cloned();
        match cached {
            Some(o) => {
                let mut o = o.write().unwrap();
                self.refresh(path, &mut o)?;
                if size != o.size {
                    self.resize(path, &mut o, size, size)?;
                }
                Ok(())
            }
            None if size != s.size => {
                if size > s.size && !s.size.is_multiple_of(self.geo.book_size) {
                    let books = self.fetch_books(path)?;
                    self.zero_gap(&books, s.size, size);
                }
                self.resize_path(path, s.id, size)
            }
            None => Ok(()),
        }
    }

    /// Open handles on this node for a shelf.
    pub(super) fn local_opens(&self, id: u64) -> usize {
        self.open
            .lock()
            .unwrap()
            .get(&id)
            .map_or(0, |o| o.read().unwrap().handles)
    }

    /// Is the shelf open anywhere (this node or another), after the close grace?
    fn open_anywhere(&self, id: u64) -> Res<bool> {
        let closed = once_closed(|| {
            if self.local_opens(id) > 0 {
                return Ok(None);
            }
            let opens = self.call(&ListOpenShelves {})?;
            let open = opens.iter().any(|o| o.shelf_id as u64 == id);
            Ok((!open).then_some(()))
        })?;
        Ok(closed.is_none())
    }

    /// LFS unlink of a file (spec §1.9): EBUSY while open anywhere; an empty file is destroyed, a
    /// file with books is renamed to a pending-zero shelf that the zeroing thread clears and frees.
    pub(super) fn remove_file(&self, path: &str, s: &Shelf) -> Res<()> {
        if self.open_anywhere(s.id)? {
            return Err(Errno::EBUSY.into());
        }
        if s.book_count == 0 || s.name.starts_with(PENDING_ZERO_PREFIX) {
            let req = DestroyShelf {
                path: path.to_string(),
            };
            return self.call_removing(&req);
        }
        let zpath = format!("/{PENDING_ZERO_PREFIX}{}", s.id);
        let req = RenameShelf {
            path: path.to_string(),
            id: s.id,
            newpath: zpath.clone(),
        };
        self.call_removing(&req)?;
        self.zeroer.queue(zpath);
        Ok(())
    }
}

/// How long a shelf may stay open before unlink, rename over it or shrinking it fails with EBUSY.
///
/// The kernel sends FUSE RELEASE after close(2) has returned, and the node then tells the
/// Librarian. So `close(fd)` on one node followed at once by `unlink(path)` on the same or another
/// node races with that close; without a grace it fails now and then (it did in CI).
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Tries `attempt` until it gets through (`Some`) or `CLOSE_GRACE` has passed (`None`: the file
/// is still open), backing off from 1 ms to 32 ms.
fn once_closed<T>(mut attempt: impl FnMut() -> Res<Option<T>>) -> Res<Option<T>> {
    let deadline = Instant::now() + CLOSE_GRACE;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(done) = attempt()? {
            return Ok(Some(done));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(32));
    }
}
