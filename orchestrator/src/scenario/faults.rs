//! What scenario steps do to a running cluster besides running commands in nodes: faults
//! (Librarian and node daemons killed and restarted, nodes cut off and paused), fsck and
//! questions to the Librarian. Each works on the cluster's `state.json`, read fresh and saved
//! after every change, so `fame status`, `fame down` and the next step see what happened.

use crate::backend::Backend;
use crate::bins::{self, Bins};
use crate::cluster::{self, ClusterPaths};
use crate::procs::{self, ProcRef};
use crate::state::{ClusterState, Node};
use anyhow::{anyhow, bail, Context, Result};
use rustix::process::Signal;
use std::time::Duration;

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
        let backend = state.backend();
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

    /// Starts the Librarian on the cluster's port as `fame up` and `fame reload` do, and waits
    /// until it accepts connections.
    pub fn start_librarian(&self, limit: Duration) -> Result<()> {
        let mut st = self.state()?;
        if st.librarian.is_some_and(|l| l.is_alive()) {
            bail!("the Librarian is already running; kill it first with a kill-librarian step");
        }
        let bins = Bins::locate(Some(&st.bin_dir))?;
        bins.check(&[bins::LIBRARIAN])?;
        let bind = self.backend.librarian_addr();
        crate::services::run_librarian(&bins, &self.paths, &mut st, bind, limit)
    }

    // ------------------------------------------------------------ nodes

    /// The node, if it is running (a fault needs something to act on).
    fn running_node(&self, name: &str) -> Result<Node> {
        let node = self.node(&self.state()?, name)?;
        if !self.backend.probe(&node).running {
            bail!("{name} is not running (start it with a start-node step)");
        }
        Ok(node)
    }

    /// The node ends at once, as in a crash ([`Backend::kill`]).
    pub fn kill_node(&self, name: &str) -> Result<()> {
        self.backend.kill(&self.running_node(name)?)
    }

    /// Freezes (`pause`) or thaws the node ([`Backend::pause`], [`Backend::resume`]).
    pub fn pause_node(&self, name: &str, pause: bool) -> Result<()> {
        let node = self.running_node(name)?;
        if pause {
            self.backend.pause(&node)
        } else {
            self.backend.resume(&node)
        }
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
        crate::ops::nodes::start_some_and_wait(
            self.backend.as_ref(),
            &mut st,
            &self.paths,
            &bins,
            &[name.to_string()],
            &crate::progress::Step::hidden(),
            limit,
            "the step's timeout",
        )
    }

    pub fn set_cut(&self, name: &str, cut: bool) -> Result<()> {
        let st = self.state()?;
        let node = self.node(&st, name)?;
        if self.backend.capabilities().cuts_network {
            return self.backend.cut(&node, cut);
        }
        crate::proxy::set_cut(&self.paths.dir, name, cut, Duration::from_secs(10))
    }

    // ------------------------------------------------------------ fsck and questions

    /// Offline fsck: stops the Librarian, repairs, starts it again. Returns the report's text
    /// and the names of the problems found.
    pub fn fsck(&self, limit: Duration) -> Result<(String, Vec<String>, usize)> {
        self.stop_librarian()?;
        let result = lfs_fsck::check_file(&self.paths.db(), true);
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
    pub fn ask<R: lfs_proto::Request>(&self, as_node: u32, req: &R) -> Result<R::Reply> {
        let st = self.state()?;
        let addr = self.backend.librarian_addr();
        let mut c = lfs_proto::client::Client::connect((addr, st.port), i64::from(as_node))
            .context("cannot reach the Librarian")?;
        c.set_timeout(Some(Duration::from_secs(10)))?;
        c.call_typed(req)
            .map_err(|e| anyhow!("the Librarian answered {} with an error: {e}", R::COMMAND))
    }

    /// How commands in the nodes name the cluster's `lfs-node` (its node-side tools).
    pub fn lfs_node_in_node(&self) -> Result<String> {
        let host = self.state()?.bin_dir.join(crate::bins::LFS_NODE);
        Ok(self.backend.binary_in_node(&host))
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
