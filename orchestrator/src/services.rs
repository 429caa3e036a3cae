//! The host side of a cluster (what the ToRMS did in The Machine): registering books with
//! `book-register` and running the Librarian.

use crate::bins::{Bins, BOOK_REGISTER, LIBRARIAN};
use crate::cluster::ClusterPaths;
use crate::procs::{ProcRef, MARKER_ENV};
use crate::progress::check_interrupt;
use crate::state::ClusterState;
use anyhow::{anyhow, bail, Context, Result};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The last `n` lines of a log, indented, for error messages ("" if there is none).
pub fn log_tail(path: &Path, n: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(n)..];
    if tail.is_empty() {
        return String::new();
    }
    format!(
        "\n  last lines of {}:\n    {}",
        path.display(),
        tail.join("\n    ")
    )
}

/// `book-register -d librarian.db node_fame.ini`; its output goes to `logs/book-register.log`.
pub fn register_books(bins: &Bins, paths: &ClusterPaths) -> Result<()> {
    let log = paths.book_register_log();
    let out =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let status = Command::new(bins.path(BOOK_REGISTER))
        .arg("-d")
        .arg(paths.db())
        .arg(paths.ini())
        .env(MARKER_ENV, &paths.dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .with_context(|| format!("cannot run {}", bins.path(BOOK_REGISTER).display()))?;
    if !status.success() {
        bail!("book-register failed ({status}){}", log_tail(&log, 5));
    }
    Ok(())
}

/// Starts the Librarian on `bind`:`port` (127.0.0.1, or the torms address of VM nodes) in its own process group (so Ctrl-C in the
/// terminal does not reach it), logging to `logs/librarian.log`.
pub fn start_librarian_on(
    bins: &Bins,
    paths: &ClusterPaths,
    bind: std::net::IpAddr,
    port: u16,
) -> Result<ProcRef> {
    let log_path = paths.librarian_log();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let child = Command::new(bins.path(LIBRARIAN))
        .arg("--db-file")
        .arg(paths.db())
        .arg("--bind")
        .arg(bind.to_string())
        .arg("--port")
        .arg(port.to_string())
        .arg("--log-file")
        .arg(&log_path)
        .args(["--verbose", "1"])
        .env(MARKER_ENV, &paths.dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot run {}", bins.path(LIBRARIAN).display()))?;
    ProcRef::of(child.id() as i32)
        .ok_or_else(|| anyhow!("the Librarian exited at once{}", log_tail(&log_path, 5)))
}

/// Starts the cluster's Librarian on `bind` and the port in `state`, records it in `state.json`
/// (so that a rollback or `fame down` finds it even if it never listens) and waits until it
/// accepts connections: what `fame up`, `fame reload` and scenario steps do alike.
pub fn run_librarian(
    bins: &Bins,
    paths: &ClusterPaths,
    state: &mut ClusterState,
    bind: std::net::IpAddr,
    limit: Duration,
) -> Result<()> {
    let p = start_librarian_on(bins, paths, bind, state.port)?;
    state.librarian = Some(p);
    state.save(&paths.state())?;
    wait_librarian_on(p, paths, bind, state.port, limit)
}

/// Waits until the Librarian accepts connections on `bind`:`port`.
pub fn wait_librarian_on(
    p: ProcRef,
    paths: &ClusterPaths,
    bind: std::net::IpAddr,
    port: u16,
    limit: Duration,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    let addr = std::net::SocketAddr::from((bind, port));
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if !p.is_alive() {
            bail!(
                "the Librarian exited before it listened on {addr}{}",
                log_tail(&paths.librarian_log(), 5)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the Librarian did not listen on {addr} within {} s; raise --timeout or see {}",
                limit.as_secs(),
                paths.librarian_log().display()
            );
        }
        check_interrupt()?;
        std::thread::sleep(Duration::from_millis(3));
    }
}
