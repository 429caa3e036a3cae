//! The database fsck's tests damage: [`fixture`] makes a consistent Librarian database, the
//! `add_*` functions add shelves to it (each consistent in every table, so that a test's damage is
//! the only damage), and [`dump`] snapshots every row for before/after comparisons. Shared by the
//! unit tests of each step (`fsck/src/tests.rs`, in memory) and the end-to-end tests of the
//! `fsck-lfs` binary (`fsck/tests/fsck.rs`, on disk), so both start from the same database.

use rusqlite::types::Value;
use rusqlite::{params, Connection, Params};

/// Book size of [`fixture`]'s database.
pub const BOOK_SIZE: i64 = 8 << 20;
/// `S_IFREG | 0666`, the mode of the files the tests add.
pub const FILE_MODE: i64 = 0o100666;
/// `S_IFLNK | 0777`, the mode of a symbolic link.
pub const SYMLINK_MODE: i64 = 0o120777;
/// ctime and mtime of every shelf here: those of the reserved shelves (fsck never reads them).
const TIME: i64 = 1_700_000_000;

/// Fills `conn` with a Librarian database like `book_register.py` makes for two nodes: globals,
/// FRDnodes, SOCs, 8 FAModules, 2 interleave groups of 32 LZA books (8 MiB), and the reserved
/// shelves; on disk or in memory.
pub fn fixture(conn: &Connection) {
    lfs_db::create_empty_db(conn).unwrap();
    conn.execute(
        "INSERT INTO globals VALUES (?, ?, ?, ?, ?)",
        params![lfs_db::SCHEMA_VERSION, BOOK_SIZE, 64 * BOOK_SIZE, 64, 2],
    )
    .unwrap();
    for node in 1..=2i64 {
        add_node(conn, node);
    }
    for ig in 0..2i64 {
        for k in 0..32i64 {
            conn.execute(
                "INSERT INTO books VALUES (?, ?, ?, 0, 0)",
                params![(ig << 46) | (k << 33), ig, k],
            )
            .unwrap();
        }
    }
    lfs_db::insert_initial_shelves(conn, TIME).unwrap();
}

/// Node `node`'s rows: its FRDnodes and SOCs rows and its 4 media controllers of 8 books, which
/// make interleave group `node - 1`.
fn add_node(conn: &Connection, node: i64) {
    conn.execute(
        "INSERT INTO FRDnodes VALUES (?, 1, 1, ?, ?, ?)",
        params![node, node, format!("Node/{node}"), format!("1:1:{node}")],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO SOCs VALUES (?, ?, 0, 'SocBoard/1/Soc/1', 'NotToday', 1700000000, 0, 0, 0, 0, 0)",
        params![node, format!("52:54:42:{node:02}:{node:02}:{node:02}")],
    )
    .unwrap();
    for mc in 0..4i64 {
        conn.execute(
            "INSERT INTO FAModules VALUES (?, ?, 8, ?, 1, ?, ?)",
            params![
                node,
                node - 1,
                node * 16 + mc,
                format!("Node/{node}/MemoryBoard/1/MediaController/{}", mc + 1),
                8 * BOOK_SIZE
            ],
        )
        .unwrap();
    }
}

/// A shelf row with the next free id, owned by node 1; returns its id. Nothing else changes: a
/// test that means damage adds its shelves with this.
pub fn add_shelf(conn: &Connection, name: &str, parent: i64, mode: i64, links: i64) -> i64 {
    let id: i64 = conn
        .query_row("SELECT max(id) + 1 FROM shelves", [], |r| r.get(0))
        .unwrap();
    conn.execute(
        "INSERT INTO shelves VALUES (?, 1, 0, 0, ?, ?, ?, ?, ?, ?)",
        params![id, TIME, TIME, name, mode, parent, links],
    )
    .unwrap();
    id
}

/// An empty directory; its parent gains the link of its `..`.
pub fn add_dir(conn: &Connection, name: &str, parent: i64) -> i64 {
    let id = add_shelf(conn, name, parent, lfs_db::MODE_DEFAULT_DIR, 2);
    conn.execute(
        "UPDATE shelves SET link_count = link_count + 1 WHERE id = ?",
        [parent],
    )
    .unwrap();
    id
}

/// `n` free books, in the order that `order_by` (an SQL ordering: `id` for the lowest ids first,
/// `random()` for a real allocation's scatter) gives.
pub fn free_books(conn: &Connection, n: i64, order_by: &str) -> Vec<i64> {
    let sql = format!("SELECT id FROM books WHERE allocated = 0 ORDER BY {order_by} LIMIT ?");
    let mut stmt = conn.prepare(&sql).unwrap();
    let rows = stmt.query_map([n], |r| r.get(0)).unwrap();
    rows.collect::<rusqlite::Result<_>>().unwrap()
}

/// A regular file on `books` (in that order), consistent in every table: its books allocated and
/// listed on it, its book count and a size of exactly that many books. Returns its id.
pub fn add_file_on(conn: &Connection, name: &str, parent: i64, books: &[i64]) -> i64 {
    let id = add_shelf(conn, name, parent, FILE_MODE, 1);
    for (seq, book) in (1i64..).zip(books) {
        conn.execute(
            "INSERT INTO books_on_shelves VALUES (?, ?, ?)",
            params![id, book, seq],
        )
        .unwrap();
        conn.execute("UPDATE books SET allocated = 1 WHERE id = ?", [book])
            .unwrap();
    }
    let n = books.len() as i64;
    conn.execute(
        "UPDATE shelves SET book_count = ?, size_bytes = ? WHERE id = ?",
        params![n, n * BOOK_SIZE, id],
    )
    .unwrap();
    id
}

/// A symbolic link to `target`, with its `links` row.
pub fn add_symlink(conn: &Connection, name: &str, parent: i64, target: &str) -> i64 {
    let id = add_shelf(conn, name, parent, SYMLINK_MODE, 1);
    conn.execute("INSERT INTO links VALUES (?, ?, NULL)", params![id, target])
        .unwrap();
    id
}

/// Runs one statement (a test's damage, mostly), which must succeed.
pub fn exec(conn: &Connection, sql: &str, params: impl Params) {
    conn.execute(sql, params)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The one integer that `sql` selects.
pub fn int(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// How many rows `rows` (a table and an optional `WHERE`) holds.
pub fn count(conn: &Connection, rows: &str) -> i64 {
    int(conn, &format!("SELECT count(*) FROM {rows}"))
}

/// Integer `column` of shelf `id`.
pub fn shelf_int(conn: &Connection, id: i64, column: &str) -> i64 {
    int(
        conn,
        &format!("SELECT {column} FROM shelves WHERE id = {id}"),
    )
}

/// Every row of every table, for before/after comparisons.
pub fn dump(conn: &Connection) -> Vec<String> {
    let tables: Vec<String> = {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.collect::<rusqlite::Result<_>>().unwrap()
    };
    let mut out = Vec::new();
    for t in tables {
        let mut stmt = conn
            .prepare(&format!("SELECT rowid, * FROM \"{t}\" ORDER BY rowid"))
            .unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let vals: Vec<Value> = (0..n).map(|i| r.get(i).unwrap()).collect();
            out.push(format!("{t}: {vals:?}"));
        }
    }
    out
}
