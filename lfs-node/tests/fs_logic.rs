//! The file-system logic (`LfsFs::do_*`, `read_data`, `write_data`) driven without a mount: a
//! real Librarian on loopback and a temporary FAM file, the same calls the FUSE adapter makes.
//! Faster to run and to debug than a mount, and it needs neither root nor /dev/fuse.

use fuser::{Errno, FileType, INodeNo};
use lfs_node::fam::Fam;
use lfs_node::fs::inodes::ROOT_INO;
use lfs_node::fs::LfsFs;
use lfs_node::geometry::Geometry;
use lfs_node::link::{Identity, Link};
use lfs_node::zeroing::Zeroer;
use lfs_proto::Command;
use lfs_test_support::Server;
use std::ffi::OsStr;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

/// Two nodes of 8 books of 8 MiB.
const TOPOLOGY: &str = "[global]\nnode_count = 2\nbook_size_bytes = 8M\nnvm_size_per_node = 8B\n";
const BOOK: u64 = 8 << 20;

struct Node {
    fs: LfsFs,
    fam_file: tempfile::NamedTempFile,
    _srv: Server,
}

fn node() -> Node {
    let srv = Server::start(TOPOLOGY);
    let who = Identity {
        node_id: 1,
        physloc: "1_1_1".into(),
    };
    let link = Arc::new(Link::new(
        "127.0.0.1",
        srv.port,
        who,
        Duration::from_secs(10),
    ));
    let stats = link
        .call(Command::GetFsStats, serde_json::json!({}))
        .unwrap();
    let geo = Arc::new(Geometry::from_fs_stats(&stats).unwrap());
    let fam_file = tempfile::NamedTempFile::new().unwrap();
    fam_file.as_file().set_len(geo.fam_bytes_needed).unwrap();
    let fam = Arc::new(Fam::open(fam_file.path(), geo.fam_bytes_needed).unwrap());
    let zeroer = Zeroer::spawn(link.clone(), fam.clone(), geo.clone(), false);
    Node {
        fs: LfsFs::new(link, fam, geo, zeroer),
        fam_file,
        _srv: srv,
    }
}

fn name(s: &str) -> &OsStr {
    OsStr::new(s)
}

#[test]
fn names_files_and_data_without_a_mount() {
    let n = node();
    let fs = &n.fs;
    let root = INodeNo(ROOT_INO);
    assert_eq!(fs.do_lookup(root, name("nope")).unwrap_err(), Errno::ENOENT);

    let (dir, _) = fs.do_mkdir(root, name("d"), 0o755, 0o022).unwrap();
    assert_eq!(dir.kind, FileType::Directory);
    assert_eq!(dir.perm, 0o755);
    assert_eq!(
        fs.do_mkdir(root, name("d"), 0o755, 0).unwrap_err(),
        Errno::EEXIST
    );

    // A file in it, written in its first book and past it (the write grows it by a book).
    let (f, _, fh) = fs
        .do_create(dir.ino, name("f"), 0o666, 0o022, libc::O_RDWR)
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
        fs.do_create(dir.ino, name("f"), 0o666, 0, libc::O_EXCL)
            .unwrap_err(),
        Errno::EEXIST
    );
    assert_eq!(fs.do_rmdir("/d").unwrap_err(), Errno::ENOTEMPTY);
    fs.do_unlink(dir.ino, name("f")).unwrap();
    assert_eq!(fs.do_lookup(dir.ino, name("f")).unwrap_err(), Errno::ENOENT);
    assert_eq!(fs.do_unlink(root, name("d")).unwrap_err(), Errno::EISDIR);
    fs.do_rmdir("/d").unwrap();
    assert_eq!(fs.do_lookup(root, name("d")).unwrap_err(), Errno::ENOENT);
}
