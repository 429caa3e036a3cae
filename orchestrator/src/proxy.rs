//! The fault proxy: one small process per cluster (`fame __proxy`, started by `fame up
//! --fault-proxy`) with one listening port per node, each forwarding to the Librarian. Every
//! node's daemon connects to its own port, so a node can be cut off from the Librarian and
//! healed without touching the node itself, whatever the backend (a VM node would reach the
//! proxy on the torms address).
//!
//! Control is through files in the cluster directory, so any process (and a person) can use it:
//! `proxy/cut/NODE` existing means NODE is cut off. The proxy looks at them every 20 ms and
//! applies a change by
//!
//! * **cut**: shutting down every connection of the node (the daemon's pending call sees the
//!   connection close) and closing the node's listening socket (its reconnects are refused), so
//!   the daemon's calls fail with EIO once its `--librarian-timeout` has passed;
//! * **heal**: listening on the same port again; the daemon's next retry gets through.
//!
//! After applying a change it rewrites `proxy/status.json` (`{"cut": [...]}`), which is what
//! [`set_cut`] waits for. `proxy/ports.json` holds the ports, written once at start.

use crate::cluster::ClusterPaths;
use crate::procs::{ProcRef, MARKER_ENV};
use crate::state::{ClusterState, ProxyState};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the control files are looked at (also the accept poll timeout).
const TICK: Duration = Duration::from_millis(20);

fn proxy_dir(cluster_dir: &Path) -> PathBuf {
    cluster_dir.join("proxy")
}
fn cut_file(cluster_dir: &Path, node: &str) -> PathBuf {
    proxy_dir(cluster_dir).join("cut").join(node)
}
fn ports_file(cluster_dir: &Path) -> PathBuf {
    proxy_dir(cluster_dir).join("ports.json")
}
fn status_file(cluster_dir: &Path) -> PathBuf {
    proxy_dir(cluster_dir).join("status.json")
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Open connections of one node: (client side, Librarian side), by connection number.
type Conns = Arc<Mutex<BTreeMap<u64, (TcpStream, TcpStream)>>>;

struct Port {
    node: String,
    port: u16,
    listener: Option<TcpListener>,
    conns: Conns,
}

/// `fame __proxy`: serves until the cluster directory disappears or it is signalled.
pub fn serve(dir: &Path, target: SocketAddr, listen: IpAddr, nodes: &[String]) -> Result<()> {
    std::fs::create_dir_all(proxy_dir(dir).join("cut"))
        .with_context(|| format!("cannot create {}", proxy_dir(dir).display()))?;
    let mut ports = vec![];
    for node in nodes {
        let l = TcpListener::bind((listen, 0))
            .with_context(|| format!("{node}: cannot listen on {listen}"))?;
        l.set_nonblocking(true)?;
        ports.push(Port {
            node: node.clone(),
            port: l.local_addr()?.port(),
            listener: Some(l),
            conns: Arc::default(),
        });
    }
    let map: BTreeMap<&str, u16> = ports.iter().map(|p| (p.node.as_str(), p.port)).collect();
    write_atomic(&ports_file(dir), &serde_json::to_string(&map)?)?;
    let mut cut: BTreeSet<String> = BTreeSet::new();
    write_status(dir, &cut)?;
    let mut next_id = 0u64;
    loop {
        if !dir.is_dir() {
            return Ok(());
        }
        // Apply the control files.
        let mut changed = false;
        for p in &mut ports {
            let want_cut = cut_file(dir, &p.node).exists();
            if want_cut && !cut.contains(&p.node) {
                p.listener = None;
                for (_, (a, b)) in std::mem::take(&mut *p.conns.lock().unwrap()) {
                    let _ = a.shutdown(Shutdown::Both);
                    let _ = b.shutdown(Shutdown::Both);
                }
                cut.insert(p.node.clone());
                changed = true;
                eprintln!("proxy: cut {} off", p.node);
            } else if !want_cut && cut.contains(&p.node) {
                match TcpListener::bind((listen, p.port)) {
                    Ok(l) => {
                        l.set_nonblocking(true)?;
                        p.listener = Some(l);
                        cut.remove(&p.node);
                        changed = true;
                        eprintln!("proxy: healed {}", p.node);
                    }
                    // Retried at the next tick (the port may linger for a moment).
                    Err(e) => {
                        eprintln!("proxy: {}: cannot listen on {} again: {e}", p.node, p.port)
                    }
                }
            }
        }
        if changed {
            write_status(dir, &cut)?;
        }
        // Wait for connections on the open listeners.
        let listening: Vec<usize> = (0..ports.len())
            .filter(|&i| ports[i].listener.is_some())
            .collect();
        let ready: Vec<usize> = {
            let mut fds: Vec<rustix::event::PollFd> = listening
                .iter()
                .map(|&i| {
                    rustix::event::PollFd::new(
                        ports[i].listener.as_ref().expect("listening"),
                        rustix::event::PollFlags::IN,
                    )
                })
                .collect();
            let timeout = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: TICK.as_nanos() as _,
            };
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => bail!("poll: {e}"),
            }
            listening
                .iter()
                .zip(&fds)
                .filter(|(_, f)| !f.revents().is_empty())
                .map(|(&i, _)| i)
                .collect()
        };
        for i in ready {
            let p = &ports[i];
            loop {
                let client = match p.listener.as_ref().expect("listening").accept() {
                    Ok((s, _)) => s,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => {
                        eprintln!("proxy: {}: accept: {e}", p.node);
                        break;
                    }
                };
                next_id += 1;
                forward(client, target, &p.conns, next_id, &p.node);
            }
        }
    }
}

fn write_status(dir: &Path, cut: &BTreeSet<String>) -> Result<()> {
    write_atomic(
        &status_file(dir),
        &serde_json::json!({ "cut": cut }).to_string(),
    )
}

/// Joins `client` to a new connection to the Librarian (two copying threads).
fn forward(client: TcpStream, target: SocketAddr, conns: &Conns, id: u64, node: &str) {
    let _ = client.set_nonblocking(false);
    let upstream = match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
        Ok(s) => s,
        Err(e) => {
            // The daemon sees the connection close and retries, as with a Librarian that is down.
            eprintln!("proxy: {node}: cannot reach the Librarian at {target}: {e}");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (Ok(c2), Ok(u2), Ok(c3), Ok(u3)) = (
        client.try_clone(),
        upstream.try_clone(),
        client.try_clone(),
        upstream.try_clone(),
    ) else {
        return;
    };
    conns.lock().unwrap().insert(id, (c3, u3));
    let pipe = move |mut from: TcpStream, mut to: TcpStream, conns: Option<Conns>| {
        move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
            let _ = from.shutdown(Shutdown::Read);
            if let Some(c) = conns {
                c.lock().unwrap().remove(&id);
            }
        }
    };
    std::thread::spawn(pipe(client, upstream, None));
    std::thread::spawn(pipe(u2, c2, Some(conns.clone())));
}

/// Starts the cluster's proxy (before its nodes) on the Librarian's address `bind` (where the
/// nodes reach the Librarian: 127.0.0.1, or the torms address of VM and container nodes) and
/// records it and its ports in the state.
pub fn start(state: &mut ClusterState, paths: &ClusterPaths, bind: IpAddr) -> Result<()> {
    let dir = &paths.dir;
    let _ = std::fs::remove_dir_all(proxy_dir(dir));
    let log_path = paths.logs().join("proxy.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let me = std::env::current_exe().context("cannot find the fame executable")?;
    let mut cmd = Command::new(me);
    cmd.arg("__proxy")
        .arg("--dir")
        .arg(dir)
        .arg("--target")
        .arg(SocketAddr::from((bind, state.port)).to_string())
        .arg("--listen")
        .arg(bind.to_string())
        .arg("--nodes")
        .args(state.nodes.iter().map(|n| n.name.as_str()))
        .env(MARKER_ENV, dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn().context("cannot start the fault proxy")?;
    let process = ProcRef::of(child.id() as i32)
        .ok_or_else(|| anyhow!("the fault proxy exited at once; see {}", log_path.display()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let ports: BTreeMap<String, u16> = loop {
        if let Ok(text) = std::fs::read_to_string(ports_file(dir)) {
            break serde_json::from_str(&text).context("proxy/ports.json is not valid")?;
        }
        if !process.is_alive() || Instant::now() > deadline {
            bail!(
                "the fault proxy did not start{}",
                crate::services::log_tail(&log_path, 5)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    state.proxy = Some(ProxyState { process, ports });
    state.save(&paths.state())
}

/// Cuts `node` off from the Librarian (or heals it) and waits until the proxy has done it.
pub fn set_cut(cluster_dir: &Path, node: &str, cut: bool, limit: Duration) -> Result<()> {
    let f = cut_file(cluster_dir, node);
    if !f.parent().is_some_and(Path::is_dir) {
        bail!("the cluster has no fault proxy (bring it up with `fame up --fault-proxy`)");
    }
    if cut {
        std::fs::write(&f, b"").with_context(|| format!("cannot create {}", f.display()))?;
    } else {
        match std::fs::remove_file(&f) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {}", f.display()))
            }
            _ => {}
        }
    }
    let deadline = Instant::now() + limit;
    loop {
        let now_cut = std::fs::read_to_string(status_file(cluster_dir))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| {
                v["cut"]
                    .as_array()
                    .map(|a| a.iter().any(|n| n.as_str() == Some(node)))
            });
        if now_cut == Some(cut) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the fault proxy did not {} {node} within {} s; see logs/proxy.log",
                if cut { "cut off" } else { "heal" },
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
