//! The process backend: each node is one `lfs-node` process in mount and UTS namespaces of its
//! own.
//!
//! # Namespace design
//!
//! A node is started as `fame __node-init` (see [`init`]), which, before it `exec`s `lfs-node`:
//!
//! 1. leaves the terminal's session (Ctrl-C in the shell does not reach the node);
//! 2. unshares its mount and UTS namespaces, makes every mount private (nothing it mounts ever
//!    propagates to the host, whatever the host's propagation is) and sets the hostname `nodeNN`;
//! 3. builds a root of its own: a tmpfs on `nodes/nodeNN/root` holding a recursive bind of every
//!    top-level entry of the host's `/` (symlinks copied), plus an empty `/lfs` that exists only
//!    in this node; then `pivot_root`s into it. The tmpfs is made unbindable so the recursive
//!    binds do not copy it into itself.
//!
//! `lfs-node --mountpoint /lfs` then mounts its FUSE file system in the node's namespace only.
//! The host sees it through the node's root: `nodes/nodeNN/lfs` is a symlink to
//! `/proc/PID/root/lfs`, updated at every start. Consequences, all deliberate:
//!
//! * the host's mount table never holds a node's mount, so a node killed with SIGKILL leaves no
//!   mount behind: the kernel drops the namespace, and with it the FUSE mount, when the last
//!   process in it exits;
//! * nothing outside the cluster directory is touched (no `/lfs` on the host);
//! * `fame exec` enters a node with `setns` on `/proc/PID/ns/{uts,mnt}` of the node's daemon,
//!   which lands in the node's root (the namespace's root after `pivot_root`) and `exec`s the
//!   command, so its exit status is the command's own.
//!
//! The node's handle in `state.json` is the daemon's pid and start time; processes started
//! inside a node by `fame exec` carry the cluster marker (see [`crate::procs::MARKER_ENV`]), and
//! `stop` also ends every process sharing the node's mount namespace, so nothing keeps a node's
//! namespace alive after `fame down`.

pub mod init;

use super::{
    console_log, daemon_log, lfs_link, Backend, Capabilities, ClusterCtx, DaemonSpec, DaemonView,
    LfsState, NodeHandle, Probe,
};
use crate::procs::{self, ProcRef, MARKER_ENV};
use crate::state::Node;
use anyhow::{anyhow, bail, Context, Result};
use rustix::process::Signal;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long `probe` waits for a node's `/lfs` to answer `statfs`.
pub(crate) const PROBE_LIMIT: Duration = Duration::from_millis(500);
/// `statfs` type of FUSE file systems.
const FUSE_SUPER_MAGIC: &str = "65735546";

/// Whether `path` answers `statfs` as a FUSE file system within `limit`: `None` if it did not
/// answer in time.
///
/// Asked by a `stat -f` child process, not a thread: once a FUSE daemon has taken a request, the
/// kernel waits for its answer uninterruptibly, and a thread stuck there would keep `fame`
/// itself from exiting until the daemon answers (up to the daemon's Librarian timeout when the
/// Librarian is gone). A stuck child is left to finish on its own.
pub(crate) fn answers_as_fuse(path: &Path, limit: Duration) -> Option<bool> {
    let mut child = Command::new("stat")
        .args(["--file-system", "--format=%t"])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = std::time::Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            _ => return None,
        }
    }
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut()?, &mut out).ok()?;
    Some(out.trim() == FUSE_SUPER_MAGIC)
}

/// Whether the node's mount table has a FUSE mount on `/lfs` (read from `/proc`, so it never
/// waits for the daemon).
pub(crate) fn fuse_on_lfs(p: ProcRef) -> bool {
    std::fs::read_to_string(p.proc_path("mountinfo")).is_ok_and(|text| {
        text.lines().any(|l| {
            let mut fields = l.split(' ');
            let mount_point = fields.nth(4);
            let fs_type = l.split(" - ").nth(1).and_then(|r| r.split(' ').next());
            mount_point == Some("/lfs") && fs_type.is_some_and(|t| t.starts_with("fuse"))
        })
    })
}

/// Environment variable naming the node in processes started inside it.
pub const NODE_ENV: &str = "FAME_NODE";

/// Nodes with nothing shared, not VMs, started one at a time, partitioned by the fault proxy.
pub const CAPABILITIES: Capabilities = Capabilities {
    shared_parts: false,
    sizes_nodes: false,
    start_concurrency: 1,
    cuts_network: false,
};

pub struct ProcessBackend {
    cx: ClusterCtx,
}

impl ProcessBackend {
    pub fn new(cx: ClusterCtx) -> ProcessBackend {
        ProcessBackend { cx }
    }
}

fn root_dir(node: &Node) -> PathBuf {
    node.dir.join("root")
}

/// The node's daemon, if the handle names one that is still alive.
fn daemon(node: &Node) -> Option<ProcRef> {
    match node.handle {
        NodeHandle::Process(p) => p.is_alive().then_some(p),
        _ => None,
    }
}

/// The namespace a `/proc/PID/ns/*` link points to (`mnt:[4026532285]`).
fn ns_id(pid: i32, kind: &str) -> Option<OsString> {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .ok()
        .map(PathBuf::into_os_string)
}

/// The node's daemon and every other live process in its mount namespace (e.g. shells from
/// `fame exec`), daemon first; none if the node is not running. Only the daemon while it is
/// still in the host's mount namespace (just started, not yet unshared): the host's processes
/// are never a node's.
fn node_processes(node: &Node) -> Vec<ProcRef> {
    let Some(p) = daemon(node) else {
        return vec![];
    };
    let mut out = vec![p];
    if let Some(ns) = ns_id(p.pid, "mnt")
        .filter(|ns| Some(ns) != ns_id(std::process::id() as i32, "mnt").as_ref())
    {
        out.extend(
            processes_in_mount_ns(&ns)
                .into_iter()
                .filter(|q| q.pid != p.pid),
        );
    }
    out
}

/// Sends `sig` to every process of the node; fails if the node is not running.
fn signal_node(node: &Node, sig: Signal) -> Result<Vec<ProcRef>> {
    let procs = node_processes(node);
    if procs.is_empty() {
        bail!("{} is not running", node.name);
    }
    for p in &procs {
        p.signal(sig);
    }
    Ok(procs)
}

/// Every live process in the mount namespace `ns`.
fn processes_in_mount_ns(ns: &OsString) -> Vec<ProcRef> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| ns_id(pid, "mnt").as_ref() == Some(ns))
        .filter_map(ProcRef::of)
        .collect()
}

impl Backend for ProcessBackend {
    /// Nothing shared, processes not sized, one start at a time, partitions through the proxy.
    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    fn create(&self, node: &Node) -> Result<()> {
        std::fs::create_dir_all(root_dir(node))
            .with_context(|| format!("cannot create {}", root_dir(node).display()))
    }

    fn start(&self, node: &Node, daemon: &DaemonSpec) -> Result<NodeHandle> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(console_log(node))
            .with_context(|| format!("cannot open {}", console_log(node).display()))?;
        let me = std::env::current_exe().context("cannot find the fame executable")?;
        let mut cmd = Command::new(me);
        cmd.arg("__node-init")
            .arg("--hostname")
            .arg(&node.name)
            .arg("--root")
            .arg(root_dir(node))
            .arg("--")
            .arg(&daemon.lfs_node)
            .args(daemon.args(&DaemonView {
                librarian_host: "127.0.0.1".into(),
                node_id: Some(node.id),
                fam: Some(daemon.fam.clone()),
                log_file: Some(daemon_log(node)),
            }))
            .env(MARKER_ENV, &daemon.cluster_dir)
            .env(NODE_ENV, &node.name)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd
            .spawn()
            .with_context(|| format!("{}: cannot start its process", node.name))?;
        let pid = child.id() as i32;
        let proc_ref = ProcRef::of(pid)
            .ok_or_else(|| anyhow!("{}: its process {pid} exited at once", node.name))?;
        // Replace any link left from an earlier start.
        let link = lfs_link(node);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(proc_ref.proc_path("root/lfs"), &link)
            .with_context(|| format!("cannot create {}", link.display()))?;
        Ok(NodeHandle::Process(proc_ref))
    }

    fn probe(&self, node: &Node) -> Probe {
        let Some(p) = daemon(node) else {
            return Probe {
                running: false,
                lfs: LfsState::Absent,
            };
        };
        // Until the node has pivoted into its own root, /proc/PID/root is the host's root, whose
        // /lfs (if any) is not the node's.
        let host_root = std::fs::metadata("/").map(|m| m.dev()).ok();
        let root = std::fs::metadata(p.proc_path("root")).map(|m| m.dev()).ok();
        let lfs = if root.is_none() || root == host_root || !fuse_on_lfs(p) {
            LfsState::NotMounted
        } else {
            // Mounted; now ask it, which reaches the daemon.
            match answers_as_fuse(&p.proc_path("root/lfs"), PROBE_LIMIT) {
                None => LfsState::NotAnswering,
                Some(true) => LfsState::Mounted,
                Some(false) => LfsState::NotMounted,
            }
        };
        Probe {
            running: p.is_alive(),
            lfs,
        }
    }

    fn exec(&self, node: &Node, argv: &[OsString]) -> Result<i32> {
        use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};
        use std::os::fd::AsFd;
        let Some(p) = daemon(node) else {
            bail!(
                "{} is not running; `fame status` shows the cluster, `fame reload` restarts its nodes",
                node.name
            );
        };
        let open = |kind: &str| {
            std::fs::File::open(p.proc_path(&format!("ns/{kind}")))
                .with_context(|| format!("{}: cannot open its {kind} namespace", node.name))
        };
        let (uts, mnt) = (open("uts")?, open("mnt")?);
        // The pid could have been recycled between the check above and the opens.
        if !p.is_alive() {
            bail!("{} stopped while fame was entering it", node.name);
        }
        move_into_link_name_space(
            uts.as_fd(),
            Some(LinkNameSpaceType::HostNameAndNISDomainName),
        )
        .with_context(|| format!("{}: cannot enter its UTS namespace", node.name))?;
        // Entering a mount namespace needs a single-threaded caller; `fame exec` is one.
        move_into_link_name_space(mnt.as_fd(), Some(LinkNameSpaceType::Mount))
            .with_context(|| format!("{}: cannot enter its mount namespace", node.name))?;
        std::env::set_current_dir("/")?;
        // Checked again now that we are inside: a `fame down` that stopped the node meanwhile
        // did not see us (we carry the cluster's mark only from the exec on), and the command
        // would live on in the dead node. This narrows that window to the exec itself, without
        // closing it: `down` looks for marked processes only after the node's have gone, which in
        // practice is after our exec.
        if !p.is_alive() {
            bail!("{} stopped while fame was entering it", node.name);
        }
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env(MARKER_ENV, self.cx.dir())
            .env(NODE_ENV, &node.name);
        // `--mmap fam`: plain mmap of /lfs files is FAM in everything the command runs (the
        // host's /etc/ld.so.preload cannot be changed for one node; LD_PRELOAD is inherited).
        if self.cx.settings.mmap == crate::state::MmapMode::Fam {
            let lib = self.cx.bin_dir.join(crate::bins::PRELOAD);
            let value = match std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
                Some(old) => {
                    let mut v = lib.into_os_string();
                    v.push(":");
                    v.push(old);
                    v
                }
                None => lib.into_os_string(),
            };
            cmd.env("LD_PRELOAD", value);
        }
        let err = cmd.exec();
        bail!(
            "{}: cannot run {:?}: {err}",
            node.name,
            argv[0].to_string_lossy()
        )
    }

    fn stop(&self, nodes: &[&Node], grace: Duration) -> Result<usize> {
        let mut victims = vec![];
        let mut running = 0;
        for node in nodes {
            // Everything in the node's namespace goes with it (e.g. shells from `fame exec`);
            // the daemon is asked first so that it can unmount cleanly.
            let procs = node_processes(node);
            running += usize::from(!procs.is_empty());
            victims.extend(procs);
        }
        let left = procs::terminate(&victims, grace);
        if !left.is_empty() {
            bail!(
                "processes {:?} did not stop even after SIGKILL",
                left.iter().map(|p| p.pid).collect::<Vec<_>>()
            );
        }
        Ok(running)
    }

    fn destroy(&self, nodes: &[&Node]) -> Result<()> {
        super::remove_node_dirs(nodes)
    }

    fn logs(&self, node: &Node) -> Vec<PathBuf> {
        vec![console_log(node), daemon_log(node)]
    }

    /// SIGKILL of the daemon and of everything in the node, so the FUSE mount goes with the
    /// node's mount namespace.
    fn kill(&self, node: &Node) -> Result<()> {
        let victims = signal_node(node, Signal::KILL)?;
        let left = procs::wait_gone(&victims, Duration::from_secs(10));
        if !left.is_empty() {
            bail!(
                "{}: processes {:?} survived SIGKILL",
                node.name,
                left.iter().map(|p| p.pid).collect::<Vec<_>>()
            );
        }
        Ok(())
    }

    /// SIGSTOP of every process of the node.
    fn pause(&self, node: &Node) -> Result<()> {
        signal_node(node, Signal::STOP).map(drop)
    }

    /// SIGCONT of every process of the node.
    fn resume(&self, node: &Node) -> Result<()> {
        signal_node(node, Signal::CONT).map(drop)
    }

    fn host_lfs_path(&self, node: &Node) -> Option<PathBuf> {
        Some(lfs_link(node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state letter of a process (`/proc/PID/stat`).
    fn state_of(p: ProcRef) -> char {
        let text = std::fs::read_to_string(p.proc_path("stat")).unwrap_or_default();
        text.rsplit(')')
            .next()
            .unwrap_or_default()
            .trim()
            .chars()
            .next()
            .unwrap_or('X')
    }

    fn wait_state(p: ProcRef, want: &[char]) -> char {
        for _ in 0..1000 {
            let s = state_of(p);
            if want.contains(&s) {
                return s;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        state_of(p)
    }

    #[test]
    fn pause_resume_and_kill_signal_the_node_and_nothing_of_the_host() {
        let dir = tempfile::tempdir().unwrap();
        // A "node" whose daemon has not left the host's mount namespace: only the daemon itself
        // may be signalled, never the host's processes (this test among them).
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let p = ProcRef::of(child.id() as i32).unwrap();
        let node = Node {
            name: "node01".into(),
            id: 1,
            dir: dir.path().join("node01"),
            handle: NodeHandle::Process(p),
        };
        let b = ProcessBackend::new(ClusterCtx {
            settings: crate::state::Settings::sample(dir.path()),
            bin_dir: "/bin".into(),
        });
        b.pause(&node).unwrap();
        assert_eq!(wait_state(p, &['T']), 'T');
        b.resume(&node).unwrap();
        assert_ne!(wait_state(p, &['S', 'R']), 'T');
        let reaper = std::thread::spawn(move || child.wait());
        b.kill(&node).unwrap();
        assert!(!p.is_alive());
        reaper.join().unwrap().unwrap();
        let e = b.pause(&node).unwrap_err().to_string();
        assert_eq!(e, "node01 is not running");
        assert!(b.kill(&node).is_err());
    }
}
