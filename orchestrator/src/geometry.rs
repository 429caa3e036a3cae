//! How the FAM is cut into books, as FAME's configure script does it, and the `node_fame.ini`
//! that tells `book-register` about it.
//!
//! One deliberate difference: the script divided the books evenly over the nodes and wrote
//! whatever came out, but `book-register` (like the original `book_register.py`) rejects a
//! node whose books do not split over its four media controllers. So books per node are rounded
//! down to a multiple of 4 (`--fam 1G --nodes 3` gives 40, not 42); where the script's count is
//! already a multiple of 4 (every power-of-two node count) nothing changes.

use crate::size::format_size;

/// The script starts with 8 MiB books and doubles them until the pool has at most this many.
pub const MAX_BOOKS: u64 = 10_000;
/// The script's first book size.
pub const FIRST_BOOK_SIZE: u64 = 8 << 20;
/// Book sizes `book-register` accepts.
pub const MIN_BOOK_SIZE: u64 = 2 << 20;
pub const MAX_BOOK_SIZE: u64 = 8 << 30;
/// A node's books are split over its 4 media controllers, at most 8192 books in all.
pub const MCS_PER_NODE: u64 = 4;
pub const MAX_BOOKS_PER_NODE: u64 = 8192;

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
                if !b.is_power_of_two() || !(MIN_BOOK_SIZE..=MAX_BOOK_SIZE).contains(&b) {
                    return Err(format!(
                        "--book-size {}: a book must be a power of two from {} to {}; try --book-size 8M or leave it out",
                        format_size(b),
                        format_size(MIN_BOOK_SIZE),
                        format_size(MAX_BOOK_SIZE)
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
        let even_share = fam_bytes / book_size / u64::from(nodes.max(1));
        let books_per_node = even_share / MCS_PER_NODE * MCS_PER_NODE;
        if books_per_node == 0 {
            return Err(format!(
                "--fam {} in {} books gives each of {nodes} nodes {even_share} book(s), but a node needs at least {MCS_PER_NODE} (one per media controller); use a bigger --fam, fewer --nodes or smaller books",
                format_size(fam_bytes),
                format_size(book_size)
            ));
        }
        if books_per_node > MAX_BOOKS_PER_NODE {
            return Err(format!(
                "--book-size {} gives each node {books_per_node} books, more than the {MAX_BOOKS_PER_NODE} a node can have; use bigger books or leave --book-size out",
                format_size(book_size)
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
    fn books_per_node_round_down_to_whole_media_controllers() {
        let g = Geometry::new(3, 1 << 30, None).unwrap();
        assert_eq!((g.book_size, g.books_per_node), (8 << 20, 40));
        assert_eq!(
            Geometry::new(80, 32 << 30, None).unwrap().books_per_node,
            48
        );
        let e = Geometry::new(80, 1 << 30, None).unwrap_err();
        assert!(
            e.contains("needs at least 4") && e.contains("--fam 1G"),
            "{e}"
        );
    }

    #[test]
    fn explicit_book_size_wins_and_is_checked() {
        let g = Geometry::new(4, 32 << 30, Some(1 << 30)).unwrap();
        assert_eq!((g.book_size, g.books_per_node), (1 << 30, 8));
        assert!(Geometry::new(4, 32 << 30, Some(3 << 20)).is_err());
        assert!(Geometry::new(4, 32 << 30, Some(1 << 20)).is_err());
        assert!(Geometry::new(4, 32 << 30, Some(16 << 30)).is_err());
        let e = Geometry::new(64, 1 << 30, Some(1 << 30)).unwrap_err();
        assert!(e.contains("needs at least 4"), "{e}");
        let e = Geometry::new(1, 64 << 30, Some(2 << 20)).unwrap_err();
        assert!(e.contains("more than the 8192"), "{e}");
    }
}
