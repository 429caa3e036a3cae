//! Node status, heartbeats and file-system statistics.

use super::{as_int, int_param};
use crate::engine::{CmdError, CmdResult, Engine, Request};
use lfs_db::{self as schema, book_state};
use serde_json::{json, Map, Value};

pub fn version(e: &mut Engine) -> CmdResult {
    let v = schema::schema_version(&e.conn)?;
    if v != schema::SCHEMA_VERSION {
        return Err(CmdError::new(libc::EIO, format!("DB schema mismatch: {v}")));
    }
    Ok(json!(v))
}

pub fn get_fs_stats(e: &mut Engine) -> CmdResult {
    let g = &e.st.geo;
    let per_ig: Map<String, Value> = g
        .books_per_ig
        .iter()
        .map(|(ig, n, base)| (ig.to_string(), json!([n, base])))
        .collect();
    Ok(json!({
        "schema_version": schema::SCHEMA_VERSION,
        "book_size_bytes": g.book_size,
        "nvm_bytes_total": g.nvm_bytes_total,
        "books_total": g.books_total,
        "nodes_total": g.nodes_total,
        "books_used": e.st.pool.used,
        "books_per_IG": per_ig,
        "BIImode": g.bii_mode,
    }))
}

pub fn update_soc_status(e: &mut Engine, req: &Request) -> CmdResult {
    let status = int_param(req, "status")?;
    let num = |k: &str| req.params.get(k).and_then(as_int).unwrap_or(0);
    e.conn
        .prepare_cached(
            "UPDATE SOCs SET status=?, heartbeat=?, cpu_percent=?, rootfs_percent=?, \
             network_in=?, network_out=?, mem_percent=? WHERE node_id=?",
        )?
        .execute(rusqlite::params![
            status,
            crate::engine::now_secs(),
            num("cpu_percent"),
            num("rootfs_percent"),
            num("network_in"),
            num("network_out"),
            num("mem_percent"),
            req.node_id
        ])?;
    e.st.dirty = true;
    Ok(Value::Null)
}

/// A node's daemon sends status 1 when it mounts and 0 when it unmounts; either way, opens it held
/// before belong to a daemon that is gone, so they are released (the original kept them forever).
/// A mere reconnect does not send this, so open files survive a Librarian restart.
pub fn update_mc_status(e: &mut Engine, req: &Request) -> CmdResult {
    let status = int_param(req, "status")?;
    e.conn
        .prepare_cached("UPDATE FAModules SET status=? WHERE node_id=?")?
        .execute(rusqlite::params![status, req.node_id])?;
    e.st.dirty = true;
    release_node(e, req.node_id)?;
    Ok(Value::Null)
}

/// Drops every open of a node and hands the books of its unfinished zeroing shelves back as
/// orphan zombies (for `kill_zombie_books`).
pub fn release_node(e: &mut Engine, node_id: i64) -> Result<(), CmdError> {
    let handles: Vec<i64> =
        e.st.opens
            .iter()
            .filter(|(_, o)| o.node_id == node_id)
            .map(|(h, _)| *h)
            .collect();
    if !handles.is_empty() {
        tracing::info!("node {node_id}: releasing {} stale open(s)", handles.len());
    }
    for h in handles {
        e.st.delete_open(&e.conn, h)?;
    }
    let zeroing: Vec<i64> =
        e.st.zeroing_by
            .iter()
            .filter(|(_, n)| **n == node_id)
            .map(|(s, _)| *s)
            .collect();
    for z in zeroing {
        if !e.st.shelves.contains_key(&z) || e.st.opens_of(z) > 0 {
            e.st.zeroing_by.remove(&z);
            continue;
        }
        let n = e.st.books_of(z).len();
        e.st.release_books(&e.conn, z, n, book_state::ZOMBIE)?;
        e.st.delete_shelf(&e.conn, z)?;
    }
    Ok(())
}
