//! `fame status` and `fame ls`: what runs, what answers, what the Librarian has heard.

use super::Loaded;
use crate::backend::{Backend, LfsState, Probe};
use crate::cluster::{self, ClusterPaths};
use crate::db;
use crate::output::outln;
use crate::procs::ProcRef;
use crate::size::format_size;
use crate::state::{ClusterState, Node, Phase};
use anyhow::Result;
use std::time::{SystemTime, UNIX_EPOCH};

/// A heartbeat older than this (the daemon sends one every 10 s) counts as silent.
const HEARTBEAT_FRESH_SECS: i64 = 30;

/// Probes every node at once (each probe is bounded, see [`Backend::probe`]).
fn probe_all(backend: &dyn Backend, nodes: &[Node]) -> Vec<Probe> {
    std::thread::scope(|scope| {
        let probes: Vec<_> = nodes
            .iter()
            .map(|node| scope.spawn(move || backend.probe(node)))
            .collect();
        probes
            .into_iter()
            .map(|h| {
                h.join().unwrap_or(Probe {
                    running: false,
                    lfs: LfsState::Absent,
                })
            })
            .collect()
    })
}

/// One word for the cluster as a whole.
fn summary(st: &ClusterState, running_nodes: usize) -> String {
    let librarian = st.librarian.is_some_and(|l| l.is_alive());
    match (st.phase, librarian, running_nodes) {
        (Phase::Stopped, _, _) => "stopped (FAM kept)".into(),
        (_, true, n) if n == st.nodes.len() => {
            if st.phase == Phase::Starting {
                "starting".into()
            } else {
                "up".into()
            }
        }
        (_, false, 0) => "down".into(),
        (_, l, n) => format!(
            "degraded (Librarian {}, {n}/{} nodes running)",
            if l { "up" } else { "down" },
            st.nodes.len()
        ),
    }
}

pub fn status(name: Option<&str>) -> Result<()> {
    let Loaded {
        name,
        paths,
        state: st,
        backend,
    } = super::load(name)?;
    let probes = probe_all(backend.as_ref(), &st.nodes);
    let running = probes.iter().filter(|p| p.running).count();
    outln!("cluster    {name}: {}", summary(&st, running));
    outln!("directory  {}", paths.dir.display());
    outln!(
        "FAM        {} {} in {} books of {} ({} per node)",
        st.fam_path.display(),
        format_size(st.settings.fam_bytes),
        st.books_per_node * st.nodes.len() as u64,
        format_size(st.book_size),
        st.books_per_node
    );
    outln!(
        "mmap       {}",
        match st.settings.mmap {
            crate::state::MmapMode::Fam =>
                "fam: plain mmap of /lfs files maps their books in FAM, shared by every node (liblfs_preload.so; LFS_MMAP=page-cache turns it off for a command)",
            crate::state::MmapMode::PageCache =>
                "page-cache: plain mmap of /lfs files is each node's own FUSE page cache (use lfs_direct for FAM)",
        }
    );
    let lib = match st.librarian.filter(ProcRef::is_alive) {
        Some(p) => format!(
            "running, pid {}, {}",
            p.pid,
            std::net::SocketAddr::from((backend.librarian_addr(), st.port))
        ),
        None => format!("not running (port {})", st.port),
    };
    outln!("Librarian  {lib}");
    if let Some(port) = st.lmp_port {
        let url = crate::services::lmp_url(port);
        match st.lmp.filter(ProcRef::is_alive) {
            Some(p) => outln!("LMP        {url} (running, pid {})", p.pid),
            None => outln!("LMP        {url} (not running)"),
        }
    }
    let conn = db::open(&paths.db());
    let books = conn.as_ref().ok().and_then(|c| db::books(c).ok());
    let beats = conn
        .as_ref()
        .ok()
        .and_then(|c| db::heartbeats(c).ok())
        .unwrap_or_default();
    match books {
        Some(b) => outln!(
            "books      {} total, {} used, {} free{}",
            b.total,
            b.used,
            b.free(),
            if b.zombie > 0 {
                format!(", {} being zeroed", b.zombie)
            } else {
                String::new()
            }
        ),
        None => outln!("books      unknown (cannot read {})", paths.db().display()),
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    outln!();
    outln!(
        "{:<10} {:>3} {:>8}  {:<8} {:<14} HEARTBEAT",
        "NODE",
        "ID",
        "PID",
        "PROCESS",
        "/lfs"
    );
    for (node, probe) in st.nodes.iter().zip(&probes) {
        let pid = node
            .handle
            .pid()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "-".into());
        let (process, lfs) = if probe.running {
            (
                "running",
                match probe.lfs {
                    LfsState::Mounted => "mounted",
                    LfsState::NotMounted => "not mounted",
                    LfsState::NotAnswering => "not answering",
                    LfsState::Absent => "-",
                },
            )
        } else {
            ("stopped", "-")
        };
        let hb = match beats.get(&i64::from(node.id)) {
            None => "unknown".to_string(),
            Some(h) => match (h.status, h.at) {
                (_, None) => "never".into(),
                (1, Some(t)) if now - t <= HEARTBEAT_FRESH_SECS => {
                    format!("active ({} s ago)", now - t)
                }
                (1, Some(t)) => format!("silent for {} s", now - t),
                (_, Some(t)) => format!("offline (last {} s ago)", now - t),
            },
        };
        outln!(
            "{:<10} {:>3} {:>8}  {:<8} {:<14} {hb}",
            node.name,
            node.id,
            pid,
            process,
            lfs
        );
    }
    Ok(())
}

pub fn ls() -> Result<()> {
    let names = cluster::list_names()?;
    if names.is_empty() {
        outln!("no clusters under {}", cluster::fame_home().display());
        return Ok(());
    }
    outln!(
        "{:<16} {:<40} {:>5} {:>6} {:>6}  {:<8} DIRECTORY",
        "NAME",
        "STATE",
        "NODES",
        "FAM",
        "PORT",
        "BACKEND"
    );
    for name in names {
        let Some(dir) = cluster::resolve(&name) else {
            continue;
        };
        let paths = ClusterPaths::new(&dir);
        match ClusterState::load(&paths.state()) {
            Ok(st) => {
                let running = probe_all(st.backend().as_ref(), &st.nodes)
                    .iter()
                    .filter(|p| p.running)
                    .count();
                outln!(
                    "{:<16} {:<40} {:>5} {:>6} {:>6}  {:<8} {}",
                    name,
                    summary(&st, running),
                    st.nodes.len(),
                    format_size(st.settings.fam_bytes),
                    st.port,
                    st.settings.backend,
                    dir.display()
                );
            }
            Err(_) => outln!(
                "{:<16} {:<40} {:>5} {:>6} {:>6}  {:<8} {}",
                name,
                "broken (no readable state.json; `fame down` removes it)",
                "-",
                "-",
                "-",
                "-",
                dir.display()
            ),
        }
    }
    Ok(())
}
