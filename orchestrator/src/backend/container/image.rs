//! The node image of the container backend, built offline from what the host has (no registry is
//! needed or asked): busybox with a link for each of its applets, `lfs-node` (the node daemon
//! and its tools), `librarian`, `book-register` and `fsck-lfs` (so a Librarian can run in a
//! container too), the shared libraries `ldd` names for them, and the entrypoint of
//! `templates/container/entrypoint.sh`. fame writes the tar archive itself and imports it into
//! the engine (`docker import`), tagged `fame-node:KEY` where KEY hashes the content of every
//! input: an unchanged host reuses the image, a rebuilt lfs-node makes a new one.
//! `fame images` lists them and prunes those no cluster uses.

use super::engine::{message, Engine};
use crate::backend::rootfs;
use crate::bins::{BOOK_REGISTER, FSCK, LFS_NODE, LIBRARIAN};
use anyhow::{anyhow, Context, Result};
use bollard::query_parameters::{CreateImageOptionsBuilder, ListImagesOptionsBuilder};
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The repository of node images.
pub const REPO: &str = "fame-node";
/// The label every node image carries (value: the format).
pub const LABEL: &str = "org.fame.image";
/// Bumped when the layout of the image changes without any input changing.
const FORMAT: &str = "fame-node-image-1";
const ENTRYPOINT_TEMPLATE: &str = include_str!("../../../../templates/container/entrypoint.sh");
/// Where the entrypoint is in the image.
pub const ENTRYPOINT: &str = "/etc/fame/entrypoint.sh";
/// The `PATH` of the image.
pub const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// A node image in the engine.
#[derive(Debug, Clone)]
pub struct NodeImage {
    /// `fame-node:KEY`.
    pub tag: String,
    /// Whether this call built and imported it (false: the engine had it).
    pub built: bool,
    pub seconds: f64,
    /// The size of the archive imported (0 when it was not built now).
    pub bytes: u64,
}

/// Where the image carries liblfs_preload.so.
pub const PRELOAD_IN_IMAGE: &str = "/usr/lib/fame/liblfs_preload.so";

/// The binaries of fame an image carries: image path, binary name.
const BINARIES: &[(&str, &str)] = &[
    ("usr/bin/lfs-node", LFS_NODE),
    ("usr/bin/librarian", LIBRARIAN),
    ("usr/bin/book-register", BOOK_REGISTER),
    ("usr/bin/fsck-lfs", FSCK),
];

pub fn render_entrypoint() -> Result<String> {
    let ctx = tera::Context::new();
    tera::Tera::one_off(ENTRYPOINT_TEMPLATE, &ctx, false)
        .map_err(|e| anyhow!("templates/container/entrypoint.sh: {e:?}"))
}

/// What goes into the image: image path -> host file, and the image's key.
fn inputs(bin_dir: &Path) -> Result<(BTreeMap<PathBuf, PathBuf>, String, String)> {
    let busybox = rootfs::find_busybox()?;
    let mut bins: Vec<(&str, PathBuf)> = vec![("bin/busybox", busybox)];
    bins.extend(rootfs::host_tools()?);
    for (rel, name) in BINARIES {
        let p = bin_dir.join(name);
        rootfs::require_binary(&p, name)?;
        bins.push((rel, p));
    }
    // The preload of `--mmap fam` (see /etc/ld.so.preload below), when it was built.
    let preload = bin_dir.join(crate::bins::PRELOAD);
    if preload.is_file() {
        bins.push((PRELOAD_IN_IMAGE.trim_start_matches('/'), preload));
    }
    let mut files = BTreeMap::new();
    let refs: Vec<(&str, &Path)> = bins.iter().map(|(r, p)| (*r, p.as_path())).collect();
    rootfs::add_with_libraries(&mut files, &refs)?;
    let entry = render_entrypoint()?;
    let key = rootfs::memoized_content_key("container-image", &files, &[], &[FORMAT, &entry])?;
    Ok((files, entry, key))
}

/// The tag of the image for the binaries in `bin_dir`, built and imported if the engine does not
/// have it yet.
pub fn ensure(engine: &Engine, bin_dir: &Path) -> Result<NodeImage> {
    let t = Instant::now();
    let (files, entry, key) = inputs(bin_dir)?;
    let tag = format!("{REPO}:{key}");
    if engine.run(engine.docker.inspect_image(&tag)).is_ok() {
        return Ok(NodeImage {
            tag,
            built: false,
            seconds: t.elapsed().as_secs_f64(),
            bytes: 0,
        });
    }
    let archive = build_archive(&files, &entry).context("cannot build the node image")?;
    let bytes = archive.len() as u64;
    let options = CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(REPO)
        .tag(&key)
        .changes(vec![
            format!("ENV PATH={PATH}"),
            format!("LABEL {LABEL}={FORMAT}"),
            "WORKDIR /".to_string(),
            format!("CMD [\"{ENTRYPOINT}\"]"),
        ])
        .build();
    engine
        .run(async {
            let mut stream = engine.docker.create_image(
                Some(options),
                Some(bollard::body_full(archive.into())),
                None,
            );
            while let Some(item) = stream.next().await {
                item?;
            }
            Ok::<_, bollard::errors::Error>(())
        })
        .map_err(|e| {
            anyhow!(
                "the Docker engine at {} did not import the node image {tag}: {}",
                engine.host,
                message(&e)
            )
        })?;
    Ok(NodeImage {
        tag,
        built: true,
        seconds: t.elapsed().as_secs_f64(),
        bytes,
    })
}

/// The image as a tar archive, in memory (a few tens of MB with stripped binaries).
fn build_archive(files: &BTreeMap<PathBuf, PathBuf>, entry: &str) -> Result<Vec<u8>> {
    let tmp = tempfile::Builder::new()
        .prefix("fame-image-")
        .tempdir()
        .context("cannot create a scratch directory for the node image")?;
    let mut tar = tar::Builder::new(Vec::new());
    let mut dirs: std::collections::BTreeSet<PathBuf> = rootfs::BASE_DIRS
        .iter()
        .chain(&["etc/fame", "var/log/fame", "lib64"])
        .map(PathBuf::from)
        .collect();
    dirs.extend(files.keys().flat_map(|rel| rootfs::parent_dirs(rel)));
    for d in &dirs {
        append_dir(&mut tar, d, 0o755)?;
    }
    append_dir(&mut tar, Path::new("tmp"), 0o1777)?;
    for (rel, host) in files {
        let mode = std::fs::metadata(host)
            .with_context(|| format!("cannot read {}", host.display()))?
            .permissions()
            .mode()
            & 0o777;
        let data = if rel.starts_with("usr/bin") {
            rootfs::stripped(host, tmp.path())?
        } else {
            std::fs::read(host).with_context(|| format!("cannot read {}", host.display()))?
        };
        append_file(&mut tar, rel, mode | 0o400, &data)?;
    }
    let busybox = files
        .get(Path::new("bin/busybox"))
        .ok_or_else(|| anyhow!("busybox is not among the image's files"))?;
    for applet in rootfs::busybox_applets(busybox)? {
        let link = PathBuf::from("bin").join(&applet);
        if files.contains_key(&link) || applet == "busybox" {
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        tar.append_link(&mut h, &link, "busybox")?;
    }
    append_file(
        &mut tar,
        Path::new("etc/fame/entrypoint.sh"),
        0o755,
        entry.as_bytes(),
    )?;
    append_file(
        &mut tar,
        Path::new("etc/passwd"),
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\n",
    )?;
    append_file(&mut tar, Path::new("etc/group"), 0o644, b"root:x:0:\n")?;
    if files.contains_key(Path::new(PRELOAD_IN_IMAGE.trim_start_matches('/'))) {
        append_file(
            &mut tar,
            Path::new("etc/ld.so.preload"),
            0o644,
            format!("{PRELOAD_IN_IMAGE}\n").as_bytes(),
        )?;
    }
    append_file(
        &mut tar,
        Path::new("etc/nsswitch.conf"),
        0o644,
        b"hosts: files dns\n",
    )?;
    Ok(tar.into_inner()?)
}

fn append_dir(tar: &mut tar::Builder<Vec<u8>>, rel: &Path, mode: u32) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(mode);
    h.set_size(0);
    tar.append_data(&mut h, rel, std::io::empty())?;
    Ok(())
}

fn append_file(tar: &mut tar::Builder<Vec<u8>>, rel: &Path, mode: u32, data: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(mode);
    h.set_size(data.len() as u64);
    tar.append_data(&mut h, rel, data)?;
    Ok(())
}

/// A node image the engine has.
#[derive(Debug, Clone)]
pub struct Listed {
    pub tag: String,
    pub id: String,
    pub bytes: i64,
    pub created: i64,
}

/// Every node image of fame in the engine, newest first.
pub fn list(engine: &Engine) -> Result<Vec<Listed>> {
    let mut filters = HashMap::new();
    filters.insert("label".to_string(), vec![LABEL.to_string()]);
    let options = ListImagesOptionsBuilder::new().filters(&filters).build();
    let images = engine
        .run(engine.docker.list_images(Some(options)))
        .map_err(|e| anyhow!("cannot list the images of {}: {}", engine.host, message(&e)))?;
    let mut out: Vec<Listed> = images
        .into_iter()
        .flat_map(|i| {
            let tags = if i.repo_tags.is_empty() {
                vec!["<none>".to_string()]
            } else {
                i.repo_tags.clone()
            };
            tags.into_iter().map(move |tag| Listed {
                tag,
                id: i
                    .id
                    .trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect(),
                bytes: i.size,
                created: i.created,
            })
        })
        .collect();
    out.sort_by_key(|l| std::cmp::Reverse(l.created));
    Ok(out)
}

/// Removes `tag` from the engine.
pub fn remove(engine: &Engine, tag: &str) -> Result<()> {
    engine
        .run(engine.docker.remove_image(
            tag,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        ))
        .map(drop)
        .map_err(|e| anyhow!("cannot remove the image {tag}: {}", message(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_has_busybox_links_the_entrypoint_and_writable_tmp() {
        let Ok(busybox) = rootfs::find_busybox() else {
            panic!("busybox-static is needed (scripts/setup.sh installs it)");
        };
        let mut files = BTreeMap::new();
        files.insert(PathBuf::from("bin/busybox"), busybox);
        let tar_bytes = build_archive(&files, "#!/bin/sh\n").unwrap();
        let mut ar = tar::Archive::new(&tar_bytes[..]);
        let mut seen = BTreeMap::new();
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            seen.insert(path, (e.header().entry_type(), e.header().mode().unwrap()));
        }
        assert_eq!(seen["bin/sh"].0, tar::EntryType::Symlink);
        assert_eq!(seen["etc/fame/entrypoint.sh"].1 & 0o111, 0o111);
        assert_eq!(seen["tmp"].1, 0o1777);
        assert!(seen.contains_key("lfs"));
    }
}
