//! The LMP dashboard of a live cluster, loaded in headless Chromium (Debian's `chromium`, installed
//! by scripts/setup.sh): after the page's own script has fetched the data, the DOM must show the
//! cluster's real numbers. A screenshot is kept as a test artifact in the target's tmp directory.

mod common;

use common::*;

fn load(url: &str, profile: &std::path::Path, extra: &[String]) -> String {
    fame_tests::chromium::load(url, profile, "1200,1100", extra)
}

#[test]
fn the_dashboard_shows_the_clusters_real_numbers() {
    let home = Home::new();
    home.ok(&["up", "--name", "dash", "--nodes", "3", "--fam", "1G"]);
    // Three books' worth of data on node02, one file held open on node03 while we look.
    home.ok(&[
        "exec",
        "--name",
        "dash",
        "node02",
        "--",
        "sh",
        "-c",
        "dd if=/dev/zero of=/lfs/data bs=1M count=20 2>/dev/null",
    ]);
    let mut holder = home
        .command(&[
            "exec",
            "--name",
            "dash",
            "node03",
            "--",
            "sh",
            "-c",
            "exec 3</lfs/data; echo open; exec sleep 30",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // open(2) returns once the Librarian has recorded the open.
    assert_eq!(first_line(&mut holder), "open\n");

    let dir = home.cluster_dir("dash");
    let st = state(&dir);
    let url = format!("http://127.0.0.1:{}/", st["lmp_port"].as_u64().unwrap());
    let total = home.ok(&["status", "dash"]);
    let profile = tempfile::tempdir().unwrap();
    let dom = load(&url, profile.path(), &["--dump-dom".into()]);
    let _ = holder.kill();
    let _ = holder.wait();

    assert!(
        dom.contains(r#"data-loaded="yes""#),
        "the dashboard did not load its data:\n{dom}"
    );
    // The pool as `fame status` reports it (1G of 8M books, whole media controllers per node), with
    // the 20 MiB file's 3 books in use.
    let books: u64 = total
        .lines()
        .find_map(|l| {
            l.strip_prefix("books")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no books line in fame status:\n{total}"));
    for (id, value) in [
        ("books-total", books.to_string()),
        ("books-inuse", "3".to_string()),
        ("books-free", (books - 3).to_string()),
    ] {
        assert!(
            dom.contains(&format!(r#"id="{id}">{value}<"#)),
            "{id} should be {value}:\n{dom}\n{total}"
        );
    }
    // node03 holds the file open.
    assert!(
        dom.contains(r#"<tr data-node="3"><td>node03</td><td class="ok">active</td>"#),
        "{dom}"
    );
    for n in ["node01", "node02", "node03"] {
        assert!(dom.contains(n), "{n} missing:\n{dom}");
    }
    assert!(dom.contains("<td>data</td>"), "the file is missing:\n{dom}");
    assert!(
        !dom.contains(r#"<tr class="late""#),
        "a live node is shown late:\n{dom}"
    );

    let shot =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts/fame-lmp-dashboard.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&shot);
    load(
        &url,
        profile.path(),
        &[format!("--screenshot={}", shot.display())],
    );
    let png = std::fs::read(&shot).expect("chromium wrote no screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
    eprintln!("dashboard screenshot: {}", shot.display());

    let fp = footprint(&dir);
    home.ok(&["down", "dash"]);
    assert_gone(&fp);
}
