//! The command line.

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

/// The cluster name when none is given.
pub const DEFAULT_NAME: &str = "fame";

#[derive(Parser, Debug)]
#[command(
    name = "fame",
    version,
    about = "Bring up FAME clusters: a Librarian and LFS nodes sharing one fabric-attached memory",
    after_help = "Clusters live under FAME_HOME (default /var/lib/fame). `fame up` then `fame exec node01 -- sh`."
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
// Parsed once per run: the size of `Up`'s arguments does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Cmd {
    /// Create and start a cluster.
    Up(UpArgs),
    /// Stop a cluster and remove its processes, namespaces and files (idempotent).
    Down {
        /// The cluster (default: fame).
        name: Option<String>,
        /// Every cluster under FAME_HOME.
        #[arg(long, conflicts_with = "name")]
        all: bool,
        /// Keep the FAM file and the database (and the settings); `fame reload` starts it again.
        #[arg(long)]
        keep_fam: bool,
    },
    /// List the clusters.
    Ls,
    /// Show a cluster's nodes, their mount and heartbeat state, and its books.
    Status {
        /// The cluster (default: fame).
        name: Option<String>,
    },
    /// Run a command inside a node (default: a shell); its exit status passes through.
    Exec {
        /// The cluster (default: fame).
        #[arg(long)]
        name: Option<String>,
        /// The node: `node02`, or just its number.
        node: String,
        /// The command and its arguments (put them after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// List a cluster's log files, or bundle them with the INI, state and a database snapshot.
    Logs {
        /// The cluster (default: fame).
        name: Option<String>,
        /// Write the bundle into a new directory under this one.
        #[arg(long, value_name = "DIR")]
        export: Option<PathBuf>,
    },
    /// Tear a cluster down and bring it up again with the same settings (fresh FAM and database).
    Rebuild {
        /// The cluster (default: fame).
        name: Option<String>,
    },
    /// Restart the Librarian and every node daemon with freshly built binaries, keeping the FAM
    /// and the database (also starts a cluster stopped with `down --keep-fam`).
    Reload {
        /// The cluster (default: fame).
        name: Option<String>,
        /// Where the new binaries are (default: FAME_BIN_DIR, else next to this fame).
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
    },
    /// List the container backend's node images in the Docker engine, build one, or prune them.
    Images {
        #[command(subcommand)]
        cmd: Option<ImagesCmd>,
    },
    /// Run scenario files: a fresh cluster for each, scripted steps, faults and checks, reported
    /// as a line per step, a summary table and JUnit XML (see scenarios/README.md).
    Scenario {
        #[command(subcommand)]
        cmd: ScenarioCmd,
    },
    /// Internal: the per-node TCP proxy on the nodes' path to the Librarian (cut/heal faults).
    #[command(name = "__proxy", hide = true)]
    Proxy {
        /// The cluster directory (the proxy's control and status files are in its `proxy/`).
        #[arg(long)]
        dir: PathBuf,
        /// The Librarian's address.
        #[arg(long)]
        target: std::net::SocketAddr,
        /// Address to listen on, one port per node.
        #[arg(long, default_value = "127.0.0.1")]
        listen: std::net::IpAddr,
        /// The nodes' names.
        #[arg(long, num_args = 1.., required = true)]
        nodes: Vec<String>,
    },
    /// Internal: abort FUSE connections (by device minor) of daemons stuck on their own mount.
    #[command(name = "__abort-fuse", hide = true)]
    AbortFuse { minors: Vec<u32> },
    /// Internal: become a node of the process backend and run its daemon.
    #[command(name = "__node-init", hide = true)]
    NodeInit {
        #[arg(long)]
        hostname: String,
        #[arg(long)]
        root: PathBuf,
        #[arg(last = true, required = true)]
        argv: Vec<OsString>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ImagesCmd {
    /// List them, with the clusters that use each (the default).
    Ls,
    /// Build and import the image for the current binaries (if the engine lacks it) and print
    /// its tag.
    Build {
        /// Where the binaries are (default: FAME_BIN_DIR, else next to this fame).
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
    },
    /// Remove the images no registered cluster uses.
    Prune,
}

/// `fame up`. Every flag can also come from `--config fame.toml` (same names); flags win over
/// the file, the file over `FAME_*` variables, those over the defaults.
#[derive(Args, Debug, Default, Clone)]
pub struct UpArgs {
    /// Number of nodes, 1 to 80 [default: 4].
    #[arg(long)]
    pub nodes: Option<u32>,
    /// FAM size: a power of two of at least 1G, e.g. 32G [default: 32G, or the size of FAME_FAM].
    #[arg(long)]
    pub fam: Option<String>,
    /// Book size, a power of two [default: 8M, doubled until the FAM has at most 10,000 books].
    #[arg(long)]
    pub book_size: Option<String>,
    /// Cluster name [default: fame].
    #[arg(long)]
    pub name: Option<String>,
    /// Directory for the cluster's files [default: FAME_DIR, else FAME_HOME/NAME].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Node backend [default: process].
    #[arg(long, value_enum)]
    pub backend: Option<crate::backend::BackendKind>,
    /// Librarian port [default: 9093 if free, else the next free one].
    #[arg(long)]
    pub port: Option<u16>,
    /// A fame.toml with any of the settings above.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where librarian, book-register and lfs-node are [default: FAME_BIN_DIR, else next to fame].
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Seconds to wait for the Librarian and the nodes [default: 60].
    #[arg(long)]
    pub timeout: Option<u64>,
    /// VM nodes: auto (KVM if a guest really boots under it, else TCG), kvm or tcg [default: auto].
    #[arg(long, value_name = "auto|kvm|tcg")]
    pub accel: Option<String>,
    /// VM nodes: what the guest runs on. `host` (the host's own root file system, read-only
    /// over virtiofs, with a per-node writable overlay, so every host program is there) or
    /// `initramfs` (a minimal busybox image holding only lfs-node and the exec agent)
    /// [default: host].
    #[arg(long, value_name = "host|initramfs")]
    pub guest_root: Option<String>,
    /// VM nodes: vCPUs per node [default: FAME_VCPUS, else 1].
    #[arg(long)]
    pub vcpus: Option<u32>,
    /// VM nodes: memory per node, e.g. 256M [default: FAME_VDRAM (KiB), else 256M].
    #[arg(long)]
    pub memory: Option<String>,
    /// VM nodes: the cluster network; torms is .254, node N is .N [default: the first free
    /// 192.168.X.0/24 from X = 42].
    #[arg(long, value_name = "A.B.C.0/P")]
    pub subnet: Option<String>,
    /// The node daemons' `--librarian-timeout`: seconds a call waits for an unreachable
    /// Librarian before failing with EIO [default: lfs-node's, 30].
    #[arg(long, value_name = "SECS")]
    pub librarian_timeout: Option<u64>,
    /// Put a TCP proxy on each node's path to the Librarian, so that a node can be cut off from
    /// it and healed (`fame scenario` steps `cut` and `heal`).
    #[arg(long)]
    pub fault_proxy: bool,
    /// Port of the cluster's LMP (its web dashboard and JSON views on 127.0.0.1) [default: 31179
    /// if free, else the next free one].
    #[arg(long, value_name = "N")]
    pub lmp_port: Option<u16>,
    /// Start no LMP for the cluster.
    #[arg(long, conflicts_with = "lmp_port")]
    pub no_lmp: bool,
    /// A host directory the nodes see read-write at the same path (repeatable): container nodes
    /// get it bind-mounted, VM nodes over virtiofs, process nodes see the host's files anyway.
    #[arg(long = "share", value_name = "DIR")]
    pub share: Vec<PathBuf>,
    /// What a plain mmap of an /lfs file is in the nodes: `fam` (the file's books in FAM, shared
    /// by every node, through the preloaded liblfs_preload.so; LFS_MMAP=page-cache turns it off
    /// for one command) or `page-cache` (each node's own FUSE page cache) [default: fam].
    #[arg(long, value_name = "fam|page-cache")]
    pub mmap: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ScenarioCmd {
    /// Run scenario files (TOML, see scenarios/README.md); exits 1 if any fails, 2 on bad input.
    Run(ScenarioRunArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ScenarioRunArgs {
    /// Scenario files, or directories of them (every `*.toml` inside) [default: scenarios].
    pub paths: Vec<PathBuf>,
    /// Node backend of every scenario (overrides each file's `backend`).
    #[arg(long, value_enum)]
    pub backend: Option<crate::backend::BackendKind>,
    /// Write a JUnit XML report here (a test suite per scenario, a test case per step).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Keep the cluster of a failed scenario and bundle its logs, instead of tearing it down.
    #[arg(long)]
    pub retain: bool,
    /// How many scenarios run at once, each on its own cluster.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub jobs: u32,
    /// Base seed of the fill/verify patterns (each step's seed is derived from it).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where each scenario's outputs and logs are kept [default: a new directory in /tmp].
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// Only check the files (format, steps, nodes, timeouts); start nothing.
    #[arg(long)]
    pub check: bool,
}
