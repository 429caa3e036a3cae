//! `fame up`: the seven steps, and the rollback of everything they started when one fails or the
//! user interrupts.

use super::nodes;
use super::preflight::{self, Plan};
use crate::cluster::{self, ClusterPaths};
use crate::output::outln;
use crate::progress::{check_interrupt, fmt_duration, Steps};
use crate::services;
use crate::size::format_size;
use crate::state::{ClusterState, Phase, Settings};
use anyhow::{Context, Result};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub fn up(settings: Settings) -> Result<()> {
    crate::progress::catch_interrupts();
    let t0 = Instant::now();
    // Backends with shared parts (see below) prepare them in a step of its own.
    let shared = settings.backend.capabilities().shared_parts;
    let mut steps = Steps::new(7 + usize::from(shared) + usize::from(!settings.no_lmp));
    let mut plan = steps.run("validate", |s| preflight::validate(&settings, s))?;
    let paths = ClusterPaths::new(&settings.dir);
    match bring_up(&mut steps, &mut plan, &settings, &paths, t0) {
        Ok(()) => Ok(()),
        Err(e) => {
            drop(plan.port_lock.take());
            tracing::error!("fame up failed: {e:#}");
            eprintln!("fame up failed; removing everything it started");
            if let Err(r) = super::down::teardown(&settings.name, &paths.dir, false) {
                eprintln!(
                    "fame: rollback incomplete: {r:#}; run `fame down {}`",
                    settings.name
                );
            }
            Err(e)
        }
    }
}

fn bring_up(
    steps: &mut Steps,
    plan: &mut Plan,
    settings: &Settings,
    paths: &ClusterPaths,
    t0: Instant,
) -> Result<()> {
    let g = plan.geometry;
    let mut state = steps.run("write node_fame.ini", |_| {
        let state = create_dir(settings, plan, paths)?;
        std::fs::write(paths.ini(), g.fame_ini())
            .with_context(|| format!("cannot write {}", paths.ini().display()))?;
        Ok(state)
    })?;
    check_interrupt()?;
    steps.run(
        &format!("create {} FAM file", format_size(settings.fam_bytes)),
        |_| {
            if state.fam_owned {
                create_fam(&state.fam_path, settings.fam_bytes)?;
            }
            Ok(())
        },
    )?;
    check_interrupt()?;
    steps.run(&format!("register {} books", g.books_total()), |_| {
        services::register_books(&plan.bins, paths)
    })?;
    check_interrupt()?;
    // Backends with shared parts (the VM network and guest image) make them first: the
    // Librarian listens where the nodes reach it.
    let bind = if plan.backend.capabilities().shared_parts {
        steps.run(&format!("prepare the {} backend", settings.backend), |s| {
            plan.backend.prepare(&state, s)
        })?
    } else {
        plan.backend.librarian_addr()
    };
    check_interrupt()?;
    let limit = std::time::Duration::from_secs(settings.timeout_secs);
    steps.run("start the Librarian", |_| {
        services::run_librarian(&plan.bins, paths, &mut state, bind, limit)
    })?;
    if let Some(p) = state.lmp_port {
        steps.run(&format!("start the LMP on port {p}"), |_| {
            services::run_lmp(&plan.bins, paths, &mut state, bind, limit)
        })?;
    }
    // The Librarian and the LMP listen on their ports now: other `fame up`s may choose theirs.
    drop(plan.port_lock.take());
    if settings.faults.proxy {
        crate::proxy::start(&mut state, paths, bind)?;
    }
    steps.run(&format!("start {} nodes", settings.nodes), |s| {
        nodes::start_and_wait(plan.backend.as_ref(), &mut state, paths, &plan.bins, s)
    })?;
    check_interrupt()?;
    let ready = t0.elapsed();
    steps.run("report", |_| {
        print_summary(&state, paths, plan, ready);
        Ok(())
    })?;
    state.phase = Phase::Up;
    state.timings = steps.timings.clone();
    state.timings.push(("ready".into(), ready.as_secs_f64()));
    state.save(&paths.state())
}

/// Creates and registers the cluster directory and writes the first `state.json`.
fn create_dir(settings: &Settings, plan: &Plan, paths: &ClusterPaths) -> Result<ClusterState> {
    let dir_created = !paths.dir.exists();
    std::fs::create_dir_all(&paths.dir)
        .with_context(|| format!("cannot create {}", paths.dir.display()))?;
    if paths.dir != cluster::entry(&settings.name) {
        cluster::register_symlink(&settings.name, &paths.dir)?;
    }
    std::fs::create_dir_all(paths.logs())?;
    std::fs::create_dir_all(paths.nodes())?;
    crate::logging::open(&paths.fame_log());
    tracing::info!("fame up: {settings:?}");
    let state = ClusterState {
        settings: settings.clone(),
        phase: Phase::Starting,
        port: plan.ports.librarian,
        metrics_port: Some(plan.ports.metrics),
        lmp_port: plan.ports.lmp,
        lmp: None,
        fam_path: settings.fam_file.clone().unwrap_or_else(|| paths.fam()),
        fam_owned: settings.fam_file.is_none(),
        dir_created,
        book_size: plan.geometry.book_size,
        books_per_node: plan.geometry.books_per_node,
        bin_dir: plan.bins.dir.clone(),
        librarian: None,
        nodes: nodes::plan(paths, &settings.hostbase, settings.nodes),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        timings: vec![],
        proxy: None,
    };
    state.save(&paths.state())?;
    // Under the port lock still: from now on no fame of any FAME_HOME takes these ports.
    crate::ports::register(&paths.dir)?;
    Ok(state)
}

/// The FAM backing file: sparse, exactly `size` bytes, mode 0660 (owner and group read/write,
/// as the configure script leaves it for the hypervisor's group).
fn create_fam(path: &std::path::Path, size: u64) -> Result<()> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o660)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    // The umask may have taken bits away.
    f.set_permissions(std::fs::Permissions::from_mode(0o660))?;
    f.set_len(size)
        .with_context(|| format!("cannot size {} to {size} bytes", path.display()))
}

fn print_summary(
    state: &ClusterState,
    paths: &ClusterPaths,
    plan: &Plan,
    ready: std::time::Duration,
) {
    let s = &state.settings;
    let first = &state.nodes[0];
    let last = &state.nodes[state.nodes.len() - 1];
    let lfs = plan.backend.host_lfs_path(first);
    let name_flag = if s.name == crate::cli::DEFAULT_NAME {
        String::new()
    } else {
        format!("--name {} ", s.name)
    };
    let name_arg = if s.name == crate::cli::DEFAULT_NAME {
        String::new()
    } else {
        format!(" {}", s.name)
    };
    outln!(
        "cluster {} is ready in {}: {} nodes on {} of FAM ({} books of {}, {} per node), backend {}",
        s.name,
        fmt_duration(ready),
        s.nodes,
        format_size(s.fam_bytes),
        state.books_per_node * u64::from(s.nodes),
        format_size(state.book_size),
        state.books_per_node,
        s.backend
    );
    outln!("  directory  {}", paths.dir.display());
    outln!("  FAM        {}", state.fam_path.display());
    outln!("  config     {}", paths.ini().display());
    outln!("  database   {}", paths.db().display());
    outln!(
        "  Librarian  {} (log {})",
        std::net::SocketAddr::from((plan.backend.librarian_addr(), state.port)),
        paths.librarian_log().display()
    );
    if let Some(p) = state.lmp_port {
        outln!(
            "  LMP        {} (log {})",
            services::lmp_url(p),
            paths.lmp_log().display()
        );
    }
    outln!("  logs       `fame logs{name_arg}` lists them; --export DIR bundles them");
    if let Some(lfs) = lfs {
        outln!(
            "  nodes      {}..{}; /lfs of each is visible on the host at {}",
            first.name,
            last.name,
            lfs.display().to_string().replace(&first.name, "NODE")
        );
    }
    outln!(
        "get into a node:  fame exec {name_flag}{} -- sh",
        first.name
    );
    outln!("status:           fame status{name_arg}");
    outln!("tear it down:     fame down{name_arg}");
}
