//! `fame up --backend container` refuses to touch a container that is not its cluster's but has
//! the name one of its nodes would get: one clear error, the foreign container left alone, no
//! network made, the cluster not registered.
//!
//! The foreign container is made with the testcontainers crate, which takes its engine from
//! `DOCKER_HOST` in the environment (read once per process): this file holds a single test so
//! that setting it cannot disturb another test. Needs root, dockerd and the workspace binaries.

mod common;

use common::FAME;
use fame_tests::docker::TestEngine;
use std::process::{Command, Output};
use testcontainers::core::WaitFor;
use testcontainers::runners::SyncRunner;
use testcontainers::{GenericImage, ImageExt};

fn fame(engine: &TestEngine, home: &std::path::Path, args: &[&str]) -> Output {
    let mut c: Command = engine.command(FAME);
    c.args(args).env("FAME_HOME", home);
    for v in [
        "FAME_DIR",
        "FAME_FAM",
        "FAME_HOSTBASE",
        "FAME_BIN_DIR",
        "FAME_LOG",
    ] {
        c.env_remove(v);
    }
    c.output().unwrap()
}

/// Runs `fame down --all` when the test ends, also when it fails (before the engine goes).
struct DownAll<'a>(&'a TestEngine, &'a std::path::Path);

impl Drop for DownAll<'_> {
    fn drop(&mut self) {
        let _ = fame(self.0, self.1, &["down", "--all"]);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `fame up` whose node names clash with the foreign container.
const UP: &[&str] = &[
    "up",
    "--backend",
    "container",
    "--name",
    "clash",
    "--nodes",
    "2",
    "--fam",
    "1G",
];

#[test]
fn a_foreign_container_with_a_node_name_stops_up() {
    let engine = TestEngine::start();
    let home = tempfile::tempdir().unwrap();
    let _down = DownAll(&engine, home.path());
    let out = fame(&engine, home.path(), &["images", "build"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tag = text(&out.stdout).trim().to_string();
    let (repo, key) = tag.split_once(':').expect("fame-node:KEY");
    assert_eq!(repo, "fame-node");

    // The only test of this binary: nothing else reads DOCKER_HOST while it is set.
    std::env::set_var("DOCKER_HOST", engine.host());
    let foreign = GenericImage::new(repo, key)
        .with_wait_for(WaitFor::Nothing)
        .with_entrypoint("sleep")
        .with_cmd(["300"])
        .with_container_name("fame-clash-node01")
        .start()
        .expect("testcontainers starts the foreign container");
    assert_eq!(engine.containers(), ["fame-clash-node01"]);
    let id = foreign.id().to_string();

    let out = fame(&engine, home.path(), UP);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "fame up should fail:\n{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("already exists and is not this cluster's"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("fame-clash-node01")
            && lines[0].contains("docker rm -f fame-clash-node01")
            && lines[0].contains("--name"),
        "names the container and the fix: {err}"
    );

    // The foreign container is untouched and still runs; nothing else was made.
    assert_eq!(engine.containers(), ["fame-clash-node01"]);
    assert!(
        foreign.is_running().unwrap(),
        "the foreign container stopped"
    );
    assert_eq!(foreign.id(), id);
    assert!(engine.networks().is_empty(), "{:?}", engine.networks());
    // FAME_HOME holds the image cache of `fame images build` and no cluster.
    let entries: Vec<_> = std::fs::read_dir(home.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "cache")
        .collect();
    assert!(entries.is_empty(), "{entries:?}");
    let ls = fame(&engine, home.path(), &["ls"]);
    assert!(ls.status.success(), "{}", text(&ls.stderr));
    assert!(
        text(&ls.stdout).contains("no clusters"),
        "{}",
        text(&ls.stdout)
    );

    // Once it is gone, the same `fame up` works.
    drop(foreign);
    assert!(engine.containers().is_empty());
    let out = fame(&engine, home.path(), &[UP, &["--no-lmp"]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = fame(&engine, home.path(), &["down", "clash"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(engine.containers().is_empty() && engine.networks().is_empty());
}
