//! Unit tests of the individual steps on an in-memory database.

use rusqlite::{params, Connection};

use super::*;
use lfs_db::{LOST_FOUND_SHELF_ID, ROOT_SHELF_ID};
use lfs_test_support::fsck::{
    self as support, add_dir, add_symlink, count, dump, exec, int, shelf_int, BOOK_SIZE,
};

/// A fresh database (lfs_test_support::fsck::fixture), in memory.
fn fixture() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    support::fixture(&conn);
    conn
}

/// A regular file on the `n` lowest free books, consistent in every table; returns its id and
/// books in order.
fn add_file(conn: &Connection, name: &str, parent: i64, n: i64) -> (i64, Vec<i64>) {
    let books = support::free_books(conn, n, "id");
    (support::add_file_on(conn, name, parent, &books), books)
}

fn problems(report: &Report) -> Vec<Problem> {
    report.findings().map(|f| f.problem).collect()
}

/// Report mode must find the same problems as repair mode and change nothing; repair mode must
/// leave a database that a second check finds clean. Returns the repair report.
fn report_then_repair(conn: &Connection) -> Report {
    let before = dump(conn);
    let report = check(conn, false).unwrap();
    assert_eq!(dump(conn), before, "report mode changed the database");
    assert!(!report.repaired);
    let repaired = check(conn, true).unwrap();
    assert!(repaired.repaired);
    assert_eq!(problems(&report), problems(&repaired));
    let again = check(conn, false).unwrap();
    let left: Vec<&Finding> = again.findings().filter(|f| f.repairable).collect();
    assert!(left.is_empty(), "still found after repair: {left:?}");
    repaired
}

fn only(report: &Report, problem: Problem) -> Vec<&Finding> {
    report.findings().filter(|f| f.problem == problem).collect()
}

#[test]
fn a_consistent_database_is_clean() {
    let conn = fixture();
    let d = add_dir(&conn, "d", ROOT_SHELF_ID);
    add_dir(&conn, "e", d);
    let (f, _) = add_file(&conn, "f", d, 3);
    exec(
        &conn,
        "INSERT INTO shelf_xattrs VALUES (?, 'user.LFS.AllocationPolicy', 'RandomBooks')",
        [f],
    );
    add_file(&conn, "g", ROOT_SHELF_ID, 0);
    add_symlink(&conn, "l", ROOT_SHELF_ID, "/lfs/f");
    let report = check(&conn, false).unwrap();
    assert!(report.is_clean(), "{}", report.render(true));
    assert_eq!(report.exit_code(), exit::CLEAN);
    assert_eq!(
        report.before,
        Capacity {
            free: 61,
            total: 64
        }
    );
    assert_eq!(report.after, report.before);
    let book_step = report.step(Step::BookOwnership).unwrap();
    assert_eq!(book_step.summary, "3 book(s) in use");
    assert_eq!(report.steps.len(), Step::ALL.len());
    // A clean repair commits nothing and exits 0 too.
    let repaired = check(&conn, true).unwrap();
    assert_eq!(repaired.exit_code(), exit::CLEAN);
}

#[test]
fn capacity_line_matches_the_original() {
    let c = Capacity {
        free: 61,
        total: 64,
    };
    assert_eq!(c.to_string(), "free books / total books = 61 / 64 (95%)");
    assert_eq!(Capacity { free: 0, total: 0 }.percent(), 0);
}

#[test]
fn stale_opens_including_deleted_shelves() {
    let conn = fixture();
    let (f, _) = add_file(&conn, "f", ROOT_SHELF_ID, 1);
    exec(
        &conn,
        "INSERT INTO opened_shelves VALUES (1, ?, 1, 100)",
        [f],
    );
    exec(
        &conn,
        "INSERT INTO opened_shelves VALUES (2, 99, 2, 200)",
        [],
    );
    let report = report_then_repair(&conn);
    assert_eq!(
        problems(&report),
        [Problem::StaleOpen, Problem::DanglingOpen]
    );
    let step = report.step(Step::StaleOpens).unwrap();
    assert_eq!(step.summary, "2 detected");
    assert_eq!(
        step.findings[0].message,
        "closing f (handle 1, node 1, pid 100)"
    );
    assert_eq!(step.findings[1].shelf_ids, [99]);
    assert_eq!(count(&conn, "opened_shelves"), 0);
    assert_eq!(report.exit_code(), exit::REPAIRED);
}

#[test]
fn only_dangling_opens_are_removed_too() {
    let conn = fixture();
    exec(&conn, "INSERT INTO opened_shelves VALUES (7, 42, 1, 1)", []);
    let report = report_then_repair(&conn);
    assert_eq!(problems(&report), [Problem::DanglingOpen]);
    assert_eq!(count(&conn, "opened_shelves"), 0);
}

#[test]
fn pending_zero_shelves_are_finalized() {
    let conn = fixture();
    let (z, books) = add_file(
        &conn,
        ".lfs_pending_zero_a_2_1795593515.6_1_1_1",
        ROOT_SHELF_ID,
        2,
    );
    exec(
        &conn,
        "INSERT INTO shelf_xattrs VALUES (?, 'user.x', 'y')",
        [z],
    );
    let (h, _) = add_file(&conn, ".tmfs_hidden_17", ROOT_SHELF_ID, 1);
    // Look-alikes the original's LIKE would have taken: a directory, other case, other character.
    add_dir(&conn, ".tmfs_hidden_dir", ROOT_SHELF_ID);
    add_file(&conn, ".LFS_PENDING_ZERO_keep", ROOT_SHELF_ID, 1);
    add_file(&conn, ".lfs_pendingXzero_keep", ROOT_SHELF_ID, 1);
    let report = report_then_repair(&conn);
    let found = only(&report, Problem::PartialUnlink);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].shelf_ids, [z]);
    assert_eq!(found[0].book_ids, books);
    assert_eq!(found[1].shelf_ids, [h]);
    // Their books went INUSE -> ZOMBIE (step 2) -> FREE (step 3).
    assert_eq!(only(&report, Problem::ZombieBooks)[0].book_ids.len(), 3);
    assert_eq!(count(&conn, "shelves WHERE name LIKE '.%' AND id > 3"), 3);
    assert_eq!(
        count(
            &conn,
            "shelf_xattrs WHERE shelf_id NOT IN (SELECT id FROM shelves)"
        ),
        0
    );
    assert_eq!(count(&conn, "books WHERE allocated = 1"), 2);
    assert_eq!(count(&conn, "books_on_shelves"), 2);
    assert_eq!(report.after.free, 62);
}

#[test]
fn zombies_return_to_the_free_pool() {
    let conn = fixture();
    exec(
        &conn,
        "UPDATE books SET allocated = 2 WHERE book_num < 5 AND intlv_group = 1",
        [],
    );
    let report = report_then_repair(&conn);
    assert_eq!(problems(&report), [Problem::ZombieBooks]);
    assert_eq!(
        report.step(Step::ZombieBooks).unwrap().summary,
        "5 detected"
    );
    assert_eq!(report.before.free, 59);
    assert_eq!(report.after.free, 64);
}

#[test]
fn book_count_and_size_are_adjusted() {
    let conn = fixture();
    let (f, _) = add_file(&conn, "f", ROOT_SHELF_ID, 2);
    exec(
        &conn,
        "UPDATE shelves SET book_count = 5, size_bytes = ? WHERE id = ?",
        params![5 * BOOK_SIZE, f],
    );
    let (g, _) = add_file(&conn, "g", ROOT_SHELF_ID, 1);
    exec(
        &conn,
        "UPDATE shelves SET size_bytes = NULL WHERE id = ?",
        [g],
    );
    let report = report_then_repair(&conn);
    assert_eq!(
        problems(&report),
        [
            Problem::WrongBookCount,
            Problem::WrongSize,
            Problem::WrongSize
        ]
    );
    assert_eq!(
        report.findings().next().unwrap().message,
        "Adjusting f book count 5 -> 2"
    );
    assert_eq!(shelf_int(&conn, f, "size_bytes"), 2 * BOOK_SIZE);
    assert_eq!(shelf_int(&conn, f, "book_count"), 2);
    assert_eq!(shelf_int(&conn, g, "size_bytes"), 0);
}

#[test]
fn books_on_a_shelf_become_inuse_and_shelfless_books_free() {
    let conn = fixture();
    let (_, books) = add_file(&conn, "f", ROOT_SHELF_ID, 3);
    exec(
        &conn,
        "UPDATE books SET allocated = 0 WHERE id = ?",
        [books[1]],
    );
    exec(
        &conn,
        "UPDATE books SET allocated = 3 WHERE id = ?",
        [books[2]],
    );
    exec(
        &conn,
        "UPDATE books SET allocated = 1 WHERE book_num = 31",
        [],
    );
    let report = report_then_repair(&conn);
    assert_eq!(
        problems(&report),
        [
            Problem::BookNotInUse,
            Problem::BookNotInUse,
            Problem::ShelflessBooks
        ]
    );
    assert_eq!(only(&report, Problem::ShelflessBooks)[0].book_ids.len(), 2);
    assert_eq!(count(&conn, "books WHERE allocated = 1"), 3);
    assert_eq!(count(&conn, "books WHERE allocated = 0"), 61);
}

#[test]
fn a_book_on_two_shelves_stays_with_the_lowest_shelf_id() {
    let conn = fixture();
    let (f, fb) = add_file(&conn, "f", ROOT_SHELF_ID, 2);
    let (g, gb) = add_file(&conn, "g", ROOT_SHELF_ID, 3);
    // g's second book is also f's first.
    exec(
        &conn,
        "UPDATE books_on_shelves SET book_id = ? WHERE shelf_id = ? AND seq_num = 2",
        params![fb[0], g],
    );
    exec(
        &conn,
        "UPDATE books SET allocated = 0 WHERE id = ?",
        [gb[1]],
    );
    let report = report_then_repair(&conn);
    assert_eq!(
        problems(&report),
        [
            Problem::BookOnSeveralShelves,
            Problem::BadSeqNums,
            Problem::WrongBookCount,
            Problem::WrongSize
        ]
    );
    let shared = &only(&report, Problem::BookOnSeveralShelves)[0];
    assert_eq!(shared.shelf_ids, [f, g]);
    assert_eq!(shared.book_ids, [fb[0]]);
    let g_books: Vec<(i64, i64)> = {
        let mut stmt = conn
            .prepare(
                "SELECT book_id, seq_num FROM books_on_shelves WHERE shelf_id = ? ORDER BY seq_num",
            )
            .unwrap();
        let rows = stmt.query_map([g], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        rows.collect::<rusqlite::Result<_>>().unwrap()
    };
    assert_eq!(g_books, [(gb[0], 1), (gb[2], 2)]);
    assert_eq!(shelf_int(&conn, g, "book_count"), 2);
}

#[test]
fn duplicate_and_gapped_sequence_numbers_are_renumbered() {
    let conn = fixture();
    let (f, fb) = add_file(&conn, "f", ROOT_SHELF_ID, 3);
    exec(
        &conn,
        "UPDATE books_on_shelves SET seq_num = 1 WHERE shelf_id = ?",
        [f],
    );
    let (g, gb) = add_file(&conn, "g", ROOT_SHELF_ID, 2);
    exec(
        &conn,
        "UPDATE books_on_shelves SET seq_num = seq_num * 10 WHERE shelf_id = ?",
        [g],
    );
    let report = report_then_repair(&conn);
    let found = only(&report, Problem::BadSeqNums);
    assert_eq!(found.len(), 2);
    assert!(found[0]
        .message
        .starts_with("duplicate sequence numbers in f"));
    assert!(found[1]
        .message
        .starts_with("sequence numbers not 1..n in g"));
    let order = |shelf: i64| -> Vec<i64> {
        let mut stmt = conn
            .prepare("SELECT book_id FROM books_on_shelves WHERE shelf_id = ? ORDER BY seq_num")
            .unwrap();
        let rows = stmt.query_map([shelf], |r| r.get(0)).unwrap();
        rows.collect::<rusqlite::Result<_>>().unwrap()
    };
    assert_eq!(order(f), fb, "ties keep insertion order");
    assert_eq!(order(g), gb);
}

#[test]
fn a_book_listed_twice_on_one_shelf_keeps_its_first_place() {
    let conn = fixture();
    let (f, fb) = add_file(&conn, "f", ROOT_SHELF_ID, 2);
    exec(
        &conn,
        "INSERT INTO books_on_shelves VALUES (?, ?, 3)",
        params![f, fb[0]],
    );
    exec(&conn, "UPDATE shelves SET book_count = 3 WHERE id = ?", [f]);
    let report = report_then_repair(&conn);
    assert_eq!(
        problems(&report),
        [Problem::BookTwiceOnShelf, Problem::WrongBookCount]
    );
    assert_eq!(count(&conn, "books_on_shelves"), 2);
}

#[test]
fn bos_rows_of_missing_shelves_and_books_are_removed() {
    let conn = fixture();
    let (f, _) = add_file(&conn, "f", ROOT_SHELF_ID, 1);
    exec(&conn, "INSERT INTO books_on_shelves VALUES (77, 0, 1)", []);
    exec(
        &conn,
        "INSERT INTO books_on_shelves VALUES (?, 12345, 2)",
        [f],
    );
    exec(
        &conn,
        "INSERT INTO books_on_shelves VALUES (NULL, NULL, NULL)",
        [],
    );
    let report = report_then_repair(&conn);
    assert_eq!(
        problems(&report),
        [
            Problem::BosMissingShelf,
            Problem::BosMissingShelf,
            Problem::BosMissingBook
        ]
    );
    assert_eq!(count(&conn, "books_on_shelves"), 1);
}

#[test]
fn orphan_owners_are_removed_and_a_database_without_owners_is_clean() {
    let conn = fixture();
    // A database the original made has no owners table: nothing to find.
    assert!(problems(&report_then_repair(&conn)).is_empty());
    lfs_db::create_our_tables(&conn).unwrap();
    let (f, _) = add_file(&conn, "f", ROOT_SHELF_ID, 0);
    exec(&conn, "INSERT INTO lfs_owners VALUES (?, 1000, 1000)", [f]);
    exec(&conn, "INSERT INTO lfs_owners VALUES (77, 1000, 100)", []);
    let report = report_then_repair(&conn);
    assert_eq!(problems(&report), [Problem::OrphanOwner]);
    assert_eq!(report.findings().next().unwrap().shelf_ids, [77]);
    assert_eq!(count(&conn, "lfs_owners"), 1, "the live file's owner stays");
}

#[test]
fn orphan_xattrs_are_removed() {
    let conn = fixture();
    let (f, _) = add_file(&conn, "f", ROOT_SHELF_ID, 0);
    exec(
        &conn,
        "INSERT INTO shelf_xattrs VALUES (?, 'user.keep', '1')",
        [f],
    );
    exec(
        &conn,
        "INSERT INTO shelf_xattrs VALUES (50, 'user.a', '1')",
        [],
    );
    exec(
        &conn,
        "INSERT INTO shelf_xattrs VALUES (50, 'user.b', '2')",
        [],
    );
    let report = report_then_repair(&conn);
    assert_eq!(problems(&report), [Problem::OrphanXattrs]);
    assert_eq!(
        report.findings().next().unwrap().names,
        ["user.a", "user.b"]
    );
    assert_eq!(count(&conn, "shelf_xattrs"), 1);
}

#[test]
fn orphans_move_to_lost_and_found_and_link_counts_follow() {
    let conn = fixture();
    let d = add_dir(&conn, "d", ROOT_SHELF_ID);
    let sub = add_dir(&conn, "sub", d);
    let (f, _) = add_file(&conn, "f", sub, 1);
    // Lose d: sub (a directory with a file) is orphaned.
    exec(&conn, "DELETE FROM shelves WHERE id = ?", [d]);
    let report = report_then_repair(&conn);
    assert_eq!(
        problems(&report),
        [
            Problem::OrphanShelf,
            Problem::WrongLinkCount,
            Problem::WrongLinkCount
        ]
    );
    let (name, parent): (String, i64) = conn
        .query_row(
            "SELECT name, parent_id FROM shelves WHERE id = ?",
            [sub],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(name, format!("sub_{sub}"));
    assert_eq!(parent, LOST_FOUND_SHELF_ID);
    assert_eq!(shelf_int(&conn, f, "parent_id"), sub);
    assert_eq!(int(&conn, "SELECT link_count FROM shelves WHERE id = 3"), 3);
    assert_eq!(int(&conn, "SELECT link_count FROM shelves WHERE id = 2"), 3);
    assert_eq!(report.step(Step::OrphanShelves).unwrap().summary, "1 found");
}

#[test]
fn missing_lost_and_found_is_recreated() {
    let conn = fixture();
    exec(&conn, "DELETE FROM shelves WHERE id = 3", []);
    let report = report_then_repair(&conn);
    // Root's link count (stale while lost+found was missing) is right again.
    assert_eq!(problems(&report), [Problem::MissingLostFound]);
    assert_eq!(int(&conn, "SELECT link_count FROM shelves WHERE id = 2"), 3);
    assert_eq!(int(&conn, "SELECT parent_id FROM shelves WHERE id = 3"), 2);
    assert_eq!(int(&conn, "SELECT link_count FROM shelves WHERE id = 3"), 2);
}

#[test]
fn link_counts_use_the_original_definition() {
    let conn = fixture();
    // A fresh root (parent of itself and of lost+found) has link_count 3.
    assert!(check(&conn, false).unwrap().is_clean());
    let d = add_dir(&conn, "d", ROOT_SHELF_ID);
    add_file(&conn, "f", d, 0);
    assert_eq!(int(&conn, "SELECT link_count FROM shelves WHERE id = 2"), 4);
    assert!(check(&conn, false).unwrap().is_clean());
    exec(
        &conn,
        "UPDATE shelves SET link_count = 9 WHERE id IN (2, ?)",
        [d],
    );
    exec(&conn, "UPDATE shelves SET link_count = 0 WHERE id = 3", []);
    // The garbage placeholder is never checked.
    exec(&conn, "UPDATE shelves SET link_count = 5 WHERE id = 1", []);
    let report = report_then_repair(&conn);
    let fixed: Vec<(Vec<i64>, String)> = only(&report, Problem::WrongLinkCount)
        .iter()
        .map(|f| (f.shelf_ids.clone(), f.message.clone()))
        .collect();
    assert_eq!(
        fixed,
        [
            (vec![2], ". (id 2) link_count 9 -> 4".to_string()),
            (vec![3], "lost+found (id 3) link_count 0 -> 2".to_string()),
            (vec![d], format!("d (id {d}) link_count 9 -> 2")),
        ]
    );
    assert_eq!(
        report.step(Step::LinkCounts).unwrap().summary,
        "3 inconsistency(ies)"
    );
}

#[test]
fn links_rows_of_deleted_and_non_symlink_shelves_are_removed() {
    let conn = fixture();
    let l = add_symlink(&conn, "l", ROOT_SHELF_ID, "/old");
    exec(&conn, "INSERT INTO links VALUES (?, '/new', NULL)", [l]);
    let (f, _) = add_file(&conn, "f", ROOT_SHELF_ID, 0);
    exec(&conn, "INSERT INTO links VALUES (?, '/x', NULL)", [f]);
    exec(&conn, "INSERT INTO links VALUES (404, '/gone', NULL)", []);
    let report = report_then_repair(&conn);
    assert_eq!(
        problems(&report),
        [
            Problem::OrphanLink,
            Problem::OrphanLink,
            Problem::DuplicateLink
        ]
    );
    let target: String = conn
        .query_row("SELECT target FROM links", [], |r| r.get(0))
        .unwrap();
    assert_eq!(target, "/new");
    assert_eq!(count(&conn, "links"), 1);
}

#[test]
fn symlinks_without_target_are_reported_not_repaired() {
    let conn = fixture();
    let l = add_symlink(&conn, "l", ROOT_SHELF_ID, "/t");
    exec(&conn, "DELETE FROM links", []);
    let before = dump(&conn);
    let report = check(&conn, true).unwrap();
    assert_eq!(problems(&report), [Problem::SymlinkWithoutTarget]);
    assert_eq!(report.findings().next().unwrap().shelf_ids, [l]);
    assert_eq!(report.unrepaired(), 1);
    assert_eq!(report.exit_code(), exit::UNREPAIRED);
    assert_eq!(dump(&conn), before);
    assert!(report.render(false).contains("(no automatic repair)"));
}

#[test]
fn duplicate_names_are_renamed() {
    let conn = fixture();
    let (a, _) = add_file(&conn, "a", ROOT_SHELF_ID, 0);
    let (a2, _) = add_file(&conn, "a", ROOT_SHELF_ID, 0);
    // The obvious new name is taken already.
    add_file(&conn, &format!("a_{a2}"), ROOT_SHELF_ID, 0);
    let d = add_dir(&conn, "d", ROOT_SHELF_ID);
    let (a3, _) = add_file(&conn, "a", d, 0);
    let report = report_then_repair(&conn);
    assert_eq!(problems(&report), [Problem::DuplicateName]);
    let name = |id: i64| -> String {
        conn.query_row("SELECT name FROM shelves WHERE id = ?", [id], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(name(a), "a");
    assert_eq!(name(a2), format!("a_{a2}_{a2}"));
    assert_eq!(name(a3), "a");
}

#[test]
fn a_reserved_shelf_keeps_its_name() {
    let conn = fixture();
    let (f, _) = add_file(&conn, "lost+found", ROOT_SHELF_ID, 0);
    let report = report_then_repair(&conn);
    assert_eq!(problems(&report), [Problem::DuplicateName]);
    assert_eq!(
        count(&conn, "shelves WHERE name = 'lost+found' AND id = 3"),
        1
    );
    let renamed: String = conn
        .query_row("SELECT name FROM shelves WHERE id = ?", [f], |r| r.get(0))
        .unwrap();
    assert_eq!(renamed, format!("lost+found_{f}"));
}

#[test]
fn wrong_schema_version_is_refused() {
    let conn = fixture();
    exec(
        &conn,
        "UPDATE globals SET schema_version = 'LIBRARIAN 0.996'",
        [],
    );
    let err = check(&conn, true).unwrap_err();
    assert!(matches!(err, FsckError::SchemaVersion { ref found } if found == "LIBRARIAN 0.996"));
    assert!(err.to_string().contains("LIBRARIAN 0.997"));
}

#[test]
fn not_a_librarian_database_is_refused() {
    let conn = Connection::open_in_memory().unwrap();
    assert!(matches!(
        check(&conn, false),
        Err(FsckError::NotLibrarian(_))
    ));
    let conn = fixture();
    exec(&conn, "DROP TABLE links", []);
    let err = check(&conn, false).unwrap_err();
    assert_eq!(err.to_string(), "not a Librarian database: no links table");
}

#[test]
fn book_count_mismatch_is_fatal() {
    let conn = fixture();
    exec(
        &conn,
        "DELETE FROM books WHERE book_num = 0 AND intlv_group = 0",
        [],
    );
    let err = check(&conn, true).unwrap_err();
    assert!(matches!(err, FsckError::Fatal(_)));
    assert!(
        err.to_string().ends_with("no recovery is possible"),
        "{err}"
    );
    assert!(err.to_string().starts_with("Book count mismatch"), "{err}");
}

#[test]
fn missing_root_is_fatal() {
    let conn = fixture();
    exec(&conn, "DELETE FROM shelves WHERE id = 2", []);
    assert!(matches!(check(&conn, true), Err(FsckError::Fatal(_))));
}

#[test]
fn a_failing_repair_rolls_back_everything() {
    let conn = fixture();
    exec(&conn, "INSERT INTO opened_shelves VALUES (1, 2, 1, 1)", []);
    exec(
        &conn,
        "UPDATE books SET allocated = 2 WHERE book_num = 0",
        [],
    );
    conn.execute_batch(
        "CREATE TRIGGER no_free BEFORE UPDATE OF allocated ON books
         BEGIN SELECT RAISE(ABORT, 'refused'); END;",
    )
    .unwrap();
    let before = dump(&conn);
    let err = check(&conn, true).unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    assert_eq!(dump(&conn), before);
    assert!(conn.is_autocommit());
}

#[test]
fn damaged_values_do_not_stop_the_check() {
    let conn = fixture();
    let (f, _) = add_file(&conn, "f", ROOT_SHELF_ID, 1);
    exec(
        &conn,
        "UPDATE shelves SET book_count = 'many', size_bytes = x'00', parent_id = 2.0 WHERE id = ?",
        [f],
    );
    let report = report_then_repair(&conn);
    assert_eq!(
        problems(&report),
        [Problem::WrongBookCount, Problem::WrongSize]
    );
}

#[test]
fn render_looks_like_the_original() {
    let conn = fixture();
    let (f, _) = add_file(&conn, "f", ROOT_SHELF_ID, 1);
    exec(&conn, "INSERT INTO opened_shelves VALUES (1, ?, 1, 9)", [f]);
    let report = check(&conn, false).unwrap();
    let text = report.render(true);
    assert!(
        text.starts_with("free books / total books = 63 / 64 (98%)\n\n"),
        "{text}"
    );
    assert!(text.contains(
        "Remove stale file handles (dangling opens): 1 detected\n\tclosing f (handle 1, node 1, pid 9)\n\t\tshelf id(s): 4\n"
    ), "{text}");
    assert!(text.contains("Finalize partially-unlinked files: 0 detected\n"));
    assert!(text
        .contains("Verify book ownership & return orphan books to free pool: 1 book(s) in use\n"));
    assert!(text.contains("Move orphan files/directories to lost+found: 0 found\n"));
    assert!(
        text.contains("Fix any inconsistent link_counts of directories: 0 inconsistency(ies)\n")
    );
    assert!(
        text.ends_with("1 problem(s) found; run with --repair to fix them\n"),
        "{text}"
    );
    assert_eq!(report.exit_code(), exit::UNREPAIRED);
}

#[test]
fn every_problem_is_listed_once_and_named_by_its_variant() {
    // Exhaustive: a new variant does not compile until it has a place here, and then in ALL.
    let position = |p: Problem| match p {
        Problem::StaleOpen
        | Problem::DanglingOpen
        | Problem::PartialUnlink
        | Problem::ZombieBooks
        | Problem::BosMissingShelf
        | Problem::BosMissingBook
        | Problem::BookTwiceOnShelf
        | Problem::BookOnSeveralShelves
        | Problem::BadSeqNums
        | Problem::BookNotInUse
        | Problem::WrongBookCount
        | Problem::WrongSize
        | Problem::ShelflessBooks
        | Problem::OrphanXattrs
        | Problem::MissingLostFound
        | Problem::OrphanShelf
        | Problem::WrongLinkCount
        | Problem::OrphanLink
        | Problem::DuplicateLink
        | Problem::SymlinkWithoutTarget
        | Problem::DuplicateName
        | Problem::OrphanOwner => Problem::ALL.iter().position(|q| *q == p),
    };
    assert_eq!(Problem::ALL.len(), 22);
    for (i, p) in Problem::ALL.iter().enumerate() {
        assert_eq!(position(*p), Some(i), "{p:?} twice in Problem::ALL");
        assert_eq!(Problem::from_name(&p.name()), Some(*p));
    }
    assert_eq!(Problem::StaleOpen.name(), "StaleOpen");
    assert_eq!(Problem::from_name("Stale"), None);
}
