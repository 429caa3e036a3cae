//! Typed replies: one type per shape the Librarian sends, serialized by the server and read by
//! the clients, so both sides agree by construction. Field order is the wire's key order (the
//! original's; `serde_json` keeps it), so the bytes are the same as the original server's.
//!
//! Reading is lenient where the original was: only the keys a client cannot do without are
//! required, the others default.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A shelf (file, directory or symlink): the 12-key object the original sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shelf {
    pub id: i64,
    #[serde(default)]
    pub creator_id: i64,
    #[serde(default)]
    pub size_bytes: i64,
    #[serde(default)]
    pub book_count: i64,
    #[serde(default)]
    pub ctime: i64,
    #[serde(default)]
    pub mtime: i64,
    #[serde(default)]
    pub name: String,
    pub mode: i64,
    #[serde(default)]
    pub parent_id: i64,
    #[serde(default = "one")]
    pub link_count: i64,
    /// Always empty: the original sends its book list here, and nobody reads it.
    #[serde(default)]
    pub bos: Vec<Value>,
    /// The handle of the open this reply made (`open_shelf`, `create_shelf`), else null.
    #[serde(default)]
    pub open_handle: Option<i64>,
    /// The owner (ours): sent only when not root, so that a root-owned shelf (everything the
    /// original made) is the original's 12 keys, byte for byte. The original's client ignores
    /// keys it does not know.
    #[serde(default, skip_serializing_if = "is_root")]
    pub uid: u32,
    /// The group (ours), likewise.
    #[serde(default, skip_serializing_if = "is_root")]
    pub gid: u32,
}

fn is_root(id: &u32) -> bool {
    *id == 0
}

fn one() -> i64 {
    1
}

/// One open record (`list_open_shelves`): which node opened which shelf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Open {
    /// The open handle.
    pub id: i64,
    pub shelf_id: i64,
    pub node_id: i64,
    /// The opening process (the node daemon's, for opens made through a mount).
    #[serde(default)]
    pub pid: i64,
}

/// What `resize_shelf` answers. Without `grow_only` or `with_books` it is the original's
/// `{"z_shelf_path": ...}`; with either, also the resulting size and book count; with
/// `with_books`, also the books (as `list_shelf_books` lists them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resized {
    /// The pending-zero shelf holding the books a shrink freed, for the caller to zero.
    #[serde(default)]
    pub z_shelf_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub book_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub books: Option<Vec<Book>>,
}

/// What `kill_zombie_books` answers: the zeroing shelf it made, or null if there was nothing to
/// collect.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZeroingShelf {
    #[serde(default)]
    pub z_shelf_path: Option<String>,
}

/// What `get_xattr` answers: the value, or null when the shelf has no such attribute.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    #[serde(default)]
    pub value: Option<String>,
}

/// What `list_xattrs` answers: the names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XattrNames {
    #[serde(default)]
    pub value: Vec<String>,
}

/// One book of a shelf (`list_shelf_books`, `get_book`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Book {
    /// The book's LZA id.
    pub id: i64,
    /// The interleave group, with the book-id interpretation in bits 16-19.
    pub intlv_group: i64,
    pub book_num: i64,
    /// One of [`crate::book_state`].
    #[serde(default)]
    pub allocated: i64,
    #[serde(default)]
    pub attributes: i64,
}

/// The JSON of a typed reply, as the server sends it (plain structs of numbers, strings and
/// lists, which always serialize).
pub fn to_value<T: Serialize>(reply: &T) -> Value {
    serde_json::to_value(reply).expect("a typed reply always serializes")
}

impl Shelf {
    /// A shelf of a reply, or None if it lacks what a client needs (`id`, `mode`).
    pub fn from_value(v: &Value) -> Option<Shelf> {
        Shelf::deserialize(v).ok()
    }

    /// The reply's JSON.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a shelf always serializes")
    }
}

impl Book {
    /// A book of a reply, or None if it lacks `id`, `intlv_group` or `book_num`.
    pub fn from_value(v: &Value) -> Option<Book> {
        Book::deserialize(v).ok()
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a book always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_shelf_has_the_original_keys_in_the_original_order() {
        let s = Shelf {
            id: 5,
            creator_id: 1,
            size_bytes: 10,
            book_count: 1,
            ctime: 2,
            mtime: 3,
            name: "f".into(),
            mode: 0o100644,
            parent_id: 2,
            link_count: 1,
            bos: vec![],
            open_handle: None,
            uid: 0,
            gid: 0,
        };
        assert_eq!(
            s.to_value().to_string(),
            r#"{"id":5,"creator_id":1,"size_bytes":10,"book_count":1,"ctime":2,"mtime":3,"name":"f","mode":33188,"parent_id":2,"link_count":1,"bos":[],"open_handle":null}"#
        );
        assert_eq!(Shelf::from_value(&s.to_value()), Some(s.clone()));
        // A shelf of another owner (ours) carries its owner after the original's keys.
        let theirs = Shelf {
            uid: 1000,
            gid: 100,
            ..s
        };
        assert!(theirs
            .to_value()
            .to_string()
            .ends_with(r#""open_handle":null,"uid":1000,"gid":100}"#));
        assert_eq!(Shelf::from_value(&theirs.to_value()), Some(theirs));
    }

    #[test]
    fn reading_needs_only_id_and_mode() {
        let s = Shelf::from_value(&json!({"id": 7, "mode": 16877})).unwrap();
        assert_eq!((s.link_count, s.size_bytes, s.open_handle), (1, 0, None));
        assert_eq!(Shelf::from_value(&json!({"mode": 16877})), None);
        assert_eq!(Shelf::from_value(&json!({"id": "x", "mode": 1})), None);
        let b = Book::from_value(&json!({"id": 1, "intlv_group": 2, "book_num": 3})).unwrap();
        assert_eq!((b.allocated, b.attributes), (0, 0));
        assert_eq!(Book::from_value(&json!({"id": 1, "book_num": 3})), None);
        assert_eq!(
            b.to_value().to_string(),
            r#"{"id":1,"intlv_group":2,"book_num":3,"allocated":0,"attributes":0}"#
        );
    }
}
