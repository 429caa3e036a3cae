//! The LFS wire protocol, shared by the Librarian (server), the node daemon and `fame` (clients).
//!
//! * [`frame`]: the framing (JSON objects back to back) and the reply encoders.
//! * [`command`]: the one table of wire commands (name, and what each does to the database),
//!   from which the server's dispatch, read-only and soft-state checks are derived.
//! * [`reply`]: typed replies (shelf, book, ...), written by the server and read by the clients.
//! * [`request`]: typed requests, one type per command a client sends, each naming its command and
//!   its reply type ([`Request`]), sent with [`client::Client::call_typed`].
//! * [`client`]: a small blocking client.
//! * [`errno`] and [`mode`]: the numbers both sides must agree on.
//! * [`size`]: the one size parser (`8M`, `512B` for books) of the configs, flags and tools.
//!
//! It depends on no database and no web stack, so the node daemon builds without them.

pub mod client;
pub mod command;
pub mod frame;
pub mod reply;
pub mod request;
pub mod size;

pub use command::Command;
pub use request::Request;

/// Error numbers with a protocol meaning beyond the usual errno.
pub mod errno {
    /// The reply to a request the server received but did not run because it is stopping:
    /// ESHUTDOWN, which no command returns, so that clients can tell it from a failed command and
    /// send the request again to the next server.
    pub const STOPPING: i32 = libc::ESHUTDOWN;
}

/// File-type bits of a shelf's `mode`, as stored in the database and sent on the wire (the
/// values of `S_IF*` on Linux, in the width the database uses).
pub mod mode {
    pub const S_IFMT: i64 = 0o170000;
    pub const S_IFDIR: i64 = 0o040000;
    pub const S_IFREG: i64 = 0o100000;
    pub const S_IFLNK: i64 = 0o120000;
    /// The original's client used block-device shelves for `mknod` (a shelf of `minor(dev)` books).
    pub const S_IFBLK: i64 = 0o060000;

    /// The file-type bits of `mode`.
    pub fn file_type(mode: i64) -> i64 {
        mode & S_IFMT
    }
}

/// Book states stored in `books.allocated` and reported by `get_book_info_all` and the LMP.
pub mod book_state {
    pub const FREE: i64 = 0;
    pub const INUSE: i64 = 1;
    pub const ZOMBIE: i64 = 2;
    pub const OFFLINE: i64 = 3;
}
