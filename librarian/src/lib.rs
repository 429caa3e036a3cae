//! The Librarian File System (LFS) metadata server and its tools.
//!
//! * [`schema`]: the SQLite schema shared with the original tools.
//! * [`topology`]: topology configs (INI and TMCF JSON) and database population (`book-register`).
//! * [`fsck`]: consistency checks and repairs (`fsck-lfs`).

pub mod schema;
pub mod fsck;
pub mod topology;
