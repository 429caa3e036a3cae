//! Node backends, in the manner of kind's node providers: one small trait, one module per
//! backend. The cluster logic (in `ops`) only talks to [`Backend`]; [`BackendKind`] is the one
//! place that knows which backends exist.
//!
//! A node, to the cluster logic, has a name (`node02`, also its hostname), an LFS node id, a
//! directory of its own under the cluster directory, a way to run commands inside it and some
//! logs. How it is made (a process in namespaces, a VM, a container) is the backend's business.

pub mod container;
pub mod libvirt;
pub mod process;
pub mod rootfs;

use crate::progress::Step;
use crate::state::{ClusterState, Node, Settings};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The backends: what `--backend`, `fame.toml`, scenario files and `state.json` name. The one
/// place that knows which backends exist.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Nodes as processes in namespaces of their own (the default).
    #[default]
    Process,
    /// Nodes as QEMU VMs through libvirt, FAM on ivshmem (FAME proper).
    Libvirt,
    /// Nodes as Docker containers.
    Container,
}

impl BackendKind {
    /// Every backend, in the order help texts list them.
    pub const ALL: [BackendKind; 3] = [
        BackendKind::Process,
        BackendKind::Libvirt,
        BackendKind::Container,
    ];

    /// The backend, serving the cluster `cx` (every call of the value is about that cluster).
    pub fn open(self, cx: ClusterCtx) -> Box<dyn Backend> {
        match self {
            BackendKind::Process => Box::new(process::ProcessBackend::new(cx)),
            BackendKind::Libvirt => Box::new(libvirt::LibvirtBackend::new(cx)),
            BackendKind::Container => Box::new(container::ContainerBackend::new(cx)),
        }
    }

    /// What the backend is and can do (the same for every cluster).
    pub fn capabilities(self) -> Capabilities {
        match self {
            BackendKind::Process => process::CAPABILITIES,
            BackendKind::Libvirt => libvirt::CAPABILITIES,
            BackendKind::Container => container::CAPABILITIES,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Process => "process",
            BackendKind::Libvirt => "libvirt",
            BackendKind::Container => "container",
        }
    }

    /// The backend of a name (as `--backend` spells it).
    pub fn from_name(name: &str) -> Option<BackendKind> {
        BackendKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// "process, libvirt, container", for messages.
    pub fn names() -> String {
        BackendKind::ALL.map(BackendKind::name).join(", ")
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The cluster a backend value serves, given once when it is opened: kind's providers are
/// handed their cluster's name at every call, and fame's backends, which used to rebuild it
/// from the node's path and the state file at every call, get it here.
#[derive(Debug, Clone)]
pub struct ClusterCtx {
    /// The cluster's settings: its name, its directory (`fame`'s mark on every process and
    /// container of the cluster), what its nodes are.
    pub settings: Settings,
    /// The directory of the cluster's binaries: of its last up or reload, or, before the first,
    /// the one `fame up` located.
    pub bin_dir: PathBuf,
}

impl ClusterCtx {
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    pub fn dir(&self) -> &Path {
        &self.settings.dir
    }
}

impl ClusterState {
    /// The cluster's backend, opened for it.
    pub fn backend(&self) -> Box<dyn Backend> {
        self.settings.backend.open(ClusterCtx {
            settings: self.settings.clone(),
            bin_dir: self.bin_dir.clone(),
        })
    }
}

/// What a backend remembers of a started node (kept in `state.json`), one variant per backend.
/// The JSON is what it always was (untagged), so the state files of earlier fames still load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NodeHandle {
    /// Not started, or stopped (`null`).
    #[default]
    None,
    /// A process node: its daemon (`fame __node-init`, which became `lfs-node`).
    Process(crate::procs::ProcRef),
    /// A VM node: its libvirt domain, address and the virtiofsds started with it.
    Vm {
        domain: String,
        ip: String,
        #[serde(default)]
        virtiofsd: Vec<crate::procs::ProcRef>,
    },
    /// A container node: its name, engine id and, while it runs, its init's host pid.
    Container {
        container: String,
        id: String,
        pid: Option<i32>,
    },
}

impl NodeHandle {
    /// The host pid that stands for the node (`fame status`), where there is one.
    pub fn pid(&self) -> Option<i32> {
        match self {
            NodeHandle::Process(p) => Some(p.pid),
            NodeHandle::Container { pid, .. } => *pid,
            NodeHandle::None | NodeHandle::Vm { .. } => None,
        }
    }
}

/// What a node's LFS daemon needs, in host terms; the backend maps it to what its nodes see
/// (a process sees host paths and 127.0.0.1; a VM would see an ivshmem device and the torms
/// address).
#[derive(Debug, Clone)]
pub struct DaemonSpec {
    /// The `lfs-node` binary on the host.
    pub lfs_node: PathBuf,
    /// The Librarian's port; it listens on 127.0.0.1 of the host.
    pub librarian_port: u16,
    /// The FAM file on the host.
    pub fam: PathBuf,
    /// The cluster directory: every process of the cluster is marked with it.
    pub cluster_dir: PathBuf,
    /// The daemon's `--librarian-timeout` in seconds, if the cluster sets one.
    pub librarian_timeout: Option<u64>,
    /// Host directories the node should see at the same path (`--share`).
    pub shared: Vec<PathBuf>,
    /// `--mmap`: whether the node's programs get `liblfs_preload.so`.
    pub mmap: crate::state::MmapMode,
}

/// Where a node's daemon finds its parts, as the node sees them: what differs between backends
/// in [`DaemonSpec::args`].
#[derive(Debug, Clone)]
pub struct DaemonView {
    /// The Librarian's host name or address as the node reaches it.
    pub librarian_host: String,
    /// `--node-id`; None where the daemon finds it itself (a VM's FAME MAC).
    pub node_id: Option<u32>,
    /// `--fam`, the FAM file in the node; None where the daemon finds the device itself (a VM's
    /// ivshmem BAR).
    pub fam: Option<PathBuf>,
    /// `--log-file`; None to log to standard error (a VM's console).
    pub log_file: Option<PathBuf>,
}

impl DaemonSpec {
    /// The node daemon's arguments (after the program name): the one place they are written,
    /// for every backend.
    pub fn args(&self, view: &DaemonView) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--mountpoint".into(),
            "/lfs".into(),
            "--hostname".into(),
            view.librarian_host.clone(),
            "--port".into(),
            self.librarian_port.to_string(),
        ];
        if let Some(id) = view.node_id {
            args.extend(["--node-id".into(), id.to_string()]);
        }
        if let Some(fam) = &view.fam {
            args.extend(["--fam".into(), fam.display().to_string()]);
        }
        if let Some(log) = &view.log_file {
            args.extend(["--log-file".into(), log.display().to_string()]);
        }
        if let Some(t) = self.librarian_timeout {
            args.extend(["--librarian-timeout".into(), t.to_string()]);
        }
        args
    }
}

/// A node's console log (what its start printed), in its directory: the same file on every
/// backend, so `fame logs` and the people reading them find it in one place.
pub fn console_log(node: &Node) -> PathBuf {
    node.dir.join("console.log")
}

/// The node daemon's own log (`lfs-node --log-file`), on backends whose nodes write host files.
pub fn daemon_log(node: &Node) -> PathBuf {
    node.dir.join("lfs-node.log")
}

/// The symlink through which the host sees a node's `/lfs`, where it can.
pub fn lfs_link(node: &Node) -> PathBuf {
    node.dir.join("lfs")
}

/// Removes the nodes' directories (what every backend's [`Backend::destroy`] ends with); gone
/// already is fine.
pub fn remove_node_dirs(nodes: &[&Node]) -> Result<()> {
    for n in nodes {
        match std::fs::remove_dir_all(&n.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(
                    anyhow::Error::new(e).context(format!("cannot remove {}", n.dir.display()))
                )
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether a node's `/lfs` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LfsState {
    /// `/lfs` is a mount point of its own and answered `stat`.
    Mounted,
    /// `/lfs` answered but nothing is mounted on it yet.
    NotMounted,
    /// `/lfs` did not answer in time (its daemon is busy or hung, e.g. waiting for a Librarian
    /// that is gone).
    NotAnswering,
    /// The node is not running, so there is no `/lfs` to ask.
    Absent,
}

/// A node as its backend sees it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub running: bool,
    pub lfs: LfsState,
}

/// What a backend is and can do, as data (kind's `ProviderInfo`): the cluster logic reads it
/// instead of asking the backend a question per capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The nodes share parts that [`Backend::prepare`] makes (a VM network, a guest image, a
    /// container network): `fame up` then shows preparing them as a step of its own.
    pub shared_parts: bool,
    /// The nodes are VMs sized by `--vcpus` and `--memory` (`FAME_VCPUS`, `FAME_VDRAM`); other
    /// backends ignore those settings.
    pub sizes_nodes: bool,
    /// How many nodes [`Backend::start`] may be starting at once (from as many threads).
    pub start_concurrency: usize,
    /// The backend cuts a node off from the Librarian by its own means ([`Backend::cut`]);
    /// otherwise the fault proxy does.
    pub cuts_network: bool,
}

/// A cluster's nodes, as one backend makes and runs them; a value serves one cluster (see
/// [`ClusterCtx`], given to [`BackendKind::open`]).
pub trait Backend: Send + Sync {
    /// What this backend is and can do.
    fn capabilities(&self) -> Capabilities;

    /// Prepares what the node needs before it can start (directories, images, definitions); by
    /// default, its directory.
    fn create(&self, node: &Node) -> Result<()> {
        std::fs::create_dir_all(&node.dir)
            .with_context(|| format!("cannot create {}", node.dir.display()))
    }

    /// Starts the node with its LFS daemon and returns what must be remembered to find the
    /// running node again (stored in [`Node::handle`]). Returns once the node is launched; the
    /// caller waits for it with [`probe`](Self::probe).
    fn start(&self, node: &Node, daemon: &DaemonSpec) -> Result<NodeHandle>;

    /// Looks at a started node. Never blocks for long, even when the node's `/lfs` hangs.
    fn probe(&self, node: &Node) -> Probe;

    /// Runs `argv` inside the node and returns its exit status. A backend may instead replace
    /// the calling process with the command (the exit status then passes through by itself).
    fn exec(&self, node: &Node, argv: &[OsString]) -> Result<i32>;

    /// Stops the nodes (their daemons get `grace` to unmount) and everything running inside them,
    /// and returns how many nodes were running. Nodes that are already gone are fine.
    fn stop(&self, nodes: &[&Node], grace: Duration) -> Result<usize>;

    /// Removes whatever [`create`](Self::create) and [`start`](Self::start) left (the nodes are
    /// already stopped). Idempotent.
    fn destroy(&self, nodes: &[&Node]) -> Result<()>;

    /// The node's log files on the host.
    fn logs(&self, node: &Node) -> Vec<PathBuf>;

    /// Where the node's `/lfs` can be seen from the host, if it can.
    fn host_lfs_path(&self, node: &Node) -> Option<PathBuf>;

    /// Backend-specific checks of the cluster's settings and the host, before anything is
    /// created (the validate step of `fame up`).
    fn check(&self) -> Result<()> {
        Ok(())
    }

    /// How a command run inside a node names one of fame's binaries (the node-side tools of
    /// `lfs-node`): process nodes see the host's files, so the host path; VM nodes carry the
    /// binaries on their image's `PATH`.
    fn binary_in_node(&self, host_path: &Path) -> String {
        host_path.display().to_string()
    }

    /// Makes what the nodes share before the Librarian starts (a VM network, a guest image) and
    /// returns the address the Librarian must listen on, where the nodes reach it. What it makes
    /// is removed by [`destroy`](Self::destroy).
    fn prepare(&self, _state: &ClusterState, _step: &Step) -> Result<IpAddr> {
        Ok(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// The address the cluster's Librarian listens on (as [`prepare`](Self::prepare) decided).
    fn librarian_addr(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }

    /// Ends a running node at once, as a crash or a power cut would (a scenario fault): its
    /// daemon neither unmounts nor says goodbye to the Librarian. [`start`](Self::start) brings
    /// it back.
    fn kill(&self, node: &Node) -> Result<()>;

    /// Freezes a running node (a scenario fault); [`resume`](Self::resume) thaws it.
    fn pause(&self, node: &Node) -> Result<()> {
        bail!("{}: this backend cannot pause nodes", node.name)
    }

    fn resume(&self, node: &Node) -> Result<()> {
        bail!("{}: this backend cannot resume nodes", node.name)
    }

    /// Cuts a node off from the Librarian (a partition; `cut` false heals it) by the backend's
    /// own means; called only where [`Capabilities::cuts_network`] says it has them.
    fn cut(&self, node: &Node, _cut: bool) -> Result<()> {
        bail!(
            "{}: this backend cannot cut nodes off (the fault proxy does)",
            node.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(timeout: Option<u64>) -> DaemonSpec {
        DaemonSpec {
            lfs_node: "/bin/lfs-node".into(),
            librarian_port: 9093,
            fam: "/c/fam".into(),
            cluster_dir: "/c".into(),
            librarian_timeout: timeout,
            shared: vec![],
            mmap: crate::state::MmapMode::Fam,
        }
    }

    #[test]
    fn daemon_args_are_those_of_the_view() {
        let host = DaemonView {
            librarian_host: "127.0.0.1".into(),
            node_id: Some(3),
            fam: Some("/c/fam".into()),
            log_file: Some("/c/nodes/node03/lfs-node.log".into()),
        };
        assert_eq!(
            spec(Some(30)).args(&host).join(" "),
            "--mountpoint /lfs --hostname 127.0.0.1 --port 9093 --node-id 3 --fam /c/fam \
             --log-file /c/nodes/node03/lfs-node.log --librarian-timeout 30"
        );
        let vm = DaemonView {
            librarian_host: "torms".into(),
            node_id: None,
            fam: None,
            log_file: None,
        };
        assert_eq!(
            spec(None).args(&vm).join(" "),
            "--mountpoint /lfs --hostname torms --port 9093"
        );
    }

    #[test]
    fn node_handles_read_the_state_files_earlier_fames_wrote() {
        use crate::procs::ProcRef;
        let cases = [
            ("null", NodeHandle::None),
            (
                r#"{"pid": 42, "start_time": 7}"#,
                NodeHandle::Process(ProcRef {
                    pid: 42,
                    start_time: 7,
                }),
            ),
            (
                r#"{"domain": "fame-a-node01", "ip": "192.168.42.1", "virtiofsd": [{"pid": 5, "start_time": 6}]}"#,
                NodeHandle::Vm {
                    domain: "fame-a-node01".into(),
                    ip: "192.168.42.1".into(),
                    virtiofsd: vec![ProcRef {
                        pid: 5,
                        start_time: 6,
                    }],
                },
            ),
            (
                r#"{"container": "fame-a-node01", "id": "abc", "pid": null}"#,
                NodeHandle::Container {
                    container: "fame-a-node01".into(),
                    id: "abc".into(),
                    pid: None,
                },
            ),
        ];
        for (json, want) in cases {
            let got: NodeHandle = serde_json::from_str(json).unwrap();
            assert_eq!(got, want, "{json}");
            let again: NodeHandle =
                serde_json::from_str(&serde_json::to_string(&got).unwrap()).unwrap();
            assert_eq!(again, want);
        }
        assert_eq!(NodeHandle::None.pid(), None);
    }

    #[test]
    fn every_backend_kind_round_trips_its_name() {
        for k in BackendKind::ALL {
            assert_eq!(BackendKind::from_name(k.name()), Some(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{k}\""));
        }
        assert_eq!(BackendKind::from_name("vmware"), None);
        assert_eq!(BackendKind::default(), BackendKind::Process);
    }
}
