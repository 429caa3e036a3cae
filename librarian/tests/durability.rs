//! Many clients at once, and a server killed in the middle of a write load.

use lfs_proto::Command;
use lfs_test_support::*;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const BOOK: i64 = 8 << 20;

/// Every INUSE book is on exactly one shelf, counts agree, nothing is owned twice.
fn assert_consistent(srv: &Server) {
    let db = srv.sql();
    let never = [
        (
            "SELECT count(*) FROM (SELECT book_id FROM books_on_shelves GROUP BY book_id HAVING count(*) > 1)",
            "a book is on two shelves",
        ),
        (
            "SELECT count(*) FROM books WHERE allocated = 1 AND id NOT IN (SELECT book_id FROM books_on_shelves)",
            "INUSE books on no shelf",
        ),
        (
            "SELECT count(*) FROM shelves s WHERE book_count != (SELECT count(*) FROM books_on_shelves WHERE shelf_id = s.id)",
            "book_count disagrees with books on shelf",
        ),
    ];
    for (sql, what) in never {
        assert_eq!(int(&db, sql), 0, "{what}");
    }
    let not_inuse_on_shelf = int(
        &db,
        "SELECT count(*) FROM books_on_shelves JOIN books ON books.id = book_id WHERE allocated != 1",
    );
    let zeroing = int(
        &db,
        "SELECT count(*) FROM books_on_shelves JOIN shelves ON shelves.id = shelf_id \
         WHERE name LIKE '.lfs\\_pending\\_zero\\_%' ESCAPE '\\'",
    );
    assert_eq!(
        not_inuse_on_shelf, zeroing,
        "only zeroing shelves hold non-INUSE books"
    );
}

/// The one integer that `sql` selects.
fn int(db: &rusqlite::Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[test]
fn parallel_clients_never_share_a_book() {
    let mut srv = Server::start(FOUR_NODES);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let mut c = srv.client(1 + t % 4);
            std::thread::spawn(move || {
                let mut held: Vec<(String, i64)> = vec![];
                for i in 0..150 {
                    let path = format!("/c{t}_{i}");
                    let s = create(&mut c, &path);
                    let id = s["id"].as_i64().unwrap();
                    c.call(
                        Command::CloseShelf,
                        json!({"id": id, "open_handle": s["open_handle"]}),
                    )
                    .unwrap();
                    // Pool is 256 books for 8 clients: ENOSPC is allowed, double allocation is not.
                    let _ = resize(&mut c, &path, id, (1 + (i % 5)) * BOOK);
                    held.push((path, id));
                    if held.len() > 3 {
                        let (p, id) = held.remove(0);
                        let z = resize(&mut c, &p, id, 0).unwrap();
                        if let Some(zp) = z["z_shelf_path"].as_str() {
                            let zid = c.call(Command::GetShelf, json!({"path": zp})).unwrap()["id"]
                                .as_i64()
                                .unwrap();
                            resize(&mut c, zp, zid, 0).unwrap();
                            c.call(Command::DestroyShelf, json!({"path": zp})).unwrap();
                        }
                        c.call(Command::DestroyShelf, json!({"path": p})).unwrap();
                    }
                }
                held.len()
            })
        })
        .collect();
    let mut live = 0;
    for t in threads {
        live += t.join().unwrap();
    }
    let mut c = srv.client(1);
    let listing = c.call(Command::ListShelves, json!({"path": "/"})).unwrap();
    assert_eq!(listing.as_array().unwrap().len(), 3 + live, "{listing}");
    let used = c.call(Command::GetFsStats, json!({})).unwrap()["books_used"]
        .as_i64()
        .unwrap();
    let on_files: i64 = listing.as_array().unwrap()[3..]
        .iter()
        .map(|s| s["book_count"].as_i64().unwrap())
        .sum();
    assert_eq!(used, on_files);
    srv.stop();
    assert_consistent(&srv);
    let (code, out) = srv.fsck();
    assert_eq!(code, 0, "fsck not clean:\n{out}");
}

#[test]
fn acknowledged_changes_survive_sigkill() {
    let mut srv = Server::start(FOUR_NODES);
    let stop = Arc::new(AtomicBool::new(false));
    // Each worker records what the server acknowledged: path -> expected size (None: destroyed).
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let mut c = srv.client(1 + t);
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut acked: HashMap<String, Option<i64>> = HashMap::new();
                let mut in_flight: Option<String> = None;
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let path = format!("/k{t}_{i}");
                    in_flight = Some(path.clone());
                    let Ok(s) = c.call(Command::CreateShelf, json!({"path": path, "mode": 0}))
                    else {
                        break;
                    };
                    acked.insert(path.clone(), Some(0));
                    let id = s["id"].as_i64().unwrap();
                    if c.call(
                        Command::CloseShelf,
                        json!({"id": id, "open_handle": s["open_handle"]}),
                    )
                    .is_err()
                    {
                        break;
                    }
                    let size = (i % 3) * BOOK;
                    match resize(&mut c, &path, id, size) {
                        Ok(_) => acked.insert(path.clone(), Some(size)),
                        Err(lfs_proto::client::ClientError::Remote { .. }) => None,
                        Err(_) => break,
                    };
                    if i % 4 == 3 {
                        let z = match resize(&mut c, &path, id, 0) {
                            Ok(z) => z,
                            Err(_) => break,
                        };
                        acked.insert(path.clone(), Some(0));
                        if let Some(zp) = z["z_shelf_path"].as_str() {
                            let Ok(zs) = c.call(Command::GetShelf, json!({"path": zp})) else {
                                break;
                            };
                            if resize(&mut c, zp, zs["id"].as_i64().unwrap(), 0).is_err()
                                || c.call(Command::DestroyShelf, json!({"path": zp})).is_err()
                            {
                                break;
                            }
                        }
                        if c.call(Command::DestroyShelf, json!({"path": path}))
                            .is_err()
                        {
                            break;
                        }
                        acked.insert(path.clone(), None);
                    }
                    in_flight = None;
                }
                (acked, in_flight)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    srv.kill();
    stop.store(true, Ordering::Relaxed);
    let results: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let total: usize = results.iter().map(|(a, _)| a.len()).sum();
    assert!(
        total > 50,
        "the load did too little before the kill ({total} files)"
    );

    srv.launch();
    let mut c = srv.client(1);
    let mut unsure: HashSet<String> = HashSet::new();
    for (acked, in_flight) in &results {
        if let Some(p) = in_flight {
            unsure.insert(p.clone());
        }
        for (path, size) in acked {
            if unsure.contains(path) {
                continue;
            }
            match (size, c.call(Command::GetShelf, json!({"path": path}))) {
                (Some(sz), Ok(s)) => assert_eq!(s["size_bytes"].as_i64(), Some(*sz), "{path}"),
                (None, Err(e)) => assert_eq!(e.errno(), libc::ENOENT, "{path}"),
                (want, got) => panic!("{path}: acknowledged {want:?}, found {got:?}"),
            }
        }
    }
    // Nodes remount after the crash (releasing the opens of requests cut short); fsck is clean.
    for n in 1..=4 {
        srv.client(n)
            .call(Command::UpdateNodeMcStatus, json!({"status": 1}))
            .unwrap();
    }
    // Zeroing shelves cut short by the kill hold zombies: hand them to a node and finish them.
    let listing = c.call(Command::ListShelves, json!({"path": "/"})).unwrap();
    for s in listing.as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        if name.starts_with(".lfs_pending_zero_") {
            let p = format!("/{name}");
            resize(&mut c, &p, s["id"].as_i64().unwrap(), 0).unwrap();
            c.call(Command::DestroyShelf, json!({"path": p})).unwrap();
        }
    }
    while let Some(zp) =
        c.call(Command::KillZombieBooks, json!({})).unwrap()["z_shelf_path"].as_str()
    {
        let zs = c.call(Command::GetShelf, json!({"path": zp})).unwrap();
        resize(&mut c, zp, zs["id"].as_i64().unwrap(), 0).unwrap();
        c.call(Command::DestroyShelf, json!({"path": zp})).unwrap();
    }
    drop(c);
    srv.stop();
    assert_consistent(&srv);
    let (code, out) = srv.fsck();
    assert_eq!(code, 0, "fsck not clean after the crash:\n{out}");
}
