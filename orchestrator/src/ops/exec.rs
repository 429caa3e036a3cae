//! `fame exec NODE -- CMD`: run a command inside a node.

use anyhow::{bail, Result};
use std::ffi::OsString;

/// Runs `command` (default: the user's shell) in `node` of cluster `name`; returns its status.
pub fn exec(name: Option<&str>, node: &str, command: Vec<OsString>) -> Result<i32> {
    let c = super::load(name)?;
    // `node02`, `02` and `2` all name node 2.
    let found = c.state.node(node).or_else(|| {
        let id: u32 = node.parse().ok()?;
        c.state.nodes.iter().find(|n| n.id == id)
    });
    let Some(n) = found else {
        let names: Vec<&str> = c.state.nodes.iter().map(|n| n.name.as_str()).collect();
        bail!(
            "cluster {} has no node {node}; its nodes are {}..{}",
            c.name,
            names.first().unwrap_or(&"-"),
            names.last().unwrap_or(&"-")
        );
    };
    let argv = if command.is_empty() {
        vec![std::env::var_os("SHELL").unwrap_or_else(|| "/bin/sh".into())]
    } else {
        command
    };
    tracing::info!("fame exec {} -- {:?}", n.name, argv);
    c.backend.exec(n, &argv)
}
