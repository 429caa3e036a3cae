//! The faults: the Librarian killed and started again; nodes killed (a crash), started, cut off
//! from the Librarian and healed, paused and resumed.

use super::{Action, Nodes, On, StepCx};
use crate::scenario::faults::Cluster;
use crate::scenario::run::Runner;
use crate::scenario::spec::Step;
use anyhow::Result;

// The fields of the Librarian's faults (none) and of the nodes'.
fields!(NoFields;);
fields!(Fields; on: On);

#[derive(Debug, Clone)]
pub enum Fault {
    KillLibrarian,
    StartLibrarian,
    KillNode(Nodes),
    StartNode(Nodes),
    Cut(Nodes),
    Heal(Nodes),
    Pause(Nodes),
    Resume(Nodes),
}

pub fn parse(cx: &mut StepCx) -> Option<Action> {
    let fault = match cx.kind {
        "kill-librarian" => cx.fields::<NoFields>().map(|_| Fault::KillLibrarian),
        "start-librarian" => cx.fields::<NoFields>().map(|_| Fault::StartLibrarian),
        kind => {
            let f: Fields = cx.fields()?;
            cx.require("on", "\"node02\"", f.on.is_some());
            let on = cx.nodes(f.on.as_ref(), false);
            Some(match kind {
                "kill-node" => Fault::KillNode(on),
                "start-node" => Fault::StartNode(on),
                "cut" => Fault::Cut(on),
                "heal" => Fault::Heal(on),
                "pause" => Fault::Pause(on),
                _ => Fault::Resume(on),
            })
        }
    }?;
    if matches!(fault, Fault::Cut(_) | Fault::Heal(_)) {
        cx.uses_cut = true;
    }
    Some(Action::Fault(fault))
}

impl Fault {
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::KillLibrarian => "kill-librarian",
            Fault::StartLibrarian => "start-librarian",
            Fault::KillNode(_) => "kill-node",
            Fault::StartNode(_) => "start-node",
            Fault::Cut(_) => "cut",
            Fault::Heal(_) => "heal",
            Fault::Pause(_) => "pause",
            Fault::Resume(_) => "resume",
        }
    }

    pub fn nodes(&self) -> &[String] {
        match self {
            Fault::KillLibrarian | Fault::StartLibrarian => &[],
            Fault::KillNode(on)
            | Fault::StartNode(on)
            | Fault::Cut(on)
            | Fault::Heal(on)
            | Fault::Pause(on)
            | Fault::Resume(on) => on,
        }
    }

    pub fn run(&self, r: &mut Runner, cl: &Cluster, step: &Step) -> (String, Result<()>) {
        let limit = step.timeout;
        let on = self.nodes();
        let names = on.join(",");
        match self {
            Fault::KillLibrarian => ("SIGKILL the Librarian".into(), cl.kill_librarian()),
            Fault::StartLibrarian => ("start the Librarian".into(), cl.start_librarian(limit)),
            Fault::KillNode(_) => {
                let outcome = on.iter().try_for_each(|n| {
                    r.faulted.insert(n.clone());
                    cl.kill_node(n)
                });
                (format!("kill {names} (a crash)"), outcome)
            }
            Fault::StartNode(_) => {
                let outcome = on.iter().try_for_each(|n| {
                    cl.start_node(n, limit)?;
                    r.faulted.remove(n);
                    Ok(())
                });
                (format!("start the daemon of {names}"), outcome)
            }
            Fault::Cut(_) | Fault::Heal(_) => {
                let cut = matches!(self, Fault::Cut(_));
                let outcome = r.hold(Held::Cut, on, cut, |n| cl.set_cut(n, cut));
                let what = if cut {
                    format!("cut {names} off from the Librarian")
                } else {
                    format!("heal {names}")
                };
                (what, outcome)
            }
            Fault::Pause(_) | Fault::Resume(_) => {
                let pause = matches!(self, Fault::Pause(_));
                let outcome = r.hold(Held::Paused, on, pause, |n| cl.pause_node(n, pause));
                let what = format!("{} {names}", if pause { "pause" } else { "resume" });
                (what, outcome)
            }
        }
    }
}

/// The faults a node is held in until a later step undoes them.
#[derive(Clone, Copy)]
pub enum Held {
    Cut,
    Paused,
}
