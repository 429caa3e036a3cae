//! Randomized operation sequences over two mounts against an in-memory model: thousands of
//! create / write / truncate / read / rename / unlink operations, each on a random node, and
//! every read compared byte for byte with the model.
//!
//! `LFS_MODEL_SEED` and `LFS_MODEL_OPS` replay or lengthen a run.

use fame_tests::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

const NAMES: [&str; 8] = ["a", "b", "c", "d", "dir/e", "dir/f", "dir/g", "h"];
/// Small books, so that files cross book boundaries often while reads stay cheap.
const SMALL_BOOK: u64 = 2 << 20;
const POOL: &str = "[global]\nnode_count = 2\nbook_size_bytes = 2M\nnvm_size_per_node = 32B\n";
/// Files stay within one and a half books so that the 64-book pool never runs out.
const MAX_SIZE: u64 = SMALL_BOOK + SMALL_BOOK / 2;

/// Opens `path` to write at an offset or resize, creating it if missing and keeping what it
/// holds (the model's file is the same bytes).
fn open_to_write(path: &Path) -> fs::File {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn random_operations_match_the_model() {
    let seed = env_u64("LFS_MODEL_SEED").unwrap_or_else(rand::random);
    let ops = env_u64("LFS_MODEL_OPS").unwrap_or(3000);
    eprintln!("LFS_MODEL_SEED={seed} LFS_MODEL_OPS={ops}");
    let mut rng = StdRng::seed_from_u64(seed);
    let c = Cluster::start(2, POOL, &[]);
    fs::create_dir(c.node(0).path("dir")).unwrap();
    let mut model: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    let mut counts = BTreeMap::new();

    for step in 0..ops {
        let node = c.node(rng.gen_range(0..2));
        let name = NAMES[rng.gen_range(0..NAMES.len())];
        let path = node.path(name);
        let ctx = |what: &str| {
            format!(
                "seed {seed}, step {step}: {what} {name} on node {}",
                node.node_id
            )
        };
        let op = rng.gen_range(0..100);
        let kind = match op {
            0..=29 => {
                // write at a random offset (possibly past the end: a hole of zeros)
                let cur = model.get(name).map_or(0, |v| v.len() as u64);
                let off = rng
                    .gen_range(0..=cur.min(MAX_SIZE - 1) + 4096)
                    .min(MAX_SIZE - 1);
                let len = rng.gen_range(1..=(MAX_SIZE - off).min(100_000)) as usize;
                let mut data = vec![0u8; len];
                rng.fill(&mut data[..]);
                let f = open_to_write(&path);
                f.write_all_at(&data, off)
                    .unwrap_or_else(|e| panic!("{}: {e}", ctx("write")));
                let m = model.entry(name).or_default();
                if m.len() < off as usize + len {
                    m.resize(off as usize + len, 0);
                }
                m[off as usize..off as usize + len].copy_from_slice(&data);
                "write"
            }
            30..=44 => {
                let size = rng.gen_range(0..=MAX_SIZE);
                let f = open_to_write(&path);
                f.set_len(size)
                    .unwrap_or_else(|e| panic!("{}: {e}", ctx("truncate")));
                model.entry(name).or_default().resize(size as usize, 0);
                "truncate"
            }
            45..=69 => {
                match fs::read(&path) {
                    Ok(got) => {
                        let want = model.get(name).unwrap_or_else(|| {
                            panic!("{}: exists but the model has no such file", ctx("read"))
                        });
                        assert_eq!(got.len(), want.len(), "{}: length", ctx("read"));
                        if got != *want {
                            let i = got.iter().zip(want).position(|(a, b)| a != b).unwrap();
                            panic!("{}: first mismatch at offset {i}", ctx("read"));
                        }
                    }
                    Err(e) => {
                        assert_eq!(errno(&e), libc::ENOENT, "{}", ctx("read"));
                        assert!(!model.contains_key(name), "{}: file missing", ctx("read"));
                    }
                }
                "read"
            }
            70..=74 => {
                // a partial read through an open handle at a random offset
                if let Some(want) = model.get(name) {
                    let mut f = fs::File::open(&path).unwrap();
                    let off = rng.gen_range(0..=want.len());
                    let len = rng.gen_range(0..=100_000usize);
                    f.seek(SeekFrom::Start(off as u64)).unwrap();
                    let mut got = vec![];
                    Read::by_ref(&mut f)
                        .take(len as u64)
                        .read_to_end(&mut got)
                        .unwrap();
                    let end = (off + len).min(want.len());
                    assert!(
                        got == want[off..end],
                        "{}: partial read at {off}",
                        ctx("pread")
                    );
                }
                "pread"
            }
            75..=84 => {
                let to = NAMES[rng.gen_range(0..NAMES.len())];
                let r = fs::rename(&path, node.path(to));
                match model.remove(name) {
                    Some(v) => {
                        r.unwrap_or_else(|e| panic!("{}: to {to}: {e}", ctx("rename")));
                        model.insert(to, v);
                    }
                    None => assert_eq!(errno(&r.unwrap_err()), libc::ENOENT, "{}", ctx("rename")),
                }
                "rename"
            }
            85..=94 => {
                let r = fs::remove_file(&path);
                match model.remove(name) {
                    Some(_) => r.unwrap_or_else(|e| panic!("{}: {e}", ctx("unlink"))),
                    None => assert_eq!(errno(&r.unwrap_err()), libc::ENOENT, "{}", ctx("unlink")),
                }
                "unlink"
            }
            _ => {
                // append through an open handle
                let mut f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .unwrap();
                let mut data = vec![0u8; rng.gen_range(1..10_000)];
                rng.fill(&mut data[..]);
                let m = model.entry(name).or_default();
                if m.len() + data.len() <= MAX_SIZE as usize {
                    f.write_all(&data)
                        .unwrap_or_else(|e| panic!("{}: {e}", ctx("append")));
                    m.extend_from_slice(&data);
                }
                "append"
            }
        };
        *counts.entry(kind).or_insert(0u32) += 1;
    }

    // Both nodes agree with the model at the end, names and contents.
    for node in &c.nodes {
        let mut listed: Vec<String> = fs::read_dir(&node.mnt)
            .unwrap()
            .chain(fs::read_dir(node.path("dir")).unwrap())
            .map(|e| {
                e.unwrap()
                    .path()
                    .strip_prefix(&node.mnt)
                    .unwrap()
                    .display()
                    .to_string()
            })
            .filter(|n| n != "dir" && n != "lost+found")
            .collect();
        listed.sort();
        let expect: Vec<String> = model.keys().map(|k| k.to_string()).collect();
        assert_eq!(
            listed, expect,
            "seed {seed}: directory listing on node {}",
            node.node_id
        );
        for (name, want) in &model {
            let got = fs::read(node.path(name)).unwrap();
            assert!(
                got == *want,
                "seed {seed}: final contents of {name} on node {}",
                node.node_id
            );
        }
    }
    eprintln!("operations: {counts:?}");
}
