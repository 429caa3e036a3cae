//! `expect`: a command in nodes must fail with a given errno (its output names the error, as
//! `strerror` words it), optionally within a time limit.

use super::{Action, Nodes, On, StepCx};
use crate::scenario::run::Runner;
use crate::scenario::spec::Step;
use anyhow::{bail, Result};
use std::time::{Duration, Instant};
use toml::Spanned;

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

fields!(Fields; on: On, run: String, error: String, within: String);

#[derive(Debug, Clone)]
pub struct Expect {
    pub on: Nodes,
    pub run: String,
    pub errno: i32,
    pub errno_name: String,
    pub within: Option<Duration>,
}

pub fn parse(cx: &mut StepCx) -> Option<Action> {
    let f: Fields = cx.fields()?;
    cx.require("run", "\"touch /lfs/x\"", f.run.is_some());
    cx.require("error", "\"ENOSPC\"", f.error.is_some());
    let (errno, errno_name) = match &f.error {
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
    Some(Action::Expect(Expect {
        on: cx.nodes(f.on.as_ref(), false),
        run: f.run.map(Spanned::into_inner).unwrap_or_default(),
        errno,
        errno_name,
        within: f.within.as_ref().and_then(|w| cx.duration("within", w)),
    }))
}

impl Expect {
    pub fn run(&self, r: &mut Runner, step: &Step) -> (String, Result<()>) {
        let t = Instant::now();
        let text = strerror(self.errno);
        let name = &self.errno_name;
        let outcome = r.run_all(&self.on, &self.run, step.timeout, |st, o, e| {
            let took = t.elapsed();
            if st.success() {
                bail!("it succeeded, but {name} ({text}) was expected");
            }
            if !o.contains(&text) && !e.contains(&text) {
                bail!("it failed ({st}) but not with {name}: its output does not say {text:?}");
            }
            if let Some(w) = self.within {
                if took > w {
                    bail!(
                        "it failed with {name} only after {:.1} s; expected within {:.1} s",
                        took.as_secs_f64(),
                        w.as_secs_f64()
                    );
                }
            }
            Ok(())
        });
        (
            format!("on {}: {} (expecting {name})", self.on.join(","), self.run),
            outcome,
        )
    }
}

/// `strerror(errno)` without the " (os error N)" Rust adds.
fn strerror(errno: i32) -> String {
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    s.split(" (os error").next().unwrap_or(&s).to_string()
}
