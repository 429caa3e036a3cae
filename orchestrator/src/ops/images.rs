//! `fame images`: the container backend's node images in the Docker engine.

use crate::backend::container::{self, engine::Engine, image};
use crate::bins::Bins;
use crate::cli::ImagesCmd;
use crate::cluster;
use crate::output::outln;
use anyhow::Result;
use std::collections::BTreeMap;

/// The image each registered container cluster uses, by tag.
fn users() -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for name in cluster::list_names().unwrap_or_default() {
        let Some(dir) = cluster::resolve(&name) else {
            continue;
        };
        if let Ok(cfg) = container::load_config(&dir) {
            out.entry(cfg.image).or_default().push(name);
        }
    }
    out
}

pub fn images(cmd: Option<ImagesCmd>) -> Result<()> {
    let engine = Engine::connect()?;
    match cmd.unwrap_or(ImagesCmd::Ls) {
        ImagesCmd::Ls => {
            let used = users();
            outln!(
                "{:<28} {:<13} {:>9} {:<20} USED BY",
                "IMAGE",
                "ID",
                "SIZE",
                "CREATED"
            );
            for i in image::list(&engine)? {
                let created = date(i.created);
                let by = used
                    .get(&i.tag)
                    .map(|v| v.join(","))
                    .unwrap_or_else(|| "-".into());
                outln!(
                    "{:<28} {:<13} {:>9} {:<20} {by}",
                    i.tag,
                    i.id,
                    format!("{:.1} MB", i.bytes.max(0) as f64 / 1e6),
                    created
                );
            }
        }
        ImagesCmd::Build { bin_dir } => {
            let bins = Bins::locate(bin_dir.as_deref())?;
            let img = image::ensure(&engine, &bins.dir)?;
            if img.built {
                eprintln!(
                    "built and imported {} ({:.1} MB) in {:.2} s",
                    img.tag,
                    img.bytes as f64 / 1e6,
                    img.seconds
                );
            } else {
                eprintln!("{} is in the engine already", img.tag);
            }
            outln!("{}", img.tag);
        }
        ImagesCmd::Prune => {
            let used = users();
            let mut removed = 0;
            for i in image::list(&engine)? {
                if used.contains_key(&i.tag) {
                    outln!("kept {} (used by {})", i.tag, used[&i.tag].join(","));
                    continue;
                }
                match image::remove(&engine, &i.tag) {
                    Ok(()) => {
                        removed += 1;
                        outln!("removed {}", i.tag);
                    }
                    // In use by a container fame does not know (e.g. a test's): say so, go on.
                    Err(e) => outln!("kept {}: {e:#}", i.tag),
                }
            }
            outln!("{removed} image(s) removed");
        }
    }
    Ok(())
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
fn date(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}
