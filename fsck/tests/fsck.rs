//! End-to-end tests of the `fsck-lfs` binary on real database files: every kind of damage is
//! found in report mode (exit 4) without changing a row, repaired with `--repair` (exit 1), and a
//! second run is clean (exit 0).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lfs_db as schema;
use lfs_test_support::fsck::{
    self as support, add_dir, add_shelf, add_symlink, count, exec, int, shelf_int, BOOK_SIZE,
    FILE_MODE,
};
use rusqlite::{params, Connection};

const ROOT: i64 = schema::ROOT_SHELF_ID;

/// A Librarian database like `book_register.py` makes for two nodes
/// (lfs_test_support::fsck::fixture), in a file.
fn create_db(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    support::fixture(&conn);
    conn
}

/// A consistent regular file as a running Librarian leaves one: `n` books picked at random, a
/// size a little short of the last book, an allocation policy; returns its id and books in
/// order.
fn add_file(conn: &Connection, name: &str, parent: i64, n: i64) -> (i64, Vec<i64>) {
    let books = support::free_books(conn, n, "random()");
    let id = support::add_file_on(conn, name, parent, &books);
    exec(
        conn,
        "UPDATE shelves SET size_bytes = ? WHERE id = ?",
        params![(n * BOOK_SIZE - 100).max(0), id],
    );
    exec(
        conn,
        "INSERT INTO shelf_xattrs VALUES (?, 'user.LFS.AllocationPolicy', 'RandomBooks')",
        [id],
    );
    (id, books)
}

/// Shelves every scenario starts from (all consistent): /d, /d/e, /d/f (3 books), /g (2 books),
/// /l -> /lfs/g.
struct Base {
    d: i64,
    f: i64,
    f_books: Vec<i64>,
    g: i64,
    g_books: Vec<i64>,
}

fn populate(conn: &Connection) -> Base {
    let d = add_dir(conn, "d", ROOT);
    add_dir(conn, "e", d);
    let (f, f_books) = add_file(conn, "f", d, 3);
    let (g, g_books) = add_file(conn, "g", ROOT, 2);
    add_symlink(conn, "l", ROOT, "/lfs/g");
    Base {
        d,
        f,
        f_books,
        g,
        g_books,
    }
}

/// Every row of the database at `path` (lfs_test_support::fsck::dump).
fn dump(path: &Path) -> Vec<String> {
    support::dump(&Connection::open(path).unwrap())
}

fn fsck(args: &[&str], db: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fsck-lfs"))
        .args(args)
        .arg(db)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited normally, not by a signal")
}

struct Db {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn new_db() -> (Db, Connection, Base) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("librarian.db");
    let conn = create_db(&path);
    let base = populate(&conn);
    (Db { _dir: dir, path }, conn, base)
}

/// The life cycle every kind of damage must follow. `expect` are lines (or parts of lines) the
/// report and the repair must both print; `verify` looks at the repaired database.
fn found_repaired_clean(
    db: &Db,
    expect: &[&str],
    repair_flag: &str,
    verify: impl FnOnce(&Connection),
) {
    let before = dump(&db.path);

    let report = fsck(&[], &db.path);
    let text = stdout(&report);
    assert_eq!(code(&report), 4, "report mode:\n{text}{}", stderr(&report));
    for e in expect {
        assert!(text.contains(e), "report lacks {e:?}:\n{text}");
    }
    assert!(text.contains("run with --repair"), "{text}");
    assert_eq!(dump(&db.path), before, "report mode changed the database");

    let repair = fsck(&[repair_flag], &db.path);
    let text = stdout(&repair);
    assert_eq!(code(&repair), 1, "repair:\n{text}{}", stderr(&repair));
    for e in expect {
        assert!(text.contains(e), "repair output lacks {e:?}:\n{text}");
    }
    assert!(text.contains("Finalizing database"), "{text}");
    assert_ne!(dump(&db.path), before, "repair changed nothing");
    verify(&Connection::open(&db.path).unwrap());

    let again = fsck(&[], &db.path);
    let text = stdout(&again);
    assert_eq!(code(&again), 0, "second run:\n{text}");
    assert!(text.contains("No problems found"), "{text}");
}

fn shelf_name(conn: &Connection, id: i64) -> String {
    conn.query_row("SELECT name FROM shelves WHERE id = ?", [id], |r| r.get(0))
        .unwrap()
}

#[test]
fn clean_database_exits_0_in_both_modes() {
    let (db, conn, _) = new_db();
    drop(conn);
    let before = dump(&db.path);
    for args in [&[][..], &["--repair"][..], &["-v"][..]] {
        let out = fsck(args, &db.path);
        let text = stdout(&out);
        assert_eq!(code(&out), 0, "{args:?}:\n{text}{}", stderr(&out));
        assert!(
            text.contains("free books / total books = 59 / 64 (92%)\n"),
            "{text}"
        );
        assert!(text.contains("Remove stale file handles (dangling opens): 0 detected\n"));
        assert!(text.contains("Return zombie books to free pool: 0 detected\n"));
        assert!(text.contains(
            "Verify book ownership & return orphan books to free pool: 5 book(s) in use\n"
        ));
        assert!(text.contains("Remove orphaned extended attributes: 0 detected\n"));
        assert!(text.contains("Move orphan files/directories to lost+found: 0 found\n"));
        assert!(text
            .contains("Fix any inconsistent link_counts of directories: 0 inconsistency(ies)\n"));
        assert!(text.ends_with("No problems found\n"), "{text}");
    }
    assert_eq!(dump(&db.path), before);
}

#[test]
fn stale_opens() {
    let (db, conn, base) = new_db();
    exec(
        &conn,
        "INSERT INTO opened_shelves VALUES (1, ?, 1, 4242)",
        [base.f],
    );
    // The original never saw opens of deleted shelves.
    exec(
        &conn,
        "INSERT INTO opened_shelves VALUES (2, 99, 2, 77)",
        [],
    );
    drop(conn);
    found_repaired_clean(
        &db,
        &[
            "Remove stale file handles (dangling opens): 2 detected",
            "\tclosing f (handle 1, node 1, pid 4242)",
            "\tclosing handle of deleted shelf 99 (handle 2, node 2, pid 77)",
        ],
        "--repair",
        |c| assert_eq!(count(c, "opened_shelves"), 0),
    );
}

#[test]
fn pending_zero_shelf_with_books() {
    let (db, conn, base) = new_db();
    // An interrupted truncate: the zeroing shelf holds g's two books as ZOMBIE.
    let z = add_shelf(
        &conn,
        ".lfs_pending_zero_g_2_1795593515.6150324_1_1_1",
        ROOT,
        FILE_MODE,
        0,
    );
    for (i, b) in base.g_books.iter().enumerate() {
        exec(
            &conn,
            "UPDATE books_on_shelves SET shelf_id = ?, seq_num = ? WHERE book_id = ?",
            params![z, i as i64 + 1, b],
        );
        exec(&conn, "UPDATE books SET allocated = 2 WHERE id = ?", [b]);
    }
    exec(
        &conn,
        "UPDATE shelves SET size_bytes = ?, book_count = 2 WHERE id = ?",
        params![2 * BOOK_SIZE, z],
    );
    exec(
        &conn,
        "UPDATE shelves SET size_bytes = 0, book_count = 0 WHERE id = ?",
        [base.g],
    );
    // An interrupted unlink of a file that still has INUSE books.
    let (h, _) = add_file(&conn, ".tmfs_hidden_000042", base.d, 1);
    drop(conn);
    found_repaired_clean(
        &db,
        &[
            "Finalize partially-unlinked files: 2 detected",
            "\tremoving .lfs_pending_zero_g_2_1795593515.6150324_1_1_1 (2 book(s))",
            "\tremoving .tmfs_hidden_000042 (1 book(s))",
            "Return zombie books to free pool: 3 detected",
        ],
        "--repair",
        |c| {
            assert_eq!(count(c, &format!("shelves WHERE id IN ({z}, {h})")), 0);
            assert_eq!(count(c, &format!("shelf_xattrs WHERE shelf_id = {h}")), 0);
            assert_eq!(count(c, "books WHERE allocated = 0"), 61);
            assert_eq!(count(c, "books WHERE allocated = 2"), 0);
        },
    );
}

#[test]
fn zombie_books() {
    let (db, conn, _) = new_db();
    exec(&conn, "UPDATE books SET allocated = 2 WHERE id IN (SELECT id FROM books WHERE allocated = 0 LIMIT 3)", []);
    drop(conn);
    found_repaired_clean(
        &db,
        &[
            "free books / total books = 56 / 64 (87%)",
            "Return zombie books to free pool: 3 detected",
            "\treturning 3 zombie book(s) to the free pool",
        ],
        "-y",
        |c| assert_eq!(count(c, "books WHERE allocated = 0"), 59),
    );
}

#[test]
fn wrong_book_count_and_size() {
    let (db, conn, base) = new_db();
    exec(
        &conn,
        "UPDATE shelves SET book_count = 7, size_bytes = ? WHERE id = ?",
        params![7 * BOOK_SIZE, base.f],
    );
    drop(conn);
    found_repaired_clean(
        &db,
        &[
            "\tAdjusting f book count 7 -> 3",
            &format!(
                "\tAdjusting f book size {} -> {}",
                7 * BOOK_SIZE,
                3 * BOOK_SIZE
            ),
        ],
        "--repair",
        |c| {
            assert_eq!(shelf_int(c, base.f, "book_count"), 3);
            assert_eq!(shelf_int(c, base.f, "size_bytes"), 3 * BOOK_SIZE);
        },
    );
}

#[test]
fn inuse_books_on_no_shelf() {
    let (db, conn, _) = new_db();
    exec(&conn, "UPDATE books SET allocated = 1 WHERE id IN (SELECT id FROM books WHERE allocated = 0 LIMIT 2)", []);
    drop(conn);
    found_repaired_clean(
        &db,
        &["\tClearing 2 book(s) marked as allocated but shelfless"],
        "--repair",
        |c| assert_eq!(count(c, "books WHERE allocated = 1"), 5),
    );
}

#[test]
fn bos_row_on_a_book_that_is_not_inuse() {
    let (db, conn, base) = new_db();
    exec(
        &conn,
        "UPDATE books SET allocated = 0 WHERE id = ?",
        [base.f_books[1]],
    );
    drop(conn);
    found_repaired_clean(
        &db,
        &[&format!(
            "\tmarking 1 FREE book(s) of f (id {}) INUSE",
            base.f
        )],
        "--repair",
        |c| {
            assert_eq!(
                int(
                    c,
                    &format!("SELECT allocated FROM books WHERE id = {}", base.f_books[1])
                ),
                1
            )
        },
    );
}

#[test]
fn book_owned_by_two_shelves() {
    let (db, conn, base) = new_db();
    // g's first book is also listed as f's fourth.
    exec(
        &conn,
        "INSERT INTO books_on_shelves VALUES (?, ?, 4)",
        params![base.f, base.g_books[0]],
    );
    exec(
        &conn,
        "UPDATE shelves SET book_count = 4 WHERE id = ?",
        [base.f],
    );
    drop(conn);
    let (keeper, loser) = (base.f.min(base.g), base.f.max(base.g));
    found_repaired_clean(
        &db,
        &[&format!(
            "\tbook {} is on shelves {} (id {keeper}), {} (id {loser}): keeping it on",
            base.g_books[0],
            if keeper == base.f { "f" } else { "g" },
            if loser == base.f { "f" } else { "g" },
        )],
        "--repair",
        |c| {
            assert_eq!(
                count(
                    c,
                    &format!("books_on_shelves WHERE book_id = {}", base.g_books[0])
                ),
                1
            );
            assert_eq!(
                int(
                    c,
                    &format!(
                        "SELECT shelf_id FROM books_on_shelves WHERE book_id = {}",
                        base.g_books[0]
                    )
                ),
                keeper
            );
            // The loser's remaining books are numbered 1..n again.
            let n = shelf_int(c, loser, "book_count");
            assert_eq!(
                int(
                    c,
                    &format!("SELECT max(seq_num) FROM books_on_shelves WHERE shelf_id = {loser}")
                ),
                n
            );
        },
    );
}

#[test]
fn duplicate_sequence_numbers() {
    let (db, conn, base) = new_db();
    exec(
        &conn,
        "UPDATE books_on_shelves SET seq_num = 2 WHERE shelf_id = ?",
        [base.f],
    );
    drop(conn);
    found_repaired_clean(
        &db,
        &[&format!(
            "\tduplicate sequence numbers in f (id {}): renumbering 1..3",
            base.f
        )],
        "--repair",
        |c| {
            let seqs: Vec<(i64, i64)> = {
                let mut stmt = c
                    .prepare("SELECT book_id, seq_num FROM books_on_shelves WHERE shelf_id = ? ORDER BY seq_num")
                    .unwrap();
                let rows = stmt
                    .query_map([base.f], |r| Ok((r.get(0)?, r.get(1)?)))
                    .unwrap();
                rows.collect::<rusqlite::Result<_>>().unwrap()
            };
            let want: Vec<(i64, i64)> = base.f_books.iter().copied().zip(1..).collect();
            assert_eq!(seqs, want);
        },
    );
}

#[test]
fn orphan_xattr() {
    let (db, conn, _) = new_db();
    exec(
        &conn,
        "INSERT INTO shelf_xattrs VALUES (50, 'user.a', 'x')",
        [],
    );
    drop(conn);
    found_repaired_clean(
        &db,
        &[
            "Remove orphaned extended attributes: 1 detected",
            "\tremoving xattr(s) user.a of deleted shelf 50",
        ],
        "--repair",
        |c| assert_eq!(count(c, "shelf_xattrs WHERE shelf_id = 50"), 0),
    );
}

#[test]
fn orphan_file() {
    let (db, conn, _) = new_db();
    let (o, _) = add_file(&conn, "o", 77, 1);
    drop(conn);
    found_repaired_clean(
        &db,
        &[
            "Move orphan files/directories to lost+found: 1 found",
            &format!("\tmoving o (id {o}, missing parent 77) to lost+found as o_{o}"),
        ],
        "--repair",
        |c| {
            assert_eq!(shelf_name(c, o), format!("o_{o}"));
            assert_eq!(shelf_int(c, o, "parent_id"), schema::LOST_FOUND_SHELF_ID);
        },
    );
}

#[test]
fn wrong_directory_link_counts() {
    let (db, conn, base) = new_db();
    exec(&conn, "UPDATE shelves SET link_count = 7 WHERE id = 2", []);
    exec(
        &conn,
        "UPDATE shelves SET link_count = 1 WHERE id = ?",
        [base.d],
    );
    drop(conn);
    found_repaired_clean(
        &db,
        &[
            "Fix any inconsistent link_counts of directories: 2 inconsistency(ies)",
            "\t. (id 2) link_count 7 -> 4",
            &format!("\td (id {}) link_count 1 -> 3", base.d),
        ],
        "--repair",
        |c| {
            // Root: 1 + directories whose parent is root (root itself, lost+found, d).
            assert_eq!(shelf_int(c, ROOT, "link_count"), 4);
            assert_eq!(shelf_int(c, base.d, "link_count"), 3);
        },
    );
}

#[test]
fn orphaned_links_rows() {
    let (db, conn, base) = new_db();
    exec(&conn, "INSERT INTO links VALUES (404, '/gone', NULL)", []);
    exec(
        &conn,
        "INSERT INTO links VALUES (?, '/not/a/symlink', NULL)",
        [base.g],
    );
    drop(conn);
    found_repaired_clean(
        &db,
        &[
            "Remove orphaned symlink targets: 2 detected",
            "\tremoving target \"/gone\" of deleted shelf 404",
            "which is not a symlink",
        ],
        "--repair",
        |c| assert_eq!(count(c, "links"), 1),
    );
}

#[test]
fn duplicate_names() {
    let (db, conn, base) = new_db();
    let (dup, _) = add_file(&conn, "f", base.d, 1);
    drop(conn);
    found_repaired_clean(
        &db,
        &[
            "Rename duplicate names within a directory: 1 detected",
            &format!("renaming id {dup} to \"f_{dup}\""),
        ],
        "--repair",
        |c| {
            assert_eq!(shelf_name(c, base.f), "f");
            assert_eq!(shelf_name(c, dup), format!("f_{dup}"));
        },
    );
}

#[test]
fn every_problem_at_once() {
    let (db, conn, base) = new_db();
    exec(
        &conn,
        "INSERT INTO opened_shelves VALUES (1, ?, 1, 1)",
        [base.g],
    );
    let (z, _) = add_file(&conn, ".lfs_pending_zero_9", ROOT, 2);
    exec(&conn, "UPDATE books SET allocated = 2 WHERE id IN (SELECT book_id FROM books_on_shelves WHERE shelf_id = ?)", [z]);
    exec(&conn, "UPDATE books SET allocated = 2 WHERE id IN (SELECT id FROM books WHERE allocated = 0 LIMIT 4)", []);
    exec(
        &conn,
        "UPDATE shelves SET book_count = 9, size_bytes = ? WHERE id = ?",
        params![BOOK_SIZE * 9, base.g],
    );
    exec(&conn, "UPDATE books SET allocated = 1 WHERE id IN (SELECT id FROM books WHERE allocated = 0 LIMIT 2)", []);
    exec(
        &conn,
        "UPDATE books SET allocated = 0 WHERE id = ?",
        [base.f_books[0]],
    );
    exec(
        &conn,
        "INSERT INTO books_on_shelves VALUES (?, ?, 3)",
        params![base.g, base.f_books[2]],
    );
    exec(
        &conn,
        "INSERT INTO shelf_xattrs VALUES (60, 'user.b', 'x')",
        [],
    );
    add_file(&conn, "lost", 88, 1);
    exec(&conn, "UPDATE shelves SET link_count = 2 WHERE id = 2", []);
    exec(&conn, "INSERT INTO links VALUES (505, '/x', NULL)", []);
    add_file(&conn, "g", ROOT, 0);
    drop(conn);
    found_repaired_clean(
        &db,
        &[
            "Remove stale file handles (dangling opens): 1 detected",
            "Finalize partially-unlinked files: 1 detected",
            "Return zombie books to free pool: 6 detected",
            "\tAdjusting g book count 9 -> 2",
            "\tClearing 2 book(s) marked as allocated but shelfless",
            "Remove orphaned extended attributes: 1 detected",
            "Move orphan files/directories to lost+found: 1 found",
            "Remove orphaned symlink targets: 1 detected",
            "Rename duplicate names within a directory: 1 detected",
            "is on shelves",
            "marking 1 FREE book(s) of f",
            ". (id 2) link_count 2 -> 4",
        ],
        "--repair",
        |c| {
            assert_eq!(count(c, "books WHERE allocated = 2"), 0);
            // f keeps its 3 books, g keeps its 2, "lost" its 1.
            assert_eq!(count(c, "books WHERE allocated = 1"), 6);
        },
    );
}

#[test]
fn verbose_lists_ids() {
    let (db, conn, base) = new_db();
    exec(
        &conn,
        "UPDATE books SET allocated = 0 WHERE id = ?",
        [base.g_books[0]],
    );
    drop(conn);
    let out = fsck(&["-v"], &db.path);
    let text = stdout(&out);
    assert_eq!(code(&out), 4);
    assert!(
        text.contains(&format!("\t\tbook id(s): {}\n", base.g_books[0])),
        "{text}"
    );
    assert!(
        text.contains(&format!("\t\tshelf id(s): {}\n", base.g)),
        "{text}"
    );
}

#[test]
fn symlink_without_target_is_reported_but_not_repaired() {
    let (db, conn, _) = new_db();
    exec(&conn, "DELETE FROM links", []);
    drop(conn);
    let before = dump(&db.path);
    for args in [&[][..], &["--repair"][..]] {
        let out = fsck(args, &db.path);
        let text = stdout(&out);
        assert_eq!(code(&out), 4, "{text}");
        assert!(text.contains("\tsymlink l (id "), "{text}");
        assert!(
            text.contains("has no target (no automatic repair)"),
            "{text}"
        );
    }
    assert_eq!(dump(&db.path), before);
}

#[test]
fn changes_still_in_the_wal_are_seen() {
    let (db, conn, _) = new_db();
    conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    exec(
        &conn,
        "UPDATE books SET allocated = 2 WHERE book_num = 5",
        [],
    );
    // `conn` stays open, so the change lives only in librarian.db-wal.
    let wal = db.path.with_file_name("librarian.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    let out = fsck(&[], &db.path);
    assert_eq!(code(&out), 4, "{}", stdout(&out));
    assert!(stdout(&out).contains("Return zombie books to free pool: 2 detected"));
    let out = fsck(&["--repair"], &db.path);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(count(&conn, "books WHERE allocated = 2"), 0);
}

#[test]
fn wrong_schema_version_exits_8() {
    let (db, conn, _) = new_db();
    exec(
        &conn,
        "UPDATE globals SET schema_version = 'LIBRARIAN 0.996'",
        [],
    );
    exec(
        &conn,
        "UPDATE books SET allocated = 2 WHERE book_num = 1",
        [],
    );
    drop(conn);
    let before = dump(&db.path);
    for args in [&[][..], &["--repair"][..]] {
        let out = fsck(args, &db.path);
        assert_eq!(code(&out), 8);
        let err = stderr(&out);
        assert!(err.contains(&db.path.display().to_string()), "{err}");
        assert!(err.contains("LIBRARIAN 0.996"), "{err}");
        assert!(err.contains("LIBRARIAN 0.997"), "{err}");
    }
    assert_eq!(dump(&db.path), before);
}

#[test]
fn missing_file_exits_8_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.db");
    for args in [&[][..], &["--repair"][..]] {
        let out = fsck(args, &path);
        assert_eq!(code(&out), 8);
        let err = stderr(&out);
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("no such file"), "{err}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn garbage_file_exits_8() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.db");
    std::fs::write(&path, vec![0x5a; 4096]).unwrap();
    for args in [&[][..], &["--repair"][..]] {
        let out = fsck(args, &path);
        assert_eq!(code(&out), 8, "{}", stderr(&out));
        assert!(stderr(&out).contains(&path.display().to_string()));
    }
    // An empty SQLite database is not a Librarian database either.
    let path = dir.path().join("empty.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let out = fsck(&[], &path);
    assert_eq!(code(&out), 8);
    assert!(
        stderr(&out).contains("not a Librarian database"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn book_count_mismatch_is_fatal() {
    let (db, conn, _) = new_db();
    exec(&conn, "UPDATE globals SET books_total = 65", []);
    exec(
        &conn,
        "UPDATE books SET allocated = 2 WHERE book_num = 1",
        [],
    );
    drop(conn);
    let before = dump(&db.path);
    let out = fsck(&["--repair"], &db.path);
    assert_eq!(code(&out), 8);
    assert!(
        stderr(&out).contains("Book count mismatch"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("no recovery is possible"));
    assert_eq!(dump(&db.path), before);
}

#[test]
fn usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_fsck-lfs"))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0);
    let help = stdout(&out);
    for s in ["--repair", "-y", "-v", "DBFILE", "Exit codes", "  4 "] {
        assert!(help.contains(s), "help lacks {s:?}:\n{help}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_fsck-lfs"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 16);
    let out = Command::new(env!("CARGO_BIN_EXE_fsck-lfs"))
        .args(["--frobnicate", "x.db"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 16);
}
