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

use super::{bad_reply, LfsFs, Res};
use crate::geometry::Book;
use fuser::{Errno, INodeNo};
use lfs_direct::{BookPlace, Layout, LAYOUT_XATTR};
use lfs_proto::Command;
use serde_json::{json, Value};

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
            return Err(Errno::ENODATA);
        }
        let v = self.call(Command::ListShelfBooks, json!({ "path": path }))?;
        let mut books = vec![];
        for b in v.as_array().map(Vec::as_slice).unwrap_or_default() {
            let b = Book::from_json(b).ok_or_else(|| bad_reply(&path, "book", b))?;
            let fam_offset = self.geo.fam_offset(&b).map_err(|_| Errno::EIO)?;
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
            return Err(Errno::ENODATA);
        }
        let (path, _) = self.shelf_of(ino)?;
        let v = self.call(Command::GetXattr, json!({"path": path, "xattr": name}))?;
        match v.get("value") {
            Some(Value::String(s)) => Ok(s.as_bytes().to_vec()),
            _ => Err(Errno::ENODATA),
        }
    }

    pub(super) fn list_xattr(&self, ino: INodeNo) -> Res<Vec<u8>> {
        let (path, _) = self.shelf_of(ino)?;
        let v = self.call(Command::ListXattrs, json!({ "path": path }))?;
        let names = v
            .get("value")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|n| !READ_ONLY.contains(n));
        let mut out = vec![];
        for n in names {
            out.extend_from_slice(n.as_bytes());
            out.push(0);
        }
        Ok(out)
    }

    pub(super) fn set_xattr(&self, ino: INodeNo, name: &str, value: &[u8], flags: i32) -> Res<()> {
        if READ_ONLY.contains(&name) {
            return Err(Errno::ENOTSUP);
        }
        if !name.starts_with("user.") {
            return Err(Errno::ENOTSUP);
        }
        if flags & (libc::XATTR_CREATE | libc::XATTR_REPLACE) != 0 {
            let exists = match self.get_xattr(ino, name) {
                Ok(_) => true,
                Err(e) if e == Errno::ENODATA => false,
                Err(e) => return Err(e),
            };
            if exists && flags & libc::XATTR_CREATE != 0 {
                return Err(Errno::EEXIST);
            }
            if !exists && flags & libc::XATTR_REPLACE != 0 {
                return Err(Errno::ENODATA);
            }
        }
        let (path, _) = self.shelf_of(ino)?;
        self.call(
            Command::SetXattr,
            json!({"path": path, "xattr": name, "value": to_wire(value)}),
        )?;
        Ok(())
    }

    pub(super) fn remove_xattr(&self, ino: INodeNo, name: &str) -> Res<()> {
        if !name.starts_with("user.") {
            return Err(Errno::ENODATA);
        }
        let (path, s) = self.shelf_of(ino)?;
        // A new file's values (the Librarian refuses to remove any user.LFS.* name).
        let reset = match name {
            POLICY if s.is_file() => {
                let v = self.call(
                    Command::GetXattr,
                    json!({"path": path, "xattr": "user.LFS.AllocationPolicyDefault"}),
                )?;
                v.get("value").and_then(Value::as_str).map(str::to_string)
            }
            REQUEST if s.is_file() => Some(String::new()),
            _ if name.starts_with("user.LFS.") => return Err(Errno::ENOTSUP),
            _ => None,
        };
        if let Some(value) = reset {
            self.call(
                Command::SetXattr,
                json!({"path": path, "xattr": name, "value": value}),
            )?;
            return Ok(());
        }
        // The Librarian removes missing names silently; POSIX wants ENODATA.
        self.get_xattr(ino, name)?;
        self.call(Command::RemoveXattr, json!({"path": path, "xattr": name}))?;
        Ok(())
    }
}
