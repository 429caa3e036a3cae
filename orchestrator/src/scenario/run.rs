//! Running one scenario: `fame up` its cluster, its steps in order, `fame down` (or keep it
//! with `--retain` when it failed). Commands in nodes go through `fame exec`, the same path a
//! person uses; faults and checks through [`super::faults`].

use super::faults::Cluster;
use super::spec::Scenario;
use super::steps::exec::Exec;
use super::steps::fault::Held;
use anyhow::{anyhow, bail, Context, Result};
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
pub struct Running {
    node: String,
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

/// A background exec step's commands, until a `wait` step collects them.
pub struct Background {
    pub runs: Vec<Running>,
    pub exec: Exec,
}

/// What the steps of one scenario run with: its cluster, where its outputs go, and the state
/// steps leave for later ones (background commands, nodes held in a fault).
pub struct Runner<'a> {
    sc: &'a Scenario,
    opts: &'a Options,
    cluster: String,
    /// The scenario's report directory (outputs, logs, fsck reports).
    pub dir: PathBuf,
    fame: PathBuf,
    /// How commands in the nodes name `lfs-node` (see [`Cluster::lfs_node_in_node`]).
    lfs_node: String,
    pub background: HashMap<String, Background>,
    /// Nodes a fault took away (killed, paused, cut): never used to ask the Librarian.
    pub faulted: BTreeSet<String>,
    paused: BTreeSet<String>,
    cut: BTreeSet<String>,
    seq: usize,
}

fn label(sc: &Scenario) -> String {
    sc.name.clone()
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

pub fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
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
    let mut ctx = Runner {
        sc,
        opts,
        cluster: name.clone(),
        dir: dir.clone(),
        fame: fame_exe.clone(),
        lfs_node: String::new(),
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
            ctx.lfs_node = cl.lfs_node_in_node().unwrap_or_default();
            let ts = Instant::now();
            let n = sc.steps.len();
            for (i, step) in sc.steps.iter().enumerate() {
                let t = Instant::now();
                let (what, outcome) = step.action.run(&mut ctx, &cl, step);
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
                        let nodes = step.action.nodes();
                        let mut logs = String::new();
                        for f in cl.log_files(nodes) {
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
                            step.action.kind(),
                            crate::progress::fmt_duration(took),
                            indent(&format!("{e:#}"))
                        )
                    }
                };
                result.steps.push(StepResult {
                    name: step.name.clone(),
                    kind: step.action.kind().into(),
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

impl Runner<'_> {
    /// The `--seed` of the run.
    pub fn seed(&self) -> u64 {
        self.opts.seed
    }

    /// How commands in the nodes name the `lfs-node` binary.
    pub fn lfs_node(&self) -> &str {
        &self.lfs_node
    }

    /// Runs `cmd` in every node of `on` at once, and checks each with `check` (see [`Self::finish`]).
    pub fn run_all(
        &mut self,
        on: &[String],
        cmd: &str,
        limit: Duration,
        check: impl Fn(ExitStatus, &str, &str) -> Result<()>,
    ) -> Result<()> {
        let runs = self.spawn_all(on, cmd)?;
        self.finish(runs, limit, cmd, check)
    }

    /// Puts the nodes `on` into (`begin`) or out of the fault `held` through `act`. A node
    /// counts as faulted from before the fault is applied until it is undone, so that nothing
    /// waits on it meanwhile.
    pub fn hold(
        &mut self,
        held: Held,
        on: &[String],
        begin: bool,
        mut act: impl FnMut(&str) -> Result<()>,
    ) -> Result<()> {
        let set = match held {
            Held::Cut => &mut self.cut,
            Held::Paused => &mut self.paused,
        };
        on.iter().try_for_each(|n| {
            if begin {
                self.faulted.insert(n.clone());
                set.insert(n.clone());
                act(n)
            } else {
                act(n)?;
                set.remove(n);
                self.faulted.remove(n);
                Ok(())
            }
        })
    }

    /// Starts `cmd` under `sh -c` in every node of `on` at once.
    pub fn spawn_all(&mut self, on: &[String], cmd: &str) -> Result<Vec<Running>> {
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
                .arg(format!("LFS_NODE={}", self.lfs_node))
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
    pub fn finish(
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
    pub fn asker(&self, cl: &Cluster) -> Result<u32> {
        Ok(cl
            .state()?
            .nodes
            .iter()
            .find(|n| !self.faulted.contains(&n.name))
            .map(|n| n.id)
            .unwrap_or(1))
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
