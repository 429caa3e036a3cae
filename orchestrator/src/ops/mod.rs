//! The verbs of `fame`, one module each, written against the [`Backend`](crate::backend::Backend)
//! trait only.

pub mod down;
pub mod exec;
pub mod images;
pub mod logs;
pub mod nodes;
pub mod preflight;
pub mod reload;
pub mod status;
pub mod up;

use crate::backend::Backend;
use crate::cli::DEFAULT_NAME;
use crate::cluster::{self, ClusterPaths};
use crate::state::ClusterState;
use anyhow::{bail, Result};

/// A registered cluster, loaded.
pub struct Loaded {
    pub name: String,
    pub paths: ClusterPaths,
    pub state: ClusterState,
    pub backend: Box<dyn Backend>,
}

/// The cluster `name` (default `fame`), or a message saying which clusters there are.
pub fn load(name: Option<&str>) -> Result<Loaded> {
    let name = name.unwrap_or(DEFAULT_NAME);
    let Some(dir) = cluster::resolve(name) else {
        let names = cluster::list_names().unwrap_or_default();
        if names.is_empty() {
            bail!(
                "no cluster named {name} (there are none under {}); start one with `fame up`",
                cluster::fame_home().display()
            );
        }
        bail!(
            "no cluster named {name} under {}; the clusters are: {} (pass the name)",
            cluster::fame_home().display(),
            names.join(", ")
        );
    };
    let paths = ClusterPaths::new(dir);
    let state = ClusterState::load(&paths.state())?;
    let backend = state.backend();
    crate::logging::open(&paths.fame_log());
    Ok(Loaded {
        name: name.to_string(),
        paths,
        state,
        backend,
    })
}
