//! Offline consistency checks and repairs of a Librarian database, used by `fsck-lfs`.
//!
//! [`check`] re-creates the steps of the original `fsck_lfs.py`, in the same order and with the same
//! messages, fixes the original's blind spots and adds the checks it never had:
//!
//! 1. stale opens: every `opened_shelves` row, including those of deleted shelves;
//! 2. half-done unlinks (`.lfs_pending_zero_*`, `.tmfs_hidden*` shelves): their books become ZOMBIE,
//!    the shelf, its xattrs and its symlink target are deleted;
//! 3. ZOMBIE books return to FREE;
//! 4. book ownership: BOS rows of missing shelves or books, a book listed twice, a book on several
//!    shelves (the lowest shelf id keeps it), sequence numbers not `1..n`, books on a shelf that are
//!    not INUSE, `book_count`, `size_bytes` beyond the books, INUSE books on no shelf;
//! 5. xattrs of missing shelves;
//! 6. shelves whose parent is missing move to lost+found as `<name>_<id>` (lost+found is recreated if
//!    it is gone);
//! 7. directory link counts, with the original's definition (root: 1 + directories whose parent is
//!    root, a set that includes root itself; others: 2 + subdirectories);
//! 8. `links` rows of missing shelves or of shelves that are not symlinks, and extra targets;
//! 9. symlinks without a target (reported only: there is nothing to restore them from);
//! 10. duplicate names in one directory (later ids are renamed `<name>_<id>`).
//!
//! Every step sees the database as the previous steps left it, exactly as in the original. All
//! changes are made inside one `BEGIN IMMEDIATE` transaction that is committed only when repairs
//! were asked for; in report mode (and on any error) it is rolled back, so a report lists exactly
//! what a repair would do and changes nothing.
//!
//! The tool is offline: run it only while no Librarian serves the database. A live node may be
//! zeroing a `.lfs_pending_zero_*` shelf or hold an open handle that fsck would remove.

mod steps;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use lfs_db as schema;

/// Exit codes of `fsck-lfs`, in the spirit of `fsck(8)`.
pub mod exit {
    /// No problem found.
    pub const CLEAN: i32 = 0;
    /// Problems were found and all of them were repaired.
    pub const REPAIRED: i32 = 1;
    /// Problems were found and (some) left unrepaired: report mode, or no automatic repair exists.
    pub const UNREPAIRED: i32 = 4;
    /// Operational error: cannot open the database, wrong schema, fatal inconsistency, SQL error.
    pub const OPERATIONAL: i32 = 8;
    /// Usage or syntax error on the command line.
    pub const USAGE: i32 = 16;
}

/// How long to wait for a lock held by another connection before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The steps, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    StaleOpens,
    PartialUnlinks,
    ZombieBooks,
    BookOwnership,
    OrphanXattrs,
    OrphanShelves,
    LinkCounts,
    OrphanLinks,
    SymlinkTargets,
    DuplicateNames,
    OrphanOwners,
}

impl Step {
    /// Every step in execution order (the first seven are the original's, in its order).
    pub const ALL: [Step; 11] = [
        Step::StaleOpens,
        Step::PartialUnlinks,
        Step::ZombieBooks,
        Step::BookOwnership,
        Step::OrphanXattrs,
        Step::OrphanShelves,
        Step::LinkCounts,
        Step::OrphanLinks,
        Step::SymlinkTargets,
        Step::DuplicateNames,
        Step::OrphanOwners,
    ];

    /// The line that introduces the step (the original's docstrings for steps 1-7).
    pub fn description(self) -> &'static str {
        match self {
            Step::StaleOpens => "Remove stale file handles (dangling opens)",
            Step::PartialUnlinks => "Finalize partially-unlinked files",
            Step::ZombieBooks => "Return zombie books to free pool",
            Step::BookOwnership => "Verify book ownership & return orphan books to free pool",
            Step::OrphanXattrs => "Remove orphaned extended attributes",
            Step::OrphanShelves => "Move orphan files/directories to lost+found",
            Step::LinkCounts => "Fix any inconsistent link_counts of directories",
            Step::OrphanLinks => "Remove orphaned symlink targets",
            Step::SymlinkTargets => "Verify symlinks have targets",
            Step::DuplicateNames => "Rename duplicate names within a directory",
            Step::OrphanOwners => "Remove owners of deleted shelves",
        }
    }
}

/// The kind of one finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Problem {
    /// An open record of an existing shelf (the server is down, so it is stale).
    StaleOpen,
    /// An open record of a shelf that no longer exists (missed by the original).
    DanglingOpen,
    /// A `.lfs_pending_zero_*` or `.tmfs_hidden*` shelf left by an interrupted unlink or truncate.
    PartialUnlink,
    /// ZOMBIE books (released, never returned to FREE).
    ZombieBooks,
    /// `books_on_shelves` rows naming a shelf that does not exist.
    BosMissingShelf,
    /// `books_on_shelves` rows naming a book that does not exist.
    BosMissingBook,
    /// The same book listed more than once on one shelf.
    BookTwiceOnShelf,
    /// One book owned by several shelves.
    BookOnSeveralShelves,
    /// A shelf's sequence numbers are not exactly `1..n` (duplicates, gaps, NULLs).
    BadSeqNums,
    /// Books on a shelf that are not marked INUSE.
    BookNotInUse,
    /// `shelves.book_count` differs from the number of books on the shelf.
    WrongBookCount,
    /// `shelves.size_bytes` exceeds what the books can hold (or is NULL/negative).
    WrongSize,
    /// INUSE books that are on no shelf.
    ShelflessBooks,
    /// Extended attributes of a shelf that does not exist.
    OrphanXattrs,
    /// The lost+found directory (id 3) is missing.
    MissingLostFound,
    /// A shelf whose parent does not exist.
    OrphanShelf,
    /// A directory's `link_count` is wrong.
    WrongLinkCount,
    /// A `links` row whose shelf is gone or is not a symlink.
    OrphanLink,
    /// A symlink with more than one `links` row.
    DuplicateLink,
    /// A symlink without a `links` row (no automatic repair).
    SymlinkWithoutTarget,
    /// Two or more shelves with the same name in the same directory.
    DuplicateName,
    /// An `lfs_owners` row (ours) of a shelf that does not exist.
    OrphanOwner,
}

impl Problem {
    /// Every problem, in the order of the steps that find them.
    pub const ALL: &'static [Problem] = &[
        Problem::StaleOpen,
        Problem::DanglingOpen,
        Problem::PartialUnlink,
        Problem::ZombieBooks,
        Problem::BosMissingShelf,
        Problem::BosMissingBook,
        Problem::BookTwiceOnShelf,
        Problem::BookOnSeveralShelves,
        Problem::BadSeqNums,
        Problem::BookNotInUse,
        Problem::WrongBookCount,
        Problem::WrongSize,
        Problem::ShelflessBooks,
        Problem::OrphanXattrs,
        Problem::MissingLostFound,
        Problem::OrphanShelf,
        Problem::WrongLinkCount,
        Problem::OrphanLink,
        Problem::DuplicateLink,
        Problem::SymlinkWithoutTarget,
        Problem::DuplicateName,
        Problem::OrphanOwner,
    ];

    /// The problem's name as reports, scenario files and JUnit show it (`StaleOpen`).
    pub fn name(self) -> String {
        format!("{self:?}")
    }

    /// The problem of a name.
    pub fn from_name(name: &str) -> Option<Problem> {
        Problem::ALL.iter().copied().find(|p| p.name() == name)
    }
}

/// One problem found by a step, with what was (or would be) done about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub problem: Problem,
    /// One line, in the original's words where it had them (`closing <name>`, `Adjusting ...`).
    pub message: String,
    /// Shelves concerned (for missing shelves, the ids that were referenced).
    pub shelf_ids: Vec<i64>,
    /// Books concerned.
    pub book_ids: Vec<i64>,
    /// Names concerned (shelf names, xattr names, symlink targets).
    pub names: Vec<String>,
    /// Whether the repair fixes it; `false` for problems that are only reported.
    pub repairable: bool,
}

impl Finding {
    fn new(problem: Problem, message: impl Into<String>) -> Self {
        Finding {
            problem,
            message: message.into(),
            shelf_ids: Vec::new(),
            book_ids: Vec::new(),
            names: Vec::new(),
            repairable: true,
        }
    }

    fn shelves(mut self, ids: impl IntoIterator<Item = i64>) -> Self {
        self.shelf_ids.extend(ids);
        self
    }

    fn books(mut self, ids: impl IntoIterator<Item = i64>) -> Self {
        self.book_ids.extend(ids);
        self
    }

    fn names<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.names.extend(names.into_iter().map(Into::into));
        self
    }

    fn report_only(mut self) -> Self {
        self.repairable = false;
        self
    }
}

/// What one step found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    pub step: Step,
    /// The text after `<description>: `, e.g. `2 detected` or `64 book(s) in use`.
    pub summary: String,
    pub findings: Vec<Finding>,
}

/// Free and total books.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub free: i64,
    pub total: i64,
}

impl Capacity {
    /// Integer percentage of free books (0 when there are no books).
    pub fn percent(&self) -> i64 {
        if self.total <= 0 {
            return 0;
        }
        (i128::from(self.free) * 100 / i128::from(self.total)) as i64
    }
}

impl fmt::Display for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "free books / total books = {} / {} ({}%)",
            self.free,
            self.total,
            self.percent()
        )
    }
}

/// The outcome of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Capacity before any step.
    pub before: Capacity,
    /// Capacity after all steps (in report mode: what it would be after a repair).
    pub after: Capacity,
    pub steps: Vec<StepReport>,
    /// The repairs were committed.
    pub repaired: bool,
}

impl Report {
    /// Every finding of every step, in order.
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.steps.iter().flat_map(|s| s.findings.iter())
    }

    /// Number of problems found.
    pub fn problems(&self) -> usize {
        self.findings().count()
    }

    /// Number of problems still present in the database.
    pub fn unrepaired(&self) -> usize {
        self.findings()
            .filter(|f| !(self.repaired && f.repairable))
            .count()
    }

    pub fn is_clean(&self) -> bool {
        self.problems() == 0
    }

    /// The step report of `step`.
    pub fn step(&self, step: Step) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.step == step)
    }

    /// `fsck-lfs`'s exit code for this report (see [`exit`]).
    pub fn exit_code(&self) -> i32 {
        if self.is_clean() {
            exit::CLEAN
        } else if self.unrepaired() == 0 {
            exit::REPAIRED
        } else {
            exit::UNREPAIRED
        }
    }

    /// The text `fsck-lfs` prints: capacity, one `<description>: <result>` line per step with its
    /// findings indented below, capacity after, and a verdict. `verbose` adds the ids of every
    /// shelf and book concerned.
    pub fn render(&self, verbose: bool) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "{}\n", self.before);
        for step in &self.steps {
            let _ = writeln!(out, "{}: {}", step.step.description(), step.summary);
            for f in &step.findings {
                let note = if f.repairable {
                    ""
                } else {
                    " (no automatic repair)"
                };
                let _ = writeln!(out, "\t{}{}", f.message, note);
                if verbose {
                    if !f.shelf_ids.is_empty() {
                        let _ = writeln!(out, "\t\tshelf id(s): {}", join(&f.shelf_ids));
                    }
                    if !f.book_ids.is_empty() {
                        let _ = writeln!(out, "\t\tbook id(s): {}", join(&f.book_ids));
                    }
                }
            }
            out.push('\n');
        }
        if self.repaired {
            let _ = writeln!(out, "Finalizing database");
            let _ = writeln!(out, "{}\n", self.after);
        } else if self.is_clean() {
            let _ = writeln!(out, "Report only: nothing was changed");
            let _ = writeln!(out, "{}\n", self.after);
        } else {
            let _ = writeln!(out, "Report only: nothing was changed");
            let _ = writeln!(out, "{} after repair\n", self.after);
        }
        let n = self.problems();
        let left = self.unrepaired();
        let verdict = if n == 0 {
            "No problems found".to_string()
        } else if left == 0 {
            format!("{n} problem(s) found, all repaired")
        } else if self.repaired {
            format!("{n} problem(s) found, {left} left unrepaired (no automatic repair exists)")
        } else {
            format!("{n} problem(s) found; run with --repair to fix them")
        };
        let _ = writeln!(out, "{verdict}");
        out
    }
}

fn join(ids: &[i64]) -> String {
    ids.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why fsck could not run to the end. Nothing was changed when one of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum FsckError {
    #[error("{}: no such file", .0.display())]
    NotFound(PathBuf),
    #[error("{}: cannot open database: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("not a Librarian database: {0}")]
    NotLibrarian(String),
    #[error("schema version is {found:?}, expected {:?}", schema::SCHEMA_VERSION)]
    SchemaVersion { found: String },
    /// An inconsistency fsck cannot repair (the original's `no recovery is possible`).
    #[error("{0}: no recovery is possible")]
    Fatal(String),
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    /// Any other error, attributed to a database file.
    #[error("{}: {source}", path.display())]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<FsckError>,
    },
}

impl FsckError {
    /// Attributes the error to `path` unless it already names a file.
    pub fn in_file(self, path: &Path) -> FsckError {
        match self {
            e @ (FsckError::NotFound(_) | FsckError::Open { .. } | FsckError::InFile { .. }) => e,
            e => FsckError::InFile {
                path: path.to_path_buf(),
                source: Box::new(e),
            },
        }
    }
}

/// `globals` values the steps need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Globals {
    pub book_size: i64,
    pub books_total: i64,
}

/// Runs every step on `conn` inside one immediate transaction, committed when `repair` is true and
/// rolled back otherwise (and on any error). The schema version, the `globals` row, the book
/// count and the root directory are verified first.
pub fn check(conn: &Connection, repair: bool) -> Result<Report, FsckError> {
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let globals = preflight(&tx)?;
    let before = capacity(&tx, &globals)?;
    let mut reports = Vec::with_capacity(Step::ALL.len());
    for step in Step::ALL {
        reports.push(steps::run(step, &tx, &globals)?);
    }
    let after = capacity(&tx, &globals)?;
    if repair {
        tx.commit()?;
    } else {
        tx.rollback()?;
    }
    Ok(Report {
        before,
        after,
        steps: reports,
        repaired: repair,
    })
}

/// Checks the database file at `path`. With `repair` the file is opened read-write and repaired in
/// place; otherwise it is opened read-only and checked on an in-memory snapshot read through
/// SQLite (so the `-wal` file is honoured), leaving the file untouched. Errors name the file.
pub fn check_file(path: &Path, repair: bool) -> Result<Report, FsckError> {
    let conn = if repair {
        open_read_write(path)?
    } else {
        open_snapshot(path)?
    };
    check(&conn, repair).map_err(|e| e.in_file(path))
}

fn ensure_exists(path: &Path) -> Result<(), FsckError> {
    match std::fs::metadata(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(FsckError::NotFound(path.to_path_buf()))
        }
        // Let SQLite report permission problems and the like in its own words.
        Err(_) => Ok(()),
    }
}

fn open_error(path: &Path) -> impl Fn(rusqlite::Error) -> FsckError + '_ {
    move |source| FsckError::Open {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens an existing database for repair (never creates one).
pub fn open_read_write(path: &Path) -> Result<Connection, FsckError> {
    let conn = open_existing(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    // Reading the schema here turns "file is not a database" into an open error.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(open_error(path))?;
    Ok(conn)
}

/// Opens `path` read-only and copies its schema and rows, in one read transaction, into a new
/// in-memory database, on which a report can run its (rolled back) repairs.
pub fn open_snapshot(path: &Path) -> Result<Connection, FsckError> {
    let src = open_existing(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mem = Connection::open_in_memory()?;
    copy_database(&src, &mem).map_err(open_error(path))?;
    Ok(mem)
}

/// Opens the database at `path`, which must exist, with `access` (read-write or read-only),
/// waiting up to `BUSY_TIMEOUT` for a Librarian that is writing.
fn open_existing(path: &Path, access: OpenFlags) -> Result<Connection, FsckError> {
    ensure_exists(path)?;
    let flags = access | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(open_error(path))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error(path))?;
    Ok(conn)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn copy_database(src: &Connection, dst: &Connection) -> rusqlite::Result<()> {
    let read = src.unchecked_transaction()?;
    let objects: Vec<(String, String, String)> = {
        let mut stmt = read.prepare(
            "SELECT type, name, sql FROM sqlite_master
             WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
             ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1
                                WHEN 'view' THEN 2 ELSE 3 END, rowid",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let write = dst.unchecked_transaction()?;
    for (kind, name, sql) in &objects {
        if kind == "table" {
            write.execute(sql, [])?;
            let table = quote_ident(name);
            let mut select = read.prepare(&format!("SELECT * FROM {table}"))?;
            let ncols = select.column_count();
            if ncols == 0 {
                continue;
            }
            let marks = vec!["?"; ncols].join(", ");
            let mut insert = write.prepare(&format!("INSERT INTO {table} VALUES ({marks})"))?;
            let mut rows = select.query([])?;
            while let Some(row) = rows.next()? {
                let values = (0..ncols)
                    .map(|i| row.get::<_, Value>(i))
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                insert.execute(rusqlite::params_from_iter(values))?;
            }
        }
    }
    // Indexes, views and triggers after the rows, so that triggers do not fire while copying.
    for (kind, _, sql) in &objects {
        if kind != "table" {
            write.execute(sql, [])?;
        }
    }
    write.commit()?;
    read.commit()
}

/// Verifies what every step relies on; any failure here is fatal and nothing is changed.
fn preflight(conn: &Connection) -> Result<Globals, FsckError> {
    let has_table = |name: &str| -> rusqlite::Result<bool> {
        conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE",
            [name],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
    };
    if !has_table("globals")? {
        return Err(FsckError::NotLibrarian("no globals table".into()));
    }
    let rows: Vec<(Option<String>, Option<i64>, Option<i64>)> = {
        let mut stmt =
            conn.prepare("SELECT schema_version, book_size_bytes, books_total FROM globals")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                steps::text_at(r, 0)?,
                steps::int_at(r, 1)?,
                steps::int_at(r, 2)?,
            ))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let Some((version, book_size, books_total)) = rows.first().cloned() else {
        return Err(FsckError::NotLibrarian(
            "the globals table has no row".into(),
        ));
    };
    let version = version.unwrap_or_default();
    if version != schema::SCHEMA_VERSION {
        return Err(FsckError::SchemaVersion { found: version });
    }
    for (name, _) in schema::TABLES {
        if !has_table(name)? {
            return Err(FsckError::NotLibrarian(format!("no {name} table")));
        }
    }
    if rows.len() != 1 {
        return Err(FsckError::Fatal(format!(
            "globals has {} rows instead of one",
            rows.len()
        )));
    }
    let book_size = match book_size {
        Some(n) if n > 0 => n,
        other => {
            return Err(FsckError::Fatal(format!(
                "globals.book_size_bytes is {}",
                steps::show(other)
            )))
        }
    };
    let count: i64 = conn.query_row("SELECT count(*) FROM books", [], |r| r.get(0))?;
    if books_total != Some(count) {
        return Err(FsckError::Fatal(format!(
            "Book count mismatch (globals.books_total = {}, books has {count} rows)",
            steps::show(books_total)
        )));
    }
    let root_mode: Option<Option<i64>> = {
        let mut stmt = conn.prepare("SELECT mode FROM shelves WHERE id = ?")?;
        let mut rows = stmt.query([schema::ROOT_SHELF_ID])?;
        match rows.next()? {
            Some(r) => Some(steps::int_at(r, 0)?),
            None => None,
        }
    };
    match root_mode {
        None => {
            return Err(FsckError::Fatal(format!(
                "the root directory (shelf {}) is missing",
                schema::ROOT_SHELF_ID
            )))
        }
        Some(mode) if !steps::is_dir(mode) => {
            return Err(FsckError::Fatal(format!(
                "the root (shelf {}) is not a directory (mode {})",
                schema::ROOT_SHELF_ID,
                steps::show(mode)
            )))
        }
        Some(_) => {}
    }
    Ok(Globals {
        book_size,
        books_total: count,
    })
}

fn capacity(conn: &Connection, globals: &Globals) -> Result<Capacity, FsckError> {
    let free: i64 = conn.query_row(
        "SELECT count(*) FROM books WHERE allocated = ?",
        [schema::book_state::FREE],
        |r| r.get(0),
    )?;
    Ok(Capacity {
        free,
        total: globals.books_total,
    })
}
