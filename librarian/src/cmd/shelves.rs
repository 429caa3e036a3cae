//! Files: lookup, create/open/close, sizing and destruction, and the pending-zero protocol.

use super::{bool_param, int_param, resolve, resolve_parent, set_owner, str_param};
use crate::engine::state::{Open, Shelf, S_IFBLK, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use crate::engine::{now_float, now_secs, CmdError, CmdResult, Engine, Request};
use crate::policy::{self, InterleaveRequest};
use lfs_db::{book_state, ROOT_SHELF_ID};
use lfs_proto::reply;
use serde_json::{json, Value};

/// Name prefix of shelves whose books are waiting to be zeroed by a node.
pub const PENDING_ZERO_PREFIX: &str = ".lfs_pending_zero_";

/// A name for a new zeroing shelf in the root directory: the prefix, `what`, the time and the
/// node's physloc. The physloc comes from the client's context, so only its characters that can
/// stand in a name are kept (a `/` would make a name no path can reach), and a name already taken
/// gets the next shelf id appended: every name in a directory stays unique.
pub fn zeroing_name(e: &Engine, what: &str, physloc: &str) -> String {
    let physloc: String = physloc
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-' | '.'))
        .take(32)
        .collect();
    let name = format!("{PENDING_ZERO_PREFIX}{what}_{}_{physloc}", now_float());
    match e.st.lookup(ROOT_SHELF_ID, &name) {
        None => name,
        Some(_) => format!("{name}_{}", e.st.next_shelf_id),
    }
}

/// Resolves a path and checks size/book-count consistency, as the original `get_shelf` does.
fn lookup(e: &Engine, path: &str) -> Result<i64, CmdError> {
    let id = resolve(&e.st, path)?;
    let s = e.st.shelf(id);
    if e.st.nbooks(s.size_bytes) != s.book_count {
        return Err(CmdError::new(
            libc::EBADF,
            format!("{} size metadata mismatch", s.name),
        ));
    }
    Ok(id)
}

pub fn get_shelf(e: &mut Engine, req: &Request) -> CmdResult {
    let id = lookup(e, str_param(req, "path")?)?;
    Ok(e.st.shelf(id).to_json(None))
}

fn open(e: &mut Engine, req: &Request, id: i64) -> CmdResult {
    let handle = e.st.insert_open(
        &e.conn,
        Open {
            shelf_id: id,
            node_id: req.node_id,
            pid: req.pid,
        },
    )?;
    Ok(e.st.shelf(id).to_json(Some(handle)))
}

pub fn open_shelf(e: &mut Engine, req: &Request) -> CmdResult {
    let id = lookup(e, str_param(req, "path")?)?;
    open(e, req, id)
}

/// The mode a new file gets from `create_shelf`'s `mode`: 0 is `S_IFREG | 0666`, permission bits
/// alone are a regular file. Only regular files and the block-device shelves that the original's
/// client makes through `mknod` are files with books; a directory or a symlink made here would lack
/// what `mkdir` and `symlink` give them (link counts, a target), and the other kinds have no
/// meaning for a shelf, so they are refused.
fn file_mode(mode: i64) -> Result<i64, CmdError> {
    if mode == 0 {
        return Ok(S_IFREG | 0o666);
    }
    if !(0..=S_IFMT | 0o7777).contains(&mode) {
        return Err(CmdError::new(
            libc::EINVAL,
            format!(
                "create_shelf: mode {mode:#o} is not a file mode (file type and permission bits, \
                 at most 0o177777)"
            ),
        ));
    }
    match mode & S_IFMT {
        0 => Ok(mode | S_IFREG),
        S_IFREG | S_IFBLK => Ok(mode),
        kind => {
            let use_instead = match kind {
                S_IFDIR => "make directories with mkdir",
                S_IFLNK => "make symlinks with symlink",
                _ => "create_shelf makes regular files (S_IFREG) and block-device shelves (S_IFBLK) only",
            };
            Err(CmdError::new(
                libc::EINVAL,
                format!("create_shelf: mode {mode:#o} is not a file mode: {use_instead}"),
            ))
        }
    }
}

/// POSIX create: opens the path if it exists, else creates a regular file with the default policy.
/// A directory is not opened: EISDIR, as `open(2)` with `O_CREAT` answers.
pub fn create_shelf(e: &mut Engine, req: &Request) -> CmdResult {
    let path = str_param(req, "path")?;
    let mode = file_mode(int_param(req, "mode")?)?;
    match resolve(&e.st, path) {
        Ok(id) if e.st.shelf(id).is_dir() => {
            return Err(CmdError::new(
                libc::EISDIR,
                format!("{path} is a directory"),
            ))
        }
        Ok(id) => return open(e, req, id),
        Err(err) if err.errno != libc::ENOENT => return Err(err),
        Err(_) => {}
    }
    let (parent, name) = resolve_parent(&e.st, path)?;
    let mut file = Shelf::new(name, mode, parent, 1);
    set_owner(&e.st, req, parent, &mut file)?;
    let id = e.st.insert_shelf(&e.conn, file)?;
    let default = e.st.default_policy.clone();
    for (x, v) in [
        ("user.LFS.AllocationPolicy", default.as_str()),
        ("user.LFS.InterleaveRequest", ""),
        ("user.LFS.InterleaveRequestPos", ""),
    ] {
        e.st.insert_xattr(&e.conn, id, x, v)?;
    }
    open(e, req, id)
}

/// Never fails, as in the original: closing an unknown handle is a no-op.
pub fn close_shelf(e: &mut Engine, req: &Request) -> CmdResult {
    let id = int_param(req, "id")?;
    let handle = int_param(req, "open_handle")?;
    if let Some(o) = e.st.opens.get(&handle) {
        if o.shelf_id == id && o.node_id == req.node_id {
            e.st.delete_open(&e.conn, handle)?;
        }
    }
    Ok(json!({
        "id": id, "creator_id": 0, "size_bytes": 0, "book_count": 0, "ctime": 0, "mtime": 0,
        "name": 0, "mode": 0, "parent_id": 0, "link_count": 0, "bos": [], "open_handle": null,
    }))
}

pub fn list_shelf_books(e: &mut Engine, req: &Request) -> CmdResult {
    let id = lookup(e, str_param(req, "path")?)?;
    Ok(books_json(e, id))
}

/// A shelf's books, as `list_shelf_books` replies them.
fn books_json(e: &Engine, id: i64) -> Value {
    Value::Array(
        e.st.books_of(id)
            .iter()
            .map(|&b| e.st.book_json(b))
            .collect(),
    )
}

pub fn list_open_shelves(e: &mut Engine) -> CmdResult {
    Ok(Value::Array(
        e.st.opens
            .iter()
            .map(|(&id, o)| {
                reply::to_value(&reply::Open {
                    id,
                    shelf_id: o.shelf_id,
                    node_id: o.node_id,
                    pid: o.pid,
                })
            })
            .collect(),
    ))
}

pub fn get_shelf_path(e: &mut Engine, req: &Request) -> CmdResult {
    let name = str_param(req, "name")?;
    let parent = int_param(req, "parent_id")?;
    let Some(mut id) = e.st.lookup(parent, name) else {
        return Err(CmdError::new(
            libc::ENOENT,
            format!("no shelf named \"{name}\" in directory {parent}"),
        ));
    };
    if id == ROOT_SHELF_ID {
        return Ok(json!("/."));
    }
    let mut parts = vec![];
    while id != ROOT_SHELF_ID {
        let s = e.st.shelf(id);
        parts.push(s.name.clone());
        id = s.parent_id;
        if parts.len() > 4096 || !e.st.shelves.contains_key(&id) {
            return Err(CmdError::new(
                libc::EIO,
                format!("shelf \"{name}\" is not connected to the root (run fsck-lfs)"),
            ));
        }
    }
    parts.reverse();
    Ok(json!(format!("/{}", parts.join("/"))))
}

/// Only files hold books: a directory or symlink with books would keep them when it is removed.
fn has_books(s: &Shelf, path: &str) -> Result<(), CmdError> {
    match s.mode & S_IFMT {
        S_IFREG | S_IFBLK => Ok(()),
        S_IFDIR => Err(CmdError::new(
            libc::EISDIR,
            format!("{path} is a directory: only files have a size"),
        )),
        _ => Err(CmdError::new(
            libc::EINVAL,
            format!("{path} is not a regular file: only files have a size"),
        )),
    }
}

/// Checks that a shelf's books agree with its counters before changing its size.
fn check_bos(e: &Engine, id: i64) -> Result<(), CmdError> {
    let s = e.st.shelf(id);
    let n = e.st.books_of(id).len() as i64;
    if n != s.book_count {
        return Err(CmdError::new(
            libc::EREMOTEIO,
            format!("{} book count mismatch", s.name),
        ));
    }
    if e.st.nbooks(s.size_bytes) != s.book_count {
        return Err(CmdError::new(
            libc::EREMOTEIO,
            format!("{} size mismatch", s.name),
        ));
    }
    Ok(())
}

/// An optional flag: absent means false.
fn flag(req: &Request, name: &str) -> Result<bool, CmdError> {
    match req.params.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(_) => bool_param(req, name),
    }
}

/// Sets a shelf's size. Optional `grow_only`: a size not above the current one changes nothing
/// (a writer that only needs the file to reach `size_bytes` need not read its size first).
/// Optional `with_books`: the reply also lists the shelf's books, as `list_shelf_books` would.
/// With either, the reply also has the resulting `size_bytes` and `book_count`; without them it is
/// the original's `{"z_shelf_path": ...}`.
pub fn resize_shelf(e: &mut Engine, req: &Request) -> CmdResult {
    let path = str_param(req, "path")?;
    let want_id = int_param(req, "id")?;
    let new_size = int_param(req, "size_bytes")?;
    let zero_enabled = bool_param(req, "zero_enabled")?;
    let grow_only = flag(req, "grow_only")?;
    let with_books = flag(req, "with_books")?;
    let z_path = resize(e, req, path, want_id, new_size, zero_enabled, grow_only)?;
    if !grow_only && !with_books {
        return Ok(json!({ "z_shelf_path": z_path }));
    }
    // `resize` checked that `path` names shelf `want_id`.
    let id = want_id;
    let s = e.st.shelf(id);
    let mut reply = json!({
        "z_shelf_path": z_path,
        "size_bytes": s.size_bytes,
        "book_count": s.book_count,
    });
    if with_books {
        reply["books"] = books_json(e, id);
    }
    Ok(reply)
}

fn resize(
    e: &mut Engine,
    req: &Request,
    path: &str,
    want_id: i64,
    new_size: i64,
    zero_enabled: bool,
    grow_only: bool,
) -> Result<Value, CmdError> {
    let id = resolve(&e.st, path)?;
    if id != want_id {
        return Err(CmdError::new(libc::ENOENT, format!("no such shelf {path}")));
    }
    has_books(e.st.shelf(id), path)?;
    check_bos(e, id)?;
    if new_size < 0 {
        return Err(CmdError::new(libc::EINVAL, format!("Bad size {new_size}")));
    }
    let shelf = e.st.shelf(id).clone();
    if new_size == shelf.size_bytes || (grow_only && new_size < shelf.size_bytes) {
        return Ok(Value::Null);
    }
    if new_size < shelf.size_bytes {
        let others =
            e.st.opens
                .values()
                .any(|o| o.shelf_id == id && (o.node_id, o.pid) != (req.node_id, req.pid));
        if others {
            return Err(CmdError::new(
                libc::EMFILE,
                "Cannot shrink multiply-opened shelf",
            ));
        }
    }
    let old_count = shelf.book_count;
    let new_count = e.st.nbooks(new_size);
    let mut z_path = Value::Null;
    if new_count > old_count {
        grow(e, req, &shelf, (new_count - old_count) as usize)?;
    } else if new_count < old_count {
        let freeing = shelf.name.starts_with(PENDING_ZERO_PREFIX) && new_count == 0;
        let physloc = match (&req.physloc, e.st.nodes.get(&req.node_id)) {
            (Some(p), _) => p.clone(),
            (None, Some(n)) => n.physloc(),
            (None, None) => "0_0_0".into(),
        };
        let zshelf = if !freeing && zero_enabled {
            // Keep the whole name within 255 bytes however long the file's own name is.
            let short = &shelf.name[..shelf.name.floor_char_boundary(128)];
            let name = zeroing_name(e, &format!("{short}_{}", shelf.parent_id), &physloc);
            let zid = e.st.insert_shelf(
                &e.conn,
                Shelf::new(&name, S_IFREG | 0o666, ROOT_SHELF_ID, 0),
            )?;
            e.st.zeroing_by.insert(zid, req.node_id);
            z_path = json!(format!("/{name}"));
            Some(zid)
        } else {
            None
        };
        for _ in new_count..old_count {
            let Some(idx) = e.st.pop_book(&e.conn, id)? else {
                break;
            };
            let state = if freeing && e.st.pool.book(idx).state() == book_state::ZOMBIE {
                book_state::FREE
            } else {
                book_state::ZOMBIE
            };
            e.st.set_book_state(&e.conn, idx, state)?;
            if let Some(zid) = zshelf {
                e.st.push_book(&e.conn, zid, idx)?;
            }
        }
        if let Some(zid) = zshelf {
            let mut z = e.st.shelf(zid).clone();
            z.book_count = e.st.books_of(zid).len() as i64;
            z.size_bytes = z.book_count * e.st.geo.book_size;
            e.st.save_shelf(&e.conn, z)?;
        }
        if freeing {
            e.st.zeroing_by.remove(&id);
        }
    }
    let mut s = e.st.shelf(id).clone();
    s.size_bytes = new_size;
    s.book_count = new_count;
    s.mtime = now_secs();
    e.st.save_shelf(&e.conn, s)?;
    Ok(z_path)
}

/// Allocates `n` books under the shelf's policy and appends them; nothing changes on failure.
fn grow(e: &mut Engine, req: &Request, shelf: &Shelf, n: usize) -> Result<(), CmdError> {
    let policy_name =
        e.st.get_xattr(&e.conn, shelf.id, "user.LFS.AllocationPolicy")?
            .unwrap_or_else(|| "None".into());
    if !policy::is_policy(&policy_name) {
        return Err(CmdError::new(
            libc::EINVAL,
            format!("Unknown policy \"{policy_name}\""),
        ));
    }
    let request = if policy_name == "RequestIG" {
        let groups: Vec<i64> =
            e.st.get_xattr(&e.conn, shelf.id, "user.LFS.InterleaveRequest")?
                .unwrap_or_default()
                .chars()
                .map(|c| c as i64)
                .collect();
        let pos =
            e.st.get_xattr(&e.conn, shelf.id, "user.LFS.InterleaveRequestPos")?
                .and_then(|p| p.trim().parse::<usize>().ok())
                .filter(|&p| p < groups.len())
                .unwrap_or(0);
        Some(InterleaveRequest { groups, pos })
    } else {
        None
    };
    let picked = policy::allocate(
        &mut e.st,
        &policy_name,
        req.node_id,
        n,
        request.as_ref(),
        &mut e.rng,
    )
    .map_err(|err| {
        if err.errno == libc::ENOSPC && err.msg == "out of space" {
            CmdError::new(libc::ENOSPC, format!("out of space for \"{}\"", shelf.name))
        } else {
            err
        }
    })?;
    let result = (|| -> Result<(), CmdError> {
        for &idx in &picked {
            e.st.set_book_state(&e.conn, idx, book_state::INUSE)?;
            e.st.push_book(&e.conn, shelf.id, idx)?;
        }
        if let Some(r) = &request {
            let pos = (r.pos + n) % r.groups.len();
            e.st.put_xattr(
                &e.conn,
                shelf.id,
                "user.LFS.InterleaveRequestPos",
                &pos.to_string(),
            )?;
        }
        Ok(())
    })();
    if result.is_err() {
        e.st.pool.unreserve(&picked);
    }
    result
}

/// Removes a file. Books still on it become ZOMBIE and are handed out for zeroing by
/// `kill_zombie_books` (the original left them ZOMBIE until an offline fsck).
pub fn destroy_shelf(e: &mut Engine, req: &Request) -> CmdResult {
    let path = str_param(req, "path")?;
    let id = lookup(e, path)?;
    let shelf = e.st.shelf(id).clone();
    if shelf.is_dir() {
        return Err(CmdError::new(
            libc::EISDIR,
            format!("{path} is a directory: use rmdir"),
        ));
    }
    if e.st.opens_of(id) > 0 {
        return Err(CmdError::new(
            libc::EBUSY,
            format!("{} has active opens", shelf.name),
        ));
    }
    check_bos(e, id)?;
    let n = e.st.books_of(id).len();
    e.st.release_books(&e.conn, id, n, book_state::ZOMBIE)?;
    e.st.delete_shelf(&e.conn, id)?;
    Ok(shelf.to_json(None))
}
