//! The step kinds of a scenario, a module per kind or family. Each module declares its fields
//! once, as a serde struct (`Fields`), whose derived field list is also what the error messages
//! and `fame scenario` help name; checks them into its step type (`parse`); and runs it (`run`).
//!
//! To add a kind: a module with `Fields`, a step type, `parse` and `run`; a variant of
//! [`Action`]; an entry in [`KINDS`]; a row in `scenarios/README.md`.

/// Declares a step kind's fields, once: `fields!(Fields; on: On, run: String)` is a struct of
/// them, each optional and spanned (so that a mistake in it names its line), refusing any other.
/// The derived field list is what the "does not belong" check and its help name.
macro_rules! fields {
    ($name:ident; $($(#[$meta:meta])* $field:ident: $ty:ty),* $(,)?) => {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$meta])* $field: Option<toml::Spanned<$ty>>,)*
        }
    };
}

pub mod check;
pub mod data;
pub mod exec;
pub mod expect;
pub mod fault;
pub mod fsck;
pub mod wait;

use super::faults::Cluster;
use super::run::Runner;
use super::spec::{Checker, Step};
use anyhow::Result;
use serde::de::{Deserialize, DeserializeOwned, Deserializer, Visitor};
use std::ops::{Deref, DerefMut};
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

/// Which nodes a step runs on, as names.
pub type Nodes = Vec<String>;

/// What a step does: one variant per module.
#[derive(Debug, Clone)]
pub enum Action {
    Exec(exec::Exec),
    Data(data::Data),
    Expect(expect::Expect),
    Fault(fault::Fault),
    Fsck(fsck::Fsck),
    Check(check::Check),
    Sleep(wait::Sleep),
    Wait(wait::Wait),
}

impl Action {
    /// The step's kind, as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Exec(_) => "exec",
            Action::Data(d) => d.kind(),
            Action::Expect(_) => "expect",
            Action::Fault(f) => f.kind(),
            Action::Fsck(_) => "fsck",
            Action::Check(_) => "check",
            Action::Sleep(_) => "sleep",
            Action::Wait(_) => "wait",
        }
    }

    /// The nodes the step acts on (whose logs a failure report shows first).
    pub fn nodes(&self) -> &[String] {
        match self {
            Action::Exec(s) => &s.on,
            Action::Data(s) => &s.on,
            Action::Expect(s) => &s.on,
            Action::Fault(s) => s.nodes(),
            Action::Fsck(_) | Action::Check(_) | Action::Sleep(_) | Action::Wait(_) => &[],
        }
    }

    /// Runs the step: (what it did, in a line; the outcome).
    pub fn run(&self, r: &mut Runner, cl: &Cluster, step: &Step) -> (String, Result<()>) {
        match self {
            Action::Exec(s) => s.run(r, step),
            Action::Data(s) => s.run(r, step),
            Action::Expect(s) => s.run(r, step),
            Action::Fault(s) => s.run(r, cl, step),
            Action::Fsck(s) => s.run(r, cl, step),
            Action::Check(s) => s.run(r, cl, step),
            Action::Sleep(s) => s.run(),
            Action::Wait(s) => s.run(r, step),
        }
    }
}

/// One step kind: its name, its fields (beyond `name`, `kind` and `timeout`) and its parser.
pub struct Kind {
    pub name: &'static str,
    pub fields: fn() -> &'static [&'static str],
    parse: fn(&mut StepCx) -> Option<Action>,
}

/// Every step kind, in the order error messages list them.
pub const KINDS: &[Kind] = &[
    kind("exec", field_names::<exec::Fields>, exec::parse),
    kind("fill", field_names::<data::Fields>, data::parse),
    kind("verify", field_names::<data::Fields>, data::parse),
    kind("expect", field_names::<expect::Fields>, expect::parse),
    kind(
        "kill-librarian",
        field_names::<fault::NoFields>,
        fault::parse,
    ),
    kind(
        "start-librarian",
        field_names::<fault::NoFields>,
        fault::parse,
    ),
    kind("kill-node", field_names::<fault::Fields>, fault::parse),
    kind("start-node", field_names::<fault::Fields>, fault::parse),
    kind("cut", field_names::<fault::Fields>, fault::parse),
    kind("heal", field_names::<fault::Fields>, fault::parse),
    kind("pause", field_names::<fault::Fields>, fault::parse),
    kind("resume", field_names::<fault::Fields>, fault::parse),
    kind("fsck", field_names::<fsck::Fields>, fsck::parse),
    kind("check", field_names::<check::Fields>, check::parse),
    kind("sleep", field_names::<wait::SleepFields>, wait::parse_sleep),
    kind("wait", field_names::<wait::WaitFields>, wait::parse_wait),
];

const fn kind(
    name: &'static str,
    fields: fn() -> &'static [&'static str],
    parse: fn(&mut StepCx) -> Option<Action>,
) -> Kind {
    Kind {
        name,
        fields,
        parse,
    }
}

/// The names of the kinds, for error messages.
fn kind_names() -> String {
    KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}

/// The fields every step has, whatever its kind.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Head {
    name: Option<Spanned<String>>,
    kind: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

/// `on`: a node, a list of nodes, or "all".
#[derive(serde::Deserialize, Debug)]
#[serde(untagged)]
pub enum On {
    One(String),
    Many(Vec<String>),
}

/// A checked step, or `None` when it had mistakes (recorded in `spec`).
pub fn parse(spec: &mut Checker, index: usize, table: Spanned<DeValue<'_>>) -> Option<Step> {
    let at = table.span().start;
    let DeValue::Table(entries) = table.get_ref() else {
        spec.err(
            at,
            "a [[step]] is a table; write it as [[step]] with fields under it",
        );
        return None;
    };
    let head_names = field_names::<Head>();
    let (head, rest): (DeTable, DeTable) = entries
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .partition(|(k, _)| head_names.contains(&k.get_ref().as_ref()));
    let head: Head = spec.deserialize(table_at(at, head))?;
    let name = head
        .name
        .as_ref()
        .map(|n| n.get_ref().clone())
        .unwrap_or_else(|| format!("step {}", index + 1));
    let Some(kind_name) = &head.kind else {
        spec.err(
            at,
            format!("step {name:?} has no `kind`; add one of: {}", kind_names()),
        );
        return None;
    };
    let Some(kind) = KINDS.iter().find(|k| k.name == kind_name.get_ref()) else {
        spec.err(
            kind_name.span().start,
            format!(
                "unknown step kind {:?} in step {name:?}; use one of: {}",
                kind_name.get_ref(),
                kind_names()
            ),
        );
        return None;
    };
    let allowed = (kind.fields)();
    let mut strays: Vec<_> = rest
        .keys()
        .filter(|k| !allowed.contains(&k.get_ref().as_ref()))
        .collect();
    strays.sort_by_key(|k| k.span().start);
    let a = if kind.name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    for key in &strays {
        let field = key.get_ref().as_ref();
        spec.err(
            key.span().start,
            format!(
                "`{field}` does not belong to {a} {k} step ({name:?}); {k} takes {}",
                if allowed.is_empty() {
                    "only name and timeout".to_string()
                } else {
                    format!("name, timeout, {}", allowed.join(", "))
                },
                k = kind.name,
            ),
        );
    }
    let timeout = match &head.timeout {
        Some(t) => spec
            .duration("timeout", t)
            .unwrap_or(super::spec::DEFAULT_TIMEOUT),
        None => super::spec::DEFAULT_TIMEOUT,
    };
    if !strays.is_empty() {
        return None;
    }
    let errors_before = spec.error_count();
    let mut cx = StepCx {
        spec,
        kind: kind.name,
        name,
        at,
        fields: Some(table_at(at, rest)),
    };
    let action = (kind.parse)(&mut cx)?;
    let StepCx { spec, name, .. } = cx;
    if let Action::Exec(e) = &action {
        if e.background {
            spec.background_step(at, &name);
        }
    }
    (spec.error_count() == errors_before).then(|| Step {
        line: spec.line(at),
        name,
        timeout,
        action,
    })
}

fn table_at(at: usize, t: DeTable<'_>) -> Spanned<DeValue<'_>> {
    Spanned::new(at..at, DeValue::Table(t))
}

/// What a kind's parser works with: the file's checker, the step's name, kind and place, and its
/// own fields (taken once by [`StepCx::fields`]).
pub struct StepCx<'c, 'a, 'i> {
    spec: &'c mut Checker<'a>,
    pub kind: &'static str,
    pub name: String,
    pub at: usize,
    fields: Option<Spanned<DeValue<'i>>>,
}

impl<'a> Deref for StepCx<'_, 'a, '_> {
    type Target = Checker<'a>;
    fn deref(&self) -> &Checker<'a> {
        self.spec
    }
}

impl<'a> DerefMut for StepCx<'_, 'a, '_> {
    fn deref_mut(&mut self) -> &mut Checker<'a> {
        self.spec
    }
}

impl StepCx<'_, '_, '_> {
    /// The step's own fields, read into the kind's `Fields` (None, with the mistake recorded,
    /// when a value has the wrong type).
    pub fn fields<F: DeserializeOwned>(&mut self) -> Option<F> {
        let table = self.fields.take()?;
        self.spec.deserialize(table)
    }

    /// Records "the step has no `field`" unless `has`.
    pub fn require(&mut self, field: &str, example: &str, has: bool) {
        if !has {
            let msg = format!(
                "{} step {:?} has no `{field}`; add `{field} = {example}`",
                self.kind, self.name
            );
            let at = self.at;
            self.err(at, msg);
        }
    }

    /// The nodes `on` names; without `on`, node01 (or every node with `default_all`).
    pub fn nodes(&mut self, on: Option<&Spanned<On>>, default_all: bool) -> Nodes {
        let n = self.spec.nodes;
        let all: Nodes = (1..=n).map(|i| format!("node{i:02}")).collect();
        let Some(on) = on else {
            return if default_all {
                all
            } else {
                vec![all[0].clone()]
            };
        };
        let list: Vec<String> = match on.get_ref() {
            On::One(x) if x == "all" => return all,
            On::One(x) => vec![x.clone()],
            On::Many(v) => v.clone(),
        };
        if list.is_empty() {
            self.err(
                on.span().start,
                "on = []: name at least one node, or \"all\"",
            );
        }
        let mut out = vec![];
        for x in list {
            match node_name(&x, n) {
                Some(name) if !out.contains(&name) => out.push(name),
                Some(_) => {}
                None => self.err(
                    on.span().start,
                    format!(
                        "on = {x:?}: the cluster has no such node; its nodes are node01..node{n:02} (or \"all\"); name one of them or raise [cluster] nodes"
                    ),
                ),
            }
        }
        out
    }
}

/// Node `s` of a cluster of `n` nodes: `node02`, `02` or `2`.
fn node_name(s: &str, n: u32) -> Option<String> {
    let num = s.strip_prefix("node").unwrap_or(s);
    let id: u32 = num.parse().ok()?;
    (1..=n).contains(&id).then(|| format!("node{id:02}"))
}

impl Checker<'_> {
    /// `T` read from a (spanned) TOML value; a wrong type is recorded at its line.
    pub(super) fn deserialize<T: DeserializeOwned>(
        &mut self,
        v: Spanned<DeValue<'_>>,
    ) -> Option<T> {
        let at = v.span().start;
        match T::deserialize(ValueDeserializer::from(v)) {
            Ok(t) => Some(t),
            Err(e) => {
                let at = e.span().map_or(at, |s| s.start);
                self.err(
                    at,
                    format!(
                        "{}; see scenarios/README.md for the format",
                        e.message().trim()
                    ),
                );
                None
            }
        }
    }
}

/// The field names of a struct, from its derived `Deserialize` (which hands them to
/// `deserialize_struct`): the help and the "does not belong" check list exactly the fields
/// the struct declares, so they are written once.
pub fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Names(&'static [&'static str]);
    impl<'de> Deserializer<'de> for &mut Names {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom(
                "only the field names are asked for",
            ))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = fields;
            Err(serde::de::Error::custom(
                "only the field names are asked for",
            ))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut names = Names(&[]);
    let _ = T::deserialize(&mut names);
    names.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_the_declared_ones() {
        assert_eq!(field_names::<Head>(), ["name", "kind", "timeout"]);
        assert_eq!(field_names::<wait::SleepFields>(), ["for"]);
        assert!(field_names::<fault::NoFields>().is_empty());
    }

    #[test]
    fn node_names() {
        assert_eq!(node_name("node02", 3).as_deref(), Some("node02"));
        assert_eq!(node_name("2", 3).as_deref(), Some("node02"));
        assert_eq!(node_name("node04", 3), None);
        assert_eq!(node_name("x", 3), None);
    }
}
