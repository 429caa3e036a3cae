//! `fame __node-init`: turns the current process into a node (see the module docs of
//! [`super`]) and then `exec`s the node's daemon. It runs as a separate, single-threaded
//! process so that the namespace calls need no care about other threads, and so that errors
//! are ordinary Rust errors written to the node's console log.

use anyhow::{Context, Result};
use rustix::mount::{
    mount, mount_bind, mount_bind_recursive, mount_change, unmount, MountFlags,
    MountPropagationFlags, UnmountFlags,
};
use rustix::thread::UnshareFlags;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;

/// Becomes node `hostname` with its root built on `root`, then runs `argv`. Returns only on error.
pub fn run(hostname: &str, root: &Path, argv: &[OsString]) -> Result<()> {
    // Fails only if already a session leader, which is fine.
    let _ = rustix::process::setsid();
    // SAFETY: this process is single-threaded and does not unshare its file table.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS | UnshareFlags::NEWUTS) }
        .context("cannot create the node's mount and UTS namespaces")?;
    mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .context("cannot make the node's mounts private")?;
    rustix::system::sethostname(hostname.as_bytes()).context("cannot set the node's hostname")?;
    build_root(root)?;
    let err = std::process::Command::new(&argv[0]).args(&argv[1..]).exec();
    Err(err).with_context(|| format!("cannot run {}", argv[0].to_string_lossy()))
}

/// A tmpfs on `root` mirroring the host's `/` through binds, plus `/lfs`; then `pivot_root`.
fn build_root(root: &Path) -> Result<()> {
    mount(
        "fame-node",
        root,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        c"mode=0755",
    )
    .with_context(|| format!("cannot mount a tmpfs on {}", root.display()))?;
    mount_change(root, MountPropagationFlags::UNBINDABLE)
        .context("cannot make the node's root unbindable")?;
    for entry in std::fs::read_dir("/").context("cannot list /")? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "lfs" {
            continue;
        }
        let (src, dst) = (entry.path(), root.join(&name));
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if kind.is_dir() {
            std::fs::create_dir(&dst)?;
            mount_bind_recursive(&src, &dst)
                .with_context(|| format!("cannot bind {} into the node", src.display()))?;
        } else if kind.is_file() {
            std::fs::File::create(&dst)?;
            mount_bind(&src, &dst)
                .with_context(|| format!("cannot bind {} into the node", src.display()))?;
        }
    }
    std::fs::create_dir(root.join("lfs"))?;
    let old = root.join(".old-root");
    std::fs::create_dir(&old)?;
    rustix::process::pivot_root(root, &old).context("cannot pivot into the node's root")?;
    std::env::set_current_dir("/")?;
    unmount("/.old-root", UnmountFlags::DETACH).context("cannot detach the host's root")?;
    std::fs::remove_dir("/.old-root")?;
    Ok(())
}

/// `fame __abort-fuse MINOR...`: aborts the FUSE connections with these device minors through
/// `fusectl`, mounted (if the host has not) in a private mount namespace of this process only.
///
/// A FUSE daemon that took a request and never answers it leaves the caller in an
/// uninterruptible wait; when that caller is the daemon itself (e.g. checking its own mount as it
/// stops), not even SIGKILL ends it. Aborting the connection does.
pub fn abort_fuse(minors: &[u32]) -> Result<()> {
    const CONNECTIONS: &str = "/sys/fs/fuse/connections";
    let first = format!(
        "{CONNECTIONS}/{}/abort",
        minors.first().copied().unwrap_or(0)
    );
    if !Path::new(&first).exists() {
        // SAFETY: this process is single-threaded and does not unshare its file table.
        unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS) }
            .context("cannot create a mount namespace for fusectl")?;
        mount_change(
            "/",
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        )?;
        mount("fusectl", CONNECTIONS, "fusectl", MountFlags::empty(), None)
            .context("cannot mount fusectl")?;
    }
    for m in minors {
        let abort = format!("{CONNECTIONS}/{m}/abort");
        if let Err(e) = std::fs::write(&abort, "1") {
            eprintln!("fame: cannot abort FUSE connection {m}: {e}");
        }
    }
    Ok(())
}
