//! The guest image, built offline from what the host has: the Debian cloud kernel in `/boot`,
//! the few modules a node needs from `/lib/modules`, `busybox` (busybox-static) and the init of
//! `templates/libvirt/init.sh`, packed as an uncompressed `newc` initramfs by fame itself.
//!
//! With `--guest-root host` (the default) that is all: the init mounts the host's root file
//! system over virtiofs and runs lfs-node, the exec agent and everything else from there, so the
//! image does not change when fame's binaries do. With `--guest-root initramfs` the image also
//! carries `lfs-node` and `fame-guest` with their shared libraries (from `ldd`) and a few
//! util-linux tools, and the node runs from it alone.
//!
//! Images are cached under `FAME_HOME/cache/guest/KEY/`, KEY being a hash of the content of
//! every input (`sha256sum` of the files, plus the init text), so a new lfs-node or kernel gives
//! a new image and an unchanged host reuses the old one. Only the newest few images are kept.

use super::proto::PROBE_MARKER;
use crate::backend::rootfs;
use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Cloud-kernel modules a node loads, in load order (verified in fame-vm-notes.md).
pub const MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
    "fuse",
];
/// What a host-root node loads besides (virtiofs needs fuse and virtio, loaded before).
pub const HOST_ROOT_MODULES: &[&str] = &["virtiofs", "overlay"];
pub const KERNEL_PACKAGE: &str = "linux-image-cloud-amd64";

/// What a VM node runs on (`--guest-root`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestRoot {
    /// The host's root file system, read-only over virtiofs, under a tmpfs overlay.
    Host,
    /// The initramfs alone (busybox, lfs-node, fame-guest).
    Initramfs,
}

impl GuestRoot {
    pub fn parse(flag: Option<&str>) -> Result<GuestRoot> {
        match flag.unwrap_or("host") {
            "host" => Ok(GuestRoot::Host),
            "initramfs" => Ok(GuestRoot::Initramfs),
            other => Err(anyhow!(
                "--guest-root {other}: a VM node runs on `host` (the host's own root file system over virtiofs) or `initramfs` (a minimal busybox image); use one of them"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            GuestRoot::Host => "host",
            GuestRoot::Initramfs => "initramfs",
        }
    }

    /// The modules the init loads, in load order.
    pub fn modules(self) -> Vec<&'static str> {
        let extra: &[&str] = match self {
            GuestRoot::Host => HOST_ROOT_MODULES,
            // virtiofs alone, for `--share`.
            GuestRoot::Initramfs => &HOST_ROOT_MODULES[..1],
        };
        MODULES.iter().chain(extra).copied().collect()
    }
}
const INIT_TEMPLATE: &str = include_str!("../../../../templates/libvirt/init.sh");
/// Bumped when the layout of the image changes without any input changing.
const FORMAT: &str = "fame-guest-image-2";
/// Cached images kept besides the one in use.
const KEEP: usize = 3;

/// The host's guest kernel: `/boot/vmlinuz-VERSION` with `/lib/modules/VERSION`.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub version: String,
    pub vmlinuz: PathBuf,
    pub modules: PathBuf,
}

/// The newest cloud kernel installed, or an error naming the package to install.
pub fn find_kernel() -> Result<Kernel> {
    let fix = format!(
        "the libvirt backend boots its VMs with the host's Debian cloud kernel: install it with `apt-get install {KERNEL_PACKAGE}` (scripts/setup.sh does)"
    );
    let mut found: Vec<Kernel> = std::fs::read_dir("/boot")
        .map_err(|e| anyhow!("cannot list /boot ({e}); {fix}"))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let version = name.strip_prefix("vmlinuz-")?.to_string();
            version.ends_with("-cloud-amd64").then(|| Kernel {
                modules: PathBuf::from("/lib/modules").join(&version),
                vmlinuz: e.path(),
                version,
            })
        })
        .filter(|k| k.modules.is_dir())
        .collect();
    found.sort_by_key(|k| version_key(&k.version));
    found.pop().ok_or_else(|| {
        anyhow!("no guest kernel (/boot/vmlinuz-*-cloud-amd64 with its /lib/modules): {fix}")
    })
}

fn version_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Where a module of `kernel` is.
pub fn find_module(kernel: &Kernel, name: &str) -> Result<PathBuf> {
    fn walk(dir: &Path, file: &str, depth: u32) -> Option<PathBuf> {
        if depth > 8 {
            return None;
        }
        let entries = std::fs::read_dir(dir).ok()?;
        let mut dirs = vec![];
        for e in entries.flatten() {
            let p = e.path();
            if e.file_name() == file {
                return Some(p);
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(p);
            }
        }
        dirs.into_iter().find_map(|d| walk(&d, file, depth + 1))
    }
    walk(&kernel.modules.join("kernel"), &format!("{name}.ko"), 0).ok_or_else(|| {
        anyhow!(
            "module {name}.ko is not under {}: the guest needs it; reinstall {KERNEL_PACKAGE}",
            kernel.modules.display()
        )
    })
}

/// A built (or cached) image.
#[derive(Debug, Clone)]
pub struct Image {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub key: String,
    /// Whether this call built it (false: it came from the cache).
    pub built: bool,
    pub seconds: f64,
}

pub fn cache_dir() -> PathBuf {
    crate::cluster::cache_dir().join("guest")
}

/// Builds the image for a node running on `root` (with these binaries, for the initramfs), or
/// returns the cached one.
pub fn ensure(
    kernel: &Kernel,
    root: GuestRoot,
    lfs_node: &Path,
    guest_agent: &Path,
) -> Result<Image> {
    // Next to lfs-node, as cargo builds them; a cluster with --mmap page-cache may lack it.
    let preload_path = lfs_node.with_file_name(crate::bins::PRELOAD);
    let preload: &Path = &preload_path;
    let t = Instant::now();
    let busybox = rootfs::find_busybox()?;
    let modules: Vec<(String, PathBuf)> = root
        .modules()
        .iter()
        .map(|m| Ok((m.to_string(), find_module(kernel, m)?)))
        .collect::<Result<_>>()?;
    // Image path -> host file.
    let mut files: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    let tools;
    let mut bins: Vec<(&str, &Path)> = vec![("bin/busybox", &busybox)];
    if root == GuestRoot::Initramfs {
        rootfs::require_binary(lfs_node, "lfs-node")?;
        rootfs::require_binary(guest_agent, "fame-guest")?;
        tools = rootfs::host_tools()?;
        bins.push(("bin/lfs-node", lfs_node));
        if preload.is_file() {
            bins.push(("lib/liblfs_preload.so", preload));
        }
        bins.push(("bin/fame-guest", guest_agent));
        bins.extend(tools.iter().map(|(r, p)| (*r, p.as_path())));
    }
    rootfs::add_with_libraries(&mut files, &bins)?;
    for (m, p) in &modules {
        files.insert(
            PathBuf::from("lib/modules").join(format!("{m}.ko")),
            p.clone(),
        );
    }
    let init = render_init(root)?;
    let key = rootfs::content_key(&files, &[&kernel.vmlinuz], &[FORMAT, &init])?;
    let dir = cache_dir().join(&key);
    let initrd = dir.join("initrd.img");
    if initrd.is_file() {
        // Touch it so pruning keeps the images in use.
        let _ = std::fs::File::options()
            .append(true)
            .open(&initrd)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        return Ok(Image {
            kernel: kernel.vmlinuz.clone(),
            initrd,
            key,
            built: false,
            seconds: t.elapsed().as_secs_f64(),
        });
    }
    std::fs::create_dir_all(cache_dir())
        .with_context(|| format!("cannot create {}", cache_dir().display()))?;
    let tmp = cache_dir().join(format!(".build-{key}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let result = (|| {
        let mut cpio = Cpio::new(std::io::BufWriter::new(
            std::fs::File::create(tmp.join("initrd.img"))
                .with_context(|| format!("cannot create {}", tmp.join("initrd.img").display()))?,
        ));
        for d in rootfs::BASE_DIRS.iter().chain(&["tmp", "lib/modules"]) {
            cpio.dir(d, 0o755)?;
        }
        cpio.dev_console()?;
        cpio.file("init", 0o755, init.as_bytes())?;
        for (rel, host) in &files {
            for parent in rootfs::parent_dirs(rel) {
                cpio.dir(parent.to_str().unwrap_or_default(), 0o755)?;
            }
            let mode = std::fs::metadata(host)?.permissions().mode() & 0o777;
            let data = if rel.starts_with("bin") && rel.file_name() != Some("busybox".as_ref()) {
                rootfs::stripped(host, &tmp)?
            } else {
                std::fs::read(host).with_context(|| format!("cannot read {}", host.display()))?
            };
            cpio.file(rel.to_str().unwrap_or_default(), mode | 0o400, &data)?;
        }
        cpio.finish()?;
        std::fs::write(
            tmp.join("inputs.txt"),
            files
                .iter()
                .map(|(r, h)| format!("{} <- {}\n", r.display(), h.display()))
                .collect::<String>(),
        )?;
        Ok::<_, anyhow::Error>(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.context("cannot build the guest image"));
    }
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => {}
        // Another fame built the same image meanwhile: keep theirs.
        Err(_) if initrd.is_file() => {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e).with_context(|| format!("cannot move the image to {}", dir.display()));
        }
    }
    prune(&key);
    Ok(Image {
        kernel: kernel.vmlinuz.clone(),
        initrd,
        key,
        built: true,
        seconds: t.elapsed().as_secs_f64(),
    })
}

pub fn render_init(root: GuestRoot) -> Result<String> {
    let mut ctx = tera::Context::new();
    ctx.insert("modules", &root.modules());
    ctx.insert("host_root", &(root == GuestRoot::Host));
    ctx.insert("root_tag", super::virtiofs::ROOT_TAG);
    ctx.insert("probe_marker", PROBE_MARKER);
    ctx.insert("agent_port", &super::proto::AGENT_PORT);
    tera::Tera::one_off(INIT_TEMPLATE, &ctx, false)
        .map_err(|e| anyhow!("templates/libvirt/init.sh: {e:?}"))
}

/// Removes all but the newest [`KEEP`] images (never `current`).
fn prune(current: &str) {
    let Ok(entries) = std::fs::read_dir(cache_dir()) else {
        return;
    };
    let mut images: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name() != current && !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| {
            let t = std::fs::metadata(e.path().join("initrd.img"))
                .ok()?
                .modified()
                .ok()?;
            Some((t, e.path()))
        })
        .collect();
    images.sort();
    let excess = images.len().saturating_sub(KEEP - 1);
    for (_, p) in images.into_iter().take(excess) {
        let _ = std::fs::remove_dir_all(p);
    }
}

/// A minimal writer of the `newc` cpio format the kernel unpacks into its rootfs.
struct Cpio<W: Write> {
    w: W,
    ino: u32,
    dirs: std::collections::HashSet<String>,
}

impl<W: Write> Cpio<W> {
    fn new(w: W) -> Self {
        Cpio {
            w,
            ino: 1,
            dirs: Default::default(),
        }
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) -> Result<()> {
        let namesize = name.len() + 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            namesize,
            0
        );
        self.ino += 1;
        self.w.write_all(header.as_bytes())?;
        self.w.write_all(name.as_bytes())?;
        self.w.write_all(&[0])?;
        self.pad(110 + namesize)?;
        self.w.write_all(data)?;
        self.pad(data.len())?;
        Ok(())
    }

    fn pad(&mut self, len: usize) -> Result<()> {
        let n = (4 - len % 4) % 4;
        self.w.write_all(&[0u8; 3][..n])?;
        Ok(())
    }

    fn dir(&mut self, name: &str, perm: u32) -> Result<()> {
        if name.is_empty() || !self.dirs.insert(name.to_string()) {
            return Ok(());
        }
        self.entry(name, 0o040000 | perm, (0, 0), &[])
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> Result<()> {
        self.entry(name, 0o100000 | perm, (0, 0), data)
    }

    /// `/dev/console` (5:1), so that init has a console before devtmpfs is mounted.
    fn dev_console(&mut self) -> Result<()> {
        self.entry("dev/console", 0o020000 | 0o600, (5, 1), &[])
    }

    fn finish(mut self) -> Result<()> {
        self.entry("TRAILER!!!", 0, (0, 0), &[])?;
        self.w.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_entries_are_aligned_and_terminated() {
        let mut buf = vec![];
        let mut c = Cpio::new(&mut buf);
        c.dir("bin", 0o755).unwrap();
        c.file("init", 0o755, b"#!/bin/sh\n").unwrap();
        c.finish().unwrap();
        assert!(buf.starts_with(b"070701"));
        assert_eq!(buf.len() % 4, 0);
        let text = String::from_utf8_lossy(&buf);
        assert!(text.contains("TRAILER!!!") && text.contains("#!/bin/sh"));
    }

    #[test]
    fn init_renders_every_module_in_order() {
        for root in [GuestRoot::Host, GuestRoot::Initramfs] {
            let init = render_init(root).unwrap();
            let pos: Vec<usize> = root
                .modules()
                .iter()
                .map(|m| init.find(&format!("insmod /lib/modules/{m}.ko")).unwrap())
                .collect();
            assert!(pos.windows(2).all(|w| w[0] < w[1]), "{init}");
            assert!(init.contains(PROBE_MARKER));
            assert_eq!(init.contains("switch_root"), root == GuestRoot::Host);
        }
    }

    #[test]
    fn guest_roots_parse_with_the_fix() {
        assert_eq!(GuestRoot::parse(None).unwrap(), GuestRoot::Host);
        assert_eq!(
            GuestRoot::parse(Some("initramfs")).unwrap(),
            GuestRoot::Initramfs
        );
        let e = GuestRoot::parse(Some("debian")).unwrap_err().to_string();
        assert!(e.starts_with("--guest-root debian:"), "{e}");
    }

    #[test]
    fn versions_sort_numerically() {
        assert!(version_key("6.1.0-9-cloud-amd64") < version_key("6.1.0-56-cloud-amd64"));
    }
}
