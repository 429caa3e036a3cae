//! The individual steps of [`super::check`]. Each one reads the database as the previous steps
//! left it, records its findings and applies its repairs (inside the caller's transaction).

use std::collections::{BTreeMap, HashMap, HashSet};

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, Row};

use super::{Finding, FsckError, Globals, Problem, Step, StepReport};
use lfs_db::{book_state, GARBAGE_SHELF_ID, LOST_FOUND_SHELF_ID, MODE_DEFAULT_DIR, ROOT_SHELF_ID};

type Result<T> = std::result::Result<T, FsckError>;

/// Name prefixes of shelves left by an interrupted unlink or truncate: the server's zeroing
/// shelves and FUSE's hidden files.
pub(crate) const PARTIAL_UNLINK_PREFIXES: [&str; 2] = [".lfs_pending_zero_", ".tmfs_hidden"];

use lfs_proto::mode::{S_IFDIR, S_IFLNK, S_IFMT};

pub(crate) fn is_dir(mode: Option<i64>) -> bool {
    mode.is_some_and(|m| m & S_IFMT == S_IFDIR)
}

pub(crate) fn is_symlink(mode: Option<i64>) -> bool {
    mode.is_some_and(|m| m & S_IFMT == S_IFLNK)
}

/// Reads an integer column leniently: NULL, blobs and text that is not a number are `None`,
/// reals are truncated. A damaged value then shows up as a finding instead of stopping fsck.
pub(crate) fn int_at(row: &Row, i: usize) -> rusqlite::Result<Option<i64>> {
    Ok(match row.get_ref(i)? {
        ValueRef::Null | ValueRef::Blob(_) => None,
        ValueRef::Integer(v) => Some(v),
        ValueRef::Real(f) if f.is_finite() => Some(f as i64),
        ValueRef::Real(_) => None,
        ValueRef::Text(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.trim().parse().ok()),
    })
}

/// Reads a text column leniently (numbers are formatted, blobs decoded lossily).
pub(crate) fn text_at(row: &Row, i: usize) -> rusqlite::Result<Option<String>> {
    Ok(match row.get_ref(i)? {
        ValueRef::Null => None,
        ValueRef::Integer(v) => Some(v.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
    })
}

/// An optional number as the messages show it.
pub(crate) fn show(v: Option<i64>) -> String {
    v.map_or_else(|| "NULL".to_string(), |v| v.to_string())
}

#[derive(Debug, Clone)]
struct Shelf {
    id: i64,
    name: Option<String>,
    size_bytes: Option<i64>,
    book_count: Option<i64>,
    mode: Option<i64>,
    parent_id: Option<i64>,
    link_count: Option<i64>,
}

impl Shelf {
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    /// `name (id N)`, for messages.
    fn label(&self) -> String {
        format!("{} (id {})", self.name(), self.id)
    }
}

fn load_shelves(conn: &Connection) -> rusqlite::Result<Vec<Shelf>> {
    let mut stmt = conn.prepare(
        "SELECT id, name, size_bytes, book_count, mode, parent_id, link_count
         FROM shelves ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Shelf {
            id: r.get(0)?,
            name: text_at(r, 1)?,
            size_bytes: int_at(r, 2)?,
            book_count: int_at(r, 3)?,
            mode: int_at(r, 4)?,
            parent_id: int_at(r, 5)?,
            link_count: int_at(r, 6)?,
        })
    })?;
    rows.collect()
}

fn shelf_label(shelves: &HashMap<i64, Shelf>, id: i64) -> String {
    shelves
        .get(&id)
        .map_or_else(|| format!("id {id}"), Shelf::label)
}

pub(super) fn run(step: Step, conn: &Connection, globals: &Globals) -> Result<StepReport> {
    let (summary, findings) = match step {
        Step::StaleOpens => stale_opens(conn)?,
        Step::PartialUnlinks => partial_unlinks(conn)?,
        Step::ZombieBooks => zombie_books(conn)?,
        Step::BookOwnership => book_ownership(conn, globals)?,
        Step::OrphanXattrs => orphan_xattrs(conn)?,
        Step::OrphanShelves => orphan_shelves(conn)?,
        Step::LinkCounts => link_counts(conn)?,
        Step::OrphanLinks => orphan_links(conn)?,
        Step::SymlinkTargets => symlink_targets(conn)?,
        Step::DuplicateNames => duplicate_names(conn)?,
        Step::OrphanOwners => orphan_owners(conn)?,
    };
    Ok(StepReport {
        step,
        summary,
        findings,
    })
}

fn detected(findings: &[Finding]) -> String {
    format!("{} detected", findings.len())
}

/// Step 1: every open record is stale offline. The original listed only records that join to an
/// existing shelf (and then deleted all rows); records of deleted shelves are reported here too.
fn stale_opens(conn: &Connection) -> Result<(String, Vec<Finding>)> {
    let mut findings = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT o.id, o.shelf_id, o.node_id, o.pid, s.id, s.name
             FROM opened_shelves o LEFT JOIN shelves s ON s.id = o.shelf_id
             ORDER BY o.id",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let handle: i64 = r.get(0)?;
            let shelf_id = int_at(r, 1)?;
            let who = format!(
                "handle {handle}, node {}, pid {}",
                show(int_at(r, 2)?),
                show(int_at(r, 3)?)
            );
            let finding = match int_at(r, 4)? {
                Some(id) => {
                    let name = text_at(r, 5)?.unwrap_or_default();
                    Finding::new(Problem::StaleOpen, format!("closing {name} ({who})"))
                        .shelves([id])
                        .names([name])
                }
                None => Finding::new(
                    Problem::DanglingOpen,
                    format!("closing handle of deleted shelf {} ({who})", show(shelf_id)),
                )
                .shelves(shelf_id),
            };
            findings.push(finding);
        }
    }
    if !findings.is_empty() {
        conn.execute("DELETE FROM opened_shelves", [])?;
    }
    Ok((detected(&findings), findings))
}

/// Step 2: finish what an interrupted unlink/truncate left. Books on the shelf go INUSE -> ZOMBIE
/// (step 3 frees them); the shelf, its xattrs and any symlink target are deleted. Directories and
/// the reserved shelves are never taken for such leftovers (the server only makes regular files),
/// and the prefixes are matched literally (the original's `LIKE` also took `_` as a wildcard and
/// ignored case).
fn partial_unlinks(conn: &Connection) -> Result<(String, Vec<Finding>)> {
    let mut findings = Vec::new();
    for shelf in load_shelves(conn)? {
        let partial = PARTIAL_UNLINK_PREFIXES
            .iter()
            .any(|p| shelf.name().starts_with(p));
        if !partial || is_dir(shelf.mode) || shelf.id <= LOST_FOUND_SHELF_ID {
            continue;
        }
        let books: Vec<i64> = {
            let mut stmt = conn.prepare(
                "SELECT book_id FROM books_on_shelves WHERE shelf_id = ?
                 ORDER BY seq_num, rowid",
            )?;
            let rows = stmt.query_map([shelf.id], |r| int_at(r, 0))?;
            rows.filter_map(|b| b.transpose())
                .collect::<rusqlite::Result<_>>()?
        };
        conn.execute(
            "DELETE FROM books_on_shelves WHERE shelf_id = ?",
            [shelf.id],
        )?;
        for book in &books {
            conn.execute(
                "UPDATE books SET allocated = ? WHERE id = ? AND allocated = ?",
                params![book_state::ZOMBIE, book, book_state::INUSE],
            )?;
        }
        conn.execute("DELETE FROM shelf_xattrs WHERE shelf_id = ?", [shelf.id])?;
        conn.execute("DELETE FROM links WHERE shelf_id = ?", [shelf.id])?;
        conn.execute("DELETE FROM shelves WHERE id = ?", [shelf.id])?;
        findings.push(
            Finding::new(
                Problem::PartialUnlink,
                format!("removing {} ({} book(s))", shelf.name(), books.len()),
            )
            .shelves([shelf.id])
            .books(books)
            .names([shelf.name()]),
        );
    }
    Ok((detected(&findings), findings))
}

/// Step 3: nothing else ever returns ZOMBIE books to FREE.
fn zombie_books(conn: &Connection) -> Result<(String, Vec<Finding>)> {
    let zombies: Vec<i64> = {
        let mut stmt = conn.prepare("SELECT id FROM books WHERE allocated = ? ORDER BY id")?;
        let rows = stmt.query_map([book_state::ZOMBIE], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let summary = format!("{} detected", zombies.len());
    if zombies.is_empty() {
        return Ok((summary, Vec::new()));
    }
    conn.execute(
        "UPDATE books SET allocated = ? WHERE allocated = ?",
        [book_state::FREE, book_state::ZOMBIE],
    )?;
    let finding = Finding::new(
        Problem::ZombieBooks,
        format!(
            "returning {} zombie book(s) to the free pool",
            zombies.len()
        ),
    )
    .books(zombies);
    Ok((summary, vec![finding]))
}

#[derive(Debug, Clone, Copy)]
struct Bos {
    rowid: i64,
    shelf_id: Option<i64>,
    book_id: Option<i64>,
    seq_num: Option<i64>,
}

fn state_name(state: Option<i64>) -> String {
    match state {
        Some(book_state::FREE) => "FREE".into(),
        Some(book_state::INUSE) => "INUSE".into(),
        Some(book_state::ZOMBIE) => "ZOMBIE".into(),
        Some(book_state::OFFLINE) => "OFFLINE".into(),
        other => show(other),
    }
}

/// Step 4: make `books_on_shelves`, `books.allocated` and the shelves' counts and sizes agree.
/// The original stopped at duplicate sequence numbers ("no repair automation exists") and never
/// looked at books owned twice or BOS rows of missing shelves or books.
fn book_ownership(conn: &Connection, globals: &Globals) -> Result<(String, Vec<Finding>)> {
    let shelves: Vec<Shelf> = load_shelves(conn)?;
    let by_id: HashMap<i64, Shelf> = shelves.iter().map(|s| (s.id, s.clone())).collect();
    let mut books: HashMap<i64, Option<i64>> = {
        let mut stmt = conn.prepare("SELECT id, allocated FROM books")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, int_at(r, 1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let in_use = books
        .values()
        .filter(|a| **a == Some(book_state::INUSE))
        .count();
    let bos: Vec<Bos> = {
        let mut stmt = conn.prepare(
            "SELECT rowid, shelf_id, book_id, seq_num FROM books_on_shelves ORDER BY rowid",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Bos {
                rowid: r.get(0)?,
                shelf_id: int_at(r, 1)?,
                book_id: int_at(r, 2)?,
                seq_num: int_at(r, 3)?,
            })
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };

    let mut findings = Vec::new();
    let mut doomed: Vec<i64> = Vec::new();

    // BOS rows naming a missing shelf or a missing book.
    let mut missing_shelf: BTreeMap<Option<i64>, Vec<Bos>> = BTreeMap::new();
    let mut missing_book: BTreeMap<i64, Vec<Bos>> = BTreeMap::new();
    let mut on_shelf: BTreeMap<i64, Vec<Bos>> = BTreeMap::new();
    for row in bos {
        match row.shelf_id.filter(|s| by_id.contains_key(s)) {
            None => missing_shelf.entry(row.shelf_id).or_default().push(row),
            Some(s) if row.book_id.is_some_and(|b| books.contains_key(&b)) => {
                on_shelf.entry(s).or_default().push(row)
            }
            Some(s) => missing_book.entry(s).or_default().push(row),
        }
    }
    for (shelf_id, rows) in missing_shelf {
        doomed.extend(rows.iter().map(|r| r.rowid));
        findings.push(
            Finding::new(
                Problem::BosMissingShelf,
                format!(
                    "removing {} BOS row(s) of deleted shelf {}",
                    rows.len(),
                    show(shelf_id)
                ),
            )
            .shelves(shelf_id)
            .books(rows.iter().filter_map(|r| r.book_id)),
        );
    }
    for (shelf_id, rows) in missing_book {
        doomed.extend(rows.iter().map(|r| r.rowid));
        let missing: Vec<String> = rows.iter().map(|r| show(r.book_id)).collect();
        findings.push(
            Finding::new(
                Problem::BosMissingBook,
                format!(
                    "removing {} BOS row(s) of {} naming missing book(s) {}",
                    rows.len(),
                    shelf_label(&by_id, shelf_id),
                    missing.join(", ")
                ),
            )
            .shelves([shelf_id])
            .books(rows.iter().filter_map(|r| r.book_id)),
        );
    }

    // A book listed more than once on one shelf: the first (by seq_num) stays.
    for (&shelf_id, rows) in on_shelf.iter_mut() {
        rows.sort_by_key(|r| (r.seq_num.is_none(), r.seq_num, r.rowid));
        let mut seen = HashSet::new();
        let mut extra: Vec<Bos> = Vec::new();
        rows.retain(|r| {
            let first = seen.insert(r.book_id);
            if !first {
                extra.push(*r);
            }
            first
        });
        if !extra.is_empty() {
            doomed.extend(extra.iter().map(|r| r.rowid));
            let mut ids: Vec<i64> = extra.iter().filter_map(|r| r.book_id).collect();
            ids.dedup();
            findings.push(
                Finding::new(
                    Problem::BookTwiceOnShelf,
                    format!(
                        "dropping {} repeated BOS row(s) of {}: book(s) {} listed more than once",
                        extra.len(),
                        shelf_label(&by_id, shelf_id),
                        super::join(&ids)
                    ),
                )
                .shelves([shelf_id])
                .books(ids),
            );
        }
    }

    // A book owned by several shelves: the lowest shelf id keeps it.
    let mut owners: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (&shelf_id, rows) in &on_shelf {
        for r in rows {
            if let Some(b) = r.book_id {
                owners.entry(b).or_default().push(shelf_id);
            }
        }
    }
    for (book, shelf_ids) in owners.into_iter().filter(|(_, s)| s.len() > 1) {
        let keeper = shelf_ids[0];
        for other in &shelf_ids[1..] {
            if let Some(rows) = on_shelf.get_mut(other) {
                rows.retain(|r| {
                    let keep = r.book_id != Some(book);
                    if !keep {
                        doomed.push(r.rowid);
                    }
                    keep
                });
            }
        }
        let labels: Vec<String> = shelf_ids.iter().map(|&s| shelf_label(&by_id, s)).collect();
        findings.push(
            Finding::new(
                Problem::BookOnSeveralShelves,
                format!(
                    "book {book} is on shelves {}: keeping it on {}",
                    labels.join(", "),
                    shelf_label(&by_id, keeper)
                ),
            )
            .shelves(shelf_ids)
            .books([book]),
        );
    }
    for rowid in &doomed {
        conn.execute("DELETE FROM books_on_shelves WHERE rowid = ?", [rowid])?;
    }

    // Sequence numbers must be exactly 1..n in the order they had.
    for (&shelf_id, rows) in &on_shelf {
        let in_order = rows
            .iter()
            .enumerate()
            .all(|(i, r)| r.seq_num == Some(i as i64 + 1));
        if in_order {
            continue;
        }
        let mut seqs: Vec<i64> = rows.iter().filter_map(|r| r.seq_num).collect();
        let total = seqs.len();
        seqs.dedup();
        let what = if seqs.len() != total {
            "duplicate sequence numbers in"
        } else {
            "sequence numbers not 1..n in"
        };
        let mut renumber =
            conn.prepare_cached("UPDATE books_on_shelves SET seq_num = ? WHERE rowid = ?")?;
        for (seq, r) in (1i64..).zip(rows) {
            if r.seq_num != Some(seq) {
                renumber.execute([seq, r.rowid])?;
            }
        }
        findings.push(
            Finding::new(
                Problem::BadSeqNums,
                format!(
                    "{what} {}: renumbering 1..{}",
                    shelf_label(&by_id, shelf_id),
                    rows.len()
                ),
            )
            .shelves([shelf_id]),
        );
    }

    // Per shelf: its books are INUSE, book_count is their number, size_bytes fits in them.
    for shelf in &shelves {
        let rows = on_shelf.get(&shelf.id).map_or(&[][..], Vec::as_slice);
        let mut not_in_use: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for b in rows.iter().filter_map(|r| r.book_id) {
            let state = books.get(&b).copied().flatten();
            if state != Some(book_state::INUSE) {
                not_in_use.entry(state_name(state)).or_default().push(b);
            }
        }
        for (state, ids) in not_in_use {
            for b in &ids {
                conn.execute(
                    "UPDATE books SET allocated = ? WHERE id = ?",
                    params![book_state::INUSE, b],
                )?;
                books.insert(*b, Some(book_state::INUSE));
            }
            findings.push(
                Finding::new(
                    Problem::BookNotInUse,
                    format!(
                        "marking {} {state} book(s) of {} INUSE",
                        ids.len(),
                        shelf.label()
                    ),
                )
                .shelves([shelf.id])
                .books(ids),
            );
        }
        // book_count is the number of its books; size_bytes fits in them.
        let count = rows.len() as i64;
        let size = shelf.size_bytes.unwrap_or(-1);
        let fitting_size = size.clamp(0, count.saturating_mul(globals.book_size));
        let wants = [
            (
                "book_count",
                shelf.book_count,
                count,
                Problem::WrongBookCount,
                "count",
            ),
            (
                "size_bytes",
                shelf.size_bytes,
                fitting_size,
                Problem::WrongSize,
                "size",
            ),
        ];
        for (column, have, want, problem, what) in wants {
            if have != Some(want) {
                conn.execute(
                    &format!("UPDATE shelves SET {column} = ? WHERE id = ?"),
                    [want, shelf.id],
                )?;
                let name = shelf.name();
                let message = format!("Adjusting {name} book {what} {} -> {want}", show(have));
                let finding = Finding::new(problem, message).shelves([shelf.id]);
                findings.push(finding.names([name]));
            }
        }
    }

    // INUSE books on no shelf.
    let owned: HashSet<i64> = on_shelf
        .values()
        .flatten()
        .filter_map(|r| r.book_id)
        .collect();
    let mut shelfless: Vec<i64> = books
        .iter()
        .filter(|(id, state)| **state == Some(book_state::INUSE) && !owned.contains(id))
        .map(|(id, _)| *id)
        .collect();
    shelfless.sort_unstable();
    if !shelfless.is_empty() {
        for b in &shelfless {
            conn.execute(
                "UPDATE books SET allocated = ? WHERE id = ?",
                params![book_state::FREE, b],
            )?;
        }
        findings.push(
            Finding::new(
                Problem::ShelflessBooks,
                format!(
                    "Clearing {} book(s) marked as allocated but shelfless",
                    shelfless.len()
                ),
            )
            .books(shelfless),
        );
    }
    Ok((format!("{in_use} book(s) in use"), findings))
}

/// Step 5: xattrs whose shelf no longer exists.
fn orphan_xattrs(conn: &Connection) -> Result<(String, Vec<Finding>)> {
    let mut orphans: BTreeMap<Option<i64>, Vec<(i64, String)>> = BTreeMap::new();
    {
        let mut stmt = conn.prepare(
            "SELECT x.rowid, x.shelf_id, x.xattr FROM shelf_xattrs x
             WHERE NOT EXISTS (SELECT 1 FROM shelves s WHERE s.id = x.shelf_id)
             ORDER BY x.rowid",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            orphans
                .entry(int_at(r, 1)?)
                .or_default()
                .push((r.get(0)?, text_at(r, 2)?.unwrap_or_default()));
        }
    }
    let mut findings = Vec::new();
    for (shelf_id, xattrs) in orphans {
        for (rowid, _) in &xattrs {
            conn.execute("DELETE FROM shelf_xattrs WHERE rowid = ?", [rowid])?;
        }
        let names: Vec<String> = xattrs.into_iter().map(|(_, n)| n).collect();
        findings.push(
            Finding::new(
                Problem::OrphanXattrs,
                format!(
                    "removing xattr(s) {} of deleted shelf {}",
                    names.join(", "),
                    show(shelf_id)
                ),
            )
            .shelves(shelf_id)
            .names(names),
        );
    }
    Ok((detected(&findings), findings))
}

/// Step 11 (ours): owner rows of shelves that are gone. A database the original made, or one our
/// Librarian never served, has no `lfs_owners` table: nothing to check.
fn orphan_owners(conn: &Connection) -> Result<(String, Vec<Finding>)> {
    let has_table: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
        [lfs_db::OWNERS_TABLE.0],
        |r| r.get(0),
    )?;
    if has_table == 0 {
        return Ok((
            "no owners table (a database the original made)".into(),
            vec![],
        ));
    }
    let orphans: Vec<i64> = conn
        .prepare(
            "SELECT o.shelf_id FROM lfs_owners o
             WHERE NOT EXISTS (SELECT 1 FROM shelves s WHERE s.id = o.shelf_id)
             ORDER BY o.shelf_id",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut findings = Vec::new();
    for id in orphans {
        conn.execute("DELETE FROM lfs_owners WHERE shelf_id = ?", [id])?;
        findings.push(
            Finding::new(
                Problem::OrphanOwner,
                format!("removing the owner of deleted shelf {id}"),
            )
            .shelves(Some(id)),
        );
    }
    Ok((detected(&findings), findings))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Step 6: shelves (except the garbage placeholder) whose parent does not exist go to lost+found
/// as `<name>_<id>`. lost+found is recreated first if it is gone; root and lost+found themselves
/// go back under root instead of into lost+found.
fn orphan_shelves(conn: &Connection) -> Result<(String, Vec<Finding>)> {
    let shelves = load_shelves(conn)?;
    let mut ids: HashSet<i64> = shelves.iter().map(|s| s.id).collect();
    let mut findings = Vec::new();
    if !ids.contains(&LOST_FOUND_SHELF_ID) {
        let t = now();
        conn.execute(
            "INSERT INTO shelves VALUES (?, 0, 0, 0, ?, ?, 'lost+found', ?, ?, 2)",
            params![LOST_FOUND_SHELF_ID, t, t, MODE_DEFAULT_DIR, ROOT_SHELF_ID],
        )?;
        ids.insert(LOST_FOUND_SHELF_ID);
        findings.push(
            Finding::new(
                Problem::MissingLostFound,
                format!("recreating lost+found (id {LOST_FOUND_SHELF_ID})"),
            )
            .shelves([LOST_FOUND_SHELF_ID]),
        );
    }
    let mut lost = 0;
    for shelf in &shelves {
        if shelf.id == GARBAGE_SHELF_ID || shelf.parent_id.is_some_and(|p| ids.contains(&p)) {
            continue;
        }
        lost += 1;
        let finding = if shelf.id == ROOT_SHELF_ID || shelf.id == LOST_FOUND_SHELF_ID {
            conn.execute(
                "UPDATE shelves SET parent_id = ? WHERE id = ?",
                [ROOT_SHELF_ID, shelf.id],
            )?;
            Finding::new(
                Problem::OrphanShelf,
                format!(
                    "{} has missing parent {}: putting it back under root",
                    shelf.label(),
                    show(shelf.parent_id)
                ),
            )
        } else {
            let new_name = format!("{}_{}", shelf.name(), shelf.id);
            conn.execute(
                "UPDATE shelves SET parent_id = ?, name = ? WHERE id = ?",
                params![LOST_FOUND_SHELF_ID, new_name, shelf.id],
            )?;
            Finding::new(
                Problem::OrphanShelf,
                format!(
                    "moving {} (id {}, missing parent {}) to lost+found as {new_name}",
                    shelf.name(),
                    shelf.id,
                    show(shelf.parent_id)
                ),
            )
            .names([new_name.clone()])
        };
        findings.push(finding.shelves([shelf.id]).names([shelf.name()]));
    }
    Ok((format!("{lost} found"), findings))
}

/// Step 7: the original's definition, so that both tools agree: for every directory except the
/// garbage placeholder, count the directory rows whose parent_id is that directory; root must be
/// 1 + that count (root is its own parent, so it counts itself: a fresh root has 3), any other
/// directory 2 + that count. Files do not count.
fn link_counts(conn: &Connection) -> Result<(String, Vec<Finding>)> {
    let dirs: Vec<Shelf> = load_shelves(conn)?
        .into_iter()
        .filter(|s| is_dir(s.mode))
        .collect();
    let mut children: HashMap<i64, i64> = HashMap::new();
    for d in &dirs {
        if let Some(p) = d.parent_id {
            *children.entry(p).or_default() += 1;
        }
    }
    let mut findings = Vec::new();
    for d in dirs.iter().filter(|d| d.id != GARBAGE_SHELF_ID) {
        let n = children.get(&d.id).copied().unwrap_or(0);
        let want = if d.id == ROOT_SHELF_ID { n + 1 } else { n + 2 };
        if d.link_count != Some(want) {
            conn.execute(
                "UPDATE shelves SET link_count = ? WHERE id = ?",
                [want, d.id],
            )?;
            findings.push(
                Finding::new(
                    Problem::WrongLinkCount,
                    format!("{} link_count {} -> {want}", d.label(), show(d.link_count)),
                )
                .shelves([d.id])
                .names([d.name()]),
            );
        }
    }
    Ok((format!("{} inconsistency(ies)", findings.len()), findings))
}

/// Step 8: `links` rows of deleted shelves (`destroy_shelf` leaves them, and shelf ids are reused)
/// or of shelves that are not symlinks are removed; a symlink with several rows keeps the newest.
fn orphan_links(conn: &Connection) -> Result<(String, Vec<Finding>)> {
    struct Link {
        rowid: i64,
        shelf_id: Option<i64>,
        target: String,
        shelf: Option<(String, Option<i64>)>,
    }
    let links: Vec<Link> = {
        let mut stmt = conn.prepare(
            "SELECT l.rowid, l.shelf_id, l.target, s.id, s.name, s.mode
             FROM links l LEFT JOIN shelves s ON s.id = l.shelf_id
             ORDER BY l.rowid",
        )?;
        let rows = stmt.query_map([], |r| {
            let shelf = match int_at(r, 3)? {
                Some(_) => Some((text_at(r, 4)?.unwrap_or_default(), int_at(r, 5)?)),
                None => None,
            };
            Ok(Link {
                rowid: r.get(0)?,
                shelf_id: int_at(r, 1)?,
                target: text_at(r, 2)?.unwrap_or_default(),
                shelf,
            })
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut findings = Vec::new();
    let mut per_symlink: BTreeMap<i64, Vec<&Link>> = BTreeMap::new();
    for link in &links {
        let message = match (&link.shelf, link.shelf_id) {
            (Some((_, mode)), Some(id)) if is_symlink(*mode) => {
                per_symlink.entry(id).or_default().push(link);
                continue;
            }
            (Some((name, mode)), _) => format!(
                "removing target {:?} of {name} (id {}), which is not a symlink (mode {:o})",
                link.target,
                show(link.shelf_id),
                mode.unwrap_or(0)
            ),
            (None, _) => format!(
                "removing target {:?} of deleted shelf {}",
                link.target,
                show(link.shelf_id)
            ),
        };
        conn.execute("DELETE FROM links WHERE rowid = ?", [link.rowid])?;
        findings.push(
            Finding::new(Problem::OrphanLink, message)
                .shelves(link.shelf_id)
                .names([link.target.clone()]),
        );
    }
    for (id, rows) in per_symlink.into_iter().filter(|(_, r)| r.len() > 1) {
        let Some((keep, extra)) = rows.split_last() else {
            continue;
        };
        for link in extra {
            conn.execute("DELETE FROM links WHERE rowid = ?", [link.rowid])?;
        }
        let name = keep.shelf.as_ref().map_or("", |(n, _)| n.as_str());
        findings.push(
            Finding::new(
                Problem::DuplicateLink,
                format!(
                    "{name} (id {id}) has {} targets: keeping the newest, {:?}",
                    extra.len() + 1,
                    keep.target
                ),
            )
            .shelves([id])
            .names(extra.iter().map(|l| l.target.clone())),
        );
    }
    Ok((detected(&findings), findings))
}

/// Step 9: symlinks without a target cannot be read; there is nothing to restore them from, so
/// they are only reported (remove them through a mount and recreate them).
fn symlink_targets(conn: &Connection) -> Result<(String, Vec<Finding>)> {
    let mut findings = Vec::new();
    for shelf in load_shelves(conn)?.iter().filter(|s| is_symlink(s.mode)) {
        let n: i64 = conn.query_row(
            "SELECT count(*) FROM links WHERE shelf_id = ?",
            [shelf.id],
            |r| r.get(0),
        )?;
        if n == 0 {
            findings.push(
                Finding::new(
                    Problem::SymlinkWithoutTarget,
                    format!("symlink {} has no target", shelf.label()),
                )
                .shelves([shelf.id])
                .names([shelf.name()])
                .report_only(),
            );
        }
    }
    Ok((detected(&findings), findings))
}

/// Step 10: there is no unique index on (parent_id, name); lookups of a duplicated name fail with
/// "Matched more than one shelf". The lowest id keeps the name, the others become `<name>_<id>`.
fn duplicate_names(conn: &Connection) -> Result<(String, Vec<Finding>)> {
    let shelves = load_shelves(conn)?;
    let mut taken: HashSet<(Option<i64>, String)> = HashSet::new();
    let mut groups: BTreeMap<(Option<i64>, String), Vec<&Shelf>> = BTreeMap::new();
    for s in &shelves {
        taken.insert((s.parent_id, s.name().to_string()));
        groups
            .entry((s.parent_id, s.name().to_string()))
            .or_default()
            .push(s);
    }
    let mut findings = Vec::new();
    for ((parent, name), group) in groups.into_iter().filter(|(_, g)| g.len() > 1) {
        // Never rename a reserved shelf: it keeps the name if it is in the group.
        let keeper = group
            .iter()
            .find(|s| s.id <= LOST_FOUND_SHELF_ID)
            .unwrap_or(&group[0])
            .id;
        for s in group.iter().filter(|s| s.id != keeper) {
            let mut new_name = format!("{name}_{}", s.id);
            while taken.contains(&(parent, new_name.clone())) {
                new_name = format!("{new_name}_{}", s.id);
            }
            taken.insert((parent, new_name.clone()));
            conn.execute(
                "UPDATE shelves SET name = ? WHERE id = ?",
                params![new_name, s.id],
            )?;
            findings.push(
                Finding::new(
                    Problem::DuplicateName,
                    format!(
                        "{name:?} appears more than once in directory {}: renaming id {} to {new_name:?}",
                        show(parent),
                        s.id
                    ),
                )
                .shelves([keeper, s.id])
                .names([name.clone(), new_name]),
            );
        }
    }
    Ok((detected(&findings), findings))
}
