//! `exec`: a shell command in nodes, with its exit code and output checked; in the background
//! when asked (a later `wait` step collects it, see [`super::wait`]).

use super::{Action, Nodes, On, StepCx};
use crate::scenario::run::{Background, Runner};
use crate::scenario::spec::Step;
use anyhow::{bail, Result};
use regex::Regex;
use std::process::ExitStatus;
use std::time::{Duration, Instant};
use toml::Spanned;

fields!(Fields; on: On, run: String, exit: i64, stdout: String, stderr: String, background: bool, retry: String);

#[derive(Debug, Clone)]
pub struct Exec {
    pub on: Nodes,
    pub run: String,
    /// What the command's outcome must be.
    pub expect: Outcome,
    pub background: bool,
    /// Run it again until it passes, for up to this long.
    pub retry: Option<Duration>,
}

/// The checks of an exec step: exit code, and patterns its stdout and stderr must match.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub exit: i32,
    pub stdout: Option<Regex>,
    pub stderr: Option<Regex>,
}

impl Outcome {
    pub fn check(&self, st: ExitStatus, out: &str, err: &str) -> Result<()> {
        let exit = self.exit;
        match st.code() {
            Some(c) if c == exit => {}
            Some(c) => bail!("exit code {c}, expected {exit}"),
            None => bail!("killed by a signal ({st}), expected exit code {exit}"),
        }
        for (name, pattern, text) in [("stdout", &self.stdout, out), ("stderr", &self.stderr, err)]
        {
            if let Some(r) = pattern {
                if !r.is_match(text) {
                    bail!("{name} does not match /{r}/");
                }
            }
        }
        Ok(())
    }
}

pub fn parse(cx: &mut StepCx) -> Option<Action> {
    let f: Fields = cx.fields()?;
    cx.require("run", "\"ls /lfs\"", f.run.is_some());
    Some(Action::Exec(Exec {
        on: cx.nodes(f.on.as_ref(), false),
        run: f.run.map(Spanned::into_inner).unwrap_or_default(),
        expect: Outcome {
            exit: f.exit.map_or(0, |e| *e.get_ref() as i32),
            stdout: f.stdout.as_ref().and_then(|r| cx.regex("stdout", r)),
            stderr: f.stderr.as_ref().and_then(|r| cx.regex("stderr", r)),
        },
        background: f.background.is_some_and(|b| *b.get_ref()),
        retry: f.retry.as_ref().and_then(|r| cx.duration("retry", r)),
    }))
}

impl Exec {
    pub fn run(&self, r: &mut Runner, step: &Step) -> (String, Result<()>) {
        let what = format!("on {}: {}", self.on.join(","), self.run);
        if self.background {
            let started = r.spawn_all(&self.on, &self.run).map(|runs| {
                r.background.insert(
                    step.name.clone(),
                    Background {
                        runs,
                        exec: self.clone(),
                    },
                );
            });
            return (what, started);
        }
        let deadline = Instant::now() + self.retry.unwrap_or_default();
        loop {
            let outcome = r.run_all(&self.on, &self.run, step.timeout, |st, o, e| {
                self.expect.check(st, o, e)
            });
            if outcome.is_ok() || Instant::now() >= deadline {
                return (what, outcome);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}
