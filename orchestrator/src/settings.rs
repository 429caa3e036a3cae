//! Merging `fame up`'s settings: flags, then `--config fame.toml`, then the configure script's
//! `FAME_*` variables, then defaults. Values are checked later, in the validate step, so that
//! every bad value gets the same kind of message wherever it came from.

use crate::cli::{UpArgs, DEFAULT_NAME};
use crate::size::parse_size;
use crate::state::Settings;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const DEFAULT_NODES: u32 = 4;
pub const DEFAULT_FAM: u64 = 32 << 30;
pub const DEFAULT_TIMEOUT: u64 = 60;

/// `fame.toml`: the flags of `fame up`, with `-` or `_` in names.
///
/// ```toml
/// name = "lab"
/// nodes = 8
/// fam = "64G"
/// book-size = "8M"
/// port = 9100
/// ```
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub name: Option<String>,
    pub dir: Option<PathBuf>,
    pub nodes: Option<u32>,
    pub fam: Option<String>,
    #[serde(alias = "book_size")]
    pub book_size: Option<String>,
    pub backend: Option<crate::backend::BackendKind>,
    pub port: Option<u16>,
    #[serde(alias = "bin_dir")]
    pub bin_dir: Option<PathBuf>,
    pub timeout: Option<u64>,
    #[serde(alias = "librarian_timeout")]
    pub librarian_timeout: Option<u64>,
    #[serde(alias = "fault_proxy")]
    pub fault_proxy: Option<bool>,
    pub hostbase: Option<String>,
    pub vcpus: Option<u32>,
    /// Per-node memory in KiB, like FAME_VDRAM.
    pub vdram: Option<u64>,
    /// Per-node memory like `--memory` (256M); wins over `vdram`.
    pub memory: Option<String>,
    pub accel: Option<String>,
    #[serde(alias = "guest_root")]
    pub guest_root: Option<String>,
    pub subnet: Option<String>,
    #[serde(alias = "lmp_port")]
    pub lmp_port: Option<u16>,
    #[serde(alias = "no_lmp")]
    pub no_lmp: Option<bool>,
    pub share: Option<Vec<PathBuf>>,
    pub mmap: Option<String>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--config {}: cannot read it", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "--config {}: {}; the keys are the flags of `fame up` (nodes, fam, book-size, name, dir, backend, port, bin-dir, timeout, lmp-port, no-lmp, ...)",
                path.display(),
                e.message()
            )
        })
    }
}

/// Reads `FAME_*` like the configure script: only non-empty values count.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_number<T: std::str::FromStr>(name: &str) -> Result<Option<T>> {
    match env(name) {
        None => Ok(None),
        Some(v) => match v.trim().parse() {
            Ok(n) => Ok(Some(n)),
            Err(_) => bail!("{name}={v}: not a whole number; fix or unset {name}"),
        },
    }
}

/// The merged settings of `fame up`.
pub fn resolve(args: &UpArgs) -> Result<Settings> {
    let file = match &args.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let name = args
        .name
        .clone()
        .or(file.name)
        .unwrap_or_else(|| DEFAULT_NAME.to_string());
    crate::cluster::check_name(&name).map_err(anyhow::Error::msg)?;
    let fam_file = env("FAME_FAM").map(PathBuf::from);
    let fam_text = args.fam.clone().or(file.fam);
    let fam_bytes = match (&fam_text, &fam_file) {
        (Some(t), _) => parse_size(t).map_err(|e| anyhow::anyhow!("--fam {e}; try --fam 32G"))?,
        // The configure script takes the size of an existing FAM file from the file.
        (None, Some(f)) => std::fs::metadata(f)
            .with_context(|| {
                format!("FAME_FAM={}: no such file; create it first (fallocate -l 32G FILE) or unset FAME_FAM", f.display())
            })?
            .len(),
        (None, None) => DEFAULT_FAM,
    };
    let book_size = match args.book_size.clone().or(file.book_size) {
        Some(t) => Some(
            parse_size(&t).map_err(|e| anyhow::anyhow!("--book-size {e}; try --book-size 8M"))?,
        ),
        None => None,
    };
    let no_lmp = args.no_lmp || file.no_lmp.unwrap_or(false);
    let lmp_port = args.lmp_port.or(file.lmp_port);
    if let (true, Some(p)) = (no_lmp, lmp_port) {
        bail!("--lmp-port {p} with --no-lmp (flags or fame.toml): a cluster without an LMP has no LMP port; drop one of them");
    }
    let dir = args
        .dir
        .clone()
        .or(file.dir)
        .or_else(|| env("FAME_DIR").map(PathBuf::from))
        .unwrap_or_else(|| crate::cluster::entry(&name));
    Ok(Settings {
        dir: absolute(&dir)?,
        name,
        nodes: args.nodes.or(file.nodes).unwrap_or(DEFAULT_NODES),
        fam_bytes,
        book_size,
        backend: args.backend.or(file.backend).unwrap_or_default(),
        port: args.port.or(file.port),
        hostbase: file
            .hostbase
            .or_else(|| env("FAME_HOSTBASE"))
            .unwrap_or_else(|| "node".into()),
        fam_file: fam_file.map(|f| absolute(&f)).transpose()?,
        vm: crate::state::VmSettings {
            vcpus: args
                .vcpus
                .or(file.vcpus)
                .map(Ok)
                .or_else(|| env_number("FAME_VCPUS").transpose())
                .transpose()?,
            vdram_kib: match args.memory.clone().or(file.memory) {
                Some(t) => Some(
                    parse_size(&t)
                        .map_err(|e| anyhow::anyhow!("--memory {e}; try --memory 256M"))?
                        / 1024,
                ),
                None => file
                    .vdram
                    .map(Ok)
                    .or_else(|| env_number("FAME_VDRAM").transpose())
                    .transpose()?,
            },
            accel: args.accel.clone().or(file.accel),
            guest_root: args.guest_root.clone().or(file.guest_root),
        },
        subnet: args.subnet.clone().or(file.subnet),
        bin_dir: args
            .bin_dir
            .clone()
            .or(file.bin_dir)
            .map(|d| absolute(&d))
            .transpose()?,
        timeout_secs: args.timeout.or(file.timeout).unwrap_or(DEFAULT_TIMEOUT),
        faults: crate::state::FaultSettings {
            librarian_timeout: args.librarian_timeout.or(file.librarian_timeout),
            proxy: args.fault_proxy || file.fault_proxy.unwrap_or(false),
        },
        lmp_port,
        no_lmp,
        mmap: args
            .mmap
            .clone()
            .or(file.mmap)
            .map(|m| crate::state::MmapMode::parse(&m))
            .transpose()?
            .unwrap_or_default(),
        share: shared_dirs(
            if args.share.is_empty() {
                file.share.unwrap_or_default()
            } else {
                args.share.clone()
            },
            &[
                ("the cluster directory", absolute(&dir)?),
                ("FAME_HOME", absolute(&crate::cluster::fame_home())?),
            ],
        )?,
    })
}

/// `--share` directories, absolute; each must be an existing directory, given once, and must not
/// hold any of `keep` (the cluster's own files: the nodes could read and change them).
fn shared_dirs(dirs: Vec<PathBuf>, keep: &[(&str, PathBuf)]) -> Result<Vec<PathBuf>> {
    // Compared with symlinks resolved where the path exists, so `--share /tmp/link` is caught.
    let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let mut seen: Vec<PathBuf> = vec![];
    for d in &dirs {
        let abs = absolute(d)?;
        if !abs.exists() {
            bail!(
                "--share {}: no such folder; create it first or drop the flag",
                d.display()
            );
        }
        if !abs.is_dir() {
            bail!(
                "--share {}: not a folder; share the folder that holds it, or drop the flag",
                d.display()
            );
        }
        let r = real(&abs);
        for (what, path) in keep {
            if real(path).starts_with(&r) {
                bail!(
                    "--share {}: it holds {what} {}, which the nodes must not see or change; share a folder beside it instead",
                    d.display(),
                    path.display()
                );
            }
        }
        if seen.iter().any(|s| real(s) == r) {
            bail!(
                "--share {}: given twice; give each folder once",
                d.display()
            );
        }
        seen.push(abs);
    }
    Ok(seen)
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("cannot make {} absolute", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("fame.toml");
        std::fs::write(
            &cfg,
            "name = \"lab\"\nnodes = 8\nfam = \"64G\"\nbook-size = \"16M\"\nport = 9200\n",
        )
        .unwrap();
        let args = UpArgs {
            nodes: Some(2),
            config: Some(cfg),
            dir: Some(dir.path().join("c")),
            ..UpArgs::default()
        };
        let s = resolve(&args).unwrap();
        assert_eq!(s.name, "lab");
        assert_eq!(s.nodes, 2);
        assert_eq!(s.fam_bytes, 64 << 30);
        assert_eq!(s.book_size, Some(16 << 20));
        assert_eq!(s.port, Some(9200));
        assert_eq!(s.dir, dir.path().join("c"));
    }

    #[test]
    fn unknown_keys_in_the_file_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("fame.toml");
        std::fs::write(&cfg, "nodez = 3\n").unwrap();
        let e = FileConfig::load(&cfg).unwrap_err().to_string();
        assert!(e.contains("nodez") && e.contains("fame.toml"), "{e}");
    }

    #[test]
    fn shares_must_not_hold_the_cluster_or_fame_home() {
        let home = tempfile::tempdir().unwrap();
        let cluster = home.path().join("c");
        std::fs::create_dir(&cluster).unwrap();
        let beside = tempfile::tempdir().unwrap();
        let keep = [
            ("the cluster directory", cluster.clone()),
            ("FAME_HOME", home.path().to_path_buf()),
        ];
        let ok = shared_dirs(vec![beside.path().into()], &keep).unwrap();
        assert_eq!(ok, vec![beside.path().to_path_buf()]);
        for (bad, rule) in [
            (home.path().to_path_buf(), "it holds the cluster directory"),
            (PathBuf::from("/"), "it holds the cluster directory"),
            (beside.path().join("missing"), "no such folder"),
        ] {
            let e = shared_dirs(vec![bad.clone()], &keep)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("--share {}: {rule}", bad.display())),
                "{e}"
            );
        }
        let link = beside.path().join("link");
        std::os::unix::fs::symlink(home.path(), &link).unwrap();
        let e = shared_dirs(vec![link], &keep).unwrap_err().to_string();
        assert!(e.contains("it holds"), "{e}");
        let twice = vec![beside.path().into(), beside.path().join(".")];
        let e = shared_dirs(twice, &keep).unwrap_err().to_string();
        assert!(e.contains("given twice"), "{e}");
    }

    #[test]
    fn bad_sizes_name_the_flag() {
        let args = UpArgs {
            fam: Some("lots".into()),
            dir: Some("/nonexistent/x".into()),
            ..UpArgs::default()
        };
        let e = resolve(&args).unwrap_err().to_string();
        assert!(e.starts_with("--fam \"lots\""), "{e}");
    }
}
