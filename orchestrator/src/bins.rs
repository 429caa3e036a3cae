//! Finding the binaries a cluster runs: `--bin-dir`, else `FAME_BIN_DIR`, else the directory of
//! the running `fame` (cargo puts every binary of the workspace in one target directory).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

pub const LIBRARIAN: &str = "librarian";
pub const BOOK_REGISTER: &str = "book-register";
pub const LFS_NODE: &str = "lfs-node";
/// The database checker, carried by container node images.
pub const FSCK: &str = "fsck-lfs";
/// The LMP (the Librarian's management portal), started unless `--no-lmp`.
pub const LMP: &str = "lmp";
/// The library nodes preload so that plain mmap of an /lfs file is FAM (`--mmap fam`).
pub const PRELOAD: &str = "liblfs_preload.so";
/// Everything `fame up` and `fame reload` run.
pub const ALL: &[&str] = &[BOOK_REGISTER, LIBRARIAN, LFS_NODE];

#[derive(Debug, Clone)]
pub struct Bins {
    pub dir: PathBuf,
    /// How `dir` was chosen, for error messages.
    why: &'static str,
}

impl Bins {
    /// Picks the directory; `flag` is `--bin-dir` (or the saved setting).
    pub fn locate(flag: Option<&Path>) -> Result<Bins> {
        if let Some(d) = flag {
            return Ok(Bins {
                dir: d.to_path_buf(),
                why: "given by --bin-dir",
            });
        }
        if let Some(d) = std::env::var_os("FAME_BIN_DIR").filter(|d| !d.is_empty()) {
            return Ok(Bins {
                dir: PathBuf::from(d),
                why: "given by FAME_BIN_DIR",
            });
        }
        let exe = std::env::current_exe().context("cannot find the fame executable")?;
        Ok(Bins {
            dir: exe.parent().unwrap_or(Path::new("/")).to_path_buf(),
            why: "the directory of the running fame; --bin-dir or FAME_BIN_DIR pick another",
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Fails with one line naming the first missing binary, where it was looked for and how to
    /// build it.
    pub fn check(&self, names: &[&str]) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        for name in names {
            let p = self.path(name);
            match std::fs::metadata(&p) {
                Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
                _ => bail!(
                    "{name} not found in {} ({}); build it with `cargo build --release` (or `cargo build -p {}`) in the workspace",
                    self.dir.display(),
                    self.why,
                    if *name == LFS_NODE { "lfs-node" } else { "librarian --bins" }
                ),
            }
        }
        Ok(())
    }

    /// Fails with the fix when the preload library of `--mmap fam` is missing.
    pub fn check_preload(&self) -> Result<()> {
        let p = self.path(PRELOAD);
        if !p.is_file() {
            bail!(
                "{PRELOAD} not found in {} ({}): `--mmap fam` (the default) preloads it into the nodes' programs; build it with `cargo build --release` (or `cargo build -p lfs-preload`), or use --mmap page-cache",
                self.dir.display(),
                self.why
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let b = Bins::locate(Some(dir.path())).unwrap();
        let e = b.check(ALL).unwrap_err().to_string();
        assert!(e.starts_with("book-register not found in"), "{e}");
        assert!(e.contains("--bin-dir") && e.contains("cargo build"), "{e}");
    }
}
