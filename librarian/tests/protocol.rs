//! The wire protocol and every command, against a real `librarian` process on a real socket.

use lfs_proto::client::ClientError;
use lfs_proto::Command;
use lfs_test_support::*;
use serde_json::{json, Value};
use std::io::{Read, Write};

const BOOK: i64 = 8 << 20;

/// A raw connection that keeps what it has read beyond one reply.
struct Raw {
    stream: std::net::TcpStream,
    scanner: lfs_proto::frame::FrameScanner,
}

impl Raw {
    fn new(srv: &Server) -> Raw {
        Raw {
            stream: srv.raw(),
            scanner: lfs_proto::frame::FrameScanner::new(),
        }
    }

    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(b)
    }

    fn read_to_end(&mut self, v: &mut Vec<u8>) -> std::io::Result<usize> {
        self.stream.read_to_end(v)
    }
}

fn read_object(s: &mut Raw) -> Value {
    let mut buf = [0u8; 65536];
    loop {
        if let Some(lfs_proto::frame::Frame::Object(b)) = s.scanner.next_frame() {
            return serde_json::from_slice(&b).unwrap();
        }
        let n = s.stream.read(&mut buf).expect("reply");
        assert!(n > 0, "server closed the connection");
        s.scanner.extend(&buf[..n]);
    }
}

fn request(cmd: &str, seq: i64, extra: Value) -> Vec<u8> {
    let mut v = json!({"command": cmd, "context": {"node_id": 1, "seq": seq, "pid": 1}});
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn shelf_life_cycle_shapes() {
    let srv = Server::start(FOUR_NODES);
    let mut c = srv.client(1);
    let stats = c.call(Command::GetFsStats, json!({})).unwrap();
    assert_eq!(stats["schema_version"], "LIBRARIAN 0.997");
    assert_eq!(stats["book_size_bytes"], BOOK);
    assert_eq!(stats["books_total"], 256);
    assert_eq!(stats["nodes_total"], 4);
    assert_eq!(stats["books_used"], 0);
    assert_eq!(stats["BIImode"], 0);
    assert_eq!(stats["books_per_IG"]["3"], json!([64, -1]));
    assert_eq!(
        c.call(Command::Version, json!({})).unwrap(),
        "LIBRARIAN 0.997"
    );

    let s = create(&mut c, "/f");
    let keys: Vec<&str> = s.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    // A shelf is its row (every column of the schema) with its books and its open handle.
    for k in lfs_db::SHELF_COLUMNS.iter().chain(&["bos", "open_handle"]) {
        assert!(keys.contains(k), "shelf lacks {k}: {s}");
    }
    assert_eq!(keys.len(), 12);
    assert!(s["open_handle"].is_i64());
    assert_eq!(
        (s["name"].clone(), s["parent_id"].clone()),
        (json!("f"), json!(2))
    );
    let id = s["id"].as_i64().unwrap();

    // create of an existing path opens it (POSIX create semantics).
    let again = create(&mut c, "f");
    assert_eq!(again["id"], id);
    assert_ne!(again["open_handle"], s["open_handle"]);

    assert_eq!(
        resize(&mut c, "/f", id, 3 * BOOK - 5).unwrap(),
        json!({"z_shelf_path": null})
    );
    let books = c
        .call(Command::ListShelfBooks, json!({"path": "/f"}))
        .unwrap();
    let books = books.as_array().unwrap();
    assert_eq!(books.len(), 3);
    for b in books {
        assert_eq!(b.as_object().unwrap().len(), 5);
        assert_eq!(b["allocated"], 1);
        let (ig, num) = (
            b["intlv_group"].as_i64().unwrap(),
            b["book_num"].as_i64().unwrap(),
        );
        assert_eq!(b["id"].as_i64().unwrap(), (ig << 46) | (num << 33));
    }
    let got = c.call(Command::GetShelf, json!({"path": "//f/"})).unwrap();
    assert_eq!(
        (got["size_bytes"].as_i64(), got["book_count"].as_i64()),
        (Some(3 * BOOK - 5), Some(3))
    );
    assert!(got["open_handle"].is_null());
    assert_eq!(
        c.call(Command::GetFsStats, json!({})).unwrap()["books_used"],
        3
    );

    let opens = c.call(Command::ListOpenShelves, json!({})).unwrap();
    assert_eq!(opens.as_array().unwrap().len(), 2);
    assert_eq!(opens[0]["shelf_id"], id);
    assert_eq!(opens[0]["node_id"], 1);

    let closed = c
        .call(
            Command::CloseShelf,
            json!({"id": id, "open_handle": s["open_handle"]}),
        )
        .unwrap();
    assert_eq!(closed["name"], 0);
    assert_eq!(closed["id"], id);
    // Closing an unknown handle never fails.
    c.call(Command::CloseShelf, json!({"id": id, "open_handle": 9999}))
        .unwrap();

    let path = c
        .call(Command::GetShelfPath, json!({"name": "f", "parent_id": 2}))
        .unwrap();
    assert_eq!(path, "/f");
    assert_eq!(
        c.call(Command::GetShelfPath, json!({"name": ".", "parent_id": 2}))
            .unwrap(),
        "/."
    );

    // Still open once: destroy refuses with EBUSY (the original said ESTALE).
    let msg = expect_err(
        c.call(Command::DestroyShelf, json!({"path": "/f"})),
        libc::EBUSY,
    );
    assert!(msg.contains("active opens"), "{msg}");
    c.call(
        Command::CloseShelf,
        json!({"id": id, "open_handle": again["open_handle"]}),
    )
    .unwrap();

    // Shrink with zeroing: the books go to a root-level zeroing shelf.
    let z = resize(&mut c, "/f", id, BOOK).unwrap();
    let zpath = z["z_shelf_path"].as_str().unwrap().to_string();
    assert!(zpath.starts_with("/.lfs_pending_zero_f_2_"), "{zpath}");
    assert!(zpath.ends_with("_1_1_1"), "{zpath}");
    let zs = c.call(Command::GetShelf, json!({"path": zpath})).unwrap();
    assert_eq!(
        (zs["book_count"].as_i64(), zs["link_count"].as_i64()),
        (Some(2), Some(0))
    );
    let zb = c
        .call(Command::ListShelfBooks, json!({"path": zpath}))
        .unwrap();
    assert!(zb.as_array().unwrap().iter().all(|b| b["allocated"] == 2));
    // Truncating the zeroing shelf to 0 frees its books; then it can be destroyed.
    resize(&mut c, &zpath, zs["id"].as_i64().unwrap(), 0).unwrap();
    c.call(Command::DestroyShelf, json!({"path": zpath}))
        .unwrap();
    assert_eq!(
        c.call(Command::GetFsStats, json!({})).unwrap()["books_used"],
        1
    );

    // Unlink protocol: rename to the pending-zero prefix zombifies, truncate frees, destroy.
    let renamed = c
        .call(
            Command::RenameShelf,
            json!({"path": "/f", "id": id, "newpath": format!(".lfs_pending_zero_{id}")}),
        )
        .unwrap();
    assert_eq!(renamed["name"], format!(".lfs_pending_zero_{id}"));
    let zb = c
        .call(
            Command::ListShelfBooks,
            json!({"path": format!("/.lfs_pending_zero_{id}")}),
        )
        .unwrap();
    assert_eq!(zb[0]["allocated"], 2);
    resize(&mut c, &format!("/.lfs_pending_zero_{id}"), id, 0).unwrap();
    let gone = c
        .call(
            Command::DestroyShelf,
            json!({"path": format!("/.lfs_pending_zero_{id}")}),
        )
        .unwrap();
    assert_eq!(gone["id"], id);
    assert_eq!(
        c.call(Command::GetFsStats, json!({})).unwrap()["books_used"],
        0
    );
    expect_err(
        c.call(Command::GetShelf, json!({"path": "/f"})),
        libc::ENOENT,
    );
}

#[test]
fn directories_symlinks_and_link_counts() {
    let srv = Server::start(FOUR_NODES);
    let mut c = srv.client(2);
    let d = c
        .call(Command::Mkdir, json!({"path": "/a", "mode": 0}))
        .unwrap();
    assert_eq!(d["mode"], 0o040777, "mode 0 makes a directory");
    assert_eq!(d["link_count"], 2);
    c.call(Command::Mkdir, json!({"path": "/b", "mode": 0o040755}))
        .unwrap();
    c.call(Command::Mkdir, json!({"path": "/a/c", "mode": 0o040777}))
        .unwrap();
    expect_errs(
        &mut c,
        &[
            (
                Command::Mkdir,
                json!({"path": "/a", "mode": 0o040777}),
                libc::EEXIST,
            ),
            (
                Command::Mkdir,
                json!({"path": "/x/y", "mode": 0o040777}),
                libc::ENOENT,
            ),
        ],
    );
    let links = |c: &mut lfs_proto::client::Client, p: &str| {
        c.call(Command::GetShelf, json!({"path": p})).unwrap()["link_count"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(links(&mut c, "/"), 5);
    assert_eq!(links(&mut c, "/a"), 3);

    // Same-parent rename keeps the parent's count (the original added one).
    c.call(
        Command::RenameShelf,
        json!({"path": "/a/c", "id": 0, "newpath": "/a/d"}),
    )
    .unwrap();
    assert_eq!(links(&mut c, "/a"), 3);
    c.call(
        Command::RenameShelf,
        json!({"path": "/a/d", "id": 0, "newpath": "/b/d"}),
    )
    .unwrap();
    assert_eq!((links(&mut c, "/a"), links(&mut c, "/b")), (2, 3));
    expect_err(
        c.call(
            Command::RenameShelf,
            json!({"path": "/b", "id": 0, "newpath": "/b/d/b"}),
        ),
        libc::EINVAL,
    );
    create(&mut c, "/b/file");
    expect_errs(
        &mut c,
        &[
            (
                Command::RenameShelf,
                json!({"path": "/b/d", "id": 0, "newpath": "/b/file"}),
                libc::EEXIST,
            ),
            (
                Command::GetShelf,
                json!({"path": "/b/file/x"}),
                libc::ENOTDIR,
            ),
            (
                Command::CreateShelf,
                json!({"path": "/b/file/x", "mode": 0}),
                libc::ENOTDIR,
            ),
        ],
    );

    let listing = c.call(Command::ListShelves, json!({"path": "/b"})).unwrap();
    assert_eq!(names(&listing), [".", "..", "d", "file"]);
    let root = c.call(Command::ListShelves, json!({"path": "/"})).unwrap();
    assert_eq!(names(&root), [".", "..", "lost+found", "a", "b"]);

    expect_errs(
        &mut c,
        &[
            (Command::Rmdir, json!({"path": "/b"}), libc::ENOTEMPTY),
            (Command::Rmdir, json!({"path": "/b/file"}), libc::ENOTDIR),
            (Command::Rmdir, json!({"path": "/lost+found"}), libc::EPERM),
            (Command::Rmdir, json!({"path": "/nope"}), libc::ENOENT),
            (Command::DestroyShelf, json!({"path": "/b/d"}), libc::EISDIR),
        ],
    );
    c.call(Command::Rmdir, json!({"path": "/b/d"})).unwrap();
    assert_eq!(links(&mut c, "/b"), 2);

    let l = c
        .call(
            Command::Symlink,
            json!({"path": "/ln", "target": "/b/file"}),
        )
        .unwrap();
    assert_eq!(l["mode"], 0o120777);
    assert_eq!(
        c.call(Command::Readlink, json!({"path": "/ln"})).unwrap(),
        "/b/file"
    );
    expect_errs(
        &mut c,
        &[
            (
                Command::Symlink,
                json!({"path": "/ln", "target": "x"}),
                libc::EEXIST,
            ),
            (Command::Readlink, json!({"path": "/a"}), libc::EINVAL),
            (Command::Readlink, json!({"path": "/zz"}), libc::ENOENT),
        ],
    );

    c.call(
        Command::SetAmTime,
        json!({"path": "/a", "atime": 5, "mtime": 1234}),
    )
    .unwrap();
    assert_eq!(
        c.call(Command::GetShelf, json!({"path": "/a"})).unwrap()["mtime"],
        1234
    );
    let m = c
        .call(Command::Chmod, json!({"path": "/b/file", "mode": 0o600}))
        .unwrap();
    assert_eq!(m["mode"], 0o100600);
    assert_eq!(
        c.call(Command::GetShelfZaddr, json!({})).unwrap(),
        Value::Null
    );
}

#[test]
fn xattrs_and_policies() {
    let srv =
        Server::start("[global]\nnode_count = 20\nbook_size_bytes = 8M\nnvm_size_per_node = 16B\n");
    let mut c = srv.client(15);
    let s = create(&mut c, "/p");
    let id = s["id"].as_i64().unwrap();
    let names = c.call(Command::ListXattrs, json!({"path": "/p"})).unwrap();
    assert_eq!(
        names,
        json!({"value": ["user.LFS.AllocationPolicy", "user.LFS.AllocationPolicyList",
                          "user.LFS.Interleave", "user.LFS.InterleaveRequest",
                          "user.LFS.InterleaveRequestPos"]})
    );
    assert_eq!(
        c.call(Command::ListXattrs, json!({"path": "/"})).unwrap(),
        json!({"value": ["user.LFS.AllocationPolicyList", "user.LFS.Interleave"]})
    );
    let get = |c: &mut lfs_proto::client::Client, x: &str| {
        c.call(Command::GetXattr, json!({"path": "/p", "xattr": x}))
            .unwrap()["value"]
            .clone()
    };
    assert_eq!(get(&mut c, "user.LFS.AllocationPolicy"), "RandomBooks");
    assert_eq!(
        get(&mut c, "user.LFS.AllocationPolicyList"),
        "RandomBooks,LocalNode,LocalEnc,NonLocal_Enc,Nearest,NearestRemote,NearestEnc,NearestRack,LZAascending,LZAdescending,RequestIG"
    );
    assert_eq!(get(&mut c, "user.foo"), Value::Null);
    let set = |c: &mut lfs_proto::client::Client, x: &str, v: &str| {
        c.call(
            Command::SetXattr,
            json!({"path": "/p", "xattr": x, "value": v}),
        )
    };
    assert_eq!(set(&mut c, "user.foo", "bar\u{e9}").unwrap(), Value::Null);
    assert_eq!(get(&mut c, "user.foo"), "bar\u{e9}");
    c.call(
        Command::RemoveXattr,
        json!({"path": "/p", "xattr": "user.foo"}),
    )
    .unwrap();
    assert_eq!(get(&mut c, "user.foo"), Value::Null);
    expect_err(set(&mut c, "user.LFS.Interleave", "x"), libc::ENOTSUP);
    expect_err(set(&mut c, "user.LFS.Bogus", "x"), libc::ENOTSUP);
    expect_err(
        set(&mut c, "user.LFS.AllocationPolicy", "Bogus"),
        libc::EINVAL,
    );
    expect_errs(
        &mut c,
        &[
            (
                Command::SetXattr,
                json!({"path": "/p", "xattr": "user.x", "value": null}),
                libc::EINVAL,
            ),
            (
                Command::RemoveXattr,
                json!({"path": "/p", "xattr": "user.LFS.AllocationPolicy"}),
                libc::EINVAL,
            ),
        ],
    );

    let igs = |c: &mut lfs_proto::client::Client| -> Vec<i64> {
        c.call(Command::ListShelfBooks, json!({"path": "/p"}))
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["intlv_group"].as_i64().unwrap())
            .collect()
    };
    let mut size = 0;
    let mut grow = |c: &mut lfs_proto::client::Client, n: i64| -> Vec<i64> {
        let before = igs(c).len();
        size += n * BOOK;
        resize(c, "/p", id, size).unwrap();
        igs(c)[before..].to_vec()
    };
    // Node 15 is enclosure 2 (nodes 11..20, IGs 10..19), node 5 of it (IG 14).
    set(&mut c, "user.LFS.AllocationPolicy", "LocalNode").unwrap();
    assert_eq!(grow(&mut c, 3), [14, 14, 14]);
    set(&mut c, "user.LFS.AllocationPolicy", "NonLocal_Enc").unwrap();
    assert!(grow(&mut c, 6)
        .iter()
        .all(|&g| (10..20).contains(&g) && g != 14));
    set(&mut c, "user.LFS.AllocationPolicy", "NearestRack").unwrap();
    assert!(grow(&mut c, 6).iter().all(|&g| g < 10));
    set(&mut c, "user.LFS.AllocationPolicy", "LocalEnc").unwrap();
    assert!(grow(&mut c, 6).iter().all(|&g| (10..20).contains(&g)));
    set(&mut c, "user.LFS.AllocationPolicy", "LZAascending").unwrap();
    assert_eq!(grow(&mut c, 2), [0, 0]);
    set(&mut c, "user.LFS.AllocationPolicy", "LZAdescending").unwrap();
    assert_eq!(grow(&mut c, 2), [19, 19]);
    set(&mut c, "user.LFS.AllocationPolicy", "Nearest").unwrap();
    let local_left = 16 - igs(&mut c).iter().filter(|&&g| g == 14).count();
    let near = grow(&mut c, local_left as i64 + 3);
    assert!(
        near[..local_left].iter().all(|&g| g == 14),
        "local books first: {near:?}"
    );
    assert!(near[local_left..]
        .iter()
        .all(|&g| (10..20).contains(&g) && g != 14));
    set(&mut c, "user.LFS.AllocationPolicy", "RequestIG").unwrap();
    set(&mut c, "user.LFS.InterleaveRequest", "\u{2}\u{3}").unwrap();
    assert_eq!(grow(&mut c, 5), [2, 3, 2, 3, 2]);
    assert_eq!(get(&mut c, "user.LFS.InterleaveRequestPos"), "1");
    expect_err(
        set(&mut c, "user.LFS.InterleaveRequest", "\u{63}"),
        libc::EINVAL,
    );
    // Interleave: one character per book, code = group.
    let inter = get(&mut c, "user.LFS.Interleave");
    let all = igs(&mut c);
    assert_eq!(
        inter
            .as_str()
            .unwrap()
            .chars()
            .map(|ch| ch as i64)
            .collect::<Vec<_>>(),
        all
    );

    // RequestIG without a request, on a fresh file.
    let q = create(&mut c, "/q");
    c.call(
        Command::SetXattr,
        json!({"path": "/q", "xattr": "user.LFS.AllocationPolicy", "value": "RequestIG"}),
    )
    .unwrap();
    expect_err(
        resize(&mut c, "/q", q["id"].as_i64().unwrap(), BOOK),
        libc::ERANGE,
    );

    // The default policy applies to new files and survives a restart.
    c.call(
        Command::SetXattr,
        json!({"path": "/", "xattr": "user.LFS.AllocationPolicyDefault", "value": "LZAdescending"}),
    )
    .unwrap();
    expect_err(
        c.call(
            Command::SetXattr,
            json!({"path": "/", "xattr": "user.LFS.AllocationPolicyDefault", "value": "RequestIG"}),
        ),
        libc::EINVAL,
    );
    drop(c);
    let mut srv = srv;
    srv.stop();
    srv.launch();
    let mut c = srv.client(15);
    create(&mut c, "/r");
    for xattr in [
        "user.LFS.AllocationPolicy",
        "user.LFS.AllocationPolicyDefault",
    ] {
        let got = c.call(Command::GetXattr, json!({"path": "/r", "xattr": xattr}));
        assert_eq!(got.unwrap()["value"], "LZAdescending", "{xattr}");
    }
}

#[test]
fn errors_are_meaningful_and_change_nothing() {
    let srv = Server::start(FOUR_NODES);
    let mut c = srv.client(1);
    let id = create(&mut c, "/big")["id"].as_i64().unwrap();
    // The pool has 256 books: 300 cannot be had, and nothing is taken.
    let msg = expect_err(resize(&mut c, "/big", id, 300 * BOOK), libc::ENOSPC);
    assert!(msg.contains("big"), "{msg}");
    assert_eq!(
        c.call(Command::GetFsStats, json!({})).unwrap()["books_used"],
        0
    );
    assert_eq!(
        c.call(Command::GetShelf, json!({"path": "/big"})).unwrap()["size_bytes"],
        0
    );
    // Far more than the pool (2^40 books): the same ENOSPC, and the Librarian keeps serving.
    expect_err(resize(&mut c, "/big", id, 1 << 60), libc::ENOSPC);
    expect_err(resize(&mut c, "/big", id, i64::MAX), libc::ENOSPC);
    resize(&mut c, "/big", id, 256 * BOOK).unwrap();
    let t = create(&mut c, "/t");
    expect_err(
        resize(&mut c, "/t", t["id"].as_i64().unwrap(), 1),
        libc::ENOSPC,
    );
    // Space comes back once released.
    resize(&mut c, "/big", id, 0)
        .map(|z| {
            let zp = z["z_shelf_path"].as_str().unwrap().to_string();
            let zid = c.call(Command::GetShelf, json!({"path": zp})).unwrap()["id"]
                .as_i64()
                .unwrap();
            resize(&mut c, &zp, zid, 0).unwrap();
            c.call(Command::DestroyShelf, json!({"path": zp})).unwrap();
        })
        .unwrap();
    resize(&mut c, "/t", t["id"].as_i64().unwrap(), 1).unwrap();

    expect_err(resize(&mut c, "/t", 999, 0), libc::ENOENT);
    expect_err(
        resize(&mut c, "/t", t["id"].as_i64().unwrap(), -1),
        libc::EINVAL,
    );
    // Shrinking a file another process has open: EMFILE, as the original.
    let mut other = srv.client(2);
    other
        .call(Command::OpenShelf, json!({"path": "/t"}))
        .unwrap();
    expect_err(
        resize(&mut c, "/t", t["id"].as_i64().unwrap(), 0),
        libc::EMFILE,
    );

    expect_err(c.call_named("nosuch", json!({})), libc::ENOSYS);
    let msg = expect_err(c.call(Command::GetShelf, json!({})), libc::EINVAL);
    assert!(msg.contains("'path'"), "{msg}");
    let msg = expect_err(c.call(Command::GetShelf, json!({"path": 5})), libc::EINVAL);
    assert!(msg.contains("string"), "{msg}");
    expect_err(
        c.call(
            Command::ResizeShelf,
            json!({"path": "/t", "id": "x", "size_bytes": 0, "zero_enabled": true}),
        ),
        libc::EINVAL,
    );
    // Numeric strings are accepted where the original int()-converted.
    c.call(
        Command::ResizeShelf,
        json!({"path": "/t", "id": t["id"], "size_bytes": "16777216", "zero_enabled": false}),
    )
    .map(|_| ())
    .unwrap();

    let mut stranger = srv.client(9);
    expect_err(stranger.call(Command::GetFsStats, json!({})), libc::EINVAL);
    let mut bad = srv.client(81);
    expect_err(bad.call(Command::GetFsStats, json!({})), libc::EINVAL);
    // A node id sent as a string works (the original's repl client did this and always failed).
    let mut raw = Raw::new(&srv);
    raw.write_all(br#"{"command":"version","context":{"node_id":"3","seq":7}}"#)
        .unwrap();
    let v = read_object(&mut raw);
    assert_eq!(v["value"], "LIBRARIAN 0.997");
    assert_eq!(v["context"], json!({"node_id": "3", "seq": 7}));
}

#[test]
fn bad_input_gets_errors_and_never_stalls_others() {
    let srv = Server::start(FOUR_NODES);
    let mut healthy = srv.client(1);
    let cases: &[(&[u8], &str)] = &[
        (b"[1,2]", "not a JSON object"),
        (b"42 ", "not a JSON object"),
        (b"garbage", "not a JSON object"),
        (
            b"{\"command\": \"version\", \"context\": {\"node_id\": 1,}}",
            "malformed",
        ),
        (
            b"{\"command\":\"get_shelf\",\"context\":{\"node_id\":1},\"path\":\"\xff\xfe\"}",
            "malformed",
        ),
        (
            b"{\"command\":\"get_shelf\",\"context\":{\"node_id\":1},\"path\":\"\\udc80\"}",
            "malformed",
        ),
        (b"{\"context\":{\"node_id\":1}}", "'command'"),
        (b"{\"command\":7,\"context\":{\"node_id\":1}}", "'command'"),
        (b"{\"command\":\"version\"}", "'context'"),
        (b"{\"command\":\"version\",\"context\":[]}", "'context'"),
        (b"{\"command\":\"version\",\"context\":{}}", "node_id"),
        (
            b"{\"command\":\"version\",\"context\":{\"node_id\":\"x\"}}",
            "node_id",
        ),
        (
            b"{\"command\":\"version\",\"context\":{\"node_id\":null}}",
            "node_id",
        ),
    ];
    for (input, expect) in cases {
        let mut s = Raw::new(&srv);
        s.write_all(input).unwrap();
        let v = read_object(&mut s);
        let msg = v["errmsg"]
            .as_str()
            .unwrap_or_else(|| panic!("no error for {input:?}: {v}"));
        assert!(msg.contains(expect), "{input:?}: {msg}");
        assert!(v["errno"].as_i64().unwrap() > 0, "{v}");
        // The connection is still usable afterwards.
        s.write_all(&request("version", 2, json!({}))).unwrap();
        assert_eq!(
            read_object(&mut s)["value"],
            "LIBRARIAN 0.997",
            "after {input:?}"
        );
        assert_eq!(
            healthy.call(Command::Version, json!({})).unwrap(),
            "LIBRARIAN 0.997"
        );
    }

    // An OOBmsg sent to the server is ignored and does not wedge the connection.
    let mut s = Raw::new(&srv);
    s.write_all(br#"{"OOBmsg":"hi"}"#).unwrap();
    s.write_all(&request("version", 3, json!({}))).unwrap();
    assert_eq!(read_object(&mut s)["value"], "LIBRARIAN 0.997");

    // A half-sent request that never completes does not stall anyone else.
    let mut half = Raw::new(&srv);
    half.write_all(br#"{"command":"version","context":{"node_"#)
        .unwrap();
    assert_eq!(
        healthy.call(Command::Version, json!({})).unwrap(),
        "LIBRARIAN 0.997"
    );
    drop(half);

    // Over 16 MiB: an error, then the connection is closed.
    let mut big = Raw::new(&srv);
    let mut body = br#"{"command":"get_shelf","context":{"node_id":1},"path":""#.to_vec();
    body.resize(body.len() + (17 << 20), b'a');
    let _ = big.write_all(&body);
    let v = read_object(&mut big);
    assert_eq!(v["errno"], libc::EMSGSIZE);
    let mut rest = vec![];
    let _ = big.read_to_end(&mut rest);
    assert!(healthy.call(Command::Version, json!({})).is_ok());

    // Deeply nested JSON is refused, not a stack overflow.
    let mut deep = Raw::new(&srv);
    let mut nested = b"{\"command\":\"version\",\"context\":{\"node_id\":1},\"x\":".to_vec();
    nested.extend(std::iter::repeat_n(b'[', 100_000));
    nested.extend(std::iter::repeat_n(b']', 100_000));
    nested.push(b'}');
    deep.write_all(&nested).unwrap();
    assert!(read_object(&mut deep)["errmsg"].is_string());
    assert_eq!(
        healthy.call(Command::Version, json!({})).unwrap(),
        "LIBRARIAN 0.997"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let srv = Server::start(FOUR_NODES);
    let mut s = Raw::new(&srv);
    let mut all = vec![];
    for i in 0..200 {
        let cmd = if i % 2 == 0 {
            request(
                "create_shelf",
                i,
                json!({"path": format!("/p{i}"), "mode": 0}),
            )
        } else {
            request("get_shelf", i, json!({"path": format!("/p{}", i - 1)}))
        };
        all.extend(cmd);
    }
    s.write_all(&all).unwrap();
    for i in 0..200 {
        let v = read_object(&mut s);
        assert_eq!(v["context"]["seq"], i, "{v}");
        assert_eq!(v["value"]["name"], format!("p{}", i - i % 2));
    }
}

#[test]
fn oob_messages_reach_every_other_client() {
    let srv = Server::start(FOUR_NODES);
    let mut a = srv.client(1);
    let mut b = srv.client(2);
    let mut raw = Raw::new(&srv);
    raw.write_all(&request("version", 1, json!({}))).unwrap();
    read_object(&mut raw);
    b.call(Command::Version, json!({})).unwrap();
    let v = a.call(Command::SendOob, json!({"msg": "hello"})).unwrap();
    assert_eq!(v, json!({"value": 1}));
    assert_eq!(read_object(&mut raw), json!({"OOBmsg": "hello"}));
    b.call(Command::Version, json!({})).unwrap();
    assert_eq!(b.oob, vec![json!("hello")]);
    assert!(a.oob.is_empty());
}

#[test]
fn stale_opens_are_released_on_remount_and_silence() {
    let srv = Server::start_with(FOUR_NODES, &["--open-timeout", "2"]);
    let mut n1 = srv.client(1);
    let mut n2 = srv.client(2);
    let f = create(&mut n1, "/f");
    create(&mut n2, "/g");
    // A reconnect alone keeps the opens.
    drop(n1);
    let mut n1 = srv.client(1);
    expect_err(
        n1.call(Command::DestroyShelf, json!({"path": "/f"})),
        libc::EBUSY,
    );
    // Node 1 mounts again: its old opens go.
    n1.call(Command::UpdateNodeMcStatus, json!({"status": 1}))
        .unwrap();
    n1.call(Command::DestroyShelf, json!({"path": "/f"}))
        .unwrap();
    let _ = f;
    // Node 2 stays silent past the timeout: its opens go too.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let opens = n1.call(Command::ListOpenShelves, json!({})).unwrap();
        if opens.as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "opens never released: {opens}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    n1.call(Command::DestroyShelf, json!({"path": "/g"}))
        .unwrap();
    drop(n2);
}

#[test]
fn zombie_books_are_reclaimed() {
    let srv = Server::start(FOUR_NODES);
    let mut c = srv.client(3);
    let s = create(&mut c, "/z");
    let id = s["id"].as_i64().unwrap();
    resize(&mut c, "/z", id, 5 * BOOK).unwrap();
    c.call(
        Command::CloseShelf,
        json!({"id": id, "open_handle": s["open_handle"]}),
    )
    .unwrap();
    // Destroying a file that still has books (as a client without zeroing does) leaves zombies.
    c.call(Command::DestroyShelf, json!({"path": "/z"}))
        .unwrap();
    assert_eq!(
        c.call(Command::GetFsStats, json!({})).unwrap()["books_used"],
        5
    );
    let z = c.call(Command::KillZombieBooks, json!({})).unwrap();
    let zp = z["z_shelf_path"].as_str().unwrap().to_string();
    assert!(zp.starts_with("/.lfs_pending_zero_zombies_"), "{zp}");
    let zs = c.call(Command::GetShelf, json!({"path": zp})).unwrap();
    assert_eq!(zs["book_count"], 5);
    resize(&mut c, &zp, zs["id"].as_i64().unwrap(), 0).unwrap();
    c.call(Command::DestroyShelf, json!({"path": zp})).unwrap();
    assert_eq!(
        c.call(Command::GetFsStats, json!({})).unwrap()["books_used"],
        0
    );
    assert_eq!(
        c.call(Command::KillZombieBooks, json!({})).unwrap(),
        json!({"z_shelf_path": null})
    );
}

#[test]
fn book_queries() {
    let srv = Server::start(FOUR_NODES);
    let mut c = srv.client(1);
    let all = c.call(Command::GetBookAll, json!({})).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 256);
    let b = c.call(Command::GetBook, json!({"id": 1i64 << 46})).unwrap();
    assert_eq!(
        b,
        json!({"id": 1i64 << 46, "intlv_group": 1, "book_num": 0, "allocated": 0, "attributes": 0})
    );
    assert_eq!(
        c.call(Command::GetBook, json!({"id": 3})).unwrap(),
        Value::Null
    );
    assert_eq!(
        c.call(Command::GetBookIg, json!({"intlv_group": [2, 3]}))
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        128
    );
    assert_eq!(
        c.call(Command::GetBookIg, json!({"intlv_group": 2}))
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        64
    );
    let s = create(&mut c, "/i");
    c.call(
        Command::SetXattr,
        json!({"path": "/i", "xattr": "user.LFS.AllocationPolicy", "value": "LocalNode"}),
    )
    .unwrap();
    resize(&mut c, "/i", s["id"].as_i64().unwrap(), BOOK).unwrap();
    let info = c
        .call(Command::GetBookInfoAll, json!({"intlv_group": 0}))
        .unwrap();
    let owned: Vec<&Value> = info
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| !b["shelf_id"].is_null())
        .collect();
    assert_eq!(owned.len(), 1);
    assert_eq!(owned[0]["name"], "i");
    assert_eq!(owned[0]["seq_num"], 1);
    assert!(matches!(
        c.call(Command::GetBook, json!({})),
        Err(ClientError::Remote {
            errno: libc::EINVAL,
            ..
        })
    ));
}

#[test]
fn physaddr_databases_are_served() {
    let ini = "[global]\nnode_count = 2\nbook_size_bytes = 2M\n\n[node01]\nnode_id = 1\nnvm_size = 4B @ 0x40000000\n\n[node02]\nnode_id = 2\nnvm_size = 4B @ 0x80000000\n";
    let srv = Server::start(ini);
    let mut c = srv.client(2);
    let st = c.call(Command::GetFsStats, json!({})).unwrap();
    assert_eq!(st["BIImode"], 1);
    assert_eq!(
        st["books_per_IG"],
        json!({"0": [4, 0x40000000], "1": [4, 0x80000000i64]})
    );
    let s = create(&mut c, "/p");
    c.call(
        Command::SetXattr,
        json!({"path": "/p", "xattr": "user.LFS.AllocationPolicy", "value": "LocalNode"}),
    )
    .unwrap();
    resize(&mut c, "/p", s["id"].as_i64().unwrap(), 3 << 21).unwrap();
    let books = c
        .call(Command::ListShelfBooks, json!({"path": "/p"}))
        .unwrap();
    let ids: Vec<i64> = books
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [0x80000000i64, 0x80200000, 0x80400000]);
    assert_eq!(books[0]["intlv_group"], 65537);
}

#[test]
fn daemon_mode_detaches_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let db = register(dir.path(), FOUR_NODES);
    let port = free_port();
    let pid_file = dir.path().join("librarian.pid");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_librarian"))
        .arg("--db_file")
        .arg(&db)
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--daemon",
        ])
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("--log-file")
        .arg(dir.path().join("log"))
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the launching process should exit 0 once detached"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let pid: i32 = loop {
        if let Some(p) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            break p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no pid file from the daemon"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut c = lfs_proto::client::Client::connect(("127.0.0.1", port), 1).unwrap();
    assert_eq!(
        c.call(Command::Version, json!({})).unwrap(),
        "LIBRARIAN 0.997"
    );
    // SAFETY: kill(2) with a valid signal touches no memory of ours; pid is the daemon this
    // test started, checked alive just above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // Gone, or a zombie waiting for a parent that may never reap it (pid 1 here may not).
    let running = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
        })
    };
    while running(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not stop on SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn resize_grow_only_and_with_books() {
    let srv = Server::start(FOUR_NODES);
    let mut c = srv.client(1);
    let id = create(&mut c, "/g")["id"].as_i64().unwrap();
    let grow = |c: &mut lfs_proto::client::Client, size: i64| {
        c.call(
            Command::ResizeShelf,
            json!({"path": "/g", "id": id, "size_bytes": size, "zero_enabled": true,
                   "grow_only": true, "with_books": true}),
        )
        .unwrap()
    };
    let r = grow(&mut c, 3 * BOOK);
    assert_eq!(r["size_bytes"], 3 * BOOK);
    assert_eq!(r["book_count"], 3);
    let listed = c
        .call(Command::ListShelfBooks, json!({"path": "/g"}))
        .unwrap();
    assert_eq!(r["books"], listed);
    // Smaller than the current size: nothing changes, and the reply says what the size is.
    let r = grow(&mut c, BOOK);
    assert_eq!(r["size_bytes"], 3 * BOOK);
    assert_eq!(r["books"].as_array().unwrap().len(), 3);
    assert!(r["z_shelf_path"].is_null());
    // Without the new parameters: as before (a shrink), and no book list.
    let r = resize(&mut c, "/g", id, BOOK).unwrap();
    assert_eq!(r.as_object().unwrap().len(), 1, "{r}");
    assert!(r["z_shelf_path"].is_string());
    assert_eq!(
        c.call(Command::GetShelf, json!({"path": "/g"})).unwrap()["book_count"],
        1
    );
    let bad = c.call(
        Command::ResizeShelf,
        json!({"path": "/g", "id": id, "size_bytes": 1, "zero_enabled": true, "grow_only": "yes"}),
    );
    assert!(bad.is_err());
}

/// SIGTERM as soon as the port answers (as `fame down` or a test may send it) is a clean stop,
/// not a kill: the server holds the signal back from its first instruction until it handles it.
///
/// The window it guards is short (from binding the port to starting the runtime); busy threads
/// of the test's own make it wide enough to be hit in a few rounds without the fix.
#[test]
fn sigterm_right_after_start_is_a_clean_stop() {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let mut srv = Server::start(FOUR_NODES);
    for _ in 0..30 {
        srv.stop(); // insists on exit status 0
        srv.launch();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in busy {
        t.join().unwrap();
    }
}

/// Each request here once left a state that `fsck-lfs` had to repair (found by the property test
/// in `consistency.rs` or while reading for it). Now each is refused with an errno and a message
/// that name the rule, and the database stays consistent.
#[test]
fn requests_that_would_leave_the_database_inconsistent_are_refused() {
    let mut srv = Server::start(FOUR_NODES);
    let mut c = srv.client(1);
    c.call(Command::Mkdir, json!({"path": "/d", "mode": 0o755}))
        .unwrap();
    // create_shelf makes files only: a "directory" of link count 1 that its parent does not count,
    // or a symlink with no target.
    for (mode, hint) in [
        (0o40755, "mkdir"),
        (0o120777, "symlink"),
        (0o10644, "regular files"),
        (0o140755, "regular files"),
        (0o170644, "regular files"),
        (-1, "at most 0o177777"),
        (0o1000000, "at most 0o177777"),
    ] {
        let msg = expect_err(
            c.call(Command::CreateShelf, json!({"path": "/x", "mode": mode})),
            libc::EINVAL,
        );
        assert!(
            msg.contains(hint) && msg.contains("mode"),
            "{mode:o}: {msg}"
        );
    }
    expect_err(
        c.call(Command::GetShelf, json!({"path": "/x"})),
        libc::ENOENT,
    );
    // What the FUSE clients send still works: permission bits alone, 0, S_IFREG, and the
    // original's mknod shelves (S_IFBLK).
    for (path, mode, want) in [
        ("/p", 0o644, 0o100644),
        ("/z", 0, 0o100666),
        ("/r", 0o100600, 0o100600),
        ("/blk", 0o60644, 0o60644),
    ] {
        let s = c
            .call(Command::CreateShelf, json!({"path": path, "mode": mode}))
            .unwrap();
        assert_eq!(s["mode"], want, "{path}");
    }
    // Creating over a directory opens nothing: EISDIR, as open(O_CREAT) answers.
    expect_err(
        c.call(Command::CreateShelf, json!({"path": "/d", "mode": 0o644})),
        libc::EISDIR,
    );
    // Only files have books: a directory or symlink that got some would leave them behind.
    let d = c.call(Command::GetShelf, json!({"path": "/d"})).unwrap();
    expect_err(
        resize(&mut c, "/d", d["id"].as_i64().unwrap(), BOOK),
        libc::EISDIR,
    );
    c.call(Command::Symlink, json!({"path": "/l", "target": "/p"}))
        .unwrap();
    let l = c.call(Command::GetShelf, json!({"path": "/l"})).unwrap();
    expect_err(
        resize(&mut c, "/l", l["id"].as_i64().unwrap(), BOOK),
        libc::EINVAL,
    );
    let blk = c.call(Command::GetShelf, json!({"path": "/blk"})).unwrap();
    resize(&mut c, "/blk", blk["id"].as_i64().unwrap(), 2 * BOOK).unwrap();
    // "." and ".." are in every directory already.
    for path in ["/d/.", "/d/..", "/."] {
        for (cmd, extra) in [
            ("mkdir", json!({"mode": 0o755})),
            ("create_shelf", json!({"mode": 0o644})),
            ("symlink", json!({"target": "/p"})),
        ] {
            let mut params = json!({ "path": path });
            params
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let r = c.call_named(cmd, params);
            assert!(
                matches!(&r, Err(ClientError::Remote { errno, .. }) if [libc::EINVAL, libc::EEXIST, libc::EISDIR].contains(errno)),
                "{cmd} {path}: {r:?}"
            );
        }
    }
    expect_err(
        c.call(
            Command::RenameShelf,
            json!({"path": "/p", "newpath": "/d/.."}),
        ),
        libc::EINVAL,
    );
    // A symlink needs a target that can be read back.
    expect_errs(
        &mut c,
        &[
            (
                Command::Symlink,
                json!({"path": "/e", "target": ""}),
                libc::ENOENT,
            ),
            (
                Command::Symlink,
                json!({"path": "/e", "target": "a\u{0}b"}),
                libc::EINVAL,
            ),
        ],
    );
    // A shelf being zeroed keeps its name: elsewhere its zombie books would be books of an
    // ordinary file that are not in use.
    let p = c.call(Command::GetShelf, json!({"path": "/p"})).unwrap();
    let pid = p["id"].as_i64().unwrap();
    resize(&mut c, "/p", pid, 3 * BOOK).unwrap();
    let z = resize(&mut c, "/p", pid, 0).unwrap();
    let zp = z["z_shelf_path"].as_str().unwrap().to_string();
    let msg = expect_err(
        c.call(
            Command::RenameShelf,
            json!({"path": zp, "newpath": "/stolen"}),
        ),
        libc::EBUSY,
    );
    assert!(msg.contains("zeroed"), "{msg}");
    // The names of zeroing shelves carry the node's physloc from the request's context: one
    // with a slash once made a name that no path reaches.
    let q = create(&mut c, "/q");
    resize(&mut c, "/q", q["id"].as_i64().unwrap(), BOOK).unwrap();
    c.call(
        Command::CloseShelf,
        json!({"id": q["id"], "open_handle": q["open_handle"]}),
    )
    .unwrap();
    c.call(Command::DestroyShelf, json!({"path": "/q"}))
        .unwrap();
    c.set_context("physloc", json!("../x/y\u{0}"));
    let z = c.call(Command::KillZombieBooks, json!({})).unwrap();
    let zp = z["z_shelf_path"].as_str().unwrap();
    assert!(!zp[1..].contains('/'), "{zp}");
    assert_eq!(
        c.call(Command::GetShelf, json!({"path": zp})).unwrap()["book_count"],
        1
    );
    // rmdir of a directory some node has open takes the open with it, as the directory goes.
    let e = c
        .call(Command::Mkdir, json!({"path": "/d/e", "mode": 0o755}))
        .unwrap();
    c.call(Command::OpenShelf, json!({"path": "/d/e"})).unwrap();
    c.call(Command::Rmdir, json!({"path": "/d/e"})).unwrap();
    let opens = c.call(Command::ListOpenShelves, json!({})).unwrap();
    let of_e = opens
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["shelf_id"] == e["id"]);
    assert_eq!(of_e.count(), 0, "{opens}");
    drop(c);
    srv.stop();
    let report = lfs_fsck::check_file(&srv.db, false).unwrap();
    let hard: Vec<_> = report
        .findings()
        .filter(|f| {
            !matches!(
                f.problem,
                lfs_fsck::Problem::StaleOpen
                    | lfs_fsck::Problem::PartialUnlink
                    | lfs_fsck::Problem::ZombieBooks
            )
        })
        .collect();
    assert!(hard.is_empty(), "{}", srv.fsck().1);
}

/// The typed requests of `lfs_proto::request` (what the node daemon and `fame` send) against the
/// real server: each is accepted as it serializes, and each reply reads as the type the request
/// names, so client and server agree on both halves of every command the daemon uses.
#[test]
fn typed_requests_are_accepted_and_their_replies_read() {
    use lfs_proto::request::*;
    let srv = Server::start(FOUR_NODES);
    let mut c = srv.client(1);
    let p = |s: &str| s.to_string();
    c.call_typed(&UpdateNodeMcStatus { status: 1 }).unwrap();
    c.call_typed(&UpdateNodeSocStatus::offline()).unwrap();
    let stats = c.call_typed(&GetFsStats {}).unwrap();
    assert_eq!(stats["book_size_bytes"], BOOK);
    let d = c
        .call_typed(&Mkdir {
            mode: 0o40755,
            path: p("/d"),
            ..Default::default()
        })
        .unwrap();
    assert_eq!((d.name.as_str(), d.mode), ("d", 0o40755));
    let f = c
        .call_typed(&CreateShelf {
            path: p("/d/f"),
            mode: 0o100644,
            ..Default::default()
        })
        .unwrap();
    let h = f.open_handle.expect("create opens");
    let opens = c.call_typed(&ListOpenShelves {}).unwrap();
    assert!(opens
        .iter()
        .any(|o| (o.id, o.shelf_id, o.node_id) == (h, f.id, 1)));
    let grown = c
        .call_typed(&ResizeShelf {
            path: p("/d/f"),
            id: f.id as u64,
            size_bytes: BOOK as u64 + 1,
            zero_enabled: true,
            grow_only: true,
            with_books: true,
        })
        .unwrap();
    assert_eq!(grown.size_bytes, Some(BOOK as u64 + 1));
    assert_eq!(grown.books.as_ref().map(Vec::len), Some(2));
    let books = c.call_typed(&ListShelfBooks { path: p("/d/f") }).unwrap();
    assert_eq!(Some(books), grown.books);
    c.call_typed(&CloseShelf {
        id: f.id as u64,
        open_handle: h as u64,
    })
    .unwrap();
    let o = c.call_typed(&OpenShelf { path: p("/d/f") }).unwrap();
    c.call_typed(&CloseShelf {
        id: o.id as u64,
        open_handle: o.open_handle.unwrap() as u64,
    })
    .unwrap();
    let listing = c.call_typed(&ListShelves { path: p("/d") }).unwrap();
    let names: Vec<&str> = listing.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, [".", "..", "f"]);
    c.call_typed(&SetXattr {
        path: p("/d/f"),
        xattr: p("user.a"),
        value: p("1"),
    })
    .unwrap();
    let x = c
        .call_typed(&GetXattr {
            path: p("/d/f"),
            xattr: p("user.a"),
        })
        .unwrap();
    assert_eq!(x.value.as_deref(), Some("1"));
    let names = c.call_typed(&ListXattrs { path: p("/d/f") }).unwrap();
    assert!(names.value.contains(&p("user.a")));
    c.call_typed(&RemoveXattr {
        path: p("/d/f"),
        xattr: p("user.a"),
    })
    .unwrap();
    c.call_typed(&Chmod {
        path: p("/d/f"),
        mode: 0o600,
    })
    .unwrap();
    // Owners (ours): a root-owned shelf is the original's 12 keys; chown adds the owner to the
    // replies, and -1 keeps one of the two.
    let raw = c.call(Command::GetShelf, json!({"path": "/d/f"})).unwrap();
    assert_eq!(raw.as_object().unwrap().len(), 12, "{raw}");
    c.call_typed(&Chown {
        path: p("/d/f"),
        uid: 1000,
        gid: 100,
    })
    .unwrap();
    c.call_typed(&Chown {
        path: p("/d/f"),
        uid: -1,
        gid: 50,
    })
    .unwrap();
    let owned = c.call_typed(&GetShelf { path: p("/d/f") }).unwrap();
    assert_eq!((owned.uid, owned.gid), (1000, 50));
    let bad = c
        .call(Command::Chown, json!({"path": "/d/f", "uid": -5, "gid": 0}))
        .unwrap_err();
    assert!(
        matches!(bad, ClientError::Remote { errno, .. } if errno == libc::EINVAL),
        "{bad:?}"
    );
    let made = c
        .call_typed(&Mkdir {
            mode: 0o40755,
            path: p("/alices"),
            uid: 1000,
            gid: 1000,
        })
        .unwrap();
    assert_eq!((made.uid, made.gid), (1000, 1000));
    c.call_typed(&SetAmTime {
        path: p("/d/f"),
        atime: 0,
        mtime: 0,
    })
    .unwrap();
    c.call_typed(&Symlink {
        target: p("f"),
        path: p("/d/l"),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(c.call_typed(&Readlink { path: p("/d/l") }).unwrap(), "f");
    let shrunk = c
        .call_typed(&ResizeShelf {
            path: p("/d/f"),
            id: f.id as u64,
            size_bytes: 0,
            zero_enabled: true,
            grow_only: false,
            with_books: false,
        })
        .unwrap();
    assert!(shrunk.z_shelf_path.is_some() && shrunk.books.is_none());
    c.call_typed(&RenameShelf {
        path: p("/d/f"),
        id: f.id as u64,
        newpath: p("/d/g"),
    })
    .unwrap();
    c.call_typed(&DestroyShelf { path: p("/d/g") }).unwrap();
    c.call_typed(&DestroyShelf { path: p("/d/l") }).unwrap();
    c.call_typed(&Rmdir { path: p("/d") }).unwrap();
    // The shrink's books are on the shelf this node was told to zero: not orphans.
    let z = c.call_typed(&KillZombieBooks {}).unwrap();
    assert_eq!(z.z_shelf_path, None);
    let e = c.call_typed(&GetShelf { path: p("/d") }).unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Remote {
                errno: libc::ENOENT,
                ..
            }
        ),
        "{e:?}"
    );
}
