//! The full-stack LFS tests that depend on the backend, on containers: a Librarian container
//! (`torms`) and two node containers from the node image of `fame images build`, on a
//! user-defined Docker network of a private engine ([`TestEngine`]), driven through the
//! `testcontainers` crate. The FAM file and the Librarian database are host files, bind-mounted.
//!
//! One test function on purpose: testcontainers finds its engine through `DOCKER_HOST`, a
//! process-wide setting, so every phase runs in sequence against the one engine:
//!
//! 1. cross-node data: bytes written on node1 are read on node2, through read/write and through
//!    the direct map of the FAM (`lfs-node fill` / `verify`, `--direct`);
//! 2. Librarian restart: the `torms` container is stopped and started again; the daemons
//!    reconnect by themselves, files are intact, new ones are seen across nodes, no remount;
//! 3. partition and heal: node2 is disconnected from the network; its metadata calls fail with
//!    EIO within a few seconds (`--librarian-timeout 3`) while node1 keeps working; reconnected,
//!    node2 recovers and sees what node1 did meanwhile;
//! 4. `fsck-lfs` finds the database clean once the Librarian is stopped.
//!
//! Containers are removed when dropped (also on a failed assertion), then the engine.
//!
//! Needs root, /dev/fuse and dockerd (scripts/setup.sh), and the binaries:
//! `cargo build --workspace --bins && cargo test -p fame-tests --test lfs_containers`.

use fame_tests::docker::TestEngine;
use fame_tests::{bin, BOOK, TWO_NODES};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use testcontainers::bollard;
use testcontainers::core::{ExecCommand, Mount};
use testcontainers::runners::SyncRunner;
use testcontainers::{Container, GenericImage, ImageExt};

/// The cluster's network (created by testcontainers with the first container on it).
const NET: &str = "fame-lfs-ct";
const LIBRARIAN_TIMEOUT: u64 = 3;

/// The result of a command run in a container.
struct Run {
    code: i64,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// `sh -c script` in `c` (bounded by busybox `timeout`, so a hung call fails instead of hanging
/// the test), with its output and exit code.
fn sh(c: &Container<GenericImage>, script: &str) -> Run {
    let mut r = c
        .exec(ExecCommand::new(["timeout", "120", "sh", "-c", script]))
        .unwrap_or_else(|e| panic!("exec `{script}`: {e}"));
    let stdout = r.stdout_to_vec().expect("exec stdout");
    let stderr = String::from_utf8_lossy(&r.stderr_to_vec().expect("exec stderr")).into_owned();
    // The streams end when the command does; its exit code shows up in the inspect soon after.
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(code) = r.exit_code().expect("exec inspect") {
            break code;
        }
        assert!(Instant::now() < deadline, "no exit code for `{script}`");
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code,
        stdout,
        stderr,
    }
}

/// `sh -c script` that must succeed; its stdout.
fn ok(c: &Container<GenericImage>, what: &str, script: &str) -> Vec<u8> {
    let r = sh(c, script);
    assert_eq!(
        r.code,
        0,
        "{what}: `{script}` exited {}\nstdout: {}\nstderr: {}",
        r.code,
        r.text(),
        r.stderr
    );
    r.stdout
}

/// The file `path` on `c` holds the one line `want` (`what` says which check failed).
fn assert_holds(c: &Container<GenericImage>, what: &str, path: &str, want: &str) {
    let seen = ok(c, what, &format!("cat {path}"));
    assert_eq!(
        String::from_utf8_lossy(&seen),
        format!("{want}\n"),
        "{what}"
    );
}

/// Retries `script` until it exits 0 (returns its stdout) or `timeout` passes.
fn eventually(c: &Container<GenericImage>, what: &str, timeout: Duration, script: &str) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    loop {
        let r = sh(c, script);
        if r.code == 0 {
            return r.stdout;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: `{script}` still failing after {timeout:?}: exit {}\nstdout: {}\nstderr: {}",
            r.code,
            r.text(),
            r.stderr
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn read_log(p: &Path) -> String {
    let t = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A network disconnect or connect of a container, through the Engine API (testcontainers has
/// no call for it).
fn network(engine: &TestEngine, container: &str, connect: bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let docker = bollard::Docker::connect_with_unix(
        &engine.socket().display().to_string(),
        60,
        bollard::API_DEFAULT_VERSION,
    )
    .expect("the test engine's API");
    let r = rt.block_on(async {
        if connect {
            docker
                .connect_network(
                    NET,
                    bollard::models::NetworkConnectRequest {
                        container: container.to_string(),
                        endpoint_config: None,
                    },
                )
                .await
        } else {
            docker
                .disconnect_network(
                    NET,
                    bollard::models::NetworkDisconnectRequest {
                        container: container.to_string(),
                        force: Some(false),
                    },
                )
                .await
        }
    });
    r.unwrap_or_else(|e| {
        panic!(
            "network {} of {container}: {e}",
            if connect { "connect" } else { "disconnect" }
        )
    });
}

/// What nodes and Librarian share: a container of the node image on the cluster network, with
/// docker-init as PID 1 (it passes `docker stop`'s SIGTERM on to the daemon).
fn on_net(tag: &str, name: &str) -> testcontainers::ContainerRequest<GenericImage> {
    let (repo, key) = tag.split_once(':').expect("image tag is REPO:KEY");
    GenericImage::new(repo, key)
        .with_container_name(name)
        .with_hostname(name)
        .with_network(NET)
}

#[test]
fn lfs_on_containers() {
    let t0 = Instant::now();
    let engine = TestEngine::start();
    // testcontainers reads it; this binary has no other test, so nothing else needs another one.
    std::env::set_var("DOCKER_HOST", engine.host());

    // The node image for the binaries under test.
    let out = engine
        .command(bin("fame"))
        .args(["images", "build"])
        .env("FAME_BIN_DIR", fame_tests::bin_dir())
        .output()
        .expect("run fame images build");
    assert!(
        out.status.success(),
        "setup: fame images build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tag = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(tag.starts_with("fame-node:"), "setup: image tag {tag:?}");

    // FAM (2 nodes x 32 books x 8 MiB, sparse) and the Librarian DB, on the host.
    let dir = tempfile::Builder::new()
        .prefix("fame-lfs-ct-")
        .tempdir_in("/var/tmp")
        .expect("temp dir");
    let d = dir.path();
    let fam = d.join("fam");
    std::fs::File::create(&fam)
        .and_then(|f| f.set_len(64 * BOOK))
        .expect("FAM file");
    let db_dir = d.join("db");
    std::fs::create_dir(&db_dir).unwrap();
    std::fs::write(d.join("topology.ini"), TWO_NODES).unwrap();
    let db = db_dir.join("librarian.db");
    let out = Command::new(bin("book-register"))
        .arg("-d")
        .arg(&db)
        .arg(d.join("topology.ini"))
        .output()
        .expect("run book-register");
    assert!(
        out.status.success(),
        "setup: book-register failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The Librarian, reached by the nodes as `torms` (the network's DNS names containers).
    let torms = on_net(&tag, "torms")
        .with_mount(Mount::bind_mount(db_dir.display().to_string(), "/db"))
        .with_host_config_modifier(|h| h.init = Some(true))
        .with_cmd([
            "/usr/bin/librarian",
            "--db-file",
            "/db/librarian.db",
            "--bind",
            "0.0.0.0",
            "--port",
            "9093",
            "--log-file",
            "/db/librarian.log",
        ])
        .start()
        .expect("setup: start the torms container");
    let librarian_log = db_dir.join("librarian.log");

    // The nodes: FAM at /fam, logs in a host directory, FUSE with /dev/fuse and CAP_SYS_ADMIN
    // only (not --privileged); AppArmor is not enabled on this machine (else it would need
    // apparmor=unconfined, as the container backend adds then).
    let start_node = |id: u32| {
        let logs = d.join(format!("node{id}"));
        std::fs::create_dir_all(&logs).unwrap();
        let node = on_net(&tag, &format!("node{id}"))
            .with_mount(Mount::bind_mount(fam.display().to_string(), "/fam"))
            .with_mount(Mount::bind_mount(
                logs.display().to_string(),
                "/var/log/fame",
            ))
            .with_cap_add("SYS_ADMIN")
            .with_host_config_modifier(|h| {
                h.init = Some(true);
                h.devices = Some(vec![bollard::models::DeviceMapping {
                    path_on_host: Some("/dev/fuse".into()),
                    path_in_container: Some("/dev/fuse".into()),
                    cgroup_permissions: Some("rwm".into()),
                }]);
            })
            .with_cmd(
                [
                    "/etc/fame/entrypoint.sh",
                    "--mountpoint",
                    "/lfs",
                    "--hostname",
                    "torms",
                    "--port",
                    "9093",
                    "--node-id",
                    &id.to_string(),
                    "--fam",
                    "/fam",
                    "--log-file",
                    "/var/log/fame/lfs-node.log",
                    "--librarian-timeout",
                    &LIBRARIAN_TIMEOUT.to_string(),
                ]
                .map(String::from),
            )
            .start()
            .unwrap_or_else(|e| panic!("setup: start node{id}: {e}"));
        (node, logs)
    };
    let (node1, logs1) = start_node(1);
    let (node2, logs2) = start_node(2);
    let diagnostics = || {
        format!(
            "--- librarian.log\n{}\n--- node1 lfs-node.log\n{}\n--- node1 console.log\n{}\n--- node2 lfs-node.log\n{}\n--- node2 console.log\n{}",
            read_log(&librarian_log),
            read_log(&logs1.join("lfs-node.log")),
            read_log(&logs1.join("console.log")),
            read_log(&logs2.join("lfs-node.log")),
            read_log(&logs2.join("console.log")),
        )
    };
    for (name, node) in [("node1", &node1), ("node2", &node2)] {
        let deadline = Instant::now() + Duration::from_secs(60);
        while sh(node, "mountpoint -q /lfs").code != 0 {
            assert!(
                Instant::now() < deadline && node.is_running().unwrap_or(false),
                "setup: /lfs of {name} not mounted within 60 s\n{}",
                diagnostics()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let ready = t0.elapsed();

    // 1. Cross-node data.
    let token = format!("hello from node1 {:016x}", rand::random::<u64>());
    ok(
        &node1,
        "phase 1 write",
        &format!("echo '{token}' > /lfs/hello"),
    );
    assert_holds(
        &node2,
        "phase 1: node2 reads what node1 wrote",
        "/lfs/hello",
        &token,
    );
    let written = ok(
        &node1,
        "phase 1 random file",
        "dd if=/dev/urandom of=/lfs/random.bin bs=65536 count=48 2>/dev/null && cat /lfs/random.bin",
    );
    assert_eq!(
        written.len(),
        48 * 65536,
        "phase 1: node1 reads back its file"
    );
    let seen = ok(
        &node2,
        "phase 1 random file on node2",
        "cat /lfs/random.bin",
    );
    assert!(
        seen == written,
        "phase 1: node2 reads {} bytes of random.bin, not the {} node1 wrote (or different ones)",
        seen.len(),
        written.len()
    );
    let seed: u64 = rand::random::<u32>().into();
    ok(
        &node1,
        "phase 1 fill (write)",
        &format!("lfs-node fill /lfs/rw.dat --seed {seed} --size 24M"),
    );
    ok(
        &node2,
        "phase 1 verify (read) on node2",
        &format!("lfs-node verify /lfs/rw.dat --seed {seed}"),
    );
    ok(
        &node2,
        "phase 1 verify (direct) on node2 of a written file",
        &format!("lfs-node verify --direct /lfs/rw.dat --seed {seed}"),
    );
    let wrong = sh(
        &node2,
        &format!("lfs-node verify /lfs/rw.dat --seed {}", seed + 1),
    );
    assert_eq!(
        wrong.code, 1,
        "phase 1: verify with a wrong seed must fail (exit 1): {}",
        wrong.stderr
    );
    ok(
        &node1,
        "phase 1 fill (direct)",
        &format!(
            "lfs-node fill --direct /lfs/direct.dat --seed {} --size 24M",
            seed + 2
        ),
    );
    ok(
        &node2,
        "phase 1 verify (direct) on node2",
        &format!(
            "lfs-node verify --direct /lfs/direct.dat --seed {}",
            seed + 2
        ),
    );
    ok(
        &node2,
        "phase 1 verify (read) on node2 of a direct-stored file",
        &format!("lfs-node verify /lfs/direct.dat --seed {}", seed + 2),
    );
    let layout = String::from_utf8_lossy(&ok(
        &node2,
        "phase 1 layout",
        "lfs-node layout /lfs/direct.dat",
    ))
    .into_owned();
    assert!(
        layout.contains("25165824 bytes in 3 book(s)"),
        "phase 1: layout of a 24 MiB file on 8 MiB books:\n{layout}"
    );
    let phase1 = t0.elapsed();

    // 2. Librarian restart. A file held open on node1 across it keeps its open record (LFS
    // refuses to unlink open files).
    ok(
        &node1,
        "phase 2 hold a file open",
        "echo held > /lfs/held && { (exec 3>>/lfs/held && touch /tmp/holding && while [ ! -e /tmp/release ]; do sleep 1; done) >/dev/null 2>&1 & } && while [ ! -e /tmp/holding ]; do sleep 0.05; done",
    );
    torms.stop().expect("phase 2: stop torms");
    assert!(
        !torms.is_running().unwrap_or(true),
        "phase 2: torms still running after stop"
    );
    // Metadata calls fail (EIO) while the Librarian is down, but the mount stays.
    for (name, node) in [("node1", &node1), ("node2", &node2)] {
        assert_eq!(
            sh(node, "grep -q ' /lfs fuse' /proc/mounts").code,
            0,
            "phase 2: /lfs of {name} gone while the Librarian is down"
        );
    }
    torms.start().expect("phase 2: start torms again");
    // The first call may find the Librarian still starting (or fail fast with EIO after the
    // outage): retried. Then everything must work at once.
    eventually(
        &node1,
        "phase 2 first call after restart on node1",
        Duration::from_secs(30),
        "ls /lfs > /dev/null",
    );
    eventually(
        &node2,
        "phase 2 first call after restart on node2",
        Duration::from_secs(30),
        "ls /lfs > /dev/null",
    );
    for (name, node) in [("node1", &node1), ("node2", &node2)] {
        assert_eq!(
            sh(node, "mountpoint -q /lfs").code,
            0,
            "phase 2: {name} lost its mount over the restart"
        );
    }
    assert_holds(
        &node2,
        "phase 2: a file from before the restart is intact",
        "/lfs/hello",
        &token,
    );
    let seen = ok(&node1, "phase 2 old file on node1", "cat /lfs/random.bin");
    assert!(
        seen == written,
        "phase 2: random.bin changed over the restart (node1 reads {} bytes)",
        seen.len()
    );
    ok(
        &node2,
        "phase 2 verify on node2",
        &format!("lfs-node verify /lfs/rw.dat --seed {seed}"),
    );
    ok(
        &node1,
        "phase 2 verify (direct) on node1",
        &format!(
            "lfs-node verify --direct /lfs/direct.dat --seed {}",
            seed + 2
        ),
    );
    ok(
        &node1,
        "phase 2 new file on node1",
        &format!("mkdir /lfs/after && echo 'restart {token}' > /lfs/after/file && lfs-node fill /lfs/after/big --seed {} --size 9M", seed + 3),
    );
    assert_holds(
        &node2,
        "phase 2: node2 reads the file node1 created after the restart",
        "/lfs/after/file",
        &format!("restart {token}"),
    );
    ok(
        &node2,
        "phase 2 verify new file on node2",
        &format!("lfs-node verify /lfs/after/big --seed {}", seed + 3),
    );
    ok(
        &node2,
        "phase 2 create on node2",
        &format!("echo 'node2 {token}' > /lfs/after/from2"),
    );
    assert_holds(
        &node1,
        "phase 2: node1 reads the file node2 created after the restart",
        "/lfs/after/from2",
        &format!("node2 {token}"),
    );
    let busy = sh(&node2, "rm /lfs/held");
    assert_ne!(
        busy.code, 0,
        "phase 2: a file open on node1 since before the restart could be removed on node2"
    );
    ok(
        &node1,
        "phase 2 release the open file",
        "touch /tmp/release",
    );
    eventually(
        &node2,
        "phase 2 remove the released file",
        Duration::from_secs(10),
        "rm /lfs/held",
    );
    let phase2 = t0.elapsed();

    // 3. Partition and heal.
    network(&engine, node2.id(), false);
    let t = Instant::now();
    let cut = sh(&node2, "touch /lfs/x");
    let took = t.elapsed();
    assert_ne!(
        cut.code, 0,
        "phase 3: a metadata call on the partitioned node2 succeeded"
    );
    assert!(
        took < Duration::from_secs(LIBRARIAN_TIMEOUT + 7),
        "phase 3: the failing call on node2 took {took:?} (librarian timeout {LIBRARIAN_TIMEOUT} s)\n{}",
        diagnostics()
    );
    assert!(
        cut.stderr.contains("Input/output error") || cut.stderr.contains("I/O error"),
        "phase 3: the call on node2 should fail with EIO: {}",
        cut.stderr
    );
    ok(
        &node1,
        "phase 3 node1 works during the partition",
        &format!("echo 'during {token}' > /lfs/during && lfs-node fill /lfs/during.dat --seed {} --size 5M && cat /lfs/during", seed + 4),
    );
    assert_eq!(
        sh(&node2, "grep -q ' /lfs fuse' /proc/mounts").code,
        0,
        "phase 3: node2 lost its mount during the partition"
    );
    network(&engine, node2.id(), true);
    let t = Instant::now();
    eventually(
        &node2,
        "phase 3 node2 recovers after the heal",
        Duration::from_secs(30),
        "touch /lfs/healed",
    );
    let recovered = t.elapsed();
    assert_holds(
        &node2,
        "phase 3: node2 sees what node1 wrote during the partition",
        "/lfs/during",
        &format!("during {token}"),
    );
    ok(
        &node2,
        "phase 3 verify on node2",
        &format!("lfs-node verify /lfs/during.dat --seed {}", seed + 4),
    );
    ok(&node1, "phase 3 node1 sees node2's", "test -f /lfs/healed");
    let phase3 = t0.elapsed();

    // 4. fsck of the database once the nodes are done and stopped (fsck is offline: a live node
    // may still be zeroing the books of a removed file, on a `.lfs_pending_zero_*` shelf; node2
    // retries the one it could not finish during the partition with a back-off), then the
    // Librarian stopped.
    let pending = || {
        let c =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .expect("open the DB read-only");
        c.query_row(
            "SELECT count(*) FROM shelves WHERE name LIKE '.lfs_pending_zero_%'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .expect("count pending-zero shelves")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while pending() > 0 {
        assert!(
            Instant::now() < deadline,
            "fsck: pending-zero shelves left 30 s after the heal\n{}",
            diagnostics()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for (name, node) in [("node1", &node1), ("node2", &node2)] {
        node.stop()
            .unwrap_or_else(|e| panic!("fsck: stop {name}: {e}"));
        assert_eq!(
            node.exit_code().ok().flatten(),
            Some(0),
            "fsck: lfs-node of {name} did not end cleanly on SIGTERM\n{}",
            diagnostics()
        );
    }
    torms.stop().expect("fsck: stop torms");
    let out = Command::new(bin("fsck-lfs"))
        .arg(&db)
        .output()
        .expect("run fsck-lfs");
    assert!(
        out.status.success(),
        "fsck: fsck-lfs exited {:?}:\n{}{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        diagnostics()
    );
    eprintln!(
        "lfs_containers: ready {:.1} s, phase 1 {:.1} s, phase 2 {:.1} s, phase 3 {:.1} s (node2 back {:.1} s after the heal, EIO after {:.1} s), total {:.1} s",
        ready.as_secs_f64(),
        (phase1 - ready).as_secs_f64(),
        (phase2 - phase1).as_secs_f64(),
        (phase3 - phase2).as_secs_f64(),
        recovered.as_secs_f64(),
        took.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    drop(node2);
    drop(node1);
    drop(torms);
    let left = engine.containers();
    assert!(left.is_empty(), "teardown: containers left: {left:?}");
}
