//! The engine's state: an in-memory mirror of the database that answers every lookup, with the
//! mutators that write each change to SQLite and to memory together.
//!
//! SQLite stays the only durable store (same schema as the original, so its tools keep working);
//! memory holds what the schema cannot index without changing it: the namespace by (parent, name),
//! books-on-shelves, open handles and the free-book index. The state is rebuilt from the database at
//! start-up and after any failed write, so the two never drift apart.

use super::pool::{BookIdx, BookPool};
use lfs_db::{self as schema, book_state};
use rusqlite::Result as SqlResult;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Params, ToSql};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::iter;
use std::time::Instant;

/// One row of `shelves`: a file, directory or symlink.
#[derive(Clone, Debug, PartialEq)]
pub struct Shelf {
    pub id: i64,
    pub creator_id: i64,
    pub size_bytes: i64,
    pub book_count: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub name: String,
    pub mode: i64,
    pub parent_id: i64,
    pub link_count: i64,
    /// Owner and group (ours, kept in `lfs_owners`; 0 without a row).
    pub uid: u32,
    pub gid: u32,
}

impl Shelf {
    /// The row's columns after `id`, in the table's order: an INSERT binds `id` before them, an
    /// UPDATE (`... WHERE id=?`) after them.
    fn columns(&self) -> [&dyn ToSql; 9] {
        [
            &self.creator_id,
            &self.size_bytes,
            &self.book_count,
            &self.ctime,
            &self.mtime,
            &self.name,
            &self.mode,
            &self.parent_id,
            &self.link_count,
        ]
    }
}

pub use lfs_proto::mode::{S_IFBLK, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};

impl Shelf {
    /// A shelf about to be inserted: empty, created now (its id is assigned by `insert_shelf`).
    pub fn new(name: &str, mode: i64, parent_id: i64, link_count: i64) -> Shelf {
        let now = crate::engine::now_secs();
        Shelf {
            id: 0,
            creator_id: 0,
            size_bytes: 0,
            book_count: 0,
            ctime: now,
            mtime: now,
            name: name.to_string(),
            mode,
            parent_id,
            link_count,
            uid: 0,
            gid: 0,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    pub fn is_symlink(&self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }

    /// The 12-key object the original sends for a shelf (`lfs_proto::reply::Shelf`).
    pub fn to_json(&self, open_handle: Option<i64>) -> Value {
        lfs_proto::reply::Shelf {
            id: self.id,
            creator_id: self.creator_id,
            size_bytes: self.size_bytes,
            book_count: self.book_count,
            ctime: self.ctime,
            mtime: self.mtime,
            name: self.name.clone(),
            mode: self.mode,
            parent_id: self.parent_id,
            link_count: self.link_count,
            bos: vec![],
            open_handle,
            uid: self.uid,
            gid: self.gid,
        }
        .to_value()
    }
}

/// One row of `opened_shelves`.
#[derive(Clone, Copy, Debug)]
pub struct Open {
    pub shelf_id: i64,
    pub node_id: i64,
    pub pid: i64,
}

/// A configured node, from `FRDnodes`, with what the server tracks about it.
pub struct Node {
    pub node_id: i64,
    pub enc: i64,
    pub node: i64,
    /// Pool groups whose books are this node's memory.
    pub groups: Vec<usize>,
    /// Last request from the node (any request counts as a heartbeat).
    pub last_seen: Instant,
    /// Last value written to `SOCs.heartbeat`, so that it is written at most once a second.
    pub heartbeat_written: i64,
}

impl Node {
    /// `rack_enc_node`, the physloc the original client sends, for zeroing-shelf names.
    pub fn physloc(&self) -> String {
        format!("1_{}_{}", self.enc, self.node)
    }
}

/// Fixed facts about the pool, from `globals` and the topology tables.
pub struct Geometry {
    pub book_size: i64,
    pub nvm_bytes_total: i64,
    pub books_total: i64,
    pub nodes_total: i64,
    /// 0 = LZA, 1 = PHYSADDR.
    pub bii_mode: i64,
    /// `(group id, total books, base)` in ascending group id, as `get_fs_stats` reports.
    pub books_per_ig: Vec<(i64, i64, i64)>,
}

/// Children of one directory, by name and in id order (the order `list_shelves` reports).
#[derive(Default)]
pub struct Dir {
    pub by_name: HashMap<String, i64>,
    pub by_id: BTreeSet<i64>,
}

pub struct State {
    pub geo: Geometry,
    pub nodes: BTreeMap<i64, Node>,
    pub pool: BookPool,
    pub shelves: HashMap<i64, Shelf>,
    pub dirs: HashMap<i64, Dir>,
    /// Books on each shelf in `seq_num` order.
    pub bos: HashMap<i64, Vec<BookIdx>>,
    pub opens: BTreeMap<i64, Open>,
    pub open_count: HashMap<i64, u32>,
    pub links: HashMap<i64, String>,
    /// High-water marks, so that ids and handles are not reused while the server runs (the original
    /// reused `max(id)+1`, letting a stale handle alias a new open).
    pub next_shelf_id: i64,
    pub next_open_id: i64,
    /// The server-wide default allocation policy, persisted as an xattr.
    pub default_policy: String,
    /// Zeroing shelves and the node that is zeroing them, to reclaim them if that node goes away.
    pub zeroing_by: HashMap<i64, i64>,
    /// Set by every mutator; lets the engine detect a failed command that changed something.
    pub dirty: bool,
}

fn lenient_i64(v: rusqlite::types::Value) -> i64 {
    match v {
        rusqlite::types::Value::Integer(i) => i,
        rusqlite::types::Value::Real(f) => f as i64,
        rusqlite::types::Value::Text(s) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// Rows of three integer columns, read leniently (the original's tools may have stored text).
fn i64_triples(conn: &Connection, sql: &str) -> SqlResult<Vec<(i64, i64, i64)>> {
    conn.prepare(sql)?
        .query_map([], |r| {
            Ok((
                lenient_i64(r.get(0)?),
                lenient_i64(r.get(1)?),
                lenient_i64(r.get(2)?),
            ))
        })?
        .collect()
}

/// Why a database cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Sql(#[from] rusqlite::Error),
    #[error("{0}")]
    Invalid(String),
}

impl State {
    /// Reads the whole database into memory, checking what the original checks at start-up.
    pub fn load(conn: &Connection) -> Result<State, LoadError> {
        let invalid = |m: &str| LoadError::Invalid(m.to_string());
        let version = schema::schema_version(conn)
            .map_err(|e| LoadError::Invalid(format!("cannot read globals.schema_version: {e}")))?;
        if version != schema::SCHEMA_VERSION {
            return Err(LoadError::Invalid(format!(
                "schema version mismatch: the database has \"{version}\", this server needs \"{}\"",
                schema::SCHEMA_VERSION
            )));
        }
        let (book_size, nvm_bytes_total, books_total, nodes_total): (i64, i64, i64, i64) = conn
            .query_row(
                "SELECT book_size_bytes, nvm_bytes_total, books_total, nodes_total FROM globals",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
        if book_size <= 0 {
            return Err(invalid("globals.book_size_bytes must be positive"));
        }

        let mut stmt =
            conn.prepare("SELECT id, intlv_group, book_num, allocated FROM books ORDER BY id")?;
        let mut failure = None;
        let pool = BookPool::new(
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .map_while(|r| r.map_err(|e| failure = Some(e)).ok()),
        );
        drop(stmt);
        if let Some(e) = failure {
            return Err(e.into());
        }
        if pool.is_empty() {
            return Err(invalid("Database has no books"));
        }
        let bii_mode = (pool.intlv_group(0) >> schema::bii::MODE_SHIFT) & 0xf;

        let famodules: Vec<(i64, i64, i64)> =
            i64_triples(conn, "SELECT node_id, IG, module_size_books FROM FAModules")?;
        let mut books_per_ig: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        if bii_mode == schema::bii::MODE_LZA {
            if famodules.is_empty() {
                return Err(invalid("Database has no IGs"));
            }
            for &(_, ig, n) in &famodules {
                books_per_ig.entry(ig).or_insert((0, -1)).0 += n;
            }
        } else {
            for g in &pool.groups {
                let first = pool.book(g.members[0]).id;
                books_per_ig.insert(
                    g.intlv_group & schema::bii::VALUE_MASK,
                    (g.members.len() as i64, first),
                );
            }
        }

        let now = Instant::now();
        let mut nodes = BTreeMap::new();
        let node_rows: Vec<(i64, i64, i64)> =
            i64_triples(conn, "SELECT node_id, enc, node FROM FRDnodes")?;
        if node_rows.is_empty() {
            return Err(invalid("Database has no nodes"));
        }
        for (node_id, enc, node) in node_rows {
            let groups: Vec<usize> = if bii_mode == schema::bii::MODE_LZA {
                let mut igs: Vec<i64> = famodules
                    .iter()
                    .filter(|m| m.0 == node_id)
                    .map(|m| m.1)
                    .collect();
                igs.sort();
                igs.dedup();
                igs.iter().filter_map(|&ig| pool.group_index(ig)).collect()
            } else {
                pool.group_index((bii_mode << schema::bii::MODE_SHIFT) | (node_id - 1))
                    .into_iter()
                    .collect()
            };
            nodes.insert(
                node_id,
                Node {
                    node_id,
                    enc,
                    node,
                    groups,
                    last_seen: now,
                    heartbeat_written: 0,
                },
            );
        }

        let mut shelves = HashMap::new();
        let mut dirs: HashMap<i64, Dir> = HashMap::new();
        let mut stmt = conn.prepare(
            "SELECT id, creator_id, size_bytes, book_count, ctime, mtime, name, mode, parent_id, \
             link_count FROM shelves",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let s = Shelf {
                id: r.get(0)?,
                creator_id: lenient_i64(r.get(1)?),
                size_bytes: lenient_i64(r.get(2)?),
                book_count: lenient_i64(r.get(3)?),
                ctime: lenient_i64(r.get(4)?),
                mtime: lenient_i64(r.get(5)?),
                name: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
                mode: lenient_i64(r.get(7)?),
                parent_id: lenient_i64(r.get(8)?),
                link_count: lenient_i64(r.get(9)?),
                uid: 0,
                gid: 0,
            };
            if s.id != schema::GARBAGE_SHELF_ID {
                let d = dirs.entry(s.parent_id).or_default();
                d.by_name.entry(s.name.clone()).or_insert(s.id);
                if s.id != schema::ROOT_SHELF_ID {
                    d.by_id.insert(s.id);
                }
            }
            shelves.insert(s.id, s);
        }
        drop(rows);
        drop(stmt);
        if !shelves.contains_key(&schema::ROOT_SHELF_ID) {
            return Err(invalid("Database has no root shelf (id 2)"));
        }
        // Owners (ours): a shelf without a row is root's. A row of a shelf that is gone is
        // fsck-lfs's business (an orphan owner).
        for (id, uid, gid) in i64_triples(conn, "SELECT shelf_id, uid, gid FROM lfs_owners")? {
            if let Some(s) = shelves.get_mut(&id) {
                s.uid = u32::try_from(uid).unwrap_or(0);
                s.gid = u32::try_from(gid).unwrap_or(0);
            }
        }

        let mut bos: HashMap<i64, Vec<BookIdx>> = HashMap::new();
        let mut stmt = conn
            .prepare("SELECT shelf_id, book_id FROM books_on_shelves ORDER BY shelf_id, seq_num")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let (shelf, book): (i64, i64) = (r.get(0)?, r.get(1)?);
            if let Some(idx) = pool.find(book) {
                bos.entry(shelf).or_default().push(idx);
            }
        }
        drop(rows);
        drop(stmt);

        let mut opens = BTreeMap::new();
        let mut open_count: HashMap<i64, u32> = HashMap::new();
        let mut stmt = conn.prepare("SELECT id, shelf_id, node_id, pid FROM opened_shelves")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let o = Open {
                shelf_id: lenient_i64(r.get(1)?),
                node_id: lenient_i64(r.get(2)?),
                pid: lenient_i64(r.get(3)?),
            };
            *open_count.entry(o.shelf_id).or_default() += 1;
            opens.insert(r.get::<_, i64>(0)?, o);
        }
        drop(rows);
        drop(stmt);

        let links: HashMap<i64, String> = conn
            .prepare("SELECT shelf_id, target FROM links")?
            .query_map([], |r| {
                Ok((
                    lenient_i64(r.get(0)?),
                    r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                ))
            })?
            .collect::<Result<_, _>>()?;

        let default_policy: String = conn
            .query_row(
                "SELECT value FROM shelf_xattrs WHERE xattr = 'user.LFS.AllocationPolicyDefault' \
                 ORDER BY shelf_id = 2 DESC, rowid DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?
            .filter(|p: &String| crate::policy::is_default_policy(p))
            .unwrap_or_else(|| "RandomBooks".to_string());

        let next_shelf_id = shelves.keys().max().copied().unwrap_or(3) + 1;
        let next_open_id = opens.keys().max().copied().unwrap_or(0) + 1;
        Ok(State {
            geo: Geometry {
                book_size,
                nvm_bytes_total,
                books_total,
                nodes_total,
                bii_mode,
                books_per_ig: books_per_ig
                    .into_iter()
                    .map(|(g, (n, base))| (g, n, base))
                    .collect(),
            },
            nodes,
            pool,
            shelves,
            dirs,
            bos,
            opens,
            open_count,
            links,
            next_shelf_id,
            next_open_id,
            default_policy,
            zeroing_by: HashMap::new(),
            dirty: false,
        })
    }

    /// Keeps what lives only in memory (liveness, zeroing owners) across a reload.
    pub fn carry_over(&mut self, old: &State) {
        for (id, n) in &mut self.nodes {
            if let Some(o) = old.nodes.get(id) {
                n.last_seen = o.last_seen;
                n.heartbeat_written = o.heartbeat_written;
            }
        }
        self.zeroing_by = old.zeroing_by.clone();
        self.next_shelf_id = self.next_shelf_id.max(old.next_shelf_id);
        self.next_open_id = self.next_open_id.max(old.next_open_id);
    }

    pub fn nbooks(&self, bytes: i64) -> i64 {
        // Without the `+ book_size - 1` of the usual form, which overflows near i64::MAX.
        bytes / self.geo.book_size + i64::from(bytes % self.geo.book_size > 0)
    }

    pub fn lookup(&self, parent: i64, name: &str) -> Option<i64> {
        self.dirs.get(&parent)?.by_name.get(name).copied()
    }

    pub fn shelf(&self, id: i64) -> &Shelf {
        &self.shelves[&id]
    }

    pub fn children(&self, id: i64) -> impl Iterator<Item = i64> + '_ {
        self.dirs
            .get(&id)
            .into_iter()
            .flat_map(|d| d.by_id.iter().copied())
    }

    pub fn has_children(&self, id: i64) -> bool {
        self.dirs.get(&id).is_some_and(|d| !d.by_id.is_empty())
    }

    pub fn books_of(&self, shelf: i64) -> &[BookIdx] {
        self.bos.get(&shelf).map_or(&[], |v| v.as_slice())
    }

    pub fn book_json(&self, idx: BookIdx) -> Value {
        let b = self.pool.book(idx);
        lfs_proto::reply::Book {
            id: b.id,
            intlv_group: self.pool.intlv_group(idx),
            book_num: i64::from(b.book_num),
            allocated: b.state(),
            attributes: 0,
        }
        .to_value()
    }

    // ---- mutators: SQL first, then memory ----

    /// One change of a mutator that needs nothing back, as a cached statement (the same few run
    /// again and again), after marking the state changed.
    fn write(&mut self, conn: &Connection, sql: &str, params: impl Params) -> SqlResult<()> {
        self.dirty = true;
        conn.prepare_cached(sql)?.execute(params)?;
        Ok(())
    }

    pub fn insert_shelf(&mut self, conn: &Connection, mut s: Shelf) -> SqlResult<i64> {
        self.dirty = true;
        s.id = self.next_shelf_id;
        let row = iter::once(&s.id as &dyn ToSql).chain(s.columns());
        conn.prepare_cached("INSERT INTO shelves VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")?
            .execute(params_from_iter(row))?;
        self.next_shelf_id += 1;
        if (s.uid, s.gid) != (0, 0) {
            self.write_owner(conn, &s)?;
        }
        self.link_name(&s);
        let id = s.id;
        self.shelves.insert(id, s);
        Ok(id)
    }

    /// Writes every column of a changed shelf, moving it in the namespace if its name or parent
    /// changed.
    pub fn save_shelf(&mut self, conn: &Connection, s: Shelf) -> SqlResult<()> {
        self.dirty = true;
        conn.prepare_cached(
            "UPDATE shelves SET creator_id=?, size_bytes=?, book_count=?, ctime=?, mtime=?, \
             name=?, mode=?, parent_id=?, link_count=? WHERE id=?",
        )?
        .execute(params_from_iter(
            s.columns().into_iter().chain([&s.id as &dyn ToSql]),
        ))?;
        if self
            .shelves
            .get(&s.id)
            .is_some_and(|o| (o.uid, o.gid) != (s.uid, s.gid))
        {
            self.write_owner(conn, &s)?;
        }
        let old = self
            .shelves
            .insert(s.id, s.clone())
            .expect("saved shelf exists");
        if old.name != s.name || old.parent_id != s.parent_id {
            self.unlink_name(&old);
            self.link_name(&s);
        }
        Ok(())
    }

    /// Writes the owner row of `s` (ours): none for root's, as in a database of the original.
    fn write_owner(&mut self, conn: &Connection, s: &Shelf) -> SqlResult<()> {
        if (s.uid, s.gid) == (0, 0) {
            conn.prepare_cached("DELETE FROM lfs_owners WHERE shelf_id=?")?
                .execute([s.id])?;
        } else {
            conn.prepare_cached("INSERT OR REPLACE INTO lfs_owners VALUES (?, ?, ?)")?
                .execute(params![s.id, s.uid, s.gid])?;
        }
        Ok(())
    }

    /// Enters shelf `s` in its directory's index, under its name.
    fn link_name(&mut self, s: &Shelf) {
        let d = self.dirs.entry(s.parent_id).or_default();
        d.by_name.insert(s.name.clone(), s.id);
        d.by_id.insert(s.id);
    }

    fn unlink_name(&mut self, s: &Shelf) {
        if let Some(d) = self.dirs.get_mut(&s.parent_id) {
            if d.by_name.get(&s.name) == Some(&s.id) {
                d.by_name.remove(&s.name);
            }
            d.by_id.remove(&s.id);
        }
    }

    /// Deletes a shelf row with its xattrs, symlink target and open handles (books must be gone
    /// already). Only a directory can still be open here (rmdir of an open directory, as POSIX
    /// allows): files are not removed while open.
    pub fn delete_shelf(&mut self, conn: &Connection, id: i64) -> SqlResult<()> {
        self.dirty = true;
        if self.opens_of(id) > 0 {
            let handles: Vec<i64> = self
                .opens
                .iter()
                .filter(|(_, o)| o.shelf_id == id)
                .map(|(h, _)| *h)
                .collect();
            for h in handles {
                self.delete_open(conn, h)?;
            }
        }
        conn.prepare_cached("DELETE FROM shelves WHERE id=?")?
            .execute([id])?;
        conn.prepare_cached("DELETE FROM shelf_xattrs WHERE shelf_id=?")?
            .execute([id])?;
        conn.prepare_cached("DELETE FROM lfs_owners WHERE shelf_id=?")?
            .execute([id])?;
        if self.links.remove(&id).is_some() {
            conn.prepare_cached("DELETE FROM links WHERE shelf_id=?")?
                .execute([id])?;
        }
        if let Some(s) = self.shelves.remove(&id) {
            self.unlink_name(&s);
        }
        self.dirs.remove(&id);
        self.bos.remove(&id);
        self.zeroing_by.remove(&id);
        Ok(())
    }

    pub fn set_book_state(&mut self, conn: &Connection, idx: BookIdx, state: i64) -> SqlResult<()> {
        let id = self.pool.book(idx).id;
        let update = "UPDATE books SET allocated=? WHERE id=?";
        self.write(conn, update, params![state, id])?;
        self.pool.set_state(idx, state);
        Ok(())
    }

    /// Appends a book to a shelf with the next sequence number.
    pub fn push_book(&mut self, conn: &Connection, shelf: i64, idx: BookIdx) -> SqlResult<()> {
        let seq = self.books_of(shelf).len() as i64 + 1;
        let book = self.pool.book(idx).id;
        let insert = "INSERT INTO books_on_shelves VALUES (?, ?, ?)";
        self.write(conn, insert, params![shelf, book, seq])?;
        self.bos.entry(shelf).or_default().push(idx);
        Ok(())
    }

    /// Removes the last book of a shelf (LIFO, as the original shrinks).
    pub fn pop_book(&mut self, conn: &Connection, shelf: i64) -> SqlResult<Option<BookIdx>> {
        let Some(&idx) = self.bos.get(&shelf).and_then(|l| l.last()) else {
            return Ok(None);
        };
        let book = self.pool.book(idx).id;
        let delete = "DELETE FROM books_on_shelves WHERE shelf_id=? AND book_id=?";
        self.write(conn, delete, params![shelf, book])?;
        self.bos.get_mut(&shelf).map(|l| l.pop());
        Ok(Some(idx))
    }

    pub fn insert_open(&mut self, conn: &Connection, o: Open) -> SqlResult<i64> {
        let id = self.next_open_id;
        let insert = "INSERT INTO opened_shelves VALUES (?, ?, ?, ?)";
        self.write(conn, insert, params![id, o.shelf_id, o.node_id, o.pid])?;
        self.next_open_id += 1;
        self.opens.insert(id, o);
        *self.open_count.entry(o.shelf_id).or_default() += 1;
        Ok(id)
    }

    pub fn delete_open(&mut self, conn: &Connection, handle: i64) -> SqlResult<()> {
        self.write(conn, "DELETE FROM opened_shelves WHERE id=?", [handle])?;
        if let Some(o) = self.opens.remove(&handle) {
            if let Some(c) = self.open_count.get_mut(&o.shelf_id) {
                *c -= 1;
                if *c == 0 {
                    self.open_count.remove(&o.shelf_id);
                }
            }
        }
        Ok(())
    }

    pub fn opens_of(&self, shelf: i64) -> u32 {
        self.open_count.get(&shelf).copied().unwrap_or(0)
    }

    pub fn get_xattr(
        &self,
        conn: &Connection,
        shelf: i64,
        name: &str,
    ) -> SqlResult<Option<String>> {
        conn.prepare_cached("SELECT value FROM shelf_xattrs WHERE shelf_id=? AND xattr=?")?
            .query_row(params![shelf, name], |r| r.get::<_, Option<String>>(0))
            .optional()
            .map(Option::flatten)
    }

    /// Inserts or updates an xattr; returns whether it existed (an update bumps the shelf's mtime).
    pub fn put_xattr(
        &mut self,
        conn: &Connection,
        shelf: i64,
        name: &str,
        value: &str,
    ) -> SqlResult<bool> {
        self.dirty = true;
        let n = conn
            .prepare_cached("UPDATE shelf_xattrs SET value=? WHERE shelf_id=? AND xattr=?")?
            .execute(params![value, shelf, name])?;
        if n == 0 {
            self.insert_xattr(conn, shelf, name, value)?;
        }
        Ok(n > 0)
    }

    /// Inserts an xattr known not to exist yet (a new shelf's defaults): one statement, not two.
    pub fn insert_xattr(
        &mut self,
        conn: &Connection,
        shelf: i64,
        name: &str,
        value: &str,
    ) -> SqlResult<()> {
        let insert = "INSERT INTO shelf_xattrs VALUES (?, ?, ?)";
        self.write(conn, insert, params![shelf, name, value])
    }

    pub fn delete_xattr(&mut self, conn: &Connection, shelf: i64, name: &str) -> SqlResult<()> {
        let delete = "DELETE FROM shelf_xattrs WHERE shelf_id=? AND xattr=?";
        self.write(conn, delete, params![shelf, name])
    }

    pub fn xattr_names(&self, conn: &Connection, shelf: i64) -> SqlResult<Vec<String>> {
        conn.prepare_cached("SELECT xattr FROM shelf_xattrs WHERE shelf_id=?")?
            .query_map([shelf], |r| r.get(0))?
            .collect()
    }

    pub fn insert_link(&mut self, conn: &Connection, shelf: i64, target: &str) -> SqlResult<()> {
        let insert = "INSERT INTO links VALUES (?, ?, NULL)";
        self.write(conn, insert, params![shelf, target])?;
        self.links.insert(shelf, target.to_string());
        Ok(())
    }

    /// Moves books off a shelf, newest first, each becoming `state` (used by shrink and destroy).
    pub fn release_books(
        &mut self,
        conn: &Connection,
        shelf: i64,
        count: usize,
        state: i64,
    ) -> SqlResult<Vec<BookIdx>> {
        let mut removed = Vec::with_capacity(count);
        for _ in 0..count {
            let Some(idx) = self.pop_book(conn, shelf)? else {
                break;
            };
            self.set_book_state(conn, idx, state)?;
            removed.push(idx);
        }
        Ok(removed)
    }

    /// Orphan ZOMBIE books: released but on no shelf, so nobody is zeroing them.
    pub fn orphan_zombies(&self, limit: usize) -> Vec<BookIdx> {
        if self.pool.zombies == 0 {
            return vec![];
        }
        let mut owned = vec![false; self.pool.len()];
        for list in self.bos.values() {
            for &idx in list {
                owned[idx as usize] = true;
            }
        }
        self.pool
            .all()
            .filter(|(i, b)| b.state() == book_state::ZOMBIE && !owned[*i as usize])
            .map(|(i, _)| i)
            .take(limit)
            .collect()
    }
}
