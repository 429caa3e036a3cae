//! `fame up --mmap`: on process nodes (real clusters), plain mmap of an /lfs file is FAM by
//! default for every command `fame exec` runs, and the page cache with `--mmap page-cache` or
//! `LFS_MMAP=page-cache` for one command.

mod common;

use common::*;
use fame_tests::plain_mmap;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn wait_until(what: &str, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn plain_mmap_is_fam_on_process_nodes_unless_page_cache() {
    let home = Home::new();
    let scratch = tempfile::tempdir().unwrap();
    let prog = plain_mmap(scratch.path());
    let p = prog.to_str().unwrap();
    let up = |extra: &[&str]| {
        let mut args = vec!["up", "--name", "mm", "--nodes", "4", "--fam", "1G"];
        args.extend_from_slice(extra);
        home.ok(&args);
    };
    let exec = |node: &str, cmd: &[&str]| {
        let mut args = vec!["exec", "--name", "mm", node, "--"];
        args.extend_from_slice(cmd);
        home.ok(&args)
    };
    up(&[]);
    assert!(home.ok(&["status", "mm"]).contains("mmap       fam"));
    exec("node01", &["sh", "-c", "truncate -s 16M /lfs/c"]);

    // Four nodes add at once, each having read the counter first.
    let go = scratch.path().join("go");
    let ready = |i: u32| scratch.path().join(format!("ready{i}"));
    let n = 50_000;
    let adders: Vec<_> = (1..=4u32)
        .map(|i| {
            let (r, g) = (ready(i), go.clone());
            home.command(&[
                "exec",
                "--name",
                "mm",
                &format!("node0{i}"),
                "--",
                p,
                "add",
                "/lfs/c",
                &n.to_string(),
                r.to_str().unwrap(),
                g.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
        })
        .collect();
    wait_until("every node mapped the counter", || {
        (1..=4).all(|i| ready(i).exists())
    });
    std::fs::write(&go, "").unwrap();
    for mut a in adders {
        assert!(a.wait().unwrap().success());
    }
    assert_eq!(
        exec("node03", &[p, "load", "/lfs/c", "0"]).trim(),
        (4 * n).to_string()
    );

    // A C store that node01 holds (no msync, no close) is seen by Python's mmap on node02.
    let hold = scratch.path().join("hold");
    let mut storer = home
        .command(&[
            "exec",
            "--name",
            "mm",
            "node01",
            "--",
            p,
            "store",
            "/lfs/c",
            "4104",
            "777",
            hold.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(first_line(&mut storer).trim(), "stored");
    let py = "import mmap, os, struct\n\
              fd = os.open('/lfs/c', os.O_RDWR)\n\
              m = mmap.mmap(fd, 8192, mmap.MAP_SHARED)\n\
              print(struct.unpack_from('<Q', m, 4104)[0])\n";
    let seen = exec("node02", &["python3", "-c", py]);
    release_and_check(&hold, &mut storer, &seen);

    // What backs the map: the FAM file, or (LFS_MMAP=page-cache, one command) the file itself.
    let fam = home.cluster_dir("mm").join("fam");
    let fam = std::fs::canonicalize(&fam).unwrap_or(fam);
    let backing = exec("node04", &[p, "maps", "/lfs/c"]);
    assert!(backing.contains(fam.to_str().unwrap()), "{backing}");
    let off = exec(
        "node04",
        &["env", "LFS_MMAP=page-cache", p, "maps", "/lfs/c"],
    );
    assert!(off.contains("/lfs/c"), "with LFS_MMAP=page-cache: {off}");
    home.ok(&["down", "mm"]);

    // --mmap page-cache: today's per-node page cache, for every command.
    up(&["--mmap", "page-cache"]);
    assert!(home.ok(&["status", "mm"]).contains("mmap       page-cache"));
    exec("node01", &["sh", "-c", "truncate -s 4096 /lfs/c"]);
    let pc = exec("node02", &[p, "maps", "/lfs/c"]);
    assert!(pc.contains("/lfs/c"), "with --mmap page-cache: {pc}");
    home.ok(&["down", "mm"]);

    let err = home.fails(&[
        "up", "--name", "mm", "--nodes", "2", "--fam", "1G", "--mmap", "tmfs",
    ]);
    assert!(
        err.contains("--mmap tmfs: ") && err.contains("page-cache"),
        "{err}"
    );
    home.assert_empty("after a refused up");
}
