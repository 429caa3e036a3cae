//! `fame scenario run`: scripted multi-node scenarios with fault injection, reported for people
//! and for CI. Every file is read and checked first ([`spec`]); only if all are good does any
//! cluster start. Each scenario then gets a fresh cluster of its own ([`run`]), up to `--jobs`
//! at once; the outcome is a line per step, a summary table, an optional JUnit XML file and the
//! exit code (0 all passed, 1 a scenario failed, 2 bad input).

pub mod faults;
pub mod run;
pub mod spec;
pub mod steps;

use crate::cli::ScenarioRunArgs;
use crate::output::outln;
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const EXIT_FAILED: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;

/// The scenario files named by `paths` (directories: their `*.toml`, sorted).
fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let paths = if paths.is_empty() {
        vec![PathBuf::from("scenarios")]
    } else {
        paths.to_vec()
    };
    let mut files = vec![];
    for p in &paths {
        if p.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("{}: cannot list it ({e})", p.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|f| f.extension().is_some_and(|x| x == "toml"))
                .collect();
            inside.sort();
            if inside.is_empty() {
                return Err(format!(
                    "{}: no *.toml scenario files in it; name files or a directory of them",
                    p.display()
                ));
            }
            files.extend(inside);
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            return Err(format!(
                "{}: no such file or directory; name scenario files (*.toml) or directories of them (default: scenarios/)",
                p.display()
            ));
        }
    }
    Ok(files)
}

pub fn run(args: ScenarioRunArgs) -> u8 {
    let files = match collect(&args.paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fame scenario: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let mut scenarios = vec![];
    let mut errors = vec![];
    for f in &files {
        match spec::load(f) {
            Ok(s) => scenarios.push(s),
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("fame scenario: {e}");
        }
        eprintln!(
            "fame scenario: {} error(s) in the scenario files; nothing was started (the format: scenarios/README.md)",
            errors.len()
        );
        return EXIT_BAD_INPUT;
    }
    if args.check {
        outln!(
            "{} scenario file(s) are well formed: {}",
            scenarios.len(),
            scenarios
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return 0;
    }
    let report_dir = args.report_dir.clone().unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        std::env::temp_dir().join(format!("fame-scenarios-{t}-{}", std::process::id()))
    });
    if let Err(e) = std::fs::create_dir_all(&report_dir) {
        eprintln!(
            "fame scenario: --report-dir {}: cannot create it ({e})",
            report_dir.display()
        );
        return EXIT_BAD_INPUT;
    }
    let opts = run::Options {
        backend: args.backend,
        retain: args.retain,
        seed: args.seed,
        report_dir: report_dir.clone(),
    };
    eprintln!(
        "fame scenario: {} scenario(s), {} at a time, seed {}; outputs and logs in {}",
        scenarios.len(),
        args.jobs,
        args.seed,
        report_dir.display()
    );
    let t0 = Instant::now();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<run::ScenarioResult>>> = Mutex::new(vec![None; scenarios.len()]);
    std::thread::scope(|s| {
        for _ in 0..(args.jobs as usize).min(scenarios.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(sc) = scenarios.get(i) else { break };
                let r = run::run(sc, i + 1, &opts);
                if !r.ok {
                    if let Some(f) = r.failed_step() {
                        eprintln!(
                            "[{}] FAILED (outputs in {}):\n{}",
                            r.name,
                            r.dir.display(),
                            f.failure
                        );
                    }
                }
                results.lock().unwrap()[i] = Some(r);
            });
        }
    });
    let wall = t0.elapsed();
    let results: Vec<run::ScenarioResult> = results
        .into_inner()
        .unwrap()
        .into_iter()
        .flatten()
        .collect();
    print_summary(&results, wall, args.jobs);
    if let Some(path) = &args.junit {
        if let Err(e) = write_junit(path, &results, wall) {
            eprintln!("fame scenario: --junit {}: {e}", path.display());
            return EXIT_FAILED;
        }
        eprintln!("fame scenario: JUnit report in {}", path.display());
    }
    if results.iter().all(|r| r.ok) {
        0
    } else {
        EXIT_FAILED
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn print_summary(results: &[run::ScenarioResult], wall: Duration, jobs: u32) {
    let w = results
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(8)
        .max(8);
    outln!();
    outln!(
        "{:<w$}  {:<6}  {:>5}  {:>7}  {:>7}  {:>7}  {:>7}  failing step",
        "scenario",
        "result",
        "steps",
        "up",
        "steps",
        "down",
        "total"
    );
    for r in results {
        let phase = |n: &str| {
            r.phases
                .iter()
                .find(|p| p.0 == n)
                .map(|p| secs(p.1))
                .unwrap_or_else(|| "-".into())
        };
        let passed = r
            .steps
            .iter()
            .filter(|s| s.ok && s.kind != "up" && s.kind != "down")
            .count();
        let total = r.total_steps;
        let failing = r
            .failed_step()
            .map(|s| {
                if s.line > 0 {
                    format!("{:?} ({}:{})", s.name, r.file.display(), s.line)
                } else {
                    s.name.clone()
                }
            })
            .unwrap_or_default();
        outln!(
            "{:<w$}  {:<6}  {:>5}  {:>7}  {:>7}  {:>7}  {:>7}  {failing}",
            r.name,
            if r.ok { "pass" } else { "FAIL" },
            format!("{passed}/{total}"),
            phase("up"),
            phase("steps"),
            phase("down"),
            secs(r.took),
        );
    }
    let failed = results.iter().filter(|r| !r.ok).count();
    outln!(
        "{} passed, {} failed ({} with --jobs {jobs})",
        results.len() - failed,
        failed,
        secs(wall)
    );
}

fn write_junit(path: &Path, results: &[run::ScenarioResult], wall: Duration) -> anyhow::Result<()> {
    let mut report = Report::new("fame-scenarios");
    report.set_time(wall);
    for r in results {
        let mut suite = TestSuite::new(r.name.clone());
        suite.set_time(r.took);
        for s in &r.steps {
            let status = if s.ok {
                TestCaseStatus::success()
            } else {
                let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
                st.set_message(format!(
                    "{} ({}:{}) failed: {}",
                    s.name,
                    r.file.display(),
                    s.line,
                    s.failure.lines().nth(2).unwrap_or("").trim()
                ));
                st.set_type(s.kind.clone());
                st.set_description(s.failure.clone());
                st
            };
            let mut case = TestCase::new(s.name.clone(), status);
            case.set_classname(format!("scenario.{}", r.name));
            case.set_time(s.took);
            case.set_system_out(s.what.clone());
            suite.add_test_case(case);
        }
        // Steps never reached count as skipped, so the report shows the whole scenario.
        if let Some(sc) = spec::load(&r.file).ok().filter(|_| !r.ok) {
            for st in sc
                .steps
                .iter()
                .skip(r.steps.iter().filter(|s| s.kind != "up").count())
            {
                let mut case = TestCase::new(st.name.clone(), TestCaseStatus::skipped());
                case.set_classname(format!("scenario.{}", r.name));
                suite.add_test_case(case);
            }
        }
        report.add_test_suite(suite);
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let f = std::fs::File::create(path)?;
    report.serialize(f)?;
    Ok(())
}
