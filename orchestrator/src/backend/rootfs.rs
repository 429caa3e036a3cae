//! What the VM and container backends' node images are made of, taken from the host: busybox
//! (busybox-static), fame's binaries without their debug information, and the shared libraries
//! `ldd` names for them; plus the content hash that keys the image caches.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The host's busybox, or an error naming the package to install.
pub fn find_busybox() -> Result<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!("busybox is missing: a node's shell and tools come from it; install it with `apt-get install busybox-static`")
        })
}

/// The directories every node image has, parents first (each image adds its own).
pub const BASE_DIRS: &[&str] = &[
    "bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "run", "etc", "lfs", "var",
    "var/log", "lib", "root",
];

/// The directories above `rel` in an image, outermost first (`a/b/f` -> `a`, `a/b`).
pub fn parent_dirs(rel: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut parent = PathBuf::new();
    for c in rel.parent().into_iter().flat_map(|p| p.components()) {
        parent.push(c);
        out.push(parent.clone());
    }
    out
}

/// Host tools a node needs that busybox lacks (Debian's busybox has no `mountpoint`, which
/// scenarios use): image path, host path.
const HOST_TOOLS: &[(&str, &str)] = &[("usr/bin/mountpoint", "/usr/bin/mountpoint")];

/// [`HOST_TOOLS`] as (image path, host file), or an error naming the package to install.
pub fn host_tools() -> Result<Vec<(&'static str, PathBuf)>> {
    HOST_TOOLS
        .iter()
        .map(|(rel, host)| {
            let p = PathBuf::from(host);
            if !p.is_file() {
                bail!("{host} is missing: node images carry it; install it with `apt-get install util-linux`");
            }
            Ok((*rel, p))
        })
        .collect()
}

/// Fails with the fix when one of fame's binaries the image needs is missing.
pub fn require_binary(bin: &Path, what: &str) -> Result<()> {
    if !bin.is_file() {
        bail!(
            "{} is missing: the node image needs {what}; build it with `cargo build --workspace --bins` (or point --bin-dir at it)",
            bin.display()
        );
    }
    Ok(())
}

/// The shared libraries `ldd` lists for `bin` (none for a static binary).
pub fn libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .with_context(|| "cannot run ldd (package libc-bin)".to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut libs = vec![];
    for line in text.lines() {
        let line = line.trim();
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.trim().split(' ').next().unwrap_or(""),
            None => line.split(' ').next().unwrap_or(""),
        };
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

/// Adds `bins` (image path -> host file) and the libraries they link to, at their host paths, to
/// `files`.
pub fn add_with_libraries(
    files: &mut BTreeMap<PathBuf, PathBuf>,
    bins: &[(&str, &Path)],
) -> Result<()> {
    for (rel, host) in bins {
        files.insert(PathBuf::from(rel), host.to_path_buf());
        for lib in libraries(host)? {
            let rel = lib.strip_prefix("/").unwrap_or(&lib).to_path_buf();
            files.insert(rel, lib);
        }
    }
    Ok(())
}

/// `bin` without its debug information (a debug lfs-node is ~100 MB, most of it DWARF), or as
/// is if `strip` is not there.
pub fn stripped(bin: &Path, tmp: &Path) -> Result<Vec<u8>> {
    let out = tmp.join("stripped");
    let ok = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&out)
        .arg(bin)
        .status()
        .is_ok_and(|s| s.success());
    let data = if ok {
        std::fs::read(&out)?
    } else {
        std::fs::read(bin).with_context(|| format!("cannot read {}", bin.display()))?
    };
    let _ = std::fs::remove_file(&out);
    Ok(data)
}

/// [`content_key`], remembered in `FAME_HOME/cache/MEMO.key` against the inputs' paths, sizes,
/// inodes and modification times, so that an unchanged host does not read every binary again
/// (hashing a debug build's binaries takes over a second).
pub fn memoized_content_key(
    memo: &str,
    files: &BTreeMap<PathBuf, PathBuf>,
    more_files: &[&Path],
    extra: &[&str],
) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let mut signature = String::new();
    for p in files
        .values()
        .map(PathBuf::as_path)
        .chain(more_files.iter().copied())
    {
        let m = std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
        signature.push_str(&format!(
            "{}\t{}\t{}\t{}.{}\n",
            p.display(),
            m.len(),
            m.ino(),
            m.mtime(),
            m.mtime_nsec()
        ));
    }
    for r in files.keys() {
        signature.push_str(&format!("{}\n", r.display()));
    }
    for e in extra {
        signature.push_str(e);
        signature.push('\n');
    }
    let path = crate::cluster::cache_dir().join(format!("{memo}.key"));
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Some((key, sig)) = text.split_once('\n') {
            if sig == signature {
                return Ok(key.to_string());
            }
        }
    }
    let key = content_key(files, more_files, extra)?;
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, format!("{key}\n{signature}")).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
    Ok(key)
}

/// A hash of the content of every input: `sha256sum` reads the files (fast, C), and its listing
/// with the image paths and `extra` (templates, a format tag) is hashed again. 16 hex digits.
pub fn content_key(
    files: &BTreeMap<PathBuf, PathBuf>,
    more_files: &[&Path],
    extra: &[&str],
) -> Result<String> {
    let out = Command::new("sha256sum")
        .args(files.values())
        .args(more_files)
        .output()
        .context("cannot run sha256sum (package coreutils)")?;
    if !out.status.success() {
        bail!(
            "sha256sum of the image's inputs failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut all = Vec::new();
    all.extend_from_slice(&out.stdout);
    for r in files.keys() {
        all.extend_from_slice(r.as_os_str().as_encoded_bytes());
        all.push(0);
    }
    for e in extra {
        all.extend_from_slice(e.as_bytes());
        all.push(0);
    }
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run sha256sum")?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow!("sha256sum has no stdin"))?
        .write_all(&all)?;
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.chars().take(16).collect())
}

/// The applets the host's busybox has (`busybox --list`), each becomes `/bin/NAME` in an image.
pub fn busybox_applets(busybox: &Path) -> Result<Vec<String>> {
    let out = Command::new(busybox)
        .arg("--list")
        .output()
        .with_context(|| format!("cannot run {} --list", busybox.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && !a.contains('/'))
        .map(String::from)
        .collect())
}
