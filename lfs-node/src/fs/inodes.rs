//! FUSE inode numbers for a path-based metadata server. A shelf's id is stable across renames, so
//! it is the inode number (the root shelf, id 2, is FUSE's inode 1); this table remembers the path
//! each inode was last seen at, which is what the Librarian's commands take.

use std::collections::HashMap;

pub const ROOT_INO: u64 = 1;
pub const ROOT_SHELF_ID: u64 = 2;

pub fn ino_of(shelf_id: u64) -> u64 {
    if shelf_id == ROOT_SHELF_ID {
        ROOT_INO
    } else {
        shelf_id
    }
}

pub fn shelf_id_of(ino: u64) -> u64 {
    if ino == ROOT_INO {
        ROOT_SHELF_ID
    } else {
        ino
    }
}

/// Joins a directory path and a name.
pub fn child_path(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

#[derive(Default)]
pub struct Inodes {
    paths: HashMap<u64, String>,
}

impl Inodes {
    pub fn new() -> Inodes {
        let mut paths = HashMap::new();
        paths.insert(ROOT_INO, "/".to_string());
        Inodes { paths }
    }

    pub fn path(&self, ino: u64) -> Option<String> {
        self.paths.get(&ino).cloned()
    }

    pub fn remember(&mut self, ino: u64, path: String) {
        self.paths.insert(ino, path);
    }

    pub fn forget(&mut self, ino: u64) {
        if ino != ROOT_INO {
            self.paths.remove(&ino);
        }
    }

    /// After a rename: the entry and everything below it move.
    pub fn renamed(&mut self, from: &str, to: &str) {
        let prefix = format!("{from}/");
        for p in self.paths.values_mut() {
            if p == from {
                *p = to.to_string();
            } else if let Some(rest) = p.strip_prefix(&prefix) {
                *p = format!("{to}/{rest}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_moves_subtree() {
        let mut t = Inodes::new();
        t.remember(5, "/a".into());
        t.remember(6, "/a/b".into());
        t.remember(7, "/ab".into());
        t.renamed("/a", "/z");
        assert_eq!(t.path(5).unwrap(), "/z");
        assert_eq!(t.path(6).unwrap(), "/z/b");
        assert_eq!(t.path(7).unwrap(), "/ab");
        assert_eq!(child_path("/", "x"), "/x");
    }
}
