//! C ABI over [`DirectMap`](crate::DirectMap); declared in `include/lfs_direct.h`.
//!
//! Errors: functions return NULL or -1, set `errno`, and leave a message naming the input, the rule
//! and the fix for [`lfs_last_error`] (per thread).

use crate::{DirectMap, MapError, MapOptions};
use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};

/// Flag for [`lfs_map_open`]: map read-only.
pub const LFS_MAP_READONLY: c_int = 1;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn fail(e: MapError) {
    let msg = CString::new(e.msg.replace('\0', "?")).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = msg);
    // SAFETY: __errno_location returns this thread's errno, always a valid, aligned int.
    unsafe { *libc::__errno_location() = e.errno };
}

/// Opaque handle (`struct lfs_map` in C).
pub struct LfsMap(DirectMap);

/// Maps the file at `path` (on an lfs-node mount), first growing it to `min_size` bytes if it is
/// smaller. Returns NULL with `errno` set on failure.
///
/// # Safety
/// `path` must be a valid NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn lfs_map_open(
    path: *const c_char,
    min_size: u64,
    flags: c_int,
) -> *mut LfsMap {
    if path.is_null() {
        fail(MapError {
            errno: libc::EINVAL,
            msg: "lfs_map_open: path is NULL; pass the path of a file on the LFS mount".into(),
        });
        return std::ptr::null_mut();
    }
    if flags & !LFS_MAP_READONLY != 0 {
        fail(MapError {
            errno: libc::EINVAL,
            msg: format!(
                "lfs_map_open: unknown flags {flags:#x}; the only flag is LFS_MAP_READONLY (1)"
            ),
        });
        return std::ptr::null_mut();
    }
    let path = match CStr::from_ptr(path).to_str() {
        Ok(p) => p,
        Err(_) => {
            fail(MapError {
                errno: libc::EINVAL,
                msg: "lfs_map_open: path is not valid UTF-8".into(),
            });
            return std::ptr::null_mut();
        }
    };
    let opts = MapOptions {
        min_size,
        read_only: flags & LFS_MAP_READONLY != 0,
    };
    match DirectMap::open(path, opts) {
        Ok(m) => Box::into_raw(Box::new(LfsMap(m))),
        Err(e) => {
            fail(e);
            std::ptr::null_mut()
        }
    }
}

/// Address of file byte 0.
///
/// # Safety
/// `map` must come from [`lfs_map_open`] and not be closed.
#[no_mangle]
pub unsafe extern "C" fn lfs_map_addr(map: *const LfsMap) -> *mut c_void {
    map.as_ref()
        .map_or(std::ptr::null_mut(), |m| m.0.as_ptr().cast())
}

/// File size when mapped.
///
/// # Safety
/// As [`lfs_map_addr`].
#[no_mangle]
pub unsafe extern "C" fn lfs_map_size(map: *const LfsMap) -> u64 {
    map.as_ref().map_or(0, |m| m.0.len() as u64)
}

/// Bytes mapped (whole books).
///
/// # Safety
/// As [`lfs_map_addr`].
#[no_mangle]
pub unsafe extern "C" fn lfs_map_mapped_size(map: *const LfsMap) -> u64 {
    map.as_ref().map_or(0, |m| m.0.mapped_len() as u64)
}

/// Book size of the file system the file lives on.
///
/// # Safety
/// As [`lfs_map_addr`].
#[no_mangle]
pub unsafe extern "C" fn lfs_map_book_size(map: *const LfsMap) -> u64 {
    map.as_ref().map_or(0, |m| m.0.layout().book_size)
}

/// Unmaps and closes. Returns 0; NULL is accepted and ignored.
///
/// # Safety
/// `map` must come from [`lfs_map_open`] and must not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn lfs_map_close(map: *mut LfsMap) -> c_int {
    if !map.is_null() {
        drop(Box::from_raw(map));
    }
    0
}

/// Message of the last failure on this thread ("" if none). Valid until the next call that fails.
#[no_mangle]
pub extern "C" fn lfs_last_error() -> *const c_char {
    LAST_ERROR.with(|l| l.borrow().as_ptr())
}
