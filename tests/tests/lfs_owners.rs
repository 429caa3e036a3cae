//! Owners and permissions on real mounts (issue 16): the Librarian keeps who owns what, the
//! node's kernel checks permissions against it (`default_permissions`), as a local file system
//! does, and another node sees the same owners at once. Calls run as other users through
//! `setpriv` and Python's `os` module, so that each check is one system call with its errno.

use fame_tests::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

const ALICE: u32 = 1000;
const BOB: u32 = 1001;
/// A group Alice is in (as a supplementary group) and Bob is not.
const TEAM: u32 = 2000;

/// Runs the Python statement `stmt` (with `os` imported and `p` the path) as `uid`, whose
/// primary group is the same number and who is in `groups` too; the errno it failed with, or 0.
fn errno_as(uid: u32, groups: &[u32], p: &Path, stmt: &str) -> i32 {
    let groups = if groups.is_empty() {
        "--clear-groups".to_string()
    } else {
        format!(
            "--groups={}",
            groups
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let script = format!(
        "import os, sys\np = sys.argv[1]\ntry:\n    {stmt}\n    print(0)\nexcept OSError as e:\n    print(e.errno)"
    );
    let out = Command::new("setpriv")
        .args([format!("--reuid={uid}"), format!("--regid={uid}"), groups])
        // Debian's python3, which every user may run (a root-only PATH may hold another).
        .args(["--", "/usr/bin/python3", "-c", &script])
        .arg(p)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().unwrap_or_else(|_| {
        panic!(
            "{stmt} as {uid}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn owner(p: &Path) -> (u32, u32) {
    let m = fs::metadata(p).unwrap();
    (m.uid(), m.gid())
}

/// Creates the file `p` (mode 0644 before the umask).
const CREATE: &str = "os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))";

/// `stmt` succeeds as `uid` (in `groups` too).
fn ok_as(uid: u32, groups: &[u32], p: &Path, stmt: &str) {
    assert_eq!(errno_as(uid, groups, p, stmt), 0, "{stmt} as {uid}");
}

/// A two-node cluster whose mounts other users can reach (a test's directory is root's 0700),
/// with the first node's root directory open to everyone (1777 would do as well).
fn cluster() -> Cluster {
    let c = Cluster::two(&[]);
    fs::set_permissions(c.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&c.node(0).mnt, fs::Permissions::from_mode(0o777)).unwrap();
    c
}

#[test]
fn new_files_are_their_makers_and_every_node_sees_the_owner() {
    let c = cluster();
    let (a, b) = (c.node(0), c.node(1));
    let f = a.path("alices");
    ok_as(ALICE, &[], &f, CREATE);
    assert_eq!(owner(&f), (ALICE, ALICE));
    assert_eq!(owner(&b.path("alices")), (ALICE, ALICE), "node 2");
    let d = a.path("alices_dir");
    ok_as(ALICE, &[], &d, "os.mkdir(p, 0o755)");
    assert_eq!(owner(&d), (ALICE, ALICE));
    let l = a.path("alices_link");
    ok_as(ALICE, &[], &l, "os.symlink('alices', p)");
    let m = fs::symlink_metadata(&l).unwrap();
    assert_eq!((m.uid(), m.gid()), (ALICE, ALICE));
    // What root makes is root's.
    fs::write(a.path("roots"), b"x").unwrap();
    assert_eq!(owner(&a.path("roots")), (0, 0));
}

#[test]
fn permissions_are_checked_as_a_local_file_system_checks_them() {
    let c = cluster();
    let a = c.node(0);
    // Root's 0644 file: everyone reads, only root writes; access(2) agrees.
    let roots = a.path("roots");
    fs::write(&roots, b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(&roots, fs::Permissions::from_mode(0o644)).unwrap();
    ok_as(ALICE, &[], &roots, "os.close(os.open(p, os.O_RDONLY))");
    assert_eq!(
        errno_as(ALICE, &[], &roots, "os.open(p, os.O_WRONLY)"),
        libc::EACCES
    );
    ok_as(
        ALICE,
        &[],
        &roots,
        "if os.access(p, os.W_OK): raise OSError(1, 'access(2) says writable')",
    );
    // Not executable: exec is refused.
    assert_eq!(
        errno_as(ALICE, &[], &roots, "os.execv(p, [p])"),
        libc::EACCES
    );
    // Alice's private directory: Bob can neither list it nor reach into it.
    let private = a.path("private");
    ok_as(ALICE, &[], &private, "os.mkdir(p, 0o700)");
    assert_eq!(errno_as(BOB, &[], &private, "os.listdir(p)"), libc::EACCES);
    assert_eq!(
        errno_as(
            BOB,
            &[],
            &private.join("x"),
            "os.open(p, os.O_CREAT | os.O_WRONLY)"
        ),
        libc::EACCES
    );
    // A sticky directory: Bob cannot remove or rename Alice's file, Alice can.
    let tmp = a.path("tmp");
    fs::create_dir(&tmp).unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).unwrap();
    let x = tmp.join("x");
    ok_as(
        ALICE,
        &[],
        &x,
        "os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o666))",
    );
    assert_eq!(errno_as(BOB, &[], &x, "os.unlink(p)"), libc::EPERM);
    assert_eq!(errno_as(BOB, &[], &x, "os.rename(p, p + '2')"), libc::EPERM);
    ok_as(ALICE, &[], &x, "os.unlink(p)");
    // Root keeps its powers.
    fs::write(private.join("by_root"), b"r").unwrap();
}

#[test]
fn chown_follows_the_kernels_rules() {
    let c = cluster();
    let (a, b) = (c.node(0), c.node(1));
    let f = a.path("f");
    ok_as(ALICE, &[TEAM], &f, CREATE);
    // Only root gives a file away; the owner may change the group to one of hers only.
    assert_eq!(
        errno_as(ALICE, &[TEAM], &f, &format!("os.chown(p, {BOB}, -1)")),
        libc::EPERM
    );
    assert_eq!(
        errno_as(BOB, &[], &f, &format!("os.chown(p, -1, {BOB})")),
        libc::EPERM
    );
    assert_eq!(
        errno_as(ALICE, &[TEAM], &f, "os.chown(p, -1, 3000)"),
        libc::EPERM
    );
    ok_as(ALICE, &[TEAM], &f, &format!("os.chown(p, -1, {TEAM})"));
    assert_eq!(owner(&f), (ALICE, TEAM));
    assert_eq!(owner(&b.path("f")), (ALICE, TEAM), "node 2");
    // Bob cannot write Alice's 0644 file; once root gives it to him, he can.
    assert_eq!(
        errno_as(BOB, &[], &f, "os.open(p, os.O_WRONLY)"),
        libc::EACCES
    );
    std::os::unix::fs::chown(&f, Some(BOB), Some(BOB)).unwrap();
    assert_eq!(owner(&b.path("f")), (BOB, BOB), "node 2");
    ok_as(BOB, &[], &b.path("f"), "os.close(os.open(p, os.O_WRONLY))");
    // A chown clears setuid and setgid of a file.
    fs::set_permissions(&f, fs::Permissions::from_mode(0o6755)).unwrap();
    assert_eq!(fs::metadata(&f).unwrap().mode() & 0o7777, 0o6755);
    std::os::unix::fs::chown(&f, Some(ALICE), None).unwrap();
    assert_eq!(fs::metadata(&f).unwrap().mode() & 0o7777, 0o755);
}

#[test]
fn a_setgid_directory_gives_its_group_to_what_is_made_in_it() {
    let c = cluster();
    let a = c.node(0);
    let team = a.path("team");
    fs::create_dir(&team).unwrap();
    std::os::unix::fs::chown(&team, None, Some(TEAM)).unwrap();
    fs::set_permissions(&team, fs::Permissions::from_mode(0o2777)).unwrap();
    let f = team.join("doc");
    ok_as(ALICE, &[], &f, CREATE);
    assert_eq!(owner(&f), (ALICE, TEAM));
    let d = team.join("sub");
    ok_as(ALICE, &[], &d, "os.mkdir(p, 0o755)");
    assert_eq!(owner(&d), (ALICE, TEAM));
    assert_eq!(fs::metadata(&d).unwrap().mode() & 0o7777, 0o2755);
}
