//! The file-system logic (`LfsFs::do_*`, `read_data`, `write_data`) driven without a mount: a
//! real Librarian on loopback and a temporary FAM file, the same calls the FUSE adapter makes.
//! Faster to run and to debug than a mount, and it needs neither root nor /dev/fuse. A fake
//! Librarian stands in for the real one where a reply must be one it never sends.

use fuser::{Errno, FileType, INodeNo};
use lfs_node::fam::Fam;
use lfs_node::fs::inodes::ROOT_INO;
use lfs_node::fs::{FsError, LfsFs, Maker};
use lfs_node::geometry::Geometry;
use lfs_node::link::{Identity, Link};
use lfs_node::zeroing::Zeroer;
use lfs_proto::frame::{self, Frame, FrameScanner};
use lfs_proto::request::GetFsStats;
use lfs_test_support::Server;
use serde_json::{json, Value};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

/// Two nodes of 8 books of 8 MiB.
const TOPOLOGY: &str = "[global]\nnode_count = 2\nbook_size_bytes = 8M\nnvm_size_per_node = 8B\n";
const BOOK: u64 = 8 << 20;
/// Root makes what a test makes, unless it says otherwise.
const ROOT: Maker = Maker { uid: 0, gid: 0 };

struct Node {
    fs: LfsFs,
    fam_file: tempfile::NamedTempFile,
    _srv: Server,
}

fn link_to(port: u16) -> Arc<Link> {
    let who = Identity {
        node_id: 1,
        physloc: "1_1_1".into(),
    };
    Arc::new(Link::new("127.0.0.1", port, who, Duration::from_secs(10)))
}

/// The file system of a node over `link`, with a FAM file of the geometry `stats` gives.
fn fs_over(link: Arc<Link>, stats: &Value) -> (LfsFs, tempfile::NamedTempFile) {
    let geo = Arc::new(Geometry::from_fs_stats(stats).unwrap());
    let fam_file = tempfile::NamedTempFile::new().unwrap();
    fam_file.as_file().set_len(geo.fam_bytes_needed).unwrap();
    let fam = Arc::new(Fam::open(fam_file.path(), geo.fam_bytes_needed).unwrap());
    let zeroer = Zeroer::spawn(link.clone(), fam.clone(), geo.clone(), false);
    (LfsFs::new(link, fam, geo, zeroer), fam_file)
}

fn node() -> Node {
    let srv = Server::start(TOPOLOGY);
    let link = link_to(srv.port);
    let stats = link.call(&GetFsStats {}).unwrap();
    let (fs, fam_file) = fs_over(link, &stats);
    Node {
        fs,
        fam_file,
        _srv: srv,
    }
}

/// A Librarian that answers every request on one connection with `value`, whatever was asked.
fn fake_librarian(value: Value) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        let mut scanner = FrameScanner::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = conn.read(&mut buf) {
            scanner.extend(&buf[..n]);
            while let Some(Frame::Object(bytes)) = scanner.next_frame() {
                let req: Value = serde_json::from_slice(&bytes).unwrap();
                let reply = frame::success(&value, &req["context"]);
                if conn.write_all(&reply).is_err() {
                    return;
                }
            }
        }
    });
    port
}

fn name(s: &str) -> &OsStr {
    OsStr::new(s)
}

#[test]
fn names_files_and_data_without_a_mount() {
    let n = node();
    let fs = &n.fs;
    let root = INodeNo(ROOT_INO);
    assert_eq!(
        fs.do_lookup(root, name("nope")).unwrap_err().errno(),
        Errno::ENOENT
    );

    let (dir, _) = fs.do_mkdir(root, name("d"), 0o755, 0o022, ROOT).unwrap();
    assert_eq!(dir.kind, FileType::Directory);
    assert_eq!(dir.perm, 0o755);
    assert_eq!(
        fs.do_mkdir(root, name("d"), 0o755, 0, ROOT)
            .unwrap_err()
            .errno(),
        Errno::EEXIST
    );

    // A file in it, written in its first book and past it (the write grows it by a book).
    let (f, _, fh) = fs
        .do_create(dir.ino, name("f"), 0o666, 0o022, libc::O_RDWR, ROOT)
        .unwrap();
    assert_eq!((f.kind, f.perm, f.size), (FileType::RegularFile, 0o644, 0));
    assert_eq!(fs.write_data(f.ino, fh, 0, b"hello fam").unwrap(), 9);
    assert_eq!(
        fs.write_data(f.ino, fh, BOOK + 100, b"book two").unwrap(),
        8
    );
    assert_eq!(fs.read_data(f.ino, fh, 0, 9).unwrap(), b"hello fam");
    assert_eq!(
        fs.read_data(f.ino, fh, BOOK + 100, 100).unwrap(),
        b"book two"
    );
    // The data is in the FAM file itself: find the first write's bytes there.
    let mut fam = vec![0u8; (2 * 8 * BOOK) as usize];
    n.fam_file.as_file().read_exact_at(&mut fam, 0).unwrap();
    assert!(fam.windows(9).any(|w| w == b"hello fam"));
    fs.release_handle(fh);
    let (again, _) = fs.do_lookup(dir.ino, name("f")).unwrap();
    assert_eq!(again.size, BOOK + 108);

    // O_EXCL of a name that exists, unlink, rmdir of what is then empty.
    assert_eq!(
        fs.do_create(dir.ino, name("f"), 0o666, 0, libc::O_EXCL, ROOT)
            .unwrap_err()
            .errno(),
        Errno::EEXIST
    );
    assert_eq!(fs.do_rmdir("/d").unwrap_err().errno(), Errno::ENOTEMPTY);
    fs.do_unlink(dir.ino, name("f")).unwrap();
    assert_eq!(
        fs.do_lookup(dir.ino, name("f")).unwrap_err().errno(),
        Errno::ENOENT
    );
    assert_eq!(
        fs.do_unlink(root, name("d")).unwrap_err().errno(),
        Errno::EISDIR
    );
    fs.do_rmdir("/d").unwrap();
    assert_eq!(
        fs.do_lookup(root, name("d")).unwrap_err().errno(),
        Errno::ENOENT
    );
}

/// A reply this daemon cannot use (here a shelf without its mode, as a peer of another version
/// might send) is EIO for the caller, with a message that says which request, which file, what
/// was missing and what came, for the one log line the FUSE adapter writes.
#[test]
fn an_unusable_reply_is_eio_that_names_what_was_missing() {
    let port = fake_librarian(json!({"id": 5, "name": "f", "size_bytes": 0}));
    let stats = json!({
        "book_size_bytes": BOOK, "books_total": 16, "BIImode": 0,
        "books_per_IG": {"0": [8, -1], "1": [8, -1]}
    });
    let (fs, _fam) = fs_over(link_to(port), &stats);
    let e = fs.do_lookup(INodeNo(ROOT_INO), name("f")).unwrap_err();
    assert_eq!(e.errno(), Errno::EIO);
    assert!(matches!(e, FsError::BadReply { .. }), "{e:?}");
    let msg = e.to_string();
    for part in [
        "/f",
        "get_shelf",
        "no valid shelf",
        "missing field `mode`",
        r#""id":5"#,
    ] {
        assert!(msg.contains(part), "{part:?} not in {msg:?}");
    }
}

/// Owners (issue 16): what a user makes is theirs, as the Librarian keeps it; in a setgid
/// directory the group is the directory's and a new directory is setgid too; chown changes
/// either or both (-1 keeps one), and root's files carry no owner on the wire.
#[test]
fn owners_are_kept_by_the_librarian() {
    let n = node();
    let fs = &n.fs;
    let root = INodeNo(ROOT_INO);
    let alice = Maker {
        uid: 1000,
        gid: 100,
    };
    let (f, _, fh) = fs
        .do_create(root, name("mine"), 0o644, 0, libc::O_RDWR, alice)
        .unwrap();
    fs.release_handle(fh);
    assert_eq!((f.uid, f.gid), (1000, 100));
    let (d, _) = fs.do_mkdir(root, name("team"), 0o2775, 0, ROOT).unwrap();
    assert_eq!((d.uid, d.gid, d.perm), (0, 0, 0o2775));
    let d = fs
        .do_setattr(d.ino, None, None, None, None, Some(50))
        .unwrap();
    assert_eq!((d.uid, d.gid), (0, 50), "chgrp keeps the owner");
    // In the setgid directory: the directory's group, and setgid subdirectories.
    let (g, _, fh) = fs
        .do_create(d.ino, name("doc"), 0o664, 0, libc::O_RDWR, alice)
        .unwrap();
    fs.release_handle(fh);
    assert_eq!((g.uid, g.gid), (1000, 50));
    let (sub, _) = fs.do_mkdir(d.ino, name("sub"), 0o755, 0, alice).unwrap();
    assert_eq!((sub.uid, sub.gid, sub.perm), (1000, 50, 0o2755));
    // chown to another owner, then back to root: seen again from the Librarian.
    let f = fs
        .do_setattr(f.ino, None, None, None, Some(2000), Some(200))
        .unwrap();
    assert_eq!((f.uid, f.gid), (2000, 200));
    let (again, _) = fs.do_lookup(root, name("mine")).unwrap();
    assert_eq!((again.uid, again.gid), (2000, 200));
    let f = fs
        .do_setattr(f.ino, None, None, None, Some(0), Some(0))
        .unwrap();
    assert_eq!((f.uid, f.gid), (0, 0));
}
