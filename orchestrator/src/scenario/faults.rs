//! What scenario steps do to a running cluster besides running commands in nodes: faults
//! (Librarian and node daemons killed and restarted, nodes cut off and paused), fsck and
//! questions to the Librarian. Each works on the cluster's `state.json`, read fresh and saved
//! after every change, so `fame status`, `fame down` and the next step see what happened.

use crate::backend::{self, Backend, DaemonSpec, LfsState};
use crate::bins::{self, Bins};
use crate::cluster::{self, ClusterPaths};
use crate::procs::{self, ProcRef, MARKER_ENV};
use crate::state::{ClusterState, Node};
use anyhow::{anyhow, bail, Context, Result};
use rustix::process::Signal;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A running cluster as a scenario sees it.
pub struct Cluster {
    pub name: String,
    pub paths: ClusterPaths,
    pub backend: Box<dyn Backend>,
}

impl Cluster {
    pub fn open(name: &str) -> Result<Cluster> {
        let dir =
            cluster::resolve(name).ok_or_else(|| anyhow!("cluster {name} is not registered"))?;
        let paths = ClusterPaths::new(dir);
        let state = ClusterState::load(&paths.state())?;
        let backend = backend::by_name(&state.settings.backend)
            .ok_or_else(|| anyhow!("unknown backend {}", state.settings.backend))?;
        Ok(Cluster {
            name: name.to_string(),
            paths,
            backend,
        })
    }

    pub fn state(&self) -> Result<ClusterState> {
        ClusterState::load(&self.paths.state())
    }

    fn node(&self, st: &ClusterState, name: &str) -> Result<Node> {
        st.node(name)
            .cloned()
            .ok_or_else(|| anyhow!("cluster {} has no node {name}", self.name))
    }

    // ------------------------------------------------------------ the Librarian

    /// SIGKILL, no goodbye: what a crash looks like to the nodes and the database.
    pub fn kill_librarian(&self) -> Result<()> {
        let mut st = self.state()?;
        let Some(l) = st.librarian.filter(ProcRef::is_alive) else {
            bail!("the Librarian is not running (start it with a start-librarian step)");
        };
        l.signal(Signal::KILL);
        if !procs::wait_gone(&[l], Duration::from_secs(10)).is_empty() {
            bail!("the Librarian (pid {}) survived SIGKILL", l.pid);
        }
        st.librarian = None;
        st.save(&self.paths.state())
    }

    /// SIGTERM, waiting for it to finish (before an offline fsck).
    pub fn stop_librarian(&self) -> Result<()> {
        let mut st = self.state()?;
        if let Some(l) = st.librarian.filter(ProcRef::is_alive) {
            if !procs::terminate(&[l], Duration::from_secs(10)).is_empty() {
                bail!("the Librarian (pid {}) did not stop", l.pid);
            }
        }
        st.librarian = None;
        st.save(&self.paths.state())
    }

    /// Starts the Librarian on the cluster's port with the same arguments as `fame up` and
    /// `fame reload`, and waits until it accepts connections.
    pub fn start_librarian(&self, limit: Duration) -> Result<()> {
        let mut st = self.state()?;
        if st.librarian.is_some_and(|l| l.is_alive()) {
            bail!("the Librarian is already running; kill it first with a kill-librarian step");
        }
        let bins = Bins::locate(Some(&st.bin_dir))?;
        bins.check(&[bins::LIBRARIAN])?;
        let log_path = self.paths.librarian_log();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        // The arguments of services::start_librarian (`fame up` / `fame reload`).
        let child = Command::new(bins.path(bins::LIBRARIAN))
            .arg("--db-file")
            .arg(self.paths.db())
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(st.port.to_string())
            .arg("--log-file")
            .arg(&log_path)
            .args(["--verbose", "1"])
            .env(MARKER_ENV, &self.paths.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("cannot start the Librarian")?;
        let p = ProcRef::of(child.id() as i32)
            .ok_or_else(|| anyhow!("the Librarian exited at once"))?;
        st.librarian = Some(p);
        st.save(&self.paths.state())?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], st.port));
        let deadline = Instant::now() + limit;
        loop {
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if !p.is_alive() {
                bail!(
                    "the Librarian exited before it listened on {addr}{}",
                    crate::services::log_tail(&log_path, 5)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the Librarian did not listen on {addr} within {} s",
                    limit.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    // ------------------------------------------------------------ nodes

    /// The node's processes: its daemon and everything sharing its mount namespace (process
    /// backend), found from the handle in `state.json`.
    fn node_processes(&self, node: &Node) -> Result<Vec<ProcRef>> {
        let Ok(daemon) = serde_json::from_value::<ProcRef>(node.handle.clone()) else {
            return Ok(vec![]);
        };
        if !daemon.is_alive() {
            return Ok(vec![]);
        }
        let ns = std::fs::read_link(daemon.proc_path("ns/mnt")).ok();
        let mut out = vec![daemon];
        if let (Some(ns), Ok(entries)) = (ns, std::fs::read_dir("/proc")) {
            for pid in entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|&pid| pid != daemon.pid)
            {
                if std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
                    .ok()
                    .as_ref()
                    == Some(&ns)
                {
                    out.extend(ProcRef::of(pid));
                }
            }
        }
        Ok(out)
    }

    fn process_backend_only(&self, st: &ClusterState, what: &str) -> Result<()> {
        if st.settings.backend != "process" {
            bail!(
                "{what} is implemented for the process backend only; this cluster uses {}",
                st.settings.backend
            );
        }
        Ok(())
    }

    /// SIGKILL of the node's daemon and everything running in the node.
    pub fn kill_node(&self, name: &str) -> Result<()> {
        let st = self.state()?;
        self.process_backend_only(&st, "kill-node")?;
        let node = self.node(&st, name)?;
        let victims = self.node_processes(&node)?;
        if victims.is_empty() {
            bail!("{name} is not running (start it with a start-node step)");
        }
        for p in &victims {
            p.signal(Signal::KILL);
        }
        let left = procs::wait_gone(&victims, Duration::from_secs(10));
        if !left.is_empty() {
            bail!(
                "{name}: processes {:?} survived SIGKILL",
                left.iter().map(|p| p.pid).collect::<Vec<_>>()
            );
        }
        Ok(())
    }

    /// SIGSTOP (pause) or SIGCONT (resume) of everything in the node.
    pub fn pause_node(&self, name: &str, pause: bool) -> Result<()> {
        let st = self.state()?;
        self.process_backend_only(&st, if pause { "pause" } else { "resume" })?;
        let node = self.node(&st, name)?;
        let procs = self.node_processes(&node)?;
        if procs.is_empty() {
            bail!("{name} is not running");
        }
        for p in &procs {
            p.signal(if pause { Signal::STOP } else { Signal::CONT });
        }
        Ok(())
    }

    /// Starts a stopped node's daemon the way `fame up` does, and waits until its `/lfs`
    /// answers and its heartbeat from this start has reached the Librarian.
    pub fn start_node(&self, name: &str, limit: Duration) -> Result<()> {
        let mut st = self.state()?;
        let node = self.node(&st, name)?;
        if self.backend.probe(&node).running {
            bail!("{name} is already running; kill it first with a kill-node step");
        }
        let bins = Bins::locate(Some(&st.bin_dir))?;
        let spec = DaemonSpec {
            lfs_node: bins.path(bins::LFS_NODE),
            librarian_port: st.daemon_port(&node),
            fam: st.fam_path.clone(),
            cluster_dir: self.paths.dir.clone(),
            librarian_timeout: st.settings.faults.librarian_timeout,
        };
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.backend.create(&node)?;
        let handle = self.backend.start(&node, &spec)?;
        if let Some(n) = st.nodes.iter_mut().find(|n| n.name == name) {
            n.handle = handle;
        }
        st.save(&self.paths.state())?;
        let node = self.node(&st, name)?;
        let conn = crate::db::open(&self.paths.db())?;
        let deadline = Instant::now() + limit;
        loop {
            let p = self.backend.probe(&node);
            if !p.running {
                let logs: String = self
                    .backend
                    .logs(&node)
                    .iter()
                    .map(|l| crate::services::log_tail(l, 5))
                    .collect();
                bail!("{name} stopped before it was ready{logs}");
            }
            let beat = crate::db::heartbeats(&conn)
                .unwrap_or_default()
                .get(&i64::from(node.id))
                .is_some_and(|h| h.status == 1 && h.at.unwrap_or(0) >= since);
            if p.lfs == LfsState::Mounted && beat {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} was not ready within {} s (/lfs {:?}, heartbeat {beat})",
                    limit.as_secs(),
                    p.lfs
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn set_cut(&self, name: &str, cut: bool) -> Result<()> {
        let st = self.state()?;
        self.node(&st, name)?;
        crate::proxy::set_cut(&self.paths.dir, name, cut, Duration::from_secs(10))
    }

    // ------------------------------------------------------------ fsck and questions

    /// Offline fsck: stops the Librarian, repairs, starts it again. Returns the report's text
    /// and the names of the problems found.
    pub fn fsck(&self, limit: Duration) -> Result<(String, Vec<String>, usize)> {
        self.stop_librarian()?;
        let result = librarian::fsck::check_file(&self.paths.db(), true);
        let start = self.start_librarian(limit);
        let report = result.map_err(|e| anyhow!("fsck-lfs could not check the database: {e}"))?;
        start?;
        let mut found = vec![];
        for s in &report.steps {
            for f in &s.findings {
                let name = format!("{:?}", f.problem);
                if !found.contains(&name) {
                    found.push(name);
                }
            }
        }
        Ok((report.render(true), found, report.unrepaired()))
    }

    /// Asks the Librarian `command`, identifying as a node that is up (every request counts as
    /// its heartbeat, so never as a node a fault stopped).
    pub fn ask(
        &self,
        as_node: u32,
        command: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value> {
        let st = self.state()?;
        let mut c = librarian::client::Client::connect(("127.0.0.1", st.port), i64::from(as_node))
            .context("cannot reach the Librarian")?;
        c.set_timeout(Some(Duration::from_secs(10)))?;
        c.call(command, params)
            .map_err(|e| anyhow!("the Librarian answered {command} with an error: {e:?}"))
    }

    /// Log files of the cluster, with the given nodes' first.
    pub fn log_files(&self, nodes: &[String]) -> Vec<std::path::PathBuf> {
        let mut out = vec![self.paths.librarian_log()];
        if let Ok(st) = self.state() {
            for n in &st.nodes {
                if nodes.is_empty() || nodes.contains(&n.name) {
                    out.extend(self.backend.logs(n));
                }
            }
        }
        out.push(self.paths.logs().join("proxy.log"));
        out
    }
}
