//! The pending-zero protocol (spec §1.9), done in FAM directly instead of `dd` through the mount:
//! a freed file's books sit on a `.lfs_pending_zero_*` shelf as ZOMBIEs; a background thread
//! zeroes each book in the FAM mapping, truncates the shelf to 0 (the Librarian then turns the
//! books FREE, the only way back to FREE) and destroys it. `--fakezero` skips the zeroing writes.

use crate::fam::Fam;
use crate::geometry::{Book, Geometry, UnknownGroup};
use crate::link::{Link, LinkError};
use lfs_proto::request::{DestroyShelf, GetShelf, KillZombieBooks, ListShelfBooks, ResizeShelf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Name prefix of shelves waiting to be zeroed; hidden from directory listings.
pub const PENDING_ZERO_PREFIX: &str = ".lfs_pending_zero_";

#[derive(Clone)]
pub struct Zeroer {
    tx: Arc<Mutex<Sender<String>>>,
    pending: Arc<AtomicUsize>,
}

impl Zeroer {
    /// Starts the zeroing thread.
    pub fn spawn(link: Arc<Link>, fam: Arc<Fam>, geo: Arc<Geometry>, fake: bool) -> Zeroer {
        let (tx, rx) = channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let z = Zeroer {
            tx: Arc::new(Mutex::new(tx)),
            pending: pending.clone(),
        };
        let me = z.clone();
        std::thread::Builder::new()
            .name("zeroing".into())
            .spawn(move || me.run(rx, &link, &fam, &geo, fake))
            .expect("spawn zeroing thread");
        z
    }

    /// Queues a pending-zero shelf (an absolute path in the LFS namespace).
    pub fn queue(&self, path: String) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.tx.lock().unwrap().send(path).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Shelves queued or being zeroed.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Asks the Librarian for orphaned zombie books (destroyed with books, or left behind by a node
    /// that went away) and queues them.
    pub fn collect_zombies(&self, link: &Link) {
        match link.call(&KillZombieBooks {}) {
            Ok(z) => {
                if let Some(p) = z.z_shelf_path {
                    tracing::info!("zeroing orphaned zombie books on {p}");
                    self.queue(p);
                }
            }
            Err(e) => tracing::warn!("kill_zombie_books failed: {e}"),
        }
    }

    fn run(&self, rx: Receiver<String>, link: &Link, fam: &Fam, geo: &Geometry, fake: bool) {
        while let Ok(path) = rx.recv() {
            let mut delay = Duration::from_millis(200);
            loop {
                match zero_one(&path, link, fam, geo, fake) {
                    Ok(()) => break,
                    Err(ZeroError::Link(e)) if e.errno() == libc::EIO && !e.is_bad_reply() => {
                        // The Librarian is away: the books stay ZOMBIE until it is back.
                        tracing::warn!("zeroing {path} waits for the Librarian: {e}");
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                    Err(e) => {
                        // Refused, or a reply or book that cannot be used: asking again would get
                        // the same. The books stay ZOMBIE (never freed unzeroed).
                        tracing::error!("zeroing {path} failed: {e}");
                        break;
                    }
                }
            }
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Why a pending-zero shelf was not done.
#[derive(Debug, thiserror::Error)]
enum ZeroError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Fam(#[from] UnknownGroup),
}

fn zero_one(
    path: &str,
    link: &Link,
    fam: &Fam,
    geo: &Geometry,
    fake: bool,
) -> Result<(), ZeroError> {
    let shelf = match link.call(&GetShelf {
        path: path.to_string(),
    }) {
        Ok(s) => s,
        Err(e) if e.errno() == libc::ENOENT => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if !fake {
        let books = link.call(&ListShelfBooks {
            path: path.to_string(),
        })?;
        for b in books.iter().map(Book::from) {
            let off = geo.fam_offset(&b)?;
            if off + geo.book_size <= fam.len() {
                fam.zero(off, geo.book_size);
            }
        }
    }
    link.call(&ResizeShelf {
        path: path.to_string(),
        id: shelf.id as u64,
        size_bytes: 0,
        zero_enabled: true,
        grow_only: false,
        with_books: false,
    })?;
    match link.call(&DestroyShelf {
        path: path.to_string(),
    }) {
        Ok(_) => Ok(()),
        Err(e) if e.errno() == libc::ENOENT => Ok(()),
        Err(e) => Err(e.into()),
    }
}
