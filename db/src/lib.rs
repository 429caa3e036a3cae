//! The on-disk SQLite schema, byte-for-byte as the original `book_register.py` creates it.
//!
//! The original tools (`fsck_lfs.py`, `lmp.py`, `lslfs`) and the original server open the same file,
//! and they insert positional tuples, so table names, column names, column order and declared types
//! must match exactly. The DDL text is kept identical as well so that `sqlite_master` compares equal.

use rusqlite::Connection;

/// The value of `globals.schema_version` that every reader checks.
pub const SCHEMA_VERSION: &str = "LIBRARIAN 0.997";

/// Reserved shelf ids: a placeholder so that root is 2, root itself, and fsck's lost+found.
pub const GARBAGE_SHELF_ID: i64 = 1;
pub const ROOT_SHELF_ID: i64 = 2;
pub const LOST_FOUND_SHELF_ID: i64 = 3;

/// The columns of `shelves`, in the table's order: the original's tools insert positional rows,
/// and a shelf reply on the wire carries these (with `bos` and `open_handle`).
pub const SHELF_COLUMNS: [&str; 10] = [
    "id",
    "creator_id",
    "size_bytes",
    "book_count",
    "ctime",
    "mtime",
    "name",
    "mode",
    "parent_id",
    "link_count",
];

/// `S_IFDIR | 0777`, the mode of the three initial directories and of `mkdir` from the FUSE client.
pub const MODE_DEFAULT_DIR: i64 = 0o040777;

/// Book states stored in `books.allocated`.
pub use lfs_proto::book_state;

/// Book-id interpretation (BII) carried in bits 16-19 of `books.intlv_group`.
pub mod bii {
    pub const MODE_SHIFT: u32 = 16;
    pub const VALUE_MASK: i64 = 0xffff;
    pub const MODE_LZA: i64 = 0;
    pub const MODE_PHYSADDR: i64 = 1;
    /// LZA book ids: `(IG << IG_SHIFT) | (book_num << BOOK_SHIFT)`.
    pub const BOOK_SHIFT: u32 = 33;
    pub const IG_SHIFT: u32 = 46;
}

/// Each statement exactly as the original issues it (SQLite stores the text from `CREATE` on).
pub const TABLES: &[(&str, &str)] = &[
    (
        "globals",
        "CREATE TABLE globals (
            schema_version TEXT,
            book_size_bytes INT,
            nvm_bytes_total INT,
            books_total INT,
            nodes_total INT
            )",
    ),
    (
        "FRDnodes",
        "CREATE TABLE FRDnodes (
            node_id,
            rack INT,
            enc INT,
            node INT,
            coordinate TEXT,
            serialNumber TEXT
            )",
    ),
    (
        "SOCs",
        "CREATE TABLE SOCs (
            node_id,
            MAC TEXT,
            status INT,
            coordinate TEXT,
            tlsPublicCertificate TEXT,
            heartbeat INT,
            cpu_percent INT,
            rootfs_percent INT,
            network_in INT,
            network_out INT,
            mem_percent INT
            )",
    ),
    (
        "FAModules",
        "CREATE TABLE FAModules (
            node_id INT,
            IG INT,
            module_size_books INT,
            rawCID INT,
            status INT,
            coordinate TEXT,
            memorySize INT
            )",
    ),
    (
        "books",
        "CREATE TABLE books (
            id INTEGER PRIMARY KEY,
            intlv_group INT,
            book_num INT,
            allocated INT,
            attributes INT
            )",
    ),
    (
        "shelves",
        "CREATE TABLE shelves (
            id INTEGER PRIMARY KEY,
            creator_id INT,
            size_bytes INT,
            book_count INT,
            ctime INT,
            mtime INT,
            name TEXT,
            mode INT,
            parent_id INT,
            link_count INT
            )",
    ),
    (
        "books_on_shelves",
        "CREATE TABLE books_on_shelves (
            shelf_id INT,
            book_id INT,
            seq_num INT
            )",
    ),
    (
        "opened_shelves",
        "CREATE TABLE opened_shelves (
            id INTEGER PRIMARY KEY,
            shelf_id INT,
            node_id INT,
            pid INT
            )",
    ),
    (
        "shelf_xattrs",
        "CREATE TABLE shelf_xattrs (
            shelf_id INT,
            xattr TEXT,
            value TEXT
            )",
    ),
    (
        "links",
        "CREATE TABLE links (
            shelf_id INT,
            target TEXT,
            other TEXT
            )",
    ),
];

/// The one index the original creates.
pub const XATTR_INDEX: (&str, &str) = (
    "IDX_xattrs",
    "CREATE UNIQUE INDEX IDX_xattrs
                       ON shelf_xattrs (shelf_id, xattr)",
);

/// The owners of shelves (ours; the original had none): one row per shelf not owned by root
/// (uid 0, gid 0), so that a database the original made, which has no such rows, is all root's,
/// as it always was. Kept apart from the original's tables, which stay exactly as they are, so
/// the original's tools still read our databases.
pub const OWNERS_TABLE: (&str, &str) = (
    "lfs_owners",
    "CREATE TABLE IF NOT EXISTS lfs_owners (
            shelf_id INTEGER PRIMARY KEY,
            uid INT NOT NULL,
            gid INT NOT NULL
            )",
);

/// Creates the tables of ours that are missing (see [`OWNERS_TABLE`]): the Librarian does so
/// whenever it opens a database, the original's included; `book-register` leaves them out, so
/// that what it makes is the original's schema exactly.
pub fn create_our_tables(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute(OWNERS_TABLE.1, []).map(|_| ())
}

/// Creates every table and the xattr index in an empty database and switches it to WAL.
pub fn create_empty_db(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let tx = conn.unchecked_transaction()?;
    for (_, ddl) in TABLES {
        tx.execute(ddl, [])?;
    }
    tx.execute(XATTR_INDEX.1, [])?;
    tx.commit()
}

/// Inserts the three reserved shelves (garbage, root, lost+found) with the given creation time.
pub fn insert_initial_shelves(conn: &Connection, now: i64) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("INSERT INTO shelves VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")?;
    for (id, name, parent, links) in [
        (GARBAGE_SHELF_ID, "garbage", 0, 0),
        (ROOT_SHELF_ID, ".", ROOT_SHELF_ID, 3),
        (LOST_FOUND_SHELF_ID, "lost+found", ROOT_SHELF_ID, 2),
    ] {
        stmt.execute(rusqlite::params![
            id,
            0,
            0,
            0,
            now,
            now,
            name,
            MODE_DEFAULT_DIR,
            parent,
            links
        ])?;
    }
    Ok(())
}

/// Reads `globals.schema_version`, for the version check every opener performs.
pub fn schema_version(conn: &Connection) -> rusqlite::Result<String> {
    conn.query_row("SELECT schema_version FROM globals", [], |r| r.get(0))
}

/// Seconds since the epoch, as the original stores times.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_tables_with_original_column_order() {
        let conn = Connection::open_in_memory().unwrap();
        create_empty_db(&conn).unwrap();
        let cols: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('shelves') ORDER BY cid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(cols, SHELF_COLUMNS);
        let n: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n as usize, TABLES.len() + 1);
    }
}
