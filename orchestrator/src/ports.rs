//! Choosing a cluster's TCP ports (the Librarian's, its metrics', the LMP's) without racing
//! other `fame` processes.
//!
//! "The first free port from 9093" is only true until someone binds it: two `fame up` started
//! at the same moment would both find 9093 free, and the nodes of one cluster would then join
//! the other's Librarian. So the choice is serialised with an exclusive `flock` on one lock file
//! for the whole machine (ports are a machine-wide resource: clusters under different
//! `FAME_HOME`s compete for them too), held from the moment the ports are chosen until the
//! processes that use them listen. The kernel releases the lock when its holder exits, however
//! it exits, so a killed `fame up` never leaves it taken. The lock file itself stays (a file in
//! `/run/lock` naming its last holder; removing a lock file others may be waiting on would break
//! the lock).

use crate::lockfile;
use crate::progress::check_interrupt;
use anyhow::Result;
use std::fs::File;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::Duration;

/// The lock file: in `/run/lock` (the FHS place for lock files), else the temporary directory.
pub fn lock_path() -> PathBuf {
    let dir = PathBuf::from("/run/lock");
    let dir = if dir.is_dir() {
        dir
    } else {
        std::env::temp_dir()
    };
    dir.join("fame-ports.lock")
}

/// The exclusive right to choose ports, until dropped.
#[derive(Debug)]
pub struct PortLock {
    _file: File,
}

/// How long one holder may keep the port lock before the `fame up`s waiting for it give up: it
/// needs it for seconds (until its Librarian and LMP listen, a cold node image included); one
/// that holds it much longer is stuck (or frozen). Several holders in turn (`fame scenario run
/// --jobs N`) each get this much.
const WAIT_LIMIT: Duration = Duration::from_secs(120);

impl PortLock {
    /// Waits for the lock (another `fame up` holds it only until its Librarian and LMP listen).
    pub fn acquire() -> Result<PortLock> {
        let path = lock_path();
        let me = format!("pid {}", std::process::id());
        let (mut holder, mut since) = (String::new(), std::time::Instant::now());
        loop {
            if let Some(file) = lockfile::try_lock(&path, "port lock", &me)? {
                return Ok(PortLock { _file: file });
            }
            check_interrupt()?;
            let now_held_by = lockfile::holder(&path, "pid unknown");
            if now_held_by != holder {
                (holder, since) = (now_held_by, std::time::Instant::now());
            }
            if since.elapsed() > WAIT_LIMIT {
                anyhow::bail!(
                    "another fame up ({holder}) has held the port lock {} for over {} s, so it is stuck: stop it and try again",
                    path.display(),
                    WAIT_LIMIT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Whether nothing listens on `port` on any address (a Librarian of VM nodes listens on its
/// network's address, not on 127.0.0.1; binding the wildcard address fails in both cases).
pub fn is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
}

/// The first port from `from` up that is free and not in `taken`.
pub fn first_free(from: u16, taken: &[u16]) -> Option<u16> {
    (from..=u16::MAX).find(|p| !taken.contains(p) && is_free(*p))
}

/// The machine-wide list of clusters (any FAME_HOME) whose recorded ports others must not take,
/// beside the lock file: one file per cluster directory, holding its path. A cluster's ports are
/// free on the machine while its Librarian is down (killed by a scenario, stopped by `fame down
/// --keep-fam`), and a `fame up` under another FAME_HOME, which cannot see that cluster, would
/// otherwise take them, and the first cluster's nodes would then talk to the wrong Librarian.
fn registry_dir() -> PathBuf {
    lock_path().with_file_name("fame-clusters")
}

fn registry_entry(cluster_dir: &std::path::Path) -> PathBuf {
    // FNV-1a of the path: a short, stable file name.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in cluster_dir.as_os_str().as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    registry_dir().join(format!("{h:016x}"))
}

/// Records `cluster_dir` in the machine-wide list (idempotent).
pub fn register(cluster_dir: &std::path::Path) -> Result<()> {
    let dir = registry_dir();
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let entry = registry_entry(cluster_dir);
    std::fs::write(&entry, cluster_dir.as_os_str().as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", entry.display()))
}

/// Takes `cluster_dir` off the list (when it is torn down).
pub fn unregister(cluster_dir: &std::path::Path) {
    let _ = std::fs::remove_file(registry_entry(cluster_dir));
}

/// The cluster directories on the list, but `me`'s; entries whose directory is gone are removed.
pub fn registered_clusters(me: &std::path::Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(registry_dir()) else {
        return vec![];
    };
    let mut out = vec![];
    for e in entries.flatten() {
        let Ok(text) = std::fs::read(e.path()) else {
            continue;
        };
        let dir = PathBuf::from(std::ffi::OsString::from_vec(text));
        if !dir.join("state.json").exists() {
            let _ = std::fs::remove_file(e.path());
        } else if dir != me {
            out.push(dir);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_port_and_a_taken_one_are_skipped() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = l.local_addr().unwrap().port();
        assert!(!is_free(busy));
        let p = first_free(busy, &[busy + 1]).unwrap();
        assert!(p > busy + 1);
    }

    #[test]
    fn the_lock_is_exclusive_between_open_files() {
        use rustix::fs::{flock, FlockOperation};
        let held = PortLock::acquire().unwrap();
        let other = std::fs::File::open(lock_path()).unwrap();
        assert_eq!(
            flock(&other, FlockOperation::NonBlockingLockExclusive),
            Err(rustix::io::Errno::WOULDBLOCK)
        );
        drop(held);
        flock(&other, FlockOperation::NonBlockingLockExclusive).unwrap();
    }
}
