//! Plain `mmap` of LFS files through `liblfs_preload.so`, on four real lfs-node mounts of one
//! Librarian (four nodes of one cluster, as process nodes are): unmodified programs (a C program
//! built here, a Python script) share memory through FAM.

use fame_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const FOUR_NODES: &str =
    "[global]\nnode_count = 4\nbook_size_bytes = 8M\nnvm_size_per_node = 16B\n";

/// The preload library cargo built for this test run.
fn preload() -> PathBuf {
    let built = bin_dir().join("liblfs_preload.so");
    assert!(
        built.exists(),
        "{} is missing: build it with `cargo build --workspace`",
        built.display()
    );
    built
}

/// Runs `prog args` with the library preloaded (or not), and returns its stdout; fails on a
/// non-zero exit.
fn run(preloaded: bool, prog: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new(prog);
    cmd.args(args);
    if preloaded {
        cmd.env("LD_PRELOAD", preload());
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}): {}{}",
        prog.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn make_file(path: &Path, len: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(len).unwrap();
}

/// Two nodes, `plain_mmap` built, and a file `name` of `len` bytes on node01's mount.
fn two_nodes_and_a_file(name: &str, len: u64) -> (Cluster, PathBuf, PathBuf) {
    let c = Cluster::two(&[]);
    let prog = plain_mmap(c.dir.path());
    let file = c.node(0).path(name);
    make_file(&file, len);
    (c, prog, file)
}

#[test]
fn atomic_increments_from_four_nodes_lose_nothing() {
    let c = Cluster::start(4, FOUR_NODES, &[]);
    let prog = plain_mmap(c.dir.path());
    make_file(&c.node(0).path("counter"), 4096);
    let n = 100_000;
    let go = c.dir.path().join("go");
    let ready = |i: usize| c.dir.path().join(format!("ready{i}"));
    let children: Vec<_> = (0..4)
        .map(|i| {
            let mut cmd = Command::new(&prog);
            cmd.arg("add")
                .arg(c.node(i).path("counter"))
                .arg(n.to_string())
                .arg(ready(i))
                .arg(&go)
                .env("LD_PRELOAD", preload())
                .stdout(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    // Every process has mapped and read the counter before any adds: with per-node page caches
    // (no library) each would count from 0 on its own.
    wait_for(
        "every node mapped the counter",
        std::time::Duration::from_secs(30),
        || (0..4).all(|i| ready(i).exists()),
    );
    std::fs::write(&go, "").unwrap();
    for ch in children {
        let out = ch.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    // Read back through a plain load and a plain read(2), on other nodes.
    let total = run(
        true,
        &prog,
        &["load", c.node(3).path("counter").to_str().unwrap(), "0"],
    );
    assert_eq!(total.trim(), (4 * n).to_string(), "lost increments");
    let bytes = std::fs::read(c.node(1).path("counter")).unwrap();
    assert_eq!(u64::from_ne_bytes(bytes[..8].try_into().unwrap()), 4 * n);
}

#[test]
fn stores_on_one_node_are_loads_on_another_without_msync_c_and_python() {
    let c = Cluster::start(4, FOUR_NODES, &[]);
    let prog = plain_mmap(c.dir.path());
    // Two books, so the store lands in the second one (offsets need not be book-aligned).
    let off = (BOOK + 4096 + 24).to_string();
    make_file(&c.node(0).path("shared"), 2 * BOOK);
    let on = |i: usize| c.node(i).path("shared").to_str().unwrap().to_string();
    // The storer keeps its map and its file open while the others load: no flush, no close.
    let hold = c.dir.path().join("hold");
    let mut storer = Command::new(&prog)
        .args(["store", &on(0), &off, "0xfeedface"])
        .arg(&hold)
        .env("LD_PRELOAD", preload())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(storer.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "stored");
    let loaded = run(true, &prog, &["load", &on(3), &off]);
    // An unmodified Python script: mmap on node02 sees the C store, and stores back.
    let py = format!(
        "import mmap, os, struct, sys\n\
         fd = os.open(sys.argv[1], os.O_RDWR)\n\
         m = mmap.mmap(fd, {len}, mmap.MAP_SHARED)\n\
         os.close(fd)\n\
         print(struct.unpack_from('<Q', m, {off})[0])\n\
         struct.pack_into('<Q', m, 8, 0x5eed)\n",
        len = 2 * BOOK,
        off = BOOK + 4096 + 24
    );
    let script = c.dir.path().join("share.py");
    std::fs::write(&script, py).unwrap();
    let seen = run(
        true,
        Path::new("python3"),
        &[script.to_str().unwrap(), &on(1)],
    );
    std::fs::write(&hold, "").unwrap();
    assert!(storer.wait().unwrap().success());
    let stored = "4277009102"; // 0xfeedface, in decimal as the loaders print it
    assert_eq!(loaded.trim(), stored, "node04 did not see node01's store");
    assert_eq!(seen.trim(), stored, "Python did not see the C store");
    assert_eq!(run(true, &prog, &["load", &on(3), "8"]).trim(), "24301");
}

#[test]
fn private_maps_stay_private_forks_share_and_pages_past_the_books_fault() {
    let (_c, prog, p) = two_nodes_and_a_file("f", 100);
    let path = p.to_str().unwrap();
    assert_eq!(run(true, &prog, &["private", path]).trim(), "private-ok");
    assert_eq!(run(true, &prog, &["fork", path]).trim(), "fork-ok");
    // One book: its bytes past the 100-byte size are FAM; the page after the book is SIGBUS.
    let touch_two_books_at = |offset: u64| {
        let args = ["past", path, &(2 * BOOK).to_string(), &offset.to_string()];
        run(true, &prog, &args).trim().to_string()
    };
    assert_eq!(touch_two_books_at(BOOK - 1), "ok");
    assert_eq!(touch_two_books_at(BOOK + 10), "SIGBUS");
}

#[test]
fn the_map_is_the_fam_file_unless_turned_off() {
    let (c, prog, p) = two_nodes_and_a_file("m", 4096);
    let path = p.to_str().unwrap();
    let fam = c.fam.to_str().unwrap().to_string();
    let backing = run(true, &prog, &["maps", path]);
    assert!(
        backing.contains(&fam),
        "preloaded map is backed by {backing}"
    );
    // LFS_MMAP=page-cache: the kernel's FUSE map of the file itself, as without the library.
    let out = Command::new(&prog)
        .args(["maps", path])
        .env("LD_PRELOAD", preload())
        .env("LFS_MMAP", "page-cache")
        .output()
        .unwrap();
    let off = String::from_utf8_lossy(&out.stdout);
    assert!(
        off.contains(path) && !off.contains(&fam),
        "with LFS_MMAP=page-cache the map is backed by {off}"
    );
    assert_eq!(off, run(false, &prog, &["maps", path]));
}

#[test]
fn other_files_and_programs_behave_as_without_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let prog = plain_mmap(dir.path());
    let f = dir.path().join("plain");
    make_file(&f, 4096);
    let path = f.to_str().unwrap();
    run(true, &prog, &["store", path, "16", "77"]);
    assert_eq!(run(true, &prog, &["load", path, "16"]).trim(), "77");
    assert_eq!(run(true, &prog, &["add", path, "1000"]).trim(), "1000");
    // The kernel's own map of the file, not a FAM one.
    assert_eq!(
        run(true, &prog, &["maps", path]),
        run(false, &prog, &["maps", path])
    );
    assert_eq!(
        run(true, &prog, &["private", path]),
        run(false, &prog, &["private", path])
    );
    // Programs that never touch /lfs: same output with and without.
    for (p, args) in [
        (
            "python3",
            vec!["-c", "import mmap,sys; print(sys.version_info[0])"],
        ),
        ("sort", vec!["--version"]),
        ("sh", vec!["-c", "echo b a | tr ' ' '\\n' | sort"]),
    ] {
        assert_eq!(
            run(true, Path::new(p), &args),
            run(false, Path::new(p), &args)
        );
    }
}

/// Random map/unmap/remap/grow sequences against a model of the file (`mmap-model`), on an LFS
/// file with the library, read back through the other node's mount; and on a plain file without
/// the library (the kernel passes the same checks, so the model asks nothing the kernel would not
/// give).
#[test]
fn random_map_sequences_match_a_model() {
    let c = Cluster::two(&[]);
    let model = bin("mmap-model");
    let plain = tempfile::tempdir().unwrap();
    let seed: u64 = std::env::var("LFS_MMAP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::random::<u64>() % 1_000_000_000);
    for (i, s) in (seed..seed + 4).enumerate() {
        eprintln!("mmap-model seed {s} (LFS_MMAP_SEED={seed} replays)");
        let name = format!("model{i}");
        let (f, other) = (c.node(i % 2).path(&name), c.node(1 - i % 2).path(&name));
        run(
            true,
            &model,
            &[
                f.to_str().unwrap(),
                &s.to_string(),
                "300",
                other.to_str().unwrap(),
            ],
        );
        let p = plain.path().join(format!("model{i}"));
        run(false, &model, &[p.to_str().unwrap(), &s.to_string(), "300"]);
    }
}
