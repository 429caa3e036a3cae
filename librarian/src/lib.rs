//! The Librarian File System (LFS) metadata server.
//!
//! * [`connection`], [`server`]: the tokio server (the wire protocol itself, framing, command table
//!   and client, is the `lfs-proto` crate; the SQLite schema is `lfs-db`).
//! * [`engine`]: the single writer that owns the database and the in-memory index, with group commit.
//! * [`cmd`]: the command handlers, one module per family; [`policy`]: book allocation policies.
//! * [`stats`]: per-command request counts and latencies (the `--metrics-port`).
//!
//! Its tools are crates of their own: `lfs-topology` (`book-register`), `lfs-fsck` (`fsck-lfs`)
//! and `lfs-lmp` (`lmp`).

pub mod cmd;
pub mod connection;
pub mod engine;
pub mod policy;
pub mod server;
pub mod stats;
