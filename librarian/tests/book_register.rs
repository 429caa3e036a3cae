//! Runs the real `book-register` binary on every shipped topology config and checks the outcome
//! (exit status, message, and the database contents read back with rusqlite).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rusqlite::Connection;

const BIN: &str = env!("CARGO_BIN_EXE_book-register");

fn config_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/tm-configfiles");
    assert!(
        dir.is_dir(),
        "shared test configs not found at {} (expected the read-only copy of tm-librarian's configfiles there)",
        dir.display()
    );
    dir
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("cannot run book-register")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What a shipped config must produce.
enum Expect {
    Loads {
        mode_physaddr: bool,
        book_size: i64,
        nodes: i64,
        books: i64,
        /// Distinct `books.intlv_group` values.
        intlv_groups: &'static [i64],
        /// `FAModules` rows (4 per node in LZA).
        famodules: i64,
    },
    Rejected(&'static [&'static str]),
}

fn expectations() -> Vec<(&'static str, Expect)> {
    use Expect::*;
    const M8: i64 = 8 << 20;
    const G8: i64 = 8 << 30;
    vec![
        // 40 nodes x 512 books of 8M (compact form).
        (
            "FAME_FRD_max.ini",
            Loads {
                mode_physaddr: false,
                book_size: M8,
                nodes: 40,
                books: 20480,
                intlv_groups: &[],
                famodules: 160,
            },
        ),
        // Per-node LZA: 512+512+256+256 books of 8G.
        (
            "book_data.ini",
            Loads {
                mode_physaddr: false,
                book_size: G8,
                nodes: 4,
                books: 1536,
                intlv_groups: &[0, 1, 2, 3],
                famodules: 16,
            },
        ),
        // 80 nodes, 4T per node of 8G books = 512 books each.
        (
            "book_max.ini",
            Loads {
                mode_physaddr: false,
                book_size: G8,
                nodes: 80,
                books: 40960,
                intlv_groups: &[],
                famodules: 320,
            },
        ),
        (
            "fame_4nodes.ini",
            Loads {
                mode_physaddr: false,
                book_size: M8,
                nodes: 4,
                books: 2048,
                intlv_groups: &[0, 1, 2, 3],
                famodules: 16,
            },
        ),
        // Nodes 2 and 8 with 128 books each: IGs 1 and 7.
        (
            "ftcbu1.ini",
            Loads {
                mode_physaddr: false,
                book_size: G8,
                nodes: 2,
                books: 256,
                intlv_groups: &[1, 7],
                famodules: 8,
            },
        ),
        // PHYSADDR: node01 two ranges of 88 books, node04 one range (empty first line + tab).
        (
            "SDFlex_good.ini",
            Loads {
                mode_physaddr: true,
                book_size: 2 << 20,
                nodes: 2,
                books: 264,
                intlv_groups: &[65536, 65539],
                famodules: 0,
            },
        ),
        // Old-style managementServer, 4 nodes x 4 MCs of 1G, IGs 0..3.
        (
            "fame.json",
            Loads {
                mode_physaddr: false,
                book_size: M8,
                nodes: 4,
                books: 2048,
                intlv_groups: &[0, 1, 2, 3],
                famodules: 16,
            },
        ),
        (
            "fame_80_node.json",
            Loads {
                mode_physaddr: false,
                book_size: M8,
                nodes: 80,
                books: 40960,
                intlv_groups: &[],
                famodules: 320,
            },
        ),
        // New-style servers; nodes 1-4 and 11-14 with groupIds 1..8.
        (
            "LATEST.json",
            Loads {
                mode_physaddr: false,
                book_size: G8,
                nodes: 8,
                books: 512,
                intlv_groups: &[1, 2, 3, 4, 5, 6, 7, 8],
                famodules: 32,
            },
        ),
        (
            "sparse2x2.conf",
            Loads {
                mode_physaddr: false,
                book_size: M8,
                nodes: 4,
                books: 2048,
                intlv_groups: &[1, 2, 21, 22],
                famodules: 16,
            },
        ),
        (
            "sparse2x4.json",
            Loads {
                mode_physaddr: false,
                book_size: M8,
                nodes: 8,
                books: 4096,
                intlv_groups: &[1, 2, 3, 4, 21, 22, 23, 24],
                famodules: 32,
            },
        ),
        (
            "sparseNode.json",
            Loads {
                mode_physaddr: false,
                book_size: G8,
                nodes: 8,
                books: 512,
                intlv_groups: &[1, 2, 3, 4, 5, 6, 7, 8],
                famodules: 32,
            },
        ),
        // node01's second range [0xf0010000000, +88 books) overlaps node04's range.
        (
            "SDFlex_bad.ini",
            Rejected(&[
                "SDFlex_bad.ini",
                "[node04] nvm_size",
                "node01 range 0xf0010000000 collides with node04 range 0xf001a000000",
                "must not overlap",
            ]),
        ),
        // Lower-case coordinates: wrong MachineVersion and keyword case.
        (
            "simpleconfig.json",
            Rejected(&[
                "simpleconfig.json",
                "Illegal configuration cannot be used",
                "Illegal MachineVersion \"/machine_rev/1/datacenter/pa1\"",
                "case should be \"Datacenter\"",
                "case should be \"Node\"",
            ]),
        ),
        // Lower-case coordinates and an empty interleaveGroups list.
        (
            "tmcf-bristol.json",
            Rejected(&[
                "tmcf-bristol.json",
                "Illegal MachineVersion \"/machine_version/1/datacenter/br2\"",
                "case should be \"Enclosure\"",
                "has no interleaveGroups",
            ]),
        ),
        // 16 MCs but only node 11's 4 are in an IG.
        (
            "tmcf-drew.json",
            Rejected(&[
                "tmcf-drew.json",
                "Inconsistent configuration cannot be used",
                "12 MC(s) not assigned to an IG",
                "EncNum/1/Node/1/MemoryBoard/1/MediaController/1",
            ]),
        ),
    ]
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[test]
fn every_shipped_config() {
    let dir = config_dir();
    let expect = expectations();
    let names: BTreeSet<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let known: BTreeSet<String> = expect.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        names, known,
        "the config directory and this test's expectations differ"
    );

    let tmp = tempfile::tempdir().unwrap();
    for (name, exp) in &expect {
        let cfile = dir.join(name);
        let db = tmp.path().join(format!("{name}.db"));
        let out = run(&["-d", db.to_str().unwrap(), cfile.to_str().unwrap()]);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        match exp {
            Expect::Rejected(parts) => {
                assert_eq!(
                    out.status.code(),
                    Some(1),
                    "{name} should be rejected; stdout {stdout}"
                );
                for p in *parts {
                    assert!(stderr.contains(p), "{name}: stderr lacks {p:?}:\n{stderr}");
                }
                assert!(stderr.starts_with("book-register: "), "{name}: {stderr}");
                assert!(
                    !db.exists(),
                    "{name}: a rejected config must not leave a database"
                );
                assert!(!stderr.contains("panicked"), "{name}: {stderr}");
            }
            Expect::Loads {
                mode_physaddr,
                book_size,
                nodes,
                books,
                intlv_groups,
                famodules,
            } => {
                assert!(out.status.success(), "{name} should load:\n{stderr}");
                assert!(
                    stdout.contains(&format!("{nodes} nodes, {books} books")),
                    "{name}: {stdout}"
                );
                let conn = Connection::open(&db).unwrap();
                assert_eq!(count(&conn, "SELECT count(*) FROM globals"), 1, "{name}");
                assert_eq!(
                    count(&conn, "SELECT book_size_bytes FROM globals"),
                    *book_size,
                    "{name}"
                );
                assert_eq!(
                    count(&conn, "SELECT books_total FROM globals"),
                    *books,
                    "{name}"
                );
                assert_eq!(
                    count(&conn, "SELECT nvm_bytes_total FROM globals"),
                    books * book_size,
                    "{name}"
                );
                assert_eq!(
                    count(&conn, "SELECT nodes_total FROM globals"),
                    *nodes,
                    "{name}"
                );
                assert_eq!(count(&conn, "SELECT count(*) FROM books"), *books, "{name}");
                assert_eq!(
                    count(
                        &conn,
                        "SELECT count(*) FROM books WHERE allocated != 0 OR attributes != 0"
                    ),
                    0
                );
                assert_eq!(
                    count(&conn, "SELECT count(*) FROM FRDnodes"),
                    *nodes,
                    "{name}"
                );
                assert_eq!(count(&conn, "SELECT count(*) FROM SOCs"), *nodes, "{name}");
                assert_eq!(
                    count(&conn, "SELECT count(DISTINCT node_id) FROM FRDnodes"),
                    *nodes
                );
                assert_eq!(
                    count(&conn, "SELECT count(*) FROM FAModules"),
                    *famodules,
                    "{name}"
                );
                assert_eq!(count(&conn, "SELECT count(*) FROM shelves"), 3, "{name}");
                let groups: Vec<i64> = conn
                    .prepare("SELECT DISTINCT intlv_group FROM books ORDER BY 1")
                    .unwrap()
                    .query_map([], |r| r.get(0))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                if intlv_groups.is_empty() {
                    // One IG per node, 0..nodes-1.
                    assert_eq!(groups, (0..*nodes).collect::<Vec<_>>(), "{name}");
                } else {
                    assert_eq!(groups, intlv_groups.to_vec(), "{name}");
                }
                let mode: i64 = count(&conn, "SELECT max(intlv_group >> 16) FROM books");
                assert_eq!(mode, i64::from(*mode_physaddr), "{name}");
                if !mode_physaddr {
                    // LZA ids: (IG << 46) | (book_num << 33); FAModules books match the IG's.
                    assert_eq!(
                        count(&conn, "SELECT count(*) FROM books WHERE id != ((intlv_group << 46) | (book_num << 33))"),
                        0,
                        "{name}"
                    );
                    assert_eq!(
                        count(&conn, "SELECT sum(module_size_books) FROM FAModules"),
                        *books,
                        "{name}"
                    );
                    assert_eq!(
                        count(&conn, "SELECT count(*) FROM FAModules WHERE memorySize != module_size_books * (SELECT book_size_bytes FROM globals)"),
                        0
                    );
                }
                let jm: String = conn
                    .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                    .unwrap();
                assert_eq!(jm, "wal", "{name}");
            }
        }
    }
}

#[test]
fn ini_db_values() {
    let dir = config_dir();
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("ftc.db");
    let out = run(&[
        "-d",
        db.to_str().unwrap(),
        dir.join("ftcbu1.ini").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let conn = Connection::open(&db).unwrap();
    let row: (i64, i64, i64, i64, String, String) = conn
        .query_row("SELECT * FROM FRDnodes WHERE node_id = 8", [], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap();
    assert_eq!(row, (8, 1, 1, 8, "Node/8".into(), "1:1:8".into()));
    let mac: String = conn
        .query_row("SELECT MAC FROM SOCs WHERE node_id = 8", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mac, "52:54:42:08:08:08");
    let cid: i64 = conn
        .query_row("SELECT rawCID FROM FAModules WHERE node_id = 8 AND coordinate = 'MemoryBoard/1/MediaController/2'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(cid, (7 << 4) | 9);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM FAModules WHERE IG = 7 AND module_size_books = 32"
        ),
        4
    );
    assert_eq!(
        count(
            &conn,
            "SELECT id FROM books WHERE intlv_group = 7 AND book_num = 127"
        ),
        (7 << 46) | (127 << 33)
    );

    // PHYSADDR: ids are addresses, book_num runs across a node's ranges.
    let db = tmp.path().join("sdflex.db");
    let out = run(&[
        "-d",
        db.to_str().unwrap(),
        dir.join("SDFlex_good.ini").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let conn = Connection::open(&db).unwrap();
    assert_eq!(
        count(
            &conn,
            "SELECT id FROM books WHERE intlv_group = 65536 AND book_num = 88"
        ),
        0xf00100000000
    );
    assert_eq!(
        count(
            &conn,
            "SELECT max(book_num) FROM books WHERE intlv_group = 65536"
        ),
        175
    );
    assert_eq!(
        count(&conn, "SELECT min(id) FROM books WHERE intlv_group = 65539"),
        0xf001a0000000
    );
    assert_eq!(
        count(&conn, "SELECT max(id) FROM books WHERE intlv_group = 65539"),
        0xf001a0000000 + 87 * (2 << 20)
    );
}

#[test]
fn json_db_values() {
    let dir = config_dir();
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("latest.db");
    let out = run(&[
        "-d",
        db.to_str().unwrap(),
        dir.join("LATEST.json").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let conn = Connection::open(&db).unwrap();
    let row: (String, i64, i64, String) = conn
        .query_row(
            "SELECT rack, enc, node, coordinate FROM FRDnodes WHERE node_id = 12",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        row,
        (
            "A1.AboveFloor".into(),
            2,
            2,
            "/MachineVersion/1/Datacenter/BUK1/Rack/A1.AboveFloor/Enclosure/U8/EncNum/2/Node/2"
                .into()
        )
    );
    let soc: (String, String) = conn
        .query_row(
            "SELECT MAC, coordinate FROM SOCs WHERE node_id = 12",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(soc.0, "00:00:00:00:02:02");
    assert!(
        soc.1.ends_with("/EncNum/2/Node/2/SocBoard/1/Soc/1"),
        "{}",
        soc.1
    );
    // groupId 6 holds node 12's MCs (16 books each).
    assert_eq!(count(&conn, "SELECT count(*) FROM FAModules WHERE IG = 6 AND node_id = 12 AND module_size_books = 16"), 4);
    assert_eq!(count(&conn, "SELECT rawCID FROM FAModules WHERE node_id = 12 AND coordinate LIKE '%MediaController/3'"), (1 << 9) | (1 << 4) | 10);
    assert_eq!(
        count(
            &conn,
            "SELECT max(book_num) FROM books WHERE intlv_group = 6"
        ),
        63
    );

    // A numeric rack name is stored as an integer (INT affinity), serial numbers as text.
    let db = tmp.path().join("fame.db");
    let out = run(&[
        "-d",
        db.to_str().unwrap(),
        dir.join("fame.json").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let conn = Connection::open(&db).unwrap();
    let (rack, serial): (i64, String) = conn
        .query_row(
            "SELECT rack, serialNumber FROM FRDnodes WHERE node_id = 2",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((rack, serial.as_str()), (1, "22222"));
}

#[test]
fn validate_only_without_d() {
    let dir = config_dir();
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg(dir.join("fame_4nodes.ini"))
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("valid: 4 nodes, 2048 books of 8388608 bytes (8M), mode LZA"),
        "{stdout}"
    );
    assert!(stdout.contains("pass -d"), "{stdout}");
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "nothing may be written"
    );
}

#[test]
fn refuses_existing_db_without_f() {
    let dir = config_dir();
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("lib.db");
    let cfg = dir.join("fame_4nodes.ini");
    fs::write(&db, b"keep me").unwrap();
    let out = run(&["-d", db.to_str().unwrap(), cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("database file exists") && err.contains("lib.db") && err.contains("-f"),
        "{err}"
    );
    assert_eq!(fs::read(&db).unwrap(), b"keep me");

    let out = run(&["-f", "-d", db.to_str().unwrap(), cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let conn = Connection::open(&db).unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM books"), 2048);
    drop(conn);

    // Re-registering over a good database with a bad config keeps the old one.
    let out = run(&[
        "-f",
        "-d",
        db.to_str().unwrap(),
        dir.join("SDFlex_bad.ini").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let conn = Connection::open(&db).unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM books"), 2048);
    let names: Vec<String> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(names.is_empty(), "leftover temp files: {names:?}");
}

#[test]
fn json_output_for_ini() {
    let dir = config_dir();
    let out = run(&["-j", dir.join("fame_4nodes.ini").to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout must be only JSON");
    assert_eq!(v["servers"][0]["services"][0]["service"], "librarian");
    assert_eq!(v["servers"][0]["services"][0]["bookSize"], 8 << 20);
    assert_eq!(v["servers"][0]["services"][0]["port"], 9093);
    assert_eq!(v["interleaveGroups"].as_array().unwrap().len(), 4);
    // The summary went to stderr.
    assert!(text(&out.stderr).contains("valid: 4 nodes"));

    // The generated document registers to the same books.
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("fame4.json");
    fs::write(&json, &out.stdout).unwrap();
    let db = tmp.path().join("j.db");
    let out = run(&["-d", db.to_str().unwrap(), json.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let conn = Connection::open(&db).unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM books"), 2048);

    // SDFlex PHYSADDR: no nodeMp or iZoneBoards.
    let out = run(&["-j", dir.join("SDFlex_good.ini").to_str().unwrap()]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let enc = &v["racks"][0]["enclosures"][0];
    assert!(enc.get("iZoneBoards").is_none());
    assert!(enc["nodes"][0].get("nodeMp").is_none());
    assert_eq!(v["coordinate"], "/MachineVersion/1/Datacenter/craycray");
    assert_eq!(v["servers"][0]["ipv4Address"], "torms.labs.hpe.com");

    // -j is ignored for JSON input.
    let out = run(&["-j", dir.join("fame.json").to_str().unwrap()]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains("-j only applies to INI"));
}

#[test]
fn verbose_prints_phase_times() {
    let dir = config_dir();
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("v.db");
    let out = run(&[
        "-v",
        "1",
        "-d",
        db.to_str().unwrap(),
        dir.join("SDFlex_good.ini").to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    for p in [
        "time: parse+validate",
        "books",
        "commit",
        "install",
        "total",
        "[node01]",
        "0x0000f00100000000 -> ",
    ] {
        assert!(stdout.contains(p), "verbose output lacks {p:?}:\n{stdout}");
    }
}

#[test]
fn bad_invocations() {
    let out = run(&["/nonexistent/x.ini"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("\"/nonexistent/x.ini\" not found"));

    let tmp = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str)] = &[
        ("empty.ini", "", "empty config file"),
        ("garbage.ini", "\u{1}\u{2} nonsense", "outside any section"),
        ("bytes.ini", "[global]\nnode_count = 4\nbook_size_bytes = 8M\nbytes_per_node = 512B\n", "Illegal option(s) in [global]: bytes_per_node"),
        ("size.ini", "[global]\nnode_count = 4\nbook_size_bytes = 3M\nnvm_size_per_node = 8B\n", "size.ini: [global] book_size_bytes = 3M: must be a power of two between 2M and 8G (e.g. 2M, 4M, 8M)"),
        ("nodes.ini", "[global]\nnode_count = 81\nbook_size_bytes = 8M\nnvm_size_per_node = 8B\n", "node_count = 81"),
        ("arr.json", "[1, 2, 3]", "not a TMCF topology"),
    ];
    for (name, body, want) in cases {
        let p = tmp.path().join(name);
        fs::write(&p, body).unwrap();
        let out = run(&[p.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{name}: {err}");
        assert_eq!(
            err.lines().count(),
            1,
            "{name}: one message expected: {err}"
        );
        assert!(out.stdout.is_empty(), "{name}");
    }
    // Binary junk is rejected, not a crash.
    let p = tmp.path().join("junk.bin");
    fs::write(&p, [0xff, 0xfe, 0x00, 0x80]).unwrap();
    let out = run(&[p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not a text file"));
}

/// Mutated versions of every shipped config must give a result or an error, never a panic, and
/// whatever is accepted must also build a database.
#[test]
fn no_panics_on_mutated_configs() {
    use librarian::topology::Topology;
    let dir = config_dir();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    const SPECIAL: &[u8] = b"[]=:@#; \t\n0123456789xXbBkKmMgGtT-{}\",/.";
    let mut accepted = 0;
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for path in paths {
        let original = fs::read(&path).unwrap();
        for round in 0..150 {
            let mut b = original.clone();
            for _ in 0..1 + next() % 3 {
                if b.is_empty() {
                    break;
                }
                let pos = (next() % b.len() as u64) as usize;
                let ch = SPECIAL[(next() % SPECIAL.len() as u64) as usize];
                match next() % 5 {
                    0 => b[pos] = ch,
                    1 => b.truncate(pos),
                    2 => b.insert(pos, ch),
                    3 => {
                        // Delete the line containing pos.
                        let start = b[..pos]
                            .iter()
                            .rposition(|&c| c == b'\n')
                            .map_or(0, |i| i + 1);
                        let end = b[pos..]
                            .iter()
                            .position(|&c| c == b'\n')
                            .map_or(b.len(), |i| pos + i + 1);
                        b.drain(start..end);
                    }
                    _ => {
                        // Duplicate the line containing pos.
                        let start = b[..pos]
                            .iter()
                            .rposition(|&c| c == b'\n')
                            .map_or(0, |i| i + 1);
                        let end = b[pos..]
                            .iter()
                            .position(|&c| c == b'\n')
                            .map_or(b.len(), |i| pos + i + 1);
                        let line = b[start..end].to_vec();
                        b.splice(end..end, line);
                    }
                }
            }
            let text = String::from_utf8_lossy(&b).into_owned();
            let name = format!("{}#{round}", path.display());
            let result = std::panic::catch_unwind(|| Topology::from_str_auto(&name, &text));
            let Ok(result) = result else {
                panic!("panic on mutated {name}:\n{text}");
            };
            match result {
                Ok(t) => {
                    accepted += 1;
                    assert!(t.books_total() > 0, "{name}");
                    if t.books_total() <= 4096 {
                        let r = t.create_db(":memory:", false);
                        assert!(
                            r.is_ok(),
                            "{name}: accepted but the DB failed: {:?}\n{text}",
                            r.err()
                        );
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.starts_with(&name), "{msg}");
                }
            }
        }
    }
    assert!(
        accepted > 0,
        "no mutation was accepted at all; the test is not exercising much"
    );
}
