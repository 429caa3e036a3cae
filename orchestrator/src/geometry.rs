//! How the FAM is cut into books, exactly as FAME's configure script does it, and the
//! `node_fame.ini` that tells `book-register` about it.

use crate::size::format_size;

/// The script starts with 8 MiB books and doubles them until the pool has at most this many.
pub const MAX_BOOKS: u64 = 10_000;
/// The script's first book size.
pub const FIRST_BOOK_SIZE: u64 = 8 << 20;
/// Smallest book `--book-size` accepts: one page of the FAM mapping.
pub const MIN_BOOK_SIZE: u64 = 4 << 10;

/// The books of a cluster: `nodes` nodes of `books_per_node` books of `book_size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub nodes: u32,
    pub book_size: u64,
    pub books_per_node: u64,
}

impl Geometry {
    /// Cuts `fam_bytes` into books for `nodes` nodes. An explicit `book_size` wins over the
    /// script's rule; it must still leave every node at least one book.
    pub fn new(nodes: u32, fam_bytes: u64, book_size: Option<u64>) -> Result<Geometry, String> {
        let book_size = match book_size {
            Some(b) => {
                if !b.is_power_of_two() || b < MIN_BOOK_SIZE {
                    return Err(format!(
                        "--book-size {}: a book must be a power of two of at least {}; try --book-size 8M or leave it out",
                        format_size(b),
                        format_size(MIN_BOOK_SIZE)
                    ));
                }
                b
            }
            None => {
                let mut b = FIRST_BOOK_SIZE;
                while fam_bytes / b > MAX_BOOKS {
                    b *= 2;
                }
                b
            }
        };
        let books_per_node = fam_bytes / book_size / u64::from(nodes.max(1));
        if books_per_node == 0 {
            return Err(format!(
                "--book-size {} with --fam {} leaves no book for each of {nodes} nodes; use smaller books or a bigger --fam",
                format_size(book_size),
                format_size(fam_bytes)
            ));
        }
        Ok(Geometry {
            nodes,
            book_size,
            books_per_node,
        })
    }

    pub fn books_total(&self) -> u64 {
        self.books_per_node * u64::from(self.nodes)
    }

    /// The INI text, byte for byte what the configure script writes.
    pub fn fame_ini(&self) -> String {
        format!(
            "[global]\nnode_count = {}\nbook_size_bytes = {}\nnvm_size_per_node = {}B\n",
            self.nodes,
            format_size(self.book_size),
            self.books_per_node
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_example() {
        let g = Geometry::new(4, 32 << 30, None).unwrap();
        assert_eq!(
            g.fame_ini(),
            "[global]\nnode_count = 4\nbook_size_bytes = 8M\nnvm_size_per_node = 1024B\n"
        );
    }

    #[test]
    fn books_double_until_at_most_ten_thousand() {
        // 64G / 8M = 8192 books: still 8M.
        assert_eq!(Geometry::new(1, 64 << 30, None).unwrap().book_size, 8 << 20);
        // 128G / 8M = 16384 > 10000: 16M books, 8192 of them.
        let g = Geometry::new(2, 128 << 30, None).unwrap();
        assert_eq!((g.book_size, g.books_per_node), (16 << 20, 4096));
        // 1T: 128M books, 8192 of them.
        assert_eq!(
            Geometry::new(1, 1 << 40, None).unwrap().book_size,
            128 << 20
        );
    }

    #[test]
    fn books_per_node_rounds_down_like_the_script() {
        let g = Geometry::new(3, 1 << 30, None).unwrap();
        assert_eq!((g.book_size, g.books_per_node), (8 << 20, 42));
        assert_eq!(Geometry::new(80, 1 << 30, None).unwrap().books_per_node, 1);
    }

    #[test]
    fn explicit_book_size_wins_and_is_checked() {
        let g = Geometry::new(4, 32 << 30, Some(1 << 30)).unwrap();
        assert_eq!((g.book_size, g.books_per_node), (1 << 30, 8));
        assert!(Geometry::new(4, 32 << 30, Some(3 << 20)).is_err());
        assert!(Geometry::new(4, 32 << 30, Some(1024)).is_err());
        let e = Geometry::new(64, 1 << 30, Some(1 << 30)).unwrap_err();
        assert!(e.contains("leaves no book"), "{e}");
    }
}
