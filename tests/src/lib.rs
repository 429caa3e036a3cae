//! Harness for full-stack tests: a real Librarian process on a real socket, real `lfs-node`
//! daemons with real FUSE mounts sharing one FAM file. Everything is torn down by `Drop`, also when
//! a test fails: daemons get SIGTERM (then SIGKILL), and mounts still present are detached.
//!
//! Binaries are taken from `$FAME_BIN_DIR`, else from the directory above the test executable
//! (`target/debug/deps/..`). Build them first:
//!
//! ```text
//! cargo build --workspace --bins && cargo test -p fame-tests
//! ```

pub mod chromium;
pub mod docker;

use lfs_proto::Command as Wire;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Two nodes of 32 books of 8 MiB: 512 MiB of FAM, small enough to fill in a test.
pub const TWO_NODES: &str =
    "[global]\nnode_count = 2\nbook_size_bytes = 8M\nnvm_size_per_node = 32B\n";
pub const BOOK: u64 = 8 << 20;

pub use lfs_test_support::{bin, bin_dir, free_port, run_ok, spawn_logged, wait_for};

fn sigterm_and_reap(child: &mut Child, grace: Duration) -> Option<std::process::ExitStatus> {
    // SAFETY: kill(2) of our own child, not yet reaped, with a valid signal.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The real Librarian serving a database made by the real `book-register`.
pub use lfs_test_support::Server as Librarian;

pub fn is_mounted(mnt: &Path) -> bool {
    let want = mnt.to_str().unwrap().replace(' ', "\\040");
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// Aborts the FUSE connection of the mount at `mnt` through fusectl (what frees a process stuck
/// for good in a request to a dead daemon's mount). Returns whether it found one to abort.
pub fn abort_fuse_connection(mnt: &Path) -> bool {
    let want = mnt.to_str().unwrap().replace(' ', "\\040");
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Some(minor) = info.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.get(4) == Some(&want.as_str()))
            .then(|| f.get(2)?.split(':').nth(1).map(str::to_string))?
    }) else {
        return false;
    };
    let dir = Path::new("/sys/fs/fuse/connections");
    if !dir.join(&minor).exists() {
        let _ = Command::new("mount")
            .args(["-t", "fusectl", "fusectl"])
            .arg(dir)
            .stderr(Stdio::null())
            .status();
    }
    std::fs::write(dir.join(&minor).join("abort"), "1").is_ok()
}

/// Detaches whatever is still mounted at `mnt`.
pub fn force_unmount(mnt: &Path) {
    for _ in 0..5 {
        if !is_mounted(mnt) {
            return;
        }
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(mnt)
            .stderr(Stdio::null())
            .status();
        if is_mounted(mnt) {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(mnt)
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// One `lfs-node` daemon.
pub struct Node {
    child: Option<Child>,
    pub mnt: PathBuf,
    pub node_id: i64,
    pub log: PathBuf,
    pid_file: PathBuf,
    args: Vec<String>,
}

impl Node {
    /// Starts a daemon and waits until its mount answers (its pid file appears).
    pub fn start(dir: &Path, port: u16, fam: &Path, node_id: i64, extra: &[&str]) -> Node {
        let mnt = dir.join(format!("node{node_id}"));
        std::fs::create_dir_all(&mnt).unwrap();
        let mut args = vec![
            "--mountpoint".to_string(),
            mnt.display().to_string(),
            "--hostname".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
            "--node-id".into(),
            node_id.to_string(),
            "--fam".into(),
            fam.display().to_string(),
            "--verbose".into(),
            "1".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut n = Node {
            child: None,
            log: dir.join(format!("node{node_id}.log")),
            pid_file: dir.join(format!("node{node_id}.pid")),
            mnt,
            node_id,
            args,
        };
        n.launch();
        n
    }

    pub fn launch(&mut self) {
        let _ = std::fs::remove_file(&self.pid_file);
        let child = spawn_logged(
            Command::new(bin("lfs-node"))
                .args(&self.args)
                .arg("--pid-file")
                .arg(&self.pid_file),
            &self.log,
        );
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.pid_file.exists() {
            if let Some(s) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!(
                    "lfs-node {} exited early ({s}): {}",
                    self.node_id,
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "lfs-node {} did not come up: {}",
                self.node_id,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM; returns whether it exited cleanly (status 0) within the grace period.
    pub fn stop(&mut self) -> bool {
        match self.child.take() {
            Some(mut c) => {
                matches!(sigterm_and_reap(&mut c, Duration::from_secs(15)), Some(s) if s.success())
            }
            None => true,
        }
    }

    /// SIGKILL, leaving the mount behind as a crashed daemon would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
        force_unmount(&self.mnt);
    }
}

/// One Librarian, one FAM file and `n` nodes (node ids 1..=n) in a temporary directory.
pub struct Cluster {
    // Field order is drop order: nodes unmount before the Librarian and the directory go.
    pub nodes: Vec<Node>,
    pub lib: Librarian,
    pub fam: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start(n: usize, ini: &str, extra: &[&str]) -> Cluster {
        let mut dir = tempfile::Builder::new()
            .prefix("fame-test")
            .tempdir()
            .unwrap();
        // FAME_KEEP=1 keeps the directory (logs, database) for a post-mortem.
        if std::env::var_os("FAME_KEEP").is_some() {
            dir.disable_cleanup(true);
            eprintln!("keeping {}", dir.path().display());
        }
        let lib = Librarian::start_in(dir.path(), ini, &[]);
        let fam = dir.path().join("fam");
        let f = std::fs::File::create(&fam).unwrap();
        let mut c = lib.client(1);
        let stats = c.call(Wire::GetFsStats, serde_json::json!({})).unwrap();
        f.set_len(stats["nvm_bytes_total"].as_u64().unwrap())
            .unwrap();
        let nodes = (1..=n as i64)
            .map(|id| Node::start(dir.path(), lib.port, &fam, id, extra))
            .collect();
        Cluster {
            nodes,
            lib,
            fam,
            dir,
        }
    }

    pub fn two(extra: &[&str]) -> Cluster {
        Cluster::start(2, TWO_NODES, extra)
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// Free books as `statfs` on node `i` reports them.
    pub fn free_books(&self, i: usize) -> u64 {
        let s = nix_statfs(&self.nodes[i].mnt);
        s.0 * s.1 / BOOK
    }

    /// Waits until every book is free again (pending zeroing done).
    pub fn wait_all_free(&self, total_books: u64) {
        wait_for(
            "freed books to be zeroed and returned",
            Duration::from_secs(60),
            || self.free_books(0) == total_books,
        );
    }
}

/// (free blocks, block size) of a mount.
pub fn nix_statfs(p: &Path) -> (u64, u64) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: statvfs is a plain C struct for which all-zero bytes are a valid value.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a NUL-terminated path and s a valid, writable statvfs.
    let r = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
    assert_eq!(
        r,
        0,
        "statvfs {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
    (s.f_bavail, s.f_frsize)
}

/// The errno of an io::Error, for assertions.
pub fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

/// Runs `lfs-node` with arguments (a tool); returns (exit code, stdout, stderr).
pub fn lfs_node(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin("lfs-node")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Seeded pattern bytes, the same as `lfs-node fill`.
pub fn pattern(seed: u64, pos: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    lfs_node::pattern::fill(seed, pos, &mut v);
    v
}

/// `tests/c/plain_mmap.c`, an unmodified program that shares memory through plain mmap of a file
/// (the tests of liblfs_preload.so run it on every backend), built with `cc` into `dir`.
pub fn plain_mmap(dir: &Path) -> PathBuf {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("c/plain_mmap.c");
    let exe = dir.join("plain_mmap");
    run_ok(
        &format!("cc {} (build-essential)", src.display()),
        Command::new("cc")
            .args(["-O2", "-Wall", "-Werror", "-o"])
            .arg(&exe)
            .arg(&src),
    );
    exe
}

/// A copy of the host's Python 3 in `dir` that runs where Python is not installed (a container
/// node: busybox and fame's binaries): the interpreter, the libraries `ldd` names for it, and its
/// standard library. Returns the interpreter and the environment it needs there.
pub fn portable_python(dir: &Path) -> (PathBuf, Vec<(String, String)>) {
    let host = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("python3"));
    let out = Command::new(&host)
        .args([
            "-S",
            "-c",
            "import sys, sysconfig; print(sys.executable); print(sysconfig.get_paths()['stdlib'])",
        ])
        .output()
        .expect("python3 (scripts/setup.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let (exe, stdlib) = (
        std::fs::canonicalize(lines.next().unwrap()).unwrap(),
        PathBuf::from(lines.next().unwrap()),
    );
    let root = dir.join("python");
    let (bin, libs, lib) = (root.join("bin"), root.join("libs"), root.join("lib"));
    for d in [&bin, &libs, &lib] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::copy(&exe, bin.join("python3")).unwrap();
    let ldd = Command::new("ldd").arg(&exe).output().unwrap();
    for l in String::from_utf8_lossy(&ldd.stdout).lines() {
        if let Some(p) = l
            .split("=>")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
        {
            let p = Path::new(p);
            std::fs::copy(p, libs.join(p.file_name().unwrap())).unwrap();
        }
    }
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&stdlib)
        .arg(&lib)
        .status()
        .unwrap();
    assert!(cp.success(), "cannot copy {}", stdlib.display());
    let _ = std::fs::remove_dir_all(lib.join(stdlib.file_name().unwrap()).join("test"));
    let env = vec![
        ("PYTHONHOME".to_string(), root.display().to_string()),
        ("LD_LIBRARY_PATH".to_string(), libs.display().to_string()),
    ];
    (bin.join("python3"), env)
}
