//! `mmap-model FILE SEED OPS [READER]`: random sequences of mmap, munmap, mremap (grow, shrink, move),
//! stores through maps, pwrite and file growth on FILE, checked after every step against a model
//! of the file's bytes. Run by tests/tests/lfs_mmap.rs with `liblfs_preload.so` preloaded on an
//! LFS file (and, as a control, without it on a plain file): every map must show the file's
//! bytes, and what is stored through a map must be what `read(2)` returns, through READER (the same
//! file seen through another node's mount) if given.
//!
//! Only what the library promises is checked: bytes inside the file's size and inside the books
//! the file had when that part was mapped. The file only grows (shrinking a mapped file is not
//! promised anything).

use rand::{Rng, SeedableRng};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

const BOOK: usize = 8 << 20;
const PAGE: usize = 4096;

struct Map {
    addr: usize,
    len: usize,
    file_off: usize,
    /// Bytes of the file (from 0) that were backed by books when this map was made or grown:
    /// beyond, its pages fault.
    backed: usize,
}

fn fail(step: usize, what: String) -> ! {
    eprintln!("step {step}: {what}");
    std::process::exit(1)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 && args.len() != 5 {
        eprintln!("usage: mmap-model FILE SEED OPS [READER]");
        std::process::exit(2);
    }
    let seed: u64 = args[2].parse().expect("SEED");
    let ops: usize = args[3].parse().expect("OPS");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&args[1])
        .expect("FILE");
    let fd = file.as_raw_fd();
    let reader = args.get(4).map(|p| std::fs::File::open(p).expect("READER"));
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut model: Vec<u8> = vec![];
    let mut maps: Vec<Map> = vec![];
    let books = |size: usize| size.div_ceil(BOOK) * BOOK;
    for step in 0..ops {
        match rng.gen_range(0..100) {
            // Grow the file (new books are zero).
            0..=9 => {
                let to = model.len() + rng.gen_range(1..BOOK + BOOK / 2);
                if to <= 3 * BOOK {
                    file.set_len(to as u64).expect("grow");
                    model.resize(to, 0);
                }
            }
            // pwrite inside the file.
            10..=24 if !model.is_empty() => {
                let off = rng.gen_range(0..model.len());
                let n = rng.gen_range(1..=(model.len() - off).min(20_000));
                let data: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                file.write_all_at(&data, off as u64).expect("pwrite");
                model[off..off + n].copy_from_slice(&data);
            }
            // A new shared map of a page-aligned range, up to past the books.
            25..=44 => {
                let off = rng.gen_range(0..=books(model.len()) / PAGE) * PAGE;
                let len = rng.gen_range(1..=2 * BOOK);
                // SAFETY: a fresh mapping at an address the kernel picks.
                let p = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        len,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_SHARED,
                        fd,
                        off as libc::off_t,
                    )
                };
                if p == libc::MAP_FAILED {
                    fail(
                        step,
                        format!(
                            "mmap({len}, off {off}): {}",
                            std::io::Error::last_os_error()
                        ),
                    );
                }
                maps.push(Map {
                    addr: p as usize,
                    len: len.div_ceil(PAGE) * PAGE,
                    file_off: off,
                    backed: books(model.len()),
                });
            }
            // Store through a map, inside the file and the map's backed part.
            45..=64 if !maps.is_empty() => {
                let m = &maps[rng.gen_range(0..maps.len())];
                let lo = m.file_off;
                let hi = (m.file_off + m.len).min(model.len()).min(m.backed);
                if lo < hi {
                    let at = rng.gen_range(lo..hi);
                    let v: u8 = rng.gen();
                    // SAFETY: inside a live, writable map, on a page backed by a book.
                    unsafe { *((m.addr + at - m.file_off) as *mut u8) = v };
                    model[at] = v;
                }
            }
            // munmap a page-aligned part of a map.
            65..=74 if !maps.is_empty() => {
                let i = rng.gen_range(0..maps.len());
                let m = maps.remove(i);
                let pages = m.len / PAGE;
                let a = rng.gen_range(0..pages);
                let b = rng.gen_range(a + 1..=pages);
                // SAFETY: a range of our own live map.
                let rc = unsafe { libc::munmap((m.addr + a * PAGE) as *mut _, (b - a) * PAGE) };
                if rc != 0 {
                    fail(step, format!("munmap: {}", std::io::Error::last_os_error()));
                }
                if a > 0 {
                    maps.push(Map { len: a * PAGE, ..m });
                }
                if b < pages {
                    maps.push(Map {
                        addr: m.addr + b * PAGE,
                        len: (pages - b) * PAGE,
                        file_off: m.file_off + b * PAGE,
                        backed: m.backed,
                    });
                }
            }
            // mremap: grow (maps the file's books as they are now) or shrink, may move.
            75..=84 if !maps.is_empty() => {
                let i = rng.gen_range(0..maps.len());
                let new_len = rng.gen_range(1..=2 * BOOK).div_ceil(PAGE) * PAGE;
                let m = &mut maps[i];
                // SAFETY: our own live map.
                let p =
                    unsafe { libc::mremap(m.addr as *mut _, m.len, new_len, libc::MREMAP_MAYMOVE) };
                if p == libc::MAP_FAILED {
                    fail(
                        step,
                        format!(
                            "mremap({} -> {new_len}): {}",
                            m.len,
                            std::io::Error::last_os_error()
                        ),
                    );
                }
                // Pages kept keep their backing; added ones see today's books. One bound per
                // map: it rises only if the old map was backed to its end.
                if new_len > m.len && m.file_off + m.len <= m.backed {
                    m.backed = books(model.len());
                }
                m.addr = p as usize;
                m.len = new_len;
            }
            _ => {}
        }
        // Every map shows the file's bytes; read(2) shows the model.
        for (k, m) in maps.iter().enumerate() {
            let lo = m.file_off;
            let hi = (m.file_off + m.len).min(model.len()).min(m.backed);
            if lo >= hi {
                continue;
            }
            // SAFETY: inside a live map, on pages backed by books.
            let seen = unsafe { std::slice::from_raw_parts(m.addr as *const u8, hi - lo) };
            if seen != &model[lo..hi] {
                let first = seen
                    .iter()
                    .zip(&model[lo..hi])
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                fail(
                    step,
                    format!(
                        "map {k} (file {lo}..{hi}) differs from the file at {}",
                        lo + first
                    ),
                );
            }
        }
        // The whole file through read(2) now and then (it is up to 24 MiB).
        if step % 20 == 19 || step + 1 == ops {
            let mut back = vec![0u8; model.len()];
            reader
                .as_ref()
                .unwrap_or(&file)
                .read_exact_at(&mut back, 0)
                .expect("read");
            if back != model {
                let first = back
                    .iter()
                    .zip(&model)
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                fail(step, format!("read(2) differs from the model at {first}"));
            }
        }
    }
    println!(
        "mmap-model: {ops} steps, {} maps left, file {} bytes",
        maps.len(),
        model.len()
    );
}
