//! Step 1 of `fame up`: every check that can be made before anything is created, each failing
//! with one line naming the value, the rule and the fix.

use crate::backend::Backend;
use crate::bins::{self, Bins};
use crate::cluster;
use crate::geometry::Geometry;
use crate::ports::{self, PortLock};
use crate::progress::Step;
use crate::size::format_size;
use crate::state::{ClusterState, Settings};
use anyhow::{bail, Result};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

pub const MAX_NODES: u32 = 80;
pub const MIN_FAM: u64 = 1 << 30;
/// The first port tried when `--port` is not given (the original Librarian's port).
pub const FIRST_PORT: u16 = 9093;
/// The first port tried for the LMP when `--lmp-port` is not given (the original LMP's port).
pub const FIRST_LMP_PORT: u16 = 31179;

/// What the validate step decided.
pub struct Plan {
    pub geometry: Geometry,
    pub ports: Ports,
    pub bins: Bins,
    pub backend: Box<dyn Backend>,
    /// Held from choosing the ports until the processes using them listen (see
    /// [`crate::ports`]); `fame up` drops it then.
    pub port_lock: Option<PortLock>,
    /// Held until `fame up` is done, its rollback included (see [`cluster::ClusterLock`]).
    pub _cluster_lock: cluster::ClusterLock,
}

pub fn validate(s: &Settings, step: &Step) -> Result<Plan> {
    check_nodes(s.nodes)?;
    check_fam_size(s.fam_bytes)?;
    if let Some(f) = &s.fam_file {
        check_fam_file(f, s.fam_bytes)?;
    }
    let geometry = Geometry::new(s.nodes, s.fam_bytes, s.book_size).map_err(anyhow::Error::msg)?;
    check_root()?;
    check_fuse(Path::new("/dev/fuse"))?;
    // Before the name is found free, so that no other `fame` can take it after the check.
    let cluster_lock = cluster::ClusterLock::acquire(&s.name, "fame up")?;
    check_name_free(s)?;
    let bins = Bins::locate(s.bin_dir.as_deref())?;
    bins.check(bins::ALL)?;
    if s.mmap == crate::state::MmapMode::Fam {
        bins.check_preload()?;
    }
    if !s.no_lmp {
        bins.check(&[bins::LMP])?;
    }
    let backend = s.backend.open(crate::backend::ClusterCtx {
        settings: s.clone(),
        bin_dir: bins.dir.clone(),
    });
    backend.check()?;
    let port_lock = PortLock::acquire()?;
    let ports = pick_ports(s)?;
    if !s.backend.capabilities().sizes_nodes && (s.vm.vcpus.is_some() || s.vm.vdram_kib.is_some()) {
        step.println(format!(
            "note: FAME_VCPUS/FAME_VDRAM size VMs; the nodes of the {} backend are not VMs and ignore them",
            s.backend
        ));
    }
    if s.fam_file.is_none() {
        if let Some(w) = disk_warning(&s.dir, s.fam_bytes) {
            step.println(w);
        }
    }
    Ok(Plan {
        geometry,
        ports,
        bins,
        backend,
        port_lock: Some(port_lock),
        _cluster_lock: cluster_lock,
    })
}

pub fn check_nodes(n: u32) -> Result<()> {
    if !(1..=MAX_NODES).contains(&n) {
        bail!("--nodes {n}: a cluster has 1 to {MAX_NODES} nodes (LFS node ids are 1 to {MAX_NODES}); try --nodes 4");
    }
    Ok(())
}

pub fn check_fam_size(bytes: u64) -> Result<()> {
    if !bytes.is_power_of_two() || bytes < MIN_FAM {
        let next = bytes
            .max(MIN_FAM)
            .checked_next_power_of_two()
            .unwrap_or(MIN_FAM);
        bail!(
            "--fam {}: the FAM size must be a power of two of at least 1G (nodes map it as one PCI BAR); try --fam {}",
            format_size(bytes),
            format_size(next)
        );
    }
    Ok(())
}

fn check_fam_file(f: &Path, want: u64) -> Result<()> {
    let Ok(meta) = std::fs::metadata(f) else {
        bail!(
            "FAME_FAM={}: no such file; create it first (fallocate -l 32G FILE) or unset FAME_FAM",
            f.display()
        );
    };
    if !meta.is_file() {
        bail!(
            "FAME_FAM={}: not a regular file; point FAME_FAM at a FAM file or unset it",
            f.display()
        );
    }
    if meta.len() != want {
        bail!(
            "FAME_FAM={} is {} but --fam says {}; leave out --fam to use the file's size",
            f.display(),
            format_size(meta.len()),
            format_size(want)
        );
    }
    check_fam_size(meta.len()).map_err(|e| anyhow::anyhow!("FAME_FAM={}: {e}", f.display()))
}

fn check_root() -> Result<()> {
    let uid = rustix::process::geteuid();
    if !uid.is_root() {
        bail!(
            "fame up must run as root (running as uid {}): nodes need mount and UTS namespaces and FUSE mounts; run it with sudo",
            uid.as_raw()
        );
    }
    Ok(())
}

/// FUSE needs `/dev/fuse`, the character device 10:229, openable for reading and writing.
pub fn check_fuse(dev: &Path) -> Result<()> {
    let fix = "load the module with `modprobe fuse` (in a container, pass --device /dev/fuse)";
    let meta = match std::fs::metadata(dev) {
        Ok(m) => m,
        Err(_) => bail!(
            "{} is missing: LFS nodes are FUSE file systems; {fix}",
            dev.display()
        ),
    };
    let rdev = meta.rdev();
    if !meta.file_type().is_char_device()
        || rustix::fs::major(rdev) != 10
        || rustix::fs::minor(rdev) != 229
    {
        bail!(
            "{} is not the FUSE device (char 10:229): LFS nodes are FUSE file systems; {fix}",
            dev.display()
        );
    }
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open(dev) {
        bail!(
            "{} cannot be opened ({e}): LFS nodes are FUSE file systems; {fix}",
            dev.display()
        );
    }
    Ok(())
}

fn check_name_free(s: &Settings) -> Result<()> {
    let entry = cluster::entry(&s.name);
    if std::fs::symlink_metadata(&entry).is_ok() {
        let where_ = cluster::resolve(&s.name).unwrap_or(entry);
        bail!(
            "--name {}: a cluster of that name already exists ({}); run `fame down {}` first, or pick another --name",
            s.name,
            where_.display(),
            s.name
        );
    }
    if s.dir != cluster::entry(&s.name) {
        if let Ok(mut d) = std::fs::read_dir(&s.dir) {
            if d.next().is_some() {
                bail!(
                    "--dir {}: the directory exists and is not empty; give a new or empty directory",
                    s.dir.display()
                );
            }
        } else if s.dir.exists() {
            bail!(
                "--dir {}: exists and is not a directory; give a new or empty directory",
                s.dir.display()
            );
        }
    }
    Ok(())
}

/// Every port recorded by the other clusters (they may be stopped, and will want theirs back),
/// each with who records it ("cluster a").
fn ports_of_other_clusters(s: &Settings) -> Vec<(String, u16)> {
    let me = &s.name;
    let here = cluster::list_names()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n != me)
        .filter_map(|n| Some((format!("cluster {n}"), cluster::resolve(&n)?)));
    // Clusters of other FAME_HOMEs too (their Librarian may be down for a moment).
    let elsewhere = ports::registered_clusters(&s.dir)
        .into_iter()
        .map(|d| (format!("the cluster in {}", d.display()), d));
    here.chain(elsewhere)
        .filter_map(|(who, dir)| {
            let st = ClusterState::load(&cluster::ClusterPaths::new(dir).state()).ok()?;
            let ports = [Some(st.port), st.metrics_port, st.lmp_port];
            Some(ports.into_iter().flatten().map(move |p| (who.clone(), p)))
        })
        .flatten()
        .collect()
}

/// The ports a new cluster listens on.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub librarian: u16,
    pub metrics: u16,
    pub lmp: Option<u16>,
}

/// `flag`'s port `p` if nobody else has it; a clear refusal otherwise.
fn wanted(flag: &str, p: u16, taken: &[(String, u16)]) -> Result<u16> {
    if let Some((who, _)) = taken.iter().find(|(_, q)| *q == p) {
        bail!("{flag} {p}: {who} uses it; pick another {flag}, or leave it out to get a free one");
    }
    if !ports::is_free(p) {
        bail!("{flag} {p}: something already listens on port {p}; pick another {flag}, or leave it out to get a free one");
    }
    Ok(p)
}

/// The first free port from `from` that nobody in `taken` has.
fn free_from(flag: &str, from: u16, taken: &[(String, u16)]) -> Result<u16> {
    let taken: Vec<u16> = taken.iter().map(|(_, q)| *q).collect();
    ports::first_free(from, &taken)
        .ok_or_else(|| anyhow::anyhow!("no free TCP port from {from} up; free one, or pass {flag}"))
}

/// The Librarian's port (`--port` if it is free; otherwise 9093 if free, else the next free
/// one), its metrics port (the next free one) and the LMP's (`--lmp-port`, else 31179 or the
/// next free one; none with `--no-lmp`). The caller holds the [`PortLock`].
pub fn pick_ports(s: &Settings) -> Result<Ports> {
    let mut taken = ports_of_other_clusters(s);
    let librarian = match s.port {
        Some(p) => wanted("--port", p, &taken)?,
        None => free_from("--port", FIRST_PORT, &taken)?,
    };
    taken.push(("this cluster's Librarian".into(), librarian));
    let lmp = match (s.no_lmp, s.lmp_port) {
        (true, _) => None,
        (false, Some(p)) => Some(wanted("--lmp-port", p, &taken)?),
        (false, None) => Some(free_from("--lmp-port", FIRST_LMP_PORT, &taken)?),
    };
    taken.extend(lmp.map(|p| ("this cluster's LMP".to_string(), p)));
    // Nobody types the metrics port: take one the kernel hands out, so that it cannot collide
    // with a port another cluster (perhaps under another FAME_HOME) recorded and will take back
    // when it restarts its Librarian.
    let metrics = ephemeral_port(&taken)?;
    Ok(Ports {
        librarian,
        metrics,
        lmp,
    })
}

/// A free port from the kernel's ephemeral range, not in `taken`.
fn ephemeral_port(taken: &[(String, u16)]) -> Result<u16> {
    for _ in 0..16 {
        let p = std::net::TcpListener::bind(("0.0.0.0", 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| {
                anyhow::anyhow!("cannot find a free port for the Librarian's metrics: {e}")
            })?;
        if !taken.iter().any(|(_, t)| *t == p) {
            return Ok(p);
        }
    }
    anyhow::bail!("cannot find a free port for the Librarian's metrics")
}

/// A warning when the FAM file would not fit on its disk if it were ever filled (it is sparse,
/// so this is not refused).
fn disk_warning(dir: &Path, fam: u64) -> Option<String> {
    let mut probe: PathBuf = dir.to_path_buf();
    while !probe.exists() {
        probe = probe.parent()?.to_path_buf();
    }
    let st = rustix::fs::statvfs(&probe).ok()?;
    let free = st.f_bavail * st.f_frsize;
    (fam > free).then(|| {
        format!(
            "warning: --fam {} is more than the {} free on {}; the FAM file is sparse, so this only matters once the cluster fills it",
            format_size(fam),
            crate::size::format_size(free & !((1 << 20) - 1)),
            probe.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_counts() {
        assert!(check_nodes(1).is_ok() && check_nodes(80).is_ok());
        let e = check_nodes(0).unwrap_err().to_string();
        assert!(e.starts_with("--nodes 0:") && e.contains("1 to 80"), "{e}");
        assert!(check_nodes(81)
            .unwrap_err()
            .to_string()
            .starts_with("--nodes 81:"));
    }

    #[test]
    fn fam_sizes() {
        assert!(check_fam_size(1 << 30).is_ok() && check_fam_size(32 << 30).is_ok());
        let e = check_fam_size(3 << 30).unwrap_err().to_string();
        assert!(
            e.starts_with("--fam 3G:") && e.ends_with("try --fam 4G"),
            "{e}"
        );
        let e = check_fam_size(512 << 20).unwrap_err().to_string();
        assert!(
            e.starts_with("--fam 512M:") && e.ends_with("try --fam 1G"),
            "{e}"
        );
    }

    #[test]
    fn a_file_is_not_the_fuse_device() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = check_fuse(f.path()).unwrap_err().to_string();
        assert!(
            e.contains("is not the FUSE device") && e.contains("modprobe fuse"),
            "{e}"
        );
        let e = check_fuse(Path::new("/nonexistent/fuse"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is missing"), "{e}");
    }
}
