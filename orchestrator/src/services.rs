//! The host side of a cluster (what the ToRMS did in The Machine): registering books with
//! `book-register` and running the Librarian.

use crate::bins::{Bins, BOOK_REGISTER, LIBRARIAN, LMP};
use crate::cluster::ClusterPaths;
use crate::procs::{ProcRef, MARKER_ENV};
use crate::progress::check_interrupt;
use crate::state::ClusterState;
use anyhow::{anyhow, bail, Context, Result};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
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

/// Opens `path` for appending (the log of a process of the cluster).
fn append(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// Starts `cmd` as a process of the cluster: marked with the cluster directory, in its own
/// process group (so Ctrl-C in the terminal does not reach it), its output appended to `log`.
fn spawn_service(
    mut cmd: Command,
    what: &str,
    paths: &ClusterPaths,
    log: &Path,
) -> Result<ProcRef> {
    let out = append(log)?;
    let program = cmd.get_program().to_owned();
    let child = cmd
        .env(MARKER_ENV, &paths.dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot run {}", Path::new(&program).display()))?;
    ProcRef::of(child.id() as i32)
        .ok_or_else(|| anyhow!("the {what} exited at once{}", log_tail(log, 5)))
}

/// Starts the Librarian on `bind`:`port` (127.0.0.1, or the torms address of VM nodes), with
/// its metrics on `bind`:`metrics_port` if given, logging to `logs/librarian.log`.
pub fn start_librarian_on(
    bins: &Bins,
    paths: &ClusterPaths,
    bind: IpAddr,
    port: u16,
    metrics_port: Option<u16>,
) -> Result<ProcRef> {
    let log = paths.librarian_log();
    let port_file = paths.librarian_port_file();
    match std::fs::remove_file(&port_file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot remove {}", port_file.display()));
        }
        _ => {}
    }
    let mut cmd = Command::new(bins.path(LIBRARIAN));
    cmd.arg("--db-file")
        .arg(paths.db())
        .arg("--bind")
        .arg(bind.to_string())
        .arg("--port")
        .arg(port.to_string())
        .arg("--port-file")
        .arg(&port_file)
        .arg("--log-file")
        .arg(&log)
        .args(["--verbose", "1"]);
    if let Some(m) = metrics_port {
        cmd.arg("--metrics-port").arg(m.to_string());
    }
    spawn_service(cmd, "Librarian", paths, &log)
}

/// Starts the cluster's Librarian on `bind` and the ports in `state`, records it in `state.json`
/// (so that a rollback or `fame down` finds it even if it never listens) and waits until it
/// accepts connections: what `fame up`, `fame reload` and scenario steps do alike.
pub fn run_librarian(
    bins: &Bins,
    paths: &ClusterPaths,
    state: &mut ClusterState,
    bind: IpAddr,
    limit: Duration,
) -> Result<()> {
    let p = start_librarian_on(bins, paths, bind, state.port, state.metrics_port)?;
    state.librarian = Some(p);
    state.save(&paths.state())?;
    // Its port file, not a connect: another process listening on the port (a cluster that took
    // it while this one's Librarian was down) must not pass for this cluster's Librarian.
    let port_file = paths.librarian_port_file();
    let addr = SocketAddr::from((bind, state.port));
    wait_until(p, "Librarian", &paths.librarian_log(), addr, limit, || {
        std::fs::read_to_string(&port_file).is_ok_and(|t| t.trim() == state.port.to_string())
    })
}

/// Where the LMP listens: 127.0.0.1 of the host, whatever the nodes are (it only reads the
/// database).
pub const LMP_BIND: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The LMP's address for a browser.
pub fn lmp_url(port: u16) -> String {
    format!("http://{LMP_BIND}:{port}/")
}

/// Starts the cluster's LMP on its port (if it has one), reading the database and the
/// Librarian's metrics at `librarian_bind`, records it in `state.json` and waits until it
/// listens. `fame up` and `fame reload` start it after the Librarian.
pub fn run_lmp(
    bins: &Bins,
    paths: &ClusterPaths,
    state: &mut ClusterState,
    librarian_bind: IpAddr,
    limit: Duration,
) -> Result<()> {
    let Some(port) = state.lmp_port else {
        return Ok(());
    };
    let log = paths.lmp_log();
    let mut cmd = Command::new(bins.path(LMP));
    cmd.arg("-d")
        .arg(paths.db())
        .arg("--bind")
        .arg(LMP_BIND.to_string())
        .arg("--port")
        .arg(port.to_string())
        .arg("--log-file")
        .arg(&log)
        .arg("--pid-file")
        .arg(paths.lmp_pid());
    if let Some(m) = state.metrics_port {
        cmd.arg("--librarian-metrics").arg(format!(
            "http://{}/metrics",
            SocketAddr::from((librarian_bind, m))
        ));
    }
    let p = spawn_service(cmd, "LMP", paths, &log)?;
    state.lmp = Some(p);
    state.save(&paths.state())?;
    wait_listening(p, "LMP", &log, (LMP_BIND, port).into(), limit)
}

/// Waits until `p` (the `what` of the cluster, logging to `log`) accepts connections on `addr`.
fn wait_listening(
    p: ProcRef,
    what: &str,
    log: &Path,
    addr: SocketAddr,
    limit: Duration,
) -> Result<()> {
    wait_until(p, what, log, addr, limit, || {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    })
}

/// Waits until `listening` holds for the service `p`, failing when `p` exits first or after
/// `limit`.
fn wait_until(
    p: ProcRef,
    what: &str,
    log: &Path,
    addr: SocketAddr,
    limit: Duration,
    mut listening: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if listening() {
            return Ok(());
        }
        if !p.is_alive() {
            bail!(
                "the {what} exited before it listened on {addr}{}",
                log_tail(log, 5)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the {what} did not listen on {addr} within {} s; raise --timeout or see {}",
                limit.as_secs(),
                log.display()
            );
        }
        check_interrupt()?;
        std::thread::sleep(Duration::from_millis(3));
    }
}
