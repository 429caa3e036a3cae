//! Extended attributes: ordinary ones are stored as they come; `user.LFS.*` ones are the allocation
//! policy and interleave controls, checked and partly computed.

use super::{resolve, str_param};
use crate::engine::{now_secs, CmdError, CmdResult, Engine, Request};
use crate::policy::{self, POLICIES};
use lfs_db as schema;
use lfs_proto::reply;
use serde_json::Value;

const PREFIX_HELP: &str = "LFS xattrs are of form \"user.LFS.xxx\"";

/// Splits an xattr name; returns the LFS attribute (third element) for `*.LFS.*` names.
fn lfs_attr(name: &str) -> Result<Option<&str>, CmdError> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() < 2 {
        return Err(CmdError::new(
            libc::EINVAL,
            format!("xattr \"{name}\" has no namespace: use a name such as user.{name}"),
        ));
    }
    if parts[1] != "LFS" {
        return Ok(None);
    }
    if parts.len() != 3 {
        return Err(CmdError::new(libc::EINVAL, PREFIX_HELP));
    }
    Ok(Some(parts[2]))
}

fn bad_lfs(name: &str) -> CmdError {
    CmdError::new(libc::ENOTSUP, format!("Bad LFS attribute \"{name}\""))
}

pub fn get_xattr(e: &mut Engine, req: &Request) -> CmdResult {
    let path = str_param(req, "path")?;
    let name = str_param(req, "xattr")?;
    let attr = lfs_attr(name)?;
    let id = resolve(&e.st, path)?;
    let value: Option<String> = match attr {
        None => e.st.get_xattr(&e.conn, id, name)?,
        Some("AllocationPolicyList") => Some(POLICIES.join(",")),
        Some("AllocationPolicyDefault") => Some(e.st.default_policy.clone()),
        Some("Interleave") => Some(
            e.st.books_of(id)
                .iter()
                .map(|&b| char::from((e.st.pool.intlv_group(b) & 0xff) as u8))
                .collect(),
        ),
        Some("AllocationPolicy" | "InterleaveRequest" | "InterleaveRequestPos") => {
            e.st.get_xattr(&e.conn, id, name)?
        }
        Some(_) => return Err(bad_lfs(name)),
    };
    Ok(reply::to_value(&reply::Xattr { value }))
}

pub fn list_xattrs(e: &mut Engine, req: &Request) -> CmdResult {
    let id = resolve(&e.st, str_param(req, "path")?)?;
    let mut names = e.st.xattr_names(&e.conn, id)?;
    names.push("user.LFS.AllocationPolicyList".into());
    names.push("user.LFS.Interleave".into());
    names.sort();
    names.dedup();
    Ok(reply::to_value(&reply::XattrNames { value: names }))
}

pub fn set_xattr(e: &mut Engine, req: &Request) -> CmdResult {
    let path = str_param(req, "path")?;
    let name = str_param(req, "xattr")?;
    let value = match req.params.get("value") {
        None | Some(Value::Null) => {
            return Err(CmdError::new(libc::EINVAL, "Trying to set a null value"))
        }
        Some(Value::String(s)) => s.as_str(),
        Some(v) => {
            return Err(CmdError::new(
                libc::EINVAL,
                format!("set_xattr: parameter 'value' must be a string, got {v}"),
            ))
        }
    };
    let attr = lfs_attr(name)?;
    let id = resolve(&e.st, path)?;
    match attr {
        None => {}
        Some("AllocationPolicy") if !policy::is_policy(value) => {
            return Err(CmdError::new(
                libc::EINVAL,
                format!(
                    "Bad AllocationPolicy \"{value}\": use one of {}",
                    POLICIES.join(", ")
                ),
            ));
        }
        Some("AllocationPolicy") => {}
        Some("AllocationPolicyDefault") => {
            if !policy::is_default_policy(value) {
                return Err(CmdError::new(
                    libc::EINVAL,
                    format!(
                        "Bad user.LFS.AllocationPolicyDefault value: {value}: use one of {}",
                        POLICIES[..10].join(", ")
                    ),
                ));
            }
            // One stored default, so that a restart finds it unambiguously (the original kept it
            // only in memory and lost it on restart).
            e.conn
                .prepare_cached(
                    "DELETE FROM shelf_xattrs WHERE xattr = 'user.LFS.AllocationPolicyDefault' \
                     AND shelf_id != ?",
                )?
                .execute([id])?;
            e.st.dirty = true;
            e.st.default_policy = value.to_string();
        }
        Some("InterleaveRequest") => {
            let mode_tag = e.st.geo.bii_mode << schema::bii::MODE_SHIFT;
            if let Some(c) = value
                .chars()
                .find(|&c| e.st.pool.group_index(mode_tag | c as i64).is_none())
            {
                return Err(CmdError::new(
                    libc::EINVAL,
                    format!(
                        "Requested IGs not subset of known IGs: {} is not an interleave group",
                        c as u32
                    ),
                ));
            }
            // Any shelf can take a request (the original failed on shelves without a Pos row).
            e.st.put_xattr(&e.conn, id, "user.LFS.InterleaveRequestPos", "0")?;
        }
        Some("AllocationPolicyList" | "InterleaveRequestPos" | "Interleave") => {
            return Err(CmdError::new(
                libc::ENOTSUP,
                format!("Setting {name} is prohibited"),
            ))
        }
        Some(_) => return Err(bad_lfs(name)),
    }
    if e.st.put_xattr(&e.conn, id, name, value)? {
        let mut s = e.st.shelf(id).clone();
        s.mtime = now_secs();
        e.st.save_shelf(&e.conn, s)?;
    }
    Ok(Value::Null)
}

pub fn remove_xattr(e: &mut Engine, req: &Request) -> CmdResult {
    let path = str_param(req, "path")?;
    let name = str_param(req, "xattr")?;
    if lfs_attr(name)?.is_some() {
        return Err(CmdError::new(
            libc::EINVAL,
            "Removal of LFS xattrs is prohibited",
        ));
    }
    let id = resolve(&e.st, path)?;
    e.st.delete_xattr(&e.conn, id, name)?;
    Ok(Value::Null)
}
