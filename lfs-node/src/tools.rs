//! Node-side tools (one binary goes into a VM): layout, policy, fill and verify.

use crate::options::Tool;
use crate::pattern;
use anyhow::{anyhow, bail, Context, Result};
use lfs_direct::{DirectMap, MapOptions};
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const POLICY_XATTR: &str = "user.LFS.AllocationPolicy";
const CHUNK: usize = 1 << 20;

/// Runs a tool; `Ok(false)` means "ran, but the check failed" (exit 1).
pub fn run(tool: Tool) -> Result<bool> {
    match tool {
        Tool::Layout { file } => layout(&file).map(|_| true),
        Tool::Count {
            file,
            adds,
            ready,
            go,
        } => count(&file, adds, ready.as_deref().zip(go.as_deref())).map(|_| true),
        Tool::Policy { file, name } => policy(&file, name.as_deref()).map(|_| true),
        Tool::Fill {
            file,
            seed,
            size,
            direct,
            mmap,
        } => fill(&file, seed, size, direct, mmap).map(|_| true),
        Tool::Verify {
            file,
            seed,
            size,
            direct,
            mmap,
        } => verify(&file, seed, size, direct, mmap),
    }
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| anyhow!("{} contains a NUL byte", p.display()))
}

fn get_xattr(p: &Path, name: &str) -> Result<String> {
    let (cp, cn) = (cpath(p)?, CString::new(name)?);
    let mut buf = vec![0u8; 4096];
    // SAFETY: cp and cn are NUL-terminated C strings and buf is writable for buf.len() bytes.
    let n = unsafe { libc::getxattr(cp.as_ptr(), cn.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        bail!(
            "cannot read {name} of {}: {e} (is it a file on an lfs-node mount?)",
            p.display()
        );
    }
    buf.truncate(n as usize);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn layout(p: &Path) -> Result<()> {
    use std::io::Write;
    let f = File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
    let l = lfs_direct::read_layout(&f, p).map_err(|e| anyhow!("{e}"))?;
    to_stdout("the layout", |out| {
        writeln!(
            out,
            "{}: {} bytes in {} book(s) of {} bytes; FAM device {}",
            p.display(),
            l.size,
            l.books.len(),
            l.book_size,
            l.fam_path
        )?;
        writeln!(
            out,
            "{:>5}  {:>18}  {:>3}  {:>8}  {:>18}  {:>13}",
            "book", "lza", "ig", "book_num", "fam_offset", "file_offset"
        )?;
        for (i, b) in l.books.iter().enumerate() {
            writeln!(
                out,
                "{i:>5}  {:#018x}  {:>3}  {:>8}  {:#018x}  {:>13}",
                b.lza,
                b.ig,
                b.book_num,
                b.fam_offset,
                i as u64 * l.book_size
            )?;
        }
        Ok(())
    })
}

/// Writes `what` to stdout through `write`. A reader that went away (`lfs-node layout F | head`)
/// has all it wanted: that is no error.
fn to_stdout(
    what: &str,
    write: impl FnOnce(&mut std::io::StdoutLock) -> std::io::Result<()>,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match write(&mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.with_context(|| format!("cannot write {what} to stdout")),
    }
}

fn policy(p: &Path, name: Option<&str>) -> Result<()> {
    if let Some(name) = name {
        let (cp, cn) = (cpath(p)?, CString::new(POLICY_XATTR)?);
        // SAFETY: cp and cn are NUL-terminated C strings; the value pointer and length describe
        // `name`'s bytes.
        let r = unsafe {
            libc::setxattr(
                cp.as_ptr(),
                cn.as_ptr(),
                name.as_ptr().cast(),
                name.len(),
                0,
            )
        };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            let list = get_xattr(p, "user.LFS.AllocationPolicyList").unwrap_or_default();
            bail!(
                "cannot set the allocation policy of {} to {name:?}: {e} (policies: {list})",
                p.display()
            );
        }
    }
    let policy = get_xattr(p, POLICY_XATTR)?;
    to_stdout("the policy", |out| writeln!(out, "{policy}"))
}

fn fill(p: &Path, seed: u64, size: u64, direct: bool, mmap: bool) -> Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(p)
        .with_context(|| format!("cannot open {} for writing", p.display()))?;
    if f.metadata()?.len() > size {
        f.set_len(size)
            .with_context(|| format!("cannot shrink {} to {size} bytes", p.display()))?;
    }
    if mmap {
        if size == 0 {
            return Ok(());
        }
        f.set_len(size)
            .with_context(|| format!("cannot grow {} to {size} bytes", p.display()))?;
        // SAFETY: a shared map of our own file; others may store into it too (shared memory).
        let mut m = unsafe { memmap2::MmapMut::map_mut(&f) }
            .with_context(|| format!("cannot mmap {}", p.display()))?;
        for (i, chunk) in m.chunks_mut(CHUNK).enumerate() {
            pattern::fill(seed, (i * CHUNK) as u64, chunk);
        }
        // No msync: in fame's nodes the map is FAM.
        return Ok(());
    }
    if direct {
        drop(f);
        let m = DirectMap::open(
            p,
            MapOptions {
                min_size: size,
                read_only: false,
            },
        )
        .map_err(|e| anyhow!("{e}"))?;
        // SAFETY: the direct map covers at least `size` bytes (the file was sized to it) and
        // lives until the end of this block; nothing else in this process aliases it.
        let dst = unsafe { std::slice::from_raw_parts_mut(m.as_ptr(), size as usize) };
        for (i, chunk) in dst.chunks_mut(CHUNK).enumerate() {
            pattern::fill(seed, (i * CHUNK) as u64, chunk);
        }
        return Ok(());
    }
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0u64;
    while pos < size {
        let n = (size - pos).min(CHUNK as u64) as usize;
        pattern::fill(seed, pos, &mut buf[..n]);
        f.write_all(&buf[..n])
            .with_context(|| format!("write to {} at offset {pos} failed", p.display()))?;
        pos += n as u64;
    }
    Ok(())
}

/// `lfs-node count`: what an unmodified program sharing a counter through plain mmap does.
fn count(p: &Path, adds: u64, barrier: Option<(&Path, &Path)>) -> Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(p)
        .with_context(|| format!("cannot open {}", p.display()))?;
    if f.metadata()?.len() < 8 {
        f.set_len(8)
            .with_context(|| format!("cannot grow {} to 8 bytes", p.display()))?;
    }
    // SAFETY: a shared map of our own file; the counter is only touched through atomics.
    let m = unsafe { memmap2::MmapOptions::new().len(8).map_mut(&f) }
        .with_context(|| format!("cannot mmap {}", p.display()))?;
    // SAFETY: the map is 8 bytes, page-aligned, and lives until the end of this function.
    let counter = unsafe { &*(m.as_ptr() as *const AtomicU64) };
    if let Some((ready, go)) = barrier {
        let _ = counter.load(Ordering::SeqCst);
        File::create(ready).with_context(|| format!("cannot create {}", ready.display()))?;
        while !go.exists() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    for _ in 0..adds {
        counter.fetch_add(1, Ordering::SeqCst);
    }
    let v = counter.load(Ordering::SeqCst);
    to_stdout("the counter", |out| writeln!(out, "{v}"))
}

fn report(p: &Path, seed: u64, at: u64, found: u8) -> bool {
    let mut e = [0u8];
    pattern::fill(seed, at, &mut e);
    eprintln!(
        "{}: first mismatch at offset {at}: expected {:#04x}, found {found:#04x}",
        p.display(),
        e[0]
    );
    false
}

fn verify(p: &Path, seed: u64, size: Option<u64>, direct: bool, mmap: bool) -> Result<bool> {
    let len = std::fs::metadata(p)
        .with_context(|| format!("cannot stat {}", p.display()))?
        .len();
    let size = size.unwrap_or(len);
    if len < size {
        eprintln!(
            "{}: is {len} bytes, shorter than the {size} bytes to verify",
            p.display()
        );
        return Ok(false);
    }
    if mmap && size > 0 {
        let f = File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
        // SAFETY: a read-only shared map; other nodes may store into it (shared memory).
        let m = unsafe { memmap2::MmapOptions::new().len(size as usize).map(&f) }
            .with_context(|| format!("cannot mmap {}", p.display()))?;
        for (i, chunk) in m.chunks(CHUNK).enumerate() {
            let pos = (i * CHUNK) as u64;
            if let Some(k) = pattern::first_mismatch(seed, pos, chunk) {
                return Ok(report(p, seed, pos + k as u64, chunk[k]));
            }
        }
        return Ok(true);
    }
    if direct {
        let m = DirectMap::open(
            p,
            MapOptions {
                min_size: 0,
                read_only: true,
            },
        )
        .map_err(|e| anyhow!("{e}"))?;
        // SAFETY: the direct map covers the file's `size` bytes and lives until the end of this
        // block; it is read only.
        let data = unsafe { std::slice::from_raw_parts(m.as_ptr(), size as usize) };
        for (i, chunk) in data.chunks(CHUNK).enumerate() {
            let pos = (i * CHUNK) as u64;
            if let Some(k) = pattern::first_mismatch(seed, pos, chunk) {
                return Ok(report(p, seed, pos + k as u64, chunk[k]));
            }
        }
        return Ok(true);
    }
    let mut f = File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0u64;
    while pos < size {
        let n = (size - pos).min(CHUNK as u64) as usize;
        f.read_exact(&mut buf[..n])
            .with_context(|| format!("read of {} at offset {pos} failed", p.display()))?;
        if let Some(k) = pattern::first_mismatch(seed, pos, &buf[..n]) {
            return Ok(report(p, seed, pos + k as u64, buf[k]));
        }
        pos += n as u64;
    }
    Ok(true)
}
