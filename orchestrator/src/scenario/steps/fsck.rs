//! `fsck`: stop the Librarian, run `fsck-lfs --repair` on its database, start it again; the
//! database must be clean, or the repairs must be the expected ones.

use super::check::{entries, Check};
use super::{Action, StepCx};
use crate::scenario::faults::Cluster;
use crate::scenario::run::{indent, Runner};
use crate::scenario::spec::Step;
use anyhow::{bail, Result};
use lfs_fsck::Problem;
use std::time::{Duration, Instant};

fields!(Fields; expect: String, repairs: Vec<String>);

/// The problems fsck-lfs must find and repair (none: the database must be clean).
#[derive(Debug, Clone)]
pub struct Fsck {
    pub repairs: Vec<String>,
}

pub fn parse(cx: &mut StepCx) -> Option<Action> {
    let f: Fields = cx.fields()?;
    let mut repairs = vec![];
    match f.expect.as_ref().map(|e| (e.get_ref().as_str(), e.span().start)) {
        None | Some(("clean", _)) => {
            if let Some(r) = &f.repairs {
                cx.err(
                    r.span().start,
                    "fsck: `repairs` needs expect = \"repaired\"; set it, or remove `repairs` to require a clean database",
                );
            }
        }
        Some(("repaired", p)) => match &f.repairs {
            Some(r) if !r.get_ref().is_empty() => {
                for x in r.get_ref() {
                    if Problem::from_name(x).is_some() {
                        repairs.push(x.clone());
                    } else {
                        cx.err(
                            r.span().start,
                            format!(
                                "repairs: {x:?} is not an fsck-lfs problem; use some of: {}",
                                Problem::ALL
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
    Some(Action::Fsck(Fsck { repairs }))
}

impl Fsck {
    pub fn run(&self, r: &mut Runner, cl: &Cluster, step: &Step) -> (String, Result<()>) {
        let limit = step.timeout;
        // close(2) returns before the node's daemon has told the Librarian (FUSE release is
        // asynchronous), and an unlinked file's books are zeroed and its pending-zero shelf
        // destroyed after unlink(2) returned: let both land before the Librarian stops, or fsck
        // would find them as stale opens and partial unlinks. Files a scenario holds open stay
        // open.
        let settle = Instant::now() + Duration::from_secs(10).min(limit);
        let none_open = Check::none_open();
        while (none_open.once(r, cl).is_err() || zeroing_in_flight(r, cl))
            && Instant::now() < settle
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let outcome = (|| {
            let (text, found, unrepaired) = cl.fsck(limit)?;
            std::fs::write(r.dir.join(format!("fsck-{}.txt", step.line)), &text)?;
            self.judge(&text, &found, unrepaired)
        })();
        let what = if self.repairs.is_empty() {
            "stop the Librarian, fsck-lfs --repair (must be clean), start it".to_string()
        } else {
            format!(
                "stop the Librarian, fsck-lfs --repair (must repair {}), start it",
                self.repairs.join(", ")
            )
        };
        (what, outcome)
    }

    /// Whether fsck-lfs's report (`text`, the problems `found`) is the one expected.
    fn judge(&self, text: &str, found: &[String], unrepaired: usize) -> Result<()> {
        if unrepaired > 0 {
            bail!(
                "fsck-lfs left {unrepaired} problem(s) unrepaired:\n{}",
                indent(text)
            );
        }
        if self.repairs.is_empty() && !found.is_empty() {
            bail!(
                "the database was expected clean; fsck-lfs found and repaired {}:\n{}",
                found.join(", "),
                indent(text)
            );
        }
        let missing: Vec<&str> = self
            .repairs
            .iter()
            .filter(|p| !found.contains(p))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            bail!(
                "fsck-lfs did not find {} (it found: {}):\n{}",
                missing.join(", "),
                if found.is_empty() {
                    "nothing".to_string()
                } else {
                    found.join(", ")
                },
                indent(text)
            );
        }
        Ok(())
    }
}

/// Whether an unlinked file is still being zeroed: its pending-zero shelf stays in the root
/// until the node zeroing it destroys it.
fn zeroing_in_flight(r: &Runner, cl: &Cluster) -> bool {
    r.asker(cl)
        .and_then(|asker| entries(cl, asker, "/"))
        .is_ok_and(|names| names.iter().any(|n| n.starts_with(".lfs_pending_zero_")))
}
