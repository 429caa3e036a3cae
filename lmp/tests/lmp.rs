//! LMP against a real Librarian: every endpoint, field by field, on a database with known content.

#[path = "../../tests/src/chromium.rs"]
mod chromium;

use lfs_proto::client::Client;
use lfs_proto::Command as Wire;
use lfs_test_support::*;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BOOK: i64 = 8 << 20;
const JSON_V1: &str = "application/json; version=1.0";

struct Lmp {
    child: Child,
    port: u16,
}

impl Drop for Lmp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Lmp {
    fn start(srv: &Server) -> Lmp {
        Self::start_with(srv, &[])
    }

    fn start_with(srv: &Server, extra: &[&str]) -> Lmp {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_lmp"))
            .arg("-d")
            .arg(&srv.db)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(extra)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "lmp did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Lmp { child, port }
    }

    /// The Prometheus text of `/metrics`, which must answer 200 with text.
    fn metrics(&self) -> String {
        let (status, ct, text) = self.get("/metrics", None);
        assert_eq!(status, 200, "{text}");
        assert!(ct.starts_with("text/plain"), "{ct}");
        text
    }

    fn get(&self, path: &str, accept: Option<&str>) -> (u16, String, String) {
        let mut req = ureq::get(&format!("http://127.0.0.1:{}{path}", self.port));
        if let Some(a) = accept {
            req = req.set("Accept", a);
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("GET {path}: {e}"),
        };
        let ct = resp.header("Content-Type").unwrap_or("").to_string();
        (resp.status(), ct, resp.into_string().unwrap())
    }

    fn json(&self, path: &str) -> Value {
        let (status, ct, body) = self.get(path, Some(JSON_V1));
        assert_eq!(status, 200, "{path}: {body}");
        assert!(
            ct.ends_with(";charset=utf-8;version=1.0"),
            "{path}: content type {ct}"
        );
        serde_json::from_str(&body).unwrap()
    }
}

/// `text` holds every one of `lines` (whole lines or parts of lines).
fn assert_lines(text: &str, lines: &[&str]) {
    for line in lines {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
}

/// A Librarian of two nodes of 8 books each, with [`populate`]'s files, and an LMP on it.
fn populated() -> (Server, Lmp) {
    let srv =
        Server::start("[global]\nnode_count = 2\nbook_size_bytes = 8M\nnvm_size_per_node = 8B\n");
    populate(&srv);
    let lmp = Lmp::start(&srv);
    (srv, lmp)
}

/// Two nodes: node 1 holds `/a` (3 books, open), node 2 holds `/b` (1 book); one zombie book.
fn populate(srv: &Server) {
    let load = json!({"status": 1, "cpu_percent": 30, "rootfs_percent": 5,
        "network_in": 100, "network_out": 200, "mem_percent": 40});
    let (_n1, _a) = node_with_file(srv, 1, load, "/a", 3);
    let load = json!({"status": 1, "cpu_percent": 10, "rootfs_percent": 5,
        "network_in": 0, "network_out": 0, "mem_percent": 20});
    let (mut n2, b) = node_with_file(srv, 2, load, "/b", 2);
    n2.call(
        Wire::CloseShelf,
        json!({"id": b["id"], "open_handle": b["open_handle"]}),
    )
    .unwrap();
    // Shrink without zeroing: one orphan zombie book.
    n2.call(
        Wire::ResizeShelf,
        json!({"path": "/b", "id": b["id"], "size_bytes": BOOK, "zero_enabled": false}),
    )
    .unwrap();
}

/// Node `node_id` reports `load` (its SOC status) and creates `path`, left open, with the
/// LocalNode policy and `books` books; returns its client and the created shelf.
fn node_with_file(
    srv: &Server,
    node_id: i64,
    load: Value,
    path: &str,
    books: i64,
) -> (Client, Value) {
    let mut c = srv.client(node_id);
    c.call(Wire::UpdateNodeSocStatus, load).unwrap();
    let shelf = create(&mut c, path);
    c.call(
        Wire::SetXattr,
        json!({"path": path, "xattr": "user.LFS.AllocationPolicy", "value": "LocalNode"}),
    )
    .unwrap();
    resize(&mut c, path, shelf["id"].as_i64().unwrap(), books * BOOK).unwrap();
    (c, shelf)
}

#[test]
fn every_view_reports_the_database() {
    let (_srv, lmp) = populated();

    let g = lmp.json("/lmp/global/");
    assert_eq!(
        g["memory"],
        json!({"total": 16 * BOOK, "available": 11 * BOOK, "allocated": 4 * BOOK, "notready": BOOK, "offline": 0})
    );
    assert_eq!(g["socs"]["total"], 2);
    assert_eq!(g["socs"]["active"], 2);
    assert_eq!(g["socs"]["offline"], 0);
    assert_eq!(g["socs"]["indeterminate"], 0);
    assert_eq!(g["socs"]["cpu_percent"], 20.0);
    assert_eq!(g["pools"], json!({"total": 8, "active": 0, "offline": 8}));
    assert_eq!(g["active"], json!({"shelves": 1, "books": 3}));

    let n = lmp.json("/lmp/nodes/");
    let nodes = n["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0]["node_id"], 1);
    assert_eq!(nodes[0]["coordinate"], "Node/1");
    assert_eq!(
        (
            nodes[0]["rack_num"].clone(),
            nodes[0]["enc_num"].clone(),
            nodes[0]["node_num"].clone()
        ),
        (json!(1), json!(1), json!(1))
    );
    assert_eq!(nodes[0]["soc"]["macAddress"], "52:54:42:01:01:01");
    assert_eq!(nodes[0]["soc"]["cpu_percent"], 30);
    assert_eq!(nodes[0]["soc"]["mem_percent"], 40);
    assert_eq!(nodes[0]["soc"]["network_out"], 200);
    assert_eq!(nodes[1]["mediaControllers"].as_array().unwrap().len(), 4);
    assert_eq!(nodes[1]["mediaControllers"][0]["memorySize"], 2 * BOOK);

    let igs = lmp.json("/lmp/interleaveGroups/");
    assert_eq!(igs["interleaveGroups"][1]["groupId"], 1);
    assert_eq!(igs["interleaveGroups"][1]["baseAddress"], 1i64 << 46);
    assert_eq!(igs["interleaveGroups"][1]["size"], 8 * BOOK);
    assert_eq!(
        igs["interleaveGroups"][1]["mediaControllers"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    let dir = lmp.json("/lmp/shelf/");
    assert_eq!(
        names(&dir["entries"]),
        ["garbage", ".", "lost+found", "a", "b"]
    );
    assert_eq!(dir["entries"][3]["policy"], "LocalNode");
    assert_eq!(dir["entries"][1]["policy"], "unknown");
    assert_eq!(dir["mode"], "0777");

    let a = lmp.json("/lmp/shelf/a");
    assert_eq!(a["size"], 3 * BOOK);
    assert_eq!(a["booksize"], BOOK);
    assert_eq!(a["active"], json!(["SocBoard/1/Soc/1"]));
    assert_eq!(a["books"], json!([0, 1i64 << 33, 2i64 << 33]));
    assert_eq!(lmp.get("/lmp/shelf/zz", Some(JSON_V1)).0, 404);

    let books = lmp.json("/lmp/books/");
    assert_eq!(books["book_size"], BOOK);
    let all = books["books"].as_array().unwrap();
    assert_eq!(all.len(), 16);
    assert_eq!(
        all[0],
        json!({"lza": 0, "state": "allocated", "ig": 0, "offset": BOOK, "shelf": "a"})
    );
    assert_eq!(
        all[8],
        json!({"lza": 1i64 << 46, "state": "allocated", "ig": 1, "offset": BOOK, "shelf": "b"})
    );
    assert_eq!(
        all[9],
        json!({"lza": (1i64 << 46) | (1 << 33), "state": "notready", "ig": 1})
    );
    assert_eq!(all[15]["state"], "available");
    let g1 = lmp.json("/lmp/books/1");
    assert_eq!(g1["books"].as_array().unwrap().len(), 8);
    assert!(g1["books"][0].get("ig").is_none());
    assert_eq!(lmp.get("/lmp/books/9", Some(JSON_V1)).0, 404);
    assert_eq!(lmp.get("/lmp/books/x", Some(JSON_V1)).0, 404);

    assert_eq!(
        lmp.json("/lmp/active/MachineVersion/1/Datacenter/x")["active"],
        json!({"shelves": 1, "books": 3})
    );
    // As in the original, a Soc coordinate is matched with a leading '/', which INI databases' relative
    // SoC coordinates never have (JSON topologies are checked below).
    assert_eq!(
        lmp.json("/lmp/active/SocBoard/1/Soc/1")["active"],
        json!({"shelves": 0, "books": 0})
    );
    let (status, _, body) = lmp.get("/lmp/active/Rack/1", Some(JSON_V1));
    assert_eq!(status, 404);
    assert!(body.contains("Bad coordinate"), "{body}");
    // INI databases have relative MC coordinates: nothing matches an absolute one...
    assert_eq!(
        lmp.json("/lmp/allocated/MachineVersion/1")["memory"]["total"],
        0
    );
    assert_eq!(
        lmp.json("/lmp/allocated/MemoryBoard")["memory"],
        json!({"total": 0, "allocated": 0, "available": 0, "notready": 0, "offline": 0})
    );

    assert_eq!(lmp.json("/fab/")["fabric"]["percentage"], 7);
}

#[test]
fn allocated_follows_absolute_coordinates_of_json_topologies() {
    // Old-style TMCF with absolute, lower-case coordinates: nodes 1, 2 and 5 of enclosure 1, 128
    // books of 8M each.
    let json_cfg = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../topology/tests/data/topology/tmcf-management-server.json"
    );
    let mut srv = Server::start(FOUR_NODES);
    srv.kill();
    run_ok(
        "book-register",
        Command::new(bin("book-register"))
            .args(["-f", "-d"])
            .arg(&srv.db)
            .arg(json_cfg),
    );
    srv.launch();
    let mut c = srv.client(1);
    let s = create(&mut c, "/x");
    c.call(
        Wire::SetXattr,
        json!({"path": "/x", "xattr": "user.LFS.AllocationPolicy", "value": "LocalNode"}),
    )
    .unwrap();
    resize(&mut c, "/x", s["id"].as_i64().unwrap(), 2 * BOOK).unwrap();
    let lmp = Lmp::start(&srv);
    let node1 = "MachineVersion/1/Datacenter/hq3/Frame/B2.lab_floor/Rack/7/Enclosure/1/Node/1";
    let m = lmp.json(&format!("/lmp/allocated/{node1}"))["memory"].clone();
    assert_eq!(m["allocated"], 2 * BOOK);
    assert_eq!(m["total"], 128 * BOOK);
    assert_eq!(m["available"], 126 * BOOK);
    let node5 = node1.replace("Node/1", "Node/5");
    let m = lmp.json(&format!("/lmp/allocated/{node5}"))["memory"].clone();
    assert_eq!(m["allocated"], 0);
    assert_eq!(m["total"], 128 * BOOK);
    let dc = lmp.json("/lmp/allocated/MachineVersion/1/Datacenter/hq3")["memory"].clone();
    assert_eq!(dc["total"], 384 * BOOK);
    assert_eq!(dc["allocated"], 2 * BOOK);
    let soc1 = format!("{node1}/soc_board/1/soc/1");
    assert_eq!(
        lmp.json(&format!("/lmp/active/{soc1}"))["active"],
        json!({"shelves": 1, "books": 2})
    );
    let soc2 = soc1.replace("Node/1", "Node/2");
    assert_eq!(
        lmp.json(&format!("/lmp/active/{soc2}"))["active"],
        json!({"shelves": 0, "books": 0})
    );
}

#[test]
fn versioning_errors_and_html() {
    let srv = Server::start(FOUR_NODES);
    let lmp = Lmp::start(&srv);
    let (status, _, body) = lmp.get("/lmp/global/", Some("application/json"));
    assert_eq!(
        (status, body.as_str()),
        (418, r#"{"error":"No version sent"}"#)
    );
    let (status, _, body) = lmp.get("/lmp/global/", Some("application/json; version=2.0"));
    assert_eq!(status, 418);
    assert!(body.contains("Bad version"), "{body}");
    // The dashboard's odd header works.
    let (status, _, _) = lmp.get(
        "/lmp/global/",
        Some("Content-Type: application/json; charset=utf-8; version=1.0"),
    );
    assert_eq!(status, 200);
    let (status, _, body) = lmp.get("/lmp/", Some(JSON_V1));
    assert_eq!(
        (status, body.as_str()),
        (404, r#"{"error":"Root view not implemented"}"#)
    );
    for path in [
        "/lmp/",
        "/lmp/global/",
        "/lmp/nodes/",
        "/lmp/interleaveGroups/",
        "/lmp/shelf/",
        "/lmp/shelf/lost+found",
        "/lmp/books/0",
        "/",
    ] {
        let (status, ct, body) = lmp.get(path, Some("text/html,*/*"));
        assert_eq!(status, 200, "{path}: {body}");
        assert!(ct.starts_with("text/html"), "{path}: {ct}");
        assert!(body.contains("</html>"), "{path}");
    }
    let (status, _, body) = lmp.get("/no/such/thing", Some(JSON_V1));
    assert_eq!(status, 404);
    assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string());

    assert_lines(
        &lmp.metrics(),
        &[
            "lfs_books{state=\"free\"} 256",
            "# TYPE lfs_node_up gauge",
            "lfs_group_books{ig=\"3\",state=\"free\"} 64",
        ],
    );

    let d: Value = serde_json::from_str(&lmp.get("/dashboard.json", None).2).unwrap();
    assert_eq!(d["books"]["total"], 256);
    assert_eq!(d["nodes"].as_array().unwrap().len(), 4);
}

#[test]
fn metrics_include_the_librarians_request_counts() {
    let mport = free_port();
    let srv = Server::start_with(FOUR_NODES, &["--metrics-port", &mport.to_string()]);
    let mut c = srv.client(1);
    for _ in 0..3 {
        c.call(Wire::GetFsStats, json!({})).unwrap();
    }
    let _ = c.call(Wire::GetShelf, json!({"path": "/none"}));
    let url = format!("http://127.0.0.1:{mport}/metrics");
    let lmp = Lmp::start_with(&srv, &["--librarian-metrics", &url]);
    assert_lines(
        &lmp.metrics(),
        &[
            "lfs_librarian_up 1",
            "lfs_librarian_requests_total{command=\"get_fs_stats\"} 3",
            "lfs_librarian_errors_total{command=\"get_shelf\"} 1",
            "lfs_librarian_request_seconds_bucket{command=\"get_shelf\",le=\"+Inf\"} 1",
        ],
    );
    // A Librarian without metrics is reported as such, not as an error of LMP.
    let lmp2 = Lmp::start_with(&srv, &["--librarian-metrics", "http://127.0.0.1:1/metrics"]);
    let metrics = lmp2.metrics();
    assert_lines(
        &metrics,
        &["lfs_librarian_up 0", "lfs_books{state=\"free\"} 256"],
    );
}

#[test]
fn a_missing_database_is_an_error_not_a_crash() {
    let out = Command::new(env!("CARGO_BIN_EXE_lmp"))
        .args(["-d", "/nonexistent/librarian.db", "--port", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));

    let srv = Server::start(FOUR_NODES);
    let lmp = Lmp::start(&srv);
    std::fs::rename(&srv.db, srv.dir.join("moved.db")).unwrap();
    // Pooled connections keep reading the open file; a fresh one reports the loss.
    let (status, _, body) = lmp.get("/lmp/global/", Some(JSON_V1));
    assert!(status == 200 || status == 503, "{status} {body}");
    assert!(serde_json::from_str::<Value>(&body).is_ok());
}

/// A database another program holds locked (an fsck repair, a book-register --force) is a 503
/// with the reason, after the 2 s busy wait, and the LMP answers again once it is free.
#[test]
fn a_locked_database_is_a_503_then_recovers() {
    let mut srv = Server::start(FOUR_NODES);
    srv.stop();
    // Taken before the LMP opens the database (WAL readers that are open keep others from it).
    let holder = rusqlite::Connection::open(&srv.db).unwrap();
    holder
        .execute_batch("PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE; UPDATE books SET allocated = allocated;")
        .unwrap();
    let lmp = Lmp::start(&srv);
    let (status, _, body) = lmp.get("/lmp/global/", Some(JSON_V1));
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("locked"), "{body}");
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    let v = lmp.json("/lmp/global/");
    assert!(v.is_object(), "{v}");
}

/// Loads the dashboard in headless Chromium against a live Librarian and checks that the DOM, after
/// the page's own script fetched the data, shows the real figures. Saves a screenshot as an artifact.
#[test]
fn dashboard_shows_live_numbers_in_chromium() {
    let (_srv, lmp) = populated();
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}/", lmp.port);
    let run = |extra: &[&str]| {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        chromium::load(&url, profile.path(), "1200,1300", &extra)
    };
    let dom = run(&["--dump-dom"]);
    assert!(
        dom.contains(r#"data-loaded="yes""#),
        "the dashboard script did not load its data:\n{dom}"
    );
    for (id, value) in [
        ("books-total", "16"),
        ("books-free", "11"),
        ("books-inuse", "4"),
        ("books-zombie", "1"),
    ] {
        assert!(
            dom.contains(&format!(r#"id="{id}">{value}<"#)),
            "{id} should show {value}:\n{dom}"
        );
    }
    assert!(dom.contains("node01") && dom.contains("node02"), "{dom}");
    assert!(
        dom.contains("<td>a</td>") && dom.contains("<td>b</td>"),
        "shelves missing:\n{dom}"
    );

    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("lmp-dashboard.png");
    let _ = std::fs::remove_file(&shot);
    run(&[&format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).expect("chromium wrote no screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot too small"
    );
    eprintln!("dashboard screenshot: {}", shot.display());
}
