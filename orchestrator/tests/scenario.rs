//! `fame scenario run` on real clusters: the shipped suite (scenarios/) passes and leaves its
//! JUnit report in target/scenarios-junit.xml for CI; a scenario meant to fail is caught and
//! reported with its failing step; bad input is refused before any cluster starts.

mod common;

use common::*;
use std::path::Path;

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn the_shipped_suite_passes_and_leaves_a_junit_report() {
    let home = Home::new();
    let target = workspace().join("target");
    let junit = target.join("scenarios-junit.xml");
    let report = target.join("scenario-report");
    let _ = std::fs::remove_dir_all(&report);
    let _ = std::fs::remove_file(&junit);
    let args = shipped_suite_args(&junit, &report, &[]);
    let out = home.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "the shipped scenarios failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let n = shipped_scenarios();
    assert!(n >= 12, "only {n} shipped scenarios");
    assert!(
        stdout.contains(&format!("{n} passed, 0 failed")),
        "{stdout}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testsuite ").count(), n, "{xml}");
    assert!(!xml.contains("<failure"), "{xml}");
    home.assert_empty("at the end");
}

#[test]
fn a_failing_scenario_is_caught_and_reported_with_its_step() {
    let home = Home::new();
    let work = tempfile::tempdir().unwrap();
    let junit = work.path().join("junit.xml");
    let out = home.run(&[
        "scenario",
        "run",
        &fixture("must-fail.toml"),
        "--junit",
        &junit.display().to_string(),
        "--report-dir",
        &work.path().join("r").display().to_string(),
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    // The live lines, then the report of the failing step: where, what ran, what it said.
    assert!(stderr.contains("1/3 this one passes"), "{stderr}");
    assert!(stderr.contains("2/3 read a file nobody wrote"), "{stderr}");
    assert!(!stderr.contains("3/3 never reached"), "{stderr}");
    assert!(
        stderr.contains("must-fail.toml:16, kind exec"),
        "the failing step's file and line: {stderr}"
    );
    assert!(stderr.contains("cat /lfs/never-written"), "{stderr}");
    assert!(stderr.contains("No such file or directory"), "{stderr}");
    assert!(stderr.contains("exit code 1, expected 0"), "{stderr}");
    assert!(stderr.contains("librarian.log (last 20 lines)"), "{stderr}");
    // The summary table and the JUnit report say the same.
    assert!(stdout.contains("must-fail"), "{stdout}");
    assert!(stdout.contains("FAIL"), "{stdout}");
    assert!(stdout.contains("0 passed, 1 failed"), "{stdout}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<failure").count(), 1, "{xml}");
    assert!(xml.contains("read a file nobody wrote"), "{xml}");
    assert!(
        xml.contains("<skipped"),
        "the unreached step is skipped: {xml}"
    );
    // Torn down all the same.
    home.assert_empty("at the end");

    // With --retain the cluster and a log bundle stay for a post-mortem.
    let out = home.run(&[
        "scenario",
        "run",
        &fixture("must-fail.toml"),
        "--retain",
        "--report-dir",
        &work.path().join("r2").display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let kept = home.entries();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(work.path().join("r2/01-must-fail/bundle").is_dir());
    home.ok(&["down", "--all"]);
    home.assert_empty("after down");
}

#[test]
fn bad_input_is_refused_with_file_line_and_fix_before_any_cluster_starts() {
    let home = Home::new();
    for (file, want) in [
        (
            "bad-kind.toml",
            "bad-kind.toml:6: unknown step kind \"teleport\" in step \"teleport\"; use one of: exec, fill",
        ),
        (
            "bad-missing-field.toml",
            "bad-missing-field.toml:4: fill step \"fill without a size\" has no `size`; add `size = \"16M\"`",
        ),
        (
            "bad-node.toml",
            "bad-node.toml:7: on = \"node05\": the cluster has no such node; its nodes are node01..node02",
        ),
        (
            "bad-timeout.toml",
            "bad-timeout.toml:8: timeout = \"soon\" is not a duration",
        ),
    ] {
        let out = home.run(&["scenario", "run", &fixture(file)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {stderr}");
        assert!(stderr.contains(want), "{file}: want {want:?} in:\n{stderr}");
        assert!(stderr.contains("nothing was started"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // Several files: all mistakes at once, and none of the good files' clusters start.
    let out = home.run(&[
        "scenario",
        "run",
        &fixture("must-fail.toml"),
        &fixture("bad-kind.toml"),
        &fixture("bad-node.toml"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("2 error(s)"), "{stderr}");
    assert!(!stderr.contains("up:"), "{stderr}");
    let out = home.run(&["scenario", "run", "/nonexistent/scenarios"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file or directory"));
    home.assert_empty("after down");
}
