//! A real Librarian for tests: a database made by the real `book-register` in a temp directory, and
//! the real `librarian` binary serving it on a free loopback port.
#![allow(dead_code)]

use lfs_proto::client::{Client, ClientError};
use lfs_proto::Command as Wire;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const FOUR_NODES: &str =
    "[global]\nnode_count = 4\nbook_size_bytes = 8M\nnvm_size_per_node = 64B\n";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Server {
    pub child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub extra_args: Vec<String>,
}

/// Registers `ini` into a fresh database with the real `book-register`.
pub fn register(dir: &Path, ini: &str) -> PathBuf {
    let cfg = dir.join("topology.ini");
    std::fs::write(&cfg, ini).unwrap();
    let db = dir.join("librarian.db");
    let out = Command::new(env!("CARGO_BIN_EXE_book-register"))
        .arg("-d")
        .arg(&db)
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "book-register failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    db
}

impl Server {
    pub fn start(ini: &str) -> Server {
        Self::start_with(ini, &[])
    }

    pub fn start_with(ini: &str, args: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let db = register(dir.path(), ini);
        let mut s = Server {
            child: None,
            port: free_port(),
            dir,
            db,
            extra_args: args.iter().map(|s| s.to_string()).collect(),
        };
        s.launch();
        s
    }

    /// Starts (or restarts) the server process and waits until it accepts connections.
    pub fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("librarian.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_librarian"))
            .arg("--db-file")
            .arg(&self.db)
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--verbose")
            .arg("1")
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
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
        std::fs::read_to_string(self.dir.path().join("librarian.log")).unwrap_or_default()
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
        let out = Command::new(env!("CARGO_BIN_EXE_fsck-lfs"))
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
