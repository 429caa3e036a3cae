//! The layout of one LFS file as the daemon reports it in the read-only xattr
//! [`LAYOUT_XATTR`]: where each of the file's books lives in the FAM device.
//!
//! The format is line-oriented text so that `getfattr -n user.LFS.Layout` is readable by a human:
//!
//! ```text
//! lfs-layout 1
//! fam /path/to/fam/file-or-resource2
//! book_size 8388608
//! size 12345
//! book <lza> <ig> <book_num> <fam_offset>
//! ...
//! ```
//!
//! One `book` line per book, in file order (book 0 holds file bytes `0..book_size`).

use std::fmt;

/// Name of the xattr the daemon answers locally with a file's layout.
pub const LAYOUT_XATTR: &str = "user.LFS.Layout";

/// First line of the layout text; bumped if the format ever changes.
pub const LAYOUT_MAGIC: &str = "lfs-layout 1";

/// One book of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookPlace {
    /// The book id (LZA, or physical address in PHYSADDR mode).
    pub lza: u64,
    /// Interleave group (node_id - 1 on FAME).
    pub ig: u32,
    /// Book number inside its interleave group.
    pub book_num: u64,
    /// Byte offset of the book's first byte in the FAM device.
    pub fam_offset: u64,
}

/// Where a file's bytes live in FAM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Path of the FAM device on this node (a plain file, or an ivshmem BAR `resource2`).
    pub fam_path: String,
    pub book_size: u64,
    /// File size in bytes when the layout was taken.
    pub size: u64,
    pub books: Vec<BookPlace>,
}

/// Why a layout text could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutError(pub String);

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LayoutError {}

impl Layout {
    /// Renders the layout as the xattr text.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{LAYOUT_MAGIC}\nfam {}\nbook_size {}\nsize {}\n",
            self.fam_path, self.book_size, self.size
        );
        for b in &self.books {
            s.push_str(&format!(
                "book {} {} {} {}\n",
                b.lza, b.ig, b.book_num, b.fam_offset
            ));
        }
        s
    }

    /// Parses the xattr text, rejecting anything malformed with a message that names the line.
    pub fn parse(text: &str) -> Result<Layout, LayoutError> {
        let mut lines = text.lines();
        if lines.next() != Some(LAYOUT_MAGIC) {
            return Err(LayoutError(format!(
                "the {LAYOUT_XATTR} value does not start with \"{LAYOUT_MAGIC}\": the file is not on an lfs-node mount of this version"
            )));
        }
        let mut fam_path = None;
        let mut book_size = None;
        let mut size = None;
        let mut books = vec![];
        for (i, line) in lines.enumerate() {
            let bad = || {
                LayoutError(format!(
                    "line {} of the layout is malformed: {line:?}",
                    i + 2
                ))
            };
            let num = |s: Option<&str>| s.and_then(|s| s.parse::<u64>().ok()).ok_or_else(bad);
            let (key, rest) = line.split_once(' ').ok_or_else(bad)?;
            match key {
                "fam" => fam_path = Some(rest.to_string()),
                "book_size" => book_size = Some(num(Some(rest))?),
                "size" => size = Some(num(Some(rest))?),
                "book" => {
                    let mut f = rest.split(' ');
                    books.push(BookPlace {
                        lza: num(f.next())?,
                        ig: num(f.next())? as u32,
                        book_num: num(f.next())?,
                        fam_offset: num(f.next())?,
                    });
                }
                _ => return Err(bad()),
            }
        }
        let missing = |what: &str| LayoutError(format!("the layout has no \"{what}\" line"));
        let layout = Layout {
            fam_path: fam_path.ok_or_else(|| missing("fam"))?,
            book_size: book_size.ok_or_else(|| missing("book_size"))?,
            size: size.ok_or_else(|| missing("size"))?,
            books,
        };
        if layout.book_size == 0 || !layout.book_size.is_power_of_two() {
            return Err(LayoutError(format!(
                "book_size {} in the layout is not a power of two",
                layout.book_size
            )));
        }
        Ok(layout)
    }

    /// FAM offset of file byte `pos`, if a book backs it.
    pub fn fam_offset(&self, pos: u64) -> Option<u64> {
        let b = self.books.get((pos / self.book_size) as usize)?;
        Some(b.fam_offset + pos % self.book_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let l = Layout {
            fam_path: "/tmp/fam file".into(),
            book_size: 1 << 23,
            size: 100,
            books: vec![BookPlace {
                lza: 1 << 46,
                ig: 1,
                book_num: 3,
                fam_offset: 67 << 23,
            }],
        };
        assert_eq!(Layout::parse(&l.to_text()).unwrap(), l);
        assert_eq!(l.fam_offset(5), Some((67 << 23) + 5));
        assert_eq!(l.fam_offset(1 << 23), None);
    }

    #[test]
    fn rejects_garbage() {
        assert!(Layout::parse("hello").is_err());
        let e = Layout::parse("lfs-layout 1\nbook 1 2\n").unwrap_err();
        assert!(e.0.contains("line 2"), "{e}");
    }
}
