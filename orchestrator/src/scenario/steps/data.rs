//! `fill` a file with a seeded pattern and `verify` it, through `lfs-node fill|verify` in the
//! nodes: by read/write, the direct FAM map (`direct`) or a plain mmap (`mmap`).

use super::{Action, Nodes, On, StepCx};
use crate::scenario::run::Runner;
use crate::scenario::spec::Step;
use anyhow::Result;
use toml::Spanned;

fields!(Fields; on: On, file: String, size: String, seed: i64, direct: bool, mmap: bool);

#[derive(Debug, Clone)]
pub struct Data {
    /// Fill (write the pattern), else verify (read and compare it).
    pub fill: bool,
    pub on: Nodes,
    pub file: String,
    /// Bytes; a fill always has one, a verify without it checks the whole file.
    pub size: Option<u64>,
    pub seed: Option<u64>,
    pub direct: bool,
    /// Through a plain mmap of the file (FAM through the nodes' preload).
    pub mmap: bool,
}

pub fn parse(cx: &mut StepCx) -> Option<Action> {
    let f: Fields = cx.fields()?;
    let fill = cx.kind == "fill";
    cx.require("file", "\"/lfs/data\"", f.file.is_some());
    if fill {
        cx.require("size", "\"16M\"", f.size.is_some());
    }
    let direct = f.direct.is_some_and(|d| *d.get_ref());
    let mmap = f.mmap.as_ref().is_some_and(|d| *d.get_ref());
    if let (true, Some(m)) = (direct && mmap, &f.mmap) {
        cx.err(
            m.span().start,
            "direct = true and mmap = true: a step goes through the direct map or a plain mmap, not both; drop one",
        );
    }
    Some(Action::Data(Data {
        fill,
        on: cx.nodes(f.on.as_ref(), !fill),
        file: f.file.map(Spanned::into_inner).unwrap_or_default(),
        size: f.size.as_ref().and_then(|z| cx.size("size", z)),
        seed: f.seed.map(|x| *x.get_ref() as u64),
        direct,
        mmap,
    }))
}

impl Data {
    pub fn kind(&self) -> &'static str {
        if self.fill {
            "fill"
        } else {
            "verify"
        }
    }

    pub fn run(&self, r: &mut Runner, step: &Step) -> (String, Result<()>) {
        let seed = seed_for(r.seed(), &self.file, self.seed);
        let cmd = format!(
            "{} {} {} --seed {seed}{}{}{}",
            r.lfs_node(),
            self.kind(),
            self.file,
            self.size
                .map(|z| format!(" --size {z}"))
                .unwrap_or_default(),
            if self.direct { " --direct" } else { "" },
            if self.mmap { " --mmap" } else { "" }
        );
        let outcome = r.run_all(&self.on, &cmd, step.timeout, |st, o, e| {
            super::exec::Outcome::default().check(st, o, e)
        });
        (format!("on {}: {cmd}", self.on.join(",")), outcome)
    }
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_fill_and_a_verify_of_one_file_agree_on_the_seed() {
        assert_eq!(
            super::seed_for(7, "/lfs/a", None),
            super::seed_for(7, "/lfs/a", None)
        );
        assert_ne!(
            super::seed_for(7, "/lfs/a", None),
            super::seed_for(7, "/lfs/b", None)
        );
        assert_eq!(super::seed_for(7, "/lfs/a", Some(3)), 3);
    }
}
