//! virtiofs for VM nodes: the host's root file system (read-only) and the `--share` folders
//! (read-write), each served to each node by a virtiofsd of its own.
//!
//! fame starts the virtiofsds itself rather than letting libvirt do it, for three reasons:
//! libvirt 9.0 cannot make a virtiofs export read-only (Debian 12's virtiofsd has no such
//! option either), every process fame starts must carry the cluster's marker so that `fame down`
//! finds it after fame was killed, and their logs belong in the node's directory where
//! `fame logs` lists them.
//!
//! The read-only root: virtiofsd is started in a mount namespace of its own in which `/` is bound
//! recursively onto an empty directory of the node and that bind is made read-only, recursively
//! (`mount_setattr(2)` with `AT_RECURSIVE`), and virtiofsd serves that directory. No write of a
//! guest, whatever it mounts or remounts, reaches a host file. The guest puts a tmpfs overlay on
//! top (templates/libvirt/init.sh), so the node can still write anywhere, to its own memory.
//!
//! Each virtiofsd gets its vhost-user socket already listening (`--fd`), so QEMU can connect the
//! moment the domain starts, without waiting for a socket file to appear. A virtiofsd serves one
//! VM and exits when that VM goes away.

use super::image::GuestRoot;
use crate::procs::{ProcRef, MARKER_ENV};
use anyhow::{anyhow, bail, Context, Result};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Debian's virtiofsd (package qemu-system-common).
pub const VIRTIOFSD: &str = "/usr/lib/qemu/virtiofsd";
pub const VIRTIOFSD_PACKAGE: &str = "qemu-system-common";
/// The virtiofs tag of the host's root file system.
pub const ROOT_TAG: &str = "fame-root";
/// PCI slot of the first virtiofs device (ivshmem has 0x10); 0x11 to 0x1f are free.
const FIRST_SLOT: u32 = 0x11;
const LAST_SLOT: u32 = 0x1f;
/// The most `--share` folders a VM node can have (one slot is the root's).
pub const MAX_SHARES: usize = (LAST_SLOT - FIRST_SLOT) as usize;
/// `sun_path` holds 108 bytes with the final NUL.
const MAX_SOCKET_PATH: usize = 107;

/// One folder of the host a node sees over virtiofs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The virtiofs tag the guest mounts.
    pub tag: String,
    /// The host folder.
    pub source: PathBuf,
    /// Where the guest mounts it (the same path as on the host for shares).
    pub guest_path: PathBuf,
    /// Served from a read-only view (the host's root), else read-write.
    pub read_only: bool,
    /// PCI slot of its vhost-user-fs device.
    pub slot: u32,
}

/// What a node exports: the host's root first (with `--guest-root host`), then every share.
pub fn exports(root: GuestRoot, shares: &[PathBuf]) -> Vec<Export> {
    let root_export = (root == GuestRoot::Host).then(|| Export {
        tag: ROOT_TAG.into(),
        source: "/".into(),
        guest_path: "/".into(),
        read_only: true,
        slot: 0,
    });
    let share_exports = shares.iter().enumerate().map(|(i, dir)| Export {
        tag: format!("fame-share{i}"),
        source: dir.clone(),
        guest_path: dir.clone(),
        read_only: false,
        slot: 0,
    });
    root_export
        .into_iter()
        .chain(share_exports)
        .enumerate()
        .map(|(i, e)| Export {
            slot: FIRST_SLOT + i as u32,
            ..e
        })
        .collect()
}

/// The vhost-user socket of export `e` of the node in `node_dir`.
pub fn socket_path(node_dir: &Path, e: &Export) -> PathBuf {
    node_dir.join(format!("{}.sock", e.tag))
}

/// The virtiofsd log of export `e`.
pub fn log_path(node_dir: &Path, e: &Export) -> PathBuf {
    node_dir.join(format!("virtiofsd-{}.log", e.tag))
}

/// Where the read-only view of `/` is bound in the virtiofsd's own mount namespace (an empty
/// directory on the host).
fn root_view(node_dir: &Path) -> PathBuf {
    node_dir.join("host-root")
}

/// Fails with the fix when VM nodes cannot get virtiofs on this host: virtiofsd missing, the
/// guest kernel without the modules, a socket path too long, or a root that cannot be shared.
/// `why` says what needs virtiofs (the flag to drop or change).
pub fn check_host(cluster_dir: &Path, root: GuestRoot, why: &str) -> Result<()> {
    if !Path::new(VIRTIOFSD).is_file() {
        bail!(
            "{VIRTIOFSD} is missing: {why} over virtiofs; install it with `apt-get install {VIRTIOFSD_PACKAGE}`{}",
            fix_hint(root)
        );
    }
    // Node directories are nodes/NODENN; the longest tag is fame-shareNN.
    let longest = cluster_dir.join("nodes/node80/fame-share99.sock");
    if longest.as_os_str().len() > MAX_SOCKET_PATH {
        bail!(
            "the cluster directory {} is too long for VM nodes' virtiofs sockets (a Unix socket path holds {MAX_SOCKET_PATH} bytes, {} needs {}); use a shorter --dir or FAME_HOME",
            cluster_dir.display(),
            longest.display(),
            longest.as_os_str().len()
        );
    }
    if root == GuestRoot::Host {
        let probe = tempfile::tempdir().context("cannot make a directory to test sharing /")?;
        let view = prepare_view(probe.path())?;
        let status = spawn_with_read_only_root(Command::new("/bin/true"), &view)
            .and_then(|mut c| c.wait())
            .map_err(|e| {
                anyhow!(
                    "the host's root file system / cannot be shared read-only with VM nodes ({e}): fame binds it read-only in a mount namespace of its own, which needs root with CAP_SYS_ADMIN; run fame as root outside a restricted container, or use --guest-root initramfs"
                )
            })?;
        if !status.success() {
            bail!(
                "the test of sharing / read-only ended with {status}; use --guest-root initramfs"
            );
        }
    }
    Ok(())
}

fn fix_hint(root: GuestRoot) -> &'static str {
    match root {
        GuestRoot::Host => ", or use --guest-root initramfs",
        GuestRoot::Initramfs => ", or drop --share",
    }
}

/// The view directory as a C string for the child (no allocation may happen after fork).
fn prepare_view(node_dir: &Path) -> Result<CString> {
    let view = root_view(node_dir);
    std::fs::create_dir_all(&view).with_context(|| format!("cannot create {}", view.display()))?;
    CString::new(view.as_os_str().as_bytes())
        .map_err(|_| anyhow!("{} holds a NUL byte", view.display()))
}

/// Spawns `cmd` in a mount namespace of its own in which `view` is a recursive, read-only bind
/// of `/`.
fn spawn_with_read_only_root(
    mut cmd: Command,
    view: &CString,
) -> std::io::Result<std::process::Child> {
    let view = view.clone();
    // SAFETY: the closure runs in the child between fork and exec and only makes system calls
    // (unshare, mount, mount_setattr) on memory allocated before the fork; it neither allocates
    // nor takes locks.
    unsafe {
        cmd.pre_exec(move || read_only_root(&view));
    }
    cmd.spawn()
}

/// In the calling (child) process: a private mount namespace with `/` bound read-only,
/// recursively, onto `view`.
fn read_only_root(view: &CString) -> std::io::Result<()> {
    let check = |rc: libc::c_int, step: &str| {
        if rc == 0 {
            Ok(())
        } else {
            let e = std::io::Error::last_os_error();
            Err(std::io::Error::new(e.kind(), format!("{step}: {e}")))
        }
    };
    // SAFETY: plain system calls on valid NUL-terminated strings that outlive them.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS), "unshare(CLONE_NEWNS)")?;
        check(
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ),
            "making mounts private",
        )?;
        check(
            libc::mount(
                c"/".as_ptr(),
                view.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ),
            "binding / recursively",
        )?;
        let attr = libc::mount_attr {
            attr_set: libc::MOUNT_ATTR_RDONLY,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        let rc = libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            view.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        );
        check(
            rc as libc::c_int,
            "making the bind read-only (mount_setattr)",
        )?;
    }
    Ok(())
}

/// Starts the virtiofsd of export `e` for the node in `node_dir`, with its socket listening.
pub fn start(node_dir: &Path, cluster_dir: &Path, e: &Export) -> Result<ProcRef> {
    let sock = socket_path(node_dir, e);
    let _ = std::fs::remove_file(&sock);
    let listener = std::os::unix::net::UnixListener::bind(&sock)
        .with_context(|| format!("cannot listen on {}", sock.display()))?;
    let log = log_path(node_dir, e);
    let log_file = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let source = if e.read_only {
        root_view(node_dir)
    } else {
        e.source.clone()
    };
    let mut cmd = Command::new(VIRTIOFSD);
    cmd.arg("--fd=3")
        .arg("-o")
        .arg(format!("source={}", source.display()))
        // Attributes and directory entries are trusted for a second, and a file's pages are
        // dropped when it is opened again: what one node (or the host) writes, another sees on
        // its next open, as over NFS.
        .args(["-o", "cache=auto", "-o", "sandbox=namespace"])
        .args(["-o", "log_level=warn"])
        .env(MARKER_ENV, cluster_dir)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    let fd = {
        use std::os::fd::AsRawFd;
        listener.as_raw_fd()
    };
    // SAFETY: dup2 is async-signal-safe; the listener outlives the spawn below.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = if e.read_only {
        let view = prepare_view(node_dir)?;
        spawn_with_read_only_root(cmd, &view)
    } else {
        cmd.spawn()
    }
    .map_err(|err| {
        anyhow!(
            "cannot start {VIRTIOFSD} for {} ({}): {err}",
            e.source.display(),
            e.tag
        )
    })?;
    drop(listener);
    let pid = child.id() as i32;
    let p = ProcRef::of(pid);
    // It lives as long as the VM; a long-lived fame (a scenario run) reaps it when it ends.
    std::thread::spawn(move || {
        let mut child = child;
        child.wait()
    });
    p.ok_or_else(|| {
        anyhow!(
            "{VIRTIOFSD} for {} exited at once{}",
            e.source.display(),
            crate::services::log_tail(&log, 5)
        )
    })
}

/// The kernel command line entries that tell the guest init what to mount where.
pub fn cmdline(exports: &[Export]) -> String {
    exports
        .iter()
        .filter(|e| e.tag != ROOT_TAG)
        .map(|e| format!(" fame.share={}={}", e.tag, e.guest_path.display()))
        .collect()
}

/// Whether a path can travel on the kernel command line (the guest init learns the shares'
/// and the bin dir there): no spaces, quotes, control or non-UTF-8 characters.
pub fn fits_cmdline(p: &Path) -> bool {
    p.to_str().is_some_and(|s| {
        s.chars()
            .all(|c| c.is_ascii_graphic() && !"\"'\\`$".contains(c))
    })
}

/// Fails when a share's path cannot travel on the kernel command line.
pub fn check_share_path(p: &Path) -> Result<()> {
    if !fits_cmdline(p) {
        bail!(
            "--share {}: VM nodes learn the path from the kernel command line, which cannot carry spaces, quotes or other special characters; share a folder whose path has none (a symlink to it works)",
            p.display()
        );
    }
    Ok(())
}

/// Folders of the host a node on the host's root does not see: its own, empty, ones.
pub const NODE_OWN: &[&str] = &["/run", "/dev", "/proc", "/sys"];

/// Fails when fame's binaries are where a node on the host's root cannot see them (its own
/// `/run`), unless a `--share` brings them in.
pub fn check_visible(bin_dir: &Path, shares: &[PathBuf]) -> Result<()> {
    let hidden = NODE_OWN.iter().find(|o| bin_dir.starts_with(o));
    if let (Some(own), false) = (hidden, shares.iter().any(|s| bin_dir.starts_with(s))) {
        bail!(
            "{}: VM nodes run fame's binaries from the host's root, but {own} is each node's own; build them elsewhere (or point --bin-dir there), --share {}, or use --guest-root initramfs",
            bin_dir.display(),
            bin_dir.display()
        );
    }
    Ok(())
}

/// QEMU option values double their commas.
pub fn qemu_escape(s: &str) -> String {
    s.replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_comes_first_and_shares_get_their_own_slots() {
        let shares = vec![PathBuf::from("/srv/a"), PathBuf::from("/srv/b")];
        let all = exports(GuestRoot::Host, &shares);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].tag, ROOT_TAG);
        assert!(all[0].read_only);
        assert_eq!(all[0].slot, 0x11);
        assert_eq!((all[2].tag.as_str(), all[2].slot), ("fame-share1", 0x13));
        assert!(!all[2].read_only);
        assert_eq!(
            cmdline(&all),
            " fame.share=fame-share0=/srv/a fame.share=fame-share1=/srv/b"
        );
        let minimal = exports(GuestRoot::Initramfs, &shares);
        assert_eq!(minimal[0].tag, "fame-share0");
        assert_eq!(minimal[0].slot, 0x11);
    }

    #[test]
    fn binaries_in_a_nodes_own_folders_need_a_share() {
        check_visible(Path::new("/tmp/target/debug"), &[]).unwrap();
        let e = check_visible(Path::new("/run/b"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("/run is each node's own"), "{e}");
        check_visible(Path::new("/run/b"), &[PathBuf::from("/run")]).unwrap();
    }

    #[test]
    fn share_paths_must_fit_the_kernel_command_line() {
        check_share_path(Path::new("/home/me/src/fame-1.0")).unwrap();
        for bad in ["/a b", "/a\"b", "/a$b", "/a\tb"] {
            let e = check_share_path(Path::new(bad)).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--share {bad}:")), "{e}");
        }
    }

    #[test]
    fn the_read_only_view_refuses_writes() {
        // Needs root (CAP_SYS_ADMIN), as fame's VM backend does.
        let dir = tempfile::tempdir().unwrap();
        let view = prepare_view(dir.path()).unwrap();
        let target = root_view(dir.path()).join(dir.path().strip_prefix("/").unwrap());
        let probe = target.join("written-through-the-view");
        let out = spawn_with_read_only_root(
            {
                let mut c = Command::new("touch");
                c.arg(&probe).stderr(Stdio::piped());
                c
            },
            &view,
        )
        .unwrap()
        .wait_with_output()
        .unwrap();
        assert!(!out.status.success(), "touch through the view succeeded");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Read-only"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!dir.path().join("written-through-the-view").exists());
    }
}
