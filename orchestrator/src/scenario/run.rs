//! Running one scenario: `fame up` its cluster, its steps in order, `fame down` (or keep it
//! with `--retain` when it failed). Commands in nodes go through `fame exec`, the same path a
//! person uses; faults and checks through [`super::faults`].

use super::faults::Cluster;
use super::spec::{Action, Scenario, Step};
use anyhow::{anyhow, bail, Context, Result};
use regex::Regex;
use std::collections::{BTreeSet, HashMap};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How a run was asked for (the flags of `fame scenario run`).
#[derive(Debug, Clone)]
pub struct Options {
    pub backend: Option<crate::backend::BackendKind>,
    pub retain: bool,
    pub seed: u64,
    pub report_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct StepResult {
    pub name: String,
    pub kind: String,
    pub line: usize,
    pub ok: bool,
    pub took: Duration,
    /// What went wrong, with the command, its output and the logs (empty when ok).
    pub failure: String,
    /// What the step ran or did, one line.
    pub what: String,
}

#[derive(Debug, Clone)]
pub struct ScenarioResult {
    pub name: String,
    pub file: PathBuf,
    pub ok: bool,
    pub steps: Vec<StepResult>,
    /// Wall time of cluster up, the steps and cluster down.
    pub phases: Vec<(String, Duration)>,
    pub took: Duration,
    /// The cluster, when kept by --retain.
    pub retained: Option<String>,
    pub dir: PathBuf,
    /// Steps in the file.
    pub total_steps: usize,
}

impl ScenarioResult {
    pub fn failed_step(&self) -> Option<&StepResult> {
        self.steps.iter().find(|s| !s.ok)
    }
}

/// A command started in one node.
struct Running {
    node: String,
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

struct Background {
    runs: Vec<Running>,
    step: Step,
    command: String,
}

struct Ctx<'a> {
    sc: &'a Scenario,
    opts: &'a Options,
    cluster: String,
    dir: PathBuf,
    fame: PathBuf,
    bin_dir: PathBuf,
    /// The cluster's backend, which knows how commands in its nodes name fame's binaries.
    backend: Box<dyn crate::backend::Backend>,
    background: HashMap<String, Background>,
    /// Nodes a fault took away (killed, paused, cut): never used to ask the Librarian.
    faulted: BTreeSet<String>,
    paused: BTreeSet<String>,
    cut: BTreeSet<String>,
    seq: usize,
}

fn label(sc: &Scenario) -> String {
    sc.name.clone()
}

/// Puts the nodes `on` into (`begin`) or out of a fault that `held` records (cut off, paused)
/// through `act`. A node counts as faulted from before the fault is applied until it is undone,
/// so that nothing waits on it meanwhile.
fn hold(
    faulted: &mut BTreeSet<String>,
    held: &mut BTreeSet<String>,
    on: &[String],
    begin: bool,
    mut act: impl FnMut(&str) -> Result<()>,
) -> Result<()> {
    on.iter().try_for_each(|n| {
        if begin {
            faulted.insert(n.clone());
            held.insert(n.clone());
            act(n)
        } else {
            act(n)?;
            held.remove(n);
            faulted.remove(n);
            Ok(())
        }
    })
}

/// A cluster name unique to this run, at most 12 characters so that every backend can use it
/// (the libvirt backend's bridge `br_NAME` must fit Linux's 15): `sc<index>-<pid>-<name...>`.
fn cluster_name(sc: &Scenario, index: usize) -> String {
    let head = format!("sc{index}-{}", std::process::id() % 10_000);
    let stem: String = sc
        .name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .take(12usize.saturating_sub(head.len() + 1))
        .collect();
    if stem.is_empty() {
        head
    } else {
        format!("{head}-{stem}")
    }
}

/// Runs `fame ARGS` to completion with its output in `log`; fails with the log's tail.
fn fame(fame: &Path, args: &[String], log: &Path, limit: Duration) -> Result<()> {
    let f = std::fs::File::create(log)?;
    let mut child = Command::new(fame)
        .args(args)
        .stdin(Stdio::null())
        .stdout(f.try_clone()?)
        .stderr(f)
        .process_group(0)
        .spawn()?;
    let status = wait_for(&mut child, limit);
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => bail!(
            "`fame {}` failed ({s}){}",
            args.join(" "),
            crate::services::log_tail(log, 15)
        ),
        None => {
            kill_group(&child);
            let _ = child.wait();
            bail!(
                "`fame {}` did not finish within {} s{}",
                args.join(" "),
                limit.as_secs(),
                crate::services::log_tail(log, 15)
            )
        }
    }
}

fn wait_for(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill_group(child: &Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// The last `n` lines of a text.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// The seed of a file's pattern: the step's `seed`, else one derived from `--seed` and the path
/// (so a fill and a later verify of the same file agree).
fn seed_for(base: u64, file: &str, given: Option<u64>) -> u64 {
    given.unwrap_or_else(|| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ base;
        for b in file.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        h >> 1
    })
}

/// `strerror(errno)` without the " (os error N)" Rust adds.
fn strerror(errno: i32) -> String {
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    s.split(" (os error").next().unwrap_or(&s).to_string()
}

pub fn run(sc: &Scenario, index: usize, opts: &Options) -> ScenarioResult {
    let t0 = Instant::now();
    let name = cluster_name(sc, index);
    let dir = opts.report_dir.join(format!("{index:02}-{}", sc.name));
    let _ = std::fs::create_dir_all(&dir);
    let fame_exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("fame"));
    let mut result = ScenarioResult {
        name: sc.name.clone(),
        file: sc.file.clone(),
        ok: false,
        steps: vec![],
        phases: vec![],
        took: Duration::ZERO,
        retained: None,
        dir: dir.clone(),
        total_steps: sc.steps.len(),
    };
    let lbl = label(sc);
    let c = &sc.cluster;
    let backend = opts.backend.or(c.backend).unwrap_or_default();
    // The cluster's settings as a fame.toml (the settings type `fame up --config` reads), kept
    // in the report directory.
    let scratch = dir.join("scratch");
    let config = crate::settings::FileConfig {
        name: Some(name.clone()),
        nodes: Some(c.nodes),
        fam: Some(c.fam.clone()),
        book_size: c.book_size.clone(),
        backend: Some(backend),
        timeout: Some(c.up_timeout.as_secs().max(1)),
        librarian_timeout: c.librarian_timeout,
        fault_proxy: c.fault_proxy.then_some(true),
        // The steps' $SCRATCH, which container and VM nodes see through a share.
        share: std::fs::create_dir_all(&scratch)
            .is_ok()
            .then(|| vec![scratch.clone()]),
        ..Default::default()
    };
    let config_file = dir.join("fame.toml");
    let up = vec![
        "up".to_string(),
        "--config".into(),
        config_file.display().to_string(),
    ];
    let written = toml::to_string(&config)
        .map_err(anyhow::Error::from)
        .and_then(|t| {
            std::fs::write(&config_file, t)
                .with_context(|| format!("cannot write {}", config_file.display()))
        });
    eprintln!(
        "[{lbl}] up: {} node(s), {} FAM, backend {backend} (cluster {name}, logs in {})",
        c.nodes,
        c.fam,
        dir.display()
    );
    let tu = Instant::now();
    // `fame up` picks its ports under a lock of its own (see crate::ports), so scenarios with
    // --jobs bring their clusters up at once.
    let up_result = written.and_then(|()| {
        fame(
            &fame_exe,
            &up,
            &dir.join("up.log"),
            c.up_timeout + Duration::from_secs(60),
        )
    });
    result.phases.push(("up".into(), tu.elapsed()));
    let mut ctx = Ctx {
        sc,
        opts,
        cluster: name.clone(),
        dir: dir.clone(),
        fame: fame_exe.clone(),
        bin_dir: PathBuf::new(),
        backend: backend.open(),
        background: HashMap::new(),
        faulted: BTreeSet::new(),
        paused: BTreeSet::new(),
        cut: BTreeSet::new(),
        seq: 0,
    };
    match up_result.and_then(|()| Cluster::open(&name)) {
        Err(e) => {
            eprintln!(
                "[{lbl}] up FAILED in {}",
                crate::progress::fmt_duration(tu.elapsed())
            );
            result.steps.push(StepResult {
                name: "cluster up".into(),
                kind: "up".into(),
                line: 0,
                ok: false,
                took: tu.elapsed(),
                failure: format!("{e:#}"),
                what: format!("fame {}", up.join(" ")),
            });
        }
        Ok(cl) => {
            eprintln!(
                "[{lbl}] up ok in {}",
                crate::progress::fmt_duration(tu.elapsed())
            );
            ctx.bin_dir = cl.state().map(|s| s.bin_dir).unwrap_or_default();
            let ts = Instant::now();
            let n = sc.steps.len();
            for (i, step) in sc.steps.iter().enumerate() {
                let t = Instant::now();
                let (what, outcome) = ctx.step(&cl, step);
                let took = t.elapsed();
                let ok = outcome.is_ok();
                eprintln!(
                    "[{lbl}] {}/{n} {:<44} {:>6} {:>10}",
                    i + 1,
                    step.name,
                    if ok { "ok" } else { "FAILED" },
                    crate::progress::fmt_duration(took)
                );
                let failure = match outcome {
                    Ok(()) => String::new(),
                    Err(e) => {
                        let nodes = step_nodes(&step.action);
                        let mut logs = String::new();
                        for f in cl.log_files(&nodes) {
                            if let Ok(text) = std::fs::read_to_string(&f) {
                                if !text.trim().is_empty() {
                                    logs.push_str(&format!(
                                        "  --- {} (last 20 lines)\n{}",
                                        f.display(),
                                        indent(&tail(&text, 20))
                                    ));
                                }
                            }
                        }
                        format!(
                            "step {} {:?} ({}:{}, kind {}) failed after {}\n  did: {what}\n{}\n  logs:\n{logs}",
                            i + 1,
                            step.name,
                            sc.file.display(),
                            step.line,
                            kind_of(&step.action),
                            crate::progress::fmt_duration(took),
                            indent(&format!("{e:#}"))
                        )
                    }
                };
                result.steps.push(StepResult {
                    name: step.name.clone(),
                    kind: kind_of(&step.action).into(),
                    line: step.line,
                    ok,
                    took,
                    failure,
                    what,
                });
                if !ok {
                    break;
                }
            }
            result.phases.push(("steps".into(), ts.elapsed()));
            ctx.cleanup(&cl);
        }
    }
    result.ok = result.steps.iter().all(|s| s.ok) && result.steps.len() == sc.steps.len();
    let td = Instant::now();
    if !result.ok && opts.retain {
        let bundle = dir.join("bundle");
        let _ = std::fs::create_dir_all(&bundle);
        let _ = fame(
            &fame_exe,
            &[
                "logs".into(),
                name.clone(),
                "--export".into(),
                bundle.display().to_string(),
            ],
            &dir.join("logs-export.log"),
            Duration::from_secs(60),
        );
        eprintln!(
            "[{lbl}] kept cluster {name} (--retain); logs bundled in {}; remove it with `fame down {name}`",
            bundle.display()
        );
        result.retained = Some(name.clone());
    } else if let Err(e) = fame(
        &fame_exe,
        &["down".into(), name.clone()],
        &dir.join("down.log"),
        Duration::from_secs(120),
    ) {
        eprintln!("[{lbl}] down FAILED: {e:#}");
        result.ok = false;
        result.steps.push(StepResult {
            name: "cluster down".into(),
            kind: "down".into(),
            line: 0,
            ok: false,
            took: td.elapsed(),
            failure: format!("{e:#}"),
            what: format!("fame down {name}"),
        });
    }
    result.phases.push(("down".into(), td.elapsed()));
    result.took = t0.elapsed();
    result
}

pub fn kind_of(a: &Action) -> &'static str {
    match a {
        Action::Exec { .. } => "exec",
        Action::Fill { .. } => "fill",
        Action::Verify { .. } => "verify",
        Action::Expect { .. } => "expect",
        Action::KillLibrarian => "kill-librarian",
        Action::StartLibrarian => "start-librarian",
        Action::KillNode(_) => "kill-node",
        Action::StartNode(_) => "start-node",
        Action::Cut(_) => "cut",
        Action::Heal(_) => "heal",
        Action::Pause(_) => "pause",
        Action::Resume(_) => "resume",
        Action::Fsck { .. } => "fsck",
        Action::Check { .. } => "check",
        Action::Sleep(_) => "sleep",
        Action::Wait(_) => "wait",
    }
}

fn step_nodes(a: &Action) -> Vec<String> {
    match a {
        Action::Exec { on, .. }
        | Action::Fill { on, .. }
        | Action::Verify { on, .. }
        | Action::Expect { on, .. }
        | Action::KillNode(on)
        | Action::StartNode(on)
        | Action::Cut(on)
        | Action::Heal(on)
        | Action::Pause(on)
        | Action::Resume(on) => on.clone(),
        _ => vec![],
    }
}

impl Ctx<'_> {
    /// Runs one step: (what it did, outcome).
    fn step(&mut self, cl: &Cluster, step: &Step) -> (String, Result<()>) {
        let limit = step.timeout;
        match &step.action {
            Action::Exec {
                on,
                run,
                exit,
                stdout,
                stderr,
                background,
                retry,
            } => {
                let what = format!("on {}: {run}", on.join(","));
                if *background {
                    let r = self.spawn_all(on, run).map(|runs| {
                        self.background.insert(
                            step.name.clone(),
                            Background {
                                runs,
                                step: step.clone(),
                                command: run.clone(),
                            },
                        );
                    });
                    return (what, r);
                }
                let deadline = Instant::now() + retry.unwrap_or_default();
                loop {
                    let r = self.spawn_all(on, run).and_then(|runs| {
                        self.finish(runs, limit, run, |st, o, e| {
                            expect_exec(st, o, e, *exit, stdout.as_ref(), stderr.as_ref())
                        })
                    });
                    if r.is_ok() || Instant::now() >= deadline {
                        return (what, r);
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
            Action::Fill {
                on,
                file,
                size,
                seed,
                direct,
                mmap,
            } => {
                let s = seed_for(self.opts.seed, file, *seed);
                let cmd = format!(
                    "{} fill {file} --seed {s} --size {size}{}{}",
                    self.lfs_node(),
                    if *direct { " --direct" } else { "" },
                    if *mmap { " --mmap" } else { "" }
                );
                let r = self.spawn_all(on, &cmd).and_then(|runs| {
                    self.finish(runs, limit, &cmd, |st, o, e| {
                        expect_exec(st, o, e, 0, None, None)
                    })
                });
                (format!("on {}: {cmd}", on.join(",")), r)
            }
            Action::Verify {
                on,
                file,
                size,
                seed,
                direct,
                mmap,
            } => {
                let s = seed_for(self.opts.seed, file, *seed);
                let cmd = format!(
                    "{} verify {file} --seed {s}{}{}{}",
                    self.lfs_node(),
                    size.map(|z| format!(" --size {z}")).unwrap_or_default(),
                    if *direct { " --direct" } else { "" },
                    if *mmap { " --mmap" } else { "" }
                );
                let r = self.spawn_all(on, &cmd).and_then(|runs| {
                    self.finish(runs, limit, &cmd, |st, o, e| {
                        expect_exec(st, o, e, 0, None, None)
                    })
                });
                (format!("on {}: {cmd}", on.join(",")), r)
            }
            Action::Expect {
                on,
                run,
                errno,
                errno_name,
                within,
            } => {
                let t = Instant::now();
                let text = strerror(*errno);
                let within = *within;
                let name = errno_name.clone();
                let r = self.spawn_all(on, run).and_then(|runs| {
                    self.finish(runs, limit, run, |st, o, e| {
                        let took = t.elapsed();
                        if st.success() {
                            bail!("it succeeded, but {name} ({text}) was expected");
                        }
                        if !o.contains(&text) && !e.contains(&text) {
                            bail!("it failed ({st}) but not with {name}: its output does not say {text:?}");
                        }
                        if let Some(w) = within {
                            if took > w {
                                bail!("it failed with {name} only after {:.1} s; expected within {:.1} s", took.as_secs_f64(), w.as_secs_f64());
                            }
                        }
                        Ok(())
                    })
                });
                (
                    format!("on {}: {run} (expecting {errno_name})", on.join(",")),
                    r,
                )
            }
            Action::KillLibrarian => ("SIGKILL the Librarian".into(), cl.kill_librarian()),
            Action::StartLibrarian => ("start the Librarian".into(), cl.start_librarian(limit)),
            Action::KillNode(on) => {
                let r = on.iter().try_for_each(|n| {
                    self.faulted.insert(n.clone());
                    cl.kill_node(n)
                });
                (format!("kill {} (a crash)", on.join(",")), r)
            }
            Action::StartNode(on) => {
                let r = on.iter().try_for_each(|n| {
                    cl.start_node(n, limit)?;
                    self.faulted.remove(n);
                    Ok(())
                });
                (format!("start the daemon of {}", on.join(",")), r)
            }
            Action::Cut(on) => {
                let r = hold(&mut self.faulted, &mut self.cut, on, true, |n| {
                    cl.set_cut(n, true)
                });
                (format!("cut {} off from the Librarian", on.join(",")), r)
            }
            Action::Heal(on) => {
                let r = hold(&mut self.faulted, &mut self.cut, on, false, |n| {
                    cl.set_cut(n, false)
                });
                (format!("heal {}", on.join(",")), r)
            }
            Action::Pause(on) => {
                let r = hold(&mut self.faulted, &mut self.paused, on, true, |n| {
                    cl.pause_node(n, true)
                });
                (format!("pause {}", on.join(",")), r)
            }
            Action::Resume(on) => {
                let r = hold(&mut self.faulted, &mut self.paused, on, false, |n| {
                    cl.pause_node(n, false)
                });
                (format!("resume {}", on.join(",")), r)
            }
            Action::Fsck { repairs } => {
                // close(2) returns before the node's daemon has told the Librarian (FUSE
                // release is asynchronous), and an unlinked file's books are zeroed and its
                // pending-zero shelf destroyed after unlink(2) returned: let both land before
                // the Librarian stops, or fsck would find them as stale opens and partial
                // unlinks. Files a scenario holds open stay open.
                let settle = Instant::now() + Duration::from_secs(10).min(limit);
                let none_open = Some(super::spec::Cmp { op: "==", value: 0 });
                while (self
                    .check_once(cl, None, none_open, None, None, "/")
                    .is_err()
                    || self.zeroing_in_flight(cl))
                    && Instant::now() < settle
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                let r = (|| {
                    let (text, found, unrepaired) = cl.fsck(limit)?;
                    std::fs::write(self.dir.join(format!("fsck-{}.txt", step.line)), &text)?;
                    if unrepaired > 0 {
                        bail!(
                            "fsck-lfs left {unrepaired} problem(s) unrepaired:\n{}",
                            indent(&text)
                        );
                    }
                    if repairs.is_empty() && !found.is_empty() {
                        bail!(
                            "the database was expected clean; fsck-lfs found and repaired {}:\n{}",
                            found.join(", "),
                            indent(&text)
                        );
                    }
                    let missing: Vec<&String> =
                        repairs.iter().filter(|p| !found.contains(p)).collect();
                    if !missing.is_empty() {
                        bail!(
                            "fsck-lfs did not find {} (it found: {}):\n{}",
                            missing
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                            if found.is_empty() {
                                "nothing".to_string()
                            } else {
                                found.join(", ")
                            },
                            indent(&text)
                        );
                    }
                    Ok(())
                })();
                let what = if repairs.is_empty() {
                    "stop the Librarian, fsck-lfs --repair (must be clean), start it".to_string()
                } else {
                    format!(
                        "stop the Librarian, fsck-lfs --repair (must repair {}), start it",
                        repairs.join(", ")
                    )
                };
                (what, r)
            }
            Action::Check {
                books_used,
                opens,
                opens_on,
                shelves,
                path,
                within,
            } => {
                let what = format!(
                    "ask the Librarian:{}{}{}",
                    books_used
                        .map(|c| format!(" books_used {c}"))
                        .unwrap_or_default(),
                    opens
                        .map(|c| format!(
                            " opens{} {c}",
                            opens_on
                                .as_ref()
                                .map(|o| format!(" of {}", o.join(",")))
                                .unwrap_or_default()
                        ))
                        .unwrap_or_default(),
                    shelves
                        .map(|c| format!(" entries of {path} {c}"))
                        .unwrap_or_default(),
                );
                let deadline = Instant::now() + within.unwrap_or_default().min(limit);
                loop {
                    let r = self.check_once(
                        cl,
                        *books_used,
                        *opens,
                        opens_on.as_deref(),
                        *shelves,
                        path,
                    );
                    if r.is_ok() || Instant::now() >= deadline {
                        return (what, r);
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            Action::Sleep(d) => {
                std::thread::sleep(*d);
                (format!("sleep {:.1} s", d.as_secs_f64()), Ok(()))
            }
            Action::Wait(target) => {
                let Some(bg) = self.background.remove(target) else {
                    return (
                        format!("wait for {target}"),
                        Err(anyhow!("{target:?} was already waited for")),
                    );
                };
                let Action::Exec {
                    exit,
                    stdout,
                    stderr,
                    ..
                } = &bg.step.action
                else {
                    unreachable!("background steps are exec steps")
                };
                let r = self.finish(bg.runs, limit, &bg.command, |st, o, e| {
                    expect_exec(st, o, e, *exit, stdout.as_ref(), stderr.as_ref())
                });
                (format!("wait for {target:?}: {}", bg.command), r)
            }
        }
    }

    fn lfs_node(&self) -> String {
        let host = self.bin_dir.join(crate::bins::LFS_NODE);
        self.backend.binary_in_node(&host)
    }

    /// Starts `cmd` under `sh -c` in every node of `on` at once.
    fn spawn_all(&mut self, on: &[String], cmd: &str) -> Result<Vec<Running>> {
        let nodes: Vec<String> = (1..=self.sc.cluster.nodes)
            .map(|i| format!("node{i:02}"))
            .collect();
        let scratch = self.dir.join("scratch");
        std::fs::create_dir_all(&scratch)?;
        let mut runs = vec![];
        for node in on {
            self.seq += 1;
            let base = self.dir.join(format!("{:03}-{node}", self.seq));
            let out = base.with_extension("out");
            let err = base.with_extension("err");
            let id: u32 = node.trim_start_matches("node").parse().unwrap_or(0);
            let child = Command::new(&self.fame)
                .args(["exec", "--name", &self.cluster, node, "--", "env"])
                .arg(format!("NODE={node}"))
                .arg(format!("NODE_ID={id}"))
                .arg(format!("NODES={}", nodes.join(" ")))
                .arg(format!("SCRATCH={}", scratch.display()))
                .arg(format!("SEED={}", self.opts.seed))
                .arg(format!("LFS_NODE={}", self.lfs_node()))
                .args(["sh", "-c", cmd])
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&out)?)
                .stderr(std::fs::File::create(&err)?)
                .process_group(0)
                .spawn()?;
            runs.push(Running {
                node: node.clone(),
                child,
                out,
                err,
            });
        }
        Ok(runs)
    }

    /// Waits for every run (killing those past `limit`) and checks each with `check`.
    fn finish(
        &self,
        mut runs: Vec<Running>,
        limit: Duration,
        cmd: &str,
        check: impl Fn(ExitStatus, &str, &str) -> Result<()>,
    ) -> Result<()> {
        let deadline = Instant::now() + limit;
        let mut failures = vec![];
        for r in &mut runs {
            let left = deadline.saturating_duration_since(Instant::now());
            let status = wait_for(&mut r.child, left);
            let out = std::fs::read_to_string(&r.out).unwrap_or_default();
            let err = std::fs::read_to_string(&r.err).unwrap_or_default();
            let outcome = match status {
                None => {
                    kill_group(&r.child);
                    let _ = wait_for(&mut r.child, Duration::from_secs(5));
                    Err(anyhow!(
                        "it did not finish within its timeout of {:.1} s",
                        limit.as_secs_f64()
                    ))
                }
                Some(st) => check(st, &out, &err).map_err(|e| anyhow!("{e} ({st})")),
            };
            if let Err(e) = outcome {
                failures.push(format!(
                    "{}: `{cmd}`: {e:#}\n  stdout (last 40 lines, all in {}):\n{}  stderr (last 40 lines, all in {}):\n{}",
                    r.node,
                    r.out.display(),
                    indent(&tail(&out, 40)),
                    r.err.display(),
                    indent(&tail(&err, 40))
                ));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            bail!("{}", failures.join("\n"))
        }
    }

    /// A node that is up, to ask the Librarian as (a request counts as its heartbeat).
    fn asker(&self, cl: &Cluster) -> Result<u32> {
        Ok(cl
            .state()?
            .nodes
            .iter()
            .find(|n| !self.faulted.contains(&n.name))
            .map(|n| n.id)
            .unwrap_or(1))
    }

    /// Whether an unlinked file is still being zeroed: its pending-zero shelf stays in the root
    /// until the node zeroing it destroys it.
    fn zeroing_in_flight(&self, cl: &Cluster) -> bool {
        let Ok(asker) = self.asker(cl) else {
            return false;
        };
        cl.ask(
            asker,
            lfs_proto::Command::ListShelves,
            serde_json::json!({ "path": "/" }),
        )
        .ok()
        .and_then(|v| v.as_array().cloned())
        .is_some_and(|a| {
            a.iter().any(|s| {
                s["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(".lfs_pending_zero_"))
            })
        })
    }

    fn check_once(
        &self,
        cl: &Cluster,
        books_used: Option<super::spec::Cmp>,
        opens: Option<super::spec::Cmp>,
        opens_on: Option<&[String]>,
        shelves: Option<super::spec::Cmp>,
        path: &str,
    ) -> Result<()> {
        let st = cl.state()?;
        let asker = self.asker(cl)?;
        let mut bad = vec![];
        if let Some(c) = books_used {
            let v = cl.ask(asker, lfs_proto::Command::GetFsStats, serde_json::json!({}))?;
            let used = v["books_used"]
                .as_i64()
                .ok_or_else(|| anyhow!("get_fs_stats has no books_used: {v}"))?;
            if !c.holds(used) {
                bad.push(format!("books_used is {used}, expected {c}"));
            }
        }
        if let Some(c) = opens {
            let v = cl.ask(
                asker,
                lfs_proto::Command::ListOpenShelves,
                serde_json::json!({}),
            )?;
            let ids: Option<Vec<i64>> = opens_on.map(|o| {
                o.iter()
                    .filter_map(|n| st.node(n).map(|x| i64::from(x.id)))
                    .collect()
            });
            let n = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|o| {
                            ids.as_ref().is_none_or(|ids| {
                                o["node_id"].as_i64().is_some_and(|i| ids.contains(&i))
                            })
                        })
                        .count() as i64
                })
                .unwrap_or(0);
            if !c.holds(n) {
                bad.push(format!(
                    "open files{} are {n}, expected {c} (the Librarian's opens: {v})",
                    opens_on
                        .map(|o| format!(" of {}", o.join(",")))
                        .unwrap_or_default()
                ));
            }
        }
        if let Some(c) = shelves {
            let v = cl.ask(
                asker,
                lfs_proto::Command::ListShelves,
                serde_json::json!({ "path": path }),
            )?;
            let n = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|s| {
                            let name = s["name"].as_str().unwrap_or("");
                            name != "."
                                && name != ".."
                                && !(path == "/" && name == "lost+found")
                                && !name.starts_with(".lfs_pending_zero")
                                && !name.starts_with(".tmfs_hidden")
                        })
                        .count() as i64
                })
                .unwrap_or(0);
            if !c.holds(n) {
                bad.push(format!("{path} holds {n} entries, expected {c}"));
            }
        }
        if bad.is_empty() {
            Ok(())
        } else {
            bail!("{}", bad.join("; "))
        }
    }

    /// Leaves the cluster fit for `fame down`: background commands ended, paused nodes resumed,
    /// cut nodes healed.
    fn cleanup(&mut self, cl: &Cluster) {
        for (_, bg) in self.background.drain() {
            for mut r in bg.runs {
                kill_group(&r.child);
                let _ = wait_for(&mut r.child, Duration::from_secs(5));
            }
        }
        for n in std::mem::take(&mut self.paused) {
            let _ = cl.pause_node(&n, false);
        }
        for n in std::mem::take(&mut self.cut) {
            let _ = cl.set_cut(&n, false);
        }
    }
}

/// The checks of an exec step.
fn expect_exec(
    st: ExitStatus,
    out: &str,
    err: &str,
    exit: i32,
    stdout: Option<&Regex>,
    stderr: Option<&Regex>,
) -> Result<()> {
    match st.code() {
        Some(c) if c == exit => {}
        Some(c) => bail!("exit code {c}, expected {exit}"),
        None => bail!("killed by a signal ({st}), expected exit code {exit}"),
    }
    if let Some(r) = stdout {
        if !r.is_match(out) {
            bail!("stdout does not match /{r}/");
        }
    }
    if let Some(r) = stderr {
        if !r.is_match(err) {
            bail!("stderr does not match /{r}/");
        }
    }
    Ok(())
}
