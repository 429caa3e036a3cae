//! The one table of wire commands. The server's dispatch matches on [`Command`] (so the compiler
//! checks that every command has a handler), and its read-only and soft-state checks and its
//! per-command statistics read [`Command::effect`] and [`Command::name`]; clients name commands
//! by the same enum.

use std::fmt;

/// What a command does to the Librarian's database, which decides how the engine runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Only reads: a connection may run it itself while the engine is idle, even with requests
    /// queued for the engine thread.
    ReadOnly,
    /// Its changes are soft state (a stale open record or an old status after a power cut is
    /// released or refreshed by the node's next mount or heartbeat): they need not be synced
    /// before the reply.
    Soft,
    /// Runs on the engine thread in arrival order; whatever it changes is durable before the
    /// reply is sent.
    Ordered,
}

macro_rules! command_table {
    ($($(#[$doc:meta])* $variant:ident = $name:literal, $effect:ident;)*) => {
        /// A wire command: every command the original engine exposes, plus `chmod` and `chown`
        /// (ours: the original could change neither a mode nor an owner).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Command {
            $($(#[$doc])* $variant,)*
        }

        impl Command {
            /// Every command, in the table's order.
            pub const ALL: &'static [Command] = &[$(Command::$variant,)*];

            /// The command's name on the wire.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Command::$variant => $name,)*
                }
            }

            /// How the engine runs it.
            pub const fn effect(self) -> Effect {
                match self {
                    $(Command::$variant => Effect::$effect,)*
                }
            }

            /// The command of a wire name (exact, case-sensitive, as the original's lookup).
            pub fn from_name(name: &str) -> Option<Command> {
                match name {
                    $($name => Some(Command::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

command_table! {
    Version = "version", ReadOnly;
    GetFsStats = "get_fs_stats", ReadOnly;
    GetShelf = "get_shelf", ReadOnly;
    CreateShelf = "create_shelf", Ordered;
    OpenShelf = "open_shelf", Ordered;
    CloseShelf = "close_shelf", Soft;
    ListShelfBooks = "list_shelf_books", ReadOnly;
    ListShelves = "list_shelves", ReadOnly;
    ListOpenShelves = "list_open_shelves", ReadOnly;
    ResizeShelf = "resize_shelf", Ordered;
    RenameShelf = "rename_shelf", Ordered;
    DestroyShelf = "destroy_shelf", Ordered;
    GetBook = "get_book", Ordered;
    GetXattr = "get_xattr", ReadOnly;
    ListXattrs = "list_xattrs", ReadOnly;
    SetXattr = "set_xattr", Ordered;
    RemoveXattr = "remove_xattr", Ordered;
    SetAmTime = "set_am_time", Ordered;
    /// A message the server passes to every other connection out of band.
    SendOob = "send_OOB", Ordered;
    GetBookAll = "get_book_all", Ordered;
    Mkdir = "mkdir", Ordered;
    Rmdir = "rmdir", Ordered;
    GetShelfPath = "get_shelf_path", ReadOnly;
    Symlink = "symlink", Ordered;
    Readlink = "readlink", ReadOnly;
    /// A node's heartbeat.
    UpdateNodeSocStatus = "update_node_soc_status", Soft;
    UpdateNodeMcStatus = "update_node_mc_status", Soft;
    KillZombieBooks = "kill_zombie_books", Ordered;
    GetBookIg = "get_book_ig", Ordered;
    GetBookInfoAll = "get_book_info_all", Ordered;
    /// The original raises NotImplementedError here, which its engine turns into a null success.
    GetShelfZaddr = "get_shelf_zaddr", Ordered;
    Chmod = "chmod", Ordered;
    /// Sets the owner and group of a path (ours; -1 leaves one as it is).
    Chown = "chown", Ordered;
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        for (i, c) in Command::ALL.iter().enumerate() {
            assert_eq!(Command::from_name(c.name()), Some(*c));
            assert!(
                Command::ALL[..i].iter().all(|o| o.name() != c.name()),
                "{c} twice"
            );
        }
        assert_eq!(Command::ALL.len(), 33, "the original's 31, chmod and chown");
        assert_eq!(Command::from_name("GET_SHELF"), None);
        assert_eq!(Command::from_name("command"), None);
    }

    #[test]
    fn the_engine_classes_are_those_of_the_original_engine() {
        let of = |e: Effect| -> Vec<&str> {
            Command::ALL
                .iter()
                .filter(|c| c.effect() == e)
                .map(|c| c.name())
                .collect()
        };
        assert_eq!(
            of(Effect::Soft),
            [
                "close_shelf",
                "update_node_soc_status",
                "update_node_mc_status"
            ]
        );
        assert_eq!(of(Effect::ReadOnly).len(), 10);
        assert!(of(Effect::ReadOnly).contains(&"readlink"));
        assert!(!of(Effect::ReadOnly).contains(&"get_book"));
    }
}
