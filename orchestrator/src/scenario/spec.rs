//! Scenario files: TOML read with spans, so that every mistake is reported as
//! `FILE:LINE: what is wrong; the fix`, and checked whole before any cluster starts.
//! The format is documented in `scenarios/README.md`.

use crate::size::parse_size;
use regex::Regex;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// The default `timeout` of a step.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest `timeout`, `within` or `for` accepted (a scenario is a test, not a soak).
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

/// One mistake in a scenario file.
#[derive(Debug, Clone)]
pub struct SpecError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

// ---------------------------------------------------------------- raw TOML

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    name: Option<Spanned<String>>,
    #[allow(dead_code)]
    description: Option<String>,
    cluster: Option<Spanned<RawCluster>>,
    #[serde(default)]
    step: Vec<Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCluster {
    nodes: Option<Spanned<i64>>,
    fam: Option<Spanned<String>>,
    #[serde(alias = "book_size")]
    book_size: Option<Spanned<String>>,
    backend: Option<Spanned<String>>,
    #[serde(alias = "librarian_timeout")]
    librarian_timeout: Option<Spanned<i64>>,
    #[serde(alias = "fault_proxy")]
    fault_proxy: Option<bool>,
    #[serde(alias = "up_timeout")]
    up_timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawOn {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: Option<Spanned<String>>,
    kind: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    on: Option<Spanned<RawOn>>,
    run: Option<Spanned<String>>,
    exit: Option<Spanned<i64>>,
    stdout: Option<Spanned<String>>,
    stderr: Option<Spanned<String>>,
    background: Option<Spanned<bool>>,
    retry: Option<Spanned<String>>,
    file: Option<Spanned<String>>,
    size: Option<Spanned<String>>,
    seed: Option<Spanned<i64>>,
    direct: Option<Spanned<bool>>,
    mmap: Option<Spanned<bool>>,
    error: Option<Spanned<String>>,
    within: Option<Spanned<String>>,
    expect: Option<Spanned<String>>,
    repairs: Option<Spanned<Vec<String>>>,
    books_used: Option<Spanned<toml::Value>>,
    opens: Option<Spanned<toml::Value>>,
    shelves: Option<Spanned<toml::Value>>,
    path: Option<Spanned<String>>,
    #[serde(rename = "for")]
    for_: Option<Spanned<String>>,
    step: Option<Spanned<String>>,
}

// ---------------------------------------------------------------- checked form

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub file: PathBuf,
    pub cluster: ClusterSpec,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub nodes: u32,
    pub fam: String,
    pub book_size: Option<String>,
    pub backend: Option<crate::backend::BackendKind>,
    pub librarian_timeout: Option<u64>,
    pub fault_proxy: bool,
    pub up_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub line: usize,
    pub timeout: Duration,
    pub action: Action,
}

/// Which nodes a step runs on, as names.
pub type Nodes = Vec<String>;

#[derive(Debug, Clone)]
pub enum Action {
    Exec {
        on: Nodes,
        run: String,
        exit: i32,
        stdout: Option<Regex>,
        stderr: Option<Regex>,
        background: bool,
        retry: Option<Duration>,
    },
    Fill {
        on: Nodes,
        file: String,
        size: u64,
        seed: Option<u64>,
        direct: bool,
        /// Through a plain mmap of the file (FAM through the nodes' preload).
        mmap: bool,
    },
    Verify {
        on: Nodes,
        file: String,
        size: Option<u64>,
        seed: Option<u64>,
        direct: bool,
        /// Through a plain mmap of the file (FAM through the nodes' preload).
        mmap: bool,
    },
    Expect {
        on: Nodes,
        run: String,
        errno: i32,
        errno_name: String,
        within: Option<Duration>,
    },
    KillLibrarian,
    StartLibrarian,
    KillNode(Nodes),
    StartNode(Nodes),
    Cut(Nodes),
    Heal(Nodes),
    Pause(Nodes),
    Resume(Nodes),
    Fsck {
        repairs: Vec<String>,
    },
    Check {
        books_used: Option<Cmp>,
        opens: Option<Cmp>,
        opens_on: Option<Nodes>,
        shelves: Option<Cmp>,
        path: String,
        within: Option<Duration>,
    },
    Sleep(Duration),
    Wait(String),
}

/// `3`, `">= 3"`, `"< 10"`, `"!= 0"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cmp {
    pub op: &'static str,
    pub value: i64,
}

impl Cmp {
    pub fn holds(&self, v: i64) -> bool {
        match self.op {
            "==" => v == self.value,
            "!=" => v != self.value,
            ">=" => v >= self.value,
            "<=" => v <= self.value,
            ">" => v > self.value,
            _ => v < self.value,
        }
    }
}

impl std::fmt::Display for Cmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.op, self.value)
    }
}

/// The step kinds, with the fields each one takes (beyond `name`, `kind` and `timeout`).
pub const KINDS: &[(&str, &[&str])] = &[
    (
        "exec",
        &[
            "on",
            "run",
            "exit",
            "stdout",
            "stderr",
            "background",
            "retry",
        ],
    ),
    ("fill", &["on", "file", "size", "seed", "direct", "mmap"]),
    ("verify", &["on", "file", "size", "seed", "direct", "mmap"]),
    ("expect", &["on", "run", "error", "within"]),
    ("kill-librarian", &[]),
    ("start-librarian", &[]),
    ("kill-node", &["on"]),
    ("start-node", &["on"]),
    ("cut", &["on"]),
    ("heal", &["on"]),
    ("pause", &["on"]),
    ("resume", &["on"]),
    ("fsck", &["expect", "repairs"]),
    (
        "check",
        &["books_used", "opens", "on", "shelves", "path", "within"],
    ),
    ("sleep", &["for"]),
    ("wait", &["step"]),
];

/// Errno names `expect` knows.
pub const ERRNOS: &[(&str, i32)] = &[
    ("ENOSPC", libc::ENOSPC),
    ("EBUSY", libc::EBUSY),
    ("EIO", libc::EIO),
    ("ENOENT", libc::ENOENT),
    ("EEXIST", libc::EEXIST),
    ("ENOTEMPTY", libc::ENOTEMPTY),
    ("EACCES", libc::EACCES),
    ("EPERM", libc::EPERM),
    ("EINVAL", libc::EINVAL),
    ("EROFS", libc::EROFS),
    ("ENOTDIR", libc::ENOTDIR),
    ("EISDIR", libc::EISDIR),
    ("EMFILE", libc::EMFILE),
    ("EFBIG", libc::EFBIG),
    ("ENOTCONN", libc::ENOTCONN),
    ("ETIMEDOUT", libc::ETIMEDOUT),
    ("ENAMETOOLONG", libc::ENAMETOOLONG),
    ("EXDEV", libc::EXDEV),
];

// ---------------------------------------------------------------- parsing

/// Line (1-based) of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
    errors: Vec<SpecError>,
}

impl Ctx<'_> {
    fn err(&mut self, at: usize, message: impl Into<String>) {
        self.errors.push(SpecError {
            file: self.file.to_path_buf(),
            line: line_of(self.text, at),
            message: message.into(),
        });
    }

    fn duration(&mut self, field: &str, v: &Spanned<String>) -> Option<Duration> {
        let d = match humantime::parse_duration(v.get_ref().trim()) {
            Ok(d) => d,
            Err(e) => {
                self.err(
                    v.span().start,
                    format!(
                        "{field} = {:?} is not a duration ({e}); write it like \"30s\", \"500ms\" or \"2m\"",
                        v.get_ref()
                    ),
                );
                return None;
            }
        };
        if d.is_zero() || d > MAX_DURATION {
            self.err(
                v.span().start,
                format!(
                    "{field} = {:?} is out of range; use more than 0 and at most 1h",
                    v.get_ref()
                ),
            );
            return None;
        }
        Some(d)
    }

    fn size(&mut self, field: &str, v: &Spanned<String>) -> Option<u64> {
        match parse_size(v.get_ref()) {
            Ok(n) if n > 0 => Some(n),
            _ => {
                self.err(
                    v.span().start,
                    format!(
                        "{field} = {:?} is not a size; write bytes with an optional K, M or G suffix, e.g. \"16M\"",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn regex(&mut self, field: &str, v: &Spanned<String>) -> Option<Regex> {
        // `^` and `$` match at every line, as one expects of command output.
        match regex::RegexBuilder::new(v.get_ref())
            .multi_line(true)
            .build()
        {
            Ok(r) => Some(r),
            Err(e) => {
                let first = e.to_string().lines().last().unwrap_or_default().to_string();
                self.err(
                    v.span().start,
                    format!(
                        "{field} = {:?} is not a regular expression ({}); fix the pattern (regex crate syntax; escape literal characters like . ( [ with \\\\)",
                        v.get_ref(),
                        first.trim()
                    ),
                );
                None
            }
        }
    }

    fn cmp(&mut self, field: &str, v: &Spanned<toml::Value>) -> Option<Cmp> {
        let bad = |c: &mut Self| {
            c.err(
                v.span().start,
                format!(
                    "{field} = {} is not a comparison; write a number (3) or a string such as \">= 3\", \"< 10\", \"!= 0\"",
                    v.get_ref()
                ),
            );
            None
        };
        match v.get_ref() {
            toml::Value::Integer(n) => Some(Cmp {
                op: "==",
                value: *n,
            }),
            toml::Value::String(s) => {
                let s = s.trim();
                for op in ["==", "!=", ">=", "<=", ">", "<"] {
                    if let Some(rest) = s.strip_prefix(op) {
                        return match rest.trim().parse() {
                            Ok(value) => Some(Cmp { op, value }),
                            Err(_) => bad(self),
                        };
                    }
                }
                match s.parse() {
                    Ok(value) => Some(Cmp { op: "==", value }),
                    Err(_) => bad(self),
                }
            }
            _ => bad(self),
        }
    }
}

/// Node `s` of a cluster of `n` nodes: `node02`, `02` or `2`.
fn node_name(s: &str, n: u32) -> Option<String> {
    let num = s.strip_prefix("node").unwrap_or(s);
    let id: u32 = num.parse().ok()?;
    (1..=n).contains(&id).then(|| format!("node{id:02}"))
}

/// Reads and checks one scenario file; every mistake found is returned, not just the first.
pub fn load(file: &Path) -> Result<Scenario, Vec<SpecError>> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            return Err(vec![SpecError {
                file: file.to_path_buf(),
                line: 0,
                message: format!("cannot read it ({e}); check the path"),
            }])
        }
    };
    parse(file, &text)
}

pub fn parse(file: &Path, text: &str) -> Result<Scenario, Vec<SpecError>> {
    let mut cx = Ctx {
        file,
        text,
        errors: vec![],
    };
    let raw: RawFile = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let at = e.span().map(|s| s.start).unwrap_or(0);
            let msg = e.message().trim().to_string();
            let fix = if msg.contains("unknown field") {
                if msg.contains("expected one of `name`, `kind`") {
                    format!(
                        "; the fields of a step are name, kind, timeout and those of its kind: {}",
                        kinds_help()
                    )
                } else {
                    "; remove or rename it".to_string()
                }
            } else if msg.contains("missing field") {
                "; add it".to_string()
            } else {
                "; see scenarios/README.md for the format".to_string()
            };
            cx.err(at, format!("{msg}{fix}"));
            return Err(cx.errors);
        }
    };
    let name = raw
        .name
        .as_ref()
        .map(|n| n.get_ref().clone())
        .unwrap_or_else(|| {
            file.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "scenario".into())
        });
    let Some(rc) = raw.cluster else {
        cx.err(
            0,
            "no [cluster] table; add one, e.g. [cluster] nodes = 2, fam = \"1G\"",
        );
        return Err(cx.errors);
    };
    let cluster_line = rc.span().start;
    let rc = rc.into_inner();
    let nodes = match &rc.nodes {
        None => {
            cx.err(
                cluster_line,
                "[cluster] has no `nodes`; add `nodes = 2` (1 to 80)",
            );
            1
        }
        Some(n) if !(1..=80).contains(n.get_ref()) => {
            cx.err(
                n.span().start,
                format!(
                    "nodes = {} is out of range; a cluster has 1 to 80 nodes",
                    n.get_ref()
                ),
            );
            1
        }
        Some(n) => *n.get_ref() as u32,
    };
    if let Some(f) = &rc.fam {
        cx.size("fam", f);
    }
    if let Some(b) = &rc.book_size {
        cx.size("book-size", b);
    }
    if let Some(b) = &rc.backend {
        if crate::backend::BackendKind::from_name(b.get_ref()).is_none() {
            cx.err(
                b.span().start,
                format!(
                    "backend = {:?} is not a backend; use one of: {}",
                    b.get_ref(),
                    crate::backend::BackendKind::names()
                ),
            );
        }
    }
    let librarian_timeout = match &rc.librarian_timeout {
        Some(t) if !(1..=3600).contains(t.get_ref()) => {
            cx.err(
                t.span().start,
                format!(
                    "librarian-timeout = {} is out of range; use 1 to 3600 (seconds)",
                    t.get_ref()
                ),
            );
            None
        }
        Some(t) => Some(*t.get_ref() as u64),
        None => None,
    };
    let up_timeout = match &rc.up_timeout {
        Some(t) => cx.duration("up-timeout", t).unwrap_or(DEFAULT_TIMEOUT),
        None => Duration::from_secs(120),
    };
    let mut uses_cut = false;
    let mut steps: Vec<Step> = vec![];
    let mut background: Vec<String> = vec![];
    if raw.step.is_empty() {
        cx.err(
            text.len(),
            "no steps; add at least one [[step]] with a name and a kind",
        );
    }
    for (i, rs) in raw.step.iter().enumerate() {
        let at = rs.span().start;
        let s = rs.get_ref();
        let name = s
            .name
            .as_ref()
            .map(|n| n.get_ref().clone())
            .unwrap_or_else(|| format!("step {}", i + 1));
        let Some(kind) = &s.kind else {
            cx.err(
                at,
                format!(
                    "step {:?} has no `kind`; add one of: {}",
                    name,
                    KINDS.iter().map(|k| k.0).collect::<Vec<_>>().join(", ")
                ),
            );
            continue;
        };
        let Some((kind_name, allowed)) = KINDS.iter().find(|k| k.0 == kind.get_ref()) else {
            cx.err(
                kind.span().start,
                format!(
                    "unknown step kind {:?} in step {:?}; use one of: {}",
                    kind.get_ref(),
                    name,
                    KINDS.iter().map(|k| k.0).collect::<Vec<_>>().join(", ")
                ),
            );
            continue;
        };
        // Fields that do not belong to this kind.
        let present: [(&str, Option<usize>); 22] = [
            ("on", s.on.as_ref().map(|v| v.span().start)),
            ("run", s.run.as_ref().map(|v| v.span().start)),
            ("exit", s.exit.as_ref().map(|v| v.span().start)),
            ("stdout", s.stdout.as_ref().map(|v| v.span().start)),
            ("stderr", s.stderr.as_ref().map(|v| v.span().start)),
            ("background", s.background.as_ref().map(|v| v.span().start)),
            ("retry", s.retry.as_ref().map(|v| v.span().start)),
            ("file", s.file.as_ref().map(|v| v.span().start)),
            ("size", s.size.as_ref().map(|v| v.span().start)),
            ("seed", s.seed.as_ref().map(|v| v.span().start)),
            ("direct", s.direct.as_ref().map(|v| v.span().start)),
            ("mmap", s.mmap.as_ref().map(|v| v.span().start)),
            ("error", s.error.as_ref().map(|v| v.span().start)),
            ("within", s.within.as_ref().map(|v| v.span().start)),
            ("expect", s.expect.as_ref().map(|v| v.span().start)),
            ("repairs", s.repairs.as_ref().map(|v| v.span().start)),
            ("books_used", s.books_used.as_ref().map(|v| v.span().start)),
            ("opens", s.opens.as_ref().map(|v| v.span().start)),
            ("shelves", s.shelves.as_ref().map(|v| v.span().start)),
            ("path", s.path.as_ref().map(|v| v.span().start)),
            ("for", s.for_.as_ref().map(|v| v.span().start)),
            ("step", s.step.as_ref().map(|v| v.span().start)),
        ];
        for (field, pos) in present {
            if let Some(p) = pos {
                if !allowed.contains(&field) {
                    cx.err(
                        p,
                        format!(
                            "`{field}` does not belong to a {kind_name} step ({name:?}); {} takes {}",
                            kind_name,
                            if allowed.is_empty() {
                                "only name and timeout".to_string()
                            } else {
                                format!("name, timeout, {}", allowed.join(", "))
                            }
                        ),
                    );
                }
            }
        }
        let timeout = match &s.timeout {
            Some(t) => cx.duration("timeout", t).unwrap_or(DEFAULT_TIMEOUT),
            None => DEFAULT_TIMEOUT,
        };
        let n_errors = cx.errors.len();
        let require = |cx: &mut Ctx, field: &str, example: &str, has: bool| {
            if !has {
                cx.err(
                    at,
                    format!(
                        "{kind_name} step {name:?} has no `{field}`; add `{field} = {example}`"
                    ),
                );
            }
        };
        // `on`: nodes; default node01 (or every node for verify).
        let on_nodes = |cx: &mut Ctx, default_all: bool| -> Nodes {
            let all: Nodes = (1..=nodes).map(|i| format!("node{i:02}")).collect();
            let Some(on) = &s.on else {
                return if default_all {
                    all
                } else {
                    vec![all[0].clone()]
                };
            };
            let list: Vec<String> = match on.get_ref() {
                RawOn::One(x) if x == "all" => return all,
                RawOn::One(x) => vec![x.clone()],
                RawOn::Many(v) => v.clone(),
            };
            let given = list.len();
            let mut out = vec![];
            for x in list {
                match node_name(&x, nodes) {
                    Some(n) if !out.contains(&n) => out.push(n),
                    Some(_) => {}
                    None => cx.err(
                        on.span().start,
                        format!(
                            "on = {x:?}: the cluster has no such node; its nodes are node01..node{nodes:02} (or \"all\"); name one of them or raise [cluster] nodes"
                        ),
                    ),
                }
            }
            if given == 0 {
                cx.err(
                    on.span().start,
                    "on = []: name at least one node, or \"all\"",
                );
            }
            out
        };
        let action = match *kind_name {
            "exec" => {
                require(&mut cx, "run", "\"ls /lfs\"", s.run.is_some());
                Action::Exec {
                    on: on_nodes(&mut cx, false),
                    run: s
                        .run
                        .as_ref()
                        .map(|r| r.get_ref().clone())
                        .unwrap_or_default(),
                    exit: s.exit.as_ref().map(|e| *e.get_ref() as i32).unwrap_or(0),
                    stdout: s.stdout.as_ref().and_then(|r| cx.regex("stdout", r)),
                    stderr: s.stderr.as_ref().and_then(|r| cx.regex("stderr", r)),
                    background: s.background.as_ref().is_some_and(|b| *b.get_ref()),
                    retry: s.retry.as_ref().and_then(|r| cx.duration("retry", r)),
                }
            }
            "fill" | "verify" => {
                require(&mut cx, "file", "\"/lfs/data\"", s.file.is_some());
                if *kind_name == "fill" {
                    require(&mut cx, "size", "\"16M\"", s.size.is_some());
                }
                let on = on_nodes(&mut cx, *kind_name == "verify");
                let file = s
                    .file
                    .as_ref()
                    .map(|f| f.get_ref().clone())
                    .unwrap_or_default();
                let size = s.size.as_ref().and_then(|z| cx.size("size", z));
                let seed = s.seed.as_ref().map(|x| *x.get_ref() as u64);
                let direct = s.direct.as_ref().is_some_and(|d| *d.get_ref());
                let mmap = s.mmap.as_ref().is_some_and(|d| *d.get_ref());
                if let (true, Some(m)) = (direct && mmap, &s.mmap) {
                    cx.err(
                        m.span().start,
                        "direct = true and mmap = true: a step goes through the direct map or a plain mmap, not both; drop one",
                    );
                }
                if *kind_name == "fill" {
                    Action::Fill {
                        on,
                        file,
                        size: size.unwrap_or(0),
                        seed,
                        direct,
                        mmap,
                    }
                } else {
                    Action::Verify {
                        on,
                        file,
                        size,
                        seed,
                        direct,
                        mmap,
                    }
                }
            }
            "expect" => {
                require(&mut cx, "run", "\"touch /lfs/x\"", s.run.is_some());
                require(&mut cx, "error", "\"ENOSPC\"", s.error.is_some());
                let (errno, errno_name) = match &s.error {
                    Some(e) => match ERRNOS.iter().find(|(n, _)| n == e.get_ref()) {
                        Some((n, v)) => (*v, n.to_string()),
                        None => {
                            cx.err(
                                e.span().start,
                                format!(
                                    "error = {:?} is not an errno expect knows; use one of: {}",
                                    e.get_ref(),
                                    ERRNOS.iter().map(|x| x.0).collect::<Vec<_>>().join(", ")
                                ),
                            );
                            (0, String::new())
                        }
                    },
                    None => (0, String::new()),
                };
                Action::Expect {
                    on: on_nodes(&mut cx, false),
                    run: s
                        .run
                        .as_ref()
                        .map(|r| r.get_ref().clone())
                        .unwrap_or_default(),
                    errno,
                    errno_name,
                    within: s.within.as_ref().and_then(|w| cx.duration("within", w)),
                }
            }
            "kill-librarian" => Action::KillLibrarian,
            "start-librarian" => Action::StartLibrarian,
            k @ ("kill-node" | "start-node" | "cut" | "heal" | "pause" | "resume") => {
                require(&mut cx, "on", "\"node02\"", s.on.is_some());
                let on = on_nodes(&mut cx, false);
                match k {
                    "kill-node" => Action::KillNode(on),
                    "start-node" => Action::StartNode(on),
                    "cut" => {
                        uses_cut = true;
                        Action::Cut(on)
                    }
                    "heal" => {
                        uses_cut = true;
                        Action::Heal(on)
                    }
                    "pause" => Action::Pause(on),
                    _ => Action::Resume(on),
                }
            }
            "fsck" => {
                let mut repairs = vec![];
                match s.expect.as_ref().map(|e| (e.get_ref().as_str(), e.span().start)) {
                    None | Some(("clean", _)) => {
                        if let Some(r) = &s.repairs {
                            cx.err(
                                r.span().start,
                                "fsck: `repairs` needs expect = \"repaired\"; set it, or remove `repairs` to require a clean database",
                            );
                        }
                    }
                    Some(("repaired", p)) => match &s.repairs {
                        Some(r) if !r.get_ref().is_empty() => {
                            for x in r.get_ref() {
                                if lfs_fsck::Problem::from_name(x).is_some() {
                                    repairs.push(x.clone());
                                } else {
                                    cx.err(
                                        r.span().start,
                                        format!(
                                            "repairs: {x:?} is not an fsck-lfs problem; use some of: {}",
                                            lfs_fsck::Problem::ALL
                                                .iter()
                                                .map(|p| p.name())
                                                .collect::<Vec<_>>()
                                                .join(", ")
                                        ),
                                    );
                                }
                            }
                        }
                        _ => cx.err(
                            p,
                            "fsck with expect = \"repaired\" needs the problems it must repair; add e.g. repairs = [\"StaleOpen\"]",
                        ),
                    },
                    Some((other, p)) => cx.err(
                        p,
                        format!("fsck: expect = {other:?} is not an outcome; use \"clean\" or \"repaired\""),
                    ),
                }
                Action::Fsck { repairs }
            }
            "check" => {
                let books_used = s.books_used.as_ref().and_then(|v| cx.cmp("books_used", v));
                let opens = s.opens.as_ref().and_then(|v| cx.cmp("opens", v));
                let shelves = s.shelves.as_ref().and_then(|v| cx.cmp("shelves", v));
                if s.books_used.is_none() && s.opens.is_none() && s.shelves.is_none() {
                    cx.err(
                        at,
                        format!("check step {name:?} checks nothing; add books_used, opens or shelves (e.g. books_used = \">= 1\")"),
                    );
                }
                if s.on.is_some() && s.opens.is_none() {
                    cx.err(at, format!("check step {name:?}: `on` picks whose opens are counted; add `opens` or remove `on`"));
                }
                let opens_on = s.on.as_ref().map(|_| on_nodes(&mut cx, false));
                let path = s
                    .path
                    .as_ref()
                    .map(|p| p.get_ref().clone())
                    .unwrap_or_else(|| "/".into());
                if !path.starts_with('/') {
                    cx.err(s.path.as_ref().map_or(at, |p| p.span().start), format!("path = {path:?}: a Librarian path starts with / (the root of LFS, /lfs on a node)"));
                }
                Action::Check {
                    books_used,
                    opens,
                    opens_on,
                    shelves,
                    path,
                    within: s.within.as_ref().and_then(|w| cx.duration("within", w)),
                }
            }
            "sleep" => {
                require(&mut cx, "for", "\"2s\"", s.for_.is_some());
                Action::Sleep(
                    s.for_
                        .as_ref()
                        .and_then(|f| cx.duration("for", f))
                        .unwrap_or_default(),
                )
            }
            "wait" => {
                require(
                    &mut cx,
                    "step",
                    "\"the name of a background exec step\"",
                    s.step.is_some(),
                );
                let target = s
                    .step
                    .as_ref()
                    .map(|x| x.get_ref().clone())
                    .unwrap_or_default();
                if let Some(x) = &s.step {
                    if !background.contains(&target) {
                        cx.err(
                            x.span().start,
                            format!("wait: no background exec step named {target:?} before this one; name an earlier step that has background = true"),
                        );
                    }
                }
                Action::Wait(target)
            }
            _ => unreachable!("every kind of KINDS is handled"),
        };
        if let Action::Exec {
            background: true, ..
        } = &action
        {
            if steps.iter().any(|st| st.name == name) || background.contains(&name) {
                cx.err(
                    at,
                    format!("a background step needs a unique name; {name:?} is taken"),
                );
            }
            background.push(name.clone());
        }
        if cx.errors.len() == n_errors {
            steps.push(Step {
                name,
                line: line_of(text, at),
                timeout,
                action,
            });
        }
    }
    if uses_cut && rc.fault_proxy == Some(false) {
        cx.err(
            cluster_line,
            "the steps cut or heal nodes, which needs the fault proxy; remove fault-proxy = false from [cluster]",
        );
    }
    if !cx.errors.is_empty() {
        return Err(cx.errors);
    }
    Ok(Scenario {
        name,
        file: file.to_path_buf(),
        cluster: ClusterSpec {
            nodes,
            fam: rc
                .fam
                .map(|f| f.into_inner())
                .unwrap_or_else(|| "1G".into()),
            book_size: rc.book_size.map(|b| b.into_inner()),
            backend: rc
                .backend
                .and_then(|b| crate::backend::BackendKind::from_name(b.get_ref())),
            librarian_timeout,
            fault_proxy: rc.fault_proxy.unwrap_or(uses_cut),
            up_timeout,
        },
        steps,
    })
}

fn kinds_help() -> String {
    KINDS
        .iter()
        .map(|(k, f)| {
            if f.is_empty() {
                k.to_string()
            } else {
                format!("{k} ({})", f.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(text: &str) -> Vec<String> {
        parse(Path::new("t.toml"), text)
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const HEAD: &str = "[cluster]\nnodes = 2\nfam = \"1G\"\n";

    #[test]
    fn a_step_is_direct_or_mmap_not_both() {
        let e = errs(&format!(
            "{HEAD}[[step]]\nkind = \"fill\"\nfile = \"/lfs/f\"\nsize = \"1M\"\ndirect = true\nmmap = true\n"
        ));
        assert!(
            e.iter()
                .any(|m| m.contains("direct = true and mmap = true")),
            "{e:?}"
        );
    }

    #[test]
    fn a_good_file_parses() {
        let s = parse(
            Path::new("ok.toml"),
            &format!("{HEAD}[[step]]\nname = \"w\"\nkind = \"exec\"\non = \"all\"\nrun = \"true\"\ntimeout = \"5s\"\n"),
        )
        .unwrap();
        assert_eq!(s.name, "ok");
        assert_eq!(s.steps[0].timeout, Duration::from_secs(5));
        assert!(matches!(&s.steps[0].action, Action::Exec { on, .. } if on.len() == 2));
    }

    #[test]
    fn an_unknown_kind_names_the_line_and_the_kinds() {
        let e = errs(&format!(
            "{HEAD}[[step]]\nname = \"x\"\nkind = \"teleport\"\n"
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("t.toml:6: unknown step kind \"teleport\""),
            "{e:?}"
        );
        assert!(e[0].contains("exec, fill"), "{e:?}");
    }

    #[test]
    fn a_missing_field_names_the_step_and_the_fix() {
        let e = errs(&format!(
            "{HEAD}\n[[step]]\nname = \"w\"\nkind = \"fill\"\nfile = \"/lfs/a\"\n"
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("t.toml:5: fill step \"w\" has no `size`; add `size = "),
            "{e:?}"
        );
    }

    #[test]
    fn a_node_that_does_not_exist() {
        let e = errs(&format!(
            "{HEAD}[[step]]\nkind = \"cut\"\non = \"node07\"\n"
        ));
        assert!(
            e[0].starts_with("t.toml:6: on = \"node07\": the cluster has no such node"),
            "{e:?}"
        );
    }

    #[test]
    fn a_bad_timeout() {
        let e = errs(&format!(
            "{HEAD}[[step]]\nkind = \"exec\"\nrun = \"true\"\ntimeout = \"soon\"\n"
        ));
        assert!(
            e[0].starts_with("t.toml:7: timeout = \"soon\" is not a duration"),
            "{e:?}"
        );
        let e = errs(&format!(
            "{HEAD}[[step]]\nkind = \"exec\"\nrun = \"true\"\ntimeout = \"0s\"\n"
        ));
        assert!(e[0].contains("out of range"), "{e:?}");
    }

    #[test]
    fn unknown_fields_and_toml_errors_have_lines() {
        let e = errs(&format!(
            "{HEAD}[[step]]\nkind = \"exec\"\nrun = \"true\"\nrnu = 3\n"
        ));
        assert!(
            e[0].starts_with("t.toml:7:") && e[0].contains("rnu"),
            "{e:?}"
        );
        let e = errs("[cluster\n");
        assert!(e[0].starts_with("t.toml:1:"), "{e:?}");
        let e = errs(&format!(
            "{HEAD}[[step]]\nkind = \"sleep\"\nfor = \"1s\"\nrun = \"x\"\n"
        ));
        assert!(
            e[0].contains("`run` does not belong to a sleep step"),
            "{e:?}"
        );
    }

    #[test]
    fn checks_compare() {
        let s = parse(
            Path::new("c.toml"),
            &format!("{HEAD}[[step]]\nkind = \"check\"\nbooks_used = \">= 2\"\nopens = 0\n"),
        )
        .unwrap();
        let Action::Check {
            books_used, opens, ..
        } = &s.steps[0].action
        else {
            panic!()
        };
        assert!(books_used.unwrap().holds(2) && !books_used.unwrap().holds(1));
        assert!(opens.unwrap().holds(0));
    }
}
