//! Extended attributes. `user.*` names go to the Librarian (which enforces the `user.LFS.*`
//! rules); [`LAYOUT_XATTR`] is answered here, read-only, from the file's books, for direct maps
//! and `lfs-node layout`. Other namespaces are not supported.

use super::{LfsFs, Res};
use crate::geometry::Book;
use fuser::{Errno, INodeNo};
use lfs_direct::{BookPlace, Layout, LAYOUT_XATTR};
use serde_json::{json, Value};

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
        let v = self.call("list_shelf_books", json!({ "path": path }))?;
        let mut books = vec![];
        for b in v.as_array().map(Vec::as_slice).unwrap_or_default() {
            let b = Book::from_json(b).ok_or(Errno::EIO)?;
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
        let v = self.call("get_xattr", json!({"path": path, "xattr": name}))?;
        match v.get("value") {
            Some(Value::String(s)) => Ok(s.as_bytes().to_vec()),
            _ => Err(Errno::ENODATA),
        }
    }

    pub(super) fn list_xattr(&self, ino: INodeNo) -> Res<Vec<u8>> {
        let (path, s) = self.shelf_of(ino)?;
        let v = self.call("list_xattrs", json!({ "path": path }))?;
        let mut names: Vec<String> = v
            .get("value")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect();
        if s.is_file() {
            names.push(LAYOUT_XATTR.to_string());
        }
        let mut out = vec![];
        for n in names {
            out.extend_from_slice(n.as_bytes());
            out.push(0);
        }
        Ok(out)
    }

    pub(super) fn set_xattr(&self, ino: INodeNo, name: &str, value: &[u8], flags: i32) -> Res<()> {
        if name == LAYOUT_XATTR {
            return Err(Errno::EPERM);
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
            "set_xattr",
            json!({"path": path, "xattr": name, "value": to_wire(value)}),
        )?;
        Ok(())
    }

    pub(super) fn remove_xattr(&self, ino: INodeNo, name: &str) -> Res<()> {
        if name == LAYOUT_XATTR {
            return Err(Errno::EPERM);
        }
        if !name.starts_with("user.") {
            return Err(Errno::ENODATA);
        }
        // The Librarian removes missing names silently; POSIX wants ENODATA.
        if !name.starts_with("user.LFS.") {
            self.get_xattr(ino, name)?;
        }
        let (path, _) = self.shelf_of(ino)?;
        self.call("remove_xattr", json!({"path": path, "xattr": name}))?;
        Ok(())
    }
}
