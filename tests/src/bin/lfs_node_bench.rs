//! lfs-node benchmark: a real Librarian and a real daemon on a FAM file, each figure given as a
//! ratio to a baseline measured in the same run on the FAM backing file itself.
//!
//! * sequential 1 MiB writes and reads through the mount vs pwrite/pread on the FAM file;
//! * memcpy through a direct map vs memcpy through a plain mmap of the FAM file;
//! * creating, writing 4 KiB to and closing 10,000 files;
//! * the daemon's RSS when idle (after start, and after the runs above).
//!
//! Usage: `lfs-node-bench [MiB per sequential pass, default 512] [files, default 10000]`

use fame_tests::*;
use lfs_direct::{DirectMap, MapOptions};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// (VmRSS, RssAnon) in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("RssAnon:"))
}

/// Best of `reps` runs, in MiB/s.
fn rate(mib: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
    }
    mib as f64 / best.as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(512);
    let nfiles: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let reps = 5;
    // Enough 8 MiB books for one book per small file plus the sequential file.
    // Three interleave groups of at most 8192 books each hold both small-file runs.
    let per_node = (2 * nfiles + mib / 8 + 64)
        .div_ceil(3)
        .next_multiple_of(4)
        .min(8192);
    let ini = format!(
        "[global]\nnode_count = 3\nbook_size_bytes = 8M\nnvm_size_per_node = {per_node}B\n"
    );
    // --fakezero: the many-files run would otherwise zero thousands of books at teardown.
    let c = Cluster::start(1, &ini, &["--fakezero"]);
    let node = c.node(0);
    let pid = node.pid().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let rss_start = rss_kib(pid);

    let buf: Vec<u8> = pattern(1, 0, MIB);
    let mut rbuf = vec![0u8; MIB];
    let fam = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&c.fam)
        .unwrap();
    // The baseline works on the top of the FAM file, clear of the books the file gets first.
    let fam_len = fam.metadata().unwrap().len();
    let base = fam_len - (mib * MIB) as u64;

    let plain_write = rate(mib, reps, || {
        for i in 0..mib {
            fam.write_all_at(&buf, base + (i * MIB) as u64).unwrap();
        }
    });
    let plain_read = rate(mib, reps, || {
        for i in 0..mib {
            fam.read_exact_at(&mut rbuf, base + (i * MIB) as u64)
                .unwrap();
        }
    });

    // Growing a file stores into FAM pages nobody touched yet (the sparse backing file allocates
    // them on first store): its baseline is one pwrite pass over untouched FAM pages.
    let fresh = base - (mib * MIB) as u64;
    let t = Instant::now();
    for i in 0..mib {
        fam.write_all_at(&buf, fresh + (i * MIB) as u64).unwrap();
    }
    let plain_fresh_write = mib as f64 / t.elapsed().as_secs_f64();

    let path = node.path("seq");
    File::create(&path).unwrap();
    // Books from interleave group 0 only, away from the baseline regions at the top of FAM.
    set_policy(&path, "LocalNode");
    // First pass grows the file (a Librarian round trip per write), later ones overwrite.
    let t = Instant::now();
    {
        let mut f = File::create(&path).unwrap();
        for _ in 0..mib {
            f.write_all(&buf).unwrap();
        }
    }
    let grow_write = mib as f64 / t.elapsed().as_secs_f64();
    let mount_write = rate(mib, reps, || {
        let mut f = OpenOptions::new().write(true).open(&path).unwrap();
        for _ in 0..mib {
            f.write_all(&buf).unwrap();
        }
    });
    let mount_read = rate(mib, reps, || {
        let mut f = File::open(&path).unwrap();
        for _ in 0..mib {
            f.read_exact(&mut rbuf).unwrap();
        }
    });

    // memcpy: plain mmap of the FAM file vs the direct map of the LFS file.
    // SAFETY: a shared map of `mib` MiB of the FAM file at `base`, a book-aligned offset inside
    // it; it is unmapped only when the process ends.
    let map = unsafe { memmap(&fam, base, mib * MIB) };
    let dm = DirectMap::open(
        &path,
        MapOptions {
            min_size: 0,
            read_only: false,
        },
    )
    .unwrap();
    let mut memcpy = |dst: *mut u8| {
        let w = rate(mib, reps, || {
            for i in 0..mib {
                // SAFETY: dst is a map of at least `mib` MiB (both callers pass one) and buf
                // holds MIB bytes of our own.
                unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), dst.add(i * MIB), MIB) };
            }
        });
        let r = rate(mib, reps, || {
            for i in 0..mib {
                // SAFETY: as above, reading: dst maps `mib` MiB and rbuf holds MIB bytes of our
                // own.
                unsafe { std::ptr::copy_nonoverlapping(dst.add(i * MIB), rbuf.as_mut_ptr(), MIB) };
            }
        });
        (w, r)
    };
    let (mmap_w, mmap_r) = memcpy(map);
    let (dm_w, dm_r) = memcpy(dm.as_ptr());
    drop(dm);

    // 10,000 small files.
    std::fs::create_dir(node.path("many")).unwrap();
    let small = pattern(2, 0, 4096);
    let t = Instant::now();
    for i in 0..nfiles {
        let mut f = File::create(node.path(&format!("many/f{i}"))).unwrap();
        f.write_all(&small).unwrap();
    }
    let many = t.elapsed();
    // The same with 4 processes' worth of concurrency (threads), each in its own directory.
    let t = Instant::now();
    std::thread::scope(|s| {
        for w in 0..4 {
            let dir = node.path(&format!("many{w}"));
            std::fs::create_dir(&dir).unwrap();
            let small = &small;
            s.spawn(move || {
                for i in 0..nfiles / 4 {
                    let mut f = File::create(dir.join(format!("f{i}"))).unwrap();
                    f.write_all(small).unwrap();
                }
            });
        }
    });
    let many4 = t.elapsed();
    // Idle: one heartbeat period, after which the daemon has let go of the FAM pages it touched.
    std::thread::sleep(Duration::from_secs(11));
    let rss_after = rss_kib(pid);

    println!("lfs-node benchmark: {mib} MiB per sequential pass, best of {reps}, 1 MiB requests");
    println!(
        "{:<44} {:>10} {:>10} {:>8}",
        "", "MiB/s", "baseline", "ratio"
    );
    let row = |name: &str, v: f64, b: f64| {
        println!("{name:<44} {v:>10.0} {b:>10.0} {:>7.0}%", 100.0 * v / b)
    };
    row(
        "write through the mount (overwrite)",
        mount_write,
        plain_write,
    );
    row(
        "write through the mount (growing the file)",
        grow_write,
        plain_fresh_write,
    );
    row("read through the mount", mount_read, plain_read);
    row("memcpy into the direct map", dm_w, mmap_w);
    row("memcpy from the direct map", dm_r, mmap_r);
    println!("baselines: pwrite/pread and mmap memcpy on the FAM backing file in the same run");
    println!("(the growing write's baseline is one pwrite pass over untouched pages of the sparse FAM file)");
    println!(
        "create + write 4 KiB + close, {nfiles} files: {:.2} s ({:.0} files/s)",
        many.as_secs_f64(),
        nfiles as f64 / many.as_secs_f64()
    );
    println!(
        "create + write 4 KiB + close, {nfiles} files by 4 threads: {:.2} s ({:.0} files/s)",
        many4.as_secs_f64(),
        nfiles as f64 / many4.as_secs_f64()
    );
    println!(
        "daemon RSS idle (VmRSS / of which anonymous): {:.1} / {:.1} MiB after start, {:.1} / {:.1} MiB 11 s after the runs above",
        rss_start.0 as f64 / 1024.0,
        rss_start.1 as f64 / 1024.0,
        rss_after.0 as f64 / 1024.0,
        rss_after.1 as f64 / 1024.0
    );
}

/// A plain shared mapping of part of the FAM file (the baseline for the direct map).
unsafe fn memmap(f: &File, off: u64, len: usize) -> *mut u8 {
    use std::os::fd::AsRawFd;
    let p = libc::mmap(
        std::ptr::null_mut(),
        len,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED,
        f.as_raw_fd(),
        off as i64,
    );
    assert_ne!(p, libc::MAP_FAILED, "mmap of the FAM file failed");
    p.cast()
}

fn set_policy(path: &std::path::Path, policy: &str) {
    let p = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let n = std::ffi::CString::new("user.LFS.AllocationPolicy").unwrap();
    // SAFETY: p and n are NUL-terminated C strings; the value pointer and length describe
    // `policy`'s bytes.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            policy.as_ptr().cast(),
            policy.len(),
            0,
        )
    };
    assert_eq!(r, 0, "setxattr: {}", std::io::Error::last_os_error());
}
