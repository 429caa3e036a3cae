//! Lock files: an exclusive `flock` on a file that names its holder, for the port lock
//! ([`crate::ports`]) and the cluster locks ([`crate::cluster::ClusterLock`]). The kernel drops a
//! lock when its holder exits, however it exits, so a killed `fame` never leaves one taken.

use anyhow::{Context, Result};
use std::fs::File;
use std::path::Path;

/// Opens `path` (making it) and tries to lock it: the locked file, with `holder` written into it
/// for those who find it taken, or `None` if another process holds it. `what` names the lock in
/// errors.
pub fn try_lock(path: &Path, what: &str, holder: &str) -> Result<Option<File>> {
    use rustix::fs::{flock, FlockOperation};
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| {
            format!(
                "cannot open the {what} {}; check that fame may write there",
                path.display()
            )
        })?;
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
    }
    file.set_len(0)
        .and_then(|()| write!(file, "{holder}"))
        .with_context(|| format!("cannot write to the {what} {}", path.display()))?;
    Ok(Some(file))
}

/// What the holder of the lock at `path` wrote, or `unknown` if nothing.
pub fn holder(path: &Path, unknown: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    match text.trim() {
        "" => unknown.to_string(),
        t => t.to_string(),
    }
}
