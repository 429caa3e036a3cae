//! `sleep` for a while, and `wait` for a background `exec` step to finish and pass.

use super::{Action, StepCx};
use crate::scenario::run::Runner;
use crate::scenario::spec::Step;
use anyhow::{anyhow, Result};
use std::time::Duration;

fields!(SleepFields; #[serde(rename = "for")] for_: String);

#[derive(Debug, Clone)]
pub struct Sleep(pub Duration);

pub fn parse_sleep(cx: &mut StepCx) -> Option<Action> {
    let f: SleepFields = cx.fields()?;
    cx.require("for", "\"2s\"", f.for_.is_some());
    let d = f.for_.as_ref().and_then(|d| cx.duration("for", d));
    Some(Action::Sleep(Sleep(d.unwrap_or_default())))
}

impl Sleep {
    pub fn run(&self) -> (String, Result<()>) {
        std::thread::sleep(self.0);
        (format!("sleep {:.1} s", self.0.as_secs_f64()), Ok(()))
    }
}

fields!(WaitFields; step: String);

/// The name of the background step to wait for.
#[derive(Debug, Clone)]
pub struct Wait(pub String);

pub fn parse_wait(cx: &mut StepCx) -> Option<Action> {
    let f: WaitFields = cx.fields()?;
    cx.require(
        "step",
        "\"the name of a background exec step\"",
        f.step.is_some(),
    );
    let target = f
        .step
        .as_ref()
        .map(|x| x.get_ref().clone())
        .unwrap_or_default();
    if let Some(x) = &f.step {
        if !cx.is_background(&target) {
            cx.err(
                x.span().start,
                format!("wait: no background exec step named {target:?} before this one; name an earlier step that has background = true"),
            );
        }
    }
    Some(Action::Wait(Wait(target)))
}

impl Wait {
    pub fn run(&self, r: &mut Runner, step: &Step) -> (String, Result<()>) {
        let target = &self.0;
        let Some(bg) = r.background.remove(target) else {
            return (
                format!("wait for {target}"),
                Err(anyhow!("{target:?} was already waited for")),
            );
        };
        let outcome = r.finish(bg.runs, step.timeout, &bg.exec.run, |st, o, e| {
            bg.exec.expect.check(st, o, e)
        });
        (format!("wait for {target:?}: {}", bg.exec.run), outcome)
    }
}
