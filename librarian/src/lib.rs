//! The Librarian File System (LFS) metadata server and its tools.
//!
//! * [`schema`]: the SQLite schema shared with the original tools.
//! * [`connection`], [`server`]: the tokio server (the wire protocol itself, framing, command table
//!   and client, is the `lfs-proto` crate).
//! * [`engine`]: the single writer that owns the database and the in-memory index, with group commit.
//! * [`cmd`]: the command handlers, one module per family; [`policy`]: book allocation policies.
//! * [`lmp`]: the Librarian Monitoring Protocol (ReST views, dashboard, metrics).
//! * [`topology`]: topology configs (INI and TMCF JSON) and database population (`book-register`).
//! * [`fsck`]: consistency checks and repairs (`fsck-lfs`).

pub mod cmd;
pub mod connection;
pub mod engine;
pub mod fsck;
pub mod lmp;
pub mod policy;
pub mod schema;
pub mod server;
pub mod stats;
pub mod topology;
