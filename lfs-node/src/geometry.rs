//! Book-to-FAM address math (spec §2.1-2.2): the interleave groups laid end to end in one flat,
//! hole-free FAM space, and the Librarian's shelf and book records as the daemon uses them.

use serde_json::Value;
use std::collections::BTreeMap;

/// The global FAM geometry from `get_fs_stats`.
#[derive(Clone, Debug)]
pub struct Geometry {
    pub book_size: u64,
    pub books_total: u64,
    /// 0 = LZA mode (FAME), 1 = PHYSADDR mode.
    pub bii_mode: i64,
    /// Start of each interleave group in the flat FAM space.
    pub ig_start: BTreeMap<u32, u64>,
    /// Bytes of FAM the flat space needs.
    pub fam_bytes_needed: u64,
}

/// A `get_fs_stats` reply the geometry cannot be built from (the daemon then does not start).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsError {
    #[error("get_fs_stats reply has no integer \"{key}\": {got}")]
    NoInteger { key: &'static str, got: String },
    #[error("the Librarian's book size {0} is not a power of two of at least 4096 bytes")]
    BookSize(u64),
    #[error("get_fs_stats reply has no \"books_per_IG\": {0}")]
    NoGroups(String),
    #[error("books_per_IG key {0:?} is not a group number")]
    GroupKey(String),
}

impl Geometry {
    /// Builds the geometry from a `get_fs_stats` value.
    pub fn from_fs_stats(v: &Value) -> Result<Geometry, StatsError> {
        let num = |key: &'static str| {
            v.get(key)
                .and_then(Value::as_i64)
                .ok_or_else(|| StatsError::NoInteger {
                    key,
                    got: v.to_string(),
                })
        };
        let book_size = num("book_size_bytes")? as u64;
        if book_size == 0 || !book_size.is_power_of_two() || !book_size.is_multiple_of(4096) {
            return Err(StatsError::BookSize(book_size));
        }
        let bii_mode = v.get("BIImode").and_then(Value::as_i64).unwrap_or(0);
        let per_ig = v
            .get("books_per_IG")
            .and_then(Value::as_object)
            .ok_or_else(|| StatsError::NoGroups(v.to_string()))?;
        let mut groups: Vec<(u32, u64, i64)> = vec![];
        for (k, val) in per_ig {
            let ig: u32 = k.parse().map_err(|_| StatsError::GroupKey(k.clone()))?;
            let count = val.get(0).and_then(Value::as_i64).unwrap_or(0) as u64;
            let base = val.get(1).and_then(Value::as_i64).unwrap_or(-1);
            groups.push((ig, count, base));
        }
        groups.sort();
        let mut ig_start = BTreeMap::new();
        let mut next = 0u64;
        let mut needed = 0u64;
        for (ig, count, base) in groups {
            let start = if bii_mode == 1 && base >= 0 {
                base as u64
            } else {
                next
            };
            ig_start.insert(ig, start);
            next = start + count * book_size;
            needed = needed.max(next);
        }
        Ok(Geometry {
            book_size,
            books_total: num("books_total")? as u64,
            bii_mode,
            ig_start,
            fam_bytes_needed: needed,
        })
    }

    /// FAM offset of the first byte of `book`.
    pub fn fam_offset(&self, book: &Book) -> Result<u64, UnknownGroup> {
        let start = self.ig_start.get(&book.ig).ok_or(UnknownGroup {
            lza: book.lza,
            ig: book.ig,
        })?;
        Ok(start + book.book_num * self.book_size)
    }
}

/// A book whose interleave group the Librarian's statistics did not list: its place in FAM is
/// unknown (the Librarian's topology changed under this daemon, or a protocol mismatch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("book {lza:#x} is in interleave group {ig}, which the Librarian did not report")]
pub struct UnknownGroup {
    pub lza: u64,
    pub ig: u32,
}

/// One book of a shelf (`list_shelf_books`).
#[derive(Clone, Copy, Debug)]
pub struct Book {
    pub lza: u64,
    pub ig: u32,
    pub book_num: u64,
}

impl From<&lfs_proto::reply::Book> for Book {
    /// The daemon's view of a book reply.
    fn from(b: &lfs_proto::reply::Book) -> Book {
        Book {
            lza: b.id as u64,
            ig: (b.intlv_group & 0xFFFF) as u32,
            book_num: b.book_num as u64,
        }
    }
}

/// The fields of a shelf record the daemon uses.
#[derive(Clone, Debug)]
pub struct Shelf {
    pub id: u64,
    pub name: String,
    pub mode: u32,
    pub size: u64,
    pub book_count: u64,
    pub ctime: i64,
    pub mtime: i64,
    pub link_count: u32,
    pub parent_id: u64,
    pub open_handle: Option<u64>,
    pub uid: u32,
    pub gid: u32,
}

// The protocol's file-type bits, in the width of a FUSE mode.
pub const S_IFMT: u32 = lfs_proto::mode::S_IFMT as u32;
pub const S_IFDIR: u32 = lfs_proto::mode::S_IFDIR as u32;
pub const S_IFREG: u32 = lfs_proto::mode::S_IFREG as u32;
pub const S_IFLNK: u32 = lfs_proto::mode::S_IFLNK as u32;

impl From<lfs_proto::reply::Shelf> for Shelf {
    /// The daemon's view of a shelf reply.
    fn from(s: lfs_proto::reply::Shelf) -> Shelf {
        Shelf {
            id: s.id as u64,
            name: s.name,
            mode: s.mode as u32,
            size: s.size_bytes.max(0) as u64,
            book_count: s.book_count.max(0) as u64,
            ctime: s.ctime,
            mtime: s.mtime,
            link_count: s.link_count.max(0) as u32,
            parent_id: s.parent_id as u64,
            open_handle: s.open_handle.map(|h| h as u64),
            uid: s.uid,
            gid: s.gid,
        }
    }
}

impl Shelf {
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    pub fn is_file(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn igs_are_laid_end_to_end() {
        let g = Geometry::from_fs_stats(&json!({
            "book_size_bytes": 8 << 20, "books_total": 128, "BIImode": 0,
            "books_per_IG": {"1": [64, -1], "0": [64, -1]}
        }))
        .unwrap();
        let b = Book {
            lza: 0,
            ig: 1,
            book_num: 3,
        };
        assert_eq!(g.fam_offset(&b).unwrap(), (64 + 3) * (8 << 20));
        assert_eq!(g.fam_bytes_needed, 128 * (8 << 20));
        assert!(g
            .fam_offset(&Book {
                lza: 0,
                ig: 7,
                book_num: 0
            })
            .is_err());
    }
}
