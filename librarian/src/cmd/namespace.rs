//! Directories, symlinks, renames, times and modes.
//!
//! Fixed here, against the original: mkdir and symlink of an existing path give EEXIST, mkdir with
//! mode 0 makes a directory, rmdir of a file gives ENOTDIR, a directory cannot be moved under
//! itself, and renaming a directory within one parent leaves the parent's link count alone.

use super::shelves::PENDING_ZERO_PREFIX;
use super::{int_param, resolve, resolve_parent, set_owner, str_param};
use crate::engine::state::{Shelf, S_IFBLK, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use crate::engine::{now_secs, CmdError, CmdResult, Engine, Request};
use lfs_db::{book_state, GARBAGE_SHELF_ID, LOST_FOUND_SHELF_ID, ROOT_SHELF_ID};
use serde_json::{json, Value};

/// `.`, `..`, then the children in id order.
pub fn list_shelves(e: &mut Engine, req: &Request) -> CmdResult {
    let id = resolve(&e.st, str_param(req, "path")?)?;
    let me = e.st.shelf(id);
    let parent = e.st.shelves.get(&me.parent_id).unwrap_or(me);
    let mut out = Vec::with_capacity(2);
    let mut dot = me.to_json(None);
    dot["name"] = json!(".");
    let mut dotdot = parent.to_json(None);
    dotdot["name"] = json!("..");
    out.push(dot);
    out.push(dotdot);
    out.extend(e.st.children(id).map(|c| e.st.shelf(c).to_json(None)));
    Ok(Value::Array(out))
}

fn exists(path: &str) -> CmdError {
    CmdError::new(libc::EEXIST, format!("{path} already exists"))
}

/// Adds `delta` to a directory's link count (and bumps its mtime, as the original's modify does).
fn adjust_links(e: &mut Engine, dir: i64, delta: i64) -> Result<(), CmdError> {
    let mut d = e.st.shelf(dir).clone();
    d.link_count += delta;
    d.mtime = now_secs();
    e.st.save_shelf(&e.conn, d)?;
    Ok(())
}

pub fn mkdir(e: &mut Engine, req: &Request) -> CmdResult {
    let path = str_param(req, "path")?;
    let mode = int_param(req, "mode")?;
    if resolve(&e.st, path).is_ok() {
        return Err(exists(path));
    }
    let (parent, name) = resolve_parent(&e.st, path)?;
    let perm = if mode & 0o7777 == 0 {
        0o777
    } else {
        mode & 0o7777
    };
    let mut dir = Shelf::new(name, S_IFDIR | perm, parent, 2);
    set_owner(&e.st, req, parent, &mut dir)?;
    let id = e.st.insert_shelf(&e.conn, dir)?;
    adjust_links(e, parent, 1)?;
    Ok(e.st.shelf(id).to_json(None))
}

pub fn rmdir(e: &mut Engine, req: &Request) -> CmdResult {
    let path = str_param(req, "path")?;
    let id = resolve(&e.st, path)?;
    if [GARBAGE_SHELF_ID, ROOT_SHELF_ID, LOST_FOUND_SHELF_ID].contains(&id) {
        return Err(CmdError::new(
            if id == ROOT_SHELF_ID {
                libc::EBUSY
            } else {
                libc::EPERM
            },
            format!("{path} is reserved and cannot be removed"),
        ));
    }
    let s = e.st.shelf(id).clone();
    if !s.is_dir() {
        return Err(CmdError::new(
            libc::ENOTDIR,
            format!("{path} is not a directory"),
        ));
    }
    if e.st.has_children(id) {
        return Err(CmdError::new(libc::ENOTEMPTY, "Directory is not empty"));
    }
    e.st.delete_shelf(&e.conn, id)?;
    adjust_links(e, s.parent_id, -1)?;
    Ok(s.to_json(None))
}

pub fn symlink(e: &mut Engine, req: &Request) -> CmdResult {
    let path = str_param(req, "path")?;
    let target = str_param(req, "target")?;
    if target.is_empty() || target.contains('\0') {
        // What symlink(2) refuses (ENOENT, EINVAL): no path can be read back from it.
        return Err(CmdError::new(
            if target.is_empty() {
                libc::ENOENT
            } else {
                libc::EINVAL
            },
            format!("{path}: a symlink target must be a non-empty path without NUL"),
        ));
    }
    if resolve(&e.st, path).is_ok() {
        return Err(exists(path));
    }
    let (parent, name) = resolve_parent(&e.st, path)?;
    let mut link = Shelf::new(name, S_IFLNK | 0o777, parent, 1);
    set_owner(&e.st, req, parent, &mut link)?;
    let id = e.st.insert_shelf(&e.conn, link)?;
    e.st.insert_link(&e.conn, id, target)?;
    Ok(e.st.shelf(id).to_json(None))
}

pub fn readlink(e: &mut Engine, req: &Request) -> CmdResult {
    let path = str_param(req, "path")?;
    let id = resolve(&e.st, path)?;
    match e.st.links.get(&id) {
        Some(t) if e.st.shelf(id).is_symlink() => Ok(json!(t)),
        _ => Err(CmdError::new(
            libc::EINVAL,
            format!("{path} is not a symlink"),
        )),
    }
}

pub fn set_am_time(e: &mut Engine, req: &Request) -> CmdResult {
    let id = resolve(&e.st, str_param(req, "path")?)?;
    let mtime = req.params.get("mtime").and_then(super::as_int).unwrap_or(0);
    let mut s = e.st.shelf(id).clone();
    s.mtime = if mtime == 0 { now_secs() } else { mtime };
    e.st.save_shelf(&e.conn, s)?;
    Ok(Value::Null)
}

/// Sets the permission bits (ours; the original had no way to change a mode).
pub fn chmod(e: &mut Engine, req: &Request) -> CmdResult {
    let id = resolve(&e.st, str_param(req, "path")?)?;
    let mode = int_param(req, "mode")?;
    let mut s = e.st.shelf(id).clone();
    s.mode = (s.mode & S_IFMT) | (mode & 0o7777);
    s.ctime = now_secs();
    e.st.save_shelf(&e.conn, s.clone())?;
    Ok(s.to_json(None))
}

/// Sets the owner and group of a path (ours); -1 leaves one as it is. Who may is the node
/// kernel's check (the daemon mounts with `default_permissions`), as with `chmod`.
pub fn chown(e: &mut Engine, req: &Request) -> CmdResult {
    let id = resolve(&e.st, str_param(req, "path")?)?;
    let mut s = e.st.shelf(id).clone();
    for (name, field) in [("uid", &mut s.uid), ("gid", &mut s.gid)] {
        match int_param(req, name)? {
            -1 => {}
            n => {
                *field = u32::try_from(n).map_err(|_| {
                    CmdError::new(
                        libc::EINVAL,
                        format!(
                        "{name} {n} is not a user or group id (0 to 4294967295, or -1 to keep it)"
                    ),
                    )
                })?
            }
        }
    }
    s.ctime = now_secs();
    e.st.save_shelf(&e.conn, s.clone())?;
    Ok(s.to_json(None))
}

/// Renames a shelf. Renaming a file to the pending-zero prefix turns its books into zombies that
/// the renaming node zeroes (the unlink protocol of the FUSE client).
pub fn rename_shelf(e: &mut Engine, req: &Request) -> CmdResult {
    let path = str_param(req, "path")?;
    let newpath = str_param(req, "newpath")?;
    let id = resolve(&e.st, path)?;
    if let Ok(target) = resolve(&e.st, newpath) {
        if target == id {
            return Ok(e.st.shelf(id).to_json(None));
        }
        return Err(CmdError::new(
            libc::EEXIST,
            format!("Duplicate path found during rename {newpath}"),
        ));
    }
    let (new_parent, new_name) = resolve_parent(&e.st, newpath)?;
    if [GARBAGE_SHELF_ID, ROOT_SHELF_ID, LOST_FOUND_SHELF_ID].contains(&id) {
        return Err(CmdError::new(
            libc::EBUSY,
            format!("{path} cannot be renamed"),
        ));
    }
    let old = e.st.shelf(id).clone();
    if old.name.starts_with(PENDING_ZERO_PREFIX)
        && !old.is_dir()
        && !new_name.starts_with(PENDING_ZERO_PREFIX)
    {
        // Its books are zombies that a node is zeroing: under another name they would be books
        // of an ordinary file that are not in use.
        return Err(CmdError::new(
            libc::EBUSY,
            format!("{path} is being zeroed and cannot be renamed"),
        ));
    }
    if old.is_dir() {
        let mut p = new_parent;
        while p != ROOT_SHELF_ID {
            if p == id {
                return Err(CmdError::new(
                    libc::EINVAL,
                    format!("cannot move directory {path} inside itself ({newpath})"),
                ));
            }
            p = e.st.shelf(p).parent_id;
        }
    }
    let zeroing = new_name.starts_with(PENDING_ZERO_PREFIX) && !old.is_dir();
    let books: Vec<_> = if zeroing {
        e.st.books_of(id).to_vec()
    } else {
        vec![]
    };
    if let Some(&bad) = books.iter().find(|&&b| {
        e.st.pool.book(b).state() == book_state::FREE
            || e.st.pool.book(b).state() == book_state::OFFLINE
    }) {
        return Err(CmdError::new(
            libc::EUCLEAN,
            format!(
                "Book allocation {} -> {}",
                e.st.pool.book(bad).state(),
                book_state::ZOMBIE
            ),
        ));
    }
    let mut s = old.clone();
    s.name = new_name.to_string();
    s.parent_id = new_parent;
    s.mtime = now_secs();
    if zeroing && s.mode & S_IFMT == S_IFBLK {
        s.mode = S_IFREG | (s.mode & 0o7777);
    }
    e.st.save_shelf(&e.conn, s)?;
    if old.is_dir() && old.parent_id != new_parent {
        adjust_links(e, old.parent_id, -1)?;
        adjust_links(e, new_parent, 1)?;
    }
    for b in books {
        e.st.set_book_state(&e.conn, b, book_state::ZOMBIE)?;
    }
    if zeroing {
        e.st.zeroing_by.insert(id, req.node_id);
    }
    Ok(e.st.shelf(id).to_json(None))
}
