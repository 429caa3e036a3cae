//! Every file-system operation through real mounts, with the errno a POSIX program expects, the
//! pending-zero protocol, and the daemon's life cycle.

use fame_tests::*;
use lfs_direct::{DirectMap, MapOptions};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const TOTAL_BOOKS: u64 = 64;

fn err(r: std::io::Result<impl std::fmt::Debug>) -> i32 {
    errno(&r.expect_err("expected an error"))
}

fn xattr_get(p: &std::path::Path, name: &str) -> Result<Vec<u8>, i32> {
    let (cp, cn) = (
        std::ffi::CString::new(p.to_str().unwrap()).unwrap(),
        std::ffi::CString::new(name).unwrap(),
    );
    let mut buf = vec![0u8; 65536];
    // SAFETY: cp and cn are NUL-terminated C strings and buf is writable for buf.len() bytes.
    let n = unsafe { libc::getxattr(cp.as_ptr(), cn.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

fn xattr_set(p: &std::path::Path, name: &str, v: &[u8], flags: i32) -> Result<(), i32> {
    let (cp, cn) = (
        std::ffi::CString::new(p.to_str().unwrap()).unwrap(),
        std::ffi::CString::new(name).unwrap(),
    );
    // SAFETY: cp and cn are NUL-terminated C strings; the value pointer and length describe v.
    let r = unsafe { libc::setxattr(cp.as_ptr(), cn.as_ptr(), v.as_ptr().cast(), v.len(), flags) };
    if r != 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap());
    }
    Ok(())
}

fn xattr_list(p: &std::path::Path) -> Vec<String> {
    let cp = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    let mut buf = vec![0u8; 65536];
    // SAFETY: cp is a NUL-terminated C string and buf is writable for buf.len() bytes.
    let n = unsafe { libc::listxattr(cp.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n >= 0);
    buf[..n as usize]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn files_directories_links_and_attributes() {
    let c = Cluster::two(&[]);
    let (a, b) = (c.node(0), c.node(1));

    // create, write, read, getattr
    let mut f = File::create(a.path("f")).unwrap();
    f.write_all(b"hello world").unwrap();
    assert_eq!(fs::read(b.path("f")).unwrap(), b"hello world");
    let m = fs::metadata(b.path("f")).unwrap();
    assert!(m.is_file());
    assert_eq!(m.len(), 11);
    assert_eq!(m.nlink(), 1);

    // truncate: grow (zeros), shrink inside a book, shrink across books, through an open handle
    f.set_len(BOOK + 5).unwrap();
    let d = fs::read(b.path("f")).unwrap();
    assert_eq!(d.len() as u64, BOOK + 5);
    assert!(d[11..].iter().all(|&x| x == 0));
    f.set_len(4).unwrap();
    assert_eq!(fs::read(b.path("f")).unwrap(), b"hell");
    // Another node cannot shrink a file this node has open (LFS keeps the books of open files).
    assert_eq!(
        err(OpenOptions::new()
            .write(true)
            .open(b.path("f"))
            .unwrap()
            .set_len(2)),
        libc::EBUSY
    );
    f.set_len(2).unwrap();
    assert_eq!(fs::read(b.path("f")).unwrap(), b"he");
    // O_TRUNC
    drop(f);
    fs::write(a.path("f"), b"new").unwrap();
    assert_eq!(fs::read(b.path("f")).unwrap(), b"new");

    // fallocate: mode 0 grows; KEEP_SIZE is not supported (books come with the size)
    let f = OpenOptions::new().write(true).open(a.path("f")).unwrap();
    use std::os::fd::AsRawFd;
    assert_eq!(
        // SAFETY: fallocate(2) on an open descriptor of ours; no memory is passed.
        unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, 3 * BOOK as i64) },
        0
    );
    assert_eq!(fs::metadata(b.path("f")).unwrap().len(), 3 * BOOK);
    assert_eq!(
        // SAFETY: as above: fallocate(2) on an open descriptor of ours.
        unsafe { libc::fallocate(f.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, 4 * BOOK as i64) },
        -1
    );
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EOPNOTSUPP)
    );
    drop(f);

    // mkdir, readdir, nlink
    fs::create_dir(a.path("d")).unwrap();
    fs::create_dir(a.path("d/sub")).unwrap();
    fs::write(a.path("d/x"), b"x").unwrap();
    assert_eq!(names(&b.path("d")), ["sub", "x"]);
    assert!(fs::metadata(b.path("d")).unwrap().is_dir());
    assert_eq!(fs::metadata(b.path("d")).unwrap().nlink(), 3);
    assert_eq!(names(&b.mnt), ["d", "f", "lost+found"]);

    // rename: within a directory, across directories, over an existing file, a directory over
    // an empty one
    fs::rename(a.path("d/x"), a.path("d/y")).unwrap();
    fs::rename(b.path("d/y"), b.path("y")).unwrap();
    assert_eq!(fs::read(a.path("y")).unwrap(), b"x");
    fs::write(a.path("target"), pattern(3, 0, 100_000)).unwrap();
    fs::rename(b.path("y"), b.path("target")).unwrap();
    assert_eq!(fs::read(a.path("target")).unwrap(), b"x");
    assert_eq!(err(fs::metadata(a.path("y"))), libc::ENOENT);
    fs::create_dir(a.path("empty")).unwrap();
    fs::rename(a.path("d/sub"), a.path("empty")).unwrap();
    assert!(fs::metadata(b.path("empty")).unwrap().is_dir());
    assert_eq!(names(&b.path("d")), Vec::<String>::new());
    // subtree renames keep working through inodes known under the old path
    fs::write(a.path("d/deep"), b"deep").unwrap();
    fs::rename(a.path("d"), a.path("d2")).unwrap();
    assert_eq!(fs::read(b.path("d2/deep")).unwrap(), b"deep");
    assert_eq!(fs::read(a.path("d2/deep")).unwrap(), b"deep");

    // symlink, readlink
    std::os::unix::fs::symlink("target", a.path("ln")).unwrap();
    assert_eq!(
        fs::read_link(b.path("ln")).unwrap().to_str().unwrap(),
        "target"
    );
    assert_eq!(fs::read(b.path("ln")).unwrap(), b"x");
    assert!(fs::symlink_metadata(b.path("ln"))
        .unwrap()
        .file_type()
        .is_symlink());

    // utimens, chmod
    let t = UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    File::options()
        .write(true)
        .open(a.path("target"))
        .unwrap()
        .set_modified(t)
        .unwrap();
    assert_eq!(
        fs::metadata(b.path("target")).unwrap().modified().unwrap(),
        t
    );
    fs::set_permissions(a.path("target"), fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(
        fs::metadata(b.path("target")).unwrap().mode() & 0o7777,
        0o640
    );
    let now = SystemTime::now();
    File::options()
        .write(true)
        .open(a.path("target"))
        .unwrap()
        .set_modified(now)
        .unwrap();
    let got = fs::metadata(b.path("target")).unwrap().modified().unwrap();
    assert!(got.duration_since(t).unwrap() > Duration::from_secs(1000));

    // statfs: 64 books of 8 MiB, the file f holds 3 of them
    let (free, bsize) = nix_statfs(&a.mnt);
    assert_eq!(bsize, 4096);
    assert!(free * bsize <= (TOTAL_BOOKS - 3) * BOOK, "free {free}");

    // xattrs: user names stored; user.LFS.* rules from the Librarian; the layout is read-only
    let t = a.path("target");
    xattr_set(&t, "user.color", b"blue", 0).unwrap();
    assert_eq!(xattr_get(&b.path("target"), "user.color").unwrap(), b"blue");
    assert_eq!(
        xattr_set(&t, "user.color", b"red", libc::XATTR_CREATE),
        Err(libc::EEXIST)
    );
    assert_eq!(
        xattr_set(&t, "user.none", b"red", libc::XATTR_REPLACE),
        Err(libc::ENODATA)
    );
    let list = xattr_list(&b.path("target"));
    for n in [
        "user.color",
        "user.LFS.AllocationPolicy",
        "user.LFS.InterleaveRequest",
    ] {
        assert!(list.contains(&n.to_string()), "{list:?}");
    }
    // What describes the file is read by name, not listed, and cannot be set or removed.
    for n in [
        "user.LFS.Interleave",
        "user.LFS.Layout",
        "user.LFS.AllocationPolicyList",
        "user.LFS.InterleaveRequestPos",
    ] {
        assert!(!list.contains(&n.to_string()), "{list:?}");
        assert!(xattr_get(&t, n).is_ok(), "{n}");
        assert_eq!(xattr_set(&t, n, b"x", 0), Err(libc::EOPNOTSUPP), "{n}");
        let (cp, cn) = (
            std::ffi::CString::new(t.to_str().unwrap()).unwrap(),
            std::ffi::CString::new(n).unwrap(),
        );
        // SAFETY: cp and cn are NUL-terminated C strings.
        assert_eq!(unsafe { libc::removexattr(cp.as_ptr(), cn.as_ptr()) }, -1);
        assert_eq!(
            errno(&std::io::Error::last_os_error()),
            libc::EOPNOTSUPP,
            "{n}"
        );
    }
    assert_eq!(
        xattr_get(&t, "user.LFS.AllocationPolicy").unwrap(),
        b"RandomBooks"
    );
    xattr_set(&t, "user.LFS.AllocationPolicy", b"LocalNode", 0).unwrap();
    assert_eq!(
        xattr_get(&b.path("target"), "user.LFS.AllocationPolicy").unwrap(),
        b"LocalNode"
    );
    assert_eq!(
        xattr_set(&t, "user.LFS.AllocationPolicy", b"Nonsense", 0),
        Err(libc::EINVAL)
    );
    assert_eq!(xattr_get(&t, "user.nothing"), Err(libc::ENODATA));
    let cp = std::ffi::CString::new(t.to_str().unwrap()).unwrap();
    let cn = std::ffi::CString::new("user.color").unwrap();
    // SAFETY: cp and cn are NUL-terminated C strings.
    assert_eq!(unsafe { libc::removexattr(cp.as_ptr(), cn.as_ptr()) }, 0);
    assert_eq!(xattr_get(&t, "user.color"), Err(libc::ENODATA));
    // SAFETY: cp and cn are NUL-terminated C strings.
    assert_eq!(unsafe { libc::removexattr(cp.as_ptr(), cn.as_ptr()) }, -1);
    let layout = String::from_utf8(xattr_get(&b.path("f"), "user.LFS.Layout").unwrap()).unwrap();
    assert!(layout.starts_with("lfs-layout 1\n"), "{layout}");
    assert_eq!(layout.lines().filter(|l| l.starts_with("book ")).count(), 3);
}

#[test]
fn errors_are_the_posix_ones() {
    let c = Cluster::two(&[]);
    let (a, b) = (c.node(0), c.node(1));

    // ENOSPC: more books than the pool has; nothing is allocated by the failed attempt
    let f = File::create(a.path("huge")).unwrap();
    assert_eq!(err(f.set_len((TOTAL_BOOKS + 1) * BOOK)), libc::ENOSPC);
    assert_eq!(fs::metadata(b.path("huge")).unwrap().len(), 0);
    f.set_len(TOTAL_BOOKS * BOOK).unwrap();
    let mut g = File::create(b.path("more")).unwrap();
    assert_eq!(err(g.write_all(b"no room")), libc::ENOSPC);
    drop(f);
    drop(g);
    fs::remove_file(a.path("huge")).unwrap();
    c.wait_all_free(TOTAL_BOOKS);
    fs::write(b.path("more"), b"room now").unwrap();

    // ENOTEMPTY, ENOTDIR, EISDIR, ENOENT
    fs::create_dir(a.path("d")).unwrap();
    fs::write(a.path("d/f"), b"x").unwrap();
    assert_eq!(err(fs::remove_dir(b.path("d"))), libc::ENOTEMPTY);
    assert_eq!(err(fs::remove_dir(b.path("d/f"))), libc::ENOTDIR);
    assert_eq!(err(fs::remove_file(b.path("d"))), libc::EISDIR);
    assert_eq!(err(File::open(b.path("nope"))), libc::ENOENT);
    assert_eq!(err(fs::read(b.path("d/f/under-a-file"))), libc::ENOTDIR);
    fs::create_dir(a.path("e")).unwrap();
    assert_eq!(err(fs::rename(a.path("e"), a.path("d"))), libc::ENOTEMPTY);
    assert_eq!(err(fs::rename(a.path("more"), a.path("e"))), libc::EISDIR);
    assert_eq!(err(fs::rename(a.path("e"), a.path("more"))), libc::ENOTDIR);

    // EEXIST: mkdir, symlink and O_EXCL create, also for names made by the other node
    assert_eq!(err(fs::create_dir(b.path("d"))), libc::EEXIST);
    std::os::unix::fs::symlink("t", a.path("ln")).unwrap();
    assert_eq!(
        err(std::os::unix::fs::symlink("t", b.path("ln"))),
        libc::EEXIST
    );
    assert_eq!(err(File::create_new(b.path("d/f"))), libc::EEXIST);

    // EBUSY: a file open anywhere cannot be unlinked (nor replaced by a rename)
    let open_on_a = File::open(a.path("d/f")).unwrap();
    assert_eq!(err(fs::remove_file(b.path("d/f"))), libc::EBUSY);
    assert_eq!(err(fs::remove_file(a.path("d/f"))), libc::EBUSY);
    assert_eq!(err(fs::rename(b.path("more"), b.path("d/f"))), libc::EBUSY);
    drop(open_on_a);
    fs::rename(b.path("more"), b.path("d/f")).unwrap();
    assert_eq!(fs::read(a.path("d/f")).unwrap(), b"room now");

    // hard links are not supported; pending-zero shelves are not reachable
    assert_eq!(err(fs::hard_link(a.path("d/f"), a.path("hl"))), libc::EPERM);
    assert_eq!(
        err(File::create(a.path(".lfs_pending_zero_1"))),
        libc::EPERM
    );
    // rmdir of lost+found is refused
    assert!(fs::remove_dir(a.path("lost+found")).is_err());
}

/// Fills the whole pool with non-zero bytes, frees it, and checks what the next owner sees.
fn reuse_after_free(c: &Cluster) -> bool {
    let a = c.node(0);
    let size = TOTAL_BOOKS * BOOK;
    {
        let m = DirectMap::open(
            a.path("dirty"),
            MapOptions {
                min_size: size,
                read_only: false,
            },
        )
        .unwrap();
        // SAFETY: the direct map covers at least `size` bytes (min_size) and lives to the end
        // of this block.
        unsafe { std::ptr::write_bytes(m.as_ptr(), 0xEE, size as usize) };
    }
    fs::remove_file(a.path("dirty")).unwrap();
    c.wait_all_free(TOTAL_BOOKS);
    assert!(!names(&a.mnt).iter().any(|n| n.starts_with(".lfs_pending")));
    let m = DirectMap::open(
        a.path("fresh"),
        MapOptions {
            min_size: size,
            read_only: false,
        },
    )
    .unwrap();
    // SAFETY: the map lives for this statement and nothing in this process writes it meanwhile.
    let all_zero = unsafe { m.as_slice() }
        .chunks(1 << 20)
        .all(|c| c.iter().all(|&b| b == 0));
    drop(m);
    fs::remove_file(a.path("fresh")).unwrap();
    all_zero
}

#[test]
fn freed_books_are_zeroed_before_reuse() {
    let c = Cluster::two(&[]);
    assert!(
        reuse_after_free(&c),
        "a reused book still held the old owner's bytes"
    );

    // Shrinking zeroes the books it drops too.
    let a = c.node(0);
    c.wait_all_free(TOTAL_BOOKS);
    fs::write(a.path("s"), vec![0x55u8; (2 * BOOK) as usize]).unwrap();
    File::options()
        .write(true)
        .open(a.path("s"))
        .unwrap()
        .set_len(1)
        .unwrap();
    c.wait_all_free(TOTAL_BOOKS - 1);
    let m = DirectMap::open(
        a.path("t"),
        MapOptions {
            min_size: (TOTAL_BOOKS - 1) * BOOK,
            read_only: false,
        },
    )
    .unwrap();
    // SAFETY: the map lives for this statement and nothing in this process writes it meanwhile.
    assert!(unsafe { m.as_slice() }.iter().all(|&b| b == 0));
}

#[test]
fn fakezero_skips_the_zeroing() {
    let c = Cluster::two(&["--fakezero"]);
    assert!(
        !reuse_after_free(&c),
        "with --fakezero the old bytes should still be there"
    );
}

#[test]
fn daemon_life_cycle_and_bad_input() {
    let mut c = Cluster::two(&[]);
    fs::write(c.node(0).path("keep"), b"kept").unwrap();

    // SIGTERM: clean exit, nothing left mounted.
    let mnt = c.nodes[0].mnt.clone();
    assert!(
        c.nodes[0].stop(),
        "daemon did not exit cleanly: {}",
        c.nodes[0].log_text()
    );
    assert!(!is_mounted(&mnt));

    // SIGKILL leaves a dead mount; the next daemon at the same place clears it.
    c.nodes[1].kill();
    assert!(is_mounted(&c.nodes[1].mnt));
    assert_eq!(
        fs::metadata(&c.nodes[1].mnt).unwrap_err().raw_os_error(),
        Some(libc::ENOTCONN)
    );
    c.nodes[1].launch();
    assert_eq!(fs::read(c.nodes[1].path("keep")).unwrap(), b"kept");

    // A second daemon on a live mount point is refused, and leaves the first one alone.
    let port = c.lib.port.to_string();
    let fam = c.fam.display().to_string();
    let live = c.nodes[1].mnt.display().to_string();
    let base = ["--hostname", "127.0.0.1", "--port", &port, "--node-id", "1"];
    let run = |extra: &[&str]| {
        let out = Command::new(bin("lfs-node"))
            .args(base)
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, msg) = run(&["--fam", &fam, "--mountpoint", &live]);
    assert_eq!(code, Some(1));
    assert!(msg.contains("already a live FUSE mount"), "{msg}");
    assert_eq!(fs::read(c.nodes[1].path("keep")).unwrap(), b"kept");

    // Bad input: each message names the input and the fix.
    let spare = c.dir.path().join("spare").display().to_string();
    let (code, msg) = run(&["--fam", "/nonexistent/fam", "--mountpoint", &spare]);
    assert_eq!(code, Some(1));
    assert!(
        msg.contains("/nonexistent/fam") && msg.contains("--fam"),
        "{msg}"
    );
    let small = c.dir.path().join("small");
    File::create(&small).unwrap().set_len(4096).unwrap();
    let (code, msg) = run(&["--fam", small.to_str().unwrap(), "--mountpoint", &spare]);
    assert_eq!(code, Some(1));
    assert!(msg.contains("truncate -s"), "{msg}");
    let out = Command::new(bin("lfs-node"))
        .args(["--physloc", "9:9:9", "--fam", &fam])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rack:enc:node"));
    let (code, msg) = run(&[
        "--fam",
        &fam,
        "--mountpoint",
        &spare,
        "--shadow_dir",
        "/tmp",
    ]);
    assert_eq!(code, Some(1));
    assert!(msg.contains("--shadow_dir"), "{msg}");
    assert!(!is_mounted(std::path::Path::new(&spare)));

    // Waiting for an absent Librarian, SIGTERM still stops it.
    let dead_port = free_port().to_string();
    let mut child = Command::new(bin("lfs-node"))
        .args([
            "--hostname",
            "127.0.0.1",
            "--port",
            &dead_port,
            "--node-id",
            "1",
            "--fam",
            &fam,
            "--mountpoint",
            &spare,
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Signalled once it says it waits (its first attempt), however slow its start-up is.
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut stderr = String::new();
    while !stderr.contains("cannot reach the Librarian") {
        let n = std::io::BufRead::read_line(&mut err, &mut stderr).unwrap();
        assert!(n > 0, "lfs-node ended without waiting: {stderr}");
    }
    // SAFETY: kill(2) of our own child, not yet reaped, with a valid signal.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    err.read_to_string(&mut stderr).unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("stopped while waiting for the Librarian"),
        "{stderr}"
    );
}

/// A program that writes until the disk is full gets ENOSPC (also for a write far past the
/// pool's end), the file keeps exactly what was written, and deleting it makes room again.
#[test]
fn writing_until_the_pool_is_full_gives_enospc() {
    use std::os::unix::fs::FileExt;
    let c = Cluster::two(&[]);
    let (a, b) = (c.node(0), c.node(1));
    let mut f = File::create(a.path("fill")).unwrap();
    let mut written = 0u64;
    let e = loop {
        let chunk = pattern(7, written, 1 << 20);
        match f.write(&chunk) {
            Ok(n) => written += n as u64,
            Err(e) => break e,
        }
        assert!(written <= TOTAL_BOOKS * BOOK, "wrote past the pool's end");
    };
    assert_eq!(errno(&e), libc::ENOSPC, "{e}");
    assert_eq!(written, TOTAL_BOOKS * BOOK);
    // Past the end, however far: ENOSPC, and the Librarian keeps serving.
    for off in [TOTAL_BOOKS * BOOK, 1 << 40, 1 << 60, (1 << 62) + 12345] {
        let e = f.write_at(b"x", off).unwrap_err();
        assert_eq!(errno(&e), libc::ENOSPC, "write at {off}: {e}");
    }
    let e = f.set_len(1 << 60).unwrap_err();
    assert_eq!(errno(&e), libc::ENOSPC, "{e}");
    // The file is what was written, on both nodes.
    assert_eq!(fs::metadata(b.path("fill")).unwrap().len(), written);
    let g = File::open(b.path("fill")).unwrap();
    for at in [0, BOOK - 3, written - 4096] {
        let mut got = vec![0u8; 4096];
        g.read_exact_at(&mut got, at).unwrap();
        assert!(got == pattern(7, at, 4096), "wrong bytes at {at}");
    }
    drop(g);
    let mut h = File::create(b.path("other")).unwrap();
    assert_eq!(err(h.write_all(b"no room")), libc::ENOSPC);
    assert_eq!(fs::metadata(a.path("other")).unwrap().len(), 0);
    drop(f);
    fs::remove_file(a.path("fill")).unwrap();
    c.wait_all_free(TOTAL_BOOKS);
    h.write_all(b"room now").unwrap();
    drop(h);
    assert_eq!(fs::read(a.path("other")).unwrap(), b"room now");
}

/// SIGTERM at any moment of start-up (before the Librarian answers, during the mount, right after
/// it) ends the daemon promptly and leaves nothing mounted, also when the Librarian has stopped
/// answering at that moment (frozen with SIGSTOP; the daemon's --librarian-timeout is 30 s).
#[test]
fn sigterm_during_startup_ends_the_daemon_and_leaves_no_mount() {
    let c = Cluster::start(1, TWO_NODES, &[]);
    let lib_pid = c.lib.pid().unwrap() as i32;
    let mnt = c.dir.path().join("starting");
    let port = c.lib.port.to_string();
    let fam = c.fam.display().to_string();
    let log = c.dir.path().join("starting.log");
    let mut failures = vec![];
    for freeze in [false, true] {
        for delay_ms in [0u64, 5, 20, 50, 100, 200, 400] {
            let mut child = Command::new(bin("lfs-node"))
                .args(["--hostname", "127.0.0.1", "--port", &port, "--node-id", "2"])
                .args(["--fam", &fam, "--verbose", "1", "--mountpoint"])
                .arg(&mnt)
                .stdout(std::process::Stdio::null())
                .stderr(
                    fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&log)
                        .unwrap(),
                )
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(delay_ms));
            if freeze {
                // SAFETY: kill(2) with a valid signal touches no memory of ours; lib_pid is the
                // test's own Librarian, alive until the test stops it.
                unsafe { libc::kill(lib_pid, libc::SIGSTOP) };
            }
            // SAFETY: kill(2) of our own child, not yet reaped, with a valid signal.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let exited = loop {
                if child.try_wait().unwrap().is_some() {
                    break true;
                }
                if std::time::Instant::now() > deadline {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            let what = format!("SIGTERM {delay_ms} ms after start, Librarian frozen: {freeze}");
            if !exited {
                let stack =
                    fs::read_to_string(format!("/proc/{}/stack", child.id())).unwrap_or_default();
                failures.push(format!("{what}: still running after 10 s\n{stack}"));
                let _ = child.kill();
                // A daemon killed while one of its threads waits on its own mount never exits
                // until that connection is aborted.
                std::thread::sleep(Duration::from_secs(2));
                if child.try_wait().unwrap().is_none() {
                    failures.push(format!("{what}: unkillable, aborting its FUSE connection"));
                    abort_fuse_connection(&mnt);
                }
                let _ = child.wait();
            } else if is_mounted(&mnt) {
                failures.push(format!("{what}: mount left behind"));
            }
            if freeze {
                // SAFETY: as above: the test's own Librarian, resumed.
                unsafe { libc::kill(lib_pid, libc::SIGCONT) };
            }
            force_unmount(&mnt);
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n{}",
        failures.join("\n"),
        fs::read_to_string(&log).unwrap_or_default()
    );
    // The Librarian and the running node were not disturbed.
    fs::write(c.node(0).path("after"), b"ok").unwrap();
    assert_eq!(fs::read(c.node(0).path("after")).unwrap(), b"ok");
}

/// Runs a real tool and asserts it succeeded without a word on stderr.
fn silent(tool: &str, args: &[&Path]) {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} (scripts/setup.sh installs it): {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "{tool} {args:?}: {}\n{stderr}",
        out.status
    );
}

/// `cp -a`, `mv` and `rsync -X` between two node mounts, and `rsync -X` into a mount from a file
/// system without LFS attributes: silent, and the copies keep data, user attributes and the
/// settable LFS attributes.
#[test]
fn copying_tools_between_node_mounts_are_silent() {
    let c = Cluster::two(&[]);
    let (a, b) = (c.node(0), c.node(1));
    let data = pattern(7, 0, 3 * 4096 + 5);
    fs::create_dir(a.path("tree")).unwrap();
    for f in ["tree/f", "tree/g"] {
        fs::write(a.path(f), &data).unwrap();
        xattr_set(&a.path(f), "user.color", b"blue", 0).unwrap();
        xattr_set(&a.path(f), "user.LFS.AllocationPolicy", b"LocalNode", 0).unwrap();
    }
    fs::create_dir(b.path("to")).unwrap();
    silent(
        "cp",
        &[Path::new("-a"), &a.path("tree/f"), &b.path("to/cp")],
    );
    silent(
        "rsync",
        &[Path::new("-aX"), &a.path("tree/f"), &b.path("to/rsync")],
    );
    silent("rsync", &[Path::new("-aX"), &a.path("tree"), &b.path("to")]);
    // Across two mounts mv copies and unlinks.
    silent("mv", &[&a.path("tree/g"), &b.path("to/mv")]);
    assert!(!a.path("tree/g").exists());
    for f in ["to/cp", "to/rsync", "to/tree/f", "to/mv"] {
        assert_eq!(fs::read(b.path(f)).unwrap(), data, "{f}");
        assert_eq!(xattr_get(&b.path(f), "user.color").unwrap(), b"blue", "{f}");
        assert_eq!(
            xattr_get(&b.path(f), "user.LFS.AllocationPolicy").unwrap(),
            b"LocalNode",
            "{f}"
        );
        // The copy has books of its own.
        assert_ne!(
            xattr_get(&b.path(f), "user.LFS.Layout").unwrap(),
            xattr_get(&a.path("tree/f"), "user.LFS.Layout").unwrap(),
            "{f}"
        );
    }
    // From a file system without LFS attributes: rsync removes the ones the source lacks, which
    // puts back what a new file has.
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("h"), &data).unwrap();
    xattr_set(
        &b.path("to/rsync"),
        "user.LFS.InterleaveRequest",
        b"\x00",
        0,
    )
    .unwrap();
    silent(
        "rsync",
        &[
            Path::new("-aX"),
            &host.path().join("h"),
            &b.path("to/rsync"),
        ],
    );
    assert_eq!(fs::read(b.path("to/rsync")).unwrap(), data);
    assert_eq!(
        xattr_get(&b.path("to/rsync"), "user.color"),
        Err(libc::ENODATA)
    );
    assert_eq!(
        xattr_get(&b.path("to/rsync"), "user.LFS.AllocationPolicy").unwrap(),
        b"RandomBooks"
    );
    assert_eq!(
        xattr_get(&b.path("to/rsync"), "user.LFS.InterleaveRequest").unwrap(),
        b""
    );
}
