//! `fame down`: stop every process of a cluster, end its namespaces and remove its files.
//!
//! It trusts `state.json` when it can read it, and also scans `/proc` for processes marked with
//! the cluster directory, so it works after `fame`, a node or the Librarian were killed with
//! SIGKILL, with a damaged state file, and when run twice.

use crate::cli::DEFAULT_NAME;
use crate::cluster::{self, ClusterPaths};
use crate::output::outln;
use crate::procs;
use crate::progress::fmt_duration;
use crate::state::{ClusterState, Phase};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long daemons get to unmount and exit after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);
/// The same when the Librarian is gone.
const SHORT_GRACE: Duration = Duration::from_millis(500);

pub fn down(name: Option<&str>, all: bool, keep_fam: bool) -> Result<()> {
    let names = if all {
        cluster::list_names()?
    } else {
        vec![name.unwrap_or(DEFAULT_NAME).to_string()]
    };
    if names.is_empty() {
        outln!(
            "no clusters under {}: nothing to do",
            cluster::fame_home().display()
        );
    }
    let mut failed = vec![];
    for name in &names {
        let t = Instant::now();
        // Taken before looking: a `fame up` that has not registered the cluster yet holds it.
        // (Without FAME_HOME, no `fame up` is at work: it makes FAME_HOME as it locks.)
        let lock = if cluster::fame_home().is_dir() && cluster::check_name(name).is_ok() {
            match cluster::ClusterLock::acquire(name, "fame down") {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!("fame: {e:#}");
                    failed.push(name.clone());
                    continue;
                }
            }
        } else {
            None
        };
        let Some(dir) = cluster::resolve(name) else {
            outln!("no cluster named {name}: nothing to do");
            continue;
        };
        let result = teardown(name, &dir, keep_fam);
        drop(lock);
        match result {
            Ok(r) => outln!(
                "cluster {name}: stopped {} process(es); {} ({})",
                r.stopped,
                if keep_fam {
                    "kept its FAM file and database (`fame reload` starts it again)".to_string()
                } else {
                    format!("removed {}", dir.display())
                },
                fmt_duration(t.elapsed())
            ),
            Err(e) => {
                eprintln!("fame: cluster {name}: {e:#}");
                failed.push(name.clone());
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "could not fully remove: {}; fix the cause above and run `fame down` again",
            failed.join(", ")
        );
    }
    Ok(())
}

pub struct Report {
    /// Processes that were running and were stopped.
    pub stopped: usize,
}

/// Stops and removes the cluster `name` living in `dir` (with `keep_fam`, keeps the FAM file,
/// the database, the INI, the logs and the settings, marked stopped).
pub fn teardown(name: &str, dir: &Path, keep_fam: bool) -> Result<Report> {
    let paths = ClusterPaths::new(dir);
    if paths.logs().is_dir() {
        crate::logging::open(&paths.fame_log());
    }
    tracing::info!("fame down {name} (keep_fam: {keep_fam})");
    let state = ClusterState::load(&paths.state());
    if let Err(e) = &state {
        if e.is::<crate::state::UnknownBackend>() {
            bail!("{e}");
        }
        only_fame_files(&paths)?;
        tracing::warn!("{e:#}; cleaning up by scanning /proc");
    }
    let mut state = state.ok();
    let mut stopped = 0;
    // The nodes' error (say, a container engine that is not running), reported once the host's
    // processes are stopped too: the Librarian is not left running because of it.
    let mut nodes_error = None;

    if let Some(st) = &state {
        {
            let b = st.backend();
            let nodes: Vec<_> = st.nodes.iter().collect();
            // A daemon says goodbye to the Librarian as it unmounts; without a Librarian that
            // only waits for a timeout, so do not wait long for it.
            let librarian_up = st.librarian.is_some_and(|l| l.is_alive());
            match b.stop(&nodes, if librarian_up { GRACE } else { SHORT_GRACE }) {
                Ok(n) => stopped += n,
                Err(e) => nodes_error = Some(e),
            }
        }
        for (what, p) in [("the Librarian", st.librarian), ("the LMP", st.lmp)] {
            let Some(p) = p.filter(procs::ProcRef::is_alive) else {
                continue;
            };
            stopped += 1;
            if !procs::terminate(&[p], GRACE).is_empty() {
                bail!("{what} (pid {}) did not stop even after SIGKILL", p.pid);
            }
        }
    }
    // Whatever the state file does not know about: processes started just before fame died,
    // and commands started in nodes with `fame exec`.
    let strays = procs::marked_processes(&paths.dir);
    stopped += strays.len();
    let left = procs::terminate(&strays, GRACE);
    if !left.is_empty() {
        bail!(
            "processes {:?} did not stop even after SIGKILL",
            left.iter().map(|p| p.pid).collect::<Vec<_>>()
        );
    }
    if let Some(e) = nodes_error {
        return Err(e.context(format!(
            "the nodes of {name} could not be stopped (its host processes were; its files are kept)"
        )));
    }
    // Our design leaves no mount on the host, but never delete files through one.
    for m in cluster::mounts_below(&paths.dir) {
        tracing::warn!("unmounting leftover {}", m.display());
        rustix::mount::unmount(&m, rustix::mount::UnmountFlags::DETACH).with_context(|| {
            format!(
                "cannot unmount {}; unmount it and run `fame down` again",
                m.display()
            )
        })?;
    }

    // The LMP's pid file names a process that is gone now.
    match std::fs::remove_file(paths.lmp_pid()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot remove {}", paths.lmp_pid().display()))
        }
        _ => {}
    }
    if keep_fam {
        if let Some(st) = &mut state {
            st.phase = Phase::Stopped;
            st.librarian = None;
            st.lmp = None;
            for n in &mut st.nodes {
                n.handle = crate::backend::NodeHandle::None;
            }
            st.save(&paths.state())?;
        }
        return Ok(Report { stopped });
    }

    if let Some(st) = &state {
        {
            st.backend().destroy(&st.nodes.iter().collect::<Vec<_>>())?;
        }
    }
    crate::logging::close();
    remove_files(&paths, state.as_ref())?;
    crate::ports::unregister(&paths.dir);
    let dir_created = state.as_ref().is_none_or(|s| s.dir_created);
    if dir_created {
        match std::fs::remove_dir(&paths.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                let left: Vec<String> = std::fs::read_dir(&paths.dir)
                    .map(|d| {
                        d.flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                bail!(
                    "{} still holds {} after the cluster's files were removed ({e}); they are not fame's: move them away and run `fame down` again",
                    paths.dir.display(),
                    left.join(", ")
                )
            }
        }
    }
    let entry = cluster::entry(name);
    if std::fs::symlink_metadata(&entry).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(&entry)
            .with_context(|| format!("cannot remove {}", entry.display()))?;
    }
    Ok(Report { stopped })
}

/// What `fame up` and the backends make in a cluster directory.
const FAME_FILES: &[&str] = &[
    "state.json",
    "nodes",
    "logs",
    "proxy",
    "librarian.db",
    "librarian.db-wal",
    "librarian.db-shm",
    "librarian.db-journal",
    "node_fame.ini",
    "fam",
    "lmp.pid",
    "librarian.port",
    "librarian.port.tmp",
    "state.json.tmp",
    "container.json",
];

/// Without a readable state file, a directory is torn down only if all it holds is what
/// `fame up` makes: `fame down NAME` of a directory that is not a cluster removes nothing of the
/// user's, while a cluster whose `state.json` is damaged is still torn down.
fn only_fame_files(paths: &ClusterPaths) -> Result<()> {
    let foreign: Vec<String> = std::fs::read_dir(&paths.dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| {
                    !FAME_FILES.contains(&n.as_str()) && !n.starts_with(".librarian.db.tmp-")
                })
                .collect()
        })
        .unwrap_or_default();
    if !foreign.is_empty() {
        bail!(
            "{} has no readable state.json and holds files fame does not make ({}): it is not a fame cluster, so nothing was removed; if it was one, remove it by hand",
            paths.dir.display(),
            foreign.join(", ")
        );
    }
    Ok(())
}

/// Removes exactly the files `fame up` creates (so a `--dir` holding other files keeps them).
fn remove_files(paths: &ClusterPaths, state: Option<&ClusterState>) -> Result<()> {
    let rm_tree = |p: &Path| match std::fs::remove_dir_all(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", p.display()))
        }
        _ => Ok(()),
    };
    let rm = |p: &Path| match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", p.display()))
        }
        _ => Ok(()),
    };
    rm_tree(&paths.nodes())?;
    rm_tree(&paths.logs())?;
    // The fault proxy's control and status files (`fame up --fault-proxy`).
    rm_tree(&paths.dir.join("proxy"))?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = paths.db().into_os_string();
        p.push(suffix);
        rm(Path::new(&p))?;
    }
    rm(&paths.ini())?;
    rm(&paths.librarian_port_file())?;
    rm(&paths.librarian_port_file().with_extension("tmp"))?;
    // book-register builds the database in `.librarian.db.tmp-*` and renames it into place; a
    // book-register killed halfway (with a `fame up` killed halfway) leaves that file behind.
    if let Ok(entries) = std::fs::read_dir(&paths.dir) {
        for e in entries.flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(".librarian.db.tmp-")
            {
                rm(&e.path())?;
            }
        }
    }
    // FAME_FAM files belong to the user. Without a state file, only fame's own FAM path is ours.
    if state.is_none_or(|s| s.fam_owned) {
        rm(&paths.fam())?;
    }
    rm(&paths.state().with_extension("json.tmp"))?;
    rm(&paths.state())
}
