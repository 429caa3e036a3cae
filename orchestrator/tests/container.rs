//! The container backend against a real Docker engine: real node images, containers, networks and
//! FUSE mounts inside them. Every test has a Docker engine of its own (`TestEngine`: a dockerd in
//! a network and mount namespace of its own, removed on drop), runs the real `fame` inside that
//! network namespace (the Librarian binds a cluster network's gateway) with a FAME_HOME of its
//! own, and ends with nothing of its clusters left in the engine, in FAME_HOME or in `/proc`.
//!
//! Needs root, dockerd (`apt-get install docker.io`), /dev/fuse and the workspace binaries
//! (`cargo build --workspace --bins`).

mod common;

use common::{
    first_line, in_home, pids, release_and_check, shipped_scenarios, shipped_suite_args, succeeded,
    words, FAME,
};
use fame_tests::docker::TestEngine;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// An engine and a FAME_HOME of the test's own. Dropping it runs `fame down --all` (inside the
/// engine's namespace) before the engine goes, so the clusters of a failed test do not outlive it.
struct Ct {
    home: tempfile::TempDir,
    engine: TestEngine,
}

impl Ct {
    fn new() -> Ct {
        let bin_dir = Path::new(FAME).parent().unwrap();
        for b in ["librarian", "book-register", "lfs-node", "fsck-lfs", "lmp"] {
            assert!(
                bin_dir.join(b).exists(),
                "{b} is missing from {}: build the workspace binaries first (cargo build --workspace --bins)",
                bin_dir.display()
            );
        }
        let engine = TestEngine::start();
        let home = tempfile::Builder::new()
            .prefix("fame-home-")
            .tempdir()
            .unwrap();
        Ct { home, engine }
    }

    /// `fame ARGS` inside the engine's network namespace, with DOCKER_HOST set to it.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = self.engine.command(FAME);
        in_home(c.args(args), self.home.path());
        c
    }

    /// `fame exec --name ct NODE -- sh -c SCRIPT`.
    fn sh(&self, node: &str, script: &str) -> Command {
        self.command(&["exec", "--name", "ct", node, "--", "sh", "-c", script])
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs `fame ARGS`, insists on success and returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let more = format!("\n--- dockerd\n{}", self.engine.log_tail());
        succeeded(self.run(args), args, &more)
    }

    fn cluster_dir(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    /// Entries of FAME_HOME other than its image cache (none once every cluster is down).
    fn entries(&self) -> Vec<String> {
        entries(self.home.path())
            .into_iter()
            .filter(|n| n != "cache")
            .collect()
    }

    /// The engine has nothing of any cluster: no container, no network of its own.
    fn assert_engine_empty(&self) {
        assert!(
            self.engine.containers().is_empty(),
            "containers left: {:?}",
            self.engine.containers()
        );
        assert!(
            self.engine.networks().is_empty(),
            "networks left: {:?}",
            self.engine.networks()
        );
    }
}

impl Drop for Ct {
    fn drop(&mut self) {
        let _ = self.run(&["down", "--all"]);
    }
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Live processes (not zombies) whose command line names `dir`, or that are marked as part of
/// the cluster in `dir` (FAME_CLUSTER_DIR): the Librarian, the LMP, proxies, a `fame` of it.
fn cluster_processes(dir: &Path) -> Vec<(i32, String)> {
    let d = dir.to_string_lossy().into_owned();
    let marker = format!("FAME_CLUSTER_DIR={d}").into_bytes();
    let me = std::process::id() as i32;
    let mut out = vec![];
    for pid in pids() {
        if pid == me {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .unwrap_or("");
        if state == "Z" || state == "X" {
            continue;
        }
        let args: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        // The directory or a path under it (not `DIR2`, another cluster's).
        let names_dir = args
            .iter()
            .any(|a| a.contains(&format!("{d}/")) || a.ends_with(&d));
        let marked = std::fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == marker.as_slice()));
        if marked || names_dir {
            out.push((pid, args.join(" ")));
        }
    }
    out
}

/// `len` bytes that are not all alike (a small LCG), for checks that bytes arrive unchanged.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A failed `fame` run: exit status 1, and its stderr.
fn failed(out: &Output, what: &str) -> String {
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what} should fail with status 1;\n--- stdout\n{}\n--- stderr\n{err}",
        text(&out.stdout)
    );
    err
}

/// One clear error: the message appears once, on the line fame prints errors on.
fn assert_one_error(err: &str, needle: &str) {
    let lines: Vec<&str> = err.lines().filter(|l| l.contains(needle)).collect();
    assert_eq!(
        lines.len(),
        1,
        "one error naming {needle:?} expected:\n{err}"
    );
    assert!(lines[0].starts_with("fame: "), "{err}");
}

#[test]
fn two_container_clusters_share_fam_within_and_leave_nothing() {
    let t0 = Instant::now();
    let ct = Ct::new();

    // The node image: built offline, imported, listed.
    let tag = ct.ok(&["images", "build"]);
    let tag = tag.trim().to_string();
    assert!(tag.starts_with("fame-node:"), "{tag}");
    let ls = ct.ok(&["images"]);
    assert!(ls.contains(&tag), "{ls}");
    // Built once: a second build finds it in the engine.
    let again = ct.run(&["images", "build"]);
    assert!(again.status.success());
    assert_eq!(text(&again.stdout).trim(), tag);
    assert!(
        text(&again.stderr).contains("in the engine already"),
        "{}",
        text(&again.stderr)
    );

    // A folder both nodes see, with an unmodified C program that shares memory by plain mmap.
    let share = tempfile::tempdir().unwrap();
    let prog = fame_tests::plain_mmap(share.path());
    let out = ct.ok(&[
        "up",
        "--backend",
        "container",
        "--nodes",
        "2",
        "--fam",
        "1G",
        "--name",
        "ct",
        "--share",
        share.path().to_str().unwrap(),
    ]);
    assert!(out.contains("cluster ct is ready"), "{out}");
    let dir = ct.cluster_dir("ct");
    let mut containers = ct.engine.containers();
    containers.sort();
    assert_eq!(containers, ["fame-ct-node01", "fame-ct-node02"]);
    assert_eq!(ct.engine.networks(), ["fame-ct"]);

    // Bytes written on node01 from fame's stdin are the bytes node02 reads.
    let data = pattern(300_000, 1);
    let mut child = ct
        .sh("node01", "cat > /lfs/blob")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = ct.run(&["exec", "--name", "ct", "node02", "--", "cat", "/lfs/blob"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        out.stdout == data,
        "node02 read other bytes than node01 wrote"
    );

    // Stores through the direct map of the FAM on node01 are loads on node02.
    ct.ok(&words(
        "exec --name ct node01 -- lfs-node fill /lfs/direct.dat --seed 42 --size 16M --direct",
    ));
    ct.ok(&words(
        "exec --name ct node02 -- lfs-node verify /lfs/direct.dat --seed 42 --direct",
    ));
    // A wrong seed is caught: the check above checks.
    let out = ct.run(&words(
        "exec --name ct node02 -- lfs-node verify /lfs/direct.dat --seed 43 --direct",
    ));
    assert!(!out.status.success(), "verify with another seed passed");

    // Plain mmap of an /lfs file is FAM (the image's /etc/ld.so.preload): atomic increments from
    // both containers at once lose nothing.
    let p = prog.to_str().unwrap();
    ct.ok(&[
        "exec", "--name", "ct", "node01", "--", "truncate", "-s", "16M", "/lfs/c",
    ]);
    let flag = |f: &str| share.path().join(f).to_str().unwrap().to_string();
    let adders: Vec<_> = ["node01", "node02"]
        .iter()
        .map(|n| {
            ct.command(&[
                "exec",
                "--name",
                "ct",
                n,
                "--",
                p,
                "add",
                "/lfs/c",
                "30000",
                &flag(&format!("ready-{n}")),
                &flag("go"),
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
        })
        .collect();
    let t = Instant::now();
    while !(share.path().join("ready-node01").exists()
        && share.path().join("ready-node02").exists())
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the adders did not map the counter"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::write(share.path().join("go"), "").unwrap();
    for mut a in adders {
        assert!(a.wait().unwrap().success());
    }
    let total = ct.ok(&[
        "exec", "--name", "ct", "node02", "--", p, "load", "/lfs/c", "0",
    ]);
    assert_eq!(
        total.trim(),
        "60000",
        "increments through plain mmap were lost"
    );
    // An unmodified Python script (the host's Python, brought in through the share: the node
    // image has none) sees a C store node01 holds without msync, and stores back.
    let (python, env) = fame_tests::portable_python(share.path());
    let hold = flag("hold");
    let mut storer = ct
        .command(&[
            "exec", "--name", "ct", "node01", "--", p, "store", "/lfs/c", "4104", "777", &hold,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(first_line(&mut storer).trim(), "stored");
    let py = "import mmap, os, struct\n\
              m = mmap.mmap(os.open('/lfs/c', os.O_RDWR), 8192, mmap.MAP_SHARED)\n\
              print(struct.unpack_from('<Q', m, 4104)[0])\n\
              struct.pack_into('<Q', m, 16, 4242)\n";
    let mut args: Vec<String> = ["exec", "--name", "ct", "node02", "--", "env"]
        .map(String::from)
        .to_vec();
    args.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    args.extend([
        python.display().to_string(),
        "-S".into(),
        "-c".into(),
        py.into(),
    ]);
    let seen = ct.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    release_and_check(Path::new(&hold), &mut storer, &seen);
    let back = ct.ok(&[
        "exec", "--name", "ct", "node01", "--", p, "load", "/lfs/c", "16",
    ]);
    assert_eq!(back.trim(), "4242", "node01 did not see Python's store");

    // Exit statuses and stdin pass through; the node is itself.
    let out = ct.run(&["exec", "--name", "ct", "node01", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    let mut child = ct
        .sh("2", "tr a-z A-Z")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through stdin\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout), "THROUGH STDIN\n");
    // A signal to `fame exec` reaches the command (`docker exec` would leave it running).
    let mut child = ct
        .sh("node01", "echo started; exec sleep 300")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(first_line(&mut child), "started\n");
    // SAFETY: kill(2) of our own child, not yet reaped, with a valid signal.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let ps = ct.ok(&["exec", "--name", "ct", "node01", "--", "ps"]);
    assert!(!ps.contains("sleep 300"), "{ps}");
    assert_eq!(
        ct.ok(&["exec", "--name", "ct", "node01", "--", "hostname"]),
        "node01\n"
    );
    assert_eq!(
        ct.ok(&["exec", "--name", "ct", "node02", "--", "hostname"]),
        "node02\n"
    );
    let out = ct.run(&["exec", "--name", "ct", "node09", "--", "true"]);
    let err = failed(&out, "exec on node09");
    assert!(err.contains("has no node node09"), "{err}");

    let status = ct.ok(&["status", "ct"]);
    assert!(status.contains("cluster    ct: up"), "{status}");
    assert_eq!(status.matches(" mounted ").count(), 2, "{status}");
    let logs = ct.ok(&["logs", "ct"]);
    for f in [
        "librarian.log",
        "node01/console.log",
        "node01/lfs-node.log",
        "node02/console.log",
        "node02/lfs-node.log",
    ] {
        assert!(logs.contains(f), "{f} not listed:\n{logs}");
    }
    let console = std::fs::read_to_string(dir.join("nodes/node01/console.log")).unwrap();
    assert!(console.contains("node01: starting lfs-node"), "{console}");

    // A second cluster at the same time: its own network and containers, its own FAM.
    let out = ct.ok(&words(
        "up --backend container --nodes 2 --fam 1G --name ct2 --no-lmp",
    ));
    assert!(out.contains("cluster ct2 is ready"), "{out}");
    let mut containers = ct.engine.containers();
    containers.sort();
    assert_eq!(
        containers,
        [
            "fame-ct-node01",
            "fame-ct-node02",
            "fame-ct2-node01",
            "fame-ct2-node02"
        ]
    );
    let mut networks = ct.engine.networks();
    networks.sort();
    assert_eq!(networks, ["fame-ct", "fame-ct2"]);
    let subnet = |name: &str| {
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(ct.cluster_dir(name).join("container.json")).unwrap(),
        )
        .unwrap();
        v["subnet"].as_str().unwrap().to_string()
    };
    assert_ne!(subnet("ct"), subnet("ct2"));
    ct.ok(&[
        "exec",
        "--name",
        "ct2",
        "node02",
        "--",
        "sh",
        "-c",
        "test ! -e /lfs/blob && echo ct2 > /lfs/own && cat /lfs/own",
    ]);
    let out = ct.run(&[
        "exec", "--name", "ct", "node01", "--", "test", "-e", "/lfs/own",
    ]);
    assert_eq!(out.status.code(), Some(1), "ct sees a file of ct2");
    let status = ct.ok(&["status", "ct2"]);
    assert_eq!(status.matches(" mounted ").count(), 2, "{status}");
    let ls = ct.ok(&["ls"]);
    assert!(
        ls.contains("ct2") && ls.matches(" up ").count() == 2,
        "{ls}"
    );
    let images = ct.ok(&["images"]);
    assert!(
        images.contains("ct,ct2"),
        "both clusters use the image:\n{images}"
    );

    let ct2_dir = ct.cluster_dir("ct2");
    ct.ok(&["down", "ct"]);
    assert!(
        cluster_processes(&dir).is_empty(),
        "{:?}",
        cluster_processes(&dir)
    );
    // ct2 is untouched by the down of ct.
    assert_eq!(ct.engine.networks(), ["fame-ct2"]);
    assert_eq!(
        ct.ok(&["exec", "--name", "ct2", "node01", "--", "cat", "/lfs/own"]),
        "ct2\n"
    );
    ct.ok(&["down", "ct2"]);
    assert_nothing_left(&ct);
    // FAME_HOME keeps the image cache, which is no cluster: `down --all` has nothing to do.
    assert!(ct.home.path().join("cache").is_dir());
    ct.ok(&["down", "--all"]);
    assert!(
        cluster_processes(&ct2_dir).is_empty(),
        "{:?}",
        cluster_processes(&ct2_dir)
    );
    // The image stays (prune removes it: no cluster uses it now).
    assert!(ct.ok(&["images"]).contains(&tag));
    let prune = ct.ok(&["images", "prune"]);
    assert!(prune.contains(&format!("removed {tag}")), "{prune}");
    assert!(!ct.ok(&["images"]).contains(&tag));
    eprintln!("lifecycle: {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
fn down_after_sigkill_of_up_leaves_nothing() {
    let ct = Ct::new();
    let dir = ct.cluster_dir("k");
    let mut up = ct
        .command(&words("up --backend container --nodes 4 --fam 1G --name k"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // nsenter execs fame: the child is fame itself.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if ct
            .engine
            .containers()
            .iter()
            .any(|c| c.starts_with("fame-k-"))
        {
            break;
        }
        assert!(
            up.try_wait().unwrap().is_none(),
            "fame up ended before it made a container"
        );
        assert!(Instant::now() < deadline, "no container of k within 180 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", up.id())).unwrap();
    assert!(
        text(&cmdline).starts_with(FAME),
        "the child is not fame: {}",
        text(&cmdline)
    );
    // SAFETY: kill(2) of our own child, not yet reaped, with a valid signal.
    unsafe { libc::kill(up.id() as i32, libc::SIGKILL) };
    up.wait().unwrap();
    // Killed in the middle: something of it is still there.
    assert!(!ct.engine.containers().is_empty());
    assert!(!cluster_processes(&dir).is_empty());

    // `fame down` while the engine cannot be reached: one clear error, the host's processes
    // (the Librarian) are stopped all the same, and the files stay for the next `fame down`.
    let out = ct
        .command(&["down", "k"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let err = failed(&out, "fame down without its engine");
    assert!(
        err.contains("could not be stopped")
            && err.contains("/nonexistent/docker.sock")
            && err.contains("run `fame down` again"),
        "{err}"
    );
    let left = cluster_processes(&dir);
    assert!(left.is_empty(), "host processes of k left: {left:?}");
    assert!(!ct.engine.containers().is_empty());
    assert!(dir.join("state.json").exists());

    let out = ct.ok(&["down", "k"]);
    assert!(out.contains("removed"), "{out}");
    ct.assert_engine_empty();
    assert!(ct.entries().is_empty(), "{:?}", ct.entries());
    let left = cluster_processes(&dir);
    assert!(left.is_empty(), "processes of k left: {left:?}");
    // Idempotent.
    let out = ct.ok(&["down", "k"]);
    assert!(out.contains("nothing to do"), "{out}");
}

/// Nothing of any cluster in the engine or in FAME_HOME, and `fame ls` knows none.
fn assert_nothing_left(ct: &Ct) {
    ct.assert_engine_empty();
    assert!(ct.entries().is_empty(), "{:?}", ct.entries());
    // Not even the image cache is shown as a cluster.
    let ls = ct.ok(&["ls"]);
    assert!(ls.contains("no clusters"), "{ls}");
}

#[test]
fn no_engine_is_one_clear_error() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        &["images"][..],
        &words("up --backend container --name ne --nodes 2 --fam 1G")[..],
    ] {
        let mut c = Command::new(FAME);
        in_home(c.args(args), home.path()).env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
        let out = c.output().unwrap();
        let err = failed(&out, &format!("fame {args:?} without an engine"));
        assert_one_error(&err, "no Docker engine");
        assert!(
            err.contains("/nonexistent/docker.sock")
                && err.contains("DOCKER_HOST")
                && err.contains("apt-get install docker.io"),
            "{err}"
        );
        assert!(
            entries(home.path()).is_empty(),
            "{:?}",
            entries(home.path())
        );
    }
}

#[test]
fn engine_without_permission_is_one_clear_error() {
    let ct = Ct::new();
    // `fame images` as nobody: it asks the engine first, before FAME_HOME (which nobody could
    // not write) matters. `fame up` would stop earlier, on FAME_HOME, so it cannot show this.
    let mut c = ct.engine.command("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
        FAME,
        "images",
    ])
    .env("FAME_HOME", ct.home.path());
    let out = c.output().unwrap();
    let err = failed(&out, "fame images as nobody");
    assert_one_error(&err, "permission denied");
    assert!(
        err.contains(&ct.engine.socket().display().to_string()),
        "the socket is named: {err}"
    );
    assert!(
        err.contains("`docker` group") && err.contains("as root"),
        "the fix is named: {err}"
    );
    assert_nothing_left(&ct);
}

#[test]
fn missing_dev_fuse_is_one_clear_error() {
    let ct = Ct::new();
    let empty = tempfile::NamedTempFile::new().unwrap();
    // A mount namespace of fame's own (inside the engine's network namespace) where /dev/fuse
    // is a regular empty file.
    let mut c = ct.engine.command("unshare");
    c.args(["-m", "--propagation", "private", "--", "sh", "-c"])
        .arg(format!(
            "mount --bind {} /dev/fuse && exec {FAME} up --backend container --name nofuse --nodes 2 --fam 1G",
            empty.path().display()
        ));
    in_home(&mut c, ct.home.path());
    let out = c.output().unwrap();
    let err = failed(&out, "fame up without /dev/fuse");
    assert_one_error(&err, "/dev/fuse");
    assert!(err.contains("modprobe fuse"), "{err}");
    assert_nothing_left(&ct);
    // The host's /dev/fuse is untouched.
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata("/dev/fuse")
        .unwrap()
        .file_type()
        .is_char_device());
}

#[test]
fn shipped_scenarios_pass_on_containers() {
    let t0 = Instant::now();
    let ct = Ct::new();
    let out_dir = tempfile::tempdir().unwrap();
    let junit = out_dir.path().join("junit.xml");
    let report = out_dir.path().join("report");
    let args = shipped_suite_args(&junit, &report, &["--backend", "container"]);
    let out = ct.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.status.success(),
        "the shipped scenarios failed on containers ({}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    let attr = |name: &str| -> u64 {
        let head = &xml[xml.find("<testsuites").expect("a <testsuites> element")..];
        let head = &head[..head.find('>').unwrap()];
        let at = head
            .find(&format!(" {name}=\""))
            .unwrap_or_else(|| panic!("no {name} in {head}"));
        let v = &head[at + name.len() + 3..];
        v[..v.find('"').unwrap()].parse().unwrap()
    };
    assert!(attr("tests") > 0, "{xml}");
    assert_eq!(attr("failures"), 0, "{xml}");
    assert_eq!(
        xml.matches("<testsuite ").count(),
        shipped_scenarios(),
        "{xml}"
    );
    assert_nothing_left(&ct);
    eprintln!("scenarios: {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
fn loopback_down_is_one_clear_error() {
    // A fresh network namespace has its loopback down: the Librarian, on a cluster network's
    // gateway, would be unreachable from fame; `fame up` says so at once instead of timing out.
    let home = tempfile::tempdir().unwrap();
    let mut c = Command::new("unshare");
    c.args(["-n", "--", FAME, "up", "--backend", "container"])
        .args(["--name", "lo", "--nodes", "2", "--fam", "1G"]);
    in_home(&mut c, home.path());
    let out = c.output().unwrap();
    let err = failed(&out, "fame up with lo down");
    assert_one_error(&err, "loopback interface");
    assert!(err.contains("ip link set lo up"), "{err}");
    assert!(
        entries(home.path()).is_empty(),
        "{:?}",
        entries(home.path())
    );
}
