//! Extended attributes. `user.*` names go to the Librarian (which enforces the `user.LFS.*`
//! rules); [`LAYOUT_XATTR`] is answered here, read-only, from the file's books, for direct maps
//! and `lfs-node layout`. Other namespaces are not supported.
//!
//! The LFS attributes that describe a file rather than ask something of it ([`READ_ONLY`]) can be
//! read by name but are not listed, and setting or removing them answers EOPNOTSUPP. Copying tools
//! (`cp -a`, `mv`, `rsync -X`) copy what `listxattr` names: a copy then gets the source's policy
//! and interleave request, and its own books, silently. CephFS hides its virtual `ceph.*`
//! attributes from listings for the same reason. Removing one of the two settable ones
//! (AllocationPolicy, InterleaveRequest) puts back what a new file gets, so that `rsync -X` from
//! a file system without them is silent too.

use super::{FsError, LfsFs, Res};
use crate::geometry::Book;
use fuser::{Errno, INodeNo};
use lfs_direct::{BookPlace, Layout, LAYOUT_XATTR};
use lfs_proto::request::{GetXattr, ListShelfBooks, ListXattrs, RemoveXattr, SetXattr};

/// Read by name only; never listed, set or removed.
pub const READ_ONLY: [&str; 4] = [
    LAYOUT_XATTR,
    "user.LFS.Interleave",
    "user.LFS.AllocationPolicyList",
    "user.LFS.InterleaveRequestPos",
];

const POLICY: &str = "user.LFS.AllocationPolicy";
const REQUEST: &str = "user.LFS.InterleaveRequest";

/// Values travel as JSON strings: UTF-8 text as is, other bytes one char per byte.
fn to_wire(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(s) => s.to_string(),
        Err(_) => value.iter().map(|&b| b as char).collect(),
    }
}

impl LfsFs {
    pub(super) fn layout(&self, ino: INodeNo) -> Res<Layout> {
        let (path, s) = self.shelf_of(ino)?;
        if !s.is_file() {
            return Err(Errno::ENODATA.into());
        }
        let listed = self.call(&ListShelfBooks { path: path.clone() })?;
        let mut books = Vec::with_capacity(listed.len());
        for b in &listed {
            let b = Book::from(b);
            let fam_offset = self
                .geo
                .fam_offset(&b)
                .map_err(|e| FsError::fam(&path, e))?;
            books.push(BookPlace {
                lza: b.lza,
                ig: b.ig,
                book_num: b.book_num,
                fam_offset,
            });
        }
        let size = self.attr(&s).size;
        Ok(Layout {
            fam_path: self.fam.path().display().to_string(),
            book_size: self.geo.book_size,
            size,
            books,
        })
    }

    pub(super) fn get_xattr(&self, ino: INodeNo, name: &str) -> Res<Vec<u8>> {
        if name == LAYOUT_XATTR {
            return Ok(self.layout(ino)?.to_text().into_bytes());
        }
        if !name.starts_with("user.") {
            return Err(Errno::ENODATA.into());
        }
        let (path, _) = self.shelf_of(ino)?;
        let x = self.call(&GetXattr {
            path,
            xattr: name.to_string(),
        })?;
        match x.value {
            Some(s) => Ok(s.into_bytes()),
            None => Err(Errno::ENODATA.into()),
        }
    }

    pub(super) fn list_xattr(&self, ino: INodeNo) -> Res<Vec<u8>> {
        let (path, _) = self.shelf_of(ino)?;
        let listed = self.call(&ListXattrs { path })?;
        let names = listed
            .value
            .iter()
            .filter(|n| !READ_ONLY.contains(&n.as_str()));
        let mut out = vec![];
        for n in names {
            out.extend_from_slice(n.as_bytes());
            out.push(0);
        }
        Ok(out)
    }

    pub(super) fn set_xattr(&self, ino: INodeNo, name: &str, value: &[u8], flags: i32) -> Res<()> {
        if READ_ONLY.contains(&name) {
            return Err(Errno::ENOTSUP.into());
        }
        if !name.starts_with("user.") {
            return Err(Errno::ENOTSUP.into());
        }
        if flags & (libc::XATTR_CREATE | libc::XATTR_REPLACE) != 0 {
            let exists = match self.get_xattr(ino, name) {
                Ok(_) => true,
                Err(e) if e.errno() == Errno::ENODATA => false,
                Err(e) => return Err(e),
            };
            if exists && flags & libc::XATTR_CREATE != 0 {
                return Err(Errno::EEXIST.into());
            }
            if !exists && flags & libc::XATTR_REPLACE != 0 {
                return Err(Errno::ENODATA.into());
            }
        }
        let (path, _) = self.shelf_of(ino)?;
        self.call(&SetXattr {
            path,
            xattr: name.to_string(),
            value: to_wire(value),
        })?;
        Ok(())
    }

    pub(super) fn remove_xattr(&self, ino: INodeNo, name: &str) -> Res<()> {
        if !name.starts_with("user.") {
            return Err(Errno::ENODATA.into());
        }
        let (path, s) = self.shelf_of(ino)?;
        // A new file's values (the Librarian refuses to remove any user.LFS.* name).
        let reset = match name {
            POLICY if s.is_file() => {
                self.call(&GetXattr {
                    path: path.clone(),
                    xattr: "user.LFS.AllocationPolicyDefault".into(),
                })?
                .value
            }
            REQUEST if s.is_file() => Some(String::new()),
            _ if name.starts_with("user.LFS.") => return Err(Errno::ENOTSUP.into()),
            _ => None,
        };
        if let Some(value) = reset {
            self.call(&SetXattr {
                path,
                xattr: name.to_string(),
                value,
            })?;
            return Ok(());
        }
        // The Librarian removes missing names silently; POSIX wants ENODATA.
        self.get_xattr(ino, name)?;
        self.call(&RemoveXattr {
            path,
            xattr: name.to_string(),
        })?;
        Ok(())
    }
}
