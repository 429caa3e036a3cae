//! Database population (`createDB` of `book_register.py`), fast and atomic.
//!
//! The whole database is written in one transaction with prepared statements and
//! `synchronous=OFF` into a temporary file next to the target, checkpointed, fsynced and only
//! then moved into place (hard link without `-f`, so an existing file is never clobbered; rename
//! with `-f`). On any failure the temporary files are removed and the target is untouched. The
//! final file is in WAL journal mode, as every reader expects.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection};

use super::{Error, Mode, Topology};
use lfs_db as schema;

/// What [`Topology::create_db`] did, with the time of each phase.
#[derive(Debug, Clone, Default)]
pub struct DbReport {
    /// Rows written to `books`.
    pub books: u64,
    /// Rows written to `FRDnodes` (and `SOCs`).
    pub nodes: usize,
    /// Rows written to `FAModules`.
    pub media_controllers: usize,
    /// `(phase, duration)` in order.
    pub phases: Vec<(&'static str, Duration)>,
}

impl DbReport {
    /// Sum of all phases.
    pub fn total(&self) -> Duration {
        self.phases.iter().map(|(_, d)| *d).sum()
    }
}

/// Removes the temporary database (and its `-wal`/`-shm`/`-journal`) unless disarmed.
struct TempGuard {
    path: Option<PathBuf>,
}

impl TempGuard {
    fn remove_all(path: &Path) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let _ = fs::remove_file(PathBuf::from(p));
        }
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            TempGuard::remove_all(&p);
        }
    }
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(crate) fn create_db(topo: &Topology, path: &Path, force: bool) -> Result<DbReport, Error> {
    let sql = |what: &str| {
        let path = path.to_path_buf();
        let what = what.to_string();
        move |source: rusqlite::Error| Error::Sqlite { path, what, source }
    };
    let io = |what: &str| {
        let path = path.to_path_buf();
        let what = what.to_string();
        move |source: std::io::Error| Error::Io { path, what, source }
    };

    if path.as_os_str() == ":memory:" {
        let mut conn =
            Connection::open_in_memory().map_err(sql("opening an in-memory database"))?;
        let mut report = DbReport::default();
        populate(topo, &mut conn, &mut report).map_err(|(what, e)| sql(what)(e))?;
        return Ok(report);
    }

    let t0 = Instant::now();
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(io("cannot create the database")(std::io::Error::other(
                "is a directory",
            )))
        }
        Ok(_) if !force => return Err(Error::DbExists(path.to_path_buf())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("cannot check the database file")(e)),
    }
    let file_name = path.file_name().ok_or_else(|| {
        io("cannot create the database")(std::io::Error::other("not a file name"))
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp-{}-{nanos}", std::process::id()));
    let tmp = dir.join(tmp_name);
    // Claim the temporary name exclusively; SQLite then initialises the empty file.
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io(
            "cannot create a temporary database file in its directory",
        ))?;
    let mut guard = TempGuard {
        path: Some(tmp.clone()),
    };
    let mut report = DbReport::default();
    report.phases.push(("prepare", t0.elapsed()));

    {
        let mut conn = Connection::open(&tmp).map_err(sql("opening the temporary database"))?;
        populate(topo, &mut conn, &mut report).map_err(|(what, e)| sql(what)(e))?;
        let t = Instant::now();
        // Fold the WAL into the main file; closing the last connection deletes the WAL.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(sql("checkpointing"))?;
        conn.close()
            .map_err(|(_, e)| sql("closing the database")(e))?;
        report.phases.push(("checkpoint", t.elapsed()));
    }

    let t = Instant::now();
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io("cannot fsync the new database"))?;
    // A stale WAL or shared-memory file next to the target would be replayed into the new
    // database: remove them (only once the new file is complete).
    for suffix in ["-wal", "-shm", "-journal"] {
        let p = sidecar(path, suffix);
        if let Err(e) = fs::remove_file(&p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(Error::Io {
                    path: p,
                    what: "cannot remove a stale file of the old database".to_string(),
                    source: e,
                });
            }
        }
    }
    if force {
        fs::rename(&tmp, path).map_err(io("cannot move the new database into place"))?;
    } else {
        // Never clobber: a hard link fails if the target appeared meanwhile.
        match fs::hard_link(&tmp, path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::DbExists(path.to_path_buf()))
            }
            Err(_) => {
                // Filesystem without hard links: check, then rename.
                if fs::symlink_metadata(path).is_ok() {
                    return Err(Error::DbExists(path.to_path_buf()));
                }
                fs::rename(&tmp, path).map_err(io("cannot move the new database into place"))?;
            }
        }
    }
    guard.path = None;
    let _ = fs::remove_file(&tmp);
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    report.phases.push(("install", t.elapsed()));
    Ok(report)
}

/// The row inserts of [`populate`]: a placeholder for each column of the original's tables (the
/// books' state and attributes start at 0).
const INSERT_FRDNODE: &str = "INSERT INTO FRDnodes VALUES(?, ?, ?, ?, ?, ?)";
const INSERT_SOC: &str = "INSERT INTO SOCs VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const INSERT_FAMODULE: &str = "INSERT INTO FAModules VALUES(?, ?, ?, ?, ?, ?, ?)";
const INSERT_BOOK: &str = "INSERT INTO books VALUES(?, ?, ?, 0, 0)";

type Failure = (&'static str, rusqlite::Error);

fn populate(topo: &Topology, conn: &mut Connection, report: &mut DbReport) -> Result<(), Failure> {
    let t = Instant::now();
    schema::create_empty_db(conn).map_err(|e| ("creating the tables", e))?;
    // Bulk load: durability comes from the explicit checkpoint + fsync before the rename.
    conn.execute_batch(
        "PRAGMA synchronous=OFF; PRAGMA cache_size=-65536; PRAGMA temp_store=MEMORY;",
    )
    .map_err(|e| ("setting bulk-load pragmas", e))?;
    report.phases.push(("create tables", t.elapsed()));

    let t = Instant::now();
    let tx = conn
        .transaction()
        .map_err(|e| ("starting the transaction", e))?;
    let book_size = topo.book_size as i64;
    let nvm = topo.nvm_bytes_total() as i64;
    tx.execute(
        "INSERT INTO globals VALUES(?, ?, ?, ?, ?)",
        params![
            schema::SCHEMA_VERSION,
            book_size,
            nvm,
            nvm / book_size,
            topo.nodes.len() as i64
        ],
    )
    .map_err(|e| ("inserting globals", e))?;
    {
        let mut frd = tx
            .prepare(INSERT_FRDNODE)
            .map_err(|e| ("preparing FRDnodes", e))?;
        let mut soc = tx.prepare(INSERT_SOC).map_err(|e| ("preparing SOCs", e))?;
        for n in &topo.nodes {
            // INI racks are the integer 1; TMCF racks are words (INT affinity keeps numbers).
            frd.execute(params![
                n.node_id,
                n.rack,
                n.enc,
                n.node,
                n.coordinate,
                n.serial_number
            ])
            .map_err(|e| ("inserting FRDnodes", e))?;
            soc.execute(params![
                n.node_id,
                n.soc.mac_address,
                0,
                n.soc.coordinate,
                n.soc.tls_public_certificate,
                0,
                0,
                0,
                0,
                0,
                0
            ])
            .map_err(|e| ("inserting SOCs", e))?;
        }
    }
    report.nodes = topo.nodes.len();
    report.phases.push(("nodes", t.elapsed()));

    let t = Instant::now();
    {
        let mut fam = tx
            .prepare(INSERT_FAMODULE)
            .map_err(|e| ("preparing FAModules", e))?;
        let mut book = tx
            .prepare(INSERT_BOOK)
            .map_err(|e| ("preparing books", e))?;
        match topo.mode {
            Mode::Lza => {
                for ig in &topo.interleave_groups {
                    for mc in &ig.media_controllers {
                        fam.execute(params![
                            mc.node_id,
                            ig.group_id,
                            mc.module_size_books as i64,
                            mc.raw_cid,
                            0,
                            mc.coordinate,
                            mc.memory_size as i64
                        ])
                        .map_err(|e| ("inserting FAModules", e))?;
                        report.media_controllers += 1;
                    }
                }
                for ig in &topo.interleave_groups {
                    let g = i64::from(ig.group_id);
                    let value = g & schema::bii::VALUE_MASK; // BII mode LZA is 0
                    for k in 0..ig.total_books() as i64 {
                        let id = (g << schema::bii::IG_SHIFT) | (k << schema::bii::BOOK_SHIFT);
                        book.execute(params![id, value, k])
                            .map_err(|e| ("inserting books", e))?;
                        report.books += 1;
                    }
                }
            }
            Mode::PhysAddr => {
                let tag = schema::bii::MODE_PHYSADDR << schema::bii::MODE_SHIFT;
                for n in &topo.nodes {
                    let value = tag | (i64::from(n.node_id - 1) & schema::bii::VALUE_MASK);
                    let mut book_num = 0i64;
                    for r in &n.ranges {
                        let mut addr = r.addr;
                        for _ in 0..r.size / topo.book_size {
                            book.execute(params![addr as i64, value, book_num])
                                .map_err(|e| ("inserting books", e))?;
                            addr += topo.book_size;
                            book_num += 1;
                            report.books += 1;
                        }
                    }
                }
            }
        }
    }
    report.phases.push(("books", t.elapsed()));

    let t = Instant::now();
    schema::insert_initial_shelves(&tx, now_secs())
        .map_err(|e| ("inserting the initial shelves", e))?;
    tx.commit().map_err(|e| ("committing", e))?;
    report.phases.push(("commit", t.elapsed()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InterleaveGroup;

    const FAME4: &str = "[global]\nnode_count = 4\nbook_size_bytes = 8M\nnvm_size_per_node = 64B\n";

    fn topo(text: &str) -> Topology {
        Topology::from_ini_str("t.ini", text).unwrap()
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// The one row that `sql` selects, as a tuple of its columns.
    fn row<T>(conn: &Connection, sql: &str) -> T
    where
        T: for<'a> TryFrom<&'a rusqlite::Row<'a>, Error = rusqlite::Error>,
    {
        conn.query_row(sql, [], |r| T::try_from(r))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Every row that `sql` selects, as tuples of their columns.
    fn rows<T>(conn: &Connection, sql: &str) -> Vec<T>
    where
        T: for<'a> TryFrom<&'a rusqlite::Row<'a>, Error = rusqlite::Error>,
    {
        let mut stmt = conn.prepare(sql).unwrap();
        let rows = stmt.query_map([], |r| T::try_from(r));
        rows.and_then(Iterator::collect)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The names in `dir`, sorted.
    fn dir_entries(dir: &Path) -> Vec<String> {
        let names: std::collections::BTreeSet<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.into_iter().collect()
    }

    /// A refused or failed `create_db` left the existing database `db` as it was (`content`),
    /// and nothing beside it.
    fn assert_untouched(db: &Path, content: &[u8]) {
        assert_eq!(fs::read(db).unwrap(), content);
        assert_eq!(dir_entries(db.parent().unwrap()), ["lib.db"]);
    }

    #[test]
    fn sqlite_master_matches_schema() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("lib.db");
        topo(FAME4).create_db(&db, false).unwrap();
        let conn = Connection::open(&db).unwrap();
        let got: Vec<(String, String, String)> = rows(
            &conn,
            "SELECT type, name, sql FROM sqlite_master ORDER BY rowid",
        );
        let mut want: Vec<(String, String, String)> = schema::TABLES
            .iter()
            .map(|(n, s)| ("table".to_string(), n.to_string(), s.to_string()))
            .collect();
        want.push((
            "index".to_string(),
            schema::XATTR_INDEX.0.to_string(),
            schema::XATTR_INDEX.1.to_string(),
        ));
        assert_eq!(got, want);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(
            schema::schema_version(&conn).unwrap(),
            schema::SCHEMA_VERSION
        );
    }

    #[test]
    fn lza_rows() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("lib.db");
        let report = topo(FAME4).create_db(&db, false).unwrap();
        assert_eq!(report.books, 256);
        assert_eq!(report.nodes, 4);
        assert_eq!(report.media_controllers, 16);
        // Only the database itself is left in the directory.
        assert_eq!(dir_entries(dir.path()), vec!["lib.db".to_string()]);
        let conn = Connection::open(&db).unwrap();
        let g: (String, i64, i64, i64, i64) = row(&conn, "SELECT * FROM globals");
        assert_eq!(
            g,
            ("LIBRARIAN 0.997".into(), 8 << 20, 256 * (8 << 20), 256, 4)
        );
        let n: (i64, i64, i64, i64, String, String) =
            row(&conn, "SELECT * FROM FRDnodes WHERE node_id = 3");
        assert_eq!(n, (3, 1, 1, 3, "Node/3".into(), "1:1:3".into()));
        let s: (String, i64, String, String, i64) = row(&conn, "SELECT MAC, status, coordinate, tlsPublicCertificate, heartbeat + cpu_percent + rootfs_percent + network_in + network_out + mem_percent FROM SOCs WHERE node_id = 4");
        assert_eq!(
            s,
            (
                "52:54:42:04:04:04".into(),
                0,
                "SocBoard/1/Soc/1".into(),
                "NotToday".into(),
                0
            )
        );
        let f: (i64, i64, i64, i64, i64, String, i64) = row(
            &conn,
            "SELECT * FROM FAModules WHERE node_id = 2 AND coordinate LIKE '%/4'",
        );
        assert_eq!(
            f,
            (
                2,
                1,
                16,
                (1 << 4) | 11,
                0,
                "MemoryBoard/1/MediaController/4".into(),
                16 * (8 << 20)
            )
        );
        let b: (i64, i64, i64, i64) = row(&conn, "SELECT id, intlv_group, book_num, allocated + attributes FROM books WHERE intlv_group = 1 AND book_num = 0");
        assert_eq!(b, (1 << 46, 1, 0, 0));
        let id: i64 = count(
            &conn,
            "SELECT id FROM books WHERE intlv_group = 0 AND book_num = 1",
        );
        assert_eq!(id, 8589934592);
        assert_eq!(count(&conn, "SELECT count(*) FROM books"), 256);
        assert_eq!(
            count(&conn, "SELECT count(DISTINCT intlv_group) FROM books"),
            4
        );
        assert_eq!(count(&conn, "SELECT max(book_num) FROM books"), 63);
        let shelves: Vec<(i64, String, i64, i64, i64)> = rows(
            &conn,
            "SELECT id, name, mode, parent_id, link_count FROM shelves ORDER BY id",
        );
        assert_eq!(
            shelves,
            vec![
                (1, "garbage".into(), 16895, 0, 0),
                (2, ".".into(), 16895, 2, 3),
                (3, "lost+found".into(), 16895, 2, 2)
            ]
        );
    }

    #[test]
    fn physaddr_rows() {
        let t = topo(
            "[global]\nnode_count = 2\nbook_size_bytes = 2M\n[node01]\nnode_id = 1\nnvm_size = 0 @ 0x0\n[node03]\nnode_id = 3\nnvm_size =\n  2B @ 0x40000000\n  1B @ 0x80000000\n",
        );
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("p.db");
        t.create_db(&db, false).unwrap();
        let conn = Connection::open(&db).unwrap();
        let rows: Vec<(i64, i64, i64)> = rows(
            &conn,
            "SELECT id, intlv_group, book_num FROM books ORDER BY book_num",
        );
        assert_eq!(
            rows,
            vec![
                (0x40000000, 65538, 0),
                (0x40200000, 65538, 1),
                (0x80000000, 65538, 2)
            ]
        );
        assert_eq!(count(&conn, "SELECT count(*) FROM FAModules"), 0);
        assert_eq!(count(&conn, "SELECT count(*) FROM FRDnodes"), 2);
        assert_eq!(count(&conn, "SELECT nvm_bytes_total FROM globals"), 3 << 21);
    }

    #[test]
    fn refuses_existing_file_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("lib.db");
        fs::write(&db, b"precious").unwrap();
        let err = topo(FAME4).create_db(&db, false).unwrap_err();
        assert!(matches!(err, Error::DbExists(_)), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("database file exists") && msg.contains("lib.db") && msg.contains("-f"),
            "{msg}"
        );
        assert_untouched(&db, b"precious");
    }

    #[test]
    fn force_replaces_and_drops_stale_wal() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("lib.db");
        topo(FAME4).create_db(&db, false).unwrap();
        fs::write(dir.path().join("lib.db-wal"), b"stale").unwrap();
        fs::write(dir.path().join("lib.db-shm"), b"stale").unwrap();
        let t2 = topo("[global]\nnode_count = 2\nbook_size_bytes = 2M\nnvm_size_per_node = 8B\n");
        t2.create_db(&db, true).unwrap();
        assert_eq!(dir_entries(dir.path()), vec!["lib.db".to_string()]);
        let conn = Connection::open(&db).unwrap();
        assert_eq!(count(&conn, "SELECT count(*) FROM books"), 16);
        assert_eq!(count(&conn, "SELECT book_size_bytes FROM globals"), 2 << 20);
    }

    #[test]
    fn failure_leaves_nothing() {
        // Two interleave groups with the same id collide on books.id during population.
        let mut t = topo(FAME4);
        let dup = InterleaveGroup {
            group_id: 0,
            media_controllers: t.interleave_groups[0].media_controllers.clone(),
        };
        t.interleave_groups.push(dup);
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("lib.db");
        let err = t.create_db(&db, false).unwrap_err();
        assert!(err.to_string().contains("inserting books"), "{err}");
        assert!(dir_entries(dir.path()).is_empty());
        // With -f an existing database survives a failed rebuild.
        fs::write(&db, b"old").unwrap();
        t.create_db(&db, true).unwrap_err();
        assert_untouched(&db, b"old");
    }

    #[test]
    fn missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("no/such/dir/lib.db");
        let err = topo(FAME4).create_db(&db, false).unwrap_err();
        assert!(err.to_string().contains("temporary database file"), "{err}");
    }

    #[test]
    fn in_memory() {
        let r = topo(FAME4).create_db(":memory:", false).unwrap();
        assert_eq!(r.books, 256);
    }
}
