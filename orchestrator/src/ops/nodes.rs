//! Starting a cluster's nodes and waiting until each one is ready: its `/lfs` answers and its
//! heartbeat has reached the Librarian (`SOCs.status = 1` with a heartbeat from this start).

use crate::backend::{Backend, DaemonSpec, LfsState};
use crate::bins::{Bins, LFS_NODE};
use crate::cluster::ClusterPaths;
use crate::db;
use crate::progress::{check_interrupt, Step};
use crate::services::log_tail;
use crate::state::{ClusterState, Node};
use anyhow::{bail, Result};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The nodes of a cluster of `n` nodes, before they are started.
pub fn plan(paths: &ClusterPaths, hostbase: &str, n: u32) -> Vec<Node> {
    (1..=n)
        .map(|id| {
            let name = format!("{hostbase}{id:02}");
            Node {
                dir: paths.nodes().join(&name),
                name,
                id,
                handle: crate::backend::NodeHandle::None,
            }
        })
        .collect()
}

fn now_epoch() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Starts every node, saving their handles, then waits for all of them.
pub fn start_and_wait(
    backend: &dyn Backend,
    state: &mut ClusterState,
    paths: &ClusterPaths,
    bins: &Bins,
    step: &Step,
) -> Result<()> {
    let all: Vec<String> = state.nodes.iter().map(|n| n.name.clone()).collect();
    let limit = Duration::from_secs(state.settings.timeout_secs);
    start_some_and_wait(backend, state, paths, bins, &all, step, limit, "--timeout")
}

/// Starts the nodes named `which`, saving their handles, then waits up to `limit` until each is
/// ready; a node not ready in time fails with "raise `limit_name`".
#[allow(clippy::too_many_arguments)]
pub fn start_some_and_wait(
    backend: &dyn Backend,
    state: &mut ClusterState,
    paths: &ClusterPaths,
    bins: &Bins,
    which: &[String],
    step: &Step,
    limit: Duration,
    limit_name: &str,
) -> Result<()> {
    let since = now_epoch();
    let daemon = DaemonSpec {
        lfs_node: bins.path(LFS_NODE),
        librarian_port: state.port,
        fam: state.fam_path.clone(),
        cluster_dir: paths.dir.clone(),
        librarian_timeout: state.settings.faults.librarian_timeout,
        shared: state.settings.share.clone(),
        mmap: state.settings.mmap,
    };
    step.set_length(which.len() as u64);
    step.set_message("starting");
    let mut result = Ok(());
    let chosen: Vec<usize> = (0..state.nodes.len())
        .filter(|&i| which.contains(&state.nodes[i].name))
        .collect();
    // In groups of as many as the backend starts at once (one by one for most).
    for group in chosen.chunks(backend.capabilities().start_concurrency.max(1)) {
        let started: Vec<(usize, Result<crate::backend::NodeHandle>)> = std::thread::scope(|s| {
            let running: Vec<_> = group
                .iter()
                .map(|&i| {
                    let node = &state.nodes[i];
                    // Through its fault proxy port when the cluster has one.
                    let spec = DaemonSpec {
                        librarian_port: state.daemon_port(node),
                        ..daemon.clone()
                    };
                    (
                        i,
                        s.spawn(move || {
                            backend
                                .create(node)
                                .and_then(|()| backend.start(node, &spec))
                        }),
                    )
                })
                .collect();
            running
                .into_iter()
                .map(|(i, h)| {
                    let r = h.join().unwrap_or_else(|_| {
                        Err(anyhow::anyhow!(
                            "{}: starting it panicked",
                            state.nodes[i].name
                        ))
                    });
                    (i, r)
                })
                .collect()
        });
        for (i, r) in started {
            match r {
                Ok(h) => state.nodes[i].handle = h,
                Err(e) if result.is_ok() => result = Err(e),
                Err(_) => {}
            }
        }
        if result.is_err() {
            break;
        }
    }
    // Saved even after a failure, so that the rollback finds what did start.
    state.save(&paths.state())?;
    result?;
    let nodes: Vec<&Node> = state
        .nodes
        .iter()
        .filter(|n| which.contains(&n.name))
        .collect();
    wait_ready(backend, &nodes, paths, step, since, limit, limit_name)
}

fn wait_ready(
    backend: &dyn Backend,
    nodes: &[&Node],
    paths: &ClusterPaths,
    step: &Step,
    since: i64,
    limit: Duration,
    limit_name: &str,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    let conn = db::open(&paths.db())?;
    let mut mounted = vec![false; nodes.len()];
    loop {
        for (node, m) in nodes.iter().zip(mounted.iter_mut()).filter(|(_, m)| !**m) {
            let p = backend.probe(node);
            if !p.running {
                let logs: String = backend.logs(node).iter().map(|l| log_tail(l, 5)).collect();
                bail!("{} stopped before it was ready{logs}", node.name);
            }
            *m = p.lfs == LfsState::Mounted;
        }
        let beats = db::heartbeats(&conn).unwrap_or_default();
        let beat = |n: &Node| {
            beats
                .get(&i64::from(n.id))
                .is_some_and(|h| h.status == 1 && h.at.unwrap_or(0) >= since)
        };
        let ready: Vec<bool> = nodes
            .iter()
            .zip(&mounted)
            .map(|(n, m)| *m && beat(n))
            .collect();
        let n_ready = ready.iter().filter(|r| **r).count();
        step.set_position(n_ready as u64);
        step.set_message(format!(
            "/lfs mounted {}, heartbeats {}",
            mounted.iter().filter(|m| **m).count(),
            nodes.iter().filter(|n| beat(n)).count()
        ));
        if n_ready == nodes.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let late: Vec<String> = nodes
                .iter()
                .zip(&mounted)
                .zip(&ready)
                .filter(|(_, r)| !**r)
                .map(|((n, m), _)| {
                    let why = if *m {
                        "no heartbeat at the Librarian"
                    } else {
                        "/lfs not mounted"
                    };
                    format!("{} ({why})", n.name)
                })
                .collect();
            bail!(
                "after {} s, {} of {} nodes are not ready: {}; raise {limit_name}, or see their logs under {}",
                limit.as_secs(),
                late.len(),
                nodes.len(),
                late.join(", "),
                paths.nodes().display()
            );
        }
        check_interrupt()?;
        std::thread::sleep(Duration::from_millis(3));
    }
}
