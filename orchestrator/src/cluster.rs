//! Where a cluster's files live, and how clusters are found again.
//!
//! Every cluster has one directory holding everything about it: `state.json`, `node_fame.ini`,
//! `librarian.db`, the FAM file, `logs/` and `nodes/`. Clusters are found under `FAME_HOME`
//! (default `/var/lib/fame`): `FAME_HOME/NAME` is the cluster directory itself, or a symlink to
//! it when `--dir` put the cluster elsewhere. Nothing else on the machine records a cluster.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Default parent of cluster directories when `FAME_HOME` is not set.
pub const DEFAULT_HOME: &str = "/var/lib/fame";

/// `FAME_HOME/cache`: the node image caches (guest images, image keys), not a cluster.
pub const CACHE_DIR: &str = "cache";

/// `FAME_HOME/cache`, where the backends keep what they build once for every cluster.
pub fn cache_dir() -> PathBuf {
    fame_home().join(CACHE_DIR)
}

/// The directory under which clusters are registered.
pub fn fame_home() -> PathBuf {
    std::env::var_os("FAME_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_HOME))
}

/// The file layout of one cluster directory.
#[derive(Debug, Clone)]
pub struct ClusterPaths {
    pub dir: PathBuf,
}

impl ClusterPaths {
    pub fn new(dir: impl Into<PathBuf>) -> ClusterPaths {
        ClusterPaths { dir: dir.into() }
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn ini(&self) -> PathBuf {
        self.dir.join("node_fame.ini")
    }
    pub fn db(&self) -> PathBuf {
        self.dir.join("librarian.db")
    }
    /// The FAM file `fame up` creates (unless `FAME_FAM` names an existing one).
    pub fn fam(&self) -> PathBuf {
        self.dir.join("fam")
    }
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }
    pub fn fame_log(&self) -> PathBuf {
        self.logs().join("fame.log")
    }
    /// Where the Librarian writes its port once it listens (`--port-file`): how fame knows that
    /// the Librarian listening on the port is the cluster's own.
    pub fn librarian_port_file(&self) -> PathBuf {
        self.dir.join("librarian.port")
    }
    pub fn librarian_log(&self) -> PathBuf {
        self.logs().join("librarian.log")
    }
    pub fn lmp_log(&self) -> PathBuf {
        self.logs().join("lmp.log")
    }
    pub fn lmp_pid(&self) -> PathBuf {
        self.dir.join("lmp.pid")
    }
    pub fn book_register_log(&self) -> PathBuf {
        self.logs().join("book-register.log")
    }
    pub fn nodes(&self) -> PathBuf {
        self.dir.join("nodes")
    }
}

/// The registry entry for `name` (the cluster dir or a symlink to it).
pub fn entry(name: &str) -> PathBuf {
    fame_home().join(name)
}

/// Whether `name` can name a cluster: it becomes a directory name and a hostname-like label.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if name == CACHE_DIR {
        return Err(format!(
            "--name {name}: FAME_HOME/{CACHE_DIR} holds fame's image caches; pick another --name"
        ));
    }
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--name \"{name}\": a cluster name is 1 to 40 letters, digits, '-', '_' or '.', starting with a letter or digit; pick another --name"
        ))
    }
}

/// The cluster directory registered as `name`, if any.
pub fn resolve(name: &str) -> Option<PathBuf> {
    // `..` or `a/b` would reach outside FAME_HOME.
    check_name(name).ok()?;
    let e = entry(name);
    let meta = std::fs::symlink_metadata(&e).ok()?;
    if meta.file_type().is_symlink() {
        std::fs::read_link(&e).ok()
    } else {
        Some(e)
    }
}

/// Names of every registered cluster, sorted.
pub fn list_names() -> Result<Vec<String>> {
    let home = fame_home();
    let entries = match std::fs::read_dir(&home) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", home.display())),
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.') && n != CACHE_DIR)
        .collect();
    names.sort();
    Ok(names)
}

/// Registers a cluster that lives outside `FAME_HOME` with a symlink.
pub fn register_symlink(name: &str, dir: &Path) -> Result<()> {
    let home = fame_home();
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    std::os::unix::fs::symlink(dir, entry(name)).with_context(|| {
        format!(
            "cannot register {} as {}",
            dir.display(),
            entry(name).display()
        )
    })
}

/// Mount points at or below `dir` in this process's mount namespace, deepest first.
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return vec![];
    };
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

/// `/proc/*/mountinfo` escapes space, tab, newline and backslash as octal.
fn unescape_mount_path(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

/// The exclusive right to change the cluster `name` (up, down, reload, rebuild), until dropped.
///
/// Two `fame` commands changing one cluster at once (two `fame up --name x`, or a `fame down`
/// while `fame up` is still starting nodes) would interleave their steps and leave a cluster
/// that neither of them describes. So each holds an exclusive `flock` on `FAME_HOME/.NAME.lock`,
/// and a second one is refused at once with the holder's command and pid. The kernel drops the
/// lock when its holder exits however it exits, so a killed `fame` never leaves a cluster locked.
/// The holder removes the file as it lets go, so `FAME_HOME` keeps no lock files.
#[derive(Debug)]
pub struct ClusterLock {
    _file: std::fs::File,
    path: PathBuf,
}

impl ClusterLock {
    /// Takes the lock for `verb` (`fame up`...), or says who holds it.
    pub fn acquire(name: &str, verb: &str) -> Result<ClusterLock> {
        Self::acquire_in(&fame_home(), name, verb)
    }

    /// [`acquire`](Self::acquire) with the lock file in `home`.
    fn acquire_in(home: &Path, name: &str, verb: &str) -> Result<ClusterLock> {
        use std::os::unix::fs::MetadataExt;
        check_name(name).map_err(anyhow::Error::msg)?;
        std::fs::create_dir_all(home)
            .with_context(|| format!("cannot create {}", home.display()))?;
        let path = home.join(format!(".{name}.lock"));
        let me = format!("`{verb}` (pid {})", std::process::id());
        loop {
            let Some(file) = crate::lockfile::try_lock(&path, "cluster lock", &me)? else {
                anyhow::bail!(
                    "cluster {name} is busy: {} is changing it; wait for it to end (or stop it), then run this again",
                    crate::lockfile::holder(&path, "another fame")
                );
            };
            // The holder before us may have removed the file between our open and our lock:
            // then we hold a lock nobody else can see; take the file that is there now.
            let ours = file.metadata()?;
            let same = std::fs::metadata(&path)
                .is_ok_and(|m| m.ino() == ours.ino() && m.dev() == ours.dev());
            if same {
                return Ok(ClusterLock { _file: file, path });
            }
        }
    }
}

impl Drop for ClusterLock {
    fn drop(&mut self) {
        // Removed while still held (see `acquire` for why that is safe).
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("fame").is_ok());
        assert!(check_name("a-1.b_2").is_ok());
        // `cache` is FAME_HOME's image cache, which `fame ls` and `down --all` pass over.
        for bad in ["", "-x", ".x", "a/b", "a b", "cache", &"x".repeat(41)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_cluster_lock_is_exclusive_names_its_holder_and_leaves_no_file() {
        let home = tempfile::tempdir().unwrap();
        let held = ClusterLock::acquire_in(home.path(), "c", "fame up").unwrap();
        let err = ClusterLock::acquire_in(home.path(), "c", "fame down").unwrap_err();
        let pid = std::process::id();
        assert_eq!(
            err.to_string(),
            format!("cluster c is busy: `fame up` (pid {pid}) is changing it; wait for it to end (or stop it), then run this again")
        );
        // Another cluster's lock is another lock.
        drop(ClusterLock::acquire_in(home.path(), "d", "fame up").unwrap());
        drop(held);
        assert_eq!(std::fs::read_dir(home.path()).unwrap().count(), 0);
        // Free again once released, and a bad name is refused before any file is made.
        drop(ClusterLock::acquire_in(home.path(), "c", "fame down").unwrap());
        assert!(ClusterLock::acquire_in(home.path(), "../x", "fame up").is_err());
        assert_eq!(std::fs::read_dir(home.path()).unwrap().count(), 0);
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mount_path("/a\\040b"), PathBuf::from("/a b"));
        assert_eq!(unescape_mount_path("/plain"), PathBuf::from("/plain"));
    }
}
