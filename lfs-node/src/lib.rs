//! The LFS node: a FUSE daemon serving the Librarian File System with file data in shared
//! fabric-attached memory (FAM), and the node-side tools, in one binary.
//!
//! * [`daemon`]: start-up, mount, signals and shutdown.
//! * [`fs`]: the FUSE file system.
//! * [`link`]: the reconnecting Librarian connection.
//! * [`geometry`], [`fam`]: book-to-FAM address math and the FAM mapping.
//! * [`zeroing`], [`heartbeat`]: background threads (freed books, node status).
//! * [`node_id`], [`options`]: who this node is, and the command line.
//! * [`tools`], [`pattern`]: layout / policy / fill / verify.
//!
//! The direct-map library (Rust and C) is the `lfs-direct` crate next to this one.

pub mod daemon;
pub mod fam;
pub mod fs;
pub mod geometry;
pub mod heartbeat;
pub mod link;
pub mod node_id;
pub mod options;
pub mod pattern;
pub mod tools;
pub mod zeroing;
