//! Daemon life cycle (spec §1.3): identity, Librarian, FAM, statuses, mount; then wait for
//! SIGTERM/SIGINT, unmount and report OFFLINE. A stale mount left by a killed daemon at the same
//! mount point is cleared first.

use crate::fam::{self, Fam};
use crate::fs::{mount_config, LfsFs};
use crate::geometry::Geometry;
use crate::heartbeat::{self, Status};
use crate::link::{Identity, Link};
use crate::node_id;
use crate::options::DaemonArgs;
use crate::zeroing::Zeroer;
use anyhow::{anyhow, bail, Context, Result};
use lfs_proto::request::{GetFsStats, UpdateNodeMcStatus, UpdateNodeSocStatus};
use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{SigSet, Signal};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn init_logging(args: &DaemonArgs) -> Result<()> {
    let level = match args.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LFS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match &args.log_file {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open --log-file {}", p.display()))?;
            builder.with_ansi(false).with_writer(Arc::new(f)).init();
        }
        None => {
            use std::io::IsTerminal;
            let ansi = std::io::stderr().is_terminal();
            builder.with_ansi(ansi).with_writer(std::io::stderr).init()
        }
    }
    Ok(())
}

fn identity(args: &DaemonArgs) -> Result<Identity> {
    let who = match (&args.physloc, args.node_id) {
        (Some(p), _) => node_id::from_physloc(p),
        (None, Some(n)) => node_id::from_node_id(n),
        (None, None) => node_id::discover(),
    };
    who.map_err(|e| anyhow!(e))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

/// Whether a FUSE file system is mounted exactly at `mp`.
fn is_fuse_mount(mp: &Path) -> bool {
    mounted_fstype(mp).is_some_and(|t| t.starts_with("fuse"))
}

/// The file system type mounted exactly at `mp`, if any (from /proc/self/mountinfo).
fn mounted_fstype(mp: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = mp.to_str()?.replace(' ', "\\040");
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-")?;
        (f.get(4) == Some(&want.as_str())).then(|| f.get(sep + 1).unwrap_or(&"").to_string())
    })
}

/// Clears a mount left behind by a killed daemon; refuses to mount over a live LFS.
fn prepare_mountpoint(mp: &Path) -> Result<()> {
    match std::fs::metadata(mp) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            tracing::warn!(
                "{}: clearing a stale mount left by a daemon that died",
                mp.display()
            );
            umount2(mp, MntFlags::MNT_DETACH)
                .with_context(|| format!("cannot clear the stale mount at {}", mp.display()))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(mp)
                .with_context(|| format!("cannot create --mountpoint {}", mp.display()))?;
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(mp, std::fs::Permissions::from_mode(0o777));
        }
        Err(e) => bail!("cannot use --mountpoint {}: {e}", mp.display()),
        Ok(m) if !m.is_dir() => bail!("--mountpoint {} is not a directory", mp.display()),
        Ok(_) => {
            if is_fuse_mount(mp) {
                bail!(
                    "--mountpoint {} is already a live FUSE mount (another lfs-node?): stop that daemon first or choose another mount point",
                    mp.display()
                );
            }
        }
    }
    Ok(())
}

fn unmount(mp: &Path) {
    match umount2(mp, MntFlags::empty()) {
        Ok(()) => {}
        Err(nix::errno::Errno::EBUSY) => {
            tracing::warn!("{} is busy: detaching it lazily", mp.display());
            if let Err(e) = umount2(mp, MntFlags::MNT_DETACH) {
                tracing::error!("cannot unmount {}: {e}", mp.display());
            }
        }
        Err(nix::errno::Errno::EINVAL) => {} // already gone
        Err(e) => tracing::error!("cannot unmount {}: {e}", mp.display()),
    }
}

pub fn run(args: DaemonArgs) -> Result<()> {
    if args.daemon && args.log_file.is_none() {
        bail!("--daemon needs --log-file PATH (a detached daemon has no terminal to log to)");
    }
    if let Some(d) = &args.shadow_dir {
        bail!(
            "--shadow_dir {} is not supported: LFS file data lives in FAM; give the FAM backing file with --fam PATH",
            d.display()
        );
    }
    if args.librarian_timeout == 0 {
        bail!("--librarian-timeout must be at least 1 second");
    }
    let who = identity(&args)?;
    let mp = absolute(&args.mountpoint)?;
    let fam_path = match &args.fam {
        // Absolute, because direct maps open it by the path the layout xattr gives.
        Some(p) => absolute(p)?,
        None => fam::find_ivshmem().ok_or_else(|| {
            anyhow!("no FAM device: give the FAM backing file with --fam PATH, or run inside a FAME VM with an ivshmem device (PCI 1af4:1110)")
        })?,
    };
    if args.daemon {
        nix::unistd::daemon(true, false).context("cannot detach into the background")?;
    }
    init_logging(&args)?;
    if args.fixed1906 || args.enable_z {
        tracing::warn!("--fixed1906 and --enable_Z are for The Machine's hardware and are ignored");
    }
    // Signals go to one thread that waits for them; every thread inherits this mask.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block().context("cannot block signals")?;
    let link = Arc::new(Link::new(
        &args.hostname,
        args.port,
        who.clone(),
        Duration::from_secs(args.librarian_timeout),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<Signal>();
    {
        let (stop, ready, link) = (stop.clone(), ready.clone(), link.clone());
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                while let Ok(sig) = signals.wait() {
                    stop.store(true, Ordering::SeqCst);
                    if ready.load(Ordering::SeqCst) {
                        // Requests in flight finish, but none waits for an absent Librarian.
                        link.stop_waiting();
                    } else {
                        // Start-up does not wait for anything once stopped.
                        link.abort();
                    }
                    let _ = stop_tx.send(sig);
                }
            })?;
    }

    tracing::info!(
        "node {} (physloc {}), Librarian {}:{}, mount point {}, FAM {}",
        who.node_id,
        who.physloc,
        args.hostname,
        args.port,
        mp.display(),
        fam_path.display()
    );
    let stopped = || stop.load(Ordering::SeqCst);
    // A start-up step failed or was cut short by a signal: say which.
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        if stopped() {
            anyhow!("stopped by a signal during start-up")
        } else {
            anyhow!("{what} failed: {e}")
        }
    };
    link.connect_patiently(stopped)?;
    let stats = link
        .call(&GetFsStats {})
        .map_err(|e| failed("get_fs_stats", &e))?;
    let geo = Arc::new(Geometry::from_fs_stats(&stats)?);
    let fam = Arc::new(Fam::open(&fam_path, geo.fam_bytes_needed).map_err(|e| anyhow!(e))?);
    prepare_mountpoint(&mp)?;

    let quick = Duration::from_secs(2);
    // OFFLINE, on new connections that wait for a reply briefly: a Librarian that has stopped
    // answering must not hold up the exit.
    let report_offline = || {
        link.abort();
        link.resume_for_shutdown();
        let _ = link.call_within(&UpdateNodeSocStatus::offline(), quick);
        let _ = link.call_within(&UpdateNodeMcStatus { status: 0 }, quick);
    };
    let mut status = Status::default();
    link.call(&status.active())
        .map_err(|e| failed("update_node_soc_status", &e))?;
    // Only here, at mount: the Librarian drops the opens this node held before (a previous
    // daemon's). Reconnects never send it.
    if let Err(e) = link.call(&UpdateNodeMcStatus { status: 1 }) {
        report_offline();
        return Err(failed("update_node_mc_status", &e));
    }
    if stopped() {
        report_offline();
        bail!("stopped by a signal during start-up");
    }
    let zeroer = Zeroer::spawn(link.clone(), fam.clone(), geo.clone(), args.fakezero);
    zeroer.collect_zombies(&link);
    heartbeat::spawn(
        link.clone(),
        zeroer.clone(),
        fam.clone(),
        status,
        stop.clone(),
    );

    let fs = LfsFs::new(link.clone(), fam, geo, zeroer);
    // Session::new mounts and answers the kernel's INIT: once it returns, the mount answers.
    let session = match fuser::Session::new(fs, &mp, &mount_config()) {
        Ok(s) => s,
        Err(e) => {
            report_offline();
            return Err(e).with_context(|| format!("cannot mount LFS at {}", mp.display()));
        }
    };
    let session = match session.spawn() {
        Ok(s) => s,
        Err(e) => {
            unmount(&mp);
            report_offline();
            return Err(e).context("cannot start the FUSE session");
        }
    };
    // The mount is checked in the mount table, never by a request to it (statfs, stat...): a
    // thread of this process waiting on its own mount is stuck for good if the process is killed
    // meanwhile, since the kernel waits uninterruptibly for an answer that the threads killed with
    // it would have sent (only an abort through fusectl then ends it).
    let started = match mounted_fstype(&mp) {
        Some(t) if t.starts_with("fuse") => Ok(()),
        other => Err(anyhow!(
            "{} did not come up as a FUSE mount (mount table says {:?})",
            mp.display(),
            other
        )),
    }
    .and_then(|()| match &args.pid_file {
        Some(p) if !stopped() => std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write --pid-file {}", p.display())),
        _ => Ok(()),
    })
    .and_then(|()| {
        ready.store(true, Ordering::SeqCst);
        if stopped() {
            // The signal may have come before `ready` was set, when start-up still waited.
            link.stop_waiting();
            bail!("stopped by a signal during start-up");
        }
        Ok(())
    });
    // Unmounts, reports OFFLINE and removes the pid file. The session thread ends when the kernel
    // drops the connection; don't wait for a lazy detach.
    let tear_down = |session: fuser::BackgroundSession| {
        unmount(&mp);
        report_offline();
        if let Some(p) = &args.pid_file {
            let _ = std::fs::remove_file(p);
        }
        std::mem::forget(session);
    };
    if let Err(e) = started {
        tear_down(session);
        return Err(e);
    }
    tracing::info!("ready: LFS mounted at {}", mp.display());

    let sig = stop_rx.recv().unwrap_or(Signal::SIGTERM);
    tracing::info!("{sig}: unmounting {}", mp.display());
    tear_down(session);
    tracing::info!("stopped");
    Ok(())
}
