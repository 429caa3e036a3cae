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

/// A name or path of the case file: `nN` is a name of N bytes, `deep` a path of over 4095.
fn at(root: &Path, word: &str) -> std::path::PathBuf {
    match word.strip_prefix('n').and_then(|n| n.parse().ok()) {
        Some(n) => root.join("n".repeat(n)),
        None if word == "deep" => root.join(vec!["n".repeat(250); 20].join("/")),
        None => root.join(word),
    }
}

/// Runs one line of `data/names.txt` (`OP A [B]`) in `root`: its errno, or 0.
fn run(root: &Path, line: &str) -> i32 {
    let w: Vec<&str> = line.split_whitespace().collect();
    let (a, b) = (at(root, w[1]), w.get(2).map(|b| at(root, b)));
    match w[0] {
        "write" => code(fs::write(a, b"x")),
        "mkdir" => code(fs::create_dir(a)),
        "stat" => code(fs::metadata(a)),
        "rename" => code(fs::rename(a, b.expect("rename takes two names"))),
        "rmdir" => code(fs::remove_dir(a)),
        "unlink" => code(fs::remove_file(a)),
        op => panic!("data/names.txt: unknown operation {op}"),
    }
}

#[test]
fn names_limits_and_renames_answer_as_a_local_file_system() {
    let c = Cluster::start(1, TWO_NODES, &[]);
    let mut differ = vec![];
    let cases = include_str!("../data/names.txt")
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty());
    let mut ran = 0;
    for (i, case) in cases.enumerate() {
        ran += 1;
        let lfs = c.node(0).path(&format!("case{i}"));
        let local = c.dir.path().join(format!("local{i}"));
        for root in [&lfs, &local] {
            fs::create_dir(root).unwrap();
            make_tree(root);
        }
        let (got, want) = (run(&lfs, case), run(&local, case));
        let (tree_got, tree_want) = (tree(&lfs), tree(&local));
        if got != want || tree_got != tree_want {
            differ.push(format!(
                "{case}: errno {got} on /lfs, {want} locally; tree {tree_got:?} on /lfs, {tree_want:?} locally"
            ));
        }
    }
    assert_eq!(ran, 18, "the cases of data/names.txt");
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}
