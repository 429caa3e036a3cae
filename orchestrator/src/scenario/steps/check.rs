//! `check`: what the Librarian reports (books in use, open files, entries of a directory)
//! compared with expected values, optionally until they hold, within a time limit.

use super::{Action, Nodes, On, StepCx};
use crate::scenario::faults::Cluster;
use crate::scenario::run::Runner;
use crate::scenario::spec::Step;
use anyhow::{anyhow, bail, Result};
use lfs_proto::request::{GetFsStats, ListOpenShelves, ListShelves};
use std::time::{Duration, Instant};

fields!(Fields; books_used: toml::Value, opens: toml::Value, on: On, shelves: toml::Value, path: String, within: String);

/// What to ask the Librarian and what its answers must be.
#[derive(Debug, Clone, Default)]
pub struct Check {
    pub books_used: Option<Cmp>,
    pub opens: Option<Cmp>,
    /// Whose opens count (all nodes' without it).
    pub opens_on: Option<Nodes>,
    /// Entries of `path`.
    pub shelves: Option<Cmp>,
    pub path: String,
    pub within: Option<Duration>,
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

pub fn parse(cx: &mut StepCx) -> Option<Action> {
    let f: Fields = cx.fields()?;
    let (at, name) = (cx.at, cx.name.clone());
    let books_used = f.books_used.as_ref().and_then(|v| cx.cmp("books_used", v));
    let opens = f.opens.as_ref().and_then(|v| cx.cmp("opens", v));
    let shelves = f.shelves.as_ref().and_then(|v| cx.cmp("shelves", v));
    if f.books_used.is_none() && f.opens.is_none() && f.shelves.is_none() {
        cx.err(
            at,
            format!("check step {name:?} checks nothing; add books_used, opens or shelves (e.g. books_used = \">= 1\")"),
        );
    }
    if f.on.is_some() && f.opens.is_none() {
        cx.err(
            at,
            format!("check step {name:?}: `on` picks whose opens are counted; add `opens` or remove `on`"),
        );
    }
    let opens_on = f.on.as_ref().map(|on| cx.nodes(Some(on), false));
    let path = f.path.as_ref().map_or("/", |p| p.get_ref()).to_string();
    if !path.starts_with('/') {
        cx.err(
            f.path.as_ref().map_or(at, |p| p.span().start),
            format!(
                "path = {path:?}: a Librarian path starts with / (the root of LFS, /lfs on a node)"
            ),
        );
    }
    Some(Action::Check(Check {
        books_used,
        opens,
        opens_on,
        shelves,
        path,
        within: f.within.as_ref().and_then(|w| cx.duration("within", w)),
    }))
}

impl Check {
    /// A check that no file is open.
    pub fn none_open() -> Check {
        Check {
            opens: Some(Cmp { op: "==", value: 0 }),
            path: "/".into(),
            ..Check::default()
        }
    }

    pub fn run(&self, r: &mut Runner, cl: &Cluster, step: &Step) -> (String, Result<()>) {
        let what = format!(
            "ask the Librarian:{}{}{}",
            self.books_used
                .map(|c| format!(" books_used {c}"))
                .unwrap_or_default(),
            self.opens
                .map(|c| format!(" opens{} {c}", self.of_nodes()))
                .unwrap_or_default(),
            self.shelves
                .map(|c| format!(" entries of {} {c}", self.path))
                .unwrap_or_default(),
        );
        let deadline = Instant::now() + self.within.unwrap_or_default().min(step.timeout);
        loop {
            let outcome = self.once(r, cl);
            if outcome.is_ok() || Instant::now() >= deadline {
                return (what, outcome);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn of_nodes(&self) -> String {
        self.opens_on
            .as_ref()
            .map(|o| format!(" of {}", o.join(",")))
            .unwrap_or_default()
    }

    /// Asks the Librarian once; an error lists every value that is not as expected.
    pub fn once(&self, r: &Runner, cl: &Cluster) -> Result<()> {
        let st = cl.state()?;
        let asker = r.asker(cl)?;
        let mut bad = vec![];
        if let Some(c) = self.books_used {
            let v = cl.ask(asker, &GetFsStats {})?;
            let used = v["books_used"]
                .as_i64()
                .ok_or_else(|| anyhow!("get_fs_stats has no books_used: {v}"))?;
            if !c.holds(used) {
                bad.push(format!("books_used is {used}, expected {c}"));
            }
        }
        if let Some(c) = self.opens {
            let opens = cl.ask(asker, &ListOpenShelves {})?;
            let ids: Option<Vec<i64>> = self.opens_on.as_ref().map(|o| {
                o.iter()
                    .filter_map(|n| st.node(n).map(|x| i64::from(x.id)))
                    .collect()
            });
            let n = opens
                .iter()
                .filter(|o| ids.as_ref().is_none_or(|ids| ids.contains(&o.node_id)))
                .count() as i64;
            if !c.holds(n) {
                bad.push(format!(
                    "open files{} are {n}, expected {c} (the Librarian's opens: {opens:?})",
                    self.of_nodes()
                ));
            }
        }
        if let Some(c) = self.shelves {
            let path = &self.path;
            let n = entries(cl, asker, path)?
                .iter()
                .filter(|name| {
                    !(name.as_str() == "."
                        || name.as_str() == ".."
                        || (path == "/" && name.as_str() == "lost+found")
                        || name.starts_with(".lfs_pending_zero")
                        || name.starts_with(".tmfs_hidden"))
                })
                .count() as i64;
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
}

/// The names in the Librarian's directory `path`.
pub fn entries(cl: &Cluster, asker: u32, path: &str) -> Result<Vec<String>> {
    let shelves = cl.ask(
        asker,
        &ListShelves {
            path: path.to_string(),
        },
    )?;
    Ok(shelves.into_iter().map(|s| s.name).collect())
}
