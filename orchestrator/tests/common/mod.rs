//! Helpers of the `fame` tests: a private FAME_HOME per test, the real `fame` binary, and checks
//! that nothing of a cluster is left in `/proc`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

pub const FAME: &str = env!("CARGO_BIN_EXE_fame");

/// Variables of the user's shell that would change what `fame up` does.
pub const FAME_VARS: &[&str] = &[
    "FAME_DIR",
    "FAME_FAM",
    "FAME_HOSTBASE",
    "FAME_VCPUS",
    "FAME_VDRAM",
    "FAME_BIN_DIR",
    "FAME_LOG",
];

/// A FAME_HOME of the test's own; dropping it runs `fame down --all`, so clusters of a failed
/// test do not outlive it.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        let bin_dir = Path::new(FAME).parent().unwrap();
        for b in ["librarian", "book-register", "lfs-node"] {
            assert!(
                bin_dir.join(b).exists(),
                "{b} is missing from {}: build the workspace binaries first (cargo build --workspace --bins)",
                bin_dir.display()
            );
        }
        Home {
            dir: tempfile::Builder::new()
                .prefix("fame-home-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(FAME);
        in_home(c.args(args), self.path());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs `fame ARGS`, insists on success and returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(self.run(args), args, "")
    }

    /// Runs `fame ARGS`, insists on failure with exit status 1, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "fame {args:?} should fail; stderr:\n{err}"
        );
        err
    }

    pub fn cluster_dir(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    /// Entries of FAME_HOME (none once every cluster is down).
    pub fn entries(&self) -> Vec<String> {
        std::fs::read_dir(self.path())
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `fame down NAME`, after which nothing of the cluster (`fp`) is left, nor anything in
    /// FAME_HOME.
    pub fn down_leaves_nothing(&self, name: &str, fp: &Footprint) {
        self.ok(&["down", name]);
        assert_gone(fp);
        self.assert_empty("after down");
    }

    /// Asserts that FAME_HOME holds nothing (every cluster gone with its lock and files);
    /// `when` says at what point, for the message.
    pub fn assert_empty(&self, when: &str) {
        let left = self.entries();
        assert!(
            left.is_empty(),
            "{when}: left behind in FAME_HOME: {left:?}"
        );
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = self.run(&["down", "--all"]);
    }
}

/// A free TCP port on 127.0.0.1 (from the kernel's ephemeral range, away from 9093 and up).
#[allow(unused_imports)] // not every test binary that includes this module picks ports
pub use fame_tests::free_port;

/// `(state, start time)` of a pid, from `/proc/PID/stat`.
fn stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f[0].chars().next()?, f[19].parse().ok()?))
}

/// Alive and the same process (a zombie holds no namespace, mount or file: it counts as gone).
pub fn alive(pid: i32, start: u64) -> bool {
    matches!(stat(pid), Some((s, t)) if t == start && s != 'Z' && s != 'X')
}

pub fn pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// What a running cluster consists of, read from its state file and `/proc`.
#[derive(Debug)]
pub struct Footprint {
    pub dir: PathBuf,
    /// (pid, start time) of the Librarian, the LMP and every node daemon.
    pub procs: Vec<(i32, u64)>,
    /// `mnt:[…]` and `uts:[…]` of every node.
    pub namespaces: Vec<PathBuf>,
}

pub fn state(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap()
}

pub fn footprint(dir: &Path) -> Footprint {
    let st = state(dir);
    let mut procs = vec![];
    let mut namespaces = vec![];
    let as_proc = |v: &serde_json::Value| {
        Some((
            v.get("pid")?.as_i64()? as i32,
            v.get("start_time")?.as_u64()?,
        ))
    };
    for service in ["librarian", "lmp"] {
        if let Some(p) = as_proc(&st[service]) {
            procs.push(p);
        }
    }
    for n in st["nodes"].as_array().unwrap() {
        if let Some((pid, start)) = as_proc(&n["handle"]) {
            procs.push((pid, start));
            if alive(pid, start) {
                for kind in ["mnt", "uts"] {
                    let ns = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap();
                    assert_ne!(
                        ns,
                        std::fs::read_link(format!("/proc/self/ns/{kind}")).unwrap(),
                        "a node must have its own {kind} namespace"
                    );
                    namespaces.push(ns);
                }
            }
        }
    }
    Footprint {
        dir: dir.to_path_buf(),
        procs,
        namespaces,
    }
}

/// Nothing of the cluster is left: no process (recorded, marked, or inside a node's
/// namespaces), no namespace, no mount in any mount table, no directory.
///
/// A process is reported only if it is still there, the same way, 2 s later: a process of
/// another test's cluster can pass for one of ours for a moment (a `fame exec` that has entered
/// a node whose namespace got a number one of ours had, but has not yet exec'd and so does not
/// carry its cluster's mark), and a leftover of ours does not go away by itself.
pub fn assert_gone(fp: &Footprint) {
    for &(pid, start) in &fp.procs {
        assert!(
            !alive(pid, start),
            "process {pid} of {} is still running",
            fp.dir.display()
        );
    }
    let mut suspects = leftovers(fp);
    for _ in 0..10 {
        if suspects.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        let now = leftovers(fp);
        suspects.retain(|s| now.contains(s));
    }
    assert!(
        suspects.is_empty(),
        "{}",
        suspects
            .iter()
            .map(|s| s.2.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains(fp.dir.to_string_lossy().as_ref()),
        "a mount is left under {}",
        fp.dir.display()
    );
    assert!(!fp.dir.exists(), "{} is left", fp.dir.display());
}

/// Processes that look like leftovers of the cluster: (pid, start time, what is wrong).
fn leftovers(fp: &Footprint) -> Vec<(i32, u64, String)> {
    let mut out = vec![];
    let marker = format!("FAME_CLUSTER_DIR={}", fp.dir.display()).into_bytes();
    for pid in pids() {
        let Some((s, start)) = stat(pid) else {
            continue;
        };
        if s == 'Z' || s == 'X' {
            continue;
        }
        let mut report = |what: String| out.push((pid, start, what));
        if let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) {
            if env.split(|&b| b == 0).any(|v| v == marker.as_slice()) {
                report(format!(
                    "process {pid} of {} is still running",
                    fp.dir.display()
                ));
            }
        }
        // Namespace numbers are reused once freed: a process of another cluster, or any other
        // process with namespaces of its own, may be in a namespace with a number one of ours
        // had. Only a process inside a node (its root is a node's tmpfs) and not marked as part
        // of another cluster counts.
        let other_cluster = std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
            env.split(|&b| b == 0)
                .any(|v| v.starts_with(b"FAME_CLUSTER_DIR=") && v != marker.as_slice())
        });
        let in_a_node = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).is_ok_and(|mi| {
            mi.lines().any(|l| {
                l.split(' ').nth(4) == Some("/")
                    && l.split(" - ")
                        .nth(1)
                        .is_some_and(|r| r.starts_with("tmpfs fame-node"))
            })
        });
        let other_cluster = other_cluster || !in_a_node;
        for kind in ["mnt", "uts"] {
            if let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")) {
                if !other_cluster && fp.namespaces.contains(&ns) {
                    report(format!("process {pid} is still in a node namespace {ns:?}"));
                }
            }
        }
        if let Ok(mi) = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")) {
            let dir = fp.dir.to_string_lossy();
            if mi.lines().any(|l| {
                l.split(' ')
                    .nth(4)
                    .is_some_and(|m| m.starts_with(dir.as_ref()))
            }) {
                report(format!("process {pid} still sees a mount under {dir}"));
            }
        }
    }
    out
}

/// Insists that `fame ARGS` succeeded (`more`: what else to show if not); returns its stdout.
pub fn succeeded(out: Output, args: &[&str], more: &str) -> String {
    assert!(
        out.status.success(),
        "fame {args:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}{more}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The first line a child writes on its (piped) stdout: a command saying it is ready.
pub fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("a piped stdout")),
        &mut line,
    )
    .unwrap();
    line
}

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// How many scenarios the project ships (`scenarios/*.toml`).
pub fn shipped_scenarios() -> usize {
    std::fs::read_dir(workspace().join("scenarios"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
        .count()
}

/// The end of the cross-node mmap check: node01's storer (which stored 777 at offset 4104 of
/// its mapping and holds it until `hold` exists) is let go and must succeed, and what node02's
/// Python read meanwhile (`seen`) must be that store.
pub fn release_and_check(hold: &Path, storer: &mut Child, seen: &str) {
    std::fs::write(hold, "").unwrap();
    assert!(storer.wait().unwrap().success());
    assert_eq!(
        seen.trim(),
        "777",
        "Python on node02 did not see node01's store"
    );
}

/// `fame scenario run` of the shipped suite, two at a time, with its JUnit file and report
/// directory, and `extra` flags (`--backend container`).
pub fn shipped_suite_args(junit: &Path, report: &Path, extra: &[&str]) -> Vec<String> {
    let suite = workspace().join("scenarios");
    let mut args: Vec<String> = ["scenario", "run", "--jobs", "2", "--junit"]
        .map(String::from)
        .into();
    args.push(junit.display().to_string());
    args.push("--report-dir".into());
    args.push(report.display().to_string());
    args.push(suite.display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The words of a command line without quoting (`"up --nodes 2"`), for `fame` arguments.
pub fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Runs `c` with `home` as its FAME_HOME and none of the caller's other `FAME_*` settings.
pub fn in_home<'c>(c: &'c mut Command, home: &Path) -> &'c mut Command {
    for v in FAME_VARS {
        c.env_remove(v);
    }
    c.env("FAME_HOME", home)
}
