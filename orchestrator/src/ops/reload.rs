//! `fame reload` (the LFS developer's loop: new binaries, same FAM and database) and
//! `fame rebuild` (down, then up with the same settings).

use super::nodes;
use crate::bins::{self, Bins};
use crate::output::outln;
use crate::procs;
use crate::progress::Steps;
use crate::services;
use crate::state::Phase;
use anyhow::{Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

pub fn reload(name: Option<&str>, bin_dir: Option<&Path>) -> Result<()> {
    crate::progress::catch_interrupts();
    let t0 = Instant::now();
    // Locked before the state is read, so that it cannot be of a cluster being torn down.
    let name = name.unwrap_or(crate::cli::DEFAULT_NAME);
    let _lock = crate::cluster::ClusterLock::acquire(name, "fame reload")?;
    let mut c = super::load(Some(name))?;
    // Checked before anything is stopped, so a missing binary costs nothing.
    let wanted = bin_dir
        .map(Path::to_path_buf)
        .or_else(|| c.state.settings.bin_dir.clone());
    let bins = Bins::locate(wanted.as_deref())?;
    bins.check(&[bins::LIBRARIAN, bins::LFS_NODE])?;
    let lmp = c.state.lmp_port.is_some();
    if lmp {
        bins.check(&[bins::LMP])?;
    }
    let mut steps = Steps::new(3 + usize::from(lmp));
    // The cluster's ports are free from the stop until its Librarian and LMP listen again: hold
    // the machine's port lock meanwhile, so that no `fame up` (of any FAME_HOME) takes them.
    let mut port_lock = Some(crate::ports::PortLock::acquire()?);
    steps.run("stop the nodes, the Librarian and the LMP", |_| {
        let nodes: Vec<_> = c.state.nodes.iter().collect();
        c.backend.stop(&nodes, Duration::from_secs(5))?;
        let services: Vec<_> = c.state.librarian.into_iter().chain(c.state.lmp).collect();
        procs::terminate(&services, Duration::from_secs(5));
        procs::terminate(
            &procs::marked_processes(&c.paths.dir),
            Duration::from_secs(5),
        );
        c.state.librarian = None;
        c.state.lmp = None;
        c.state.phase = Phase::Starting;
        c.state.bin_dir = bins.dir.clone();
        if bin_dir.is_some() {
            c.state.settings.bin_dir = Some(bins.dir.clone());
        }
        c.state.save(&c.paths.state())
    })?;
    // A stopped cluster's ports may have been taken meanwhile (by a cluster under another
    // FAME_HOME, which cannot see this one's): choose again, as `fame up` would (a port the user
    // chose is then refused with the fix).
    let taken = |p: u16| !crate::ports::is_free(p);
    if taken(c.state.port)
        || c.state.metrics_port.is_some_and(taken)
        || c.state.lmp_port.is_some_and(taken)
    {
        let fresh = super::preflight::pick_ports(&c.state.settings)?;
        tracing::info!(
            "reload {}: its ports were taken meanwhile; Librarian on {} now",
            c.name,
            fresh.librarian
        );
        c.state.port = fresh.librarian;
        c.state.metrics_port = Some(fresh.metrics);
        c.state.lmp_port = fresh.lmp;
        c.state.save(&c.paths.state())?;
    }
    let bind = c.backend.librarian_addr();
    let limit = Duration::from_secs(c.state.settings.timeout_secs);
    let result = (|| {
        steps.run("start the Librarian", |_| {
            services::run_librarian(&bins, &c.paths, &mut c.state, bind, limit)
        })?;
        if let Some(p) = c.state.lmp_port {
            steps.run(&format!("start the LMP on port {p}"), |_| {
                services::run_lmp(&bins, &c.paths, &mut c.state, bind, limit)
            })?;
        }
        drop(port_lock.take());
        // `stop` above ended the fault proxy with the cluster's other processes.
        c.state.proxy = None;
        if c.state.settings.faults.proxy {
            crate::proxy::start(&mut c.state, &c.paths, bind)?;
        }
        steps.run(&format!("start {} nodes", c.state.nodes.len()), |s| {
            nodes::start_and_wait(c.backend.as_ref(), &mut c.state, &c.paths, &bins, s)
        })
    })();
    if let Err(e) = result {
        return Err(e).with_context(|| {
            format!(
                "reload of {} failed; the FAM file and database are intact: fix the cause and run `fame reload {}` again, or `fame down {}`",
                c.name, c.name, c.name
            )
        });
    }
    c.state.phase = Phase::Up;
    c.state.timings = steps.timings.clone();
    c.state.save(&c.paths.state())?;
    outln!(
        "cluster {} reloaded with the binaries in {} in {}",
        c.name,
        bins.dir.display(),
        crate::progress::fmt_duration(t0.elapsed())
    );
    Ok(())
}

pub fn rebuild(name: Option<&str>) -> Result<()> {
    let name = name.unwrap_or(crate::cli::DEFAULT_NAME);
    let settings = {
        // Released before `up`, which takes it for itself: another `fame up` of this name could
        // come in between, and then this one is refused as the name is taken.
        let _lock = crate::cluster::ClusterLock::acquire(name, "fame rebuild")?;
        let c = super::load(Some(name))?;
        super::down::teardown(&c.name, &c.paths.dir, false)?;
        c.state.settings
    };
    outln!("cluster {name}: torn down; bringing it up again");
    super::up::up(settings)
}
