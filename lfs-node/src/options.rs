//! Command line: daemon options (the original's spellings accepted too) and the node-side tools.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "lfs-node",
    version,
    about = "LFS node daemon (FUSE, file data in shared FAM) and node-side tools",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub tool: Option<Tool>,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// Mount options. With no subcommand, `lfs-node` runs the daemon in the foreground.
#[derive(Args, Debug, Clone)]
pub struct DaemonArgs {
    /// Where to mount LFS (created if missing).
    #[arg(long, default_value = "/lfs")]
    pub mountpoint: PathBuf,
    /// Host running the Librarian.
    #[arg(long, default_value = "torms")]
    pub hostname: String,
    /// Librarian TCP port.
    #[arg(long, default_value_t = 9093)]
    pub port: u16,
    /// This node's id (1-80); else --physloc, else the FAME MAC 48:50:42:NN:NN:NN.
    #[arg(long, conflicts_with = "physloc")]
    pub node_id: Option<i64>,
    /// This node's location rack:enc:node (e.g. 1:1:2 = node 2).
    #[arg(long)]
    pub physloc: Option<String>,
    /// FAM backing file shared by all nodes; without it, the ivshmem BAR of a FAME VM
    /// (PCI 1af4:1110 resource2) is used.
    #[arg(long, visible_alias = "shadow_file", alias = "shadow-file")]
    pub fam: Option<PathBuf>,
    /// The original's per-file shadow directory mode: not supported (data lives in FAM).
    #[arg(long = "shadow_dir", alias = "shadow-dir", hide = true)]
    pub shadow_dir: Option<PathBuf>,
    /// Do not zero freed books before they are reused (fast, but the next owner sees old data).
    #[arg(long)]
    pub fakezero: bool,
    /// Log to this file (appended) instead of stderr.
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// Write the daemon's pid here once the mount answers; removed at exit.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// How long calls wait for an unreachable Librarian before failing with EIO.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub librarian_timeout: u64,
    /// Stay in the foreground (the default).
    #[arg(long)]
    pub foreground: bool,
    /// Detach into the background (needs --log-file).
    #[arg(long, conflicts_with = "foreground")]
    pub daemon: bool,
    /// 0 warnings and errors, 1 info, 2 debug, 3+ trace.
    #[arg(long, default_value_t = 0)]
    pub verbose: u8,
    /// Original option for The Machine hardware; ignored here.
    #[arg(long, hide = true)]
    pub fixed1906: bool,
    /// Original option for FAME with zbridge; ignored here.
    #[arg(long = "enable_Z", alias = "enable-z", hide = true)]
    pub enable_z: bool,
}

#[derive(Subcommand, Debug)]
pub enum Tool {
    /// Show a file's books: interleave groups, book numbers and FAM offsets.
    Layout { file: PathBuf },
    /// Get, or set, a file's allocation policy (user.LFS.AllocationPolicy).
    Policy {
        file: PathBuf,
        /// New policy, e.g. LocalNode, RandomBooks, RequestIG.
        name: Option<String>,
    },
    /// Atomic increments of the u64 at offset 0 of a file through a plain shared mmap (FAM in
    /// fame's nodes, through liblfs_preload.so); prints the counter afterwards.
    Count {
        file: PathBuf,
        /// How many increments.
        #[arg(long, default_value_t = 0)]
        adds: u64,
        /// Once mapped (and the counter read), create this file...
        #[arg(long, requires = "go")]
        ready: Option<PathBuf>,
        /// ...and start adding only once this one exists (so every node has mapped first).
        #[arg(long, requires = "ready")]
        go: Option<PathBuf>,
    },
    /// Write a seeded pattern over a file (created if missing, then sized to --size).
    Fill {
        file: PathBuf,
        #[arg(long)]
        seed: u64,
        /// Bytes, with an optional K/M/G suffix (powers of 1024).
        #[arg(long, value_parser = parse_size)]
        size: u64,
        /// Store through a direct map of the FAM instead of write(2).
        #[arg(long)]
        direct: bool,
        /// Store through a plain shared mmap of the file instead of write(2) (FAM in fame's
        /// nodes, through liblfs_preload.so).
        #[arg(long, conflicts_with = "direct")]
        mmap: bool,
    },
    /// Check a file holds the seeded pattern; exits 1 at the first mismatch.
    Verify {
        file: PathBuf,
        #[arg(long)]
        seed: u64,
        /// Bytes to check (default: the file's size).
        #[arg(long, value_parser = parse_size)]
        size: Option<u64>,
        /// Load through a direct map of the FAM instead of read(2).
        #[arg(long)]
        direct: bool,
        /// Load through a plain shared mmap of the file instead of read(2).
        #[arg(long, conflicts_with = "direct")]
        mmap: bool,
    },
}

/// A size option that is not a size: what was given, and why not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given:?} is not a size: {reason}")]
pub struct BadSize {
    pub given: String,
    pub reason: lfs_proto::size::SizeError,
}

/// `4096`, `64K`, `8M`, `1GiB`: the one size parser (`lfs_proto::size`), in bytes.
pub fn parse_size(s: &str) -> Result<u64, BadSize> {
    lfs_proto::size::parse_size(s, None).map_err(|reason| BadSize {
        given: s.to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("8M").unwrap(), 8 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn original_spellings() {
        let c = Cli::try_parse_from([
            "lfs-node",
            "--shadow_file",
            "/f",
            "--physloc",
            "1:1:2",
            "--fakezero",
        ])
        .unwrap();
        assert_eq!(c.daemon.fam.unwrap(), PathBuf::from("/f"));
        let c = Cli::try_parse_from(["lfs-node", "verify", "x", "--seed", "3"]).unwrap();
        assert!(matches!(c.tool, Some(Tool::Verify { seed: 3, .. })));
    }
}
