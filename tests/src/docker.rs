//! A Docker engine of a test's own: `dockerd` started in a new network namespace (and a private
//! mount namespace) that the test made, with its data, exec root and socket in a temporary
//! directory. Container traffic stays in that namespace (the machine's rule for tests), the
//! engine's mounts never show on the host, and `Drop` removes every container, stops the
//! engine and deletes its files, also when the test fails.
//!
//! Programs that must reach the engine's container networks (a `fame` whose Librarian listens on
//! a cluster network's gateway) run inside the namespace through [`TestEngine::command`]; the
//! Engine API itself is a unix socket, reachable from anywhere ([`TestEngine::host`]).
//!
//! The engine is started by `scripts/dockerd.sh --dir DIR --own-netns`, the script the README
//! gives for machines without systemd. Needs root, `dockerd` (Debian's `docker.io`) and
//! `unshare`/`nsenter` (util-linux); scripts/setup.sh installs them. A missing piece fails the
//! test with the fix, never skips it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TestEngine {
    dir: tempfile::TempDir,
    dockerd: Child,
}

impl TestEngine {
    /// Starts an engine and waits (up to 60 s) until it answers.
    pub fn start() -> TestEngine {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/dockerd.sh");
        let dir = tempfile::Builder::new()
            .prefix("fame-test-docker-")
            .tempdir_in("/var/tmp")
            .expect("a directory for the test engine");
        let d = dir.path();
        let log = std::fs::File::create(d.join("dockerd.log")).expect("dockerd.log");
        // The script execs `unshare` which execs dockerd: the child is the engine itself.
        let child = Command::new("bash")
            .arg(&script)
            .arg("--dir")
            .arg(d)
            .arg("--own-netns")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("cannot run bash");
        let mut engine = TestEngine {
            dir,
            dockerd: child,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if engine.answers() {
                break;
            }
            if let Ok(Some(status)) = engine.dockerd.try_wait() {
                panic!(
                    "the test's dockerd exited ({status}):\n{}",
                    engine.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the test's dockerd did not answer within 60 s:\n{}",
                engine.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        engine
    }

    /// `unix:///...docker.sock`: the engine's address for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    /// The network namespace the engine runs in (`/proc/PID/ns/net` of its dockerd).
    pub fn netns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.dockerd.id()))
    }

    /// `program` run inside the engine's network namespace, with `DOCKER_HOST` set to it.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.netns().display()))
            .arg("--")
            .arg(program)
            .env("DOCKER_HOST", self.host());
        c
    }

    /// Whether the engine answers `GET /_ping` on its socket.
    fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::os::unix::net::UnixStream::connect(self.socket()) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        buf[..n].starts_with(b"HTTP/1.0 200") || buf[..n].starts_with(b"HTTP/1.1 200")
    }

    /// The last lines of the engine's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Names of every container the engine has (any state).
    pub fn containers(&self) -> Vec<String> {
        self.api_list("/containers/json?all=1", "Names")
    }

    /// Names of the engine's networks other than its defaults (bridge, host, none).
    pub fn networks(&self) -> Vec<String> {
        self.api_list("/networks", "Name")
            .into_iter()
            .filter(|n| !["bridge", "host", "none"].contains(&n.as_str()))
            .collect()
    }

    /// A GET on the Engine API returning a JSON array; the `field` of each element (the first
    /// entry of an array field, without its leading '/').
    fn api_list(&self, path: &str, field: &str) -> Vec<String> {
        use std::io::{Read, Write};
        let mut s =
            std::os::unix::net::UnixStream::connect(self.socket()).expect("the test engine");
        write!(s, "GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").expect("request");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("response");
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        let v: serde_json::Value = serde_json::from_str(body).expect("JSON from the engine");
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| match &e[field] {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Array(a) => a.first().and_then(|n| n.as_str()).map(String::from),
                _ => None,
            })
            .map(|n| n.trim_start_matches('/').to_string())
            .collect()
    }

    /// Runs `docker`-free cleanup through the API: removes every container.
    fn remove_all_containers(&self) {
        use std::io::{Read, Write};
        let ids = self.api_list("/containers/json?all=1", "Id");
        for id in ids {
            if let Ok(mut s) = std::os::unix::net::UnixStream::connect(self.socket()) {
                let _ = write!(
                    s,
                    "DELETE /containers/{id}?force=1&v=1 HTTP/1.0\r\nHost: docker\r\n\r\n"
                );
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink);
            }
        }
    }
}

impl Drop for TestEngine {
    fn drop(&mut self) {
        if self.answers() {
            self.remove_all_containers();
        }
        // SIGTERM, then SIGKILL after 20 s.
        // SAFETY: kill(2) of our own child, not yet reaped, with a valid signal.
        unsafe {
            libc::kill(self.dockerd.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.dockerd.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.dockerd.kill();
        let _ = self.dockerd.wait();
        // Its containerd and shims, which the engine started, end with their containers; wait a
        // moment for them so the directory can go.
        for _ in 0..50 {
            if std::fs::remove_dir_all(self.dir.path()).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
