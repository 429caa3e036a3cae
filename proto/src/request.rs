//! Typed requests: one type per command a client sends, holding exactly the parameters that go on
//! the wire, and naming its [`Command`] and the type of its reply ([`Request`]). A client that
//! sends one cannot pair a command with another command's parameters, nor read the reply as
//! something else (the mini-redis layout: a type per command, in the crate both sides share).
//!
//! The wire stays as it was: each type serializes to the JSON object the node daemon sent before
//! these types existed, key for key and in the same order (`serde_json` keeps field order), so a
//! request's bytes are unchanged and the original's Librarian reads them too. Optional parameters
//! that were sent only when set are left out when unset.
//!
//! The server does not parse requests with these types: it keeps its own lenient parsing
//! (`librarian/src/cmd`), which also takes what the original Python clients send (numbers as
//! strings, absent optional keys...). Deserializing is derived anyway, for tests and tools that
//! read requests back.
//!
//! Only the commands the node daemon and `fame` send have a type; tests and tools that send
//! anything else (or something malformed on purpose) use
//! [`Client::call`](crate::client::Client::call) with a [`Command`] and a JSON value.

use crate::reply;
use crate::Command;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A request of one command: its parameters (the fields, serialized as the wire object), the
/// command they belong to, and what its reply's `value` is read as.
pub trait Request: Serialize {
    /// The command these are the parameters of.
    const COMMAND: Command;
    /// What the reply's `value` is read as. [`Value`] where callers read nothing of it (or no
    /// typed reply exists yet).
    type Reply: DeserializeOwned;
    /// What the reply should hold, for the message when it does not ("shelf", "list of books").
    const REPLY: &'static str;

    /// The parameters as the JSON object that goes on the wire (beside `command` and `context`).
    fn params(&self) -> Value {
        // Plain structs of strings, integers and booleans: serializing them cannot fail, but a
        // failure would still be no reason to panic; it sends no parameters and the server names
        // what is missing.
        serde_json::to_value(self).unwrap_or_else(|_| Value::Object(Default::default()))
    }
}

/// A reply whose `value` is not what its command answers: a protocol mismatch (a peer of another
/// version, a bug), which a caller can only report. It says what was expected, what was wrong
/// (serde's words: the missing field or the mistyped one) and what came.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the Librarian's reply to {command} holds no valid {expected}: {detail}; got {got}")]
pub struct BadReply {
    pub command: Command,
    pub expected: &'static str,
    pub detail: String,
    /// The reply's value, cut to a few hundred bytes.
    pub got: String,
}

/// The longest part of a bad reply a [`BadReply`] keeps (a listing can be megabytes).
const GOT_MAX: usize = 300;

impl BadReply {
    /// A bad reply to `command`: `expected` is what should have come (also in the message), `got`
    /// what did.
    pub fn new(
        command: Command,
        expected: &'static str,
        detail: impl Into<String>,
        got: &dyn std::fmt::Display,
    ) -> BadReply {
        let mut got = got.to_string();
        if got.len() > GOT_MAX {
            got.truncate(got.floor_char_boundary(GOT_MAX));
            got.push_str("...");
        }
        BadReply {
            command,
            expected,
            detail: detail.into(),
            got,
        }
    }
}

/// Reads the `value` of a reply to `R`.
pub fn read_reply<R: Request>(value: &Value) -> Result<R::Reply, BadReply> {
    R::Reply::deserialize(value)
        .map_err(|e| BadReply::new(R::COMMAND, R::REPLY, e.to_string(), value))
}

/// Defines the request structs and their [`Request`] impls from one table: name, reply type and
/// what the reply is called in messages, then the fields in wire order.
macro_rules! requests {
    ($(
        $(#[$doc:meta])*
        $name:ident => $reply:ty, $what:literal {
            $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)?
        }
    )*) => {$(
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl Request for $name {
            const COMMAND: Command = Command::$name;
            type Reply = $reply;
            const REPLY: &'static str = $what;
        }
    )*};
}

/// `skip_serializing_if` for flags sent only when set.
fn is_false(b: &bool) -> bool {
    !*b
}

/// `skip_serializing_if` for owners sent only when not root, so that what root makes goes on
/// the wire as before owners existed (and an original Librarian reads it).
fn is_root(id: &u32) -> bool {
    *id == 0
}

requests! {
    /// The file-system statistics: book size, books total and used, the interleave groups.
    GetFsStats => Value, "statistics object" {}

    /// The shelf (file, directory or symlink) at `path`.
    GetShelf => reply::Shelf, "shelf" { path: String }

    /// Opens `path`, creating a regular file with `mode` (type and permission bits; 0 is
    /// `S_IFREG | 0666`) if there is none. The reply's `open_handle` is the new open.
    CreateShelf => reply::Shelf, "shelf" {
        path: String,
        mode: u32,
        #[serde(default, skip_serializing_if = "is_root")]
        uid: u32,
        #[serde(default, skip_serializing_if = "is_root")]
        gid: u32,
    }

    /// Opens the shelf at `path`; the reply's `open_handle` is the new open.
    OpenShelf => reply::Shelf, "shelf" { path: String }

    /// Drops open `open_handle` of shelf `id` (unknown handles are ignored).
    CloseShelf => Value, "value" { id: u64, open_handle: u64 }

    /// The books of the shelf at `path`, in file order.
    ListShelfBooks => Vec<reply::Book>, "list of books" { path: String }

    /// The directory at `path`: `.`, `..`, then its entries.
    ListShelves => Vec<reply::Shelf>, "list of shelves" { path: String }

    /// Every open record of every node.
    ListOpenShelves => Vec<reply::Open>, "list of opens" {}

    /// Sets the size of shelf `id` at `path`. With `grow_only`, a size not above the current one
    /// changes nothing; with `with_books`, the reply lists the shelf's books. Both are sent only
    /// when set, as before they existed.
    ResizeShelf => reply::Resized, "resize result" {
        path: String,
        id: u64,
        size_bytes: u64,
        zero_enabled: bool,
        #[serde(default, skip_serializing_if = "is_false")]
        grow_only: bool,
        #[serde(default, skip_serializing_if = "is_false")]
        with_books: bool,
    }

    /// Moves shelf `id` from `path` to `newpath`.
    RenameShelf => Value, "value" { path: String, id: u64, newpath: String }

    /// Removes the shelf at `path` (its books become zombies).
    DestroyShelf => Value, "value" { path: String }

    /// The value of extended attribute `xattr` of `path` (`value` null if it has none).
    GetXattr => reply::Xattr, "xattr value" { path: String, xattr: String }

    /// The extended attribute names of `path`.
    ListXattrs => reply::XattrNames, "list of xattr names" { path: String }

    /// Sets extended attribute `xattr` of `path` to `value`.
    SetXattr => Value, "value" { path: String, xattr: String, value: String }

    /// Removes extended attribute `xattr` of `path` (a missing name is no error).
    RemoveXattr => Value, "value" { path: String, xattr: String }

    /// Sets the times of `path` (0 means now; the Librarian keeps only `mtime`).
    SetAmTime => Value, "value" { path: String, atime: i64, mtime: i64 }

    /// Sets the permission bits of `path` (ours; the original had no way to change a mode).
    Chmod => Value, "value" { path: String, mode: u32 }

    /// Sets the owner and group of `path` (ours); -1 leaves one as it is. The node's kernel has
    /// checked who may (`default_permissions`).
    Chown => Value, "value" { path: String, uid: i64, gid: i64 }

    /// Makes directory `path` with `mode`. The daemon has always sent `mode` first.
    Mkdir => reply::Shelf, "shelf" {
        mode: u32,
        path: String,
        #[serde(default, skip_serializing_if = "is_root")]
        uid: u32,
        #[serde(default, skip_serializing_if = "is_root")]
        gid: u32,
    }

    /// Removes the empty directory `path`.
    Rmdir => Value, "value" { path: String }

    /// Makes symlink `path` pointing at `target`. The daemon has always sent `target` first.
    Symlink => reply::Shelf, "shelf" {
        target: String,
        path: String,
        #[serde(default, skip_serializing_if = "is_root")]
        uid: u32,
        #[serde(default, skip_serializing_if = "is_root")]
        gid: u32,
    }

    /// The target of symlink `path`.
    Readlink => String, "symlink target" { path: String }

    /// The calling node's heartbeat: `status` 1 is ACTIVE, 0 OFFLINE, with its load figures.
    UpdateNodeSocStatus => Value, "value" {
        status: i64,
        cpu_percent: i64,
        rootfs_percent: i64,
        network_in: i64,
        network_out: i64,
        mem_percent: i64,
    }

    /// The calling node's memory status: 1 at mount, 0 at unmount (either releases the node's
    /// earlier opens).
    UpdateNodeMcStatus => Value, "value" { status: i64 }

    /// Puts orphaned zombie books on a new zeroing shelf for the calling node.
    KillZombieBooks => reply::ZeroingShelf, "zeroing shelf" {}
}

impl UpdateNodeSocStatus {
    /// OFFLINE, with every figure 0 (what a node sends as it stops).
    pub fn offline() -> UpdateNodeSocStatus {
        UpdateNodeSocStatus {
            status: 0,
            cpu_percent: 0,
            rootfs_percent: 0,
            network_in: 0,
            network_out: 0,
            mem_percent: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The bytes of a request's parameters, as the client writes them.
    fn wire(r: &impl Request) -> String {
        r.params().to_string()
    }

    /// Each request serializes to the object the daemon built by hand before (same keys, same
    /// order, same number forms), so the wire is unchanged.
    #[test]
    fn requests_are_the_objects_the_daemon_sent_before() {
        let p = || "/d/f".to_string();
        let same = |typed: String, before: Value| assert_eq!(typed, before.to_string());
        same(wire(&GetFsStats {}), json!({}));
        same(wire(&ListOpenShelves {}), json!({}));
        same(wire(&KillZombieBooks {}), json!({}));
        same(wire(&GetShelf { path: p() }), json!({ "path": "/d/f" }));
        same(
            wire(&CreateShelf {
                path: p(),
                mode: 0o100644,
                ..Default::default()
            }),
            json!({"path": "/d/f", "mode": 0o100644}),
        );
        // A maker other than root is sent (ours); root's requests are as they always were.
        same(
            wire(&CreateShelf {
                path: p(),
                mode: 0o100644,
                uid: 1000,
                gid: 100,
            }),
            json!({"path": "/d/f", "mode": 0o100644, "uid": 1000, "gid": 100}),
        );
        same(
            wire(&CloseShelf {
                id: 5,
                open_handle: 9,
            }),
            json!({"id": 5, "open_handle": 9}),
        );
        let resize = ResizeShelf {
            path: p(),
            id: 5,
            size_bytes: 1 << 23,
            zero_enabled: true,
            grow_only: false,
            with_books: false,
        };
        same(
            wire(&resize),
            json!({"path": "/d/f", "id": 5, "size_bytes": 1 << 23, "zero_enabled": true}),
        );
        same(
            wire(&ResizeShelf {
                grow_only: true,
                with_books: true,
                ..resize
            }),
            json!({"path": "/d/f", "id": 5, "size_bytes": 1 << 23, "zero_enabled": true,
                   "grow_only": true, "with_books": true}),
        );
        same(
            wire(&RenameShelf {
                path: p(),
                id: 5,
                newpath: "/g".into(),
            }),
            json!({"path": "/d/f", "id": 5, "newpath": "/g"}),
        );
        same(
            wire(&SetXattr {
                path: p(),
                xattr: "user.a".into(),
                value: "v".into(),
            }),
            json!({"path": "/d/f", "xattr": "user.a", "value": "v"}),
        );
        same(
            wire(&SetAmTime {
                path: p(),
                atime: 0,
                mtime: 0,
            }),
            json!({"path": "/d/f", "atime": 0, "mtime": 0}),
        );
        same(
            wire(&Chmod {
                path: p(),
                mode: 0o600,
            }),
            json!({"path": "/d/f", "mode": 0o600}),
        );
        // mkdir and symlink put the path last: the daemon added it to the other parameters.
        let mut before = json!({ "mode": 0o40755 });
        before["path"] = json!("/d");
        same(
            wire(&Mkdir {
                mode: 0o40755,
                path: "/d".into(),
                ..Default::default()
            }),
            before,
        );
        let mut before = json!({ "target": "t" });
        before["path"] = json!("/l");
        same(
            wire(&Symlink {
                target: "t".into(),
                path: "/l".into(),
                ..Default::default()
            }),
            before,
        );
        same(
            wire(&UpdateNodeSocStatus::offline()),
            json!({"status": 0, "cpu_percent": 0, "rootfs_percent": 0, "network_in": 0,
                   "network_out": 0, "mem_percent": 0}),
        );
        same(
            wire(&UpdateNodeMcStatus { status: 1 }),
            json!({"status": 1}),
        );
    }

    #[test]
    fn a_reply_that_is_not_the_commands_says_what_is_missing() {
        let e = read_reply::<GetShelf>(&json!({"id": 5, "name": "é".repeat(400)})).unwrap_err();
        assert_eq!((e.command, e.expected), (Command::GetShelf, "shelf"));
        assert!(e.detail.contains("missing field `mode`"), "{e}");
        assert!(e.got.len() < 310 && e.got.ends_with("..."), "{e}");
        let e = read_reply::<ListShelfBooks>(&json!(null)).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("the Librarian's reply to list_shelf_books holds no valid list of books"));
        assert_eq!(
            read_reply::<Readlink>(&json!("/t")).unwrap(),
            "/t".to_string()
        );
    }

    #[test]
    fn each_request_names_its_own_command() {
        assert_eq!(GetShelf::COMMAND, Command::GetShelf);
        assert_eq!(
            UpdateNodeSocStatus::COMMAND.name(),
            "update_node_soc_status"
        );
        assert_eq!(KillZombieBooks::COMMAND.name(), "kill_zombie_books");
        // Unset optional flags are absent, and absent flags read back as unset.
        let r: ResizeShelf = serde_json::from_value(
            json!({"path": "/f", "id": 1, "size_bytes": 0, "zero_enabled": false}),
        )
        .unwrap();
        assert!(!r.grow_only && !r.with_books);
    }
}
