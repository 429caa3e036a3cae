//! Real clusters: the real `fame`, Librarian and lfs-node binaries, real namespaces and FUSE
//! mounts. Every test has its own FAME_HOME and ends with nothing of its clusters left.

mod common;

use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `fame up --name NAME --nodes NODES --fam 1G`: fame picks the ports itself, under its
/// machine-wide lock, so concurrent tests never race for one.
fn up_command(home: &Home, name: &str, nodes: u32) -> std::process::Command {
    let nodes = nodes.to_string();
    home.command(&["up", "--name", name, "--nodes", &nodes, "--fam", "1G"])
}

fn up(home: &Home, name: &str, nodes: u32) -> String {
    let out = up_command(home, name, nodes).output().unwrap();
    succeeded(out, &["up", "--name", name], "")
}

#[test]
fn four_nodes_share_one_fam_then_down_leaves_nothing() {
    let home = Home::new();
    let port = free_port();
    let out = home.ok(&[
        "up",
        "--nodes",
        "4",
        "--fam",
        "32G",
        "--port",
        &port.to_string(),
    ]);
    assert!(out.contains("cluster fame is ready"), "{out}");
    assert!(out.contains("fame exec node01 -- sh"), "{out}");
    // Output to a reader that has gone (`fame status | head -1`) is dropped, not a panic.
    for args in [&["status"][..], &["ls"][..], &["logs"][..]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = home.command(args).stdout(writer).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !err.contains("panicked"),
            "fame {args:?} into a closed pipe: {}\n{err}",
            out.status
        );
    }
    // Output that cannot be written for another reason (a full disk) is an error.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = home.command(&["status"]).stdout(full).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot write to stdout"), "{err}");
    let dir = home.cluster_dir("fame");
    assert_eq!(state(&dir)["port"], port, "--port was not used");

    // The configure script's INI, and the FAM file: sparse, exactly 32G, mode 0660.
    assert_eq!(
        std::fs::read_to_string(dir.join("node_fame.ini")).unwrap(),
        "[global]\nnode_count = 4\nbook_size_bytes = 8M\nnvm_size_per_node = 1024B\n"
    );
    let fam = std::fs::metadata(dir.join("fam")).unwrap();
    assert_eq!(fam.len(), 32 << 30);
    assert_eq!(fam.permissions().mode() & 0o777, 0o660);
    assert!(fam.blocks() * 512 < 1 << 30, "the FAM file must be sparse");

    // Write on one node, read on every other, through `fame exec`.
    home.ok(&[
        "exec",
        "node02",
        "--",
        "sh",
        "-c",
        "echo written-on-node02 > /lfs/x",
    ]);
    for node in ["node01", "node03", "node04"] {
        let got = home.ok(&["exec", node, "--", "sh", "-c", "hostname; cat /lfs/x"]);
        assert_eq!(got, format!("{node}\nwritten-on-node02\n"));
    }
    // The host sees each node's /lfs under the cluster directory.
    assert_eq!(
        std::fs::read_to_string(dir.join("nodes/node03/lfs/x")).unwrap(),
        "written-on-node02\n"
    );
    // Exit statuses pass through; a node can be named by its number.
    let out = home.run(&["exec", "3", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    let err = home.fails(&["exec", "node09", "--", "true"]);
    assert!(err.contains("has no node node09"), "{err}");

    let status = home.ok(&["status"]);
    assert!(status.contains("cluster    fame: up"), "{status}");
    assert!(status.contains("4096 total, 1 used, 4095 free"), "{status}");
    assert_eq!(status.matches(" mounted ").count(), 4, "{status}");
    assert_eq!(status.matches("active (").count(), 4, "{status}");
    let ls = home.ok(&["ls"]);
    assert!(ls.contains("fame") && ls.contains(" up "), "{ls}");

    // Logs: listed, and exported with the INI, the state and a database snapshot.
    let logs = home.ok(&["logs"]);
    assert!(
        logs.contains("librarian.log") && logs.contains("node04/lfs-node.log"),
        "{logs}"
    );
    let export = tempfile::tempdir().unwrap();
    home.ok(&["logs", "--export", export.path().to_str().unwrap()]);
    let bundle = std::fs::read_dir(export.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for f in [
        "librarian.log",
        "node_fame.ini",
        "state.json",
        "librarian.db",
        "node01/lfs-node.log",
    ] {
        assert!(bundle.join(f).exists(), "{f} missing from the bundle");
    }
    let snap = std::process::Command::new("sqlite3")
        .arg(bundle.join("librarian.db"))
        .arg("SELECT count(*) FROM books")
        .output();
    if let Ok(snap) = snap {
        assert_eq!(String::from_utf8_lossy(&snap.stdout).trim(), "4096");
    }

    // A command left running inside a node must not keep its namespace alive.
    let mut sleeper = home
        .command(&["exec", "node01", "--", "sleep", "600"])
        .spawn()
        .unwrap();
    let fp = footprint(&dir);
    // node01's mount namespace is the first the footprint lists.
    let node01_mnt = fp.namespaces[0].clone();
    fame_tests::wait_for(
        "the exec'd sleep to run inside node01",
        std::time::Duration::from_secs(30),
        || {
            std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
                let p = e.path();
                std::fs::read(p.join("cmdline")).is_ok_and(|c| c == b"sleep\x00600\x00")
                    && std::fs::read_link(p.join("ns/mnt")).is_ok_and(|ns| ns == node01_mnt)
            })
        },
    );
    // The Librarian, the LMP and four nodes.
    assert_eq!(fp.procs.len(), 6);
    assert_eq!(fp.namespaces.len(), 8);
    let out = home.ok(&["down"]);
    assert!(out.contains("removed"), "{out}");
    sleeper.wait().unwrap();
    assert_gone(&fp);
    home.assert_empty("after down");
    // Idempotent.
    let out = home.ok(&["down"]);
    assert!(out.contains("nothing to do"), "{out}");
}

#[test]
fn down_cleans_up_after_sigkill_of_a_node_and_the_librarian() {
    let home = Home::new();
    up(&home, "k", 3);
    let dir = home.cluster_dir("k");
    let fp = footprint(&dir);
    // fp.procs[0] is the Librarian, [1] the LMP, then the nodes.
    for (pid, _) in [fp.procs[0], fp.procs[2]] {
        // SAFETY: kill(2) with a valid signal touches no memory of ours; the pids are the
        // cluster's, just read from its state.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    // Dead once the kernel has finished them, which takes a moment on a busy machine.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let ls = home.ok(&["ls"]);
        if ls.contains("degraded") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{ls}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = home.ok(&["status", "k"]);
    assert!(
        status.contains("not running") && status.contains("stopped"),
        "{status}"
    );
    home.down_leaves_nothing("k", &fp);
}

#[test]
fn down_cleans_up_after_sigkill_of_fame_up_itself() {
    let home = Home::new();
    let dir = home.cluster_dir("torn");
    // Wherever `fame up` is when it dies, `ls` and `down` must cope.
    for delay_ms in [5, 30, 60] {
        let mut child = home
            .command(&["up", "--name", "torn", "--nodes", "8", "--fam", "1G"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        home.ok(&["ls"]);
        home.ok(&["down", "torn"]);
        let fp = Footprint {
            dir: dir.clone(),
            procs: vec![],
            namespaces: vec![],
        };
        assert_gone(&fp);
        home.assert_empty(&format!("after {delay_ms} ms"));
    }
}

#[test]
fn two_clusters_at_once() {
    let home = Home::new();
    // Default ports: 9093 if free, else the next free one; never the same for two clusters.
    home.ok(&["up", "--name", "a", "--nodes", "2", "--fam", "1G"]);
    home.ok(&["up", "--name", "b", "--nodes", "2", "--fam", "2G"]);
    let (sa, sb) = (state(&home.cluster_dir("a")), state(&home.cluster_dir("b")));
    assert_ne!(sa["port"], sb["port"]);
    assert!(sa["port"].as_u64().unwrap() >= 9093);
    home.ok(&[
        "exec",
        "--name",
        "a",
        "node01",
        "--",
        "sh",
        "-c",
        "echo A > /lfs/f",
    ]);
    home.ok(&[
        "exec",
        "--name",
        "b",
        "node01",
        "--",
        "sh",
        "-c",
        "echo B > /lfs/f",
    ]);
    assert_eq!(
        home.ok(&["exec", "--name", "a", "node02", "--", "cat", "/lfs/f"]),
        "A\n"
    );
    assert_eq!(
        home.ok(&["exec", "--name", "b", "node02", "--", "cat", "/lfs/f"]),
        "B\n"
    );
    let ls = home.ok(&["ls"]);
    assert_eq!(ls.lines().filter(|l| l.contains(" up ")).count(), 2, "{ls}");

    let fa = footprint(&home.cluster_dir("a"));
    home.ok(&["down", "a"]);
    assert_gone(&fa);
    assert_eq!(
        home.ok(&["exec", "--name", "b", "node02", "--", "cat", "/lfs/f"]),
        "B\n"
    );
    let err = home.fails(&["status", "a"]);
    assert!(
        err.contains("no cluster named a") && err.contains("b"),
        "{err}"
    );
    let fb = footprint(&home.cluster_dir("b"));
    home.ok(&["down", "--all"]);
    assert_gone(&fb);
}

/// The `--port` of a node daemon's command line.
fn daemon_port(pid: i64) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let i = args.iter().position(|a| *a == b"--port").unwrap();
    String::from_utf8_lossy(args[i + 1]).into_owned()
}

#[test]
fn two_ups_at_the_same_moment_get_their_own_ports_and_nodes() {
    let home = Home::new();
    // No --port: both choose "9093 or the next free one" at once.
    let children: Vec<_> = ["p", "q"]
        .iter()
        .map(|name| {
            home.command(&["up", "--name", name, "--nodes", "2", "--fam", "1G"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (sp, sq) = (state(&home.cluster_dir("p")), state(&home.cluster_dir("q")));
    assert_ne!(sp["port"], sq["port"]);
    // Every node daemon talks to its own cluster's Librarian, and sees only its cluster's files.
    for (name, st) in [("p", &sp), ("q", &sq)] {
        for n in st["nodes"].as_array().unwrap() {
            let pid = n["handle"]["pid"].as_i64().unwrap();
            assert_eq!(daemon_port(pid), st["port"].to_string(), "{name}");
        }
        home.ok(&[
            "exec",
            "--name",
            name,
            "node01",
            "--",
            "sh",
            "-c",
            &format!("echo {name} > /lfs/f"),
        ]);
    }
    for name in ["p", "q"] {
        assert_eq!(
            home.ok(&["exec", "--name", name, "node02", "--", "cat", "/lfs/f"]),
            format!("{name}\n")
        );
    }
    let fps = [
        footprint(&home.cluster_dir("p")),
        footprint(&home.cluster_dir("q")),
    ];
    home.ok(&["down", "--all"]);
    for fp in &fps {
        assert_gone(fp);
    }
}

#[test]
fn reload_of_a_stopped_cluster_whose_port_was_taken_moves_to_a_free_one() {
    let home = Home::new();
    up(&home, "moved", 1);
    let dir = home.cluster_dir("moved");
    home.ok(&[
        "exec",
        "--name",
        "moved",
        "node01",
        "--",
        "sh",
        "-c",
        "echo kept > /lfs/k",
    ]);
    home.ok(&["down", "moved", "--keep-fam"]);
    let port = state(&dir)["port"].as_u64().unwrap() as u16;
    // What a cluster under another FAME_HOME may do while this one is stopped: listen on the
    // port this one recorded. (If something already does, the situation is the same.)
    let other = std::net::TcpListener::bind(("127.0.0.1", port)).ok();
    home.ok(&["reload", "moved"]);
    let now = state(&dir)["port"].as_u64().unwrap() as u16;
    assert_ne!(now, port, "reload kept a port that is taken");
    // The node reached this cluster's Librarian, not whatever listens on the old port.
    assert_eq!(
        home.ok(&["exec", "--name", "moved", "node01", "--", "cat", "/lfs/k"]),
        "kept\n"
    );
    drop(other);
    let fp = footprint(&dir);
    home.ok(&["down", "moved"]);
    assert_gone(&fp);
}

#[test]
fn a_stopped_clusters_ports_are_not_taken_from_another_fame_home() {
    let (one, two) = (Home::new(), Home::new());
    up(&one, "first", 1);
    let dir = one.cluster_dir("first");
    one.ok(&["down", "first", "--keep-fam"]);
    let st = state(&dir);
    let recorded: Vec<u64> = ["port", "metrics_port", "lmp_port"]
        .iter()
        .filter_map(|k| st[*k].as_u64())
        .collect();
    // Its ports are free on the machine now, but a fame under another FAME_HOME must not take
    // them: they are the first cluster's when it comes back.
    up(&two, "second", 1);
    let st2 = state(&two.cluster_dir("second"));
    for k in ["port", "metrics_port", "lmp_port"] {
        let p = st2[k].as_u64().unwrap();
        assert!(!recorded.contains(&p), "{k} {p} was the stopped cluster's");
    }
    one.ok(&["reload", "first"]);
    assert_eq!(
        state(&dir)["port"],
        st["port"],
        "the first cluster kept its port"
    );
    two.ok(&["down", "second"]);
    one.ok(&["down", "first"]);
    one.assert_empty("after down");
    two.assert_empty("after down");
}

#[test]
fn keep_fam_then_reload_keeps_the_files_and_rebuild_starts_afresh() {
    let home = Home::new();
    up(&home, "dev", 2);
    home.ok(&[
        "exec",
        "--name",
        "dev",
        "node01",
        "--",
        "sh",
        "-c",
        "echo kept > /lfs/k",
    ]);
    // reload: new daemons, same FAM and database.
    let before = footprint(&home.cluster_dir("dev"));
    home.ok(&["reload", "dev"]);
    for &(pid, start) in &before.procs {
        assert!(!alive(pid, start), "reload must restart every daemon");
    }
    assert_eq!(
        home.ok(&["exec", "--name", "dev", "node02", "--", "cat", "/lfs/k"]),
        "kept\n"
    );
    // down --keep-fam, then reload starts it again with the data.
    home.ok(&["down", "dev", "--keep-fam"]);
    assert!(home.cluster_dir("dev").join("fam").exists());
    let ls = home.ok(&["ls"]);
    assert!(ls.contains("stopped"), "{ls}");
    home.ok(&["reload", "dev"]);
    assert_eq!(
        home.ok(&["exec", "--name", "dev", "node01", "--", "cat", "/lfs/k"]),
        "kept\n"
    );
    // rebuild: same settings, fresh FAM and database.
    home.ok(&["rebuild", "dev"]);
    let out = home.run(&["exec", "--name", "dev", "node01", "--", "cat", "/lfs/k"]);
    assert_ne!(out.status.code(), Some(0), "a rebuilt cluster starts empty");
    let fp = footprint(&home.cluster_dir("dev"));
    home.ok(&["down", "dev"]);
    assert_gone(&fp);
}

/// GET `url` as the LMP's JSON clients do; the body.
fn get(url: &str) -> String {
    ureq::get(url)
        .set("Accept", "application/json; version=1.0")
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .into_string()
        .unwrap()
}

/// Live processes marked as belonging to the cluster in `dir` whose command is `comm`.
fn marked(dir: &std::path::Path, comm: &str) -> Vec<i32> {
    let marker = format!("FAME_CLUSTER_DIR={}", dir.display()).into_bytes();
    pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
                && std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == marker.as_slice()))
        })
        .collect()
}

#[test]
fn each_cluster_has_an_lmp_with_the_librarians_counts_unless_no_lmp() {
    let home = Home::new();
    let out = up(&home, "web", 3);
    let dir = home.cluster_dir("web");
    let st = state(&dir);
    let port = st["lmp_port"].as_u64().unwrap();
    let url = format!("http://127.0.0.1:{port}/");
    assert!(out.contains(&url), "{out}");
    assert!(st["metrics_port"].as_u64().is_some(), "{st}");
    let status = home.ok(&["status", "web"]);
    assert!(
        status.contains(&format!("LMP        {url} (running")),
        "{status}"
    );
    assert!(home.ok(&["logs", "web"]).contains("lmp.log"));

    let global: serde_json::Value =
        serde_json::from_str(&get(&format!("{url}lmp/global/"))).unwrap();
    assert_eq!(global["socs"]["total"], 3, "{global}");
    let metrics = get(&format!("{url}metrics"));
    assert!(
        metrics.contains("lfs_librarian_requests_total"),
        "{metrics}"
    );

    // reload restarts it on the same port.
    let before = marked(&dir, "lmp");
    assert_eq!(before.len(), 1);
    home.ok(&["reload", "web"]);
    let after = marked(&dir, "lmp");
    assert_eq!(after.len(), 1);
    assert_ne!(before, after);
    assert_eq!(state(&dir)["lmp_port"], st["lmp_port"]);
    get(&format!("{url}lmp/global/"));

    let fp = footprint(&dir);
    home.ok(&["down", "web"]);
    assert_gone(&fp);
    assert!(marked(&dir, "lmp").is_empty());

    // --no-lmp: none at all.
    home.ok(&[
        "up", "--name", "bare", "--nodes", "1", "--fam", "1G", "--no-lmp",
    ]);
    let dir = home.cluster_dir("bare");
    assert!(state(&dir)["lmp_port"].is_null());
    assert!(marked(&dir, "lmp").is_empty());
    assert!(!home.ok(&["status", "bare"]).contains("LMP"));
    let fp = footprint(&dir);
    home.ok(&["down", "bare"]);
    assert_gone(&fp);
}

/// One line, `fame: ...`, naming the value, the rule and the fix; nothing left behind.
fn assert_refused(home: &Home, err: &str, expect: &[&str]) {
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("fame: "), "{err}");
    for e in expect {
        assert!(last.contains(e), "expected {e:?} in the error line: {last}");
    }
    home.assert_empty("at the end");
}

#[test]
fn bad_input_is_refused_with_one_clear_line_and_leaves_nothing() {
    let home = Home::new();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--fam", "3G"],
            &["--fam 3G", "power of two", "try --fam 4G"],
        ),
        (
            &["--fam", "512M"],
            &["--fam 512M", "at least 1G", "try --fam 1G"],
        ),
        (&["--fam", "lots"], &["--fam \"lots\"", "try --fam 32G"]),
        (
            &["--nodes", "0"],
            &["--nodes 0", "1 to 80", "try --nodes 4"],
        ),
        (&["--nodes", "81"], &["--nodes 81", "1 to 80"]),
        (&["--book-size", "3M"], &["--book-size 3M", "power of two"]),
        (&["--backend", "vmware"], &["--backend vmware", "process"]),
        (
            &["--name", "a/b"],
            &["--name \"a/b\"", "pick another --name"],
        ),
        (
            &["--bin-dir", "/nonexistent"],
            &["book-register not found in /nonexistent", "cargo build"],
        ),
    ];
    for (args, expect) in cases {
        let mut all = vec!["up"];
        all.extend_from_slice(args);
        let err = home.fails(&all);
        assert_refused(&home, &err, expect);
    }
}

#[test]
fn a_busy_port_and_a_name_in_use_are_refused() {
    let home = Home::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = listener.local_addr().unwrap().port().to_string();
    let err = home.fails(&["up", "--nodes", "1", "--fam", "1G", "--port", &busy]);
    assert_refused(
        &home,
        &err,
        &[
            &format!("--port {busy}"),
            "already listens",
            "pick another --port",
        ],
    );
    let err = home.fails(&["up", "--fam", "1G", "--lmp-port", &busy]);
    assert_refused(
        &home,
        &err,
        &[
            &format!("--lmp-port {busy}"),
            "already listens",
            "pick another --lmp-port",
        ],
    );

    up(&home, "taken", 1);
    let fp = footprint(&home.cluster_dir("taken"));
    let err = home.fails(&["up", "--name", "taken", "--nodes", "1", "--fam", "1G"]);
    assert!(
        err.lines()
            .last()
            .unwrap()
            .contains("--name taken: a cluster of that name already exists"),
        "{err}"
    );
    assert!(err.contains("fame down taken"), "{err}");
    // The cluster already there is untouched.
    assert!(home.ok(&["status", "taken"]).contains(": up"));
    home.ok(&["down", "taken"]);
    assert_gone(&fp);
}

#[test]
fn a_cluster_being_changed_is_busy_for_every_other_command() {
    let home = Home::new();
    // Frozen while it holds the cluster's lock, so that it is surely still at work: once it
    // starts nodes (it has let go of the machine's port lock then, which other tests' `fame up`s
    // wait for), and thawed however this test ends.
    let lock = home.path().join(".busy.lock");
    let mut up = up_in_background(&home, "busy", 4, "nodes/node01");
    // SAFETY: kill(2) of our own child, not yet reaped, with a valid signal.
    unsafe { libc::kill(up.id() as i32, libc::SIGSTOP) };
    struct Thaw(i32);
    impl Drop for Thaw {
        fn drop(&mut self) {
            // SAFETY: kill(2) of our own child, reaped only after this guard is dropped.
            unsafe { libc::kill(self.0, libc::SIGCONT) };
        }
    }
    let thaw = Thaw(up.id() as i32);
    assert!(
        std::fs::read_to_string(&lock).is_ok_and(|t| t.contains("fame up")),
        "no lock file naming fame up while it runs"
    );
    let holder = format!("`fame up` (pid {})", up.id());
    for args in [
        &["down", "busy"][..],
        &["reload", "busy"][..],
        &["rebuild", "busy"][..],
        &["up", "--name", "busy", "--fam", "1G"][..],
    ] {
        let err = home.run(args);
        let text = String::from_utf8_lossy(&err.stderr);
        assert!(!err.status.success(), "fame {args:?} passed while busy");
        // reload and rebuild may find no state yet; down and up must see the lock.
        if args[0] == "down" || args[0] == "up" {
            assert!(
                text.contains(&format!("cluster busy is busy: {holder} is changing it")),
                "fame {args:?}: {text}"
            );
        }
    }
    drop(thaw);
    assert!(
        up.wait().unwrap().success(),
        "fame up failed after the wait"
    );
    assert!(home.ok(&["status", "busy"]).contains(": up"));
    home.ok(&["down", "busy"]);
    // The lock file goes with the cluster.
    home.assert_empty("after down");
}

/// `fame up --name NAME --nodes NODES` started in the background (stderr piped), once `until`
/// exists in its cluster directory.
fn up_in_background(home: &Home, name: &str, nodes: u32, until: &str) -> std::process::Child {
    let up = up_command(home, name, nodes);
    up_in_background_with(up, &home.cluster_dir(name).join(until))
}

/// As [`up_in_background`] with the command given, once `until` exists.
fn up_in_background_with(mut up: std::process::Command, until: &Path) -> std::process::Child {
    let mut up = up
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !until.exists() {
        assert!(up.try_wait().unwrap().is_none(), "fame up ended early");
        assert!(
            std::time::Instant::now() < deadline,
            "no {} within 30 s",
            until.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    up
}

/// A bin dir of the real binaries in which `lfs-node` first marks `reached` and then waits for
/// `go` to exist: a `fame up` using it cannot finish before the test lets its nodes start, so a
/// signal sent before that is surely sent while it works (a loaded machine once let a whole
/// 8-node `fame up` finish between this test seeing a node's directory and its signal).
fn gated_bin_dir(dir: &Path) -> (PathBuf, PathBuf) {
    let real = Path::new(FAME).parent().unwrap();
    for entry in std::fs::read_dir(real).unwrap() {
        let name = entry.unwrap().file_name();
        let target = real.join(&name);
        if name != "lfs-node" && target.is_file() {
            std::os::unix::fs::symlink(&target, dir.join(&name)).unwrap();
        }
    }
    let (reached, go) = (dir.join("reached"), dir.join("go"));
    let script = format!(
        "#!/bin/sh\ntouch '{}'\nuntil [ -e '{}' ]; do sleep 0.01; done\nexec '{}' \"$@\"\n",
        reached.display(),
        go.display(),
        real.join("lfs-node").display()
    );
    let wrapper = dir.join("lfs-node");
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    (reached, go)
}

/// Ctrl-C (SIGINT) or SIGTERM during `fame up`: it rolls back by itself, leaving nothing.
#[test]
fn an_interrupted_up_rolls_back_everything_it_started() {
    let home = Home::new();
    let dir = home.cluster_dir("int");
    let bins = tempfile::tempdir().unwrap();
    let (reached, go) = gated_bin_dir(bins.path());
    // Once after the Librarian started, once while the nodes start; the nodes wait at the gate
    // until the signal was sent.
    for (signal, after) in [
        (libc::SIGINT, dir.join("logs/librarian.log")),
        (libc::SIGTERM, reached.clone()),
    ] {
        let _ = std::fs::remove_file(&reached);
        let _ = std::fs::remove_file(&go);
        let mut up = up_command(&home, "int", 8);
        up.env("FAME_BIN_DIR", bins.path());
        let up = up_in_background_with(up, &after);
        // SAFETY: kill(2) of our own child, which has not been waited for, so its pid is live.
        unsafe { libc::kill(up.id() as i32, signal) };
        std::fs::write(&go, "").unwrap();
        let out = up.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "fame up passed despite {signal}");
        assert!(
            err.contains("removing everything it started") && err.contains("interrupted"),
            "{err}"
        );
        let fp = Footprint {
            dir: dir.clone(),
            procs: vec![],
            namespaces: vec![],
        };
        assert_gone(&fp);
        home.assert_empty("after down");
    }
}

#[test]
fn down_of_what_is_not_a_cluster_removes_nothing() {
    let home = Home::new();
    // A name reaching outside FAME_HOME is no cluster at all (it was FAME_HOME's parent).
    let out = home.ok(&["down", ".."]);
    assert!(out.contains("no cluster named .."), "{out}");
    // A directory of the user's in FAME_HOME, with a name fame uses inside clusters.
    let mine = home.cluster_dir("mine");
    std::fs::create_dir_all(mine.join("logs")).unwrap();
    std::fs::write(mine.join("logs/notes.txt"), "keep").unwrap();
    std::fs::write(mine.join("thesis.tex"), "keep").unwrap();
    refused_untouched(
        &home.fails(&["down", "mine"]),
        &[
            "has no readable state.json and holds files fame does not make (thesis.tex)",
            "nothing was removed",
        ],
        &mine.join("logs/notes.txt"),
        "keep",
    );
    std::fs::remove_dir_all(&mine).unwrap();
    // A cluster whose state file is damaged is still one, and goes.
    up(&home, "damaged", 1);
    let dir = home.cluster_dir("damaged");
    std::fs::write(dir.join("state.json"), "{ not json").unwrap();
    let out = home.ok(&["down", "damaged"]);
    assert!(out.contains("removed"), "{out}");
    assert!(!dir.exists());
    home.assert_empty("after down");
    // A cluster of a backend this fame lacks (made by another fame): only that backend can stop
    // its nodes, so down refuses and touches nothing.
    up(&home, "alien", 1);
    let dir = home.cluster_dir("alien");
    let fp = footprint(&dir);
    let text = std::fs::read_to_string(dir.join("state.json")).unwrap();
    let alien = text.replace("\"backend\": \"process\"", "\"backend\": \"vmware\"");
    assert_ne!(alien, text, "no backend in {text}");
    std::fs::write(dir.join("state.json"), &alien).unwrap();
    refused_untouched(
        &home.fails(&["down", "alien"]),
        &[
            "backend \"vmware\" is not one this fame has",
            "nothing was touched",
        ],
        &dir.join("state.json"),
        &alien,
    );
    for &(pid, start) in &fp.procs {
        assert!(
            alive(pid, start),
            "fame down stopped process {pid} of an alien cluster"
        );
    }
    std::fs::write(dir.join("state.json"), &text).unwrap();
    home.down_leaves_nothing("alien", &fp);
}

#[test]
fn a_failure_midway_rolls_back_everything_it_started() {
    let home = Home::new();
    // With no time at all to wait, `up` fails after it started the Librarian (and maybe nodes).
    let err = home.fails(&[
        "up",
        "--name",
        "late",
        "--nodes",
        "4",
        "--fam",
        "1G",
        "--timeout",
        "0",
    ]);
    assert!(err.contains("removing everything it started"), "{err}");
    assert!(
        err.lines().last().unwrap().contains("raise --timeout"),
        "{err}"
    );
    assert_gone(&Footprint {
        dir: home.cluster_dir("late"),
        procs: vec![],
        namespaces: vec![],
    });
    home.assert_empty("after down");
}

#[test]
fn not_root_and_no_fuse_are_refused() {
    let home = Home::new();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = home.command(&["up", "--nodes", "1", "--fam", "1G"]);
    std::os::unix::process::CommandExt::uid(&mut c, 65534);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_refused(&home, &err, &["must run as root", "uid 65534", "sudo"]);

    // A mount namespace of the test's own where /dev/fuse is a plain file.
    let fake = tempfile::NamedTempFile::new().unwrap();
    let script = format!(
        "mount --bind {} /dev/fuse && exec \"$@\"",
        fake.path().display()
    );
    let out = std::process::Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
            FAME,
            "up",
            "--nodes",
            "1",
            "--fam",
            "1G",
        ])
        .env("FAME_HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_refused(
        &home,
        &err,
        &["/dev/fuse is not the FUSE device", "modprobe fuse"],
    );
}

#[test]
fn a_fam_bigger_than_the_free_disk_only_warns() {
    let home = Home::new();
    let st = available_bytes(home.path());
    let fam = (st + 1).next_power_of_two().max(1 << 30);
    let fam_arg = format!("{}G", fam >> 30);
    let out = home.run(&["up", "--nodes", "1", "--fam", &fam_arg]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("warning: --fam {fam_arg} is more than the")),
        "{err}"
    );
    assert!(err.contains("sparse"), "{err}");
    let fp = footprint(&home.cluster_dir("fame"));
    home.ok(&["down"]);
    assert_gone(&fp);
}

/// Bytes available to unprivileged users on the file system of `p`.
fn available_bytes(p: &std::path::Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A refused command's error says every one of `says`, and `file` still holds `content`.
fn refused_untouched(err: &str, says: &[&str], file: &Path, content: &str) {
    for w in says {
        assert!(err.contains(w), "{w:?} not in: {err}");
    }
    assert_eq!(
        std::fs::read_to_string(file).unwrap(),
        content,
        "{}",
        file.display()
    );
}
