//! Runs the real `book-register` binary on every topology config of the project's own corpus
//! (`tests/data/topology/`) and checks the outcome (exit status, message, and the database
//! contents read back with rusqlite).
//!
//! Where the original tm-librarian corpus (`../shared/data/tm-configfiles`) is beside the
//! checkout, the `original_corpus_*` tests cross-check it too; elsewhere they are ignored, with
//! the reason, by `build.rs` (cfg `original_corpus`).

use std::collections::BTreeSet;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rusqlite::types::FromSql;
use rusqlite::{Connection, Row};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_book-register");

/// The project's own topology corpus.
fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/topology")
}

fn corpus(name: &str) -> PathBuf {
    let p = corpus_dir().join(name);
    assert!(p.is_file(), "{} is missing from the corpus", p.display());
    p
}

/// The original tm-librarian corpus, present on the developers' machines and in CI only.
fn original_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/tm-configfiles")
}

fn original(name: &str) -> PathBuf {
    let dir = original_dir();
    assert!(
        dir.is_dir(),
        "the original corpus was at {} when build.rs ran, but is gone now",
        dir.display()
    );
    dir.join(name)
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

/// What a config must produce: one entry of an expectations file (`tests/data/expected/`).
#[derive(Debug, PartialEq)]
enum Expect {
    Loads(Loads),
    /// Rejected with exit status 1 and a message containing every fragment.
    Rejected(Vec<String>),
}

/// What a good config must put in its database.
#[derive(Debug, PartialEq)]
struct Loads {
    mode_physaddr: bool,
    book_size: i64,
    nodes: i64,
    books: i64,
    /// Distinct `books.intlv_group` values; empty (left out of the file): one IG per node,
    /// `0..nodes`.
    intlv_groups: Vec<i64>,
    /// `FAModules` rows (4 per node from INI in LZA).
    famodules: i64,
    /// Warnings it must print on stderr; checked for our corpus only, where none means that
    /// stderr stays empty.
    warnings: Vec<String>,
}

/// The expectations of a corpus, kept as data (`tests/data/expected/<file>`, whose `about` says
/// what each field means) so that a corpus file and what it must give are one entry: the good
/// files (`loads`) first, then the bad ones (`rejected`, grouped by the rule they break), in the
/// file's order.
fn expectations(file: &str) -> Vec<(String, Expect)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/expected")
        .join(file);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let good = object(file, &doc["loads"])
        .iter()
        .map(|(name, entry)| (name.clone(), Expect::Loads(Loads::read(name, entry))));
    let bad = list(file, &doc["rejected"])
        .iter()
        .flat_map(|group| object(file, &group["files"]))
        .map(|(name, parts)| (name.clone(), Expect::Rejected(strings(name, parts))));
    good.chain(bad).collect()
}

impl Loads {
    /// The fields an entry may have; any other is a typo that would leave a check out.
    const FIELDS: &'static [&'static str] = &[
        "about",
        "mode",
        "book_size",
        "nodes",
        "books",
        "intlv_groups",
        "famodules",
        "warnings",
    ];

    /// Reads the entry of good file `name`.
    fn read(name: &str, entry: &Value) -> Loads {
        for field in object(name, entry).keys() {
            assert!(
                Self::FIELDS.contains(&field.as_str()),
                "{name}: unknown field {field:?}"
            );
        }
        let int = |field: &str| {
            entry[field]
                .as_i64()
                .unwrap_or_else(|| panic!("{name}: {field} must be an integer"))
        };
        let optional = |field: &str| match &entry[field] {
            Value::Null => Vec::new(),
            v => list(name, v).clone(),
        };
        Loads {
            mode_physaddr: match entry["mode"].as_str() {
                Some("LZA") => false,
                Some("PHYSADDR") => true,
                other => panic!("{name}: mode {other:?}, expected \"LZA\" or \"PHYSADDR\""),
            },
            book_size: bytes(name, &entry["book_size"]),
            nodes: int("nodes"),
            books: int("books"),
            intlv_groups: optional("intlv_groups")
                .iter()
                .map(|ig| ig.as_i64().unwrap_or_else(|| panic!("{name}: IG {ig}")))
                .collect(),
            famodules: int("famodules"),
            warnings: strings(name, &Value::Array(optional("warnings"))),
        }
    }
}

/// `v` as a JSON object, or a panic that names `what` it is in.
fn object<'a>(what: &str, v: &'a Value) -> &'a serde_json::Map<String, Value> {
    v.as_object()
        .unwrap_or_else(|| panic!("{what}: expected an object, not {v}"))
}

/// `v` as a JSON list, or a panic that names `what` it is in.
fn list<'a>(what: &str, v: &'a Value) -> &'a Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what}: expected a list, not {v}"))
}

/// `v` as a list of strings, or a panic that names `what` it is in.
fn strings(what: &str, v: &Value) -> Vec<String> {
    list(what, v)
        .iter()
        .map(|s| match s.as_str() {
            Some(s) => s.to_owned(),
            None => panic!("{what}: expected a string, not {s}"),
        })
        .collect()
}

/// A book size as the expectations spell it, a whole number of K, M or G (binary): read here,
/// not by the size parser under test.
fn bytes(what: &str, v: &Value) -> i64 {
    let text = v
        .as_str()
        .unwrap_or_else(|| panic!("{what}: book_size must be a string such as \"8M\""));
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let shift = match unit {
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => panic!("{what}: book_size {text:?} must end in K, M or G"),
    };
    let number: i64 = number
        .parse()
        .unwrap_or_else(|e| panic!("{what}: book_size {text:?}: {e}"));
    number << shift
}

/// The one row that `sql` selects, as a tuple of its first columns.
fn row<T>(conn: &Connection, sql: &str) -> T
where
    T: for<'a> TryFrom<&'a Row<'a>, Error = rusqlite::Error>,
{
    conn.query_row(sql, [], |r| T::try_from(r))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The one value (the first column of the one row) that `sql` selects.
fn value<T: FromSql>(conn: &Connection, sql: &str) -> T {
    row::<(T,)>(conn, sql).0
}

/// Every value of the first column that `sql` selects.
fn column<T: FromSql>(conn: &Connection, sql: &str) -> Vec<T> {
    let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let rows = stmt.query_map([], |r| r.get(0));
    rows.and_then(Iterator::collect)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The one integer that `sql` selects: a count, an id, a size.
fn count(conn: &Connection, sql: &str) -> i64 {
    value(conn, sql)
}

/// The integer that `select` (a column, or an aggregate such as `count(*)`) gives over the
/// `FAModules` rows that match `cond`.
fn famodules(conn: &Connection, select: &str, cond: &str) -> i64 {
    count(
        conn,
        &format!("SELECT {select} FROM FAModules WHERE {cond}"),
    )
}

/// The rawCID of node `node_id`'s media controller whose coordinate `mc` (an SQL condition on
/// `coordinate`) picks.
fn raw_cid(conn: &Connection, node_id: i64, mc: &str) -> i64 {
    famodules(conn, "rawCID", &format!("node_id = {node_id} AND {mc}"))
}

/// How many of node `node_id`'s media controllers are in interleave group `ig` with `books`
/// books each.
fn mcs_in_ig(conn: &Connection, ig: i64, node_id: i64, books: i64) -> i64 {
    famodules(
        conn,
        "count(*)",
        &format!("IG = {ig} AND node_id = {node_id} AND module_size_books = {books}"),
    )
}

/// Node `node_id`'s SOC: its MAC and coordinate.
fn soc(conn: &Connection, node_id: i64) -> (String, String) {
    row(
        conn,
        &format!("SELECT MAC, coordinate FROM SOCs WHERE node_id = {node_id}"),
    )
}

/// Node `node_id`'s rack (as stored: a numeric name is an integer) and serial number.
fn rack_and_serial(conn: &Connection, node_id: i64) -> (i64, String) {
    row(
        conn,
        &format!("SELECT rack, serialNumber FROM FRDnodes WHERE node_id = {node_id}"),
    )
}

/// The id of book `book_num` of interleave group `ig`.
fn book_id(conn: &Connection, ig: i64, book_num: i64) -> i64 {
    count(
        conn,
        &format!("SELECT id FROM books WHERE intlv_group = {ig} AND book_num = {book_num}"),
    )
}

/// The highest book number of interleave group `ig`.
fn max_book_num(conn: &Connection, ig: i64) -> i64 {
    count(
        conn,
        &format!("SELECT max(book_num) FROM books WHERE intlv_group = {ig}"),
    )
}

/// The lowest and highest book id of interleave group `ig`.
fn book_ids(conn: &Connection, ig: i64) -> (i64, i64) {
    row(
        conn,
        &format!("SELECT min(id), max(id) FROM books WHERE intlv_group = {ig}"),
    )
}

/// Node `node_id`'s `FRDnodes` row: node_id, rack, enc, node, coordinate, serialNumber.
fn frdnode(conn: &Connection, node_id: i64) -> (i64, i64, i64, i64, String, String) {
    row(
        conn,
        &format!("SELECT * FROM FRDnodes WHERE node_id = {node_id}"),
    )
}

/// Where node `node_id` is (from TMCF): its rack, enclosure, node number and coordinate.
fn place(conn: &Connection, node_id: i64) -> (String, i64, i64, String) {
    row(
        conn,
        &format!("SELECT rack, enc, node, coordinate FROM FRDnodes WHERE node_id = {node_id}"),
    )
}

/// Checks an INI node: its `FRDnodes` row (node_id, rack, enc, node, coordinate, serialNumber),
/// the MAC its SOC is given, and the rawCID of its media controller 2.
fn check_ini_node(
    conn: &Connection,
    (node_id, rack, enc, node, coordinate, serial): (i64, i64, i64, i64, &str, &str),
    mac: &str,
    mc2_raw_cid: i64,
) {
    assert_eq!(
        frdnode(conn, node_id),
        (node_id, rack, enc, node, coordinate.into(), serial.into())
    );
    assert_eq!(soc(conn, node_id).0, mac);
    assert_eq!(
        raw_cid(
            conn,
            node_id,
            "coordinate = 'MemoryBoard/1/MediaController/2'"
        ),
        mc2_raw_cid
    );
}

/// Checks a PHYSADDR interleave group, whose book ids are addresses and whose book numbers run
/// across its node's ranges: book `book_num` is at `address`, and `last` is the last number.
fn check_physaddr_ig(conn: &Connection, ig: i64, (book_num, address): (i64, i64), last: i64) {
    assert_eq!(book_id(conn, ig, book_num), address, "IG {ig}");
    assert_eq!(max_book_num(conn, ig), last, "IG {ig}");
}

/// Registers `config` into a new database in `dir`, named after it, which must succeed, and
/// opens the database.
fn register(dir: &Path, config: &Path) -> Connection {
    let name = config.file_name().unwrap().to_string_lossy();
    let db = dir.join(format!("{name}.db"));
    let out = run(&["-d", db.to_str().unwrap(), config.to_str().unwrap()]);
    assert!(out.status.success(), "{name}: {}", text(&out.stderr));
    Connection::open(&db).unwrap()
}

/// One run of `book-register -d <db> <config>` and what it printed.
struct Registration<'a> {
    name: &'a str,
    config: PathBuf,
    db: PathBuf,
    out: Output,
    stdout: String,
    stderr: String,
}

/// Registers `name` of `dir` into a new database in `tmp`, named after it.
fn register_one<'a>(dir: &Path, tmp: &Path, name: &'a str) -> Registration<'a> {
    let config = dir.join(name);
    let db = tmp.join(format!("{name}.db"));
    let out = run(&["-d", db.to_str().unwrap(), config.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    Registration {
        name,
        config,
        db,
        out,
        stdout,
        stderr,
    }
}

/// Registers every file of `dir` (which must hold exactly the files of `expect`) and checks the
/// outcome. `ours`: also check what only our corpus promises: a rejection is one line naming the
/// file (unless it reports several problems), and a good file prints exactly its warnings.
fn check_corpus(dir: &Path, expect: &[(String, Expect)], ours: bool) {
    let names: BTreeSet<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let known: BTreeSet<String> = expect.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(known.len(), expect.len(), "a file is listed twice");
    assert_eq!(
        names, known,
        "the config directory and this test's expectations differ"
    );

    let tmp = tempfile::tempdir().unwrap();
    for (name, exp) in expect {
        let reg = register_one(dir, tmp.path(), name);
        match exp {
            Expect::Rejected(parts) => check_rejected(&reg, parts, ours),
            Expect::Loads(loads) => check_loads(&reg, loads, ours),
        }
    }
}

/// The config must have been refused with a message holding every fragment of `parts`, and
/// without a database left behind.
fn check_rejected(reg: &Registration, parts: &[String], ours: bool) {
    let Registration {
        name,
        stdout,
        stderr,
        ..
    } = reg;
    assert_eq!(
        reg.out.status.code(),
        Some(1),
        "{name} should be rejected; stdout {stdout}"
    );
    for p in parts {
        assert!(stderr.contains(p), "{name}: stderr lacks {p:?}:\n{stderr}");
    }
    assert!(stderr.starts_with("book-register: "), "{name}: {stderr}");
    assert!(
        !reg.db.exists(),
        "{name}: a rejected config must not leave a database"
    );
    assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    if ours {
        assert!(
            stderr.starts_with(&format!("book-register: {}: ", reg.config.display())),
            "{name}: the message must name the file: {stderr}"
        );
        if !parts.iter().any(|p| p.contains("more problem(s) below")) {
            assert_eq!(
                stderr.lines().count(),
                1,
                "{name} should break exactly one rule: {stderr}"
            );
        }
        assert!(stdout.is_empty(), "{name}: {stdout}");
    }
}

/// The config must have loaded, said so, printed its warnings (only those, for `ours`) and
/// built the database that `loads` describes.
fn check_loads(reg: &Registration, loads: &Loads, ours: bool) {
    let Registration {
        name,
        stdout,
        stderr,
        ..
    } = reg;
    let Loads { nodes, books, .. } = loads;
    assert!(reg.out.status.success(), "{name} should load:\n{stderr}");
    assert!(
        stdout.contains(&format!("{nodes} nodes, {books} books"))
            || stdout.contains(&format!("{nodes} node, {books} books")),
        "{name}: {stdout}"
    );
    if ours {
        if loads.warnings.is_empty() {
            assert!(stderr.is_empty(), "{name}: unexpected stderr: {stderr}");
        }
        for w in &loads.warnings {
            assert!(
                stderr.contains(w),
                "{name}: stderr lacks warning {w:?}:\n{stderr}"
            );
        }
    }
    check_database(name, &Connection::open(&reg.db).unwrap(), loads);
}

/// The database of good config `name` must hold what `loads` says, fresh (nothing allocated) and
/// in WAL mode.
fn check_database(name: &str, conn: &Connection, loads: &Loads) {
    let Loads {
        mode_physaddr,
        book_size,
        nodes,
        books,
        famodules,
        ..
    } = *loads;
    let mut want = vec![
        ("SELECT count(*) FROM globals", 1),
        ("SELECT book_size_bytes FROM globals", book_size),
        ("SELECT books_total FROM globals", books),
        ("SELECT nvm_bytes_total FROM globals", books * book_size),
        ("SELECT nodes_total FROM globals", nodes),
        ("SELECT count(*) FROM books", books),
        (
            "SELECT count(*) FROM books WHERE allocated != 0 OR attributes != 0",
            0,
        ),
        ("SELECT count(*) FROM FRDnodes", nodes),
        ("SELECT count(*) FROM SOCs", nodes),
        ("SELECT count(DISTINCT node_id) FROM FRDnodes", nodes),
        ("SELECT count(*) FROM FAModules", famodules),
        ("SELECT count(*) FROM shelves", 3),
        (
            "SELECT max(intlv_group >> 16) FROM books",
            i64::from(mode_physaddr),
        ),
    ];
    if !mode_physaddr {
        // LZA ids: (IG << 46) | (book_num << 33); FAModules books match the IG's.
        want.extend([
            ("SELECT count(*) FROM books WHERE id != ((intlv_group << 46) | (book_num << 33))", 0),
            ("SELECT sum(module_size_books) FROM FAModules", books),
            ("SELECT count(*) FROM FAModules WHERE memorySize != module_size_books * (SELECT book_size_bytes FROM globals)", 0),
        ]);
    }
    for (sql, want) in want {
        assert_eq!(count(conn, sql), want, "{name}: {sql}");
    }
    let groups: Vec<i64> = column(conn, "SELECT DISTINCT intlv_group FROM books ORDER BY 1");
    if loads.intlv_groups.is_empty() {
        // One IG per node, 0..nodes-1.
        assert_eq!(groups, (0..nodes).collect::<Vec<_>>(), "{name}");
    } else {
        assert_eq!(groups, loads.intlv_groups, "{name}");
    }
    let journal_mode: String = value(conn, "PRAGMA journal_mode");
    assert_eq!(journal_mode, "wal", "{name}");
}

#[test]
fn every_shipped_config() {
    check_corpus(&corpus_dir(), &expectations("ours.json"), true);
}

/// The cross-check against the original's corpus (see `build.rs`).
#[test]
#[cfg_attr(
    not(original_corpus),
    ignore = "../shared/data/tm-configfiles (the original tm-librarian corpus) is not beside this checkout"
)]
fn original_corpus_every_config() {
    check_corpus(&original_dir(), &expectations("original.json"), false);
}

/// `build.rs` decides once whether the original corpus is there. It notices the corpus changing
/// or going away, but not one that appears later (cargo can only watch a path that exists
/// without re-running the build script, and so rebuilding this crate, on every build).
#[test]
fn original_corpus_gate_matches_the_disk() {
    assert_eq!(
        cfg!(original_corpus),
        original_dir().is_dir(),
        "build.rs saw the original corpus {} at {} but it is {} now; run `touch topology/build.rs` so it looks again",
        if cfg!(original_corpus) { "present" } else { "absent" },
        original_dir().display(),
        if original_dir().is_dir() { "present" } else { "absent" },
    );
}

#[test]
fn ini_db_values() {
    let tmp = tempfile::tempdir().unwrap();
    let conn = register(tmp.path(), &corpus("per-node.ini"));
    // [ceres] is node 14: enclosure 2, node 4.
    check_ini_node(
        &conn,
        (14, 1, 2, 4, "Node/4", "1:2:4"),
        "52:54:42:14:14:14",
        (1 << 9) | (3 << 4) | 9,
    );
    // 96 books over 4 MCs in IG 13 (node_id - 1).
    assert_eq!(mcs_in_ig(&conn, 13, 14, 24), 4);
    assert_eq!(book_id(&conn, 13, 95), (13 << 46) | (95 << 33));
    assert_eq!(max_book_num(&conn, 39), 127);

    // PHYSADDR: ids are addresses, book_num runs across a node's ranges.
    let conn = register(tmp.path(), &corpus("physaddr.ini"));
    check_physaddr_ig(&conn, 65537, (64, 0x100040000000), 95);
    assert_eq!(
        book_ids(&conn, 65540),
        (0x1000c0000000, 0x100100000000 + 15 * (4 << 20))
    );
    // The partition without FAM is a node with no books.
    assert_eq!(
        count(&conn, "SELECT count(*) FROM FRDnodes WHERE node_id = 9"),
        1
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM books WHERE intlv_group = 65536 + 8"
        ),
        0
    );
}

#[test]
fn json_db_values() {
    let tmp = tempfile::tempdir().unwrap();
    let conn = register(tmp.path(), &corpus("tmcf-servers.json"));
    assert_eq!(
        place(&conn, 39),
        (
            "R3".into(),
            4,
            9,
            "/MachineVersion/1/Datacenter/Harbor9/Rack/R3/Enclosure/U17/EncNum/4/Node/9".into()
        )
    );
    let (mac, soc_coordinate) = soc(&conn, 39);
    assert_eq!(mac, "0a:09:00:04:09:00");
    assert!(
        soc_coordinate.ends_with("/EncNum/4/Node/9/SocBoard/1/Soc/1"),
        "{soc_coordinate}"
    );
    // groupId 40 interleaves node 31's MCs 5-6 (8 books each) with node 39's MCs 1-2 (4 each).
    assert_eq!(mcs_in_ig(&conn, 40, 39, 4), 2);
    assert_eq!(mcs_in_ig(&conn, 40, 31, 8), 2);
    assert_eq!(
        raw_cid(&conn, 31, "coordinate LIKE '%MediaController/6'"),
        (3 << 9) | 13
    );
    assert_eq!(max_book_num(&conn, 40), 23);
    assert_eq!(max_book_num(&conn, 127), 7);
    // An integer memorySize (32G) counts like a string one.
    assert_eq!(
        famodules(
            &conn,
            "module_size_books",
            "node_id = 3 AND coordinate LIKE '%MediaController/2'"
        ),
        16
    );

    // A numeric rack name is stored as an integer (INT affinity), serial numbers as text; a
    // serial number that is a number loses its leading zeros, as in the original.
    let conn = register(tmp.path(), &corpus("tmcf-management-server.json"));
    assert_eq!(rack_and_serial(&conn, 2), (7, "1002".into()));
    let serial: String = value(&conn, "SELECT serialNumber FROM FRDnodes WHERE node_id = 5");
    assert_eq!(serial, "555");

    // Missing attributes get defaults.
    let conn = register(tmp.path(), &corpus("tmcf-minimal.json"));
    let (mac, cert): (String, String) = row(
        &conn,
        "SELECT MAC, tlsPublicCertificate FROM SOCs WHERE node_id = 20",
    );
    assert_eq!(mac, "n/a");
    assert!(cert.contains("You forgot an attribute"), "{cert}");
    assert_eq!(
        famodules(&conn, "rawCID", "IG = 5"),
        (1 << 9) | (9 << 4) | 15
    );
}

#[test]
fn validate_only_without_d() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg(corpus("compact.ini"))
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("valid: 6 nodes, 1536 books of 4194304 bytes (4M), mode LZA"),
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
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("lib.db");
    let cfg = corpus("compact.ini");
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
    assert_eq!(count(&conn, "SELECT count(*) FROM books"), 1536);
    drop(conn);

    // Re-registering over a good database with a bad config keeps the old one.
    let out = run(&[
        "-f",
        "-d",
        db.to_str().unwrap(),
        corpus("bad-physaddr-overlap.ini").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let conn = Connection::open(&db).unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM books"), 1536);
    let names: Vec<String> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(names.is_empty(), "leftover temp files: {names:?}");
}

#[test]
fn json_output_for_ini() {
    let out = run(&["-j", corpus("compact-with-extras.ini").to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout must be only JSON");
    assert_eq!(v["servers"][0]["services"][0]["service"], "librarian");
    assert_eq!(v["servers"][0]["services"][0]["bookSize"], 2 << 20);
    assert_eq!(v["servers"][0]["services"][0]["port"], 9093);
    assert_eq!(v["interleaveGroups"].as_array().unwrap().len(), 12);
    // [global] Datacenter, Rack and Domain; [enclosureN] U positions.
    assert_eq!(v["coordinate"], "/MachineVersion/1/Datacenter/eastbank");
    assert_eq!(v["servers"][0]["ipv4Address"], "torms.cluster.example.com");
    assert_eq!(v["racks"][0]["coordinate"], "Rack/e04");
    let encs = v["racks"][0]["enclosures"].as_array().unwrap();
    assert_eq!(encs.len(), 2);
    assert_eq!(encs[0]["coordinate"], "Enclosure/U11/EncNum/1");
    assert_eq!(encs[1]["coordinate"], "Enclosure/U21/EncNum/2");
    assert_eq!(encs[0]["nodes"].as_array().unwrap().len(), 10);
    assert_eq!(encs[1]["nodes"].as_array().unwrap().len(), 2);
    assert!(encs[0].get("iZoneBoards").is_some());
    assert!(encs[0]["nodes"][0].get("nodeMp").is_some());
    // The summary went to stderr.
    assert!(text(&out.stderr).contains("valid: 12 nodes"));

    // The generated document registers to the same books.
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("extras.json");
    fs::write(&json, &out.stdout).unwrap();
    let conn = register(tmp.path(), &json);
    assert_eq!(count(&conn, "SELECT count(*) FROM books"), 192);
    assert_eq!(
        count(&conn, "SELECT count(DISTINCT intlv_group) FROM books"),
        12
    );

    // Enclosures without a node are left out; the others keep their U positions.
    let out = run(&["-j", corpus("enclosures.ini").to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let encs: Vec<&str> = v["racks"][0]["enclosures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["coordinate"].as_str().unwrap())
        .collect();
    assert_eq!(
        encs,
        [
            "Enclosure/U2/EncNum/1",
            "Enclosure/U14/EncNum/3",
            "Enclosure/U38/EncNum/8"
        ]
    );

    // PHYSADDR: no nodeMp or iZoneBoards.
    let out = run(&["-j", corpus("physaddr.ini").to_str().unwrap()]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let enc = &v["racks"][0]["enclosures"][0];
    assert!(enc.get("iZoneBoards").is_none());
    assert!(enc["nodes"][0].get("nodeMp").is_none());
    assert_eq!(v["coordinate"], "/MachineVersion/1/Datacenter/tidewater");
    assert_eq!(v["servers"][0]["ipv4Address"], "torms.hpc.example.org");

    // -j is ignored for JSON input.
    let out = run(&["-j", corpus("tmcf-servers.json").to_str().unwrap()]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains("-j only applies to INI"));
}

#[test]
fn verbose_prints_phase_times() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("v.db");
    let out = run(&[
        "-v",
        "1",
        "-d",
        db.to_str().unwrap(),
        corpus("physaddr.ini").to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    for p in [
        "time: parse+validate",
        "books",
        "commit",
        "install",
        "total",
        "[node02]",
        "0x0000100000000000 -> ",
        "[node05]",
        "0x0000100100000000 -> 0x0000100103ffffff",
        "[compute9]",
    ] {
        assert!(stdout.contains(p), "verbose output lacks {p:?}:\n{stdout}");
    }
}

/// The database values the original corpus gives, as the original gives them.
#[test]
#[cfg_attr(
    not(original_corpus),
    ignore = "../shared/data/tm-configfiles (the original tm-librarian corpus) is not beside this checkout"
)]
fn original_corpus_db_values() {
    let tmp = tempfile::tempdir().unwrap();
    let conn = register(tmp.path(), &original("ftcbu1.ini"));
    check_ini_node(
        &conn,
        (8, 1, 1, 8, "Node/8", "1:1:8"),
        "52:54:42:08:08:08",
        (7 << 4) | 9,
    );
    assert_eq!(
        famodules(&conn, "count(*)", "IG = 7 AND module_size_books = 32"),
        4
    );
    assert_eq!(book_id(&conn, 7, 127), (7 << 46) | (127 << 33));

    // PHYSADDR: ids are addresses, book_num runs across a node's ranges.
    let conn = register(tmp.path(), &original("SDFlex_good.ini"));
    check_physaddr_ig(&conn, 65536, (88, 0xf00100000000), 175);
    assert_eq!(
        book_ids(&conn, 65539),
        (0xf001a0000000, 0xf001a0000000 + 87 * (2 << 20))
    );

    let conn = register(tmp.path(), &original("LATEST.json"));
    assert_eq!(
        place(&conn, 12),
        (
            "A1.AboveFloor".into(),
            2,
            2,
            "/MachineVersion/1/Datacenter/BUK1/Rack/A1.AboveFloor/Enclosure/U8/EncNum/2/Node/2"
                .into()
        )
    );
    let (mac, soc_coordinate) = soc(&conn, 12);
    assert_eq!(mac, "00:00:00:00:02:02");
    assert!(
        soc_coordinate.ends_with("/EncNum/2/Node/2/SocBoard/1/Soc/1"),
        "{soc_coordinate}"
    );
    // groupId 6 holds node 12's MCs (16 books each).
    assert_eq!(mcs_in_ig(&conn, 6, 12, 16), 4);
    assert_eq!(
        raw_cid(&conn, 12, "coordinate LIKE '%MediaController/3'"),
        (1 << 9) | (1 << 4) | 10
    );
    assert_eq!(max_book_num(&conn, 6), 63);

    // A numeric rack name is stored as an integer (INT affinity), serial numbers as text.
    let conn = register(tmp.path(), &original("fame.json"));
    assert_eq!(rack_and_serial(&conn, 2), (1, "22222".into()));
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

/// The line of `b` that holds `pos`, with its newline if it has one.
fn line_at(b: &[u8], pos: usize) -> Range<usize> {
    let start = b[..pos]
        .iter()
        .rposition(|&c| c == b'\n')
        .map_or(0, |i| i + 1);
    let end = b[pos..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |i| pos + i + 1);
    start..end
}

/// Mutated versions of every config of `dir` must give a result or an error, never a panic, and
/// whatever is accepted must also build a database.
fn no_panics_on_mutations_of(dir: &Path) {
    use lfs_topology::Topology;

    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    const SPECIAL: &[u8] = b"[]=:@#; \t\n0123456789xXbBkKmMgGtT-{}\",/.";
    let mut accepted = 0;
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
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
                        b.drain(line_at(&b, pos));
                    }
                    _ => {
                        // Duplicate the line containing pos.
                        let line = line_at(&b, pos);
                        let copy = b[line.clone()].to_vec();
                        b.splice(line.end..line.end, copy);
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

#[test]
fn no_panics_on_mutated_configs() {
    no_panics_on_mutations_of(&corpus_dir());
}

#[test]
#[cfg_attr(
    not(original_corpus),
    ignore = "../shared/data/tm-configfiles (the original tm-librarian corpus) is not beside this checkout"
)]
fn original_corpus_no_panics_on_mutated_configs() {
    no_panics_on_mutations_of(&original_dir());
}
