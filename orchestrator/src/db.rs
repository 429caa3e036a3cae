//! Read-only looks into a cluster's `librarian.db` (heartbeats and book counts) and snapshots
//! of it. Read straight from SQLite rather than asked of the Librarian, because every request
//! to the Librarian counts as a heartbeat of the node it names and would hide a dead node.

use anyhow::{Context, Result};
use lfs_proto::book_state;
use rusqlite::{Connection, OpenFlags};
use std::collections::HashMap;
use std::path::Path;

/// A node's row in `SOCs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// 1 once the node's daemon mounted (ACTIVE), 0 when it unmounted or never came.
    pub status: i64,
    /// Seconds since the epoch of the node's last request, if any.
    pub at: Option<i64>,
}

/// Book counts from the `books` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Books {
    pub total: u64,
    pub used: u64,
    /// Freed books still waiting to be zeroed.
    pub zombie: u64,
}

impl Books {
    pub fn free(&self) -> u64 {
        self.total.saturating_sub(self.used + self.zombie)
    }
}

pub fn open(db: &Path) -> Result<Connection> {
    let c = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", db.display()))?;
    c.busy_timeout(std::time::Duration::from_secs(2))?;
    Ok(c)
}

pub fn heartbeats(c: &Connection) -> Result<HashMap<i64, Heartbeat>> {
    let mut stmt = c.prepare_cached("SELECT node_id, status, heartbeat FROM SOCs")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            Heartbeat {
                status: r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                at: r.get::<_, Option<i64>>(2)?,
            },
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn books(c: &Connection) -> Result<Books> {
    let count = |state: i64| -> Result<u64> {
        Ok(c.query_row(
            "SELECT count(*) FROM books WHERE allocated = ?",
            [state],
            |r| r.get::<_, i64>(0),
        )? as u64)
    };
    let total: i64 = c.query_row("SELECT count(*) FROM books", [], |r| r.get(0))?;
    Ok(Books {
        total: total as u64,
        used: count(book_state::INUSE)?,
        zombie: count(book_state::ZOMBIE)?,
    })
}

/// A consistent copy of the database (SQLite online backup), safe while the Librarian writes.
pub fn snapshot(db: &Path, dest: &Path) -> Result<()> {
    let src = open(db)?;
    let mut dst =
        Connection::open(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let backup = rusqlite::backup::Backup::new(&src, &mut dst)?;
    backup
        .run_to_completion(256, std::time::Duration::from_millis(5), None)
        .with_context(|| format!("cannot copy {}", db.display()))?;
    Ok(())
}
