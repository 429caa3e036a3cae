//! Scenario files: TOML read with spans, so that every mistake is reported as
//! `FILE:LINE: what is wrong; the fix`, and checked whole before any cluster starts.
//! The format is documented in `scenarios/README.md`.

use crate::scenario::steps::check::Cmp;
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
    pub action: crate::scenario::steps::Action,
}

// ---------------------------------------------------------------- parsing

/// Line (1-based) of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// Checks a scenario file: collects its mistakes, and knows what the steps check against each
/// other (the nodes there are, the background steps before, whether any cuts a node off).
pub struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    errors: Vec<SpecError>,
    /// Nodes of the cluster.
    pub nodes: u32,
    /// Whether a step cuts or heals a node (which needs the fault proxy).
    pub uses_cut: bool,
    /// Names of the steps so far, and of the background ones among them.
    step_names: Vec<String>,
    background: Vec<String>,
}

impl Checker<'_> {
    /// Records a mistake at byte offset `at` of the file.
    pub fn err(&mut self, at: usize, message: impl Into<String>) {
        self.errors.push(SpecError {
            file: self.file.to_path_buf(),
            line: line_of(self.text, at),
            message: message.into(),
        });
    }

    pub fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// Line (1-based) of byte offset `at`.
    pub fn line(&self, at: usize) -> usize {
        line_of(self.text, at)
    }

    /// Whether an earlier step named `name` runs in the background.
    pub fn is_background(&self, name: &str) -> bool {
        self.background.iter().any(|b| b == name)
    }

    /// Records the background step `name` (at `at`), whose name a `wait` must find alone.
    pub fn background_step(&mut self, at: usize, name: &str) {
        if self.step_names.iter().any(|n| n == name) || self.is_background(name) {
            self.err(
                at,
                format!("a background step needs a unique name; {name:?} is taken"),
            );
        }
        self.background.push(name.to_string());
    }

    /// Records "`field` = VALUE `what`" at the value's line; None, for the caller to return.
    fn bad<T>(
        &mut self,
        field: &str,
        v: &Spanned<String>,
        what: impl std::fmt::Display,
    ) -> Option<T> {
        self.err(
            v.span().start,
            format!("{field} = {:?} {what}", v.get_ref()),
        );
        None
    }

    pub fn duration(&mut self, field: &str, v: &Spanned<String>) -> Option<Duration> {
        match humantime::parse_duration(v.get_ref().trim()) {
            Err(e) => self.bad(
                field,
                v,
                format!("is not a duration ({e}); write it like \"30s\", \"500ms\" or \"2m\""),
            ),
            Ok(d) if d.is_zero() || d > MAX_DURATION => {
                self.bad(field, v, "is out of range; use more than 0 and at most 1h")
            }
            Ok(d) => Some(d),
        }
    }

    pub fn size(&mut self, field: &str, v: &Spanned<String>) -> Option<u64> {
        match parse_size(v.get_ref()) {
            Ok(n) if n > 0 => Some(n),
            _ => self.bad(
                field,
                v,
                "is not a size; write bytes with an optional K, M or G suffix, e.g. \"16M\"",
            ),
        }
    }

    pub fn regex(&mut self, field: &str, v: &Spanned<String>) -> Option<Regex> {
        // `^` and `$` match at every line, as one expects of command output.
        let built = regex::RegexBuilder::new(v.get_ref())
            .multi_line(true)
            .build();
        built.map_err(|e| {
            let first = e.to_string().lines().last().unwrap_or_default().trim().to_string();
            self.bad::<()>(
                field,
                v,
                format!("is not a regular expression ({first}); fix the pattern (regex crate syntax; escape literal characters like . ( [ with \\\\)"),
            )
        })
        .ok()
    }

    pub fn cmp(&mut self, field: &str, v: &Spanned<toml::Value>) -> Option<Cmp> {
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
    let mut cx = Checker {
        file,
        text,
        errors: vec![],
        nodes: 1,
        uses_cut: false,
        step_names: vec![],
        background: vec![],
    };
    // The document keeps the spans of every value, so that each step is read into its kind's
    // fields (see `steps`) with the lines of its mistakes.
    let toml_error = |cx: &mut Checker, e: toml::de::Error| {
        let at = e.span().map(|s| s.start).unwrap_or(0);
        let msg = e.message().trim().to_string();
        let fix = if msg.contains("unknown field") {
            "; remove or rename it"
        } else if msg.contains("missing field") {
            "; add it"
        } else {
            "; see scenarios/README.md for the format"
        };
        cx.err(at, format!("{msg}{fix}"));
        Err(std::mem::take(&mut cx.errors))
    };
    let mut doc = match toml::de::DeTable::parse(text) {
        Ok(d) => d,
        Err(e) => return toml_error(&mut cx, e),
    };
    let raw_steps = doc.get_mut().remove("step");
    let raw: RawFile = match RawFile::deserialize(toml::de::Deserializer::from(doc)) {
        Ok(r) => r,
        Err(e) => return toml_error(&mut cx, e),
    };
    let raw_steps: Vec<Spanned<toml::de::DeValue>> = match raw_steps {
        None => vec![],
        Some(v) => match v.into_inner() {
            toml::de::DeValue::Array(a) => a.into_iter().collect(),
            _ => {
                cx.err(
                    0,
                    "`step` is not a list of tables; write each step as a [[step]] table",
                );
                return Err(cx.errors);
            }
        },
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
    cx.nodes = nodes;
    if raw_steps.is_empty() {
        cx.err(
            text.len(),
            "no steps; add at least one [[step]] with a name and a kind",
        );
    }
    let mut steps: Vec<Step> = vec![];
    for (i, rs) in raw_steps.into_iter().enumerate() {
        if let Some(step) = crate::scenario::steps::parse(&mut cx, i, rs) {
            cx.step_names.push(step.name.clone());
            steps.push(step);
        }
    }
    let uses_cut = cx.uses_cut;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::steps::Action;

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
    fn a_good_file_parses() {
        let s = parse(
            Path::new("ok.toml"),
            &format!("{HEAD}[[step]]\nname = \"w\"\nkind = \"exec\"\non = \"all\"\nrun = \"true\"\ntimeout = \"5s\"\n"),
        )
        .unwrap();
        assert_eq!(s.name, "ok");
        assert_eq!(s.steps[0].timeout, Duration::from_secs(5));
        assert!(matches!(&s.steps[0].action, Action::Exec(e) if e.on.len() == 2));
    }

    /// Each bad file's mistakes: every message, one a line, each with the file and line of the
    /// mistake (`t.toml:LINE:`) and the words that say what to do.
    #[test]
    fn every_mistake_names_its_line_and_the_fix() {
        let cases: &[(&str, &[&str])] = &[
            (
                "[[step]]\nname = \"x\"\nkind = \"teleport\"\n",
                &["t.toml:6: unknown step kind \"teleport\" in step \"x\"; use one of: exec, fill, "],
            ),
            (
                "\n[[step]]\nname = \"w\"\nkind = \"fill\"\nfile = \"/lfs/a\"\n",
                &["t.toml:5: fill step \"w\" has no `size`; add `size = "],
            ),
            (
                "[[step]]\nkind = \"cut\"\non = \"node07\"\n",
                &["t.toml:6: on = \"node07\": the cluster has no such node"],
            ),
            (
                "[[step]]\nkind = \"exec\"\nrun = \"true\"\ntimeout = \"soon\"\n",
                &["t.toml:7: timeout = \"soon\" is not a duration"],
            ),
            (
                "[[step]]\nkind = \"exec\"\nrun = \"true\"\ntimeout = \"0s\"\n",
                &["t.toml:7: timeout = \"0s\" is out of range"],
            ),
            (
                "[[step]]\nkind = \"exec\"\nrun = \"true\"\nrnu = 3\nfoo = 1\n",
                &[
                    "t.toml:7: `rnu` does not belong to an exec step",
                    "t.toml:8: `foo` does not belong to an exec step",
                ],
            ),
            (
                "[[step]]\nkind = \"sleep\"\nfor = \"1s\"\nrun = \"x\"\n",
                &["t.toml:7: `run` does not belong to a sleep step (\"step 1\"); sleep takes name, timeout, for"],
            ),
            (
                "[[step]]\nkind = \"exec\"\nrun = \"true\"\nexit = \"x\"\n",
                &["t.toml:7: invalid type: string \"x\", expected i64; see scenarios/README.md"],
            ),
            (
                "[[step]]\nkind = \"fill\"\nfile = \"/lfs/f\"\nsize = \"1M\"\ndirect = true\nmmap = true\n",
                &["t.toml:9: direct = true and mmap = true"],
            ),
        ];
        for (steps, want) in cases {
            let got = errs(&format!("{HEAD}{steps}"));
            assert_eq!(got.len(), want.len(), "{steps}: {got:?}");
            for (g, w) in got.iter().zip(*want) {
                assert!(
                    g.starts_with(w) || g.contains(w),
                    "{steps}: {g:?} lacks {w:?}"
                );
                assert!(g.starts_with("t.toml:"), "{g}");
            }
        }
        let e = errs("[cluster\n");
        assert!(e[0].starts_with("t.toml:1:"), "{e:?}");
    }

    #[test]
    fn checks_compare() {
        let s = parse(
            Path::new("c.toml"),
            &format!("{HEAD}[[step]]\nkind = \"check\"\nbooks_used = \">= 2\"\nopens = 0\n"),
        )
        .unwrap();
        let Action::Check(c) = &s.steps[0].action else {
            panic!("{:?}", s.steps[0].action)
        };
        let books_used = c.books_used.unwrap();
        assert!(books_used.holds(2) && !books_used.holds(1));
        assert!(c.opens.unwrap().holds(0));
    }
}
