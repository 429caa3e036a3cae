//! Names, limits and rename's edge cases on a real mount (issue 16, item 6): every case is run
//! on `/lfs` and on a local file system (the test's temporary directory) from the same starting
//! tree, and must end with the same errno and the same tree.

use fame_tests::*;
use std::fs;
use std::path::Path;

/// The starting tree: `d/` (with `d/sub/` and `d/f`), `empty/`, `full/x`, `file`.
fn make_tree(root: &Path) {
    for d in ["d/sub", "empty", "full"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    for f in ["d/f", "full/x", "file"] {
        fs::write(root.join(f), b"x").unwrap();
    }
}

/// The names under `root`, sorted, directories marked with a trailing `/`.
fn tree(root: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                out.push(format!("{rel}/"));
                stack.push(e.path());
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// The errno of `r`, or 0.
fn code<T>(r: std::io::Result<T>) -> i32 {
    r.err().map_or(0, |e| errno(&e))
}

type Case = (&'static str, fn(&Path) -> i32);

fn long(n: usize) -> String {
    "n".repeat(n)
}

const CASES: &[Case] = &[
    ("a name of 255 bytes", |r| {
        code(fs::write(r.join(long(255)), b"x"))
    }),
    ("a name of 256 bytes", |r| {
        code(fs::write(r.join(long(256)), b"x"))
    }),
    ("a directory of 256 bytes", |r| {
        code(fs::create_dir(r.join(long(256))))
    }),
    ("a path over 4095 bytes", |r| {
        let deep: Vec<String> = (0..20).map(|_| long(250)).collect();
        code(fs::metadata(r.join(deep.join("/"))))
    }),
    ("rename a directory over an empty one", |r| {
        code(fs::rename(r.join("d"), r.join("empty")))
    }),
    ("rename a directory over a full one", |r| {
        code(fs::rename(r.join("d"), r.join("full")))
    }),
    ("rename a directory over a file", |r| {
        code(fs::rename(r.join("d"), r.join("file")))
    }),
    ("rename a file over a directory", |r| {
        code(fs::rename(r.join("file"), r.join("empty")))
    }),
    ("rename a directory into itself", |r| {
        code(fs::rename(r.join("d"), r.join("d/sub/d")))
    }),
    ("rename a file onto itself", |r| {
        code(fs::rename(r.join("file"), r.join("file")))
    }),
    ("rename what is not there", |r| {
        code(fs::rename(r.join("nope"), r.join("x")))
    }),
    ("rename into a directory that is not there", |r| {
        code(fs::rename(r.join("file"), r.join("nope/file")))
    }),
    ("rename under a file", |r| {
        code(fs::rename(r.join("d/f"), r.join("file/f")))
    }),
    ("rmdir a full directory", |r| {
        code(fs::remove_dir(r.join("full")))
    }),
    ("rmdir a file", |r| code(fs::remove_dir(r.join("file")))),
    ("unlink a directory", |r| {
        code(fs::remove_file(r.join("empty")))
    }),
    ("mkdir what exists", |r| {
        code(fs::create_dir(r.join("file")))
    }),
    ("a file under a file", |r| {
        code(fs::write(r.join("file/x"), b"x"))
    }),
];

#[test]
fn names_limits_and_renames_answer_as_a_local_file_system() {
    let c = Cluster::start(1, TWO_NODES, &[]);
    let mut differ = vec![];
    for (i, (what, op)) in CASES.iter().enumerate() {
        let lfs = c.node(0).path(&format!("case{i}"));
        let local = c.dir.path().join(format!("local{i}"));
        for root in [&lfs, &local] {
            fs::create_dir(root).unwrap();
            make_tree(root);
        }
        let (got, want) = (op(&lfs), op(&local));
        let (tree_got, tree_want) = (tree(&lfs), tree(&local));
        if got != want || tree_got != tree_want {
            differ.push(format!(
                "{what}: errno {got} on /lfs, {want} locally; tree {tree_got:?} on /lfs, {tree_want:?} locally"
            ));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}
