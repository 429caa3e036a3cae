//! What the workspace's tests share (a dev-dependency only): the workspace's binaries found in
//! the target directory, a real Librarian (a database made by the real `book-register` in a temp
//! directory, served by the real `librarian` binary on loopback), the real `fsck-lfs`, and
//! waiting for an event instead of sleeping; and [`fsck`], the database fsck's tests damage.

pub mod fsck;

use lfs_proto::client::{Client, ClientError};
use lfs_proto::Command as Wire;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const FOUR_NODES: &str =
    "[global]\nnode_count = 4\nbook_size_bytes = 8M\nnvm_size_per_node = 64B\n";

/// The directory of the workspace's binaries: the target directory this test runs from
/// (`FAME_BIN_DIR` overrides it).
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FAME_BIN_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("exe has a directory");
    // target/debug/deps/<test> -> target/debug; target/debug/<bench binary> -> target/debug
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("deps has a parent").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// A workspace binary, with a clear message when it has not been built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace's binaries first with `cargo build --workspace --bins` (same target dir), or set FAME_BIN_DIR",
        p.display()
    );
    p
}

/// A TCP port for a test that must name one itself (`fame up --port`), where the program
/// cannot pick and report its own (which is the way wherever it can: `librarian --port 0
/// --port-file`). It is drawn at random from 20000-29999, outside both the kernel's ephemeral
/// range (32768-60999), from which every outgoing connection takes its local port, and the
/// ports fame picks (9093 up, 31179 up), and is free when drawn; a bind-and-drop port from the
/// ephemeral range could be taken by any connection before the test uses it.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    loop {
        // A random number without a dependency: std's hasher keys are random per process.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let port = 20000 + (h.finish() % 10000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Waits until `ok` holds, checking every 20 ms, for at most `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct Server {
    pub child: Option<Child>,
    pub port: u16,
    /// Where the database, the log and the port file are.
    pub dir: PathBuf,
    /// The temporary directory `dir` is, when the server made it.
    _tmp: Option<tempfile::TempDir>,
    pub db: PathBuf,
    pub extra_args: Vec<String>,
}

/// Registers `ini` into a fresh database with the real `book-register`.
pub fn register(dir: &Path, ini: &str) -> PathBuf {
    let cfg = dir.join("topology.ini");
    std::fs::write(&cfg, ini).unwrap();
    let db = dir.join("librarian.db");
    run_ok(
        "book-register",
        Command::new(bin("book-register"))
            .arg("-d")
            .arg(&db)
            .arg(&cfg),
    );
    db
}

/// Runs `cmd` to the end; it must succeed, or the panic names `what` and shows its stderr.
pub fn run_ok(what: &str, cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Starts `cmd` in the background, its stdout discarded and its stderr appended to the file
/// `log`, where a test that fails shows it from.
pub fn spawn_logged(cmd: &mut Command, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    cmd.stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

impl Server {
    pub fn start(ini: &str) -> Server {
        Self::start_with(ini, &[])
    }

    pub fn start_with(ini: &str, args: &[&str]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Server::start_in(tmp.path(), ini, args);
        s._tmp = Some(tmp);
        s
    }

    /// As [`start_with`](Self::start_with), with the database, log and port file in `dir`,
    /// which the caller keeps.
    pub fn start_in(dir: &Path, ini: &str, args: &[&str]) -> Server {
        let db = register(dir, ini);
        let mut s = Server {
            child: None,
            port: 0,
            dir: dir.to_path_buf(),
            _tmp: None,
            db,
            extra_args: args.iter().map(|s| s.to_string()).collect(),
        };
        s.launch();
        s
    }

    /// Starts (or restarts) the server process and waits until it accepts connections.
    pub fn launch(&mut self) {
        // The first start lets the server pick a free port and report it (no race with other
        // tests for a port); a restart takes the same port again, for the clients to reconnect.
        let port_file = self.dir.join("librarian.port");
        let _ = std::fs::remove_file(&port_file);
        let child = spawn_logged(
            Command::new(bin("librarian"))
                .arg("--db-file")
                .arg(&self.db)
                .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
                .arg("--port-file")
                .arg(&port_file)
                .args(["--verbose", "1"])
                .args(&self.extra_args),
            &self.dir.join("librarian.log"),
        );
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let listening = |port_file: &Path| {
            std::fs::read_to_string(port_file)
                .ok()
                .and_then(|t| t.trim().parse::<u16>().ok())
        };
        loop {
            if let Some(port) = listening(&port_file) {
                self.port = port;
                break;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("librarian exited early ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "librarian did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("librarian.log")).unwrap_or_default()
    }

    /// The server process's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn client(&self, node_id: i64) -> Client {
        let c = Client::connect(("127.0.0.1", self.port), node_id).unwrap();
        c.set_timeout(Some(Duration::from_secs(30))).unwrap();
        c
    }

    pub fn raw(&self) -> std::net::TcpStream {
        let s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) of our own child, not yet reaped, with a valid signal.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let status = c.wait().unwrap();
            assert!(status.success(), "librarian exited with {status}");
        }
    }

    /// Runs the real `fsck-lfs` in report mode and returns (exit code, output).
    pub fn fsck(&self) -> (i32, String) {
        let out = Command::new(bin("fsck-lfs"))
            .arg(&self.db)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    pub fn sql(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.db).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Asserts a call fails with `errno`, returning the message.
pub fn expect_err(r: Result<Value, ClientError>, errno: i32) -> String {
    match r {
        Err(ClientError::Remote { errno: e, msg }) => {
            assert_eq!(e, errno, "wrong errno, message: {msg}");
            msg
        }
        other => panic!("expected errno {errno}, got {other:?}"),
    }
}

/// Each call of `cases` (a command, its parameters and an errno) must fail with its errno; a
/// failure names the call.
pub fn expect_errs(c: &mut Client, cases: &[(Wire, Value, i32)]) {
    for (command, params, errno) in cases {
        match c.call(*command, params.clone()) {
            Err(ClientError::Remote { errno: e, msg }) => {
                assert_eq!(
                    e, *errno,
                    "{command:?} {params}: wrong errno, message: {msg}"
                )
            }
            other => panic!("{command:?} {params}: expected errno {errno}, got {other:?}"),
        }
    }
}

/// The `name` of every entry of a JSON list (a directory listing, of the Librarian or the LMP).
pub fn names(list: &Value) -> Vec<&str> {
    let entries = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"));
    entries
        .iter()
        .map(|e| e["name"].as_str().unwrap_or_else(|| panic!("no name: {e}")))
        .collect()
}

pub fn create(c: &mut Client, path: &str) -> Value {
    c.call(Wire::CreateShelf, json!({"path": path, "mode": 0o100644}))
        .unwrap()
}

pub fn resize(c: &mut Client, path: &str, id: i64, size: i64) -> Result<Value, ClientError> {
    c.call(
        Wire::ResizeShelf,
        json!({"path": path, "id": id, "size_bytes": size, "zero_enabled": true}),
    )
}
