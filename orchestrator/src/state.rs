//! `state.json`: everything `fame` needs to find, stop, rebuild or reload a cluster later,
//! written atomically (temporary file, then rename) after every change.

use crate::procs::ProcRef;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The settings a cluster was brought up with, after flags, `fame.toml` and `FAME_*` were merged.
/// `fame rebuild` brings the cluster up again from exactly these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub name: String,
    pub dir: PathBuf,
    pub nodes: u32,
    pub fam_bytes: u64,
    /// `--book-size` when given; otherwise the configure script's rule decides.
    pub book_size: Option<u64>,
    pub backend: crate::backend::BackendKind,
    /// `--port` when given; otherwise a free port is picked at every `up`.
    pub port: Option<u16>,
    /// Hostname prefix of the nodes (`FAME_HOSTBASE`, default `node`).
    pub hostbase: String,
    /// An existing FAM file to use (`FAME_FAM`); `fame down` never deletes it.
    pub fam_file: Option<PathBuf>,
    /// What only VM backends read (kept at the top level of `state.json`, as before).
    #[serde(flatten)]
    pub vm: VmSettings,
    /// `--subnet A.B.C.0/P` of the cluster's network, for the backends that make one (None: a
    /// free one).
    #[serde(default)]
    pub subnet: Option<String>,
    /// Where the binaries came from, if chosen explicitly.
    pub bin_dir: Option<PathBuf>,
    /// Seconds to wait for the Librarian and the nodes to be ready.
    pub timeout_secs: u64,
    /// Fault-injection settings (`--librarian-timeout`, `--fault-proxy`).
    #[serde(default)]
    pub faults: FaultSettings,
    /// `--lmp-port` when given; otherwise a free port from 31179 is picked at every `up`.
    #[serde(default)]
    pub lmp_port: Option<u16>,
    /// `--no-lmp`: the cluster runs no LMP.
    #[serde(default)]
    pub no_lmp: bool,
    /// `--share`: host directories the nodes see at the same path.
    #[serde(default)]
    pub share: Vec<PathBuf>,
    /// `--mmap`: what plain mmap of an /lfs file is in the nodes.
    #[serde(default)]
    pub mmap: MmapMode,
}

/// The settings of VM nodes (`--backend libvirt`); other backends ignore them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSettings {
    /// Per-node vCPUs and memory (`--vcpus`, `--memory`; `FAME_VCPUS`, `FAME_VDRAM`).
    pub vcpus: Option<u32>,
    pub vdram_kib: Option<u64>,
    /// `--accel auto|kvm|tcg` (None: auto).
    #[serde(default)]
    pub accel: Option<String>,
    /// `--guest-root host|initramfs` (None: host).
    #[serde(default)]
    pub guest_root: Option<String>,
}

/// `--mmap fam|page-cache`: what a plain `mmap` of an /lfs file maps in the nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MmapMode {
    /// The file's books in FAM, shared by every node (liblfs_preload.so is preloaded).
    #[default]
    Fam,
    /// The kernel's FUSE page cache, one per node (no preload).
    PageCache,
}

impl MmapMode {
    pub fn parse(s: &str) -> anyhow::Result<MmapMode> {
        match s {
            "fam" => Ok(MmapMode::Fam),
            "page-cache" => Ok(MmapMode::PageCache),
            other => anyhow::bail!(
                "--mmap {other}: plain mmap of /lfs files is either `fam` (the file's books, shared by every node) or `page-cache` (each node's own FUSE page cache); use one of them"
            ),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MmapMode::Fam => "fam",
            MmapMode::PageCache => "page-cache",
        }
    }
}

/// What `fame scenario` needs of a cluster to inject faults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultSettings {
    /// The node daemons' `--librarian-timeout` in seconds (None: lfs-node's default).
    pub librarian_timeout: Option<u64>,
    /// Whether the nodes reach the Librarian through the fault proxy (see `crate::proxy`).
    pub proxy: bool,
}

/// The fault proxy of a cluster, while it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxyState {
    pub process: ProcRef,
    /// The port each node's daemon connects to, by node name.
    pub ports: std::collections::BTreeMap<String, u16>,
}

/// One node: what the cluster logic knows about it, plus what its backend needs to find it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    /// `node01`: the node's name in `fame exec`, and its hostname.
    pub name: String,
    /// The LFS node id (1 to 80).
    pub id: u32,
    /// The node's own directory (its logs and whatever the backend keeps).
    pub dir: PathBuf,
    /// The backend's record of the running node; `null` while the node is not running.
    #[serde(default)]
    pub handle: crate::backend::NodeHandle,
}

/// What phase the cluster is in, as far as `fame` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// `fame up` or `fame reload` is (or was, if it died) starting it.
    Starting,
    /// Every node was ready when `fame up`/`reload` finished.
    Up,
    /// `fame down --keep-fam` stopped it; the FAM file and database remain.
    Stopped,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterState {
    pub settings: Settings,
    pub phase: Phase,
    /// The Librarian's TCP port on 127.0.0.1.
    pub port: u16,
    pub fam_path: PathBuf,
    /// Whether `fame` created the FAM file (and so may delete it).
    pub fam_owned: bool,
    /// Whether `fame` created the cluster directory (and so removes it at `down`).
    pub dir_created: bool,
    pub book_size: u64,
    pub books_per_node: u64,
    /// Directory the binaries were taken from at the last up/reload.
    pub bin_dir: PathBuf,
    pub librarian: Option<ProcRef>,
    /// The Librarian's `--metrics-port` (on the address it listens on), which the LMP reads.
    #[serde(default)]
    pub metrics_port: Option<u16>,
    /// The LMP's port on 127.0.0.1 (None: the cluster has no LMP).
    #[serde(default)]
    pub lmp_port: Option<u16>,
    /// The LMP, while it runs.
    #[serde(default)]
    pub lmp: Option<ProcRef>,
    pub nodes: Vec<Node>,
    /// Seconds since the epoch when the cluster was created.
    pub created: u64,
    /// Per-step timings of the last `up`/`reload`, in seconds.
    #[serde(default)]
    pub timings: Vec<(String, f64)>,
    /// The fault proxy, when the cluster has one (`--fault-proxy`).
    #[serde(default)]
    pub proxy: Option<ProxyState>,
}

/// A state file whose cluster was made by a fame with a backend this one lacks: nothing of it may
/// be touched, since only that backend knows how to stop and remove its nodes.
#[derive(Debug)]
pub struct UnknownBackend {
    pub path: PathBuf,
    pub name: String,
}

impl std::fmt::Display for UnknownBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: backend {:?} is not one this fame has ({}); its nodes can only be stopped by the fame that made the cluster, so nothing was touched: use that fame",
            self.path.display(),
            self.name,
            crate::backend::BackendKind::names()
        )
    }
}

impl std::error::Error for UnknownBackend {}

/// The backend named by a state file, if it is a name this fame does not know.
fn unknown_backend(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let name = v.get("settings")?.get("backend")?.as_str()?;
    crate::backend::BackendKind::from_name(name)
        .is_none()
        .then(|| name.to_string())
}

impl ClusterState {
    pub fn load(path: &Path) -> Result<ClusterState> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if let Some(name) = unknown_backend(&text) {
            return Err(UnknownBackend {
                path: path.to_path_buf(),
                name,
            }
            .into());
        }
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a fame state file (it may be damaged; `fame down` still cleans up by scanning /proc)",
                path.display()
            )
        })
    }

    /// Writes the state atomically: readers see the old or the new file, never half of one.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&tmp, text + "\n")
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
    }

    /// The port `node`'s daemon reaches the Librarian on: its proxy port, else the Librarian's.
    pub fn daemon_port(&self, node: &Node) -> u16 {
        self.proxy
            .as_ref()
            .and_then(|p| p.ports.get(&node.name).copied())
            .unwrap_or(self.port)
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

#[cfg(test)]
impl Settings {
    /// Settings of a two-node process cluster "t" in `dir`, for tests.
    pub fn sample(dir: &Path) -> Settings {
        Settings {
            name: "t".into(),
            dir: dir.to_path_buf(),
            nodes: 2,
            fam_bytes: 1 << 30,
            book_size: None,
            backend: crate::backend::BackendKind::Process,
            port: Some(9999),
            hostbase: "node".into(),
            fam_file: None,
            vm: VmSettings {
                vcpus: Some(2),
                vdram_kib: None,
                accel: Some("tcg".into()),
                guest_root: None,
            },
            subnet: None,
            bin_dir: None,
            timeout_secs: 30,
            faults: FaultSettings::default(),
            lmp_port: None,
            no_lmp: false,
            share: vec![],
            mmap: MmapMode::Fam,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = ClusterState {
            settings: Settings::sample(dir.path()),
            phase: Phase::Up,
            port: 9999,
            fam_path: dir.path().join("fam"),
            fam_owned: true,
            dir_created: true,
            book_size: 8 << 20,
            books_per_node: 64,
            bin_dir: "/bin".into(),
            librarian: Some(ProcRef {
                pid: 1,
                start_time: 2,
            }),
            metrics_port: Some(10000),
            lmp_port: Some(31179),
            lmp: None,
            nodes: vec![],
            created: 0,
            timings: vec![("validate".into(), 0.001)],
            proxy: None,
        };
        let p = dir.path().join("state.json");
        s.save(&p).unwrap();
        let back = ClusterState::load(&p).unwrap();
        assert_eq!(back.settings, s.settings);
        assert_eq!(back.phase, Phase::Up);
        assert!(!p.with_extension("json.tmp").exists());
        // The VM settings stay where earlier fames wrote and read them: at the top level.
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(json["settings"]["vcpus"], 2);
        assert_eq!(json["settings"]["accel"], "tcg");
    }
}
