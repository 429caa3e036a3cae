//! Book queries (used by tools and tests, not by the FUSE client) and zombie reclamation.

use super::{as_int, int_param};
use crate::engine::state::{Shelf, S_IFREG};
use crate::engine::{CmdError, CmdResult, Engine, Request};
use lfs_db::{book_state, ROOT_SHELF_ID};
use serde_json::{json, Value};

pub fn get_book(e: &mut Engine, req: &Request) -> CmdResult {
    let id = int_param(req, "id")?;
    Ok(e.st
        .pool
        .find(id)
        .map_or(Value::Null, |b| e.st.book_json(b)))
}

pub fn get_book_all(e: &mut Engine) -> CmdResult {
    Ok(Value::Array(
        e.st.pool.all().map(|(i, _)| e.st.book_json(i)).collect(),
    ))
}

/// Books in states FREE, INUSE or ZOMBIE of the given groups, by id, at most 9,999. Takes a list as
/// the original does, and also a single group (which crashed the original).
pub fn get_book_ig(e: &mut Engine, req: &Request) -> CmdResult {
    let groups: Vec<i64> = match req.params.get("intlv_group") {
        Some(Value::Array(a)) => a.iter().filter_map(as_int).collect(),
        Some(v) => as_int(v).into_iter().collect(),
        None => {
            return Err(CmdError::new(
                libc::EINVAL,
                "get_book_ig: missing parameter 'intlv_group' (a list of group values)",
            ))
        }
    };
    let out: Vec<Value> =
        e.st.pool
            .all()
            .filter(|(i, b)| {
                b.state() <= book_state::ZOMBIE && groups.contains(&e.st.pool.intlv_group(*i))
            })
            .take(9999)
            .map(|(i, _)| e.st.book_json(i))
            .collect();
    Ok(Value::Array(out))
}

/// Every book of one group with the shelf that holds it, if any.
pub fn get_book_info_all(e: &mut Engine, req: &Request) -> CmdResult {
    let group = int_param(req, "intlv_group")?;
    let mut owner = std::collections::HashMap::new();
    for (&shelf, list) in &e.st.bos {
        for (seq, &b) in list.iter().enumerate() {
            owner.insert(b, (shelf, seq as i64 + 1));
        }
    }
    let out = e
        .st
        .pool
        .all()
        .filter(|(i, _)| e.st.pool.intlv_group(*i) == group)
        .map(|(i, b)| {
            let s = owner
                .get(&i)
                .and_then(|(id, seq)| e.st.shelves.get(id).map(|s| (s, *seq)));
            json!({
                "id": b.id, "allocated": b.state(), "attributes": 0, "intlv_group": group,
                "shelf_id": s.map(|(s, _)| s.id), "seq_num": s.map(|(_, q)| q),
                "creator_id": s.map(|(s, _)| s.creator_id), "size_bytes": s.map(|(s, _)| s.size_bytes),
                "book_count": s.map(|(s, _)| s.book_count), "ctime": s.map(|(s, _)| s.ctime),
                "mtime": s.map(|(s, _)| s.mtime), "name": s.map(|(s, _)| s.name.clone()),
            })
        })
        .collect();
    Ok(Value::Array(out))
}

/// Books released with nobody zeroing them (destroyed with books, shrunk without zeroing, or
/// abandoned by a node that went away) are put on a new zeroing shelf for the calling node, which
/// zeroes them and truncates the shelf to 0, returning them to the free pool. The original's
/// `kill_zombie_books` did nothing, so such books leaked until an offline fsck.
pub fn kill_zombie_books(e: &mut Engine, req: &Request) -> CmdResult {
    let limit = req
        .params
        .get("max_books")
        .and_then(as_int)
        .filter(|&n| n > 0)
        .unwrap_or(1024) as usize;
    let zombies = e.st.orphan_zombies(limit);
    if zombies.is_empty() {
        return Ok(json!({ "z_shelf_path": null }));
    }
    let physloc = req
        .physloc
        .clone()
        .or_else(|| e.st.nodes.get(&req.node_id).map(|n| n.physloc()))
        .unwrap_or_default();
    let name = super::shelves::zeroing_name(e, "zombies", &physloc);
    let zid = e.st.insert_shelf(
        &e.conn,
        Shelf {
            size_bytes: zombies.len() as i64 * e.st.geo.book_size,
            book_count: zombies.len() as i64,
            ..Shelf::new(&name, S_IFREG | 0o666, ROOT_SHELF_ID, 0)
        },
    )?;
    for b in zombies {
        e.st.push_book(&e.conn, zid, b)?;
    }
    e.st.zeroing_by.insert(zid, req.node_id);
    Ok(json!({ "z_shelf_path": format!("/{name}") }))
}
