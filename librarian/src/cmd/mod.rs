//! Command handlers, one module per family, and what they share: parameter access and path
//! resolution.

pub mod books;
pub mod namespace;
pub mod nodes;
pub mod shelves;
pub mod xattrs;

use crate::engine::state::{Shelf, State};
use crate::engine::{CmdError, Engine, Outcome, Reply, Request};
use lfs_db::ROOT_SHELF_ID;
use lfs_proto::Command;
use serde_json::Value;

/// Runs one request. The match is exhaustive over the command table ([`Command`]), so a command
/// cannot be added to the wire without a handler.
pub fn dispatch(e: &mut Engine, req: &Request) -> Reply {
    let value = match req.command {
        Command::Version => nodes::version(e),
        Command::GetFsStats => nodes::get_fs_stats(e),
        Command::UpdateNodeSocStatus => nodes::update_soc_status(e, req),
        Command::UpdateNodeMcStatus => nodes::update_mc_status(e, req),
        Command::SendOob => {
            let msg = req.params.get("msg").cloned().unwrap_or(Value::Null);
            return Ok(Outcome {
                value: serde_json::json!({ "value": req.node_id }),
                oob: Some(msg),
            });
        }
        Command::GetShelf => shelves::get_shelf(e, req),
        Command::CreateShelf => shelves::create_shelf(e, req),
        Command::OpenShelf => shelves::open_shelf(e, req),
        Command::CloseShelf => shelves::close_shelf(e, req),
        Command::ListShelfBooks => shelves::list_shelf_books(e, req),
        Command::ListOpenShelves => shelves::list_open_shelves(e),
        Command::ResizeShelf => shelves::resize_shelf(e, req),
        Command::DestroyShelf => shelves::destroy_shelf(e, req),
        Command::GetShelfPath => shelves::get_shelf_path(e, req),
        Command::ListShelves => namespace::list_shelves(e, req),
        Command::RenameShelf => namespace::rename_shelf(e, req),
        Command::Mkdir => namespace::mkdir(e, req),
        Command::Rmdir => namespace::rmdir(e, req),
        Command::Symlink => namespace::symlink(e, req),
        Command::Readlink => namespace::readlink(e, req),
        Command::SetAmTime => namespace::set_am_time(e, req),
        Command::Chmod => namespace::chmod(e, req),
        Command::Chown => namespace::chown(e, req),
        Command::GetXattr => xattrs::get_xattr(e, req),
        Command::ListXattrs => xattrs::list_xattrs(e, req),
        Command::SetXattr => xattrs::set_xattr(e, req),
        Command::RemoveXattr => xattrs::remove_xattr(e, req),
        Command::GetBook => books::get_book(e, req),
        Command::GetBookAll => books::get_book_all(e),
        Command::GetBookIg => books::get_book_ig(e, req),
        Command::GetBookInfoAll => books::get_book_info_all(e, req),
        Command::KillZombieBooks => books::kill_zombie_books(e, req),
        // The original raises NotImplementedError here, which its engine turns into a null success.
        Command::GetShelfZaddr => Ok(Value::Null),
    }?;
    Ok(Outcome { value, oob: None })
}

// ---- parameters ----

fn missing(req: &Request, name: &str, what: &str) -> CmdError {
    CmdError::new(
        libc::EINVAL,
        format!("{}: missing parameter '{name}' ({what})", req.command),
    )
}

fn mistyped(req: &Request, name: &str, what: &str, got: &Value) -> CmdError {
    CmdError::new(
        libc::EINVAL,
        format!(
            "{}: parameter '{name}' must be {what}, got {}",
            req.command,
            short(got)
        ),
    )
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}...", &s[..s.floor_char_boundary(60)])
    } else {
        s
    }
}

pub fn str_param<'a>(req: &'a Request, name: &str) -> Result<&'a str, CmdError> {
    match req.params.get(name) {
        None => Err(missing(req, name, "a string")),
        Some(Value::String(s)) => Ok(s),
        Some(v) => Err(mistyped(req, name, "a string", v)),
    }
}

/// An integer parameter; like the original's `int()`, a numeric string is accepted too.
pub fn int_param(req: &Request, name: &str) -> Result<i64, CmdError> {
    match req.params.get(name) {
        None => Err(missing(req, name, "an integer")),
        Some(v) => as_int(v).ok_or_else(|| mistyped(req, name, "an integer", v)),
    }
}

/// Gives `shelf`, about to be made in directory `parent`, its owner: the maker's `uid` and
/// `gid` (ours, sent by our node daemon for a maker that is not root; absent is root, as for
/// everything the original's clients make), except that in a setgid directory the group is the
/// directory's and a new directory is setgid too, as on a local file system.
pub fn set_owner(
    st: &State,
    req: &Request,
    parent: i64,
    shelf: &mut Shelf,
) -> Result<(), CmdError> {
    let id = |name: &str| match req.params.get(name) {
        None => Ok(0),
        Some(v) => as_int(v)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| mistyped(req, name, "a user or group id (0 to 4294967295)", v)),
    };
    (shelf.uid, shelf.gid) = (id("uid")?, id("gid")?);
    let dir = st.shelf(parent);
    if dir.mode & S_ISGID != 0 {
        shelf.gid = dir.gid;
        if shelf.is_dir() {
            shelf.mode |= S_ISGID;
        }
    }
    Ok(())
}

/// The set-group-ID bit of a mode.
const S_ISGID: i64 = 0o2000;

pub fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(*b as i64),
        _ => None,
    }
}

pub fn bool_param(req: &Request, name: &str) -> Result<bool, CmdError> {
    match req.params.get(name) {
        None => Err(missing(req, name, "true or false")),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64() != Some(0)),
        Some(v) => Err(mistyped(req, name, "true or false", v)),
    }
}

// ---- paths ----

/// Splits a path into components, dropping empty ones, so `a`, `/a` and `//a/` are the same and
/// root-relative paths without a leading slash work (the FUSE client relies on it).
pub fn components(path: &str) -> Vec<&str> {
    path.split('/').filter(|c| !c.is_empty()).collect()
}

fn enoent(path: &str) -> CmdError {
    CmdError::new(libc::ENOENT, format!("no such shelf {path}"))
}

/// Resolves a path to a shelf id. Missing components give ENOENT and a component under a
/// non-directory gives ENOTDIR (the original answered both with "INTERNAL CODING ERROR", errno 0).
pub fn resolve(st: &State, path: &str) -> Result<i64, CmdError> {
    let mut cur = ROOT_SHELF_ID;
    for comp in components(path) {
        if !st.shelf(cur).is_dir() {
            return Err(CmdError::new(
                libc::ENOTDIR,
                format!("{path}: a component before \"{comp}\" is not a directory"),
            ));
        }
        cur = st.lookup(cur, comp).ok_or_else(|| enoent(path))?;
    }
    Ok(cur)
}

/// Resolves everything but the last component, for commands that create a name. Returns the parent
/// directory id and the new name.
pub fn resolve_parent<'a>(st: &State, path: &'a str) -> Result<(i64, &'a str), CmdError> {
    let comps = components(path);
    let Some((last, dirs)) = comps.split_last() else {
        return Err(CmdError::new(
            libc::EEXIST,
            format!("\"{path}\" is the root directory"),
        ));
    };
    let parent_path = dirs.join("/");
    let parent = resolve(st, &parent_path)?;
    if !st.shelf(parent).is_dir() {
        return Err(CmdError::new(
            libc::ENOTDIR,
            format!("{path}: parent is not a directory"),
        ));
    }
    if last.len() > 255 {
        return Err(CmdError::new(
            libc::ENAMETOOLONG,
            format!("name \"{last}\" is longer than 255 bytes"),
        ));
    }
    if last.contains('\0') {
        return Err(CmdError::new(libc::EINVAL, "names cannot contain NUL"));
    }
    if *last == "." || *last == ".." {
        // Every directory has these two already; a shelf of that name could never be looked up.
        return Err(CmdError::new(
            libc::EINVAL,
            format!("{path}: \"{last}\" cannot be the name of a file or directory"),
        ));
    }
    Ok((parent, last))
}
