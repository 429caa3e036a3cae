//! Processes `fame` started, found again later without trusting a bare pid.
//!
//! A pid alone can be recycled once its process is gone, so every process is remembered with its
//! start time (field 22 of `/proc/PID/stat`), and is signalled through a pidfd that is opened
//! first and checked second: if the pid was recycled in between, the check fails and nothing is
//! sent. Every process `fame` starts also carries [`MARKER_ENV`] in its environment, so that a
//! process started just before `fame` itself died (and never written to the state file) is still
//! found by `fame down`.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, Instant};

/// Environment variable naming the cluster directory in every process of a cluster.
pub const MARKER_ENV: &str = "FAME_CLUSTER_DIR";

/// A process as `fame` recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRef {
    pub pid: i32,
    /// Clock ticks since boot at which the process started.
    pub start_time: u64,
}

/// What `/proc/PID/stat` says about a pid.
struct Stat {
    state: char,
    start_time: u64,
}

fn read_stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); start time is field 22.
    Some(Stat {
        state: fields.first()?.chars().next()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

impl ProcRef {
    /// The process with this pid as it is now, if there is one.
    pub fn of(pid: i32) -> Option<ProcRef> {
        read_stat(pid).map(|s| ProcRef {
            pid,
            start_time: s.start_time,
        })
    }

    /// Alive and still the same process (zombies count as gone: they hold no namespace or mount).
    pub fn is_alive(&self) -> bool {
        matches!(read_stat(self.pid), Some(s) if s.start_time == self.start_time && !matches!(s.state, 'Z' | 'X'))
    }

    /// Sends `sig` if the pid still names this process; returns whether it was sent.
    pub fn signal(&self, sig: rustix::process::Signal) -> bool {
        let Some(pid) = rustix::process::Pid::from_raw(self.pid) else {
            return false;
        };
        let Ok(fd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) else {
            return false;
        };
        // Checked after opening: the pidfd now pins this exact process.
        if !self.is_alive() {
            return false;
        }
        rustix::process::pidfd_send_signal(&fd, sig).is_ok()
    }

    /// Path under `/proc` for this process (only meaningful while [`is_alive`](Self::is_alive)).
    pub fn proc_path(&self, rest: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("/proc/{}/{rest}", self.pid))
    }
}

/// Asks every process to stop with SIGTERM, waits up to `grace`, then SIGKILLs the rest and
/// waits for them too. Returns the processes still alive after all that (normally none).
pub fn terminate(procs: &[ProcRef], grace: Duration) -> Vec<ProcRef> {
    use rustix::process::Signal;
    for p in procs {
        p.signal(Signal::TERM);
    }
    let left = wait_gone(procs, grace);
    let stuck: Vec<u32> = left.iter().flat_map(|p| node_fuse_minors(*p)).collect();
    if !stuck.is_empty() {
        abort_fuse(&stuck);
    }
    for p in &left {
        p.signal(Signal::KILL);
    }
    wait_gone(&left, Duration::from_secs(5))
}

/// Device minors (the connection numbers under `/sys/fs/fuse/connections`) of the FUSE file
/// systems mounted on `/lfs` in `p`'s mount table, if `p` lives in a mount namespace other than
/// ours, that is, in a node: never a FUSE mount of the host.
fn node_fuse_minors(p: ProcRef) -> Vec<u32> {
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    if ns(&p.pid.to_string()) == ns("self") {
        return vec![];
    }
    let Ok(text) = std::fs::read_to_string(p.proc_path("mountinfo")) else {
        return vec![];
    };
    text.lines()
        .filter(|l| l.split(' ').nth(4) == Some("/lfs"))
        .filter(|l| l.split(" - ").nth(1).is_some_and(|r| r.starts_with("fuse")))
        .filter_map(|l| l.split(' ').nth(2)?.split(':').nth(1)?.parse().ok())
        .collect()
}

/// Aborts FUSE connections from a helper process (`fame __abort-fuse`, which mounts `fusectl`
/// in a private mount namespace if the host has not): a FUSE daemon that took a request and
/// never answers leaves the caller in an uninterruptible wait, and when the caller is the daemon
/// itself (checking its own mount as it stops) not even SIGKILL ends it. Aborting does.
fn abort_fuse(minors: &[u32]) {
    let Ok(me) = std::env::current_exe() else {
        return;
    };
    let status = std::process::Command::new(me)
        .arg("__abort-fuse")
        .args(minors.iter().map(u32::to_string))
        .stdin(std::process::Stdio::null())
        .status();
    tracing::warn!(
        "aborted FUSE connections {minors:?} of processes that did not stop: {status:?}"
    );
}

/// Waits until none of `procs` is alive or `limit` has passed; returns those still alive.
pub fn wait_gone(procs: &[ProcRef], limit: Duration) -> Vec<ProcRef> {
    let deadline = Instant::now() + limit;
    let mut left: Vec<ProcRef> = procs.iter().copied().filter(ProcRef::is_alive).collect();
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        left.retain(ProcRef::is_alive);
    }
    left
}

/// Every live process whose environment marks it as belonging to the cluster in `dir`,
/// except this process itself.
pub fn marked_processes(dir: &Path) -> Vec<ProcRef> {
    let want = format!("{MARKER_ENV}={}", dir.display()).into_bytes();
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| has_env(pid, &want))
        .filter_map(ProcRef::of)
        .filter(ProcRef::is_alive)
        .collect()
}

/// Whether process `pid` was started with the environment entry `entry` (`NAME=VALUE`).
pub fn has_env(pid: i32, entry: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_recycled_pid_is_not() {
        let me = ProcRef::of(std::process::id() as i32).unwrap();
        assert!(me.is_alive());
        let impostor = ProcRef {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!impostor.is_alive());
        assert!(!impostor.signal(rustix::process::Signal::CONT));
    }

    #[test]
    fn terminate_stops_a_child_and_finds_it_by_marker() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env(MARKER_ENV, dir.path())
            .spawn()
            .unwrap();
        // The child's environment is readable once it has exec'd; give it a moment.
        let mut found = marked_processes(dir.path());
        for _ in 0..200 {
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
            found = marked_processes(dir.path());
        }
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].pid, child.id() as i32);
        // Our own child lingers as a zombie until waited for; reap it in the background.
        let reaper = std::thread::spawn(move || child.wait());
        assert!(terminate(&found, Duration::from_secs(5)).is_empty());
        reaper.join().unwrap().unwrap();
        assert!(marked_processes(dir.path()).is_empty());
    }
}
