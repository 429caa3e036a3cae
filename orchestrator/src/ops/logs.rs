//! `fame logs`: where every log of a cluster is, and `--export`, a bundle of them with the INI,
//! the state and a consistent snapshot of the database, for a bug report.

use super::Loaded;
use crate::output::outln;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Every log of the cluster, as (label, path).
fn all_logs(c: &Loaded) -> Vec<(String, PathBuf)> {
    let mut logs: Vec<(String, PathBuf)> = [
        c.paths.fame_log(),
        c.paths.book_register_log(),
        c.paths.librarian_log(),
    ]
    .into_iter()
    .map(|p| {
        (
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            p,
        )
    })
    .collect();
    if c.state.lmp_port.is_some() {
        logs.push(("lmp.log".into(), c.paths.lmp_log()));
    }
    for node in &c.state.nodes {
        for path in c.backend.logs(node) {
            let file = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            logs.push((format!("{}/{file}", node.name), path));
        }
    }
    logs
}

pub fn logs(name: Option<&str>, export: Option<&Path>) -> Result<()> {
    let c = super::load(name)?;
    match export {
        None => {
            let logs = all_logs(&c);
            let width = logs.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
            for (label, path) in logs {
                let size = std::fs::metadata(&path)
                    .map(|m| m.len().to_string())
                    .unwrap_or_else(|_| "missing".into());
                outln!("{label:<width$} {:>10}  {}", size, path.display());
            }
            Ok(())
        }
        Some(parent) => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let out = parent.join(format!("{}-logs-{stamp}", c.name));
            std::fs::create_dir_all(&out)
                .with_context(|| format!("--export: cannot create {}", out.display()))?;
            let mut copied = 0;
            for (label, path) in all_logs(&c) {
                if path.exists() {
                    let dest = out.join(&label);
                    if let Some(p) = dest.parent() {
                        std::fs::create_dir_all(p)?;
                    }
                    std::fs::copy(&path, &dest)
                        .with_context(|| format!("cannot copy {}", path.display()))?;
                    copied += 1;
                }
            }
            for extra in [c.paths.ini(), c.paths.state()] {
                if let Some(f) = extra.file_name() {
                    std::fs::copy(&extra, out.join(f))
                        .with_context(|| format!("cannot copy {}", extra.display()))?;
                }
            }
            crate::db::snapshot(&c.paths.db(), &out.join("librarian.db"))?;
            outln!(
                "{}: {copied} logs, node_fame.ini, state.json and a snapshot of librarian.db",
                out.display()
            );
            Ok(())
        }
    }
}
